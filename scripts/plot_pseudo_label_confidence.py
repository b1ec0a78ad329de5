"""Plot pseudo-label Dice against SAM confidence for one results folder (the issue-3 measurement).

    python scripts/plot_pseudo_label_confidence.py runs/la_classroom/mt_sfr --tau 0.96 \
        --out results/la_classroom_pseudo_labels

copies ``pseudo_labels/summary.csv`` to ``<out>.csv`` and draws ``<out>.png``, titled with the run's provenance.
The title's data path is the run's provenance, which the pipeline writes relative (never a machine's
absolute path).
"""
import argparse
import json
import shutil
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from sfr_teach import viz


def draw(rows: List[Dict[str, Any]], prov: Dict[str, Any], tau: float):
    """Dice vs confidence of ``rows`` (dicts with confidence, dice), titled with the provenance -> Figure."""
    conf = np.array([float(r["confidence"]) for r in rows])
    dice = np.array([float(r["dice"]) for r in rows])
    fig = viz.plot_dice_vs_confidence(conf, dice, tau)
    fig.axes[0].set_title(f"{prov['data']}, {prov['split']['labeled']} labelled, "
                          f"preset {prov['preset']}\n{prov['sam']}\n"
                          f"{len(rows)} unlabelled volumes: Dice {dice.mean():.3f} ± {dice.std():.3f}", fontsize=8)
    return fig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="results folder with pseudo_labels/summary.json and provenance.json")
    ap.add_argument("--tau", type=float, required=True)
    ap.add_argument("--out", type=Path, required=True, help="output path without extension")
    args = ap.parse_args(argv)
    rows = json.loads((args.run / "pseudo_labels" / "summary.json").read_text())
    prov = json.loads((args.run / "provenance.json").read_text())
    viz.save_figure(draw(rows, prov, args.tau), args.out.with_suffix(".png"), dpi=100)
    shutil.copyfile(args.run / "pseudo_labels" / "summary.csv", args.out.with_suffix(".csv"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
