"""Whole-volume prediction: tiling geometry, odd shapes, agreement with the training geometry."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sfr_teach.config import get_config
from sfr_teach.sam import build_from_config
from sfr_teach.data.volume import zscore
from sfr_teach.sam.predict import predict_volume
from sfr_teach.sliding_window import window_starts
from sfr_teach.stitching import make_layout, stitch, unstitch


def _cfg():
    cfg = get_config("smoke").sam
    return dataclasses.replace(cfg, image_size=128, crop_size=(24, 24, 16), tiny_embed_dim=32, tiny_depth=2,
                               tiny_heads=2, tiny_window_size=4)


def test_tile_starts_cover_exactly():
    assert window_starts(24, 24, 12) == [0]
    assert window_starts(37, 24, 12) == [0, 12, 13]
    for n in (25, 50, 61):
        covered = np.zeros(n, bool)
        for s in window_starts(n, 24, 12):
            assert 0 <= s <= n - 24
            covered[s : s + 24] = True
        assert covered.all()


@pytest.mark.parametrize("shape", [(37, 29, 21), (13, 17, 9)])  # larger than the crop (odd) / smaller (padded)
def test_predict_volume_shapes(shape, rng):
    cfg = _cfg()
    m = build_from_config(cfg, 3)
    image = rng.normal(size=shape).astype(np.float32)
    label, prob = predict_volume(m, image, cfg.crop_size, cfg.image_size, batch_size=3)
    assert label.shape == shape and label.dtype == np.uint8
    assert prob.shape == (3, *shape) and prob.dtype == np.float32
    assert np.allclose(prob.sum(0), 1.0, atol=1e-5)
    assert np.array_equal(label, prob.argmax(0))


def test_single_tile_equals_direct_mosaic_prediction(rng):
    cfg = _cfg()
    m = build_from_config(cfg, 2).eval()
    image = rng.normal(size=cfg.crop_size).astype(np.float32)  # exactly one tile
    _, prob = predict_volume(m, image, cfg.crop_size, cfg.image_size, normalize=False)
    _, prob_z = predict_volume(m, 3 * image + 5, cfg.crop_size, cfg.image_size)  # z-scored first
    assert np.allclose(prob_z, predict_volume(m, zscore(image), cfg.crop_size, cfg.image_size, normalize=False)[1],
                       atol=1e-5)
    layout = make_layout(cfg.crop_size, cfg.image_size)
    with torch.no_grad():
        direct = m(stitch(torch.from_numpy(image), layout)[None, None]).softmax(1)
    assert np.allclose(prob, unstitch(direct, layout)[0].numpy(), atol=1e-6)


def test_online_labels_see_each_crop_at_the_fine_tuning_geometry(rng):
    """A V-Net crop smaller than SAM's crop is padded up to it (not enlarged into a mosaic of its own size)."""
    from sfr_teach.pipeline import online_pseudo_label_fn

    cfg = get_config("smoke")
    cfg.sam = _cfg()
    m = build_from_config(cfg.sam, 2).eval()
    crops = torch.from_numpy(rng.normal(size=(2, 1, 16, 16, 12)).astype(np.float32))  # smaller than (24, 24, 16)
    labels = online_pseudo_label_fn(cfg, m, device="cpu")(crops)
    assert labels.shape == (2, 16, 16, 12) and labels.dtype == torch.int64
    for crop, label in zip(crops[:, 0].numpy(), labels.numpy()):
        at_sam_geometry, _ = predict_volume(m, crop, cfg.sam.crop_size, cfg.sam.image_size, normalize=False)
        np.testing.assert_array_equal(label, at_sam_geometry)
    _, own_size = predict_volume(m, crops[0, 0].numpy(), (16, 16, 12), cfg.sam.image_size, normalize=False)
    _, padded = predict_volume(m, crops[0, 0].numpy(), cfg.sam.crop_size, cfg.sam.image_size, normalize=False)
    assert not np.allclose(own_size, padded, atol=1e-3)  # the geometry changes what SAM sees
