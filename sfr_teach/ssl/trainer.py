"""The re-training loop: any method of :data:`sfr_teach.ssl.METHODS`, optionally + the SFR term.

    result = train("mean_teacher", labeled=[vol0], unlabeled=[(img1, pseudo1), ...], cfg=cfg.retrain,
                   num_classes=2, out_dir="runs/x/retrain")
    result.model      # the trained student V-Net (eval mode)
    result.history    # logged rows: {"iter", "lr", "loss", "loss_sup", ..., "loss_sfr", "w_sfr", "time_s"}

Protocol (UA-MT / SSL4MIS): two-stream batches of ``cfg.batch_size`` crops of ``cfg.patch_size``,
the first ``cfg.labeled_bs`` labelled; SGD(lr, momentum, weight decay), lr x0.1 every ``cfg.lr_step``
iterations; the method's own loss, plus -- when ``cfg.sfr`` -- ``SFRTerm(cfg.sfr_weight,
cfg.sfr_rampup)`` on the student's unlabelled logits against pseudo-labels that are either
``"precomputed"`` arrays cropped with the same geometry, or ``"online"``: ``pseudo_label_fn(images
(Bu, 1, h, w, d)) -> (Bu, h, w, d)`` called every iteration (the pipeline passes a closure around SAM).

Files in ``out_dir`` (when given): ``log.csv`` and ``log.jsonl`` (a row every ``cfg.log_every``
iterations), ``checkpoint.pt`` every ``cfg.ckpt_every`` iterations (student, method modules -- teacher,
heads --, optimiser, iteration, RNG states), ``model.pt`` (student weights) at the end. A second call
with ``resume=True`` continues from ``checkpoint.pt`` exactly as if never interrupted. bf16 autocast
is used on CUDA only.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sfr_teach.csv_io import write_csv
from sfr_teach.losses import IGNORE_INDEX
from sfr_teach.nets import build_net
from sfr_teach.torch_utils import autocast, rng_state, set_rng_state

from . import build_method
from .base import Method
from .batches import CropBatcher
from .sfr_term import SFRTerm

PseudoFn = Callable[[torch.Tensor], Union[torch.Tensor, np.ndarray]]


@dataclass
class TrainResult:
    model: nn.Module
    history: List[Dict[str, float]] = field(default_factory=list)
    method: Optional[Method] = None
    out_dir: Optional[Path] = None


def _where(msg: str) -> str:
    return f"sfr_teach/ssl/trainer.py: {msg}"


def _labels(arr: Any, shape, num_classes: int, what: str, allow_ignore: bool = False) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.shape != tuple(shape):
        raise ValueError(_where(f"{what} has shape {arr.shape} but its image has {tuple(shape)}; they must match"))
    ok = (arr >= 0) & (arr < num_classes)
    if allow_ignore:
        ok |= arr == IGNORE_INDEX
    if not ok.all():
        raise ValueError(
            _where(f"{what} holds values outside [0, {num_classes}) (e.g. {arr[~ok].flat[0]}); "
                   "check num_classes or the label file")
        )
    return arr.astype(np.uint8)[None]


def _image(arr: Any, what: str) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim != 3:
        raise ValueError(_where(f"{what} must be a 3D (H, W, D) array, got shape {arr.shape}"))
    if not np.isfinite(arr).all():
        raise ValueError(_where(f"{what} holds NaN/inf intensities; clean it (np.nan_to_num) first"))
    return arr[None]


def prepare_samples(labeled: Sequence, unlabeled: Sequence, num_classes: int):
    """Inputs -> channel-first sample dicts. labeled: (image, label) pairs or Volumes with a label;
    unlabeled: images, (image, pseudo or None) pairs, Volumes or (Volume, pseudo) pairs (a Volume's own
    label is never used for an unlabelled volume)."""
    if len(labeled) == 0:
        raise ValueError(_where("the labelled set is empty; give at least one (image, label) pair or Volume"))
    lab = []
    for i, item in enumerate(labeled):
        img, lbl = (item.image, item.label) if hasattr(item, "image") else item
        name = getattr(item, "name", f"labelled[{i}]")
        if lbl is None:
            raise ValueError(_where(f"labelled volume {name!r} has no label; move it to the unlabelled list"))
        x = _image(img, f"labelled volume {name!r}")
        lab.append({"image": x, "label": _labels(lbl, x.shape[1:], num_classes, f"label of {name!r}")})
    unl = []
    for i, item in enumerate(unlabeled):
        pseudo = None
        if isinstance(item, (tuple, list)):
            item, pseudo = item
        img = item.image if hasattr(item, "image") else item
        name = getattr(item, "name", f"unlabelled[{i}]")
        s = {"image": _image(img, f"unlabelled volume {name!r}")}
        if pseudo is not None:
            s["pseudo"] = _labels(pseudo, s["image"].shape[1:], num_classes, f"pseudo-label of {name!r}", True)
        unl.append(s)
    return lab, unl


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (used by the pipeline too)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class _Log:
    """log.csv + log.jsonl writer; on resume keeps only the rows older than the checkpoint."""

    def __init__(self, out_dir: Optional[Path], start_it: int):
        self.rows: List[Dict[str, float]] = []
        self.csv = self.jsonl = None
        if out_dir is None:
            return
        self.csv, self.jsonl = out_dir / "log.csv", out_dir / "log.jsonl"
        kept = []
        if start_it > 0 and self.jsonl.exists():
            rows = [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]
            kept = [r for r in rows if r["iter"] < start_it]
        self.csv.unlink(missing_ok=True)
        self.jsonl.unlink(missing_ok=True)
        for r in kept:
            self.write(r)

    def write(self, row: Dict[str, float]) -> None:
        self.rows.append(row)
        if self.jsonl is None:
            return
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        write_csv(self.csv, [row], append=True)


def _online_pseudo(fn: PseudoFn, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = fn(images)
    out = torch.as_tensor(np.asarray(out) if not torch.is_tensor(out) else out).long()
    if out.shape != images.shape[:1] + images.shape[2:]:
        raise ValueError(
            _where(f"pseudo_label_fn returned shape {tuple(out.shape)} for images {tuple(images.shape)}; "
                   "it must map (Bu, 1, h, w, d) images to (Bu, h, w, d) integer labels")
        )
    return out


def train(
    method_name: str,
    labeled: Sequence,
    unlabeled: Sequence,
    cfg,
    num_classes: int,
    out_dir: Optional[Union[str, Path]] = None,
    device: Union[str, torch.device] = "cpu",
    seed: int = 0,
    resume: bool = True,
    progress: bool = True,
    pseudo_label_fn: Optional[PseudoFn] = None,
    stop_at: Optional[int] = None,
    transform: Optional[Callable[[dict], dict]] = None,
    channels_last: bool = True,
) -> TrainResult:
    """Train a V-Net with ``method_name`` (see the module docstring). ``cfg`` is a RetrainConfig.

    stop_at: stop after this many iterations (the schedules still follow ``cfg.steps``; a later call
    with ``resume=True`` continues). transform: replaces the crop/augmentation of each sample dict.
    channels_last: keep weights and batches in ``torch.channels_last_3d`` memory format (about 2x
    faster 3D convolutions on CPU; values are unchanged).
    Returns :class:`TrainResult` (model in eval mode, the logged rows, the method, out_dir).
    """
    dev = torch.device(device)
    num_classes = int(num_classes)
    bl = int(cfg.labeled_bs)
    if not 1 <= bl <= cfg.batch_size:
        raise ValueError(_where(f"labeled_bs={bl} must be in [1, batch_size={cfg.batch_size}]"))
    lab, unl = prepare_samples(labeled, unlabeled, num_classes)
    sfr = bool(cfg.sfr)
    online = cfg.pseudo_labels == "online"
    if cfg.pseudo_labels not in ("precomputed", "online"):
        raise ValueError(_where(f"retrain.pseudo_labels={cfg.pseudo_labels!r}; choose 'precomputed' or 'online'"))
    if sfr and online and pseudo_label_fn is None:
        raise ValueError(_where("retrain.pseudo_labels='online' needs pseudo_label_fn(images) -> labels"))
    if sfr and not online and any("pseudo" not in s for s in unl):
        missing = [i for i, s in enumerate(unl) if "pseudo" not in s]
        raise ValueError(
            _where(f"retrain.sfr with precomputed pseudo-labels but unlabelled volumes {missing[:5]} have none; "
                   "pass (image, pseudo_label) pairs, or set retrain.pseudo_labels='online' with pseudo_label_fn")
        )
    seed_everything(seed)
    student = build_net("vnet", n_classes=num_classes, n_filters=cfg.n_filters, has_dropout=cfg.dropout).to(dev)
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    student = student.to(memory_format=fmt)
    method = build_method(method_name, student, cfg, num_classes)
    method.need_unlabeled_logits = sfr
    bu = cfg.batch_size - bl if (method.uses_unlabeled or sfr) else 0
    if bu and not unl:
        raise ValueError(
            _where(f"method {method_name!r} needs unlabelled volumes but none were given; "
                   "add unlabelled volumes or use method 'supervised'")
        )
    batcher = CropBatcher(lab, unl, cfg.patch_size, bl, bu, seed, transform)
    optimizer = torch.optim.SGD(method.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sfr_term = SFRTerm(cfg.sfr_weight, cfg.sfr_rampup)

    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / "checkpoint.pt" if out is not None else None
    start = 0
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "retrain_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
        if resume and ckpt_path.exists():
            start = _load_checkpoint(ckpt_path, method_name, method, optimizer, dev)
    log = _Log(out, start)

    end = cfg.steps if stop_at is None else min(int(stop_at), cfg.steps)
    method.train()
    bar = tqdm(range(start, end), initial=start, total=end, disable=not progress, desc=f"retrain {method_name}")
    t0 = time.time()
    for it in bar:
        lr = cfg.lr * 0.1 ** (it // cfg.lr_step)
        for g in optimizer.param_groups:
            g["lr"] = lr
        batch = {k: v.to(dev, non_blocking=True) for k, v in batcher.batch(it).items()}
        batch["image"] = batch["image"].contiguous(memory_format=fmt)
        if sfr:  # the pseudo-labeller runs outside autocast (it may be a whole SAM)
            pseudo = _online_pseudo(pseudo_label_fn, batch["image"][bl:]) if online else batch["pseudo"]
        extra: Dict[str, float] = {}
        with autocast(dev):
            res = method.step(batch, it)
            loss = res.loss
            if sfr:
                loss_sfr, raw, w = sfr_term(res.unlabeled_logits, pseudo, it)
                loss = loss + loss_sfr
                extra = {"loss_sfr": raw, "w_sfr": w}
        if not torch.isfinite(loss):
            raise FloatingPointError(
                _where(f"loss became {float(loss)} at iteration {it}; lower retrain.lr or check the inputs")
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        method.after_step(it)
        row = {"iter": it, "lr": lr, "loss": float(loss.detach()), **res.logs, **extra}
        row["time_s"] = round(time.time() - t0, 3)
        if it % cfg.log_every == 0 or it == end - 1:
            log.write(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
        if ckpt_path is not None and ((it + 1) % cfg.ckpt_every == 0 or it + 1 == end):
            _save_checkpoint(ckpt_path, method_name, method, optimizer, it + 1, cfg)
    if out is not None and end == cfg.steps:
        torch.save(student.state_dict(), out / "model.pt")
    student.eval()
    return TrainResult(student, log.rows, method, out)


def _save_checkpoint(path: Path, name: str, method: Method, optimizer, next_it: int, cfg) -> None:
    state = {
        "method": name,
        "iteration": next_it,
        "student": method.student.state_dict(),
        "method_state": method.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        "config": dataclasses.asdict(cfg),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, name: str, method: Method, optimizer, dev: torch.device) -> int:
    state = torch.load(path, map_location=dev, weights_only=False)
    if state.get("method") != name:
        raise ValueError(
            _where(f"{path} was written by method {state.get('method')!r}, not {name!r}; "
                   "use another out_dir or resume=False to start over")
        )
    method.student.load_state_dict(state["student"])
    method.load_state_dict(state["method_state"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    return int(state["iteration"])


def load_student(path: Union[str, Path], num_classes: int, n_filters: int, device="cpu") -> nn.Module:
    """A trained V-Net from ``model.pt`` (or a ``checkpoint.pt``), in eval mode."""
    state = torch.load(path, map_location=device, weights_only=False)
    state = state.get("student", state)
    net = build_net("vnet", n_classes=num_classes, n_filters=n_filters).to(device)
    net.load_state_dict(state)
    return net.eval()
