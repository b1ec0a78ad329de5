"""NIfTI round trips and the imagesTr/labelsTr dataset (files written by the tests)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from sfr_teach.data import DataError, MissingDataError, NiftiDataset, load_nifti_volume, save_nifti


def _affine(spacing, origin=(10.0, -20.0, 5.0)):
    a = np.diag([*spacing, 1.0])
    a[:3, 3] = origin
    return a


def test_round_trip_image_label_affine_spacing(tmp_path, rng):
    image = rng.standard_normal((10, 9, 7)).astype(np.float32)
    label = (image > 0.5).astype(np.int64) + (image > 1.5)
    spacing = (0.8, 0.9, 2.5)
    aff = _affine(spacing)
    pi = save_nifti(image, tmp_path / "case_0000.nii.gz", spacing=spacing, affine=aff)
    pl = save_nifti(label, tmp_path / "lab" / "case.nii.gz", spacing=spacing, affine=aff)
    assert nib.load(str(pl)).get_data_dtype() == np.uint8 and nib.load(str(pi)).get_data_dtype() == np.float32
    vol = load_nifti_volume(pi, pl, num_classes=3)
    assert vol.name == "case" and vol.source == str(pi)
    np.testing.assert_array_equal(vol.image, image)
    np.testing.assert_array_equal(vol.label, label.astype(np.uint8))
    np.testing.assert_allclose(vol.affine, aff)
    np.testing.assert_allclose(vol.spacing, spacing, rtol=1e-6)


def test_save_probabilities_float32_and_default_affine(tmp_path):
    prob = np.random.default_rng(1).random((2, 6, 5, 4)).astype(np.float64).transpose(1, 2, 3, 0)  # (H, W, D, C)
    p = save_nifti(prob, tmp_path / "prob.nii", spacing=(2.0, 2.0, 3.0))
    img = nib.load(str(p))
    assert img.get_data_dtype() == np.float32 and img.shape == (6, 5, 4, 2)
    np.testing.assert_allclose(np.asarray(img.dataobj), prob.astype(np.float32))
    np.testing.assert_allclose(img.affine, np.diag([2.0, 2.0, 3.0, 1.0]))
    with pytest.raises(ValueError, match="0..255"):
        save_nifti(np.full((2, 2, 2), 300), tmp_path / "big.nii.gz")


def test_4d_images(tmp_path):
    one = tmp_path / "one.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 3, 1), np.float32), np.eye(4)), str(one))
    assert load_nifti_volume(one).image.shape == (4, 4, 3)
    many = tmp_path / "many.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 3, 2), np.float32), np.eye(4)), str(many))
    with pytest.raises(DataError, match="many.nii.gz: 4D image with 2 channels"):
        load_nifti_volume(many)


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(MissingDataError, match="absent.nii.gz: image file not found"):
        load_nifti_volume(tmp_path / "absent.nii.gz")
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not a nifti at all" * 10)
    with pytest.raises(DataError, match="junk.nii.gz: not a readable NIfTI"):
        load_nifti_volume(junk)
    img = save_nifti(np.zeros((4, 4, 4), np.float32), tmp_path / "img.nii.gz")
    lab = save_nifti(np.full((4, 4, 4), 3, np.uint8), tmp_path / "lab.nii.gz")
    with pytest.raises(DataError, match=r"img.nii.gz / .*lab.nii.gz: label values must lie in \[0, 2\)"):
        load_nifti_volume(img, lab, num_classes=2)
    nan = save_nifti(np.full((4, 4, 4), np.nan, np.float32), tmp_path / "nan.nii.gz")
    with pytest.raises(DataError, match="nan.nii.gz.*NaN"):
        load_nifti_volume(nan)
    flat = save_nifti(np.zeros((4, 4), np.float32), tmp_path / "flat.nii.gz")
    with pytest.raises(DataError, match="flat.nii.gz.*must be 3D"):
        load_nifti_volume(flat)


def test_dataset_both_namings_split_and_unlabelled(tmp_path, rng):
    root = tmp_path / "Task"
    names = ["a01", "b02", "c03", "d04", "e05"]
    for i, n in enumerate(names):
        img = rng.standard_normal((6, 6, 4)).astype(np.float32)
        fname = f"{n}_0000.nii.gz" if i % 2 else f"{n}.nii.gz"
        save_nifti(img, root / "imagesTr" / fname, spacing=(1.0, 1.0, 2.0))
        if n != "e05":  # one case without a label -> unlabelled volume
            save_nifti((img > 0).astype(np.uint8), root / "labelsTr" / f"{n}.nii.gz", spacing=(1.0, 1.0, 2.0))
    (root / "imagesTr" / "._a01.nii.gz").write_bytes(b"macOS junk")
    (root / "imagesTr" / "readme.txt").write_text("ignored")
    ds = NiftiDataset(root, num_classes=2)
    assert ds.names == names and len(ds) == 5
    v = ds.load("b02")
    assert v.name == "b02" and v.spacing == (1.0, 1.0, 2.0) and set(np.unique(v.label)) <= {0, 1}
    assert ds.load("b02") is v and ds.load("e05").label is None
    s = ds.split(labeled=2, val=2)
    assert (s.labeled, s.unlabeled, s.test, s.test_source) == (["a01", "b02"], ["c03"], ["d04", "e05"], "validation")
    with pytest.raises(DataError, match="empty labelled set"):
        ds.split(labeled=0, val=2)
    with pytest.raises(MissingDataError, match="no image for case 'zzz'"):
        ds.load("zzz")


def test_dataset_errors(tmp_path):
    with pytest.raises(MissingDataError, match="imagesTr: folder not found"):
        NiftiDataset(tmp_path)
    (tmp_path / "imagesTr").mkdir()
    with pytest.raises(DataError, match="no .nii"):
        NiftiDataset(tmp_path)
    save_nifti(np.zeros((2, 2, 2), np.float32), tmp_path / "imagesTr" / "x.nii.gz")
    save_nifti(np.zeros((2, 2, 2), np.float32), tmp_path / "imagesTr" / "x_0000.nii.gz")
    with pytest.raises(DataError, match="two image files for case 'x'"):
        NiftiDataset(tmp_path)
