"""Supervised baseline: the V-Net trained on the labelled items only, 0.5 (CE + Dice).

With the SFR term on, the trainer also feeds unlabelled crops and this method returns the student's
logits on them, so "supervised + SFR" = labelled volumes + SAM pseudo-labels.
"""
from __future__ import annotations

from .base import Method, StepOutput


class Supervised(Method):
    name = "supervised"
    uses_unlabeled = False

    def step(self, batch, it):
        x, y, lbs = self.split(batch)
        want_u = self.need_unlabeled_logits and x.shape[0] > lbs
        logits = self.student(x if want_u else x[:lbs])
        sup = self.supervised(logits[:lbs], y)
        return StepOutput(sup, {"loss_sup": float(sup.detach())}, logits[lbs:] if want_u else None)
