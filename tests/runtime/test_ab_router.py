"""The A/B router: stable arms per user, the configured share of traffic to the candidate."""

from __future__ import annotations

import pytest

from genesys.runtime.ab_router import AbRouter, Split


def test_everyone_gets_production_without_a_candidate() -> None:
    router = AbRouter()
    route = router.route(user="ana", conversation_id="c1")
    assert (route.model_version, route.adapter, route.arm) == ("base", None, "production")


def test_share_and_stability() -> None:
    router = AbRouter(Split(production="base", candidate="v2", traffic=0.2))
    arms = [router.route(user=f"user-{i}", conversation_id="c").arm for i in range(4000)]
    share = arms.count("candidate") / len(arms)
    assert 0.17 < share < 0.23
    for i in range(50):
        first = router.route(user=f"user-{i}", conversation_id="c1")
        assert router.route(user=f"user-{i}", conversation_id="other").arm == first.arm
    candidate = next(
        router.route(user=f"user-{i}", conversation_id="c")
        for i in range(100)
        if router.route(user=f"user-{i}", conversation_id="c").arm == "candidate"
    )
    assert candidate.adapter == "v2"


def test_anonymous_users_are_split_by_conversation() -> None:
    router = AbRouter(Split(candidate="v2", traffic=0.5))
    arms = {router.route(user=None, conversation_id=f"c{i}").arm for i in range(64)}
    assert arms == {"production", "candidate"}


def test_bad_share_refused() -> None:
    with pytest.raises(ValueError):
        AbRouter().set_split(Split(candidate="v2", traffic=1.5))
