"""Validate a candidate adapter against the production one (or the base model) on the same data, and
record the verdict in the adapter registry.

Both sides answer every held-out prompt as served (the assistant's system prompt first, greedy), then
take the HumanEval regression guard and, when configured, the LLM judge; ``gates.decide_gates``
decides. A failure of the engine or the judge does not raise: the report fails and says why.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from genesys.errors import InvalidRequest
from genesys.runtime.engines.base import ChatMessage, GenerationParams, InferenceEngine
from genesys.runtime.settings import QualityGates, Settings
from genesys.runtime.store.adapters import AdapterRegistry, AdapterState, AdapterVersion, check_transition
from genesys.tools.validation.gates import GateResult, decide_gates
from genesys.tools.validation.held_out import HeldOutItem
from genesys.tools.validation.humaneval_guard import HumanEvalRun, load_problems, run_humaneval
from genesys.tools.validation.judge import JudgeRequest, judge_answers
from genesys.tools.validation.report import HumanEvalTaskResult, ItemResult, ValidationReport
from genesys.tools.validation.text_metrics import bertscore_f1, bleu, mean, passes_reference, rouge_l

log = structlog.get_logger(__name__)

Progress = Callable[[str, int, int], None]
SIDES = ("candidate", "baseline")
REPORT_JSON = "validation.json"
REPORT_MARKDOWN = "validation.md"


def validate_candidate(
    engine: InferenceEngine,
    settings: Settings,
    *,
    candidate: str,
    baseline: str | None,
    held_out: list[HeldOutItem],
    system_prompt: str | None = None,
    humaneval: bool = True,
    progress: Progress | None = None,
) -> ValidationReport:
    """Measure ``candidate`` and ``baseline`` (adapter names loaded in ``engine``; ``None`` is the
    base model) on ``held_out`` and decide the quality gates of ``settings.quality_gates``.

    ``system_prompt`` defaults to the served one (``prompts/genesys.md``). ``progress(stage, done,
    total)`` is called as the work advances (stages: ``answers:<side>``, ``humaneval:<side>``,
    ``judge:<side>``, ``metrics``). Raises ``InvalidRequest`` for an empty held-out set or an unknown
    HumanEval task; every other failure is in the report (``passed`` False, ``error`` set).
    """
    if not held_out:
        raise InvalidRequest(
            "no held-out items: validation needs at least one prompt with a reference answer",
            param="held_out",
        )
    gates = settings.quality_gates
    problems = load_problems(gates.humaneval_problems) if humaneval else []
    if system_prompt is None:
        from genesys.runtime.prompts import ASSISTANT_PROMPT, PromptLibrary

        system_prompt = PromptLibrary().get(ASSISTANT_PROMPT).text
    started = time.monotonic()
    names = {"candidate": candidate, "baseline": baseline}
    report = _empty_report(candidate, baseline, gates)
    answers: dict[str, list[str]] = {}
    runs: dict[str, HumanEvalRun] = {}
    judged: dict[str, list[float]] = {}
    stage = "answers"
    try:
        params = GenerationParams(max_tokens=gates.max_tokens, temperature=0.0, seed=0)
        for side in SIDES:
            answers[side] = _answer(engine, held_out, system_prompt, names[side], params, side, progress)
        if problems:
            stage = "humaneval"
            for side in SIDES:
                runs[side] = run_humaneval(
                    engine,
                    problems,
                    adapter=names[side],
                    max_tokens=gates.humaneval_max_tokens,
                    timeout_s=gates.humaneval_timeout_s,
                    memory_mb=gates.humaneval_memory_mb,
                    progress=_stage(progress, f"humaneval:{side}"),
                )
        if gates.judge is not None:
            stage = "judge"
            for side in SIDES:
                requests = [
                    JudgeRequest(item.prompt, item.reference, answer)
                    for item, answer in zip(held_out, answers[side], strict=True)
                ]
                judged[side] = judge_answers(
                    gates.judge, requests, progress=_stage(progress, f"judge:{side}")
                )
        stage = "metrics"
        if progress is not None:
            progress("metrics", 0, 1)
        metrics = {side: _text_metrics(held_out, answers[side]) for side in SIDES}
    except Exception as exc:  # any failure of a model or a metric fails the report, readably
        log.warning("validation.failed", candidate=candidate, stage=stage, error=str(exc), exc_info=True)
        reason = f"validation could not finish ({stage}): {type(exc).__name__}: {exc}"
        report.error = reason
        report.gates = [GateResult(name=stage, passed=False, value=None, threshold=None, reason=reason)]
        report.summary = f"{candidate} not validated against {report.baseline_name}: {reason}"
        report.items = _items(held_out, answers)
        report.duration_s = time.monotonic() - started
        return report
    for side in SIDES:
        if side in runs:
            metrics[side]["humaneval_pass_rate"] = runs[side].pass_rate
        if side in judged:
            metrics[side]["judge_score"] = mean(judged[side])
    report.metrics = metrics
    report.gates = decide_gates(
        metrics["candidate"], metrics["baseline"], gates, humaneval=bool(runs), judged=bool(judged)
    )
    report.passed = all(gate.passed for gate in report.gates)
    report.summary = _summary(report)
    report.items = _items(held_out, answers, judged)
    if runs:
        report.humaneval = [
            HumanEvalTaskResult(
                task_id=ours.task_id,
                candidate_passed=ours.passed,
                baseline_passed=theirs.passed,
                candidate_reason=ours.reason,
                baseline_reason=theirs.reason,
            )
            for ours, theirs in zip(runs["candidate"].tasks, runs["baseline"].tasks, strict=True)
        ]
    report.duration_s = time.monotonic() - started
    log.info(
        "validation.done",
        candidate=candidate,
        baseline=report.baseline_name,
        passed=report.passed,
        failed=[gate.name for gate in report.failed_gates],
        duration_s=round(report.duration_s, 1),
    )
    return report


def record_validation(
    registry: AdapterRegistry, version: str, report: ValidationReport, *, actor: str = "validator"
) -> AdapterVersion:
    """Store ``report`` on ``version`` and move it to validated (passed) or rejected (failed), with the
    report's summary as the reason; the report is also written beside the adapter's files as
    ``validation.json`` and ``validation.md``. A version already in the target state keeps it (the
    metrics are updated). A report that could not finish (``error`` set: the engine or the judge
    failed) is stored but moves nothing: a failure of the machinery is no verdict on the adapter, and
    rejected is final.

    Raises ``NotFound`` for an unknown version and ``InvalidRequest`` when its state cannot move to
    the verdict (a version in production cannot be rejected by a validation).
    """
    current = registry.get(version)
    target: AdapterState = "validated" if report.passed else "rejected"
    moves = report.error is None and current.state != target
    if moves:
        check_transition(version, current.state, target)
    directory = Path(current.path)
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomic(directory / REPORT_JSON, report.model_dump_json(indent=2) + "\n")
    _write_atomic(directory / REPORT_MARKDOWN, report.to_markdown())
    stored = report.model_dump(mode="json", exclude={"items", "humaneval"})
    stored["report_path"] = str(directory / REPORT_JSON)
    updated = registry.set_metrics(version, {"validation": stored})
    if not moves:
        return updated
    return registry.transition(version, target, actor=actor, reason=report.summary)


# -- helpers ----------------------------------------------------------------------------------------


def served_messages(system_prompt: str, messages: Sequence[dict[str, str]]) -> list[ChatMessage]:
    """The engine messages of a served request: the assistant's system prompt and the request's own
    system messages joined first, then the turns (as the Genesys assistant renders them)."""
    system = [system_prompt] if system_prompt else []
    system += [m["content"] for m in messages if m["role"] == "system"]
    head = [ChatMessage("system", "\n\n".join(system))] if system else []
    return head + [ChatMessage(m["role"], m["content"]) for m in messages if m["role"] != "system"]


def _answer(
    engine: InferenceEngine,
    items: Sequence[HeldOutItem],
    system_prompt: str,
    adapter: str | None,
    params: GenerationParams,
    side: str,
    progress: Progress | None,
) -> list[str]:
    answers = []
    for index, item in enumerate(items):
        chunks = engine.stream_chat(served_messages(system_prompt, item.messages), params, adapter=adapter)
        answers.append("".join(chunk.text for chunk in chunks).strip())
        if progress is not None:
            progress(f"answers:{side}", index + 1, len(items))
    return answers


def _text_metrics(items: Sequence[HeldOutItem], answers: Sequence[str]) -> dict[str, float]:
    references = [item.reference for item in items]
    metrics = {
        "bleu": bleu(answers, references),
        "rouge_l": mean(rouge_l(answers, references)),
        "bertscore_f1": mean(bertscore_f1(answers, references)),
    }
    verdicts = [passes_reference(answer, item.facts()) for item, answer in zip(items, answers, strict=True)]
    scored = [v for v in verdicts if v is not None]
    if scored:
        metrics["reference_pass_rate"] = sum(scored) / len(scored)
    return metrics


def _items(
    items: Sequence[HeldOutItem], answers: dict[str, list[str]], judged: dict[str, list[float]] | None = None
) -> list[ItemResult]:
    judged = judged or {}
    results = []
    for index, item in enumerate(items):
        facts = item.facts()
        mine = answers.get("candidate", [])
        theirs = answers.get("baseline", [])
        ours_answer = mine[index] if index < len(mine) else ""
        their_answer = theirs[index] if index < len(theirs) else ""
        results.append(
            ItemResult(
                id=item.id,
                prompt=item.prompt,
                reference=item.reference,
                facts=facts,
                candidate_answer=ours_answer,
                baseline_answer=their_answer,
                candidate_right=passes_reference(ours_answer, facts) if index < len(mine) else None,
                baseline_right=passes_reference(their_answer, facts) if index < len(theirs) else None,
                candidate_judge=_at(judged.get("candidate"), index),
                baseline_judge=_at(judged.get("baseline"), index),
            )
        )
    return results


def _at(values: list[float] | None, index: int) -> float | None:
    return values[index] if values is not None and index < len(values) else None


def _summary(report: ValidationReport) -> str:
    verdict = "validated" if report.passed else "rejected"
    head = f"{report.candidate} {verdict} against {report.baseline_name}"
    if report.passed:
        details = "; ".join(gate.reason.rstrip(".") for gate in report.gates)
        return f"{head}: all {len(report.gates)} gates passed ({details})."
    failed = report.failed_gates
    details = "; ".join(f"{gate.name}: {gate.reason.rstrip('.')}" for gate in failed)
    return f"{head}: {len(failed)} of {len(report.gates)} gates failed ({details})."


def _empty_report(candidate: str, baseline: str | None, gates: QualityGates) -> ValidationReport:
    return ValidationReport(
        candidate=candidate,
        baseline=baseline,
        metrics={"candidate": {}, "baseline": {}},
        gates=[],
        passed=False,
        summary="",
        quality_gates=gates.model_dump(mode="json"),
    )


def _stage(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None

    def report(done: int, total: int) -> None:
        progress(stage, done, total)

    return report


def _write_atomic(path: Path, text: str) -> None:
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)
