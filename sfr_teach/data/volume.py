"""One 3D volume and its checks.

A :class:`Volume` is what every loader returns and every later stage reads:

* ``image``  float32 (H, W, D) -- intensities, the slicing axis last (D = 88 for LA)
* ``label``  uint8   (H, W, D) in {0, ..., C-1}, or ``None`` for an unlabelled volume
* ``spacing`` voxel size in mm along (H, W, D); ``affine`` the 4x4 voxel-to-world matrix when known

:func:`validate_volume` turns bad input into a :class:`DataError` that names the file, says what
is wrong and what to do. :func:`downsample_volume` shrinks a volume by an integer factor.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence, Tuple

import numpy as np


class DataError(ValueError):
    """Bad input data: the message names the file, what was wrong and how to fix it."""


class MissingDataError(DataError, FileNotFoundError):
    """A data file or folder that is not there (also a :class:`FileNotFoundError`)."""


@dataclass
class Volume:
    """A 3D image with an optional label map.

    image: float32 (H, W, D); label: uint8 (H, W, D) or None; spacing: mm per voxel (H, W, D);
    affine: 4x4 voxel-to-world matrix or None; source: the file it came from (for messages).
    """

    name: str
    image: np.ndarray
    label: Optional[np.ndarray] = None
    spacing: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    affine: Optional[np.ndarray] = None
    source: Optional[str] = None

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(self.image.shape)  # type: ignore[return-value]

    def __repr__(self) -> str:  # arrays are too long to print
        lab = "none" if self.label is None else f"{self.label.dtype}"
        return f"Volume(name={self.name!r}, shape={self.shape}, label={lab}, spacing={self.spacing})"


def validate_volume(
    image: np.ndarray,
    label: Optional[np.ndarray] = None,
    num_classes: Optional[int] = None,
    source: str = "<array>",
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Check one image (and label) and return them as float32 (H, W, D) / uint8 (H, W, D).

    Raises :class:`DataError` (naming ``source``) for: empty arrays, not 3D, NaN/inf intensities,
    label/image shape mismatch, label values that are not integers in [0, num_classes).
    """
    image = np.asarray(image)
    if image.size == 0:
        raise DataError(f"{source}: the image is empty (shape {image.shape}); re-create or re-download the file")
    if image.ndim != 3:
        raise DataError(
            f"{source}: the image must be 3D (H, W, D) but has {image.ndim} dimensions, shape {image.shape}; "
            "squeeze channel axes or select one volume (e.g. image[..., 0]) before loading"
        )
    if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
        raise DataError(f"{source}: the image has dtype {image.dtype}, expected real numbers")
    image = image.astype(np.float32, copy=False)
    bad = ~np.isfinite(image)
    if bad.any():
        raise DataError(
            f"{source}: the image holds {int(bad.sum())} NaN/inf intensities; "
            "fix or re-export the file (e.g. np.nan_to_num) before training"
        )
    if label is None:
        return image, None
    label = np.asarray(label)
    if label.size == 0:
        raise DataError(f"{source}: the label map is empty (shape {label.shape}); re-create the file")
    if label.shape != image.shape:
        raise DataError(
            f"{source}: label shape {label.shape} does not match image shape {image.shape}; "
            "image and label must be the same voxel grid (resample the label onto the image)"
        )
    if label.dtype == bool:  # a binary mask
        label = label.astype(np.uint8)
    if not np.issubdtype(label.dtype, np.number):
        raise DataError(f"{source}: the label map has dtype {label.dtype}, expected integers")
    if not np.issubdtype(label.dtype, np.integer):
        if not np.isfinite(label).all() or (label != np.round(label)).any():
            raise DataError(
                f"{source}: the label map holds non-integer values; labels must be class indices 0..C-1 "
                "(save labels with nearest-neighbour resampling, never interpolate them)"
            )
    lo, hi = int(label.min()), int(label.max())
    limit = 256 if num_classes is None else int(num_classes)
    if lo < 0 or hi >= limit:
        found = np.unique(label)
        shown = ", ".join(str(int(v)) for v in found[:10]) + (" ..." if found.size > 10 else "")
        raise DataError(
            f"{source}: label values must lie in [0, {limit}) but found {{{shown}}}; "
            + (
                f"set num_classes (background included) to at least {hi + 1}, or remap the labels"
                if lo >= 0
                else "remap the labels to 0..C-1"
            )
        )
    return image, label.astype(np.uint8, copy=False)


def _block_view(a: np.ndarray, factor: Tuple[int, int, int], mode: str) -> np.ndarray:
    """Pad (H, W, D) up to multiples of ``factor`` (per axis) and view it as (h, fh, w, fw, d, fd) blocks."""
    pad = [(0, (-n) % f) for n, f in zip(a.shape, factor)]
    a = np.pad(a, pad, mode=mode)
    h, w, d = (n // f for n, f in zip(a.shape, factor))
    return a.reshape(h, factor[0], w, factor[1], d, factor[2])


def zscore(image: np.ndarray) -> np.ndarray:
    """``(image - mean) / std`` over the whole volume (float32; a constant image becomes 0).

    The LA h5 files were normalised *before* they were cropped around the atrium, so the stored
    volumes' mean / std vary a lot (e.g. 1.46 / 1.62 vs 0.05 / 0.31): a network trained on one
    volume does not transfer to the others until each volume is re-normalised.
    """
    image = np.asarray(image, dtype=np.float32)
    std = float(image.std())
    return ((image - float(image.mean())) / (std if std > 0 else 1.0)).astype(np.float32)


def normalize_volume(vol: Volume, mode: str = "zscore") -> Volume:
    """The volume with its image normalised: ``"zscore"`` per volume, or ``"none"`` (unchanged)."""
    if mode == "none":
        return vol
    if mode != "zscore":
        raise ValueError(f"unknown normalisation {mode!r}; choose 'zscore' or 'none' (data.normalize)")
    return replace(vol, image=zscore(vol.image))


def downsample_factors(factor: "int | Sequence[int]") -> Tuple[int, int, int]:
    """``(fh, fw, fd)`` integer factors >= 1 from one factor (every axis) or one / three per axis."""
    f = (factor,) if np.isscalar(factor) else tuple(factor)
    if len(f) == 1:
        f = f * 3
    if len(f) != 3 or any(int(x) != x or int(x) < 1 for x in f):
        raise ValueError(f"downsample factor must be an integer >= 1 or three of them (per axis), got {factor!r}")
    return tuple(int(x) for x in f)  # type: ignore[return-value]


def downsample_volume(vol: Volume, factor: "int | Sequence[int]") -> Volume:
    """Shrink a volume by an integer ``factor`` along every axis, or by ``(fh, fw, fd)`` per axis.

    image (H, W, D) -> (ceil(H/fh), ceil(W/fw), ceil(D/fd)): **block mean** over fh x fw x fd blocks
    (edges replicated to fill the last block). label: **majority vote** in the same blocks, so it
    stays in {0..C-1} and is aligned with the image (ties go to the lower class). spacing x f; the
    affine is scaled and shifted to the block centres.
    """
    factor = downsample_factors(factor)
    if factor == (1, 1, 1):
        return vol
    image = _block_view(vol.image, factor, "edge").mean(axis=(1, 3, 5), dtype=np.float64).astype(np.float32)
    label = None
    if vol.label is not None:
        blocks = _block_view(vol.label, factor, "edge")
        num = int(vol.label.max()) + 1
        counts = np.stack([(blocks == c).sum(axis=(1, 3, 5)) for c in range(num)])
        label = counts.argmax(axis=0).astype(np.uint8)
    affine = None
    if vol.affine is not None:
        scale = np.diag([*factor, 1.0])
        scale[:3, 3] = [(f - 1) / 2.0 for f in factor]
        affine = np.asarray(vol.affine, dtype=np.float64) @ scale
    spacing = tuple(float(s) * f for s, f in zip(vol.spacing, factor))
    return replace(vol, image=image, label=label, spacing=spacing, affine=affine)  # type: ignore[arg-type]


def slice_axis_last(vol: Volume, axis: int) -> Volume:
    """The volume with array axis ``axis`` (0, 1 or 2) moved last, so its slices are stacked along D.

    image / label (..., n_axis, ...) -> (H, W, n_axis); spacing is permuted the same way and the
    affine's columns too, so every voxel keeps its world position (a NIfTI written from the result
    overlays the original in any viewer, with its array axes in the new order).
    """
    axis = int(axis) % 3
    if axis == 2:
        return vol
    order = [a for a in range(3) if a != axis] + [axis]
    image = np.ascontiguousarray(np.transpose(vol.image, order))
    label = None if vol.label is None else np.ascontiguousarray(np.transpose(vol.label, order))
    affine = None
    if vol.affine is not None:
        perm = np.eye(4)
        perm[:3, :3] = np.eye(3)[:, order]
        affine = np.asarray(vol.affine, dtype=np.float64) @ perm
    spacing = tuple(float(vol.spacing[a]) for a in order)
    return replace(vol, image=image, label=label, spacing=spacing, affine=affine)  # type: ignore[arg-type]


class VolumeCache:
    """Least-recently-used cache of the last ``size`` loaded volumes (size 0: no caching)."""

    def __init__(self, size: int = 8):
        self.size = int(size)
        self._items: "OrderedDict[str, Volume]" = OrderedDict()

    def get(self, name: str, load: Callable[[], Volume]) -> Volume:
        if name in self._items:
            self._items.move_to_end(name)
            return self._items[name]
        vol = load()
        if self.size > 0:
            self._items[name] = vol
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return vol

    def __len__(self) -> int:
        return len(self._items)
