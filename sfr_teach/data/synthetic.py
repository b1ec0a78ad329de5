"""Synthetic 3D phantoms: cheap, deterministic stand-ins for LA (tests, smoke preset, exercises).

``kind="single"``: one atrium-like blob (a randomly rotated ellipsoid whose surface is deformed by
smooth noise; 5-15 % of the volume) brighter than a textured background that also holds bright
"vessel" distractor blobs; a smooth multiplicative bias field and Gaussian noise on top; z-scored.
``kind="multi"``: several organ-like blobs (default 4 foreground classes + background) with
distinct but overlapping intensity ranges. Thresholding cannot segment either perfectly (noise,
bias and overlapping ranges), so a network has something to learn.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from .volume import Volume

Shape = Tuple[int, int, int]


def _interp_matrix(n: int, cells: int) -> np.ndarray:
    """(n, cells) Gaussian interpolation weights from ``cells`` evenly spaced knots to n voxels."""
    x = np.linspace(0.0, cells - 1.0, n, dtype=np.float32)[:, None]
    w = np.exp(-0.5 * (x - np.arange(cells, dtype=np.float32)[None]) ** 2 / 0.6**2)
    return w / w.sum(axis=1, keepdims=True)


def smooth_noise(rng: np.random.Generator, shape: Shape, cells: int = 4) -> np.ndarray:
    """Smooth random field (H, W, D) with zero mean / unit std: a coarse random grid of ``cells``
    knots per axis, interpolated separably with Gaussian weights (cheap: three small matmuls)."""
    ks = [max(2, min(cells, n)) for n in shape]
    coarse = rng.standard_normal(ks).astype(np.float32)
    a, b, c = (_interp_matrix(n, k) for n, k in zip(shape, ks))
    field = np.einsum("ia,jb,kc,abc->ijk", a, b, c, coarse, optimize=True)
    return (field - field.mean()) / (field.std() + 1e-8)


def _grid(shape: Shape) -> np.ndarray:
    """Voxel centres in [-1, 1] per axis, shaped (3, H, W, D)."""
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    return np.stack(np.meshgrid(*axes, indexing="ij"))


def _blob_field(rng, grid, center, radii, rough: float, noise: np.ndarray) -> np.ndarray:
    """Level-set function of a rotated, surface-deformed ellipsoid: < 1 inside. (H, W, D)."""
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    d = np.tensordot(q.T.astype(np.float32), grid - np.asarray(center, np.float32)[:, None, None, None], axes=1)
    r = np.sqrt(sum((d[i] / radii[i]) ** 2 for i in range(3)))
    return r * (1.0 + rough * noise)


def _finish(rng, image: np.ndarray, shape: Shape, bias: float, noise_std: float) -> np.ndarray:
    image = image * np.exp(bias * smooth_noise(rng, shape, 3))
    image = image + noise_std * rng.standard_normal(shape, dtype=np.float32)
    return ((image - image.mean()) / (image.std() + 1e-8)).astype(np.float32)


def _single(rng: np.random.Generator, shape: Shape) -> Tuple[np.ndarray, np.ndarray]:
    grid = _grid(shape)
    center = rng.uniform(-0.2, 0.2, 3)
    radii = rng.uniform(0.35, 0.6, 3)
    phi = _blob_field(rng, grid, center, radii, 0.25, smooth_noise(rng, shape, 5))
    frac = rng.uniform(0.05, 0.15)  # foreground fraction, exactly
    label = (phi <= np.quantile(phi, frac)).astype(np.uint8)
    image = 1.0 + 0.25 * smooth_noise(rng, shape, 8)  # textured background
    for _ in range(2):  # bright tubular distractors ("vessels") outside the blob
        c = rng.uniform(-0.8, 0.8, 3)
        radii = rng.uniform([0.06, 0.06, 0.3], [0.1, 0.1, 0.5])
        dphi = _blob_field(rng, grid, c, radii, 0.2, smooth_noise(rng, shape, 4))
        image = np.where((dphi < 1.0) & (label == 0), image + rng.uniform(0.8, 1.2), image)
    image = image + label * rng.uniform(1.3, 1.6)
    return _finish(rng, image.astype(np.float32), shape, 0.2, 0.4), label


def _multi(rng: np.random.Generator, shape: Shape, num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    grid = _grid(shape)
    label = np.zeros(shape, np.uint8)
    image = 0.3 * smooth_noise(rng, shape, 8)
    levels = np.linspace(1.0, 4.0, num_classes - 1) + rng.uniform(-0.1, 0.1, num_classes - 1)
    for c in range(1, num_classes):
        center = rng.uniform(-0.55, 0.55, 3)
        radii = rng.uniform(0.22, 0.38, 3)
        inside = _blob_field(rng, grid, center, radii, 0.2, smooth_noise(rng, shape, 4)) < 1.0
        label[inside] = c  # later organs overlap earlier ones
    for c in range(1, num_classes):
        image = image + (label == c) * levels[c - 1]
    return _finish(rng, image.astype(np.float32), shape, 0.12, 0.45), label


def make_phantom(
    seed: int,
    shape: Shape = (64, 64, 48),
    kind: str = "single",
    num_classes: Optional[int] = None,
    name: Optional[str] = None,
) -> Volume:
    """One phantom :class:`Volume` (image float32 z-scored (H, W, D), label uint8), same seed -> same volume.

    kind "single": labels {0, 1} (num_classes must be 2 or None); "multi": labels {0..num_classes-1}
    (default 5: 4 organs + background).
    """
    shape = tuple(int(n) for n in shape)  # type: ignore[assignment]
    if len(shape) != 3 or min(shape) < 4:
        raise ValueError(f"phantom shape must be 3 sizes >= 4, got {shape}")
    rng = np.random.default_rng(seed)
    if kind == "single":
        if num_classes not in (None, 2):
            raise ValueError(f"kind='single' makes 2 classes (background + blob), got num_classes={num_classes}")
        image, label = _single(rng, shape)
    elif kind == "multi":
        num_classes = 5 if num_classes is None else int(num_classes)
        if num_classes < 2:
            raise ValueError(f"kind='multi' needs num_classes >= 2, got {num_classes}")
        image, label = _multi(rng, shape, num_classes)
    else:
        raise ValueError(f"unknown phantom kind {kind!r}; choose 'single' or 'multi'")
    return Volume(name or f"phantom_{seed}", image, label, (1.0, 1.0, 1.0), None, f"synthetic:{kind}:seed={seed}")


def synthetic_dataset(
    n: int,
    seed: int = 0,
    shape: Shape = (64, 64, 48),
    kind: str = "single",
    num_classes: Optional[int] = None,
) -> List[Volume]:
    """``n`` phantoms named ``phantom_000``, ``phantom_001``, ...; volume i uses seed ``seed * 100003 + i``."""
    return [
        make_phantom(seed * 100003 + i, shape, kind, num_classes, name=f"phantom_{i:03d}") for i in range(int(n))
    ]
