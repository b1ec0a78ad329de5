"""Test-time evaluation: sliding-window inference over whole volumes and a per-case metrics table.

``sliding_window_predict(model, image (H, W, D), patch, stride, C) -> prob (C, H, W, D)`` runs the
V-Net (``(B, 1, h, w, d) -> logits (B, C, h, w, d)``, softmaxed) through
:func:`sfr_teach.sliding_window.sliding_window_average`, the one sliding-window path of the package
(SAM tiles use it too):

* ``mode="constant"`` is the LA protocol of UA-MT's ``test_single_case`` (zero padding split evenly,
  windows at ``min(stride * i, size - patch)``, averaged softmax, padding cropped);
* ``mode="gaussian"`` is MONAI's ``sliding_window_inference`` with Gaussian blending over the same
  window positions.

The model runs in eval mode under ``torch.inference_mode`` (its training flag is restored
afterwards), ``batch_size`` windows per forward pass, with bf16 autocast on CUDA only; the volume and
the score map stay on ``device`` and come back to the host once.

``evaluate_model`` runs that over a list of volumes with labels and returns a :class:`MetricsTable`
(one row per case: name, :func:`sfr_teach.metrics.case_metrics`, flags; mean +- std summary).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
import torch

from .csv_io import write_csv
from .metrics import METRICS, case_metrics, format_mean_std, summarize
from .sliding_window import sliding_window_average, window_positions, window_starts
from .torch_utils import autocast, eval_mode

# window_starts / window_positions live in sfr_teach.sliding_window; named here for existing callers
__all__ = ["window_starts", "window_positions", "sliding_window_predict", "evaluate_model", "MetricsTable"]


def _check_args(image: np.ndarray, patch: Sequence[int], stride: Sequence[int]) -> None:
    if np.ndim(image) != 3:
        raise ValueError(
            f"sliding_window_predict expects one image shaped (H, W, D), got shape {np.shape(image)}; "
            "drop batch/channel axes (image[0, 0]) first"
        )
    if len(patch) != 3 or len(stride) != 3:
        raise ValueError(f"patch_size and stride need three numbers each, got {patch} and {stride}")


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
    _check_args(image, patch_size, stride)
    device = torch.device(device)
    param = next(iter(model.parameters()), None)
    if param is not None and param.device.type != device.type:
        raise ValueError(f"the model is on {param.device} but device={device}; call model.to({str(device)!r}) first")

    def predict(batch: torch.Tensor) -> torch.Tensor:
        with autocast(device):
            logits = model(batch)
        if logits.shape[1] != num_classes:
            raise ValueError(
                f"the model returned {logits.shape[1]} channels but num_classes={num_classes}; "
                "pass the number of classes the model was built with (background included)"
            )
        return torch.softmax(logits.float(), dim=1)

    x = torch.as_tensor(np.asarray(image, np.float32)).to(device)
    with eval_mode(model):
        prob = sliding_window_average(predict, x, patch_size, stride, batch_size, mode)
    return prob.cpu().numpy()


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
        return write_csv(path, self.rows, self.columns)

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
