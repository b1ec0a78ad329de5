"""Fine-tuning: mosaics, loss, checkpoints of trainable weights, exact resume, learning on real LA."""
from __future__ import annotations

import dataclasses
import time

import h5py
import numpy as np
import pytest
import torch

from sfr_teach.config import get_config
from sfr_teach.sam import build_from_config
from sfr_teach.data.transforms import bezier_intensity
from sfr_teach.data.volume import zscore
from sfr_teach.losses import IGNORE_INDEX
from sfr_teach.sam.finetune import finetune, load_trainable, save_trainable, warmup_poly
from sfr_teach.sam.mosaics import MosaicDataset
from sfr_teach.sam.lora import set_trainable
from sfr_teach.stitching import make_layout, valid_mask


def _small_cfg(**kw):
    cfg = get_config("smoke").sam
    cfg = dataclasses.replace(cfg, image_size=128, crop_size=(24, 24, 16), tiny_embed_dim=32, tiny_depth=2,
                              tiny_heads=2, tiny_window_size=4, steps=6, warmup=2, batch_size=2)
    return dataclasses.replace(cfg, **kw)


def _blob_volume(rng, shape=(30, 28, 18), classes=2):
    img = rng.normal(0, 0.3, shape).astype(np.float32)
    lab = np.zeros(shape, np.uint8)
    c = np.array(shape) / 2
    g = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    r = np.linalg.norm((g - c) / (np.array(shape) / 3), axis=-1)
    for k in range(1, classes):
        lab[r < 1.0 - 0.8 * (k - 1) / classes] = k
    img += lab.astype(np.float32)
    return img, lab


def test_mosaic_dataset_ignore_and_determinism(rng):
    img, lab = _blob_volume(rng, shape=(30, 20, 14))  # W and D shorter than the crop: padded
    ds = MosaicDataset([(img, lab)], (24, 24, 16), 128, augment=True, seed=3)
    x, y = ds[5]
    x2, y2 = ds[5]
    assert x.shape == (1, 128, 128) and y.shape == (128, 128) and y.dtype == torch.int64
    assert torch.equal(x, x2) and torch.equal(y, y2)
    outside = ~valid_mask(make_layout((24, 24, 16), 128))
    assert (y[outside] == IGNORE_INDEX).all()
    assert set(torch.unique(y).tolist()) == {0, 1, IGNORE_INDEX}  # W padding also ignored inside cells
    assert int((y == 1).sum()) == int((ds.sample(5)[1] == 1).sum())  # stitching keeps every labelled voxel
    assert not torch.equal(y, ds[6][1])  # another index, another draw
    # the augmentation is the V-Net's train_transform: same seed, same crop (labels padded with 255 here)
    from sfr_teach.data.transforms import train_transform

    t = train_transform((24, 24, 16), label_pad_value=IGNORE_INDEX)
    rng_i = np.random.default_rng([3, 5])
    rng_i.integers(1)  # the volume choice
    t.set_random_state(seed=int(rng_i.integers(2**31)))
    ref = t({"image": zscore(img)[None], "label": lab[None]})
    assert torch.equal(ds.sample(5)[1], ref["label"][0]) and torch.allclose(ds.sample(5)[0], ref["image"][0])
    with pytest.raises(ValueError, match="no label"):
        MosaicDataset([type("V", (), {"name": "u1", "image": img, "label": None})()], (24, 24, 16), 128)


def test_intensity_transforms(rng):
    img = rng.normal(2.0, 3.0, (10, 9, 8)).astype(np.float32)
    z = zscore(img)
    assert abs(z.mean()) < 1e-5 and abs(z.std() - 1) < 1e-5
    out = bezier_intensity(img, np.random.default_rng(1))
    assert out.dtype == np.float32 and out.shape == img.shape
    assert out.min() >= img.min() - 1e-4  # the curve stays inside [0, 1] (convex hull)
    assert out.max() <= img.max() + 1e-4 and not np.allclose(out, img)
    assert np.array_equal(out, bezier_intensity(img, np.random.default_rng(1)))  # seeded


def test_warmup_poly():
    assert warmup_poly(0, 100, 10) == pytest.approx(0.1) and warmup_poly(10, 100, 10) == 1.0
    assert warmup_poly(55, 100, 10) == pytest.approx(0.5**0.9)


def test_save_load_trainable_and_exact_resume(tmp_path, rng):
    vols = [_blob_volume(rng)]
    cfg = _small_cfg(finetune="lora")
    x = torch.randn(2, 1, 128, 128)
    full = build_from_config(cfg, 2)
    hist = finetune(full, vols, cfg, tmp_path / "full", seed=1, progress=False)
    assert len(hist) == 6
    # an interrupted run: 3 steps, then a new process (fresh model) resumes from the checkpoint
    part = build_from_config(cfg, 2)
    finetune(part, vols, cfg, tmp_path / "part", seed=1, progress=False, stop_after=3)
    resumed = build_from_config(cfg, 2)
    hist2 = finetune(resumed, vols, cfg, tmp_path / "part", seed=1, progress=False)
    assert [h["step"] for h in hist2] == list(range(1, 7))
    for (n, a), (_, b) in zip(full.named_parameters(), resumed.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), n
    # save -> load into a fresh model gives identical predictions
    path = save_trainable(full, tmp_path / "w.pt")
    fresh = set_trainable(build_from_config(cfg, 2), cfg)
    load_trainable(fresh, path)
    with torch.no_grad():
        assert torch.equal(full(x), fresh(x))
    assert (tmp_path / "full" / "sam_log.csv").read_text().count("\n") == 7
    assert (tmp_path / "full" / "sam_trainable.pt").is_file()
    n_saved = len(torch.load(path, weights_only=False)["trainable"])
    assert n_saved == sum(1 for _, p in full.named_parameters() if p.requires_grad) < len(list(full.parameters()))


def test_multiclass_finetune_and_predict(rng):
    from sfr_teach.sam.predict import predict_volume

    img, lab = _blob_volume(rng, shape=(26, 31, 13), classes=5)
    cfg = _small_cfg(finetune="full", steps=8, lr=3e-3)
    m = build_from_config(cfg, 5)
    hist = finetune(m, [(img, lab)], cfg, None, seed=0, progress=False)
    assert hist[-1]["loss"] < hist[0]["loss"]
    label, prob = predict_volume(m, img, cfg.crop_size, cfg.image_size, batch_size=3)
    assert label.shape == img.shape and prob.shape == (5, *img.shape) and label.dtype == np.uint8
    assert np.allclose(prob.sum(0), 1, atol=1e-4) and label.max() < 5


def _first_la_volume(la_dir, factor=2):
    name = (la_dir / "train.list").read_text().split()[0]
    with h5py.File(la_dir / "2018LA_Seg_Training Set" / name / "mri_norm2.h5") as f:
        image, label = f["image"][:], f["label"][:]
    h, w, d = (n // factor * factor for n in image.shape)
    image = image[:h, :w, :d].reshape(h // factor, factor, w // factor, factor, d // factor, factor).mean((1, 3, 5))
    return image.astype(np.float32), label[:h:factor, :w:factor, :d:factor].astype(np.uint8)


def test_tiny_sam_learns_one_real_la_volume(la_dir):
    image, label = _first_la_volume(la_dir)
    cfg = get_config("smoke").sam  # tiny, 256 input
    cfg = dataclasses.replace(cfg, crop_size=(40, 40, 32), steps=40, warmup=5, lr=3e-3)
    m = build_from_config(cfg, 2)
    t = time.time()
    hist = finetune(m, [(image, label)], cfg, None, seed=0, progress=False)
    elapsed = time.time() - t
    first = np.mean([h["loss"] for h in hist[:5]])
    last = np.mean([h["loss"] for h in hist[-5:]])
    assert last < 0.7 * first, f"loss {first:.3f} -> {last:.3f} in {elapsed:.1f}s"
