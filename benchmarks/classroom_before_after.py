"""A whole classroom SFR run before and after the speed work, same seed, same machine, one after the other.

    python benchmarks/classroom_before_after.py --data-dir ../shared/data/LA            # both sides
    python benchmarks/classroom_before_after.py --data-dir ../shared/data/LA --report   # only rewrite results/

"Before" is the package as it was when issue 12 was filed (``--before``, default ``a46b161``),
checked out with ``git worktree`` under ``<work>/before-src`` and imported from there
(``PYTHONPATH``); "after" is this checkout. Both sides run the same command line, the README's
classroom job with Mean Teacher + SFR::

    python -m sfr_teach.cli run --preset classroom --dataset la --data-dir <LA> --labeled 1
        --method mean_teacher --sfr --seed <seed> --out <work>/<side>

(classroom preset: 2 torch threads; 1 labelled, 63 unlabelled, the last 16 ``train.list`` volumes
scored). Each side is one child process: its wall time, peak resident memory (``os.wait4``) and
the stage times and Dice it writes to ``metrics.json`` are collected into
``results/speed_classroom_runs.{csv,md}``. Sides run one at a time, so nothing else of ours
competes for the cores; the load average before and after each side is recorded with it (a busy
machine makes both slower, so read the two rows together).

Resumable: a side whose ``<work>/<side>/side.json`` exists is not run again (``--force`` re-runs).
``--rep N`` (N > 1) runs another pair into ``<work>/repN/``; give ``--sides after before`` for every
other pair so that neither side always runs first. The report reads every pair it finds and compares
the sides' means over pairs.

One whole run per side has no spread, and a shared virtual machine drifts, so ``--stages N``
also times each stage on a reduced amount of work (SAM 40 steps, pseudo-labels of 6 volumes,
Mean Teacher + SFR 60 iterations; same classroom geometry, 2 threads), alternating before / after
``N`` times, and writes the medians next to the whole runs. Those call the stage functions directly, not
``run_pipeline``, so they measure the code changes without ``reuse_freed_memory`` (the whole runs have it).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_stitching import cpu_name  # noqa: E402

from sfr_teach.csv_io import write_csv  # noqa: E402
from sfr_teach.data.paths import portable_path, resolve_la_dir  # noqa: E402

STAGES = ("sam_finetune_s", "pseudo_labels_s", "retrain_s", "evaluate_s", "total_s")


def child_env(src: Path) -> Dict[str, str]:
    """The environment of a child run: ``sfr_teach`` imported from ``src``, no progress bars."""
    return {**os.environ, "PYTHONPATH": str(src), "TQDM_DISABLE": "1"}


def speedups(before: Dict[str, Any], after: Dict[str, Any], keys) -> str:
    """``"<key> 1.23x, ..."``: before / after for every key the after side has."""
    return ", ".join(f"{k[:-2].replace('_', ' ')} {before[k] / after[k]:.2f}x" for k in keys if after.get(k))


def checkout(rev: str, dest: Path) -> Path:
    """``git worktree add --detach dest rev`` once (the package of ``rev`` lives in ``dest``)."""
    if not (dest / "sfr_teach").is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(dest), rev], check=True)
    return dest


def run_side(side: str, src: Path, args, work: Path) -> Dict[str, Any]:
    out = work / side
    cmd = [sys.executable, "-m", "sfr_teach.cli", "run", "--preset", "classroom", "--dataset", "la",
           "--data-dir", str(args.data_dir), "--labeled", "1", "--method", "mean_teacher", "--sfr",
           "--seed", str(args.seed), "--out", str(out)]
    env = child_env(src)
    out.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with open(out / "stdout.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=str(work), env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{side}: the run failed (exit {os.waitstatus_to_exitcode(status)}); see {out / 'stdout.log'}")
    summary = json.loads((out / "metrics.json").read_text())["summary"]
    metrics = summary["metrics"]
    row = {
        "side": side, "code": args.before if side == "before" else git_head(), "seed": args.seed,
        "wall_s": round(wall, 1), "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2),
        **{k: round(float(summary["timings"].get(k, float("nan"))), 1) for k in STAGES},
        "dice": round(100 * float(metrics["dice"]["mean"]), 2), "hd95": round(float(metrics["hd95"]["mean"]), 2),
        "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2),
        "command": " ".join(portable_path(c) if os.path.isabs(c) else c for c in cmd[1:]), "cpu": cpu_name(),
    }
    (out / "side.json").write_text(json.dumps(row, indent=2))
    return row


STAGE_CHILD = r"""
import json, sys, tempfile, time, torch
from pathlib import Path
import sfr_teach.pipeline as P
from sfr_teach.config import get_config
torch.set_num_threads(2)
cfg = get_config("classroom", {"sam.steps": 40, "sam.warmup": 4, "retrain.steps": 60, "retrain.method": "mean_teacher",
                               "retrain.sfr": True, "data.data_dir": sys.argv[1], "data.labeled": 1, "num_threads": 2})
cfg.data.dataset = "la"
data = P.load_data(cfg)
data.unlabeled = data.unlabeled[:6]
out = Path(tempfile.mkdtemp())
res = {}
t = time.perf_counter(); seg = P.run_finetune(cfg, data, out_dir=out / "sam"); res["sam_40_steps_s"] = time.perf_counter() - t
t = time.perf_counter(); pl = P.run_pseudo_labels(cfg, seg, data, out_dir=out / "pl"); res["pseudo_6_volumes_s"] = time.perf_counter() - t
t = time.perf_counter(); P.run_retrain(cfg, data, pl, out_dir=out / "rt"); res["retrain_60_iterations_s"] = time.perf_counter() - t
print("STAGES " + json.dumps(res))
"""


def time_stages(args, work: Path, reps: int) -> List[Dict[str, Any]]:
    """Alternate before / after ``reps`` times on the reduced stages (STAGE_CHILD); one row per side with medians."""
    src = {"before": checkout(args.before, work / "before-src"), "after": ROOT}
    runs: Dict[str, List[Dict[str, float]]] = {"before": [], "after": []}
    for _ in range(reps):
        for side in ("before", "after"):
            out = subprocess.run([sys.executable, "-c", STAGE_CHILD, str(args.data_dir)], env=child_env(src[side]), cwd=str(work),
                                 capture_output=True, text=True, check=True).stdout
            runs[side].append(json.loads(out.split("STAGES ", 1)[1]))
            print(side, runs[side][-1], flush=True)
    rows = []
    for side, rs in runs.items():
        row: Dict[str, Any] = {"side": side, "code": args.before if side == "before" else git_head(), "reps": reps}
        row.update({k: round(statistics.median(r[k] for r in rs), 2) for k in rs[0]})
        row["load_avg"] = round(os.getloadavg()[0], 2)
        rows.append(row)
    (work / "stages.json").write_text(json.dumps(rows, indent=2))
    return rows


def git_head() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()


def write_results(rows: List[Dict[str, Any]], stages: List[Dict[str, Any]], stem: Path) -> None:
    write_csv(stem.with_suffix(".csv"), rows, list(rows[0]))
    cpus = ", ".join(sorted({r.get("cpu", "CPU not recorded") for r in rows}))
    md = ["# A whole classroom SFR run, before and after the speed work", "",
          "Written by `benchmarks/classroom_before_after.py` (its docstring has the protocol): Mean Teacher + SFR, "
          "classroom preset on real LA with its offline tiny SAM (1 labelled, 63 unlabelled, 16 scored), same seed, "
          "the two sides one "
          f"after the other on the project's 2-core CPU machine ({cpus}, {os.cpu_count()} logical CPUs seen), "
          "2 torch threads.",
          "", "| pair | side | code | seed | SAM fine-tune s | pseudo-labels s | re-training s | evaluation s | total s | "
          "wall s | peak RSS GB | Dice % | HD95 mm | load avg before / after |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['rep']} | {r['side']} | `{r['code']}` | {r['seed']} | {r['sam_finetune_s']} | {r['pseudo_labels_s']} | "
                  f"{r['retrain_s']} | {r['evaluate_s']} | {r['total_s']} | {r['wall_s']} | {r['peak_rss_gb']} | "
                  f"{r['dice']} | {r['hd95']} | {r['load_before']} / {r['load_after']} |")
    by = {side: [r for r in rows if r["side"] == side] for side in ("before", "after")}
    if by["before"] and by["after"]:
        mean = {side: {k: statistics.mean(r[k] for r in rs) for k in STAGES + ("wall_s",)} for side, rs in by.items()}
        b, a = mean["before"], mean["after"]
        pairs = {}  # rep -> {side: row}, so a per-pair ratio only compares the two sides of one pair
        for r in rows:
            pairs.setdefault(r["rep"], {})[r["side"]] = r
        complete = [p for _, p in sorted(pairs.items()) if len(p) == 2]
        n = len(complete)
        md += ["", f"Speed-up (before / after, means over {len(by['before'])} / {len(by['after'])} whole runs): "
               + speedups(b, a, STAGES) + f"; wall {b['wall_s'] / a['wall_s']:.2f}x"
               + (" (per pair: " + ", ".join(f"{p['before']['wall_s'] / p['after']['wall_s']:.2f}x" for p in complete)
                  + ")" if n > 1 else "")
               + ". Dice: before " + ", ".join(str(r["dice"]) for r in by["before"]) + "; after "
               + ", ".join(str(r["dice"]) for r in by["after"]) + " (same seed; the seed spread of this run is in "
               "results/la_seeds.md)."
               + (" Fewer than two complete pairs, no spread: the alternated stage timings below are the comparison to read."
                  if n <= 1 else "")]
    if stages:
        keys = [k for k in stages[0] if k.endswith("_s")]
        md += ["", f"## Stages on reduced work, before / after alternated {stages[0]['reps']} times (medians, seconds)", "",
               "| side | code | " + " | ".join(k[:-2].replace("_", " ") for k in keys) + " |",
               "|---|---|" + "---|" * len(keys)]
        md += [f"| {r['side']} | `{r['code']}` | " + " | ".join(str(r[k]) for k in keys) + " |" for r in stages]
        sb = {r["side"]: r for r in stages}
        if {"before", "after"} <= set(sb):
            md += ["", "Speed-up (before / after): " + speedups(sb["before"], sb["after"], keys) + "."]
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", help="LA folder holding train.list (default: $SFR_LA_DIR)")
    ap.add_argument("--before", default="a46b161", help="git revision of the 'before' side (default a46b161)")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--sides", nargs="+", default=["before", "after"], choices=["before", "after"])
    ap.add_argument("--work", default="runs/before_after")
    ap.add_argument("--out", default=str(ROOT / "results" / "speed_classroom_runs"))
    ap.add_argument("--force", action="store_true", help="run sides again even if finished")
    ap.add_argument("--report", action="store_true", help="only rewrite results/ from finished sides")
    ap.add_argument("--rep", type=int, default=1, help="which pair to run: 1 in <work>/, N > 1 in <work>/repN/")
    ap.add_argument("--stages", type=int, default=0, metavar="N",
                    help="also time the reduced stages, before / after alternated N times")
    args = ap.parse_args(argv)
    work = Path(args.work).resolve()
    if not args.report:
        args.data_dir = Path(resolve_la_dir(args.data_dir)).resolve()
        pair = work if args.rep == 1 else work / f"rep{args.rep}"
        for side in args.sides:
            done = pair / side / "side.json"
            if done.is_file() and not args.force:
                continue
            src = checkout(args.before, work / "before-src") if side == "before" else ROOT
            print(f"{side}: running ({src.name}), pair {args.rep}", flush=True)
            print({**run_side(side, src, args, pair), "rep": args.rep}, flush=True)
        if args.stages:
            time_stages(args, work, args.stages)
    pairs = [(1, work)] + sorted((int(d.name[3:]), d) for d in work.glob("rep*") if d.name[3:].isdigit())
    rows = [{**json.loads((d / s / "side.json").read_text()), "rep": n} for n, d in pairs for s in ("before", "after")
            if (d / s / "side.json").is_file()]
    stages = json.loads((work / "stages.json").read_text()) if (work / "stages.json").is_file() else []
    if rows:
        write_results(rows, stages, Path(args.out))
        print((Path(args.out).with_suffix(".md")).read_text())


if __name__ == "__main__":
    main()
