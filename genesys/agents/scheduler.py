"""The society in the background: ``CycleScheduler`` starts learning cycles without blocking the API.

One worker thread (``start`` / ``stop``, from the app's lifespan) runs the cycles, one at a time:

- at start, a cycle left interrupted or orphaned (its process died) is resumed from its saved state;
- every ``autogen_agents.trigger_threshold`` interactions (``data_analyst.trigger_threshold``, 100)
  since the last cycle started, a cycle starts (``trigger: threshold``), checked every
  ``autogen_agents.poll_seconds`` when ``autogen_agents.schedule`` is on;
- ``trigger`` (``POST /v1/cycles``) claims a cycle at once — so that its caller gets its id, or
  ``CycleInProgress`` while another runs — and the worker runs it next.

``stop`` interrupts the cycle running now at its last saved turn (it resumes at the next start) and
waits for the thread.

Several replicas on one database (``election``): only the holder of the ``society`` lease
(``genesys.runtime.leadership``) resumes cycles and starts them on the threshold; the others stand by
and take over when the leader's lease expires (it died) or is released (a clean shutdown). A cycle
owned by the replica whose lease expired is taken over at once, without waiting for
``stale_after_seconds``. ``POST /v1/cycles`` still runs on the replica that received it: the store's
one-active-cycle slot keeps it to one cycle at a time across replicas.
"""

from __future__ import annotations

import queue
import threading

import structlog

from genesys.agents.cycles import CycleRunner
from genesys.runtime.leadership import LeaderElection
from genesys.runtime.store import Cycle, CycleInProgress, Lease
from genesys.runtime.store.cycles import CycleTrigger

log = structlog.get_logger(__name__)

SOCIETY_LEASE = "society"  # the lease (store.leases) whose holder runs the society's background work


class CycleScheduler:
    """Runs the society's cycles in a background thread. Thread-safe."""

    def __init__(
        self,
        runner: CycleRunner,
        *,
        threshold: int | None,
        poll_seconds: float = 10.0,
        automatic: bool = True,
        election: LeaderElection | None = None,
    ) -> None:
        if poll_seconds <= 0:
            raise ValueError("poll_seconds must be positive")
        if threshold is not None and threshold <= 0:
            raise ValueError("threshold must be positive")
        self.runner = runner
        self.threshold = threshold
        self.poll_seconds = poll_seconds
        self.automatic = automatic and threshold is not None
        self.election = election
        if election is not None:
            election.on_change(self._leadership_changed)
        self._claimed: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        if self.election is not None:
            self.election.start()
        self._thread = threading.Thread(target=self._loop, name="society-scheduler", daemon=True)
        self._thread.start()
        log.info(
            "society.scheduler_started",
            threshold=self.threshold,
            automatic=self.automatic,
            elected=self.election is not None,
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Interrupt the running cycle (resumable) and stop the thread."""
        self._stop.set()
        self._wake.set()
        self.runner.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("society.scheduler_stop_timeout", timeout=timeout)
        self._thread = None
        if self.election is not None:  # after the cycle was interrupted: the next leader resumes it
            self.election.stop(release=True)

    @property
    def leading(self) -> bool:
        """This replica runs the society's background work (always, without an election)."""
        return self.election is None or self.election.is_leader

    def status(self) -> dict[str, object]:
        """This replica's part in the society, for ``/readyz``: ``role`` leader, standby or single
        (no election: schedule off), the replica's id and the leader it knows of."""
        if self.election is None:
            return {"role": "single", "replica": self.runner.owner, "leader": None}
        return self.election.status()

    def trigger(
        self,
        *,
        trigger: CycleTrigger = "operator",
        requested_by: str = "operator",
        reason: str = "requested",
        force_curate: bool = False,
    ) -> Cycle:
        """Claim a cycle now and have the worker run it next; raises ``CycleInProgress``."""
        cycle = self.runner.claim(
            trigger=trigger, requested_by=requested_by, reason=reason, force_curate=force_curate
        )
        self._claimed.put(cycle.id)
        self._wake.set()
        return cycle

    def due(self) -> bool:
        """At least ``threshold`` interactions arrived since the last cycle started."""
        if self.threshold is None:
            return False
        latest = self.runner.store.cycles.latest()
        since = latest.created_at if latest is not None else None
        return self.runner.store.cycles.interactions_since(since) >= self.threshold

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as exc:  # the scheduler outlives any one cycle's failure
                log.exception("society.scheduler_error", error=str(exc))
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _step(self) -> None:
        """Run what is waiting: a claimed cycle, else a resumable one, else a due one."""
        while not self._stop.is_set():
            try:
                cycle_id = self._claimed.get_nowait()
            except queue.Empty:
                break
            self.runner.run(cycle_id)
        if self._stop.is_set() or not self.leading:
            return
        if self.runner.resume() is not None or self._stop.is_set():
            return
        if self.automatic and self.runner.store.cycles.active() is None and self.due():
            try:
                cycle = self.runner.claim(
                    trigger="threshold",
                    requested_by="scheduler",
                    reason=f"{self.threshold} new interactions since the last cycle started",
                )
            except CycleInProgress as exc:  # another process started one first
                log.info("society.trigger_skipped", reason=str(exc))
                return
            self.runner.run(cycle.id)

    def _leadership_changed(self, leading: bool, lease: Lease | None) -> None:
        if leading and lease is not None and lease.previous_holder not in (None, self.runner.owner):
            # The previous leader's lease expired or was released: a cycle it still owns is orphaned.
            self.runner.departed.add(str(lease.previous_holder))
        log.info("society.leadership", leading=leading, replica=self.runner.owner)
        self._wake.set()
