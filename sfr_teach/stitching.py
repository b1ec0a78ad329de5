"""Stage 1 of SFR: stitch a 3D volume into one 2D mosaic for SAM, and back.

A volume of ``D`` slices (each ``H x W``, the slicing axis is the *last* axis, as
in the LA h5 files) is laid out on a ``d x d`` grid with ``d = ceil(sqrt(D))``,
slices in row-major order (slice ``k`` sits in row ``k // d``, column ``k % d``)
and empty cells zero. The ``d*H x d*W`` mosaic is then brought to SAM's square
input of side ``out_size``:

* it is **padded** (centred) when it fits -- an LA crop of 112x112x80 gives a
  9x9 grid, 1008x1008, padded by 8 pixels on each side to 1024;
* it is **resized** (bilinear for images, nearest for labels, keeping the aspect
  ratio) and then padded when it does not fit, or when ``fit="resize"``.

No slice is ever dropped (the official SFR code drops slices beyond its grid).
Unstitching inverts the layout. Round trips:

* labels round-trip bit-exactly whenever the mosaic is only padded, and with
  nearest-neighbour resizing whenever the scale is an integer ratio; in general a
  resized label round trip is exact only if the scale is >= 1 (up-sampling);
* images round-trip exactly (``==``) when no resizing is involved; with resizing
  the error is bounded by the image's local variation (bilinear down+up), see
  :func:`roundtrip_error` and the tests for the measured bound.

Everything works on numpy arrays and torch tensors of shape ``(..., H, W, D)``
(any leading batch / channel dims), on the tensor's device. Stitching is pure
geometry: it knows nothing about SAM or any model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple, Union

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


def _resize(x: torch.Tensor, size: Tuple[int, int], is_label: bool) -> torch.Tensor:
    """Resize the last two dims of ``x`` (any leading dims)."""
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, *x.shape[-2:])
    if is_label:
        out = F.interpolate(flat.float(), size=size, mode="nearest-exact").to(x.dtype)
    else:
        dt = x.dtype if x.is_floating_point() else torch.float32
        out = F.interpolate(flat.to(dt), size=size, mode="bilinear", align_corners=False).to(dt)
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
    official code does). Returns the same kind (numpy / torch) as the input.
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
    if tuple(m.shape[-2:]) != (s, s):
        raise ValueError(f"mosaic shape {tuple(m.shape[-2:])} does not match the layout's {s}x{s}")
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
