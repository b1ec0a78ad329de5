"""Training samples of SAM fine-tuning: augmented crops of labelled volumes, stitched to mosaics.

One sample (:class:`MosaicDataset`)::

    labelled volume (H, W, D) --z-score over the volume (normalize=True)-->
      --sfr_teach.data.train_transform: symmetric pad to the crop (image 0, label 255), random crop
        ``crop_size``, rot90 k*90 deg + flips in the axial (H, W) plane, Bezier intensity curve with
        probability ``intensity_prob`` (the same transforms as the V-Net's crops)-->
      --stitch (sfr_teach.stitching, out_size=S)--> image (1, S, S) float32, label (S, S) int64
    padding and empty grid cells carry the ignore index 255 (sfr_teach.losses.IGNORE_INDEX).

Sample ``i`` is drawn with its own generator seeded by ``(seed, i)``, so the data stream is a pure
function of the seed and the step -- a resumed run sees exactly the batches it would have.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np
import torch

from ..data.transforms import train_transform
from ..data.volume import zscore
from ..losses import IGNORE_INDEX
from ..stitching import make_layout, stitch

__all__ = ["as_pair", "MosaicDataset"]


def as_pair(vol: Any) -> Tuple[str, np.ndarray, Optional[np.ndarray]]:
    """``(name, image (H, W, D) float32, label (H, W, D) uint8 | None)`` from a Volume-like object
    (``.name/.image/.label``) or an ``(image, label)`` tuple."""
    if isinstance(vol, (tuple, list)):
        image, label = vol
        name = "volume"
    else:
        image, label, name = vol.image, getattr(vol, "label", None), getattr(vol, "name", "volume")
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"{name}: expected an image shaped (H, W, D), got {image.shape}")
    if label is not None:
        label = np.asarray(label)
        if label.shape != image.shape:
            raise ValueError(f"{name}: label shape {label.shape} differs from image shape {image.shape}")
    return name, image, label


class MosaicDataset(torch.utils.data.Dataset):
    """Labelled volumes -> stitched training mosaics (see the module doc).

    ``ds[i] -> (image (1, S, S) float32, label (S, S) int64)``; ``len(ds) = length``.
    Args: volumes (Volume-like or (image, label)); crop_size (h, w, d); image_size S;
    augment: random rot90/flip and the intensity curve; intensity_prob: probability of the Bezier
    intensity curve (:func:`sfr_teach.data.transforms.bezier_intensity`; the official code uses 0.5);
    seed; num_classes (labels are checked against it); normalize: z-score each volume first.
    """

    def __init__(self, volumes: Sequence[Any], crop_size: Sequence[int], image_size: int, augment: bool = True,
                 seed: int = 0, length: int = 10**9, num_classes: Optional[int] = None,
                 intensity_prob: float = 0.0, normalize: bool = True) -> None:
        self.items = []
        for v in volumes:
            name, image, label = as_pair(v)
            if label is None:
                raise ValueError(f"{name}: fine-tuning needs labelled volumes, this one has no label")
            if num_classes is not None and int(label.max()) >= num_classes:
                raise ValueError(f"{name}: label value {int(label.max())} >= num_classes={num_classes}; "
                                 "set num_classes (background included) to cover every class")
            self.items.append((name, zscore(image) if normalize else image, label.astype(np.uint8)))
        if not self.items:
            raise ValueError("fine-tuning needs at least one labelled volume, got none")
        self.crop = tuple(int(c) for c in crop_size)
        self.layout = make_layout(self.crop, image_size)
        self.seed, self.length = int(seed), int(length)
        self.transform = train_transform(self.crop, rotate_flip=augment, label_pad_value=IGNORE_INDEX,
                                         intensity_prob=float(intensity_prob) if augment else 0.0)

    def __len__(self) -> int:
        return self.length

    def sample(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Sample ``i`` before stitching: ``(image (h, w, d) float32, label (h, w, d) int64)``."""
        rng = np.random.default_rng([self.seed, int(i)])
        _, image, label = self.items[int(rng.integers(len(self.items)))]
        self.transform.set_random_state(seed=int(rng.integers(2**31)))
        out = self.transform({"image": image[None], "label": label[None]})
        return out["image"][0], out["label"][0]

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        image, label = self.sample(i)
        img = stitch(image.float(), self.layout, fill=0)
        lab = stitch(label, self.layout, is_label=True, fill=IGNORE_INDEX)
        return img[None], lab

    def batch(self, start: int, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Samples ``start .. start+size-1`` stacked: (size, 1, S, S), (size, S, S)."""
        xs, ys = zip(*(self[start + j] for j in range(size)))
        return torch.stack(xs), torch.stack(ys)
