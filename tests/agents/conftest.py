"""Fixtures for the society's tests: a fresh SQLite store and embedded Chroma per test over the real
MiniLM, Fernwick corrections recorded as real interactions with feedback, fakes that stand in for a tool
only where the real one takes minutes (a training run, a validation), and a scripted model client for
llm mode."""

from __future__ import annotations

import itertools
import json
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import (
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    ModelCapabilities,
    ModelInfo,
    RequestUsage,
)
from autogen_core.tools import Tool, ToolSchema

from genesys.runtime.embeddings import Embedder, shared_embedder
from genesys.runtime.interaction_type import classify_interaction
from genesys.runtime.prompts import PROMPTS_DIR, PromptLibrary
from genesys.runtime.store import Feedback, Interaction, Store, TrainingRun, new_interaction_id, utcnow
from genesys.runtime.vectors import VectorStore
from genesys.tools.scenario import load_scenario
from genesys.tools.validation import GateResult, ValidationReport

SCENARIO = Path(__file__).resolve().parents[1] / "data" / "fernwick_scenario.jsonl"


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    shared = shared_embedder()
    shared.embed(["warm up"])
    return shared


@pytest.fixture()
def store(settings: Any) -> Iterator[Store]:
    opened = Store(settings.database_url)
    yield opened
    opened.close()


@pytest.fixture()
def vectors(settings: Any, embedder: Embedder) -> VectorStore:
    return VectorStore(path=settings.data_dir / "chroma", embedder=embedder)


@pytest.fixture()
def prompts(tmp_path: Path) -> PromptLibrary:
    """The repository's prompts, copied so that a test may break one."""
    directory = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, directory)
    return PromptLibrary(directory)


_clock = itertools.count()


def record_interaction(
    store: Store, question: str, *, answer: str = "I am not sure; try the documentation.", **fields: Any
) -> Interaction:
    fields.setdefault("created_at", utcnow() - timedelta(minutes=5) + timedelta(milliseconds=next(_clock)))
    interaction = Interaction(
        id=new_interaction_id("chat"),
        conversation_id=fields.pop("conversation_id", f"conv-{new_interaction_id('chat')[-8:]}"),
        request_messages=[{"role": "user", "content": question}],
        answer=answer,
        model_version="base",
        latency_ms=100.0,
        finish_reason="stop",
        interaction_type=classify_interaction(question),
        **fields,
    )
    store.interactions.record(interaction)
    return interaction


def fernwick_corrections(store: Store, n_items: int) -> int:
    """Each prompt of the first ``n_items`` Fernwick facts, answered wrong, thumbed down and corrected."""
    count = 0
    for item in load_scenario(SCENARIO).items[:n_items]:
        for number, prompt in enumerate(item.prompts):
            interaction = record_interaction(store, prompt, conversation_id=f"{item.id}-{number}")
            store.feedback.upsert(
                Feedback(interaction_id=interaction.id, thumbs="down", correction=item.correction)
            )
            count += 1
    return count


# -- fakes at the tool boundary ----------------------------------------------------------------------


def fake_run(
    store: Store,
    settings: Any,
    version: str,
    *,
    state: Literal["succeeded", "failed"],
    error: str | None = None,
) -> TrainingRun:
    """A finished run as ``train_dataset`` returns it; a succeeded one has (untrained) peft files, so that
    the real ``register_run_adapter`` registers it."""
    run_id = f"run-fake-{next(_clock)}"
    output = settings.data_dir / "runs" / run_id
    adapter_dir = output / "adapter"
    adapter_dir.mkdir(parents=True)
    if state == "succeeded":
        from safetensors.numpy import save_file

        config = {"peft_type": "LORA", "r": 16, "lora_alpha": 32, "target_modules": ["q_proj"]}
        (adapter_dir / "adapter_config.json").write_text(json.dumps(config))
        save_file({}, str(adapter_dir / "adapter_model.safetensors"))
    run = TrainingRun(
        id=run_id,
        state=state,
        dataset_version=version,
        output_dir=str(output),
        adapter_dir=str(adapter_dir) if state == "succeeded" else None,
        error=error,
        step=4,
        total_steps=4,
        loss=1.25,
        hyperparameters={"learning_rate": 1e-3, "epochs": 5},
        reasons=["small dataset: learning rate raised to 1e-3"],
    )
    return store.training_runs.create(run)


class FakeTrainer:
    """``train_dataset`` that finishes at once (or waits for ``release`` first), counting its calls."""

    def __init__(self, state: Literal["succeeded", "failed"] = "failed", *, block: bool = False) -> None:
        self.state = state
        self.calls: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not block:
            self.release.set()

    def __call__(
        self,
        settings: Any,
        store: Store,
        manager: Any,
        version: str,
        *,
        config: Any = None,
        watch: Any = None,
    ) -> TrainingRun:
        self.calls.append(version)
        self.started.set()
        self.release.wait(120)
        error = None if self.state == "succeeded" else "the loss became NaN at step 3"
        return fake_run(store, settings, version, state=self.state, error=error)


class FakeValidation:
    """``validate`` that returns a verdict at once: the gates the test chooses, as the real one reports."""

    def __init__(self, passed: bool) -> None:
        self.passed = passed
        self.calls: list[str] = []

    def __call__(
        self, engine: Any, settings: Any, *, candidate: Any, baseline: Any, **_: Any
    ) -> ValidationReport:
        self.calls.append(candidate.version)
        if self.passed:
            gates = [
                GateResult(
                    name="primary_improvement", passed=True, value=0.4, threshold=0.05, reason="+0.40 >= 0.05"
                ),
                GateResult(
                    name="validation_score", passed=True, value=0.86, threshold=0.8, reason="0.86 >= 0.80"
                ),
            ]
        else:
            gates = [
                GateResult(
                    name="primary_improvement",
                    passed=False,
                    value=0.0,
                    threshold=0.05,
                    reason="reference_pass_rate gained 0.00 over base; at least 0.05 is needed",
                ),
                GateResult(
                    name="humaneval_guard",
                    passed=False,
                    value=1.0,
                    threshold=0.01,
                    reason="HumanEval pass rate dropped 1.00 (from 1.00 to 0.00); at most 0.01 is allowed",
                ),
            ]
        verdict = "validated" if self.passed else "rejected"
        failed = [g for g in gates if not g.passed]
        details = "; ".join(f"{g.name}: {g.reason}" for g in (failed or gates))
        return ValidationReport(
            candidate=candidate.version,
            baseline=baseline.version if baseline is not None else None,
            metrics={"candidate": {"reference_pass_rate": 0.4}, "baseline": {"reference_pass_rate": 0.0}},
            gates=gates,
            passed=self.passed,
            summary=f"{candidate.version} {verdict} against base ({details}).",
        )


# -- a scripted model for llm mode ---------------------------------------------------------------------

Step = str | list[FunctionCall] | Callable[[Sequence[LLMMessage]], "str | list[FunctionCall]"]


def call(name: str, **arguments: Any) -> list[FunctionCall]:
    return [FunctionCall(id=f"call_{name}_{next(_clock)}", name=name, arguments=json.dumps(arguments))]


def report_field(messages: Sequence[LLMMessage], key: str) -> Any:
    """The latest value of ``key`` in a JSON report among the messages (what a model reads)."""
    for message in reversed(messages):
        content = getattr(message, "content", None)
        if isinstance(content, str) and content.startswith("{"):
            try:
                value = json.loads(content).get(key)
            except json.JSONDecodeError:
                continue
            if value:
                return value
    raise AssertionError(f"no report with {key!r} among the messages")


class ScriptedClient(ChatCompletionClient):
    """Answers with the next step of its script: text, tool calls, or a function of the messages that
    returns either. Records what it was sent."""

    def __init__(self, script: list[Step]) -> None:
        self.script = list(script)
        self.seen: list[list[LLMMessage]] = []
        self.tools_offered: list[list[str]] = []

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Any = "auto",
        json_output: Any = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        self.seen.append(list(messages))
        self.tools_offered.append([t.name if isinstance(t, Tool) else t["name"] for t in tools])
        step = self.script.pop(0) if self.script else "Done."
        if callable(step):
            step = step(messages)
        usage = RequestUsage(prompt_tokens=0, completion_tokens=0)
        if isinstance(step, str):
            return CreateResult(finish_reason="stop", content=step, usage=usage, cached=False)
        return CreateResult(finish_reason="function_calls", content=step, usage=usage, cached=False)

    def create_stream(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - not streamed
        raise NotImplementedError

    async def close(self) -> None:
        return None

    def actual_usage(self) -> RequestUsage:
        return RequestUsage(prompt_tokens=0, completion_tokens=0)

    def total_usage(self) -> RequestUsage:
        return RequestUsage(prompt_tokens=0, completion_tokens=0)

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return 0

    def remaining_tokens(
        self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []
    ) -> int:
        return 4096

    @property
    def capabilities(self) -> ModelCapabilities:
        return {"vision": False, "function_calling": True, "json_output": False}

    @property
    def model_info(self) -> ModelInfo:
        return {
            "vision": False,
            "function_calling": True,
            "json_output": False,
            "family": "unknown",
            "structured_output": False,
        }
