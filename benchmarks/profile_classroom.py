"""Profile of a classroom SFR run on real LA: time per stage (projected to the whole run) and per operation.

    python benchmarks/profile_classroom.py                       # $SFR_LA_DIR, else data/LA
    python benchmarks/profile_classroom.py --data-dir data/LA --steps 30 --sam-steps 20 --volumes 2

Runs every stage of ``sfr-teach run --preset classroom --sfr`` (Mean Teacher + SFR, precomputed
pseudo-labels) through the pipeline's own functions, each on a reduced amount of work, and projects
the classroom preset's full amounts from the per-unit times:

=================  ======================================  =========================================
stage              measured here                           classroom run
=================  ======================================  =========================================
load data          ``--volumes`` + 1 LA volumes             1 labelled + unlabelled + test volumes
SAM fine-tuning    ``--sam-steps`` steps                    ``sam.steps`` (300)
pseudo-labels      ``--volumes`` unlabelled volumes         every unlabelled volume
re-training        ``--steps`` iterations (after 2 warm-up) ``retrain.steps`` (1000)
evaluation         ``--volumes`` test volumes               every test volume
=================  ======================================  =========================================

then a ``torch.profiler`` table of ``--op-steps`` re-training iterations (self CPU time per operator)
and a cProfile summary of the same iterations' Python functions (data, losses, optimiser). Prints
the machine, torch threads and the load (``uptime``) before and after: on a shared machine the
absolute times are upper bounds.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_reference import load_avg  # noqa: E402
from bench_stitching import cpu_name  # noqa: E402

from sfr_teach.config import get_config  # noqa: E402
from sfr_teach.data.paths import resolve_la_dir  # noqa: E402
from sfr_teach.pipeline import DataBundle, run_evaluate, run_finetune, run_pseudo_labels, run_retrain  # noqa: E402
from sfr_teach.torch_utils import reuse_freed_memory  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None, help="LA folder holding train.list (default $SFR_LA_DIR)")
    ap.add_argument("--steps", type=int, default=20, help="re-training iterations timed (after 2 warm-up)")
    ap.add_argument("--sam-steps", type=int, default=20, help="SAM fine-tuning steps timed")
    ap.add_argument("--volumes", type=int, default=2, help="unlabelled and test volumes timed")
    ap.add_argument("--op-steps", type=int, default=3, help="re-training iterations under the profilers")
    ap.add_argument("--method", default="mean_teacher")
    ap.add_argument("--top", type=int, default=15, help="rows of the operator / function tables")
    a = ap.parse_args(argv)
    from sfr_teach.data import LADataset, normalize_volume

    full = get_config("classroom")
    cfg = get_config("classroom", **{"data.data_dir": str(resolve_la_dir(a.data_dir)), "retrain.sfr": True,
                                     "retrain.method": a.method, "sam.steps": a.sam_steps,
                                     "retrain.log_every": 1000, "retrain.ckpt_every": 10**6})
    torch.set_num_threads(cfg.num_threads)
    reuse_freed_memory()  # as run_pipeline does
    print(f"machine: {cpu_name()} ({os.cpu_count()} logical cores), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()} (interop {torch.get_num_interop_threads()})")
    print(f"before: {load_avg()}", flush=True)

    ds = LADataset(cfg.data.data_dir, downsample=cfg.data.downsample, num_classes=cfg.data.num_classes)
    split = ds.split(cfg.data.labeled, cfg.data.val)
    names = split.labeled + split.unlabeled[: a.volumes] + split.test[: a.volumes]
    vols, t_load = timed(lambda: [normalize_volume(ds.load(n), cfg.data.normalize) for n in names])
    k = a.volumes
    data = DataBundle(labeled=vols[:1], unlabeled=vols[1 : 1 + k], test=vols[1 + k :], num_classes=2)
    n_unl, n_test = len(split.unlabeled), len(split.test)
    stages = []  # (stage, measured units, seconds, units in a classroom run)
    stages.append(("load data (per volume)", len(names), t_load, 1 + n_unl + n_test))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        seg, t = timed(lambda: run_finetune(cfg, data, out_dir=out / "sam"))
        stages.append(("SAM fine-tuning (per step)", a.sam_steps, t, full.sam.steps))
        pseudo, t = timed(lambda: run_pseudo_labels(cfg, seg, data, out_dir=out / "pl"))
        stages.append(("pseudo-labels (per volume)", k, t, n_unl))
        cfg.retrain.steps = 2
        _, t_warm = timed(lambda: run_retrain(cfg, data, pseudo, out_dir=out / "warm"))
        cfg.retrain.steps = a.steps + 2
        result, t = timed(lambda: run_retrain(cfg, data, pseudo, out_dir=out / "rt"))
        stages.append((f"re-training {a.method} + SFR (per iteration)", a.steps, t - t_warm, full.retrain.steps))
        _, t = timed(lambda: run_evaluate(cfg, result.model, data, out_dir=out / "eval"))
        stages.append(("evaluation (per test volume)", k, t, n_test))

        print(f"\n## Stages (classroom preset, {a.method} + SFR; projected = per unit x classroom units)\n")
        print("| stage | measured units | s per unit | classroom units | projected s | share |\n|---|---|---|---|---|---|")
        total = sum(t / n * full_n for _, n, t, full_n in stages)
        for name, n, t, full_n in stages:
            proj = t / n * full_n
            print(f"| {name} | {n} | {t / n:.3f} | {full_n} | {proj:.0f} | {proj / total:.0%} |")
        print(f"| **whole run** | | | | **{total:.0f} ({total / 60:.1f} min)** | |", flush=True)

        cfg.retrain.steps = a.op_steps
        from torch.profiler import ProfilerActivity, profile

        prof = cProfile.Profile()
        with profile(activities=[ProfilerActivity.CPU]) as p:
            prof.enable()
            run_retrain(cfg, data, pseudo, out_dir=out / "ops")
            prof.disable()
    print(f"\n## Operators: {a.op_steps} re-training iterations (torch.profiler, self CPU time)\n")
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.top))
    s = io.StringIO()
    pstats.Stats(prof, stream=s).strip_dirs().sort_stats("tottime").print_stats(a.top)
    print("## Python functions: the same iterations (cProfile, by own time)\n")
    print("\n".join(s.getvalue().splitlines()[:a.top + 12]))
    print(f"after: {load_avg()}")


if __name__ == "__main__":
    main()
