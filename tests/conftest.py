"""Shared fixtures: one loaded model for the whole session, real servers on loopback ports."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

# Nothing is downloaded at run time: fail loudly if anything tries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def llama_engine() -> Any:
    """The embedded SmolLM2 GGUF in llama.cpp, loaded once for every test that needs a model."""
    from genesys.runtime.engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(n_ctx=4096 + 512, seed=1234)
    engine.load()
    return engine


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight llama (tests.support.tiny_llama), written once; tests only read it."""
    from tests.support.tiny_llama import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture()
def tiny(tiny_dir: Path, tmp_path: Path) -> tuple[Any, Any]:
    """The tiny llama and its tokenizer, loaded fresh for the test (training changes the model)."""
    from genesys.runtime.base_model import load_base_model

    return load_base_model(tiny_dir, tmp_path / "cache", device="cpu", dtype="float32")


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from genesys.runtime.settings import load_settings

    for var in list(os.environ):
        if var.startswith("GENESYS_"):
            monkeypatch.delenv(var)
    # No cycle starts by itself in a test's server; tests of the scheduler start it themselves.
    monkeypatch.setenv("GENESYS_AUTOGEN_AGENTS__SCHEDULE", "false")
    # Nor do alert rules run (their actions retrain and roll back); tests of alerts turn them on.
    monkeypatch.setenv("GENESYS_ALERTS__ENABLED", "false")
    return load_settings(data_dir=tmp_path / "data")


@dataclass
class LiveServer:
    base_url: str
    services: Any
    settings: Any

    @property
    def api(self) -> str:
        return f"{self.base_url}/v1"


class _ThreadedServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test runner owns signals
        pass


def start_live_server(settings: Any, engine: Any) -> Iterator[LiveServer]:
    from genesys.api.app import build_services, create_app

    services = build_services(settings, engine=engine)
    app = create_app(settings, services=services)
    port = free_port()
    server = _ThreadedServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    else:
        raise RuntimeError("the test server did not become ready")
    try:
        yield LiveServer(base, services, settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture()
def live_server(settings: Any, llama_engine: Any) -> Iterator[LiveServer]:
    """The real app on a loopback port, with a fresh data dir and the shared model."""
    yield from start_live_server(settings, llama_engine)


# -- the store's backends and the Chroma server (tests/support/postgres.py, tests/support/chroma.py) --


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """One throwaway PostgreSQL cluster for the session; skips (with the reason) where PostgreSQL is
    not installed (`make postgres` installs it)."""
    from tests.support.postgres import PostgresUnavailable, running_postgres

    with ExitStack() as stack:
        try:
            server = stack.enter_context(running_postgres())
        except PostgresUnavailable as exc:
            pytest.skip(f"PostgreSQL tests skipped: {exc}")
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store on each backend: SQLite (WAL) in the test's tmp dir, and a fresh
    database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'genesys.db'}"
    return str(request.getfixturevalue("postgres_server").create_database())


@pytest.fixture(scope="session")
def chroma_server() -> Iterator[Any]:
    """One `chroma run` server on loopback for the session (tests clear it with ``clear()``)."""
    from tests.support.chroma import ChromaUnavailable, running_chroma

    with ExitStack() as stack:
        try:
            server = stack.enter_context(running_chroma())
        except ChromaUnavailable as exc:
            pytest.skip(f"Chroma server tests skipped: {exc}")
        yield server
