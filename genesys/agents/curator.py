"""The Curator: turns the analysed interactions into a versioned dataset (``DatasetReport``).

Tool: ``curate_dataset`` (``genesys.tools.training_cycle.dataset_for_training`` over
``genesys.tools.curation.curate_dataset``: filter, scrub secrets, dedupe, balance, split, paraphrase
corrected questions). It reuses the latest version when nothing changed since it was curated. The gate
is in the tool: a version with fewer than ``autogen_agents.data_curator.min_train_rows`` training rows,
or without test or validation rows to validate a candidate on, cannot go to the Trainer.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import ClassVar

from autogen_agentchat.messages import BaseAgentEvent
from autogen_core import CancellationToken
from autogen_core.models import ChatCompletionClient

from genesys.agents.reports import AnalystReport, DatasetReport, StepReport
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

NAME = "curator"
PROMPT = "curator"
DESCRIPTION = "Curates the analysed interactions into a versioned, scrubbed, balanced and split dataset."


def _rows(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def min_train_rows(ctx: CycleContext) -> int:
    from genesys.tools.training_cycle import MIN_TRAIN_ROWS

    return ctx.settings.autogen_agents.data_curator.min_train_rows or MIN_TRAIN_ROWS


def dataset_report(ctx: CycleContext, version: str, *, curated: bool) -> DatasetReport:
    """The report on ``version``: its rows per split, and whether it can be trained and validated on."""
    from genesys.tools.dataset_selection import SPLITS
    from genesys.tools.dataset_writer import split_dir
    from genesys.tools.training.data import SFT_FILE
    from genesys.tools.training_cycle import held_out_paths

    splits = {split: _rows(split_dir(ctx.settings.data_dir, split, version) / SFT_FILE) for split in SPLITS}
    held_out = held_out_paths(ctx.settings, version)
    held_out_rows = sum(_rows(path) for path in held_out)
    needed = min_train_rows(ctx)
    if splits["train"] < needed:
        usable, reason = (
            False,
            f"dataset {version} has {splits['train']} training rows; at least {needed} are needed",
        )
    elif not held_out:
        usable, reason = False, f"dataset {version} has no test or validation rows to validate a candidate on"
    else:
        what = "curated" if curated else "reused (nothing changed since it was curated)"
        usable, reason = (
            True,
            f"dataset {version} {what}: {splits['train']} training rows, "
            f"{held_out_rows} held out to validate on",
        )
    return DatasetReport(
        usable=usable,
        reason=reason,
        version=version,
        curated=curated,
        train_rows=splits["train"],
        held_out_rows=held_out_rows,
        held_out_paths=[str(path) for path in held_out],
        min_train_rows=needed,
        splits=splits,
    )


def tools(ctx: CycleContext, slot: ReportSlot) -> list[ReportTool]:
    def curate_dataset(force: bool = False) -> DatasetReport:
        """Curate a new dataset version from the analysed interactions (or reuse the latest one when
        nothing changed; force=true curates anyway) and report whether it can be trained on."""
        try:
            dataset, curated = ctx.toolbox.get("dataset_for_training")(
                ctx.store,
                ctx.settings,
                vectors=ctx.get_vectors(),
                force=force or ctx.force_curate,
                analyse=False,  # the Analyst has just analysed every interaction
            )
        except InvalidRequest as exc:  # nothing to curate: a verdict, not a failure of the tool
            return slot.keep(DatasetReport(usable=False, reason=str(exc)))
        ctx.record(dataset_version=dataset.version)
        return slot.keep(dataset_report(ctx, dataset.version, curated=curated))

    return [ReportTool(curate_dataset, description=curate_dataset.__doc__ or "")]


class _Curator:
    report_type: ClassVar[type[StepReport]] = DatasetReport
    deciding_tool: ClassVar[str] = "curate_dataset"

    def stop_report(self, reason: str) -> StepReport:
        return DatasetReport(usable=False, reason=reason)


class CuratorPolicy(_Curator, PolicyAgent):
    """Curates whenever the Analyst decided to train (the graph only calls it then)."""

    async def decide(
        self, inbox: Inbox, cancellation_token: CancellationToken
    ) -> AsyncGenerator[BaseAgentEvent, None]:
        analysis = inbox.latest(AnalystReport)
        if analysis is None or not analysis.train:
            self.slot.keep(DatasetReport(usable=False, reason="the Analyst did not decide to train"))
            return
        async for event in self.call("curate_dataset", {}, cancellation_token):
            yield event


class CuratorLlm(_Curator, LlmAgent):
    pass


def policy_agent(ctx: CycleContext) -> RoleAgent:
    return build_policy_agent(CuratorPolicy, NAME, DESCRIPTION, tools, ctx)


def llm_agent(ctx: CycleContext, client: ChatCompletionClient, prompt: str) -> RoleAgent:
    return build_llm_agent(CuratorLlm, NAME, DESCRIPTION, tools, ctx, client, prompt)
