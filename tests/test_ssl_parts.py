"""Pieces of the semi-supervised methods checked against hand computations."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from sfr_teach.losses import ce_dice
from sfr_teach.ssl.ac_mt import acmt_tau
from sfr_teach.ssl.base import EMATeacher, teacher_noise
from sfr_teach.ssl.magicnet import (
    CubePositionHead,
    cross_image_partition,
    cross_image_recover,
    from_cubes,
    to_cubes,
    within_image_partition,
    within_image_recover,
)
from sfr_teach.ssl.ramps import consistency_weight, linear_ramp, sigmoid_rampup
from sfr_teach.ssl.sfr_term import SFRTerm
from sfr_teach.ssl.ua_mt import masked_mean, uamt_threshold


def test_sigmoid_rampup_and_consistency_weight():
    assert sigmoid_rampup(0, 40) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(20, 40) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(40, 40) == 1.0 and sigmoid_rampup(99, 40) == 1.0
    assert sigmoid_rampup(7, 0) == 1.0
    # LA protocol: t = iter // 150, L = 40, weight 0.1
    assert consistency_weight(3000, 0.1, 40) == pytest.approx(0.1 * math.exp(-5 * 0.5**2))
    assert consistency_weight(3149, 0.1, 40) == consistency_weight(3000, 0.1, 40)
    assert consistency_weight(6000, 0.1, 40) == pytest.approx(0.1)
    assert linear_ramp(5, 10, 0.0, 2.0) == 1.0 and linear_ramp(50, 10, 0.0, 2.0) == 2.0


def test_uamt_threshold_and_acmt_tau_schedules():
    assert uamt_threshold(0, 6000) == pytest.approx((0.75 + 0.25 * math.exp(-5)) * math.log(2))
    assert uamt_threshold(3000, 6000) == pytest.approx((0.75 + 0.25 * math.exp(-1.25)) * math.log(2))
    assert uamt_threshold(6000, 6000) == pytest.approx(math.log(2))
    assert uamt_threshold(6000, 6000, num_classes=5) == pytest.approx(math.log(5))
    assert acmt_tau(0, 6000) == pytest.approx(0.75 + 0.2 * math.exp(-5))
    assert acmt_tau(6000, 6000) == pytest.approx(0.95)
    taus = [acmt_tau(i, 100) for i in range(0, 101, 10)]
    assert all(a < b for a, b in zip(taus, taus[1:]))


def test_ema_teacher_matches_hand_computation():
    torch.manual_seed(0)
    student = nn.Linear(3, 2)
    ema = EMATeacher(student, decay=0.99)
    assert not any(p.requires_grad for p in ema.model.parameters())
    t0 = ema.model.weight.clone()
    with torch.no_grad():
        student.weight.add_(1.0)
    ema.update(student, step=0)  # alpha = min(0, 0.99) = 0: the teacher becomes the student
    assert torch.allclose(ema.model.weight, student.weight)
    with torch.no_grad():
        student.weight.add_(1.0)
    before = ema.model.weight.clone()
    ema.update(student, step=5)  # alpha = min(1 - 1/6, 0.99) = 5/6
    assert ema.alpha(5) == pytest.approx(5 / 6) and ema.alpha(10_000) == 0.99
    assert torch.allclose(ema.model.weight, 5 / 6 * before + 1 / 6 * student.weight)
    assert not torch.allclose(t0, ema.model.weight)


def test_teacher_noise_is_clamped():
    n = teacher_noise(torch.zeros(20000))
    assert n.abs().max() <= 0.2 and 0.08 < n.std() < 0.1  # clamping trims the 0.1 std a little


def test_sfr_term_weight_and_value():
    logits = torch.randn(2, 3, 4, 4, 4)
    pseudo = torch.randint(0, 3, (2, 4, 4, 4))
    const = SFRTerm(weight=1.0, rampup=0)
    loss, raw, w = const(logits, pseudo, it=0)
    assert w == 1.0 and loss.item() == pytest.approx(ce_dice(logits, pseudo).item()) and raw == pytest.approx(loss.item())
    ramped = SFRTerm(weight=2.0, rampup=100)
    assert ramped.weight_at(50) == pytest.approx(2.0 * math.exp(-1.25)) and ramped.weight_at(100) == 2.0
    with pytest.raises(ValueError, match="unlabeled_logits"):
        const(None, pseudo, 0)


def test_masked_mean():
    dist = torch.arange(16.0).reshape(1, 2, 2, 2, 2)
    mask = torch.zeros(1, 1, 2, 2, 2)
    assert masked_mean(dist, mask).item() == 0.0
    mask[0, 0, 0, 0, 0] = 1
    assert masked_mean(dist, mask).item() == pytest.approx((0 + 8) / 2)


@pytest.mark.parametrize("n", [2, 3])
def test_magic_cube_partition_recover_is_exact_inverse(n):
    g = torch.Generator().manual_seed(n)
    b, k = 4, n**3
    x = torch.randn(b, 2, 6 * n, 4 * n, 2 * n, generator=g)
    assert torch.equal(from_cubes(to_cubes(x, n), n), x)
    perm = torch.stack([torch.randperm(b, generator=g) for _ in range(k)])
    mixed = cross_image_partition(x, n, perm)
    assert torch.equal(cross_image_recover(mixed, n, perm), x)
    cubes, mcubes = to_cubes(x, n), to_cubes(mixed, n)
    for kk in range(k):  # cube kk of mixed image bb comes from image perm[kk, bb], same position
        for bb in range(b):
            assert torch.equal(mcubes[bb, kk], cubes[perm[kk, bb], kk])
    sigma = torch.stack([torch.randperm(k, generator=g) for _ in range(b)])
    shuf = within_image_partition(x, n, sigma)
    assert torch.equal(to_cubes(shuf, n)[1, 0], cubes[1, sigma[1, 0]])
    assert torch.equal(within_image_recover(shuf, n, sigma), x)
    labels = torch.randint(0, 5, (b, 6 * n, 4 * n, 2 * n), generator=g)  # (B, H, W, D) labels too
    assert torch.equal(cross_image_recover(cross_image_partition(labels, n, perm), n, perm), labels)
    assert torch.equal(within_image_recover(within_image_partition(labels, n, sigma), n, sigma), labels)
    with pytest.raises(ValueError, match="not divisible"):
        to_cubes(torch.zeros(1, 1, 7, 6, 6), n)


def test_cube_position_head_shape():
    head = CubePositionHead(channels=64, n=3)
    assert head(torch.randn(2, 64, 6, 6, 6)).shape == (2, 27, 27)
    assert np.prod(head.fc.weight.shape) == 64 * 27


class _SignTeacher(nn.Module):
    """Logits (0, 20 tanh(10 x)): certain wherever |x| >> the teacher noise (0.2), a coin flip at x = 0."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), 20 * torch.tanh(10 * x)], 1)


def test_uamt_batched_passes_keep_items_apart():
    from sfr_teach.config import get_config
    from sfr_teach.ssl.ua_mt import UAMT

    cfg = get_config("smoke").retrain
    cfg.uamt_passes = 6
    method = UAMT(_SignTeacher(), cfg, 2)
    x = torch.stack([torch.full((1, 4, 4, 2), 5.0), torch.full((1, 4, 4, 2), -5.0), torch.zeros(1, 4, 4, 2)])
    torch.manual_seed(0)
    u = method.uncertainty(x)  # (3, 1, 4, 4, 2); T passes of all three items in one forward
    assert u.shape == (3, 1, 4, 4, 2)
    # items 0 and 1 are certain in every pass (opposite classes): averaging across items would give ln 2
    assert float(u[:2].max()) < 1e-3
    # item 2: each pass draws its own noise, so the mean softmax over 6 passes is mixed -> high entropy
    assert float(u[2].mean()) > 0.3


def test_magicnet_refuses_a_patch_its_cubes_do_not_divide_at_construction():
    from sfr_teach.config import RetrainConfig
    from sfr_teach.nets import build_net
    from sfr_teach.ssl import build_method

    net = build_net("vnet", n_classes=2, n_filters=4)
    ok = RetrainConfig(patch_size=(32, 32, 32), magicnet_cube=2)
    assert build_method("magicnet", net, ok, 2).n == 2
    with pytest.raises(ValueError, match=r"\(32, 32, 32\) does not divide into 3\^3 MagicNet cubes"):
        build_method("magicnet", net, RetrainConfig(patch_size=(32, 32, 32), magicnet_cube=3), 2)
