"""Adapter scope with the real MiniLM: the threshold calibrated from training rows, and ScopedEngine
routing out-of-scope requests of a real (tiny llama) transformers engine to the base model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from genesys.errors import EngineError
from genesys.runtime.adapter_scope import (
    DEFAULT_THRESHOLD,
    SCOPE_FILE,
    AdapterScope,
    ScopedEngine,
    build_scope,
    questions_and_answers,
)
from genesys.runtime.embeddings import Embedder, shared_embedder
from genesys.runtime.engines.base import ChatMessage, GenerationParams
from genesys.tools.training.replay import replay_prompts
from genesys.tools.validation.humaneval_guard import completion_request, load_problems
from tests.support.tiny_llama import scenario_items

GREEDY = GenerationParams(max_tokens=8, temperature=0.0)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return shared_embedder()


@pytest.fixture(scope="module")
def fernwick_scope(embedder: Embedder) -> AdapterScope:
    """The scope of an adapter trained on each fact's three training phrasings."""
    items = scenario_items()
    questions = [q for item in items for q in item["prompts"]]
    answers = [item["correction"] for item in items for _ in item["prompts"]]
    return build_scope(questions, answers, [p.text for p in replay_prompts()], embedder.embed)


def _max_similarity(embedder: Embedder, scope: AdapterScope, texts: list[str]) -> list[float]:
    return [float(v) for v in (embedder.embed(texts) @ embedder.embed(scope.questions).T).max(axis=1)]


def test_the_calibrated_threshold_admits_unseen_phrasings_and_keeps_out_humaneval(
    fernwick_scope: AdapterScope, embedder: Embedder
) -> None:
    scope = fernwick_scope
    assert 0.4 <= scope.threshold <= 0.8
    assert "percentile" in scope.reasons[0] and "general prompts" in scope.reasons[0]
    assert len(scope.questions) == 3 * len(scenario_items())
    # Calibrated on training rows only; checked here on what it never saw.
    holdout = [h for item in scenario_items() for h in item["holdout"]]
    assert min(_max_similarity(embedder, scope, holdout)) >= scope.threshold
    guard = [completion_request(p)[0].content for p in load_problems([f"HumanEval/{n}" for n in range(164)])]
    assert max(_max_similarity(embedder, scope, guard)) < scope.threshold


def test_a_configured_threshold_wins_and_rows_without_paraphrases_get_the_default(embedder: Embedder) -> None:
    fixed = build_scope(["a?", "b?"], ["A", "B"], ["general"], embedder.embed, threshold=0.7)
    assert fixed.threshold == 0.7 and "configuration" in fixed.reasons[0]
    lone = build_scope(["What is fernwick?"], ["A library."], ["general"], embedder.embed)
    assert lone.threshold == DEFAULT_THRESHOLD and "no answer has two questions" in lone.reasons[0]
    with pytest.raises(ValueError, match="at least one"):
        build_scope([], [], [], embedder.embed)


def test_questions_are_read_from_chat_rows(tmp_path: Path) -> None:
    rows = [
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "q1"},
                {"role": "assistant", "content": "a1"},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "q2"}]},
                {"role": "assistant", "content": "a2"},
            ]
        },
        {"messages": [{"role": "user", "content": "no answer"}]},
    ]
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert questions_and_answers(path) == (["q1", "q2"], ["a1", "a2"])


# -- ScopedEngine on a real engine -----------------------------------------------------------------


@pytest.fixture(scope="module")
def adapter_dir(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random LoRA adapter for the tiny llama, strong enough to change its greedy tokens."""
    import torch
    from peft import LoraConfig, get_peft_model

    from genesys.runtime.base_model import load_base_model

    root = tmp_path_factory.mktemp("scoped")
    model, _ = load_base_model(tiny_dir, root / "cache", device="cpu", dtype="float32")
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"])
    peft_model = get_peft_model(model, config)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name:
                parameter.normal_(0, 0.5)
    peft_model.save_pretrained(str(root / "adapter"))
    return root / "adapter"


@pytest.fixture(scope="module")
def engines(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from genesys.runtime.engines.transformers_engine import TransformersEngine

    cache = tmp_path_factory.mktemp("cache")
    plain = TransformersEngine(tiny_dir, cache_dir=cache, device="cpu", dtype="float32")
    plain.load()
    decisions: list[tuple[str, float, bool]] = []
    scoped = ScopedEngine(plain, on_decision=lambda *d: decisions.append(d))
    return plain, scoped, decisions


def _say(engine: Any, text: str, adapter: str | None) -> str:
    return "".join(c.text for c in engine.stream_chat([ChatMessage("user", text)], GREEDY, adapter))


def test_the_scoped_engine_sends_out_of_scope_requests_to_the_base(
    engines: Any, adapter_dir: Path, tmp_path: Path
) -> None:
    import shutil

    plain, scoped, decisions = engines
    item = scenario_items()[0]
    scoped_dir = tmp_path / "with-scope"
    shutil.copytree(adapter_dir, scoped_dir)
    AdapterScope(threshold=0.6, questions=item["prompts"]).write(scoped_dir)
    scoped.load_adapter("v1", scoped_dir)
    assert scoped.scope_of("v1") is not None and "v1" in scoped.info().adapters
    inside, outside = item["holdout"][0], "Write a Python function that reverses a string."
    with_adapter = {text: _say(plain, text, "v1") for text in (inside, outside)}
    base = {text: _say(plain, text, None) for text in (inside, outside)}
    assert with_adapter[inside] != base[inside] and with_adapter[outside] != base[outside]

    assert _say(scoped, inside, "v1") == with_adapter[inside]
    assert _say(scoped, outside, "v1") == base[outside]
    assert [(adapter, applied) for adapter, _, applied in decisions[-2:]] == [("v1", True), ("v1", False)]
    # The base model asked for by name is never routed; completions are scoped by their prompt.
    assert _say(scoped, inside, None) == base[inside]
    completion = "".join(c.text for c in scoped.stream_completion(outside, GREEDY, "v1"))
    assert completion == "".join(c.text for c in plain.stream_completion(outside, GREEDY, None))

    # Without scope.json the adapter answers everything; unloading forgets the scope.
    scoped.unload_adapter("v1")
    assert scoped.scope_of("v1") is None
    scoped.load_adapter("v2", adapter_dir)
    assert scoped.scope_of("v2") is None and _say(scoped, outside, "v2") == with_adapter[outside]
    scoped.unload_adapter("v2")


def test_a_malformed_scope_file_is_refused_and_loads_nothing(
    engines: Any, adapter_dir: Path, tmp_path: Path
) -> None:
    import shutil

    _, scoped, _ = engines
    broken = tmp_path / "broken"
    shutil.copytree(adapter_dir, broken)
    (broken / SCOPE_FILE).write_text('{"threshold": 2, "questions": []}', encoding="utf-8")
    with pytest.raises(EngineError, match="not a valid adapter scope"):
        scoped.load_adapter("bad", broken)
    assert "bad" not in scoped.info().adapters


def test_the_app_counts_scope_decisions_in_its_metrics(settings: Any, tiny_dir: Path, tmp_path: Path) -> None:
    from genesys.api.app import build_services
    from genesys.runtime.engines.transformers_engine import TransformersEngine

    scoped = ScopedEngine(TransformersEngine(tiny_dir, cache_dir=tmp_path, device="cpu"))
    services = build_services(settings, engine=scoped)
    try:
        assert scoped.on_decision is not None
        scoped.on_decision("v3", 0.2, False)
        scoped.on_decision("v3", 0.9, True)
        scoped.on_decision("v3", 0.1, False)
        text = services.metrics.render().decode()
        assert 'genesys_adapter_scope_total{decision="base",model_version="v3"} 2.0' in text
        assert 'genesys_adapter_scope_total{decision="adapter",model_version="v3"} 1.0' in text
    finally:
        services.store.close()
