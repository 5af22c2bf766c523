"""Which examples a dataset keeps and where each goes: near-duplicate removal, category balance, and the
train / validation / test split. Pure and deterministic: the same examples, parameters and seed give
the same result, which is what lets a dataset be rebuilt byte for byte from its manifest.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from genesys.tools.curation_examples import Example

if TYPE_CHECKING:
    from genesys.runtime.embeddings import Embedder

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
# The text that stands for an example when comparing: the head of the question and of what the example
# teaches. MiniLM's cost grows with the tokens (up to 256) and the heads decide near-duplication.
DEDUPE_PART_CHARS = 200
_BLOCK = 512


def seeded_key(seed: int, key: str) -> str:
    """A stable pseudo-random order for ``key`` under ``seed`` (independent of Python's hash seed)."""
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def rank(example: Example) -> tuple[int, float, str]:
    """Sort key, best first: priority, then quality, then id (ties broken the same way every time)."""
    return (-example.priority, -example.quality_score, example.interaction_id)


def dedupe_text(example: Example) -> str:
    completion = example.target if example.target is not None else example.answer or ""
    return f"{example.prompt[-1]['content'][:DEDUPE_PART_CHARS]}\n{completion[:DEDUPE_PART_CHARS]}"


def remove_near_duplicates(
    examples: Sequence[Example], embedder: Embedder, *, threshold: float
) -> tuple[list[Example], dict[str, str]]:
    """Keep the best of each group of examples whose MiniLM cosine similarity is >= ``threshold``.

    Examples are visited best first (``rank``); one is dropped when it is that similar to one already
    kept. Returns the kept examples (in rank order) and ``{dropped id: id of the kept duplicate}``.
    Blocks of rows bound the memory: no n x n matrix.
    """
    ordered = sorted(examples, key=rank)
    if not ordered:
        return [], {}
    texts = [dedupe_text(e) for e in ordered]
    # Identical texts are embedded once (regenerates and repeated questions are common).
    unique = list(dict.fromkeys(texts))
    position = {text: n for n, text in enumerate(unique)}
    vectors = embedder.embed(unique)[[position[t] for t in texts]]
    kept_mask = [False] * len(ordered)
    kept_index: list[int] = []
    dropped: dict[str, str] = {}
    for start in range(0, len(ordered), _BLOCK):
        block = vectors[start : start + _BLOCK] @ vectors[: start + _BLOCK].T
        for offset in range(block.shape[0]):
            index = start + offset
            if kept_index:
                sims = block[offset, kept_index]
                best = int(sims.argmax())
                if float(sims[best]) >= threshold:
                    dropped[ordered[index].interaction_id] = ordered[kept_index[best]].interaction_id
                    continue
            kept_mask[index] = True
            kept_index.append(index)
    return [e for e, keep in zip(ordered, kept_mask, strict=True) if keep], dropped


def balance_categories(
    examples: Sequence[Example], *, factor: float | None, seed: int
) -> tuple[list[Example], dict[str, int]]:
    """Cap each category at ``ceil(factor x median category size)``; None: no cap.

    Within a capped category the best examples stay (corrections first), and among equals a seeded
    order decides. Corrections are never capped: each is a fact the model got wrong and a user took
    the trouble to give, the data the cycle exists for; the cap trims confirmed answers only.
    Returns the kept examples and how many each category lost.
    """
    by_category: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_category[example.category].append(example)
    if factor is None or not by_category:
        return list(examples), {}
    sizes = sorted(len(group) for group in by_category.values())
    cap = max(1, math.ceil(factor * _median(sizes)))
    kept: list[Example] = []
    removed: dict[str, int] = {}
    for category in sorted(by_category):
        group = sorted(
            by_category[category],
            key=lambda e: (-e.priority, seeded_key(seed, e.interaction_id)),
        )
        corrections = sum(1 for e in group if e.target_source == "correction")
        keep = max(cap, corrections)
        kept.extend(group[:keep])
        if len(group) > keep:
            removed[category] = len(group) - keep
    return kept, removed


def _median(values: Sequence[int]) -> float:
    middle = len(values) // 2
    return float(values[middle]) if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def split_by_conversation(
    examples: Sequence[Example], *, ratios: dict[Split, float], seed: int
) -> dict[str, Split]:
    """``{conversation_id: split}``: every conversation in exactly one split, stratified by category.

    A conversation's category is the most common one among its examples. Within each category the
    conversations are taken in a seeded order and each goes to the split furthest below its share of
    the examples assigned so far. When there are at least as many conversations as splits, a split
    left empty takes the last conversation given to the largest split, so validation and test are
    never empty by accident of small numbers.

    Every correction is taught: a correction whose conversations all landed in validation or test
    takes its first one (in that seeded order) into train — a fact no training row teaches can only
    be held out to be failed, and the user's correction would never be learned. The same correction
    asked in other conversations stays held out: a phrasing of a taught fact the model never saw, what
    a learning cycle is validated on. An empty split is filled only with a conversation whose
    corrections stay taught.
    """
    groups: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        groups[example.conversation_id].append(example)
    by_category: dict[str, list[str]] = defaultdict(list)
    for conversation, members in groups.items():
        counts = Counter(e.category for e in members)
        category = min(counts, key=lambda c: (-counts[c], c))
        by_category[category].append(conversation)
    assignment: dict[str, Split] = {}
    order: list[str] = []
    for category in sorted(by_category):
        conversations = sorted(by_category[category], key=lambda c: seeded_key(seed, c))
        assigned: Counter[Split] = Counter()
        total = 0
        for conversation in conversations:
            size = len(groups[conversation])
            total += size
            split = max(SPLITS, key=lambda s: (ratios[s] * total - assigned[s], -SPLITS.index(s)))
            assigned[split] += size
            assignment[conversation] = split
            order.append(conversation)
    corrections = {conversation: _corrections(members) for conversation, members in groups.items()}
    _teach_every_correction(assignment, corrections, order)
    _fill_empty_splits(assignment, order, ratios, corrections)
    return assignment


def correction_key(example: Example) -> str | None:
    """The fact a correction teaches (its text, case and spacing aside); None for other examples."""
    if example.target_source != "correction" or example.target is None:
        return None
    return " ".join(example.target.split()).casefold()


def _corrections(members: Sequence[Example]) -> set[str]:
    return {key for key in map(correction_key, members) if key is not None}


def _teach_every_correction(
    assignment: dict[str, Split], corrections: dict[str, set[str]], order: list[str]
) -> None:
    """``corrections``: conversation -> the corrections it holds (``_corrections``)."""
    taught = {key for c in order if assignment[c] == "train" for key in corrections[c]}
    for conversation in order:
        if assignment[conversation] != "train" and corrections[conversation] - taught:
            assignment[conversation] = "train"
            taught |= corrections[conversation]


def _fill_empty_splits(
    assignment: dict[str, Split],
    order: list[str],
    ratios: dict[Split, float],
    corrections: dict[str, set[str]],
) -> None:
    wanted = [s for s in SPLITS if ratios[s] > 0]
    if len(assignment) < len(wanted):
        return
    for split in wanted:
        if split in assignment.values():
            continue
        sizes = Counter(assignment.values())
        donor = max(wanted, key=lambda s: (sizes[s], -SPLITS.index(s)))
        if sizes[donor] <= 1:
            return
        taught_twice = Counter(key for c in order if assignment[c] == "train" for key in corrections[c])
        movable = [
            c
            for c in reversed(order)
            if assignment[c] == donor
            and (donor != "train" or all(taught_twice[k] > 1 for k in corrections[c]))
        ]
        if not movable:
            continue
        assignment[movable[0]] = split
