"""MiniLM on ONNX Runtime: the local model exported once to ONNX, cached, and run without torch.

The export holds the whole sentence-transformers pipeline of all-MiniLM-L6-v2 after tokenization
(``modules.json``: Transformer, mean Pooling, Normalize): BERT, mean pooling over the attention mask
(clamped at 1e-9, as sentence-transformers does) and L2 normalisation, so one ``run`` returns unit
vectors. Tokenization uses the model dir's ``tokenizer.json`` (the fast tokenizer), cut at the model's
``max_seq_length`` (256); texts are sorted by token count and padded per batch.

Precisions (both measured against float32 torch on about 950 varied texts: questions, code, prose,
docs, README paragraphs, one-character texts):

- ``float32``: every embedding within cosine 0.99999 of torch. Its matrix products take 85% of the
  time and run at about 75% of a Zen 4 core's float32 peak: no graph change makes them cheaper.
- ``int8``: the linear layers' weights in 8 bits (``MatMulNBits``, blocks of 128 along the input,
  symmetric) with activations quantized per block of 128 on the fly (``accuracy_level`` 4): about
  1.5x float32 ONNX, every embedding within cosine 0.993, mean 0.9992; the shortest texts (a word or
  two) are the least exact. ORT's ``quantize_dynamic`` was faster still but quantizes each activation
  tensor with one scale, which the outlier channels of MiniLM's hidden states ruin (cosine down to
  0.965; 0.98 with the five most sensitive matrices left in float32), so it is not offered.

The export lives in ``<cache_dir>/minilm-onnx/<precision>-<key>/`` (``model.onnx`` and
``manifest.json``); the key hashes the source model's files and ``EXPORT_FORMAT``, so a changed model
or exporter makes a new export and the old one is removed. It is built in a staging directory,
checked against torch on probe texts, and renamed into place. A directory whose manifest or
``model.onnx`` (size, SHA-256) does not match is exported again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog

from genesys.errors import EngineUnavailable

if TYPE_CHECKING:
    import numpy as np

log = structlog.get_logger(__name__)

# Part of the cache key: bump it when the exported graph or its quantization changes.
EXPORT_FORMAT = 1
OPSET = 17
INT8_BLOCK = 128
EXPORT_DIR = "minilm-onnx"
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
# An export must match torch this closely on the probe texts, or it is not cached.
EXPORT_MIN_COSINE = {"float32": 0.9999, "int8": 0.99}
PROBE_TEXTS = (
    "How do I declare props in a Vue 3 component?",
    "Traceback (most recent call last): KeyError: 'id'",
    "def parse(rows):\n    return [r.split(',') for r in rows]",
    "x",
    "",
)

OnnxPrecision = Literal["float32", "int8"]
# A batch takes texts down to this fraction of its longest text's tokens (``padding_batches``).
BATCH_SHORTEST = 0.8


def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def source_key(model_dir: Path) -> str:
    """SHA-256 over the model dir's files (names and contents) and the exporter's version."""
    digest = hashlib.sha256(f"genesys-minilm-onnx|{EXPORT_FORMAT}|{OPSET}|{INT8_BLOCK}".encode())
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        if path.name.lower() == "readme.md" or "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(model_dir)).encode() + b"\0")
        digest.update(bytes.fromhex(_file_sha256(path)))
    return digest.hexdigest()


def export_dir(cache_dir: Path, precision: OnnxPrecision, key: str) -> Path:
    """Where the export of the source model with ``key`` (``source_key``) lives."""
    return cache_dir / EXPORT_DIR / f"{precision}-{key[:16]}"


def _file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _valid_export(target: Path, key: str, precision: OnnxPrecision) -> bool:
    """Whether ``target`` holds a complete export for ``key`` (manifest, size and hash of the model)."""
    try:
        manifest = json.loads((target / MANIFEST_FILE).read_text(encoding="utf-8"))
        model = target / MODEL_FILE
        return bool(
            manifest.get("format") == EXPORT_FORMAT
            and manifest.get("source_sha256") == key
            and manifest.get("precision") == precision
            and model.stat().st_size == manifest.get("onnx_bytes")
            and _file_sha256(model) == manifest.get("onnx_sha256")
        )
    except (OSError, ValueError, AttributeError):
        return False


def ensure_export(model_dir: Path, cache_dir: Path, precision: OnnxPrecision = "float32") -> Path:
    """The cached export's ``model.onnx``, exported now when missing, stale or corrupt.

    Raises ``EngineUnavailable`` when the export fails (no ``onnx`` package, an export that does not
    match torch); torch's exporter may raise its own errors.
    """
    key = source_key(model_dir)
    target = export_dir(cache_dir, precision, key)
    if _valid_export(target, key, precision):
        return target / MODEL_FILE
    if target.exists():
        log.warning("embeddings.onnx_cache_invalid", path=str(target), action="export again")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed into place, so a crash never leaves half an export behind.
    staging = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    try:
        staging.mkdir()
        manifest = _export(model_dir, staging, precision)
        manifest["source_sha256"] = key
        manifest["seconds"] = round(time.perf_counter() - started, 2)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if target.exists() and not _valid_export(target, key, precision):
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(staging, target)
        except OSError:
            # Another process finished the same export first; it holds the same graph.
            if not _valid_export(target, key, precision):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _remove_stale(target, precision)
    log.info(
        "embeddings.onnx_exported",
        path=str(target),
        precision=precision,
        seconds=round(time.perf_counter() - started, 2),
        probe_min_cosine=manifest["probe_min_cosine"],
    )
    return target / MODEL_FILE


def _remove_stale(current: Path, precision: OnnxPrecision) -> None:
    """Exports of the same precision for another source model or exporter version."""
    for other in current.parent.glob(f"{precision}-*"):
        if other != current and other.is_dir():
            shutil.rmtree(other, ignore_errors=True)


def _export(model_dir: Path, out_dir: Path, precision: OnnxPrecision) -> dict[str, Any]:
    """Export the pipeline to ``out_dir/model.onnx`` (quantized for int8), check it against torch on
    ``PROBE_TEXTS`` and return the manifest (without the source key)."""
    import numpy as np
    import onnxruntime
    import torch

    try:
        import onnx
    except ImportError as exc:
        raise EngineUnavailable("exporting MiniLM to ONNX needs the `onnx` package") from exc
    from transformers import AutoModel

    # Eager attention traces to plain MatMul/Softmax, which ORT fuses; no data-dependent branches.
    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager", local_files_only=True)
    pipeline = _pooled_pipeline(model)
    tokenizer = load_tokenizer(model_dir)
    # Texts of different lengths, so that the traced graph applies the padding mask.
    ids, mask = _pad([e.ids for e in tokenizer.encode_batch(list(PROBE_TEXTS[:2]))])
    path = out_dir / MODEL_FILE
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about shapes that are dynamic axes anyway
        torch.onnx.export(
            pipeline,
            (torch.from_numpy(ids), torch.from_numpy(mask)),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "embedding": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    if precision == "int8":
        graph = onnx.load(str(path))
        _quantize_linear_layers(graph)
        onnx.save(graph, str(path))
    # The probe: this export against the torch pipeline it came from.
    ids, mask = _pad([e.ids for e in tokenizer.encode_batch(list(PROBE_TEXTS))])
    with torch.no_grad():
        expected = pipeline(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    got = _session(path).run(None, {"input_ids": ids, "attention_mask": mask})[0]
    cosine = float(np.min(np.sum(got * expected, axis=1)))
    if not cosine >= EXPORT_MIN_COSINE[precision]:
        raise EngineUnavailable(
            f"the {precision} ONNX export of MiniLM differs from torch (cosine {cosine:.4f})"
        )
    return {
        "format": EXPORT_FORMAT,
        "precision": precision,
        "source": str(model_dir),
        "onnx_bytes": path.stat().st_size,
        "onnx_sha256": _file_sha256(path),
        "opset": OPSET,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "probe_min_cosine": round(cosine, 6),
    }


def _pooled_pipeline(model: Any) -> Any:
    """BERT, mean pooling over the mask and L2 normalisation, as one traceable torch module."""
    import torch

    class PooledMiniLM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return PooledMiniLM().eval()


def _quantize_linear_layers(graph: Any) -> None:
    """Replace each MatMul by a constant weight with ``MatMulNBits`` (8 bits, symmetric, blocks of
    ``INT8_BLOCK`` along K, int8 compute): what ORT's ``MatMulNBitsQuantizer`` writes, without its
    ``onnx_ir`` dependency."""
    import numpy as np
    from onnx import helper, numpy_helper
    from onnxruntime.capi._pybind_state import quantize_matmul_8bits

    weights = {t.name: t for t in graph.graph.initializer}
    nodes = []
    replaced: set[str] = set()
    for node in graph.graph.node:
        tensor = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        array = numpy_helper.to_array(tensor) if tensor is not None else None
        if array is None or array.ndim != 2 or array.dtype != np.float32:
            nodes.append(node)
            continue
        rows, cols = array.shape
        blocks = (rows + INT8_BLOCK - 1) // INT8_BLOCK
        padded = np.pad(array, ((0, blocks * INT8_BLOCK - rows), (0, 0)))
        packed = np.zeros((cols, blocks, INT8_BLOCK), dtype=np.uint8)
        scales = np.zeros((cols, blocks), dtype=np.float32)
        zero_points = np.zeros((cols, blocks), dtype=np.uint8)
        quantize_matmul_8bits(
            packed, np.ascontiguousarray(padded), scales, zero_points, INT8_BLOCK, cols, rows, True
        )
        name = node.input[1]
        graph.graph.initializer.extend(
            [numpy_helper.from_array(packed, f"{name}_Q8"), numpy_helper.from_array(scales, f"{name}_scales")]
        )
        nodes.append(
            helper.make_node(
                "MatMulNBits",
                [node.input[0], f"{name}_Q8", f"{name}_scales"],
                list(node.output),
                name=f"{node.name}_Q8",
                domain="com.microsoft",
                K=rows,
                N=cols,
                bits=8,
                block_size=INT8_BLOCK,
                accuracy_level=4,
            )
        )
        replaced.add(name)
    kept = [t for t in graph.graph.initializer if t.name not in replaced]
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(kept)
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    if not any(op.domain == "com.microsoft" for op in graph.opset_import):
        graph.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def load_tokenizer(model_dir: Path, max_seq_length: int | None = None) -> Any:
    """The model's fast tokenizer, cut at ``max_seq_length`` (default: the model's), unpadded."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()  # tokenizer.json pads every text to 128; batches are padded here instead
    tokenizer.enable_truncation(max_length=max_seq_length or model_max_seq_length(model_dir))
    return tokenizer


def model_max_seq_length(model_dir: Path) -> int:
    config = json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
    return int(config["max_seq_length"])


def check_pipeline(model_dir: Path) -> None:
    """Raise ``EngineUnavailable`` unless the model is Transformer, mean Pooling (, Normalize): the
    pipeline the export reproduces."""
    modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or not set(kinds[2:]) <= {"Normalize"}:
        raise EngineUnavailable(f"cannot export a sentence-transformers pipeline of {kinds}")
    pooling = json.loads((model_dir / modules[1]["path"] / "config.json").read_text(encoding="utf-8"))
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v]
    if modes != ["pooling_mode_mean_tokens"]:
        raise EngineUnavailable(f"the ONNX export does mean pooling only, the model asks for {modes}")


def _pad(encoded: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention mask, right-padded to the longest row (int64, as BERT's inputs)."""
    import numpy as np

    width = max((len(ids) for ids in encoded), default=0)
    ids = np.full((len(encoded), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(encoded), width), dtype=np.int64)
    for row, tokens in enumerate(encoded):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return ids, mask


def _session(path: Path, *, threads: int = 1) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Threads that spin between kernels take CPU from everything else (SQLite, Chroma, llama.cpp):
    # on 2 busy cores, 133 against 111 texts/s without spinning.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def padding_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices of texts (by token count) grouped into batches: longest first, as sentence-transformers
    does but by tokens, at most ``batch_size`` a batch, and a new batch where a text is shorter than
    ``BATCH_SHORTEST`` of its batch's longest, so that no batch pads much. A thousand questions fill
    batches (neighbours differ by a token or none); a few dozen of every length (the near ties the
    tagging embeds again) get batches of similar lengths: 30% less CPU per text for 60 of them."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for index in order:
        current = batches[-1] if batches else None
        if current and len(current) < batch_size and lengths[index] >= BATCH_SHORTEST * lengths[current[0]]:
            current.append(index)
        else:
            batches.append([index])
    return batches


class OnnxMiniLM:
    """The exported pipeline in an ONNX Runtime session, with its tokenizer. Thread-safe.

    Batches run in parallel, one per worker thread, each on one ORT thread: on 2 busy cores that
    embedded about 1.2x the texts/s of one batch at a time on 2 intra-op threads (float32 351 against
    290/s, int8 485 against 382/s, medians of 6 alternating rounds): the small matrices of a batch of
    short texts do not split well across threads. Batches of 32 texts (sorted by token count) padded
    less than batches of 64, for the speed of batches of 16.
    """

    def __init__(
        self, model_path: Path, model_dir: Path, *, threads: int | None = None, batch_size: int = 32
    ) -> None:
        self.model_path = model_path
        self.threads = threads or available_cores()
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(model_dir)
        self.pad_id = self.tokenizer.token_to_id("[PAD]") or 0
        self.session = _session(model_path)
        self.dimension = int(self.session.get_outputs()[0].shape[1])
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        model_dir: Path,
        cache_dir: Path,
        *,
        precision: OnnxPrecision = "float32",
        threads: int | None = None,
        batch_size: int = 32,
    ) -> OnnxMiniLM:
        """Export (once) and load. Raises ``EngineUnavailable`` (or what torch or ONNX Runtime raise)."""
        check_pipeline(model_dir)
        path = ensure_export(model_dir, cache_dir, precision)
        try:
            return cls(path, model_dir, threads=threads, batch_size=batch_size)
        except Exception as exc:  # ONNX Runtime raises its own types for a graph it cannot load
            log.warning("embeddings.onnx_load_failed", path=str(path), error=str(exc), action="export again")
            shutil.rmtree(path.parent, ignore_errors=True)
            path = ensure_export(model_dir, cache_dir, precision)
            return cls(path, model_dir, threads=threads, batch_size=batch_size)

    def _workers(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="minilm-onnx")
            return self._pool

    def _run(self, batch: list[list[int]]) -> np.ndarray:
        ids, mask = _pad(batch, self.pad_id)
        vectors: np.ndarray = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return vectors

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One unit vector (float32) per text."""
        import numpy as np

        encoded = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        slices = padding_batches([len(ids) for ids in encoded], self.batch_size)
        batches = [[encoded[i] for i in rows] for rows in slices]
        if len(batches) > 1 and self.threads > 1:
            results = list(self._workers().map(self._run, batches))
        else:
            results = [self._run(batch) for batch in batches]
        out = np.empty((len(encoded), self.dimension), dtype=np.float32)
        for rows, vectors in zip(slices, results, strict=True):
            out[rows] = vectors
        return out
