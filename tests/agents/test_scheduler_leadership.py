"""Two schedulers on one database, as two replicas run them: only the holder of the society lease starts
cycles on the threshold; when it dies (stops renewing), the other takes the lease once it expires and
resumes the cycle the dead one left running, without waiting for ``stale_after_seconds``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from genesys.agents.cycles import CycleRunner
from genesys.agents.scheduler import SOCIETY_LEASE, CycleScheduler
from genesys.runtime.leadership import LeaderElection
from genesys.runtime.store import Cycle, Store, utcnow
from tests.agents.conftest import record_interaction
from tests.agents.test_cycles import wait_for


def replica(settings: Any, store: Store, name: str) -> CycleScheduler:
    runner = CycleRunner(settings, store, owner=name)
    election = LeaderElection(
        store.leases, name=SOCIETY_LEASE, holder=name, ttl_seconds=1.0, renew_seconds=0.2
    )
    return CycleScheduler(runner, threshold=3, poll_seconds=0.2, election=election)


def test_only_the_leader_runs_the_society_and_the_other_takes_over(settings: Any, store_url: str) -> None:
    store = Store(store_url)
    a = replica(settings, Store(store_url), "replica-a:1")
    b = replica(settings, Store(store_url), "replica-b:2")
    a.start()
    try:
        wait_for(lambda: a.leading, 30, "replica a to lead")
        b.start()
        wait_for(lambda: b.status()["leader"] == "replica-a:1", 30, "replica b to see the leader")
        assert b.status()["role"] == "standby" and not b.leading

        for n in range(3):
            record_interaction(store, f"How do I sort a list, take {n}?", answer="Use sorted(items).")
        first = wait_for(store.cycles.latest, 60, "a cycle to start")
        assert (first.trigger, first.owner) == ("threshold", "replica-a:1")
        wait_for(lambda: not store.cycles.get(first.id).active, 120, "the first cycle to end")

        # Replica a dies: it stops renewing its lease, leaving a cycle it owned running (its heartbeat
        # stopped minutes ago, well within stale_after_seconds, and its host is not this one).
        assert a.election is not None
        a.election.stop(release=False)
        now = utcnow()
        orphan = store.cycles.claim(
            Cycle(
                id="cy-orphan",
                trigger="operator",
                requested_by="ana",
                reason="started on replica a",
                mode="policy",
                state="running",
                owner="replica-a:1",
                created_at=now,
                heartbeat_at=now - timedelta(minutes=5),
            )
        )
        wait_for(lambda: b.leading, 60, "replica b to take the lease")
        lease = store.leases.get(SOCIETY_LEASE)
        assert lease is not None and (lease.holder, lease.previous_holder, lease.term) == (
            "replica-b:2",
            "replica-a:1",
            2,
        )
        resumed = wait_for(
            lambda: (c := store.cycles.get(orphan.id)) and not c.active and c, 120, "b to resume the orphan"
        )
        assert (resumed.owner, resumed.resumes) == ("replica-b:2", 1)
        assert store.cycles.count() == 2  # b started nothing else: no new interactions since
    finally:
        b.stop()
        a.stop()
