"""The seeds / folds statistics of ``scripts/la_seeds.py`` on runs whose numbers are known."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def la_seeds():
    spec = importlib.util.spec_from_file_location("la_seeds", REPO / "scripts" / "la_seeds.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(row, seed, fold, cases, method="mean_teacher"):
    dice = float(np.mean([d for d, _ in cases.values()]))
    return {"row": row, "method": method, "variant": "SFR" if "sfr" in row else "baseline", "seed": seed,
            "fold": fold, "dice": dice, "hd95": 10.0, "pseudo_label_dice": 0.5 if "sfr" in row else None,
            "minutes": 14.0, "sam": "", "device": "cpu", "cases": cases, "command": ""}


@pytest.fixture
def runs():
    out = []
    # fold 4, two seeds: +SFR gains 0.1 on case a and 0.3 on case b (averaged over the seeds), loses 0.1 on c
    for seed, gain in ((1, 0.0), (2, 0.2)):
        out.append(_run("mt", seed, 4, {"a": (0.4, 9.0), "b": (0.5, 9.0), "c": (0.6, 9.0)}))
        out.append(_run("mt_sfr", seed, 4, {"a": (0.5, 9.0), "b": (0.6 + gain, 9.0), "c": (0.5, 9.0)}))
    # fold 0, one seed: +SFR gains 0.2 on both of its cases
    out.append(_run("mt", 1, 0, {"d": (0.3, 9.0), "e": (0.3, 9.0)}))
    out.append(_run("mt_sfr", 1, 0, {"d": (0.5, 9.0), "e": (0.5, 9.0)}))
    out.append(_run("st", 1, 4, {"a": (0.2, 9.0)}, method="self_training"))  # no +SFR partner
    return out


def test_paired_averages_each_case_over_the_seeds_both_runs_share(la_seeds, runs):
    pr = la_seeds.paired(runs, "mt", "mt_sfr", [4])
    np.testing.assert_allclose(sorted(pr["diffs"]), [-0.1, 0.1, 0.2])
    assert (pr["n_cases"], pr["runs"], pr["better"], pr["folds"], pr["seeds"]) == (3, 2, 2, [4], [1, 2])
    assert pr["mean_diff"] == pytest.approx(0.2 / 3)
    assert len(pr["base_dice"]) == len(pr["other_dice"]) == 2
    assert la_seeds.paired(runs, "st", "st_sfr", [4]) is None


def test_paired_over_folds_counts_every_fold_s_cases_once(la_seeds, runs):
    pr = la_seeds.paired(runs, "mt", "mt_sfr", [0, 1, 2, 3, 4])
    assert (pr["n_cases"], pr["runs"], pr["folds"], pr["better"]) == (5, 3, [0, 4], 4)
    np.testing.assert_allclose(sorted(pr["diffs"]), [-0.1, 0.1, 0.2, 0.2, 0.2])


def test_markdown_lists_seeds_per_row_and_the_rotated_split(la_seeds, runs):
    md = la_seeds.markdown(runs)
    assert "| mt | mean_teacher | baseline | 2 | 50.0 ± 0.0 |" in md
    assert "| mt_sfr − mt | fold 4 (last 16) | 1,2 | 3 | +6.7 ± 15.3 | 2/3 |" in md
    assert "| mt_sfr − mt | folds 0,4 | 1,2 | 5 | +12.0 ± 13.0 | 4/5 |" in md
    assert "st_sfr" not in md
    assert "| 0 | 1 | 30.0 | 50.0 | 50.0 | +20.0 | 2/2 |" in md  # the per-fold table
    assert "| 4 | 1,2 | 50.0 | 56.7 | 50.0 | +6.7 | 2/3 |" in md


def test_by_diagonal_splits_the_gain_where_sam_beats_the_baseline(la_seeds):
    scatter = [(0.6, 0.4, 0.2), (0.7, 0.3, 0.3), (0.5, 0.45, -0.05), (0.3, 0.6, -0.1), (0.4, 0.4, 0.1)]
    md = la_seeds.by_diagonal(scatter)
    assert "| SAM better than the baseline | 3 of 5 | +15.0 | 2 (67 %) |" in md
    assert "| baseline at least as good as SAM | 2 of 5 | +0.0 | 1 (50 %) |" in md
