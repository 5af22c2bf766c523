"""``RunManager``: training runs as subprocesses, with a run id, a persisted state and progress.

A run is ``queued`` when its row and spec are written, ``running`` once the worker process exists, and
ends ``succeeded``, ``failed`` (with the reason) or ``cancelled``. The worker records its own end when it
can (success, an exception, a NaN loss, SIGTERM); a watcher thread here records the end the worker
cannot (killed by a signal: the out-of-memory killer, ``kill -9``, a segfault). Either way the adapter
exists only in the run's own directory, ``<data_dir>/runs/<run_id>/adapter``; nothing that serves is
touched, and nothing is registered.

Each worker is the leader of its own process group, so ``cancel`` reaches ``accelerate launch`` and
every training process under it: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from genesys.errors import InvalidRequest
from genesys.runtime.store.db import Database
from genesys.runtime.store.training_runs import RunState, TrainingRun, TrainingRunStore
from genesys.tools.training.config import TrainingConfig
from genesys.tools.training.spec import LOG_FILE, RunSpec

if TYPE_CHECKING:
    from genesys.runtime.settings import Settings

log = structlog.get_logger(__name__)

WORKER_MODULE = "genesys.tools.training.worker"
DEFAULT_GRACE_S = 10.0
_LOG_TAIL_LINES = 15


def new_run_id() -> str:
    return f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"


def cuda_device_count() -> int:
    """CUDA devices torch sees (0 without torch's CUDA build)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def worker_command(spec_path: Path, *, n_devices: int = 1, python: str = sys.executable) -> list[str]:
    """The command line of a run: the worker module, under ``accelerate launch`` for several GPUs.

    Raises ``InvalidRequest`` for ``n_devices`` below 1.
    """
    if n_devices < 1:
        raise InvalidRequest(f"n_devices must be at least 1, not {n_devices}", param="n_devices")
    if n_devices == 1:
        return [python, "-m", WORKER_MODULE, str(spec_path)]
    return [
        python,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_machines",
        "1",
        "--num_processes",
        str(n_devices),
        # A free port per run, so that two runs on one machine do not collide on the default 29500.
        "--main_process_port",
        str(_free_port()),
        "--module",
        WORKER_MODULE,
        str(spec_path),
    ]


def worker_environment() -> dict[str, str]:
    """The worker's environment: this one, with unbuffered output and sleeping OpenMP threads.

    OpenMP threads that spin while they wait are the default; on a machine where other processes
    (the server, other runs) want the same cores they turn a 3 s step into 10-30 s (measured on 2
    busy cores with SmolLM2: 9-33 s a step spinning, 3.5 s with OMP_WAIT_POLICY=PASSIVE). A value
    already set in the environment wins.
    """
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env |= {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    return env


class RunManager:
    """Starts, watches, cancels and waits for training runs. Thread-safe."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: TrainingRunStore | None = None,
        runs_dir: Path | None = None,
        python: str = sys.executable,
        grace_s: float = DEFAULT_GRACE_S,
    ) -> None:
        self.settings = settings
        self.runs = store or TrainingRunStore(Database(settings.database_url))
        self.runs_dir = Path(runs_dir or settings.data_dir / "runs")
        self.python = python
        self.grace_s = grace_s
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._watchers: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    # -- starting -----------------------------------------------------------------------------

    def start(
        self,
        train_path: Path,
        *,
        validation_path: Path | None = None,
        preference_path: Path | None = None,
        dataset_version: str | None = None,
        config: TrainingConfig | None = None,
        base_model: Path | None = None,
        n_devices: int | None = None,
        run_id: str | None = None,
        inject_nan_at_step: int | None = None,
        system_prompt: str | None = None,
        replay_path: Path | None = None,
    ) -> TrainingRun:
        """Start a run in a subprocess and return it (``running``) at once.

        ``config`` defaults to the settings' (``TrainingConfig.from_settings``); ``base_model`` to the
        configured model (``model.path``, else the embedded SmolLM2); ``n_devices`` to every CUDA GPU
        (``accelerate launch`` above one). Data problems do not raise here: the run fails with the
        reason. Raises ``InvalidRequest`` for a run id that exists already.
        """
        run_id = run_id or new_run_id()
        config = config or TrainingConfig.from_settings(self.settings)
        devices = n_devices if n_devices is not None else max(1, cuda_device_count())
        output_dir = self.runs_dir / run_id
        if output_dir.exists():
            raise InvalidRequest(f"run directory {output_dir} exists already", param="run_id")
        spec = RunSpec(
            run_id=run_id,
            database_url=self.settings.database_url,
            output_dir=output_dir.resolve(),
            train_path=Path(train_path).resolve(),
            validation_path=Path(validation_path).resolve() if validation_path else None,
            preference_path=Path(preference_path).resolve() if preference_path else None,
            dataset_version=dataset_version,
            replay_path=Path(replay_path).resolve() if replay_path else None,
            system_prompt=system_prompt,
            base_model=base_model if base_model is not None else self.settings.model.path,
            cache_dir=(self.settings.data_dir / "cache" / "models").resolve(),
            device=self.settings.model.transformers.device,
            dtype=self.settings.model.transformers.dtype,
            n_devices=devices,
            training=config.to_dict(),
            inject_nan_at_step=inject_nan_at_step,
        )
        self.runs.create(
            TrainingRun(
                id=run_id,
                dataset_version=dataset_version,
                base_model=str(spec.base_model) if spec.base_model else None,
                output_dir=str(output_dir),
                spec=spec.public(),
            )
        )
        spec_path = spec.write()
        command = worker_command(spec_path, n_devices=devices, python=self.python)
        env = worker_environment()
        try:
            with open(output_dir / LOG_FILE, "ab") as log_file:
                process = subprocess.Popen(
                    command, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
        except OSError as exc:
            self.runs.finish(run_id, "failed", error=f"could not start the worker: {exc}")
            return self.runs.get(run_id)
        with self._lock:
            self._processes[run_id] = process
        self.runs.mark_running(run_id, pid=process.pid, phase="starting")
        watcher = threading.Thread(
            target=self._watch, args=(run_id, process), name=f"run-{run_id}", daemon=True
        )
        with self._lock:
            self._watchers[run_id] = watcher
        watcher.start()
        log.info("training.run_started", run_id=run_id, pid=process.pid, command=command)
        return self.runs.get(run_id)

    # -- reading ------------------------------------------------------------------------------

    def get(self, run_id: str) -> TrainingRun:
        """The run as stored now (its latest progress included); raises ``NotFound``."""
        return self.runs.get(run_id)

    def wait(self, run_id: str, timeout: float | None = None, *, poll_s: float = 0.5) -> TrainingRun:
        """Block until the run ends; returns it. Raises ``TimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            watcher = self._watchers.get(run_id)
        if watcher is not None:
            watcher.join(timeout)
            if watcher.is_alive():
                raise TimeoutError(f"training run {run_id} still running after {timeout} s")
            return self.runs.get(run_id)
        # A run started by another process: follow the store, and notice a worker that vanished.
        while True:
            run = self.runs.get(run_id)
            if run.finished:
                return run
            if run.state == "running" and run.pid is not None and not _alive(run.pid):
                self.runs.finish(run_id, "failed", error="the worker process is gone without an end state")
                return self.runs.get(run_id)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"training run {run_id} still running after {timeout} s")
            time.sleep(poll_s)

    # -- stopping -----------------------------------------------------------------------------

    def cancel(self, run_id: str, *, grace_s: float | None = None) -> TrainingRun:
        """Stop a run: SIGTERM to its process group, SIGKILL after ``grace_s``; it ends ``cancelled``.

        A run that already ended is returned as it is. Raises ``NotFound`` for an unknown id.
        """
        run = self.runs.get(run_id)
        if run.finished:
            return run
        self.runs.request_cancel(run_id)
        grace = self.grace_s if grace_s is None else grace_s
        with self._lock:
            process = self._processes.get(run_id)
        pid = process.pid if process is not None else run.pid
        if pid is not None and (process is not None or _is_worker(pid, run_id)):
            self._terminate(pid, process, grace)
        with self._lock:
            watcher = self._watchers.get(run_id)
        if watcher is not None:
            watcher.join(grace + 5)
        # The worker records "cancelled" itself on SIGTERM; a worker that never ran, or died on
        # SIGKILL, cannot.
        self.runs.finish(run_id, "cancelled", error="cancelled by request")
        log.info("training.run_cancelled", run_id=run_id)
        return self.runs.get(run_id)

    def close(self, *, grace_s: float | None = None) -> None:
        """Cancel every run this manager started that is still running (at shutdown)."""
        with self._lock:
            running = list(self._processes)
        for run_id in running:
            self.cancel(run_id, grace_s=grace_s)

    def recover(self) -> list[str]:
        """Fail the runs left ``running`` by a worker that no longer exists (after a restart of the
        service or the machine); returns their ids. Only for workers on this machine."""
        lost = []
        for run in self.runs.recent(state="running", limit=1000):
            with self._lock:
                ours = run.id in self._processes
            gone = not ours and (run.pid is None or not _alive(run.pid))
            if gone and self.runs.finish(run.id, "failed", error="the worker process is gone (restart?)"):
                lost.append(run.id)
        return lost

    def _terminate(self, pid: int, process: subprocess.Popen[bytes] | None, grace: float) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if (process.poll() is not None) if process is not None else not _alive(pid):
                return
            time.sleep(0.1)
        log.warning("training.run_kill", pid=pid, reason=f"still alive {grace} s after SIGTERM")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)

    def _watch(self, run_id: str, process: subprocess.Popen[bytes]) -> None:
        """Wait for the worker and record the end it could not record itself."""
        returncode = process.wait()
        try:
            run = self.runs.get(run_id)
            if not run.finished:
                state, reason = _end_from_exit(returncode, run.cancel_requested, Path(run.output_dir))
                self.runs.finish(run_id, state, error=reason)
            elif run.state == "succeeded" and returncode != 0:
                log.warning("training.exit_after_success", run_id=run_id, returncode=returncode)
            log.info(
                "training.run_ended", run_id=run_id, returncode=returncode, state=self.runs.get(run_id).state
            )
        except Exception as exc:  # a watcher must never die silently with the run unrecorded
            log.error("training.watch_failed", run_id=run_id, error=str(exc))
        finally:
            with self._lock:
                self._processes.pop(run_id, None)


def _end_from_exit(returncode: int, cancel_requested: bool, output_dir: Path) -> tuple[RunState, str]:
    """(state, reason) for a worker that ended without recording it."""
    if cancel_requested:
        return "cancelled", "cancelled by request"
    if returncode < 0:
        name = signal.Signals(-returncode).name
        why = " (out of memory, or killed)" if -returncode == signal.SIGKILL else ""
        return "failed", f"the worker was killed by {name}{why}"
    if returncode == 0:
        return "failed", "the worker exited without recording success"
    return "failed", f"the worker exited with status {returncode}: {_log_tail(output_dir / LOG_FILE)}"


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(lines[-_LOG_TAIL_LINES:])[-1500:]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not a running worker.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _is_worker(pid: int, run_id: str) -> bool:
    """Whether ``pid`` is still this run's worker (a stored pid may have been reused since)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().decode("utf-8", errors="replace")
    except OSError:
        return False
    return WORKER_MODULE in cmdline and run_id in cmdline


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
