"""Two-stream (labelled + unlabelled) batch sampler."""
from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from sfr_teach.data import TwoStreamBatchSampler, infinite_batches


def test_batches_put_labelled_first_and_cover_the_primary_stream():
    primary, secondary = list(range(6)), list(range(6, 20))
    s = TwoStreamBatchSampler(primary, secondary, batch_size=4, secondary_batch_size=2, seed=0)
    batches = list(s)
    assert len(s) == len(batches) == 3
    for b in batches:
        assert len(b) == 4 and set(b[:2]) <= set(primary) and set(b[2:]) <= set(secondary)
    assert sorted(i for b in batches for i in b[:2]) == primary  # each labelled index once per epoch
    assert len({i for b in batches for i in b[2:]}) == 6  # no repeats within one pass of the secondary


def test_one_labelled_volume_repeats():
    s = TwoStreamBatchSampler([3], [10, 11, 12], batch_size=4, secondary_batch_size=2, seed=1)
    assert len(s) == 1 and list(s)[0][:2] == [3, 3]
    s = TwoStreamBatchSampler([0, 1, 2], [5], batch_size=3, secondary_batch_size=1, seed=1)
    batches = list(s)
    assert len(batches) == 2 and set(i for b in batches for i in b[:2]) == {0, 1, 2}
    assert all(b[2] == 5 for b in batches)  # the secondary stream cycles


def test_seed_repeatable_and_epochs_differ():
    a = TwoStreamBatchSampler(range(8), range(8, 30), 4, 2, seed=7)
    b = TwoStreamBatchSampler(range(8), range(8, 30), 4, 2, seed=7)
    ea, eb = list(a), list(b)
    assert ea == eb
    assert list(a) != ea  # the next epoch is shuffled differently


def test_errors():
    with pytest.raises(ValueError, match="primary .* empty"):
        TwoStreamBatchSampler([], [1, 2], 4, 2)
    with pytest.raises(ValueError, match="secondary .* empty"):
        TwoStreamBatchSampler([0], [], 4, 2)
    with pytest.raises(ValueError, match="at least 1"):
        TwoStreamBatchSampler([0], [1], 2, 2)
    only_labelled = TwoStreamBatchSampler([0, 1], [], 2, 0, seed=0)  # supervised: no secondary needed
    assert sorted(list(only_labelled)[0]) == [0, 1]


def test_with_dataloader_and_infinite_batches():
    data = TensorDataset(torch.arange(10))
    sampler = TwoStreamBatchSampler(range(2), range(2, 10), 4, 2, seed=0)
    loader = DataLoader(data, batch_sampler=sampler)
    batches = list(itertools.islice(infinite_batches(loader), 5))  # 5 batches from 1-batch epochs
    assert len(batches) == 5
    for (x,) in batches:
        assert sorted(x[:2].tolist()) == [0, 1] and all(v >= 2 for v in x[2:].tolist())
    with pytest.raises(ValueError, match="no batch"):
        next(infinite_batches([]))
