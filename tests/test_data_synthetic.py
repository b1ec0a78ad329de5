"""Synthetic phantoms: deterministic, cheap, learnable but not trivial."""
from __future__ import annotations


import numpy as np
import pytest

from sfr_teach.data import make_phantom, smooth_noise, synthetic_dataset


def _dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_single_phantom_is_deterministic_and_well_formed():
    a, b, c = make_phantom(7), make_phantom(7), make_phantom(8)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == a.label.shape == (64, 64, 48)
    assert a.image.dtype == np.float32 and a.label.dtype == np.uint8 and set(np.unique(a.label)) == {0, 1}
    assert abs(a.image.mean()) < 1e-4 and abs(a.image.std() - 1) < 1e-3  # z-scored
    for seed in range(6):
        assert 0.05 <= make_phantom(seed).label.mean() <= 0.15


def test_single_phantom_is_one_connected_blob_brighter_than_background():
    from scipy.ndimage import label as components

    for seed in range(4):
        v = make_phantom(seed, shape=(48, 48, 32))
        sizes = np.bincount(components(v.label)[0].ravel())[1:]
        assert sizes.max() > 0.9 * v.label.sum(), seed  # one main blob (noise may split a few voxels)
        assert v.image[v.label == 1].mean() > v.image[v.label == 0].mean() + 1.0


def test_thresholding_is_good_but_not_perfect():
    best = []
    for seed in range(8):
        v = make_phantom(seed, shape=(48, 48, 32))
        best.append(max(_dice(v.image > t, v.label > 0) for t in np.linspace(-1, 3, 41)))
    assert max(best) < 0.95, best  # noise + bias + bright distractors: no threshold is perfect
    assert 0.55 < np.mean(best) < 0.9, best  # but intensity carries real signal


def test_multi_phantom_classes_and_intensities():
    v = make_phantom(3, kind="multi")
    assert set(np.unique(v.label)) == {0, 1, 2, 3, 4}
    for seed in range(6):
        w = make_phantom(seed, kind="multi", shape=(48, 48, 32))
        means = [w.image[w.label == c].mean() for c in range(5)]
        assert all(np.diff(means) > 0.1), (seed, means)  # distinct intensity levels, in class order
    for c in range(1, 5):
        assert 0.001 < (v.label == c).mean() < 0.1
    v3 = make_phantom(3, kind="multi", num_classes=3)
    assert v3.label.max() == 2


def test_phantom_argument_errors():
    with pytest.raises(ValueError, match="unknown phantom kind"):
        make_phantom(0, kind="double")
    with pytest.raises(ValueError, match="2 classes"):
        make_phantom(0, kind="single", num_classes=3)
    with pytest.raises(ValueError, match="shape"):
        make_phantom(0, shape=(8, 8))


def test_dataset_names_and_determinism():
    vols = synthetic_dataset(5, seed=1)
    assert [v.name for v in vols] == [f"phantom_{i:03d}" for i in range(5)]
    again = synthetic_dataset(2, seed=1, shape=(64, 64, 48))
    assert np.array_equal(again[1].image, vols[1].image)
    assert not np.array_equal(synthetic_dataset(1, seed=2)[0].image, vols[0].image)


def test_smooth_noise_is_smooth():
    f = smooth_noise(np.random.default_rng(0), (32, 32, 16), cells=4)
    assert f.shape == (32, 32, 16) and abs(f.mean()) < 1e-5 and abs(f.std() - 1) < 1e-4
    assert np.abs(np.diff(f, axis=0)).mean() < 0.2  # neighbours are close (white noise would give ~1.1)


# ----------------------------------------------------------------------------- anisotropic multi-class phantom
def test_anisotropic_phantom_thick_slices_three_touching_classes():
    from scipy import ndimage

    from sfr_teach.data import HEART_CLASSES, make_anisotropic_phantom

    a, b = make_anisotropic_phantom(3, shape=(96, 112, 10)), make_anisotropic_phantom(3, shape=(96, 112, 10))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
    assert a.image.shape == a.label.shape == (96, 112, 10) and a.spacing == (1.5, 1.5, 10.0)
    assert a.image.dtype == np.float32 and abs(a.image.mean()) < 1e-4 and abs(a.image.std() - 1) < 1e-3
    assert set(np.unique(a.label)) == {0, 1, 2, 3} and len(HEART_CLASSES) == 4
    # the heart crosses most of the ten 10 mm slices and every structure spans several of them
    assert (a.label > 0).any(axis=(0, 1)).sum() >= 7
    for c in (1, 2, 3):
        assert (a.label == c).any(axis=(0, 1)).sum() >= 4
    # touching: each structure borders another one (one in-plane dilation reaches it)
    for c, other in ((1, 2), (2, 3)):
        grown = ndimage.binary_dilation(a.label == c, structure=np.ones((3, 3, 1)))
        assert (grown & (a.label == other)).sum() > 20
    # bright blood (LV, RV) > background > dark myocardium, on average
    mean = [a.image[a.label == c].mean() for c in range(4)]
    assert mean[3] > mean[1] > mean[0] > mean[2]


def test_anisotropic_phantom_slice_axis_and_sizes_in_mm():
    from sfr_teach.data import make_anisotropic_phantom

    last = make_anisotropic_phantom(5, shape=(80, 96, 10))
    first = make_anisotropic_phantom(5, shape=(10, 80, 96), spacing=(10.0, 1.5, 1.5), slice_axis=0)
    assert first.image.shape == (10, 80, 96) and first.spacing == (10.0, 1.5, 1.5)
    assert np.array_equal(np.moveaxis(first.label, 0, -1), last.label)  # the same heart, slices on axis 0
    # finer in-plane spacing -> the heart spans more voxels (sizes are in mm)
    fine = make_anisotropic_phantom(5, shape=(160, 192, 10), spacing=(0.75, 0.75, 10.0))
    assert 3.0 < (fine.label > 0).sum() / (last.label > 0).sum() < 5.0


def test_write_msd_dataset_layout_and_dataset_json(tmp_path):
    import json

    from sfr_teach.data import NiftiDataset, write_msd_dataset

    root = write_msd_dataset(tmp_path / "heart", 3, seed=1, shape=(48, 56, 8), unlabeled=1)
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "right ventricle", "2": "myocardium", "3": "left ventricle"}
    assert meta["numTraining"] == 3 and "label" not in meta["training"][2]
    assert sorted(p.name for p in (root / "imagesTr").iterdir()) == [f"heart_00{i}_0000.nii.gz" for i in range(3)]
    ds = NiftiDataset(root, num_classes=4)
    v = ds.load("heart_000")
    assert v.shape == (48, 56, 8) and v.spacing == (1.5, 1.5, 10.0) and set(np.unique(v.label)) == {0, 1, 2, 3}
    assert ds.load("heart_002").label is None
