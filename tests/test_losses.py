"""The one CE + Dice loss: hand-computed cases, the ignore value, and MONAI on the same tensors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceLoss

from sfr_teach.losses import IGNORE_INDEX, ce_dice, ce_dice_terms, soft_dice_loss


def _batch(shape, classes, seed=0, ignore_frac=0.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn((shape[0], classes, *shape[1:]), generator=g) * 2
    target = torch.randint(0, classes, shape, generator=g)
    if ignore_frac:
        target[torch.rand(shape, generator=g) < ignore_frac] = IGNORE_INDEX
    return logits, target


def _monai_dice(squared, **kw):
    return DiceLoss(softmax=True, to_onehot_y=True, squared_pred=squared, batch=True, **kw)


def test_dice_by_hand_both_denominators():
    target = torch.tensor([[0, 1, 1, 0]])
    probs = torch.tensor([[[1.0, 0.5, 0.0, 1.0], [0.0, 0.5, 1.0, 0.0]]])  # (1, 2, 4)
    # class 0: inter 2, sum p^2 2.25, sum p 2.5, sum y 2; class 1: inter 1.5, sum p^2 1.25, sum p 1.5, sum y 2
    sq = ((1 - 4 / 4.25) + (1 - 3 / 3.25)) / 2
    lin = ((1 - 4 / 4.5) + (1 - 3 / 3.5)) / 2
    assert soft_dice_loss(probs, target, smooth=0).item() == pytest.approx(sq, rel=1e-6)
    assert soft_dice_loss(probs, target, squared=False, smooth=0).item() == pytest.approx(lin, rel=1e-6)
    w = torch.tensor([1.0, 3.0])  # weighted mean over classes: (1 * d0 + 3 * d1) / 4
    d0, d1 = 1 - 4 / 4.25, 1 - 3 / 3.25
    assert soft_dice_loss(probs, target, class_weights=w, smooth=0).item() == pytest.approx((d0 + 3 * d1) / 4, rel=1e-6)


def test_ignore_index_removes_voxels_from_both_terms_and_perfect_is_zero():
    target = torch.tensor([[0, 1, 1, 0]])
    good = torch.tensor([[[9.0, -9, -9, 9], [-9, 9, 9, -9]]])
    assert ce_dice(good, target).item() < 1e-3
    t_ign = torch.tensor([[0, 1, 1, IGNORE_INDEX]])
    bad_last = good.clone()
    bad_last[0, :, 3] = torch.tensor([-9.0, 9.0])  # wrong where the label is ignored: must not count
    for squared in (True, False):
        a = ce_dice_terms(bad_last, t_ign, squared=squared)
        b = ce_dice_terms(good[..., :3], target[:, :3], squared=squared)
        assert a.loss.item() == pytest.approx(b.loss.item(), abs=1e-6)
        assert a.ce.item() == pytest.approx(b.ce.item(), abs=1e-6)
    # nothing to supervise: a zero that keeps the graph
    logits = torch.randn(1, 2, 4, requires_grad=True)
    z = ce_dice(logits, torch.full((1, 4), IGNORE_INDEX))
    z.backward()
    assert z.item() == 0.0 and logits.grad is not None
    with pytest.raises(ValueError, match="sfr_teach/losses.py.*do not match"):
        ce_dice(good, torch.zeros(1, 3, dtype=torch.long))


def test_terms_and_ce_weight():
    logits, target = _batch((2, 6, 5, 4), 3, seed=1)
    t = ce_dice_terms(logits, target, ce_weight=0.2)
    assert t.ce.item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-6)
    assert t.loss.item() == pytest.approx(0.2 * t.ce.item() + 0.8 * t.dice.item(), rel=1e-6)
    assert ce_dice(logits, target).item() == pytest.approx(0.5 * (t.ce.item() + t.dice.item()), rel=1e-6)


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("shape,classes", [((2, 16, 16), 2), ((3, 8, 7, 6), 4)])  # SAM mosaics, V-Net crops
def test_dice_equals_monai_diceloss(squared, shape, classes):
    logits, target = _batch(shape, classes, seed=classes)
    ours = soft_dice_loss(torch.softmax(logits, 1), target, squared=squared)
    theirs = _monai_dice(squared)(logits, target[:, None])
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)
    # MONAI's default batch=False is one Dice per sample and class: a different number
    per_sample = DiceLoss(softmax=True, to_onehot_y=True, squared_pred=squared)(logits, target[:, None])
    assert abs(per_sample.item() - ours.item()) > 1e-4


@pytest.mark.parametrize("squared", [True, False])
def test_dice_with_ignore_equals_monai_ignore_index(squared):
    logits, target = _batch((2, 10, 9, 5), 3, seed=7, ignore_frac=0.3)
    ours = soft_dice_loss(torch.softmax(logits, 1), target, squared=squared)
    theirs = _monai_dice(squared, ignore_index=IGNORE_INDEX)(logits, target[:, None])
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)


def test_class_weights_vs_monai_weight():
    """MONAI multiplies each class term by its weight then takes the plain mean; ours divides by the
    sum of the weights. They agree once the weights sum to C."""
    logits, target = _batch((2, 9, 8, 6), 3, seed=3)
    w = torch.tensor([0.2, 1.0, 1.8])  # sums to 3 = C
    ours = soft_dice_loss(torch.softmax(logits, 1), target, class_weights=w)
    theirs = _monai_dice(True, weight=w)(logits, target[:, None])
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)
    ours_scaled = soft_dice_loss(torch.softmax(logits, 1), target, class_weights=5 * w)
    assert ours_scaled.item() == pytest.approx(ours.item(), abs=1e-6)  # scale-free, MONAI's is not


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("w", [0.5, 0.2])
def test_ce_dice_equals_monai_dicece(squared, w):
    logits, target = _batch((2, 12, 11, 6), 3, seed=11)
    theirs = DiceCELoss(softmax=True, to_onehot_y=True, squared_pred=squared, batch=True,
                        lambda_ce=w, lambda_dice=1 - w)(logits, target[:, None])
    assert ce_dice(logits, target, ce_weight=w, squared=squared).item() == pytest.approx(theirs.item(), abs=1e-6)


def test_official_setting_is_the_default_and_squared_changes_the_number():
    logits, target = _batch((2, 16, 16), 2, seed=5, ignore_frac=0.2)
    default = ce_dice(logits, target)
    assert default.item() == ce_dice(logits, target, ce_weight=0.5, squared=True).item()
    assert abs(ce_dice(logits, target, squared=False).item() - default.item()) > 1e-3
