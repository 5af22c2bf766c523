"""Simulated IDE users drive a running Genesys server through its public API, and the timeline of what
the server did meanwhile (``genesys simulate``, ``genesys bench loop``).

The users ask a scenario's ``prompts`` (never its ``holdout`` phrasings), judge each answer by the
scenario's rule (right when it contains every ``expected`` string, ignoring case) and say so: a
thumbs-up, or a thumbs-down with the item's ``correction``. Each user is a stable name, so that the A/B
router keeps them on one arm; a question is asked by a different user in each round, so that both
arms hear every question. Every question is its own conversation (a question asked again in the
same conversation would read as a regenerate).

1. Round 1 asks every prompt once: the scenario is then used up. The society may start a learning
   cycle (``trigger_threshold``); the users wait ``settle_seconds`` for one.
2. While a cycle the simulation set off runs, the users wait (polling ``/v1/cycles``).
3. While its rollout serves (the A/B test and its stages), they ask the prompts again, round after
   round, so that both arms get judged answers.
4. It ends when that rollout is promoted, rolled back or rejected, when the cycle ends without a
   rollout (no data, rejected by the Validator, ...), when no cycle started, or at ``max_minutes``.

The server is reached through ``ServerApi`` (``genesys.server_api.HttpServerApi`` over HTTP), so the
logic here makes no HTTP call of its own.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from genesys.errors import EngineError
from genesys.tools.scenario import Scenario, ScenarioItem, is_right

EventKind = Literal[
    "started", "round", "cycle_started", "cycle_step", "cycle_finished", "rollout", "ended", "note"
]
EndedBy = Literal["concluded", "cycle_ended", "no_cycle", "max_minutes"]
Phase = Literal["scenario", "ab_test"]
ROLLOUT_ENDS = frozenset({"promoted", "rolled_back", "rejected"})
ROLLOUT_SERVING = frozenset({"running", "held"})
# Cycle outcomes after which a rollout of the cycle's candidate exists.
DEPLOYING_OUTCOMES = frozenset({"deployed", "awaiting_approval"})


class ChatAnswer(BaseModel):
    """One answer of the server, with what names it."""

    interaction_id: str
    text: str
    model_version: str | None = Field(None, description="X-Genesys-Model-Version: the arm's version.")


class ServerApi(Protocol):
    """What the simulation needs from a server (``genesys.server_api.HttpServerApi`` over HTTP)."""

    def chat(self, prompt: str, *, user: str, conversation_id: str, max_tokens: int) -> ChatAnswer: ...

    def feedback(
        self, interaction_id: str, *, thumbs: Literal["up", "down"], correction: str | None
    ) -> None: ...

    def cycles(self) -> list[dict[str, Any]]: ...

    def rollout(self) -> dict[str, Any]: ...


# What a run tag may hold: it becomes part of conversation ids (``sim-<tag>-r<round>-q<index>``).
RUN_TAG_PATTERN = r"^[A-Za-z0-9_.-]+$"
RUN_TAG_MAX_LENGTH = 40


def is_valid_run_tag(tag: str) -> bool:
    """Whether ``SimulationConfig.run_tag`` accepts ``tag`` (for a one-line CLI error before the config)."""
    return len(tag) <= RUN_TAG_MAX_LENGTH and re.fullmatch(RUN_TAG_PATTERN, tag) is not None


class SimulationConfig(BaseModel):
    users: int = Field(20, ge=1, le=10_000, description="Distinct simulated users (stable names).")
    seed: int = Field(0, description="Order of the questions and the users' names.")
    max_minutes: float = Field(60.0, gt=0, description="Stop after this long whatever happens.")
    max_tokens: int = Field(96, ge=1, le=4096, description="Longest answer asked for.")
    poll_seconds: float = Field(2.0, gt=0, description="How often cycles and the rollout are read.")
    settle_seconds: float = Field(
        30.0, ge=0, description="After the scenario is used up, how long to wait for a cycle to start."
    )
    run_tag: str | None = Field(
        None,
        min_length=1,
        max_length=RUN_TAG_MAX_LENGTH,
        pattern=RUN_TAG_PATTERN,
        description="Names this run's conversations (sim-<tag>-r<round>-q<question>): the same tag, the "
        "same conversation ids, so a fresh server curates the same dataset run after run. None: a random "
        "tag, so that runs against one server never share a conversation.",
    )


class Question(BaseModel):
    """One question a simulated user asked, and what came of it."""

    item: str
    prompt: str
    user: str
    interaction_id: str | None
    model_version: str | None
    right: bool
    corrected: bool
    error: str | None = None


class VersionScore(BaseModel):
    asked: int = 0
    right: int = 0

    @property
    def accuracy(self) -> float:
        return self.right / self.asked if self.asked else 0.0


class RoundResult(BaseModel):
    number: int
    phase: Phase
    asked: int
    right: int
    corrected: int
    errors: int
    accuracy: float
    by_version: dict[str, dict[str, float]] = Field(description="{version: {asked, right, accuracy}}.")
    seconds: float
    questions: list[Question]


class TimelineEvent(BaseModel):
    at: datetime
    t: float = Field(description="Seconds since the simulation started.")
    kind: EventKind
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


class SimulationResult(BaseModel):
    scenario: str
    started_at: datetime
    ended_at: datetime
    seconds: float
    ended_by: EndedBy
    outcome: str = Field(
        description="promoted, rolled_back, rejected (by the Validator or an operator), another cycle "
        "outcome (no_data, training_failed, ...), no_cycle, or timeout."
    )
    reason: str
    rounds: list[RoundResult]
    asked: int
    right: int
    corrected: int
    cycles: list[str] = Field(description="The cycles that started during the simulation, in order.")
    rollout_id: str | None = Field(None, description="The rollout those cycles set off, if any.")
    candidate: str | None = None
    trigger_at: datetime | None = Field(None, description="When the first of those cycles started.")
    promoted_at: datetime | None = Field(None, description="When its rollout was promoted.")
    timeline: list[TimelineEvent]


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _pct(value: float) -> str:
    return f"{value:.0%}"


class Simulation:
    """One run of simulated users against one server. Not thread-safe; build one per run."""

    def __init__(
        self,
        scenario: Scenario,
        api: ServerApi,
        config: SimulationConfig | None = None,
        *,
        on_event: Callable[[TimelineEvent], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.scenario = scenario
        self.api = api
        self.config = config or SimulationConfig()
        self.on_event = on_event
        self.clock = clock
        self.sleep = sleep
        self.users = [f"sim-{self.config.seed}-user-{i:03d}" for i in range(self.config.users)]
        self.run_tag = self.config.run_tag or uuid.uuid4().hex[:10]
        self.questions: list[tuple[ScenarioItem, str]] = [
            (item, prompt) for item in scenario.items for prompt in item.prompts
        ]
        self.timeline: list[TimelineEvent] = []
        self.rounds: list[RoundResult] = []
        self._started_wall = datetime.now(UTC)
        self._started = 0.0
        self._known_cycles: dict[str, dict[str, Any]] = {}
        self._baseline_cycles: set[str] = set()
        self._baseline_rollout: str | None = None
        self._seen_events: dict[str, int] = {}
        self._our_cycles: list[str] = []
        self._our_rollout: dict[str, Any] | None = None

    # -- the run ----------------------------------------------------------------------------------

    def run(self) -> SimulationResult:
        """Run until the end (see the module docstring); raises what the ``ServerApi`` raises when the
        server cannot be reached or refuses the key."""
        config = self.config
        self._started_wall = datetime.now(UTC)
        self._started = self.clock()
        deadline = self._started + config.max_minutes * 60
        self._baseline()
        self._event(
            "started",
            f"{len(self.questions)} questions of {len(self.scenario.items)} items, {len(self.users)} users",
            {"questions": len(self.questions), "users": len(self.users), "seed": config.seed},
        )
        self._ask_round("scenario", deadline)
        used_up = self.clock()
        ended_by: EndedBy
        while True:
            self._poll()
            if self.clock() >= deadline:
                ended_by, outcome, reason = "max_minutes", "timeout", f"{config.max_minutes:g} minutes are up"
                break
            rollout = self._our_rollout
            if rollout is not None:
                state = rollout.get("state")
                if state in ROLLOUT_SERVING:
                    self._ask_round("ab_test", deadline)
                    continue
                if state in ROLLOUT_ENDS:
                    ended_by, outcome = "concluded", str(state)
                    reason = str(rollout.get("outcome") or state)
                    break
                self.sleep(config.poll_seconds)  # waiting for an operator's approval
                continue
            cycle = self._last_cycle()
            if cycle is not None:
                if (
                    cycle.get("state") in ("running", "interrupted")
                    or cycle.get("outcome") in DEPLOYING_OUTCOMES
                ):
                    self.sleep(config.poll_seconds)  # running, or its rollout is not visible yet
                    continue
                ended_by, outcome = "cycle_ended", str(cycle.get("outcome") or cycle.get("state"))
                reason = str(cycle.get("outcome_reason") or cycle.get("state"))
                break
            if self.clock() - used_up >= config.settle_seconds:
                ended_by, outcome = "no_cycle", "no_cycle"
                reason = f"the scenario is used up and no cycle started within {config.settle_seconds:g} s"
                break
            self.sleep(min(config.poll_seconds, max(0.05, config.settle_seconds)))
        self._event("ended", f"{outcome}: {reason}", {"ended_by": ended_by, "outcome": outcome})
        return self._result(ended_by, outcome, reason)

    def _ask_round(self, phase: Phase, deadline: float) -> RoundResult:
        number = len(self.rounds) + 1
        started = self.clock()
        order = list(enumerate(self.questions))
        random.Random(f"{self.config.seed}-{number}").shuffle(order)
        asked: list[Question] = []
        for index, (item, prompt) in order:
            if self.clock() >= deadline:
                break
            asked.append(
                self._ask(
                    item,
                    prompt,
                    user=self.users[(index + number - 1) % len(self.users)],
                    number=number,
                    index=index,
                )
            )
        by_version: dict[str, VersionScore] = {}
        for question in asked:
            if question.error is None:
                score = by_version.setdefault(question.model_version or "unknown", VersionScore())
                score.asked += 1
                score.right += question.right
        answered = [q for q in asked if q.error is None]
        right = sum(q.right for q in answered)
        result = RoundResult(
            number=number,
            phase=phase,
            asked=len(answered),
            right=right,
            corrected=sum(q.corrected for q in asked),
            errors=len(asked) - len(answered),
            accuracy=right / len(answered) if answered else 0.0,
            by_version={
                v: {"asked": s.asked, "right": s.right, "accuracy": round(s.accuracy, 4)}
                for v, s in sorted(by_version.items())
            },
            seconds=round(self.clock() - started, 2),
            questions=asked,
        )
        self.rounds.append(result)
        arms = ", ".join(
            f"{v} {s.right}/{s.asked} ({_pct(s.accuracy)})" for v, s in sorted(by_version.items())
        )
        label = "scenario" if phase == "scenario" else "A/B test"
        errors = f", {result.errors} failed" if result.errors else ""
        self._event(
            "round",
            f"round {number} ({label}): {result.right}/{result.asked} right ({_pct(result.accuracy)}), "
            f"{result.corrected} corrected{errors}; {arms or 'no answers'}",
            result.model_dump(mode="json", exclude={"questions"}),
        )
        return result

    def _ask(self, item: ScenarioItem, prompt: str, *, user: str, number: int, index: int) -> Question:
        conversation = f"sim-{self.run_tag}-r{number}-q{index}"
        try:
            answer = self.api.chat(
                prompt, user=user, conversation_id=conversation, max_tokens=self.config.max_tokens
            )
        except EngineError as exc:  # the server failed this one answer; the users go on
            return Question(
                item=item.id,
                prompt=prompt,
                user=user,
                interaction_id=None,
                model_version=None,
                right=False,
                corrected=False,
                error=str(exc),
            )
        right = is_right(answer.text, item.expected)
        correction = None if right else item.correction
        self.api.feedback(answer.interaction_id, thumbs="up" if right else "down", correction=correction)
        return Question(
            item=item.id,
            prompt=prompt,
            user=user,
            interaction_id=answer.interaction_id,
            model_version=answer.model_version,
            right=right,
            corrected=not right,
        )

    # -- watching the server ----------------------------------------------------------------------

    def _baseline(self) -> None:
        """What existed before: those cycles and that rollout are not the simulation's doing."""
        for cycle in self.api.cycles():
            self._baseline_cycles.add(str(cycle["id"]))
            self._known_cycles[str(cycle["id"])] = dict(cycle)
        status = self.api.rollout()
        rollout = status.get("rollout")
        if rollout:
            self._baseline_rollout = str(rollout["id"])
            self._seen_events[self._baseline_rollout] = len(status.get("events") or [])

    def _poll(self) -> None:
        for cycle in reversed(self.api.cycles()):  # oldest first
            self._watch_cycle(cycle)
        status = self.api.rollout()
        rollout = status.get("rollout")
        if not rollout:
            return
        rollout_id = str(rollout["id"])
        ours = rollout_id != self._baseline_rollout
        events = status.get("events") or []
        for event in events[self._seen_events.get(rollout_id, 0) :]:
            self._event(
                "rollout",
                f"rollout {rollout_id} of {rollout.get('candidate')}: {event.get('action')} "
                f"({event.get('from_state') or '-'} -> {event.get('to_state')}, "
                f"{event.get('traffic', 0):.0%} of users) by {event.get('actor')}: {event.get('reason')}",
                {"rollout_id": rollout_id, "candidate": rollout.get("candidate"), **event},
                at=_parse_time(event.get("at")),
            )
        self._seen_events[rollout_id] = len(events)
        if ours:
            self._our_rollout = rollout

    def _watch_cycle(self, cycle: dict[str, Any]) -> None:
        cycle_id = str(cycle["id"])
        before = self._known_cycles.get(cycle_id)
        self._known_cycles[cycle_id] = dict(cycle)  # a copy: the next read is compared with this one
        if cycle_id in self._baseline_cycles:
            return
        if before is None:
            self._our_cycles.append(cycle_id)
            self._event(
                "cycle_started",
                f"cycle {cycle_id} started ({cycle.get('trigger')}, by {cycle.get('requested_by')}: "
                f"{cycle.get('reason')})",
                {"cycle_id": cycle_id, "trigger": cycle.get("trigger")},
                at=_parse_time(cycle.get("created_at")),
            )
        elif before.get("step") != cycle.get("step") and cycle.get("state") == "running":
            self._event(
                "cycle_step",
                f"cycle {cycle_id}: {cycle.get('step')}",
                {"cycle_id": cycle_id, "step": cycle.get("step")},
            )
        was_active = before is None or before.get("state") in ("running", "interrupted")
        if was_active and cycle.get("state") not in ("running", "interrupted"):
            self._event(
                "cycle_finished",
                f"cycle {cycle_id} {cycle.get('state')}: {cycle.get('outcome')} "
                f"({cycle.get('outcome_reason')})",
                {
                    "cycle_id": cycle_id,
                    "state": cycle.get("state"),
                    "outcome": cycle.get("outcome"),
                    "reason": cycle.get("outcome_reason"),
                    "results": cycle.get("results") or {},
                },
                at=_parse_time(cycle.get("ended_at")),
            )

    def _last_cycle(self) -> dict[str, Any] | None:
        return self._known_cycles[self._our_cycles[-1]] if self._our_cycles else None

    def _event(
        self, kind: EventKind, message: str, data: dict[str, Any] | None = None, *, at: datetime | None = None
    ) -> None:
        moment = at or datetime.now(UTC)
        event = TimelineEvent(
            at=moment,
            t=round((moment - self._started_wall).total_seconds(), 2),
            kind=kind,
            message=message,
            data=data or {},
        )
        self.timeline.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def _result(self, ended_by: EndedBy, outcome: str, reason: str) -> SimulationResult:
        ended = datetime.now(UTC)
        rollout = self._our_rollout
        rollout_id = str(rollout["id"]) if rollout else None
        promoted_at = None
        for event in self.timeline:
            ours = event.kind == "rollout" and event.data.get("rollout_id") == rollout_id
            if ours and event.data.get("action") == "promote":
                promoted_at = event.at
        trigger_at = None
        if self._our_cycles:
            trigger_at = _parse_time(self._known_cycles[self._our_cycles[0]].get("created_at"))
        return SimulationResult(
            scenario=self.scenario.path,
            started_at=self._started_wall,
            ended_at=ended,
            seconds=round(self.clock() - self._started, 2),
            ended_by=ended_by,
            outcome=outcome,
            reason=reason,
            rounds=self.rounds,
            asked=sum(r.asked for r in self.rounds),
            right=sum(r.right for r in self.rounds),
            corrected=sum(r.corrected for r in self.rounds),
            cycles=list(self._our_cycles),
            rollout_id=rollout_id,
            candidate=str(rollout["candidate"]) if rollout else None,
            trigger_at=trigger_at,
            promoted_at=promoted_at,
            timeline=sorted(self.timeline, key=lambda e: e.at),
        )


def format_timeline(result: SimulationResult) -> str:
    """The timeline for people: one line an event, then the outcome."""
    lines = [format_event(event) for event in result.timeline]
    lines.append(
        f"{result.outcome} after {result.seconds:.0f} s ({result.ended_by}): {result.asked} questions, "
        f"{result.right} right, {result.corrected} corrected, {len(result.rounds)} rounds"
    )
    return "\n".join(lines)


def format_event(event: TimelineEvent) -> str:
    return f"{event.t:8.1f}s  {event.kind:<14}  {event.message}"
