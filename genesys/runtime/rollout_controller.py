"""Makes a running server follow the rollouts: hot swap of adapters and the A/B router's split.

The rollout tools change rows (``store.rollouts``, the adapter registry); ``RolloutController.apply``
makes the engine and the router match them, in an order that fails no request:

1. load every version the new split needs (llama.cpp builds a model per adapter; a load takes a
   second or two while the old split keeps serving);
2. switch the router atomically (``AbRouter.set_split``);
3. unload a version that no longer serves only ``drain_seconds`` later, so that a request routed to
   it just before the switch still finds it.

A candidate whose files cannot be loaded is never routed to: its rollout is rolled back through the
driver with the reason. A production version that cannot be loaded leaves the previous one serving.

A background thread (``start`` / ``stop``, from the app's lifespan; one controller per process)
calls the driver's ``tick`` every ``tick_seconds`` (the rollout tools' state machine, injected so
that ``runtime`` does not import ``tools``) and then ``apply``. Several replicas may each run one:
the store refuses a step from a state another replica already left, and each replica's ``apply``
follows the same rows.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Protocol

import structlog

from genesys.errors import GenesysError
from genesys.runtime.ab_router import BASE_VERSION, AbRouter, Split
from genesys.runtime.engines.base import InferenceEngine
from genesys.runtime.metrics import Metrics
from genesys.runtime.serving_versions import load_serving_versions, load_version, serving_split
from genesys.runtime.store import Store

log = structlog.get_logger(__name__)


class RolloutDriver(Protocol):
    """The rollout state machine, as the controller calls it (``genesys.tools.rollout.RolloutService``)."""

    def tick(self, now: datetime | None = None) -> object:
        """Evaluate the active rollout and take the step it calls for."""
        ...

    def abort(self, reason: str) -> object:
        """Roll the active rollout back because its candidate cannot be served."""
        ...


def _adapters(split: Split) -> set[str]:
    serving = {split.production}
    if split.candidate is not None and split.traffic > 0:
        serving.add(split.candidate)
    return serving - {BASE_VERSION}


class RolloutController:
    """Applies the store's rollouts to one engine and router. Thread-safe."""

    def __init__(
        self,
        engine: InferenceEngine,
        router: AbRouter,
        store: Store,
        *,
        driver: RolloutDriver | None = None,
        tick_seconds: float = 60.0,
        drain_seconds: float = 30.0,
        metrics: Metrics | None = None,
    ) -> None:
        if tick_seconds <= 0:
            raise ValueError("tick_seconds must be positive")
        if drain_seconds < 0:
            raise ValueError("drain_seconds must not be negative")
        self.engine = engine
        self.router = router
        self.store = store
        self.driver = driver
        self.tick_seconds = tick_seconds
        self.drain_seconds = drain_seconds
        self.metrics = metrics
        self._lock = threading.RLock()
        self._draining: dict[str, float] = {}  # version -> monotonic time it may be unloaded
        self._stop = threading.Event()
        # Wakes the loop early: a new version to drain, or stop.
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    # -- life cycle -------------------------------------------------------------------------------

    def start(self, *, loop: bool = True) -> Split:
        """Load the serving versions into the (loaded) engine, route, and start the tick loop."""
        with self._lock:
            split = load_serving_versions(self.engine, self.store.adapters, self.store.rollouts)
            self.router.set_split(split)
            self._observe(split)
            self._started = True
        log.info(
            "server.serving", production=split.production, candidate=split.candidate, traffic=split.traffic
        )
        # A rollout whose candidate failed to load is ended now rather than at the first tick.
        split = self.apply()
        if loop and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="rollout-controller", daemon=True)
            self._thread.start()
        return split

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop (the adapters stay loaded)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # -- applying ---------------------------------------------------------------------------------

    def run_once(self, now: datetime | None = None) -> Split:
        """One tick of the driver, then ``apply``."""
        if self.driver is not None:
            self.driver.tick(now)
        return self.apply()

    def apply(self) -> Split:
        """Make the engine and the router serve what the store says; returns the split now in force.
        Before ``start`` (the engine is still loading) it changes nothing: ``start`` will apply."""
        with self._lock:
            if not self._started:
                return self.router.split
            current = self.router.split
            desired = serving_split(self.store.adapters, self.store.rollouts)
            loaded = set(self.engine.info().adapters)
            production = desired.production
            if production != BASE_VERSION and production not in loaded:
                if self._load(production):
                    loaded.add(production)
                else:
                    production = current.production
            candidate = desired.candidate
            if candidate is not None and candidate not in loaded:
                if self._load(candidate):
                    loaded.add(candidate)
                else:
                    self._abort(f"the server could not load adapter {candidate}; see its log")
                    candidate = None
            split = Split(production, candidate, desired.traffic if candidate is not None else 0.0)
            if split != current:
                self.router.set_split(split)
                log.info(
                    "rollout.split",
                    production=split.production,
                    candidate=split.candidate,
                    traffic=split.traffic,
                    before=f"{current.production}|{current.candidate}|{current.traffic}",
                )
            serving = _adapters(split)
            deadline = time.monotonic() + self.drain_seconds
            for version in _adapters(current) - serving:
                self._draining.setdefault(version, deadline)
                self._wake.set()
            for version in serving:
                self._draining.pop(version, None)
            self._unload_drained()
            self._observe(split)
            return split

    def unload_drained(self, *, now: float | None = None) -> list[str]:
        """Unload the versions whose drain time is over; returns them."""
        with self._lock:
            return self._unload_drained(now)

    @property
    def draining(self) -> dict[str, float]:
        """Versions waiting to be unloaded, with the monotonic time they may be."""
        with self._lock:
            return dict(self._draining)

    # -- internals --------------------------------------------------------------------------------

    def _load(self, version: str) -> bool:
        try:
            load_version(self.engine, self.store.adapters.get(version))
        except GenesysError as exc:
            log.error("adapter.load_failed", version=version, reason=str(exc))
            return False
        return True

    def _abort(self, reason: str) -> None:
        if self.driver is None:
            return
        try:
            self.driver.abort(reason)
        except GenesysError as exc:
            log.error("rollout.abort_failed", reason=reason, error=str(exc))

    def _unload_drained(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        serving = _adapters(self.router.split)
        done = [v for v, due in self._draining.items() if due <= now and v not in serving]
        for version in done:
            del self._draining[version]
            try:
                self.engine.unload_adapter(version)
            except GenesysError as exc:
                log.error("adapter.unload_failed", version=version, reason=str(exc))
                continue
            log.info("adapter.unloaded", version=version)
        return done

    def _observe(self, split: Split) -> None:
        if self.metrics is not None:
            self.metrics.observe_split(split.production, split.candidate, split.traffic)

    def _run(self) -> None:
        next_tick = time.monotonic() + self.tick_seconds
        while not self._stop.is_set():
            with self._lock:
                drains = list(self._draining.values())
            wake = min([next_tick, *drains])
            self._wake.wait(max(0.01, wake - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self.tick_seconds
                    self.run_once()
                else:
                    self.unload_drained()
            except Exception as exc:  # the loop must outlive any one bad tick
                log.exception("rollout.tick_failed", error=str(exc))
