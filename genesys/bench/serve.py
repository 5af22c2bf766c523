"""``genesys bench serve``: the API's streaming overhead, measured against raw llama-cpp-python.

One run measures both sides on the same GGUF, the same prompts (with the assistant's system prompt
from ``prompts/genesys.md`` in front, as the server puts it), greedy decoding and the same
``max_tokens``:

- **raw**: ``Llama(...).create_chat_completion(stream=True)`` in this process, with the server's
  ``n_ctx``, ``n_batch`` and ``n_threads``;
- **api**: the real ``genesys serve`` in a subprocess on a free loopback port with a temporary data
  dir, streamed over SSE with ``stream_options.include_usage``.

The two sides never run at once (they would compete for the same cores): the server is started
first and idles while the raw side runs. Each side gets one warm-up request, then the requests
alternate in ABBA order (raw/api, api/raw, ...) so that drift in machine load hits both sides
alike. Medians are reported, with the targets: api tokens/s >= 0.9 x raw, and api time to first
token <= 1.2 x raw + 20 ms.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
import structlog
from pydantic import BaseModel, Field

from genesys.errors import EngineError, EngineUnavailable, InvalidRequest

if TYPE_CHECKING:
    from llama_cpp import Llama

log = structlog.get_logger(__name__)

# Prompts that make a small model write until max_tokens (llama.cpp offers no ignore-EOS here).
BENCH_PROMPTS: tuple[str, ...] = (
    "Write a long Python module that implements a linked list with many methods and docstrings.",
    "Write a long Python module that implements a binary search tree with insert, delete, search, "
    "traversals and docstrings for every method.",
    "Write a complete Python command-line todo application with classes, argument parsing, "
    "persistence to JSON and docstrings.",
    "Write a long Python module with a Matrix class supporting addition, multiplication, transpose, "
    "determinant and inverse, with docstrings and examples.",
    "Write a long Python module that implements a priority queue, a stack and a queue, each with many "
    "methods and docstrings.",
)
# Distinct from every measured prompt, so that no measured prompt finds itself in the prompt cache.
WARMUP_PROMPT = "Write a Python function that reverses a string."
TOKENS_PER_S_TARGET = 0.9  # api tokens/s must be at least this fraction of raw
TTFT_FACTOR = 1.2  # api time to first token must be at most raw * factor + slack
TTFT_SLACK_MS = 20.0
NOISY_OTHER_CPU_PCT = 5.0  # above this share of the machine taken by others, a run is not trustworthy

Side = Literal["raw", "api"]


class RunTiming(BaseModel):
    """One streamed request on one side."""

    side: Side
    prompt_index: int = Field(description="Index into the prompt list; -1 for the warm-up.")
    ttft_ms: float = Field(description="Request start to the first non-empty content delta.")
    completion_tokens: int = Field(description="raw: counted; api: usage.completion_tokens.")
    tokens_per_s: float = Field(description="Decode rate: tokens after the first / time after it.")
    overall_tokens_per_s: float = Field(description="All tokens / request start to the last token.")
    total_ms: float = Field(description="Request start to the end of the stream.")
    finish_reason: str | None
    output_sha: str = Field(description="Short hash of the answer text, to compare the two sides.")
    other_cpu_pct: float | None = Field(
        description="Share of all cores' time that other processes used during the request (Linux only)."
    )


class SideSummary(BaseModel):
    """Medians over the measured (not warm-up) requests of one side."""

    ttft_ms: float
    tokens_per_s: float
    overall_tokens_per_s: float
    completion_tokens: float
    total_ms: float


class ServeBenchResult(BaseModel):
    """Raw llama-cpp-python against the API, with the ratios and the pass/fail of each target."""

    model_path: str
    n_threads: int
    n_ctx: int
    n_batch: int
    requests: int
    max_tokens: int
    raw: SideSummary
    api: SideSummary
    tokens_per_s_ratio: float = Field(description="api / raw decode tokens/s (median).")
    overall_tokens_per_s_ratio: float = Field(description="api / raw overall tokens/s (median).")
    ttft_ratio: float = Field(description="api / raw time to first token (median).")
    paired_tokens_per_s_ratio: float = Field(
        description="Median over prompts of api / raw decode tokens/s: robust to load that drifts."
    )
    paired_ttft_ratio: float = Field(description="Median over prompts of api / raw time to first token.")
    ttft_budget_ms: float = Field(description="1.2 x raw ttft + 20 ms: the api's allowance.")
    pass_tokens_per_s: bool
    pass_ttft: bool
    passed: bool
    same_output: bool = Field(description="Both sides wrote the same text for every prompt (greedy).")
    load_average: tuple[float, float] = Field(description="1-minute load average at start and end.")
    other_cpu_pct_max: float | None = Field(
        description="The most CPU other processes took during one measured request: above a few per "
        "cent, the figures measure the neighbours as much as Genesys."
    )
    runs: list[RunTiming]


@dataclass
class _Clock:
    """Timestamps of one streamed request."""

    started: float
    first: float | None = None
    last: float | None = None

    def token(self) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now

    def timing(
        self, side: Side, index: int, tokens: int, finish: str | None, text: str, ended: float
    ) -> RunTiming:
        """The request's figures; raises ``EngineError`` if it produced no tokens."""
        if self.first is None or self.last is None or tokens <= 0:
            raise EngineError(f"the {side} side produced no tokens for prompt {index}")
        decode_s = self.last - self.first
        return RunTiming(
            side=side,
            prompt_index=index,
            ttft_ms=(self.first - self.started) * 1000,
            completion_tokens=tokens,
            tokens_per_s=(tokens - 1) / decode_s if tokens > 1 and decode_s > 0 else 0.0,
            overall_tokens_per_s=tokens / (self.last - self.started),
            total_ms=(ended - self.started) * 1000,
            finish_reason=finish,
            output_sha=hashlib.sha256(text.encode()).hexdigest()[:12],
            other_cpu_pct=None,
        )


class _CpuMeter:
    """How much CPU processes other than ``pids`` take meanwhile, from ``/proc`` (``None`` elsewhere)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self._start: tuple[int, int, int] | None = None

    def _sample(self) -> tuple[int, int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(v) for v in f.readline().split()[1:9]]  # user .. steal, in jiffies
            ours = 0
            for pid in self.pids:
                with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
                    after_name = f.read().rsplit(")", 1)[1].split()
                ours += int(after_name[11]) + int(after_name[12])  # utime + stime
        except (OSError, ValueError, IndexError):
            return None
        total = sum(fields)
        return total, total - fields[3] - fields[4], ours  # all, busy (not idle or iowait), ours

    def start(self) -> None:
        self._start = self._sample()

    def other_pct(self) -> float | None:
        """Per cent of all cores' time used by other processes since ``start``."""
        end = self._sample()
        if self._start is None or end is None or end[0] <= self._start[0]:
            return None
        total, busy, ours = (b - a for a, b in zip(self._start, end, strict=True))
        return round(100 * max(0, busy - ours) / total, 1)


def _raw_run(llama: Llama, system_prompt: str, user: str, max_tokens: int, index: int) -> RunTiming:
    """Stream one chat completion straight from llama-cpp-python, system prompt first as the server does."""
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]
    clock = _Clock(time.perf_counter())
    pieces: list[str] = []
    finish: str | None = None
    # Untyped: llama-cpp-python's stubs do not narrow the streamed union.
    stream: Iterator[Any] = llama.create_chat_completion(  # type: ignore[assignment]
        messages,  # type: ignore[arg-type]
        stream=True,
        max_tokens=max_tokens,
        temperature=0.0,
        top_p=1.0,
    )
    for chunk in stream:
        choice = chunk["choices"][0]
        content = choice["delta"].get("content")
        if content:
            clock.token()
            pieces.append(content)
        if choice.get("finish_reason"):
            finish = choice["finish_reason"]
    ended = time.perf_counter()
    # Each streamed delta is one token, except where llama.cpp joins the bytes of one character.
    tokens = max_tokens if finish == "length" else len(pieces)
    return clock.timing("raw", index, tokens, finish, "".join(pieces), ended)


def _api_run(client: httpx.Client, model: str, user: str, max_tokens: int, index: int) -> RunTiming:
    """Stream one chat completion through ``/v1/chat/completions`` (which adds the system prompt)."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": user}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    clock = _Clock(time.perf_counter())
    pieces: list[str] = []
    finish: str | None = None
    usage: dict[str, Any] | None = None
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            response.read()
            raise EngineError(f"the server answered {response.status_code}: {response.text[:500]}")
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: ") :]
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                raise EngineError(f"the server failed mid-stream: {chunk['error']}")
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    clock.token()
                    pieces.append(content)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
    ended = time.perf_counter()
    if usage is None:
        raise EngineError("the server sent no usage chunk although stream_options.include_usage was set")
    return clock.timing("api", index, int(usage["completion_tokens"]), finish, "".join(pieces), ended)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def _server(
    *, port: int, data_dir: Path, n_threads: int, ready_timeout_s: float
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``genesys serve`` on ``port`` until the block ends; raises ``EngineUnavailable`` if never ready."""
    env = {
        **os.environ,
        "GENESYS_DATA_DIR": str(data_dir),
        "GENESYS_MODEL__ENGINE": "llamacpp",
        "GENESYS_MODEL__LLAMACPP__N_THREADS": str(n_threads),
    }
    log_path = data_dir / "bench-server.log"
    command = [sys.executable, "-m", "genesys.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + ready_timeout_s
            url = f"http://127.0.0.1:{port}/readyz"
            while True:
                if process.poll() is not None:
                    raise EngineUnavailable(
                        f"genesys serve exited with {process.returncode}:\n{_log_tail(log_path)}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url, timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise EngineUnavailable(
                        f"genesys serve was not ready after {ready_timeout_s:.0f} s:\n{_log_tail(log_path)}"
                    )
                time.sleep(0.25)
            log.info("bench.server_ready", port=port, pid=process.pid)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _summary(runs: list[RunTiming]) -> SideSummary:
    return SideSummary(
        ttft_ms=statistics.median(r.ttft_ms for r in runs),
        tokens_per_s=statistics.median(r.tokens_per_s for r in runs),
        overall_tokens_per_s=statistics.median(r.overall_tokens_per_s for r in runs),
        completion_tokens=statistics.median(r.completion_tokens for r in runs),
        total_ms=statistics.median(r.total_ms for r in runs),
    )


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def run_serve_bench(
    *,
    requests: int = 5,
    max_tokens: int = 128,
    port: int | None = None,
    data_dir: Path | None = None,
    n_threads: int | None = None,
    prompts: tuple[str, ...] = BENCH_PROMPTS,
    settle_s: float = 0.1,
    ready_timeout_s: float = 180.0,
) -> ServeBenchResult:
    """Measure raw llama-cpp-python and the API on the same prompts, alternately, and compare them.

    ``n_threads`` defaults to the configured ``model.llamacpp.n_threads`` (or all cores), for both
    sides. ``data_dir`` defaults to a temporary directory, removed afterwards. Raises
    ``InvalidRequest`` for sizes below 1, ``EngineUnavailable`` if the server does not come up and
    ``EngineError`` if either side fails or produces no tokens.
    """
    if requests < 1 or max_tokens < 1 or not prompts:
        raise InvalidRequest("requests and max_tokens must be at least 1, and prompts must not be empty")
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="genesys-bench-")))
        data_dir.mkdir(parents=True, exist_ok=True)
        return _run(
            requests=requests,
            max_tokens=max_tokens,
            port=port or _free_port(),
            data_dir=data_dir,
            n_threads=n_threads,
            prompts=prompts,
            settle_s=settle_s,
            ready_timeout_s=ready_timeout_s,
        )


def _run(
    *,
    requests: int,
    max_tokens: int,
    port: int,
    data_dir: Path,
    n_threads: int | None,
    prompts: tuple[str, ...],
    settle_s: float,
    ready_timeout_s: float,
) -> ServeBenchResult:
    from llama_cpp import Llama

    from genesys.agents.genesys import ASSISTANT_PROMPT
    from genesys.runtime.engines.llamacpp import embedded_model_path
    from genesys.runtime.prompts import PromptLibrary
    from genesys.runtime.settings import load_settings

    # The settings the server will read (same environment and config file), for the raw side's twins.
    settings = load_settings(data_dir=data_dir)
    threads = n_threads or settings.model.llamacpp.n_threads or os.cpu_count() or 1
    n_ctx = settings.data_collection.context_window + settings.model.max_tokens  # as make_engine does
    n_batch = settings.model.llamacpp.n_batch
    model_path = Path(settings.model.path) if settings.model.path else embedded_model_path()
    system_prompt = PromptLibrary().get(ASSISTANT_PROMPT).text
    headers = {}
    if settings.auth_enabled:
        headers["Authorization"] = f"Bearer {settings.auth.keys[0].key.get_secret_value()}"
    load_start = os.getloadavg()[0]
    runs: list[RunTiming] = []

    with (
        _server(port=port, data_dir=data_dir, n_threads=threads, ready_timeout_s=ready_timeout_s) as server,
        httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=httpx.Timeout(600, connect=10)
        ) as client,
    ):
        # Loaded only now, while the server idles with its model loaded: the two never load at once.
        try:
            llama = Llama(
                model_path=str(model_path), n_ctx=n_ctx, n_threads=threads, n_batch=n_batch, verbose=False
            )
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"llama.cpp could not load {model_path}: {exc}") from exc

        meter = _CpuMeter([os.getpid(), server.pid])

        def measure(side: Side, index: int, user: str, tokens: int) -> RunTiming:
            meter.start()
            if side == "raw":
                run = _raw_run(llama, system_prompt, user, tokens, index)
            else:
                run = _api_run(client, settings.model.name, user, tokens, index)
            run.other_cpu_pct = meter.other_pct()
            if side == "api":
                time.sleep(settle_s)  # let the server finish the request's bookkeeping before going on
            log.info("bench.run", **run.model_dump(exclude={"output_sha"}))
            return run

        warmup_tokens = min(max_tokens, 16)
        measure("raw", -1, WARMUP_PROMPT, warmup_tokens)
        measure("api", -1, WARMUP_PROMPT, warmup_tokens)
        for i in range(requests):
            order: tuple[Side, Side] = ("raw", "api") if i % 2 == 0 else ("api", "raw")
            for side in order:
                runs.append(measure(side, i, prompts[i % len(prompts)], max_tokens))
        llama.close()

    raw_runs = [r for r in runs if r.side == "raw"]
    api_runs = [r for r in runs if r.side == "api"]
    raw, api = _summary(raw_runs), _summary(api_runs)
    budget = TTFT_FACTOR * raw.ttft_ms + TTFT_SLACK_MS
    pass_rate = api.tokens_per_s >= TOKENS_PER_S_TARGET * raw.tokens_per_s
    pass_ttft = api.ttft_ms <= budget
    raw_by_prompt = {r.prompt_index: r for r in raw_runs}
    return ServeBenchResult(
        model_path=str(model_path),
        n_threads=threads,
        n_ctx=n_ctx,
        n_batch=n_batch,
        requests=requests,
        max_tokens=max_tokens,
        raw=raw,
        api=api,
        tokens_per_s_ratio=_ratio(api.tokens_per_s, raw.tokens_per_s),
        overall_tokens_per_s_ratio=_ratio(api.overall_tokens_per_s, raw.overall_tokens_per_s),
        ttft_ratio=_ratio(api.ttft_ms, raw.ttft_ms),
        ttft_budget_ms=budget,
        pass_tokens_per_s=pass_rate,
        pass_ttft=pass_ttft,
        passed=pass_rate and pass_ttft,
        paired_tokens_per_s_ratio=statistics.median(
            _ratio(r.tokens_per_s, raw_by_prompt[r.prompt_index].tokens_per_s) for r in api_runs
        ),
        paired_ttft_ratio=statistics.median(
            _ratio(r.ttft_ms, raw_by_prompt[r.prompt_index].ttft_ms) for r in api_runs
        ),
        same_output=all(raw_by_prompt[r.prompt_index].output_sha == r.output_sha for r in api_runs),
        load_average=(load_start, os.getloadavg()[0]),
        other_cpu_pct_max=max((r.other_cpu_pct for r in runs if r.other_cpu_pct is not None), default=None),
        runs=runs,
    )


def format_table(result: ServeBenchResult) -> str:
    """A small human-readable table of the medians, the ratios and the targets."""
    raw, api = result.raw, result.api

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    rows = [
        ("median", "raw", "api", "api/raw", "paired", "target"),
        (
            "ttft ms",
            f"{raw.ttft_ms:.1f}",
            f"{api.ttft_ms:.1f}",
            f"{result.ttft_ratio:.2f}",
            f"{result.paired_ttft_ratio:.2f}",
            f"api <= {result.ttft_budget_ms:.1f} ms: {verdict(result.pass_ttft)}",
        ),
        (
            "tokens/s (decode)",
            f"{raw.tokens_per_s:.1f}",
            f"{api.tokens_per_s:.1f}",
            f"{result.tokens_per_s_ratio:.2f}",
            f"{result.paired_tokens_per_s_ratio:.2f}",
            f"api/raw >= {TOKENS_PER_S_TARGET:.2f}: {verdict(result.pass_tokens_per_s)}",
        ),
        (
            "tokens/s (overall)",
            f"{raw.overall_tokens_per_s:.1f}",
            f"{api.overall_tokens_per_s:.1f}",
            f"{result.overall_tokens_per_s_ratio:.2f}",
            "",
            "",
        ),
        ("total ms", f"{raw.total_ms:.0f}", f"{api.total_ms:.0f}", "", "", ""),
        ("completion tokens", f"{raw.completion_tokens:g}", f"{api.completion_tokens:g}", "", "", ""),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.append(
        f"{result.requests} requests x {result.max_tokens} tokens, n_threads={result.n_threads}, "
        f"same output: {result.same_output}, load average {result.load_average[0]:.2f} -> "
        f"{result.load_average[1]:.2f}: {verdict(result.passed)}"
    )
    if result.other_cpu_pct_max is not None and result.other_cpu_pct_max > NOISY_OTHER_CPU_PCT:
        lines.append(
            f"warning: other processes took up to {result.other_cpu_pct_max:.0f}% of the CPU during a "
            "request; the figures are unreliable, run again on a quiet machine"
        )
    return "\n".join(lines)
