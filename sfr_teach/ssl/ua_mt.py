"""UA-MT (Yu et al., MICCAI 2019): Mean Teacher whose consistency only counts *certain* voxels.

The teacher makes ``cfg.uamt_passes`` (T, 8 in the paper) stochastic passes over the unlabelled crops
(input noise + its active dropout; all T in one batched forward); the predictive
entropy U of their mean softmax marks a voxel certain when U < threshold(it), with
threshold = (0.75 + 0.25 sigmoid_rampup(it, cfg.steps)) ln C (ln 2 for LA, C = number of classes).
Consistency = sum(mask * (softmax_s - softmax_t)^2) / (C * sum(mask)), teacher target from one more
noisy pass, weight as Mean Teacher.
"""
from __future__ import annotations

import math

import torch

from .base import teacher_noise
from .losses import entropy, softmax_mse
from .mean_teacher import MeanTeacher
from .ramps import sigmoid_rampup


def uamt_threshold(it: int, steps: int, num_classes: int = 2) -> float:
    """Entropy threshold (nats) rising from 0.75 ln C to ln C over ``steps`` iterations."""
    return (0.75 + 0.25 * sigmoid_rampup(it, steps)) * math.log(num_classes)


def masked_mean(dist: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum(mask * dist) / (C * sum(mask)) for dist (B, C, *S) and mask (B, 1, *S); 0 when empty."""
    return (mask * dist).sum() / (dist.shape[1] * mask.sum() + 1e-16)


class UAMT(MeanTeacher):
    name = "ua_mt"

    @torch.inference_mode()
    def uncertainty(self, x_u: torch.Tensor) -> torch.Tensor:
        """Predictive entropy (Bu, 1, h, w, d) of T stochastic teacher passes, all T in one batched
        forward (T Bu items, each with its own noise and dropout mask; the reference code runs them
        two copies at a time, so its batch-norm statistics pool 2 Bu items instead of T Bu)."""
        passes = max(1, int(self.cfg.uamt_passes))
        xr = x_u.repeat(passes, 1, 1, 1, 1)  # (T Bu, 1, h, w, d), pass-major
        probs = torch.softmax(self.teacher(xr + teacher_noise(xr)).float(), 1)
        return entropy(probs.unflatten(0, (passes, x_u.shape[0])).mean(0))

    def consistency(self, student_u, teacher_u, x_u, it):
        thr = uamt_threshold(it, self.cfg.steps, self.num_classes)
        mask = (self.uncertainty(x_u) < thr).float()
        cons = masked_mean(softmax_mse(student_u, teacher_u), mask)
        return cons, {"threshold": thr, "mask_frac": float(mask.mean())}
