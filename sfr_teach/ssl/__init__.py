"""Stage 3 of SFR: semi-supervised re-training of the V-Net, with the SAM pseudo-label term.

One module per method behind :class:`~sfr_teach.ssl.base.Method`; the SFR term
(:class:`~sfr_teach.ssl.sfr_term.SFRTerm`) is added by the trainer, never by a method. Re-training
sees pseudo-label *arrays* (or an ``pseudo_label_fn`` closure), never SAM itself.

``build_method(name, student, cfg, num_classes)`` with name in :data:`METHODS`;
``train(...)`` in :mod:`sfr_teach.ssl.trainer`.
"""
from __future__ import annotations

from typing import Dict, Type

from .ac_mt import ACMT
from .base import EMATeacher, Method, StepOutput
from .magicnet import MagicNet
from .mean_teacher import MeanTeacher
from .self_training import SelfTraining
from .sfr_term import SFRTerm
from .supervised import Supervised
from .ua_mt import UAMT

METHODS: Dict[str, Type[Method]] = {
    m.name: m for m in (Supervised, SelfTraining, MeanTeacher, UAMT, ACMT, MagicNet)
}


def build_method(name: str, student, cfg, num_classes: int) -> Method:
    """Instantiate a registered method around ``student`` (an already built, placed network)."""
    if name not in METHODS:
        raise ValueError(f"sfr_teach/ssl: unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name](student, cfg, num_classes)


def train(*args, **kw):
    """Shortcut for :func:`sfr_teach.ssl.trainer.train` (imported lazily)."""
    from .trainer import train as _train

    return _train(*args, **kw)


__all__ = ["METHODS", "Method", "StepOutput", "EMATeacher", "SFRTerm", "build_method", "train"]
