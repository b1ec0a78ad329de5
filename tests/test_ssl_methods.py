"""Every method trains: its supervised loss falls on a synthetic multi-class phantom and on real LA crops."""
import h5py
import numpy as np
import pytest

from sfr_teach.config import get_config
from sfr_teach.data import make_phantom
from sfr_teach.ssl import METHODS
from sfr_teach.ssl.trainer import train

ALL = ["supervised", "self_training", "mean_teacher", "ua_mt", "ac_mt", "magicnet"]


def tiny_cfg(steps=30, **kw):
    over = {
        "retrain.patch_size": (32, 32, 32),
        "retrain.n_filters": 4,
        "retrain.steps": steps,
        "retrain.log_every": 1,
        "retrain.magicnet_cube": 2,
        "retrain.uamt_passes": 2,
        "retrain.consistency_rampup": 0.0,  # full unsupervised weight at once: the terms really act
        **kw,
    }
    return get_config("smoke", over).retrain


def falls(history, key="loss_sup", window=6, factor=0.85):
    v = [h[key] for h in history]
    first, last = np.mean(v[:window]), np.mean(v[-window:])
    return last < factor * first, (first, last)


def test_registry_names_all_methods():
    assert list(METHODS) == ALL


@pytest.fixture(scope="module")
def phantoms():
    vols = [make_phantom(i, (40, 40, 36), kind="multi", num_classes=3) for i in range(3)]
    return vols[:1], [v.image for v in vols[1:]]  # the unlabelled volumes' labels are not given


@pytest.mark.parametrize("method", ALL)
def test_supervised_loss_falls_on_multiclass_phantom(method, phantoms):
    lab, unl = phantoms
    res = train(method, lab, unl, tiny_cfg(), num_classes=3, progress=False, seed=1)
    ok, (first, last) = falls(res.history)
    assert ok, f"{method}: loss_sup {first:.3f} -> {last:.3f}"
    assert len(res.history) == 30 and all(np.isfinite(h["loss"]) for h in res.history)


def _la_crops(la_dir, n=3):
    """n real LA volumes, each cropped (48 x 48 x 40) around the atrium's centre."""
    names = (la_dir / "train.list").read_text().split()[:n]
    out = []
    for name in names:
        with h5py.File(la_dir / "2018LA_Seg_Training Set" / name / "mri_norm2.h5", "r") as f:
            img, lbl = f["image"][:], f["label"][:]
        c = np.round(np.argwhere(lbl > 0).mean(0)).astype(int)
        sl = tuple(slice(max(ci - s // 2, 0), max(ci - s // 2, 0) + s) for ci, s in zip(c, (48, 48, 40)))
        out.append((img[sl].astype(np.float32), lbl[sl]))
    return out


@pytest.fixture(scope="module")
def la_crops(la_dir):
    return _la_crops(la_dir)


@pytest.mark.parametrize("method", ALL)
def test_supervised_loss_falls_on_real_la_crops(method, la_crops):
    res = train(method, la_crops[:1], [img for img, _ in la_crops[1:]], tiny_cfg(steps=24), 2, progress=False)
    ok, (first, last) = falls(res.history, window=5, factor=0.9)
    assert ok, f"{method}: loss_sup {first:.3f} -> {last:.3f}"
