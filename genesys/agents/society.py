"""The society: the team of agents that turns Genesys' interactions into better adapters.

Six members. The Genesys assistant (``genesys.agents.genesys``) serves users; the other five run the
learning cycle as an autogen ``GraphFlow`` with conditional edges, each passing its report to the next::

    analyst --train--> curator --usable dataset--> trainer --candidate--> validator --passed--> deploy
       |                  |                           |                       |
       stop: too little   stop: too few rows,         stop: the run           stop: rejected, with the
       or too poor data   no held-out rows            failed or was cancelled Validator's reasons

An edge is taken when the report says ``proceed``; when none is, the graph ends and the last report
says why. The team runs one turn at a time (``max_turns=1``), so that its state can be saved between
turns and a cycle resumed after a restart (``genesys.agents.cycles``).

Two ways to think (``autogen_agents.mode``): ``policy`` (decisions in code: works with the embedded
model) and ``llm`` (each agent an ``AssistantAgent`` with its prompt from ``prompts/<agent>.md`` and a
model client: the served engine, or a model of the ``autogen_agents.llm`` server). The tools and their
gates are the same either way.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from autogen_agentchat.teams import DiGraphBuilder, GraphFlow
from autogen_core.models import ChatCompletionClient

from genesys.agents import analyst, curator, deploy, trainer, validator
from genesys.agents.reports import REPORT_MESSAGE_TYPES, proceeds
from genesys.agents.roles import CycleContext, RoleAgent
from genesys.errors import ConfigError
from genesys.runtime.prompts import ASSISTANT_PROMPT, PromptLibrary

if TYPE_CHECKING:
    from genesys.runtime.engine_host import EngineHost
    from genesys.runtime.settings import AgentConfig, Settings

Mode = Literal["policy", "llm"]
# The cycle's agents in the order the graph runs them.
ROLES: tuple[ModuleType, ...] = (analyst, curator, trainer, validator, deploy)
ROLE_NAMES: tuple[str, ...] = tuple(role.NAME for role in ROLES)
# The sixth member: it serves users, outside the cycle; its prompt version is recorded with each cycle
# (the Trainer trains under it, the Validator measures with it).
ASSISTANT = "genesys"
MEMBERS: tuple[str, ...] = (*ROLE_NAMES, ASSISTANT)
# Each role's section of autogen_agents (the seed's names).
AGENT_SETTINGS = {
    "analyst": "data_analyst",
    "curator": "data_curator",
    "trainer": "trainer_agent",
    "validator": "validator_agent",
    "deploy": "deploy_agent",
}
ModelClientFactory = Callable[[str], ChatCompletionClient]


@dataclass
class Society:
    """One cycle's team: its agents (built for that cycle only) and the graph that connects them."""

    team: GraphFlow
    agents: dict[str, RoleAgent]
    mode: Mode
    prompt_versions: dict[str, str] = field(default_factory=dict)


def agent_settings(settings: Settings, role: str) -> AgentConfig:
    config: AgentConfig = getattr(settings.autogen_agents, AGENT_SETTINGS[role])
    return config


def build_society(
    ctx: CycleContext,
    *,
    mode: Mode = "policy",
    prompts: PromptLibrary | None = None,
    model_client: ModelClientFactory | None = None,
) -> Society:
    """The five agents for ``mode`` over ``ctx``, wired as the graph above.

    ``model_client(role)`` gives each agent its client in llm mode. Raises ``ConfigError`` in llm mode
    when a prompt was never readable or no model client is given.
    """
    prompts = prompts or PromptLibrary()
    agents: list[RoleAgent] = []
    versions: dict[str, str] = {}
    for role in ROLES:
        if mode == "policy":
            agents.append(role.policy_agent(ctx))
            continue
        if model_client is None:
            raise ConfigError("llm mode needs a model client for each agent")
        prompt = prompts.get(role.PROMPT)  # the last good text when the file was refused
        versions[role.NAME] = prompt.version
        agents.append(role.llm_agent(ctx, model_client(role.NAME), prompt.text))
    builder = DiGraphBuilder()
    for agent in agents:
        builder.add_node(agent)
    for source, target in itertools.pairwise(agents):
        builder.add_edge(source, target, condition=proceeds)
    builder.set_entry_point(agents[0])
    team = GraphFlow(
        participants=list(agents),
        graph=builder.build(),
        max_turns=1,  # one agent per run: the state is saved between turns
        custom_message_types=list(REPORT_MESSAGE_TYPES),
    )
    return Society(team=team, agents={a.name: a for a in agents}, mode=mode, prompt_versions=versions)


def prompt_versions(prompts: PromptLibrary) -> tuple[dict[str, str], list[str]]:
    """The version of every member's prompt in use now, and a warning for each prompt file that is
    refused (empty, not UTF-8, too big, missing): its last good version stays in use, or, when it never
    had one, it is ``unavailable``."""
    versions: dict[str, str] = {}
    warnings: list[str] = []
    for name in (*(role.PROMPT for role in ROLES), ASSISTANT_PROMPT):
        try:
            versions[name] = prompts.get(name).version
        except ConfigError as exc:
            versions[name] = "unavailable"
            warnings.append(f"prompt {name} refused: {exc}; there is no earlier good version")
            continue
        try:  # a library without a cache reads the file as it is now
            PromptLibrary(prompts.directory).get(name)
        except ConfigError as exc:
            warnings.append(
                f"prompt {name} refused: {exc}; the last good version {versions[name]} stays in use"
            )
    return versions, warnings


def model_clients(settings: Settings, host: EngineHost | None) -> ModelClientFactory:
    """llm mode's clients. Without ``autogen_agents.llm``, every agent's ``model`` must be ``model.name``
    and thinks with the served engine (``host``). With it (vLLM or any OpenAI-compatible server, reached
    through Genesys' vLLM engine), ``model.name`` stands for ``llm.model`` and any other name is a model
    of that server. Tool calls are emulated in the prompt either way.

    Raises ``ConfigError`` for a model that no configured engine serves.
    """
    from genesys.agents.model_client import EngineChatCompletionClient
    from genesys.runtime.engine_host import EngineHost
    from genesys.runtime.engines.base import GenerationParams

    llm = settings.autogen_agents.llm
    params = GenerationParams(
        max_tokens=llm.max_tokens if llm else 512, temperature=llm.temperature if llm else 0.0, seed=0
    )
    remote: dict[str, EngineHost] = {}

    def for_role(role: str) -> ChatCompletionClient:
        model = agent_settings(settings, role).model
        if model == settings.model.name and llm is None:
            if host is None:
                raise ConfigError(
                    f"the {role} agent's model {model} is the served engine, which is not running here"
                )
            return EngineChatCompletionClient(host, params=params)
        if llm is None:
            raise ConfigError(
                f"the {role} agent's model {model} needs autogen_agents.llm (an OpenAI-compatible server)"
            )
        served = llm.model if model == settings.model.name else model
        if served not in remote:
            from genesys.runtime.engines.vllm import VllmEngine

            key = os.environ.get(llm.api_key_env) if llm.api_key_env else None
            engine = VllmEngine(llm.base_url, api_key=key, served_model=served, timeout_s=llm.timeout_s)
            engine.load()
            remote[served] = EngineHost(engine)
        return EngineChatCompletionClient(remote[served], params=params)

    return for_role
