"""Simulated IDE users (``genesys.tools.simulation``): the logic against a scripted server that goes through
a cycle and a rollout, and ``genesys simulate`` against a real server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from pydantic import ValidationError

from genesys.runtime.ab_router import AbRouter, Split
from genesys.runtime.settings import DeployConfig
from genesys.runtime.store import Store
from genesys.server_api import HttpServerApi
from genesys.tools.scenario import Scenario, load_scenario
from genesys.tools.simulation import ChatAnswer, Simulation, SimulationConfig, TimelineEvent
from tests.api.test_rollout_api import register, tiny_adapters
from tests.conftest import LiveServer, start_live_server

__all__ = ["tiny_adapters"]  # the session fixture of the rollout tests: real GGUF LoRA adapters

REPO = Path(__file__).resolve().parents[2]
FERNWICK = REPO / "tests" / "data" / "fernwick_scenario.jsonl"


def tiny_scenario(directory: Path, items: int = 3, prompts: int = 2) -> Path:
    """The first Fernwick facts, with two training phrasings each (their holdout phrasings kept)."""
    lines = []
    for item in load_scenario(FERNWICK).items[:items]:
        lines.append(json.dumps(item.model_dump() | {"prompts": item.prompts[:prompts]}))
    path = directory / "tiny.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def now() -> str:
    return datetime.now(UTC).isoformat()


class ScriptedServer:
    """A server as the API shows it: one round of questions triggers a cycle; the cycle ends with
    ``cycle_outcome``; a deployed candidate (v1, which knows the answers) serves half the users until
    two A/B rounds are in, then it is promoted. An old cycle and an old rollout exist before."""

    def __init__(self, scenario: Scenario, *, cycle_outcome: str | None = "deployed") -> None:
        self.expected = {p: item.expected for item in scenario.items for p in item.prompts}
        self.per_round = len(self.expected)
        self.cycle_outcome = cycle_outcome
        self.chats: list[tuple[str, str, str, str]] = []  # prompt, user, conversation, version
        self.feedback_given: list[tuple[str, str, str | None]] = []
        self.cycle_list: list[dict[str, Any]] = [
            {
                "id": "cy-old",
                "state": "completed",
                "outcome": "deployed",
                "step": "deploy",
                "created_at": now(),
            }
        ]
        old_event = {"action": "promote", "from_state": "running", "to_state": "promoted", "traffic": 1.0}
        self.status: dict[str, Any] = {
            "rollout": {"id": "ro-old", "candidate": "v0", "state": "promoted", "outcome": "won"},
            "events": [old_event | {"at": now(), "actor": "deploy-controller", "reason": "old"}],
        }
        self.polls = 0

    def _event(self, action: str, from_state: str, to_state: str, traffic: float) -> dict[str, Any]:
        return {
            "action": action,
            "from_state": from_state,
            "to_state": to_state,
            "traffic": traffic,
            "at": now(),
            "actor": "deploy-controller",
            "reason": f"{action} for the test",
        }

    def chat(self, prompt: str, *, user: str, conversation_id: str, max_tokens: int) -> ChatAnswer:
        rollout = self.status["rollout"]
        serving = rollout["id"] == "ro-new" and rollout["state"] == "running"
        version = "v1" if serving and int(user[-3:]) % 2 else "base"
        self.chats.append((prompt, user, conversation_id, version))
        text = " and ".join(self.expected[prompt]) if version == "v1" else "I do not know that library."
        return ChatAnswer(interaction_id=f"chatcmpl-{len(self.chats)}", text=text, model_version=version)

    def feedback(self, interaction_id: str, *, thumbs: Literal["up", "down"], correction: str | None) -> None:
        self.feedback_given.append((interaction_id, thumbs, correction))

    def cycles(self) -> list[dict[str, Any]]:
        ours = [c for c in self.cycle_list if c["id"] == "cy-new"]
        if not ours and len(self.chats) >= self.per_round and self.cycle_outcome is not None:
            self.cycle_list.append(
                {
                    "id": "cy-new",
                    "trigger": "threshold",
                    "requested_by": "scheduler",
                    "reason": "one round",
                    "state": "running",
                    "step": "analyst",
                    "created_at": now(),
                }
            )
        elif ours and ours[0]["state"] == "running":
            self.polls += 1
            if self.polls == 1:
                ours[0]["step"] = "trainer"
            else:
                deployed = self.cycle_outcome == "deployed"
                ours[0].update(
                    state="completed" if deployed else "stopped",
                    outcome=self.cycle_outcome,
                    outcome_reason="validated" if deployed else "humaneval_guard: 0.50 -> 0.00",
                    ended_at=now(),
                    results={"candidate": "v1"},
                )
                if deployed:
                    self.status = {
                        "rollout": {"id": "ro-new", "candidate": "v1", "state": "running", "outcome": None},
                        "events": [self._event("start", "awaiting_approval", "running", 0.5)],
                    }
        return list(reversed(self.cycle_list))  # newest first, as the API lists them

    def rollout(self) -> dict[str, Any]:
        rollout = self.status["rollout"]
        if (
            rollout["id"] == "ro-new"
            and rollout["state"] == "running"
            and len(self.chats) >= 3 * self.per_round
        ):
            self.status["events"] += [
                self._event("advance", "running", "running", 1.0),
                self._event("promote", "running", "promoted", 1.0),
            ]
            rollout.update(state="promoted", outcome="A/B test ro-new won")
        return self.status


def simulate(scenario: Scenario, server: ScriptedServer, **config: Any) -> Any:
    ticks = iter(range(10**9))
    options = {"users": 4, "seed": 7, "settle_seconds": 5, "poll_seconds": 1} | config
    return Simulation(
        scenario,
        server,
        SimulationConfig(**options),
        clock=lambda: next(ticks) * 0.01,
        sleep=lambda _: None,
    ).run()


def test_users_ask_correct_and_keep_asking_through_the_ab_test_until_promotion(tmp_path: Path) -> None:
    scenario = load_scenario(tiny_scenario(tmp_path))
    server = ScriptedServer(scenario)
    result = simulate(scenario, server)

    assert (result.outcome, result.ended_by) == ("promoted", "concluded")
    assert (result.cycles, result.rollout_id, result.candidate) == (["cy-new"], "ro-new", "v1")
    assert result.trigger_at is not None and result.promoted_at is not None
    assert result.promoted_at > result.trigger_at
    kinds = [(e.kind, e.data.get("action") or e.data.get("phase")) for e in result.timeline]
    assert kinds == [
        ("started", None),
        ("round", "scenario"),
        ("cycle_started", None),
        ("cycle_step", None),
        ("cycle_finished", None),
        ("rollout", "start"),
        ("round", "ab_test"),
        ("round", "ab_test"),
        ("rollout", "advance"),
        ("rollout", "promote"),
        ("ended", None),
    ]  # the old cycle and the old rollout are not the simulation's doing
    assert "cycle cy-new completed: deployed" in result.timeline[4].message

    prompts = [p for item in scenario.items for p in item.prompts]
    holdout = {p for item in scenario.items for p in item.holdout}
    asked = [chat[0] for chat in server.chats]
    assert sorted(asked) == sorted(prompts * 3) and not holdout & set(asked)
    assert len({chat[2] for chat in server.chats}) == len(server.chats)  # one conversation per question
    first, second = result.rounds[0], result.rounds[1]
    users_first = {q.prompt: q.user for q in first.questions}
    assert all(users_first[q.prompt] != q.user for q in second.questions)  # a new user per round
    assert first.accuracy == 0.0 and first.by_version == {"base": {"asked": 6, "right": 0, "accuracy": 0.0}}
    assert set(second.by_version) == {"base", "v1"} and second.by_version["v1"]["accuracy"] == 1.0
    # Every wrong answer got a thumbs-down with the item's correction; every right one a thumbs-up.
    corrections = {p: item.correction for item in scenario.items for p in item.prompts}
    for (prompt, _, _, version), (_, thumbs, correction) in zip(
        server.chats, server.feedback_given, strict=True
    ):
        assert (thumbs, correction) == (("up", None) if version == "v1" else ("down", corrections[prompt]))
    assert result.corrected == sum(1 for chat in server.chats if chat[3] == "base")


def test_a_run_tag_names_the_conversations_and_without_one_runs_never_share_one(tmp_path: Path) -> None:
    scenario = load_scenario(tiny_scenario(tmp_path, items=2))

    def conversations(**config: Any) -> list[str]:
        server = ScriptedServer(scenario, cycle_outcome=None)
        simulate(scenario, server, settle_seconds=0, **config)
        return [chat[2] for chat in server.chats]

    tagged = conversations(run_tag="bench")
    # The same tag, the same ids in the same order: a fresh server curates the same dataset each run.
    assert tagged == conversations(run_tag="bench")
    assert all(c.startswith("sim-bench-r1-q") for c in tagged) and len(set(tagged)) == len(tagged)
    first, second = conversations(), conversations()
    assert not set(first) & set(second) and not set(first) & set(tagged)
    with pytest.raises(ValidationError):
        SimulationConfig(run_tag="two words")


def test_a_cycle_that_ends_without_a_rollout_ends_the_simulation(tmp_path: Path) -> None:
    scenario = load_scenario(tiny_scenario(tmp_path, items=2))
    result = simulate(scenario, ScriptedServer(scenario, cycle_outcome="rejected"))
    assert (result.outcome, result.ended_by, len(result.rounds)) == ("rejected", "cycle_ended", 1)
    assert result.reason == "humaneval_guard: 0.50 -> 0.00" and result.rollout_id is None

    quiet = simulate(scenario, ScriptedServer(scenario, cycle_outcome=None), settle_seconds=0)
    assert (quiet.outcome, quiet.ended_by, quiet.cycles) == ("no_cycle", "no_cycle", [])
    assert [e.kind for e in quiet.timeline] == ["started", "round", "ended"]

    short = simulate(scenario, ScriptedServer(scenario), max_minutes=0.0001)
    assert (short.outcome, short.ended_by) == ("timeout", "max_minutes")


def test_genesys_simulate_drives_a_real_server_through_its_api(
    live_server: LiveServer, tmp_path: Path
) -> None:
    path = tiny_scenario(tmp_path)
    scenario = load_scenario(path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "genesys.cli",
            "simulate",
            "--scenario",
            str(path),
            "--server",
            live_server.base_url,
            "--users",
            "3",
            "--max-tokens",
            "16",
            "--settle-seconds",
            "0",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("GENESYS_")},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["outcome"], report["ended_by"]) == ("no_cycle", "no_cycle")  # the schedule is off
    assert "round 1 (scenario)" in result.stderr  # the timeline, live, on stderr
    questions = report["rounds"][0]["questions"]
    prompts = [p for item in scenario.items for p in item.prompts]
    assert sorted(q["prompt"] for q in questions) == sorted(prompts)
    assert [e["kind"] for e in report["timeline"]] == ["started", "round", "ended"]

    # What landed in the server's store: each question, as the user who asked it, with its judgement.
    store = live_server.services.store
    holdout = {p for item in scenario.items for p in item.holdout}
    corrections = {p: item.correction for item in scenario.items for p in item.prompts}
    stored = store.interactions.list(limit=100)
    assert len(stored) == len(prompts)
    assert not holdout & {i.request_messages[-1]["content"] for i in stored}  # never asked
    downs = 0
    for question in questions:
        interaction = store.interactions.get(question["interaction_id"])
        assert interaction is not None and interaction.user == question["user"]
        assert interaction.request_messages[-1]["content"] == question["prompt"]
        (feedback,) = store.feedback.for_interaction(question["interaction_id"])
        if question["right"]:
            assert (feedback.thumbs, feedback.correction) == ("up", None)
        else:
            downs += 1
            assert (feedback.thumbs, feedback.correction) == ("down", corrections[question["prompt"]])
    assert downs >= 1 and report["corrected"] == downs  # SmolLM2 has never heard of fernwick
    assert len({i.conversation_id for i in stored}) == len(stored)


def test_users_keep_asking_through_a_real_ab_test_until_it_ends(
    settings: Any, llama_engine: Any, tiny_adapters: dict[str, Path], tmp_path: Path
) -> None:
    """A real rollout on a real server, 50% then 100% of users. It starts once the first round is in;
    after each later round the controller takes a tick as if the stage were over, so the test does not
    depend on how fast the machine answers. The users keep asking, each on the arm the router's hash
    gives them, until the controller ends it (r2 knows no more fernwick than base: rolled back)."""
    settings.deploy = DeployConfig(
        approval="auto",
        ab_traffic=0.5,
        stages=[0.5, 1.0],
        stage_hours=[1, 1],
        extension_hours=0,
        min_samples_per_arm=1,
        tick_seconds=3600,  # no tick of its own: the test ticks
        drain_seconds=0,
    )
    store = Store(settings.database_url)
    register(store, "r2", tiny_adapters["r2"])
    store.close()
    scenario = load_scenario(tiny_scenario(tmp_path, items=1))
    servers = start_live_server(settings, llama_engine)
    try:
        server = next(servers)
        controller = server.services.controller
        assert controller is not None

        def steer(event: TimelineEvent) -> None:
            if event.kind != "round":
                return
            number = event.data["number"]
            if number == 1:  # the Deploy agent's step, once the scenario is used up
                started = httpx.post(
                    f"{server.base_url}/v1/rollout/start", json={"candidate": "r2"}, timeout=60
                )
                assert started.status_code == 200, started.text
            else:  # stage 1 (then 2) is over
                rollout = server.services.store.rollouts.active()
                assert rollout is not None and rollout.started_at is not None
                controller.run_once(now=rollout.started_at + timedelta(hours=number - 1, seconds=1))

        with HttpServerApi(server.base_url) as api:
            config = SimulationConfig(
                users=6, max_tokens=8, poll_seconds=0.2, settle_seconds=60, max_minutes=10
            )
            result = Simulation(scenario, api, config, on_event=steer).run()
    finally:
        servers.close()  # type: ignore[attr-defined]
        llama_engine.unload_adapter("r2")

    assert (result.outcome, result.ended_by, result.candidate) == ("rolled_back", "concluded", "r2")
    steps = [e.data["action"] for e in result.timeline if e.kind == "rollout"]
    assert steps == ["start", "advance", "rollback"]
    assert [r.phase for r in result.rounds] == ["scenario", "ab_test", "ab_test"]
    first, half_round, full_round = result.rounds
    assert first.by_version.keys() == {"base"} and full_round.by_version.keys() == {"r2"}
    half = AbRouter(Split("base", "r2", 0.5))
    for question in half_round.questions:  # at 50%, each user on the arm the router's hash gives them
        arm = half.route(user=question.user, conversation_id="-").arm
        assert question.model_version == ("r2" if arm == "candidate" else "base")
