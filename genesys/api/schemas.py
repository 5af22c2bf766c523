"""OpenAI-compatible request bodies. Unknown fields are accepted (IDEs send many) and ignored."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def _encodable(text: str, where: str) -> None:
    # JSON may carry lone surrogates ("\ud800"); they are not text and cannot be stored or tokenized.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{where} holds invalid Unicode (a lone surrogate)") from exc


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class _GenerationFields(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, gt=0)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = Field(None, max_length=256)
    n: int = Field(1, ge=1, le=1, description="Only one choice per request is generated.")

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        stops = [value] if isinstance(value, str) else value
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        return [s for s in stops if s]

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_GenerationFields):
    messages: list[dict[str, Any]]
    max_completion_tokens: int | None = Field(None, gt=0)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None

    @field_validator("messages")
    @classmethod
    def _messages(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not value:
            raise ValueError("messages must hold at least one message")
        for i, message in enumerate(value):
            role = message.get("role")
            if role not in _ROLES:
                raise ValueError(f"messages[{i}].role must be one of {sorted(_ROLES)}, got {role!r}")
            content = message.get("content")
            if content is not None and not isinstance(content, str | list):
                raise ValueError(f"messages[{i}].content must be a string or a list of parts")
            _encodable(json.dumps(message, ensure_ascii=False), f"messages[{i}]")
        return value

    @field_validator("tools")
    @classmethod
    def _tools(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for i, tool in enumerate(value or []):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise ValueError(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}")
        return value

    @property
    def completion_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_GenerationFields):
    prompt: str | list[str]
    suffix: str | None = None
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("send exactly one prompt per request")
        _encodable(value if isinstance(value, str) else value[0], "prompt")
        return value

    @field_validator("suffix")
    @classmethod
    def _suffix_text(cls, value: str | None) -> str | None:
        if value is not None:
            _encodable(value, "suffix")
        return value

    @property
    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class FimCompletionRequest(_GenerationFields):
    """Mistral's ``/v1/fim/completions``: code before the cursor (``prompt``) and after (``suffix``)."""

    prompt: str
    suffix: str | None = None
    min_tokens: int | None = None

    @field_validator("prompt", "suffix")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        if value is not None:
            _encodable(value, "prompt")
        return value


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "genesys"
    root: str | None = None
    parent: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
