"""Geometry planned from the data: fingerprint the training volumes, then plan the run's geometry.

The presets' geometry was tuned to LA (near-isotropic 0.625 mm, 88 slices). A data set with thick
slices (e.g. cardiac cine MRI, 1.5 x 1.5 x 10 mm, 10 slices) needs another one: halving its 10 slices
to 5 and asking for 40-slice SAM crops leaves about nine tenths of every training mosaic empty.
This module follows nnU-Net's idea "fingerprint -> plan" (our own rules and code):

* :func:`fingerprint_volumes` / :func:`fingerprint_dataset` -> :class:`Fingerprint`: shapes, voxel
  spacings, intensity statistics and class frequencies of the training volumes (class names from
  the MSD ``dataset.json`` when there is one);
* :func:`make_plan` -> :class:`Plan` (``to_dict`` / ``save`` / ``load`` / ``describe``): the geometry
  for the *budgets* of a configuration (its preset's SAM crop, SAM input size, V-Net patch,
  down-sampling factor -- steps and widths are not touched);
* :func:`apply_plan` -> the configuration with the plan's geometry; keys the user set explicitly
  (``Config.overrides``, e.g. ``--set sam.crop_size=...``) win over the plan;
* :func:`check_geometry` / :func:`warn_geometry`: a :class:`GeometryWarning` when padding would fill
  more than ``PAD_WARN`` (half) of a SAM crop, a mosaic or a V-Net patch, and a
  :class:`~sfr_teach.data.DataError` naming the file when a volume is smaller than any usable patch.

The rules (working axes: two in-plane axes, then the slice axis last)
--------------------------------------------------------------------
1. **Slice axis.** The median spacings are anisotropic when the coarsest is at least
   ``ANISOTROPY`` (3) times the finest; the slices are then stacked along the coarsest axis.
   Otherwise the last array axis (LA's convention). Volumes are transposed on load so that the slice
   axis is last (:func:`sfr_teach.data.slice_axis_last`; the affine is permuted with them, so saved
   predictions overlay the input files in world space, their array axes in the working order).
2. **Resampling.** The budget's down-sampling factor (classroom: 2) applies to every axis except a
   coarse one (spacing >= ``ANISOTROPY`` x the finest: never halve a thick-slice axis), and is
   lowered on any axis where it would leave fewer than ``MIN_INPLANE`` voxels.
3. **SAM crop.** Depth = min(budget depth, the smallest working depth): no crop is deeper than the
   data. In-plane = the budget's, capped by the smallest working volume; when the data hold fewer
   slices than the budget, the in-plane size may grow up to one grid cell of the SAM input
   (``image_size // grid``), so the mosaic is filled by the data rather than by padding. Square
   budgets stay square (90-degree rotations need it).
4. **Mosaic.** ``grid = ceil(sqrt(depth))``; the mosaic is ``grid x crop`` pixels a side. For the
   offline tiny SAM the input is the mosaic rounded up to whole attention windows of tokens
   (``patch x window`` pixels; windowed attention pads to whole windows anyway), at most the
   budget's ``image_size``; official ViT checkpoints keep their input size (1024).
5. **V-Net patch.** Per axis min(budget, the smallest working size rounded down to a multiple of
   16); an axis shorter than 16 voxels is padded to 16 (no more). When the data cut an axis below
   its budget, the other axes grow by 16 while the patch keeps within the budget's voxel count and
   the data. Evaluation uses the same patch; its stride scales the budget's stride with the patch.

On LA these rules give back the presets exactly (``tests/test_plan.py``): classroom x2 on every
axis, SAM crop 56x56x40 in a 7x7 grid at 448 px, V-Net 48x48x32; paper 112x112x80 at 1024 px.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .data.volume import DataError, downsample_factors
from .stitching import grid_size

log = logging.getLogger("sfr_teach")

__all__ = [
    "ANISOTROPY", "PAD_WARN", "MIN_INPLANE", "MIN_SLICES", "GeometryWarning", "Fingerprint", "Plan",
    "read_class_names", "fingerprint_volumes", "fingerprint_dataset", "make_plan", "apply_plan",
    "plan_wanted", "plan_run", "plan_for", "check_geometry", "warn_geometry", "padding_share",
]

ANISOTROPY = 3.0  # coarsest / finest median spacing from which the data count as thick-slice
PAD_WARN = 0.5  # warn when padding fills more than this share of a SAM crop, a mosaic or a V-Net patch
MIN_INPLANE = 16  # a working volume needs >= 16 voxels in-plane (one V-Net down-sampling unit)
MIN_SLICES = 2  # ... and at least 2 slices (a single slice is a 2D image, not a volume)
VNET_UNIT = 16  # V-Net patches are multiples of 16 (four stride-2 down-samplings)

Shape = Tuple[int, int, int]


class GeometryWarning(UserWarning):
    """The geometry wastes most of a crop, mosaic or patch on padding (the message says which and why)."""


# ----------------------------------------------------------------------------- fingerprint
@dataclass
class Fingerprint:
    """What the training volumes look like (array axes as stored, before any transposition).

    shapes / spacings: one (3,) entry per volume; intensity: mean, std, min, max, p00_5, p99_5 over
    voxels sampled from every volume; class_voxels[c] / class_cases[c]: voxels of class c and labelled
    volumes holding it, over the ``n_labeled`` volumes that carry a label; sources: the files (kept
    for error messages, not saved).
    """

    dataset: str
    names: List[str]
    shapes: List[Shape]
    spacings: List[Tuple[float, float, float]]
    intensity: Dict[str, float]
    class_voxels: List[int]
    class_cases: List[int]
    n_labeled: int
    class_names: List[str] = field(default_factory=list)
    sources: List[str] = field(default_factory=list, repr=False)

    @property
    def num_classes(self) -> int:
        return max(len(self.class_names), len(self.class_voxels), 2)


def read_class_names(root: Optional[str | Path]) -> Optional[List[str]]:
    """Class names, background first, from ``root/dataset.json`` (MSD ``{"0": "background", ...}`` or
    nnU-Net v2 ``{"background": 0, ...}`` under ``"labels"``); None when there is no such file."""
    if root is None:
        return None
    path = Path(root) / "dataset.json"
    if not path.is_file():
        return None
    try:
        labels = json.loads(path.read_text()).get("labels")
    except (json.JSONDecodeError, AttributeError) as e:
        raise DataError(f"{path}: not a readable dataset.json ({e}); fix the JSON or delete the file") from e
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{path}: no 'labels' mapping (e.g. {{\"0\": \"background\", \"1\": \"RV\"}}); add one")
    try:
        pairs = {int(k): str(v) for k, v in labels.items()}
    except (TypeError, ValueError):
        try:
            pairs = {int(v): str(k) for k, v in labels.items()}
        except (TypeError, ValueError) as e:
            raise DataError(f"{path}: 'labels' must map class indices to names (or names to indices)") from e
    if sorted(pairs) != list(range(len(pairs))):
        raise DataError(f"{path}: 'labels' must number the classes 0..C-1 without gaps, got {sorted(pairs)}")
    return [pairs[i] for i in range(len(pairs))]


def fingerprint_volumes(
    volumes: Iterable[Any],
    dataset: str = "volumes",
    class_names: Optional[Sequence[str]] = None,
    samples_per_volume: int = 20000,
    seed: int = 0,
) -> Fingerprint:
    """Fingerprint volumes (``.name``, ``.image`` (H, W, D), ``.label`` or None, ``.spacing``, ``.source``).

    Reads one volume at a time (an iterator keeps memory flat); intensity percentiles come from
    ``samples_per_volume`` voxels drawn from each volume with a fixed ``seed``.
    """
    rng = np.random.default_rng(seed)
    names, shapes, spacings, sources, samples = [], [], [], [], []
    voxels: List[int] = []
    cases: List[int] = []
    n_labeled, total, s1, s2 = 0, 0, 0.0, 0.0
    lo, hi = math.inf, -math.inf
    for v in volumes:
        image = np.asarray(v.image)
        names.append(str(v.name))
        shapes.append(tuple(int(n) for n in image.shape))
        spacings.append(tuple(float(s) for s in (getattr(v, "spacing", None) or (1.0, 1.0, 1.0))))
        sources.append(str(getattr(v, "source", None) or v.name))
        flat = image.reshape(-1).astype(np.float64)
        total += flat.size
        s1, s2 = s1 + flat.sum(), s2 + (flat**2).sum()
        lo, hi = min(lo, float(flat.min())), max(hi, float(flat.max()))
        samples.append(flat[rng.integers(0, flat.size, min(samples_per_volume, flat.size))])
        label = getattr(v, "label", None)
        if label is not None:
            n_labeled += 1
            counts = np.bincount(np.asarray(label).reshape(-1), minlength=len(voxels)).tolist()
            voxels += [0] * (len(counts) - len(voxels))
            cases += [0] * (len(counts) - len(cases))
            for c, n in enumerate(counts):
                voxels[c] += int(n)
                cases[c] += int(n > 0)
    if not names:
        raise DataError(f"{dataset}: no volumes to fingerprint; check the data folder")
    mean = s1 / total
    pooled = np.concatenate(samples)
    intensity = {"mean": float(mean), "std": float(math.sqrt(max(0.0, s2 / total - mean**2))), "min": lo,
                 "max": hi, "p00_5": float(np.percentile(pooled, 0.5)), "p99_5": float(np.percentile(pooled, 99.5))}
    names_ = list(class_names) if class_names else []
    if names_ and len(voxels) > len(names_):
        raise DataError(f"{dataset}: labels hold class {len(voxels) - 1} but dataset.json names only "
                        f"{len(names_)} classes; add the missing names to its 'labels'")
    voxels += [0] * (len(names_) - len(voxels))
    cases += [0] * (len(names_) - len(cases))
    return Fingerprint(dataset, names, shapes, spacings, intensity, voxels, cases, n_labeled, names_, sources)


def fingerprint_dataset(dataset: str, root: Optional[str | Path] = None, seed: int = 1337,
                        synthetic: Optional[Dict[str, Any]] = None) -> Fingerprint:
    """Fingerprint every volume of a data set at its stored resolution: ``"nifti"`` (``root`` holds
    ``imagesTr/``, ``labelsTr/``, optionally ``dataset.json``), ``"la"`` (``root`` holds ``train.list``)
    or ``"synthetic"`` (``synthetic``: keyword arguments of :func:`sfr_teach.data.synthetic_dataset`)."""
    from . import data as D

    if dataset == "nifti":
        if root is None:
            raise ValueError("dataset 'nifti' needs a data folder (--data-dir): the folder holding imagesTr/")
        names = read_class_names(root)
        ds = D.NiftiDataset(root, num_classes=len(names) if names else None, cache_size=0)
        vols: Iterable[Any] = (ds.load(n) for n in ds.names)
    elif dataset == "la":
        if root is None:
            raise ValueError("dataset 'la' needs its data folder (the one holding train.list)")
        ds = D.LADataset(root, cache_size=0)
        names = ["background", "left atrium"]
        vols = (ds.load(n) for n in ds.names)
    elif dataset == "synthetic":
        kw = dict(synthetic or {})
        vols = D.synthetic_dataset(seed=seed, **kw)
        names = None
    else:
        raise ValueError(f"unknown dataset {dataset!r}; choose nifti, la or synthetic")
    return fingerprint_volumes(vols, dataset=dataset, class_names=names)


# ----------------------------------------------------------------------------- plan
@dataclass
class Plan:
    """The planned geometry (working axes: in-plane, in-plane, slices) and the fingerprint it came from.

    ``overrides()`` maps configuration keys to the planned values (what :func:`apply_plan` sets).
    """

    preset: str
    dataset: str
    n_volumes: int
    n_labeled: int
    shape_median: Shape
    shape_min: Shape
    spacing_median: Tuple[float, float, float]
    anisotropy: float
    slice_axis: int
    downsample: Shape
    working_shape_min: Shape
    working_spacing: Tuple[float, float, float]
    num_classes: int
    class_names: Tuple[str, ...]
    class_fraction: Tuple[float, ...]
    intensity: Dict[str, float]
    sam_crop: Shape
    grid: int
    mosaic_side: int
    image_size: int
    patch_size: Shape
    eval_stride: Shape
    padding: Dict[str, float]
    budgets: Dict[str, Any]
    notes: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    _TUPLES = ("shape_median", "shape_min", "spacing_median", "downsample", "working_shape_min", "working_spacing",
               "class_names", "class_fraction", "sam_crop", "patch_size", "eval_stride")

    def overrides(self) -> Dict[str, Any]:
        return {
            "data.slice_axis": self.slice_axis,
            "data.downsample": self.downsample,
            "data.num_classes": self.num_classes,
            "data.class_names": self.class_names,
            "sam.crop_size": self.sam_crop,
            "sam.image_size": self.image_size,
            "retrain.patch_size": self.patch_size,
            "eval.patch_size": self.patch_size,
            "eval.stride": self.eval_stride,
        }

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Plan":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: (tuple(v) if k in cls._TUPLES else v) for k, v in d.items() if k in known}
        return cls(**kw)

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no plan there; make one with `sfr-teach plan --dataset ... --data-dir ...`")
        return cls.from_dict(json.loads(path.read_text()))

    def describe(self) -> str:
        """A few lines a person reads: what the data look like and what the plan chose, and why."""
        x = lambda t, f="{}": "x".join(f.format(v) for v in t)  # noqa: E731
        ax = "slices along array axis {}".format(self.slice_axis)
        lines = [
            f"data plan ({self.dataset}, {self.n_volumes} volumes, {self.n_labeled} labelled; "
            f"budgets of the {self.preset} preset)",
            f"  shape median {x(self.shape_median)} (smallest {x(self.shape_min)}), spacing median "
            f"{x(self.spacing_median, '{:g}')} mm: " + (f"anisotropic ({self.anisotropy:.1f}x), {ax}"
                                                         if self.anisotropy >= ANISOTROPY else f"near-isotropic, {ax}"),
            "  classes: " + ", ".join(f"{i} {n} {100 * f:.1f} %" for i, (n, f) in
                                      enumerate(zip(self.class_names, self.class_fraction))),
            f"  intensities: mean {self.intensity['mean']:.3g}, std {self.intensity['std']:.3g}, "
            f"0.5-99.5 % [{self.intensity['p00_5']:.3g}, {self.intensity['p99_5']:.3g}]",
            f"  resampling x{x(self.downsample)} -> smallest working volume {x(self.working_shape_min)} "
            f"at {x(self.working_spacing, '{:g}')} mm",
            f"  SAM: crop {x(self.sam_crop)} -> {self.grid}x{self.grid} grid, {self.mosaic_side} px mosaic in a "
            f"{self.image_size} px input ({100 * self.padding['mosaic']:.0f} % padding)",
            f"  V-Net: patch {x(self.patch_size)} ({100 * self.padding['patch']:.0f} % padding on the smallest "
            f"volume), evaluation stride {x(self.eval_stride)}",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def _roundup(n: int, unit: int) -> int:
    return -(-int(n) // unit) * unit


def padding_share(shape: Sequence[int], box: Sequence[int]) -> float:
    """Share of a ``box`` (crop / patch) that is padding when it is cut from a volume of ``shape``."""
    inside = np.prod([min(int(s), int(b)) for s, b in zip(shape, box)], dtype=np.float64)
    return float(1.0 - inside / np.prod([int(b) for b in box], dtype=np.float64))


def _mosaic_padding(shape: Sequence[int], crop: Sequence[int], image_size: int) -> float:
    """Share of the SAM input that is padding or empty grid cells for a crop of a volume of ``shape``."""
    used = np.prod([min(int(s), int(c)) for s, c in zip(shape, crop)], dtype=np.float64)
    return float(1.0 - used / float(image_size) ** 2)


def _image_size(mosaic: int, sam_cfg: Any, notes: List[str]) -> int:
    budget = int(sam_cfg.image_size)
    if sam_cfg.model_type != "tiny":
        return budget  # an official checkpoint keeps its input size
    unit = int(sam_cfg.tiny_patch_size) * int(sam_cfg.tiny_window_size)
    size = _roundup(mosaic, unit)
    if size > budget:
        size = budget
        notes.append(f"SAM input kept at the budget's {budget} px (whole attention windows would need {size} px)")
    return size


def _vnet_patch(work_min: Sequence[int], budget: Sequence[int]) -> Shape:
    fit = [max(VNET_UNIT, (int(n) // VNET_UNIT) * VNET_UNIT) for n in work_min]  # the data, in multiples of 16
    patch = [min(int(b), f) if int(b) >= VNET_UNIT else int(b) for b, f in zip(budget, fit)]
    voxels = int(np.prod([int(b) for b in budget]))
    growable = [a for a in range(3) if patch[a] == int(budget[a])]
    if len(growable) < 3:  # the data cut an axis: spend its voxels on the others
        grown = True
        while grown:
            grown = False
            for a in sorted(growable, key=lambda a: patch[a]):
                trial = list(patch)
                trial[a] += VNET_UNIT
                if trial[a] <= fit[a] and int(np.prod(trial)) <= voxels:
                    patch, grown = trial, True
    return tuple(patch)  # type: ignore[return-value]


def make_plan(fp: Fingerprint, cfg: Any) -> Plan:
    """Plan the geometry of ``fp``'s data for the budgets of ``cfg`` (a :class:`~sfr_teach.config.Config`
    as its preset / overrides set it: sam.crop_size, sam.image_size, retrain.patch_size, eval.stride,
    data.downsample). Keys in ``cfg.overrides`` are taken as given. Raises DataError (naming the file)
    when a volume is smaller than any usable patch."""
    explicit = set(getattr(cfg, "overrides", ()) or ())
    shapes = np.asarray(fp.shapes, dtype=np.int64)
    spacings = np.asarray(fp.spacings, dtype=np.float64)
    med_sp = np.median(spacings, axis=0)
    aniso = float(med_sp.max() / med_sp.min())
    notes: List[str] = []
    if "data.slice_axis" in explicit:
        slice_axis = int(cfg.data.slice_axis) % 3
    elif aniso >= ANISOTROPY:
        slice_axis = int(np.argmax(med_sp))
    else:
        slice_axis = 2
    order = [a for a in range(3) if a != slice_axis] + [slice_axis]
    if slice_axis != 2:
        notes.append(f"volumes are transposed on load so that array axis {slice_axis} (the slices) comes last")
    w_shapes, w_sp = shapes[:, order], med_sp[order]
    shape_min = w_shapes.min(0)

    budget_f = downsample_factors(cfg.data.downsample)
    if "data.downsample" in explicit:
        factors = list(budget_f)
    else:
        factors = []
        for a in range(3):
            f = max(budget_f)
            if f > 1 and w_sp[a] >= ANISOTROPY * w_sp.min():
                notes.append(f"axis {order[a]} ({w_sp[a]:g} mm) is already coarse: not down-sampled")
                f = 1
            while f > 1 and -(-int(shape_min[a]) // f) < MIN_INPLANE:
                f -= 1
            factors.append(f)
    work = -(-w_shapes // np.asarray(factors))  # ceil, as downsample_volume
    work_min = tuple(int(n) for n in work.min(0))
    i_small = int(np.argmin(np.prod(work, axis=1)))
    _check_usable(work, [fp.sources[i] if i < len(fp.sources) else fp.names[i] for i in range(len(fp.names))],
                  tuple(factors))

    # SAM crop and mosaic
    sam = cfg.sam
    bh, bw, bd = (int(c) for c in sam.crop_size)
    depth = min(bd, work_min[2])
    grid = grid_size(depth)
    cell = int(sam.image_size) // grid
    h, w = min(work_min[0], bh), min(work_min[1], bw)
    if depth < bd:
        h, w = min(work_min[0], max(bh, cell)), min(work_min[1], max(bw, cell))
        if max(h, w) > max(bh, bw):
            notes.append(f"the data hold only {depth} slices: the SAM crop grows in-plane to fill its "
                         f"{grid}x{grid} grid")
    h, w = min(h, cell), min(w, cell)
    if bh == bw:
        h = w = min(h, w)
    crop = (h, w, depth)
    mosaic = grid * max(h, w)
    image_size = _image_size(mosaic, sam, notes)

    # V-Net patch and evaluation stride
    patch = _vnet_patch(work_min, cfg.retrain.patch_size)
    stride = tuple(max(1, int(round(int(s) * p / int(b)))) for s, p, b in
                   zip(cfg.eval.stride, patch, cfg.eval.patch_size))

    names = list(fp.class_names) or ["background"] + [f"class {c}" for c in range(1, fp.num_classes)]
    num_classes = len(names)
    total = max(1, sum(fp.class_voxels))
    fraction = tuple(float(fp.class_voxels[c]) / total if c < len(fp.class_voxels) else 0.0 for c in range(num_classes))
    padding = {
        "sam_crop": padding_share(work_min, crop),
        "mosaic": _mosaic_padding(work_min, crop, image_size),
        "patch": padding_share(work_min, patch),
    }
    plan = Plan(
        preset=str(getattr(cfg, "preset", "?")), dataset=fp.dataset, n_volumes=len(fp.names), n_labeled=fp.n_labeled,
        shape_median=tuple(int(n) for n in np.median(shapes, 0)), shape_min=tuple(int(n) for n in shapes.min(0)),
        spacing_median=tuple(float(s) for s in med_sp), anisotropy=aniso, slice_axis=slice_axis,
        downsample=tuple(factors), working_shape_min=work_min,
        working_spacing=tuple(float(s) * f for s, f in zip(w_sp, factors)), num_classes=num_classes,
        class_names=tuple(names), class_fraction=fraction, intensity=dict(fp.intensity), sam_crop=crop, grid=grid,
        mosaic_side=mosaic, image_size=image_size, patch_size=patch, eval_stride=stride, padding=padding,
        budgets={"downsample": list(budget_f), "sam_crop": [bh, bw, bd], "image_size": int(sam.image_size),
                 "patch_size": list(cfg.retrain.patch_size), "eval_stride": list(cfg.eval.stride)},
        notes=notes,
    )
    plan.warnings = check_geometry([tuple(work[i_small])], crop, image_size, patch)
    return plan


def _check_usable(shapes: np.ndarray, sources: Sequence[str], factors: Sequence[int] = (1, 1, 1)) -> None:
    for shape, src in zip(shapes, sources):
        if min(shape[:2]) < MIN_INPLANE or shape[2] < MIN_SLICES:
            how = "" if tuple(factors) == (1, 1, 1) else f" after down-sampling by {'x'.join(map(str, factors))}"
            raise DataError(
                f"{src}: volume of working shape {tuple(int(n) for n in shape)}{how} (slices last) is smaller than "
                f"any usable patch: it needs at least {MIN_INPLANE}x{MIN_INPLANE} voxels in-plane and {MIN_SLICES} "
                "slices; remove this case from imagesTr/ (and labelsTr/), or resample it to a finer grid"
                + (", or lower data.downsample" if how else "")
            )


def check_geometry(shapes: Sequence[Sequence[int]], sam_crop: Sequence[int], image_size: int,
                   patch: Sequence[int], sources: Optional[Sequence[str]] = None) -> List[str]:
    """Warnings (text) for the working ``shapes`` (H, W, D): padding above ``PAD_WARN`` of a SAM crop,
    of the SAM input (mosaic) or of a V-Net patch, judged on the smallest volume. Raises DataError
    naming the file (``sources``) when a volume is smaller than any usable patch."""
    arr = np.asarray([tuple(int(n) for n in s) for s in shapes], dtype=np.int64)
    _check_usable(arr, list(sources) if sources is not None else [f"volume {i}" for i in range(len(arr))])
    small = tuple(int(n) for n in arr[int(np.argmin(np.prod(arr, axis=1)))])
    out = []
    x = lambda t: "x".join(str(int(v)) for v in t)  # noqa: E731
    share = padding_share(small, sam_crop)
    if share > PAD_WARN:
        out.append(f"{100 * share:.0f} % of every SAM crop {x(sam_crop)} is padding on the smallest volume "
                   f"{x(small)} (more than {100 * PAD_WARN:.0f} %); plan the geometry from the data "
                   "(data.plan=on, `sfr-teach plan`) or lower sam.crop_size")
    share = _mosaic_padding(small, sam_crop, image_size)
    if share > PAD_WARN:
        out.append(f"{100 * share:.0f} % of every {image_size} px SAM mosaic is padding or empty grid cells "
                   f"(crop {x(sam_crop)} of a {x(small)} volume; more than {100 * PAD_WARN:.0f} %); plan the geometry "
                   "from the data (data.plan=on) or change sam.crop_size / sam.image_size")
    share = padding_share(small, patch)
    if share > PAD_WARN:
        out.append(f"{100 * share:.0f} % of every V-Net patch {x(patch)} is padding on the smallest volume "
                   f"{x(small)} (more than {100 * PAD_WARN:.0f} %); plan the geometry from the data (data.plan=on) "
                   "or lower retrain.patch_size")
    return out


def warn_geometry(cfg: Any, volumes: Sequence[Any]) -> List[str]:
    """:func:`check_geometry` on loaded (working) volumes for ``cfg``'s geometry; each message is issued as
    a :class:`GeometryWarning` and logged. The SAM checks run only when SAM is used (``retrain.sfr``)."""
    vols = list(volumes)
    if not vols:
        return []
    shapes = [tuple(v.image.shape) for v in vols]
    msgs = check_geometry(shapes, cfg.sam.crop_size, cfg.sam.image_size, cfg.retrain.patch_size,
                          [str(getattr(v, "source", None) or v.name) for v in vols])
    if not cfg.retrain.sfr:
        msgs = [m for m in msgs if "SAM" not in m]
    for m in msgs:
        warnings.warn(m, GeometryWarning, stacklevel=2)
        log.warning(m)
    return msgs


def apply_plan(cfg: Any, plan: Plan, keep: Optional[Iterable[str]] = None) -> Any:
    """A copy of ``cfg`` with the plan's geometry; keys in ``keep`` (default ``cfg.overrides``, the
    ones the user set explicitly) keep their values."""
    keep = set(getattr(cfg, "overrides", ()) if keep is None else keep)
    from .config import _set_dotted

    out = copy.deepcopy(cfg)
    for key, value in plan.overrides().items():
        if key not in keep:
            _set_dotted(out, key, value)
    return out


def plan_wanted(cfg: Any) -> bool:
    """``data.plan``: "on" always, "off" never, "auto" for NIfTI data (the presets' geometry is LA's)."""
    mode = cfg.data.plan
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"data.plan={mode!r}: choose auto (NIfTI data only), on or off")
    return mode == "on" or (mode == "auto" and cfg.data.dataset == "nifti")


def plan_run(cfg: Any, root: Optional[str | Path] = None) -> Tuple[Any, Optional[Plan]]:
    """``(cfg with the planned geometry, plan)`` when :func:`plan_wanted`, else ``(cfg, None)``.
    ``root``: the data folder (default ``cfg.data.data_dir``)."""
    if not plan_wanted(cfg):
        return cfg, None
    plan = plan_for(cfg, root)
    for line in plan.describe().splitlines():
        log.info(line)
    return apply_plan(cfg, plan), plan


def plan_for(cfg: Any, root: Optional[str | Path] = None) -> Plan:
    """Fingerprint ``cfg.data``'s data set (folder ``root``, default ``cfg.data.data_dir``) and plan it
    for ``cfg``'s budgets, whatever ``data.plan`` says (``sfr-teach plan``)."""
    dc = cfg.data
    syn = {"n": dc.synthetic_cases, "shape": tuple(dc.synthetic_shape), "kind": dc.synthetic_kind}
    fp = fingerprint_dataset(dc.dataset, root if root is not None else dc.data_dir, seed=cfg.seed, synthetic=syn)
    return make_plan(fp, cfg)
