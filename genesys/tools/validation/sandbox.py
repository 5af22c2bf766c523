"""Run untrusted Python (model-written code) in a subprocess with time, memory and file limits.

The program runs in ``python -I -B`` (no environment variables, no user site, no bytecode written) in
a fresh temporary directory that is deleted afterwards, with an empty environment, in its own
process group. The child (``_sandbox_child.py``) limits itself before the program starts:
``RLIMIT_AS`` (memory), ``RLIMIT_CPU``, ``RLIMIT_FSIZE`` (files and captured output), no core dumps,
``RLIMIT_NPROC`` 0 (no new processes; root ignores it) and 64 file descriptors; an audit hook
refuses process creation, signals, sockets, native code (ctypes), writes outside the temporary
directory and reads outside it and the Python installation. The parent kills the whole process
group at the wall-clock timeout and again when the program ends, so nothing it started survives.

A run passes only if the program reached its end: the child prints a random sentinel (given on
stdin, then closed) after the program returns, so ``sys.exit(0)`` or ``os._exit(0)`` before the
checks is a failure, not a pass.

This is a guard against model mistakes and the usual hostile snippets (infinite loops, memory bombs,
fork bombs, stray writes), not a boundary against a determined attacker: run the validator in a
container for that.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_CHILD = Path(__file__).with_name("_sandbox_child.py")
_TAIL_BYTES = 4096


@dataclass(frozen=True)
class SandboxResult:
    """How one sandboxed run ended."""

    completed: bool
    returncode: int | None
    timed_out: bool
    stdout: str
    stderr: str
    duration_s: float

    @property
    def reason(self) -> str:
        """One line: why the run passed or failed."""
        if self.completed:
            return "ran to the end"
        if self.timed_out:
            return f"timed out after {self.duration_s:.1f} s"
        last = next((line for line in reversed(self.stderr.splitlines()) if line.strip()), "")
        if self.returncode is not None and self.returncode < 0:
            name = _signal_name(-self.returncode)
            return f"killed by {name}" + (f": {last}" if last else "")
        if self.returncode == 0:
            return "exited before the end of the program (sys.exit or os._exit)"
        return f"exited with code {self.returncode}" + (f": {last}" if last else "")


def run_sandboxed(
    source: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    max_output_bytes: int = 1024 * 1024,
) -> SandboxResult:
    """Run the Python program ``source`` under the limits above; never raises for what it does."""
    sentinel = secrets.token_hex(16)
    cpu_s = math.ceil(timeout_s) + 1
    with tempfile.TemporaryDirectory(prefix="genesys-sandbox-") as work:
        workdir = Path(work)
        program = workdir / "program.py"
        program.write_text(source, encoding="utf-8")
        stdout_path, stderr_path = workdir / ".stdout", workdir / ".stderr"
        command = [
            sys.executable,
            "-I",
            "-B",
            str(_CHILD),
            str(memory_mb),
            str(cpu_s),
            str(max_output_bytes),
            str(program),
        ]
        start = time.monotonic()
        timed_out = False
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            process = subprocess.Popen(
                command,
                cwd=workdir,
                env={},
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
            )
            try:
                assert process.stdin is not None
                process.stdin.write(f"{sentinel}\n".encode())
                process.stdin.close()
            except BrokenPipeError:
                pass
            try:
                returncode: int | None = process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                returncode = None
            finally:
                _kill_group(process.pid)
                if timed_out:
                    process.wait()
        duration = time.monotonic() - start
        stdout = _tail(stdout_path)
        stderr = _tail(stderr_path)
    completed = not timed_out and returncode == 0 and stdout.rstrip().endswith(sentinel)
    return SandboxResult(
        completed=completed,
        returncode=returncode,
        timed_out=timed_out,
        stdout=stdout.replace(sentinel, "").rstrip(),
        stderr=stderr,
        duration_s=duration,
    )


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - _TAIL_BYTES))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
