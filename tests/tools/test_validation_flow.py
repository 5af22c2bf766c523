"""Validating candidate adapters end to end: the real embedded SmolLM2 in llama.cpp, the real MiniLM,
the real sandbox and a real adapter registry on SQLite.

No trained adapter exists here, so the candidates are GGUF LoRA adapters with random weights, written
without loading the base model: a destructive one (large weights: garbage answers) that must be
rejected, and a mild one that is validated on a held-out set whose references are what it answers
(so the baseline's different answers miss their facts) — the situation of an adapter trained on
corrections, measured on the corrected answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi import FastAPI, Request
from safetensors.torch import save_file

from genesys.errors import InvalidRequest
from genesys.runtime.engines.base import GenerationParams
from genesys.runtime.engines.llamacpp import LlamaCppEngine
from genesys.runtime.prompts import PromptLibrary
from genesys.runtime.settings import QualityGates, Settings
from genesys.runtime.store import AdapterVersion, Store
from genesys.tools.gguf_lora import export_lora_to_gguf
from genesys.tools.scenario import load_scenario
from genesys.tools.validation import (
    HeldOutItem,
    ValidationReport,
    held_out_from_scenario,
    record_validation,
    served_messages,
    validate_candidate,
)
from tests.support.vllm_stub import serve_vllm_stub

SCENARIO = Path(__file__).resolve().parents[1] / "data" / "fernwick_scenario.jsonl"
# SmolLM2-135M: 30 layers, hidden 576, MLP 1536, 3 KV heads of 64 dimensions.
LAYERS, HIDDEN, MLP, KV = 30, 576, 1536, 192
SHAPES = {  # module -> (out, in)
    "self_attn.q_proj": (HIDDEN, HIDDEN),
    "self_attn.k_proj": (KV, HIDDEN),
    "self_attn.v_proj": (KV, HIDDEN),
    "self_attn.o_proj": (HIDDEN, HIDDEN),
    "mlp.gate_proj": (MLP, HIDDEN),
    "mlp.up_proj": (MLP, HIDDEN),
    "mlp.down_proj": (HIDDEN, MLP),
}
RANK = 16
# The guard's problems: the base model passes both (greedy, measured), so the guard has something to
# lose; the mild adapter below passes them too, the destructive one neither.
GUARD_PROBLEMS = ["HumanEval/23", "HumanEval/28"]
PROMPTS = [
    "What does HTTP stand for?",
    "What is a variable?",
    "Name three sorting algorithms.",
]
MAX_TOKENS = 40


def _random_lora(directory: Path, *, seed: int, strength: float) -> Path:
    """A peft LoRA over every linear layer with random A and B (B scaled by ``strength``), exported
    to ``directory/adapter.gguf``; returns the directory (a registered version's layout)."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(LAYERS):
        for module, (out_dim, in_dim) in SHAPES.items():
            prefix = f"base_model.model.model.layers.{layer}.{module}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(RANK, in_dim, generator=generator) / in_dim**0.5
            tensors[f"{prefix}.lora_B.weight"] = (
                torch.randn(out_dim, RANK, generator=generator) * strength / RANK**0.5
            )
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "r": RANK,
        "lora_alpha": 2 * RANK,
        "bias": "none",
        "target_modules": sorted({m.split(".")[1] for m in SHAPES}),
    }
    (directory / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    export_lora_to_gguf(directory, directory / "adapter.gguf")
    return directory


def _gate_settings(settings: Settings, **gates: Any) -> Settings:
    values = {
        "humaneval_problems": GUARD_PROBLEMS,
        "max_tokens": MAX_TOKENS,
        "humaneval_max_tokens": 160,
        **gates,
    }
    gate_settings = QualityGates.model_validate({**settings.quality_gates.model_dump(), **values})
    return settings.model_copy(update={"quality_gates": gate_settings})


def _register(store: Store, version: str, directory: Path) -> None:
    store.adapters.register(
        AdapterVersion(version=version, path=str(directory), base_model="SmolLM2-135M-Instruct"),
        actor="trainer",
        reason="a test adapter",
    )


@pytest.fixture()
def store(settings: Settings) -> Iterator[Store]:
    opened = Store(settings.database_url)
    yield opened
    opened.close()


@pytest.fixture()
def adapters(llama_engine: LlamaCppEngine) -> Iterator[list[str]]:
    """Names loaded into the shared engine by the test; unloaded afterwards."""
    loaded: list[str] = []
    yield loaded
    for name in loaded:
        llama_engine.unload_adapter(name)


def _load(engine: LlamaCppEngine, loaded: list[str], name: str, directory: Path) -> None:
    engine.load_adapter(name, directory)
    loaded.append(name)


# -- errors that need no model time -------------------------------------------------------------------


def test_an_empty_held_out_set_is_refused(llama_engine: LlamaCppEngine, settings: Settings) -> None:
    with pytest.raises(InvalidRequest, match="no held-out items"):
        validate_candidate(llama_engine, settings, candidate="v1", baseline=None, held_out=[])


def test_a_generation_failure_fails_the_report_and_moves_nothing(
    llama_engine: LlamaCppEngine, settings: Settings, store: Store, tmp_path: Path
) -> None:
    items = held_out_from_scenario(load_scenario(SCENARIO), "holdout")[:1]
    # "v9" was never loaded into the engine: the engine refuses it.
    report = validate_candidate(llama_engine, settings, candidate="v9", baseline=None, held_out=items)
    assert not report.passed
    assert report.error is not None and "adapter 'v9' is not loaded" in report.error
    assert [(gate.name, gate.passed) for gate in report.gates] == [("answers", False)]
    assert report.summary.startswith("v9 not validated against base: validation could not finish (answers)")

    _register(store, "v9", tmp_path / "adapters" / "v9")
    version = record_validation(store.adapters, "v9", report)
    # A failure of the machinery is no verdict on the adapter: it stays a candidate.
    assert version.state == "candidate"
    assert version.metrics["validation"]["error"] == report.error
    assert (tmp_path / "adapters" / "v9" / "validation.json").is_file()


# -- slow: the real model on both sides --------------------------------------------------------------


@pytest.mark.slow
def test_a_destructive_candidate_is_rejected(
    llama_engine: LlamaCppEngine, settings: Settings, store: Store, adapters: list[str], tmp_path: Path
) -> None:
    directory = _random_lora(tmp_path / "adapters" / "v1", seed=7, strength=2.0)
    _register(store, "v1", directory)
    _load(llama_engine, adapters, "v1", directory)
    items = held_out_from_scenario(load_scenario(SCENARIO), "holdout")[:3]
    stages: list[str] = []

    report = validate_candidate(
        llama_engine,
        _gate_settings(settings),
        candidate="v1",
        baseline=None,
        held_out=items,
        progress=lambda stage, done, total: stages.append(stage),
    )

    assert not report.passed and report.error is None
    gates = {gate.name: gate for gate in report.gates}
    assert {name for name, gate in gates.items() if not gate.passed} == {
        "primary_improvement",
        "validation_score",
        "humaneval_guard",
    }, report.summary
    candidate, baseline = report.metrics["candidate"], report.metrics["baseline"]
    # The base model passes both guard problems; garbage passes none.
    assert baseline["humaneval_pass_rate"] == 1.0 and candidate["humaneval_pass_rate"] == 0.0
    assert "humaneval_pass_rate fell from 1.000 to 0.000" in gates["humaneval_guard"].reason
    assert candidate["bertscore_f1"] < 0.8 and "below the threshold 0.800" in gates["validation_score"].reason
    assert candidate["bertscore_f1"] < baseline["bertscore_f1"]
    assert candidate["bleu"] <= baseline["bleu"]
    assert report.summary.startswith("v1 rejected against base: 3 of 3 gates failed (primary_improvement:")
    assert [item.candidate_right for item in report.items] == [False] * 3
    assert stages[0] == "answers:candidate" and "humaneval:baseline" in stages and stages[-1] == "metrics"

    version = record_validation(store.adapters, "v1", report)
    assert version.state == "rejected"
    (transition,) = [t for t in store.adapters.transitions("v1") if t.to_state == "rejected"]
    assert (transition.from_state, transition.actor, transition.reason) == (
        "candidate",
        "validator",
        report.summary,
    )
    stored = version.metrics["validation"]
    assert stored["passed"] is False and stored["metrics"] == report.metrics
    assert [g["name"] for g in stored["gates"] if not g["passed"]] == [
        "primary_improvement",
        "validation_score",
        "humaneval_guard",
    ]
    written = ValidationReport.model_validate_json(
        (directory / "validation.json").read_text(encoding="utf-8")
    )
    assert written == report
    markdown = (directory / "validation.md").read_text(encoding="utf-8")
    assert markdown.startswith("# Validation of v1 against base: rejected")
    assert "| humaneval_guard | FAIL | 1.000 | 0.010 |" in markdown
    # Rejected is final: a second verdict cannot move it.
    with pytest.raises(InvalidRequest, match="rejected -> validated is not allowed"):
        record_validation(store.adapters, "v1", report.model_copy(update={"passed": True}))


def _references_app() -> FastAPI:
    """A judge that gives 5 to an answer equal to its reference and 2 to any other."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.json()
        text = body["messages"][-1]["content"]
        reference = text.split("Reference answer:\n", 1)[1].split("\n\nAssistant's answer:\n", 1)[0]
        answer = text.split("Assistant's answer:\n", 1)[1].rsplit("\n\nScore (1-5):", 1)[0]
        score = "5" if answer.strip() == reference.strip() else "2"
        return {
            "id": "judge",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": score}, "finish_reason": "stop"}
            ],
        }

    return app


@pytest.mark.slow
def test_a_candidate_that_answers_the_references_is_validated(
    llama_engine: LlamaCppEngine, settings: Settings, store: Store, adapters: list[str], tmp_path: Path
) -> None:
    directory = _random_lora(tmp_path / "adapters" / "v2", seed=4, strength=0.12)
    _register(store, "v2", directory)
    _load(llama_engine, adapters, "v2", directory)
    system = PromptLibrary().get("genesys").text
    params = GenerationParams(max_tokens=MAX_TOKENS, temperature=0.0, seed=0)

    def answer(prompt: str, adapter: str | None) -> str:
        messages = served_messages(system, [{"role": "user", "content": prompt}])
        return "".join(chunk.text for chunk in llama_engine.stream_chat(messages, params, adapter)).strip()

    # The held-out references are what the candidate answers; the base model answers differently.
    items = [
        HeldOutItem(
            id=f"p{n}", messages=[{"role": "user", "content": prompt}], reference=answer(prompt, "v2")
        )
        for n, prompt in enumerate(PROMPTS)
    ]
    assert all(item.reference != answer(item.prompt, None) for item in items)

    with serve_vllm_stub(app=_references_app()) as judge:
        gate_settings = _gate_settings(settings, judge={"base_url": judge.base_url, "model": "judge"})
        report = validate_candidate(
            llama_engine, gate_settings, candidate="v2", baseline=None, held_out=items
        )

    assert report.passed, report.summary
    assert [gate.name for gate in report.gates] == [
        "primary_improvement",
        "validation_score",
        "humaneval_guard",
        "judge_guard",
    ]
    candidate, baseline = report.metrics["candidate"], report.metrics["baseline"]
    assert candidate["reference_pass_rate"] == 1.0
    assert candidate["reference_pass_rate"] - baseline["reference_pass_rate"] >= 0.05
    assert candidate["bertscore_f1"] == pytest.approx(1.0, abs=1e-4) and candidate["bleu"] == pytest.approx(
        1.0
    )
    assert candidate["humaneval_pass_rate"] >= baseline["humaneval_pass_rate"] - 0.01
    assert (candidate["judge_score"], baseline["judge_score"]) == (1.0, 0.25)
    assert [item.candidate_judge for item in report.items] == [1.0] * len(PROMPTS)
    assert report.summary.startswith(
        "v2 validated against base: all 4 gates passed (reference_pass_rate went"
    )

    version = record_validation(store.adapters, "v2", report, actor="validator-agent")
    assert version.state == "validated"
    last = store.adapters.transitions("v2")[-1]
    assert (last.from_state, last.to_state, last.actor) == ("candidate", "validated", "validator-agent")
    assert version.metrics["validation"]["passed"] is True
    assert version.metrics["validation"]["report_path"] == str(directory / "validation.json")
    assert "validated" in (directory / "validation.md").read_text(encoding="utf-8").splitlines()[0]
