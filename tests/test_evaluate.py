"""Sliding-window inference (LA protocol and MONAI Gaussian) and the per-case metrics table."""
from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from sfr_teach.config import EvalConfig
from sfr_teach.data import Volume
from sfr_teach.evaluate import MetricsTable, evaluate_model, sliding_window_predict, window_positions, window_starts


def _pointwise(num_classes=3, seed=0):
    """A 1x1x1 conv: each voxel's output depends only on that voxel, so windows must not matter."""
    torch.manual_seed(seed)
    return nn.Conv3d(1, num_classes, 1)


def _contextual(num_classes=2, seed=0):
    """A 3x3x3 conv with zero padding: window borders change the output, so blending matters."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, num_classes, 3, padding=1))


def test_window_positions_la_protocol():
    assert window_starts(190, 112, 18) == [0, 18, 36, 54, 72, 78]
    assert window_starts(140, 112, 18) == [0, 18, 28]
    assert window_starts(88, 80, 4) == [0, 4, 8]
    assert window_starts(112, 112, 18) == [0]
    pos = window_positions((190, 140, 88), (112, 112, 80), (18, 18, 4))
    assert len(pos) == 6 * 3 * 3 and pos[0] == (0, 0, 0) and pos[1] == (0, 0, 4) and pos[-1] == (78, 28, 8)
    count = np.zeros((190, 140, 88), np.int32)
    for x, y, z in pos:
        count[x : x + 112, y : y + 112, z : z + 80] += 1
    assert count.min() >= 1 and count.sum() == len(pos) * 112 * 112 * 80  # every voxel covered
    # a volume smaller than the patch is padded (UA-MT): one window per short axis
    assert window_positions((100, 140, 70), (112, 112, 80), (18, 18, 4)) == [(0, 0, 0), (0, 18, 0), (0, 28, 0)]


@pytest.mark.parametrize("mode", ["constant", "gaussian"])
def test_pointwise_model_equals_full_volume(rng, mode):
    model = _pointwise()
    image = rng.standard_normal((40, 36, 20)).astype(np.float32)
    with torch.no_grad():
        full = torch.softmax(model(torch.from_numpy(image)[None, None]), 1)[0].numpy()
    for patch, stride, bs in (((16, 16, 8), (6, 5, 3), 1), ((48, 24, 24), (8, 8, 4), 3)):  # second: padded
        prob = sliding_window_predict(model, image, patch, stride, 3, mode=mode, batch_size=bs)
        assert prob.dtype == np.float32 and prob.shape == (3, 40, 36, 20)
        np.testing.assert_allclose(prob, full, atol=2e-6)


def test_constant_mode_equals_monai_constant(rng):
    """Our LA loop == MONAI sliding_window_inference(mode='constant') with overlap 1 - (stride + .5) / patch."""
    from monai.inferers import sliding_window_inference

    model = _contextual().eval()
    image = rng.standard_normal((50, 45, 30)).astype(np.float32)
    patch, stride = (32, 32, 24), (8, 7, 4)
    ours = sliding_window_predict(model, image, patch, stride, 2, mode="constant", batch_size=4)
    with torch.no_grad():
        theirs = sliding_window_inference(
            torch.from_numpy(image)[None, None], patch, 4, lambda x: torch.softmax(model(x), 1),
            overlap=[1 - (s + 0.5) / p for s, p in zip(stride, patch)], mode="constant",
        )[0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    gauss = sliding_window_predict(model, image, patch, stride, 2, mode="gaussian")
    assert np.abs(gauss - ours).max() > 1e-4  # different blending, same windows
    np.testing.assert_allclose(gauss.sum(0), 1.0, atol=1e-5)


def test_eval_mode_and_errors(rng):
    model = nn.Sequential(nn.Conv3d(1, 2, 1), nn.Dropout3d(0.9)).train()
    image = rng.standard_normal((20, 20, 12)).astype(np.float32)
    a = sliding_window_predict(model, image, (16, 16, 8), (4, 4, 4), 2)
    b = sliding_window_predict(model, image, (16, 16, 8), (4, 4, 4), 2)
    assert np.array_equal(a, b) and model.training  # dropout off during inference, flag restored
    with pytest.raises(ValueError, match="returned 2 channels"):
        sliding_window_predict(model, image, (16, 16, 8), (4, 4, 4), 3)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="model.to"):
            sliding_window_predict(model, image, (16, 16, 8), (4, 4, 4), 2, device="meta")
    with pytest.raises(ValueError, match=r"\(H, W, D\)"):
        sliding_window_predict(model, image[None], (16, 16, 8), (4, 4, 4), 2)


def _threshold_model():
    """logits (0, 10 x): predicts class 1 exactly where the image is positive."""
    m = nn.Conv3d(1, 2, 1)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([0.0, 10.0]).view(2, 1, 1, 1, 1))
        m.bias.zero_()
    return m


def test_evaluate_model_table(tmp_path):
    label = np.zeros((30, 28, 20), np.uint8)
    label[8:20, 6:18, 5:15] = 1
    perfect = Volume("perfect", np.where(label > 0, 1.0, -1.0).astype(np.float32), label, (0.625, 0.625, 1.25))
    shifted_img = np.roll(perfect.image, 2, axis=0)
    shifted = Volume("shifted", shifted_img, label, (0.625, 0.625, 1.25))
    missed = Volume("missed", -np.ones_like(perfect.image), label, (0.625, 0.625, 1.25))
    cfg = EvalConfig(patch_size=(16, 16, 16), stride=(8, 8, 8), mode="constant", batch_size=2)
    table = evaluate_model(_threshold_model(), [perfect, shifted, missed], cfg, 2, out_dir=tmp_path, save_predictions=True)
    assert isinstance(table, MetricsTable) and len(table) == 3
    r = {row["name"]: row for row in table.rows}
    assert r["perfect"]["dice"] == 1.0 and r["perfect"]["hd95"] == 0.0 and not r["perfect"]["pred_empty"]
    assert r["shifted"]["dice"] == pytest.approx(2 * 10 / 24)  # 12 rows shifted by 2: overlap 10/12
    assert r["shifted"]["hd95"] == pytest.approx(2 * 0.625)
    assert r["missed"]["pred_empty"] and r["missed"]["dice"] == 0.0 and math.isnan(r["missed"]["hd95"])
    s = table.summary
    assert s["dice"]["mean"] == pytest.approx((1 + 20 / 24) / 3)
    assert s["hd95"]["n"] == 2 and s["hd95"]["excluded"] == 1 and s["pred_empty"]["count"] == 1
    text = table.format()
    assert "missed" in text and "pred_empty" in text and "(1 excluded)" in text and "61.11 ± " in text
    doc = json.loads(table.to_json(tmp_path / "m.json").read_text())
    assert doc["cases"][2]["hd95"] is None and doc["summary"]["dice"]["n"] == 3 and doc["info"]["mode"] == "constant"
    lines = table.to_csv(tmp_path / "m.csv").read_text().splitlines()
    assert lines[0].startswith("name,dice_1") and len(lines) == 4 and "nan" in lines[3]
    nii = nib.load(str(tmp_path / "predictions" / "shifted.nii.gz"))
    assert nii.get_data_dtype() == np.uint8 and nii.header.get_zooms() == (0.625, 0.625, 1.25)
    assert np.array_equal(np.asarray(nii.dataobj), (shifted_img > 0).astype(np.uint8))
    with pytest.raises(ValueError, match="has no label"):
        evaluate_model(_threshold_model(), [Volume("u", perfect.image)], cfg, 2)
