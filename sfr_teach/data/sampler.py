"""Two-stream batches (as in UA-MT): every batch = labelled indices first, then unlabelled ones.

    sampler = TwoStreamBatchSampler(labeled_idx, unlabeled_idx, batch_size=4, secondary_batch_size=2, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler)       # batch[:2] labelled, batch[2:] unlabelled
    for batch in infinite_batches(loader): ...                # iteration-based training
"""
from __future__ import annotations

import itertools
from typing import Iterable, Iterator, List, Optional, Sequence, TypeVar

import numpy as np
from torch.utils.data import Sampler

T = TypeVar("T")


class TwoStreamBatchSampler(Sampler):
    """Batches of ``batch_size`` indices: ``batch_size - secondary_batch_size`` primary (labelled)
    indices, then ``secondary_batch_size`` secondary (unlabelled) ones.

    One epoch = ``ceil(len(primary) / primary_batch_size)`` batches, so every primary index is used
    at least once per epoch; the primary stream is reshuffled and repeated as needed (one labelled
    volume gives batches like [0, 0, u, u]). The secondary stream is shuffled and cycled. ``seed``
    makes the sequence of epochs repeatable.
    """

    def __init__(
        self,
        primary_indices: Sequence[int],
        secondary_indices: Sequence[int],
        batch_size: int,
        secondary_batch_size: int,
        seed: Optional[int] = None,
    ):
        self.primary = [int(i) for i in primary_indices]
        self.secondary = [int(i) for i in secondary_indices]
        self.secondary_batch_size = int(secondary_batch_size)
        self.primary_batch_size = int(batch_size) - self.secondary_batch_size
        if self.primary_batch_size < 1 or self.secondary_batch_size < 0:
            raise ValueError(
                f"batch_size={batch_size} and secondary_batch_size={secondary_batch_size} leave "
                f"{self.primary_batch_size} primary (labelled) samples per batch; need at least 1"
            )
        if not self.primary:
            raise ValueError("the primary (labelled) index stream is empty: give at least one labelled index")
        if not self.secondary and self.secondary_batch_size > 0:
            raise ValueError(
                "the secondary (unlabelled) index stream is empty but secondary_batch_size="
                f"{self.secondary_batch_size}; give unlabelled indices or set secondary_batch_size=0"
            )
        self.rng = np.random.default_rng(seed)

    def _cycle(self, indices: List[int]) -> Iterator[int]:
        while True:
            yield from (indices[i] for i in self.rng.permutation(len(indices)))

    def __iter__(self) -> Iterator[List[int]]:
        primary, secondary = self._cycle(self.primary), self._cycle(self.secondary)
        for _ in range(len(self)):
            batch = list(itertools.islice(primary, self.primary_batch_size))
            if self.secondary_batch_size:
                batch += list(itertools.islice(secondary, self.secondary_batch_size))
            yield batch

    def __len__(self) -> int:
        return -(-len(self.primary) // self.primary_batch_size)


def infinite_batches(iterable: Iterable[T]) -> Iterator[T]:
    """Iterate ``iterable`` (a DataLoader or sampler) again and again, epoch after epoch."""
    while True:
        empty = True
        for item in iterable:
            empty = False
            yield item
        if empty:
            raise ValueError("infinite_batches: the iterable produced no batch in a whole epoch")
