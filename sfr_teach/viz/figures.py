"""Static figures: slices, mosaics, overlays, confidence, curves, bars (each returns a Figure).

Only :mod:`sfr_teach.viz` imports matplotlib (compute modules never do). pyplot is imported lazily,
and on a machine without a display (CI, a server) the non-interactive ``Agg`` backend is selected,
so every function works headless. Every plotting function returns its
:class:`matplotlib.figure.Figure` (in a notebook the figure is shown once, as the cell's result);
:func:`save_figure` writes one as PNG and closes it.

Conventions: volumes are ``(H, W, D)`` arrays with the slicing axis last; probabilities are
``(C, H, W, D)``; a slice is shown with ``imshow(volume[:, :, k])`` (row = H, column = W).
Ground truth is drawn in green, predictions / pseudo-labels in red (for several classes, one
shade per class).
"""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "show_slices",
    "montage",
    "show_mosaic",
    "overlay",
    "plot_volume_overlays",
    "plot_confidence_map",
    "plot_dice_vs_confidence",
    "plot_curves",
    "plot_curves_compare",
    "plot_case_bars",
    "plot_sfr_comparison",
    "plot_gain_vs_pseudo_label",
    "plot_before_after",
    "pick_slices",
    "save_figure",
]

GT_COLOR = "#2ca02c"  # green
PRED_COLOR = "#d62728"  # red
_CLASS_SHADES = ["#d62728", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


def _plt():
    """Import pyplot, choosing Agg when there is no display and no notebook kernel."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        headless = not os.environ.get("DISPLAY") and sys.platform.startswith("linux")
        in_kernel = "ipykernel" in sys.modules
        if headless and not in_kernel and not os.environ.get("MPLBACKEND"):
            matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure_and_axes(ax, figsize):
    """``(fig, ax)``: the given axes and their figure, or a new single-axes figure of ``figsize``."""
    if ax is None:
        return _plt().subplots(figsize=figsize)
    return ax.figure, ax


def _np(x: Any) -> np.ndarray:
    """numpy view of an array or (cpu / cuda) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_volume(x: Any, what: str) -> np.ndarray:
    a = _np(x)
    if a.ndim != 3:
        raise ValueError(f"{what} must be a 3D (H, W, D) volume, got shape {a.shape}; pass one volume, e.g. vol.image")
    return a


def pick_slices(volume_or_depth: Any, n: int = 9, label: Any = None) -> List[int]:
    """``n`` evenly spaced slice indices along the last axis.

    With a ``label`` volume the slices are spread over the range that contains foreground
    (so a montage of a small structure is not mostly empty slices).
    """
    depth = int(volume_or_depth) if np.isscalar(volume_or_depth) else _np(volume_or_depth).shape[-1]
    lo, hi = 0, depth - 1
    if label is not None:
        fg = np.flatnonzero(_np(label).reshape(-1, depth).any(axis=0))
        if fg.size:
            lo, hi = int(fg[0]), int(fg[-1])
    n = max(1, min(int(n), hi - lo + 1))
    return [int(round(v)) for v in np.linspace(lo, hi, n)]


def _grid(n: int, cols: Optional[int] = None, size: float = 2.4, extra_h: float = 0.0):
    plt = _plt()
    cols = int(cols or min(n, 5))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + extra_h), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        fig.delaxes(ax)
    for ax in flat[:n]:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, flat[:n]


def show_slices(
    volume: Any,
    slices: Sequence[int],
    cols: Optional[int] = None,
    cmap: str = "gray",
    title: Optional[str] = None,
    vmin: Optional[float] = None,
    vmax: Optional[float] = None,
    titles: Optional[Sequence[str]] = None,
):
    """One panel per slice ``volume[:, :, k]`` for ``k`` in ``slices``; returns the Figure.

    volume: (H, W, D). All panels share one grey scale (``vmin``/``vmax``, default the volume's range).
    titles: one per panel (default ``"slice k"``).
    """
    vol = _check_volume(volume, "show_slices: volume")
    slices = [int(k) for k in slices]
    bad = [k for k in slices if not -vol.shape[2] <= k < vol.shape[2]]
    if bad:
        raise IndexError(f"show_slices: slices {bad} outside a volume of depth {vol.shape[2]}")
    titles = [f"slice {k}" for k in slices] if titles is None else list(titles)
    if len(titles) != len(slices):
        raise ValueError(f"show_slices: {len(titles)} titles for {len(slices)} slices; give one per slice")
    vmin = float(vol.min()) if vmin is None else vmin
    vmax = float(vol.max()) if vmax is None else vmax
    fig, axes = _grid(len(slices), cols)
    for ax, k, t in zip(axes, slices, titles):
        ax.imshow(vol[:, :, k], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(t, fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def montage(volume: Any, n: int = 9, cols: Optional[int] = None, label: Any = None, **kw: Any):
    """:func:`show_slices` on ``n`` evenly spaced slices (over the foreground range if ``label``)."""
    return show_slices(volume, pick_slices(volume, n, label), cols=cols, **kw)


def show_mosaic(
    mosaic: Any,
    layout: Any = None,
    label: Any = None,
    title: Optional[str] = None,
    number_cells: bool = True,
    cmap: str = "gray",
    ax: Any = None,
):
    """Show a stitched mosaic ``(S, S)``; with a :class:`~sfr_teach.stitching.StitchLayout`, draw the grid.

    Grid lines (yellow) mark the cell borders, each cell gets its slice number and empty cells
    (no slice, filled with zeros) are hatched. ``label`` (a stitched label, ``(S, S)``) is drawn
    as a green contour. Returns the Figure.
    """
    m = _np(mosaic)
    if m.ndim != 2:
        raise ValueError(f"show_mosaic: expected a 2D mosaic (S, S), got shape {m.shape}; stitch one volume first")
    fig, ax = _figure_and_axes(ax, (6.5, 6.5))
    ax.imshow(m, cmap=cmap, interpolation="nearest")
    if label is not None:
        lab = _np(label)
        if lab.max() > 0:
            ax.contour((lab > 0) & (lab != 255), levels=[0.5], colors=[GT_COLOR], linewidths=0.8)
    if layout is not None:
        from matplotlib.patches import Rectangle

        h, w, d = layout.shape
        g = layout.grid
        top, left = layout.offset
        sy, sx = layout.scaled[0] / layout.raw[0], layout.scaled[1] / layout.raw[1]
        for i in range(g + 1):
            y = top + i * h * sy - 0.5
            x = left + i * w * sx - 0.5
            ax.plot([left - 0.5, left + g * w * sx - 0.5], [y, y], color="yellow", lw=0.6)
            ax.plot([x, x], [top - 0.5, top + g * h * sy - 0.5], color="yellow", lw=0.6)
        for k in range(g * g):
            r, c = divmod(k, g)
            y0, x0 = top + r * h * sy - 0.5, left + c * w * sx - 0.5
            if k < d:
                if number_cells:
                    ax.text(x0 + 2, y0 + 2, str(k), color="yellow", fontsize=6, va="top", ha="left")
            else:
                ax.add_patch(Rectangle((x0, y0), w * sx, h * sy, fill=False, hatch="//", edgecolor="orange", lw=0))
        ax.set_title(
            title
            or f"{d} slices of {h}x{w} on a {g}x{g} grid -> {layout.out_size}x{layout.out_size}"
            + (f" (resized x{layout.scale:.2f})" if layout.resized else "")
        )
    elif title:
        ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return fig


def _contours(ax, mask2d: np.ndarray, color: str, style: str = "-"):
    """Draw one contour per foreground class; returns the classes drawn."""
    drawn = []
    classes = [c for c in np.unique(mask2d) if c > 0 and c != 255]
    for c in classes:
        col = color if len(classes) == 1 else _CLASS_SHADES[(int(c) - 1) % len(_CLASS_SHADES)]
        ax.contour(mask2d == c, levels=[0.5], colors=[col], linewidths=1.2, linestyles=style)
        drawn.append(int(c))
    return drawn


def overlay(
    image_slice: Any,
    label: Any = None,
    pred: Any = None,
    ax: Any = None,
    title: Optional[str] = None,
    label_name: str = "ground truth",
    pred_name: str = "prediction",
    legend: bool = True,
):
    """One slice ``(H, W)`` in grey with the label (green, solid) and prediction (red, dashed) outlines.

    Both masks are ``(H, W)`` class maps; the legend names them (only those given). Returns the Figure.
    """
    from matplotlib.lines import Line2D

    img = _np(image_slice)
    if img.ndim != 2:
        raise ValueError(f"overlay: expected one 2D slice (H, W), got shape {img.shape}; use volume[:, :, k]")
    fig, ax = _figure_and_axes(ax, (4.5, 4.5))
    ax.imshow(img, cmap="gray", interpolation="nearest")
    handles = []
    for mask, color, name, style in ((label, GT_COLOR, label_name, "-"), (pred, PRED_COLOR, pred_name, "--")):
        if mask is None:
            continue
        m = _np(mask)
        if m.shape != img.shape:
            raise ValueError(f"overlay: {name} shape {m.shape} differs from the image slice shape {img.shape}")
        _contours(ax, m, color, style=style)
        handles.append(Line2D([0], [0], color=color, lw=1.5, ls=style, label=name))
    if legend and handles:
        ax.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.7)
    if title:
        ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def plot_volume_overlays(
    image: Any,
    label: Any = None,
    pred: Any = None,
    slices: Union[int, Sequence[int]] = 5,
    cols: Optional[int] = None,
    title: Optional[str] = None,
    pred_name: str = "prediction",
):
    """:func:`overlay` on several slices of a volume; ``slices`` = indices or a count (spread over the label).

    image / label / pred: (H, W, D). Only the first panel carries the legend. Returns the Figure.
    """
    img = _check_volume(image, "plot_volume_overlays: image")
    idx = pick_slices(img, slices, label if label is not None else pred) if np.isscalar(slices) else list(slices)
    fig, axes = _grid(len(idx), cols, size=3.0)
    lab = None if label is None else _check_volume(label, "label")
    prd = None if pred is None else _check_volume(pred, "pred")
    for i, (ax, k) in enumerate(zip(axes, idx)):
        overlay(
            img[:, :, k],
            None if lab is None else lab[:, :, k],
            None if prd is None else prd[:, :, k],
            ax=ax,
            title=f"slice {k}",
            pred_name=pred_name,
            legend=i == 0,
        )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confidence_map(
    prob: Any,
    slices: Union[int, Sequence[int]] = 4,
    image: Any = None,
    title: Optional[str] = None,
):
    """Voxel-wise confidence = max class probability of ``prob (C, H, W, D)``, on a few slices.

    Bright = sure, dark = unsure (class boundaries). With ``image`` (H, W, D), the slice itself is
    shown in the first row. The title gives the volume confidence (mean over voxels), the number
    SFR+ compares with tau. Returns the Figure.
    """
    plt = _plt()
    p = _np(prob).astype(np.float32)
    if p.ndim != 4:
        raise ValueError(f"plot_confidence_map: prob must be (C, H, W, D) class probabilities, got shape {p.shape}")
    conf = p.max(axis=0)
    pred = p.argmax(axis=0)
    idx = pick_slices(conf, slices, pred) if np.isscalar(slices) else list(slices)
    rows = 2 if image is not None else 1
    fig, axes = plt.subplots(rows, len(idx), figsize=(2.8 * len(idx) + 0.8, 2.8 * rows + 0.4), squeeze=False)
    im = None
    for j, k in enumerate(idx):
        if image is not None:
            axes[0, j].imshow(_np(image)[:, :, k], cmap="gray", interpolation="nearest")
            axes[0, j].set_title(f"image, slice {k}", fontsize=9)
        ax = axes[rows - 1, j]
        im = ax.imshow(conf[:, :, k], cmap="magma", vmin=1.0 / p.shape[0], vmax=1.0, interpolation="nearest")
        ax.set_title(f"confidence, slice {k}", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(axes.ravel()), shrink=0.8, label="max class probability")
    fig.suptitle(title or f"volume confidence (mean of max prob) = {conf.mean():.4f}")
    return fig


def plot_dice_vs_confidence(
    conf: Sequence[float],
    dice: Sequence[float],
    tau: float,
    names: Optional[Sequence[str]] = None,
    ax: Any = None,
):
    """Scatter of pseudo-label Dice against volume confidence with the SFR+ threshold ``tau``.

    Volumes right of the dashed line (confidence >= tau) are high-confidence (blue): SFR+ adds
    them to SAM's fine-tuning set; the others (orange) go to re-training. The legend gives both
    counts and the Pearson correlation; ``names`` label the dots (up to 15 volumes). Returns the Figure.
    """
    c, d = np.asarray(conf, dtype=float), np.asarray(dice, dtype=float)
    if c.shape != d.shape or c.ndim != 1:
        raise ValueError(f"plot_dice_vs_confidence: conf and dice must be 1D and equally long, got {c.shape} and {d.shape}")
    fig, ax = _figure_and_axes(ax, (5.5, 4.2))
    high = c >= tau
    ax.scatter(c[high], d[high], color="#1f77b4", label=f"high confidence (>= tau): {int(high.sum())}")
    ax.scatter(c[~high], d[~high], color="#ff7f0e", label=f"low confidence (< tau): {int((~high).sum())}")
    ax.axvline(tau, color="k", ls="--", lw=1, label=f"tau = {tau:g}")
    if names is not None and len(names) <= 15:  # more labels than that only hide the dots
        for x, y, n in zip(c, d, names):
            ax.annotate(str(n), (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    r = float(np.corrcoef(c, d)[0, 1]) if c.size > 1 and c.std() > 0 and d.std() > 0 else float("nan")
    ax.set_xlabel("volume confidence (mean max probability)")
    ax.set_ylabel("pseudo-label Dice vs ground truth")
    ax.set_title(f"Dice vs confidence (Pearson r = {r:.2f})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _read_history(history: Any) -> List[Dict[str, float]]:
    if isinstance(history, (str, Path)):
        path = Path(history)
        if not path.is_file():
            raise FileNotFoundError(f"plot_curves: no history file {path}; train first or pass the list of dicts")
        with path.open() as f:
            rows = list(csv.DictReader(f))
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in rows]
    if isinstance(history, Mapping):  # dict of lists
        keys = list(history)
        n = len(history[keys[0]]) if keys else 0
        return [{k: history[k][i] for k in keys} for i in range(n)]
    return [dict(r) for r in history]


def _panels(n: int, max_cols: int = 3):
    """``n`` plot panels, at most ``max_cols`` per row (readable when the page scales the figure down)."""
    plt = _plt()
    cols = min(n, max_cols)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.3 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        fig.delaxes(ax)
    return fig, flat[:n]


def _curve_panels(runs: Mapping[Optional[str], List[Dict[str, float]]], keys: Sequence[str], x: str,
                  title: Optional[str]):
    """One panel per key, one line per run (a legend unless the only run is unnamed); a run keeps its colour on
    every panel, also on one where another run did not log the key."""
    fig, axes = _panels(len(keys))
    cycle = _plt().rcParams["axes.prop_cycle"].by_key()["color"]
    colours = {name: cycle[i % len(cycle)] for i, name in enumerate(runs)}
    for ax, k in zip(axes, keys):
        for name, rows in runs.items():
            pts = [(r.get(x, i), r[k]) for i, r in enumerate(rows) if r.get(k) is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="." if name is None and len(xs) < 40 else None, lw=1.3, label=name,
                        color=colours[name])
        ax.set_xlabel(x)
        ax.set_title(k)
        ax.grid(alpha=0.3)
        if None not in runs:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(history: Any, keys: Optional[Sequence[str]] = None, x: str = "step", title: Optional[str] = None):
    """Training curves: one panel per key (e.g. ``["loss", "dice"]``).

    history: list of dicts (``[{"step": 0, "loss": 1.2}, ...]``), a dict of lists, or a CSV path.
    A row without a key is skipped for that key, so logs with sparse entries (validation Dice
    every k steps) plot fine. ``x`` is the column on the x axis (row index when absent).
    Returns the Figure.
    """
    rows = _read_history(history)
    if not rows:
        raise ValueError("plot_curves: the history is empty; nothing was logged yet")
    if keys is None:
        keys = sorted({k for r in rows for k in r if k != x and isinstance(r[k], (int, float, np.floating))})
    keys = list(keys)
    missing = [k for k in keys if not any(k in r for r in rows)]
    if missing:
        have = sorted({k for r in rows for k in r})
        raise KeyError(f"plot_curves: keys {missing} not in the history; available: {have}")
    return _curve_panels({None: rows}, keys, x, title)


def plot_curves_compare(
    histories: Mapping[str, Any], keys: Sequence[str], x: str = "iter", title: Optional[str] = None
):
    """Several runs on the same panels: ``histories = {"baseline": hist_a, "+SFR": hist_b}``.

    One panel per key, one line per run (legend = the run names); each history is anything
    :func:`plot_curves` accepts. A run that did not log a key is left out of that panel.
    Returns the Figure.
    """
    runs = {name: _read_history(h) for name, h in histories.items()}
    if not runs:
        raise ValueError("plot_curves_compare: no runs given")
    return _curve_panels(runs, keys, x, title)


def plot_case_bars(
    rows: Any,
    metric: str = "dice",
    name_key: str = "name",
    group_key: Optional[str] = None,
    title: Optional[str] = None,
    ax: Any = None,
    mean: bool = True,
    log: bool = False,
    max_names: int = 40,
):
    """Per-case bar chart of ``metric`` with the mean as a dashed line.

    rows: list of dicts (``{"name": ..., "dice": ...}``) or anything with ``.rows`` (a metrics
    table). With ``group_key`` (e.g. ``"method"``) bars are grouped per case, one colour per
    group, and the legend gives each group's mean; when every case belongs to one group only (e.g.
    ``"role"``: labelled / unlabelled / test) each case keeps one bar in its group's colour.
    ``mean=False`` drops the mean line and legend (for counts, where a mean says nothing);
    ``log=True`` uses a log scale. The figure is at most 12 inches wide; with more than
    ``max_names`` cases the names are left out (unreadable at that density) and the axis says how
    many cases there are. Returns the Figure.
    """
    plt = _plt()
    rows = list(getattr(rows, "rows", rows))
    if not rows:
        raise ValueError("plot_case_bars: no rows to plot")
    if any(metric not in r for r in rows):
        raise KeyError(f"plot_case_bars: metric {metric!r} missing from some rows; row keys: {sorted(rows[0])}")
    groups = [None] if group_key is None else list(dict.fromkeys(r[group_key] for r in rows))
    names = list(dict.fromkeys(str(r[name_key]) for r in rows))
    # one bar per case when no case appears in two groups, else the groups side by side per case
    side_by_side = len(rows) > len(names)
    slots = len(names) * (len(groups) if side_by_side else 1)
    fig, ax = _figure_and_axes(ax, (min(12.0, max(5.0, 0.45 * slots + 2)), 3.8))
    width = 0.8 / len(groups) if side_by_side else 0.8
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for gi, g in enumerate(groups):
        sel = [r for r in rows if group_key is None or r[group_key] == g]
        vals = {str(r[name_key]): float(r[metric]) for r in sel}
        xs = np.arange(len(names)) + ((gi - (len(groups) - 1) / 2) * width if side_by_side else 0.0)
        ys = [vals.get(n, np.nan) for n in names]
        avg = float(np.nanmean(list(vals.values())))
        lab = f"{g}: mean {avg:.3f}" if g is not None else f"mean {avg:.3f}"
        if not mean:
            lab = str(g) if g is not None else None
        col = colors[gi % len(colors)]
        ax.bar(xs, ys, width=width, color=col, label=lab)
        if mean:
            ax.axhline(avg, color=col, ls="--", lw=1)
    if len(names) <= max_names:
        ax.set_xticks(np.arange(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{len(names)} cases (names left out)")
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel(metric)
    if log:
        ax.set_yscale("log")
    ax.set_title(title or f"{metric} per case")
    if mean or group_key is not None:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_sfr_comparison(rows: Sequence[Mapping[str, Any]], title: Optional[str] = None):
    """Baseline vs +SFR per method: seed means with error bars (left), paired per-case gains (right).

    rows: one dict per method with ``method``; ``baseline`` and ``sfr`` (each run's mean Dice, one per
    run -- a seed, or a (seed, fold) when the test split rotates -- in [0, 1]); ``diffs`` (per-case Dice difference +SFR - baseline); optional ``p`` (paired test)
    and ``pseudo_label_dice`` (drawn as a reference mark: the Dice of the labels SAM gave the V-Net).
    Returns the Figure.
    """
    plt = _plt()
    rows = [r for r in rows if len(r.get("baseline", ())) and len(r.get("sfr", ()))]
    if not rows:
        raise ValueError("plot_sfr_comparison: no method has both a baseline and a +SFR run")
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 0.55 * len(rows) + 2.4), sharey=True)
    ys = np.arange(len(rows))[::-1]
    rng = np.random.default_rng(0)
    for y, r in zip(ys, rows):
        for vals, col, dy, lab in ((r["baseline"], "#7f7f7f", 0.15, "baseline"), (r["sfr"], PRED_COLOR, -0.15, "+ SFR")):
            v = 100 * np.asarray(vals, dtype=float)
            sd = v.std(ddof=1) if len(v) > 1 else 0.0
            a.errorbar(v.mean(), y + dy, xerr=sd, fmt="o", color=col, capsize=3, label=lab if y == ys[0] else None)
            a.plot(v, np.full(len(v), y + dy), "|", color=col, ms=8, alpha=0.6)
        if r.get("pseudo_label_dice") is not None:
            a.plot(100 * r["pseudo_label_dice"], y, "*", color=GT_COLOR, ms=10,
                   label="SAM pseudo-labels" if y == ys[0] else None)
        d = 100 * np.asarray(r["diffs"], dtype=float)
        b.scatter(d, y + rng.uniform(-0.25, 0.25, len(d)), s=10, alpha=0.5,
                  color=np.where(d > 0, PRED_COLOR, "#7f7f7f"))
        b.plot(d.mean(), y, "D", color="black", ms=6)
        note = f"{d.mean():+.1f}" + (f", p={r['p']:.2g}" if r.get("p") is not None else "")
        b.annotate(note, (1.0, y), xycoords=("axes fraction", "data"), xytext=(4, 0), textcoords="offset points",
                   va="center", fontsize=8)
    a.set_yticks(ys)
    a.set_yticklabels([r["method"] for r in rows])
    a.set_xlabel("Dice %\n(mean ± sd over runs; ticks: runs)")
    a.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)  # above: clear of the rows
    b.axvline(0, color="black", lw=0.8)
    b.set_xlabel("+SFR − baseline Dice per case\n(points; ◆ mean)")
    fig.suptitle(title or "Does SFR help? Baseline vs + SFR", fontsize=11)
    fig.tight_layout()
    return fig


def plot_gain_vs_pseudo_label(pseudo_label_dice: Any, baseline_dice: Any, gain: Any, title: Optional[str] = None, ax: Any = None):
    """Per case: SAM's Dice (x) vs the baseline V-Net's Dice (y), coloured by the +SFR gain.

    Points below the diagonal are cases where SAM's labels beat the baseline: there SFR can help.
    All three arrays are per case, Dice in [0, 1]. Returns the Figure.
    """
    plt = _plt()
    x, y, g = (100 * np.asarray(v, dtype=float) for v in (pseudo_label_dice, baseline_dice, gain))
    fig, ax = _figure_and_axes(ax, (5.2, 4.4))
    lim = max(10.0, np.nanmax(g), -np.nanmin(g))
    sc = ax.scatter(x, y, c=g, cmap="coolwarm_r", vmin=-lim, vmax=lim, s=22, edgecolors="black", linewidths=0.3)
    ax.plot([0, 100], [0, 100], color="black", lw=0.8, ls="--")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("SAM Dice % on the case")
    ax.set_ylabel("baseline V-Net Dice % on the case")
    fig.colorbar(sc, ax=ax, label="+SFR − baseline Dice %")
    ax.set_title(title or "Where can SFR help? (below the diagonal: SAM beats the baseline)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_before_after(before: Mapping[str, float], after: Mapping[str, float], groups: Optional[Mapping[str, str]] = None,
                      labels: Tuple[str, str] = ("before", "after"), title: Optional[str] = None, ax: Any = None):
    """Per case: a score before (x) against after (y), one colour per group; Dice in [0, 1], shown in %.

    Readable where per-case bars are not (tens of cases). Points above the diagonal improved; the
    legend gives each group's size and mean change. Cases missing from ``after`` are skipped.
    Returns the Figure.
    """
    plt = _plt()
    names = [n for n in before if n in after]
    if not names:
        raise ValueError("plot_before_after: no case has both a before and an after value")
    groups = groups or {}
    fig, ax = _figure_and_axes(ax, (5.2, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for gi, g in enumerate(dict.fromkeys(groups.get(n, "") for n in names)):
        sel = [n for n in names if groups.get(n, "") == g]
        x, y = (100 * np.array([d[n] for n in sel], dtype=float) for d in (before, after))
        lab = f"{g + ': ' if g else ''}{len(sel)} cases, mean change {np.mean(y - x):+.1f}"
        ax.scatter(x, y, s=22, color=colors[gi % len(colors)], edgecolors="black", linewidths=0.3, label=lab)
    ax.plot([0, 100], [0, 100], color="black", lw=0.8, ls="--")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel(f"{labels[0]} (Dice %)")
    ax.set_ylabel(f"{labels[1]} (Dice %)")
    ax.legend(fontsize=8, loc="upper left")  # empty unless a case gains a lot
    ax.set_title(title or f"{labels[0]} vs {labels[1]} per case (above the diagonal: better)", fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(fig, path: Union[str, Path], dpi: int = 90) -> Path:
    """Write ``fig`` as a PNG at ``path`` (folders made as needed), close it, return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    return path
