"""Debian's headless ``chromium`` driven over the DevTools protocol (websocket-client), for tests of pages.

``HeadlessChromium(profile_dir)`` starts the browser with a fresh profile, nothing in the
background (no sync, component updates, QUIC or proxy) and a 1366x768 viewport, and attaches to its
page. It records every URL the page requests (``requests``), its uncaught errors and console errors
(``errors``), evaluates JavaScript (``evaluate``, ``wait_for``) and saves screenshots.
``make chromium`` installs the browser (apt) where it is missing.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import websocket

LAUNCH_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)
START_TIMEOUT_S = 30.0


class BrowserError(RuntimeError):
    """The browser could not start, or a DevTools command failed."""


def chromium_path() -> str:
    """The ``chromium`` executable; raises ``BrowserError`` with the fix when it is missing."""
    found = shutil.which("chromium")
    if found is None:
        raise BrowserError(
            "Debian's chromium is not installed: run `make chromium` (apt-get install chromium)"
        )
    return found


class HeadlessChromium:
    """One headless browser with one page. Use it as a context manager."""

    def __init__(self, profile_dir: Path, *, width: int = 1366, height: int = 768) -> None:
        self.profile_dir = Path(profile_dir)
        self.width = width
        self.height = height
        self.requests: list[str] = []
        self.errors: list[str] = []
        self._ids = itertools.count(1)
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: websocket.WebSocket | None = None

    # -- life cycle -------------------------------------------------------------------------------

    def __enter__(self) -> HeadlessChromium:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        log = (self.profile_dir.parent / f"{self.profile_dir.name}.log").open("wb")
        command = [
            chromium_path(),
            *LAUNCH_FLAGS,
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={self.profile_dir}",
            f"--window-size={self.width},{self.height}",
            "about:blank",
        ]
        # Its own process group, so that closing it ends its helper processes too.
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        try:
            self._attach()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        process = self._process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def _attach(self) -> None:
        assert self._process is not None
        port_file = self.profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().strip()):
            if self._process.poll() is not None:
                raise BrowserError(f"chromium exited with status {self._process.returncode}")
            if time.monotonic() > deadline:
                raise BrowserError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with httpx.Client(trust_env=False, timeout=10) as client:
            targets = client.get(f"http://127.0.0.1:{port}/json/list").json()
        page = next(t for t in targets if t.get("type") == "page")
        self._socket = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True, enable_multithread=False
        )
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Network.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )

    # -- the protocol -----------------------------------------------------------------------------

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result. Events that arrive meanwhile are recorded."""
        if self._socket is None:
            raise BrowserError("the browser is closed")
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == message_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error'].get('message')}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._on_event(message)

    def _on_event(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            )

    # -- what tests use ---------------------------------------------------------------------------

    def navigate(self, url: str, *, timeout: float = 20.0) -> None:
        """Open ``url`` and wait until the page has loaded (its deferred scripts have run)."""
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"could not open {url}: {result['errorText']}")
        self.wait_for(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'", timeout=timeout
        )

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited when it is a promise), as JSON."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(details.get("exception", {}).get("description") or details.get("text"))
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float = 20.0, interval: float = 0.1) -> Any:
        """Evaluate until the value is truthy; returns it. Raises ``TimeoutError`` with the last value."""
        deadline = time.monotonic() + timeout
        value: Any = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except BrowserError as exc:  # e.g. the page is still loading: no body yet
                value = exc
            if value and not isinstance(value, BrowserError):
                return value
            time.sleep(interval)
        raise TimeoutError(f"{expression!r} still {value!r} after {timeout} s; page errors: {self.errors}")

    def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        """A PNG of the viewport, or of the whole page."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": self.width, "height": size["height"], "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
