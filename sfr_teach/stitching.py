"""Stage 1 of SFR: stitch a 3D volume into 2D images for SAM, and back.

The SFR layout (strategy ``"grid"``, the default)
--------------------------------------------------
A volume of ``D`` slices (each ``H x W``, the slicing axis is the *last* axis, as
in the LA h5 files) is laid out on a ``d x d`` grid with ``d = ceil(sqrt(D))``,
slices in row-major order (slice ``k`` sits in row ``k // d``, column ``k % d``)
and empty cells filled with ``fill`` (0). The ``d*H x d*W`` mosaic is then brought
to SAM's square input of side ``out_size``:

* it is **padded** (centred) when it fits -- an LA crop of 112x112x80 gives a
  9x9 grid, 1008x1008, padded by 8 pixels on each side to 1024;
* it is **resized** (bilinear for images, nearest for labels, keeping the aspect
  ratio) and then padded when it does not fit, or when ``fit="resize"`` -- a whole
  LA volume of ~190x140x88 gives a 10x10 grid, 1900x1400, scaled by ~0.54 to 1024x758.

No slice is ever dropped (the official SFR code drops slices beyond its grid).

Round-trip guarantees (``unstitch(stitch(x))``), all asserted in ``tests/test_stitching.py``:

* **padding only** (no resize): images *and* labels come back bit-exactly (``==``),
  any dtype, numpy or torch.
* **labels, resize with scale >= 1** (up-sampling): bit-exact. Labels are resized by
  integer index arithmetic (the "nearest-exact" rule ``src = floor((i + 1/2) * n_in / n_out)``),
  and for ``n_out >= n_in`` that map has an exact left inverse.
* **labels, resize with scale < 1** (down-sampling): lossy; thin structures can vanish.
  Measured on the 80 real LA volumes (whole volumes, 10x10 grid -> 1024, scale 0.50-0.54):
  label Dice of the round trip min 0.970, mean 0.980 (tests assert >= 0.965).
* **images, any resize**: every voxel's error is at most its largest absolute
  difference to a pixel within ``r = ceil(max(raw / scaled)) + 1`` pixels of it
  (Chebyshev distance) in the *unscaled* mosaic (neighbouring slices at cell borders and
  ``fill`` included), because bilinear down/up-sampling without anti-aliasing only forms
  convex combinations of those pixels. ``r = 2`` for up-sampling, 3-4 for whole LA volumes.
  Measured on the 80 LA volumes (``mri_norm2`` intensities, about -1 .. 11, std ~0.8):
  max error 6.95 (at sharp edges), mean absolute error 0.087 (tests assert <= 7.5 and <= 0.10).

Ablation strategies (the paper compares the grid against them; pick one with
:func:`get_strategy`): every strategy maps ``(..., H, W, D) -> (..., N, S, S)`` with
:meth:`Strategy.to_images` and back with :meth:`Strategy.from_images`.

==============  ======================================  ==========================================
name            images per volume (``N``)               what comes back exactly
==============  ======================================  ==========================================
``grid``        1 (all ``D`` slices, one mosaic)         see above
``upsample``    ``D`` (each slice resized on its own     when ``S >= max(H, W)``: labels exact,
                to fill ``S x S``, aspect kept, padded)  images within the bound above, ``r = 2``
``downsample``  1 (only every ``step``-th slice and      kept slices: as ``grid``; dropped slices:
                the last one, tiled on a smaller grid)   interpolated along ``D`` (see below)
==============  ======================================  ==========================================

``downsample`` tiles fewer slices: it keeps slices ``0, step, 2*step, ...`` and always the
last one, so an LA crop of 80 slices with ``step=2`` keeps 41 slices on a 7x7 grid (784x784,
padded to 1024 without resizing). On the way back a dropped slice is **linearly
interpolated** between the two nearest kept slices for images / probabilities (exact for
intensities that vary linearly along ``D``), and copied from the **nearest** kept slice for
labels (ties go to the lower slice); its error is bounded by the variation between those
two kept slices.

Everything works on numpy arrays and torch tensors of shape ``(..., H, W, D)``
(any leading batch / channel dims), on the tensor's device. Stitching is pure
geometry: it knows nothing about SAM or any model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch
import torch.nn.functional as F

Array = Union[np.ndarray, torch.Tensor]

__all__ = [
    "StitchLayout",
    "grid_size",
    "make_layout",
    "stitch",
    "unstitch",
    "valid_mask",
    "roundtrip_error",
    "Strategy",
    "GridStrategy",
    "UpsampleStrategy",
    "DownsampleStrategy",
    "STRATEGIES",
    "get_strategy",
]


def grid_size(depth: int) -> int:
    """Cells per side for ``depth`` slices: ``ceil(sqrt(depth))`` (80 -> 9, 88 -> 10)."""
    if depth < 1:
        raise ValueError(f"a volume needs at least one slice, got depth={depth}")
    return math.isqrt(depth - 1) + 1


@dataclass(frozen=True)
class StitchLayout:
    """Where every slice of a ``shape = (H, W, D)`` volume lands in the ``out_size`` mosaic.

    ``grid`` cells per side; the raw mosaic is ``grid*H x grid*W``; it is scaled by
    ``scale`` to ``scaled`` (rows, cols) and placed at ``offset`` (top, left) inside
    the ``out_size x out_size`` image.
    """

    shape: Tuple[int, int, int]
    grid: int
    out_size: int
    scale: float
    scaled: Tuple[int, int]
    offset: Tuple[int, int]

    @property
    def raw(self) -> Tuple[int, int]:
        """Size of the unscaled mosaic, ``(grid*H, grid*W)``."""
        h, w, _ = self.shape
        return (self.grid * h, self.grid * w)

    @property
    def resized(self) -> bool:
        return self.scaled != self.raw

    def cell_box(self, k: int) -> Tuple[int, int, int, int]:
        """``(top, left, height, width)`` of slice ``k`` in the *unscaled* mosaic."""
        h, w, d = self.shape
        if not 0 <= k < d:
            raise IndexError(f"slice {k} outside a volume of depth {d}")
        return ((k // self.grid) * h, (k % self.grid) * w, h, w)


def make_layout(
    shape: Tuple[int, ...],
    out_size: int = 1024,
    grid: Optional[int] = None,
    fit: str = "auto",
) -> StitchLayout:
    """Plan the mosaic for a volume of ``shape = (..., H, W, D)``.

    Args:
        shape: the volume shape; only the last three numbers are used.
        out_size: side of SAM's square input (1024 for the official models).
        grid: cells per side; default ``grid_size(D)``. A grid that cannot hold all
            ``D`` slices is an error (we never drop slices).
        fit: ``"auto"`` pads when the mosaic fits and resizes otherwise; ``"pad"``
            refuses to resize; ``"resize"`` always scales the mosaic to fill
            ``out_size`` along its longer side.
    """
    if len(shape) < 3:
        raise ValueError(f"expected a volume shaped (..., H, W, D), got shape {tuple(shape)}")
    h, w, d = (int(s) for s in shape[-3:])
    if min(h, w, d) < 1:
        raise ValueError(f"empty volume shape {(h, w, d)}")
    g = grid_size(d) if grid is None else int(grid)
    if g * g < d:
        raise ValueError(
            f"a {g}x{g} grid holds {g * g} slices but the volume has {d}; "
            f"use grid >= {grid_size(d)} (or leave grid=None), or crop the volume to <= {g * g} slices"
        )
    if fit not in ("auto", "pad", "resize"):
        raise ValueError(f"fit must be 'auto', 'pad' or 'resize', got {fit!r}")
    rows, cols = g * h, g * w
    fits = rows <= out_size and cols <= out_size
    if fit == "pad" and not fits:
        raise ValueError(
            f"a {g}x{g} mosaic of {h}x{w} slices is {rows}x{cols}, larger than out_size={out_size}; "
            f"use fit='auto'/'resize', a larger out_size, or smaller crops"
        )
    if fit == "resize" or not fits:
        scale = out_size / max(rows, cols)
        scaled = (max(1, min(out_size, round(rows * scale))), max(1, min(out_size, round(cols * scale))))
    else:
        scale, scaled = 1.0, (rows, cols)
    offset = ((out_size - scaled[0]) // 2, (out_size - scaled[1]) // 2)
    return StitchLayout((h, w, d), g, int(out_size), float(scale), scaled, offset)


def _as_tensor(x: Array) -> Tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, False
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x)), True
    raise TypeError(f"expected a numpy array or torch tensor, got {type(x).__name__}")


def _nearest_index(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """Source index of each of ``n_out`` outputs: ``floor((2i + 1) * n_in / (2 * n_out))``.

    The "nearest-exact" rule in exact integer arithmetic; for ``n_out >= n_in`` it has an
    exact left inverse (the same rule from ``n_out`` back to ``n_in``).
    """
    i = torch.arange(n_out, device=device, dtype=torch.int64)
    return ((2 * i + 1) * n_in // (2 * n_out)).clamp_(max=n_in - 1)


def _resize(x: torch.Tensor, size: Tuple[int, int], is_label: bool) -> torch.Tensor:
    """Resize the last two dims of ``x`` (any leading dims).

    Labels: nearest by index gathering (exact for any dtype, bool and int64 included).
    Images: bilinear (``align_corners=False``, no anti-aliasing); integer images come back float32.
    """
    if is_label:
        rows = _nearest_index(x.shape[-2], size[0], x.device)
        cols = _nearest_index(x.shape[-1], size[1], x.device)
        return x.index_select(-2, rows).index_select(-1, cols)
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, *x.shape[-2:])
    dt = x.dtype if x.is_floating_point() else torch.float32
    out = F.interpolate(flat.to(dt), size=size, mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size)


def stitch(
    volume: Array,
    layout: Optional[StitchLayout] = None,
    *,
    out_size: int = 1024,
    is_label: bool = False,
    fill: Union[int, float] = 0,
) -> Array:
    """Stitch ``volume (..., H, W, D)`` into a mosaic ``(..., S, S)`` (``S = out_size``).

    ``fill`` is written to the padding around the mosaic *and* to empty grid cells
    (e.g. ``fill=255`` for labels whose padding a loss should ignore, as the
    official code does). Returns the same kind (numpy / torch) as the input, on the
    same device; the dtype is kept except for integer images that get resized (float32).
    """
    x, was_numpy = _as_tensor(volume)
    if x.ndim < 3:
        raise ValueError(f"expected a volume shaped (..., H, W, D), got shape {tuple(x.shape)}")
    if layout is None:
        layout = make_layout(tuple(x.shape), out_size)
    h, w, d = layout.shape
    if tuple(x.shape[-3:]) != (h, w, d):
        raise ValueError(f"volume shape {tuple(x.shape[-3:])} does not match the layout's {layout.shape}")
    g = layout.grid
    lead = x.shape[:-3]
    if g * g > d:  # empty cells
        pad = x.new_full((*lead, h, w, g * g - d), fill)
        x = torch.cat([x, pad], dim=-1)
    # (..., H, W, g*g) -> (..., g_row, g_col, H, W) -> (..., g_row, H, g_col, W) -> mosaic
    n = len(lead)
    x = x.reshape(*lead, h, w, g, g).permute(*range(n), n + 2, n, n + 3, n + 1)
    mosaic = x.reshape(*lead, g * h, g * w)
    if layout.resized:
        mosaic = _resize(mosaic, layout.scaled, is_label)
    out = mosaic.new_full((*lead, layout.out_size, layout.out_size), fill)
    top, left = layout.offset
    out[..., top : top + layout.scaled[0], left : left + layout.scaled[1]] = mosaic
    return out.numpy() if was_numpy else out


def unstitch(mosaic: Array, layout: StitchLayout, *, is_label: bool = False) -> Array:
    """Invert :func:`stitch`: ``(..., S, S)`` mosaic -> ``(..., H, W, D)`` volume.

    For class probabilities / logits stitched per channel, pass them with a
    channel dim, ``(..., C, S, S)``; they come back as ``(..., C, H, W, D)``.
    """
    m, was_numpy = _as_tensor(mosaic)
    s = layout.out_size
    if m.ndim < 2 or tuple(m.shape[-2:]) != (s, s):
        raise ValueError(f"mosaic shape {tuple(m.shape)} does not end in the layout's {s}x{s}")
    top, left = layout.offset
    m = m[..., top : top + layout.scaled[0], left : left + layout.scaled[1]]
    if layout.resized:
        m = _resize(m, layout.raw, is_label)
    h, w, d = layout.shape
    g = layout.grid
    lead = m.shape[:-2]
    n = len(lead)
    # (..., g_row, H, g_col, W) -> (..., H, W, g_row, g_col) -> (..., H, W, g*g)
    vol = m.reshape(*lead, g, h, g, w).permute(*range(n), n + 1, n + 3, n, n + 2).reshape(*lead, h, w, g * g)
    vol = vol[..., :d].contiguous()
    return vol.numpy() if was_numpy else vol


def valid_mask(layout: StitchLayout, device: Optional[torch.device] = None) -> torch.Tensor:
    """Boolean ``(S, S)`` mask of mosaic pixels that come from a real slice.

    Losses use it to ignore the padding and the empty grid cells.
    """
    h, w, d = layout.shape
    ones = torch.ones((h, w, d), dtype=torch.uint8, device=device)
    return stitch(ones, layout, is_label=True, fill=0).bool()


def roundtrip_error(volume: Array, out_size: int = 1024, fit: str = "auto", is_label: bool = False) -> float:
    """Max absolute error of ``unstitch(stitch(volume))`` (0.0 means exact)."""
    x, _ = _as_tensor(volume)
    layout = make_layout(tuple(x.shape), out_size, fit=fit)
    back = unstitch(stitch(x, layout, is_label=is_label), layout, is_label=is_label)
    return float((back.double() - x.double()).abs().max())


# --------------------------------------------------------------------------- strategies


def _shape3(shape: Sequence[int]) -> Tuple[int, int, int]:
    if len(shape) < 3:
        raise ValueError(f"expected a volume shape (..., H, W, D), got {tuple(shape)}")
    h, w, d = (int(s) for s in shape[-3:])
    return (h, w, d)


class Strategy:
    """Turn a volume into ``N`` square images for SAM and back (see the module docstring).

    ``to_images(volume (..., H, W, D)) -> (..., N, S, S)``;
    ``from_images(images (..., N, S, S), shape) -> (..., H, W, D)`` (``shape``: the volume's, only
    its last three numbers are used, so a channel dim of probabilities passes through);
    ``valid_mask(shape) -> bool (N, S, S)``: pixels that come from a real voxel.
    """

    name = "base"

    def __init__(self, out_size: int = 1024):
        self.out_size = int(out_size)

    def n_images(self, shape: Sequence[int]) -> int:
        raise NotImplementedError

    def to_images(self, volume: Array, *, is_label: bool = False, fill: Union[int, float] = 0) -> Array:
        raise NotImplementedError

    def from_images(self, images: Array, shape: Sequence[int], *, is_label: bool = False) -> Array:
        raise NotImplementedError

    def valid_mask(self, shape: Sequence[int], device: Optional[torch.device] = None) -> torch.Tensor:
        h, w, d = _shape3(shape)
        ones = torch.ones((h, w, d), dtype=torch.uint8, device=device)
        return self.to_images(ones, is_label=True, fill=0).bool()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class GridStrategy(Strategy):
    """SFR's stitching: all ``D`` slices on one ``d x d`` mosaic, ``N = 1``."""

    name = "grid"

    def __init__(self, out_size: int = 1024, grid: Optional[int] = None, fit: str = "auto"):
        super().__init__(out_size)
        self.grid, self.fit = grid, fit

    def layout(self, shape: Sequence[int]) -> StitchLayout:
        return make_layout(tuple(shape), self.out_size, grid=self.grid, fit=self.fit)

    def n_images(self, shape: Sequence[int]) -> int:
        return 1

    def to_images(self, volume: Array, *, is_label: bool = False, fill: Union[int, float] = 0) -> Array:
        out = stitch(volume, self.layout(tuple(volume.shape)), is_label=is_label, fill=fill)
        return out[..., None, :, :]

    def from_images(self, images: Array, shape: Sequence[int], *, is_label: bool = False) -> Array:
        _check_n(images, 1, self.name)
        return unstitch(images[..., 0, :, :], self.layout(_shape3(shape)), is_label=is_label)


def _check_n(images: Array, n: int, name: str) -> None:
    if images.ndim < 3 or images.shape[-3] != n:
        raise ValueError(
            f"strategy {name!r} expects images shaped (..., {n}, S, S) for this volume, got {tuple(images.shape)}; "
            "pass the output of to_images for a volume of the same shape"
        )


def _depth_first(x: Array) -> Array:
    """``(..., H, W, D) -> (..., D, H, W, 1)``."""
    return (np.moveaxis(x, -1, -3) if isinstance(x, np.ndarray) else x.movedim(-1, -3))[..., None]


class UpsampleStrategy(Strategy):
    """Ablation "up-sampling": each slice on its own image, resized to fill ``S x S``; ``N = D``.

    The longer side of the slice becomes ``S`` (aspect kept, the other side padded with ``fill``).
    """

    name = "upsample"

    def layout(self, shape: Sequence[int]) -> StitchLayout:
        h, w, _ = _shape3(shape)
        return make_layout((h, w, 1), self.out_size, grid=1, fit="resize")

    def n_images(self, shape: Sequence[int]) -> int:
        return _shape3(shape)[2]

    def to_images(self, volume: Array, *, is_label: bool = False, fill: Union[int, float] = 0) -> Array:
        return stitch(_depth_first(volume), self.layout(tuple(volume.shape)), is_label=is_label, fill=fill)

    def from_images(self, images: Array, shape: Sequence[int], *, is_label: bool = False) -> Array:
        h, w, d = _shape3(shape)
        _check_n(images, d, self.name)
        vol = unstitch(images, self.layout((h, w, d)), is_label=is_label)[..., 0]  # (..., D, H, W)
        return np.ascontiguousarray(np.moveaxis(vol, -3, -1)) if isinstance(vol, np.ndarray) else vol.movedim(-3, -1).contiguous()


class DownsampleStrategy(Strategy):
    """Ablation "down-sampling": tile only every ``step``-th slice (and the last one); ``N = 1``.

    The kept slices go through :class:`GridStrategy` (a smaller grid, so bigger slices); on the
    way back dropped slices are linearly interpolated along ``D`` (images / probabilities) or
    copied from the nearest kept slice (labels, ties to the lower one).
    """

    name = "downsample"

    def __init__(self, out_size: int = 1024, step: int = 2, fit: str = "auto"):
        super().__init__(out_size)
        if int(step) < 1:
            raise ValueError(f"downsample step must be an integer >= 1, got {step}")
        self.step, self.fit = int(step), fit

    def kept(self, depth: int) -> np.ndarray:
        """Indices of the tiled slices: ``0, step, 2*step, ...`` plus ``depth - 1``."""
        return np.unique(np.r_[np.arange(0, depth, self.step), depth - 1])

    def _grid(self) -> GridStrategy:
        return GridStrategy(self.out_size, fit=self.fit)

    def n_images(self, shape: Sequence[int]) -> int:
        return 1

    def to_images(self, volume: Array, *, is_label: bool = False, fill: Union[int, float] = 0) -> Array:
        keep = self.kept(_shape3(volume.shape)[2])
        sub = volume[..., keep] if isinstance(volume, np.ndarray) else volume[..., torch.as_tensor(keep, device=volume.device)]
        return self._grid().to_images(sub, is_label=is_label, fill=fill)

    def from_images(self, images: Array, shape: Sequence[int], *, is_label: bool = False) -> Array:
        h, w, d = _shape3(shape)
        keep = self.kept(d)
        sub, was_numpy = _as_tensor(self._grid().from_images(images, (h, w, len(keep)), is_label=is_label))
        z = np.arange(d)
        hi = np.searchsorted(keep, z).clip(max=len(keep) - 1)  # first kept index >= z
        lo = np.where(keep[hi] == z, hi, hi - 1).clip(min=0)
        gap = (keep[hi] - keep[lo]).clip(min=1)
        t = (z - keep[lo]) / gap  # 0 at the lower kept slice, 1 at the upper one
        dev = sub.device
        if is_label:
            src = np.where(t <= 0.5, lo, hi)
            out = sub.index_select(-1, torch.as_tensor(src, device=dev))
        else:
            tt = torch.as_tensor(t, dtype=sub.dtype if sub.is_floating_point() else torch.float32, device=dev)
            a = sub.index_select(-1, torch.as_tensor(lo, device=dev))
            b = sub.index_select(-1, torch.as_tensor(hi, device=dev))
            out = torch.lerp(a.to(tt.dtype), b.to(tt.dtype), tt)
        return out.numpy() if was_numpy else out


STRATEGIES: Dict[str, Type[Strategy]] = {
    GridStrategy.name: GridStrategy,
    UpsampleStrategy.name: UpsampleStrategy,
    DownsampleStrategy.name: DownsampleStrategy,
}


def get_strategy(name: str = "grid", out_size: int = 1024, **kw: Any) -> Strategy:
    """Build a stitching strategy by name: ``"grid"`` (SFR), ``"upsample"`` or ``"downsample"``.

    Extra keywords go to the class (``grid=``, ``fit=`` for grid; ``step=``, ``fit=`` for downsample).
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown stitching strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name](out_size, **kw)
