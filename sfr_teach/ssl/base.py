"""The one interface every semi-supervised method implements, and the EMA teacher.

A method owns its losses (and any teacher or extra head); the trainer owns data, optimiser,
logging, checkpoints and the SFR pseudo-label term. One iteration::

    out = method.step(batch, it)          # batch["image"] (B, 1, h, w, d), the first Bl labelled
                                          # batch["label"] (Bl, h, w, d) int64
    loss = out.loss + sfr_term(out.unlabeled_logits, pseudo, it)   # added by the trainer only
    loss.backward(); optimizer.step(); method.after_step(it)       # e.g. the EMA teacher update

:class:`StepOutput`: ``loss`` -- the method's own total (0.5 (CE + Dice) on the labelled items plus
its unsupervised term); ``logs`` -- floats (``loss_sup`` always); ``unlabeled_logits`` -- the
student's logits on the unlabelled items (Bu, C, h, w, d), or None when ``need_unlabeled_logits``
is False and the method does not look at them.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Optional

import torch
from torch import nn

from ..losses import ce_dice


@dataclass
class StepOutput:
    loss: torch.Tensor
    logs: Dict[str, float] = field(default_factory=dict)
    unlabeled_logits: Optional[torch.Tensor] = None


class EMATeacher:
    """A frozen copy of the student whose parameters follow it by exponential moving average.

    ``update(student, step)`` sets theta_t <- a theta_t + (1 - a) theta_s with
    a = min(1 - 1/(step + 1), decay) (step 0 copies the student). As in the reference code only the
    parameters are averaged; the teacher stays in train mode (batch-norm statistics of its own batch,
    dropout active -- UA-MT's stochastic passes rely on it) and keeps its own running statistics.
    """

    def __init__(self, student: nn.Module, decay: float = 0.99):
        self.model = copy.deepcopy(student)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay = decay

    def alpha(self, step: int) -> float:
        return min(1.0 - 1.0 / (step + 1), self.decay)

    @torch.no_grad()
    def update(self, student: nn.Module, step: int) -> None:
        a = self.alpha(step)
        teacher = list(self.model.parameters())
        torch._foreach_mul_(teacher, a)  # one call for all parameters, same values as a per-tensor loop
        torch._foreach_add_(teacher, [s.detach() for s in student.parameters()], alpha=1.0 - a)

    def __call__(self, x: torch.Tensor, **kw) -> Any:
        """The teacher's output under ``torch.inference_mode`` (no autograd bookkeeping). The result
        is an inference tensor: combine it with student tensors in new tensors (softmax, masks), never
        as something autograd saves as is (e.g. a cross-entropy target: ``.clone()`` it first)."""
        with torch.inference_mode():
            return self.model(x, **kw)


def teacher_noise(x: torch.Tensor, std: float = 0.1, clip: float = 0.2) -> torch.Tensor:
    """Mean-Teacher input noise: clamp(std * N(0, 1), -clip, clip), same shape as x."""
    return torch.clamp(torch.randn_like(x) * std, -clip, clip)


class Method:
    """Base class: holds the student, the config and helpers; subclasses implement :meth:`step`.

    Class attributes: ``name`` (registry key); ``uses_unlabeled`` (False only for the purely
    supervised baseline: the trainer then feeds labelled items only unless the SFR term is on).
    Extra modules (a teacher, a head) go in ``self.extra`` so that checkpoints hold them.
    """

    name = "base"
    uses_unlabeled = True

    def __init__(self, student: nn.Module, cfg, num_classes: int):
        self.student = student
        self.cfg = cfg
        self.num_classes = int(num_classes)
        self.need_unlabeled_logits = True  # the trainer sets False when no SFR term reads them
        self.extra: Dict[str, nn.Module] = {}  # checkpointed with the student
        self.heads: Dict[str, nn.Module] = {}  # trained with the student (optimizer sees them)

    # -- what the trainer calls -------------------------------------------------------------
    def step(self, batch: Dict[str, torch.Tensor], it: int) -> StepOutput:
        raise NotImplementedError

    def after_step(self, it: int) -> None:
        """Called after ``optimizer.step()`` of iteration ``it`` (EMA updates, refreshes)."""

    def parameters(self) -> Iterator[nn.Parameter]:
        """Everything the optimiser trains: the student and any heads."""
        yield from self.student.parameters()
        for h in self.heads.values():
            yield from h.parameters()

    def train(self) -> None:
        self.student.train()
        for m in list(self.heads.values()) + list(self.extra.values()):
            m.train()

    def state_dict(self) -> Dict[str, Any]:
        mods = {**self.extra, **self.heads}
        return {"modules": {k: m.state_dict() for k, m in mods.items()}, "state": self.extra_state()}

    def load_state_dict(self, d: Dict[str, Any]) -> None:
        mods = {**self.extra, **self.heads}
        for k, sd in d.get("modules", {}).items():
            mods[k].load_state_dict(sd)
        self.load_extra_state(d.get("state", {}))

    def extra_state(self) -> Dict[str, Any]:
        """Non-module state to checkpoint (e.g. running class counts)."""
        return {}

    def load_extra_state(self, state: Dict[str, Any]) -> None:
        pass

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def split(batch: Dict[str, torch.Tensor]):
        """-> image (B, 1, h, w, d), label (Bl, h, w, d), Bl."""
        x, y = batch["image"], batch["label"]
        if y.shape[0] > x.shape[0]:
            raise ValueError(f"sfr_teach/ssl: batch has {y.shape[0]} labels for {x.shape[0]} images")
        return x, y, y.shape[0]

    def supervised(self, logits_l: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """0.5 * (CE + Dice) on the labelled items."""
        return ce_dice(logits_l, y)
