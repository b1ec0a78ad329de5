"""Pseudo-labels: confidence on known cases, files on disk, reload, SFR+ selection and round."""
from __future__ import annotations

import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest

from sfr_teach.config import get_config
from sfr_teach.sam import build_from_config
from sfr_teach.sam.finetune import finetune
from sfr_teach.sam.pseudo import (PseudoLabel, confidence, dice_score, generate_pseudo_labels, largest_component,
                                  load_pseudo_labels, sfr_plus_round, split_by_confidence)


def test_confidence_known_values():
    prob = np.zeros((2, 4, 4, 4), np.float32)
    prob[0] = 1.0
    prob[:, 0, 0, 0] = (0.4, 0.6)  # one uncertain foreground voxel
    assert confidence(prob) == pytest.approx((63 + 0.6) / 64)
    # band of 1 voxel around the single foreground voxel: itself + 3 face neighbours inside the volume
    assert confidence(prob, "foreground_band", band=1) == pytest.approx((0.6 + 3) / 4)
    assert confidence(np.stack([np.ones((3, 3, 3)), np.zeros((3, 3, 3))]), "foreground_band") == 0.0
    with pytest.raises(ValueError, match="mean_max"):
        confidence(prob, "nope")
    assert dice_score(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), 2) == pytest.approx(2 / 3)


def test_largest_component_per_class():
    a = np.zeros((6, 6, 6), np.uint8)
    a[0, 0, 0] = 1  # stray voxel
    a[2:4, 2:4, 2:4] = 1  # 8-voxel blob
    a[5, 5, 0] = 2
    a[5, 0, 5] = 2  # class 2: two single voxels, one kept
    b = largest_component(a)
    assert (b == 1).sum() == 8 and b[0, 0, 0] == 0 and (b == 2).sum() == 1


def test_split_by_confidence():
    pls = [PseudoLabel(str(i), np.zeros(1), np.zeros(1), c, 0.1) for i, c in enumerate([0.99, 0.985, 0.5])]
    high, low = split_by_confidence(pls, 0.985)
    assert [p.name for p in high] == ["0", "1"] and [p.name for p in low] == ["2"]


class _Vol:
    def __init__(self, name, image, label, spacing=(1.0, 1.0, 2.0)):
        self.name, self.image, self.label, self.spacing = name, image, label, spacing


def _blob(rng, shape=(28, 26, 14)):
    g = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    c = rng.uniform(0.4, 0.6, 3) * np.array(shape)
    lab = (np.linalg.norm((g - c) / (np.array(shape) / 4), axis=-1) < 1).astype(np.uint8)
    return (lab + rng.normal(0, 0.3, shape)).astype(np.float32), lab


def test_generate_save_reload_and_sfr_plus_round(tmp_path, rng):
    cfg = dataclasses.replace(get_config("smoke").sam, image_size=128, crop_size=(24, 24, 16), tiny_embed_dim=32,
                              tiny_depth=2, tiny_heads=2, tiny_window_size=4, steps=40, warmup=3, lr=1e-3)
    vols = [_Vol(f"case{i}", *_blob(rng)) for i in range(3)]
    m = build_from_config(cfg, 2)
    finetune(m, vols[:1], cfg, None, progress=False)
    pls = generate_pseudo_labels(m, vols[1:], cfg, tmp_path / "pl", progress=False)
    assert [p.name for p in pls] == ["case1", "case2"]
    for p, v in zip(pls, vols[1:]):
        assert p.label.shape == v.image.shape and p.prob.shape == (2, *v.image.shape)
        assert 0.5 <= p.confidence <= 1.0 and p.dice is not None
    assert np.mean([p.dice for p in pls]) > 0.5, [p.dice for p in pls]  # easy blobs: SAM must find them
    nii = nib.load(str(tmp_path / "pl" / "case1.nii.gz"))
    assert np.array_equal(np.asarray(nii.dataobj), pls[0].label) and nii.header.get_zooms() == (1.0, 1.0, 2.0)
    rows = json.loads((tmp_path / "pl" / "summary.json").read_text())
    assert [r["name"] for r in rows] == ["case1", "case2"]
    assert "confidence" in (tmp_path / "pl" / "summary.csv").read_text().splitlines()[0]
    back = load_pseudo_labels(tmp_path / "pl")
    assert np.array_equal(back[1].label, pls[1].label) and back[1].confidence == pytest.approx(pls[1].confidence)
    assert np.allclose(back[1].prob, pls[1].prob, atol=1e-3)  # stored as float16
    # SFR+: threshold between the two confidences -> one high (joins fine-tuning), one low (re-predicted)
    cfg2 = dataclasses.replace(cfg, tau=float(np.mean([p.confidence for p in pls])), sfr_plus_steps=3)
    res = sfr_plus_round(m, vols[:1], pls, cfg2, vols[1:], tmp_path / "plus", progress=False)
    assert len(res["high"]) == 1 and len(res["low"]) == 1 and len(res["history"]) == 3
    assert res["pseudo_labels"][0].name == res["low"][0].name
    assert (tmp_path / "plus" / "pseudo" / f"{res['low'][0].name}.npz").is_file()
