"""Pseudo-labels from the fine-tuned SAM, their confidence, and one SFR+ round.

* :func:`confidence` -- SFR+'s score of a prediction ``prob (C, H, W, D)``:

  - ``"mean_max"`` (the paper): mean over all voxels of the max class probability;
  - ``"foreground_band"`` (ours, optional): the same mean restricted to the predicted foreground
    and a ``band``-voxel dilation around it. In LA most voxels are confidently background, which
    pushes ``mean_max`` towards 1 for every volume; the band score looks only where the
    segmentation is decided. A volume with no predicted foreground scores 0.

* :func:`generate_pseudo_labels` writes, per volume, ``<name>.npz`` (``label`` uint8 +
  ``prob`` float16, compressed) and ``<name>.nii.gz`` (the label; voxel size from
  ``volume.spacing`` when present), plus ``summary.csv`` / ``summary.json`` (name, confidence,
  foreground fraction, and the Dice against the ground truth when the volume carries one --
  **for teaching only**: a real semi-supervised run has no such labels and never uses them).
* :func:`split_by_confidence` / :func:`sfr_plus_round` -- SFR+: high-confidence pseudo-labelled
  volumes join the fine-tuning set, SAM is fine-tuned again and re-predicts the rest.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from ..csv_io import write_csv
from ..data.nifti import save_nifti
from ..metrics import dice
from .finetune import finetune
from .mosaics import as_pair
from .predict import predict_volume

__all__ = [
    "PseudoLabel",
    "confidence",
    "dice_score",
    "class_dice",
    "class_confidence",
    "largest_component",
    "generate_pseudo_labels",
    "load_pseudo_labels",
    "split_by_confidence",
    "sfr_plus_round",
]


@dataclass
class PseudoLabel:
    """SAM's prediction for one volume: label uint8 (H, W, D), prob float32|16 (C, H, W, D)."""

    name: str
    label: np.ndarray
    prob: np.ndarray
    confidence: float
    foreground_fraction: float
    dice: Optional[float] = None  # vs ground truth, teaching only
    class_confidence: Optional[List[float]] = None  # per class c: mean prob[c] where c is predicted (NaN: never)
    class_dice: Optional[List[float]] = None  # per foreground class 1..C-1 vs ground truth, teaching only


def confidence(prob: np.ndarray, mode: str = "mean_max", band: int = 3) -> float:
    """Confidence of a prediction ``prob (C, H, W, D)`` (see the module doc for the modes)."""
    prob = np.asarray(prob, dtype=np.float32)
    pmax = prob.max(0)
    if mode == "mean_max":
        return float(pmax.mean())
    if mode == "foreground_band":
        fg = prob.argmax(0) > 0
        if not fg.any():
            return 0.0
        region = ndimage.binary_dilation(fg, iterations=int(band)) if band > 0 else fg
        return float(pmax[region].mean())
    raise ValueError(f"unknown confidence mode {mode!r}; choose 'mean_max' or 'foreground_band'")


def class_confidence(prob: np.ndarray) -> List[float]:
    """Per class ``c`` of ``prob (C, H, W, D)``: the mean probability of ``c`` over the voxels predicted
    as ``c`` (how sure SAM is where it says ``c``); NaN for a class it never predicts."""
    prob = np.asarray(prob, dtype=np.float32)
    pred = prob.argmax(0)
    return [float(prob[c][pred == c].mean()) if (pred == c).any() else float("nan") for c in range(prob.shape[0])]


def largest_component(label: np.ndarray) -> np.ndarray:
    """Keep, per foreground class, only its largest 26-connected component (uint8 (H, W, D)).

    A common clean-up for single-structure targets such as the left atrium; optional in
    :func:`generate_pseudo_labels` (``largest_cc=True``)."""
    out = np.zeros_like(label)
    for c in np.unique(label):
        if c == 0:
            continue
        comp, n = ndimage.label(label == c, structure=np.ones((3, 3, 3)))
        if n:
            sizes = np.bincount(comp.ravel())[1:]
            out[comp == 1 + int(sizes.argmax())] = c
    return out


def dice_score(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> float:
    """Mean :func:`sfr_teach.metrics.dice` over the foreground classes 1..C-1 (both empty -> 1)."""
    return float(np.mean(class_dice(pred, truth, num_classes)))


def class_dice(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> List[float]:
    """:func:`sfr_teach.metrics.dice` of each foreground class 1..C-1 (both empty -> 1)."""
    return [dice(pred == c, truth == c) for c in range(1, num_classes)]


def _save_one(out: Path, pl: PseudoLabel, spacing: Optional[Sequence[float]]) -> None:
    np.savez_compressed(out / f"{pl.name}.npz", label=pl.label, prob=pl.prob.astype(np.float16))
    save_nifti(pl.label, out / f"{pl.name}.nii.gz", spacing=spacing)


def _write_summary(out: Path, pls: Sequence[PseudoLabel]) -> None:
    rows = [{"name": p.name, "confidence": p.confidence, "foreground_fraction": p.foreground_fraction,
             "dice": p.dice, "class_confidence": p.class_confidence, "class_dice": p.class_dice} for p in pls]
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    flat = []
    for r in rows:  # the CSV spreads the per-class lists over columns confidence_<c> / dice_<c>
        row = {k: v for k, v in r.items() if not k.startswith("class_")}
        row.update({f"confidence_{c}": v for c, v in enumerate(r["class_confidence"] or [])})
        row.update({f"dice_{c + 1}": v for c, v in enumerate(r["class_dice"] or [])})
        flat.append(row)
    write_csv(out / "summary.csv", flat)  # columns in first-seen order


def generate_pseudo_labels(
    segmenter: Any,
    volumes: Sequence[Any],
    sam_cfg: Any,
    out_dir: Optional[str | Path] = None,
    device: str = "cpu",
    conf_mode: str = "mean_max",
    progress: bool = True,
    normalize: bool = True,
    largest_cc: bool = False,
) -> List[PseudoLabel]:
    """Predict every volume (:func:`~sfr_teach.sam.predict.predict_volume` with the fine-tuning
    geometry of ``sam_cfg``) and return one :class:`PseudoLabel` each; saved when ``out_dir``.
    ``largest_cc``: keep only the largest connected component per class in the label (the
    probabilities and the confidence are left as predicted)."""
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    result = []
    for i, vol in enumerate(tqdm(volumes, desc="pseudo-labels", disable=not progress)):
        name, image, truth = as_pair(vol)
        name = name if not isinstance(vol, (tuple, list)) else f"volume_{i:03d}"
        label, prob = predict_volume(segmenter, image, sam_cfg.crop_size, sam_cfg.image_size, device,
                                     sam_cfg.predict_batch_size, normalize=normalize)
        num_classes = prob.shape[0]
        if largest_cc:
            label = largest_component(label)
        per_class = class_dice(label, truth, num_classes) if truth is not None else None
        pl = PseudoLabel(name, label, prob, confidence(prob, conf_mode), float((label > 0).mean()),
                         float(np.mean(per_class)) if per_class is not None else None, class_confidence(prob), per_class)
        if out is not None:
            _save_one(out, pl, getattr(vol, "spacing", None))
        result.append(pl)
    if out is not None:
        _write_summary(out, result)
    return result


def load_pseudo_labels(out_dir: str | Path) -> List[PseudoLabel]:
    """Read back what :func:`generate_pseudo_labels` saved (in ``summary.json`` order)."""
    out = Path(out_dir)
    summary = out / "summary.json"
    if not summary.is_file():
        raise FileNotFoundError(f"{summary} not found; run generate_pseudo_labels(..., out_dir={str(out)!r}) first")
    result = []
    for row in json.loads(summary.read_text()):
        path = out / f"{row['name']}.npz"
        if not path.is_file():
            raise FileNotFoundError(f"{path} listed in {summary} is missing; re-generate the pseudo-labels")
        with np.load(path) as z:
            result.append(PseudoLabel(row["name"], z["label"], z["prob"], float(row["confidence"]),
                                      float(row["foreground_fraction"]), row.get("dice"),
                                      row.get("class_confidence"), row.get("class_dice")))
    return result


def split_by_confidence(pseudo_labels: Sequence[PseudoLabel], tau: float) -> Tuple[List[PseudoLabel], List[PseudoLabel]]:
    """``(high, low)``: confidence >= tau joins SAM's fine-tuning set (SFR+), the rest re-trains.

    ``tau``: ``SamConfig.tau`` (the paper's 0.985 is its default, stated there only)."""
    high = [p for p in pseudo_labels if p.confidence >= tau]
    low = [p for p in pseudo_labels if p.confidence < tau]
    return high, low


@dataclass
class _Pseudo:
    """A volume carrying a pseudo-label in place of its ground truth (duck-typed Volume)."""

    name: str
    image: np.ndarray
    label: np.ndarray
    spacing: Tuple[float, float, float] = (1.0, 1.0, 1.0)


def sfr_plus_round(
    segmenter: Any,
    labeled_volumes: Sequence[Any],
    pseudo_labels: Sequence[PseudoLabel],
    sam_cfg: Any,
    unlabeled_volumes: Sequence[Any],
    out_dir: Optional[str | Path] = None,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> Dict[str, Any]:
    """One SFR+ step. ``pseudo_labels[i]`` must be the prediction of ``unlabeled_volumes[i]``.

    High-confidence volumes (``>= sam_cfg.tau``; their image + pseudo-label) join
    ``labeled_volumes``; ``segmenter`` is fine-tuned again on that set (continuing from its
    current weights, a fresh optimizer, ``sam_cfg.sfr_plus_steps`` or ``steps`` steps, in
    ``<out_dir>/finetune``), then re-predicts the low-confidence volumes
    (``<out_dir>/pseudo``). Returns ``{"high": [...], "low": [...], "pseudo_labels": new
    low-confidence PseudoLabels, "history": fine-tuning history}``. With no high-confidence
    volume SAM is not retrained and the low set keeps its pseudo-labels.
    """
    if len(pseudo_labels) != len(unlabeled_volumes):
        raise ValueError(f"{len(pseudo_labels)} pseudo-labels for {len(unlabeled_volumes)} unlabelled volumes")
    by_name = {pl.name: (pl, vol) for pl, vol in zip(pseudo_labels, unlabeled_volumes)}
    high, low = split_by_confidence(pseudo_labels, sam_cfg.tau)
    if not high:
        return {"high": [], "low": low, "pseudo_labels": list(low), "history": []}
    extra = [_Pseudo(p.name, as_pair(by_name[p.name][1])[1], p.label,
                     getattr(by_name[p.name][1], "spacing", (1.0, 1.0, 1.0))) for p in high]
    cfg = copy.deepcopy(sam_cfg)
    cfg.steps = sam_cfg.sfr_plus_steps or sam_cfg.steps
    out = Path(out_dir) if out_dir is not None else None
    history = finetune(segmenter, list(labeled_volumes) + extra, cfg, out / "finetune" if out else None,
                       device, seed, resume=True, progress=progress)
    low_vols = [by_name[p.name][1] for p in low]
    new = generate_pseudo_labels(segmenter, low_vols, sam_cfg, out / "pseudo" if out else None, device,
                                 progress=progress) if low_vols else []
    for pl, old in zip(new, low):
        pl.name = old.name
    return {"high": high, "low": low, "pseudo_labels": new, "history": history}
