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


# ----------------------------------------------------------------------------- anisotropic multi-class phantom
HEART_CLASSES = ("background", "right ventricle", "myocardium", "left ventricle")


def _ellipsoid(x, y, z, center, axes, angle: float) -> np.ndarray:
    """Normalised radius of an ellipsoid (< 1 inside) on mm grids x, y, z; rotated by ``angle`` in-plane."""
    dx, dy, dz = x - center[0], y - center[1], z - center[2]
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    return np.sqrt((u / axes[0]) ** 2 + (v / axes[1]) ** 2 + (dz / axes[2]) ** 2)


def make_anisotropic_phantom(
    seed: int,
    shape: Shape = (216, 256, 10),
    spacing: Tuple[float, float, float] = (1.5, 1.5, 10.0),
    slice_axis: int = 2,
    name: Optional[str] = None,
    subslices: int = 3,
) -> Volume:
    """A thick-slice, multi-class phantom like a short-axis cardiac cine MRI stack (:class:`Volume`).

    Three touching structures (classes of :data:`HEART_CLASSES`): a left-ventricle cavity (bright
    blood, an ellipsoid along the slice axis), the myocardium wrapped around it (dark, 8-12 mm thick)
    and a right-ventricle crescent (bright blood) leaning on the myocardium; around them a textured
    background with bright and dark organ-like distractors, a smooth bias field and noise. Sizes are
    in mm, so ``spacing`` decides how many voxels they span: the default ``(1.5, 1.5, 10)`` mm over
    ``216 x 256 x 10`` voxels is a typical cine stack, and the heart (about 10 cm long) crosses most
    of its ten slices. Each thick slice averages ``subslices`` thin ones (partial volume); its label is
    that of the middle one.

    shape / spacing are in the stored array order; the slices lie along ``slice_axis`` (its spacing is
    the thick one). Image float32 z-scored, label uint8 in {0, 1, 2, 3}; same seed -> same volume.
    """
    shape = tuple(int(n) for n in shape)  # type: ignore[assignment]
    if len(shape) != 3 or min(shape) < 2:
        raise ValueError(f"phantom shape must be 3 sizes >= 2, got {shape}")
    axis = int(slice_axis) % 3
    order = [a for a in range(3) if a != axis] + [axis]
    h, w, d = (shape[a] for a in order)
    sx, sy, sz = (float(spacing[a]) for a in order)
    rng = np.random.default_rng(seed)
    sub = max(1, int(subslices))
    fine = (h, w, d * sub)
    x = ((np.arange(h, dtype=np.float32) - (h - 1) / 2) * sx)[:, None, None]
    y = ((np.arange(w, dtype=np.float32) - (w - 1) / 2) * sy)[None, :, None]
    z = ((np.arange(d * sub, dtype=np.float32) + 0.5) / sub * sz - d * sz / 2)[None, None, :]
    fov = min(h * sx, w * sy)
    center = np.array([*rng.uniform(-0.06, 0.06, 2) * fov, rng.uniform(-0.08, 0.08) * d * sz], np.float32)
    tilt = rng.uniform(-0.25, 0.25, 2)  # the long axis leans a little across the slices
    cx, cy = center[0] + tilt[0] * (z - center[2]), center[1] + tilt[1] * (z - center[2])
    r_lv, thick, length = rng.uniform(20, 26), rng.uniform(8, 12), rng.uniform(0.38, 0.45) * d * sz
    angle = rng.uniform(0, np.pi)
    rough = lambda cells: 1.0 + 0.06 * smooth_noise(rng, fine, cells)  # noqa: E731
    lv = _ellipsoid(x, y, z, (cx, cy, center[2]), (r_lv * rng.uniform(0.9, 1.1), r_lv, length), angle) * rough(4) < 1
    outer = (r_lv + thick, r_lv + thick, length + thick)
    heart = _ellipsoid(x, y, z, (cx, cy, center[2] - 0.3 * thick), outer, angle) * rough(4) < 1
    theta = rng.uniform(0, 2 * np.pi)
    r_rv = rng.uniform(22, 28)
    off = r_lv + thick + 0.2 * r_rv  # the crescent's inner edge lies inside the myocardium: they touch
    rv_c = (cx + off * np.cos(theta), cy + off * np.sin(theta), center[2] + 0.1 * length)
    rv = _ellipsoid(x, y, z, rv_c, (1.5 * r_rv, 0.8 * r_rv, 0.85 * length), theta + np.pi / 2) * rough(4) < 1
    label = np.zeros(fine, np.uint8)
    label[rv & ~heart] = 1
    label[heart & ~lv] = 2
    label[lv] = 3
    image = 0.8 + 0.25 * smooth_noise(rng, fine, 8)  # textured background
    for _ in range(4):  # organ-like distractors (liver, lung, fat): darker or brighter blobs away from the heart
        c = (*rng.uniform(-0.4, 0.4, 2) * fov, rng.uniform(-0.3, 0.3) * d * sz)
        axes = (*rng.uniform(0.08, 0.18, 2) * fov, rng.uniform(0.3, 0.6) * d * sz)
        blob = _ellipsoid(x, y, z, c, axes, rng.uniform(0, np.pi)) * rough(4) < 1
        image = np.where(blob & (label == 0), rng.choice([0.15, 0.5, 1.4]), image)
    levels = {1: rng.uniform(1.8, 2.0), 2: rng.uniform(0.35, 0.5), 3: rng.uniform(2.1, 2.3)}
    for c, level in levels.items():
        image = np.where(label == c, level + 0.1 * smooth_noise(rng, fine, 6), image)
    image = image.reshape(h, w, d, sub).mean(axis=3)  # thick slices: partial volume
    label = label[:, :, sub // 2 :: sub]
    image = _finish(rng, image.astype(np.float32), (h, w, d), 0.15, 0.12)
    back = np.argsort(order)
    image, label = np.ascontiguousarray(image.transpose(back)), np.ascontiguousarray(label.transpose(back))
    source = f"synthetic:anisotropic:seed={seed}"
    return Volume(name or f"heart_{seed}", image, label, tuple(float(s) for s in spacing), None, source)


def write_msd_dataset(
    root,
    n: int,
    seed: int = 0,
    shape: Shape = (216, 256, 10),
    spacing: Tuple[float, float, float] = (1.5, 1.5, 10.0),
    slice_axis: int = 2,
    unlabeled: int = 0,
):
    """Write ``n`` :func:`make_anisotropic_phantom` cases as an MSD-style folder; returns its Path.

    ``root/imagesTr/heart_XXX_0000.nii.gz``, ``root/labelsTr/heart_XXX.nii.gz`` (the last
    ``unlabeled`` cases get no label file) and ``root/dataset.json`` (name, modality, class names in
    ``labels``, ``numTraining``, ``training`` pairs). Case i uses seed ``seed * 100003 + i``; voxel
    size ``spacing`` in the NIfTI headers.
    """
    import json
    from pathlib import Path

    from .nifti import save_nifti

    root = Path(root)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    training = []
    for i in range(int(n)):
        case = f"heart_{i:03d}"
        vol = make_anisotropic_phantom(seed * 100003 + i, shape, spacing, slice_axis, name=case)
        save_nifti(vol.image, root / "imagesTr" / f"{case}_0000.nii.gz", spacing=spacing)
        entry = {"image": f"./imagesTr/{case}_0000.nii.gz"}
        if i < int(n) - int(unlabeled):
            save_nifti(vol.label, root / "labelsTr" / f"{case}.nii.gz", spacing=spacing)
            entry["label"] = f"./labelsTr/{case}.nii.gz"
        training.append(entry)
    meta = {
        "name": "synthetic thick-slice heart phantom",
        "description": "sfr_teach.data.make_anisotropic_phantom: 3 touching structures, thick slices",
        "modality": {"0": "MRI"},
        "labels": {str(c): n for c, n in enumerate(HEART_CLASSES)},
        "numTraining": len(training),
        "training": training,
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    return root
