"""``genesys bench loop``: how long the whole loop takes, from the trigger of a learning cycle to the
promotion of what it trained, and what production knows before and after.

On a fresh data directory, with a server of its own (the real app under uvicorn, in this process, on a
free loopback port):

1. before: production (the base model) answers the scenario's ``holdout`` phrasings through the
   server's engine, as ``genesys eval`` asks them (nothing is recorded as an interaction);
2. the simulation (``genesys.tools.simulation``) drives the server through its public API only:
   simulated users ask the scenario's ``prompts`` and correct wrong answers; the society's scheduler
   starts a cycle once one round is in (``trigger_threshold`` = the prompts of one round); the Deploy
   agent rolls a validated candidate out at once on two short stages (50%, then 100% of users) while
   the users keep asking, and the controller (ticking every few seconds) promotes or rolls it back;
3. after: production answers the holdout phrasings again (the same answers as before when nothing
   was promoted).

The result is JSON: ``wall_seconds_trigger_to_promotion`` (the cycle's start to the promote event,
from the server's clock; null when nothing was promoted), ``holdout_accuracy_before`` / ``_after``,
``outcome`` (promoted, rolled_back, rejected, no_data, ..., no_cycle, timeout) and the ``timeline``.
A candidate the Validator rejects is reported as ``rejected``, with production (and its accuracy)
unchanged.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel, Field

from genesys.errors import EngineUnavailable, InvalidRequest
from genesys.runtime.ab_router import BASE_VERSION
from genesys.tools.simulation import SimulationConfig, TimelineEvent, format_event

if TYPE_CHECKING:
    from genesys.runtime.engines.base import InferenceEngine
    from genesys.runtime.settings import Settings
    from genesys.tools.scenario import Scenario

log = structlog.get_logger(__name__)

READY_TIMEOUT_S = 600.0


class LoopOptions(BaseModel):
    """What the benchmark may change; the rest comes from the configuration."""

    users: int = Field(20, ge=1, description="Simulated users (stable names, so both A/B arms are heard).")
    seed: int = 0
    max_minutes: float = Field(90.0, gt=0, description="Stop the simulation after this long.")
    stage_seconds: float = Field(60.0, gt=0, description="Length of each rollout stage (50%, then 100%).")
    min_samples_per_arm: int = Field(5, ge=1, description="Judged answers each A/B arm needs.")
    tick_seconds: float = Field(2.0, gt=0, description="How often the server evaluates the rollout.")
    poll_seconds: float = Field(2.0, gt=0, description="How often the scheduler and the users look.")
    humaneval: bool = Field(True, description="The Validator's HumanEval guard (off: smoke runs only).")
    max_steps: int | None = Field(None, ge=1, description="Stop training after this many steps (smoke).")
    max_tokens: int = Field(96, ge=1, description="Longest answer the users ask for.")


class LoopBenchResult(BaseModel):
    scenario: str
    data_dir: str
    wall_seconds_trigger_to_promotion: float | None = Field(
        description="From the first cycle's start to the promotion of its candidate; null when none was."
    )
    holdout_accuracy_before: float
    holdout_accuracy_after: float
    outcome: str
    reason: str
    candidate: str | None
    production_after: str
    rounds: int
    questions_asked: int
    settings: dict[str, Any] = Field(description="The settings the benchmark set for the loop.")
    seconds: dict[str, float] = Field(default_factory=dict)
    timeline: list[TimelineEvent]


def loop_settings(settings: Settings, scenario: Scenario, options: LoopOptions) -> dict[str, Any]:
    """Make the loop complete quickly: a cycle after one round of the scenario, the rollout at once on
    two short stages, ticks every few seconds. Returns what was set."""
    from genesys.runtime.settings import DeployConfig

    per_round = sum(len(item.prompts) for item in scenario.items)
    agents = settings.autogen_agents
    agents.data_analyst.trigger_threshold = per_round
    agents.schedule = True
    agents.poll_seconds = options.poll_seconds
    hours = options.stage_seconds / 3600
    settings.deploy = DeployConfig(
        approval="auto",
        ab_traffic=0.5,
        stages=[0.5, 1.0],
        stage_hours=[hours, hours],
        extension_hours=max(hours, 5 / 60),
        min_samples_per_arm=options.min_samples_per_arm,
        min_requests_for_errors=max(options.min_samples_per_arm, 10),
        tick_seconds=options.tick_seconds,
        drain_seconds=1.0,
    )
    return {
        "autogen_agents.data_analyst.trigger_threshold": per_round,
        "autogen_agents.poll_seconds": options.poll_seconds,
        "deploy": settings.deploy.model_dump(mode="json"),
        "humaneval": options.humaneval,
        "max_steps": options.max_steps,
    }


def _fresh_data_dir(data_dir: Path | None) -> tuple[Path, tempfile.TemporaryDirectory[str] | None]:
    if data_dir is None:
        holder = tempfile.TemporaryDirectory(prefix="genesys-bench-loop-")
        return Path(holder.name), holder
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise InvalidRequest(
            f"--data-dir {data_dir} is not an empty directory: the benchmark needs a fresh one"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir, None


def check_scenario(scenario_path: Path) -> Scenario:
    """The scenario, with holdout phrasings to measure; raises ``InvalidRequest``."""
    from genesys.tools.scenario import load_scenario

    scenario = load_scenario(scenario_path)
    if not any(item.holdout for item in scenario.items):
        raise InvalidRequest(f"{scenario_path} has no holdout phrasings: nothing to measure before and after")
    return scenario


def run_loop_bench(
    scenario_path: Path,
    *,
    options: LoopOptions | None = None,
    config: Path | None = None,
    data_dir: Path | None = None,
) -> LoopBenchResult:
    """Run the benchmark (see the module docstring). Raises ``InvalidRequest`` for a bad scenario or a
    data directory that is not empty, ``EngineUnavailable`` when the server does not start."""
    from genesys.runtime.settings import load_settings

    options = options or LoopOptions()
    scenario = check_scenario(scenario_path)
    if config is not None:
        if not config.is_file():
            raise InvalidRequest(f"config file not found: {config}")
        os.environ["GENESYS_CONFIG"] = str(config)
    directory, holder = _fresh_data_dir(data_dir)
    try:
        settings = load_settings(data_dir=directory)
        return _run(scenario, settings, options)
    finally:
        if holder is not None:
            holder.cleanup()


def _say(message: str) -> None:
    sys.stderr.write(f"[bench loop] {message}\n")
    sys.stderr.flush()


def _run(scenario: Scenario, settings: Settings, options: LoopOptions) -> LoopBenchResult:
    import uvicorn

    from genesys.api.app import build_services, create_app
    from genesys.runtime.prompts import ASSISTANT_PROMPT, PromptLibrary
    from genesys.server_api import HttpServerApi
    from genesys.tools.scenario_eval import holdout_of_version
    from genesys.tools.simulation import Simulation

    chosen = loop_settings(settings, scenario, options)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    services = build_services(settings)
    runner = services.cycles.runner if services.cycles is not None else None
    if runner is not None:  # smoke options reach the cycles the scheduler runs
        runner.humaneval = options.humaneval
        if options.max_steps is not None:
            from genesys.tools.training.config import TrainingConfig

            runner.training_config = TrainingConfig.from_settings(settings, max_steps=options.max_steps)
    app = create_app(settings, services=services)
    port = _free_port()

    class _Server(uvicorn.Server):
        def install_signal_handlers(self) -> None:  # the benchmark owns signals (Ctrl-C)
            pass

    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, name="bench-loop-server", daemon=True)
    thread.start()
    system_prompt = PromptLibrary().get(ASSISTANT_PROMPT).text
    engine = services.host.engine
    try:
        api = HttpServerApi(f"http://127.0.0.1:{port}", model=settings.model.name)
        try:
            api.wait_ready(READY_TIMEOUT_S, connect_grace_s=60)
            seconds["server_start"] = round(time.perf_counter() - started, 2)
            step = time.perf_counter()
            holdout = sum(len(i.holdout) for i in scenario.items)
            _say(f"before: {BASE_VERSION} on {holdout} holdout questions")
            before = holdout_of_version(scenario, engine, None, system_prompt=system_prompt)
            seconds["eval_before"] = round(time.perf_counter() - step, 2)
            _say(f"before: {before.right}/{before.total} right")

            step = time.perf_counter()
            simulation = Simulation(
                scenario,
                api,
                SimulationConfig(
                    users=options.users,
                    seed=options.seed,
                    max_minutes=options.max_minutes,
                    max_tokens=options.max_tokens,
                    poll_seconds=options.poll_seconds,
                    settle_seconds=3 * options.poll_seconds + 10,
                    # The data dir is fresh: fixed conversation ids make the same dataset each run.
                    run_tag=f"bench-{options.seed}",
                ),
                on_event=lambda event: _say(format_event(event)),
            )
            outcome = simulation.run()
            seconds["simulation"] = round(time.perf_counter() - step, 2)
        finally:
            api.close()
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        if runner is not None and runner.manager is not None:
            runner.manager.close(grace_s=5)  # a later cycle's training run must not outlive the benchmark
    if thread.is_alive():
        raise EngineUnavailable("the benchmark's server did not stop within 60 s")

    try:
        production = services.store.adapters.production()
        production_name = production.version if production else BASE_VERSION
        after = before
        if production is not None:
            step = time.perf_counter()
            _load(engine, production)
            after = holdout_of_version(scenario, engine, production.version, system_prompt=system_prompt)
            seconds["eval_after"] = round(time.perf_counter() - step, 2)
        _say(f"after: {after.right}/{after.total} right ({production_name})")
    finally:
        services.store.close()
        engine.close()
    wall = None
    if outcome.outcome == "promoted" and outcome.trigger_at and outcome.promoted_at:
        wall = round((outcome.promoted_at - outcome.trigger_at).total_seconds(), 1)
    seconds["total"] = round(time.perf_counter() - started, 2)
    return LoopBenchResult(
        scenario=scenario.path,
        data_dir=str(settings.data_dir),
        wall_seconds_trigger_to_promotion=wall,
        holdout_accuracy_before=before.accuracy,
        holdout_accuracy_after=after.accuracy,
        outcome=outcome.outcome,
        reason=outcome.reason,
        candidate=outcome.candidate or _candidate(services.store, outcome.cycles),
        production_after=production_name,
        rounds=len(outcome.rounds),
        questions_asked=outcome.asked,
        settings=chosen,
        seconds=seconds,
        timeline=outcome.timeline,
    )


def _candidate(store: Any, cycles: list[str]) -> str | None:
    """The candidate the cycles trained (a rejected one has no rollout to name it)."""
    for cycle_id in reversed(cycles):
        candidate = store.cycles.get(cycle_id).results.get("candidate")
        if candidate:
            return str(candidate)
    return None


def _load(engine: InferenceEngine, adapter: Any) -> None:
    from genesys.runtime.serving_versions import load_version

    if adapter.version not in engine.info().adapters:
        load_version(engine, adapter)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def format_table(result: LoopBenchResult) -> str:
    wall = result.wall_seconds_trigger_to_promotion
    lines = [
        f"loop benchmark on {result.scenario}: {result.outcome} ({result.reason})",
        f"  trigger -> promotion      {'-' if wall is None else f'{wall:.0f} s'}",
        f"  holdout accuracy before   {result.holdout_accuracy_before:.0%}",
        f"  holdout accuracy after    {result.holdout_accuracy_after:.0%}  "
        f"(production: {result.production_after})",
        f"  {result.questions_asked} questions in {result.rounds} rounds; "
        f"candidate {result.candidate or '-'}",
    ]
    return "\n".join(lines)
