"""The ``sfr-teach`` command.

    sfr-teach run --preset smoke                       # the whole SFR pipeline on phantoms
    sfr-teach run --preset classroom --dataset la --data-dir data/LA --labeled 1 \\
                  --method mean_teacher --sfr --out runs/mt_sfr
    sfr-teach data download la --dest data/LA          # the public preprocessed LA h5 files
    sfr-teach config --preset classroom                # print the resolved configuration

The library never imports this module; it only parses arguments and calls
:mod:`sfr_teach.pipeline` and :mod:`sfr_teach.data`.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from .config import PRESETS, get_config

METHODS = ("supervised", "self_training", "mean_teacher", "ua_mt", "ac_mt", "magicnet")


def _overrides(args: argparse.Namespace) -> dict:
    o: dict = {}
    if args.out:
        o["out_dir"] = args.out
    if args.seed is not None:
        o["seed"] = args.seed
    if getattr(args, "device", None):
        o["device"] = args.device
    for attr, key in (
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
        if "=" not in item:
            raise SystemExit(f"--set expects KEY=VALUE (e.g. retrain.steps=200), got {item!r}")
        k, v = item.split("=", 1)
        o[k.strip()] = v.strip()
    return o


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=PRESETS, default="smoke", help="scale of the run (default: smoke)")
    p.add_argument("--dataset", choices=("synthetic", "la", "nifti"), help="data source (default: the preset's)")
    p.add_argument("--data-dir", help="root of the data (LA: folder holding train.list)")
    p.add_argument("--labeled", type=int, help="number of labelled volumes (first N of train.list)")
    p.add_argument("--method", choices=METHODS, help="semi-supervised re-training method")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--sfr", action="store_true", help="add the SAM pseudo-label term (SFR)")
    g.add_argument("--sfr-plus", action="store_true", help="SFR+: confidence-selected pseudo-labels")
    p.add_argument("--pseudo-labels", choices=("precomputed", "online"), help="how pseudo-labels are made")
    p.add_argument("--sam-model", choices=("tiny", "vit_b", "vit_l", "vit_h"), help="SAM backbone")
    p.add_argument("--sam-checkpoint", help="path to an official SAM checkpoint (e.g. sam_vit_b_01ec64.pth)")
    p.add_argument("--sam-from", metavar="DIR", help="reuse the SAM fine-tuning and pseudo-labels of another results folder")
    p.add_argument("--out", help="results folder (default: runs/<preset>)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config override, repeatable")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="sfr-teach",
        description="SFR (Stitching, Fine-tuning, Re-training): SAM pseudo-labels for semi-supervised 3D segmentation.",
    )
    sub = ap.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run stitching -> SAM fine-tuning -> pseudo-labels -> re-training -> evaluation")
    _add_run_args(run)

    cfgp = sub.add_parser("config", help="print the resolved configuration as JSON")
    _add_run_args(cfgp)

    data = sub.add_parser("data", help="datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    dl = dsub.add_parser("download", help="download a public dataset")
    dl.add_argument("name", choices=("la",), help="dataset name")
    dl.add_argument("--dest", required=True, help="destination folder (created)")
    dl.add_argument("--base-url", default=None, help="mirror of the public copy (default: the UA-MT repository)")
    dl.add_argument("--limit", type=int, default=None, help="download only the first N volumes of train.list")
    dl.add_argument("--quiet", action="store_true")
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "data":
        from .data.download import DownloadError, download_la

        kw = {} if args.base_url is None else {"base_url": args.base_url}
        try:
            root = download_la(args.dest, limit=args.limit, progress=not args.quiet, **kw)
        except DownloadError as e:
            print(f"sfr-teach: download failed: {e}", file=sys.stderr)
            return 1
        print(f"LA data ready in {root}")
        return 0

    overrides = _overrides(args)
    if args.sfr or args.sfr_plus:
        overrides["retrain.sfr"] = True
    cfg = get_config(args.preset, overrides)
    if args.command == "config":
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0

    from .pipeline import run_pipeline

    result = run_pipeline(cfg, sfr_plus=args.sfr_plus)
    print(json.dumps(result.get("summary", {}), indent=2))
    print(f"results written to {cfg.out_dir}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
