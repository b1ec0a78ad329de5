"""Consistency and uncertainty terms of the semi-supervised methods.

The supervised / pseudo-label loss (CE + Dice) of both stages is :mod:`sfr_teach.losses`.

Shapes: logits and probabilities (B, C, *S) float.
"""
from __future__ import annotations

import torch


def softmax_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Voxel-wise squared difference of the two softmaxes, (B, C, *S) (no reduction)."""
    return (torch.softmax(student_logits.float(), 1) - torch.softmax(teacher_logits.float(), 1)) ** 2


def entropy(probs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Voxel-wise entropy -sum_c p log p of probabilities (B, C, *S) -> (B, 1, *S), in nats."""
    return -(probs * torch.log(probs + eps)).sum(1, keepdim=True)
