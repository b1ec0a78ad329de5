"""Test-time evaluation: sliding-window inference over whole volumes and a per-case metrics table.

``sliding_window_predict(model, image (H, W, D), patch, stride, C) -> prob (C, H, W, D)``:

* ``mode="constant"`` is the LA protocol of UA-MT's ``test_single_case``: pad the volume
  (zeros, split evenly) to at least the patch, slide windows starting at
  ``min(stride * i, size - patch)`` for ``i = 0 .. ceil((size - patch) / stride)`` along every
  axis, add each window's softmax into a score map, divide by the count map, crop the padding.
  MONAI's ``sliding_window_inference(mode="constant")`` gives the same numbers when its
  per-axis ``overlap`` is ``1 - (stride + 0.5) / patch`` (its scan interval is
  ``int(patch * (1 - overlap))`` and its window starts follow the same rule); the test checks it.
  We keep our own loop because it is the protocol the literature's numbers come from, written
  out for students.
* ``mode="gaussian"`` is MONAI's ``sliding_window_inference`` with Gaussian blending
  (``sigma_scale=0.125``) over the same window positions, the model output softmaxed.

The model maps ``(B, 1, h, w, d)`` to logits ``(B, C, h, w, d)``; it runs in eval mode under
``torch.inference_mode`` (its training flag is restored afterwards), with bf16 autocast on CUDA only.

``evaluate_model`` runs that over a list of volumes with labels and returns a :class:`MetricsTable`
(one row per case: name, :func:`sfr_teach.metrics.case_metrics`, flags; mean +- std summary).
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .metrics import METRICS, case_metrics, format_mean_std, summarize

__all__ = ["window_starts", "window_positions", "sliding_window_predict", "evaluate_model", "MetricsTable"]

Triple = Tuple[int, int, int]


def window_starts(size: int, patch: int, stride: int) -> List[int]:
    """Window starts along one axis of ``size`` (>= ``patch``): ``min(stride * i, size - patch)``.

    ``ceil((size - patch) / stride) + 1`` windows, the last one flush with the end (190, 112, 18 ->
    [0, 18, 36, 54, 72, 78]).
    """
    if size < patch:
        raise ValueError(f"axis of size {size} is smaller than the patch {patch}; pad it first")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    n = math.ceil((size - patch) / stride) + 1
    return [min(stride * i, size - patch) for i in range(n)]


def _pad_amounts(shape: Sequence[int], patch: Sequence[int]) -> List[Tuple[int, int]]:
    """UA-MT's padding: ``(p // 2, p - p // 2)`` with ``p = max(patch - size, 0)`` per axis."""
    return [(max(p - s, 0) // 2, max(p - s, 0) - max(p - s, 0) // 2) for s, p in zip(shape, patch)]


def window_positions(shape: Sequence[int], patch: Sequence[int], stride: Sequence[int]) -> List[Triple]:
    """All window corners ``(x, y, z)`` in the (padded) volume, x slowest, as UA-MT loops."""
    padded = [s + a + b for s, (a, b) in zip(shape, _pad_amounts(shape, patch))]
    axes = [window_starts(s, p, st) for s, p, st in zip(padded, patch, stride)]
    return list(product(*axes))  # type: ignore[arg-type]


def _check_args(image: np.ndarray, patch: Sequence[int], stride: Sequence[int], mode: str) -> None:
    if np.ndim(image) != 3:
        raise ValueError(
            f"sliding_window_predict expects one image shaped (H, W, D), got shape {np.shape(image)}; "
            "drop batch/channel axes (image[0, 0]) first"
        )
    if len(patch) != 3 or len(stride) != 3:
        raise ValueError(f"patch_size and stride need three numbers each, got {patch} and {stride}")
    if mode not in ("constant", "gaussian"):
        raise ValueError(f"mode must be 'constant' (LA protocol) or 'gaussian' (MONAI), got {mode!r}")


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def sliding_window_predict(
    model: torch.nn.Module,
    image: np.ndarray,
    patch_size: Sequence[int],
    stride: Sequence[int],
    num_classes: int,
    mode: str = "constant",
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 1,
) -> np.ndarray:
    """Class probabilities ``(C, H, W, D)`` float32 of a whole ``image (H, W, D)`` (see module docstring)."""
    _check_args(image, patch_size, stride, mode)
    device = torch.device(device)
    param = next(iter(model.parameters()), None)
    if param is not None and param.device.type != device.type:
        raise ValueError(f"the model is on {param.device} but device={device}; call model.to({str(device)!r}) first")
    patch, stride = tuple(int(p) for p in patch_size), tuple(int(s) for s in stride)
    pads = _pad_amounts(image.shape, patch)
    x = torch.from_numpy(np.pad(np.asarray(image, np.float32), pads, mode="constant")).to(device)

    def predict(batch: torch.Tensor) -> torch.Tensor:
        with _autocast(device):
            logits = model(batch)
        if logits.shape[1] != num_classes:
            raise ValueError(
                f"the model returned {logits.shape[1]} channels but num_classes={num_classes}; "
                "pass the number of classes the model was built with (background included)"
            )
        return torch.softmax(logits.float(), dim=1)

    with _eval_mode(model), torch.inference_mode():
        if mode == "gaussian":
            from monai.inferers import sliding_window_inference

            overlap = [1.0 - (s + 0.5) / p for s, p in zip(stride, patch)]
            score = sliding_window_inference(
                x[None, None], patch, batch_size, predict, overlap=overlap, mode="gaussian", device=device
            )[0]
        else:
            score = torch.zeros((num_classes, *x.shape), dtype=torch.float32, device=device)
            count = torch.zeros(x.shape, dtype=torch.float32, device=device)
            corners = window_positions(image.shape, patch, stride)
            for i in range(0, len(corners), batch_size):
                chunk = corners[i : i + batch_size]
                boxes = [tuple(slice(c, c + p) for c, p in zip(corner, patch)) for corner in chunk]
                probs = predict(torch.stack([x[b] for b in boxes])[:, None])
                for b, pr in zip(boxes, probs):
                    score[(slice(None), *b)] += pr
                    count[b] += 1
            score /= count
    crop = tuple(slice(a, a + s) for (a, _), s in zip(pads, image.shape))
    return score[(slice(None), *crop)].float().cpu().numpy()


# --------------------------------------------------------------------------- metrics table


def json_safe(v: Any) -> Any:
    """Plain-JSON version of a metrics value (NaN -> null; numpy scalars -> Python)."""
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(v) else float(v)  # JSON has no NaN: null, the flags say why
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v


@dataclass
class MetricsTable:
    """Per-case metrics: ``rows`` (one dict per case: ``name``, metrics, ``pred_empty``/``gt_empty``).

    ``summary`` is :func:`sfr_teach.metrics.summarize` of the rows (mean, std, counts, NaNs left out);
    ``info`` records how the numbers were made (mode, patch, stride, ...).
    """

    rows: List[Dict[str, Any]] = field(default_factory=list)
    info: Dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> Dict[str, Dict[str, float]]:
        return summarize(self.rows)

    @property
    def columns(self) -> List[str]:
        cols: List[str] = []
        for r in self.rows:
            cols += [k for k in r if k not in cols]
        return cols

    def __len__(self) -> int:
        return len(self.rows)

    def to_csv(self, path: Union[str, Path]) -> Path:
        """One line per case; NaN distances are written as ``nan``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)
        return path

    def to_json(self, path: Union[str, Path]) -> Path:
        """``{"info", "summary", "cases"}``; NaN becomes ``null`` (the flags say why)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"info": self.info, "summary": self.summary, "cases": self.rows}
        path.write_text(json.dumps(json_safe(doc), indent=2))
        return path

    def to_dataframe(self):
        """The rows as a pandas DataFrame (pandas is optional: install it to use this)."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("MetricsTable.to_dataframe needs pandas (pip install pandas); use .rows or .to_csv") from e
        return pd.DataFrame(self.rows)

    def format(self, metrics: Sequence[str] = METRICS, digits: int = 2) -> str:
        """A plain-text table: one line per case, then ``mean ± std``. Dice/Jaccard in %, distances in mm."""
        metrics = [m for m in metrics if any(m in r for r in self.rows)]
        scale = {"dice": 100.0, "jaccard": 100.0}
        head = ["case"] + [m + (" %" if m in scale else " mm") for m in metrics] + ["flags"]
        lines = []
        for r in self.rows:
            flags = [f for f in ("pred_empty", "gt_empty") if r.get(f)]
            cells = [str(r.get("name", ""))]
            cells += [format_mean_std(r[m], None, digits, scale.get(m, 1.0)) for m in metrics]
            lines.append(cells + [",".join(flags)])
        s = self.summary
        lines.append(["mean ± std"] + [format_mean_std(s[m], digits=digits, scale=scale.get(m, 1.0)) for m in metrics] + [
            ", ".join(f"{s[f]['count']} {f}" for f in ("pred_empty", "gt_empty") if s.get(f, {}).get("count"))
        ])
        widths = [max(len(str(row[i])) for row in [head] + lines) for i in range(len(head))]
        fmt = lambda row: "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
        rule = "-" * len(fmt(head))
        return "\n".join([fmt(head), rule] + [fmt(r) for r in lines[:-1]] + [rule, fmt(lines[-1])])

    def __str__(self) -> str:
        return self.format()


def _save_prediction(pred: np.ndarray, vol: Any, folder: Path) -> Path:
    import nibabel as nib

    affine = getattr(vol, "affine", None)
    if affine is None:
        affine = np.diag([*(float(s) for s in vol.spacing), 1.0])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{vol.name}.nii.gz"
    img = nib.Nifti1Image(pred.astype(np.uint8), np.asarray(affine, dtype=np.float64))
    img.header.set_zooms(tuple(float(s) for s in vol.spacing))
    nib.save(img, str(path))
    return path


def evaluate_model(
    model: torch.nn.Module,
    volumes: Iterable[Any],
    eval_cfg: Any,
    num_classes: int,
    device: Union[str, torch.device] = "cpu",
    out_dir: Optional[Union[str, Path]] = None,
    save_predictions: bool = False,
    progress: bool = True,
) -> MetricsTable:
    """Sliding-window predict every volume, argmax, score it against its label.

    volumes: objects with ``.name``, ``.image`` (H, W, D) float32, ``.label`` (H, W, D) and ``.spacing``
    (mm, used by HD95/ASD) -- e.g. :class:`sfr_teach.data.Volume`. eval_cfg: an
    :class:`sfr_teach.config.EvalConfig` (patch_size, stride, mode, batch_size, distance_metrics).
    With ``save_predictions``, writes ``<out_dir>/predictions/<name>.nii.gz`` (uint8, spacing in the affine).
    """
    from tqdm.auto import tqdm

    volumes = list(volumes)
    if save_predictions and out_dir is None:
        raise ValueError("save_predictions=True needs an out_dir to write <out_dir>/predictions/<name>.nii.gz")
    for v in volumes:
        if getattr(v, "label", None) is None:
            raise ValueError(
                f"volume {getattr(v, 'name', '?')!r} has no label; evaluation needs ground truth "
                "(evaluate the test / validation split, not the unlabelled one)"
            )
    table = MetricsTable(info={
        "mode": eval_cfg.mode,
        "patch_size": list(eval_cfg.patch_size),
        "stride": list(eval_cfg.stride),
        "num_classes": int(num_classes),
        "distance_metrics": bool(eval_cfg.distance_metrics),
        "cases": len(volumes),
    })
    for v in tqdm(volumes, desc="evaluate", disable=not progress or len(volumes) < 2):
        prob = sliding_window_predict(
            model, v.image, eval_cfg.patch_size, eval_cfg.stride, num_classes,
            mode=eval_cfg.mode, device=device, batch_size=eval_cfg.batch_size,
        )
        pred = prob.argmax(axis=0).astype(np.uint8)
        row: Dict[str, Any] = {"name": str(v.name)}
        row.update(case_metrics(pred, np.asarray(v.label), num_classes, v.spacing, eval_cfg.distance_metrics))
        table.rows.append(row)
        if save_predictions:
            _save_prediction(pred, v, Path(out_dir) / "predictions")  # type: ignore[arg-type]
    return table
