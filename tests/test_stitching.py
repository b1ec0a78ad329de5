"""Stitching: layout, exact round trips, strategies, and every real LA volume."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from scipy import ndimage

from sfr_teach.stitching import (
    STRATEGIES,
    DownsampleStrategy,
    get_strategy,
    grid_size,
    make_layout,
    stitch,
    unstitch,
    valid_mask,
)

# measured on the 80 real LA volumes (whole volumes, 1024); see the module docstring
LA_LABEL_DICE_FLOOR = 0.965
LA_IMAGE_MAX_ERR = 7.5
LA_IMAGE_MAE = 0.10


def _rand(rng, shape, dtype):
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if dtype == "float32":
        return rng.standard_normal(shape).astype(np.float32)
    if dtype == "int64":
        return rng.integers(-(2**40), 2**40, shape, dtype=np.int64)  # beyond float32 precision
    return rng.integers(0, 256, shape).astype(dtype)


def _bound_ok(x: np.ndarray, back: np.ndarray, layout, fill=0.0) -> bool:
    """Every voxel's error <= its largest difference to a raw-mosaic pixel within r (docstring bound)."""
    r = int(np.ceil(max(a / b for a, b in zip(layout.raw, layout.scaled)))) + 1
    big = make_layout(x.shape, out_size=max(layout.raw), fit="pad")
    raw = stitch(x.astype(np.float64), big, fill=fill)
    top, left = big.offset
    raw = raw[..., top : top + big.raw[0], left : left + big.raw[1]]
    size = (1,) * (raw.ndim - 2) + (2 * r + 1, 2 * r + 1)
    hi = ndimage.maximum_filter(raw, size=size, mode="nearest")
    lo = ndimage.minimum_filter(raw, size=size, mode="nearest")
    pad = [(0, 0)] * (raw.ndim - 2) + [(top, big.out_size - top - big.raw[0]), (left, big.out_size - left - big.raw[1])]
    local = unstitch(np.pad(np.maximum(hi - raw, raw - lo), pad), big)
    return bool((np.abs(back.astype(np.float64) - x) <= local + 1e-5).all())


def test_grid_size_and_layout():
    assert [grid_size(d) for d in (1, 2, 4, 5, 80, 81, 82, 88, 100)] == [1, 2, 2, 3, 9, 9, 10, 10, 10]
    lay = make_layout((112, 112, 80))
    assert (lay.grid, lay.raw, lay.scaled, lay.offset, lay.resized) == (9, (1008, 1008), (1008, 1008), (8, 8), False)
    whole = make_layout((190, 140, 88))
    assert whole.grid == 10 and whole.scaled == (1024, 755) and whole.resized


def test_too_many_slices_for_grid_names_the_fix():
    with pytest.raises(ValueError, match=r"grid >= 9"):
        make_layout((16, 16, 80), out_size=256, grid=8)
    with pytest.raises(ValueError, match="fit='auto'"):
        make_layout((112, 112, 80), out_size=512, fit="pad")


@pytest.mark.parametrize("dtype", ["uint8", "int64", "bool", "float32"])
def test_labels_round_trip_exactly_random_shapes(rng, dtype):
    """No resize, up-sampling resize, leading dims, numpy and torch: labels come back bit-exactly."""
    for trial in range(10):
        d = int(rng.integers(1, 101))
        h, w = (int(v) for v in rng.integers(8, 151, 2))
        lead = [(), (2,), (2, 3)][trial % 3] if h * w * d < 300_000 else ()
        x = _rand(rng, (*lead, h, w, d), dtype)
        g = grid_size(d)
        up = int(g * max(h, w) * rng.uniform(1.01, 1.3)) + 1  # a non-integer up-sampling factor
        for out, fit in ((g * max(h, w) + int(rng.integers(0, 9)), "auto"), (up, "resize")):
            lay = make_layout(x.shape, out, fit=fit)
            assert lay.resized == (fit == "resize")
            for arr in (x, torch.from_numpy(x)):
                m = stitch(arr, lay, is_label=True)
                back = unstitch(m, lay, is_label=True)
                assert type(back) is type(arr) and back.dtype == arr.dtype and tuple(back.shape) == x.shape
                assert (np.asarray(back) == x).all()


@pytest.mark.parametrize("dtype", ["uint8", "int64", "float32"])
def test_images_exact_without_resize(rng, dtype):
    for trial in range(6):
        d = int(rng.integers(1, 101))
        h, w = (int(v) for v in rng.integers(8, 151, 2))
        x = _rand(rng, ((), (3,))[trial % 2] + (h, w, d), dtype)
        lay = make_layout(x.shape, grid_size(d) * max(h, w))
        assert np.array_equal(unstitch(stitch(x, lay), lay), x)


def test_images_with_resize_within_documented_bound(rng):
    for trial in range(6):
        d = int(rng.integers(1, 60))
        h, w = (int(v) for v in rng.integers(8, 80, 2))
        x = rng.standard_normal((h, w, d)).astype(np.float32)  # noise: the worst case for interpolation
        g = grid_size(d)
        for out in (int(g * max(h, w) * 0.45), int(g * max(h, w) * 1.7)):
            lay = make_layout(x.shape, out, fit="resize")
            back = unstitch(stitch(x, lay), lay)
            assert not np.array_equal(back, x)
            assert _bound_ok(x, back, lay)
    # a linear ramp up-sampled and back: exact away from the cell borders (where neighbours mix in)
    zz, yy, _ = np.meshgrid(np.arange(40), np.arange(30), np.arange(9), indexing="ij")
    ramp = (0.01 * zz + 0.02 * yy).astype(np.float32)
    lay = make_layout(ramp.shape, 512, fit="resize")
    err = np.abs(unstitch(stitch(ramp, lay), lay) - ramp)
    assert err[1:-1, 1:-1].max() < 1e-5 and err.max() > 0.01


def test_row_major_placement_and_fill():
    h, w, d = 5, 7, 11  # 4x4 grid, 5 empty cells
    x = np.zeros((h, w, d), np.int64)
    for k in range(d):
        x[..., k] = 100 + k
    x[0, 0, :] = -1  # top-left pixel of every slice marks its origin
    lay = make_layout(x.shape, out_size=40)
    m = stitch(x, lay, fill=7)
    top, left = lay.offset
    assert lay.grid == 4 and lay.raw == (20, 28) and lay.offset == (10, 6)
    for k in range(d):
        r, c = top + (k // 4) * h, left + (k % 4) * w
        assert lay.cell_box(k) == ((k // 4) * h, (k % 4) * w, h, w)
        assert m[r, c] == -1 and (m[r + 1 : r + h, c : c + w] == 100 + k).all()
    for k in range(d, 16):  # empty cells
        r, c = top + (k // 4) * h, left + (k % 4) * w
        assert (m[r : r + h, c : c + w] == 7).all()
    assert (m[:top] == 7).all() and (m[:, :left] == 7).all() and (m[top + 20 :] == 7).all() and (m[:, left + 28 :] == 7).all()
    assert (m == 7).sum() == 40 * 40 - d * h * w


def test_valid_mask_counts(rng):
    for shape, out in (((112, 112, 80), 1024), ((5, 7, 11), 40), ((30, 20, 10), 64), ((30, 20, 10), 300)):
        lay = make_layout(shape, out, fit="auto")
        mask = valid_mask(lay)
        assert mask.dtype == torch.bool and mask.shape == (out, out)
        expected = shape[0] * shape[1] * shape[2] * (lay.scaled[0] / lay.raw[0]) * (lay.scaled[1] / lay.raw[1])
        if lay.resized:  # nearest resize: counts agree up to one row/column of cells
            assert abs(int(mask.sum()) - expected) <= lay.grid * (lay.scaled[0] + lay.scaled[1])
        else:
            assert int(mask.sum()) == shape[0] * shape[1] * shape[2]


def test_torch_device_and_dtype_kept():
    x = torch.rand(2, 16, 12, 10, dtype=torch.float64)
    lay = make_layout(x.shape, 64)
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        xd = x.to(device)
        m = stitch(xd, lay)
        assert m.device == xd.device and m.dtype == torch.float64 and m.shape == (2, 64, 64)
        assert torch.equal(unstitch(m, lay), xd)
        lab = (xd > 0.5).to(torch.int64)
        lay_r = make_layout(x.shape, 200, fit="resize")
        back = unstitch(stitch(lab, lay_r, is_label=True), lay_r, is_label=True)
        assert back.device == xd.device and back.dtype == torch.int64 and torch.equal(back, lab)
        assert valid_mask(lay, device=xd.device).device == xd.device


def test_probabilities_with_channel_dim(rng):
    prob = rng.random((3, 20, 24, 13)).astype(np.float32)
    lay = make_layout(prob.shape, 128)
    assert stitch(prob, lay).shape == (3, 128, 128)
    assert np.array_equal(unstitch(stitch(prob, lay), lay), prob)


# ------------------------------------------------------------------ strategies


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_strategies_shapes_and_label_round_trip(rng, name):
    s = get_strategy(name, out_size=256)
    shape = (2, 30, 40, 13)  # a batch of 2
    lab = rng.integers(0, 3, shape).astype(np.uint8)
    imgs = s.to_images(lab, is_label=True)
    n = s.n_images(shape)
    assert imgs.shape == (2, n, 256, 256) and imgs.dtype == np.uint8
    assert n == {"grid": 1, "upsample": 13, "downsample": 1}[name]
    back = s.from_images(imgs, shape, is_label=True)
    assert back.shape == shape and back.dtype == np.uint8
    if name == "downsample":
        keep = s.kept(13)
        assert list(keep) == [0, 2, 4, 6, 8, 10, 12]
        assert np.array_equal(back[..., keep], lab[..., keep])
    else:
        assert np.array_equal(back, lab)  # grid: padded; upsample: 256 >= 40, up-sampling
    assert s.valid_mask(shape).shape == (n, 256, 256)
    with pytest.raises(ValueError, match="expects images shaped"):
        s.from_images(np.zeros((2, n + 1, 256, 256)), shape)
    t = torch.from_numpy(lab).long()  # torch in, torch out, dtype kept
    tb = s.from_images(s.to_images(t, is_label=True), shape, is_label=True)
    assert isinstance(tb, torch.Tensor) and tb.dtype == torch.int64 and np.array_equal(tb.numpy(), back)
    img = torch.rand(shape, dtype=torch.float64)
    ib = s.from_images(s.to_images(img), shape)
    assert ib.dtype == torch.float64 and ib.shape == shape


def test_upsample_strategy_slice_k_is_image_k(rng):
    s = get_strategy("upsample", out_size=64)
    x = torch.from_numpy(rng.standard_normal((16, 32, 5)).astype(np.float32))
    imgs = s.to_images(x)
    assert imgs.shape == (5, 64, 64)
    # 32-wide slices scale by 2 to 32x64 rows x cols, centred vertically: top offset 16
    assert torch.allclose(imgs[3, 16:48, :].mean(), x[..., 3].mean(), atol=1e-5)
    assert (imgs[:, :16] == 0).all() and (imgs[:, 48:] == 0).all()
    assert int(s.valid_mask(x.shape).sum()) == 5 * 32 * 64
    back = s.from_images(imgs, x.shape)
    lay = s.layout(x.shape)
    assert _bound_ok(x.numpy().transpose(2, 0, 1)[..., None], back.numpy().transpose(2, 0, 1)[..., None], lay)


def test_downsample_interpolates_dropped_slices():
    s = DownsampleStrategy(out_size=512, step=3)
    zz = np.broadcast_to(np.arange(10, dtype=np.float32), (20, 24, 10))
    img = (2.0 * zz + 1.0).astype(np.float32)  # linear along D: recovered exactly
    assert list(s.kept(10)) == [0, 3, 6, 9]
    back = s.from_images(s.to_images(img), img.shape)
    assert np.allclose(back, img, atol=1e-5)
    lab = (zz >= 5).astype(np.uint8)  # boundary between kept slices 3 and 6
    back = s.from_images(s.to_images(lab, is_label=True), lab.shape, is_label=True)
    # z=4 -> nearest kept 3 (0), z=5 -> nearest kept 6 (1): exact here
    assert np.array_equal(back, lab)
    lab2 = (zz == 4).astype(np.uint8)  # a structure only in a dropped slice vanishes
    assert s.from_images(s.to_images(lab2, is_label=True), lab2.shape, is_label=True).sum() == 0
    assert get_strategy("downsample", step=2, out_size=1024).to_images(np.zeros((112, 112, 80))).shape == (1, 1024, 1024)
    with pytest.raises(ValueError, match="unknown stitching strategy"):
        get_strategy("mosaic")


# ------------------------------------------------------------------ real LA volumes


@pytest.fixture(scope="module")
def la_volumes(la_dir):
    names = (la_dir / "train.list").read_text().split()
    vols = []
    for n in names:
        with h5py.File(la_dir / "2018LA_Seg_Training Set" / n / "mri_norm2.h5", "r") as f:
            vols.append((n, f["image"][:], f["label"][:]))
    assert len(vols) == 80
    return vols


def test_every_la_crop_round_trips_exactly(la_volumes):
    """A centred 112x112x80 crop of every real volume: 9x9 grid padded to 1024, image and label exact."""
    lay = make_layout((112, 112, 80))
    assert not lay.resized
    for name, img, lab in la_volumes:
        h, w, d = img.shape
        sl = tuple(slice((n - c) // 2, (n - c) // 2 + c) for n, c in zip((h, w, d), (112, 112, 80)))
        ci, cl = img[sl], lab[sl]
        assert np.array_equal(unstitch(stitch(ci, lay), lay), ci), name
        assert np.array_equal(unstitch(stitch(cl, lay, is_label=True, fill=255), lay, is_label=True), cl), name


def test_every_la_volume_round_trip_within_measured_bounds(la_volumes):
    """Whole volumes (~190x140x88 -> 10x10 grid -> scaled ~0.5 to 1024): label Dice and image error."""
    dices, maes = [], []
    for i, (name, img, lab) in enumerate(la_volumes):
        lay = make_layout(img.shape)
        assert lay.grid == 10 and lay.resized and max(lay.scaled) == 1024
        lb = unstitch(stitch(lab, lay, is_label=True), lay, is_label=True)
        inter = np.logical_and(lb > 0, lab > 0).sum()
        dices.append(2.0 * inter / ((lb > 0).sum() + (lab > 0).sum()))
        ib = unstitch(stitch(img, lay), lay)
        err = np.abs(ib - img)
        maes.append(float(err.mean()))
        assert err.max() <= LA_IMAGE_MAX_ERR, name
        if i % 20 == 0:  # the per-voxel bound on a few (a 9x9 max filter over 2.7 M pixels is not free)
            assert _bound_ok(img, ib, lay), name
    assert min(dices) >= LA_LABEL_DICE_FLOOR, min(dices)
    assert np.mean(maes) <= LA_IMAGE_MAE
