"""Batches of similar length in a new random order every epoch (LengthBucketSampler)."""

from __future__ import annotations

import random

import pytest

from genesys.tools.training.sampling import LengthBucketSampler, padding_share

# Like the learning benchmark's rows: 110 short corrections (about 130 tokens), 22 long replay rows.
_rng = random.Random(7)
LENGTHS = [_rng.randint(110, 150) for _ in range(110)] + [_rng.randint(150, 270) for _ in range(22)]


def _random_batches(n: int, size: int, seed: int) -> list[list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [order[i : i + size] for i in range(0, n, size)]


def test_every_row_once_an_epoch_in_full_batches_with_the_short_one_last() -> None:
    sampler = LengthBucketSampler(LENGTHS, 4, seed=42)
    for _ in range(3):
        stream = list(sampler)
        assert sorted(stream) == list(range(len(LENGTHS)))
        batches = [stream[i : i + 4] for i in range(0, len(stream), 4)]
        assert all(len(b) == 4 for b in batches)  # 132 rows: 33 full batches
    odd = LengthBucketSampler(LENGTHS[:130], 4, seed=42).batches(0)
    assert [len(b) for b in odd] == [4] * 32 + [2]


def test_batches_pad_far_less_than_random_ones() -> None:
    sampler = LengthBucketSampler(LENGTHS, 4, seed=42)
    bucketed = sum(padding_share(LENGTHS, sampler.batches(e)) for e in range(10)) / 10
    shuffled = sum(padding_share(LENGTHS, _random_batches(len(LENGTHS), 4, e)) for e in range(10)) / 10
    assert shuffled > 0.1
    assert bucketed < shuffled / 2


def test_the_order_changes_every_epoch_and_repeats_for_a_seed() -> None:
    first, second = LengthBucketSampler(LENGTHS, 4, seed=1), LengthBucketSampler(LENGTHS, 4, seed=1)
    epochs = [list(first) for _ in range(3)]
    assert epochs[0] != epochs[1] != epochs[2]
    assert [list(second) for _ in range(3)] == epochs
    assert list(LengthBucketSampler(LENGTHS, 4, seed=2)) != epochs[0]
    # Rows share a batch with different rows from one epoch to the next.
    together = [{frozenset(b) for b in first.batches(e)} for e in (10, 11)]
    assert len(together[0] & together[1]) < len(together[0]) / 2


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LengthBucketSampler(LENGTHS, 0, seed=0)
