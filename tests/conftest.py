"""Shared fixtures.

Real LA data is looked up in ``$SFR_LA_DIR``, else ``../shared/data/LA`` beside the
repository, else ``data/LA``. Outside CI a test that needs it is skipped when it is
missing; in CI (``CI=true``) it fails loudly instead, so a broken data path can
never turn the real-data tests into silent skips.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

torch.set_num_threads(int(os.environ.get("SFR_TEST_THREADS", "2")))


def _la_candidates():
    env = os.environ.get("SFR_LA_DIR")
    if env:
        yield Path(env)
    yield REPO.parent / "shared" / "data" / "LA"
    yield REPO / "data" / "LA"


def find_la_dir():
    for p in _la_candidates():
        if (p / "train.list").is_file() and (p / "2018LA_Seg_Training Set").is_dir():
            return p
    return None


@pytest.fixture(scope="session")
def la_dir() -> Path:
    """Root of the real LA data (the public layout); skip or, in CI, fail when absent."""
    p = find_la_dir()
    if p is None:
        msg = (
            "real LA data not found (looked in $SFR_LA_DIR, ../shared/data/LA, data/LA); "
            "set SFR_LA_DIR or run `sfr-teach data download la --dest data/LA`"
        )
        if IN_CI:
            pytest.fail("CI=true: " + msg)
        pytest.skip(msg)
    return p


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
