"""A Chroma server for the tests: ``chroma run`` (the CLI that chromadb installs) on a free loopback
port, over a temporary directory, stopped at the end.

Tests share one server per session; ``ChromaServer.clear()`` deletes every collection so that each
test starts from an empty server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

START_TIMEOUT_S = 60.0


class ChromaUnavailable(RuntimeError):
    """The ``chroma`` CLI is not installed."""


def chroma_cli() -> Path | None:
    """The ``chroma`` console script of this Python's environment (or the PATH's)."""
    beside = Path(sys.executable).parent / "chroma"
    if beside.exists():
        return beside
    found = shutil.which("chroma")
    return Path(found) if found else None


@dataclass
class ChromaServer:
    process: subprocess.Popen[bytes]
    port: int
    path: Path
    log_path: Path

    @property
    def url(self) -> str:
        """What ``storage.chroma_url`` takes."""
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> object:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        return chromadb.HttpClient(
            host="127.0.0.1", port=self.port, settings=ChromaSettings(anonymized_telemetry=False)
        )

    def clear(self) -> None:
        """Delete every collection (of the default tenant and database)."""
        client = self.client()
        for collection in client.list_collections():  # type: ignore[attr-defined]
            client.delete_collection(collection.name)  # type: ignore[attr-defined]

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_chroma() -> Iterator[ChromaServer]:
    """Start ``chroma run --path <tmp> --host 127.0.0.1 --port <free>``; yield it once its heartbeat
    answers; stop it and delete its files afterwards. Raises ``ChromaUnavailable`` without the CLI,
    ``RuntimeError`` (with its log) when it does not start."""
    cli = chroma_cli()
    if cli is None:
        raise ChromaUnavailable("the `chroma` CLI (package chromadb) is not installed")
    root = Path(tempfile.mkdtemp(prefix="genesys-chroma-"))
    port = _free_port()
    log_path = root / "server.log"
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}
    with log_path.open("wb") as sink:
        process = subprocess.Popen(
            [str(cli), "run", "--path", str(root / "data"), "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = ChromaServer(process=process, port=port, path=root / "data", log_path=log_path)
    try:
        _wait_ready(server)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(server: ChromaServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"chroma run exited with status {server.process.returncode}:\n{server.log_tail()}"
                )
            try:
                if client.get(f"{server.url}/api/v2/heartbeat").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"chroma run did not answer within {START_TIMEOUT_S:.0f} s:\n{server.log_tail()}")
