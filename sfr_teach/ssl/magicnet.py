"""MagicNet (Chen et al., CVPR 2023), compact: magic-cube partition and recovery in a Mean Teacher.

Every crop (h, w, d) is cut into n^3 cubes (n = ``cfg.magicnet_cube``, 3 -> 27 cubes of 32^3 for
96^3 crops), cube position k = (i n + j) n + l in row-major order. Per iteration:

1. **Cross-image partition.** For each cube position k a random permutation perm[k] of the batch says
   which image's cube goes into each mixed image (labelled and unlabelled mix); the student segments
   the mixed images and :func:`cross_image_recover` puts every cube prediction back in its image.
2. **Within-image partition.** Each image's cubes are shuffled (sigma[b]); the student segments the
   shuffled image, :func:`within_image_recover` un-shuffles the prediction, and a small head
   (average pool of the bottleneck features per cube slot -> Linear, n^3-way) classifies each slot's
   original position (cross-entropy, weight 0.1).
3. **Blended pseudo-labels.** The EMA teacher's softmax on the (noisy) unlabelled crops is averaged
   with the recovered within-image student softmax (detached); argmax -> pseudo-label.
4. **Class-frequency weighting.** Running voxel counts of every class (labels + pseudo-labels) give
   weights w_c = f_c^(-1/2) normalised to mean 1, used in the unlabelled CE + Dice.

loss = 0.5 [L_sup(cross) + L_sup(within)] + lambda(it) 0.5 [L_w(cross, pl) + L_w(within, pl)] + 0.1 L_loc,
lambda = sigmoid_rampup(iter // 150, cfg.consistency_rampup). ``unlabeled_logits`` (for the SFR
term) = the recovered cross-image logits of the unlabelled crops (image space, voxel-aligned).

Simplified versus the paper: the shuffled cubes stay in one full-size image (the paper also feeds
the small cubes on their own), one permutation per cube position mixes the whole batch (the paper
mixes one labelled with one unlabelled image), the head pools the shared bottleneck instead of a
per-cube encoder pass, fixed 0.5 blending and inverse-square-root frequency weights.
"""
from __future__ import annotations

from typing import Any, Dict

import torch
import torch.nn.functional as F
from torch import nn

from ..config import magicnet_cube_problem
from ..losses import ce_dice
from .base import EMATeacher, Method, StepOutput, teacher_noise
from .ramps import sigmoid_rampup


def to_cubes(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, C, H, W, D) -> (B, n^3, C, H/n, W/n, D/n), cubes in row-major position order."""
    b, c, h, w, d = x.shape
    if h % n or w % n or d % n:
        raise ValueError(
            f"sfr_teach/ssl/magicnet.py: crop {(h, w, d)} is not divisible into {n}^3 cubes; set "
            f"retrain.magicnet_cube to a divisor of every side (2 for 112x112x80 LA crops) or "
            f"retrain.patch_size to multiples of {16 * n} (the MagicNet paper: 96x96x96 with 3^3 cubes)"
        )
    x = x.reshape(b, c, n, h // n, n, w // n, n, d // n)
    return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, n**3, c, h // n, w // n, d // n)


def from_cubes(cubes: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`to_cubes`: (B, n^3, C, h, w, d) -> (B, C, n h, n w, n d)."""
    b, _, c, h, w, d = cubes.shape
    x = cubes.reshape(b, n, n, n, c, h, w, d).permute(0, 4, 1, 5, 2, 6, 3, 7)
    return x.reshape(b, c, n * h, n * w, n * d)


def _as5d(x: torch.Tensor):
    return (x.unsqueeze(1), True) if x.ndim == 4 else (x, False)


def cross_image_partition(x: torch.Tensor, n: int, perm: torch.Tensor) -> torch.Tensor:
    """Mixed images: cube k of mixed image b = cube k of image perm[k, b]. x (B, C, *S) or (B, *S);
    perm (n^3, B), each row a permutation of range(B)."""
    x, squeeze = _as5d(x)
    cubes = to_cubes(x, n)
    k = torch.arange(cubes.shape[1], device=x.device)[:, None]
    mixed = cubes[perm.to(x.device), k].transpose(0, 1)  # (B, K, C, ...)
    out = from_cubes(mixed, n)
    return out[:, 0] if squeeze else out


def cross_image_recover(mixed: torch.Tensor, n: int, perm: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`cross_image_partition` (same perm)."""
    return cross_image_partition(mixed, n, torch.argsort(perm, dim=1))


def within_image_partition(x: torch.Tensor, n: int, sigma: torch.Tensor) -> torch.Tensor:
    """Shuffled images: slot j of image b holds the cube from position sigma[b, j]. sigma (B, n^3)."""
    x, squeeze = _as5d(x)
    cubes = to_cubes(x, n)
    b = torch.arange(cubes.shape[0], device=x.device)[:, None]
    out = from_cubes(cubes[b, sigma.to(x.device)], n)
    return out[:, 0] if squeeze else out


def within_image_recover(y: torch.Tensor, n: int, sigma: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`within_image_partition` (same sigma)."""
    return within_image_partition(y, n, torch.argsort(sigma, dim=1))


class CubePositionHead(nn.Module):
    """Bottleneck features (B, F, h, w, d) -> position logits (B, n^3 slots, n^3 positions)."""

    def __init__(self, channels: int, n: int):
        super().__init__()
        self.n = n
        self.fc = nn.Linear(channels, n**3)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool3d(feats.float(), self.n)  # (B, F, n, n, n), row-major slots
        return self.fc(pooled.flatten(2).transpose(1, 2))


class MagicNet(Method):
    name = "magicnet"
    loc_weight = 0.1
    blend = 0.5  # weight of the teacher in the blended pseudo-label

    def __init__(self, student, cfg, num_classes):
        super().__init__(student, cfg, num_classes)
        self.n = int(cfg.magicnet_cube)
        problem = magicnet_cube_problem(cfg.patch_size, self.n)
        if problem:  # at construction, not at the first step
            raise ValueError("sfr_teach/ssl/magicnet.py: " + " — ".join(problem))
        self.teacher = EMATeacher(student, cfg.ema_decay)
        self.extra["teacher"] = self.teacher.model
        channels = 16 * getattr(student, "n_filters", 16)
        device = next(student.parameters()).device
        self.heads["position"] = CubePositionHead(channels, self.n).to(device)
        self.class_counts = torch.ones(self.num_classes, dtype=torch.float64)

    def class_weights(self) -> torch.Tensor:
        """w_c = f_c^(-1/2) / mean, from the running class counts (C,)."""
        f = self.class_counts / self.class_counts.sum()
        w = f.clamp_min(1e-8) ** -0.5
        return (w / w.mean()).float()

    def extra_state(self) -> Dict[str, Any]:
        return {"class_counts": self.class_counts.clone()}

    def load_extra_state(self, state: Dict[str, Any]) -> None:
        if "class_counts" in state:
            self.class_counts = state["class_counts"].clone().double()

    def step(self, batch, it):
        x, y, lbs = self.split(batch)
        bsz, k = x.shape[0], self.n**3
        x_u = x[lbs:]
        t_prob = torch.softmax(self.teacher(x_u + teacher_noise(x_u)).float(), 1)
        # 1. cross-image partition -> student -> recover
        perm = torch.stack([torch.randperm(bsz) for _ in range(k)])
        logits_cross = cross_image_recover(self.student(cross_image_partition(x, self.n, perm)), self.n, perm)
        # 2. within-image partition -> student (+ position head) -> recover
        sigma = torch.stack([torch.randperm(k) for _ in range(bsz)])
        logits_shuf, feats = self.student(within_image_partition(x, self.n, sigma), return_features=True)
        logits_within = within_image_recover(logits_shuf, self.n, sigma)
        loc_logits = self.heads["position"](feats["bottleneck"])
        loss_loc = F.cross_entropy(loc_logits.reshape(bsz * k, k), sigma.reshape(-1).to(x.device))
        sup = 0.5 * (self.supervised(logits_cross[:lbs], y) + self.supervised(logits_within[:lbs], y))
        # 3. blended pseudo-labels, 4. class-frequency weights
        with torch.no_grad():
            s_prob = torch.softmax(logits_within[lbs:].float(), 1)
            pseudo = (self.blend * t_prob + (1 - self.blend) * s_prob).argmax(1)
            seen = torch.cat([y.reshape(-1), pseudo.reshape(-1)]).cpu()
            self.class_counts += torch.bincount(seen, minlength=self.num_classes)[: self.num_classes].double()
        w = self.class_weights()
        unsup = 0.5 * (
            ce_dice(logits_cross[lbs:], pseudo, class_weights=w) + ce_dice(logits_within[lbs:], pseudo, class_weights=w)
        )
        lam = sigmoid_rampup(it // 150, self.cfg.consistency_rampup)
        loss = sup + lam * unsup + self.loc_weight * loss_loc
        logs = {
            "loss_sup": float(sup.detach()),
            "loss_unsup": float(unsup.detach()),
            "loss_loc": float(loss_loc.detach()),
            "w_unsup": lam,
        }
        return StepOutput(loss, logs, logits_cross[lbs:])

    def after_step(self, it: int) -> None:
        self.teacher.update(self.student, it)
