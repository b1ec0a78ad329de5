"""Mean Teacher (Tarvainen & Valpola 2017) as in the LA literature (UA-MT / SSL4MIS).

* teacher = EMA of the student, decay min(1 - 1/(step + 1), cfg.ema_decay) (:class:`EMATeacher`);
* teacher input = unlabelled crops + clamp(0.1 N(0, 1), -0.2, 0.2);
* consistency = mean squared difference of the softmaxes on the unlabelled voxels, weight
  ``cfg.consistency * sigmoid_rampup(iter // 150, cfg.consistency_rampup)`` (0.1, L = 40);
* loss = 0.5 (CE + Dice) on the labelled items + weight * consistency.

UA-MT and AC-MT reuse this class and only change :meth:`MeanTeacher.consistency` (which voxels count).
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch

from .base import EMATeacher, Method, StepOutput, teacher_noise
from .losses import softmax_mse
from .ramps import consistency_weight


class MeanTeacher(Method):
    name = "mean_teacher"

    def __init__(self, student, cfg, num_classes):
        super().__init__(student, cfg, num_classes)
        self.teacher = EMATeacher(student, cfg.ema_decay)
        self.extra["teacher"] = self.teacher.model

    def consistency(
        self, student_u: torch.Tensor, teacher_u: torch.Tensor, x_u: torch.Tensor, it: int
    ) -> Tuple[torch.Tensor, Dict[str, float]]:
        """Unsupervised term on logits (Bu, C, h, w, d): plain MSE of softmaxes over all voxels."""
        return softmax_mse(student_u, teacher_u).mean(), {}

    def step(self, batch, it):
        x, y, lbs = self.split(batch)
        x_u = x[lbs:]
        logits = self.student(x)
        teacher_u = self.teacher(x_u + teacher_noise(x_u))
        sup = self.supervised(logits[:lbs], y)
        cons, logs = self.consistency(logits[lbs:], teacher_u, x_u, it)
        w = consistency_weight(it, self.cfg.consistency, self.cfg.consistency_rampup)
        logs = {"loss_sup": float(sup.detach()), "loss_cons": float(cons.detach()), "w_cons": w, **logs}
        return StepOutput(sup + w * cons, logs, logits[lbs:])

    def after_step(self, it: int) -> None:
        self.teacher.update(self.student, it)
