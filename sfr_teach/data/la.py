"""The left-atrium (LA) dataset in its public preprocessed h5 form.

Layout (as published with the UA-MT repository's ``data/`` folder)::

    <root>/train.list                                 one ID a line (80); "N labelled" = first N
    <root>/test.list                                  optional (20)
    <root>/2018LA_Seg_Training Set/<ID>/mri_norm2.h5  keys image float32, label uint8, (x, y, 88)

No spacing is stored; the native spacing is 0.625 mm isotropic.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Union

from .splits import Split, make_split
from .volume import (DataError, MissingDataError, Volume, VolumeCache, downsample_factors, downsample_volume,
                     validate_volume)

LA_SPACING = (0.625, 0.625, 0.625)
LA_SUBDIR = "2018LA_Seg_Training Set"
LA_FILE = "mri_norm2.h5"
DOWNLOAD_HINT = "sfr-teach data download la --dest DIR"

PathLike = Union[str, Path]


def load_la_volume(path: PathLike, num_classes: int = 2, name: Optional[str] = None) -> Volume:
    """Read one LA ``mri_norm2.h5`` -> :class:`Volume` (image float32 (x, y, 88), label uint8).

    Raises :class:`DataError` naming the file when it is missing, not HDF5, lacks ``image`` /
    ``label`` or holds bad arrays (see :func:`validate_volume`).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise MissingDataError(
            f"{path}: LA volume not found; download the data with `{DOWNLOAD_HINT}` "
            "and point the data directory at DIR"
        )
    try:
        with h5py.File(path, "r") as f:
            keys = sorted(f.keys())
            missing = [k for k in ("image", "label") if k not in keys]
            if missing:
                raise DataError(
                    f"{path}: missing key(s) {', '.join(missing)} (keys found: {', '.join(keys) or 'none'}); "
                    f"an LA file needs 'image' and 'label': re-download it with `{DOWNLOAD_HINT}`"
                )
            image, label = f["image"][()], f["label"][()]
    except DataError:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise DataError(
            f"{path}: not a readable HDF5 file (corrupt or partly downloaded: {e}); delete it and re-run "
            f"`{DOWNLOAD_HINT}` (downloads resume)"
        ) from e
    image, label = validate_volume(image, label, num_classes=num_classes, source=str(path))
    return Volume(name or path.parent.name, image, label, LA_SPACING, None, str(path))


def _read_list(path: Path) -> List[str]:
    """IDs from a list file; lines may be bare IDs or paths ending in ``<ID>/mri_norm2.h5``."""
    names = []
    for line in path.read_text().splitlines():
        line = line.strip().replace("\\", "/")
        if not line or line.startswith("#"):
            continue
        parts = [p for p in line.split("/") if p]
        if parts[-1].endswith(".h5"):
            parts = parts[:-1]
        if not parts:
            raise DataError(f"{path}: cannot read a volume ID from the line {line!r}")
        names.append(parts[-1])
    return names


class LADataset:
    """The LA data under ``root`` (the folder holding ``train.list``).

    ``train_names`` / ``test_names`` (None without test.list) are the ordered IDs; ``load(name)``
    returns a :class:`Volume`, downsampled by ``downsample`` (block mean / majority vote) and
    cached (the last ``cache_size`` volumes); ``split(labeled, val)`` gives the SSL protocol split.
    """

    def __init__(self, root: PathLike, downsample=1, num_classes: int = 2, cache_size: int = 8):
        self.root = Path(root)
        f = downsample_factors(downsample)  # one factor for every axis, or (fh, fw, fd)
        self.downsample = f[0] if len(set(f)) == 1 else f
        self.num_classes = int(num_classes)
        self._cache = VolumeCache(cache_size)
        if not self.root.is_dir():
            raise MissingDataError(f"{self.root}: LA data folder not found; download it with `{DOWNLOAD_HINT}`")
        train = self.root / "train.list"
        if not train.is_file():
            raise MissingDataError(
                f"{train}: train.list not found in the LA data folder; download the data with "
                f"`{DOWNLOAD_HINT}` or point the data directory at the folder holding train.list"
            )
        self.train_names: List[str] = _read_list(train)
        if not self.train_names:
            raise DataError(f"{train}: the list is empty; re-download it with `{DOWNLOAD_HINT}`")
        test = self.root / "test.list"
        self.test_names: Optional[List[str]] = _read_list(test) if test.is_file() else None

    @property
    def names(self) -> List[str]:
        return self.train_names + (self.test_names or [])

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        n_test = "none" if self.test_names is None else len(self.test_names)
        return (
            f"LADataset({str(self.root)!r}, train={len(self.train_names)}, test={n_test}, "
            f"downsample={self.downsample})"
        )

    def path(self, name: str) -> Path:
        return self.root / LA_SUBDIR / name / LA_FILE

    def load(self, name: str) -> Volume:
        def read() -> Volume:
            return downsample_volume(load_la_volume(self.path(name), self.num_classes, name=name), self.downsample)

        return self._cache.get(name, read)

    def split(self, labeled: int, val: int = 16, fold: Optional[int] = None) -> Split:
        return make_split(self.train_names, self.test_names, labeled, val, source=str(self.root / "train.list"), fold=fold)

