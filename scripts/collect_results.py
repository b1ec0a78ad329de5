"""Collect the ``metrics.json`` of several results folders into one table for the book.

    python scripts/collect_results.py runs/la_* --out results/la_classroom

writes ``<out>.csv``, ``<out>.json`` and ``<out>.md``: one row per run with method, variant (baseline / SFR /
SFR+), preset, data, which SAM made the pseudo-labels, pseudo-label Dice, Dice / Jaccard / HD95 / ASD as
mean ± std over the evaluation cases, the number of cases with an empty prediction, wall time, and the
command that made the row (read from ``command.txt`` beside ``metrics.json`` when the run script wrote one).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List

from sfr_teach.csv_io import write_csv
from sfr_teach.metrics import METRICS, format_mean_std


def _mean_std(summary: Dict[str, Any], key: str):
    v = summary.get(key)
    if isinstance(v, dict):
        return v.get("mean"), v.get("std")
    return v, None


def row_of(run_dir: Path) -> Dict[str, Any]:
    m = json.loads((run_dir / "metrics.json").read_text())
    s = m["summary"]
    row: Dict[str, Any] = {
        "run": run_dir.name,
        "method": s["method"],
        "variant": s["variant"],
        "preset": s["preset"],
        "data": s["data"],
        "split": f"{s['split']['labeled']} labelled / {s['split']['unlabeled']} unlabelled / "
                 f"{s['split']['test']} {s['test_source']}",
        "sam": s.get("sam") or "",
        "pseudo_label_dice": (s.get("pseudo_label_quality") or {}).get("dice_mean"),
    }
    for k in METRICS:
        mean, std = _mean_std(s["metrics"], k)
        row[f"{k}_mean"], row[f"{k}_std"] = mean, std
    row["empty_predictions"] = sum(1 for c in m["cases"] if c.get("pred_empty"))
    row["minutes"] = round(s["timings"]["total_s"] / 60, 1)
    cmd = run_dir / "command.txt"
    row["command"] = cmd.read_text().strip() if cmd.exists() else ""
    return row


def to_markdown(rows: List[Dict[str, Any]]) -> str:
    head = "| method | variant | Dice % | Jaccard % | HD95 (mm) | ASD (mm) | pseudo-label Dice % | empty preds | min |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['variant']} | {format_mean_std(r['dice_mean'], r['dice_std'], 1, 100)} | "
            f"{format_mean_std(r['jaccard_mean'], r['jaccard_std'], 1, 100)} | "
            f"{format_mean_std(r['hd95_mean'], r['hd95_std'])} | {format_mean_std(r['asd_mean'], r['asd_std'])} | "
            f"{format_mean_std(r['pseudo_label_dice'], None, 1, 100)} | "
            f"{r['empty_predictions']} | {r['minutes']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="results folders holding metrics.json")
    ap.add_argument("--out", type=Path, required=True, help="output path without extension")
    args = ap.parse_args(argv)
    rows = [row_of(r) for r in args.runs if (r / "metrics.json").exists()]
    if not rows:
        raise SystemExit("no metrics.json found in the given folders")
    write_csv(args.out.with_suffix(".csv"), rows)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    args.out.with_suffix(".md").write_text(to_markdown(rows))
    print(to_markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
