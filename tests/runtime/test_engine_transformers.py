"""The transformers engine with the real SmolLM2-135M weights (the embedded GGUF, dequantized) on CPU."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from genesys.errors import EngineError, EngineUnavailable, NotFound
from genesys.runtime import base_model
from genesys.runtime.base_model import gguf_cache_path, load_base_model
from genesys.runtime.engines.base import ChatMessage, EngineChunk, GenerationParams
from genesys.runtime.engines.llamacpp import embedded_model_path
from genesys.runtime.engines.transformers_engine import TransformersEngine, _find_stop, _safe_length

os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUESTION = [ChatMessage("user", "Write a Python function that adds two numbers.")]
GREEDY = GenerationParams(max_tokens=24, temperature=0.0)
# Seconds the module's first (dequantizing) load took, for comparison with a cached load.
_first_load_s: list[float] = []


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def engine(cache_dir: Path) -> Iterator[TransformersEngine]:
    engine = TransformersEngine(None, cache_dir=cache_dir, device="cpu", n_ctx=2048)
    started = time.perf_counter()
    engine.load()
    _first_load_s.append(time.perf_counter() - started)
    yield engine
    engine.close()


def _run(chunks: Iterator[EngineChunk]) -> tuple[str, EngineChunk, int]:
    received = list(chunks)
    last = received[-1]
    assert last.finish_reason is not None
    assert all(c.finish_reason is None for c in received[:-1])
    assert last.text == ""
    return "".join(c.text for c in received), last, len(received) - 1


# -- fast: no model weights are read ----------------------------------------------------------------


def test_missing_model_path_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="model not found"):
        TransformersEngine(tmp_path / "absent.gguf", cache_dir=tmp_path)


def test_directory_without_config_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(EngineUnavailable, match=r"config\.json"):
        load_base_model(tmp_path, tmp_path / "cache")


def test_engine_refuses_work_before_load(tmp_path: Path) -> None:
    engine = TransformersEngine(None, cache_dir=tmp_path, device="cpu")
    assert not engine.ready
    with pytest.raises(EngineUnavailable):
        list(engine.stream_chat(QUESTION, GREEDY))


def test_directory_without_adapter_is_an_engine_error(tmp_path: Path) -> None:
    engine = TransformersEngine(None, cache_dir=tmp_path, device="cpu")
    with pytest.raises(EngineError, match=r"adapter_config\.json"):
        engine.load_adapter("broken", tmp_path)


@pytest.mark.parametrize(
    ("text", "stop", "safe"),
    [
        ("hello wor", ["world"], 6),  # "wor" may become "world": held back
        ("hello", ["world"], 5),
        ("a <|im", ["<|im_end|>", "m!"], 2),  # the longest possible start wins
        ("caf\ufffd", [], 3),  # half a UTF-8 character is held back
    ],
)
def test_text_that_may_start_a_stop_string_is_held_back(text: str, stop: list[str], safe: int) -> None:
    assert _safe_length(text, stop) == safe


def test_earliest_stop_string_is_found() -> None:
    assert _find_stop("one two three", ["three", "two"]) == 4
    assert _find_stop("one two", ["four"]) is None


def test_failed_dequantization_leaves_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(gguf: Path, out_dir: Path) -> None:
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}", encoding="utf-8")
        raise RuntimeError("killed half way")

    monkeypatch.setattr(base_model, "_write_dequantized", crash)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="half way"):
        load_base_model(None, cache)
    assert list(cache.iterdir()) == [], "a half-written cache was left behind"


# -- slow: the real model ---------------------------------------------------------------------------


@pytest.mark.slow
def test_first_load_writes_a_safetensors_cache(engine: TransformersEngine, cache_dir: Path) -> None:
    assert engine.ready
    cached = gguf_cache_path(embedded_model_path(), cache_dir)
    assert (cached / "config.json").is_file()
    assert (cached / "model.safetensors").is_file()
    assert (cached / "tokenizer.json").is_file()
    assert [p.name for p in cache_dir.iterdir()] == [cached.name], "staging directories were left behind"
    info = engine.info()
    assert (info.engine, info.base_model, info.adapters) == ("transformers", embedded_model_path().name, [])
    assert info.supports_fim is False  # SmolLM2 has no FIM tokens


@pytest.mark.slow
def test_second_load_reads_the_cache(
    engine: TransformersEngine, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_run(gguf: Path, out_dir: Path) -> None:
        raise AssertionError("the GGUF was dequantized again instead of read from the cache")

    monkeypatch.setattr(base_model, "_write_dequantized", must_not_run)
    started = time.perf_counter()
    model, tokenizer = load_base_model(None, cache_dir, device="cpu")
    cached_s = time.perf_counter() - started
    assert cached_s < _first_load_s[0]
    assert tokenizer.chat_template
    assert not model.training
    print(f"\nload: first {_first_load_s[0]:.1f} s, cached {cached_s:.2f} s")


@pytest.mark.slow
def test_greedy_chat_answers_and_counts_tokens(engine: TransformersEngine) -> None:
    text, last, pieces = _run(engine.stream_chat(QUESTION, GREEDY))
    assert text.strip()
    assert pieces > 1, "the answer should stream in several chunks"
    assert last.prompt_tokens == engine.count_chat_tokens(QUESTION)
    assert 0 < last.completion_tokens <= GREEDY.max_tokens
    again, _, _ = _run(engine.stream_chat(QUESTION, GREEDY))
    assert again == text, "greedy decoding must be deterministic"


@pytest.mark.slow
def test_max_tokens_ends_with_length(engine: TransformersEngine) -> None:
    _, last, _ = _run(engine.stream_chat(QUESTION, GenerationParams(max_tokens=3, temperature=0.0)))
    assert last.finish_reason == "length"
    assert last.completion_tokens == 3


@pytest.mark.slow
def test_stop_string_cuts_the_text(engine: TransformersEngine) -> None:
    full, _, _ = _run(engine.stream_chat(QUESTION, GREEDY))
    middle = len(full) // 2
    stop = full[middle : middle + 4]
    assert len(stop.strip()) >= 2, f"no usable stop string in {full!r}"
    cut, last, _ = _run(
        engine.stream_chat(QUESTION, GenerationParams(max_tokens=24, temperature=0.0, stop=(stop,)))
    )
    assert cut == full[: full.find(stop)]
    assert stop not in cut
    assert last.finish_reason == "stop"


@pytest.mark.slow
def test_seeded_sampling_repeats(engine: TransformersEngine) -> None:
    params = GenerationParams(max_tokens=12, temperature=0.9, top_p=0.9, seed=7)
    first, _, _ = _run(engine.stream_chat(QUESTION, params))
    second, _, _ = _run(engine.stream_chat(QUESTION, params))
    assert first == second


@pytest.mark.slow
def test_completion_with_suffix_stops_where_the_suffix_begins(engine: TransformersEngine) -> None:
    prompt = "# Python\ndef add(a, b):\n"
    params = GenerationParams(max_tokens=32, temperature=0.0)
    plain, _, _ = _run(engine.stream_completion(prompt, params))
    lines = [line.strip() for line in plain.split("\n")[1:] if len(line.strip()) >= 3]
    assert lines, f"the continuation has no second line to use as a suffix: {plain!r}"
    suffix = lines[0] + "\n"
    filled, last, _ = _run(engine.stream_completion(prompt, params, suffix=suffix))
    assert filled == plain[: plain.find(lines[0])]
    assert last.finish_reason == "stop"


@pytest.mark.slow
def test_peft_adapter_is_chosen_by_name(engine: TransformersEngine, cache_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    # The adapter is made on a separate copy of the base (read from the cache), not on the engine's.
    model, _ = load_base_model(None, cache_dir, device="cpu")
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "v_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    adapter_dir = tmp_path / "v1"
    get_peft_model(model, config).save_pretrained(str(adapter_dir))
    assert (adapter_dir / "adapter_model.safetensors").is_file()

    base_before, _, _ = _run(engine.stream_chat(QUESTION, GREEDY))
    engine.load_adapter("v1", adapter_dir)
    try:
        assert engine.info().adapters == ["v1"]
        adapted, _, _ = _run(engine.stream_chat(QUESTION, GREEDY, adapter="v1"))
        base_after, _, _ = _run(engine.stream_chat(QUESTION, GREEDY))
        assert adapted != base_before, "the adapter did not change the output"
        assert base_after == base_before, "the base output changed while an adapter was loaded"
        # Two requests at once, one per adapter choice: the lock keeps each on its own weights.
        with ThreadPoolExecutor(max_workers=2) as pool:
            on_adapter = pool.submit(lambda: _run(engine.stream_chat(QUESTION, GREEDY, adapter="v1"))[0])
            on_base = pool.submit(lambda: _run(engine.stream_chat(QUESTION, GREEDY))[0])
            assert (on_adapter.result(), on_base.result()) == (adapted, base_before)
        with pytest.raises(NotFound) as caught:
            list(engine.stream_chat(QUESTION, GREEDY, adapter="v2"))
        assert (caught.value.param, caught.value.code) == ("model", "model_not_found")
    finally:
        engine.unload_adapter("v1")
    assert engine.info().adapters == []
    assert _run(engine.stream_chat(QUESTION, GREEDY))[0] == base_before
    with pytest.raises(NotFound):
        list(engine.stream_chat(QUESTION, GREEDY, adapter="v1"))
