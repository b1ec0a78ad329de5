"""AC-MT (Xu et al., MedIA 2023): Mean Teacher whose consistency only counts *ambiguous* voxels.

The opposite selection to UA-MT, with AC-MT's entropy-based ambiguity criterion: a voxel is ambiguous
when the student's normalised entropy H(softmax_s) / ln C is >= tau(it), tau rising from 0.75 to 0.95
over ``cfg.steps`` (sigmoid ramp); consistency = MSE of softmaxes averaged over the selected voxels
(:func:`sfr_teach.ssl.ua_mt.masked_mean`), weight as Mean Teacher. (The paper also proposes
model-uncertainty, label-noise and prototype criteria; the entropy one is the simplest.)
"""
from __future__ import annotations

import math

import torch

from .losses import entropy, softmax_mse
from .mean_teacher import MeanTeacher
from .ramps import sigmoid_rampup
from .ua_mt import masked_mean


def acmt_tau(it: int, steps: int, start: float = 0.75, end: float = 0.95) -> float:
    """Ambiguity threshold on the normalised entropy, ``start -> end`` with the sigmoid ramp."""
    return start + (end - start) * sigmoid_rampup(it, steps)


class ACMT(MeanTeacher):
    name = "ac_mt"

    def consistency(self, student_u, teacher_u, x_u, it):
        tau = acmt_tau(it, self.cfg.steps)
        with torch.no_grad():
            h = entropy(torch.softmax(student_u.float(), 1)) / math.log(self.num_classes)
            mask = (h >= tau).float()
        cons = masked_mean(softmax_mse(student_u, teacher_u), mask)
        return cons, {"tau": tau, "mask_frac": float(mask.mean())}
