"""Training transforms (MONAI dictionary transforms) and shape helpers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sfr_teach.data import Volume, center_crop_or_pad, to_channel_first, train_transform, volume_to_sample

KEYS = ("image", "label", "pseudo", "prob")


def _sample(rng, shape=(40, 36, 20)):
    image = rng.standard_normal((1, *shape)).astype(np.float32)
    label = (image > 0.7).astype(np.uint8)
    pseudo = (image > 0.2).astype(np.uint8)
    prob = np.concatenate([1 - label, label]).astype(np.float32)
    return {"image": image, "label": label, "pseudo": pseudo, "prob": prob}


def test_outputs_plain_tensors_of_patch_size(rng):
    t = train_transform((32, 32, 16), keys=KEYS, label_keys=("label", "pseudo"))
    out = t(_sample(rng))
    for k in KEYS:
        assert type(out[k]) is torch.Tensor, k  # not a MetaTensor
    assert out["image"].shape == (1, 32, 32, 16) and out["prob"].shape == (2, 32, 32, 16)
    assert out["image"].dtype == torch.float32 and out["prob"].dtype == torch.float32
    assert out["label"].dtype == torch.int64 and out["pseudo"].dtype == torch.int64


def test_all_keys_stay_aligned(rng):
    t = train_transform((24, 24, 12), keys=KEYS, label_keys=("label", "pseudo"))
    t.set_random_state(0)
    for _ in range(10):
        out = t(_sample(rng))
        img = out["image"][0]
        assert torch.equal(out["label"][0], (img > 0.7).long())
        assert torch.equal(out["pseudo"][0], (img > 0.2).long())
        assert torch.equal(out["prob"][1], (img > 0.7).float())
        assert torch.equal(out["prob"][0] + out["prob"][1], torch.ones_like(img))


def test_set_random_state_is_repeatable(rng):
    sample = _sample(rng)
    t = train_transform((24, 24, 12))
    t.set_random_state(5)
    a = [t(sample)["image"] for _ in range(3)]
    t.set_random_state(5)
    b = [t(sample)["image"] for _ in range(3)]
    t.set_random_state(6)
    c = [t(sample)["image"] for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert not torch.equal(a[0], a[1])  # successive draws differ


def test_rotations_and_flips_cover_the_axial_dihedral_group(rng):
    """With patch == volume size there is no crop: each output is one of the 8 rot90/flip variants of
    the (H, W) plane, all 8 appear, and the slicing axis D is never touched."""
    image = rng.standard_normal((1, 16, 16, 6)).astype(np.float32)
    variants = []
    for k in range(4):
        r = np.rot90(image, k, axes=(1, 2))
        variants += [r, r[:, ::-1]]
    t = train_transform((16, 16, 6), keys=("image",), label_keys=())
    t.set_random_state(0)
    seen = set()
    for _ in range(80):
        out = t({"image": image})["image"].numpy()
        hits = [i for i, v in enumerate(variants) if np.array_equal(out, v)]
        assert hits, "output is not a rotation/flip of the axial plane"
        seen.add(hits[0])
    assert len(seen) == 8
    plain = train_transform((16, 16, 6), keys=("image",), label_keys=(), rotate_flip=False)
    assert np.array_equal(plain({"image": image})["image"].numpy(), image)


def test_pads_small_volumes_with_zeros(rng):
    s = _sample(rng, shape=(10, 12, 6))
    t = train_transform((16, 16, 8), keys=("image", "label"))
    out = t({"image": s["image"], "label": s["label"] + 1})  # labels 1..2 inside, so padding (0) is visible
    assert out["image"].shape == (1, 16, 16, 8)
    assert (out["label"] == 0).sum() == 16 * 16 * 8 - 10 * 12 * 6
    assert torch.all(out["image"][out["label"] == 0] == 0)


def test_non_square_patch_and_missing_keys(rng):
    t = train_transform((32, 20, 16), keys=KEYS, label_keys=("label", "pseudo"))
    s = _sample(rng)
    for seed in range(6):
        t.set_random_state(seed)
        out = t(s)
        assert out["image"].shape == (1, 32, 20, 16) and out["label"].shape == (1, 32, 20, 16)
    unlabelled = t({"image": s["image"]})  # the same transform serves unlabelled samples
    assert set(unlabelled) == {"image"} and unlabelled["image"].shape == (1, 32, 20, 16)
    with pytest.raises(ValueError, match="patch_size"):
        train_transform((32, 32))


def test_center_crop_or_pad():
    a = np.arange(6 * 5 * 4).reshape(6, 5, 4)
    out = center_crop_or_pad(a, (4, 7, 4))
    assert out.shape == (4, 7, 4)
    np.testing.assert_array_equal(out[:, 1:6, :], a[1:5])
    assert np.all(out[:, 0] == 0) and np.all(out[:, 6] == 0)
    batch = np.stack([a, a + 1])  # leading axes are kept
    assert center_crop_or_pad(batch, (2, 2, 2)).shape == (2, 2, 2, 2)
    np.testing.assert_array_equal(center_crop_or_pad(a, a.shape), a)
    with pytest.raises(ValueError):
        center_crop_or_pad(a, (2, 2))


def test_channel_first_helpers():
    vol = Volume("v", np.zeros((4, 5, 6), np.float32), np.ones((4, 5, 6), np.uint8))
    s = volume_to_sample(vol, pseudo=np.ones((4, 5, 6), np.uint8), prob=np.zeros((2, 4, 5, 6), np.float32))
    assert {k: v.shape for k, v in s.items()} == {
        "image": (1, 4, 5, 6), "label": (1, 4, 5, 6), "pseudo": (1, 4, 5, 6), "prob": (2, 4, 5, 6)
    }
    assert "label" not in volume_to_sample(Volume("u", np.zeros((4, 5, 6), np.float32)))
    assert to_channel_first(np.zeros((2, 3, 4))).shape == (1, 2, 3, 4)
    with pytest.raises(ValueError):
        to_channel_first(np.zeros((2, 3)))


def test_crop_around_label_centres_on_the_structure():
    from sfr_teach.data import Volume, crop_around_label

    label = np.zeros((40, 30, 20), np.uint8)
    label[30:36, 4:8, 15:19] = 1  # a box near a corner
    image = np.arange(label.size, dtype=np.float32).reshape(label.shape)
    img, lab = crop_around_label(Volume("v", image, label), (16, 16, 8))
    assert img.shape == lab.shape == (16, 16, 8)
    assert lab.sum() == label.sum()  # the whole structure is inside the crop
    # the box was shifted to stay inside the volume: its last row is the volume's last row
    np.testing.assert_array_equal(img, image[24:40, 0:16, 12:20])
    # no label: the centre of the volume; an axis shorter than the crop is kept whole
    img2, lab2 = crop_around_label(Volume("u", image, None), (16, 16, 32))
    assert lab2 is None and img2.shape == (16, 16, 20)
    np.testing.assert_array_equal(img2, image[12:28, 7:23, :])
