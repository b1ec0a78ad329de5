#!/usr/bin/env python
"""Re-execute the lessons in place: each ``notebooks/NN_name.md`` (the source) refreshes its paired ``.ipynb``.

    python scripts/run_notebooks.py                      # all lessons, preset smoke
    python scripts/run_notebooks.py --preset classroom --data-dir data/LA
    python scripts/run_notebooks.py 02 05 --param sam_steps=100

For each lesson the MyST source is read with jupytext and written over the paired ``.ipynb`` (inputs now
those of the ``.md``, outputs cleared); papermill then executes that ``.ipynb`` in place, with its working
directory ``notebooks/`` and the parameters injected after its ``parameters`` cell. Lessons 03-10 share
``--cache-dir``, so SAM is fine-tuned once. Afterwards papermill's injected cell is removed and the values
used for the non-path parameters (preset, seed, budgets) are written into the ``parameters`` cell of BOTH
files: the pair still agrees (``tests/test_lessons_paired.py``), the page says which preset produced its
outputs, and it runs top to bottom as it stands. Paths (``data_dir``, ``cache_dir``, any ``*_dir`` /
``*_path``) are passed to papermill but never written into a lesson: no machine path lands in a commit.

A lesson whose ``.ipynb`` was edited after its ``.md`` (in a Jupyter without jupytext) is not overwritten:
the script stops and says to run ``jupytext --sync notebooks/NN_name.ipynb`` first.

``--reuse-runs runs/la_seeds`` (with ``--param seed=N``) first copies, into the lessons' cache, the SAM stage,
the pseudo-labels, SFR+'s second round and every re-training of the seeds table's runs for that seed on the
default split (``<row>/s<N>_f4``): the lessons then show (and re-evaluate) the very runs the results page counts
instead of training them again. What the cache already holds is kept.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
NB_DIR = REPO / "notebooks"


def lessons(selected: List[str]) -> List[Path]:
    """The lesson sources ``notebooks/NN_*.md`` (all, or those whose number / name is in ``selected``)."""
    found = sorted(NB_DIR.glob("[0-9][0-9]_*.md"))
    if selected:
        found = [p for p in found if p.name[:2] in selected or p.stem in selected]
    if not found:
        raise SystemExit(f"no lessons matching {selected or 'NN_*.md'} in {NB_DIR}")
    return found


def _literal(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def is_path_param(name: str) -> bool:
    return name.endswith("_dir") or name.endswith("_path")


def fold_source(source: str, params: Dict[str, Any]) -> str:
    """``source`` of a parameters cell with ``name = value`` rewritten for every non-path name in ``params``."""
    lines = source.split("\n")
    for i, line in enumerate(lines):
        name = line.split("=", 1)[0].strip()
        if "=" in line and name in params and not is_path_param(name):
            value = params[name]
            shown = json.dumps(value) if isinstance(value, str) else repr(value)
            comment = line.split("#", 1)[1] if "#" in line else ""
            lines[i] = f"{name} = {shown}" + (f"  #{comment}" if comment else "")
    return "\n".join(lines)


def _fold_parameters_cell(nb: Any, params: Dict[str, Any]) -> None:
    for cell in nb.cells:
        if "parameters" in cell.metadata.get("tags", []):
            cell.source = fold_source(cell.source, params)


def sync_to_ipynb(md: Path) -> Path:
    """Write the ``.md``'s cells over its paired ``.ipynb`` (outputs cleared); refuse if the ``.ipynb`` is newer and differs."""
    import jupytext

    from sfr_teach.lesson import pairing_problems

    ipynb = md.with_suffix(".ipynb")
    if ipynb.is_file() and ipynb.stat().st_mtime > md.stat().st_mtime + 1 and pairing_problems(md):
        raise SystemExit(f"{ipynb.relative_to(REPO)} was edited after {md.name} and they differ: keep the newer "
                         f"one with `jupytext --sync {ipynb.relative_to(REPO)}`, then run this script again")
    nb = jupytext.read(md)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i:02d}"  # stable ids: small diffs
    jupytext.write(nb, ipynb, fmt="ipynb")
    return ipynb


def fold_parameters(ipynb: Path, md: Path, params: Dict[str, Any]) -> None:
    """Drop papermill's injected cell, metadata and widget outputs; write the used values into both files."""
    import jupytext
    import nbformat

    nb = nbformat.read(ipynb, as_version=4)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    _fold_parameters_cell(nb, params)
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)  # the state of widgets whose views are dropped below
    widget = "application/vnd.jupyter.widget-view+json"
    for cell in nb.cells:
        if cell.cell_type == "code":  # widget views (progress bars, the slice viewer) need a live kernel: drop them
            cell.outputs = [o for o in cell.get("outputs", []) if widget not in o.get("data", {})]
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nbformat.write(nb, ipynb)
    source = jupytext.read(md)
    _fold_parameters_cell(source, params)
    jupytext.write(source, md, fmt="md:myst")  # written last: the source is the newer file of the pair


def run(md: Path, params: Dict[str, Any], kernel: str = "python3") -> float:
    """Execute one lesson in place: sync its ``.ipynb`` from the ``.md``, run papermill, fold the parameters."""
    import papermill as pm

    # tqdm reads TQDM_* in the kernel: fewer progress-bar widgets (calls that pass disable= explicitly
    # still make them; fold_parameters drops what is left)
    os.environ["TQDM_DISABLE"] = "1"

    t = time.time()
    ipynb = sync_to_ipynb(md)
    pm.execute_notebook(str(ipynb), str(ipynb), parameters=params, kernel_name=kernel, cwd=str(NB_DIR),
                        progress_bar=False)
    fold_parameters(ipynb, md, params)
    return time.time() - t


# rows of scripts/la_seeds.py -> the folder of the lessons' cache that holds the same re-training
LESSON_FOLDERS = {
    "st": "self_training_baseline", "st_sfr": "self_training_sfr", "mt": "mean_teacher_baseline",
    "mt_sfr": "mean_teacher_sfr", "uamt": "ua_mt_baseline", "uamt_sfr": "ua_mt_sfr", "acmt": "ac_mt_baseline",
    "acmt_sfr": "ac_mt_sfr", "magic": "magicnet_baseline", "magic_sfr": "magicnet_sfr",
    "mt_sfrplus": "mean_teacher_sfr_plus",
}


def reuse_runs(runs: Path, seed: int, cache: Path, preset: str) -> List[str]:
    """Copy the finished ``<runs>/<row>/s<seed>_f4`` runs' stages into ``cache`` (lesson 10 finds SFR+ under
    ``sfr_plus_tau<tau>``); returns what was copied. Runs of another preset, seed or fold are refused."""
    import shutil

    copied: List[str] = []

    def copy(src: Path, dst: Path) -> None:
        if src.is_dir() and not dst.exists():
            shutil.copytree(src, dst)
            copied.append(f"{src} -> {dst}")

    for row, folder in LESSON_FOLDERS.items():
        run = runs / row / f"s{seed}_f4"
        if not (run / "metrics.json").is_file():
            continue
        cfg = json.loads((run / "config.json").read_text())
        fold = cfg.get("data", {}).get("fold")
        got = (cfg.get("preset"), cfg.get("seed"), 4 if fold is None else int(fold))
        if got != (preset, seed, 4):
            raise SystemExit(f"{run / 'config.json'}: preset/seed/fold {got}, the lessons run {(preset, seed, 4)}; "
                             "pass the seed the runs used (--param seed=N) or leave out --reuse-runs")
        if row.endswith(("_sfr", "_sfrplus")):
            copy(run / "sam", cache / "sam")
            copy(run / "pseudo_labels", cache / "pseudo_labels")
        if row == "mt_sfrplus":
            copy(run / "sfr_plus", cache / f"sfr_plus_tau{cfg['sam']['tau']:.4f}" / "sfr_plus")
        copy(run / "retrain", cache / folder / "retrain")
    return copied


def main(argv: Optional[List[str]] = None) -> None:
    from sfr_teach.data import resolve_la_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lessons", nargs="*", help="lesson numbers (01 02 ...) or names; default all")
    ap.add_argument("--preset", default="smoke", choices=("smoke", "classroom", "paper"))
    ap.add_argument("--data-dir", default=None, help="LA root for classroom / paper (default: $SFR_LA_DIR, else data/LA)")
    ap.add_argument("--cache-dir", default="../runs/notebooks", help="results folder shared by the lessons (relative to notebooks/)")
    ap.add_argument("--kernel", default="python3")
    ap.add_argument("--reuse-runs", default=None, metavar="DIR",
                    help="the seeds table's runs (runs/la_seeds): copy their stages for --param seed=N into the cache first")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="any other parameter")
    args = ap.parse_args(argv)
    params: Dict[str, Any] = {"preset": args.preset, "cache_dir": args.cache_dir}
    if args.preset != "smoke":  # the kernel runs in notebooks/: hand it the folder as seen from here
        params["data_dir"] = str(Path(resolve_la_dir(args.data_dir)).resolve())
    for item in args.param:
        if "=" not in item:
            raise SystemExit(f"--param expects NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        params[k.strip()] = _literal(v.strip())
    if args.reuse_runs:
        if args.preset == "smoke":
            raise SystemExit("--reuse-runs: the seeds table's runs are classroom runs; add --preset classroom")
        cache = (NB_DIR / args.cache_dir / args.preset).resolve()
        for line in reuse_runs(Path(args.reuse_runs), int(params.get("seed", 1337)), cache, args.preset):
            print(f"reused {line.replace(str(REPO) + '/', '')}")
    total = 0.0
    for md in lessons(args.lessons):
        print(f"running {md.name} with {params} ...", flush=True)
        try:
            dt = run(md, params, args.kernel)
        except Exception as e:  # papermill already saved the partial notebook with the error
            print(f"FAILED {md.name}: {type(e).__name__}: {str(e)[:2000]}", file=sys.stderr)
            raise SystemExit(1)
        total += dt
        print(f"  done in {dt:.1f} s", flush=True)
    print(f"all done in {total:.1f} s")


if __name__ == "__main__":
    main()
