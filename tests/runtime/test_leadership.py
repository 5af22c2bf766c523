"""The lease in the store and the leader election over it, on both backends: one holder at a time, a
renewal keeps it, an expired or released lease passes to the next replica (with a new term and the
name of the one before), and of many replicas trying at once exactly one gets it."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from genesys.runtime.leadership import LeaderElection
from genesys.runtime.store import Lease, Store

T0 = datetime(2026, 4, 1, 12, tzinfo=UTC)
S = timedelta(seconds=1)


def test_a_lease_has_one_holder_until_it_expires(store_url: str) -> None:
    leases = Store(store_url).leases
    first = leases.acquire("society", "a:1", ttl_seconds=30, now=T0)
    assert first is not None and (first.holder, first.term, first.previous_holder) == ("a:1", 1, None)
    assert first.expires_at == T0 + 30 * S and first.expires_at.tzinfo is not None
    assert leases.acquire("society", "b:2", ttl_seconds=30, now=T0 + 29 * S) is None

    renewed = leases.acquire("society", "a:1", ttl_seconds=30, now=T0 + 20 * S)
    assert renewed is not None and renewed.term == 1 and renewed.acquired_at == T0
    assert renewed.expires_at == T0 + 50 * S
    assert leases.acquire("society", "b:2", ttl_seconds=30, now=T0 + 49 * S) is None

    taken = leases.acquire("society", "b:2", ttl_seconds=30, now=T0 + 50 * S)
    assert taken is not None and (taken.holder, taken.term, taken.previous_holder) == ("b:2", 2, "a:1")
    assert taken.acquired_at == T0 + 50 * S
    assert leases.acquire("society", "a:1", ttl_seconds=30, now=T0 + 51 * S) is None
    stored = leases.get("society")
    assert stored is not None and stored.held_by("b:2", T0 + 51 * S) and not stored.held_by("a:1", T0)


def test_a_released_lease_passes_at_once(store_url: str) -> None:
    leases = Store(store_url).leases
    leases.acquire("society", "a:1", ttl_seconds=30, now=T0)
    assert not leases.release("society", "b:2", now=T0 + S)  # not b's to release
    assert leases.release("society", "a:1", now=T0 + S)
    taken = leases.acquire("society", "b:2", ttl_seconds=30, now=T0 + 2 * S)
    assert taken is not None and (taken.term, taken.previous_holder) == (2, "a:1")
    assert leases.get("other") is None
    with pytest.raises(ValueError, match="ttl_seconds"):
        leases.acquire("society", "a:1", ttl_seconds=0)


def test_of_many_replicas_trying_at_once_one_gets_the_lease(store_url: str) -> None:
    replicas = [Store(store_url).leases for _ in range(6)]
    barrier = threading.Barrier(len(replicas))
    won: list[Lease | None] = [None] * len(replicas)

    def attempt(i: int) -> None:
        barrier.wait()
        won[i] = replicas[i].acquire("society", f"replica:{i}", ttl_seconds=30)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(replicas))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    holders = [lease.holder for lease in won if lease is not None]
    assert len(holders) == 1
    stored = replicas[0].get("society")
    assert stored is not None and stored.holder == holders[0] and stored.term == 1


def test_election_hands_over_on_release_and_on_expiry(store_url: str) -> None:
    store = Store(store_url)
    a = LeaderElection(store.leases, name="society", holder="a:1", ttl_seconds=0.6, renew_seconds=0.2)
    b = LeaderElection(Store(store_url).leases, name="society", holder="b:2", ttl_seconds=0.6)
    changes: list[tuple[str, bool]] = []
    a.on_change(lambda leading, _: changes.append(("a", leading)))
    b.on_change(lambda leading, _: changes.append(("b", leading)))

    assert a.check() and not b.check()
    assert a.is_leader and not b.is_leader
    assert b.status() == {
        "role": "standby",
        "replica": "b:2",
        "leader": "a:1",
        "term": 1,
        "lease_seconds": 0.6,
    }
    assert a.status()["role"] == "leader"

    # A clean shutdown releases the lease: the other replica takes it at its next round.
    a.stop(release=True)
    assert not a.is_leader and b.check()
    lease = b.lease
    assert lease is not None and (lease.term, lease.previous_holder) == (2, "a:1")

    # A replica that stops renewing (it died) keeps the lease until it expires, then loses it.
    b.stop(release=False)
    assert not a.check()
    deadline = time.monotonic() + 30
    while not a.check():
        assert time.monotonic() < deadline, "the expired lease was never taken over"
        time.sleep(0.1)
    taken = a.lease
    assert taken is not None and (taken.holder, taken.term, taken.previous_holder) == ("a:1", 3, "b:2")
    assert changes == [("a", True), ("b", True), ("a", True)]


def test_a_leader_that_cannot_renew_stops_leading_by_itself(store_url: str) -> None:
    store = Store(store_url)
    election = LeaderElection(store.leases, name="society", holder="a:1", ttl_seconds=0.5)
    assert election.check()

    def unreachable(*args: object, **kwargs: object) -> None:
        raise ConnectionError("database unreachable")

    election.leases.acquire = unreachable  # type: ignore[method-assign]
    election.check()  # a failed renewal is logged, not raised
    deadline = time.monotonic() + 30
    while election.is_leader:  # it leads only until the lease it had would have expired
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not election.check() and election.status()["role"] == "standby"
