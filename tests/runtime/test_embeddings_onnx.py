"""MiniLM on ONNX Runtime: parity with torch, the export cache, the fallback, thread safety.

The export takes a few seconds: each precision is exported once per session into a temporary cache.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from genesys.bench.synthetic import synthetic_interactions
from genesys.runtime import embeddings_onnx
from genesys.runtime.embeddings import (
    DIMENSION,
    Embedder,
    clear_shared_embedders,
    minilm_path,
    native_bf16,
    shared_embedder,
)
from genesys.runtime.embeddings_onnx import (
    BATCH_SHORTEST,
    MANIFEST_FILE,
    MODEL_FILE,
    ensure_export,
    export_dir,
    padding_batches,
    source_key,
)
from genesys.runtime.settings import DataCollection, load_settings
from genesys.tools.tagging import CATEGORY_TEXTS, CategoryIndex, embedding_text, settle_near_ties
from tests.tools.conftest import START

DATA = Path(__file__).resolve().parents[1] / "data"


def _scenario() -> list[dict[str, Any]]:
    lines = (DATA / "fernwick_scenario.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _varied_texts() -> list[str]:
    """Questions, pasted code and tracebacks, long answers, docs, prose, and degenerate texts."""
    synthetic = synthetic_interactions(120, seed=11, start=START)
    texts = [embedding_text(s.interaction) for s in synthetic]
    texts += [s.interaction.answer for s in synthetic[:40]]  # long, with code blocks
    for fact in _scenario():
        texts += [*fact["prompts"], *fact.get("holdout", []), fact.get("correction", "")]
    for doc in sorted((DATA / "docs").rglob("*")):
        if doc.is_file():
            texts += [p for p in doc.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    texts += [text for group in CATEGORY_TEXTS.values() for text in group]
    source = (Path(embeddings_onnx.__file__)).read_text(encoding="utf-8")
    texts += [source[i : i + 1500] for i in range(0, 6000, 1500)]  # code past 256 tokens
    texts += ["", "x", "?", "word " * 600, "日本語のテキストです", "emoji 🚀 text"]
    return texts


TEXTS = _varied_texts()


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session")
def torch_embedder() -> Embedder:
    embedder = Embedder(backend="torch")
    assert embedder.backend_used == "torch"
    return embedder


@pytest.fixture(scope="session")
def onnx_embedder(onnx_cache: Path) -> Embedder:
    embedder = Embedder(backend="onnx", cache_dir=onnx_cache)
    assert embedder.backend_used == "onnx"
    return embedder


@pytest.fixture(scope="session")
def int8_embedder(onnx_cache: Path) -> Embedder:
    embedder = Embedder(backend="onnx-int8", cache_dir=onnx_cache)
    assert embedder.backend_used == "onnx-int8"
    return embedder


@pytest.fixture(scope="session")
def reference(torch_embedder: Embedder) -> np.ndarray:
    return torch_embedder.embed(TEXTS)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1))


def test_float32_onnx_matches_torch(onnx_embedder: Embedder, reference: np.ndarray) -> None:
    vectors = onnx_embedder.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), DIMENSION) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(_cosines(vectors, reference).min()) > 0.9999
    assert onnx_embedder.embed([]).shape == (0, DIMENSION)


def test_int8_onnx_is_within_cosine_099(int8_embedder: Embedder, reference: np.ndarray) -> None:
    cosines = _cosines(int8_embedder.embed(TEXTS), reference)
    assert float(cosines.min()) >= 0.99
    assert float(cosines.mean()) >= 0.998


def _neighbours(embedder: Embedder) -> np.ndarray:
    """Similarities of the Fernwick scenario's questions to its corrections (one row per question)."""
    facts = _scenario()
    queries = [q for fact in facts for q in [*fact["prompts"], *fact.get("holdout", [])]]
    return np.asarray(embedder.embed(queries) @ embedder.embed([f["correction"] for f in facts]).T)


SYNTHETIC = [s.interaction for s in synthetic_interactions(300, seed=5, start=START)]
SYNTHETIC_TEXTS = [embedding_text(i) for i in SYNTHETIC]
SYNTHETIC_TYPES: list[str] = [i.interaction_type for i in SYNTHETIC]


def _categories(embedder: Embedder, *, settle: bool = False) -> list[str]:
    """The Analyst's categories of the synthetic interactions (near ties settled, if asked)."""
    index = CategoryIndex.build(DataCollection().tag_categories, embedder)
    embedded = embedder.embed(SYNTHETIC_TEXTS)
    if settle:
        settle_near_ties(index, embedder, embedded, SYNTHETIC_TEXTS, SYNTHETIC_TYPES)
    return [category for category, _ in index.classify(embedded, SYNTHETIC_TYPES)]


@pytest.fixture(scope="session")
def torch_categories(torch_embedder: Embedder) -> list[str]:
    return _categories(torch_embedder)


@pytest.fixture(scope="session")
def torch_neighbours(torch_embedder: Embedder) -> np.ndarray:
    return _neighbours(torch_embedder)


def test_float32_onnx_keeps_neighbours_and_categories(
    onnx_embedder: Embedder, torch_neighbours: np.ndarray, torch_categories: list[str]
) -> None:
    expected, got = torch_neighbours, _neighbours(onnx_embedder)
    assert np.array_equal(np.argsort(-got, axis=1)[:, :3], np.argsort(-expected, axis=1)[:, :3])
    assert _categories(onnx_embedder) == torch_categories


def test_int8_onnx_moves_only_near_ties(
    int8_embedder: Embedder, torch_neighbours: np.ndarray, torch_categories: list[str]
) -> None:
    """int8 is close but not exact: measured 3 of 85 nearest corrections and 10 of 2000 categories
    moved, each where torch's top two were within 0.02 of each other."""
    expected, got = torch_neighbours, _neighbours(int8_embedder)
    rows = np.arange(len(expected))
    top, moved_to = expected.argmax(axis=1), got.argmax(axis=1)
    assert float(np.mean(top == moved_to)) >= 0.9
    margins = expected[rows, top] - expected[rows, moved_to]
    assert float(margins.max()) < 0.02
    agree = np.mean([a == b for a, b in zip(_categories(int8_embedder), torch_categories, strict=True)])
    assert agree >= 0.98


def test_int8_with_near_ties_settled_gives_float32_categories(
    int8_embedder: Embedder, torch_categories: list[str]
) -> None:
    assert not int8_embedder.exact
    assert _categories(int8_embedder, settle=True) == torch_categories
    # What was settled: the near ties alone, a few percent of the interactions.
    index = CategoryIndex.build(DataCollection().tag_categories, int8_embedder)
    embedded = int8_embedder.embed(SYNTHETIC_TEXTS)
    ties = index.near_ties(embedded, SYNTHETIC_TYPES)
    before = embedded.copy()
    settled = settle_near_ties(index, int8_embedder, embedded, SYNTHETIC_TEXTS, SYNTHETIC_TYPES)
    assert settled == ties and 0 < len(settled) < 0.15 * len(SYNTHETIC)
    untouched = [row for row in range(len(SYNTHETIC)) if row not in settled]
    assert np.array_equal(embedded[untouched], before[untouched])
    exact = int8_embedder.float32_twin().embed([SYNTHETIC_TEXTS[row] for row in settled])
    assert np.array_equal(embedded[settled], exact)


def test_embed_exact_is_float32_whatever_the_backend(
    int8_embedder: Embedder, onnx_embedder: Embedder, reference: np.ndarray, onnx_cache: Path
) -> None:
    assert onnx_embedder.exact and not int8_embedder.exact
    assert Embedder(backend="torch").exact and not Embedder(backend="torch", dtype="bfloat16").exact
    twin = int8_embedder.float32_twin()
    assert twin is int8_embedder.float32_twin() and twin.backend == "onnx" and twin.cache_dir == onnx_cache
    exact = int8_embedder.embed_exact(TEXTS[:40])
    assert float(_cosines(exact, reference[:40]).min()) > 0.9999
    assert np.array_equal(onnx_embedder.embed_exact(TEXTS[:40]), onnx_embedder.embed(TEXTS[:40]))


def test_a_text_given_twice_is_embedded_once(
    onnx_embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = onnx_embedder._load()
    seen: list[list[str]] = []
    encode = model.encode

    def spy(texts: list[str]) -> np.ndarray:
        seen.append(list(texts))
        return np.asarray(encode(texts))

    monkeypatch.setattr(model, "encode", spy)
    vectors = onnx_embedder.embed(["alpha", "beta", "alpha", "alpha"])
    assert seen == [["alpha", "beta"]]
    assert np.array_equal(vectors[0], vectors[2]) and np.array_equal(vectors[0], vectors[3])
    assert np.allclose(vectors[:2], onnx_embedder.embed(["alpha", "beta"]), atol=1e-6)


def test_padding_batches_keep_each_batch_close_in_length() -> None:
    lengths = [12, 40, 11, 9, 39, 10, 30, 8, 12, 12, 5, 41]
    batches = padding_batches(lengths, 3)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert [lengths[batch[0]] for batch in batches] == sorted((lengths[b[0]] for b in batches), reverse=True)
    for batch in batches:
        assert len(batch) <= 3
        assert all(BATCH_SHORTEST * lengths[batch[0]] <= lengths[i] <= lengths[batch[0]] for i in batch)
    assert [[lengths[i] for i in batch] for batch in batches] == [
        [41, 40, 39],
        [30],
        [12, 12, 12],
        [11, 10, 9],
        [8],
        [5],
    ]
    # A thousand similar questions fill their batches.
    assert [len(b) for b in padding_batches([20] * 100, 32)] == [32, 32, 32, 4]


def test_concurrent_embeds_give_the_same_vectors(onnx_embedder: Embedder) -> None:
    texts = TEXTS[:80]  # short questions: three batches for the worker threads
    alone = onnx_embedder.embed(texts)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: onnx_embedder.embed(texts), range(6)))
    assert all(np.array_equal(result, alone) for result in results)
    # Order does not matter: each text's vector is its own.
    reordered = onnx_embedder.embed(texts[::-1])
    assert np.allclose(reordered[::-1], alone, atol=1e-5)


# --- the export cache -------------------------------------------------------------------------------


@pytest.fixture()
def no_export(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> Any:
        raise AssertionError("exported again")

    monkeypatch.setattr(embeddings_onnx, "_export", refuse)


@pytest.fixture()
def fake_export(monkeypatch: pytest.MonkeyPatch, onnx_cache: Path, onnx_embedder: Embedder) -> list[Path]:
    """``_export`` that copies the session's real export (fast); records each call's directory."""
    real = export_dir(onnx_cache, "float32", source_key(minilm_path()))
    calls: list[Path] = []

    def copy(model_dir: Path, out_dir: Path, precision: str) -> dict[str, Any]:
        calls.append(out_dir)
        shutil.copy(real / MODEL_FILE, out_dir / MODEL_FILE)
        manifest = json.loads((real / MANIFEST_FILE).read_text(encoding="utf-8"))
        return {k: v for k, v in manifest.items() if k not in ("source_sha256", "seconds")}

    monkeypatch.setattr(embeddings_onnx, "_export", copy)
    return calls


def test_the_cached_export_is_reused(onnx_cache: Path, onnx_embedder: Embedder, no_export: None) -> None:
    path = ensure_export(minilm_path(), onnx_cache)
    assert path == export_dir(onnx_cache, "float32", source_key(minilm_path())) / MODEL_FILE
    manifest = json.loads((path.parent / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert manifest["precision"] == "float32" and manifest["probe_min_cosine"] > 0.9999
    again = Embedder(backend="onnx", cache_dir=onnx_cache)
    assert again.embed(["reused"]).shape == (1, DIMENSION) and again.backend_used == "onnx"
    assert not list(path.parent.parent.glob(".tmp-*"))  # no staging directory is left behind


@pytest.mark.parametrize("damage", ["truncated", "bytes", "manifest", "missing"])
def test_a_corrupt_export_is_redone(tmp_path: Path, fake_export: list[Path], damage: str) -> None:
    path = ensure_export(minilm_path(), tmp_path)
    assert len(fake_export) == 1
    good = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "bytes":  # same size, other content
        path.write_bytes(good[:1000] + bytes(10) + good[1010:])
    elif damage == "manifest":
        (path.parent / MANIFEST_FILE).write_text("{not json", encoding="utf-8")
    else:
        path.unlink()

    assert ensure_export(minilm_path(), tmp_path) == path
    assert len(fake_export) == 2 and path.read_bytes() == good


def test_a_stale_export_is_replaced_and_removed(tmp_path: Path, fake_export: list[Path]) -> None:
    key = source_key(minilm_path())
    stale = export_dir(tmp_path, "float32", "0" * 64)
    stale.mkdir(parents=True)
    (stale / MODEL_FILE).write_bytes(b"an export of another model")
    other_format = export_dir(tmp_path, "float32", key)
    other_format.mkdir()
    manifest = {"format": embeddings_onnx.EXPORT_FORMAT - 1, "source_sha256": key, "precision": "float32"}
    (other_format / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")

    path = ensure_export(minilm_path(), tmp_path)

    assert path.parent == other_format and len(fake_export) == 1
    assert json.loads((path.parent / MANIFEST_FILE).read_text())["format"] == embeddings_onnx.EXPORT_FORMAT
    assert not stale.exists()


def test_the_key_follows_the_source_model(tmp_path: Path) -> None:
    source = minilm_path()
    copy = tmp_path / "model"
    for file in source.rglob("*"):
        if file.is_file():
            target = copy / file.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(file, target)
    assert source_key(copy) == source_key(source)
    (copy / "config.json").unlink()
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    (copy / "config.json").write_text(json.dumps({**config, "layer_norm_eps": 1e-6}), encoding="utf-8")
    assert source_key(copy) != source_key(source)


# --- choosing the backend, and the fallback ---------------------------------------------------------


@pytest.fixture()
def without_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError


def test_auto_is_onnx_unless_bfloat16_or_no_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Embedder().planned_backend == "onnx"
    # dtype auto asks torch for bfloat16 where the CPU has it natively (see test_embeddings.py).
    assert Embedder(dtype="auto").planned_backend == ("torch" if native_bf16() else "onnx")
    assert Embedder(backend="onnx", dtype="auto").uses_bf16 is False
    assert Embedder(dtype="bfloat16").planned_backend == "torch"
    assert Embedder(backend="torch").planned_backend == "torch"
    assert Embedder(backend="onnx-int8").planned_backend == "onnx-int8"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert Embedder().planned_backend == "torch"


def test_asking_onnx_with_bfloat16_or_a_gpu_or_an_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="float32 on CPU"):
        Embedder(backend="onnx", dtype="bfloat16")
    with pytest.raises(ValueError, match="float32 on CPU"):
        Embedder(backend="onnx-int8", device="cuda")
    with pytest.raises(ValueError, match="unknown embedding backend"):
        Embedder(backend="tensorrt")  # type: ignore[arg-type]


def test_without_onnxruntime_onnx_falls_back_to_torch_with_one_warning(
    tmp_path: Path, without_onnxruntime: None, reference: np.ndarray
) -> None:
    embedder = Embedder(backend="onnx", cache_dir=tmp_path)
    with capture_logs() as logs:
        vectors = embedder.embed(TEXTS[:20])
        embedder.embed(TEXTS[20:40])
    assert embedder.backend_used == "torch" and embedder.batch_size == 64
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [w["event"] for w in warnings] == ["embeddings.onnx_unavailable"]
    assert warnings[0]["fallback"] == "torch" and "onnxruntime" in warnings[0]["error"]
    assert float(_cosines(vectors, reference[:20]).min()) > 0.9999
    assert not list(tmp_path.rglob("*.onnx"))  # nothing exported


def test_a_failed_export_falls_back_to_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("the exporter broke")

    monkeypatch.setattr(embeddings_onnx, "_export", broken)
    embedder = Embedder(backend="onnx-int8", cache_dir=tmp_path)
    with capture_logs() as logs:
        assert embedder.embed(["still embeds"]).shape == (1, DIMENSION)
    assert embedder.backend_used == "torch"
    assert [e["error"] for e in logs if e["log_level"] == "warning"] == ["the exporter broke"]
    assert list((tmp_path / "minilm-onnx").iterdir()) == []  # the staging directory is gone


@pytest.fixture()
def fresh_shared_embedder() -> Iterator[None]:
    clear_shared_embedders()
    yield
    clear_shared_embedders()


def test_the_shared_embedder_follows_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_shared_embedder: None
) -> None:
    for var in list(os.environ):
        if var.startswith("GENESYS_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("GENESYS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GENESYS_STORAGE__EMBEDDING_BACKEND", "onnx-int8")
    shared = shared_embedder()
    assert shared is shared_embedder()
    assert shared.backend == "onnx-int8" and shared.cache_dir == tmp_path / "data" / "cache" / "models"
    # Settings given explicitly (a --data-dir override, say) choose their own.
    other = load_settings(data_dir=tmp_path / "elsewhere", storage={"embedding_backend": "torch"})
    assert shared_embedder(other).backend == "torch"
    assert shared_embedder(other).cache_dir == tmp_path / "elsewhere" / "cache" / "models"
    assert shared_embedder(other) is shared_embedder(other) is not shared
    # One embedder (one model) per backend: a later data dir shares the first one's.
    third = load_settings(data_dir=tmp_path / "third", storage={"embedding_backend": "onnx-int8"})
    assert shared_embedder(third) is shared

    clear_shared_embedders()
    monkeypatch.setenv("GENESYS_STORAGE__EMBEDDING_BACKEND", "bogus")
    with capture_logs() as logs:
        assert shared_embedder().backend == "auto"  # a broken configuration never stops embedding
        shared_embedder()
    assert [e["event"] for e in logs] == ["embeddings.settings_unavailable"]
