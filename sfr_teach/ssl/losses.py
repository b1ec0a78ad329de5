"""Segmentation losses of the re-training stage.

``ce_dice(logits, target)`` = 0.5 * (CE + Dice), the loss of the LA literature (UA-MT / SSL4MIS) and
of the official SFR code. The Dice term follows SSL4MIS ``DiceLoss``: softmax probabilities p and
one-hot targets y per class c summed over the whole batch,
``1 - (2 sum p y + eps) / (sum p^2 + sum y^2 + eps)``, averaged over classes (background included).
Voxels equal to ``ignore_index`` (255, the padding value of stitched labels) count in neither term --
MONAI's ``DiceLoss`` has no ignore value, hence the few hand-written lines.

Shapes: logits (B, C, H, W, D) float; target (B, H, W, D) integer; class_weights (C,) or None.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


def soft_dice_loss(
    probs: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    class_weights: Optional[torch.Tensor] = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Dice loss of probabilities (B, C, *S) against integer labels (B, *S) (see module doc)."""
    c = probs.shape[1]
    valid = (target != ignore_index).unsqueeze(1).to(probs.dtype)  # (B, 1, *S)
    onehot = F.one_hot(torch.where(target == ignore_index, 0, target).long(), c)  # (B, *S, C)
    onehot = onehot.movedim(-1, 1).to(probs.dtype) * valid
    p = probs * valid
    dims = [0] + list(range(2, probs.ndim))
    inter = (p * onehot).sum(dims)
    denom = (p * p).sum(dims) + (onehot * onehot).sum(dims)
    per_class = 1.0 - (2.0 * inter + eps) / (denom + eps)  # (C,)
    if class_weights is None:
        return per_class.mean()
    w = class_weights.to(per_class)
    return (per_class * w).sum() / w.sum()


def ce_dice(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    class_weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """0.5 * (cross-entropy + Dice) of logits (B, C, *S) against labels (B, *S); float32 math."""
    logits = logits.float()
    target = target.long()
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"sfr_teach/ssl/losses.py: labels of shape {tuple(target.shape)} do not match logits "
            f"{tuple(logits.shape)}; expected (B, H, W, D) integer labels for (B, C, H, W, D) logits"
        )
    w = None if class_weights is None else class_weights.to(logits)
    if (target == ignore_index).all():  # nothing to supervise: a zero that keeps the graph
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits, target, weight=w, ignore_index=ignore_index)
    dice = soft_dice_loss(torch.softmax(logits, 1), target, ignore_index, class_weights)
    return 0.5 * (ce + dice)


def softmax_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Voxel-wise squared difference of the two softmaxes, (B, C, *S) (no reduction)."""
    return (torch.softmax(student_logits.float(), 1) - torch.softmax(teacher_logits.float(), 1)) ** 2


def entropy(probs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Voxel-wise entropy -sum_c p log p of probabilities (B, C, *S) -> (B, 1, *S), in nats."""
    return -(probs * torch.log(probs + eps)).sum(1, keepdim=True)
