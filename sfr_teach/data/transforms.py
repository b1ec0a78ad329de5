"""Training transforms (MONAI dictionary transforms) and small numpy shape helpers.

:func:`train_transform` is the one augmentation path of the package: the V-Net's training crops
(:class:`sfr_teach.ssl.batches.CropBatcher`) and SAM's fine-tuning mosaics
(:class:`sfr_teach.sam.mosaics.MosaicDataset`, labels padded with the ignore value 255 and the
Bezier intensity curve at rate 0.5, as the official SFR code) draw from it.

Samples are dicts of channel-first arrays: ``image`` (1, H, W, D) float32, ``label`` (1, H, W, D)
integer, optionally ``pseudo`` (1, H, W, D) pseudo-labels and ``prob`` (C, H, W, D) class
probabilities. Every random transform draws its parameters once per sample and applies them to
every key, so image, label, pseudo-label and probabilities stay aligned.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from monai.data import get_track_meta, set_track_meta
from monai.transforms import (
    Compose,
    MapTransform,
    RandFlipd,
    RandomizableTransform,
    RandRotate90d,
    RandSpatialCropd,
    SpatialPadd,
)

from ..padding import center_crop, pad_to
from .volume import Volume


class PlainCompose(Compose):
    """A MONAI ``Compose`` that returns plain ``torch.Tensor`` (no MetaTensor) values.

    Metadata tracking is switched off while it runs and restored afterwards; this is also faster.
    """

    def __call__(self, data, *args, **kwargs):  # type: ignore[override]
        previous = get_track_meta()
        set_track_meta(False)
        try:
            out = super().__call__(data, *args, **kwargs)
        finally:
            set_track_meta(previous)
        return {k: (torch.as_tensor(v) if isinstance(v, np.ndarray) else v) for k, v in out.items()}


def bezier_intensity(image: np.ndarray, rng: np.random.Generator | np.random.RandomState) -> np.ndarray:
    """Random monotone-or-not Bezier curve applied to the intensities (the official SFR / Models
    Genesis non-linear augmentation): rescale to [0, 1], map through a cubic Bezier curve with
    end points (0, 0), (1, 1) and two random control points, rescale back to the original range."""
    lo, hi = float(image.min()), float(image.max())
    if hi <= lo:
        return image
    p = np.array([[0.0, 0.0], *rng.random((2, 2)), [1.0, 1.0]])
    t = np.linspace(0.0, 1.0, 256)[:, None]
    curve = (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t**2 * p[2] + t**3 * p[3]
    order = np.argsort(curve[:, 0])
    x = (image - lo) / (hi - lo)
    return (np.interp(x, curve[order, 0], curve[order, 1]) * (hi - lo) + lo).astype(np.float32)


class RandBezierIntensityd(RandomizableTransform, MapTransform):
    """With probability ``prob``, :func:`bezier_intensity` on each of ``keys`` (one curve per sample)."""

    def __init__(self, keys: Sequence[str], prob: float = 0.5, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)

    def randomize(self, data=None) -> None:
        super().randomize(None)
        self._seed = int(self.R.randint(2**31))  # one curve per sample, the same for every key

    def __call__(self, data):
        d = dict(data)
        self.randomize()
        if self._do_transform:
            for k in self.key_iterator(d):
                x = np.asarray(torch.as_tensor(d[k]).cpu())
                d[k] = torch.as_tensor(bezier_intensity(x, np.random.default_rng(self._seed)))
        return d


def train_transform(
    patch_size: Sequence[int],
    keys: Sequence[str] = ("image", "label"),
    label_keys: Sequence[str] = ("label",),
    rotate_flip: bool = True,
    label_pad_value: int = 0,
    intensity_prob: float = 0.0,
) -> Compose:
    """Pad to at least ``patch_size``, random crop of ``patch_size``, then (``rotate_flip``) a random
    90-degree rotation in the axial (H, W) plane and random flips along H and W, then (with
    probability ``intensity_prob``) a Bezier intensity curve on ``image`` (:func:`bezier_intensity`).

    Input: dict of numpy arrays / tensors shaped (C, H, W, D) (keys missing from a sample are
    skipped, so one transform serves labelled and unlabelled samples). Output: the same keys as
    plain torch tensors of shape (C, *patch_size); ``label_keys`` become int64. Padding is symmetric
    (:func:`sfr_teach.padding.symmetric_padding`): 0 for images, ``label_pad_value`` for
    ``label_keys`` (0 for the V-Net as UA-MT; SAM passes the ignore value 255, as the official code).
    Repeatable after ``transform.set_random_state(seed)``. For a non-square axial patch (H != W) the
    rotation and flips come first (as in UA-MT), so that a quarter turn cannot swap the patch's H and W.
    """
    keys, label_keys = list(keys), [k for k in label_keys if k in keys]
    patch = tuple(int(p) for p in patch_size)
    if len(patch) != 3 or min(patch) < 1:
        raise ValueError(f"patch_size must be 3 positive sizes (H, W, D), got {patch_size}")
    kw = {"keys": keys, "allow_missing_keys": True}
    pad = {"spatial_size": patch, "method": "symmetric", "mode": "constant", "allow_missing_keys": True}
    other_keys = [k for k in keys if k not in label_keys]
    geometry = [SpatialPadd(keys=ks, value=v, **pad) for ks, v in ((other_keys, 0), (label_keys, label_pad_value)) if ks]
    geometry.append(RandSpatialCropd(roi_size=patch, random_size=False, **kw))
    augment = []
    if rotate_flip:
        augment = [
            RandRotate90d(prob=0.75, max_k=3, spatial_axes=(0, 1), **kw),  # k uniform in {0, 1, 2, 3}
            RandFlipd(prob=0.5, spatial_axis=0, **kw),
            RandFlipd(prob=0.5, spatial_axis=1, **kw),
        ]
    steps = geometry + augment if patch[0] == patch[1] else augment + geometry
    if intensity_prob > 0 and "image" in keys:
        steps.append(RandBezierIntensityd(["image"], prob=intensity_prob))
    steps.append(_CastLabels(label_keys))
    return PlainCompose(steps)


class _CastLabels:
    """Label maps to int64 tensors (what cross-entropy expects)."""

    def __init__(self, keys: Sequence[str]):
        self.keys = list(keys)

    def __call__(self, data):
        d = dict(data)
        for k in self.keys:
            if k in d:
                d[k] = torch.as_tensor(d[k]).long()
        return d


def to_channel_first(arr: np.ndarray) -> np.ndarray:
    """(H, W, D) -> (1, H, W, D); an array that already has a channel axis (C, H, W, D) is returned as is."""
    arr = np.asarray(arr)
    if arr.ndim == 3:
        return arr[None]
    if arr.ndim == 4:
        return arr
    raise ValueError(f"expected a (H, W, D) or (C, H, W, D) array, got shape {arr.shape}")


def volume_to_sample(vol: Volume, **extra: np.ndarray) -> dict:
    """A :class:`Volume` as a transform input: {"image": (1,H,W,D) float32, "label": (1,H,W,D) uint8, **extra}.

    ``extra`` arrays (e.g. pseudo=(H,W,D), prob=(C,H,W,D)) get a channel axis when they lack one.
    """
    sample = {"image": to_channel_first(vol.image.astype(np.float32, copy=False))}
    if vol.label is not None:
        sample["label"] = to_channel_first(vol.label)
    for k, v in extra.items():
        sample[k] = to_channel_first(v)
    return sample


def crop_around_label(volume, size: Sequence[int]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """``(image, label)`` crops of ``size`` centred on the labelled structure (on the volume centre without one).

    For figures and lessons: the crop shows the structure rather than background. The box is shifted
    to stay inside the volume; an axis shorter than ``size`` is kept whole (no padding).
    """
    image, label = volume.image, volume.label
    has = label is not None and label.any()
    centre = [int(np.mean(ix)) for ix in np.nonzero(label)] if has else [n // 2 for n in image.shape]
    start = [min(max(c - s // 2, 0), max(n - s, 0)) for c, s, n in zip(centre, size, image.shape)]
    box = tuple(slice(b, b + int(s)) for b, s in zip(start, size))
    return image[box], (None if label is None else label[box])


def center_crop_or_pad(arr: np.ndarray, size: Sequence[int], value: float = 0) -> np.ndarray:
    """Centre-crop or pad (``value``, split evenly) the last three axes of (..., H, W, D) to (..., *size)."""
    arr = np.asarray(arr)
    size = tuple(int(s) for s in size)
    if len(size) != 3 or arr.ndim < 3:
        raise ValueError(f"need a (..., H, W, D) array and 3 sizes, got shape {arr.shape} and size {size}")
    cropped = center_crop(arr, [min(n, s) for n, s in zip(arr.shape[-3:], size)])
    return pad_to(cropped, size, value)
