"""The ``sfr-teach`` command.

    sfr-teach run --preset smoke                       # the whole SFR pipeline on phantoms
    sfr-teach run --preset classroom --dataset la --data-dir data/LA --labeled 1 \\
                  --method mean_teacher --sfr --out runs/mt_sfr
    sfr-teach data download la --dest data/LA          # the public preprocessed LA h5 files
    sfr-teach config --preset classroom                # print the resolved configuration
    sfr-teach plan --preset classroom --dataset nifti --data-dir DIR   # the geometry planned from the data

A run ends with a short table (:func:`format_run_summary`). A bad input -- missing or broken data,
an unknown ``--set`` key, a value of the wrong type, a missing SAM checkpoint -- prints one line
``sfr-teach: error: <what> — <fix>`` and exits 2 (a failed download exits 1); ``--debug`` shows
the traceback instead.

Each sub-command's parser sets ``func`` (called with the parsed arguments, returns the exit code):
``run``, ``config`` and ``plan`` share the run options (one line each in :data:`_RUN_LIKE`); any other
command is one more ``_add_<name>(sub)`` function in :data:`_COMMANDS`. The library never imports this module; it only parses arguments and calls
:mod:`sfr_teach.pipeline` and :mod:`sfr_teach.data`.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .config import PRESETS, Config, get_config, magicnet_cube_problem
from .sam.registry import SAM_MODELS, CheckpointError

# the names of sfr_teach.ssl.METHODS (tests check they agree; importing ssl would import torch)
METHODS = ("supervised", "self_training", "mean_teacher", "ua_mt", "ac_mt", "magicnet")
DATASETS = ("synthetic", "la", "nifti")
PSEUDO_LABELS = ("precomputed", "online")
DEVICES = ("auto", "cpu", "cuda")
EXIT_BAD_INPUT = 2  # bad data, configuration or checkpoint (argparse uses 2 for a bad command line too)
EXIT_FAILED = 1  # a download that did not finish

#: configuration fields whose value must be one of a list, checked after --set (same lists as the options)
_CHOICES: Dict[str, Tuple[str, ...]] = {
    "data.dataset": DATASETS,
    "retrain.method": METHODS,
    "retrain.pseudo_labels": PSEUDO_LABELS,
    "sam.model_type": SAM_MODELS,
    "device": DEVICES,
}
_STAGES = (("sam_finetune_s", "SAM fine-tuning"), ("pseudo_labels_s", "pseudo-labels"), ("sfr_plus_s", "SFR+"),
           ("retrain_s", "re-training"), ("evaluate_s", "evaluation"), ("total_s", "total"))


class UsageError(Exception):
    """A bad command line or configuration, said as what was wrong and how to fix it."""

    def __init__(self, what: str, fix: str):
        super().__init__(f"{what} — {fix}")


def _user_errors() -> Tuple[type, ...]:
    """Exceptions that mean "bad input" (one line, exit 2) rather than a bug (traceback)."""
    from .data.volume import DataError

    return (UsageError, DataError, CheckpointError)


def one_line(exc: BaseException, fix: str = "run with --debug for the traceback") -> str:
    """``<what> — <fix>`` on one line from an error message ``"<what>; <fix>"`` (the library's style)."""
    msg = str(exc.args[0]) if len(exc.args) == 1 else str(exc)  # KeyError's str() adds quotes
    msg = " ".join(msg.split())
    if " — " in msg:
        return msg
    what, sep, tail = msg.rpartition("; ")
    return f"{what} — {tail}" if sep else f"{msg} — {fix}"


# ----------------------------------------------------------------------------- configuration
def _overrides(args: argparse.Namespace) -> dict:
    o: dict = {}
    if args.out:
        o["out_dir"] = args.out
    if args.seed is not None:
        o["seed"] = args.seed
    for attr, key in (
        ("device", "device"),
        ("dataset", "data.dataset"),
        ("data_dir", "data.data_dir"),
        ("labeled", "data.labeled"),
        ("method", "retrain.method"),
        ("pseudo_labels", "retrain.pseudo_labels"),
        ("sam_checkpoint", "sam.checkpoint"),
        ("sam_model", "sam.model_type"),
        ("sam_from", "sam_from"),
    ):
        v = getattr(args, attr, None)
        if v is not None:
            o[key] = v
    for item in args.set or []:
        k, eq, v = item.partition("=")
        if not eq or not k.strip():
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}", "write e.g. --set retrain.steps=200")
        o[k.strip()] = v.strip()
    if args.sfr or args.sfr_plus:
        o["retrain.sfr"] = True
    return o


def _applies(preset: str, key: str, value: Any) -> bool:
    try:
        get_config(preset, {key: value})
        return True
    except (KeyError, ValueError):
        return False


def config_from_args(args: argparse.Namespace) -> Config:
    """The resolved :class:`Config` of ``run`` / ``config`` arguments; :class:`UsageError` when it is bad."""
    hint = f"`sfr-teach config --preset {args.preset}` prints every key and its value"
    overrides = _overrides(args)
    try:
        cfg = get_config(args.preset, overrides)
    except (KeyError, ValueError) as e:
        what, fix = one_line(e, hint).split(" — ", 1)
        bad = next((k for k in overrides if not _applies(args.preset, k, overrides[k])), None)
        if bad is not None and bad not in what:  # name the override that failed
            what = f"{bad}={overrides[bad]!r}: {what}"
        raise UsageError(what, fix) from e
    for key, choices in _CHOICES.items():
        obj: Any = cfg
        for part in key.split("."):
            obj = getattr(obj, part)
        if obj not in choices:
            raise UsageError(f"{key}={obj!r} is not one of {', '.join(choices)}", f"use e.g. --set {key}={choices[0]}")
    if cfg.retrain.method == "magicnet":  # before any stage runs, not after SAM's fine-tuning
        problem = magicnet_cube_problem(cfg.retrain.patch_size, cfg.retrain.magicnet_cube, how="add --set ")
        if problem:
            raise UsageError(*problem)
    return cfg


# ----------------------------------------------------------------------------- the end-of-run table
def _mean_std(entry: Optional[Mapping[str, Any]], scale: float = 1.0) -> str:
    from .metrics import format_mean_std

    return "—" if entry is None else format_mean_std(entry, digits=2, scale=scale)


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 60 else f"{int(s // 60)} min {s % 60:02.0f} s"


def format_run_summary(summary: Mapping[str, Any], out_dir: str) -> str:
    """The table a finished run prints: Dice / HD95 per class (mean ± std over test volumes),
    the pseudo-labels' Dice when SFR ran, the time of each stage and the results folder.

    ``summary`` is ``run_pipeline(...)["summary"]`` (also ``metrics.json["summary"]``).
    """
    m = summary.get("metrics", {})
    classes = sorted(int(k.split("_")[1]) for k in m if k.startswith("dice_") and k.split("_")[1].isdigit())
    names = list(summary.get("class_names") or [])
    rows = [(f"{c} {names[c]}" if c < len(names) else str(c), f"_{c}") for c in classes]
    rows += [("mean", "")] if len(classes) > 1 else []
    cols = [("Dice %", "dice", 100.0)] + ([("HD95 mm", "hd95", 1.0)] if any(k.startswith("hd95") for k in m) else [])
    split = summary.get("split", {})
    variant = summary.get("variant", "baseline")
    lines = [
        f"{summary.get('method', '?')}{'' if variant == 'baseline' else ' + ' + variant} on {summary.get('data', '?')}: "
        f"{split.get('test', '?')} test volumes ({summary.get('test_source', '?')}), "
        f"{split.get('labeled', '?')} labelled, {split.get('unlabeled', '?')} unlabelled"
    ]
    table = [["class"] + [c[0] for c in cols]]
    table += [[name] + [_mean_std(m.get(key + suffix), scale) for _, key, scale in cols] for name, suffix in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in table]
    pl = summary.get("pseudo_label_quality")
    if pl:
        conf = pl.get("confidence_mean")
        conf_text = "" if conf is None or math.isnan(conf) else f", mean confidence {conf:.3f}"
        lines.append(f"pseudo-label Dice %: {_mean_std({'mean': pl['dice_mean'], 'std': pl['dice_std']}, 100.0)} "
                     f"over {pl['n']} unlabelled volumes{conf_text} ({summary.get('sam') or 'SAM'})")
    plan = summary.get("plan")
    if plan and not str(plan).startswith("off"):
        lines += str(plan).splitlines()
    lines += [f"warning: {w}" for w in summary.get("geometry_warnings") or []]
    t = summary.get("timings", {})
    lines.append("time: " + ", ".join(f"{label} {_seconds(t[k])}" for k, label in _STAGES if k in t))
    lines.append(f"results: {out_dir} (metrics.csv, metrics.json, provenance.json)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- commands
def check_data(cfg: Config) -> None:
    """Open the data folder and split its list before torch is imported: a wrong folder fails within a
    second, names the folder as the user typed it and leaves no results folder behind. Raises the
    loaders' :class:`~sfr_teach.data.DataError` (volumes are read later, by the pipeline)."""
    from . import data as D

    dc = cfg.data
    if dc.dataset == "la":
        D.LADataset(D.resolve_la_dir(dc.data_dir)).split(dc.labeled, dc.val)
    elif dc.dataset == "nifti":
        if not dc.data_dir:
            raise UsageError("--dataset nifti needs a data folder", "pass --data-dir DIR, the folder holding imagesTr/")
        D.NiftiDataset(dc.data_dir).split(dc.labeled, dc.val)


def _cmd_run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    check_data(cfg)
    from .pipeline import run_pipeline

    result = run_pipeline(cfg, sfr_plus=args.sfr_plus)
    print(format_run_summary(result["summary"], cfg.out_dir))
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    print(json.dumps(config_from_args(args).to_dict(), indent=2))
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .plan import plan_for

    from . import data as D

    cfg = config_from_args(args)
    dc = cfg.data
    if dc.dataset == "nifti" and not dc.data_dir:
        raise UsageError("--dataset nifti needs a data folder", "pass --data-dir DIR, the folder holding imagesTr/")
    plan = plan_for(cfg, D.resolve_la_dir(dc.data_dir) if dc.dataset == "la" else dc.data_dir)
    path = plan.save(Path(cfg.out_dir) / "plan.json")
    print(plan.describe())
    print(f"plan written to {path} (`sfr-teach run` plans NIfTI data itself; --set data.plan=off keeps the preset)")
    return 0


def _cmd_data_download(args: argparse.Namespace) -> int:
    from .data.download import DownloadError, download_la

    kw = {} if args.base_url is None else {"base_url": args.base_url}
    try:
        root = download_la(args.dest, limit=args.limit, progress=not args.quiet, **kw)
    except DownloadError as e:
        if args.debug:
            raise
        print(f"sfr-teach: error: download failed: {one_line(e, 'check the address and re-run (downloads resume)')}",
              file=sys.stderr)
        return EXIT_FAILED
    print(f"LA data ready in {root}")
    return 0


def _common() -> argparse.ArgumentParser:
    """Options every sub-command takes (SUPPRESS: the top-level default is not overwritten)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the Python traceback of an error instead of one line")
    return p


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=PRESETS, default="smoke", help="scale of the run (default: smoke)")
    p.add_argument("--dataset", choices=DATASETS, help="data source (default: the preset's)")
    p.add_argument("--data-dir", help="root of the data (LA: folder holding train.list)")
    p.add_argument("--labeled", type=int, help="number of labelled volumes (first N of train.list)")
    p.add_argument("--method", choices=METHODS, help="semi-supervised re-training method")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--sfr", action="store_true", help="add the SAM pseudo-label term (SFR)")
    g.add_argument("--sfr-plus", action="store_true", help="SFR+: confidence-selected pseudo-labels")
    p.add_argument("--pseudo-labels", choices=PSEUDO_LABELS, help="how pseudo-labels are made")
    p.add_argument("--sam-model", choices=SAM_MODELS, help="SAM backbone (sfr_teach.sam.registry.SAM_MODELS)")
    p.add_argument("--sam-checkpoint", help="path to an official SAM checkpoint (e.g. sam_vit_b_01ec64.pth)")
    p.add_argument("--sam-from", metavar="DIR", help="reuse the SAM fine-tuning and pseudo-labels of another results folder")
    p.add_argument("--out", help="results folder (default: runs/<preset>)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config override, repeatable")


# the sub-commands that take the run options: name -> (help, handler)
_RUN_LIKE = {
    "run": ("run stitching -> SAM fine-tuning -> pseudo-labels -> re-training -> evaluation", _cmd_run),
    "config": ("print the resolved configuration as JSON", _cmd_config),
    "plan": ("fingerprint the data and print / save the geometry planned for a preset (plan.json)", _cmd_plan),
}


def _add_run_like(sub) -> None:
    for name, (help_text, handler) in _RUN_LIKE.items():
        p = sub.add_parser(name, parents=[_common()], help=help_text)
        _add_run_args(p)
        p.set_defaults(func=handler)


def _add_data(sub) -> None:
    data = sub.add_parser("data", help="datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    dl = dsub.add_parser("download", parents=[_common()], help="download a public dataset")
    dl.add_argument("name", choices=("la",), help="dataset name")
    dl.add_argument("--dest", required=True, help="destination folder (created)")
    dl.add_argument("--base-url", default=None, help="mirror of the public copy (default: the UA-MT repository)")
    dl.add_argument("--limit", type=int, default=None, help="download only the first N volumes of train.list")
    dl.add_argument("--quiet", action="store_true")
    dl.set_defaults(func=_cmd_data_download)


#: one function per sub-command, in the order ``--help`` lists them
_COMMANDS: List[Callable[[Any], None]] = [_add_run_like, _add_data]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="sfr-teach",
        description="SFR (Stitching, Fine-tuning, Re-training): SAM pseudo-labels for semi-supervised 3D segmentation.",
    )
    ap.add_argument("--debug", action="store_true", default=False,
                    help="show the Python traceback of an error instead of one line")
    sub = ap.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(sub)
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except _user_errors() as e:
        if args.debug:
            raise
        print(f"sfr-teach: error: {one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
