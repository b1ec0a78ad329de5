"""Sliding-window inference over a whole volume: one path for V-Net evaluation and SAM tiles.

``sliding_window_average(predict, image (H, W, D), patch, stride) -> prob (C, H, W, D)``, the LA
protocol of UA-MT's ``test_single_case``:

* pad the volume to at least ``patch`` per axis, split evenly (:func:`sfr_teach.padding.pad_to`:
  ``(p // 2, p - p // 2)`` with ``p = max(patch - size, 0)``; image value 0);
* windows start at ``min(stride * i, size - patch)`` for ``i = 0 .. ceil((size - patch) / stride)``
  along every axis (:func:`window_starts`; the last window is flush with the end), all
  combinations, x slowest (:func:`window_positions`);
* ``predict(windows (n, 1, h, w, d)) -> probabilities (n, C, h, w, d)`` runs on ``batch_size``
  windows at a time; each window's probabilities are added into a score map on the image's device
  and divided by the number of windows covering each voxel (the averaged softmax); the padding is
  cropped off again.

``mode="gaussian"`` instead blends the same windows with MONAI's ``sliding_window_inference``
(Gaussian importance map, ``sigma_scale=0.125``); its per-axis ``overlap = 1 - (stride + 0.5) / patch``
gives its scan interval ``int(patch * (1 - overlap)) = stride`` (the window starts follow the same
rule; ``tests/test_evaluate.py`` checks that MONAI's ``mode="constant"`` equals our loop).

Everything runs under ``torch.inference_mode`` on the image's device: windows are sliced there,
nothing goes back to the host until the caller asks for it.
"""
from __future__ import annotations

import math
from itertools import product
from typing import Callable, List, Sequence, Tuple

import torch

from .padding import center_crop, pad_to, symmetric_padding

__all__ = ["window_starts", "window_positions", "sliding_window_average"]

Triple = Tuple[int, int, int]


def window_starts(size: int, patch: int, stride: int) -> List[int]:
    """Window starts along one axis of ``size`` (>= ``patch``): ``min(stride * i, size - patch)``.

    ``ceil((size - patch) / stride) + 1`` windows, the last one flush with the end (190, 112, 18 ->
    [0, 18, 36, 54, 72, 78]).
    """
    if size < patch:
        raise ValueError(f"axis of size {size} is smaller than the patch {patch}; pad it first (pad_to)")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    n = math.ceil((size - patch) / stride) + 1
    return [min(stride * i, size - patch) for i in range(n)]


def window_positions(shape: Sequence[int], patch: Sequence[int], stride: Sequence[int]) -> List[Triple]:
    """All window corners ``(x, y, z)`` in the volume padded by :func:`pad_to`, x slowest, as UA-MT loops."""
    padded = [n + a + b for n, (a, b) in zip(shape, symmetric_padding(shape, patch))]
    axes = [window_starts(s, p, st) for s, p, st in zip(padded, patch, stride)]
    return list(product(*axes))  # type: ignore[arg-type]


def _coverage(shape: Sequence[int], patch: Sequence[int], stride: Sequence[int], device) -> torch.Tensor:
    """How many windows cover each voxel of the padded ``shape``: the outer product of the per-axis counts."""
    counts = []
    for n, p, s in zip(shape, patch, stride):
        c = torch.zeros(n, dtype=torch.float32, device=device)
        for start in window_starts(n, p, s):
            c[start : start + p] += 1
        counts.append(c)
    return counts[0][:, None, None] * counts[1][None, :, None] * counts[2][None, None, :]


def sliding_window_average(
    predict: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    patch_size: Sequence[int],
    stride: Sequence[int],
    batch_size: int = 4,
    mode: str = "constant",
) -> torch.Tensor:
    """Probabilities ``(C, H, W, D)`` float32 of ``image (H, W, D)`` (a tensor on the device
    ``predict`` runs on; see the module doc). ``predict``: ``(n, 1, h, w, d) -> (n, C, h, w, d)``."""
    if image.ndim != 3:
        raise ValueError(f"sliding_window_average expects one image shaped (H, W, D), got {tuple(image.shape)}")
    if mode not in ("constant", "gaussian"):
        raise ValueError(f"mode must be 'constant' (LA protocol) or 'gaussian' (MONAI), got {mode!r}")
    patch = tuple(int(p) for p in patch_size)
    stride = tuple(int(s) for s in stride)
    bs = max(1, int(batch_size))
    with torch.inference_mode():
        x = pad_to(image.float(), patch)
        if mode == "gaussian":
            from monai.inferers import sliding_window_inference

            overlap = [1.0 - (s + 0.5) / p for s, p in zip(stride, patch)]
            score = sliding_window_inference(x[None, None], patch, bs, predict, overlap=overlap, mode="gaussian")[0]
        else:
            corners = [tuple(slice(c, c + p) for c, p in zip(corner, patch))
                       for corner in product(*(window_starts(n, p, s) for n, p, s in zip(x.shape, patch, stride)))]
            score = None
            for i in range(0, len(corners), bs):
                boxes = corners[i : i + bs]
                probs = predict(torch.stack([x[b] for b in boxes])[:, None]).float()
                if score is None:
                    score = torch.zeros((probs.shape[1], *x.shape), dtype=torch.float32, device=probs.device)
                for b, pr in zip(boxes, probs):
                    score[(slice(None), *b)] += pr
            score /= _coverage(x.shape, patch, stride, score.device)
        return center_crop(score.float(), image.shape)
