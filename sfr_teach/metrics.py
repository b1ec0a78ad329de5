"""Segmentation metrics per case: Dice, Jaccard, HD95, ASD, and their mean +- std.

Binary masks are ``(H, W, D)`` arrays (any dimensionality works); a label map holds
classes ``0..C-1`` with 0 the background. The surface distances come from
``medpy.metric.binary`` (``hd95``, ``asd``) with ``voxel_spacing`` in mm, as in the
semi-supervised LA literature (UA-MT's ``test_util``): **ASD is medpy's one-directional
average distance from the prediction's surface to the ground truth's**, which equals
MONAI's ``compute_average_surface_distance(symmetric=False)``; MONAI's
``symmetric=True`` (ASSD) is a different number. HD95 is symmetric in both
(the larger of the two directed 95th percentiles).

Empty masks (a known flaw of the reference scripts is to score them as a perfect 0 mm):

* prediction empty, ground truth not: Dice = Jaccard = 0, HD95 = ASD = NaN, ``pred_empty=True``;
* ground truth empty, prediction not: Dice = Jaccard = 0, HD95 = ASD = NaN, ``gt_empty=True``;
* both empty: Dice = Jaccard = 1 (nothing to find, nothing found), HD95 = ASD = NaN,
  both flags ``True``.

A NaN distance is never averaged as a number: :func:`summarize` leaves it out of the mean and
reports how many cases it left out, and the flags say which cases they were.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence

import numpy as np
from medpy.metric import binary as _mp

__all__ = ["dice", "jaccard", "hd95", "asd", "case_metrics", "summarize", "per_class_summary", "format_mean_std",
           "METRICS"]

METRICS = ("dice", "jaccard", "hd95", "asd")
Spacing = Optional[Sequence[float]]


def _pair(pred: Any, gt: Any) -> tuple:
    p, g = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} does not match ground truth shape {g.shape}")
    return p, g


def dice(pred: Any, gt: Any) -> float:
    """Dice ``2|P n G| / (|P| + |G|)`` of two binary masks; 1.0 when both are empty."""
    p, g = _pair(pred, gt)
    total = int(p.sum()) + int(g.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(p, g).sum()) / total


def jaccard(pred: Any, gt: Any) -> float:
    """Jaccard ``|P n G| / |P u G|``; 1.0 when both are empty (``J = D / (2 - D)``)."""
    p, g = _pair(pred, gt)
    union = int(np.logical_or(p, g).sum())
    return 1.0 if union == 0 else int(np.logical_and(p, g).sum()) / union


def _spacing(spacing: Spacing, ndim: int) -> Optional[tuple]:
    if spacing is None:
        return None
    sp = tuple(float(s) for s in spacing)
    if len(sp) != ndim or min(sp) <= 0:
        raise ValueError(f"voxel_spacing must be {ndim} positive numbers (mm), got {spacing}")
    return sp


def hd95(pred: Any, gt: Any, voxel_spacing: Spacing = None) -> float:
    """95th-percentile symmetric Hausdorff distance (mm with ``voxel_spacing``); NaN if a mask is empty."""
    p, g = _pair(pred, gt)
    if not p.any() or not g.any():
        return math.nan
    return float(_mp.hd95(p, g, voxelspacing=_spacing(voxel_spacing, p.ndim)))


def asd(pred: Any, gt: Any, voxel_spacing: Spacing = None) -> float:
    """Average surface distance from the prediction's surface to the ground truth's (medpy); NaN if empty."""
    p, g = _pair(pred, gt)
    if not p.any() or not g.any():
        return math.nan
    return float(_mp.asd(p, g, voxelspacing=_spacing(voxel_spacing, p.ndim)))


def case_metrics(
    pred: Any,
    gt: Any,
    num_classes: int,
    spacing: Spacing = None,
    distances: bool = True,
) -> Dict[str, Any]:
    """All metrics of one case for label maps ``pred``, ``gt`` (same shape, values ``0..C-1``).

    Returns, for every foreground class ``c`` (1..C-1): ``dice_c``, ``jaccard_c``, ``hd95_c``,
    ``asd_c`` (distances only when ``distances``), ``pred_empty_c``, ``gt_empty_c``; and the mean over
    classes under the plain names ``dice``, ``jaccard``, ``hd95``, ``asd`` with ``pred_empty`` /
    ``gt_empty`` true when any class is. A class mean of distances is NaN when any class's distance
    is NaN (an empty class is reported, never averaged away). For C = 2 the mean is class 1.
    """
    p, g = np.asarray(pred), np.asarray(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} does not match ground truth shape {g.shape}")
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background too and must be >= 2, got {num_classes}")
    for what, a in (("prediction", p), ("ground truth", g)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(
                f"{what} holds labels outside 0..{num_classes - 1} (min {a.min()}, max {a.max()}); "
                "pass an argmax label map and the right num_classes (background included)"
            )
    names = METRICS if distances else METRICS[:2]
    row: Dict[str, Any] = {}
    per: Dict[str, list] = {m: [] for m in names}
    pe, ge = [], []
    for c in range(1, num_classes):
        pc, gc = p == c, g == c
        vals = {"dice": dice(pc, gc), "jaccard": jaccard(pc, gc)}
        if distances:
            vals["hd95"] = hd95(pc, gc, spacing)
            vals["asd"] = asd(pc, gc, spacing)
        for m in names:
            row[f"{m}_{c}"] = vals[m]
            per[m].append(vals[m])
        row[f"pred_empty_{c}"] = not pc.any()
        row[f"gt_empty_{c}"] = not gc.any()
        pe.append(row[f"pred_empty_{c}"])
        ge.append(row[f"gt_empty_{c}"])
    for m in names:
        row[m] = float(np.mean(per[m]))  # NaN propagates
    row["pred_empty"] = any(pe)
    row["gt_empty"] = any(ge)
    return row


def summarize(rows: Iterable[Mapping[str, Any]]) -> Dict[str, Dict[str, float]]:
    """Mean and std over cases of every numeric column (nan-aware; population std, ``ddof=0``).

    Returns ``{column: {"mean", "std", "n", "excluded"}}`` (``n`` cases averaged, ``excluded``
    NaN cases left out) for numbers, and ``{column: {"count"}}`` (how many cases are true) for
    boolean flags. Strings (case names) are skipped.
    """
    rows = list(rows)
    out: Dict[str, Dict[str, float]] = {}
    keys: list = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    for k in keys:
        vals = [r[k] for r in rows if k in r]
        if all(isinstance(v, (bool, np.bool_)) for v in vals):
            out[k] = {"count": int(sum(bool(v) for v in vals))}
        elif all(isinstance(v, (int, float, np.integer, np.floating)) for v in vals):
            a = np.asarray(vals, dtype=np.float64)
            ok = ~np.isnan(a)
            n = int(ok.sum())
            out[k] = {
                "mean": float(a[ok].mean()) if n else math.nan,
                "std": float(a[ok].std()) if n else math.nan,
                "n": n,
                "excluded": int(a.size - n),
            }
    return out


def per_class_summary(summary: Mapping[str, Mapping[str, float]], class_names: Sequence[str],
                      metrics: Sequence[str] = METRICS) -> Dict[str, Dict[str, float]]:
    """``{class name: {"dice": mean, "dice_std": std, "hd95": ..., ...}}`` for the foreground classes,
    read from a :func:`summarize` of :func:`case_metrics` rows (columns ``dice_1``, ``hd95_1``, ...).
    ``class_names`` holds the background first; metrics absent from the summary are skipped."""
    out: Dict[str, Dict[str, float]] = {}
    for c, name in enumerate(class_names):
        if c == 0:
            continue
        entry: Dict[str, float] = {}
        for m in metrics:
            s = summary.get(f"{m}_{c}")
            if s is not None and "mean" in s:
                entry[m], entry[f"{m}_std"] = s["mean"], s["std"]
        if entry:
            out[str(name)] = entry
    return out


def format_mean_std(mean: Any, std: Optional[float] = None, digits: int = 2, scale: float = 1.0) -> str:
    """``"88.23 ± 1.20"``; pass a :func:`summarize` entry as ``mean`` or two numbers; NaN -> ``"n/a"``.

    ``scale=100`` turns a Dice fraction into per cent; the count of excluded cases is appended
    when a summary entry has any (``"12.31 ± 2.10 (2 excluded)"``).
    """
    excluded = 0
    if isinstance(mean, Mapping):
        mean, std, excluded = mean["mean"], mean.get("std"), int(mean.get("excluded", 0))
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        text = "n/a"
    else:
        text = f"{mean * scale:.{digits}f}"
        if std is not None and not math.isnan(std):
            text += f" ± {std * scale:.{digits}f}"
    return text + (f" ({excluded} excluded)" if excluded else "")
