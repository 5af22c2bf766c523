"""Training order: batches of rows of similar length, in a new random order every epoch.

A batch is padded to its longest row, and every padding position costs a full forward and backward
pass on CPU. Genesys trains short rows (a corrected question and its answer under the system prompt,
about 130 tokens) beside long ones (replay rows: a function and its code, up to 270 tokens): shuffled
at random into batches of 4, a fifth of the tokens computed were padding (measured on the learning
benchmark's dataset: 21%; 2% with the rows sorted by length).

``LengthBucketSampler`` shuffles the rows, cuts them into buckets of ``bucket_batches`` batches, sorts
each bucket by length and cuts it into batches, then shuffles the batches. Every epoch sees every row
once, the rows that share a batch change from epoch to epoch (the shuffle comes before the buckets),
and the order of batches is random, so that a run does not always end on the shortest rows.
transformers' ``group_by_length`` sorts whole mega-batches of 50 batches longest first, so on a few
hundred rows every epoch ran from the longest batch to the shortest in the same order.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler

BUCKET_BATCHES = 8


class LengthBucketSampler(Sampler[int]):
    """Row indices, ``batch_size`` at a time of similar length; a new order each time it is iterated.

    The DataLoader cuts the stream into consecutive batches of ``batch_size``, so every batch but a
    final short one is full: the short one (when the rows do not divide evenly) always comes last.
    """

    def __init__(
        self, lengths: Sequence[int], batch_size: int, *, seed: int, bucket_batches: int = BUCKET_BATCHES
    ) -> None:
        if batch_size < 1 or bucket_batches < 1:
            raise ValueError("batch_size and bucket_batches must be at least 1")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.bucket_batches = bucket_batches
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def batches(self, epoch: int) -> list[list[int]]:
        """The batches of one epoch (deterministic for a seed and an epoch)."""
        rng = random.Random(self.seed * 1_000_003 + epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        span = self.batch_size * self.bucket_batches
        batches: list[list[int]] = []
        for start in range(0, len(order), span):
            bucket = sorted(order[start : start + span], key=lambda i: -self.lengths[i])
            batches += [bucket[i : i + self.batch_size] for i in range(0, len(bucket), self.batch_size)]
        short = [b for b in batches if len(b) < self.batch_size]
        full = [b for b in batches if len(b) == self.batch_size]
        rng.shuffle(full)
        return full + short

    def __iter__(self) -> Iterator[int]:
        batches = self.batches(self.epoch)
        self.epoch += 1
        return iter([index for batch in batches for index in batch])


def padding_share(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of the positions computed in ``batches`` that are padding."""
    computed = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches if batch)
    real = sum(lengths[i] for batch in batches for i in batch)
    return 1 - real / computed if computed else 0.0
