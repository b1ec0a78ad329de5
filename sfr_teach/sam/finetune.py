"""Fine-tune SAM on stitched mosaics of labelled volumes (stage 2 of SFR).

One training sample (:class:`MosaicDataset`)::

    labelled volume (H, W, D) --z-score over the volume (normalize=True)-->
      --rot90 k*90 deg + flip in the axial (H, W) plane--> (volume-level)
      --random crop ``crop_size`` (padded when the volume is smaller: image 0, label 255)-->
      --Bezier intensity curve with probability ``intensity_prob``-->
      --stitch (sfr_teach.stitching, out_size=S)--> image (1, S, S) float32, label (S, S) int64
    padding and empty grid cells carry the ignore index 255.

Sample ``i`` is drawn with its own generator ``default_rng([seed, i])``, so the data stream is a
pure function of the seed and the step -- a resumed run sees exactly the batches it would have.

Loss ``w * CE + (1 - w) * Dice`` (``w = SamConfig.ce_weight``; official SFR 0.5, SAMed 0.2): CE
skips the 255 pixels; Dice is our own soft Dice over all classes (background included, as SAMed /
the official code), summed over the batch and the valid pixels only (MONAI's DiceLoss has no
ignore index). AdamW(lr, weight_decay); the learning rate rises linearly for ``warmup`` steps
then decays as ``(1 - progress) ** 0.9``. bf16 autocast on CUDA only; ``grad_accum``
micro-batches of ``batch_size`` per optimizer step.

Checkpoints (``<out_dir>/sam_finetune_ckpt.pt``) hold only the *trainable* parameters (LoRA +
mask decoder, or everything for ``finetune="full"``), the optimizer, scheduler, step, history and
torch RNG states; the frozen weights are rebuilt by :func:`~sfr_teach.sam.build.build_sam` with
the same seed / checkpoint. ``<out_dir>/sam_log.csv`` / ``sam_log.json`` log every step;
``<out_dir>/sam_trainable.pt`` holds the final trainable weights (:func:`load_trainable`).
"""
from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data.volume import zscore
from ..stitching import make_layout, stitch
from .lora import set_trainable

__all__ = [
    "IGNORE_INDEX",
    "MosaicDataset",
    "as_pair",
    "bezier_intensity",
    "zscore",
    "dice_ce_loss",
    "warmup_poly",
    "save_trainable",
    "load_trainable",
    "finetune",
]

IGNORE_INDEX = 255
CKPT_NAME = "sam_finetune_ckpt.pt"
FINAL_NAME = "sam_trainable.pt"


def as_pair(vol: Any) -> Tuple[str, np.ndarray, Optional[np.ndarray]]:
    """``(name, image (H, W, D) float32, label (H, W, D) uint8 | None)`` from a Volume-like object
    (``.name/.image/.label``) or an ``(image, label)`` tuple."""
    if isinstance(vol, (tuple, list)):
        image, label = vol
        name = "volume"
    else:
        image, label, name = vol.image, getattr(vol, "label", None), getattr(vol, "name", "volume")
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"{name}: expected an image shaped (H, W, D), got {image.shape}")
    if label is not None:
        label = np.asarray(label)
        if label.shape != image.shape:
            raise ValueError(f"{name}: label shape {label.shape} differs from image shape {image.shape}")
    return name, image, label


def bezier_intensity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random monotone-or-not Bezier curve applied to the intensities (the official SFR / Models
    Genesis non-linear augmentation): rescale to [0, 1], map through a cubic Bezier curve with
    end points (0, 0), (1, 1) and two random control points, rescale back to the original range."""
    lo, hi = float(image.min()), float(image.max())
    if hi <= lo:
        return image
    p = np.array([[0.0, 0.0], *rng.random((2, 2)), [1.0, 1.0]])
    t = np.linspace(0.0, 1.0, 256)[:, None]
    curve = (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t**2 * p[2] + t**3 * p[3]
    order = np.argsort(curve[:, 0])
    x = (image - lo) / (hi - lo)
    return (np.interp(x, curve[order, 0], curve[order, 1]) * (hi - lo) + lo).astype(np.float32)


def _random_crop(image: np.ndarray, label: np.ndarray, crop: Sequence[int], rng: np.random.Generator):
    """Random ``crop`` of (image, label); axes shorter than the crop are padded (image 0, label 255)."""
    pads = [(0, max(0, c - n)) for n, c in zip(image.shape, crop)]
    if any(p[1] for p in pads):
        pads = [(p // 2, p - p // 2) for _, p in pads]
        image = np.pad(image, pads, constant_values=0)
        label = np.pad(label, pads, constant_values=IGNORE_INDEX)
    starts = [int(rng.integers(0, n - c + 1)) for n, c in zip(image.shape, crop)]
    sl = tuple(slice(s, s + c) for s, c in zip(starts, crop))
    return image[sl], label[sl]


class MosaicDataset(torch.utils.data.Dataset):
    """Labelled volumes -> stitched training mosaics (see the module doc).

    ``ds[i] -> (image (1, S, S) float32, label (S, S) int64)``; ``len(ds) = length``.
    Args: volumes (Volume-like or (image, label)); crop_size (h, w, d); image_size S;
    augment: random rot90/flip (needs h == w for 90/270 degree turns, else only 0/180);
    intensity_prob: probability of the Bezier intensity curve (:func:`bezier_intensity`, applied
    to the crop when ``augment``; the official code uses 0.5); seed; num_classes (labels are
    checked against it); normalize: z-score each volume first (:func:`zscore`).
    """

    def __init__(self, volumes: Sequence[Any], crop_size: Sequence[int], image_size: int, augment: bool = True,
                 seed: int = 0, length: int = 10**9, num_classes: Optional[int] = None,
                 intensity_prob: float = 0.0, normalize: bool = True) -> None:
        self.items = []
        for v in volumes:
            name, image, label = as_pair(v)
            if label is None:
                raise ValueError(f"{name}: fine-tuning needs labelled volumes, this one has no label")
            if num_classes is not None and int(label.max()) >= num_classes:
                raise ValueError(f"{name}: label value {int(label.max())} >= num_classes={num_classes}; "
                                 "set num_classes (background included) to cover every class")
            self.items.append((name, zscore(image) if normalize else image, label.astype(np.uint8)))
        if not self.items:
            raise ValueError("fine-tuning needs at least one labelled volume, got none")
        self.crop = tuple(int(c) for c in crop_size)
        self.layout = make_layout(self.crop, image_size)
        self.augment, self.seed, self.length = augment, int(seed), int(length)
        self.intensity_prob = float(intensity_prob)

    def __len__(self) -> int:
        return self.length

    def sample(self, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        """One augmented crop ``(image (h, w, d), label (h, w, d))`` before stitching."""
        _, image, label = self.items[int(rng.integers(len(self.items)))]
        if self.augment:
            k = int(rng.integers(4)) if self.crop[0] == self.crop[1] else 2 * int(rng.integers(2))
            image, label = np.rot90(image, k, axes=(0, 1)), np.rot90(label, k, axes=(0, 1))
            if rng.random() < 0.5:
                ax = int(rng.integers(2))
                image, label = np.flip(image, ax), np.flip(label, ax)
        image, label = _random_crop(image, label, self.crop, rng)
        if self.augment and self.intensity_prob > 0 and rng.random() < self.intensity_prob:
            image = bezier_intensity(image, rng)
        return image, label

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        image, label = self.sample(np.random.default_rng([self.seed, int(i)]))
        img = stitch(np.ascontiguousarray(image, dtype=np.float32), self.layout, fill=0)
        lab = stitch(np.ascontiguousarray(label), self.layout, is_label=True, fill=IGNORE_INDEX)
        return torch.from_numpy(img)[None], torch.from_numpy(lab.astype(np.int64))

    def batch(self, start: int, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Samples ``start .. start+size-1`` stacked: (size, 1, S, S), (size, S, S)."""
        xs, ys = zip(*(self[start + j] for j in range(size)))
        return torch.stack(xs), torch.stack(ys)


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, ce_weight: float = 0.5,
                 ignore_index: int = IGNORE_INDEX, eps: float = 1e-5) -> Tuple[torch.Tensor, Dict[str, float]]:
    """``w * CE + (1 - w) * (1 - mean_c Dice_c)`` on logits (B, C, S, S), target (B, S, S) int64.

    Pixels equal to ``ignore_index`` count in neither term. Returns (loss, {"ce", "dice"}).
    """
    logits = logits.float()
    ce = F.cross_entropy(logits, target, ignore_index=ignore_index)
    valid = (target != ignore_index).unsqueeze(1)  # (B, 1, S, S)
    prob = logits.softmax(1) * valid
    onehot = F.one_hot(target.clamp(max=logits.shape[1] - 1) * valid[:, 0], logits.shape[1]).permute(0, 3, 1, 2)
    onehot = onehot * valid
    inter = (prob * onehot).sum((0, 2, 3))
    denom = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    dice = 1.0 - ((2 * inter + eps) / (denom + eps)).mean()
    loss = ce_weight * ce + (1.0 - ce_weight) * dice
    return loss, {"ce": float(ce.detach()), "dice": float(dice.detach())}


def warmup_poly(step: int, total: int, warmup: int, power: float = 0.9) -> float:
    """LR multiplier: linear warm-up ``(step+1)/warmup`` then ``(1 - p) ** power`` decay."""
    if step < warmup:
        return (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return max(0.0, 1.0 - p) ** power


def trainable_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_trainable(model: nn.Module, path: str | Path) -> Path:
    """Save only the trainable parameters (LoRA + decoder, or all) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"trainable": trainable_state(model)}, path)
    return path


def _load_params(model: nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    params = dict(model.named_parameters())
    missing = [k for k in state if k not in params]
    if missing:
        hint = " (LoRA weights: call apply_lora / set_trainable first)" if any("lora_" in k for k in missing) else ""
        raise ValueError(f"{source}: {len(missing)} saved parameters are not in this model, e.g. {missing[:3]}{hint}; "
                         "build the model with the same model_type / sizes / num_classes")
    with torch.no_grad():
        for k, v in state.items():
            if params[k].shape != v.shape:
                raise ValueError(f"{source}: {k} has shape {tuple(v.shape)}, the model {tuple(params[k].shape)}")
            params[k].copy_(v)


def load_trainable(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights written by :func:`save_trainable` (or a fine-tuning checkpoint) into ``model``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SAM weights {path} not found; run fine-tuning first (sfr_teach.sam.finetune)")
    _load_params(model, torch.load(path, map_location="cpu", weights_only=False)["trainable"], str(path))
    return model


def _write_log(out: Path, history: List[Dict[str, float]]) -> None:
    (out / "sam_log.json").write_text(json.dumps(history, indent=1))
    if history:
        with open(out / "sam_log.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(history[0]))
            w.writeheader()
            w.writerows(history)


def finetune(
    segmenter: nn.Module,
    volumes: Sequence[Any],
    sam_cfg: Any,
    out_dir: Optional[str | Path] = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    resume: bool = True,
    progress: bool = True,
    stop_after: Optional[int] = None,
    ckpt_every: int = 50,
    intensity_prob: float = 0.5,
    normalize: bool = True,
) -> List[Dict[str, float]]:
    """Fine-tune ``segmenter`` on stitched crops of the labelled ``volumes``; returns the history.

    Reads ``sam_cfg`` (:class:`~sfr_teach.config.SamConfig`): finetune, lora_*, crop_size,
    image_size, steps, batch_size, grad_accum, lr, weight_decay, warmup, ce_weight, augment.
    ``out_dir``: where the checkpoint / log / final weights go (None: nothing is written, no
    resume). ``resume``: continue from ``<out_dir>/sam_finetune_ckpt.pt`` when present.
    ``stop_after``: stop (with a checkpoint) after that many optimizer steps -- the schedule still
    runs to ``sam_cfg.steps``, so a later resumed call finishes the same run.
    ``normalize``: z-score every volume first (predict with the same setting).
    ``intensity_prob``: rate of the Bezier intensity augmentation when ``sam_cfg.augment`` (see
    :class:`MosaicDataset`; 0.5 as the official code -- on classroom LA it lifts the pseudo-label
    Dice from 0.46 to 0.55, see benchmarks/sam_classroom_la.py).
    History rows: ``{"step", "loss", "ce", "dice", "lr", "seconds"}`` (one per optimizer step).
    The model is left in eval mode on ``device``.
    """
    device = torch.device(device)
    set_trainable(segmenter, sam_cfg)
    segmenter.to(device)
    num_classes = getattr(segmenter, "num_classes", None)
    ds = MosaicDataset(volumes, sam_cfg.crop_size, sam_cfg.image_size, sam_cfg.augment, seed, num_classes=num_classes,
                       intensity_prob=intensity_prob, normalize=normalize)
    params = [p for p in segmenter.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=sam_cfg.lr, weight_decay=sam_cfg.weight_decay)
    total = int(sam_cfg.steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_poly(s, total, int(sam_cfg.warmup)))
    out = Path(out_dir) if out_dir is not None else None
    ckpt = out / CKPT_NAME if out is not None else None
    history: List[Dict[str, float]] = []
    start = 0
    torch.manual_seed(seed)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if resume and ckpt.is_file():
            state = torch.load(ckpt, map_location="cpu", weights_only=False)
            if state["total"] != total:
                raise ValueError(f"{ckpt} belongs to a {state['total']}-step run, this one has steps={total}; "
                                 "delete it or pass resume=False to start over")
            _load_params(segmenter, state["trainable"], str(ckpt))
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            start, history = int(state["step"]), list(state["history"])
            torch.random.set_rng_state(state["rng"])
            if device.type == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"], device)

    def save_ckpt(step: int) -> None:
        if ckpt is None:
            return
        torch.save({"trainable": trainable_state(segmenter), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "step": step, "total": total, "history": history,
                    "rng": torch.random.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
                   ckpt.with_suffix(".tmp"))
        ckpt.with_suffix(".tmp").replace(ckpt)
        _write_log(out, history)

    end = total if stop_after is None else min(total, int(stop_after))
    bs, accum = int(sam_cfg.batch_size), max(1, int(sam_cfg.grad_accum))
    amp = device.type == "cuda"
    segmenter.train()
    bar = tqdm(range(start, end), initial=start, total=end, desc="SAM fine-tuning", disable=not progress)
    for step in bar:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        parts = {"loss": 0.0, "ce": 0.0, "dice": 0.0}
        for m in range(accum):
            x, y = ds.batch((step * accum + m) * bs, bs)
            x, y = x.to(device), y.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = segmenter(x)
            loss, terms = dice_ce_loss(logits, y, sam_cfg.ce_weight)
            (loss / accum).backward()
            parts["loss"] += float(loss.detach()) / accum
            parts["ce"] += terms["ce"] / accum
            parts["dice"] += terms["dice"] / accum
        lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        if not math.isfinite(parts["loss"]):
            raise FloatingPointError(f"SAM fine-tuning loss became {parts['loss']} at step {step}; lower sam.lr")
        history.append({"step": step + 1, **parts, "lr": lr, "seconds": time.perf_counter() - t0})
        bar.set_postfix(loss=f"{parts['loss']:.4f}")
        if ckpt is not None and ((step + 1) % ckpt_every == 0 or step + 1 == end):
            save_ckpt(step + 1)
    if ckpt is not None and start >= end:
        _write_log(out, history)
    if out is not None and end == total:
        save_trainable(segmenter, out / FINAL_NAME)
    segmenter.eval()
    return history
