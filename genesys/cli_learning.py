"""``genesys train``, ``genesys eval``, ``genesys monitor`` and ``genesys bench learn``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from genesys.cli import ConfigOpt, DataDirOpt, _emit_bench, _settings, app, bench_app, fail, readable_errors

if TYPE_CHECKING:
    from genesys.runtime.engines.base import InferenceEngine
    from genesys.runtime.settings import Settings
    from genesys.runtime.store import Store
    from genesys.runtime.store.training_runs import TrainingRun


def _quiet_logs() -> None:
    from genesys.runtime.logging import configure_logging

    configure_logging("WARNING")


def _load_engine(settings: Settings) -> InferenceEngine:
    from genesys.runtime.engines import make_engine

    engine = make_engine(settings)
    engine.load()
    return engine


def _resolve_version(store: Store, version: str | None) -> str:
    """``None`` or 'production': the production version ('base' without one)."""
    from genesys.runtime.ab_router import BASE_VERSION

    if version in (None, "production"):
        production = store.adapters.production()
        return production.version if production else BASE_VERSION
    return cast(str, version)


def _stderr_progress(label: str) -> Any:
    def show(done: int, total: int) -> None:
        sys.stderr.write(f"\r{label}: {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


@app.command("eval")
@readable_errors
def eval_command(
    scenario: Annotated[Path, typer.Option(help="Scenario file (JSONL, see ARCHITECTURE.md).")],
    model: Annotated[
        str | None, typer.Option(help="Version to ask (default: the production version; 'base': no adapter).")
    ] = None,
    split: Annotated[str, typer.Option(help="prompts or holdout.")] = "holdout",
    limit: Annotated[int | None, typer.Option(min=1, help="Ask at most this many questions.")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Ask a scenario's questions to a model version; print JSON with ``accuracy`` and each answer."""
    from genesys.runtime.ab_router import BASE_VERSION
    from genesys.runtime.prompts import ASSISTANT_PROMPT, PromptLibrary
    from genesys.runtime.serving_versions import load_version
    from genesys.runtime.store import Store
    from genesys.tools.scenario import load_scenario
    from genesys.tools.scenario_eval import engine_asker, evaluate_scenario

    if split not in ("prompts", "holdout"):
        fail(f"--split must be prompts or holdout, got {split!r}")
    settings = _settings(config, data_dir)
    _quiet_logs()
    loaded = load_scenario(scenario)
    store = Store(settings.database_url)
    try:
        version = _resolve_version(store, model)
        adapter = None if version == BASE_VERSION else store.adapters.get(version)
        engine = _load_engine(settings)
        try:
            if adapter is not None:
                load_version(engine, adapter)
            ask = engine_asker(
                engine,
                adapter=None if adapter is None else adapter.version,
                system_prompt=PromptLibrary().get(ASSISTANT_PROMPT).text,
            )
            result = evaluate_scenario(
                loaded,
                cast(Any, split),
                ask,
                model=version,
                limit=limit,
                progress=_stderr_progress(f"asking {version}"),
            )
        finally:
            engine.close()
    finally:
        store.close()
    typer.echo(result.model_dump_json(indent=2))


@app.command("train")
@readable_errors
def train_command(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    dataset: Annotated[
        str | None, typer.Option(help="Train on this dataset version instead of curating.")
    ] = None,
    force_curate: Annotated[
        bool, typer.Option("--force-curate", help="Curate a new version even if nothing changed.")
    ] = False,
    humaneval: Annotated[bool, typer.Option(help="Run the HumanEval regression guard.")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Curate if needed, train a LoRA adapter, validate it against production (the seed's
    ``manual_training_trigger``). Exit code 0 when the candidate is validated, 1 otherwise."""
    from genesys.runtime.store import Store
    from genesys.tools.training.runs import RunManager
    from genesys.tools.training_cycle import run_training_cycle

    settings = _settings(config, data_dir)
    _quiet_logs()
    store = Store(settings.database_url)
    manager = RunManager(settings, store=store.training_runs)
    bar = _CycleProgress()
    try:
        engine = _load_engine(settings)
        try:
            result = run_training_cycle(
                settings,
                store,
                manager,
                engine,
                force_curate=force_curate,
                dataset_version=dataset,
                progress=bar,
                humaneval=humaneval,
            )
        finally:
            engine.close()
    except KeyboardInterrupt:
        manager.close(grace_s=5)  # the worker stops with its run marked cancelled
        raise
    finally:
        bar.close()
        store.close()
    if json_out:
        typer.echo(result.model_dump_json(indent=2))
    else:
        typer.echo(f"{result.outcome}: {result.reason}")
        for key in ("dataset_version", "run_id", "candidate", "baseline"):
            value = getattr(result, key)
            if value:
                typer.echo(f"  {key.replace('_', ' ')}: {value}")
    raise typer.Exit(0 if result.outcome == "validated" else 1)


class _CycleProgress:
    """One line on stderr per cycle step; a live bar while the run trains."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.task: Any = None
        self.validating: Any = None

    def __call__(self, step: str, details: dict[str, Any]) -> None:
        if step == "training":
            if self.task is None:
                self.progress.start()
                self.task = self.progress.add_task("training", total=None, detail="loading")
            loss = details.get("loss")
            detail = (
                f"{details.get('phase') or ''} loss {loss:.3f}" if loss is not None else details.get("phase")
            )
            self.progress.update(
                self.task,
                total=details.get("total_steps"),
                completed=details.get("step") or 0,
                detail=detail or "",
            )
        elif step == "validating":
            if self.validating is None:
                self.progress.start()
                self.validating = self.progress.add_task("validating", total=None, detail="")
            self.progress.update(
                self.validating,
                total=details["total"],
                completed=details["done"],
                detail=details.get("what", ""),
            )
        else:
            self.console.print(f"{step}: " + ", ".join(f"{k}={v}" for k, v in details.items()))

    def close(self) -> None:
        self.progress.stop()


@app.command("monitor")
@readable_errors
def monitor_command(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    run: Annotated[str | None, typer.Option(help="Run id (default: the latest run).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Print the state once and exit.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="With --once: JSON instead of text.")] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes.")] = 1.0,
) -> None:
    """Follow training live (the seed's ``monitor_training``: a progress bar, loss, speed, ETA) beside
    the seed's KPIs against their targets, the alerts firing and the rollout's A/B arms.

    Ctrl-C stops it; with ``--run`` it stops when that run ends. ``--once`` prints the run's line
    first, then the rest; ``--once --json`` prints ``{"run", "kpis", "alerts", "rollout"}``.
    """
    from genesys.cli_monitor import snapshot_json, snapshot_lines
    from genesys.runtime.store import Store
    from genesys.tools.monitoring import take_snapshot

    settings = _settings(config, data_dir)
    store = Store(settings.database_url)
    try:
        current = _pick_run(store, run)
        if once:
            snapshot = take_snapshot(store, settings, current)
            if json_out:
                typer.echo(snapshot_json(snapshot))
            else:
                typer.echo("\n".join(snapshot_lines(snapshot, _run_line(current))))
            return
        _follow(store, settings, run, interval)
    finally:
        store.close()


def _pick_run(store: Store, run_id: str | None) -> TrainingRun | None:
    if run_id is not None:
        return store.training_runs.get(run_id)
    recent = store.training_runs.recent(limit=1)
    return recent[0] if recent else None


def _run_line(run: TrainingRun | None) -> str:
    if run is None:
        return "no training run yet"
    parts = [f"{run.id}: {run.state}"]
    if run.phase and not run.finished:
        parts.append(run.phase)
    if run.step is not None and run.total_steps:
        parts.append(f"step {run.step}/{run.total_steps}")
    if run.loss is not None:
        parts.append(f"loss {run.loss:.4f}")
    if run.tokens_per_s:
        parts.append(f"{run.tokens_per_s:.0f} tokens/s")
    if run.eta_s is not None and not run.finished:
        parts.append(f"ETA {run.eta_s:.0f} s")
    if run.error:
        parts.append(run.error)
    return ", ".join(parts)


# The KPIs and the rollout's arms are read from the whole window: refreshed less often than the bar.
_OVERVIEW_SECONDS = 5.0


def _follow(store: Store, settings: Settings, run_id: str | None, interval: float) -> None:
    from rich.console import Console
    from rich.live import Live
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.text import Text

    from genesys.cli_monitor import monitor_view
    from genesys.tools.monitoring import MonitorSnapshot, take_snapshot

    console = Console(stderr=False)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
    )
    tasks: dict[str, Any] = {}
    snapshot: MonitorSnapshot | None = None
    taken = 0.0
    with Live(console=console, auto_refresh=False) as live:
        while True:
            current = _pick_run(store, run_id)
            if current is not None:
                if current.id not in tasks:
                    for old in tasks.values():
                        bar.remove_task(old)
                    tasks = {
                        current.id: bar.add_task(current.id, total=current.total_steps or None, detail="")
                    }
                bar.update(
                    tasks[current.id],
                    total=current.total_steps or None,
                    completed=current.step or 0,
                    detail=_run_line(current).split(": ", 1)[1],
                )
            if snapshot is None or time.monotonic() - taken >= max(interval, _OVERVIEW_SECONDS):
                snapshot, taken = take_snapshot(store, settings, current), time.monotonic()
            training = (
                bar.get_renderable()
                if current is not None
                else Text("no training run yet: waiting for one (Ctrl-C to stop)")
            )
            live.update(monitor_view(snapshot, training), refresh=True)
            if run_id is not None and current is not None and current.finished:
                break
            time.sleep(interval)


@bench_app.command("learn")
@readable_errors
def bench_learn(
    scenario: Annotated[Path, typer.Option(help="Scenario file (JSONL, see ARCHITECTURE.md).")],
    config: ConfigOpt = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="A fresh data directory (default: a temporary one).")
    ] = None,
    humaneval: Annotated[bool, typer.Option(help="Measure the HumanEval subset before and after.")] = True,
    max_steps: Annotated[
        int | None,
        typer.Option(min=1, help="Stop training after this many steps (smoke runs only)."),
    ] = None,
    json_out: Annotated[Path | None, typer.Option(help="Also write the result (JSON) to this file.")] = None,
) -> None:
    """Holdout accuracy of production before and after one learning cycle on the scenario's corrections.

    The JSON result goes to stdout, the table and progress to stderr.
    """
    from genesys.bench.learn import format_table, run_learn_bench

    _quiet_logs()
    result = run_learn_bench(
        scenario, config=config, data_dir=data_dir, humaneval=humaneval, max_steps=max_steps
    )
    _emit_bench(json.dumps(result.model_dump(mode="json"), indent=2), format_table(result), json_out)
