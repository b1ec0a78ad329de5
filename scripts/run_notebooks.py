#!/usr/bin/env python
"""Re-execute the lesson notebooks in place (refreshes the outputs the book shows).

    python scripts/run_notebooks.py                      # all lessons, preset smoke
    python scripts/run_notebooks.py --preset classroom --data-dir /path/to/LA
    python scripts/run_notebooks.py 02 05 --param sam_steps=100

Each notebook runs through papermill with its working directory set to ``notebooks/`` and the
parameters injected after its ``parameters`` cell; lessons 03-10 share ``--cache-dir`` so SAM is
fine-tuned once. The injected-parameters cell papermill adds is removed again afterwards, and the
parameters cell itself is rewritten to the values used, so a committed notebook says which
preset produced its outputs and still runs top to bottom as it stands.
"""
from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
NB_DIR = REPO / "notebooks"


def notebooks(selected: List[str]) -> List[Path]:
    found = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
    if selected:
        found = [p for p in found if p.name[:2] in selected or p.stem in selected]
    if not found:
        raise SystemExit(f"no notebooks matching {selected or 'NN_*.ipynb'} in {NB_DIR}")
    return found


def _literal(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def fold_parameters(path: Path, params: Dict[str, Any]) -> None:
    """Drop papermill's injected cell and widget outputs; write the used values into the ``parameters`` cell."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    for cell in nb.cells:
        if "parameters" in cell.metadata.get("tags", []):
            lines = cell.source.split("\n")
            for i, line in enumerate(lines):
                name = line.split("=", 1)[0].strip()
                if "=" in line and name in params:
                    comment = line.split("#", 1)[1] if "#" in line else ""
                    lines[i] = f"{name} = {params[name]!r}" + (f"  #{comment}" if comment else "")
            cell.source = "\n".join(lines)
    nb.metadata.pop("papermill", None)
    widget = "application/vnd.jupyter.widget-view+json"
    for cell in nb.cells:
        if cell.cell_type == "code":  # widget views (progress bars, the slice viewer) need a live kernel: drop them
            cell.outputs = [o for o in cell.get("outputs", []) if widget not in o.get("data", {})]
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)


def run(path: Path, params: Dict[str, Any], kernel: str = "python3", output: Optional[Path] = None) -> float:
    """Execute one notebook (in place unless ``output``); progress bars are off in the saved outputs."""
    import os

    import papermill as pm

    # tqdm reads TQDM_* in the kernel: fewer progress-bar widgets (calls that pass disable= explicitly
    # still make them; fold_parameters drops what is left)
    os.environ["TQDM_DISABLE"] = "1"

    t = time.time()
    out = output or path
    pm.execute_notebook(str(path), str(out), parameters=params, kernel_name=kernel, cwd=str(NB_DIR),
                        progress_bar=False)
    if output is None:
        fold_parameters(out, params)
    return time.time() - t


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("lessons", nargs="*", help="lesson numbers (01 02 ...) or notebook names; default all")
    ap.add_argument("--preset", default="smoke", choices=("smoke", "classroom", "paper"))
    ap.add_argument("--data-dir", default=None, help="LA root for classroom / paper")
    ap.add_argument("--cache-dir", default="../runs/notebooks", help="results folder shared by the lessons (relative to notebooks/)")
    ap.add_argument("--kernel", default="python3")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="any other parameter")
    args = ap.parse_args(argv)
    params: Dict[str, Any] = {"preset": args.preset, "cache_dir": args.cache_dir}
    if args.data_dir:
        params["data_dir"] = str(Path(args.data_dir).resolve())
    for item in args.param:
        if "=" not in item:
            raise SystemExit(f"--param expects NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        params[k.strip()] = _literal(v.strip())
    total = 0.0
    for nb in notebooks(args.lessons):
        print(f"running {nb.name} with {params} ...", flush=True)
        try:
            dt = run(nb, params, args.kernel)
        except Exception as e:  # papermill already saved the partial notebook with the error
            print(f"FAILED {nb.name}: {type(e).__name__}: {str(e)[:2000]}", file=sys.stderr)
            raise SystemExit(1)
        total += dt
        print(f"  done in {dt:.1f} s", flush=True)
    print(f"all done in {total:.1f} s")


if __name__ == "__main__":
    main()
