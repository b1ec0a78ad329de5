"""Each re-training speed change, before vs after, interleaved in one process (classroom sizes).

    python benchmarks/bench_retrain_changes.py                 # all changes, 2 threads
    python benchmarks/bench_retrain_changes.py --only ema uamt --reps 7
    python benchmarks/bench_retrain_changes.py --curves 20     # + loss curves before/after (same seed)

The "before" side of every change is the code it replaced, kept here (``legacy_*``) so that both
run side by side on the same inputs:

* ``ema``      -- EMA teacher update: per-parameter ``mul_().add_()`` loop vs ``torch._foreach_*``
  (:meth:`sfr_teach.ssl.base.EMATeacher.update`); checks the teacher weights are bit-identical;
* ``teacher``  -- the teacher's forward under ``torch.no_grad`` vs ``torch.inference_mode``;
* ``uamt``     -- UA-MT's T stochastic passes two copies at a time (the reference) vs one batched
  forward (:meth:`sfr_teach.ssl.ua_mt.UAMT.uncertainty`); prints how far the entropy maps and
  certainty masks move (the passes are random either way: compared with two runs of the old code);
* ``data``     -- crops from numpy arrays vs from tensors prepared once (checks identical batches);
* ``batchnorm`` -- ``nn.BatchNorm3d`` vs the V-Net's :class:`sfr_teach.nets.vnet.BatchNorm3d` (a
  contiguous copy where PyTorch's channels-last backward is slow): first ``nn.BatchNorm3d`` alone on
  channels-last vs contiguous input for C = 4..32 on 1 and 2 threads (where the slow path is), then
  the classroom layer shapes forward + backward and a whole Mean-Teacher step; checks outputs and
  gradients agree;
* ``format``   -- a whole Mean-Teacher step with the V-Net in ``channels_last_3d`` vs contiguous;
* ``bf16``     -- *not adopted, measured*: a whole Mean-Teacher step and an evaluation forward in float32
  vs under ``torch.autocast("cpu", bfloat16)``, with how far the logits move (bf16 changes what is
  computed; only CPUs with native bf16 -- AMX / AVX512-BF16 -- can gain);
* ``threads``  -- a whole Mean-Teacher step on 1 vs 2 torch threads;
* ``malloc``   -- glibc's default allocator vs :func:`sfr_teach.torch_utils.reuse_freed_memory`
  (freed tensor memory kept for the next tensor): a Mean-Teacher step and the evaluation of one
  half-resolution LA-sized volume (classroom sliding windows, then the metrics), each side in its own
  child process (the setting is process-wide), the two alternated ``--reps`` times; prints page faults
  per step and peak memory.

``--curves N`` also trains N iterations of Mean Teacher and UA-MT through
:func:`sfr_teach.ssl.trainer.train` with the legacy code patched in and with the current code (same
seed), and prints the largest loss difference next to the difference a seed change makes.
Times are medians of interleaved repetitions (wall and process CPU); the load is printed with them.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_reference import load_avg  # noqa: E402
from bench_stitching import cpu_name  # noqa: E402

from sfr_teach.config import get_config  # noqa: E402
from sfr_teach.evaluate import sliding_window_predict  # noqa: E402
from sfr_teach.metrics import case_metrics  # noqa: E402
from sfr_teach.nets import build_net  # noqa: E402
from sfr_teach.nets.vnet import BatchNorm3d  # noqa: E402
from sfr_teach.ssl import build_method  # noqa: E402
from sfr_teach.ssl.base import EMATeacher, teacher_noise  # noqa: E402
from sfr_teach.ssl.batches import CropBatcher  # noqa: E402
from sfr_teach.ssl.losses import entropy  # noqa: E402
from sfr_teach.ssl.ua_mt import UAMT  # noqa: E402
from sfr_teach.torch_utils import reuse_freed_memory  # noqa: E402

CL = torch.channels_last_3d


# ------------------------------------------------------------------ the replaced code
@torch.no_grad()
def legacy_update(self, student, step):
    a = self.alpha(step)
    for t, s in zip(self.model.parameters(), student.parameters()):
        t.mul_(a).add_(s.detach(), alpha=1.0 - a)


@torch.no_grad()
def legacy_call(self, x, **kw):
    return self.model(x, **kw)


@torch.no_grad()
def legacy_uncertainty(self, x_u):
    passes = max(1, int(self.cfg.uamt_passes))
    reps = 2 if passes > 1 else 1
    probs = []
    for _ in range(math.ceil(passes / reps)):
        xr = x_u.repeat(reps, 1, 1, 1, 1)
        probs += list(torch.softmax(self.teacher(xr + teacher_noise(xr)).float(), 1).split(x_u.shape[0]))
    return entropy(torch.stack(probs[:passes]).mean(0))


@contextlib.contextmanager
def legacy_code():
    """Patch the replaced implementations back in for a ``with`` block."""
    saved = (EMATeacher.update, EMATeacher.__call__, UAMT.uncertainty, BatchNorm3d.forward)
    EMATeacher.update, EMATeacher.__call__, UAMT.uncertainty = legacy_update, legacy_call, legacy_uncertainty
    BatchNorm3d.forward = torch.nn.BatchNorm3d.forward
    try:
        yield
    finally:
        EMATeacher.update, EMATeacher.__call__, UAMT.uncertainty, BatchNorm3d.forward = saved


# ------------------------------------------------------------------ helpers
def interleaved(fns: dict, reps: int, warmup: int = 1) -> dict:
    """{name: (median wall s, median CPU s)} of calling every fn in turn, ``reps`` rounds."""
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for r in range(warmup + reps):
        for k, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            if r >= warmup:
                wall[k].append(time.perf_counter() - t)
                cpu[k].append(time.process_time() - c)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


def within(make_ctx, fn):
    """``fn`` wrapped so that every call runs inside a fresh ``make_ctx()`` (a legacy patch, autocast...)."""
    def run():
        with make_ctx():
            return fn()
    return run


def report(change: str, res: dict, unit: float = 1e3, note: str = "") -> None:
    (b_name, (bw, bc)), (a_name, (aw, ac)) = list(res.items())
    print(f"| {change} | {b_name}: {bw * unit:.2f} / {bc * unit:.2f} | {a_name}: {aw * unit:.2f} / {ac * unit:.2f} "
          f"| {bw / aw:.2f}x / {bc / ac:.2f}x | {note} |", flush=True)


def classroom():
    rc = get_config("classroom").retrain
    return rc, tuple(rc.patch_size)


def student(rc, fmt=CL):
    torch.manual_seed(0)
    return build_net("vnet", n_classes=2, n_filters=rc.n_filters, has_dropout=rc.dropout).to(memory_format=fmt)


def fake_volumes(n: int, shape=(144, 144, 44), seed: int = 0):
    """Random intensities with a blob label, LA classroom size (half resolution)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    vols = []
    for _ in range(n):
        c = rng.uniform(-0.3, 0.3, size=3)[:, None, None, None]
        label = (((grid - c) ** 2).sum(0) < 0.25).astype(np.uint8)
        image = (label * 1.5 + rng.standard_normal(shape)).astype(np.float32)
        vols.append((image, label))
    return vols


# ------------------------------------------------------------------ the changes
def bench_ema(rc, reps):
    s = student(rc)
    with torch.no_grad():
        for p in s.parameters():
            p.add_(0.01 * torch.randn_like(p))
    old, new = EMATeacher(student(rc)), EMATeacher(student(rc))
    res = interleaved({"loop": lambda: legacy_update(old, s, 50), "foreach": lambda: new.update(s, 50)}, reps)
    same = all(torch.equal(a, b) for a, b in zip(old.model.parameters(), new.model.parameters()))
    report("EMA update", res, note=f"teacher weights bit-identical after {reps + 1} updates: {same}")


def bench_teacher(rc, reps, patch):
    t = EMATeacher(student(rc))
    x = torch.randn(rc.batch_size - rc.labeled_bs, 1, *patch).contiguous(memory_format=CL)
    res = interleaved({"no_grad": lambda: legacy_call(t, x), "inference_mode": lambda: t(x)}, reps)
    report("teacher forward (Bu items)", res)


def bench_uamt(rc, reps, patch):
    m = build_method("ua_mt", student(rc), rc, 2)
    m.train()
    x = torch.randn(rc.batch_size - rc.labeled_bs, 1, *patch).contiguous(memory_format=CL)
    res = interleaved({"2 copies per forward": lambda: legacy_uncertainty(m, x),
                       f"{rc.uamt_passes} passes batched": lambda: m.uncertainty(x)}, reps)
    thr = math.log(2) * 0.75
    torch.manual_seed(1)
    u_old1, u_old2, u_new = legacy_uncertainty(m, x), legacy_uncertainty(m, x), m.uncertainty(x)
    same_code = float(((u_old1 < thr) == (u_old2 < thr)).float().mean())
    new_code = float(((u_old1 < thr) == (u_new < thr)).float().mean())
    report(f"UA-MT uncertainty (T={rc.uamt_passes})", res,
           note=f"certainty-mask agreement: old vs old (another draw) {same_code:.4f}, old vs new {new_code:.4f}; "
                f"mean abs(dU) old-old {float((u_old1 - u_old2).abs().mean()):.4f}, old-new "
                f"{float((u_old1 - u_new).abs().mean()):.4f}")


def bench_data(rc, reps, patch):
    vols = fake_volumes(5)
    lab = [{"image": vols[0][0][None], "label": vols[0][1][None]}]
    unl = [{"image": v[0][None], "pseudo": v[1][None]} for v in vols[1:]]
    as_t = [[{k: torch.as_tensor(v) for k, v in s.items()} for s in group] for group in (lab, unl)]
    bl = rc.labeled_bs
    bn, bt = CropBatcher(lab, unl, patch, bl, bl, 0), CropBatcher(*as_t, patch, bl, bl, 0)
    its = iter(range(10**6))
    its2 = iter(range(10**6))
    res = interleaved({"numpy samples": lambda: bn.batch(next(its)), "tensor samples": lambda: bt.batch(next(its2))},
                      reps * 5)
    same = all(all(torch.equal(a[k], b[k]) for k in a) for a, b in ((bn.batch(i), bt.batch(i)) for i in range(5)))
    report("training batch (crops + augmentation)", res, note=f"identical batches: {same}")


def _mt_step(rc, patch, fmt):
    net = student(rc, fmt)
    m = build_method("mean_teacher", net, rc, 2)
    m.need_unlabeled_logits = False
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=rc.lr, momentum=rc.momentum, weight_decay=rc.weight_decay)
    x = torch.randn(rc.batch_size, 1, *patch).contiguous(memory_format=fmt)
    y = torch.randint(0, 2, (rc.labeled_bs, *patch))
    it = iter(range(10**6))

    def step():
        i = next(it)
        out = m.step({"image": x, "label": y}, i)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        m.after_step(i)

    return step


def batchnorm_sweep(patch, reps, channels=(4, 8, 12, 16, 24, 32)):
    """Why the V-Net's BatchNorm3d exists: ``nn.BatchNorm3d`` forward + backward on (4, C, *patch), channels-last
    vs contiguous, on 1 and 2 threads (ms, medians)."""
    n = torch.get_num_threads()
    print("| nn.BatchNorm3d forward + backward, ms | " + " | ".join(f"C = {c}" for c in channels) + " |\n|---|"
          + "---|" * len(channels))
    for threads in (1, 2):
        torch.set_num_threads(threads)
        cells = {"channels_last_3d": [], "contiguous": []}
        for c in channels:
            torch.manual_seed(0)
            bn = torch.nn.BatchNorm3d(c)
            xs = {k: torch.randn(4, c, *patch).contiguous(memory_format=fmt).requires_grad_()
                  for k, fmt in (("channels_last_3d", CL), ("contiguous", torch.contiguous_format))}
            gs = {k: torch.randn_like(x) for k, x in xs.items()}
            res = interleaved({k: (lambda k=k: bn(xs[k]).backward(gs[k])) for k in xs}, reps)
            for k in cells:
                cells[k].append(f"{res[k][0] * 1e3:.1f}")
        for k, v in cells.items():
            print(f"| {threads} thread{'s' if threads > 1 else ''}, {k} | " + " | ".join(v) + " |")
    torch.set_num_threads(n)
    print()


def bench_batchnorm(rc, reps, patch):
    f = rc.n_filters
    for level, c in enumerate((f, 2 * f)):
        shape = (rc.batch_size, c, *(p // 2 ** level for p in patch))
        torch.manual_seed(0)
        x = torch.randn(shape).contiguous(memory_format=CL)
        g = torch.randn(shape).contiguous(memory_format=CL)
        old, new = torch.nn.BatchNorm3d(c), BatchNorm3d(c)
        xo, xn = x.clone().requires_grad_(), x.clone().requires_grad_()

        def fwd_bwd(bn, xi):
            return lambda: bn(xi).backward(g)

        res = interleaved({"nn.BatchNorm3d": fwd_bwd(old, xo), "vnet.BatchNorm3d": fwd_bwd(new, xn)}, reps * 4)
        xo.grad = xn.grad = None
        yo, yn = old(xo), new(xn)
        yo.backward(g)
        yn.backward(g)
        report(f"batch norm forward + backward {tuple(shape)}", res,
               note=f"max abs(y difference) {float((yo - yn).detach().abs().max()):.1e}, input gradient "
                    f"{float((xo.grad - xn.grad).abs().max()):.1e} (abs(grad) up to {float(xo.grad.abs().max()):.1f}); "
                    f"output channels-last: {yn.is_contiguous(memory_format=CL)}")

    res = interleaved({"nn.BatchNorm3d": within(legacy_code, _mt_step(rc, patch, CL)),
                       "vnet.BatchNorm3d": _mt_step(rc, patch, CL)}, reps)
    report("Mean-Teacher step, batch norm", res, unit=1.0)


def bench_bf16(rc, reps, patch):
    flags = {k: getattr(torch.cpu, f"_is_{k}_supported", lambda: None)() for k in ("amx_tile", "avx512_bf16")}

    def bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)

    res = interleaved({"float32": _mt_step(rc, patch, CL),
                       "bf16 autocast": within(bf16, _mt_step(rc, patch, CL))}, reps)
    report("Mean-Teacher step, CPU precision", res, unit=1.0,
           note=f"CPU {torch.backends.cpu.get_cpu_capability()}, native bf16 {flags}; not adopted: bf16 changes what "
                "is computed")
    net = student(rc).eval()
    x = torch.randn(rc.batch_size, 1, *patch).contiguous(memory_format=CL)

    def forward():
        with torch.inference_mode():
            return net(x)

    fns = {"float32": forward, "bf16 autocast": within(bf16, forward)}
    res = interleaved(fns, reps * 2)
    p32, p16 = (torch.softmax(fn().float(), 1) for fn in fns.values())
    agree = float((p32.argmax(1) == p16.argmax(1)).float().mean())
    report(f"evaluation forward, {rc.batch_size} windows, CPU precision", res,
           note=f"max abs(softmax difference) {float((p32 - p16).abs().max()):.3f}, argmax agreement {agree:.4f} "
                "(untrained weights)")


def bench_format(rc, reps, patch):
    res = interleaved({"contiguous": _mt_step(rc, patch, torch.contiguous_format),
                       "channels_last_3d": _mt_step(rc, patch, CL)}, reps)
    report("Mean-Teacher step, memory format", res, unit=1.0)


def bench_threads(rc, reps, patch):
    step = _mt_step(rc, patch, CL)
    n = torch.get_num_threads()

    def with_threads(k):
        def run():
            torch.set_num_threads(k)
            step()
            torch.set_num_threads(n)
        return run

    res = interleaved({"1 thread": with_threads(1), f"{max(n, 2)} threads": with_threads(max(n, 2))}, reps)
    report("Mean-Teacher step, torch threads", res, unit=1.0,
           note="wall time is what counts here (CPU time adds both threads)")


def malloc_child(rc, patch, mode: str, steps: int = 12) -> None:
    """One side of ``malloc``, in its own process: prints a JSON line of medians and page faults."""
    if mode == "reuse" and not reuse_freed_memory():
        raise SystemExit("bench_retrain_changes.py: mallopt is not available here (glibc only)")
    step = _mt_step(rc, patch, CL)
    for _ in range(3):
        step()
    f0, t = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, []
    for _ in range(steps):
        s = time.perf_counter()
        step()
        t.append(time.perf_counter() - s)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / steps
    ec = get_config("classroom").eval
    net = student(rc).eval()
    image, label = fake_volumes(1, shape=(104, 72, 44))[0]  # an LA test volume at half resolution
    e = []
    for _ in range(3):  # what the evaluation stage does per volume: the windows, then the metrics
        s = time.perf_counter()
        prob = sliding_window_predict(net, image, ec.patch_size, ec.stride, 2, batch_size=ec.batch_size)
        case_metrics(prob.argmax(0), label, 2)
        e.append(time.perf_counter() - s)
    print(json.dumps({"step": statistics.median(t), "eval": statistics.median(e), "faults": faults,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def bench_malloc(reps: int, threads: int) -> None:
    runs: dict = {"glibc default": [], "reuse_freed_memory": []}
    for _ in range(reps):
        for name, mode in (("glibc default", "default"), ("reuse_freed_memory", "reuse")):
            out = subprocess.run([sys.executable, __file__, "--malloc-child", mode, "--threads", str(threads)],
                                 check=True, capture_output=True, text=True).stdout
            runs[name].append(json.loads(out.strip().splitlines()[-1]))
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in runs.items()}
    b, a = med["glibc default"], med["reuse_freed_memory"]
    for what, key in (("Mean-Teacher step", "step"), ("evaluation of one volume (windows + metrics)", "eval")):
        print(f"| {what}, allocator ({reps} processes each) | glibc default: {b[key]:.3f} s | reuse_freed_memory: "
              f"{a[key]:.3f} s | {b[key] / a[key]:.2f}x | page faults per Mean-Teacher step {b['faults']:.0f} -> {a['faults']:.0f}; "
              f"peak memory {b['rss_mb']:.0f} -> {a['rss_mb']:.0f} MB |", flush=True)


def curves(rc, iters):
    from sfr_teach.ssl.trainer import train

    vols = fake_volumes(6)
    labeled, unlabeled = [vols[0]], [v[0] for v in vols[1:]]
    cfg = copy.deepcopy(rc)
    cfg.steps, cfg.log_every = iters, 1

    def run(method, seed, legacy=False):
        ctx = legacy_code() if legacy else contextlib.nullcontext()
        with ctx:
            t = time.perf_counter()
            r = train(method, labeled, unlabeled, cfg, 2, seed=seed, progress=False)
            dt = (time.perf_counter() - t) / iters
        return np.array([row["loss"] for row in r.history]), dt

    for method in ("mean_teacher", "ua_mt"):
        old, t_old = run(method, 0, legacy=True)
        new, t_new = run(method, 0)
        other, _ = run(method, 1)
        print(f"| loss curve {method}, {iters} it | legacy code: {t_old:.2f} s/it | current: {t_new:.2f} s/it "
              f"| {t_old / t_new:.2f}x | max abs(loss legacy - current) {np.abs(old - new).max():.2e} "
              f"(bit-identical: {bool(np.array_equal(old, new))}); seed 0 vs 1: {np.abs(new - other).max():.2e} |",
              flush=True)


CHANGES = ["ema", "teacher", "uamt", "data", "batchnorm", "format", "threads", "malloc", "bf16"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", default=CHANGES, choices=CHANGES)
    ap.add_argument("--reps", type=int, default=5, help="interleaved repetitions per change")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--curves", type=int, default=0, help="also train this many iterations before/after")
    ap.add_argument("--malloc-child", choices=["default", "reuse"], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    rc, patch = classroom()
    if a.malloc_child:
        return malloc_child(rc, patch, a.malloc_child)
    print(f"machine: {cpu_name()} ({os.cpu_count()} logical cores), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}; classroom retrain: {rc.n_filters} filters, patch {patch}, "
          f"batch {rc.batch_size} ({rc.labeled_bs} labelled), UA-MT T={rc.uamt_passes}")
    print(f"before: {load_avg()}\n")
    if "batchnorm" in a.only:
        batchnorm_sweep(patch, a.reps * 2)
    print("| change | before: wall / CPU | after: wall / CPU | speed-up wall / CPU | check |\n|---|---|---|---|---|")
    fns = {"ema": lambda: bench_ema(rc, a.reps), "teacher": lambda: bench_teacher(rc, a.reps, patch),
           "uamt": lambda: bench_uamt(rc, a.reps, patch), "data": lambda: bench_data(rc, a.reps, patch),
           "batchnorm": lambda: bench_batchnorm(rc, a.reps, patch),
           "format": lambda: bench_format(rc, a.reps, patch), "threads": lambda: bench_threads(rc, a.reps, patch),
           "malloc": lambda: bench_malloc(a.reps, a.threads), "bf16": lambda: bench_bf16(rc, a.reps, patch)}
    for name in a.only:
        fns[name]()
    if a.curves:
        curves(rc, a.curves)
    print(f"\nafter: {load_avg()}  (times in ms for the parts, s for whole steps)")


if __name__ == "__main__":
    main()
