"""Classroom exercise checkers.

Each ``check_<thing>(fn)`` runs a student's function on several small cases, compares it
with the reference answer and returns a :class:`CheckResult` (truthy when every case passes).
It also prints one friendly line, e.g.::

    ✅ check_unstitch: all 5 cases pass
    ❌ check_stitch: case 'D=5 (empty cells)': shape differs: expected (48, 48), got (32, 32)

The references are the library's own functions (``sfr_teach.stitching``, ``sam.pseudo``,
``metrics``, ``ssl.base.EMATeacher``, ``ssl.ramps``, ``ssl.losses``, ``ssl.magicnet``), wrapped
as ``ref_*`` where the student's signature differs; only ``check_mean_std`` and
``check_foreground_fraction`` compare with plain numpy, and ``check_lora_params`` with peft.

=======================  ==========================================================  ======
checker                  the student writes                                          lesson
=======================  ==========================================================  ======
check_foreground_fraction ``fn(label (H,W,D)) -> float`` share of voxels > 0         01
check_stitch             ``fn(volume (H,W,D)) -> mosaic (d*H, d*W)``, row-major      02
check_unstitch           ``fn(mosaic (d*H, d*W), depth) -> volume (H,W,D)``          02
check_lora_params        ``fn(d_in, d_out, rank) -> int`` LoRA parameters of a Linear 03
check_confidence         ``fn(prob (C,H,W,D)) -> float`` mean max class probability  04
check_dice               ``fn(pred, gt) -> float`` binary Dice                       05
check_ema_update         ``fn(teacher, student, alpha, step)`` in place              06
check_sigmoid_rampup     ``fn(current, length) -> float``                            06
check_entropy            ``fn(prob (C,...)) -> (...)`` entropy in nats               07
check_ambiguous_mask     ``fn(prob (C,...), tau) -> bool (...)``                     08
check_cube_partition     ``fn(volume (H,W,D), n) -> (n**3, H/n, W/n, D/n)``          09
check_tau_selection      ``fn(confidences {name: c}, tau) -> (high, low)`` names     10
check_mean_std           ``fn(values) -> (mean, std)`` population std                11
=======================  ==========================================================  ======

The lessons record the numbers they compute with :func:`sfr_teach.lesson.record`.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = [
    "CheckResult",
    "check_foreground_fraction",
    "check_stitch",
    "check_unstitch",
    "check_lora_params",
    "check_confidence",
    "check_dice",
    "check_ema_update",
    "check_sigmoid_rampup",
    "check_entropy",
    "check_ambiguous_mask",
    "check_cube_partition",
    "check_tau_selection",
    "check_mean_std",
    "ref_ema_update",
    "ref_confidence",
    "ref_dice",
    "ref_ambiguous_mask",
    "ref_cube_partition",
    "ref_tau_selection",
]


# ----------------------------------------------------------------------------- harness
@dataclass
class CheckResult:
    """Outcome of one checker: ``passed``, a ``message`` (the first failing case, expected vs got)."""

    name: str
    passed: bool
    message: str
    cases_passed: int
    cases_total: int

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return f"{'✅' if self.passed else '❌'} {self.name}: {self.message}"

    def _repr_html_(self) -> str:  # shown in notebooks when the result is the cell's value
        color = "#1a7f37" if self.passed else "#cf222e"
        return f'<p style="color:{color};font-weight:bold">{str(self)}</p>'


def _short(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        if x.size <= 12:
            return np.array2string(x, precision=4, separator=", ").replace("\n", "")
        return f"array{x.shape}"
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        return f"{x:.6g}"
    return repr(x)


def _compare_arrays(expected: Any, got: Any, atol: float = 1e-6) -> Optional[str]:
    """None when equal (shape, then values within ``atol``); else what differs."""
    if got is None:
        return "your function returned None (did you forget `return`?)"
    e = np.asarray(expected.detach().cpu() if isinstance(expected, torch.Tensor) else expected)
    g = np.asarray(got.detach().cpu() if isinstance(got, torch.Tensor) else got)
    if e.shape != g.shape:
        return f"shape differs: expected {e.shape}, got {g.shape}"
    if e.dtype == bool or g.dtype == bool:
        bad = e.astype(bool) != g.astype(bool)
    else:
        bad = ~np.isclose(e.astype(np.float64), g.astype(np.float64), atol=atol, rtol=0)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        return (
            f"{int(bad.sum())} of {e.size} values differ; first at index {where}: "
            f"expected {_short(e[where])}, got {_short(g[where])}"
        )
    return None


def _compare_scalars(expected: float, got: Any, atol: float = 1e-6) -> Optional[str]:
    if got is None:
        return "your function returned None (did you forget `return`?)"
    try:
        g = float(got)
    except (TypeError, ValueError):
        return f"expected a number, got {type(got).__name__}"
    if not math.isclose(g, float(expected), abs_tol=atol, rel_tol=0):
        return f"expected {_short(float(expected))}, got {_short(g)}"
    return None


Case = Tuple[str, Tuple[Any, ...], Any]  # (description, args, expected)


def _run(name: str, fn: Callable, cases: Sequence[Case], compare: Callable[[Any, Any], Optional[str]],
         hint: str = "", verbose: bool = True) -> CheckResult:
    """Call ``fn(*args)`` on deep copies of each case's args; stop at the first failure."""
    if not callable(fn):
        res = CheckResult(name, False, f"expected a function, got {type(fn).__name__}", 0, len(cases))
    else:
        res = None
        for i, (desc, args, expected) in enumerate(cases):
            try:
                got = fn(*copy.deepcopy(args))
                problem = compare(expected, got)
            except Exception as e:  # a student's bug is a failed case, with the error shown
                problem = f"raised {type(e).__name__}" + (f": {e}" if str(e) else "")
            if problem:
                msg = f"case {i + 1}/{len(cases)} '{desc}': {problem}" + (f" (hint: {hint})" if hint else "")
                res = CheckResult(name, False, msg, i, len(cases))
                break
        if res is None:
            res = CheckResult(name, True, f"all {len(cases)} cases pass", len(cases), len(cases))
    if verbose:
        print(res)
    return res


def _distinct_volume(h: int, w: int, d: int) -> np.ndarray:
    """(H, W, D) float32 where every voxel differs (so misplaced slices are caught)."""
    return np.arange(1, h * w * d + 1, dtype=np.float32).reshape(h, w, d)


# ----------------------------------------------------------------------------- references (thin wrappers of the library)
def ref_confidence(prob: np.ndarray) -> float:
    """SFR+ volume confidence: :func:`sfr_teach.sam.pseudo.confidence` (``mode="mean_max"``)."""
    from .sam.pseudo import confidence

    return confidence(prob, mode="mean_max")


def ref_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Binary Dice: :func:`sfr_teach.metrics.dice` (the checker never asks for two empty masks)."""
    from .metrics import dice

    return dice(pred, gt)


def ref_ema_update(teacher: torch.nn.Module, student: torch.nn.Module, alpha: float, global_step: int) -> None:
    """Mean Teacher EMA in place, by :class:`sfr_teach.ssl.base.EMATeacher`'s rule.

    ``a = min(1 - 1/(global_step + 1), alpha)``; ``teacher = a * teacher + (1 - a) * student``
    for every parameter (step 0 copies the student).
    """
    from .ssl.base import EMATeacher

    ema = EMATeacher(student, alpha)
    ema.model = teacher  # update this teacher, not the fresh copy EMATeacher made
    ema.update(student, global_step)


def ref_ambiguous_mask(prob: np.ndarray, tau: float) -> np.ndarray:
    """AC-MT's ambiguous voxels, as :class:`sfr_teach.ssl.ac_mt.ACMT`: ``entropy / ln(C) >= tau``; prob (C, ...)."""
    from .ssl.losses import entropy

    p = torch.as_tensor(np.asarray(prob, dtype=np.float32))[None]
    return (entropy(p)[0, 0] / math.log(p.shape[1]) >= tau).numpy()


def ref_cube_partition(volume: np.ndarray, n: int) -> np.ndarray:
    """MagicNet cubes by :func:`sfr_teach.ssl.magicnet.to_cubes`: (H, W, D) -> (n**3, H/n, W/n, D/n)."""
    from .ssl.magicnet import to_cubes

    return to_cubes(torch.as_tensor(np.asarray(volume))[None, None], n)[0, :, 0].numpy()


def ref_tau_selection(confidences: Dict[str, float], tau: float) -> Tuple[List[str], List[str]]:
    """SFR+ split by :func:`sfr_teach.sam.pseudo.split_by_confidence`: high = confidence >= tau."""
    from types import SimpleNamespace

    from .sam.pseudo import split_by_confidence

    high, low = split_by_confidence([SimpleNamespace(name=k, confidence=c) for k, c in confidences.items()], tau)
    return [p.name for p in high], [p.name for p in low]


# ----------------------------------------------------------------------------- checkers
def check_foreground_fraction(fn: Callable, verbose: bool = True) -> CheckResult:
    """``fn(label (H, W, D)) -> float``: the share of voxels whose label is > 0 (0..1)."""
    rng = np.random.default_rng(1)
    cases = []
    for desc, lab in [
        ("half foreground", np.concatenate([np.zeros((4, 4, 2)), np.ones((4, 4, 2))], axis=2)),
        ("random binary", (rng.random((6, 5, 4)) > 0.7).astype(np.uint8)),
        ("two classes (1 and 2 both count)", rng.integers(0, 3, (5, 5, 3)).astype(np.uint8)),
        ("empty label", np.zeros((3, 3, 3), np.uint8)),
    ]:
        cases.append((desc, (lab.astype(np.uint8),), float((lab > 0).mean())))
    return _run("check_foreground_fraction", fn, cases, _compare_scalars,
                "count label > 0, divide by the number of voxels", verbose)


def _stitch_cases() -> List[Tuple[str, np.ndarray]]:
    return [
        ("D=4, a full 2x2 grid", _distinct_volume(3, 3, 4)),
        ("D=5 (empty cells must be zero)", _distinct_volume(3, 3, 5)),
        ("H != W", _distinct_volume(2, 3, 7)),
        ("D=1", _distinct_volume(4, 2, 1)),
        ("D=10 on a 4x4 grid", _distinct_volume(3, 2, 10)),
    ]


def _ref_raw_stitch(volume: np.ndarray) -> np.ndarray:
    from .stitching import grid_size, make_layout, stitch

    h, w, d = volume.shape
    layout = make_layout(volume.shape, out_size=grid_size(d) * max(h, w), fit="pad")
    top, left = layout.offset
    rows, cols = layout.raw
    return stitch(volume, layout)[top : top + rows, left : left + cols]


def check_stitch(fn: Callable, verbose: bool = True) -> CheckResult:
    """``fn(volume (H, W, D)) -> mosaic (d*H, d*W)`` with ``d = ceil(sqrt(D))``, slices row-major, empty cells 0.

    Reference: :func:`sfr_teach.stitching.stitch` without the padding to SAM's size.
    """
    cases = [(desc, (v,), _ref_raw_stitch(v)) for desc, v in _stitch_cases()]
    return _run("check_stitch", fn, cases, _compare_arrays,
                "slice k goes to row k // d, column k % d; d = ceil(sqrt(D))", verbose)


def check_unstitch(fn: Callable, verbose: bool = True) -> CheckResult:
    """``fn(mosaic (d*H, d*W), depth) -> volume (H, W, depth)``: the inverse of :func:`check_stitch`'s task."""
    cases = [(desc, (_ref_raw_stitch(v), v.shape[2]), v) for desc, v in _stitch_cases()]
    return _run("check_unstitch", fn, cases, _compare_arrays,
                "H = rows // d, W = cols // d; keep only the first `depth` cells", verbose)


def check_lora_params(fn: Callable, verbose: bool = True) -> CheckResult:
    """``fn(d_in, d_out, rank) -> int``: trainable parameters LoRA adds to one ``Linear(d_in, d_out)``.

    A is (rank x d_in), B is (d_out x rank): ``rank * (d_in + d_out)``. Reference: peft itself.
    """
    from peft import LoraConfig, inject_adapter_in_model

    def peft_count(d_in: int, d_out: int, rank: int) -> int:
        m = torch.nn.Sequential()
        m.add_module("qkv", torch.nn.Linear(d_in, d_out))
        inject_adapter_in_model(LoraConfig(r=rank, target_modules=["qkv"]), m)
        return sum(p.numel() for n, p in m.named_parameters() if "lora_" in n)

    cases = [(f"Linear({a}, {b}), rank {r}", (a, b, r), peft_count(a, b, r))
             for a, b, r in [(8, 24, 2), (768, 2304, 4), (64, 64, 1), (192, 576, 8)]]
    return _run("check_lora_params", fn, cases, lambda e, g: _compare_scalars(e, g, 0),
                "A is rank x d_in, B is d_out x rank; the frozen weight does not count", verbose)


def _probs(rng: np.random.Generator, shape: Tuple[int, ...], sharp: float = 3.0) -> np.ndarray:
    logits = rng.normal(size=shape) * sharp
    e = np.exp(logits - logits.max(axis=0, keepdims=True))
    return (e / e.sum(axis=0, keepdims=True)).astype(np.float32)


def check_confidence(fn: Callable, verbose: bool = True) -> CheckResult:
    """``fn(prob (C, H, W, D)) -> float``: SFR+ volume confidence, the mean over voxels of max_c prob."""
    rng = np.random.default_rng(2)
    cases = [
        ("2 classes, random", (_probs(rng, (2, 4, 4, 3)),)),
        ("3 classes (not just the foreground channel)", (_probs(rng, (3, 5, 4, 2)),)),
        ("a background-confident volume", (np.stack([np.full((3, 3, 2), 0.9), np.full((3, 3, 2), 0.1)]).astype(np.float32),)),
    ]
    cases = [(d, a, ref_confidence(a[0])) for d, a in cases]
    return _run("check_confidence", fn, cases, lambda e, g: _compare_scalars(e, g, 1e-5),
                "take the max over the class axis (axis 0), then the mean over all voxels", verbose)


def check_dice(fn: Callable, verbose: bool = True) -> CheckResult:
    """``fn(pred, gt) -> float``: binary Dice ``2|P∩G| / (|P| + |G|)`` on 3D masks."""
    rng = np.random.default_rng(3)
    a = rng.random((6, 6, 4)) > 0.5
    b = rng.random((6, 6, 4)) > 0.4
    box = np.zeros((8, 8, 4), bool)
    box[2:6, 2:6] = True
    cases = [
        ("identical masks", (a.astype(np.uint8), a.astype(np.uint8))),
        ("partial overlap", (a.astype(np.uint8), b.astype(np.uint8))),
        ("no overlap", (box.astype(np.uint8), (~box).astype(np.uint8))),
        ("empty prediction", (np.zeros_like(box, np.uint8), box.astype(np.uint8))),
        ("shifted box", (np.roll(box, 1, 0).astype(np.uint8), box.astype(np.uint8))),
    ]
    cases = [(d, args, ref_dice(*args)) for d, args in cases]
    return _run("check_dice", fn, cases, lambda e, g: _compare_scalars(e, g, 1e-6),
                "Dice = 2 * overlap / (size of pred + size of gt); IoU is a different number", verbose)


def check_ema_update(fn: Callable, verbose: bool = True) -> CheckResult:
    """``fn(teacher, student, alpha, global_step)`` updates ``teacher`` in place (Mean Teacher EMA).

    Rule: ``a = min(1 - 1/(global_step + 1), alpha)``; ``teacher = a * teacher + (1 - a) * student``.
    Reference: :func:`ref_ema_update` (the trainers' :class:`~sfr_teach.ssl.base.EMATeacher`).
    """
    torch.manual_seed(0)

    def pair() -> Tuple[torch.nn.Module, torch.nn.Module]:
        return torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)

    cases = []
    for desc, alpha, step in [("step 0 copies the student", 0.99, 0), ("step 1: a = 0.5", 0.99, 1),
                              ("late step: a = alpha", 0.99, 500), ("alpha 0.9 at step 50", 0.9, 50)]:
        t, s = pair()
        cases.append((desc, (t, s, alpha, step), None))

    def run_case(case: Case) -> Case:
        desc, (t, s, alpha, step), _ = case
        t_ref = copy.deepcopy(t)
        ref_ema_update(t_ref, s, alpha, step)
        return desc, (t, s, alpha, step), [p.detach().clone() for p in t_ref.parameters()]

    cases = [run_case(c) for c in cases]

    def wrapped(t: torch.nn.Module, s: torch.nn.Module, alpha: float, step: int):
        with torch.no_grad():
            fn(t, s, alpha, step)
        return [p.detach().clone() for p in t.parameters()]

    def compare(expected: List[torch.Tensor], got: List[torch.Tensor]) -> Optional[str]:
        for e, g in zip(expected, got):
            problem = _compare_arrays(e, g, 1e-6)
            if problem:
                return "teacher parameters after the update: " + problem
        return None

    return _run("check_ema_update", wrapped, cases, compare,
                "a = min(1 - 1/(step + 1), alpha); teacher = a*teacher + (1-a)*student", verbose)


def check_sigmoid_rampup(fn: Callable, verbose: bool = True) -> CheckResult:
    """``fn(current, rampup_length) -> float``: ``exp(-5 (1 - t/L)^2)``, t clipped to [0, L], 1 when L = 0.

    Reference: :func:`sfr_teach.ssl.ramps.sigmoid_rampup`.
    """
    from .ssl.ramps import sigmoid_rampup

    args = [(0, 40), (10, 40), (20, 40), (40, 40), (60, 40), (5, 0)]
    cases = [(f"current={c}, length={L}", (c, L), sigmoid_rampup(c, L)) for c, L in args]
    return _run("check_sigmoid_rampup", fn, cases, lambda e, g: _compare_scalars(e, g, 1e-6),
                "phase = 1 - t/L with t clipped to [0, L]; return exp(-5 * phase**2); L == 0 -> 1.0", verbose)


def check_entropy(fn: Callable, verbose: bool = True) -> CheckResult:
    """``fn(prob (C, ...)) -> (...)``: voxel-wise entropy ``-sum_c p log p`` in nats (UA-MT's uncertainty).

    Reference: :func:`sfr_teach.ssl.losses.entropy` (tolerance 1e-4 for its epsilon).
    """
    from .ssl.losses import entropy

    rng = np.random.default_rng(4)
    arrs = [("2 classes", _probs(rng, (2, 4, 4, 3), 1.0)), ("4 classes", _probs(rng, (4, 3, 3, 2), 1.0)),
            ("certain voxels give 0", np.stack([np.ones((2, 2, 2)), np.zeros((2, 2, 2))]).astype(np.float32)),
            ("uniform gives ln C", np.full((3, 2, 2, 2), 1 / 3, np.float32))]
    cases = [(d, (p,), entropy(torch.from_numpy(p)[None])[0, 0].numpy()) for d, p in arrs]
    return _run("check_entropy", fn, cases, lambda e, g: _compare_arrays(e, g, 1e-4),
                "sum over the class axis (axis 0) of -p * log(p), natural log; treat 0 * log 0 as 0", verbose)


def check_ambiguous_mask(fn: Callable, verbose: bool = True) -> CheckResult:
    """``fn(prob (C, ...), tau) -> bool (...)``: AC-MT's ambiguous voxels, ``entropy / ln C >= tau``."""
    rng = np.random.default_rng(5)
    p2, p3 = _probs(rng, (2, 6, 6, 4), 1.5), _probs(rng, (3, 5, 5, 3), 1.5)
    cases = [(d, (p, t), ref_ambiguous_mask(p, t))
             for d, p, t in [("2 classes, tau 0.75", p2, 0.75), ("2 classes, tau 0.95", p2, 0.95),
                             ("3 classes: divide by ln 3", p3, 0.8)]]
    return _run("check_ambiguous_mask", fn, cases, _compare_arrays,
                "normalise the entropy by ln(C) so it lies in [0, 1]; ambiguous means >= tau", verbose)


def check_cube_partition(fn: Callable, verbose: bool = True) -> CheckResult:
    """``fn(volume (H, W, D), n) -> (n**3, H/n, W/n, D/n)``: MagicNet cubes, cube (i, j, k) at ``i*n*n + j*n + k``."""
    cases = [(f"{v.shape} into {n}**3 cubes", (v, n), ref_cube_partition(v, n))
             for v, n in [(_distinct_volume(6, 6, 6), 3), (_distinct_volume(4, 6, 8), 2), (_distinct_volume(3, 3, 3), 1)]]
    return _run("check_cube_partition", fn, cases, _compare_arrays,
                "cube (i, j, k) = volume[i*h:(i+1)*h, j*w:(j+1)*w, k*d:(k+1)*d], listed with k fastest", verbose)


def check_tau_selection(fn: Callable, verbose: bool = True) -> CheckResult:
    """``fn({name: confidence}, tau) -> (high_names, low_names)``: SFR+'s split, ``high = confidence >= tau``."""
    confs = {"a": 0.99, "b": 0.97, "c": 0.985, "d": 0.9861, "e": 0.5}
    cases = [(f"tau={t}", (confs, t), ref_tau_selection(confs, t)) for t in (0.985, 0.98, 1.0, 0.0)]

    def compare(e, g) -> Optional[str]:
        if not isinstance(g, (tuple, list)) or len(g) != 2:
            return f"expected a pair (high, low), got {_short(g)}"
        if sorted(g[0]) != sorted(e[0]) or sorted(g[1]) != sorted(e[1]):
            return f"expected high={sorted(e[0])}, low={sorted(e[1])}; got high={sorted(g[0])}, low={sorted(g[1])}"
        return None

    return _run("check_tau_selection", fn, cases, compare,
                "a volume exactly at tau counts as high-confidence (>=)", verbose)


def check_mean_std(fn: Callable, verbose: bool = True) -> CheckResult:
    """``fn(values) -> (mean, std)``: what the tables report, with the population std (``np.std``, ddof=0)."""
    rng = np.random.default_rng(6)
    vals = [[0.9, 0.8, 0.85], list(rng.random(7)), [0.5]]
    cases = [(f"{len(v)} values", (v,), (float(np.mean(v)), float(np.std(v)))) for v in vals]

    def compare(e, g) -> Optional[str]:
        if not isinstance(g, (tuple, list)) or len(g) != 2:
            return f"expected a pair (mean, std), got {_short(g)}"
        for what, ev, gv in (("mean", e[0], g[0]), ("std", e[1], g[1])):
            problem = _compare_scalars(ev, gv, 1e-9)
            if problem:
                return f"{what}: {problem}"
        return None

    return _run("check_mean_std", fn, cases, compare,
                "population std divides by N (np.std's default), not N - 1", verbose)
