"""What the society's five agents share: the cycle's context, the typed tools they call, and the two
ways an agent thinks.

- ``CycleContext``: what the tools work on (settings, store, vectors, the run manager, the engine the
  Validator loads adapters into) and the cycle's options; built once per cycle.
- ``Toolbox``: the typed functions of ``genesys.tools`` the agents call. Each defaults to the real
  one; a test replaces one at the tool boundary (a training run that would take minutes). The gates
  are not in it: recording a verdict and starting a rollout always go through the real registry and
  rollout service.
- ``ReportTool``: a ``FunctionTool`` whose pydantic results reach a model as JSON.
- ``PolicyAgent``: decides in code, calling its tools through the same ``FunctionTool`` objects (its
  tool calls and results are messages like a model's).
- ``LlmAgent``: an ``AssistantAgent`` driven by a model client, with the same tools and its prompt.

Either way the agent's turn ends with its report, a ``StructuredMessage`` built from what its
deciding tool returned (``ReportSlot``) — never from what a model wrote — so that the hard gates stay
in the tools. An agent that ends its turn without a report stops the cycle, with the reason.
"""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import structlog
from autogen_agentchat.agents import AssistantAgent, BaseChatAgent
from autogen_agentchat.base import Response
from autogen_agentchat.messages import (
    BaseAgentEvent,
    BaseChatMessage,
    StructuredMessage,
    TextMessage,
    ThoughtEvent,
    ToolCallExecutionEvent,
    ToolCallRequestEvent,
)
from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import ChatCompletionClient, FunctionExecutionResult
from autogen_core.tools import FunctionTool
from pydantic import BaseModel

from genesys.agents.reports import StepReport, report_of
from genesys.errors import InvalidRequest

if TYPE_CHECKING:
    from genesys.runtime.engines.base import InferenceEngine
    from genesys.runtime.settings import Settings
    from genesys.runtime.store import Store
    from genesys.runtime.vectors import VectorStore
    from genesys.tools.training.config import TrainingConfig
    from genesys.tools.training.runs import RunManager

log = structlog.get_logger(__name__)

R = TypeVar("R", bound=StepReport)
M = TypeVar("M", bound=BaseModel)
Progress = Callable[[str, dict[str, Any]], None]

# name -> (module, attribute) of the real tool; imported when first used, so that building the
# society stays cheap.
_REAL_TOOLS: dict[str, tuple[str, str]] = {
    "analyze_all": ("genesys.tools.training_cycle", "analyze_all"),
    "interaction_overview": ("genesys.tools.overview", "interaction_overview"),
    "dataset_for_training": ("genesys.tools.training_cycle", "dataset_for_training"),
    "train_dataset": ("genesys.tools.training.dataset_run", "train_dataset"),
    "register_run_adapter": ("genesys.tools.training.adapter_files", "register_run_adapter"),
    "write_adapter_scope": ("genesys.tools.training_cycle", "write_adapter_scope"),
    "validate": ("genesys.agents.validator", "load_and_validate"),
}


@dataclass
class Toolbox:
    """The typed tools of ``genesys.tools`` the agents call, each replaceable at its boundary.

    ``analyze_all(store, vectors, settings) -> int``; ``interaction_overview(store, settings)``;
    ``dataset_for_training(store, settings, *, vectors, force, analyse)``;
    ``train_dataset(settings, store, manager, version, *, config, watch) -> TrainingRun``;
    ``register_run_adapter(registry, run, adapters_dir) -> AdapterVersion``;
    ``write_adapter_scope(settings, dataset_version, adapter_dir) -> AdapterScope``;
    ``validate(engine, settings, *, candidate, baseline, held_out, humaneval, progress) -> ValidationReport``.
    """

    analyze_all: Callable[..., Any] | None = None
    interaction_overview: Callable[..., Any] | None = None
    dataset_for_training: Callable[..., Any] | None = None
    train_dataset: Callable[..., Any] | None = None
    register_run_adapter: Callable[..., Any] | None = None
    write_adapter_scope: Callable[..., Any] | None = None
    validate: Callable[..., Any] | None = None

    def get(self, name: str) -> Callable[..., Any]:
        """The replacement for tool ``name``, else the real tool; raises ``KeyError`` for an unknown one."""
        override = getattr(self, name, None)
        if override is not None:
            return override
        module, attribute = _REAL_TOOLS[name]
        tool: Callable[..., Any] = getattr(importlib.import_module(module), attribute)
        return tool


@dataclass
class CycleContext:
    """What one cycle's tools work on. Built per cycle; not shared between cycles."""

    settings: Settings
    store: Store
    cycle_id: str | None = None
    toolbox: Toolbox = field(default_factory=Toolbox)
    engine: InferenceEngine | Callable[[], InferenceEngine] | None = None
    vectors: VectorStore | None = None
    manager: RunManager | None = None
    training_config: TrainingConfig | None = None
    humaneval: bool = True
    force_curate: bool = False
    previous_cycle_at: datetime | None = None
    on_rollout: Callable[[], object] | None = None
    progress: Progress | None = None

    def get_vectors(self) -> VectorStore:
        if self.vectors is None:
            from genesys.runtime.vectors import VectorStore

            self.vectors = VectorStore.from_settings(self.settings)
        return self.vectors

    def get_manager(self) -> RunManager:
        if self.manager is None:
            from genesys.tools.training.runs import RunManager

            self.manager = RunManager(self.settings, store=self.store.training_runs)
        return self.manager

    def get_engine(self) -> InferenceEngine:
        """The engine the Validator loads adapters into; raises ``RuntimeError`` when there is none."""
        engine = self.engine
        if engine is None:
            raise RuntimeError("this cycle has no inference engine to validate with")
        if callable(engine) and not hasattr(engine, "load_adapter"):
            engine = engine()
            self.engine = engine
        return engine  # type: ignore[return-value]

    def tell(self, step: str, details: dict[str, Any]) -> None:
        """Report progress of a long step (training, validation) to whoever watches the cycle."""
        if self.progress is not None:
            try:
                self.progress(step, details)
            except Exception as exc:  # progress is for people; it never stops a step
                log.warning("cycle.progress_failed", step=step, error=str(exc))

    def record(self, **results: Any) -> None:
        """Keep what the cycle produced (dataset_version, run_id, candidate, rollout_id) on its row."""
        if self.cycle_id is not None:
            self.store.cycles.merge_results(self.cycle_id, results)

    def results(self) -> dict[str, Any]:
        if self.cycle_id is None:
            return {}
        return self.store.cycles.get(self.cycle_id).results


class ReportTool(FunctionTool):
    """A ``FunctionTool`` whose pydantic results are JSON for the model (dates included)."""

    def return_value_as_string(self, value: Any) -> str:
        if isinstance(value, BaseModel):
            return value.model_dump_json()
        return super().return_value_as_string(value)


class ReportSlot:
    """Where an agent's deciding tool leaves its report, and where tool refusals are noted."""

    def __init__(self) -> None:
        self.report: StepReport | None = None
        self.errors: list[str] = []

    def clear(self) -> None:
        self.report = None
        self.errors = []

    def keep(self, report: R) -> R:
        self.report = report
        return report

    @contextmanager
    def noting(self, tool: str) -> Iterator[None]:
        """Note why ``tool`` failed or refused (the agent's report says it), then let the error go on
        to the agent as the tool's result."""
        try:
            yield
        except Exception as exc:
            verdict = "refused" if isinstance(exc, InvalidRequest) else f"failed ({type(exc).__name__})"
            self.errors.append(f"{tool} {verdict}: {exc}")
            raise


class Inbox:
    """The messages an agent received this turn: the cycle's task and the reports before its own."""

    def __init__(self, messages: Sequence[BaseChatMessage]) -> None:
        self.messages = list(messages)

    def latest(self, kind: type[R]) -> R | None:
        for message in reversed(self.messages):
            report = report_of(message)
            if isinstance(report, kind):
                return report
        return None


class RoleAgent(BaseChatAgent):
    """One of the society's five: its tools, its report type, and the report that stops the cycle
    when its turn ends without one."""

    report_type: ClassVar[type[StepReport]]
    deciding_tool: ClassVar[str]

    def __init__(self, name: str, *, description: str, tools: list[FunctionTool], slot: ReportSlot) -> None:
        super().__init__(name=name, description=description)
        names = [tool.name for tool in tools]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate tool names: {names}")
        self.tools = {tool.name: tool for tool in tools}
        self.slot = slot

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return (StructuredMessage[self.report_type],)  # type: ignore[name-defined]

    def stop_report(self, reason: str) -> StepReport:
        """The report of a turn that produced none: it stops the cycle with ``reason``."""
        raise NotImplementedError

    def _final(self, inner: list[BaseAgentEvent | BaseChatMessage], fallback: str) -> Response:
        report = self.slot.report
        if report is None:  # the tools' refusals say more than "no report"
            report = self.stop_report("; ".join(self.slot.errors) or fallback)
        message = StructuredMessage[self.report_type](content=report, source=self.name)  # type: ignore[name-defined]
        return Response(chat_message=message, inner_messages=inner)

    async def on_messages(
        self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken
    ) -> Response:
        response: Response | None = None
        async for item in self.on_messages_stream(messages, cancellation_token):
            if isinstance(item, Response):
                response = item
        assert response is not None  # on_messages_stream always ends with a Response
        return response

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        self.slot.clear()


class PolicyAgent(RoleAgent):
    """Decides in code (``decide``), calling its tools as a model would."""

    def __init__(self, name: str, *, description: str, tools: list[FunctionTool], slot: ReportSlot) -> None:
        super().__init__(name, description=description, tools=tools, slot=slot)
        self._result: Any = None

    async def decide(
        self, inbox: Inbox, cancellation_token: CancellationToken
    ) -> AsyncGenerator[BaseAgentEvent, None]:
        """Call the tools this turn needs (``call``), ending with the deciding one."""
        raise NotImplementedError
        yield  # pragma: no cover - makes this an async generator

    async def call(
        self, tool_name: str, arguments: Mapping[str, Any], cancellation_token: CancellationToken
    ) -> AsyncGenerator[BaseAgentEvent, None]:
        """Run one tool: a request event, then its result (``self.result()``) or its error."""
        tool = self.tools[tool_name]
        call = FunctionCall(
            id=f"call_{uuid.uuid4().hex[:12]}", name=tool_name, arguments=json.dumps(arguments)
        )
        yield ToolCallRequestEvent(content=[call], source=self.name)
        self._result = None
        try:
            self._result = await tool.run_json(arguments, cancellation_token, call_id=call.id)
            content, is_error = tool.return_value_as_string(self._result), False
        except Exception as exc:  # a refused or failed tool is a result for the agent, not a crash
            log.warning("society.tool_failed", agent=self.name, tool=tool_name, error=str(exc))
            content, is_error = f"Error: {exc}", True
        result = FunctionExecutionResult(content=content, name=tool_name, call_id=call.id, is_error=is_error)
        yield ToolCallExecutionEvent(content=[result], source=self.name)

    def result(self, kind: type[M]) -> M | None:
        """The last tool's result, when it succeeded and is a ``kind``."""
        return self._result if isinstance(self._result, kind) else None

    async def on_messages_stream(
        self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken
    ) -> AsyncGenerator[BaseAgentEvent | BaseChatMessage | Response, None]:
        self.slot.clear()
        inner: list[BaseAgentEvent | BaseChatMessage] = []
        fallback = f"the {self.name} ended its turn without calling {self.deciding_tool}"
        try:
            async for event in self.decide(Inbox(messages), cancellation_token):
                inner.append(event)
                yield event
        except Exception as exc:
            log.exception("society.agent_failed", agent=self.name)
            self.slot.report = None
            fallback = f"the {self.name} failed: {type(exc).__name__}: {exc}"
        yield self._final(inner, fallback)


class LlmAgent(RoleAgent):
    """An ``AssistantAgent`` thinks (a model with the role's prompt and tools); the report is what the
    deciding tool returned."""

    def __init__(
        self,
        name: str,
        *,
        description: str,
        tools: list[FunctionTool],
        slot: ReportSlot,
        model_client: ChatCompletionClient,
        system_message: str,
        max_tool_iterations: int = 6,
    ) -> None:
        super().__init__(name, description=description, tools=tools, slot=slot)
        self.system_message = system_message
        self.assistant = AssistantAgent(
            name,
            model_client,
            tools=list(tools),
            description=description,
            system_message=system_message,
            reflect_on_tool_use=False,
            max_tool_iterations=max_tool_iterations,
        )

    async def on_messages_stream(
        self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken
    ) -> AsyncGenerator[BaseAgentEvent | BaseChatMessage | Response, None]:
        self.slot.clear()
        inner: list[BaseAgentEvent | BaseChatMessage] = []
        fallback = f"the {self.name}'s model ended its turn without calling {self.deciding_tool}"
        try:
            async for item in self.assistant.on_messages_stream(messages, cancellation_token):
                if isinstance(item, Response):
                    # The model's closing words (a tool-call summary repeats the results: not kept).
                    said = (
                        item.chat_message.to_text().strip()
                        if isinstance(item.chat_message, TextMessage)
                        else ""
                    )
                    if said:
                        thought = ThoughtEvent(content=said, source=self.name)
                        inner.append(thought)
                        yield thought
                    continue
                inner.append(item)
                yield item
        except Exception as exc:  # the model or its client failed: stop the cycle with the reason
            log.exception("society.model_failed", agent=self.name)
            fallback = f"the {self.name}'s model failed: {type(exc).__name__}: {exc}"
        yield self._final(inner, fallback)

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        await super().on_reset(cancellation_token)
        await self.assistant.on_reset(cancellation_token)

    async def save_state(self) -> Mapping[str, Any]:
        return await self.assistant.save_state()

    async def load_state(self, state: Mapping[str, Any]) -> None:
        await self.assistant.load_state(state)


ToolsFactory = Callable[["CycleContext", ReportSlot], list[ReportTool]]
P = TypeVar("P", bound=PolicyAgent)
L = TypeVar("L", bound=LlmAgent)


def build_policy_agent(
    cls: type[P], name: str, description: str, tools: ToolsFactory, ctx: CycleContext
) -> P:
    """A role's policy agent over its tools, with a fresh report slot."""
    slot = ReportSlot()
    return cls(name, description=description, tools=list(tools(ctx, slot)), slot=slot)


def build_llm_agent(
    cls: type[L],
    name: str,
    description: str,
    tools: ToolsFactory,
    ctx: CycleContext,
    client: ChatCompletionClient,
    prompt: str,
) -> L:
    """A role's model-driven agent over the same tools, with its prompt and a fresh report slot."""
    slot = ReportSlot()
    return cls(
        name,
        description=description,
        tools=list(tools(ctx, slot)),
        slot=slot,
        model_client=client,
        system_message=prompt,
        max_tool_iterations=ctx.settings.autogen_agents.max_tool_iterations,
    )
