"""Fine-tune SAM on stitched mosaics of labelled volumes (stage 2 of SFR): the training loop.

The samples are :class:`~sfr_teach.sam.mosaics.MosaicDataset` mosaics (augmented crops, labels
padded with the ignore value). Loss :func:`sfr_teach.losses.ce_dice_terms` with ``ce_weight =
SamConfig.ce_weight`` (official SFR 0.5, SAMed 0.2) and ``squared = SamConfig.dice_squared`` (the
stage's setting and why are stated there); the 255 pixels count in neither term. AdamW(lr,
weight_decay); the learning rate rises linearly for ``warmup`` steps then decays as
``(1 - progress) ** 0.9``. bf16 autocast on CUDA only; ``grad_accum`` micro-batches of
``batch_size`` per optimizer step.

Checkpoints (``<out_dir>/sam_finetune_ckpt.pt``) hold only the *trainable* parameters (LoRA +
mask decoder, or everything for ``finetune="full"``), the optimizer, scheduler, step, history and
RNG states; the frozen weights are rebuilt by :func:`~sfr_teach.sam.build.build_sam` with the same
seed / checkpoint. ``<out_dir>/sam_log.csv`` / ``sam_log.json`` log every step;
``<out_dir>/sam_trainable.pt`` holds the final trainable weights (:func:`load_trainable`).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ..csv_io import write_csv
from ..losses import ce_dice_terms
from ..torch_utils import autocast, rng_state, set_rng_state
from .lora import set_trainable
from .mosaics import MosaicDataset

__all__ = ["MosaicDataset", "warmup_poly", "save_trainable", "load_trainable", "finetune"]

CKPT_NAME = "sam_finetune_ckpt.pt"
FINAL_NAME = "sam_trainable.pt"


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
        write_csv(out / "sam_log.csv", history)


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
    :class:`~sfr_teach.sam.mosaics.MosaicDataset`; 0.5 as the official code -- on classroom LA it lifts the pseudo-label
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
            set_rng_state(state["rng"])

    def save_ckpt(step: int) -> None:
        if ckpt is None:
            return
        torch.save({"trainable": trainable_state(segmenter), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "step": step, "total": total, "history": history,
                    "rng": rng_state()},
                   ckpt.with_suffix(".tmp"))
        ckpt.with_suffix(".tmp").replace(ckpt)
        _write_log(out, history)

    end = total if stop_after is None else min(total, int(stop_after))
    bs, accum = int(sam_cfg.batch_size), max(1, int(sam_cfg.grad_accum))
    segmenter.train()
    bar = tqdm(range(start, end), initial=start, total=end, desc="SAM fine-tuning", disable=not progress)
    for step in bar:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        parts = {"loss": 0.0, "ce": 0.0, "dice": 0.0}
        for m in range(accum):
            x, y = ds.batch((step * accum + m) * bs, bs)
            x, y = x.to(device), y.to(device)
            with autocast(device):
                logits = segmenter(x)
            terms = ce_dice_terms(logits, y, ce_weight=sam_cfg.ce_weight, squared=sam_cfg.dice_squared)
            (terms.loss / accum).backward()
            for k, v in terms._asdict().items():
                parts[k] += float(v.detach()) / accum
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
