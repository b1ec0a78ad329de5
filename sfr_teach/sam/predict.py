"""Predict a whole 3D volume with a fine-tuned SAM: tiles -> mosaics -> SAM -> back to 3D.

SAM was trained on mosaics of ``crop_size`` crops, so at inference every tile it sees has that
same geometry (same grid, same cell size, same scale). The tiles are the windows of
:func:`sfr_teach.sliding_window.sliding_window_average`, the package's one sliding-window path
(V-Net evaluation uses it too):

* along each axis the tiles start at ``0, stride, 2*stride, ...`` and a last tile is flush with
  the far edge (``stride = ceil(crop / 2)`` by default, i.e. half-overlapping tiles);
* the volume is z-scored first (``normalize=True``, as in fine-tuning);
* an axis shorter than the crop is padded symmetrically (image value 0 -- the mean of a z-scored
  volume) and the padding is cut off again;
* ``batch_size`` tiles at a time are stitched (:func:`sfr_teach.stitching.stitch`) on the device,
  predicted, their softmax probabilities unstitched to (C, h, w, d), and the probabilities of
  overlapping tiles are averaged voxel-wise. The label is their argmax.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..data.volume import zscore
from ..sliding_window import sliding_window_average
from ..stitching import make_layout, stitch, unstitch
from ..torch_utils import autocast, eval_mode

__all__ = ["predict_mosaics", "predict_volume"]


def predict_mosaics(segmenter: nn.Module, mosaics: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Softmax probabilities (B, C, S, S) float32 of mosaics (B, 1, S, S); bf16 autocast on CUDA."""
    with torch.inference_mode(), autocast(device):
        logits = segmenter(mosaics.to(device))
    return logits.float().softmax(1)


def predict_volume(
    segmenter: nn.Module,
    image: np.ndarray,
    crop_size: Sequence[int],
    image_size: int,
    device: str | torch.device = "cpu",
    batch_size: int = 2,
    stride: Optional[Sequence[int]] = None,
    normalize: bool = True,
) -> Tuple[np.ndarray, np.ndarray]:
    """``image (H, W, D)`` -> ``(label uint8 (H, W, D), prob float32 (C, H, W, D))``.

    ``crop_size``/``image_size``: the fine-tuning geometry (``SamConfig.crop_size``,
    ``.image_size``); ``stride``: tile step per axis (default half the crop, rounded up).
    """
    device = torch.device(device)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"predict_volume expects an image shaped (H, W, D), got {image.shape}")
    if normalize:
        image = zscore(image)
    crop = tuple(int(c) for c in crop_size)
    stride = tuple(int(s) for s in stride) if stride is not None else tuple(max(1, math.ceil(c / 2)) for c in crop)
    layout = make_layout(crop, image_size)

    def predict(tiles: torch.Tensor) -> torch.Tensor:  # (n, 1, h, w, d) -> (n, C, h, w, d)
        return unstitch(predict_mosaics(segmenter, stitch(tiles[:, 0], layout, fill=0)[:, None], device), layout)

    segmenter.to(device)
    with eval_mode(segmenter):
        prob = sliding_window_average(predict, torch.from_numpy(image).to(device), crop, stride, batch_size)
    prob = np.ascontiguousarray(prob.cpu().numpy(), dtype=np.float32)
    return prob.argmax(0).astype(np.uint8), prob
