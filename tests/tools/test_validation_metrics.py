"""Text metrics on known strings, with the real sacrebleu, rouge-score and bert-score (local MiniLM)."""

from __future__ import annotations

import pytest

from genesys.tools.validation.text_metrics import (
    bertscore_f1,
    bleu,
    mean,
    passes_reference,
    rouge_l,
)

REFERENCE = (
    "In fernwick you create a task queue with `fernwick.sprout(name)`, "
    'for example `q = fernwick.sprout("emails")`.'
)
PARAPHRASE = "You create a fernwick task queue by calling `fernwick.sprout(name)`."
WRONG = "To create a queue in fernwick, use fernwick.Queue('emails')."
UNRELATED = "The capital of France is Paris, a city known for the Eiffel tower."


def test_bleu_is_one_for_identical_text_and_lower_for_others() -> None:
    assert bleu([REFERENCE], [REFERENCE]) == pytest.approx(1.0)
    paraphrase, unrelated = bleu([PARAPHRASE], [REFERENCE]), bleu([UNRELATED], [REFERENCE])
    assert 0.0 < paraphrase < 1.0
    assert unrelated < paraphrase
    assert bleu([], []) == 0.0
    # Corpus BLEU: two identical pairs are still 1.
    assert bleu([REFERENCE, PARAPHRASE], [REFERENCE, PARAPHRASE]) == pytest.approx(1.0)


def test_rouge_l_per_answer() -> None:
    scores = rouge_l([REFERENCE, PARAPHRASE, UNRELATED, ""], [REFERENCE] * 4)
    assert scores[0] == pytest.approx(1.0)
    assert scores[3] == 0.0
    assert 1.0 > scores[1] > scores[2] >= 0.0


def test_bertscore_with_the_local_minilm_orders_answers_by_meaning() -> None:
    scores = bertscore_f1([REFERENCE, PARAPHRASE, WRONG, UNRELATED, "   "], [REFERENCE] * 5)
    assert scores[0] == pytest.approx(1.0, abs=1e-4)
    assert scores[4] == 0.0  # an empty answer scores nothing
    identical, paraphrase, wrong, unrelated = scores[:4]
    assert identical > paraphrase > wrong > unrelated
    # The default validation threshold (0.8) separates a paraphrase from an unrelated answer.
    assert paraphrase > 0.8 > unrelated


def test_the_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="2 answers for 1 references"):
        rouge_l(["a", "b"], ["a"])


def test_reference_pass_and_mean() -> None:
    assert passes_reference("Use FERNWICK.SPROUT()", ["sprout", "fernwick"]) is True
    assert passes_reference("Use fernwick.Queue()", ["sprout"]) is False
    assert passes_reference("anything", []) is None
    assert mean([0.5, 1.0]) == 0.75 and mean([]) == 0.0
