"""Alerts in the background: ``AlertLoop`` evaluates the alert rules every ``interval_seconds``.

The evaluation (``genesys.tools.alerts.AlertEvaluator.evaluate``: the rules, the stored alerts,
their actions) is injected, so that ``runtime`` does not import ``tools``. The first evaluation runs
as soon as the loop starts; the alerts live in the store, so a restart does not fire them again.
A failing evaluation is logged and the loop goes on. ``start`` / ``stop`` come from the app's
lifespan, and only when ``alerts.enabled`` is on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)


class AlertLoop:
    """Calls ``evaluate`` now and then every ``interval_seconds`` in a daemon thread."""

    def __init__(self, evaluate: Callable[[], object], *, interval_seconds: float) -> None:
        if interval_seconds <= 0:
            raise ValueError("interval_seconds must be positive")
        self.evaluate = evaluate
        self.interval_seconds = interval_seconds
        self.evaluations = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="alert-loop", daemon=True)
        self._thread.start()
        log.info("alerts.started", interval_seconds=self.interval_seconds)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the evaluation in progress, if any."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("alerts.stop_timeout", timeout=timeout)
        self._thread = None

    def run_once(self) -> None:
        """One evaluation; its failure is logged, not raised."""
        try:
            self.evaluate()
        except Exception as exc:  # the loop outlives any one evaluation's failure
            log.exception("alerts.evaluation_failed", error=str(exc))
        finally:
            self.evaluations += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval_seconds)
