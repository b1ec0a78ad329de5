"""Shared fixtures.

Real LA data is looked up where the package looks (``$SFR_LA_DIR``, else ``data/LA``:
:func:`sfr_teach.data.resolve_la_dir`), then in ``../shared/data/LA`` beside the repository.
Outside CI a test that needs it is skipped when it is missing; in CI (``CI=true``) it fails
loudly instead, so a broken data path can never turn the real-data tests into silent skips.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from sfr_teach.data import resolve_la_dir
from sfr_teach.data.la import LA_SUBDIR

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

torch.set_num_threads(int(os.environ.get("SFR_TEST_THREADS", "2")))


def find_la_dir():
    """The LA folder for tests: :func:`sfr_teach.data.resolve_la_dir` (``$SFR_LA_DIR``, else ``data/LA``),
    then, for tests only, ``../shared/data/LA`` beside the repository; relative paths are tried from
    the working directory, then from the repository root. None when no candidate holds LA data."""
    shared = REPO.parent / "shared" / "data" / "LA"
    for p in (resolve_la_dir(), resolve_la_dir(shared)):
        for cand in (p, REPO / p):
            if (cand / "train.list").is_file() and (cand / LA_SUBDIR).is_dir():
                return cand
    return None


@pytest.fixture(scope="session")
def la_dir() -> Path:
    """Root of the real LA data (the public layout); skip or, in CI, fail when absent."""
    p = find_la_dir()
    if p is None:
        msg = (
            "real LA data not found (looked in $SFR_LA_DIR, else data/LA, then ../shared/data/LA); "
            "set SFR_LA_DIR or run `sfr-teach data download la --dest data/LA`"
        )
        if IN_CI:
            pytest.fail("CI=true: " + msg)
        pytest.skip(msg)
    return p


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
