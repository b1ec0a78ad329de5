"""Checkers accept right answers and reject typical wrong ones with a message that helps."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sfr_teach import exercises as ex
from sfr_teach import lesson


# ----------------------------------------------------------------------------- student answers
def _stitch(vol, grid=lambda d: math.ceil(math.sqrt(d)), column_major=False, fill=0):
    h, w, d = vol.shape
    g = grid(d)
    out = np.full((g * h, g * w), fill, vol.dtype)
    for k in range(min(d, g * g)):
        r, c = divmod(k, g)
        if column_major:
            r, c = c, r
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = vol[:, :, k]
    return out


def stitch_ok(vol):
    return _stitch(vol)


def stitch_column_major(vol):
    return _stitch(vol, column_major=True)


def stitch_floor_grid(vol):  # off by one: floor(sqrt(D)) drops the last row of cells
    return _stitch(vol, grid=lambda d: int(math.sqrt(d)))


def stitch_garbage_empty_cells(vol):  # forgets to zero the empty cells
    return _stitch(vol, fill=1)


def unstitch_ok(mosaic, depth):
    g = math.ceil(math.sqrt(depth))
    h, w = mosaic.shape[0] // g, mosaic.shape[1] // g
    return np.stack([mosaic[(k // g) * h:(k // g + 1) * h, (k % g) * w:(k % g + 1) * w] for k in range(depth)], -1)


def unstitch_keeps_empty(mosaic, depth):
    g = math.ceil(math.sqrt(depth))
    return unstitch_ok(mosaic, g * g)


def ema_ok(teacher, student, alpha, step):
    a = min(1 - 1 / (step + 1), alpha)
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.data.mul_(a).add_(s.data, alpha=1 - a)


def ema_no_warmup(teacher, student, alpha, step):
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.data.mul_(alpha).add_(s.data, alpha=1 - alpha)


def ema_swapped(teacher, student, alpha, step):
    a = min(1 - 1 / (step + 1), alpha)
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.data.copy_((1 - a) * t.data + a * s.data)


# ----------------------------------------------------------------------------- tests
def test_stitch_checker(capsys):
    res = ex.check_stitch(stitch_ok)
    assert res and res.cases_passed == res.cases_total == 5
    assert "✅ check_stitch: all 5 cases pass" in capsys.readouterr().out
    res = ex.check_stitch(stitch_column_major)
    assert not res and "18 of 36 values differ; first at index (0, 3): expected 2, got 3" in res.message
    assert "❌" in capsys.readouterr().out
    res = ex.check_stitch(stitch_floor_grid)
    assert not res and "D=5" in res.message and "shape differs: expected (9, 9), got (6, 6)" in res.message
    res = ex.check_stitch(stitch_garbage_empty_cells)
    assert not res and "empty cells" in res.message
    res = ex.check_stitch(lambda v: None)
    assert not res and "returned None" in res.message


def test_unstitch_checker():
    assert ex.check_unstitch(unstitch_ok)
    res = ex.check_unstitch(unstitch_keeps_empty)
    assert not res and "shape differs: expected (3, 3, 5), got (3, 3, 9)" in res.message
    res = ex.check_unstitch(lambda m, d: m.reshape(-1)[0] + "x")
    assert not res and "raised" in res.message


def test_ema_checker():
    assert ex.check_ema_update(ema_ok)
    res = ex.check_ema_update(ema_no_warmup)
    assert not res and "step 0 copies the student" in res.message and "teacher parameters" in res.message
    res = ex.check_ema_update(ema_swapped)
    assert not res and "step 0 copies the student" in res.message and "expected" in res.message


def test_ema_reference_matches_a_hand_computation():
    t, s = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    t.weight.data.fill_(1.0)
    s.weight.data.fill_(3.0)
    ex.ref_ema_update(t, s, 0.99, 1)  # a = 0.5
    assert t.weight.item() == pytest.approx(2.0)
    ex.ref_ema_update(t, s, 0.99, 10_000)  # a = 0.99
    assert t.weight.item() == pytest.approx(0.99 * 2 + 0.01 * 3)


def test_confidence_and_dice_checkers():
    assert ex.check_confidence(lambda p: p.max(0).mean())
    res = ex.check_confidence(lambda p: p[1].mean())  # foreground channel only
    assert not res and "expected" in res.message
    res = ex.check_confidence(lambda p: p.mean(0).max())
    assert not res
    assert ex.check_dice(lambda p, g: 2 * (p & g).sum() / (p.sum() + g.sum()))
    res = ex.check_dice(lambda p, g: (p & g).sum() / (p | g).sum())  # IoU
    assert not res and "partial overlap" in res.message and "IoU" in res.message


def test_sigmoid_rampup_checker():
    def ok(c, L):
        if L == 0:
            return 1.0
        c = min(max(c, 0), L)
        return math.exp(-5 * (1 - c / L) ** 2)

    assert ex.check_sigmoid_rampup(ok)
    res = ex.check_sigmoid_rampup(lambda c, L: math.exp(-5 * (1 - c / L) ** 2) if L else 1.0)  # no clip
    assert not res and "current=60" in res.message
    res = ex.check_sigmoid_rampup(lambda c, L: math.exp(-5 * (1 - c / L)) if L else 1.0)  # phase not squared
    assert not res and "'current=10, length=40': expected 0.0600547, got 0.0235177" in res.message


def test_entropy_and_ambiguity_checkers():
    def ent(p):
        return -(p * np.log(np.clip(p, 1e-12, None))).sum(0)

    assert ex.check_entropy(ent)
    res = ex.check_entropy(lambda p: -(p * np.log2(np.clip(p, 1e-12, None))).sum(0))
    assert not res and "values differ" in res.message
    assert ex.check_ambiguous_mask(lambda p, t: ent(p) / np.log(p.shape[0]) >= t)
    res = ex.check_ambiguous_mask(lambda p, t: ent(p) / np.log(2) >= t)
    assert not res and "3 classes" in res.message
    res = ex.check_ambiguous_mask(lambda p, t: ent(p) / np.log(p.shape[0]) < t)
    assert not res


def test_cube_tau_lora_fraction_meanstd_checkers():
    def cubes(v, n):
        h, w, d = (s // n for s in v.shape)
        return np.stack([v[i*h:(i+1)*h, j*w:(j+1)*w, k*d:(k+1)*d] for i in range(n) for j in range(n) for k in range(n)])

    assert ex.check_cube_partition(cubes)
    res = ex.check_cube_partition(lambda v, n: cubes(v.transpose(2, 1, 0), n).transpose(0, 3, 2, 1))
    assert not res
    assert ex.check_tau_selection(lambda c, t: ([k for k in c if c[k] >= t], [k for k in c if c[k] < t]))
    res = ex.check_tau_selection(lambda c, t: ([k for k in c if c[k] > t], [k for k in c if c[k] <= t]))
    assert not res and "'c'" in res.message
    assert ex.check_lora_params(lambda i, o, r: r * (i + o))
    res = ex.check_lora_params(lambda i, o, r: r * i * o)
    assert not res and "expected 64" in res.message
    assert ex.check_foreground_fraction(lambda lab: (lab > 0).mean())
    assert not ex.check_foreground_fraction(lambda lab: (lab == 1).mean())
    assert ex.check_mean_std(lambda v: (np.mean(v), np.std(v)))
    res = ex.check_mean_std(lambda v: (np.mean(v), np.std(v, ddof=1)))
    assert not res and "std" in res.message


def test_record_appends_plain_json(tmp_path):
    path = tmp_path / "rec.json"
    assert lesson.record("x", np.float32(0.5), None) == np.float32(0.5)
    assert not path.exists()
    lesson.record("x", np.float32(0.5), str(path))
    lesson.record("ok", np.bool_(True), str(path))
    lesson.record("arr", torch.arange(3), str(path))
    assert json.loads(path.read_text()) == {"x": 0.5, "ok": True, "arr": [0, 1, 2]}
