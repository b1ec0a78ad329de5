"""Metrics: hand-computed overlaps, medpy to 1e-6, MONAI cross-checks, empty masks flagged."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from medpy.metric import binary as mp
from scipy import ndimage

from sfr_teach.metrics import asd, case_metrics, dice, format_mean_std, hd95, jaccard, summarize

SPACING = (0.625, 0.8, 2.5)  # anisotropic on purpose


def _cube(lo, hi, shape=(20, 20, 20)):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


def _blob(seed, shape=(40, 36, 24)):
    a = np.random.default_rng(seed).random(shape)
    return ndimage.gaussian_filter(a, 3) > a.mean() + 0.003


def _onehot(m):
    return torch.from_numpy(np.stack([~m, m])[None].astype(np.float32))


def test_two_cubes_hand_computed():
    a = _cube((2, 2, 2), (12, 12, 12))  # 1000 voxels
    b = _cube((4, 2, 2), (14, 12, 12))  # shifted by 2 along H: overlap 8*10*10 = 800
    assert dice(a, b) == pytest.approx(0.8)
    assert jaccard(a, b) == pytest.approx(800 / 1200)
    assert dice(a, a) == 1.0 and jaccard(a, a) == 1.0
    # a shift of 2 voxels along H: the faces perpendicular to H move by exactly 2 * 0.625 mm;
    # every surface voxel of a lies within 2 voxels (1.25 mm) of b's surface along H
    assert hd95(a, b, SPACING) == pytest.approx(1.25)
    assert 0 < asd(a, b, SPACING) < 1.25
    # disjoint cubes: Dice 0, distance = gap between nearest faces along W (voxel centres 2 apart * 0.8)
    c = _cube((2, 14, 2), (12, 18, 12))
    assert dice(a, c) == 0.0 and jaccard(a, c) == 0.0
    assert mp.hd(c, a, voxelspacing=SPACING) >= 3 * 0.8 - 1e-9


def test_distances_equal_medpy_anisotropic():
    for s1, s2 in ((1, 2), (3, 4), (5, 6)):
        p, g = _blob(s1), _blob(s2)
        assert hd95(p, g, SPACING) == pytest.approx(mp.hd95(p, g, voxelspacing=SPACING), abs=1e-6)
        assert asd(p, g, SPACING) == pytest.approx(mp.asd(p, g, voxelspacing=SPACING), abs=1e-6)
        assert asd(p, g, SPACING) != pytest.approx(asd(g, p, SPACING))  # one-directional: order matters
        assert dice(p, g) == pytest.approx(mp.dc(p, g), abs=1e-12)
        assert jaccard(p, g) == pytest.approx(mp.jc(p, g), abs=1e-12)


def test_cross_check_with_monai():
    """Where MONAI agrees with medpy and where it legitimately differs."""
    from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance

    p, g = _blob(1), _blob(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        m_dice = float(compute_dice(_onehot(p), _onehot(g), include_background=False))
        m_asd = float(compute_average_surface_distance(_onehot(p), _onehot(g), spacing=SPACING))
        m_assd = float(compute_average_surface_distance(_onehot(p), _onehot(g), spacing=SPACING, symmetric=True))
        m_hd95 = float(compute_hausdorff_distance(_onehot(p), _onehot(g), percentile=95, spacing=SPACING))
        m_d1 = float(compute_hausdorff_distance(_onehot(p), _onehot(g), percentile=95, spacing=SPACING, directed=True))
        m_d2 = float(compute_hausdorff_distance(_onehot(g), _onehot(p), percentile=95, spacing=SPACING, directed=True))
    assert dice(p, g) == pytest.approx(m_dice, abs=1e-6)
    # medpy asd == MONAI ASD with symmetric=False (pred surface -> gt surface); symmetric=True is ASSD
    assert asd(p, g, SPACING) == pytest.approx(m_asd, abs=1e-5)
    assert abs(asd(p, g, SPACING) - m_assd) > 0.01
    assert m_assd == pytest.approx((asd(p, g, SPACING) * _n_surface(p) + asd(g, p, SPACING) * _n_surface(g)) / (_n_surface(p) + _n_surface(g)), abs=1e-5)
    # HD95 differs: medpy takes the 95th percentile of both directions' distances pooled,
    # MONAI the larger of the two directed 95th percentiles
    assert m_hd95 == pytest.approx(max(m_d1, m_d2), abs=1e-6)
    assert abs(hd95(p, g, SPACING) - m_hd95) > 0.1
    assert min(m_d1, m_d2) <= hd95(p, g, SPACING) <= max(m_d1, m_d2)


def _n_surface(m):
    return int((m ^ ndimage.binary_erosion(m)).sum())


def test_empty_masks_are_flagged_never_perfect():
    g = _cube((2, 2, 2), (8, 8, 8))
    empty = np.zeros_like(g)
    assert dice(empty, g) == 0.0 and jaccard(empty, g) == 0.0
    assert math.isnan(hd95(empty, g)) and math.isnan(asd(empty, g)) and math.isnan(asd(g, empty))
    assert dice(empty, empty) == 1.0 and jaccard(empty, empty) == 1.0 and math.isnan(hd95(empty, empty))
    row = case_metrics(empty.astype(np.uint8), g.astype(np.uint8), 2, SPACING)
    assert row["pred_empty"] and not row["gt_empty"] and row["dice"] == 0.0 and math.isnan(row["hd95"])
    row = case_metrics(g.astype(np.uint8), empty.astype(np.uint8), 2)
    assert row["gt_empty"] and not row["pred_empty"] and row["dice"] == 0.0 and math.isnan(row["asd"])
    row = case_metrics(empty.astype(np.uint8), empty.astype(np.uint8), 2)
    assert row["gt_empty"] and row["pred_empty"] and row["dice"] == 1.0 and math.isnan(row["hd95"])


def test_case_metrics_multiclass_and_validation():
    gt = np.zeros((20, 20, 20), np.uint8)
    gt[_cube((2, 2, 2), (12, 12, 12))] = 1
    gt[_cube((14, 14, 14), (18, 18, 18))] = 2
    pred = gt.copy()
    pred[_cube((2, 2, 2), (4, 12, 12))] = 0  # class 1 loses 200 of 1000 voxels
    row = case_metrics(pred, gt, 3, SPACING)
    assert row["dice_1"] == pytest.approx(1600 / 1800) and row["dice_2"] == 1.0
    assert row["dice"] == pytest.approx((1600 / 1800 + 1) / 2)
    assert row["hd95_2"] == 0.0 and row["asd_2"] == 0.0
    assert row["hd95_1"] == pytest.approx(mp.hd95(pred == 1, gt == 1, voxelspacing=SPACING), abs=1e-6)
    assert not row["pred_empty"] and not row["gt_empty"]
    pred[pred == 2] = 0  # class 2 missed: its distance is NaN and so is the class mean
    row = case_metrics(pred, gt, 3, SPACING)
    assert row["pred_empty_2"] and row["pred_empty"] and math.isnan(row["hd95"]) and row["dice_2"] == 0.0
    fast = case_metrics(pred, gt, 3, distances=False)
    assert "hd95" not in fast and fast["dice_1"] == row["dice_1"]
    with pytest.raises(ValueError, match="outside 0..1"):
        case_metrics(gt, gt, 2)
    with pytest.raises(ValueError, match="does not match"):
        case_metrics(gt[:-1], gt, 3)


def test_summarize_and_format():
    rows = [
        {"name": "a", "dice": 0.8, "hd95": 2.0, "pred_empty": False},
        {"name": "b", "dice": 0.6, "hd95": 4.0, "pred_empty": False},
        {"name": "c", "dice": 0.0, "hd95": math.nan, "pred_empty": True},
    ]
    s = summarize(rows)
    assert "name" not in s
    assert s["dice"]["mean"] == pytest.approx(1.4 / 3) and s["dice"]["std"] == pytest.approx(np.std([0.8, 0.6, 0.0]))
    assert s["hd95"] == {"mean": 3.0, "std": 1.0, "n": 2, "excluded": 1}
    assert s["pred_empty"] == {"count": 1}
    assert format_mean_std(0.88231, 0.012, scale=100) == "88.23 ± 1.20"
    assert format_mean_std(s["hd95"]) == "3.00 ± 1.00 (1 excluded)"
    assert format_mean_std(math.nan, math.nan) == "n/a"
