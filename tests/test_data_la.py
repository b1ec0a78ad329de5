"""LA loading, validation errors, splits and downsampling (real LA data + small files made here)."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from sfr_teach.data import (
    DataError,
    LADataset,
    MissingDataError,
    Volume,
    downsample_volume,
    load_la_volume,
    make_split,
    validate_volume,
)


def _write_h5(path, **arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    return path


def _fake_la(root, names, test=None, shape=(12, 10, 8), lines=None):
    """A tiny LA-layout folder: one h5 per name, train.list (``lines`` overrides its text)."""
    rng = np.random.default_rng(0)
    for n in list(names) + list(test or []):
        img = rng.standard_normal(shape).astype(np.float32)
        _write_h5(root / "2018LA_Seg_Training Set" / n / "mri_norm2.h5", image=img, label=(img > 1).astype(np.uint8))
    (root / "train.list").write_text(lines if lines is not None else "\n".join(names) + "\n")
    if test is not None:
        (root / "test.list").write_text("\n".join(test) + "\n")
    return root


# ---------------------------------------------------------------- real LA data


def test_real_la_volumes_load(la_dir):
    ds = LADataset(la_dir)
    assert len(ds.train_names) == 80 and ds.test_names is None
    for name in ds.train_names[:3]:
        vol = ds.load(name)
        assert vol.name == name and vol.image.dtype == np.float32 and vol.label.dtype == np.uint8
        assert vol.image.ndim == 3 and vol.image.shape[2] == 88 and vol.label.shape == vol.image.shape
        assert 170 <= vol.image.shape[0] <= 215 and 130 <= vol.image.shape[1] <= 150
        assert set(np.unique(vol.label)) == {0, 1}
        assert 0.01 < vol.label.mean() < 0.2  # the atrium is a few percent of the volume
        assert vol.spacing == (0.625, 0.625, 0.625) and vol.source.endswith("mri_norm2.h5")
    assert ds.load(ds.train_names[0]) is ds.load(ds.train_names[0])  # cached


def test_real_la_split_one_labelled(la_dir):
    ds = LADataset(la_dir)
    s = ds.split(labeled=1, val=16)
    assert (len(s.labeled), len(s.unlabeled), len(s.test)) == (1, 63, 16)
    assert s.labeled == ds.train_names[:1] and s.test == ds.train_names[-16:] and s.test_source == "validation"
    assert not (set(s.labeled) & set(s.unlabeled) or set(s.labeled) & set(s.test) or set(s.unlabeled) & set(s.test))
    assert set(s.labeled + s.unlabeled + s.test) == set(ds.train_names)


def test_real_la_five_folds_cover_every_volume_once(la_dir):
    ds = LADataset(la_dir)
    tests = []
    for k in range(5):
        s = ds.split(labeled=1, val=16, fold=k)
        assert (len(s.labeled), len(s.unlabeled), len(s.test)) == (1, 63, 16)
        assert s.test == ds.train_names[16 * k:16 * (k + 1)] and s.test_source == f"validation fold {k}"
        assert s.labeled == [n for n in ds.train_names if n not in s.test][:1]
        assert set(s.labeled + s.unlabeled + s.test) == set(ds.train_names)
        tests += s.test
    assert sorted(tests) == sorted(ds.train_names)
    last = ds.split(labeled=1, val=16, fold=4)
    default = ds.split(labeled=1, val=16)
    assert (last.labeled, last.unlabeled, last.test) == (default.labeled, default.unlabeled, default.test)


def test_fold_errors_name_the_fix():
    names = [f"v{i}" for i in range(10)]
    with pytest.raises(DataError, match="0 <= fold < 2"):
        make_split(names, None, labeled=1, val=5, fold=2)
    with pytest.raises(DataError, match="drop the fold"):
        make_split(names, ["t0"], labeled=1, val=5, fold=0)
    s = make_split(names, None, labeled=2, val=5, fold=0)
    assert (s.labeled, s.test) == (["v5", "v6"], names[:5])


def test_real_la_downsample(la_dir):
    ds1, ds2 = LADataset(la_dir), LADataset(la_dir, downsample=2)
    name = ds1.train_names[1]
    full, half = ds1.load(name), ds2.load(name)
    assert half.shape == tuple(-(-n // 2) for n in full.shape) and half.shape[2] == 44
    assert half.spacing == (1.25, 1.25, 1.25) and set(np.unique(half.label)) == {0, 1}
    assert abs(half.label.mean() - full.label.mean()) < 0.1 * full.label.mean()
    assert abs(half.image.mean() - full.image.mean()) < 0.02


# ---------------------------------------------------------------- lists and splits


def test_lists_accept_ids_and_uamt_paths(tmp_path):
    names = ["AAA", "BBB", "CCC", "DDD"]
    lines = "AAA\n../data/2018LA_Seg_Training Set/BBB/mri_norm2.h5\n\n/abs/2018LA_Seg_Training Set/CCC/\nDDD\n"
    root = _fake_la(tmp_path, names, test=["EEE", "FFF"], lines=lines)
    ds = LADataset(root)
    assert ds.train_names == names and ds.test_names == ["EEE", "FFF"]
    assert ds.path("BBB") == root / "2018LA_Seg_Training Set" / "BBB" / "mri_norm2.h5"
    s = ds.split(labeled=2, val=16)  # with test.list, val is not carved out of train.list
    assert (s.labeled, s.unlabeled, s.test) == (["AAA", "BBB"], ["CCC", "DDD"], ["EEE", "FFF"])
    assert s.test_source == "test.list"
    assert ds.load("EEE").shape == (12, 10, 8)


def test_make_split_validation_and_errors():
    names = [f"n{i}" for i in range(10)]
    s = make_split(names, None, labeled=3, val=4)
    assert s.labeled == names[:3] and s.unlabeled == names[3:6] and s.test == names[6:]
    with pytest.raises(DataError, match="empty labelled set"):
        make_split(names, None, labeled=0, val=4, source="my/train.list")
    with pytest.raises(DataError, match=r"my/train.list.*exceeds the 10 names"):
        make_split(names, None, labeled=7, val=4, source="my/train.list")
    with pytest.raises(DataError, match="only 10 names"):
        make_split(names, ["t"], labeled=11)


def test_dataset_errors_name_the_path(tmp_path):
    with pytest.raises(MissingDataError, match="nowhere.*sfr-teach data download la"):
        LADataset(tmp_path / "nowhere")
    with pytest.raises(MissingDataError, match="train.list.*sfr-teach data download la"):
        LADataset(tmp_path)
    ds = LADataset(_fake_la(tmp_path / "la", ["AAA", "BBB"]))
    with pytest.raises(DataError, match="empty labelled set"):
        ds.split(labeled=0, val=1)
    with pytest.raises(DataError, match="labeled \\+ val"):
        ds.split(labeled=2, val=1)


# ---------------------------------------------------------------- bad files


def test_missing_file_error(tmp_path):
    p = tmp_path / "XYZ" / "mri_norm2.h5"
    with pytest.raises(FileNotFoundError) as e:
        load_la_volume(p)
    assert str(p) in str(e.value) and "sfr-teach data download la --dest DIR" in str(e.value)


def test_corrupt_h5_error(tmp_path):
    p = tmp_path / "broken.h5"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DataError, match="broken.h5.*not a readable HDF5 file"):
        load_la_volume(p)


def test_missing_keys_error_lists_found_keys(tmp_path):
    p = _write_h5(tmp_path / "keys.h5", img=np.zeros((4, 4, 4), np.float32), seg=np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(DataError) as e:
        load_la_volume(p)
    msg = str(e.value)
    assert "keys.h5" in msg and "image, label" in msg and "img, seg" in msg


@pytest.mark.parametrize(
    "image,label,num_classes,pattern",
    [
        (np.zeros((8, 8), np.float32), None, 2, "must be 3D.*2 dimensions"),
        (np.zeros((2, 8, 8, 8), np.float32), None, 2, "must be 3D.*4 dimensions"),
        (np.full((4, 4, 4), np.nan, np.float32), None, 2, "NaN/inf"),
        (np.zeros((4, 4, 4), np.float32), np.full((4, 4, 4), 3, np.uint8), 2, r"\[0, 2\).*\{3\}.*at least 4"),
        (np.zeros((4, 4, 4), np.float32), np.zeros((4, 4, 5), np.uint8), 2, "does not match image shape"),
        (np.zeros((0, 4, 4), np.float32), None, 2, "empty"),
        (np.zeros((4, 4, 4), np.float32), np.zeros((4, 4, 0), np.uint8), 2, "empty"),
        (np.zeros((4, 4, 4), np.float32), np.full((4, 4, 4), 0.5), 2, "non-integer"),
        (np.zeros((4, 4, 4), np.float32), np.full((4, 4, 4), -1), 2, "remap"),
    ],
)
def test_bad_arrays_in_h5_name_the_file(tmp_path, image, label, num_classes, pattern):
    label = np.zeros(image.shape, np.uint8) if label is None else label
    p = _write_h5(tmp_path / "case01.h5", image=image, label=label)
    with pytest.raises(DataError, match=pattern) as e:
        load_la_volume(p, num_classes=num_classes)
    assert str(p) in str(e.value)
    with pytest.raises(DataError, match=pattern) as e:  # the same check on arrays
        validate_volume(image, label, num_classes, source="arrays.npz")
    assert str(e.value).startswith("arrays.npz: ")


def test_validate_returns_canonical_dtypes():
    img, lab = validate_volume(np.ones((3, 3, 3), np.float64), np.ones((3, 3, 3), np.int64), 2)
    assert img.dtype == np.float32 and lab.dtype == np.uint8
    assert validate_volume(np.ones((3, 3, 3)))[1] is None
    _, mask = validate_volume(np.ones((3, 3, 3)), np.ones((3, 3, 3), bool), 2)  # a boolean mask is a label map
    assert mask.dtype == np.uint8 and mask.min() == 1


# ---------------------------------------------------------------- downsampling


def test_downsample_block_mean_and_majority():
    image = np.arange(4 * 4 * 2, dtype=np.float32).reshape(4, 4, 2)
    label = np.zeros((4, 4, 2), np.uint8)
    label[:2, :2, :] = 1  # the whole first block
    label[2:, 2:, :1] = 2  # half of the last block -> tie -> lower class (0)
    label[2:, :2, :] = 2
    label[3, 1, 1] = 0  # 7 of 8 voxels still class 2
    aff = np.diag([2.0, 2.0, 3.0, 1.0])
    vol = Volume("v", image, label, (2.0, 2.0, 3.0), aff)
    out = downsample_volume(vol, 2)
    assert out.shape == (2, 2, 1) and out.spacing == (4.0, 4.0, 6.0)
    np.testing.assert_allclose(out.image[0, 0, 0], image[:2, :2, :].mean())
    np.testing.assert_allclose(out.image[1, 1, 0], image[2:, 2:, :].mean())
    assert out.label[:, :, 0].tolist() == [[1, 0], [2, 0]]
    # voxel (0,0,0) of the output is the centre of the first block: (0.5, 0.5, 0.5) in old voxels
    np.testing.assert_allclose(out.affine @ [0, 0, 0, 1], aff @ [0.5, 0.5, 0.5, 1])
    assert downsample_volume(vol, 1) is vol


def test_downsample_odd_shape_pads_edges():
    vol = Volume("v", np.ones((5, 3, 7), np.float32), np.ones((5, 3, 7), np.uint8))
    out = downsample_volume(vol, 2)
    assert out.shape == (3, 2, 4) and np.all(out.image == 1) and np.all(out.label == 1)
    with pytest.raises(ValueError):
        downsample_volume(vol, 0)


def test_zscore_normalisation_removes_the_stored_intensity_spread(la_dir):
    """The stored LA volumes differ in mean/std (normalised before cropping); zscore equalises them."""
    from sfr_teach.data import LADataset, normalize_volume, zscore

    ds = LADataset(la_dir)
    vols = [ds.load(n) for n in ds.train_names[:3] + ds.train_names[-3:]]
    means = [float(v.image.mean()) for v in vols]
    assert max(means) - min(means) > 0.5  # the spread the pipeline has to remove
    for v in vols:
        z = normalize_volume(v, "zscore")
        assert abs(float(z.image.mean())) < 1e-4 and abs(float(z.image.std()) - 1) < 1e-4
        np.testing.assert_array_equal(z.label, v.label)
        assert normalize_volume(v, "none") is v
    np.testing.assert_array_equal(zscore(np.full((4, 4, 4), 3.0)), np.zeros((4, 4, 4), np.float32))
    with pytest.raises(ValueError, match="data.normalize"):
        normalize_volume(vols[0], "minmax")
