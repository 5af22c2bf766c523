"""Documents into chunks for the ``docs`` collection: Markdown by headings, HTML through the standard
library's ``html.parser``, plain text by paragraphs.

Every format is first read into *sections*: a heading path (``("Fernwick", "Queues", "Creating a
queue")``) and the blocks of text under it (paragraphs, lists, whole code blocks). Sections are never
merged, so a chunk always sits under one heading path; a section longer than ``chunk_tokens`` is split
between blocks (a block that is itself too long, between sentences or lines), and each piece after the
first starts with the last sentences of the previous one (``overlap_tokens``), unless they were code.
Tokens are estimated as four characters each, the same estimate curation uses.

- Markdown: ATX (``## Title``) and setext (underlined) headings, fenced code blocks kept whole (a ``#``
  inside a fence is code, not a heading), YAML front matter dropped.
- HTML: ``h1``-``h6`` start sections; ``script``, ``style``, ``noscript``, ``template``, ``svg``,
  ``nav`` and ``iframe`` are dropped with their contents; ``pre`` becomes a fenced code block, inline
  ``code`` gets backticks, list items dashes; the ``title`` names text that comes before any heading.
- Text: paragraphs split on blank lines; a line underlined with ``===``/``---`` (reStructuredText
  style) is a heading, and so is a short single-line paragraph without closing punctuation that is
  followed by more text ("Creating a queue").

A chunk's id is ``<12 hex of the source path's sha256>-<16 hex of its content's sha256>``: stable, so
re-indexing an unchanged file finds the same ids, and a changed paragraph changes only its own chunk.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, model_validator

if TYPE_CHECKING:
    from genesys.runtime.settings import Settings

DocFormat = Literal["markdown", "text", "html"]
FORMATS: dict[str, DocFormat] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdown": "markdown",
    ".mkd": "markdown",
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
}
CHUNKER_VERSION = "chunker-1"
CHARS_PER_TOKEN = 4
HEADING_SEPARATOR = " > "
# A chunk with less prose than this outside its code blocks is embedded with its code.
MIN_PROSE_CHARS = 40
_FENCED_BLOCK = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[ \t]*$", re.DOTALL | re.MULTILINE)


def estimate_tokens(text: str) -> int:
    """About four characters a token (English and code), rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


class ChunkingParams(BaseModel):
    """How documents are cut; recorded on every chunk (``signature``), so changing them re-chunks."""

    chunk_tokens: int = Field(300, ge=50, le=2000, description="Largest chunk, in estimated tokens.")
    overlap_tokens: int = Field(40, ge=0, description="Sentences repeated from the previous piece.")

    @model_validator(mode="after")
    def _overlap_below_chunk(self) -> ChunkingParams:
        if self.overlap_tokens * 2 > self.chunk_tokens:
            raise ValueError("overlap_tokens must be at most half of chunk_tokens")
        return self

    @classmethod
    def from_settings(cls, settings: Settings) -> ChunkingParams:
        return cls(chunk_tokens=settings.docs.chunk_tokens, overlap_tokens=settings.docs.chunk_overlap_tokens)

    def signature(self) -> str:
        return f"{CHUNKER_VERSION}:{self.chunk_tokens}:{self.overlap_tokens}"


class DocChunk(BaseModel):
    """One piece of a document, under one heading path."""

    id: str = Field(description="<source hash>-<content hash>: stable across re-indexing.")
    source: str = Field(description="Absolute path of the document.")
    format: DocFormat
    index: int = Field(description="Position in the document, from 0.")
    part: int = Field(0, description="Position within its section: 0 for a section's first chunk.")
    headings: list[str] = Field(description="The heading path, outermost first; empty before any heading.")
    text: str
    content_sha256: str = Field(description="sha256 of the heading path and the text.")

    @property
    def heading_path(self) -> str:
        return HEADING_SEPARATOR.join(self.headings)

    @property
    def title(self) -> str:
        """The innermost heading, else the document's file name without its extension."""
        return self.headings[-1] if self.headings else Path(self.source).stem

    def embedding_text(self) -> str:
        """What MiniLM embeds: the heading path, then the text without its code blocks (unless it is
        all code). MiniLM reads the first 256 word pieces; code there matched questions worse (on the
        Fernwick docs: 10 of 12 paraphrased questions found their section first, against 9 with code)."""
        prose = _FENCED_BLOCK.sub(" ", self.text).strip()
        body = prose if len(prose) >= MIN_PROSE_CHARS else self.text
        return f"{self.heading_path}\n\n{body}" if self.headings else body


@dataclass
class Section:
    headings: tuple[str, ...]
    blocks: list[str] = field(default_factory=list)


def doc_format(path: Path) -> DocFormat | None:
    """The format of a file by its extension, or None when Genesys does not index that type."""
    return FORMATS.get(path.suffix.lower())


def source_key(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:12]


def chunk_document(source: str, text: str, fmt: DocFormat, params: ChunkingParams) -> list[DocChunk]:
    """The chunks of one document (``source``: its absolute path, which goes into the chunk ids)."""
    sections = parse_sections(text, fmt)
    max_chars = params.chunk_tokens * CHARS_PER_TOKEN
    overlap_chars = params.overlap_tokens * CHARS_PER_TOKEN
    key = source_key(source)
    chunks: list[DocChunk] = []
    seen: dict[str, int] = {}
    for section in sections:
        for part, body in enumerate(pack_section(section.blocks, max_chars, overlap_chars)):
            headings = list(section.headings)
            digest = hashlib.sha256(
                f"{HEADING_SEPARATOR.join(headings)}\n\n{body}".encode("utf-8", "surrogatepass")
            ).hexdigest()
            chunk_id = f"{key}-{digest[:16]}"
            seen[chunk_id] = seen.get(chunk_id, 0) + 1
            if seen[chunk_id] > 1:  # the same text twice under the same headings
                chunk_id = f"{chunk_id}-{seen[chunk_id]}"
            chunks.append(
                DocChunk(
                    id=chunk_id,
                    source=source,
                    format=fmt,
                    index=len(chunks),
                    part=part,
                    headings=headings,
                    text=body,
                    content_sha256=digest,
                )
            )
    return chunks


def parse_sections(text: str, fmt: DocFormat) -> list[Section]:
    """A document's sections (heading path and blocks), in order; sections without text are left out."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    if fmt == "markdown":
        return _markdown_sections(text)
    if fmt == "html":
        return _html_sections(text)
    return _text_sections(text)


class _SectionBuilder:
    def __init__(self) -> None:
        self._stack: list[str] = []
        self._blocks: list[str] = []
        self.sections: list[Section] = []

    def heading(self, level: int, text: str) -> None:
        self._close()
        del self._stack[level - 1 :]
        self._stack.extend([""] * (level - 1 - len(self._stack)))  # a skipped level stays empty
        self._stack.append(text)

    def block(self, text: str) -> None:
        text = text.strip("\n")
        if text.strip():
            self._blocks.append(text.rstrip())

    @property
    def has_heading(self) -> bool:
        return any(self._stack)

    def _close(self) -> None:
        if self._blocks:
            self.sections.append(Section(tuple(h for h in self._stack if h), self._blocks))
            self._blocks = []

    def finish(self) -> list[Section]:
        self._close()
        return self.sections


# A line that starts something of its own: a list item, a table row, a quote, indented code.
_OWN_LINE = re.compile(r"^[ \t]*(?:[-*+•][ \t]|\d+[.)][ \t]|\||>)|^(?: {4}|\t)")


def unwrap(paragraph: str) -> str:
    """A paragraph's soft line wraps joined with spaces; list items, table rows, quotes, indented
    code and hard breaks (two trailing spaces or a backslash) keep their lines."""
    lines = paragraph.split("\n")
    out = [lines[0]]
    for line in lines[1:]:
        previous = out[-1]
        if (
            not line.strip()
            or _OWN_LINE.match(line)
            or previous.endswith(("  ", "\\"))
            or previous.lstrip().startswith("|")
            or previous.startswith(("    ", "\t"))
        ):
            out.append(line)
        else:
            out[-1] = f"{previous.rstrip()} {line.strip()}"
    return "\n".join(out)


# --- Markdown -------------------------------------------------------------------------------------

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_THEMATIC_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__)(.+?)\1")
_ANCHOR = re.compile(r"\s*\{#[^}]*\}\s*$")


def clean_heading(text: str) -> str:
    """A heading without Markdown links, bold markers and ``{#anchor}`` attributes; code spans stay."""
    text = _ANCHOR.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\2", text)
    return " ".join(text.split())


def _front_matter_end(lines: list[str]) -> int:
    if not lines or lines[0].strip() != "---":
        return 0
    for number, line in enumerate(lines[1:200], start=1):
        if line.strip() in ("---", "..."):
            return number + 1
    return 0


def _markdown_sections(text: str) -> list[Section]:
    lines = text.split("\n")
    builder = _SectionBuilder()
    paragraph: list[str] = []
    fence: str | None = None
    code: list[str] = []

    def flush() -> None:
        builder.block(unwrap("\n".join(paragraph)))
        paragraph.clear()

    for line in lines[_front_matter_end(lines) :]:
        if fence is not None:
            code.append(line)
            closing = line.strip()
            if closing.startswith(fence) and set(closing) == {fence[0]}:
                builder.block("\n".join(code))
                code, fence = [], None
            continue
        opening = _FENCE.match(line)
        if opening:
            flush()
            fence, code = opening.group(1), [line.rstrip()]
            continue
        heading = _ATX.match(line)
        if heading:
            flush()
            builder.heading(len(heading.group(1)), clean_heading(heading.group(2) or ""))
            continue
        if len(paragraph) == 1 and _SETEXT.match(line):
            level = 1 if line.strip()[0] == "=" else 2
            title = clean_heading(paragraph[0])
            paragraph.clear()
            builder.heading(level, title)
            continue
        if not line.strip() or _THEMATIC_BREAK.match(line):
            flush()
            continue
        paragraph.append(line.rstrip())
    if fence is not None:  # an unclosed fence runs to the end of the document
        builder.block("\n".join(code))
    flush()
    return builder.finish()


# --- plain text -----------------------------------------------------------------------------------

_UNDERLINE = re.compile(r"^[ \t]*([=\-~^*#])\1{2,}[ \t]*$")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_TITLE_FORBIDDEN = re.compile(r"[=;{}<>`$|\\]")


def _underline_level(line: str) -> int:
    return {"=": 1, "-": 2}.get(line.strip()[0], 3)


def looks_like_title(line: str) -> bool:
    """A short line that reads like a heading: no closing punctuation, no code characters."""
    stripped = line.strip()
    return (
        0 < len(stripped) <= 60
        and stripped[0].isalnum()
        and stripped[-1] not in ".,;:!?"
        and len(stripped.split()) <= 8
        and not _TITLE_FORBIDDEN.search(stripped)
        and any(c.isalpha() for c in stripped)
    )


def _text_sections(text: str) -> list[Section]:
    builder = _SectionBuilder()
    paragraphs = [p.strip("\n") for p in _PARAGRAPH_BREAK.split(text) if p.strip()]
    for number, paragraph in enumerate(paragraphs):
        lines = paragraph.split("\n")
        if len(lines) >= 3 and _UNDERLINE.match(lines[0]) and _UNDERLINE.match(lines[2]):
            builder.heading(_underline_level(lines[2]), lines[1].strip())  # over- and underlined
            builder.block(unwrap("\n".join(lines[3:])))
        elif len(lines) >= 2 and _UNDERLINE.match(lines[1]) and lines[0].strip():
            builder.heading(_underline_level(lines[1]), lines[0].strip())
            builder.block(unwrap("\n".join(lines[2:])))
        elif len(lines) == 1 and number + 1 < len(paragraphs) and looks_like_title(lines[0]):
            builder.heading(2, lines[0].strip())
        else:
            builder.block(unwrap(paragraph))
    return builder.finish()


# --- HTML -----------------------------------------------------------------------------------------

_HTML_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_HTML_SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "nav", "iframe", "object"})
_HTML_BLOCKS = frozenset(
    {
        "p", "div", "section", "article", "main", "header", "footer", "aside", "blockquote", "ul", "ol",
        "dl", "dt", "dd", "table", "thead", "tbody", "tfoot", "tr", "figure", "figcaption", "details",
        "summary", "hr", "address", "body", "form", "fieldset",
    }
)  # fmt: skip
_LINE_BREAK = "\x00"  # stands for <br> until the block's whitespace is collapsed


class _HtmlReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.builder = _SectionBuilder()
        self.title = ""
        self._skipping: list[str] = []
        self._in_head = False
        self._in_title = False
        self._heading: tuple[int, list[str]] | None = None
        self._code: list[str] | None = None
        self._code_language = ""
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skipping:
            if tag == self._skipping[-1]:
                self._skipping.append(tag)
            return
        if tag in _HTML_SKIPPED:
            self._skipping.append(tag)
        elif tag == "head":
            self._in_head = True
        elif tag == "title":
            self._in_title = True
        elif tag in _HTML_HEADINGS:
            self._flush()
            self._heading = (_HTML_HEADINGS[tag], [])
        elif tag == "pre":
            self._flush()
            self._code, self._code_language = [], ""
        elif tag == "code":
            if self._code is not None:
                classes = (dict(attrs).get("class") or "").split()
                language = next((c.split("-", 1)[1] for c in classes if c.startswith("language-")), "")
                self._code_language = self._code_language or language
            elif self._heading is not None:
                self._heading[1].append("`")
            else:
                self._text.append("`")
        elif tag == "br":
            self._text.append(_LINE_BREAK)
        elif tag == "li":
            self._flush()
            self._text.append("- ")
        elif tag in _HTML_BLOCKS:
            self._flush()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HTML_SKIPPED:  # <svg/> has no contents to skip
            return
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if self._skipping:
            if tag == self._skipping[-1]:
                self._skipping.pop()
            return
        if tag == "head":
            self._in_head = False
        elif tag == "title":
            self._in_title = False
        elif tag in _HTML_HEADINGS and self._heading is not None:
            level, parts = self._heading
            self._heading = None
            text = " ".join("".join(parts).split())
            if text:
                self.builder.heading(level, text)
        elif tag == "pre" and self._code is not None:
            body = "".join(self._code).strip("\n")
            self._code = None
            if body.strip():
                self.builder.block(f"```{self._code_language}\n{body}\n```")
        elif tag == "code" and self._code is None:
            target = self._heading[1] if self._heading is not None else self._text
            target.append("`")
        elif tag in _HTML_BLOCKS or tag == "li":
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        if self._in_title:
            self.title += data
        elif self._in_head:
            return
        elif self._code is not None:
            self._code.append(data)
        elif self._heading is not None:
            self._heading[1].append(data)
        else:
            self._text.append(data)

    def _flush(self) -> None:
        text = "".join(self._text)
        self._text = []
        lines = (" ".join(line.split()) for line in text.split(_LINE_BREAK))
        block = "\n".join(line for line in lines if line)
        if block and not self.builder.has_heading and not self.builder.sections and self.title.strip():
            self.builder.heading(1, " ".join(self.title.split()))
        self.builder.block(block)

    def finish(self) -> list[Section]:
        self.close()
        self._flush()
        return self.builder.finish()


def _html_sections(text: str) -> list[Section]:
    reader = _HtmlReader()
    reader.feed(text)
    return reader.finish()


# --- packing sections into chunks -----------------------------------------------------------------

# What ends a sentence (whitespace after . ! ?) or starts a list item; kept with the split so pieces join
# back as they were. Other newlines are soft wraps inside a sentence.
_SENTENCE_BREAK = re.compile(r"((?<=[.!?])\s+|\n(?=[ \t]*(?:[-*+]|\d+[.)])[ \t]))")
_FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def _is_code(block: str) -> bool:
    return bool(_FENCE_LINE.match(block))


def _units(text: str) -> list[str]:
    """Sentences and list items, each with the separator that followed it."""
    parts = _SENTENCE_BREAK.split(text)
    units = [parts[i] + (parts[i + 1] if i + 1 < len(parts) else "") for i in range(0, len(parts), 2)]
    return [u for u in units if u.strip()]


def _hard_wrap(text: str, max_chars: int) -> list[str]:
    pieces: list[str] = []
    current = ""
    for word in text.split(" "):
        while len(word) > max_chars:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:max_chars])
            word = word[max_chars:]
        candidate = f"{current} {word}" if current else word
        if len(candidate) > max_chars:
            pieces.append(current)
            current = word
        else:
            current = candidate
    if current:
        pieces.append(current)
    return [p for p in pieces if p.strip()]


def _split_code(block: str, max_chars: int) -> list[str]:
    lines = block.split("\n")
    opening = lines[0]
    closing = lines[-1] if len(lines) > 1 and _FENCE_LINE.match(lines[-1]) else opening.strip()[:3]
    body = lines[1:-1] if len(lines) > 1 and _FENCE_LINE.match(lines[-1]) else lines[1:]
    room = max(1, max_chars - len(opening) - len(closing) - 2)
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for line in (piece for raw in body for piece in (_hard_wrap(raw, room) if len(raw) > room else [raw])):
        if current and size + len(line) + 1 > room:
            pieces.append("\n".join([opening, *current, closing]))
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        pieces.append("\n".join([opening, *current, closing]))
    return pieces


def _split_block(block: str, max_chars: int) -> list[str]:
    """A block cut into pieces of at most ``max_chars``: code between lines, prose between sentences
    (or lines), a sentence longer than that between words."""
    if len(block) <= max_chars:
        return [block]
    if _is_code(block):
        return _split_code(block, max_chars)
    units: list[str] = []
    for unit in _units(block):
        if len(unit) > max_chars:
            units.extend(f"{word} " for word in _hard_wrap(unit.strip(), max_chars))
        else:
            units.append(unit)
    pieces: list[str] = []
    current = ""
    for unit in units:
        if current and len(current) + len(unit.rstrip()) > max_chars:
            pieces.append(current.strip())
            current = ""
        current += unit
    if current.strip():
        pieces.append(current.strip())
    return pieces


def _overlap(block: str, overlap_chars: int) -> str:
    """The last whole sentences of ``block`` within ``overlap_chars`` ("" for code)."""
    if overlap_chars <= 0 or _is_code(block):
        return ""
    kept: list[str] = []
    size = 0
    for unit in reversed(_units(block)):
        if size + len(unit) > overlap_chars:
            break
        kept.insert(0, unit)
        size += len(unit)
    return "".join(kept).strip()


def pack_section(blocks: list[str], max_chars: int, overlap_chars: int) -> list[str]:
    """A section's blocks joined into chunks of at most ``max_chars`` characters, blank lines between
    blocks; a chunk after the first opens with the previous chunk's last sentences."""
    pieces = [piece for block in blocks for piece in _split_block(block, max_chars)]
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for piece in pieces:
        if current and size + 2 + len(piece) > max_chars:
            chunks.append("\n\n".join(current))
            tail = _overlap(current[-1], overlap_chars)
            current = [tail] if tail and len(tail) + 2 + len(piece) <= max_chars else []
            size = len(current[0]) if current else 0
        size += len(piece) + (2 if current else 0)
        current.append(piece)
    if current:
        chunks.append("\n\n".join(current))
    return chunks


# --- trimming -------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?](?=[\s)\]\"']|$)|\n\n")


def trim_to_sentences(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` at the end of a sentence (or of a paragraph); a code block
    cut in the middle is closed. Falls back to the last word boundary when no sentence ends in the
    first third."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    cut = ends[-1] if ends and ends[-1] >= max_chars // 3 else (head.rfind(" ") if " " in head else max_chars)
    out = text[: max(cut, 1)].rstrip()
    if out.count("```") % 2 == 1:
        opening = out.rfind("```")
        out = out[:opening].rstrip() if opening >= max_chars // 3 else f"{out}\n```"
    return out
