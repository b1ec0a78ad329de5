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
