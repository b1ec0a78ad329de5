"""Weight schedules shared by the semi-supervised methods (UA-MT / SSL4MIS ``ramps``).

* :func:`sigmoid_rampup` -- exp(-5 (1 - t/L)^2), 0 -> 1 over L units (Laine & Aila 2017); L = 0 gives 1.
* :func:`consistency_weight` -- the Mean-Teacher weight ``w * sigmoid_rampup(iter // 150, L)``.
* :func:`linear_ramp` -- a value moving linearly ``start -> end`` over ``length`` units.
"""
from __future__ import annotations

import math


def sigmoid_rampup(current: float, rampup_length: float) -> float:
    """exp(-5 (1 - t/L)^2) with t clipped to [0, L]; 1.0 when L == 0."""
    if rampup_length <= 0:
        return 1.0
    t = min(max(float(current), 0.0), float(rampup_length))
    phase = 1.0 - t / rampup_length
    return float(math.exp(-5.0 * phase * phase))


def consistency_weight(iteration: int, weight: float, rampup: float, epoch_len: int = 150) -> float:
    """The reference consistency weight: ``weight * sigmoid_rampup(iteration // epoch_len, rampup)``.

    With weight 0.1 and rampup 40 (LA protocol) it reaches 0.1 at iteration 6000.
    """
    return weight * sigmoid_rampup(iteration // epoch_len, rampup)


def linear_ramp(current: float, length: float, start: float, end: float) -> float:
    """``start + (end - start) * min(current / length, 1)`` (``end`` when length <= 0)."""
    if length <= 0:
        return end
    return start + (end - start) * min(max(float(current), 0.0) / length, 1.0)
