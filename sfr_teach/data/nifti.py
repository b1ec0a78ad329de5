"""NIfTI volumes (nibabel): MSD / BTCV style folders and saving predictions.

Folder layout read by :class:`NiftiDataset`::

    <root>/imagesTr/<name>_0000.nii.gz   (or <name>.nii.gz)
    <root>/labelsTr/<name>.nii.gz        (optional per case: a missing label -> unlabelled volume)
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from .splits import Split, make_split
from .volume import DataError, MissingDataError, Volume, VolumeCache, validate_volume

PathLike = Union[str, Path]
NII_SUFFIXES = (".nii.gz", ".nii")


def _strip_suffix(name: str) -> Optional[str]:
    for suf in NII_SUFFIXES:
        if name.endswith(suf):
            return name[: -len(suf)]
    return None


def _read_nifti(path: Path, what: str):
    import nibabel as nib

    if not path.is_file():
        raise MissingDataError(f"{path}: {what} file not found; check the path (NIfTI .nii or .nii.gz expected)")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as e:  # nibabel raises several types for unreadable files
        raise DataError(f"{path}: not a readable NIfTI file ({e}); re-export or re-download it") from e
    if data.ndim == 4:
        if data.shape[3] != 1:
            raise DataError(
                f"{path}: 4D {what} with {data.shape[3]} channels/time points, shape {data.shape}; only 3D volumes "
                "(or 4D with one channel) are supported: split the channels into separate files or select one"
            )
        data = data[..., 0]
    return img, data


def load_nifti_volume(
    image_path: PathLike,
    label_path: Optional[PathLike] = None,
    num_classes: Optional[int] = None,
    name: Optional[str] = None,
) -> Volume:
    """Read a NIfTI image (and label) -> :class:`Volume` with the header's affine and zooms as spacing.

    image float32 (H, W, D); a 4D image with one channel is squeezed, other 4D raises DataError.
    """
    image_path = Path(image_path)
    img, image = _read_nifti(image_path, "image")
    label = None
    source = str(image_path)
    if label_path is not None:
        _, label = _read_nifti(Path(label_path), "label")
        source = f"{image_path} / {label_path}"
    image, label = validate_volume(image, label, num_classes=num_classes, source=source)
    spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    if name is None:
        name = _strip_suffix(image_path.name) or image_path.stem
        name = name[:-5] if name.endswith("_0000") else name
    affine = np.asarray(img.affine, dtype=np.float64)
    return Volume(name, image, label, spacing, affine, str(image_path))  # type: ignore[arg-type]


def save_nifti(
    array: np.ndarray,
    path: PathLike,
    spacing: Optional[Sequence[float]] = None,
    affine: Optional[np.ndarray] = None,
) -> Path:
    """Write a (H, W, D) or (H, W, D, C) array as NIfTI; integer arrays (labels) as uint8, others float32.

    affine: 4x4 voxel-to-world (default diag(spacing)); spacing sets the header zooms (default
    taken from the affine). Returns the path.
    """
    import nibabel as nib

    path = Path(path)
    array = np.asarray(array)
    if array.dtype == bool or np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"{path}: label values must lie in 0..255 to be saved as uint8")
        array = array.astype(np.uint8)
    else:
        array = array.astype(np.float32)
    if affine is None:
        affine = np.diag([*(spacing if spacing is not None else (1.0, 1.0, 1.0)), 1.0])
    img = nib.Nifti1Image(array, np.asarray(affine, dtype=np.float64))
    if spacing is not None:
        img.header.set_zooms(tuple(float(s) for s in spacing) + tuple(img.header.get_zooms()[3:]))
    img.header.set_data_dtype(array.dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


class NiftiDataset:
    """Cases under ``root/imagesTr`` (+ ``root/labelsTr``), ordered by sorted name.

    ``names``; ``load(name)`` -> :class:`Volume` (cached, last ``cache_size``); ``split(labeled, val)``
    as for LA: first ``labeled`` names labelled, last ``val`` names held out for testing.
    """

    def __init__(self, root: PathLike, num_classes: Optional[int] = None, cache_size: int = 4):
        self.root = Path(root)
        self.num_classes = num_classes
        self._cache = VolumeCache(cache_size)
        images = self.root / "imagesTr"
        if not images.is_dir():
            raise MissingDataError(
                f"{images}: folder not found; a NIfTI dataset root must hold imagesTr/ (and labelsTr/), "
                "as in the Medical Segmentation Decathlon"
            )
        self._images: Dict[str, Path] = {}
        for p in sorted(images.iterdir()):
            stem = _strip_suffix(p.name)
            if stem is None or p.name.startswith("."):
                continue
            key = stem[:-5] if stem.endswith("_0000") else stem
            if key in self._images:
                raise DataError(f"{p}: two image files for case {key!r} ({self._images[key].name} and {p.name})")
            self._images[key] = p
        if not self._images:
            raise DataError(f"{images}: no .nii / .nii.gz images found")
        self.names: List[str] = sorted(self._images)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"NiftiDataset({str(self.root)!r}, cases={len(self.names)})"

    def image_path(self, name: str) -> Path:
        if name not in self._images:
            raise MissingDataError(f"{self.root / 'imagesTr'}: no image for case {name!r}")
        return self._images[name]

    def label_path(self, name: str) -> Optional[Path]:
        for suf in NII_SUFFIXES:
            p = self.root / "labelsTr" / f"{name}{suf}"
            if p.is_file():
                return p
        return None

    def load(self, name: str) -> Volume:
        def read() -> Volume:
            return load_nifti_volume(self.image_path(name), self.label_path(name), self.num_classes, name=name)

        return self._cache.get(name, read)

    def split(self, labeled: int, val: int = 16, fold: Optional[int] = None) -> Split:
        return make_split(self.names, None, labeled, val, source=str(self.root / "imagesTr"), fold=fold)
