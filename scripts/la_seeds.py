"""The LA classroom results with spread: every row over seeds, Mean Teacher +- SFR over five folds.

    python scripts/la_seeds.py run  --data-dir data/LA [--rows mt mt_sfr ...] [--seeds 1 2 3] [--folds 4]
    python scripts/la_seeds.py collect [--out results/la_seeds]

``run`` launches one ``sfr-teach run --preset classroom`` per (row, seed, fold) into
``runs/la_seeds/<row>/s<seed>_f<fold>/`` and skips every run whose ``metrics.json`` exists, so it resumes
where it stopped (a CPU session ends whatever runs). The SFR rows of one (seed, fold) share one SAM
fine-tuning: the first SFR row made for that (seed, fold) makes it, the others reuse it (``--sam-from``).
Fold 4 is the default validation split (the last 16 names of ``train.list``); folds 0-4 rotate the test
split over all 80 volumes, each fold's labelled volume being the first remaining name of ``train.list``.

``collect`` writes ``<out>.csv`` (one line per run, with its command), ``<out>_cases.csv`` (one line per
test case and run), ``<out>.md`` (per row: seeds, mean +- std over seeds of each run's mean Dice / HD95;
per method: the paired per-case difference +SFR - baseline, each case averaged over the seeds both
variants share, with the Wilcoxon signed-rank p-value) and ``<out>.png`` (the figure of the results page).
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

# row -> (method, extra arguments); "sfr" rows pair with the baseline row of the same method
ROWS: Dict[str, Tuple[str, List[str]]] = {
    "mt": ("mean_teacher", []),
    "mt_sfr": ("mean_teacher", ["--sfr"]),
    "st": ("self_training", []),
    "st_sfr": ("self_training", ["--sfr"]),
    "mt_sfrplus": ("mean_teacher", ["--sfr-plus"]),
    "mt_online": ("mean_teacher", ["--sfr", "--pseudo-labels", "online"]),
    "sup": ("supervised", []),
    "uamt": ("ua_mt", []),
    "uamt_sfr": ("ua_mt", ["--sfr"]),
    "acmt": ("ac_mt", []),
    "acmt_sfr": ("ac_mt", ["--sfr"]),
    "magic": ("magicnet", []),
    "magic_sfr": ("magicnet", ["--sfr"]),
}
PAIRS = [("mt", "mt_sfr"), ("mt", "mt_sfrplus"), ("mt_sfr", "mt_sfrplus"), ("mt", "mt_online"), ("mt_sfr", "mt_online"),
         ("st", "st_sfr"), ("uamt", "uamt_sfr"), ("acmt", "acmt_sfr"), ("magic", "magic_sfr")]
RUNS = Path("runs/la_seeds")


def run_dir(row: str, seed: int, fold: int) -> Path:
    return RUNS / row / f"s{seed}_f{fold}"


def command(row: str, seed: int, fold: int, data_dir: str, threads: int) -> List[str]:
    method, extra = ROWS[row]
    cmd = ["sfr-teach", "run", "--preset", "classroom", "--dataset", "la", "--data-dir", data_dir,
           "--labeled", "1", "--seed", str(seed), "--method", method, *extra,
           "--set", f"data.fold={fold}", "--set", f"num_threads={threads}"]
    if "--sfr" in extra or "--sfr-plus" in extra:
        makers = [r for r in ROWS if r != row and ("--sfr" in ROWS[r][1] or "--sfr-plus" in ROWS[r][1])
                  and (run_dir(r, seed, fold) / "sam" / "final.pt").exists()]
        if makers:
            cmd += ["--sam-from", str(run_dir(makers[0], seed, fold))]
    return cmd + ["--out", str(run_dir(row, seed, fold))]


def run(rows: List[str], seeds: List[int], folds: List[int], data_dir: str, threads: int) -> None:
    for fold in folds:
        for seed in seeds:
            for row in rows:
                out = run_dir(row, seed, fold)
                if (out / "metrics.json").exists():
                    continue
                cmd = command(row, seed, fold, data_dir, threads)
                out.mkdir(parents=True, exist_ok=True)
                (out / "command.txt").write_text(shlex.join(cmd) + "\n")
                print(f">> {shlex.join(cmd)}", flush=True)
                t = time.time()
                with open(out / "stdout.log", "w") as log:
                    rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
                print(f"   exit {rc} after {(time.time() - t) / 60:.1f} min", flush=True)
                if rc != 0:
                    sys.exit(f"la_seeds: {out / 'stdout.log'} shows why the run failed; fix it and re-run (finished runs are kept)")


# ----------------------------------------------------------------------------- collect
def load_runs() -> List[dict]:
    runs = []
    for mj in sorted(RUNS.glob("*/s*_f*/metrics.json")):
        m = json.loads(mj.read_text())
        s = m["summary"]
        seed, fold = (int(x[1:]) for x in mj.parent.name.split("_"))
        runs.append({
            "row": mj.parent.parent.name, "method": s["method"], "variant": s["variant"], "seed": seed,
            "fold": fold, "dice": s["metrics"]["dice"]["mean"], "hd95": s["metrics"]["hd95"]["mean"],
            "pseudo_label_dice": (s.get("pseudo_label_quality") or {}).get("dice_mean"),
            "minutes": round(s["timings"]["total_s"] / 60, 1),
            "sam": s.get("sam") or "", "device": s.get("device", ""),
            "cases": {c["name"]: (c["dice"], c["hd95"]) for c in m["cases"]},
            "command": (mj.parent / "command.txt").read_text().strip() if (mj.parent / "command.txt").exists() else "",
        })
    return runs


def sam_test_dice(run: Path) -> Dict[str, float]:
    """SAM's own Dice on each test volume of an SFR run (its fine-tuned SAM predicts them), cached in
    ``<run>/sam_test.json``: where SAM beats the baseline V-Net, its pseudo-labels can help."""
    cache = run / "sam_test.json"
    if not cache.exists():
        from sfr_teach import pipeline
        from sfr_teach.config import config_from_dict
        from sfr_teach.sam.pseudo import generate_pseudo_labels

        cfg = config_from_dict(json.loads((run / "config.json").read_text()))
        data = pipeline.load_data(cfg)
        seg = pipeline.run_finetune(cfg, data)  # loads the finished fine-tuning (sam/final.pt)
        pls = generate_pseudo_labels(seg, data.test, cfg.sam, progress=False)
        cache.write_text(json.dumps({p.name: p.dice for p in pls}, indent=1))
    return json.loads(cache.read_text())


def paired(runs: List[dict], base: str, other: str, folds: Optional[List[int]] = None) -> Optional[dict]:
    """Per-case Dice of ``other`` - ``base`` over the (seed, fold) runs both have; cases averaged over seeds."""
    from scipy.stats import wilcoxon

    by = {(r["row"], r["seed"], r["fold"]): r for r in runs}
    keys = [(s, f) for (row, s, f) in by if row == base and (other, s, f) in by and (folds is None or f in folds)]
    if not keys:
        return None
    diffs: Dict[Tuple[int, str], List[float]] = {}
    for s, f in keys:
        a, b = by[(base, s, f)]["cases"], by[(other, s, f)]["cases"]
        for name in a:
            diffs.setdefault((f, name), []).append(b[name][0] - a[name][0])
    d = np.array([np.mean(v) for v in diffs.values()])
    p = float(wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    return {"base": base, "other": other, "n_cases": len(d), "runs": len(keys), "mean_diff": float(d.mean()),
            "std_diff": float(d.std(ddof=1)) if len(d) > 1 else 0.0, "better": int((d > 0).sum()), "p": p,
            "diffs": d.tolist(), "folds": sorted({f for _, f in keys}), "seeds": sorted({s for s, _ in keys}),
            "base_dice": [by[(base, *k)]["dice"] for k in keys], "other_dice": [by[(other, *k)]["dice"] for k in keys]}


def row_stats(runs: List[dict], row: str, fold: int = 4) -> Optional[dict]:
    rs = [r for r in runs if r["row"] == row and r["fold"] == fold]
    if not rs:
        return None
    dice, hd = np.array([r["dice"] for r in rs]), np.array([r["hd95"] for r in rs])
    pl = [r["pseudo_label_dice"] for r in rs if r["pseudo_label_dice"] is not None]
    sd = lambda a: float(a.std(ddof=1)) if len(a) > 1 else float("nan")  # noqa: E731
    return {"row": row, "method": rs[0]["method"], "variant": rs[0]["variant"], "seeds": len(rs),
            "dice": float(dice.mean()), "dice_sd": sd(dice), "hd95": float(hd.mean()), "hd95_sd": sd(hd),
            "pseudo_label_dice": float(np.mean(pl)) if pl else None, "minutes": float(np.mean([r["minutes"] for r in rs]))}


def _pm(mean: float, sd: float, scale: float = 1.0, digits: int = 1) -> str:
    return f"{mean * scale:.{digits}f}" + ("" if np.isnan(sd) else f" ± {sd * scale:.{digits}f}")


def markdown(runs: List[dict]) -> str:
    lines = ["| row | method | variant | seeds | Dice % (mean ± sd over seeds) | HD95 mm | pseudo-label Dice % | min / run |",
             "|---|---|---|---|---|---|---|---|"]
    for row in ROWS:
        st = row_stats(runs, row)
        if st:
            pl = "" if st["pseudo_label_dice"] is None else f"{100 * st['pseudo_label_dice']:.1f}"
            lines.append(f"| {row} | {st['method']} | {st['variant']} | {st['seeds']} | {_pm(st['dice'], st['dice_sd'], 100)} | "
                         f"{_pm(st['hd95'], st['hd95_sd'])} | {pl} | {st['minutes']:.1f} |")
    folds = sorted({r["fold"] for r in runs if r["row"] in ("mt", "mt_sfr")})
    if len(folds) > 1:  # Mean Teacher +- SFR on each test split of the rotation
        lines += ["", "Mean Teacher ± SFR on each fold (fold f tests the (f+1)-th block of 16 names of `train.list`; "
                  "its labelled volume is the first name outside that block):", "", "| fold | seeds | baseline Dice % | + SFR Dice % | pseudo-label Dice % | "
                  "mean diff per case | better on |", "|---|---|---|---|---|---|---|"]
        for f in folds:
            pr = paired(runs, "mt", "mt_sfr", [f])
            if pr:
                pl = row_stats(runs, "mt_sfr", f)["pseudo_label_dice"]
                lines.append(f"| {f} | {','.join(map(str, pr['seeds']))} | {100 * np.mean(pr['base_dice']):.1f} | "
                             f"{100 * np.mean(pr['other_dice']):.1f} | {'' if pl is None else f'{100 * pl:.1f}'} | "
                             f"{100 * pr['mean_diff']:+.1f} | {pr['better']}/{pr['n_cases']} |")
    lines += ["", "Paired per-case difference (+SFR − baseline Dice, percentage points; each case averaged over the "
              "seeds both runs share; Wilcoxon signed-rank test):", "",
              "| comparison | test split | seeds | cases | mean diff ± sd | better on | p |", "|---|---|---|---|---|---|---|"]
    for base, other in PAIRS:
        for folds, split in (([4], "fold 4 (last 16)"), ([0, 1, 2, 3, 4], "5 folds (80 volumes)")):
            pr = paired(runs, base, other, folds)
            if pr and (split.startswith("fold 4") or len(pr["folds"]) > 1):
                split_txt = split if split.startswith("fold 4") else f"folds {','.join(map(str, pr['folds']))}"
                lines.append(f"| {other} − {base} | {split_txt} | {','.join(map(str, pr['seeds']))} | {pr['n_cases']} | "
                             f"{100 * pr['mean_diff']:+.1f} ± {100 * pr['std_diff']:.1f} | {pr['better']}/{pr['n_cases']} | "
                             f"{pr['p']:.3g} |")
    return "\n".join(lines) + "\n"


def by_diagonal(scatter: List[Tuple[float, float, float]]) -> str:
    """Markdown: the SFR gain where SAM labels a case better than the baseline V-Net, and where worse.

    scatter: ``(SAM Dice, baseline Dice, +SFR - baseline Dice)`` per (seed, fold, case), fractions."""
    sam, base, gain = (np.asarray(v, dtype=float) for v in zip(*scatter))
    lines = ["", "Mean Teacher: the +SFR gain by whether SAM (its fine-tuned SAM predicting the test volume) or the "
             "baseline V-Net segments a case better (every seed, fold and case; the scatter figure):", "",
             "| where | seed-fold-cases | mean +SFR − baseline | +SFR better on |", "|---|---|---|---|"]
    for what, sel in (("SAM better than the baseline", sam > base), ("baseline at least as good as SAM", sam <= base)):
        if sel.any():
            lines.append(f"| {what} | {int(sel.sum())} of {len(sam)} | {100 * gain[sel].mean():+.1f} | "
                         f"{int((gain[sel] > 0).sum())} ({100 * (gain[sel] > 0).mean():.0f} %) |")
    return "\n".join(lines) + "\n"


def collect(out: Path) -> None:
    from sfr_teach.csv_io import write_csv

    runs = load_runs()
    if not runs:
        sys.exit(f"la_seeds: no finished run under {RUNS}; run `python scripts/la_seeds.py run --data-dir data/LA` first")
    keys = ["row", "method", "variant", "seed", "fold", "dice", "hd95", "pseudo_label_dice", "minutes", "sam", "device", "command"]
    write_csv(out.with_suffix(".csv"), [{k: r[k] for k in keys} for r in runs])
    write_csv(out.parent / f"{out.name}_cases.csv",
              [{"row": r["row"], "seed": r["seed"], "fold": r["fold"], "case": n, "dice": d, "hd95": h}
               for r in runs for n, (d, h) in r["cases"].items()])
    from sfr_teach import viz

    rows = []
    pr = paired(runs, "mt", "mt_sfr", [0, 1, 2, 3, 4])
    if pr and len(pr["folds"]) > 1:  # the headline: Mean Teacher +- SFR with the test split rotated
        pl = [r["pseudo_label_dice"] for r in runs if r["row"] == "mt_sfr" and r["pseudo_label_dice"] is not None]
        rows.append({"method": f"mean_teacher, folds {','.join(map(str, pr['folds']))} ({pr['n_cases']} cases)",
                     "baseline": pr["base_dice"], "sfr": pr["other_dice"], "diffs": pr["diffs"], "p": pr["p"],
                     "pseudo_label_dice": float(np.mean(pl))})
    for base, other in PAIRS:
        pr = paired(runs, base, other, [4])
        if pr and base != "mt_sfr" and other != "mt_online":
            seeds = lambda row: [r["dice"] for r in runs if r["row"] == row and r["fold"] == 4]  # noqa: E731
            pl = row_stats(runs, other)["pseudo_label_dice"]
            n = len(pr["seeds"])
            label = f"{ROWS[base][0]}{' vs SFR+' if other == 'mt_sfrplus' else ''} ({n} seed{'s' if n > 1 else ''})"
            rows.append({"method": label, "baseline": seeds(base), "sfr": seeds(other), "diffs": pr["diffs"],
                         "p": pr["p"], "pseudo_label_dice": pl})
    scatter = [(d, base["cases"][n][0], other["cases"][n][0] - base["cases"][n][0])
               for other in runs if other["row"] == "mt_sfr"
               for base in runs if base["row"] == "mt" and (base["seed"], base["fold"]) == (other["seed"], other["fold"])
               for n, d in sam_test_dice(RUNS / "mt_sfr" / f"s{other['seed']}_f{other['fold']}").items()]
    md = markdown(runs) + (by_diagonal(scatter) if scatter else "")
    out.with_suffix(".md").write_text(md)
    if scatter:
        x, y, g = zip(*scatter)
        viz.save_figure(viz.plot_gain_vs_pseudo_label(x, y, g, title="Mean Teacher, LA classroom, every (seed, fold, case): "
                                                      "SAM's Dice vs the baseline's, coloured by the SFR gain"),
                        out.parent / f"{out.name}_scatter.png", dpi=110)
    if rows:
        viz.save_figure(viz.plot_sfr_comparison(rows, title="LA classroom, 1 labelled volume, offline tiny SAM: "
                                                "baseline vs + SFR (fold 4's 16 volumes unless named)"),
                        out.with_suffix(".png"), dpi=110)
    print(md)


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--data-dir", default="data/LA", help="LA folder as you would give it to sfr-teach (relative paths stay relative)")
    r.add_argument("--rows", nargs="+", default=["mt", "mt_sfr", "st", "st_sfr"], choices=list(ROWS))
    r.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    r.add_argument("--folds", nargs="+", type=int, default=[4])
    r.add_argument("--threads", type=int, default=2)
    c = sub.add_parser("collect")
    c.add_argument("--out", default="results/la_seeds")
    a = ap.parse_args(argv)
    if a.cmd == "run":
        run(a.rows, a.seeds, a.folds, a.data_dir, a.threads)
    else:
        collect(Path(a.out))


if __name__ == "__main__":
    main()
