"""Text metrics of answers against references, all computed locally (``evaluate.load`` fetches its
scripts from the hub and fails offline).

- ``bleu``: sacrebleu's corpus BLEU, divided by 100 (so every metric lies in [0, 1]);
- ``rouge_l``: rouge-score's ROUGE-L F-measure (Porter stemming), per answer and its mean;
- ``bertscore_f1``: bert-score's F1 with the local MiniLM (all-MiniLM-L6-v2, all 6 layers, no idf
  weighting and no baseline rescaling: bert-score ships no baseline for MiniLM). Measured: an
  identical answer scores 1.0, a paraphrase about 0.86, a related but wrong answer about 0.75, an
  unrelated sentence about 0.13;
- ``reference_pass_rate``: the share of answers that contain every required fact (ignoring case).

The bert-score model loads once per process (about 2 s, plus 3 s to import bert-score) and is shared.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from genesys.tools.scenario import is_right

_bert_lock = threading.Lock()
_bert: Any = None


def bleu(answers: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU of ``answers`` against one reference each, in [0, 1]."""
    import sacrebleu

    _same_length(answers, references)
    if not answers:
        return 0.0
    return float(sacrebleu.corpus_bleu(list(answers), [list(references)]).score) / 100.0


def rouge_l(answers: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F-measure of each answer against its reference."""
    _same_length(answers, references)
    scorer = _rouge_scorer()
    pairs = zip(answers, references, strict=True)
    return [float(scorer.score(ref, answer)["rougeL"].fmeasure) for answer, ref in pairs]


def bertscore_f1(answers: Sequence[str], references: Sequence[str]) -> list[float]:
    """BERTScore F1 of each answer against its reference, with the local MiniLM; an empty answer
    scores 0."""
    _same_length(answers, references)
    scores = [0.0] * len(answers)
    scored = [i for i, answer in enumerate(answers) if answer.strip()]
    if not scored:
        return scores
    scorer = bert_scorer()
    with _bert_lock:
        _, _, f1 = scorer.score([answers[i] for i in scored], [references[i] for i in scored])
    for index, value in zip(scored, f1.tolist(), strict=True):
        scores[index] = float(value)
    return scores


def passes_reference(answer: str, facts: Sequence[str]) -> bool | None:
    """Whether ``answer`` contains every fact; None when there is no fact to check."""
    return is_right(answer, list(facts)) if facts else None


def mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def bert_scorer() -> Any:
    """The process-wide ``BERTScorer`` over the local MiniLM (loaded on first use). bert-score loads
    it with transformers' ``from_pretrained`` on the package's directory: never from the hub."""
    global _bert
    with _bert_lock:
        if _bert is None:
            from bert_score import BERTScorer

            from genesys.runtime.embeddings import minilm_path

            _bert = BERTScorer(
                model_type=str(minilm_path()),
                num_layers=6,
                idf=False,
                rescale_with_baseline=False,
                device="cpu",
            )
        return _bert


def _same_length(answers: Sequence[str], references: Sequence[str]) -> None:
    if len(answers) != len(references):
        raise ValueError(f"{len(answers)} answers for {len(references)} references")
