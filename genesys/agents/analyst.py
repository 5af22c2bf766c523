"""The Analyst: scores and tags the interactions, looks at what users corrected and liked, and decides
whether a cycle should train — "train / don't train, and why" (``AnalystReport``).

Tools: ``analyze_interactions`` (``genesys.tools.training_cycle.analyze_all`` over
``analyze_interactions``: quality scores, tiers, categories, topics in Chroma), ``interaction_overview``
(``genesys.tools.overview``: corrections, tiers, satisfaction, knowledge gaps) and the deciding
``decide_training``. The gate is in ``decide_training``: a cycle trains only on at least
``autogen_agents.data_analyst.min_examples`` usable examples (corrected answers plus premium ones),
whatever a model asks.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import ClassVar

from autogen_agentchat.messages import BaseAgentEvent
from autogen_core import CancellationToken
from autogen_core.models import ChatCompletionClient
from pydantic import BaseModel, Field

from genesys.agents.reports import AnalystReport, StepReport
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

NAME = "analyst"
PROMPT = "analyst"
DESCRIPTION = "Scores and tags interactions and decides whether there is enough good data to train."
DEFAULT_MIN_EXAMPLES = 4


class AnalysisDone(BaseModel):
    analysed: int = Field(
        description="Interactions scored and tagged (new ones and those with new feedback)."
    )


class DataOverview(BaseModel):
    """What the Analyst weighs: how much there is to learn from, and how good it is."""

    interactions: int
    new_interactions: int = Field(description="Since the previous cycle started.")
    analysed: int
    corrections: int = Field(
        description="Interactions with a usable correction (what was wrong, made right)."
    )
    premium: int = Field(description="High-quality answers users judged positively.")
    standard: int
    discarded: int = Field(description="Poor answers (below data_collection.discard_threshold).")
    usable_examples: int = Field(description="corrections + premium.")
    min_examples: int = Field(description="Usable examples needed to train.")
    mean_quality: float | None
    satisfaction: float | None
    gaps: list[str] = Field(description="Topics users correct most: '<topic> (<n> corrections)'.")
    latest_dataset: str | None


def min_examples(ctx: CycleContext) -> int:
    return ctx.settings.autogen_agents.data_analyst.min_examples or DEFAULT_MIN_EXAMPLES


def overview(ctx: CycleContext) -> DataOverview:
    """The store as the Analyst sees it now (after ``analyze_interactions``)."""
    report = ctx.toolbox.get("interaction_overview")(ctx.store, ctx.settings)
    corrections = report.corrections.interactions
    premium = report.by_tier.get("premium", 0)
    return DataOverview(
        interactions=report.interactions,
        new_interactions=ctx.store.cycles.interactions_since(ctx.previous_cycle_at),
        analysed=report.analyzed,
        corrections=corrections,
        premium=premium,
        standard=report.by_tier.get("standard", 0),
        discarded=report.by_tier.get("discarded", 0),
        usable_examples=corrections + premium,
        min_examples=min_examples(ctx),
        mean_quality=report.mean_quality,
        satisfaction=report.satisfaction.rate,
        gaps=[f"{gap.topic} ({gap.corrections} corrections)" for gap in report.gaps[:5]],
        latest_dataset=report.datasets[0].version if report.datasets else None,
    )


def gate(data: DataOverview) -> tuple[bool, str]:
    """Whether the data justifies training, and the sentence that says why (with the numbers)."""
    if data.interactions == 0:
        return False, "no interactions yet: nothing to learn from"
    counted = (
        f"{data.usable_examples} usable examples ({data.corrections} corrected, {data.premium} premium) "
        f"among {data.interactions} interactions"
    )
    if data.usable_examples < data.min_examples:
        poor = f", {data.discarded} of them discarded as poor" if data.discarded else ""
        return False, f"too little usable data: {counted}{poor}; at least {data.min_examples} are needed"
    return True, f"{counted} ({data.new_interactions} new): enough to train (at least {data.min_examples})"


def analyst_report(data: DataOverview, *, train: bool, reason: str, analysed: int) -> AnalystReport:
    return AnalystReport(
        train=train,
        reason=reason,
        interactions=data.interactions,
        new_interactions=data.new_interactions,
        analysed=analysed,
        corrections=data.corrections,
        premium=data.premium,
        discarded=data.discarded,
        usable_examples=data.usable_examples,
        min_examples=data.min_examples,
        satisfaction=data.satisfaction,
        gaps=data.gaps,
    )


def tools(ctx: CycleContext, slot: ReportSlot) -> list[ReportTool]:
    """The Analyst's tools over one cycle's context."""
    seen: dict[str, int] = {"analysed": 0}

    def analyze_interactions() -> AnalysisDone:
        """Score and tag every interaction that is new or got feedback since it was last analysed."""
        with slot.noting("analyze_interactions"):
            analysed = 0
            if ctx.store.interactions.count():  # an empty store needs no model loaded
                analysed = int(ctx.toolbox.get("analyze_all")(ctx.store, ctx.get_vectors(), ctx.settings))
        seen["analysed"] = analysed
        return AnalysisDone(analysed=analysed)

    def interaction_overview() -> DataOverview:
        """Counts of corrections and answer tiers, satisfaction and knowledge gaps, from the store."""
        with slot.noting("interaction_overview"):
            return overview(ctx)

    def decide_training(train: bool, reason: str) -> AnalystReport:
        """Decide whether this cycle trains, and say why. Training is refused below the minimum of
        usable examples (corrected plus premium answers)."""
        with slot.noting("decide_training"):
            data = overview(ctx)
        enough, why = gate(data)
        if train and not enough:
            why = f"asked to train ({reason}), refused: {why}"
        elif not train:
            why = reason.strip() or why
        return slot.keep(analyst_report(data, train=train and enough, reason=why, analysed=seen["analysed"]))

    return [
        ReportTool(analyze_interactions, description=analyze_interactions.__doc__ or ""),
        ReportTool(interaction_overview, description=interaction_overview.__doc__ or ""),
        ReportTool(decide_training, description=decide_training.__doc__ or ""),
    ]


class _Analyst:
    report_type: ClassVar[type[StepReport]] = AnalystReport
    deciding_tool: ClassVar[str] = "decide_training"

    def stop_report(self, reason: str) -> StepReport:
        return AnalystReport(train=False, reason=reason)


class AnalystPolicy(_Analyst, PolicyAgent):
    """Trains when the usable examples reach the minimum (the tool's own gate), else stops."""

    async def decide(
        self, inbox: Inbox, cancellation_token: CancellationToken
    ) -> AsyncGenerator[BaseAgentEvent, None]:
        async for event in self.call("analyze_interactions", {}, cancellation_token):
            yield event
        if self.result(AnalysisDone) is None:  # no decision on stale annotations
            return
        async for event in self.call("interaction_overview", {}, cancellation_token):
            yield event
        data = self.result(DataOverview)
        if data is None:
            return
        train, reason = gate(data)
        async for event in self.call(
            "decide_training", {"train": train, "reason": reason}, cancellation_token
        ):
            yield event


class AnalystLlm(_Analyst, LlmAgent):
    pass


def policy_agent(ctx: CycleContext) -> RoleAgent:
    return build_policy_agent(AnalystPolicy, NAME, DESCRIPTION, tools, ctx)


def llm_agent(ctx: CycleContext, client: ChatCompletionClient, prompt: str) -> RoleAgent:
    return build_llm_agent(AnalystLlm, NAME, DESCRIPTION, tools, ctx, client, prompt)
