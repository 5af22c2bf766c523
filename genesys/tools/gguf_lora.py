"""Export a peft LoRA adapter to a GGUF LoRA adapter, the form llama.cpp loads (``Llama(lora_path=...)``).

The file is what llama.cpp's ``convert_lora_to_gguf.py`` writes: ``general.architecture`` "llama",
``general.type`` "adapter", ``adapter.type`` "lora", ``adapter.lora.alpha``, and for every adapted
linear layer a pair ``blk.N.attn_q.weight.lora_a`` / ``.lora_b``. peft's ``lora_A`` (rank x in) and
``lora_B`` (out x rank) already have the orientation llama.cpp expects, so they are stored as they are,
in float32, with two adjustments:

- llama.cpp's converter permutes the rows of the Q and K projections of llama models (its rotary
  embedding pairs neighbouring dimensions where Hugging Face pairs the two halves of a head), and
  transformers undoes that permutation when it loads a GGUF. The rows of ``B @ A`` are the rows of
  ``lora_B``, so ``lora_B`` of ``q_proj`` and ``k_proj`` gets the same permutation (with the KV head
  count for K) — exactly what the converter's ``LoraTorchTensor`` does when it reuses the model's
  ``modify_tensors``.
- llama.cpp scales every pair by ``alpha / rank`` (rank read from the tensor). Where peft scales
  differently (rsLoRA's ``alpha / sqrt(rank)``, an ``alpha_pattern`` entry), the difference is folded
  into ``lora_B``, so the served adapter computes what peft computes.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import re
import struct
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from genesys.errors import ExportError

if TYPE_CHECKING:
    import numpy as np

log = structlog.get_logger(__name__)

_ARCH = "llama"
_PEFT_PREFIX = "base_model.model."
_LORA_SUFFIXES = ((".lora_A.weight", "a"), (".lora_B.weight", "b"))
# Config options that put something into the adapter that a GGUF LoRA has no place for.
_UNSUPPORTED_OPTIONS = {
    "use_dora": "DoRA (use_dora) adapters: llama.cpp has no weight-decomposed LoRA",
    "lora_bias": "adapters with a LoRA bias (lora_bias): llama.cpp LoRA has no bias term",
    "modules_to_save": "adapters with fully trained modules (modules_to_save): they are not low-rank",
    "trainable_token_indices": "adapters with trainable token embeddings (trainable_token_indices)",
    "layer_replication": "adapters with layer_replication: the base model's layer layout changes",
    "target_parameters": "LoRA on raw parameters (target_parameters)",
    "alora_invocation_tokens": "activated LoRA (alora_invocation_tokens)",
}


@dataclass(frozen=True)
class _BaseModel:
    """What the export needs to know of the base: head counts, layers, and its tensor shapes."""

    n_head: int
    n_head_kv: int
    n_blocks: int
    # GGUF tensor name -> (out, in); empty when the base does not tell.
    shapes: dict[str, tuple[int, int]] = field(default_factory=dict)


def export_lora_to_gguf(adapter_dir: Path, out_path: Path, *, base_model_path: Path | None = None) -> Path:
    """Convert the peft LoRA adapter in ``adapter_dir`` to a GGUF LoRA adapter at ``out_path``.

    ``base_model_path`` is the base the adapter was trained on: a llama GGUF file or a Hugging Face
    llama model directory; ``None`` means the embedded SmolLM2 GGUF. The file is written beside
    ``out_path`` and renamed into place, so a failed export leaves nothing behind. Returns
    ``out_path``. Raises ``ExportError`` for a missing or unreadable adapter, an adapter that uses a
    feature llama.cpp cannot serve (DoRA, biases, saved modules, embedding LoRA), a base that is not a
    llama model, or an adapter whose shapes do not fit the base.
    """
    import gguf

    adapter_dir = Path(adapter_dir)
    out_path = Path(out_path)
    config = _read_adapter_config(adapter_dir)
    base = _read_base_model(base_model_path)
    pairs = _load_lora_pairs(adapter_dir)
    alpha = float(config["lora_alpha"])
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, base.n_blocks)

    tensors: list[tuple[str, np.ndarray]] = []
    for module in sorted(pairs, key=_natural_key):
        lora_a, lora_b = pairs[module]
        target = _gguf_tensor_name(name_map, module)
        _check_fits(base, module, target, lora_a, lora_b)
        rank = lora_a.shape[0]
        # llama.cpp applies alpha / rank (or 1 when alpha is 0); fold any other peft scale into B.
        served_scale = alpha / rank if alpha else 1.0
        correction = _peft_scale(config, module, rank) / served_scale
        if not math.isclose(correction, 1.0, rel_tol=1e-6):
            lora_b = lora_b * correction
        if target.endswith(".attn_q.weight"):
            lora_b = _permute_rows(lora_b, base.n_head, module)
        elif target.endswith(".attn_k.weight"):
            lora_b = _permute_rows(lora_b, base.n_head_kv, module)
        tensors.append((f"{target}.lora_a", lora_a))
        tensors.append((f"{target}.lora_b", lora_b))

    _write_gguf(out_path, alpha=alpha, name=adapter_dir.name, tensors=tensors)
    log.info(
        "gguf_lora.exported",
        adapter=str(adapter_dir),
        out=str(out_path),
        pairs=len(pairs),
        alpha=alpha,
        bytes=out_path.stat().st_size,
    )
    return out_path


# -- the adapter ----------------------------------------------------------------------------------


def _read_adapter_config(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / "adapter_config.json"
    if not path.is_file():
        raise ExportError(f"no peft adapter at {adapter_dir} (adapter_config.json is missing)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise ExportError(f"{path} does not hold a JSON object")
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type != "LORA":
        raise ExportError(f"only LoRA adapters can be exported to GGUF; {adapter_dir} is '{peft_type}'")
    for option, what in _UNSUPPORTED_OPTIONS.items():
        if config.get(option):
            raise ExportError(f"cannot export {adapter_dir}: GGUF LoRA does not support {what}")
    if config.get("bias", "none") not in (None, "none"):
        raise ExportError(
            f"cannot export {adapter_dir}: it trains biases (bias='{config['bias']}'), "
            "which a GGUF LoRA cannot hold; train with bias='none'"
        )
    alpha = config.get("lora_alpha")
    if not isinstance(alpha, int | float) or isinstance(alpha, bool):
        raise ExportError(f"{path} has no numeric lora_alpha")
    return config


def _load_lora_pairs(adapter_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{module name: (lora_A, lora_B)}`` in float32, module names as in the base model."""
    raw = _load_adapter_tensors(adapter_dir)
    parts: dict[str, dict[str, np.ndarray]] = {}
    for key, value in raw.items():
        name = key.removeprefix(_PEFT_PREFIX)
        for suffix, part in _LORA_SUFFIXES:
            if name.endswith(suffix):
                parts.setdefault(name.removesuffix(suffix), {})[part] = value
                break
        else:
            # lora_magnitude_vector (DoRA), lora_embedding_A/B, saved modules, biases.
            raise ExportError(
                f"cannot export {adapter_dir}: tensor '{key}' is not a LoRA A/B matrix of a linear layer"
            )
    if not parts:
        raise ExportError(f"the adapter in {adapter_dir} holds no LoRA tensors")
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for module, found in parts.items():
        if "a" not in found or "b" not in found:
            raise ExportError(f"the adapter in {adapter_dir} has only half of the LoRA pair of '{module}'")
        lora_a, lora_b = found["a"], found["b"]
        if lora_a.ndim != 2 or lora_b.ndim != 2 or lora_a.shape[0] != lora_b.shape[1]:
            raise ExportError(
                f"the LoRA pair of '{module}' has shapes {lora_a.shape} and {lora_b.shape}, "
                "not (rank, in) and (out, rank)"
            )
        pairs[module] = (lora_a, lora_b)
    return pairs


def _load_adapter_tensors(adapter_dir: Path) -> dict[str, np.ndarray]:
    import torch

    safetensors_file = adapter_dir / "adapter_model.safetensors"
    bin_file = adapter_dir / "adapter_model.bin"
    try:
        if safetensors_file.is_file():
            from safetensors.torch import load_file

            loaded = load_file(str(safetensors_file), device="cpu")
        elif bin_file.is_file():
            loaded = torch.load(bin_file, map_location="cpu", weights_only=True)
        else:
            raise ExportError(
                f"no adapter weights in {adapter_dir} (adapter_model.safetensors or adapter_model.bin)"
            )
    except ExportError:
        raise
    except Exception as exc:  # safetensors and torch raise their own error types for a bad file
        raise ExportError(f"cannot read the adapter weights in {adapter_dir}: {exc}") from exc
    return {key: value.detach().to(torch.float32).contiguous().numpy() for key, value in loaded.items()}


def _peft_scale(config: dict[str, Any], module: str, rank: int) -> float:
    """The factor peft multiplies ``B @ A`` by for ``module`` (``LoraLayer.scaling``)."""
    alpha = float(config["lora_alpha"])
    pattern = config.get("alpha_pattern") or {}
    for key, value in pattern.items():
        # peft's get_pattern_key: a pattern matches the end of the module name at a dot boundary.
        if re.match(rf"(.*\.)?({key})$", module):
            alpha = float(value)
            break
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


# -- the base model -------------------------------------------------------------------------------


def _read_base_model(path: Path | None) -> _BaseModel:
    from genesys.runtime.engines.llamacpp import embedded_model_path

    source = Path(path) if path is not None else embedded_model_path()
    if source.is_file() and source.suffix.lower() == ".gguf":
        return _read_gguf_base(source)
    if source.is_dir() and (source / "config.json").is_file():
        return _read_hf_base(source)
    if not source.exists():
        raise ExportError(f"base model not found: {source}")
    raise ExportError(f"the base model must be a .gguf file or a model directory with config.json: {source}")


def _read_gguf_base(path: Path) -> _BaseModel:
    try:
        metadata, tensor_dims = _read_gguf_header(path)
    except (OSError, ValueError, struct.error) as exc:
        raise ExportError(f"cannot read the base GGUF {path}: {exc}") from exc
    arch = metadata.get("general.architecture")
    if arch != _ARCH:
        raise ExportError(f"only llama bases are supported; {path} is '{arch}'")
    if metadata.get("general.type") == "adapter":
        raise ExportError(f"{path} is an adapter, not a base model")
    n_head = metadata.get(f"{_ARCH}.attention.head_count")
    n_blocks = metadata.get(f"{_ARCH}.block_count")
    if not isinstance(n_head, int) or not isinstance(n_blocks, int):
        raise ExportError(f"the base GGUF {path} lacks its head or block count")
    n_head_kv = metadata.get(f"{_ARCH}.attention.head_count_kv", n_head)
    if not isinstance(n_head_kv, int):
        # An array: a different KV head count per layer, which no llama model has.
        raise ExportError(
            f"the base GGUF {path} has per-layer KV head counts; only llama bases are supported"
        )
    return _BaseModel(
        n_head=n_head,
        n_head_kv=n_head_kv,
        n_blocks=n_blocks,
        # GGUF lists dimensions innermost first: (in, out) for a linear weight.
        shapes={name: (dims[1], dims[0]) for name, dims in tensor_dims.items() if len(dims) == 2},
    )


# GGUF metadata value types (gguf.GGUFValueType) and the struct format of the fixed-size ones.
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def _read_gguf_header(path: Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """The scalar metadata and the tensor dimensions of a little-endian GGUF file.

    gguf's ``GGUFReader`` parses every element of the tokenizer arrays into numpy views, which takes
    seconds for a 49k-token vocabulary; this walks past arrays and reads only what the export needs.
    Raises ``ValueError`` for a file that is not GGUF.
    """
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", data, 0)
        if magic != b"GGUF":
            raise ValueError("not a GGUF file (bad magic)")
        if version not in (2, 3):
            raise ValueError(f"unsupported GGUF version {version} (a big-endian file?)")
        offset = 24

        def read(fmt: str) -> Any:
            nonlocal offset
            (value,) = struct.unpack_from("<" + fmt, data, offset)
            offset += struct.calcsize("<" + fmt)
            return value

        def read_string() -> str:
            nonlocal offset
            size = read("Q")
            offset += size
            return bytes(data[offset - size : offset]).decode("utf-8", errors="replace")

        def read_value(kind: int) -> Any:
            nonlocal offset
            if kind in _GGUF_SCALARS:
                return read(_GGUF_SCALARS[kind])
            if kind == _GGUF_STRING:
                return read_string()
            if kind == _GGUF_ARRAY:
                item_kind, count = read("I"), read("Q")
                if item_kind in _GGUF_SCALARS:
                    offset += count * struct.calcsize("<" + _GGUF_SCALARS[item_kind])
                else:
                    for _ in range(count):
                        read_value(item_kind)
                return None
            raise ValueError(f"unknown GGUF value type {kind}")

        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = read_string()
            metadata[key] = read_value(read("I"))
        tensors: dict[str, tuple[int, ...]] = {}
        for _ in range(n_tensors):
            name = read_string()
            n_dims = read("I")
            tensors[name] = tuple(int(read("Q")) for _ in range(n_dims))
            offset += 4 + 8  # the tensor's type and data offset
    return metadata, tensors


def _read_hf_base(model_dir: Path) -> _BaseModel:
    import gguf
    from safetensors import safe_open

    path = model_dir / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from exc
    architectures = config.get("architectures") or []
    if config.get("model_type") != _ARCH and "LlamaForCausalLM" not in architectures:
        raise ExportError(
            f"only llama bases are supported; {model_dir} is '{config.get('model_type')}' {architectures}"
        )
    try:
        n_head = int(config["num_attention_heads"])
        n_head_kv = int(config.get("num_key_value_heads") or n_head)
        n_blocks = int(config["num_hidden_layers"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"{path} lacks the head or layer count: {exc}") from exc
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_blocks)
    shapes: dict[str, tuple[int, int]] = {}
    for weights in sorted(model_dir.glob("*.safetensors")):
        # Only the headers are read, not the weights.
        with safe_open(str(weights), framework="numpy") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                shape = handle.get_slice(key).get_shape()
                if not key.endswith(".weight") or len(shape) != 2:
                    continue
                # With a suffix to try, the map answers with the suffix kept: blk.0.attn_q.weight.
                mapped = name_map.get_name(key, try_suffixes=(".weight",))
                if mapped is not None:
                    shapes[mapped] = (int(shape[0]), int(shape[1]))
    return _BaseModel(n_head=n_head, n_head_kv=n_head_kv, n_blocks=n_blocks, shapes=shapes)


# -- mapping and writing --------------------------------------------------------------------------


def _gguf_tensor_name(name_map: Any, module: str) -> str:
    mapped = name_map.get_name(module)
    if mapped is None:
        raise ExportError(f"the adapter targets '{module}', which has no llama.cpp tensor in a llama model")
    return f"{mapped}.weight"


def _check_fits(base: _BaseModel, module: str, target: str, lora_a: np.ndarray, lora_b: np.ndarray) -> None:
    if not base.shapes:
        return
    expected = base.shapes.get(target)
    if expected is None:
        # For instance lm_head on a model with tied embeddings: the GGUF has no `output` tensor.
        raise ExportError(f"the adapter targets '{module}', but the base model has no tensor '{target}'")
    got = (lora_b.shape[0], lora_a.shape[1])
    if got != expected:
        raise ExportError(
            f"the adapter's '{module}' is {got[0]}x{got[1]} (out x in) but the base's '{target}' is "
            f"{expected[0]}x{expected[1]}: the adapter was trained on another base model"
        )


def _permute_rows(matrix: np.ndarray, n_head: int, module: str) -> np.ndarray:
    """The row order llama.cpp's converter gives Q and K weights (``permute`` in convert_hf_to_gguf):
    within each head, the two halves of the rotary dimensions are interleaved."""
    rows = matrix.shape[0]
    if n_head <= 0 or rows % (2 * n_head):
        raise ExportError(f"'{module}' has {rows} output rows, which do not split into {n_head} heads")
    return (
        matrix.reshape(n_head, 2, rows // n_head // 2, *matrix.shape[1:]).swapaxes(1, 2).reshape(matrix.shape)
    )


def _natural_key(name: str) -> list[int | str]:
    """Sort ``layers.10`` after ``layers.9``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _write_gguf(out_path: Path, *, alpha: float, name: str, tensors: list[tuple[str, np.ndarray]]) -> None:
    import gguf
    import numpy as np

    out_path.parent.mkdir(parents=True, exist_ok=True)
    staging = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        writer = gguf.GGUFWriter(str(staging), _ARCH)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        writer.add_name(name)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)
        for tensor_name, data in tensors:
            writer.add_tensor(tensor_name, np.ascontiguousarray(data, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(staging, out_path)
    except OSError as exc:
        raise ExportError(f"cannot write {out_path}: {exc}") from exc
    finally:
        staging.unlink(missing_ok=True)
