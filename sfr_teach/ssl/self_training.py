"""Self-training (pseudo-labelling, Lee 2013 -- the simplest literature form), for 3D segmentation.

A frozen copy of the student (eval mode: no dropout, running batch-norm statistics) labels the
unlabelled crops with hard argmax pseudo-labels; the student learns them with 0.5 (CE + Dice) at
weight ``sigmoid_rampup(iter // 150, cfg.consistency_rampup)`` (0 -> 1, the Mean-Teacher ramp shape
at full weight) on top of its supervised loss. The frozen copy is refreshed from the student every
``refresh_every`` iterations (default ``max(1, cfg.steps // 20)``: 300 for the 6000-step protocol).

Note: the SAM pseudo-labels of SFR are *not* this method's labels; with ``cfg.sfr`` on the trainer
adds them separately (``sfr_term``), so "self-training + SFR" sees both.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch

from ..losses import ce_dice
from .base import Method, StepOutput
from .ramps import sigmoid_rampup


class SelfTraining(Method):
    name = "self_training"

    def __init__(self, student, cfg, num_classes, refresh_every: Optional[int] = None):
        super().__init__(student, cfg, num_classes)
        self.refresh_every = int(refresh_every or max(1, cfg.steps // 20))
        self.frozen = copy.deepcopy(student).eval()
        for p in self.frozen.parameters():
            p.requires_grad_(False)
        self.extra["frozen"] = self.frozen

    def train(self) -> None:
        super().train()
        self.frozen.eval()

    def weight(self, it: int) -> float:
        return sigmoid_rampup(it // 150, self.cfg.consistency_rampup)

    def step(self, batch, it):
        x, y, lbs = self.split(batch)
        logits = self.student(x)
        sup = self.supervised(logits[:lbs], y)
        with torch.inference_mode():
            pseudo = self.frozen(x[lbs:]).argmax(1)
        pseudo = pseudo.clone()  # a normal tensor: the CE loss saves its target for backward
        unsup = ce_dice(logits[lbs:], pseudo)
        w = self.weight(it)
        logs = {"loss_sup": float(sup.detach()), "loss_self": float(unsup.detach()), "w_self": w}
        return StepOutput(sup + w * unsup, logs, logits[lbs:])

    def after_step(self, it: int) -> None:
        if (it + 1) % self.refresh_every == 0:
            self.frozen.load_state_dict(self.student.state_dict())
