"""Predict a whole 3D volume with a fine-tuned SAM: tiles -> mosaics -> SAM -> back to 3D.

SAM was trained on mosaics of ``crop_size`` crops, so at inference every tile it sees has that
same geometry (same grid, same cell size, same scale):

* along each axis the tiles start at ``0, stride, 2*stride, ...`` and a last tile is flush with
  the far edge (``stride = ceil(crop / 2)`` by default, i.e. half-overlapping tiles);
* the volume is z-scored first (``normalize=True``, as in fine-tuning);
* an axis shorter than the crop is padded (image value 0 -- the mean of a z-scored volume)
  and the padding is cut off again;
* each tile is stitched (:func:`sfr_teach.stitching.stitch`), predicted, its softmax
  probabilities unstitched to (C, h, w, d), and the probabilities of overlapping tiles are
  averaged voxel-wise. The label is their argmax.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..stitching import make_layout, stitch, unstitch
from .finetune import zscore

__all__ = ["tile_starts", "predict_mosaics", "predict_volume"]


def tile_starts(n: int, crop: int, stride: int) -> List[int]:
    """Start offsets covering ``[0, n)`` with tiles of ``crop`` (one tile at 0 when n <= crop)."""
    if n <= crop:
        return [0]
    starts = list(range(0, n - crop, stride))
    return starts + [n - crop]


@torch.no_grad()
def predict_mosaics(segmenter: nn.Module, mosaics: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Softmax probabilities (B, C, S, S) float32 of mosaics (B, 1, S, S); bf16 autocast on CUDA."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        logits = segmenter(mosaics.to(device))
    return logits.float().softmax(1)


@torch.no_grad()
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
    pad = [max(0, c - n) for n, c in zip(image.shape, crop)]
    padded = np.pad(image, [(p // 2, p - p // 2) for p in pad]) if any(pad) else image
    shape = padded.shape
    layout = make_layout(crop, image_size)
    was_training = segmenter.training
    segmenter.eval()
    segmenter.to(device)
    c = getattr(segmenter, "num_classes", None)
    acc: Optional[torch.Tensor] = None
    count = torch.zeros(shape, dtype=torch.float32)
    boxes = [(i, j, k) for i in tile_starts(shape[0], crop[0], stride[0])
             for j in tile_starts(shape[1], crop[1], stride[1]) for k in tile_starts(shape[2], crop[2], stride[2])]
    for b in range(0, len(boxes), max(1, int(batch_size))):
        chunk = boxes[b : b + batch_size]
        tiles = np.stack([padded[i : i + crop[0], j : j + crop[1], k : k + crop[2]] for i, j, k in chunk])
        mosaics = stitch(torch.from_numpy(tiles), layout, fill=0)[:, None]  # (n, 1, S, S)
        prob = unstitch(predict_mosaics(segmenter, mosaics, device).cpu(), layout)  # (n, C, h, w, d)
        if acc is None:
            c = prob.shape[1]
            acc = torch.zeros((c, *shape), dtype=torch.float32)
        for (i, j, k), p in zip(chunk, prob):
            acc[:, i : i + crop[0], j : j + crop[1], k : k + crop[2]] += p
            count[i : i + crop[0], j : j + crop[1], k : k + crop[2]] += 1
    segmenter.train(was_training)
    prob = (acc / count).numpy()
    if any(pad):
        lo = [p // 2 for p in pad]
        prob = prob[:, lo[0] : lo[0] + image.shape[0], lo[1] : lo[1] + image.shape[1], lo[2] : lo[2] + image.shape[2]]
    prob = np.ascontiguousarray(prob, dtype=np.float32)
    return prob.argmax(0).astype(np.uint8), prob
