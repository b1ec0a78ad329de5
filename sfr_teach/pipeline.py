"""The whole SFR pipeline, driven by one :class:`~sfr_teach.config.Config`.

    data --> (1) stitch --> (2) fine-tune SAM --> pseudo-labels (+ confidence)
         --> [SFR+: high-confidence volumes join SAM's training set, SAM fine-tuned again]
         --> (3) re-train a V-Net with a semi-supervised method (+ SAM pseudo-label term)
         --> evaluate on the test / validation split

This is the only module where SAM (``sfr_teach.sam``) and re-training
(``sfr_teach.ssl``) meet: re-training receives pseudo-label *arrays* (or, for
``pseudo_labels="online"``, a function from image crops to label crops), never SAM.

A results folder (``cfg.out_dir``)::

    config.json                 the resolved configuration
    provenance.json             which SAM produced the pseudo-labels (offline tiny / checkpoint), data, split
    sam/                        SAM fine-tuning log + checkpoint (trainable parameters only)
    pseudo_labels/              <name>.npz, <name>.nii.gz, summary.csv / summary.json
    sfr_plus/                   second fine-tuning + re-predicted pseudo-labels (SFR+ only)
    retrain/                    V-Net log, checkpoints, final model
    metrics.csv, metrics.json   per-case metrics and mean +- std on the evaluation split
    figures/                    curves, overlays, Dice vs confidence

Every stage whose output is already in the folder is loaded instead of recomputed,
so an interrupted run resumes, and ``cfg.sam_from`` points a run at another
run's SAM stage (one fine-tuning shared by several re-training methods).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from .config import Config, resolve_device
from .metrics import per_class_summary
from .torch_utils import reuse_freed_memory

log = logging.getLogger("sfr_teach")


@dataclass
class DataBundle:
    """Volumes of one run, split. ``test`` is ``test.list`` when present, else the validation split."""

    labeled: list
    unlabeled: list
    test: list
    num_classes: int
    test_source: str = "validation"
    description: str = ""
    class_names: tuple = ()  # background first (data.class_names, else "class 1", ...)

    def names(self) -> Dict[str, List[str]]:
        return {k: [v.name for v in getattr(self, k)] for k in ("labeled", "unlabeled", "test")}


# ----------------------------------------------------------------------------- data
def load_data(cfg: Config) -> DataBundle:
    """Load and split the volumes named by ``cfg.data`` (synthetic phantoms, LA h5 or NIfTI)."""
    from . import data as D

    dc = cfg.data
    if dc.dataset == "synthetic":
        kind = dc.synthetic_kind
        vols = D.synthetic_dataset(dc.synthetic_cases, seed=cfg.seed, shape=tuple(dc.synthetic_shape), kind=kind)
        num_classes = int(max(int(v.label.max()) for v in vols) + 1) if kind == "multi" else 2
        num_classes = max(num_classes, dc.num_classes)
        if dc.labeled < 1:
            raise ValueError("data.labeled must be >= 1: SFR fine-tunes SAM on the labelled volumes")
        if dc.labeled + dc.val >= len(vols):
            raise ValueError(
                f"{dc.synthetic_cases} synthetic cases cannot hold {dc.labeled} labelled + {dc.val} test volumes "
                f"and at least one unlabelled one; raise data.synthetic_cases or lower data.labeled / data.val"
            )
        vols = [_prepare(D, v, dc) for v in vols]
        return DataBundle(
            labeled=vols[: dc.labeled],
            unlabeled=vols[dc.labeled : len(vols) - dc.val],
            test=vols[len(vols) - dc.val :],
            num_classes=num_classes,
            test_source="validation",
            description=f"synthetic {kind} phantoms {tuple(dc.synthetic_shape)}, seed {cfg.seed}",
            class_names=_class_names(dc, num_classes),
        )

    root = data_dir(cfg)
    if dc.dataset == "la":
        ds = D.LADataset(root, downsample=dc.downsample if dc.slice_axis % 3 == 2 else 1, num_classes=dc.num_classes)
        desc = f"LA h5 from {root}"
    elif dc.dataset == "nifti":
        ds = D.NiftiDataset(root, num_classes=dc.num_classes)
        desc = f"NIfTI pairs from {root}"
    else:
        raise ValueError(f"unknown data.dataset {dc.dataset!r}; choose synthetic, la or nifti")
    split = ds.split(dc.labeled, dc.val, fold=dc.fold)
    desc += f", slices along array axis {dc.slice_axis % 3} (moved last)" if dc.slice_axis % 3 != 2 else ""
    factors = D.downsample_factors(dc.downsample)
    desc += f", downsampled x{'x'.join(map(str, factors))}" if max(factors) > 1 else ""
    desc += ", z-scored per volume" if dc.normalize == "zscore" else ""

    def load(names: List[str]) -> list:
        return [_prepare(D, ds.load(n), dc, downsample=dc.dataset == "nifti" or dc.slice_axis % 3 != 2)
                for n in names]

    return DataBundle(
        labeled=load(split.labeled),
        unlabeled=load(split.unlabeled),
        test=load(split.test),
        num_classes=dc.num_classes,
        test_source=split.test_source,
        description=desc,
        class_names=_class_names(dc, dc.num_classes, root),
    )


def data_dir(cfg: Config) -> Optional[str]:
    """The data folder of ``cfg.data`` as results files write it (None for synthetic data).

    LA: :func:`~sfr_teach.data.resolve_la_dir` (``data.data_dir``, else ``$SFR_LA_DIR``, else
    ``data/LA``); NIfTI needs ``data.data_dir``. Relative paths stay as given, absolute ones become
    relative to the working directory (:func:`~sfr_teach.data.portable_path`), so no results file
    carries a machine's absolute path.
    """
    from .data import portable_path, resolve_la_dir

    dc = cfg.data
    if dc.dataset == "la":
        return portable_path(resolve_la_dir(dc.data_dir))
    if dc.dataset == "nifti" and dc.data_dir is None:
        raise ValueError("data.dataset='nifti' needs data.data_dir (--data-dir): the folder holding imagesTr/")
    return None if dc.data_dir is None else portable_path(dc.data_dir)


def _prepare(D, vol, dc, downsample: bool = True):
    """Move the slice axis last, down-sample (when the loader has not) and normalise one volume as
    ``cfg.data`` says (``data.downsample`` factors are in that working order)."""
    vol = D.slice_axis_last(vol, dc.slice_axis)
    if downsample:
        vol = D.downsample_volume(vol, dc.downsample)
    return D.normalize_volume(vol, dc.normalize)


def _class_names(dc, num_classes: int, root: Optional[str] = None) -> tuple:
    """``data.class_names`` (background first) when it names every class, else those of a NIfTI folder's
    ``dataset.json``, else background, class 1, ..."""
    from .plan import read_class_names

    names = tuple(dc.class_names) or tuple(read_class_names(root) or () if dc.dataset == "nifti" else ())
    if len(names) == num_classes:
        return names
    return ("background",) + tuple(f"class {c}" for c in range(1, num_classes))


# ----------------------------------------------------------------------------- stage 2: SAM
def sam_provenance(cfg: Config) -> str:
    """A label for every figure / number that SAM produced: which model made it."""
    s = cfg.sam
    if s.model_type == "tiny":
        return f"offline tiny SAM (random init, {s.finetune} fine-tuning, {s.image_size}px mosaics)"
    return f"SAM {s.model_type} from {s.checkpoint} (LoRA r={s.lora_rank}, {s.image_size}px mosaics)"


def build_segmenter(cfg: Config, num_classes: int) -> torch.nn.Module:
    """SAM for ``num_classes`` masks, made trainable as ``cfg.sam.finetune`` says (LoRA or full)."""
    from .sam.build import build_from_config
    from .sam.lora import set_trainable

    return set_trainable(build_from_config(cfg.sam, num_classes, seed=cfg.seed), cfg.sam)


def _stage_dir(cfg: Config, name: str) -> Path:
    """Where a SAM-stage folder lives: this run's, or the shared one of ``cfg.sam_from``."""
    if cfg.sam_from:
        return Path(cfg.sam_from) / name
    return Path(cfg.out_dir) / name


def run_finetune(cfg: Config, data: DataBundle, out_dir: Optional[Path] = None, device=None) -> torch.nn.Module:
    """Fine-tune SAM on the stitched labelled volumes (or load the finished fine-tuning)."""
    from .sam.finetune import finetune, load_trainable, save_trainable

    device = device or resolve_device(cfg.device)
    sam_dir = Path(out_dir) if out_dir is not None else _stage_dir(cfg, "sam")
    seg = build_segmenter(cfg, data.num_classes).to(device)
    final = sam_dir / "final.pt"
    if final.exists():
        load_trainable(seg, final)
        log.info("SAM: reusing %s", final)
        return seg.eval()
    sam_dir.mkdir(parents=True, exist_ok=True)
    finetune(seg, data.labeled, cfg.sam, out_dir=sam_dir, device=device, seed=cfg.seed, resume=True)
    save_trainable(seg, final)
    return seg.eval()


def run_pseudo_labels(cfg: Config, segmenter, data: DataBundle, out_dir: Optional[Path] = None, device=None) -> list:
    """Pseudo-labels (+ voxel probabilities, confidence) for every unlabelled volume; reused when present."""
    from .sam.pseudo import generate_pseudo_labels, load_pseudo_labels

    device = device or resolve_device(cfg.device)
    pl_dir = Path(out_dir) if out_dir is not None else _stage_dir(cfg, "pseudo_labels")
    wanted = [v.name for v in data.unlabeled]
    if (pl_dir / "summary.json").exists():
        pls = load_pseudo_labels(pl_dir)
        if sorted(p.name for p in pls) == sorted(wanted):
            log.info("pseudo-labels: reusing %s", pl_dir)
            order = {n: i for i, n in enumerate(wanted)}
            return sorted(pls, key=lambda p: order[p.name])
    return generate_pseudo_labels(segmenter, data.unlabeled, cfg.sam, out_dir=pl_dir, device=device)


def run_sfr_plus(cfg: Config, segmenter, data: DataBundle, pseudo_labels: list, device=None) -> Dict[str, Any]:
    """SFR+: high-confidence pseudo-labelled volumes join SAM's fine-tuning set; SAM is fine-tuned again.

    Returns ``{"high": names, "low": names, "pseudo_labels": list}`` where the list holds, for every
    unlabelled volume, the first-round pseudo-label for high-confidence volumes and the
    re-fine-tuned SAM's prediction for the low-confidence ones.
    """
    from .sam.pseudo import sfr_plus_round

    device = device or resolve_device(cfg.device)
    plus_dir = Path(cfg.out_dir) / "sfr_plus"
    plus_dir.mkdir(parents=True, exist_ok=True)
    plus = sfr_plus_round(segmenter, data.labeled, pseudo_labels, cfg.sam, data.unlabeled,
                          out_dir=plus_dir, device=device, seed=cfg.seed)
    result = {"tau": cfg.sam.tau, "high": [p.name for p in plus["high"]], "low": [p.name for p in plus["low"]]}
    (plus_dir / "selection.json").write_text(json.dumps(result, indent=2))
    if not plus["high"]:
        log.warning("SFR+: no volume reaches confidence %.3f; SFR+ falls back to SFR", cfg.sam.tau)
    merged = {p.name: p for p in pseudo_labels}
    merged.update({p.name: p for p in plus["pseudo_labels"]})
    return {**result, "pseudo_labels": [merged[v.name] for v in data.unlabeled]}


def online_pseudo_label_fn(cfg: Config, segmenter, device=None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The official code's online mode: SAM predicts each unlabelled training crop, every iteration.

    Each crop is predicted at SAM's fine-tuning geometry (``sam.crop_size`` tiles, ``sam.image_size``
    mosaics): a V-Net crop smaller than SAM's is padded up to it, so every slice reaches SAM at the
    scale it was trained on. (Predicting the V-Net crop as one tile of its own size enlarges each slice
    instead -- in the classroom preset 48x48x32 on a 6x6 grid vs 56x56x40 on a 7x7 grid, 1.56x vs 1.14x
    -- and measured on 16 real LA crops it dropped SAM's Dice from 0.66 to 0.45.)
    Crops of volumes already z-scored on load (``data.normalize="zscore"``) go to SAM as they are, as in
    fine-tuning; with ``data.normalize="none"`` each crop is z-scored on its own (an approximation).
    """
    from .sam.predict import predict_volume

    device = device or resolve_device(cfg.device)
    per_crop_zscore = cfg.data.normalize == "none"

    @torch.no_grad()
    def fn(images: torch.Tensor) -> torch.Tensor:  # (B,1,h,w,d) -> (B,h,w,d)
        out = []
        for img in images[:, 0].detach().float().cpu().numpy():
            label, _ = predict_volume(segmenter, img, cfg.sam.crop_size, cfg.sam.image_size, device=device,
                                      normalize=per_crop_zscore)
            out.append(torch.from_numpy(label.astype(np.int64)))
        return torch.stack(out).to(images.device)

    return fn


# ----------------------------------------------------------------------------- stage 3: re-training
def run_retrain(
    cfg: Config,
    data: DataBundle,
    pseudo_labels: Optional[list] = None,
    out_dir: Optional[Path] = None,
    pseudo_label_fn: Optional[Callable] = None,
    device=None,
):
    """Re-train the V-Net with ``cfg.retrain.method``; SAM pseudo-labels supervise the unlabelled volumes when given."""
    from .ssl import train

    device = device or resolve_device(cfg.device)
    rc = cfg.retrain
    online = rc.pseudo_labels == "online"
    if rc.sfr and (pseudo_label_fn is None if online else pseudo_labels is None):
        raise ValueError(
            "retrain.sfr is on but no pseudo-labels were given: pass pseudo_labels (from run_pseudo_labels) or, "
            "with retrain.pseudo_labels='online', pseudo_label_fn (from online_pseudo_label_fn)"
        )
    pl = {p.name: p.label for p in (pseudo_labels or [])} if rc.sfr and not online else {}
    labeled = [(v.image, v.label) for v in data.labeled]
    unlabeled = [(v.image, pl.get(v.name)) for v in data.unlabeled]
    return train(
        rc.method,
        labeled,
        unlabeled,
        rc,
        num_classes=data.num_classes,
        out_dir=Path(out_dir) if out_dir is not None else Path(cfg.out_dir) / "retrain",
        device=device,
        seed=cfg.seed,
        resume=True,
        pseudo_label_fn=pseudo_label_fn if rc.sfr and online else None,
    )


def run_evaluate(cfg: Config, model, data: DataBundle, out_dir: Optional[Path] = None, device=None):
    """Sliding-window inference on ``data.test``; per-case metrics table (CSV + JSON)."""
    from .evaluate import evaluate_model

    device = device or resolve_device(cfg.device)
    out = Path(out_dir) if out_dir is not None else Path(cfg.out_dir)
    table = evaluate_model(model, data.test, cfg.eval, data.num_classes, device=device, out_dir=out,
                           save_predictions=True)
    table.to_csv(out / "metrics.csv")
    return table


# ----------------------------------------------------------------------------- everything
def run_pipeline(cfg: Config, sfr_plus: bool = False) -> Dict[str, Any]:
    """Run data -> SAM -> pseudo-labels (-> SFR+) -> re-training -> evaluation; write the results folder."""
    t0 = time.time()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    reuse_freed_memory()  # fewer page faults, same numbers (sfr_teach.torch_utils)
    if sfr_plus:
        cfg.retrain.sfr = True
    from .ssl.trainer import seed_everything

    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.data.dataset != "synthetic":
        cfg.data.data_dir = data_dir(cfg)  # config.json names the folder that was read, never an absolute path
    from .plan import plan_run, warn_geometry

    cfg, plan = plan_run(cfg)  # data.plan (auto: NIfTI): the geometry from the data; explicit overrides win
    if plan is not None:
        plan.save(out / "plan.json")
    cfg.save(out / "config.json")

    data = load_data(cfg)
    geometry_warnings = warn_geometry(cfg, data.labeled + data.unlabeled + data.test)
    provenance: Dict[str, Any] = {
        "preset": cfg.preset,
        "data": data.description,
        "split": {k: len(v) for k, v in data.names().items()},
        "test_source": data.test_source,
        "method": cfg.retrain.method,
        "variant": "SFR+" if sfr_plus else ("SFR" if cfg.retrain.sfr else "baseline"),
        "device": str(device),
        "sam": sam_provenance(cfg) if cfg.retrain.sfr else None,
        "pseudo_labels": cfg.retrain.pseudo_labels if cfg.retrain.sfr else None,
        "class_names": list(data.class_names),
        "plan": plan.describe() if plan is not None else "off: the preset's geometry (data.plan)",
        "geometry_warnings": geometry_warnings,
    }
    (out / "provenance.json").write_text(json.dumps({**provenance, "names": data.names()}, indent=2))

    timings: Dict[str, float] = {}
    pseudo, pl_fn, pl_summary = None, None, None
    if cfg.retrain.sfr:
        t = time.time()
        segmenter = run_finetune(cfg, data, device=device)
        timings["sam_finetune_s"] = time.time() - t
        t = time.time()
        pseudo = run_pseudo_labels(cfg, segmenter, data, device=device)
        timings["pseudo_labels_s"] = time.time() - t
        if sfr_plus:
            t = time.time()
            plus = run_sfr_plus(cfg, segmenter, data, pseudo, device=device)
            pseudo = plus["pseudo_labels"]
            provenance["sfr_plus"] = {k: plus[k] for k in ("tau", "high", "low")}
            timings["sfr_plus_s"] = time.time() - t
        pl_summary = _pseudo_label_summary(pseudo, data.class_names)
        if cfg.retrain.pseudo_labels == "online":  # SAM (after SFR+, the re-fine-tuned one) labels every crop
            pl_fn = online_pseudo_label_fn(cfg, segmenter, device)

    t = time.time()
    result = run_retrain(cfg, data, pseudo, pseudo_label_fn=pl_fn, device=device)
    timings["retrain_s"] = time.time() - t
    t = time.time()
    table = run_evaluate(cfg, result.model, data, device=device)
    timings["evaluate_s"] = time.time() - t
    timings["total_s"] = time.time() - t0

    summary = {
        **provenance,
        "metrics": table.summary,
        "metrics_per_class": per_class_summary(table.summary, data.class_names),
        "pseudo_label_quality": pl_summary,
        "timings": timings,
    }
    from .evaluate import json_safe

    (out / "metrics.json").write_text(
        json.dumps(json_safe({"summary": summary, "cases": table.rows}), indent=2, default=_json_default)
    )
    _write_figures(out, result, table, pseudo, data, cfg.sam.tau)
    return {"summary": summary, "table": table, "model": result.model, "pseudo_labels": pseudo, "data": data}


def _pseudo_label_summary(pseudo: list, class_names: tuple = ()) -> Optional[Dict[str, Any]]:
    """Pseudo-label Dice against the (hidden) ground truth of unlabelled volumes: for teaching only.
    ``per_class``: {class name: mean Dice, mean confidence} over the volumes (foreground classes)."""
    dices = [p.dice for p in pseudo if p.dice is not None]
    if not dices:
        return None
    out = {"dice_mean": float(np.mean(dices)), "dice_std": float(np.std(dices)), "n": len(dices),
           "confidence_mean": float(np.mean([p.confidence for p in pseudo]))}
    scored = [p for p in pseudo if p.class_dice is not None]
    if scored and class_names:
        out["per_class"] = {
            name: {"dice_mean": float(np.mean([p.class_dice[c - 1] for p in scored])),
                   "confidence_mean": float(np.nanmean([p.class_confidence[c] for p in scored]))}
            for c, name in enumerate(class_names) if c > 0 and c - 1 < len(scored[0].class_dice)
        }
    return out


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


_CURVE_KEYS = ("loss", "loss_sup", "loss_cons", "loss_sfr", "dice", "lr")


def write_figures(figdir: Path, history: Optional[List[Dict[str, float]]], rows: List[Dict[str, Any]],
                  pseudo: Optional[list], data: Optional[DataBundle], tau: float) -> List[Path]:
    """A results folder's PNGs, drawn by :mod:`sfr_teach.viz` (which alone imports matplotlib).

    ``curves.png`` (the training ``history``: list of dicts), ``dice_per_case.png`` (metrics ``rows``),
    ``dice_vs_confidence.png`` (pseudo-labels that know their Dice against the hidden ground truth,
    at least two) and ``pseudo_label_overlay.png`` (the first pseudo-labelled volume of
    ``data.unlabeled``). A figure whose input is missing is skipped. Returns the written paths.
    """
    from . import viz

    figdir = Path(figdir)
    written: List[Path] = []
    if history:
        keys = [k for k in _CURVE_KEYS if any(k in r for r in history)]
        fig = viz.plot_curves(history, keys or None, x="iter" if "iter" in history[0] else "step")
        written.append(viz.save_figure(fig, figdir / "curves.png"))
    if rows and "dice" in rows[0]:
        written.append(viz.save_figure(viz.plot_case_bars(rows, "dice"), figdir / "dice_per_case.png"))
    scored = [p for p in pseudo or [] if p.dice is not None]
    if len(scored) >= 2:
        fig = viz.plot_dice_vs_confidence([p.confidence for p in scored], [p.dice for p in scored], tau,
                                          names=[p.name for p in scored])
        written.append(viz.save_figure(fig, figdir / "dice_vs_confidence.png"))
    vols = {v.name: v for v in data.unlabeled} if data is not None else {}
    first = next((p for p in pseudo or [] if p.name in vols), None)
    if first is not None:
        v = vols[first.name]
        fig = viz.plot_volume_overlays(v.image, v.label, first.label, slices=4, pred_name="pseudo-label",
                                       title=f"{first.name}: pseudo-label (red) vs ground truth (green)")
        written.append(viz.save_figure(fig, figdir / "pseudo_label_overlay.png"))
    return written


def _write_figures(out: Path, result, table, pseudo, data: DataBundle, tau: float) -> None:
    """The run's figures under ``out/figures`` unless ``$SFR_NO_FIGURES`` is set."""
    if os.environ.get("SFR_NO_FIGURES"):
        return
    write_figures(out / "figures", result.history, table.rows, pseudo, data, tau)
