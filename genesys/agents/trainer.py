"""The Trainer: trains a LoRA adapter on the Curator's dataset version and registers it as a candidate
(``TrainingReport``).

Tool: ``train_adapter`` (``genesys.tools.training.dataset_run.train_dataset``: a worker subprocess
with persisted progress and hyperparameters adapted to the data, then
``genesys.tools.training.adapter_files.register_run_adapter``: peft files + GGUF LoRA + lineage, state
``candidate``; then its scope, ``genesys.tools.training_cycle.write_adapter_scope``). The run's id is
kept on the cycle as soon as it starts, so that a cycle resumed after a restart follows that run (its
worker outlives the process that started it) instead of training again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import structlog
from autogen_agentchat.messages import BaseAgentEvent
from autogen_core import CancellationToken
from autogen_core.models import ChatCompletionClient

from genesys.agents.reports import DatasetReport, StepReport, TrainingReport
from genesys.agents.roles import (
    CycleContext,
    Inbox,
    LlmAgent,
    PolicyAgent,
    ReportSlot,
    ReportTool,
    RoleAgent,
    build_llm_agent,
    build_policy_agent,
)
from genesys.errors import InvalidRequest

if TYPE_CHECKING:
    from genesys.runtime.store import AdapterVersion, TrainingRun

log = structlog.get_logger(__name__)

NAME = "trainer"
PROMPT = "trainer"
DESCRIPTION = "Trains a LoRA adapter on a dataset version and registers it as a candidate."
_PROGRESS_EVERY_S = 5.0


def _recorded_run(ctx: CycleContext, version: str) -> TrainingRun | None:
    """The run this cycle started before a restart, if it can still give a candidate."""
    run_id = ctx.results().get("run_id")
    if not run_id:
        return None
    run = ctx.store.training_runs.get(run_id)
    if run.dataset_version != version:
        return None
    if not run.finished:
        log.info("trainer.following_run", run_id=run.id, cycle=ctx.cycle_id)
        run = ctx.get_manager().wait(run.id)
    if run.state == "succeeded":
        return run
    log.info("trainer.retraining", run_id=run.id, state=run.state, cycle=ctx.cycle_id)
    return None


def _registered(ctx: CycleContext, run: TrainingRun) -> AdapterVersion:
    for adapter in ctx.store.adapters.versions():
        if adapter.run_id == run.id:
            return adapter
    register = ctx.toolbox.get("register_run_adapter")
    registered: AdapterVersion = register(ctx.store.adapters, run, ctx.settings.data_dir / "adapters")
    if ctx.settings.training_pipeline.adapter_scope and run.dataset_version:
        _scope(ctx, registered, run.dataset_version)
    return registered


def _scope(ctx: CycleContext, adapter: AdapterVersion, dataset_version: str) -> None:
    """Give the candidate its scope (``genesys.runtime.adapter_scope``). A scope that cannot be made
    leaves the adapter answering everything, which the Validator then measures as such."""
    try:
        scope = ctx.toolbox.get("write_adapter_scope")(ctx.settings, dataset_version, Path(adapter.path))
    except Exception as exc:  # the candidate stands without a scope
        log.warning("trainer.scope_failed", candidate=adapter.version, reason=str(exc))
        ctx.tell("scope_failed", {"candidate": adapter.version, "reason": str(exc)})
        return
    ctx.tell(
        "scoped",
        {"candidate": adapter.version, "threshold": scope.threshold, "questions": len(scope.questions)},
    )


def train(ctx: CycleContext, version: str) -> TrainingReport:
    """Train on ``version`` (or follow the run a resumed cycle started) and register the candidate."""
    started = time.monotonic()
    ctx.store.datasets.get(version)  # NotFound for an unknown version
    run = _recorded_run(ctx, version)
    if run is None:
        last_told = [0.0]
        recorded: set[str] = set()

        def watch(current: TrainingRun) -> None:
            if current.id not in recorded:  # at once, so that a restart follows this run
                ctx.record(run_id=current.id)
                recorded.add(current.id)
            now = time.monotonic()
            if now - last_told[0] >= _PROGRESS_EVERY_S or current.finished:
                last_told[0] = now
                ctx.tell(
                    "training",
                    {
                        "run_id": current.id,
                        "state": current.state,
                        "phase": current.phase,
                        "step": current.step,
                        "total_steps": current.total_steps,
                        "loss": current.loss,
                        "eta_s": current.eta_s,
                    },
                )

        try:
            run = ctx.toolbox.get("train_dataset")(
                ctx.settings,
                ctx.store,
                ctx.get_manager(),
                version,
                config=ctx.training_config,
                watch=watch,
            )
        except InvalidRequest as exc:
            return TrainingReport(succeeded=False, reason=str(exc), dataset_version=version)
        ctx.record(run_id=run.id)
    report = TrainingReport(
        succeeded=False,
        reason="",
        dataset_version=version,
        run_id=run.id,
        run_state=run.state,
        steps=run.step,
        loss=run.loss,
        hyperparameters=run.hyperparameters or {},
        adaptations=run.reasons or [],
    )
    if run.state != "succeeded":
        report.reason = f"training run {run.id} {run.state}: {run.error or 'no reason recorded'}"
        report.seconds = round(time.monotonic() - started, 2)
        return report
    candidate = _registered(ctx, run)
    ctx.record(candidate=candidate.version)
    report.succeeded = True
    report.candidate = candidate.version
    loss = f", final loss {run.loss:.3f}" if run.loss is not None else ""
    report.reason = (
        f"run {run.id} trained {run.step or 0} steps on {version}{loss}; candidate {candidate.version}"
    )
    report.seconds = round(time.monotonic() - started, 2)
    return report


def tools(ctx: CycleContext, slot: ReportSlot) -> list[ReportTool]:
    def train_adapter(dataset_version: str) -> TrainingReport:
        """Train a LoRA adapter on the dataset version (minutes: a worker process) and register it as a
        candidate; reports the run, its loss and the candidate's version."""
        with slot.noting("train_adapter"):
            return slot.keep(train(ctx, dataset_version))

    return [ReportTool(train_adapter, description=train_adapter.__doc__ or "")]


class _Trainer:
    report_type: ClassVar[type[StepReport]] = TrainingReport
    deciding_tool: ClassVar[str] = "train_adapter"

    def stop_report(self, reason: str) -> StepReport:
        return TrainingReport(succeeded=False, reason=reason)


class TrainerPolicy(_Trainer, PolicyAgent):
    """Trains on the Curator's version."""

    async def decide(
        self, inbox: Inbox, cancellation_token: CancellationToken
    ) -> AsyncGenerator[BaseAgentEvent, None]:
        dataset = inbox.latest(DatasetReport)
        if dataset is None or not dataset.usable or dataset.version is None:
            self.slot.keep(TrainingReport(succeeded=False, reason="the Curator gave no dataset to train on"))
            return
        async for event in self.call(
            "train_adapter", {"dataset_version": dataset.version}, cancellation_token
        ):
            yield event


class TrainerLlm(_Trainer, LlmAgent):
    pass


def policy_agent(ctx: CycleContext) -> RoleAgent:
    return build_policy_agent(TrainerPolicy, NAME, DESCRIPTION, tools, ctx)


def llm_agent(ctx: CycleContext, client: ChatCompletionClient, prompt: str) -> RoleAgent:
    return build_llm_agent(TrainerLlm, NAME, DESCRIPTION, tools, ctx, client, prompt)
