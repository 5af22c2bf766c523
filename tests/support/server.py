"""The real Genesys server in a child process, on a free loopback port, for end-to-end tests.

``running_server(data_dir)`` yields the base URL; ``started_server(data_dir)`` yields a
``RunningServer`` that also holds the ``Popen`` (for tests that kill the process, e.g. with
SIGKILL to check durability) and the server's log. Both wait for ``GET /readyz`` to answer 200 and
stop the process on exit, whatever state it is in by then.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
_PORT_ATTEMPTS = 3


class ServerFailed(RuntimeError):
    """The server exited or never became ready; the message carries the end of its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path  # the server's stdout and stderr: structlog JSON lines

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, without ``/v1``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """The OpenAI base URL clients are given: ``<base_url>/v1``."""
        return f"{self.base_url}/v1"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'genesys.db'}"

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines (anything else the process printed is skipped)."""
        records = []
        for line in self.log_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def http_requests(self) -> list[dict[str, Any]]:
        """One ``http.request`` record (method, path, status, duration_ms, request_id) per request."""
        return [r for r in self.log_records() if r.get("event") == "http.request"]

    def kill(self) -> int:
        """SIGKILL, no clean shutdown; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        return self.process.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> int:
        """SIGTERM (a clean uvicorn shutdown), then SIGKILL if it hangs; returns the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        return self.kill()


def server_env(data_dir: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: ours without any GENESYS_* (a stray one would leak into the
    server's settings, or be refused as unknown), then the data dir, then ``env``."""
    child = {k: v for k, v in os.environ.items() if not k.startswith("GENESYS_")}
    child.update(
        GENESYS_DATA_DIR=str(data_dir),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        ANONYMIZED_TELEMETRY="False",
        PYTHONUNBUFFERED="1",
        # No alert rule acts (retrain, rollback) in a test's server unless the test asks for it.
        GENESYS_ALERTS__ENABLED="false",
    )
    child.update(env or {})
    return child


def _wait_ready(server: RunningServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            code = server.process.poll()
            if code is not None:
                raise ServerFailed(
                    f"the server exited with status {code} before it was ready; its log:\n{server.log_tail()}"
                )
            try:
                response = client.get(f"{server.base_url}/readyz")
            except httpx.TransportError as exc:
                last = repr(exc)
            else:
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:500]}"
            time.sleep(0.25)
    raise ServerFailed(
        f"GET /readyz did not answer 200 within {timeout_s:.0f} s (last: {last}); "
        f"its log:\n{server.log_tail()}"
    )


def _address_in_use(server: RunningServer) -> bool:
    text = server.log_text().lower()
    return "address already in use" in text or "errno 98" in text


@contextmanager
def started_server(
    data_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    log_path: Path | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> Iterator[RunningServer]:
    """``python -m genesys.cli serve`` on 127.0.0.1 with ``GENESYS_DATA_DIR=data_dir``.

    ``env`` adds to (or overrides) the child's environment, e.g. ``{"GENESYS_AUTH__KEYS": ...}``.
    The log goes to ``log_path`` (default ``<data_dir>/../<data_dir name>-server-<port>.log``), so
    it survives the process and stays out of the data dir. Run several servers on one data dir one
    after another (start, kill, start again), not at once.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    child_env = server_env(data_dir, env)
    attempts = 1 if port is not None else _PORT_ATTEMPTS
    for attempt in range(attempts):
        chosen = port if port is not None else free_port()
        log = log_path or data_dir.parent / f"{data_dir.name}-server-{chosen}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "genesys.cli", "serve", "--host", "127.0.0.1", "--port", str(chosen)],
                cwd=REPO_ROOT,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        server = RunningServer(process=process, port=chosen, data_dir=data_dir, log_path=log)
        try:
            _wait_ready(server, ready_timeout_s)
        except ServerFailed:
            server.kill()
            if attempt + 1 < attempts and _address_in_use(server):
                continue  # another process took the free port between our probe and the bind
            raise
        except BaseException:
            server.kill()
            raise
        try:
            yield server
        finally:
            server.stop()
        return


@contextmanager
def running_server(data_dir: Path, *, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """The server's base URL (``http://127.0.0.1:<port>``) while it runs; see ``started_server``."""
    with started_server(data_dir, env=env) as server:
        yield server.base_url
