"""How the learning loop is set up in a running server: the society's agents, the data pipeline that
feeds them and the triggers that start their cycles (``GET /v1/learning``; the SDK's
``setup_training_system`` reads it).

Cheap to compute (settings, a few store counts, the prompt files): nothing loads a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from genesys.agents.society import AGENT_SETTINGS, ROLES, agent_settings, prompt_versions
from genesys.runtime.prompts import ASSISTANT_PROMPT, PromptLibrary

if TYPE_CHECKING:
    from genesys.agents.scheduler import CycleScheduler
    from genesys.runtime.settings import Settings
    from genesys.runtime.store import Store


class AgentSetup(BaseModel):
    """One member of the society."""

    name: str = Field(description="analyst, curator, trainer, validator, deploy, or genesys (the assistant).")
    settings_section: str | None = Field(description="Its section of autogen_agents; None for the assistant.")
    specialization: str | None = None
    prompt_version: str = Field(description="Short hash of prompts/<name>.md in use; 'unavailable' if none.")


class SocietySetup(BaseModel):
    available: bool = Field(description="This server runs the society (POST /v1/cycles can start a cycle).")
    running: bool = Field(description="Its background worker is alive.")
    mode: Literal["policy", "llm"]
    llm_server: str | None = Field(description="llm mode: the agents' model server; None: the served engine.")
    agents: list[AgentSetup]
    warnings: list[str] = Field(description="Prompt files refused (their last good version stays in use).")


class TriggerSetup(BaseModel):
    automatic: bool = Field(
        description="A cycle starts by itself every trigger_threshold interactions (autogen_agents.schedule)."
    )
    trigger_threshold: int | None
    poll_seconds: float
    interactions_since_last_cycle: int
    active_cycle: str | None = Field(description="The cycle running now, if any.")
    last_cycle: str | None
    last_outcome: str | None


class DataPipelineSetup(BaseModel):
    store: Literal["ok", "unreachable"]
    interactions: int = Field(description="Interactions stored.")
    log_all_interactions: bool
    raw_export_dir: str = Field(description="Where interactions are appended by type (the seed's data/raw).")
    raw_export_ready: bool
    vectors: str = Field(description="The Chroma store the Analyst tags into: a server URL or a directory.")
    tag_categories: list[str]
    min_examples: int | None = Field(description="Usable examples the Analyst needs before training.")
    min_train_rows: int | None = Field(description="Training rows the Curator needs in a dataset.")


class LearningSetup(BaseModel):
    """The learning loop's set-up and state now."""

    model: str = Field(description="The model name clients send (model.name).")
    society: SocietySetup
    triggers: TriggerSetup
    data_pipeline: DataPipelineSetup


def learning_setup(
    settings: Settings,
    store: Store,
    scheduler: CycleScheduler | None,
    *,
    prompts: PromptLibrary | None = None,
) -> LearningSetup:
    """The report for a server with ``scheduler`` (None: the society does not run in it)."""
    agents_cfg = settings.autogen_agents
    versions, warnings = prompt_versions(prompts or PromptLibrary())
    agents = [
        AgentSetup(
            name=role.NAME,
            settings_section=AGENT_SETTINGS[role.NAME],
            specialization=agent_settings(settings, role.NAME).specialization,
            prompt_version=versions.get(role.PROMPT, "unavailable"),
        )
        for role in ROLES
    ]
    agents.append(
        AgentSetup(
            name=ASSISTANT_PROMPT,
            settings_section=None,
            prompt_version=versions.get(ASSISTANT_PROMPT, "unavailable"),
        )
    )
    store_ok = store.ping()
    latest = store.cycles.latest() if store_ok else None
    active = store.cycles.active() if store_ok else None
    raw = Path(settings.data_dir) / "raw"
    analyst = agents_cfg.data_analyst
    return LearningSetup(
        model=settings.model.name,
        society=SocietySetup(
            available=scheduler is not None,
            running=scheduler is not None and scheduler.running,
            mode=agents_cfg.mode,
            llm_server=agents_cfg.llm.base_url if agents_cfg.llm is not None else None,
            agents=agents,
            warnings=warnings,
        ),
        triggers=TriggerSetup(
            automatic=scheduler.automatic if scheduler is not None else False,
            trigger_threshold=analyst.trigger_threshold,
            poll_seconds=agents_cfg.poll_seconds,
            interactions_since_last_cycle=(
                store.cycles.interactions_since(latest.created_at if latest else None) if store_ok else 0
            ),
            active_cycle=active.id if active else None,
            last_cycle=latest.id if latest else None,
            last_outcome=latest.outcome if latest else None,
        ),
        data_pipeline=DataPipelineSetup(
            store="ok" if store_ok else "unreachable",
            interactions=store.interactions.count() if store_ok else 0,
            log_all_interactions=settings.data_collection.log_all_interactions,
            raw_export_dir=str(raw),
            raw_export_ready=raw.is_dir(),
            vectors=settings.storage.chroma_url or str(Path(settings.data_dir) / "chroma"),
            tag_categories=list(settings.data_collection.tag_categories),
            min_examples=analyst.min_examples,
            min_train_rows=agents_cfg.data_curator.min_train_rows,
        ),
    )
