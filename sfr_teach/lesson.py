"""What every lesson notebook shares: its setup, its first output, and ``record``.

A lesson (``notebooks/NN_name.md``, paired with its ``.ipynb`` by jupytext) starts with

1. a Colab-only install cell (its text is :data:`COLAB_INSTALL`; it has to run before this package exists);
2. ONE papermill ``parameters`` cell: ``preset``, ``data_dir``, ``seed``, budgets (``None`` = the preset's
   default), ``cache_dir``, ``record_path``;
3. a setup cell::

       cfg, data, device, info = lesson.setup(preset, data_dir=data_dir, seed=seed, cache_dir=cache_dir,
                                              sam_steps=sam_steps, retrain_steps=retrain_steps,
                                              labeled=labeled, record_path=record_path)

:func:`setup` builds the configuration, seeds every generator, picks the device, sets up matplotlib and
logging, loads the data and prints the page's first output, which names preset, data, SAM, device and seed
(:func:`banner`). :func:`record` stores the numbers a lesson computes in the JSON file ``record_path``, so the
papermill tests (``tests/test_notebooks.py``) can assert on them. :func:`pairing_problems` says where a
lesson's ``.md`` and ``.ipynb`` disagree (``tests/test_lessons_paired.py``, ``scripts/run_notebooks.py``).
"""
from __future__ import annotations

import json
import logging
import sys
from itertools import zip_longest
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional

import numpy as np
import torch

__all__ = ["COLAB_INSTALL", "PAIRED_FORMATS", "Lesson", "setup", "banner", "describe_device", "record",
           "pairing_problems"]

REPO_URL = "https://github.com/sfr-teach/sfr-teach"
#: jupytext pairing of every lesson: the MyST source and the executed notebook.
PAIRED_FORMATS = "ipynb,md:myst"

#: The second cell of every lesson (``tests/test_notebooks.py`` checks each lesson holds this text).
COLAB_INSTALL = f'''# Colab only: install sfr-teach from the repository (elsewhere: pip install -e ".[dev]")
try:
    import google.colab  # noqa: F401
    IN_COLAB = True
except ImportError:
    IN_COLAB = False
if IN_COLAB:
    %pip install -q "sfr-teach @ git+{REPO_URL}"'''


class Lesson(NamedTuple):
    """What :func:`setup` gives a lesson: ``cfg, data, device, info = lesson.setup(...)``."""

    cfg: Any  # sfr_teach.config.Config
    data: Any  # sfr_teach.pipeline.DataBundle
    device: torch.device
    info: Dict[str, Any]  # preset, data, sam, device, seed, split (what the banner says)


# ----------------------------------------------------------------------------- recording
def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def record(key: str, value: Any, path: Optional[str] = None) -> Any:
    """Store ``value`` under ``key`` in the JSON file ``path`` (no-op when ``path`` is None).

    Numpy / torch scalars and arrays become plain JSON. Returns ``value`` unchanged, so
    ``err = record("stitch_error", err, record_path)`` reads naturally in a notebook.
    """
    if path is None:
        return value
    p = Path(path)
    data: Dict[str, Any] = json.loads(p.read_text()) if p.is_file() and p.stat().st_size else {}
    data[str(key)] = _plain(value)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2))
    return value


# ----------------------------------------------------------------------------- setup
def describe_device(device: torch.device) -> str:
    """``"NVIDIA H100 80GB HBM3"`` or ``"CPU, 2 threads"``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    n = torch.get_num_threads()
    return f"CPU, {n} thread{'s' if n > 1 else ''}"


def _setup_figures_and_logging() -> None:
    import matplotlib

    matplotlib.rcParams["figure.max_open_warning"] = 0  # a lesson draws many figures
    logger = logging.getLogger("sfr_teach")
    if not any(getattr(h, "_sfr_lesson", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        handler._sfr_lesson = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING)


def banner(info: Dict[str, Any]) -> str:
    """The page's first output: which preset, data, SAM, device and seed produced it."""
    split = info["split"]
    return (f"This page was executed with preset '{info['preset']}' on {info['data']}.\n"
            f"  SAM: {info['sam']}\n"
            f"  device: {info['device']}; seed {info['seed']}\n"
            f"  split: {split['labeled']} labelled, {split['unlabeled']} unlabelled, "
            f"{split['test']} test ({split['test_source']})")


def setup(preset: str = "smoke", data_dir: Optional[str] = None, seed: int = 1337,
          cache_dir: str = "../runs/notebooks", sam_steps: Optional[int] = None,
          retrain_steps: Optional[int] = None, labeled: Optional[int] = None,
          record_path: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None,
          quiet: bool = False) -> Lesson:
    """Configure, seed, pick the device, load the data and print the banner; returns :class:`Lesson`.

    ``None`` budgets keep the preset's values; ``data_dir`` is ignored at ``smoke`` (synthetic phantoms), and
    ``None`` lets :func:`sfr_teach.data.resolve_la_dir` find the LA folder (``$SFR_LA_DIR``, else ``data/LA``).
    Results go to ``<cache_dir>/<preset>``, shared by the lessons (SAM is fine-tuned once). ``overrides``
    are any further dotted config fields (``{"retrain.method": "ua_mt"}``). The banner's facts are also
    recorded under ``"lesson"`` in ``record_path``.
    """
    from . import pipeline
    from .config import get_config, resolve_device
    from .data import portable_path
    from .ssl.trainer import seed_everything
    from .torch_utils import reuse_freed_memory

    opts: Dict[str, Any] = {"seed": seed, "out_dir": f"{cache_dir}/{preset}"}
    if preset != "smoke" and data_dir is not None:
        opts["data.data_dir"] = str(data_dir)  # None: sfr_teach.data.resolve_la_dir ($SFR_LA_DIR, else data/LA)
    for key, value in {"sam.steps": sam_steps, "retrain.steps": retrain_steps, "data.labeled": labeled}.items():
        if value is not None:
            opts[key] = value
    cfg = get_config(preset, {**opts, **(overrides or {})})
    seed_everything(cfg.seed)
    reuse_freed_memory()  # as run_pipeline: fewer page faults, same numbers
    _setup_figures_and_logging()
    device = resolve_device(cfg.device)
    data = pipeline.load_data(cfg)
    sam = pipeline.sam_provenance(cfg)
    if cfg.sam.checkpoint:  # the page shows no machine's absolute path
        sam = sam.replace(str(cfg.sam.checkpoint), portable_path(cfg.sam.checkpoint))
    info = {
        "preset": cfg.preset,
        "data": data.description,
        "sam": sam,
        "device": describe_device(device),
        "seed": cfg.seed,
        "split": {"labeled": len(data.labeled), "unlabeled": len(data.unlabeled), "test": len(data.test),
                  "test_source": data.test_source},
    }
    if not quiet:
        print(banner(info))
    record("lesson", info, record_path)
    return Lesson(cfg, data, device, info)


# ----------------------------------------------------------------------------- pairing
_PAPERMILL_TAGS = {"injected-parameters", "papermill-error-cell-tag"}


def _cell_key(cell: Any) -> tuple:
    return cell.cell_type, cell.source.strip(), tuple(sorted(cell.metadata.get("tags", [])))


def pairing_problems(md_path: Any) -> List[str]:
    """Where a lesson's MyST source ``NN_name.md`` and its ``NN_name.ipynb`` disagree (empty list: they agree).

    Compares, cell by cell, the type, the source and the tags (``parameters``, ``hide-input``, ...), and checks
    both carry the jupytext pairing ``ipynb,md:myst``; outputs, other metadata and papermill's
    own cells (``injected-parameters``, error banners) are ignored. Needs jupytext (the ``dev`` extra).
    """
    import jupytext

    md = Path(md_path)
    ipynb = md.with_suffix(".ipynb")
    if not ipynb.is_file():
        return [f"{ipynb} is missing: create it with `jupytext --sync {md}` and execute it "
                "(python scripts/run_notebooks.py)"]
    nb_md, nb_ipynb = jupytext.read(md), jupytext.read(ipynb)
    problems = []
    for path, nb in ((md, nb_md), (ipynb, nb_ipynb)):
        formats = nb.metadata.get("jupytext", {}).get("formats")
        if formats != PAIRED_FORMATS:
            problems.append(f"{path}: jupytext formats {formats!r}, expected {PAIRED_FORMATS!r} "
                            f"(fix: jupytext --set-formats {PAIRED_FORMATS} {path})")
    # papermill's own cells (left by a failed or interrupted run) are artefacts, not edits
    cells = [[c for c in nb.cells if not _PAPERMILL_TAGS & set(c.metadata.get("tags", []))] for nb in (nb_md, nb_ipynb)]
    differ = 0
    for i, (a, b) in enumerate(zip_longest(*cells)):
        ka, kb = (None if c is None else _cell_key(c) for c in (a, b))
        if ka != kb:
            differ += 1
            if differ > 3:
                continue
            what = ("missing" if None in (ka, kb) else "type" if ka[0] != kb[0]
                    else "tags" if ka[2] != kb[2] else "source")
            shown = [("<no cell>" if k is None else f"{k[0]} {list(k[2])} {k[1][:80]!r}") for k in (ka, kb)]
            problems.append(f"cell {i} ({what} differs): {md.name} has {shown[0]}; {ipynb.name} has {shown[1]}")
    if differ > 3:
        problems.append(f"... and {differ - 3} more cells differ")
    if differ:
        problems.append(f"fix: re-execute the lesson from {md.name} (python scripts/run_notebooks.py {md.stem[:2]}), "
                        f"or, after editing the .ipynb in Jupyter without jupytext, `jupytext --sync {ipynb}`")
    return problems
