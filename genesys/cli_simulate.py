"""``genesys simulate`` (simulated IDE users drive a running server through its public API) and ``genesys
bench loop`` (the whole loop on a server of its own: trigger to promotion, holdout before and after).

Every error is one line on stderr and exit code 2, argument errors included."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from genesys.cli import ConfigOpt, _emit_bench, app, bench_app, fail, readable_errors

DEFAULT_SERVER = "http://127.0.0.1:8000"
ScenarioOpt = Annotated[
    Path | None,
    typer.Option("--scenario", help="Scenario file (JSONL, see ARCHITECTURE.md).", show_default=False),
]
UsersOpt = Annotated[
    int, typer.Option("--users", help="Simulated users (stable names; spread over the A/B arms).")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Order of the questions and the users' names.")]


def _scenario(path: Path | None) -> Path:
    if path is None:
        fail("--scenario FILE is required (a scenario file, JSONL: see ARCHITECTURE.md)")
    assert path is not None
    return path


def _positive(name: str, value: float, *, whole: bool = False) -> None:
    if not math.isfinite(value) or value <= 0 or (whole and value != int(value)):
        fail(f"{name} must be a positive {'whole number' if whole else 'number'}, got {value:g}")


@app.command("simulate")
@readable_errors
def simulate_command(
    scenario: ScenarioOpt = None,
    server: Annotated[str, typer.Option("--server", help="The Genesys server.")] = DEFAULT_SERVER,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="GENESYS_API_KEY",
            help="A key with the operator role (chat, feedback, and following cycles and the rollout).",
            show_default=False,
        ),
    ] = None,
    max_minutes: Annotated[float, typer.Option("--max-minutes", help="Stop after this long.")] = 60.0,
    users: UsersOpt = 20,
    seed: SeedOpt = 0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Longest answer asked for.")] = 96,
    settle_seconds: Annotated[
        float,
        typer.Option("--settle-seconds", help="After the scenario is used up, how long to wait for a cycle."),
    ] = 30.0,
    run_tag: Annotated[
        str | None,
        typer.Option(
            "--run-tag",
            help="Name the conversations sim-TAG-r<round>-q<question>, the same every run (for a fresh "
            "server: the same dataset); default: a random tag, so runs never share a conversation.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the timeline as JSON.")] = False,
) -> None:
    """Simulated IDE users ask the scenario's prompts, correct wrong answers, keep asking through the
    A/B test of whatever the society trains from it, and print the timeline of what happened."""
    from genesys.server_api import HttpServerApi
    from genesys.tools.scenario import load_scenario
    from genesys.tools.simulation import (
        RUN_TAG_MAX_LENGTH,
        Simulation,
        SimulationConfig,
        TimelineEvent,
        format_event,
        format_timeline,
        is_valid_run_tag,
    )

    path = _scenario(scenario)
    _positive("--max-minutes", max_minutes)
    _positive("--users", users, whole=True)
    _positive("--max-tokens", max_tokens, whole=True)
    if not math.isfinite(settle_seconds) or settle_seconds < 0:
        fail(f"--settle-seconds must be 0 or more, got {settle_seconds:g}")
    if run_tag is not None and not is_valid_run_tag(run_tag):
        fail(f"--run-tag must be 1 to {RUN_TAG_MAX_LENGTH} letters, digits, '.', '_' or '-', got {run_tag!r}")
    loaded = load_scenario(path)
    config = SimulationConfig(
        users=users,
        seed=seed,
        max_minutes=max_minutes,
        max_tokens=max_tokens,
        settle_seconds=settle_seconds,
        run_tag=run_tag,
    )

    def show(event: TimelineEvent) -> None:  # live, as it happens; the JSON comes at the end
        typer.echo(format_event(event), err=as_json)

    with HttpServerApi(server, api_key=api_key) as api:
        api.wait_ready(timeout_s=30, connect_grace_s=2)
        result = Simulation(loaded, api, config, on_event=show).run()
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        typer.echo(format_timeline(result).splitlines()[-1])


@bench_app.command("loop")
@readable_errors
def bench_loop(
    scenario: ScenarioOpt = None,
    config: ConfigOpt = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="A fresh data directory (default: a temporary one).")
    ] = None,
    users: UsersOpt = 20,
    seed: SeedOpt = 0,
    max_minutes: Annotated[
        float, typer.Option("--max-minutes", help="Stop the simulation after this long.")
    ] = 90.0,
    stage_seconds: Annotated[
        float, typer.Option("--stage-seconds", help="Length of each rollout stage (50%, then 100% of users).")
    ] = 60.0,
    min_samples: Annotated[int, typer.Option("--min-samples", help="Judged answers each A/B arm needs.")] = 5,
    humaneval: Annotated[
        bool, typer.Option(help="The Validator's HumanEval guard (off: smoke runs only).")
    ] = True,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="Stop training after this many steps (smoke runs only).")
    ] = None,
    json_out: Annotated[Path | None, typer.Option(help="Also write the result (JSON) to this file.")] = None,
) -> None:
    """Wall time from a cycle's trigger to the promotion of its candidate, and holdout accuracy before
    and after, on a server of its own driven by simulated users. JSON on stdout, progress on stderr."""
    from genesys.bench.loop import LoopOptions, check_scenario, format_table, run_loop_bench
    from genesys.runtime.logging import configure_logging

    path = _scenario(scenario)
    _positive("--users", users, whole=True)
    _positive("--max-minutes", max_minutes)
    _positive("--stage-seconds", stage_seconds)
    _positive("--min-samples", min_samples, whole=True)
    if max_steps is not None:
        _positive("--max-steps", max_steps, whole=True)
    if config is not None and not config.is_file():
        fail(f"config file not found: {config}")
    if data_dir is not None and data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        fail(f"--data-dir {data_dir} is not an empty directory: the benchmark needs a fresh one")
    check_scenario(path)  # before the model loads: a bad file is one line at once
    configure_logging("WARNING")
    options = LoopOptions(
        users=users,
        seed=seed,
        max_minutes=max_minutes,
        stage_seconds=stage_seconds,
        min_samples_per_arm=min_samples,
        humaneval=humaneval,
        max_steps=max_steps,
    )
    result = run_loop_bench(path, options=options, config=config, data_dir=data_dir)
    _emit_bench(json.dumps(result.model_dump(mode="json"), indent=2), format_table(result), json_out)
