"""The vLLM engine against the vLLM stub served over loopback HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from genesys.errors import EngineError, EngineUnavailable, NotFound
from genesys.runtime.engines.base import ChatMessage, EngineChunk, GenerationParams
from genesys.runtime.engines.vllm import VllmEngine
from tests.support.vllm_stub import RunningStub, serve_vllm_stub

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"
GREEDY = GenerationParams(max_tokens=64, temperature=0.0)


@pytest.fixture(scope="module")
def stub() -> Iterator[RunningStub]:
    with serve_vllm_stub(base_model=BASE) as running:
        yield running


@pytest.fixture
def engine(stub: RunningStub) -> Iterator[VllmEngine]:
    engine = VllmEngine(stub.base_url, api_key="test-key-0123456789", timeout_s=10)
    engine.load()
    yield engine
    for name in engine.info().adapters:
        engine.unload_adapter(name)
    engine.close()


def _adapter_dir(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir()
    (path / "adapter_config.json").write_text('{"peft_type": "LORA"}', encoding="utf-8")
    return path


def _collect(chunks: Iterator[EngineChunk]) -> tuple[str, EngineChunk, list[EngineChunk]]:
    received = list(chunks)
    assert received, "the stream yielded nothing"
    last = received[-1]
    assert all(c.finish_reason is None for c in received[:-1])
    return "".join(c.text for c in received), last, received


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_load_picks_the_base_model(engine: VllmEngine) -> None:
    assert engine.ready
    info = engine.info()
    assert (info.engine, info.base_model, info.adapters, info.supports_fim) == ("vllm", BASE, [], False)


def test_load_rejects_a_model_the_server_does_not_serve(stub: RunningStub) -> None:
    engine = VllmEngine(stub.base_url, served_model="other/model")
    with pytest.raises(EngineUnavailable, match="does not serve 'other/model'"):
        engine.load()
    assert not engine.ready


def test_unreachable_server_is_unavailable() -> None:
    engine = VllmEngine(f"http://127.0.0.1:{_free_port()}/v1", timeout_s=2)
    with pytest.raises(EngineUnavailable, match="cannot be reached"):
        engine.load()


def test_stream_chat_streams_and_ends_with_usage(engine: VllmEngine, stub: RunningStub) -> None:
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "what is a closure in python")]
    text, last, received = _collect(engine.stream_chat(messages, GREEDY))
    assert text == f"{BASE} says: what is a closure in python"
    assert len(received) > 3, "the reply should arrive in several chunks"
    assert last.finish_reason == "stop"
    assert last.prompt_tokens == engine.count_chat_tokens(messages) > 0
    assert last.completion_tokens == 8
    sent = stub.app.state.stub.requests[-1]
    assert sent["model"] == BASE
    assert sent["stream"] is True
    assert sent["stream_options"]["include_usage"] is True
    assert sent["temperature"] == 0.0


def test_stream_chat_honours_max_tokens_and_stop(engine: VllmEngine) -> None:
    messages = [ChatMessage("user", "one two three four five six")]
    text, last, _ = _collect(engine.stream_chat(messages, GenerationParams(max_tokens=3, temperature=0)))
    assert (text, last.finish_reason, last.completion_tokens) == (f"{BASE} says: one", "length", 3)

    stopped = GenerationParams(max_tokens=64, temperature=0, stop=("four",))
    text, last, _ = _collect(engine.stream_chat(messages, stopped))
    assert text == f"{BASE} says: one two three "
    assert last.finish_reason == "stop"


def test_stream_completion_continues_the_prompt(engine: VllmEngine) -> None:
    text, last, _ = _collect(engine.stream_completion("def add(a, b):", GREEDY))
    assert text == f"[{BASE}] def add(a, b):"
    assert last.finish_reason == "stop"
    assert last.prompt_tokens == 4
    assert last.completion_tokens == 4


def test_stream_completion_with_suffix_stops_where_the_suffix_begins(
    engine: VllmEngine, stub: RunningStub
) -> None:
    # vLLM rejects `suffix` with a 400, so the engine never sends one.
    prompt = "x = 1\ny = 2\nz = 3\n"
    text, last, _ = _collect(engine.stream_completion(prompt, GREEDY, suffix="\ny = 2\nprint(x)\n"))
    assert text == f"[{BASE}] x = 1\n"
    assert last.finish_reason == "stop"
    sent = stub.app.state.stub.requests[-1]
    assert sent["suffix"] is None
    assert sent["stop"] == ["y = 2"]


def test_count_tokens_uses_the_server_tokenizer(engine: VllmEngine) -> None:
    assert engine.count_tokens("def add(a, b): return a + b") == 7
    assert engine.count_tokens("") == 0


def test_adapter_is_loaded_listed_used_and_unloaded(
    engine: VllmEngine, stub: RunningStub, tmp_path: Path
) -> None:
    engine.load_adapter("v1", _adapter_dir(tmp_path, "v1"))
    engine.load_adapter("v2", _adapter_dir(tmp_path, "v2"))
    assert engine.info().adapters == ["v1", "v2"]
    cards = httpx.get(f"{stub.base_url}/models").json()["data"]
    assert {c["id"]: (c["parent"], c["root"]) for c in cards if c["parent"]} == {
        "v1": (BASE, str(tmp_path / "v1")),
        "v2": (BASE, str(tmp_path / "v2")),
    }

    messages = [ChatMessage("user", "hello")]
    assert _collect(engine.stream_chat(messages, GREEDY, adapter="v2"))[0] == "v2 says: hello"
    assert _collect(engine.stream_chat(messages, GREEDY, adapter="v1"))[0] == "v1 says: hello"
    assert _collect(engine.stream_chat(messages, GREEDY))[0] == f"{BASE} says: hello"
    assert _collect(engine.stream_completion("x", GREEDY, adapter="v1"))[0] == "[v1] x"

    engine.unload_adapter("v1")
    assert engine.info().adapters == ["v2"]
    with pytest.raises(NotFound) as caught:
        list(engine.stream_chat(messages, GREEDY, adapter="v1"))
    assert (caught.value.param, caught.value.code) == ("model", "model_not_found")


def test_unknown_adapter_is_not_found(engine: VllmEngine) -> None:
    with pytest.raises(NotFound, match="'nope' is not loaded"):
        list(engine.stream_chat([ChatMessage("user", "hi")], GREEDY, adapter="nope"))
    # Unloading what is not loaded is a no-op, as with the other engines.
    engine.unload_adapter("nope")


def test_adapter_loaded_by_another_replica_is_found(
    engine: VllmEngine, stub: RunningStub, tmp_path: Path
) -> None:
    other = VllmEngine(stub.base_url)
    other.load()
    other.load_adapter("shared", _adapter_dir(tmp_path, "shared"))
    text, _, _ = _collect(engine.stream_chat([ChatMessage("user", "hi")], GREEDY, adapter="shared"))
    assert text == "shared says: hi"
    # The same name and path again (another replica's rollout) is accepted.
    engine.load_adapter("shared", tmp_path / "shared")
    other.close()


def test_duplicate_adapter_name_with_another_path_is_an_engine_error(
    engine: VllmEngine, tmp_path: Path
) -> None:
    engine.load_adapter("v1", _adapter_dir(tmp_path, "first"))
    with pytest.raises(EngineError, match="already serves an adapter named 'v1'"):
        engine.load_adapter("v1", _adapter_dir(tmp_path, "second"))


def test_adapter_the_server_cannot_find_is_an_engine_error(engine: VllmEngine, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="No adapter found") as caught:
        engine.load_adapter("ghost", tmp_path / "missing")
    assert not isinstance(caught.value, NotFound)
    assert engine.info().adapters == []


def test_runtime_lora_updating_disabled_is_explained(tmp_path: Path) -> None:
    with serve_vllm_stub(base_model=BASE, allow_runtime_lora=False) as running:
        engine = VllmEngine(running.base_url)
        engine.load()
        with pytest.raises(EngineError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING"):
            engine.load_adapter("v1", _adapter_dir(tmp_path, "v1"))
        with pytest.raises(EngineError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING"):
            engine.unload_adapter("v1")


def test_not_loaded_engine_refuses_to_generate(stub: RunningStub) -> None:
    engine = VllmEngine(stub.base_url)
    with pytest.raises(EngineUnavailable):
        list(engine.stream_chat([ChatMessage("user", "hi")], GREEDY))


# -- the stub itself follows vLLM's documented behaviour ----------------------------------------------


def test_stub_errors_have_vllm_shape_and_status(stub: RunningStub, tmp_path: Path) -> None:
    root = stub.root_url
    path = str(_adapter_dir(tmp_path, "a"))
    assert httpx.get(f"{root}/health").status_code == 200
    assert (
        httpx.post(f"{root}/v1/load_lora_adapter", json={"lora_name": "a", "lora_path": path}).status_code
        == 200
    )
    duplicate = httpx.post(f"{root}/v1/load_lora_adapter", json={"lora_name": "a", "lora_path": path})
    assert duplicate.status_code == 400
    assert duplicate.json()["error"]["type"] == "InvalidUserInput"
    assert duplicate.json()["error"]["code"] == 400
    assert httpx.post(f"{root}/v1/unload_lora_adapter", json={"lora_name": "a"}).status_code == 200
    unknown = httpx.post(f"{root}/v1/unload_lora_adapter", json={"lora_name": "a"})
    assert unknown.status_code == 404
    assert unknown.json()["error"] == {
        "message": "The lora adapter 'a' cannot be found.",
        "type": "NotFoundError",
        "param": None,
        "code": 404,
    }
    missing_model = httpx.post(f"{root}/v1/chat/completions", json={"model": "x", "messages": []})
    assert (missing_model.status_code, missing_model.json()["error"]["param"]) == (404, "model")
    suffix = httpx.post(f"{root}/v1/completions", json={"model": BASE, "prompt": "a", "suffix": "b"})
    assert (suffix.status_code, suffix.json()["error"]["message"]) == (
        400,
        "suffix is not currently supported",
    )
    invalid = httpx.post(f"{root}/v1/chat/completions", json={"model": BASE})
    assert invalid.status_code == 400


def test_stub_non_streaming_and_tokenize(stub: RunningStub) -> None:
    root = stub.root_url
    reply = httpx.post(
        f"{root}/v1/chat/completions",
        json={"model": BASE, "messages": [{"role": "user", "content": "a b"}], "max_tokens": 3},
    ).json()
    assert reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"] == {"role": "assistant", "content": f"{BASE} says: a"}
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] == 3
    tokens = httpx.post(f"{root}/tokenize", json={"model": BASE, "prompt": "a b"}).json()
    assert tokens["count"] == 3  # BOS is added by default
    assert tokens["max_model_len"] == 4096
    assert len(tokens["tokens"]) == 3
