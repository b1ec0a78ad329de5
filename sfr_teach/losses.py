"""Cross-entropy + soft Dice: the one segmentation loss of both SFR stages.

    loss = ce_weight * CE + (1 - ce_weight) * Dice

Shapes: logits ``(B, C, *S)`` float (``*S`` = (S, S) mosaics for SAM, (H, W, D) crops for the V-Net);
target ``(B, *S)`` integer class indices; ``class_weights`` ``(C,)`` or None.

* CE is :func:`torch.nn.functional.cross_entropy` (mean over the non-ignored voxels, weighted by
  ``class_weights`` as torch does).
* Dice, per class c (background included), with p = softmax probabilities and y = one-hot labels
  summed over the batch *and* the voxels (one Dice per class for the whole batch, as the SSL4MIS /
  official SFR ``DiceLoss``)::

      Dice_c = 1 - (2 sum p y + smooth) / (sum p^k + sum y^k + smooth),   k = 2 if squared else 1

  averaged over classes, or ``sum_c w_c Dice_c / sum_c w_c`` with ``class_weights``.
* Voxels whose label is ``ignore_index`` (255, the padding of stitched SAM labels) count in neither
  term; a batch with nothing to supervise gives a zero loss that keeps the graph.

Settings of the two stages (each stated once):

* re-training: the defaults of :func:`ce_dice`, ``ce_weight = 0.5, squared = True`` -- the UA-MT /
  SSL4MIS ``0.5 * (CE + DiceLoss)`` that the official SFR code re-trains with;
* SAM fine-tuning: ``SamConfig.ce_weight`` (0.5, official) and ``SamConfig.dice_squared`` (False).
  The official SFR code squares there too (``code/utils/losses.py``: ``z_sum = sum(score * score)``),
  but on our randomly initialised tiny SAM the squared form collapsed to all-background (the config
  comment gives the measurement), so the fine-tuning default is the linear denominator.

Relation to MONAI (``tests/test_losses.py`` checks it on the same tensors):

* ``DiceLoss(softmax=True, to_onehot_y=True, squared_pred=squared, batch=True, smooth_nr=smooth,
  smooth_dr=smooth, ignore_index=255)`` on ``target[:, None]`` equals our Dice term. Differences
  of MONAI's defaults: ``batch=False`` (one Dice per sample and class, then the mean -- ours is
  one per class over the whole batch), ``squared_pred=False`` (our default is squared), and
  ``weight`` multiplies each class term before the plain mean (ours divides by the sum of the weights;
  the two agree when the weights sum to C).
* ``DiceCELoss(lambda_ce=w, lambda_dice=1 - w, ...)`` with the same Dice options equals
  :func:`ce_dice` with ``ce_weight=w`` when no voxel is ignored: its CE has no ``ignore_index`` and
  its ``weight`` goes to both CE and Dice.
* The smoothing is added to numerator and denominator (MONAI's ``smooth_nr`` / ``smooth_dr``);
  the official code uses 1e-10 (SAM) / 1e-5 (UA-MT); we use 1e-5 for both.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

__all__ = ["IGNORE_INDEX", "LossTerms", "soft_dice_loss", "ce_dice_terms", "ce_dice"]

IGNORE_INDEX = 255  # label value that no loss counts (padding of stitched labels, unknown pseudo-labels)


class LossTerms(NamedTuple):
    """``loss = ce_weight * ce + (1 - ce_weight) * dice`` (scalar tensors)."""

    loss: torch.Tensor
    ce: torch.Tensor
    dice: torch.Tensor


def soft_dice_loss(
    probs: torch.Tensor,
    target: torch.Tensor,
    squared: bool = True,
    ignore_index: int = IGNORE_INDEX,
    class_weights: Optional[torch.Tensor] = None,
    smooth: float = 1e-5,
) -> torch.Tensor:
    """Dice loss of probabilities ``(B, C, *S)`` against integer labels ``(B, *S)`` (see the module doc)."""
    c = probs.shape[1]
    valid = (target != ignore_index).unsqueeze(1).to(probs.dtype)  # (B, 1, *S)
    onehot = F.one_hot(torch.where(target == ignore_index, 0, target).long(), c)  # (B, *S, C)
    onehot = onehot.movedim(-1, 1).to(probs.dtype) * valid
    p = probs * valid
    dims = [0] + list(range(2, probs.ndim))
    inter = (p * onehot).sum(dims)
    denom = ((p * p) if squared else p).sum(dims) + onehot.sum(dims)  # one-hot: y^2 == y
    per_class = 1.0 - (2.0 * inter + smooth) / (denom + smooth)  # (C,)
    if class_weights is None:
        return per_class.mean()
    w = class_weights.to(per_class)
    return (per_class * w).sum() / w.sum()


def ce_dice_terms(
    logits: torch.Tensor,
    target: torch.Tensor,
    ce_weight: float = 0.5,
    squared: bool = True,
    ignore_index: int = IGNORE_INDEX,
    class_weights: Optional[torch.Tensor] = None,
    smooth: float = 1e-5,
) -> LossTerms:
    """:class:`LossTerms` of logits ``(B, C, *S)`` against labels ``(B, *S)``; float32 math (see the module doc)."""
    logits = logits.float()
    target = target.long()
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"sfr_teach/losses.py: labels of shape {tuple(target.shape)} do not match logits "
            f"{tuple(logits.shape)}; expected (B, *S) integer labels for (B, C, *S) logits"
        )
    if (target == ignore_index).all():  # nothing to supervise: zeros that keep the graph
        zero = logits.sum() * 0.0
        return LossTerms(zero, zero, zero)
    w = None if class_weights is None else class_weights.to(logits)
    ce = F.cross_entropy(logits, target, weight=w, ignore_index=ignore_index)
    dice = soft_dice_loss(torch.softmax(logits, 1), target, squared, ignore_index, class_weights, smooth)
    return LossTerms(ce_weight * ce + (1.0 - ce_weight) * dice, ce, dice)


def ce_dice(logits: torch.Tensor, target: torch.Tensor, **kwargs) -> torch.Tensor:
    """The loss of :func:`ce_dice_terms` alone (same arguments): ``0.5 * (CE + Dice)`` by default."""
    return ce_dice_terms(logits, target, **kwargs).loss
