"""Symmetric padding, the one formula: ``(p // 2, p - p // 2)`` with ``p = max(size - n, 0)`` per axis.

UA-MT's test loop, MONAI's ``SpatialPad(method="symmetric")`` and the SAM tiles all pad this way;
:func:`center_crop` takes the same centre back out. Works on numpy arrays and torch tensors (any
device), on the last ``len(size)`` axes.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["symmetric_padding", "pad_to", "center_crop"]

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def symmetric_padding(shape: Sequence[int], size: Sequence[int]) -> List[Tuple[int, int]]:
    """``(before, after)`` per axis that brings ``shape`` up to at least ``size``, split evenly:
    ``(p // 2, p - p // 2)`` with ``p = max(size - n, 0)`` (UA-MT, MONAI ``method="symmetric"``)."""
    return [(max(s - n, 0) // 2, max(s - n, 0) - max(s - n, 0) // 2) for n, s in zip(shape, size)]


def pad_to(x: Array, size: Sequence[int], value: float = 0) -> Array:
    """Pad the last ``len(size)`` axes of ``x`` (numpy or torch) symmetrically to at least ``size``."""
    pads = symmetric_padding(x.shape[x.ndim - len(size):], size)
    if not any(a or b for a, b in pads):
        return x
    if isinstance(x, np.ndarray):
        return np.pad(x, [(0, 0)] * (x.ndim - len(size)) + pads, constant_values=value)
    return F.pad(x, [v for a, b in reversed(pads) for v in (a, b)], value=value)


def center_crop(x: Array, shape: Sequence[int]) -> Array:
    """The centre ``shape`` (each <= the axis) of the last ``len(shape)`` axes of ``x``; undoes :func:`pad_to`."""
    n = len(shape)
    pads = symmetric_padding(shape, x.shape[x.ndim - n:])
    return x[(Ellipsis, *(slice(a, a + s) for (a, _), s in zip(pads, shape)))]
