"""Secrets and personal data out of every text before it enters a dataset.

``Scrubber.scrub(text)`` returns the text with what it found replaced by placeholders, and what kinds
it replaced. In order:

1. control characters: NUL, C0/C1 controls (tab, newline and carriage return stay), DEL, the bidi
   overrides of "Trojan source" attacks, lone surrogates (which no UTF-8 file can hold); Unicode line
   and paragraph separators become newlines;
2. private key blocks (``-----BEGIN ... PRIVATE KEY-----`` through ``END``, or to the end of a text
   that was cut) -> ``[REDACTED_PRIVATE_KEY]``: a line scanner sees only the header;
3. detect-secrets, in memory: each line that could hold a secret is scanned by every plugin except the
   two high-entropy ones (in ad-hoc mode they flag every word), with the default filters. A plugin
   may report only the prefix of a token (``ghp``), so each finding is widened to the whole token;
   every occurrence of a found secret in the text is replaced -> ``[REDACTED_SECRET]``;
4. regexes as a backstop: known token formats (AWS, GitHub, OpenAI, Slack, Stripe, Google, Hugging
   Face, GitLab, JWT, ``Bearer``), values assigned to secret-sounding names (``password: ...``), and
   long high-entropy tokens -> ``[REDACTED_SECRET]``;
5. personal data: e-mail addresses -> ``[EMAIL]``, phone numbers -> ``[PHONE]``, IPv4 addresses other
   than loopback and ``0.0.0.0`` -> ``[IP]``;
6. chat-template control tokens (``<|im_start|>``, ``<|eot_id|>``, ...) -> ``[TOKEN im_start]``: a
   user's text must not open a system turn when the trainer renders it with the model's template.

detect-secrets keeps its settings in a process-wide singleton, so scanning holds a module lock and
``Scrubber`` enters the settings once for a whole batch (entering them costs a cache flush).
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from types import TracebackType
from typing import Any

from pydantic import BaseModel, Field

SCRUBBER_VERSION = "scrub-1"
SECRET = "[REDACTED_SECRET]"
PRIVATE_KEY = "[REDACTED_PRIVATE_KEY]"
EMAIL = "[EMAIL]"
PHONE = "[PHONE]"
IP = "[IP]"
PLACEHOLDERS = (SECRET, PRIVATE_KEY, EMAIL, PHONE, IP)

# In ad-hoc (eager) mode these two flag nearly every word of ordinary code; the token regexes and the
# entropy check of step 4 cover what they would catch.
_SKIPPED_PLUGINS = frozenset({"Base64HighEntropyString", "HexHighEntropyString"})
# A secret value shorter than this is replaced only where it was found: replacing "abc" everywhere
# would wreck the text.
_MIN_GLOBAL_SECRET = 6
_LOCK = threading.Lock()

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff]")
_LINE_SEPARATOR = re.compile(r"[\u2028\u2029]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_PRIVATE_KEY = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\Z)"
    r"|(?:^[A-Za-z0-9+/=]{16,}[ \t]*\n)+-----END[A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----",
    re.DOTALL | re.MULTILINE,
)
# Lines worth handing to detect-secrets: a long token, a secret-sounding word, credentials in a URL.
_MAYBE_SECRET_LINE = re.compile(
    r"[A-Za-z0-9_\-+/=.]{16,}|pass|pwd|secret|token|key|auth|cred|private|://[^\s/]*@",
    re.IGNORECASE,
)
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+/.~")
_KNOWN_TOKENS = re.compile(
    r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"
    r"|\bgh[pousr]_[A-Za-z0-9_]{20,}"
    r"|\bgithub_pat_[A-Za-z0-9_]{20,}"
    r"|\bglpat-[A-Za-z0-9_\-]{20,}"
    r"|\bsk-(?:proj-|ant-|live-)?[A-Za-z0-9_\-]{20,}"
    r"|\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|\bxox[abporsu]-[A-Za-z0-9\-]{10,}"
    r"|\bAIza[0-9A-Za-z_\-]{35}"
    r"|\bhf_[A-Za-z0-9]{30,}"
    r"|\bnpm_[A-Za-z0-9]{30,}"
    r"|\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"
)
_BEARER = re.compile(r"(?i)\b(Bearer|Basic|Token)(\s+)([A-Za-z0-9._~+/\-]{16,}=*)")
# name = value, name: value, "name": "value" where the name sounds like a secret.
_ASSIGNMENT = re.compile(
    r"""(?ix)
    (?P<name>\b[\w.\-]*(?:passw(?:or)?d|passwd|pwd|secret|token|api[_\-]?key|access[_\-]?key|
        private[_\-]?key|client[_\-]?secret|auth[_\-]?key|credentials?|key)[\w\-]*)
    (?P<sep>["']?\s*(?::=|=>|=|:)\s*)
    (?P<quote>["'`]?)
    (?P<value>[^\s"'`,;]{4,})
    """
)
_STRONG_NAME = re.compile(
    r"passw(?:or)?d|passwd|pwd|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|auth[_\-]?key|"
    r"credentials?",
    re.IGNORECASE,
)
_NOT_SECRET_VALUES = frozenset({"none", "null", "nil", "true", "false", "undefined", "required", "optional"})
_CODE_LIKE = re.compile(r"[(){}\[\]$<%]|^\w+\.\w+|^[*xX.]+$")
_LONG_TOKEN = re.compile(r"[A-Za-z0-9_\-+=]{32,}")
_HEX = frozenset("0123456789abcdefABCDEF-")
_EMAIL = re.compile(
    r"(?<![\w.%+\-])[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24}\b"
)
_PHONE = re.compile(
    r"(?<![\w.+\-])(?:\+\d{1,3}[ .\-]?)?(?:\(\d{2,4}\)[ .\-]?|\d{2,4}[ .\-])\d{3,4}[ .\-]\d{3,4}(?![\w.\-])"
    r"|(?<![\w.+\-])\+\d{7,14}(?![\w.\-])"
)
_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w]|\.\d)"
)
_KEEP_IPS = frozenset({"127.0.0.1", "0.0.0.0", "255.255.255.255", "255.255.255.0"})
_SPECIAL_TOKEN = re.compile(
    r"<\|[A-Za-z0-9_]{1,40}\|>|<(?:start|end)_of_turn>|\[/?INST\]|<</?SYS>>",
)


class ScrubResult(BaseModel):
    """A scrubbed text and what was replaced in it (kind -> count)."""

    text: str
    redactions: dict[str, int] = Field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.redactions)


def _entropy(token: str) -> float:
    counts = Counter(token)
    total = len(token)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def looks_like_key(token: str) -> bool:
    """A long token that is probably a credential: letters and enough digits, high entropy, not hex.

    Hex (hashes, UUIDs) and long identifiers stay: they are common in code and rarely secret.
    """
    if len(token) < 32 or set(token) <= _HEX:
        return False
    digits = sum(c.isdigit() for c in token)
    letters = sum(c.isalpha() for c in token)
    return letters > 0 and digits / len(token) >= 0.08 and _entropy(token) >= 4.2


def clean_text(text: str) -> tuple[str, int]:
    """The text without control characters and lone surrogates; and how many were removed."""
    cleaned, removed = _CONTROL.subn("", text)
    # Unicode line and paragraph separators split lines for some readers and editors: plain newlines.
    cleaned, separators = _LINE_SEPARATOR.subn("\n", cleaned)
    cleaned, surrogates = _SURROGATE.subn("\ufffd", cleaned)
    return cleaned, removed + separators + surrogates


@lru_cache(maxsize=1)
def _plugin_names() -> tuple[str, ...]:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    classes: list[type] = list(get_mapping_from_secret_type_to_class().values())
    return tuple(sorted(c.__name__ for c in classes if c.__name__ not in _SKIPPED_PLUGINS))


def detect_secrets_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("detect-secrets")
    except metadata.PackageNotFoundError:  # pragma: no cover - a declared dependency
        return "unknown"


def _widen(line: str, start: int, end: int) -> tuple[int, int]:
    """Grow ``[start, end)`` to the whole token around it (a plugin may report a prefix only)."""
    while start > 0 and line[start - 1] in _TOKEN_CHARS:
        start -= 1
    while end < len(line) and (line[end] in _TOKEN_CHARS or line[end] == "="):
        end += 1
    return start, end


def _is_placeholder_part(value: str) -> bool:
    return "REDACTED" in value or value in {"EMAIL", "PHONE", "IP"}


class Scrubber:
    """Scrubs texts; use as a context manager to scan a batch under one detect-secrets configuration.

    Results are cached by text within the scrubber (system prompts and history repeat across
    interactions). Not for concurrent use: build one per curation run.
    """

    def __init__(self) -> None:
        self._cache: dict[str, ScrubResult] = {}
        self._settings: Any = None
        self._entered = False

    def __enter__(self) -> Scrubber:
        from detect_secrets.settings import transient_settings

        _LOCK.acquire()
        try:
            self._settings = transient_settings({"plugins_used": [{"name": n} for n in _plugin_names()]})
            self._settings.__enter__()
        except BaseException:
            _LOCK.release()
            raise
        self._entered = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._settings is not None:
                self._settings.__exit__(exc_type, exc, tb)
        finally:
            self._settings = None
            self._entered = False
            _LOCK.release()

    def scrub(self, text: str) -> ScrubResult:
        """The text with secrets, personal data, control characters and template tokens replaced."""
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        if not self._entered:
            with self:
                result = self._scrub(text)
        else:
            result = self._scrub(text)
        self._cache[text] = result
        return result

    def _scrub(self, text: str) -> ScrubResult:
        found: Counter[str] = Counter()
        out, removed = clean_text(text)
        if removed:
            found["control_chars"] += removed
        out, n = _PRIVATE_KEY.subn(PRIVATE_KEY, out)
        found["private_key"] += n
        out, n = self._detect_secrets(out)
        found["detect_secrets"] += n
        out, n = _KNOWN_TOKENS.subn(SECRET, out)
        found["token"] += n
        out, n = _BEARER.subn(lambda m: f"{m.group(1)}{m.group(2)}{SECRET}", out)
        found["token"] += n
        out, found["assignment"] = _sub_counted(_ASSIGNMENT, _redact_assignment, out)
        out, found["high_entropy"] = _sub_counted(
            _LONG_TOKEN, lambda m: SECRET if looks_like_key(m.group(0)) else None, out
        )
        out, n = _EMAIL.subn(EMAIL, out)
        found["email"] += n
        out, found["ip"] = _sub_counted(_IPV4, lambda m: None if m.group(0) in _KEEP_IPS else IP, out)
        out, n = _PHONE.subn(PHONE, out)
        found["phone"] += n
        out, n = _SPECIAL_TOKEN.subn(_neutralize_token, out)
        found["template_token"] += n
        return ScrubResult(text=out, redactions={k: v for k, v in sorted(found.items()) if v > 0})

    def _detect_secrets(self, text: str) -> tuple[str, int]:
        from detect_secrets.core.scan import scan_line

        global_values: set[str] = set()
        lines = text.split("\n")
        replaced = 0
        for index, line in enumerate(lines):
            if not _MAYBE_SECRET_LINE.search(line):
                continue
            spans: list[tuple[int, int]] = []
            for secret in scan_line(line):
                value = secret.secret_value
                if not value or _is_placeholder_part(value):
                    continue
                for match in re.finditer(re.escape(value), line):
                    start, end = _widen(line, match.start(), match.end())
                    if _is_placeholder_part(line[start:end]):
                        continue
                    spans.append((start, end))
                    if end - start >= _MIN_GLOBAL_SECRET:
                        global_values.add(line[start:end])
            if spans:
                lines[index], n = _replace_spans(line, spans)
                replaced += n
        out = "\n".join(lines)
        # The same secret elsewhere in the text (in a line the scanner did not flag) goes too.
        for value in sorted(global_values, key=len, reverse=True):
            if value in out:
                replaced += out.count(value)
                out = out.replace(value, SECRET)
        return out, replaced


def _replace_spans(line: str, spans: list[tuple[int, int]]) -> tuple[str, int]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    out = line
    for start, end in reversed(merged):
        out = out[:start] + SECRET + out[end:]
    return out, len(merged)


def _sub_counted(
    pattern: re.Pattern[str], replace: Callable[[re.Match[str]], str | None], text: str
) -> tuple[str, int]:
    """``pattern.sub`` where ``replace`` may keep a match (None); returns the text and the replacements."""
    count = 0

    def one(match: re.Match[str]) -> str:
        nonlocal count
        new = replace(match)
        if new is None:
            return match.group(0)
        count += 1
        return new

    return pattern.sub(one, text), count


def _redact_assignment(match: re.Match[str]) -> str | None:
    value = match.group("value")
    quoted = bool(match.group("quote"))
    name = match.group("name")
    # A bare "key" names dictionary keys as often as secrets: only a long quoted value counts there.
    generic = _STRONG_NAME.search(name) is None
    keep = (
        (generic and not (quoted and len(value) >= 16 and any(c.isdigit() for c in value)))
        or _is_placeholder_part(value)
        or value.lower() in _NOT_SECRET_VALUES
        or value.lower() == name.lower()
        # Unquoted code (a call, an attribute, a template) names where the secret comes from.
        or (not quoted and _CODE_LIKE.search(value) is not None)
    )
    if keep:
        return None
    return f"{name}{match.group('sep')}{match.group('quote')}{SECRET}"


def _neutralize_token(match: re.Match[str]) -> str:
    name = match.group(0).strip("<>|[]/").strip("|")
    return f"[TOKEN {name}]"


@contextmanager
def scrubbing() -> Iterator[Scrubber]:
    """A ``Scrubber`` with detect-secrets configured for the block."""
    with Scrubber() as scrubber:
        yield scrubber


def scrub_text(text: str) -> ScrubResult:
    """Scrub one text (configures detect-secrets for this call only; use ``scrubbing()`` for batches)."""
    with scrubbing() as scrubber:
        return scrubber.scrub(text)
