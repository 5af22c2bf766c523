"""A throwaway PostgreSQL server for the tests: its own cluster in a temporary directory, on a free
loopback port, stopped and deleted at the end.

The binaries are Debian's ``postgresql`` package (``make test`` installs it; see the Makefile's
``postgres`` target): ``initdb`` on the PATH or under ``/usr/lib/postgresql/<version>/bin``. ``initdb``
refuses to run as root, so as root the cluster belongs to the ``postgres`` user (``runuser``); otherwise
it runs as the test process's own user. ``PostgresUnavailable`` says why a server cannot be had (the
tests that need one skip with that reason); any other failure is an error.

Each test gets a database of its own (``create_database``); the cluster trusts local connections (it
listens on 127.0.0.1 only) and trades durability for speed (``fsync=off``), as a test cluster may.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SUPERUSER = "genesys"
START_TIMEOUT_S = 60
_SERVER_USER = "postgres"  # Debian's package creates it


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries here (or no unprivileged user to run them as)."""


def find_bin_dir() -> Path | None:
    """The directory of ``initdb``/``pg_ctl``/``postgres``, newest version first; None when absent."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A running cluster; ``url(db)`` is a SQLAlchemy URL (psycopg 3) to one of its databases."""

    bin_dir: Path
    root: Path
    port: int
    _run_as: list[str]
    _names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"

    def _ctl(self, *args: str, timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        command = [*self._run_as, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    def stop(self) -> None:
        self._ctl("stop", "-m", "immediate", "-w", timeout=30)


def _run_as() -> list[str]:
    """The command prefix that drops root (initdb refuses it); empty for an unprivileged user."""
    if os.geteuid() != 0:
        return []
    import pwd

    try:
        pwd.getpwnam(_SERVER_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root and there is no '{_SERVER_USER}' user to run PostgreSQL as"
        ) from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root without runuser (util-linux) to drop privileges")
    return [runuser, "-u", _SERVER_USER, "--"]


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user=_SERVER_USER, group=None)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a fresh cluster and yield it; stop it and delete its files afterwards.

    Raises ``PostgresUnavailable`` when no PostgreSQL binaries are installed, ``RuntimeError`` (with
    the server's log) when they are but the server does not start.
    """
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable(
            "PostgreSQL is not installed (no initdb on the PATH or in /usr/lib/postgresql/*/bin); "
            "`make postgres` installs Debian's package"
        )
    run_as = _run_as()
    # Not under pytest's tmp dirs (private to the test user) nor, as root, under a TMPDIR the server's
    # user may not traverse: the server may run as another user.
    root = Path(tempfile.mkdtemp(prefix="genesys-pg-", dir="/tmp" if run_as else None))
    try:
        _chown(root)
        server = _start(bin_dir, root, run_as)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _start(bin_dir: Path, root: Path, run_as: list[str]) -> PostgresServer:
    data = root / "data"
    init = subprocess.run(
        [
            *run_as,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if init.returncode != 0:
        raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}")
    port = _free_port()
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": f"'{root}'",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",
        "shared_buffers": "32MB",
        # Not UTC, so that a datetime read back in the session's zone is caught if it is mishandled.
        "timezone": "'Asia/Kolkata'",
    }
    with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("\n# genesys tests\n")
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
    server = PostgresServer(bin_dir=bin_dir, root=root, port=port, _run_as=run_as)
    log = root / "server.log"
    log.touch()
    _chown(log)
    started = server._ctl("start", "-w", "-t", str(START_TIMEOUT_S), "-l", str(log))
    if started.returncode != 0:
        text = log.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"PostgreSQL did not start ({started.returncode}): {started.stderr}\n{text}")
    return server
