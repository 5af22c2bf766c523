"""Leader election over the store's ``leases`` table: of the replicas that share a database, one holds a
named lease and does the work that must run once (the society's scheduler); the others stand by.

``LeaderElection`` runs a thread that tries to take the lease, or renews it, every ``renew_seconds``
(a third of the lease by default). A replica counts itself leader only until ``ttl_seconds`` after
the start of its last successful renewal (its own monotonic clock): a leader that stalls or loses the
database stops leading before anyone else may take over. A replica that dies stops renewing; another
takes the lease once it has expired, at most ``ttl_seconds + renew_seconds`` later. ``stop`` releases
the lease, so that a clean shutdown hands over at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from genesys.runtime.store.leases import Lease, LeaseStore

log = structlog.get_logger(__name__)

OnChange = Callable[[bool, Lease | None], object]


class LeaderElection:
    """Keeps trying for (and renewing) one lease on behalf of ``holder``. Thread-safe."""

    def __init__(
        self,
        leases: LeaseStore,
        *,
        name: str,
        holder: str,
        ttl_seconds: float,
        renew_seconds: float | None = None,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        renew = renew_seconds if renew_seconds is not None else ttl_seconds / 3
        if not 0 < renew < ttl_seconds:
            raise ValueError("renew_seconds must be positive and shorter than ttl_seconds")
        self.leases = leases
        self.name = name
        self.holder = holder
        self.ttl_seconds = ttl_seconds
        self.renew_seconds = renew
        self._lock = threading.Lock()
        self._lease: Lease | None = None  # the latest row seen, whoever holds it
        self._valid_until = 0.0  # monotonic: we lead until then, unless renewed
        self._leading = False  # what listeners were last told
        self._listeners: list[OnChange] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- state --------------------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        with self._lock:
            return self._holds()

    @property
    def lease(self) -> Lease | None:
        """The lease as last read (it may name another holder)."""
        with self._lock:
            return self._lease

    def status(self) -> dict[str, object]:
        """What ``/readyz`` shows: this replica's role, its id, and the leader it knows of."""
        with self._lock:
            lease = self._lease
            leading = self._holds()
        known = lease is not None and not lease.expired()
        return {
            "role": "leader" if leading else "standby",
            "replica": self.holder,
            "leader": lease.holder if lease is not None and known else None,
            "term": lease.term if lease is not None else None,
            "lease_seconds": self.ttl_seconds,
        }

    def on_change(self, listener: OnChange) -> None:
        """Call ``listener(leading, lease)`` (from the election's thread) when this replica starts or
        stops leading."""
        with self._lock:
            self._listeners.append(listener)

    # -- running ------------------------------------------------------------------------------------

    def check(self) -> bool:
        """One round: take or renew the lease; returns whether this replica leads now."""
        started = time.monotonic()
        try:
            lease = self.leases.acquire(self.name, self.holder, ttl_seconds=self.ttl_seconds)
            current = lease if lease is not None else self.leases.get(self.name)
        except Exception as exc:  # the database is away: we lead only until our lease would expire
            log.warning("leader.renew_failed", lease=self.name, holder=self.holder, error=str(exc))
            lease, current = None, None
            failed = True
        else:
            failed = False
        with self._lock:
            if lease is not None:
                self._valid_until = started + self.ttl_seconds
            elif not failed:
                self._valid_until = 0.0  # someone else holds it
            if current is not None or not failed:
                self._lease = current
            leading = self._holds()
            changed = leading != self._leading
            self._leading = leading
            listeners = list(self._listeners) if changed else []
        if changed:
            if leading and lease is not None:
                log.info(
                    "leader.elected",
                    lease=self.name,
                    holder=self.holder,
                    term=lease.term,
                    previous_holder=lease.previous_holder,
                )
            else:
                log.warning("leader.lost", lease=self.name, holder=self.holder)
            for listener in listeners:
                try:
                    listener(leading, lease)
                except Exception as exc:  # a listener must not stop the election
                    log.exception("leader.listener_failed", error=str(exc))
        return leading

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, *, release: bool = True, timeout: float = 10.0) -> None:
        """Stop renewing and, with ``release``, hand the lease back now."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            was_leading = self._holds()
            self._valid_until = 0.0
            self._leading = False
        if release and was_leading:
            try:
                self.leases.release(self.name, self.holder)
                log.info("leader.released", lease=self.name, holder=self.holder)
            except Exception as exc:  # it expires by itself
                log.warning("leader.release_failed", lease=self.name, error=str(exc))

    def _holds(self) -> bool:
        return time.monotonic() < self._valid_until

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.check()
            self._stop.wait(self.renew_seconds)
