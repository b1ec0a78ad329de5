"""The re-training loop: the SFR term plugs into every method, batches align, seeds repeat, resume is exact."""
import json

import numpy as np
import pytest
import torch

from sfr_teach.data import make_phantom
from sfr_teach.ssl.batches import CropBatcher
from sfr_teach.ssl.trainer import load_student, prepare_samples, train

from test_ssl_methods import ALL, tiny_cfg


@pytest.fixture(scope="module")
def vols():
    return [make_phantom(10 + i, (40, 40, 36), kind="multi", num_classes=3) for i in range(3)]


def threshold_labels(images):
    """A simple numpy 'pseudo-labeller': 3 intensity bands -> classes {0, 1, 2}."""
    x = np.asarray(images)[:, 0]
    return np.digitize(x, [0.5, 1.5]).astype(np.int64)


@pytest.mark.parametrize("method", ALL)
def test_every_method_accepts_the_sfr_term(method, vols):
    lab = vols[:1]
    unl = [(v.image, threshold_labels(v.image[None, None])[0]) for v in vols[1:]]
    pre = train(method, lab, unl, tiny_cfg(4, **{"retrain.sfr": True}), 3, progress=False)
    assert all(h["w_sfr"] == 1.0 and np.isfinite(h["loss_sfr"]) and h["loss_sfr"] > 0 for h in pre.history)
    seen = []

    def fn(images):
        seen.append(tuple(images.shape))
        return threshold_labels(images.cpu().numpy())

    cfg = tiny_cfg(4, **{"retrain.sfr": True, "retrain.pseudo_labels": "online"})
    onl = train(method, lab, [v.image for v in vols[1:]], cfg, 3, progress=False, pseudo_label_fn=fn)
    assert seen == [(2, 1, 32, 32, 32)] * 4
    # the online labeller is the same function as the precomputed arrays: same SFR loss, same crops
    assert [h["loss_sfr"] for h in onl.history] == pytest.approx([h["loss_sfr"] for h in pre.history], rel=1e-5)


def test_sfr_term_changes_training_and_supervised_method_uses_it(vols):
    unl = [(v.image, v.label) for v in vols[1:]]
    cfg = tiny_cfg(4)
    plain = train("supervised", vols[:1], unl, cfg, 3, progress=False)
    cfg = tiny_cfg(4, **{"retrain.sfr": True, "retrain.sfr_rampup": 2})
    with_sfr = train("supervised", vols[:1], unl, cfg, 3, progress=False)
    assert "loss_sfr" not in plain.history[0]
    assert [h["w_sfr"] for h in with_sfr.history] == pytest.approx([np.exp(-5), np.exp(-1.25), 1.0, 1.0])
    assert plain.history[-1]["loss_sup"] != with_sfr.history[-1]["loss_sup"]


def test_precomputed_pseudo_labels_are_cropped_with_the_image():
    img = np.random.default_rng(0).normal(size=(40, 36, 30)).astype(np.float32)
    lab, unl = prepare_samples([(img, (img > 0).astype(np.uint8))], [(img, (img > 1).astype(np.uint8))], 2)
    b = CropBatcher(lab, unl, (16, 16, 16), 2, 2, seed=3)
    for it in range(5):
        batch = b.batch(it)
        x = batch["image"][:, 0]
        assert torch.equal(batch["label"], (x[:2] > 0).long())
        assert torch.equal(batch["pseudo"], (x[2:] > 1).long())
    first = b.batch(2)
    assert torch.equal(CropBatcher(lab, unl, (16, 16, 16), 2, 2, seed=3).batch(2)["image"], first["image"])


def test_seeded_runs_repeat_exactly(vols):
    unl = [v.image for v in vols[1:]]
    a = train("ua_mt", vols[:1], unl, tiny_cfg(6), 3, progress=False, seed=7)
    b = train("ua_mt", vols[:1], unl, tiny_cfg(6), 3, progress=False, seed=7)
    c = train("ua_mt", vols[:1], unl, tiny_cfg(6), 3, progress=False, seed=8)
    la, lb = [h["loss"] for h in a.history], [h["loss"] for h in b.history]
    assert la == lb and la != [h["loss"] for h in c.history]


@pytest.mark.parametrize("method", ["self_training", "magicnet"])
def test_resume_continues_exactly(method, vols, tmp_path):
    unl = [v.image for v in vols[1:]]
    cfg = tiny_cfg(10, **{"retrain.ckpt_every": 4, "retrain.log_every": 1})
    full = train(method, vols[:1], unl, cfg, 3, out_dir=tmp_path / "a", progress=False, seed=3)
    # interrupted after 6 iterations: the last checkpoint is at 4; iterations 4-5 are redone
    train(method, vols[:1], unl, cfg, 3, out_dir=tmp_path / "b", progress=False, seed=3, stop_at=6)
    rows = [json.loads(s) for s in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows] == list(range(6))
    torch.manual_seed(999)  # the resumed run must restore every RNG itself
    resumed = train(method, vols[:1], unl, cfg, 3, out_dir=tmp_path / "b", progress=False, seed=3)
    assert [h["iter"] for h in resumed.history] == list(range(10))
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    csv_rows = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert len(csv_rows) == 11 and csv_rows[0].startswith("iter,lr,loss")
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    net = load_student(tmp_path / "b" / "model.pt", num_classes=3, n_filters=4)
    assert torch.equal(net.out_conv.weight, full.model.out_conv.weight)


def test_lr_steps_down(vols):
    res = train("supervised", vols[:1], [], tiny_cfg(5, **{"retrain.lr_step": 2}), 3, progress=False)
    assert [h["lr"] for h in res.history] == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.0001])


def test_bad_inputs_give_clear_errors(vols):
    img = vols[0].image
    with pytest.raises(ValueError, match="labelled set is empty"):
        train("supervised", [], [img], tiny_cfg(1), 3, progress=False)
    with pytest.raises(ValueError, match="needs unlabelled volumes"):
        train("mean_teacher", vols[:1], [], tiny_cfg(1), 3, progress=False)
    with pytest.raises(ValueError, match="have none"):
        train("mean_teacher", vols[:1], [img], tiny_cfg(1, **{"retrain.sfr": True}), 3, progress=False)
    with pytest.raises(ValueError, match="needs pseudo_label_fn"):
        cfg = tiny_cfg(1, **{"retrain.sfr": True, "retrain.pseudo_labels": "online"})
        train("mean_teacher", vols[:1], [img], cfg, 3, progress=False)
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        train("supervised", vols[:1], [], tiny_cfg(1), 2, progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        train("fixmatch", vols[:1], [img], tiny_cfg(1), 3, progress=False)
    with pytest.raises(ValueError, match="divisible by 16"):
        train("supervised", vols[:1], [], tiny_cfg(1, **{"retrain.patch_size": (32, 32, 24)}), 3, progress=False)


def test_prepare_samples_never_uses_an_unlabelled_volumes_own_label(vols):
    pseudo = np.zeros(vols[2].shape, np.uint8)
    lab, unl = prepare_samples([vols[0]], [vols[1], (vols[2], pseudo), vols[1].image], 3)
    assert set(lab[0]) == {"image", "label"} and lab[0]["label"].shape == (1, *vols[0].shape)
    assert [set(u) for u in unl] == [{"image"}, {"image", "pseudo"}, {"image"}]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", ALL)
def test_trains_on_cuda_with_bf16_autocast(method, vols):
    unl = [(v.image, v.label) for v in vols[1:]]
    res = train(method, vols[:1], unl, tiny_cfg(3, **{"retrain.sfr": True}), 3, device="cuda", progress=False)
    assert next(res.model.parameters()).is_cuda
    assert all(np.isfinite(h["loss"]) and np.isfinite(h["loss_sfr"]) for h in res.history)
