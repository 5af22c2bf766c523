"""Hosts the engine for the async server: loads it in the background, streams it without blocking.

Engines generate synchronously; a worker thread runs each generation and hands chunks to the event
loop through a queue. A consumer that stops early (the client went away) stops the generation too.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import structlog

from genesys.errors import EngineUnavailable
from genesys.runtime.engines.base import ChatMessage, EngineChunk, GenerationParams, InferenceEngine

log = structlog.get_logger(__name__)
_DONE = object()


class EngineHost:
    def __init__(self, engine: InferenceEngine) -> None:
        self.engine = engine
        self.load_error: str | None = None
        self._loading: threading.Thread | None = None
        self._setup_done = threading.Event()

    def start_loading(self, after_load: Callable[[], None] | None = None) -> None:
        """Load the engine in a background thread, then run ``after_load`` (the serving adapters);
        ``ready`` turns true when both are done."""
        if self._loading is not None:
            return

        def _load() -> None:
            try:
                self.engine.load()
                if after_load is not None:
                    after_load()
            except Exception as exc:
                self.load_error = str(exc)
                log.error("engine.load_failed", error=str(exc))
            finally:
                self._setup_done.set()

        self._loading = threading.Thread(target=_load, name="engine-load", daemon=True)
        self._loading.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        if self._loading is not None:
            self._loading.join(timeout)
        return self.ready

    @property
    def ready(self) -> bool:
        # Started without ``start_loading`` (an engine loaded by its owner): the engine decides alone.
        return self.engine.ready and (self._loading is None or self._setup_done.is_set())

    def ensure_ready(self) -> None:
        if not self.engine.ready:
            if self.load_error:
                raise EngineUnavailable(f"the model failed to load: {self.load_error}")
            raise EngineUnavailable("the model is still loading; retry in a few seconds")

    async def count_chat_tokens(self, messages: list[ChatMessage]) -> int:
        self.ensure_ready()
        return await asyncio.to_thread(self.engine.count_chat_tokens, messages)

    async def count_tokens(self, text: str) -> int:
        self.ensure_ready()
        return await asyncio.to_thread(self.engine.count_tokens, text)

    def stream_chat(
        self, messages: list[ChatMessage], params: GenerationParams, adapter: str | None = None
    ) -> AsyncIterator[EngineChunk]:
        self.ensure_ready()
        return _bridge(lambda: self.engine.stream_chat(messages, params, adapter))

    def stream_completion(
        self,
        prompt: str,
        params: GenerationParams,
        adapter: str | None = None,
        suffix: str | None = None,
    ) -> AsyncIterator[EngineChunk]:
        self.ensure_ready()
        return _bridge(lambda: self.engine.stream_completion(prompt, params, adapter, suffix))


async def _bridge(make: Callable[[], Iterator[EngineChunk]]) -> AsyncIterator[EngineChunk]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()

    def _put(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            stop.set()

    def _run() -> None:
        iterator = None
        try:
            iterator = make()
            for chunk in iterator:
                _put(chunk)
                if stop.is_set():
                    break
        except BaseException as exc:
            _put(exc)
        finally:
            if iterator is not None and hasattr(iterator, "close"):
                iterator.close()
            _put(_DONE)

    # The request's log context (its request id) follows the generation into the worker thread.
    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(_run,), name="engine-generate", daemon=True)
    worker.start()
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
