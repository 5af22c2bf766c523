"""The Validator: measures the Trainer's candidate against production on the dataset's held-out rows and
the HumanEval regression guard, and records the verdict (``ValidationSummary``).

Tool: ``validate_candidate`` (``genesys.runtime.serving_versions.load_version`` to load both sides into
the engine, ``genesys.tools.validation.validate_candidate`` to measure and decide the gates,
``record_validation`` to move the adapter to ``validated`` or ``rejected``). The verdict is the gates',
never a model's: the registry lets only a ``validated`` adapter reach users, and only this tool makes
one.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any, ClassVar

import structlog
from autogen_agentchat.messages import BaseAgentEvent
from autogen_core import CancellationToken
from autogen_core.models import ChatCompletionClient

from genesys.agents.reports import GateVerdict, StepReport, TrainingReport, ValidationSummary
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
    from genesys.runtime.engines.base import InferenceEngine
    from genesys.runtime.settings import Settings
    from genesys.runtime.store import AdapterVersion
    from genesys.tools.validation import HeldOutItem, ValidationReport

log = structlog.get_logger(__name__)

NAME = "validator"
PROMPT = "validator"
DESCRIPTION = "Validates a candidate adapter against production and records the verdict of the quality gates."
BASE = "base"


def load_and_validate(
    engine: InferenceEngine,
    settings: Settings,
    *,
    candidate: AdapterVersion,
    baseline: AdapterVersion | None,
    held_out: list[HeldOutItem],
    humaneval: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> ValidationReport:
    """Load the candidate (and production) into ``engine`` and measure them; the real ``validate`` tool."""
    from genesys.runtime.serving_versions import load_version
    from genesys.tools.validation import validate_candidate

    load_version(engine, candidate)
    if baseline is not None:
        load_version(engine, baseline)
    return validate_candidate(
        engine,
        settings,
        candidate=candidate.version,
        baseline=baseline.version if baseline is not None else None,
        held_out=held_out,
        humaneval=humaneval,
        progress=progress,
    )


def summary_of(report: ValidationReport, *, state: str | None) -> ValidationSummary:
    return ValidationSummary(
        passed=report.passed,
        reason=report.summary or (report.error or "no verdict"),
        candidate=report.candidate,
        baseline=report.baseline_name,
        state=state,
        gates=[GateVerdict(name=g.name, passed=g.passed, reason=g.reason) for g in report.gates],
        metrics=report.metrics,
        error=report.error,
    )


def _stored_verdict(adapter: AdapterVersion) -> ValidationSummary | None:
    """The verdict already recorded on ``adapter`` (a cycle resumed after the Validator recorded it)."""
    stored: dict[str, Any] | None = (adapter.metrics or {}).get("validation")
    if adapter.state not in ("validated", "rejected") or not stored:
        return None
    return ValidationSummary(
        passed=adapter.state == "validated",
        reason=str(stored.get("summary") or f"{adapter.version} is {adapter.state}"),
        candidate=adapter.version,
        baseline=stored.get("baseline") or BASE,
        state=adapter.state,
        gates=[
            GateVerdict(**{k: g[k] for k in ("name", "passed", "reason")}) for g in stored.get("gates", [])
        ],
        metrics=stored.get("metrics") or {},
        error=stored.get("error"),
        report_path=stored.get("report_path"),
    )


def validate(ctx: CycleContext, candidate: str) -> ValidationSummary:
    """Validate ``candidate`` (a registered adapter in state ``candidate``) and record the verdict."""
    from genesys.tools.training_cycle import held_out_items, held_out_paths
    from genesys.tools.validation import record_validation

    registry = ctx.store.adapters
    adapter = registry.get(candidate)  # NotFound
    done = _stored_verdict(adapter)
    if done is not None:
        return done
    if adapter.state != "candidate":
        raise InvalidRequest(
            f"adapter {candidate} is {adapter.state}: only a candidate can be validated", param="candidate"
        )
    production = registry.production()
    baseline = production.version if production is not None else BASE
    paths = held_out_paths(ctx.settings, adapter.dataset_version) if adapter.dataset_version else []
    if not paths:
        reason = f"{candidate} has no held-out rows to be validated on (dataset {adapter.dataset_version})"
        return ValidationSummary(
            passed=False, reason=reason, candidate=candidate, baseline=baseline, error=reason
        )

    def progress(what: str, done: int, total: int) -> None:
        ctx.tell("validating", {"candidate": candidate, "what": what, "done": done, "total": total})

    try:
        report = ctx.toolbox.get("validate")(
            ctx.get_engine(),
            ctx.settings,
            candidate=adapter,
            baseline=production,
            held_out=held_out_items(paths),
            humaneval=ctx.humaneval,
            progress=progress,
        )
    except Exception as exc:  # a validation that cannot run rejects nothing and promotes nothing
        log.exception("validator.failed", candidate=candidate)
        reason = f"validation of {candidate} could not run: {type(exc).__name__}: {exc}"
        return ValidationSummary(
            passed=False, reason=reason, candidate=candidate, baseline=baseline, error=reason
        )
    recorded = record_validation(registry, candidate, report)
    summary = summary_of(report, state=recorded.state)
    summary.report_path = (recorded.metrics.get("validation") or {}).get("report_path")
    if not report.passed:
        _unload(ctx, candidate)
    return summary


def _unload(ctx: CycleContext, version: str) -> None:
    """Free the engine of a rejected candidate (it will never serve)."""
    try:
        ctx.get_engine().unload_adapter(version)
    except Exception as exc:
        log.debug("validator.unload_failed", version=version, error=str(exc))


def tools(ctx: CycleContext, slot: ReportSlot) -> list[ReportTool]:
    def validate_candidate(candidate: str) -> ValidationSummary:
        """Measure the candidate adapter against production on its dataset's held-out rows and the
        HumanEval guard, and record the verdict of the quality gates (validated or rejected)."""
        with slot.noting("validate_candidate"):
            return slot.keep(validate(ctx, candidate))

    return [ReportTool(validate_candidate, description=validate_candidate.__doc__ or "")]


class _Validator:
    report_type: ClassVar[type[StepReport]] = ValidationSummary
    deciding_tool: ClassVar[str] = "validate_candidate"

    def stop_report(self, reason: str) -> StepReport:
        return ValidationSummary(passed=False, reason=reason, error=reason)


class ValidatorPolicy(_Validator, PolicyAgent):
    """Validates the Trainer's candidate."""

    async def decide(
        self, inbox: Inbox, cancellation_token: CancellationToken
    ) -> AsyncGenerator[BaseAgentEvent, None]:
        training = inbox.latest(TrainingReport)
        if training is None or training.candidate is None:
            self.slot.keep(ValidationSummary(passed=False, reason="the Trainer registered no candidate"))
            return
        async for event in self.call(
            "validate_candidate", {"candidate": training.candidate}, cancellation_token
        ):
            yield event


class ValidatorLlm(_Validator, LlmAgent):
    pass


def policy_agent(ctx: CycleContext) -> RoleAgent:
    return build_policy_agent(ValidatorPolicy, NAME, DESCRIPTION, tools, ctx)


def llm_agent(ctx: CycleContext, client: ChatCompletionClient, prompt: str) -> RoleAgent:
    return build_llm_agent(ValidatorLlm, NAME, DESCRIPTION, tools, ctx, client, prompt)
