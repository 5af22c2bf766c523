"""The process that runs one untrusted program for ``genesys.tools.validation.sandbox``.

Started as ``python -I _sandbox_child.py MEMORY_MB CPU_S FSIZE_BYTES PROGRAM`` in a fresh temporary
directory with an empty environment; reads a one-line sentinel from stdin. It sets its own resource
limits (so the parent never forks with ``preexec_fn`` from a threaded process), installs an audit
hook that refuses what a HumanEval completion has no business doing, runs the program, and prints the
sentinel only when the program ran to its end: a program that exits early (``sys.exit(0)`` before
the checks) or dies never prints it.

Only the standard library is imported here: the file runs outside the Genesys package.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import resource
import sys
from typing import Any

# Everything that starts a process, sends a signal, opens a socket or loads native code.
_DENIED_EVENTS = frozenset(
    {
        "os.system",
        "os.fork",
        "os.forkpty",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.startfile",
        "os.kill",
        "os.killpg",
        "os.putenv",
        "os.unsetenv",
        "subprocess.Popen",
        "pty.spawn",
        "ctypes.dlopen",
        "ctypes.dlsym",
        "ctypes.cdata",
        "ctypes.call_function",
        "sys.addaudithook",
        "sys.remote_exec",
    }
)
# Modules whose only use here would be to get around the hook.
_DENIED_IMPORTS = frozenset({"ctypes", "_ctypes", "_posixsubprocess", "multiprocessing", "_multiprocessing"})
# Events whose string arguments are paths that are created, changed or removed.
_WRITE_PATH_EVENTS = frozenset(
    {
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.mkdir",
        "os.chmod",
        "os.chown",
        "os.truncate",
        "os.utime",
        "os.symlink",
        "os.link",
        "os.setxattr",
        "os.removexattr",
        "shutil.rmtree",
        "shutil.copyfile",
        "shutil.copytree",
        "shutil.move",
        "shutil.chown",
    }
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _set_limits(memory_mb: int, cpu_s: int, fsize_bytes: int) -> None:
    limits = [
        (resource.RLIMIT_AS, memory_mb * 1024 * 1024),
        (resource.RLIMIT_CPU, cpu_s),
        (resource.RLIMIT_FSIZE, fsize_bytes),
        (resource.RLIMIT_CORE, 0),
        # Ignored for root (CAP_SYS_RESOURCE); the audit hook and the process-group kill cover that.
        (resource.RLIMIT_NPROC, 0),
        (resource.RLIMIT_NOFILE, 64),
    ]
    for which, value in limits:
        # A hard limit already lower than ours is kept.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (value, value))


class _Policy:
    def __init__(self, sandbox: str) -> None:
        self.sandbox = sandbox
        roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, sandbox}
        self.read_roots = tuple(os.path.realpath(r) for r in roots)
        self.read_files = frozenset({"/dev/null", "/dev/urandom", "/dev/zero"})
        self.busy = False

    def inside(self, path: Any, roots: tuple[str, ...]) -> bool:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            return False
        real = os.path.realpath(path)
        return real in self.read_files or any(real == r or real.startswith(r + os.sep) for r in roots)

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if self.busy:  # the checks below call os functions that raise events of their own
            return
        self.busy = True
        try:
            self.check(event, args)
        finally:
            self.busy = False

    def check(self, event: str, args: tuple[Any, ...]) -> None:
        if event in _DENIED_EVENTS or event.startswith("socket."):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and args and str(args[0]).split(".")[0] in _DENIED_IMPORTS:
            raise PermissionError(f"sandbox: importing {args[0]} is not allowed")
        if event == "open" and args:
            path, mode, flags = [*args, None, None][:3]
            if isinstance(path, int):
                return  # an open file descriptor: stdout, stderr
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
            )
            roots = (os.path.realpath(self.sandbox),) if writes else self.read_roots
            if not self.inside(path, roots):
                raise PermissionError(f"sandbox: opening {path!r} is not allowed")
        elif event in _WRITE_PATH_EVENTS:
            for arg in args:
                if isinstance(arg, (str, bytes)) and not self.inside(arg, (os.path.realpath(self.sandbox),)):
                    raise PermissionError(f"sandbox: {event} on {arg!r} is not allowed")


def main() -> None:
    memory_mb, cpu_s, fsize_bytes = (int(a) for a in sys.argv[1:4])
    program_path = sys.argv[4]
    sentinel = sys.stdin.readline().strip()
    sys.stdin.close()
    os.close(0)
    with open(program_path, encoding="utf-8") as handle:
        source = handle.read()
    code = compile(source, program_path, "exec")
    write = os.write
    _set_limits(memory_mb, cpu_s, fsize_bytes)
    sys.addaudithook(_Policy(os.getcwd()))
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    exec(code, namespace)
    del namespace
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    write(1, f"\n{sentinel}\n".encode())
    # Skip the program's atexit hooks and non-daemon threads: the run is over.
    os._exit(0)


if __name__ == "__main__":
    main()
