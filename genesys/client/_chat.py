"""Chat replies: the whole answer (``ChatResult``) or a stream of text (``ChatStream``).

The stream is OpenAI's server-sent events: ``data: <chunk JSON>`` blocks separated by blank lines,
ended by ``data: [DONE]``. An error after the headers were sent arrives as a ``data:`` block holding
``{"error": {...}}`` and is raised as the matching ``GenesysAPIError``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import httpx

from genesys.client._errors import GenesysAPIError, error_from_body, error_from_transport
from genesys.client._models import ChatResult, Usage

INTERACTION_HEADER = "x-genesys-interaction-id"
VERSION_HEADER = "x-genesys-model-version"
CONVERSATION_HEADER = "x-genesys-conversation-id"
REQUEST_ID_HEADER = "x-request-id"

# The HTTP status an error of this OpenAI type would have had, for errors sent inside a stream.
_STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "server_error": 500,
}


def chat_result(response: httpx.Response) -> ChatResult:
    """The ``ChatResult`` of a whole (non-streamed) chat completion."""
    body = response.json()
    choice = body["choices"][0]
    message = choice.get("message") or {}
    return ChatResult(
        interaction_id=response.headers.get(INTERACTION_HEADER) or body["id"],
        model_version=response.headers.get(VERSION_HEADER) or body.get("system_fingerprint") or "",
        conversation_id=response.headers.get(CONVERSATION_HEADER),
        content=message.get("content") or "",
        finish_reason=choice.get("finish_reason"),
        tool_calls=message.get("tool_calls") or None,
        usage=Usage.model_validate(body["usage"]) if body.get("usage") else None,
        model=body.get("model") or "",
        request_id=response.headers.get(REQUEST_ID_HEADER),
    )


def sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The ``data`` of each server-sent event (multi-line data joined with newlines); comments and
    other fields (``event:``, ``id:``, ``retry:``) are skipped."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)


class ChatStream:
    """A streamed answer. Iterate over it for the text as it arrives; after the end, ``result`` holds
    the whole ``ChatResult`` (with ``usage``). ``interaction_id`` and ``model_version`` are known at
    once, from the response headers. Close it (or use ``with``) to hang up early: the server then
    keeps what it sent as a ``cancelled`` interaction."""

    def __init__(self, response: httpx.Response, *, base_url: str) -> None:
        self._response = response
        self._base_url = base_url
        self.interaction_id: str = response.headers.get(INTERACTION_HEADER, "")
        self.model_version: str = response.headers.get(VERSION_HEADER, "")
        self.conversation_id: str | None = response.headers.get(CONVERSATION_HEADER)
        self.request_id: str | None = response.headers.get(REQUEST_ID_HEADER)
        self._text: list[str] = []
        self._tool_calls: dict[int, dict[str, Any]] = {}
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self._model = ""
        self._done = False
        self._chunks = self._read()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._chunks)

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._response.close()

    def until_done(self) -> ChatResult:
        """Read the rest of the answer and return the whole result."""
        for _ in self:
            pass
        return self.result

    @property
    def done(self) -> bool:
        return self._done

    @property
    def result(self) -> ChatResult:
        """The whole answer; ``RuntimeError`` before the stream has ended."""
        if not self._done:
            raise RuntimeError("the stream has not ended yet: iterate over it first (or call until_done())")
        return ChatResult(
            interaction_id=self.interaction_id,
            model_version=self.model_version,
            conversation_id=self.conversation_id,
            content="".join(self._text),
            finish_reason=self._finish_reason,
            tool_calls=[self._tool_calls[i] for i in sorted(self._tool_calls)] or None,
            usage=self._usage,
            model=self._model,
            request_id=self.request_id,
        )

    def _read(self) -> Iterator[str]:
        try:
            for data in sse_data(self._response.iter_lines()):
                if data == "[DONE]":
                    self._done = True
                    return
                text = self._take(json.loads(data))
                if text:
                    yield text
        except httpx.TransportError as exc:
            raise error_from_transport(exc, self._base_url) from exc
        finally:
            self._response.close()
        raise GenesysAPIError(
            "the stream ended without [DONE]: the server closed it mid-answer",
            hint="Retry; if it keeps happening, the server's log (search for the request id) says why.",
            request_id=self.request_id,
        )

    def _take(self, chunk: dict[str, Any]) -> str:
        """Record one chunk; returns its text."""
        if "error" in chunk:
            error = chunk["error"] if isinstance(chunk["error"], dict) else {}
            status = _STATUS_OF_TYPE.get(str(error.get("type")), 500)
            raise error_from_body(status, chunk, request_id=self.request_id)
        self._model = chunk.get("model") or self._model
        if chunk.get("usage"):
            self._usage = Usage.model_validate(chunk["usage"])
        text = ""
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            text += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                self._merge_tool_call(call)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
        if text:
            self._text.append(text)
        return text

    def _merge_tool_call(self, call: dict[str, Any]) -> None:
        """OpenAI streams a tool call in pieces keyed by ``index``: the name once, the arguments in parts."""
        index = int(call.get("index", len(self._tool_calls)))
        merged = self._tool_calls.setdefault(index, {"type": "function", "function": {"arguments": ""}})
        for key in ("id", "type"):
            if call.get(key):
                merged[key] = call[key]
        function = call.get("function") or {}
        if function.get("name"):
            merged["function"]["name"] = function["name"]
        merged["function"]["arguments"] += function.get("arguments") or ""
