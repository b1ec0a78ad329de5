"""The one sliding-window path: symmetric padding, the LA protocol loop, SAM tiles through the same path."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from monai.transforms import SpatialPad
from torch import nn

from sfr_teach.config import get_config
from sfr_teach.evaluate import sliding_window_predict
from sfr_teach.padding import center_crop, pad_to, symmetric_padding
from sfr_teach.sam import build_from_config
from sfr_teach.sam.predict import predict_volume
from sfr_teach.stitching import make_layout, stitch, unstitch


def test_symmetric_padding_matches_monai_and_round_trips(rng):
    assert symmetric_padding((100, 140, 75), (112, 112, 80)) == [(6, 6), (0, 0), (2, 3)]
    x = rng.standard_normal((2, 9, 14, 5)).astype(np.float32)
    padded = pad_to(x, (12, 12, 8), value=-1)
    assert padded.shape == (2, 12, 14, 8)
    monai = SpatialPad((12, 12, 8), method="symmetric", value=-1)(torch.from_numpy(x))
    np.testing.assert_array_equal(padded, np.asarray(monai))
    np.testing.assert_array_equal(center_crop(padded, x.shape[1:]), x)
    t = pad_to(torch.from_numpy(x), (12, 12, 8), value=-1)  # torch path, same numbers
    assert torch.equal(t, torch.from_numpy(padded)) and pad_to(x, (4, 4, 4)) is x


def _ua_mt_reference(model, image, patch, stride, num_classes):
    """UA-MT's ``test_single_case`` written out: pad, loop x/y/z windows, add softmax + count, divide, crop."""
    w, h, d = image.shape
    pads = [max(p - s, 0) for s, p in zip(image.shape, patch)]
    lo = [p // 2 for p in pads]
    image = np.pad(image, [(p // 2, p - p // 2) for p in pads])
    ww, hh, dd = image.shape
    sx, sy, sz = (math.ceil((n - p) / s) + 1 for n, p, s in zip(image.shape, patch, stride))
    score = np.zeros((num_classes, ww, hh, dd), np.float32)
    cnt = np.zeros((ww, hh, dd), np.float32)
    for x in range(sx):
        xs = min(stride[0] * x, ww - patch[0])
        for y in range(sy):
            ys = min(stride[1] * y, hh - patch[1])
            for z in range(sz):
                zs = min(stride[2] * z, dd - patch[2])
                tile = image[xs : xs + patch[0], ys : ys + patch[1], zs : zs + patch[2]]
                with torch.no_grad():
                    y1 = torch.softmax(model(torch.from_numpy(np.ascontiguousarray(tile))[None, None]), 1)[0].numpy()
                score[:, xs : xs + patch[0], ys : ys + patch[1], zs : zs + patch[2]] += y1
                cnt[xs : xs + patch[0], ys : ys + patch[1], zs : zs + patch[2]] += 1
    score /= cnt
    return score[:, lo[0] : lo[0] + w, lo[1] : lo[1] + h, lo[2] : lo[2] + d]


def test_la_protocol_equals_the_reference_loop(rng):
    """112x112x80 windows, stride 18/18/4, averaged softmax, on an LA-like volume (D shorter than 80: padded)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv3d(2, 2, 3, padding=1)).eval()
    image = rng.standard_normal((134, 121, 76)).astype(np.float32)
    ref = _ua_mt_reference(model, image, (112, 112, 80), (18, 18, 4), 2)
    ours = sliding_window_predict(model, image, (112, 112, 80), (18, 18, 4), 2, batch_size=4)
    np.testing.assert_allclose(ours, ref, atol=2e-6)


def test_sam_tiles_go_through_the_same_path(rng):
    """predict_volume == the tile loop written out (stitch each tile, SAM, unstitch, average)."""
    cfg = dataclasses.replace(get_config("smoke").sam, image_size=128, crop_size=(24, 24, 16), tiny_embed_dim=32,
                              tiny_depth=2, tiny_heads=2, tiny_window_size=4)
    m = build_from_config(cfg, 2).eval()
    image = rng.standard_normal((30, 24, 20)).astype(np.float32)
    _, prob = predict_volume(m, image, cfg.crop_size, cfg.image_size, batch_size=3, normalize=False)
    layout = make_layout(cfg.crop_size, cfg.image_size)

    def sam(tile):
        with torch.no_grad():
            return unstitch(m(stitch(torch.from_numpy(tile)[None, None].float()[:, 0], layout)[:, None]).softmax(1),
                            layout)[0].numpy()

    ref = np.zeros((2, *image.shape), np.float32)
    cnt = np.zeros(image.shape, np.float32)
    for i in (0, 6):  # half-overlapping tiles (stride 12), the last flush with the end
        for j in (0,):
            for k in (0, 4):
                box = np.s_[i : i + 24, j : j + 24, k : k + 16]
                ref[(slice(None), *box)] += sam(np.ascontiguousarray(image[box]))
                cnt[box] += 1
    np.testing.assert_allclose(prob, ref / cnt, atol=2e-5)


@pytest.mark.parametrize("mode", ["constant", "gaussian"])
def test_batch_size_does_not_change_the_result(rng, mode):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv3d(1, 3, 3, padding=1), nn.Softplus(), nn.Conv3d(3, 3, 3, padding=1))
    image = rng.standard_normal((30, 26, 18)).astype(np.float32)
    a = sliding_window_predict(model, image, (16, 16, 8), (5, 6, 3), 3, mode=mode, batch_size=1)
    b = sliding_window_predict(model, image, (16, 16, 8), (5, 6, 3), 3, mode=mode, batch_size=7)
    np.testing.assert_allclose(a, b, atol=1e-6)
