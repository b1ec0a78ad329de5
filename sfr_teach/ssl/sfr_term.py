"""The SFR pseudo-label term, added by the trainer on top of *any* method (plug-and-play).

``SFRTerm(weight, rampup)(unlabeled_logits, pseudo, it)`` =
``w(it) * 0.5 * (CE + Dice)(unlabeled_logits, pseudo)`` with ``w(it) = weight`` (rampup 0, as the
official SFR code) or ``weight * sigmoid_rampup(it, rampup)``. Shapes: unlabeled_logits
(Bu, C, h, w, d); pseudo (Bu, h, w, d) integer (255 = ignore). The method never sees it: no method's
code changes when SFR is switched on.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..losses import ce_dice
from .ramps import sigmoid_rampup


class SFRTerm:
    def __init__(self, weight: float = 1.0, rampup: int = 0):
        self.weight = float(weight)
        self.rampup = int(rampup)

    def weight_at(self, it: int) -> float:
        return self.weight * sigmoid_rampup(it, self.rampup)

    def __call__(
        self, unlabeled_logits: Optional[torch.Tensor], pseudo: torch.Tensor, it: int
    ) -> Tuple[torch.Tensor, float, float]:
        """-> (weighted loss, unweighted loss value, weight)."""
        if unlabeled_logits is None:
            raise ValueError(
                "sfr_teach/ssl/sfr_term.py: the method returned no unlabeled_logits; set "
                "method.need_unlabeled_logits = True before training with the SFR term"
            )
        if unlabeled_logits.shape[0] != pseudo.shape[0]:
            raise ValueError(
                f"sfr_teach/ssl/sfr_term.py: {unlabeled_logits.shape[0]} unlabelled predictions but "
                f"{pseudo.shape[0]} pseudo-labels; give one pseudo-label per unlabelled crop"
            )
        raw = ce_dice(unlabeled_logits, pseudo.to(unlabeled_logits.device))
        w = self.weight_at(it)
        return w * raw, float(raw.detach()), w
