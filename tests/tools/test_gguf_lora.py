"""Exporting peft LoRA adapters to GGUF LoRA adapters, and serving them with llama.cpp.

The fast tests write small synthetic adapters and read the export back with gguf's reader. The slow
tests build random LoRA adapters on the real SmolLM2-135M weights and check that llama.cpp serving the
exported GGUF answers as transformers serving the peft adapter does, in the engine and through the API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from genesys.errors import ExportError
from genesys.runtime.engines.base import ChatMessage, GenerationParams
from genesys.runtime.engines.llamacpp import LlamaCppEngine, embedded_model_path
from genesys.tools.gguf_lora import export_lora_to_gguf
from tests.support.adapters import LORA_TARGETS, Adapter, random_adapter

# SmolLM2-135M: 30 layers, hidden 576, MLP 1536, 9 query heads and 3 KV heads of 64 dimensions.
HIDDEN, MLP, N_HEAD, N_HEAD_KV, HEAD_DIM = 576, 1536, 9, 3, 64
PEFT_PREFIX = "base_model.model."


# -- helpers ----------------------------------------------------------------------------------------


def _lora_pair(module: str, out_dim: int, in_dim: int, rank: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        f"{PEFT_PREFIX}{module}.lora_A.weight": torch.randn(rank, in_dim, generator=generator),
        f"{PEFT_PREFIX}{module}.lora_B.weight": torch.randn(out_dim, rank, generator=generator),
    }


def _write_adapter(directory: Path, tensors: dict[str, torch.Tensor], **config: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    settings = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "bias": "none", "target_modules": LORA_TARGETS}
    (directory / "adapter_config.json").write_text(json.dumps({**settings, **config}), encoding="utf-8")
    return directory


def _read_gguf(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    import gguf

    reader = gguf.GGUFReader(path)
    fields = {name: field.contents() for name, field in reader.fields.items()}
    # The reader gives each tensor in numpy order: (out, in) for lora_b, (rank, in) for lora_a.
    return fields, {tensor.name: np.array(tensor.data) for tensor in reader.tensors}


def _llama_cpp_row_order(matrix: np.ndarray, n_head: int) -> np.ndarray:
    """Row r of llama.cpp's Q/K (head h, pair i, half s: r = h*d + 2*i + s) is Hugging Face row
    h*d + s*d/2 + i. Written as an index map, independently of the reshape the exporter uses."""
    head_dim = matrix.shape[0] // n_head
    order = [
        h * head_dim + s * (head_dim // 2) + i
        for h in range(n_head)
        for i in range(head_dim // 2)
        for s in (0, 1)
    ]
    return matrix[order]


# -- fast: synthetic adapters against the embedded GGUF's header --------------------------------------


def test_export_writes_the_llama_cpp_lora_format(tmp_path: Path) -> None:
    tensors = {
        **_lora_pair("model.layers.0.self_attn.q_proj", HIDDEN, HIDDEN, 4, 1),
        **_lora_pair("model.layers.0.self_attn.k_proj", N_HEAD_KV * HEAD_DIM, HIDDEN, 4, 2),
        **_lora_pair("model.layers.0.self_attn.v_proj", N_HEAD_KV * HEAD_DIM, HIDDEN, 4, 3),
        **_lora_pair("model.layers.29.mlp.down_proj", HIDDEN, MLP, 4, 4),
    }
    adapter = _write_adapter(tmp_path / "adapter", tensors)
    out = export_lora_to_gguf(adapter, tmp_path / "out" / "adapter.gguf")

    assert out == tmp_path / "out" / "adapter.gguf"
    assert [p.name for p in out.parent.iterdir()] == ["adapter.gguf"]  # no staging file left
    fields, written = _read_gguf(out)
    assert fields["general.architecture"] == "llama"
    assert fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == pytest.approx(8.0)
    assert sorted(written) == sorted(
        f"blk.{block}.{name}.weight.lora_{part}"
        for block, name in ((0, "attn_q"), (0, "attn_k"), (0, "attn_v"), (29, "ffn_down"))
        for part in "ab"
    )
    assert all(t.dtype == np.float32 for t in written.values())

    def peft(module: str, part: str) -> np.ndarray:
        return tensors[f"{PEFT_PREFIX}{module}.lora_{part}.weight"].numpy()

    # A keeps peft's (rank, in) layout everywhere; B is (out, rank).
    for module, target in (
        ("model.layers.0.self_attn.q_proj", "blk.0.attn_q"),
        ("model.layers.0.self_attn.k_proj", "blk.0.attn_k"),
        ("model.layers.0.self_attn.v_proj", "blk.0.attn_v"),
        ("model.layers.29.mlp.down_proj", "blk.29.ffn_down"),
    ):
        np.testing.assert_array_equal(written[f"{target}.weight.lora_a"], peft(module, "A"))
    np.testing.assert_array_equal(
        written["blk.0.attn_v.weight.lora_b"], peft("model.layers.0.self_attn.v_proj", "B")
    )
    np.testing.assert_array_equal(
        written["blk.29.ffn_down.weight.lora_b"], peft("model.layers.29.mlp.down_proj", "B")
    )
    # Q and K rows take llama.cpp's rotary order: per query head for Q, per KV head for K.
    q_b = peft("model.layers.0.self_attn.q_proj", "B")
    k_b = peft("model.layers.0.self_attn.k_proj", "B")
    np.testing.assert_array_equal(written["blk.0.attn_q.weight.lora_b"], _llama_cpp_row_order(q_b, N_HEAD))
    np.testing.assert_array_equal(written["blk.0.attn_k.weight.lora_b"], _llama_cpp_row_order(k_b, N_HEAD_KV))
    assert not np.array_equal(written["blk.0.attn_q.weight.lora_b"], q_b)


@pytest.mark.parametrize(
    ("config", "q_factor", "down_factor"),
    [
        ({}, 1.0, 1.0),
        # rsLoRA scales by alpha / sqrt(r) = 8 / 2; llama.cpp by alpha / r = 8 / 4: B doubles.
        ({"use_rslora": True}, 2.0, 2.0),
        # peft gives down_proj alpha 32 (scale 8); llama.cpp applies the file's alpha 8 (scale 2).
        ({"alpha_pattern": {"down_proj": 32}}, 1.0, 4.0),
    ],
)
def test_peft_scales_that_llama_cpp_lacks_are_folded_into_b(
    tmp_path: Path, config: dict[str, Any], q_factor: float, down_factor: float
) -> None:
    tensors = {
        **_lora_pair("model.layers.3.self_attn.q_proj", HIDDEN, HIDDEN, 4, 5),
        **_lora_pair("model.layers.3.mlp.down_proj", HIDDEN, MLP, 4, 6),
    }
    adapter = _write_adapter(tmp_path / "adapter", tensors, **config)
    fields, written = _read_gguf(export_lora_to_gguf(adapter, tmp_path / "adapter.gguf"))

    assert fields["adapter.lora.alpha"] == pytest.approx(8.0)
    q_b = tensors[f"{PEFT_PREFIX}model.layers.3.self_attn.q_proj.lora_B.weight"].numpy()
    down_b = tensors[f"{PEFT_PREFIX}model.layers.3.mlp.down_proj.lora_B.weight"].numpy()
    np.testing.assert_allclose(
        written["blk.3.attn_q.weight.lora_b"], _llama_cpp_row_order(q_b, N_HEAD) * q_factor, rtol=1e-6
    )
    np.testing.assert_allclose(written["blk.3.ffn_down.weight.lora_b"], down_b * down_factor, rtol=1e-6)


def test_a_hugging_face_base_directory_gives_heads_and_shapes(tmp_path: Path) -> None:
    """A tiny llama config with 2 heads of 4 dimensions: the permutation follows the base's heads."""
    base = tmp_path / "base"
    base.mkdir()
    config = {
        "model_type": "llama",
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "num_hidden_layers": 1,
    }
    (base / "config.json").write_text(json.dumps(config), encoding="utf-8")
    save_file(
        {
            "model.layers.0.self_attn.q_proj.weight": torch.zeros(8, 8),
            "model.layers.0.self_attn.k_proj.weight": torch.zeros(4, 8),
        },
        str(base / "model.safetensors"),
    )
    tensors = {
        **_lora_pair("model.layers.0.self_attn.q_proj", 8, 8, 2, 7),
        **_lora_pair("model.layers.0.self_attn.k_proj", 4, 8, 2, 8),
    }
    adapter = _write_adapter(tmp_path / "adapter", tensors, r=2, lora_alpha=4)
    _, written = _read_gguf(export_lora_to_gguf(adapter, tmp_path / "a.gguf", base_model_path=base))
    q_b = tensors[f"{PEFT_PREFIX}model.layers.0.self_attn.q_proj.lora_B.weight"].numpy()
    k_b = tensors[f"{PEFT_PREFIX}model.layers.0.self_attn.k_proj.lora_B.weight"].numpy()
    np.testing.assert_array_equal(written["blk.0.attn_q.weight.lora_b"], _llama_cpp_row_order(q_b, 2))
    np.testing.assert_array_equal(written["blk.0.attn_k.weight.lora_b"], _llama_cpp_row_order(k_b, 1))

    wrong = _write_adapter(tmp_path / "wrong", _lora_pair("model.layers.0.self_attn.q_proj", 8, 6, 2, 9))
    with pytest.raises(ExportError, match="trained on another base model"):
        export_lora_to_gguf(wrong, tmp_path / "b.gguf", base_model_path=base)


def _q_pair() -> dict[str, torch.Tensor]:
    return _lora_pair("model.layers.0.self_attn.q_proj", HIDDEN, HIDDEN, 4, 10)


@pytest.mark.parametrize(
    ("config", "tensors", "message"),
    [
        ({"use_dora": True}, _q_pair(), "DoRA"),
        ({"peft_type": "IA3"}, _q_pair(), "only LoRA adapters"),
        ({"bias": "all"}, _q_pair(), "trains biases"),
        ({"modules_to_save": ["lm_head"]}, _q_pair(), "modules_to_save"),
        (
            {},
            {
                **_q_pair(),
                f"{PEFT_PREFIX}model.layers.0.self_attn.q_proj.lora_magnitude_vector": torch.ones(576),
            },
            "lora_magnitude_vector",
        ),
        (
            {},
            {f"{PEFT_PREFIX}model.layers.0.self_attn.q_proj.lora_A.weight": torch.ones(4, HIDDEN)},
            "only half of the LoRA pair",
        ),
        ({}, _lora_pair("model.layers.0.self_attn.q_proj", HIDDEN, 100, 4, 11), "another base model"),
        ({}, _lora_pair("model.layers.0.self_attn.rotary_emb", HIDDEN, HIDDEN, 4, 12), "no llama.cpp tensor"),
        # SmolLM2 ties its output projection to the embeddings: the GGUF has no `output` tensor.
        ({}, _lora_pair("lm_head", 49152, HIDDEN, 4, 13), "no tensor 'output.weight'"),
        ({}, _lora_pair("model.layers.0.self_attn.q_proj", HIDDEN + 1, HIDDEN, 4, 14), "another base model"),
    ],
)
def test_unsupported_adapters_are_refused(
    tmp_path: Path, config: dict[str, Any], tensors: dict[str, torch.Tensor], message: str
) -> None:
    adapter = _write_adapter(tmp_path / "adapter", tensors, **config)
    with pytest.raises(ExportError, match=message):
        export_lora_to_gguf(adapter, tmp_path / "adapter.gguf")
    assert not (tmp_path / "adapter.gguf").exists()


def test_missing_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"adapter_config\.json is missing"):
        export_lora_to_gguf(tmp_path / "absent", tmp_path / "a.gguf")
    adapter = _write_adapter(tmp_path / "adapter", _q_pair())
    (adapter / "adapter_model.safetensors").unlink()
    with pytest.raises(ExportError, match="no adapter weights"):
        export_lora_to_gguf(adapter, tmp_path / "a.gguf")
    (adapter / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ExportError, match="cannot read the adapter weights"):
        export_lora_to_gguf(adapter, tmp_path / "a.gguf")
    adapter = _write_adapter(tmp_path / "good", _q_pair())
    with pytest.raises(ExportError, match="base model not found"):
        export_lora_to_gguf(adapter, tmp_path / "a.gguf", base_model_path=tmp_path / "absent.gguf")


def test_bases_that_are_not_llama_are_refused(tmp_path: Path) -> None:
    import gguf

    adapter = _write_adapter(tmp_path / "adapter", _q_pair())
    other = tmp_path / "gpt2.gguf"
    writer = gguf.GGUFWriter(str(other), "gpt2")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ExportError, match=r"only llama bases.*'gpt2'"):
        export_lora_to_gguf(adapter, tmp_path / "a.gguf", base_model_path=other)

    hf_dir = tmp_path / "qwen"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text(json.dumps({"model_type": "qwen2"}), encoding="utf-8")
    with pytest.raises(ExportError, match=r"only llama bases.*'qwen2'"):
        export_lora_to_gguf(adapter, tmp_path / "a.gguf", base_model_path=hf_dir)

    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGML" + bytes(60))
    with pytest.raises(ExportError, match="cannot read the base GGUF"):
        export_lora_to_gguf(adapter, tmp_path / "a.gguf", base_model_path=garbage)

    # An adapter is not a base either.
    exported = export_lora_to_gguf(adapter, tmp_path / "lora.gguf")
    with pytest.raises(ExportError, match="is an adapter"):
        export_lora_to_gguf(adapter, tmp_path / "b.gguf", base_model_path=exported)


# -- slow: random adapters on the real SmolLM2 weights ------------------------------------------------

# llama.cpp multiplies the Q4_1 weights with 8-bit quantized activations while transformers uses the
# dequantized float32 weights, so the two part ways where the top two logits are close. Measured over
# 12 greedy tokens on 16 short prompts, the base models agreed on 8 ("What is the capital of France?"
# differs from the first token: llama.cpp starts "L'Étoile, la Cité", transformers "The capital of
# France is Paris."). These four prompts are ones where the bases agree and where, with adapter v1,
# both engines keep a top-1/top-2 logit gap of at least 0.2 at every step: rounding cannot flip them.
PARITY_PROMPTS = [
    "What does HTTP stand for?",
    "What is a variable?",
    "What is SQL?",
    "Name three sorting algorithms.",
]
GREEDY = GenerationParams(max_tokens=12, temperature=0.0)
# B is drawn at this fraction of A's scale: enough to change most greedy answers, small enough to keep
# the gaps above. Seeds of the two adapters served side by side.
ADAPTER_STRENGTH = 0.12
ADAPTER_SEEDS = {"v1": 4, "v2": 3}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


def _random_adapter(cache_dir: Path, out_dir: Path, seed: int) -> Adapter:
    return random_adapter(cache_dir, out_dir, seed, strength=ADAPTER_STRENGTH)


@pytest.fixture(scope="module")
def adapters(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Adapter]:
    root = tmp_path_factory.mktemp("adapters")
    return {name: _random_adapter(cache_dir, root / name, seed) for name, seed in ADAPTER_SEEDS.items()}


@pytest.fixture(scope="module")
def transformers_engine(cache_dir: Path, adapters: dict[str, Adapter]) -> Iterator[Any]:
    from genesys.runtime.engines.transformers_engine import TransformersEngine

    engine = TransformersEngine(None, cache_dir=cache_dir, device="cpu", dtype="float32", n_ctx=1024)
    engine.load()
    engine.load_adapter("v1", adapters["v1"].peft_dir)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def llama(adapters: dict[str, Adapter]) -> LlamaCppEngine:
    engine = LlamaCppEngine(n_ctx=1024)
    engine.load()
    for name, adapter in adapters.items():
        engine.load_adapter(name, adapter.gguf)
    return engine


def _greedy(engine: Any, prompt: str, adapter: str | None) -> str:
    return "".join(chunk.text for chunk in engine.stream_chat([ChatMessage("user", prompt)], GREEDY, adapter))


@pytest.mark.slow
def test_exported_adapter_reproduces_peft_merged_weights(
    cache_dir: Path, adapters: dict[str, Adapter]
) -> None:
    """For every layer, what llama.cpp adds to a weight (alpha / rank * B @ A, from the file) is what
    peft adds (its delta weight), in the base GGUF's row order — no quantization noise involved."""
    from peft import PeftModel

    from genesys.runtime.base_model import load_base_model

    model, _ = load_base_model(None, cache_dir)
    peft_model = PeftModel.from_pretrained(model, str(adapters["v1"].peft_dir))
    fields, written = _read_gguf(adapters["v1"].gguf)
    alpha = float(fields["adapter.lora.alpha"])
    checked = 0
    for name, module in peft_model.named_modules():
        if not hasattr(module, "get_delta_weight") or "default" not in getattr(module, "lora_A", {}):
            continue
        layer = name.split(".layers.")[1].split(".")[0]
        kind = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output"}.get(
            name.rsplit(".", 1)[1], "ffn_" + name.rsplit(".", 1)[1].removesuffix("_proj")
        )
        lora_a = written[f"blk.{layer}.{kind}.weight.lora_a"]
        lora_b = written[f"blk.{layer}.{kind}.weight.lora_b"]
        served = alpha / lora_a.shape[0] * (lora_b @ lora_a)
        expected = module.get_delta_weight("default").detach().numpy()
        if kind in ("attn_q", "attn_k"):
            expected = _llama_cpp_row_order(expected, N_HEAD if kind == "attn_q" else N_HEAD_KV)
        np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-6)
        checked += 1
    assert checked == 30 * len(LORA_TARGETS)


@pytest.mark.slow
def test_base_gguf_uses_the_row_order_the_export_gives_q_and_k(cache_dir: Path) -> None:
    """The premise of the Q/K permutation: the served GGUF's attn_q/attn_k rows are the Hugging Face
    q_proj/k_proj rows in llama.cpp's rotary order."""
    import gguf

    from genesys.runtime.base_model import load_base_model

    model, _ = load_base_model(None, cache_dir)
    weights = model.state_dict()
    served = {t.name: t for t in gguf.GGUFReader(embedded_model_path()).tensors}
    for hf_name, gguf_name, n_head in (
        ("model.layers.5.self_attn.q_proj.weight", "blk.5.attn_q.weight", N_HEAD),
        ("model.layers.5.self_attn.k_proj.weight", "blk.5.attn_k.weight", N_HEAD_KV),
    ):
        tensor = served[gguf_name]
        dims = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        dequantized = gguf.dequantize(tensor.data, tensor.tensor_type).reshape(dims)
        hf = weights[hf_name].numpy()
        np.testing.assert_array_equal(dequantized, _llama_cpp_row_order(hf, n_head))
        assert not np.array_equal(dequantized, hf)


@pytest.mark.slow
def test_llama_cpp_with_the_gguf_answers_as_transformers_with_the_peft_adapter(
    transformers_engine: Any, llama: LlamaCppEngine
) -> None:
    changed = 0
    for prompt in PARITY_PROMPTS:
        served = _greedy(llama, prompt, "v1")
        assert served == _greedy(transformers_engine, prompt, "v1"), prompt
        changed += served != _greedy(llama, prompt, None)
    # The adapter really acts (three of the four answers change): an export that lost it cannot pass.
    assert changed >= 2


@pytest.mark.slow
def test_llama_cpp_engine_serves_several_adapters(
    adapters: dict[str, Adapter], llama: LlamaCppEngine
) -> None:
    import structlog

    prompt = PARITY_PROMPTS[0]
    answers = {name: _greedy(llama, prompt, name) for name in (None, "v1", "v2")}
    assert len(set(answers.values())) == 3, answers
    assert {name: _greedy(llama, prompt, name) for name in answers} == answers
    assert llama.info().adapters == ["v1", "v2"]

    # With room for one adapter, the other is dropped and rebuilt on demand: same answers.
    small = LlamaCppEngine(n_ctx=1024, max_loaded_models=1)
    small.load()
    with structlog.testing.capture_logs() as logs:
        small.load_adapter("v1", adapters["v1"].gguf)
        small.load_adapter("v2", adapters["v2"].gguf)
        assert small.info().adapters == ["v1", "v2"]
        for name in ("v1", "v2", "v1", None):
            assert _greedy(small, prompt, name) == answers[name], name
    evicted = [entry["adapter"] for entry in logs if entry["event"] == "engine.adapter_evicted"]
    # Loading v2 drops v1; then each switch drops the other one.
    assert evicted == ["v1", "v2", "v1", "v2"]


@pytest.mark.slow
def test_api_serves_an_exported_adapter_by_model_version(
    live_server: Any, adapters: dict[str, Adapter]
) -> None:
    engine = live_server.services.host.engine
    name = live_server.settings.model.name
    prompt = PARITY_PROMPTS[0]
    engine.load_adapter("v1", adapters["v1"].gguf)
    try:
        with httpx.Client(base_url=live_server.api, timeout=60) as client:
            models = client.get("/models")
            assert models.status_code == 200
            assert f"{name}@v1" in {card["id"] for card in models.json()["data"]}

            def chat(model: str) -> httpx.Response:
                return client.post(
                    "/chat/completions",
                    json={
                        "model": model,
                        "messages": [{"role": "user", "content": prompt}],
                        "temperature": 0,
                        "max_tokens": GREEDY.max_tokens,
                    },
                )

            tuned, base = chat(f"{name}@v1"), chat(f"{name}@base")
            assert tuned.status_code == 200 and base.status_code == 200
            assert tuned.headers["X-Genesys-Model-Version"] == "v1"
            assert base.headers["X-Genesys-Model-Version"] == "base"
            # The app adds its own system prompt, so the answers are compared with each other only.
            tuned_text = tuned.json()["choices"][0]["message"]["content"]
            assert tuned_text and tuned_text != base.json()["choices"][0]["message"]["content"]

            unknown = chat(f"{name}@v9")
            assert unknown.status_code == 404
            assert unknown.json()["error"]["code"] == "model_not_found"
    finally:
        engine.unload_adapter("v1")
    assert "v1" not in engine.info().adapters
