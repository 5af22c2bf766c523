"""Training data: reading the curated JSONL sets and turning chat rows into token ids with a loss mask.

Formats (one JSON object a line). A path is a file, or a data set version's directory as the Curator
writes it (``data/training/<split>/<version>/{sft,preference,kto}.jsonl``: the file of the format is
read), or any other directory of ``*.jsonl`` files (all are read):

- SFT, OpenAI chat: ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}]}``, the
  last message the assistant's answer;
- DPO, TRL's conversational preference format: ``{"prompt": [messages], "chosen": [assistant message],
  "rejected": [assistant message]}``;
- KTO, TRL's conversational unpaired preference format: ``{"prompt": [messages], "completion":
  [assistant message], "label": true|false}``.

The loss mask is built here rather than by TRL: ``assistant_only_loss`` needs ``{% generation %}``
markers that SmolLM2's template (and most others) lack. Each answer's span is found by rendering the
conversation up to it with the model's own chat template, so the mask is right for any template whose
renderings of a conversation's beginnings are prefixes of each other (checked; ``InvalidRequest``
otherwise).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog

from genesys.errors import InvalidRequest

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = structlog.get_logger(__name__)

IGNORE_INDEX = -100  # label of a token that carries no loss (the prompt, padding)
REPLAY_COLUMN = "replay"
_ROLES = ("system", "user", "assistant")
Message = dict[str, str]
PreferenceKind = Literal["dpo", "kto"]
# The Curator's file names in a data set version's directory (genesys.tools.dataset_writer).
SFT_FILE = "sft.jsonl"
PREFERENCE_FILES: dict[str, str] = {"dpo": "preference.jsonl", "kto": "kto.jsonl"}


@dataclass(frozen=True)
class TokenizedRow:
    """One chat row as the trainer sees it: token ids, and labels that are ``-100`` off the answer."""

    input_ids: list[int]
    labels: list[int]

    @property
    def answer_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def read_jsonl(path: Path, *, name: str | None = None) -> list[dict[str, Any]]:
    """Every object of a JSONL file; for a directory, of its file ``name`` when it has one, else of
    all its ``*.jsonl`` files (sorted by name).

    Raises ``InvalidRequest`` for a missing path, a directory without JSONL files, or a line that is
    not a JSON object (naming the file and line).
    """
    path = Path(path)
    if path.is_dir():
        named = path / name if name else None
        files = [named] if named is not None and named.is_file() else sorted(path.glob("*.jsonl"))
        if not files:
            raise InvalidRequest(f"no .jsonl files in {path}", param="dataset")
    elif path.is_file():
        files = [path]
    else:
        raise InvalidRequest(f"data set not found: {path}", param="dataset")
    rows: list[dict[str, Any]] = []
    for file in files:
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidRequest(f"{file}:{number}: not JSON: {exc.msg}", param="dataset") from exc
            if not isinstance(row, dict):
                raise InvalidRequest(f"{file}:{number}: expected a JSON object", param="dataset")
            rows.append(row)
    return rows


def load_chat_rows(path: Path) -> list[list[Message]]:
    """The conversations of a chat JSONL set; raises ``InvalidRequest`` for an empty set or a bad row."""
    conversations = []
    for index, row in enumerate(read_jsonl(path, name=SFT_FILE), start=1):
        messages = _messages(row.get("messages"), f"{path} row {index}: messages")
        if messages[-1]["role"] != "assistant":
            raise InvalidRequest(f"{path} row {index}: the last message must be the assistant's answer")
        if not any(m["role"] == "user" for m in messages):
            raise InvalidRequest(f"{path} row {index}: no user message")
        conversations.append(messages)
    if not conversations:
        raise InvalidRequest(f"{path} holds no rows", param="dataset")
    return conversations


def distinct_answers(path: Path) -> int:
    """How many different final answers the chat rows of ``path`` hold."""
    return len({row[-1]["content"] for row in load_chat_rows(path)})


def with_system_prompt(messages: list[Message], system_prompt: str | None) -> list[Message]:
    """``messages`` with ``system_prompt`` first, unless there is none or they start with their own."""
    if not system_prompt or (messages and messages[0]["role"] == "system"):
        return messages
    return [{"role": "system", "content": system_prompt}, *messages]


def load_preference_rows(path: Path, kind: PreferenceKind) -> list[dict[str, Any]]:
    """DPO or KTO rows in TRL's conversational format, each checked (none is fine: see
    ``preference_problem``). Raises ``InvalidRequest`` for a missing path or a malformed row."""
    rows = []
    for index, row in enumerate(read_jsonl(path, name=PREFERENCE_FILES[kind]), start=1):
        where = f"{path} row {index}"
        prompt = _messages(row.get("prompt"), f"{where}: prompt")
        if kind == "dpo":
            out: dict[str, Any] = {
                "prompt": prompt,
                "chosen": _answer(row.get("chosen"), f"{where}: chosen"),
                "rejected": _answer(row.get("rejected"), f"{where}: rejected"),
            }
        else:
            if not isinstance(row.get("label"), bool):
                raise InvalidRequest(f"{where}: label must be true or false")
            out = {
                "prompt": prompt,
                "completion": _answer(row.get("completion"), f"{where}: completion"),
                "label": row["label"],
            }
        rows.append(out)
    return rows


def preference_problem(rows: list[dict[str, Any]], kind: PreferenceKind) -> str | None:
    """Why a corrective stage cannot train on ``rows``, or None when it can."""
    if not rows:
        return f"no {kind} rows"
    if kind == "kto" and len({r["label"] for r in rows}) < 2:
        # KTO weighs desirable against undesirable answers; with one kind only it has nothing to contrast.
        return "KTO needs both thumbs-up (true) and thumbs-down (false) rows"
    return None


def tokenize_chat(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[Message],
    *,
    max_length: int,
    loss_on: Literal["last_answer", "all_answers"] = "last_answer",
) -> TokenizedRow:
    """Token ids of the conversation in the model's chat template, with labels only on the answer(s).

    Rows longer than ``max_length`` keep their start. Raises ``InvalidRequest`` when the template does
    not render a conversation's beginnings as prefixes of it (the answer cannot be located then).
    """
    targets = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if loss_on == "last_answer":
        targets = targets[-1:]
    full = _render(tokenizer, messages, generation_prompt=False)
    spans: list[tuple[int, int]] = []
    for index in targets:
        before = _render(tokenizer, messages[:index], generation_prompt=True)
        through = _render(tokenizer, messages[: index + 1], generation_prompt=False)
        if not (through.startswith(before) and full.startswith(through)):
            raise InvalidRequest(
                "the chat template renders the beginning of a conversation differently from the whole; "
                "the answer's tokens cannot be located"
            )
        spans.append((len(before), len(through)))
    input_ids, starts = _encode_with_offsets(tokenizer, full)
    labels = [
        token if any(lo <= start < hi for lo, hi in spans) else IGNORE_INDEX
        for token, start in zip(input_ids, starts, strict=True)
    ]
    return TokenizedRow(input_ids[:max_length], labels[:max_length])


def tokenize_chat_rows(
    tokenizer: PreTrainedTokenizerBase,
    conversations: list[list[Message]],
    *,
    max_length: int,
    loss_on: Literal["last_answer", "all_answers"] = "last_answer",
) -> list[TokenizedRow]:
    """Tokenize every conversation; rows whose answer was cut away entirely are dropped (logged)."""
    rows = [tokenize_chat(tokenizer, m, max_length=max_length, loss_on=loss_on) for m in conversations]
    kept = [row for row in rows if row.answer_tokens > 0]
    if len(kept) < len(rows):
        log.warning("training.rows_dropped", dropped=len(rows) - len(kept), reason="answer beyond max_length")
    return kept


def to_dataset(rows: list[TokenizedRow], replay: list[TokenizedRow] | None = None) -> Any:
    """A ``datasets.Dataset`` with ``input_ids`` and ``labels`` (TRL uses pre-tokenized rows as they are).
    With ``replay`` rows, they follow ``rows`` and a ``replay`` column (1 for them, 0 for the others)
    says which are which (the trainer's replay loss tells them apart by it)."""
    from datasets import Dataset

    every = rows + (replay or [])
    columns: dict[str, list[Any]] = {
        "input_ids": [r.input_ids for r in every],
        "labels": [r.labels for r in every],
    }
    if replay:
        columns[REPLAY_COLUMN] = [0] * len(rows) + [1] * len(replay)
    return Dataset.from_dict(columns)


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[Message], *, generation_prompt: bool) -> str:
    if not messages:
        return ""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    if not isinstance(text, str):
        raise InvalidRequest("the tokenizer's chat template did not render text")
    return text


def _encode_with_offsets(tokenizer: PreTrainedTokenizerBase, text: str) -> tuple[list[int], list[int]]:
    """Token ids of ``text`` (its special tokens come from the template) and each token's first character."""
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(encoded["input_ids"]), [start for start, _ in encoded["offset_mapping"]]
    # Slow tokenizers have no offsets: locate each token by decoding the ids before it.
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    starts = [len(tokenizer.decode(ids[:i])) for i in range(len(ids))]
    return ids, starts


def _messages(value: Any, where: str) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest(f"{where} must be a non-empty list of messages")
    out = []
    for message in value:
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise InvalidRequest(f"{where}: each message needs a role among {', '.join(_ROLES)}")
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            raise InvalidRequest(f"{where}: a {message['role']} message has no text content")
        out.append({"role": message["role"], "content": content})
    return out


def _answer(value: Any, where: str) -> list[Message]:
    messages = _messages(value, where)
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        raise InvalidRequest(f"{where} must be one assistant message")
    return messages
