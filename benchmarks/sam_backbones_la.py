"""Which SAM gives better LA pseudo-labels from ONE labelled volume: tiny (random init) or LiteMedSAM?

Measures the pseudo-label Dice on the 16 validation LA volumes (the last 16 names of
``train.list``; LA through ``LADataset(<dir>, downsample=2)``, every volume z-scored) after
fine-tuning on the first ``train.list`` volume, for

* ``tiny``         -- the offline tiny SAM, classroom preset (448 input, full fine-tuning);
* ``lite_decoder`` -- LiteMedSAM (pretrained, 256 native input), mask decoder only;
* ``lite_lora``    -- LiteMedSAM, LoRA rank 4 on every TinyViT ``qkv`` + mask decoder;

at two stitching geometries (crops of the half-resolution volumes):

* ``classroom``: 56x56x40 crops on a 7x7 grid (LiteMedSAM at 256: 36 px per slice; the tiny SAM at 448:
  the 392 px mosaic is padded, 56 px per slice);
* ``slices24``:  56x56x24 crops on a 5x5 grid, more pixels per slice for LiteMedSAM (51 px); for the tiny
  SAM the 280 px mosaic is padded to 448 (still 56 px per slice, fewer slices of context);
  the same number of tiles per volume as ``classroom``;

with the same number of fine-tuning steps for every arm (``--steps``, default 100, a third of the
classroom 300: the LoRA arm costs ~7.7 s a step on 2 free cores; batch 2, warm-up 10 %,
the classroom lr 1e-3 / weight decay 0.01, Bezier intensity augmentation 0.5), each for
``--seeds``; plus the tiny SAM at its classroom default of 300 steps (``tiny300``, classroom
geometry), the setting LiteMedSAM would replace. Pseudo-labels come from
:func:`~sfr_teach.sam.predict.predict_volume` with tiles that do not overlap except the last,
flush one (``stride = crop``: 8 tiles per volume instead of 12 with the library's half overlap;
the same for every arm).

CPU cost control (2 shared cores): LiteMedSAM's frozen computations are memoised by mosaic
content inside one process -- the convolutional stem (no LoRA there) for both LiteMedSAM arms and
the whole encoder for the decoder-only arm (the validation mosaics are the same for every seed,
and a seed's training mosaics are the same for both arms) -- so the per-row seconds are *as run
with these caches*. Honest costs come from ``--timing``: uncached encoder forward per mosaic (256,
448, 512 input), fine-tuning seconds per step, and pseudo-labelling seconds per volume with the
library defaults (:func:`~sfr_teach.sam.pseudo.generate_pseudo_labels`), from which a whole
classroom SFR run is projected.

Resumable: every finished row is appended to ``<work>/rows.jsonl`` and skipped on the next call;
the csv and md under ``results/`` are rewritten after every row. Run it in the background::

    SFR_LA_DIR=<LA dir> nohup python benchmarks/sam_backbones_la.py > runs/sam_backbones_la.log 2>&1 &
    python benchmarks/sam_backbones_la.py --timing     # the uncached timings (also resumable)
    python benchmarks/sam_backbones_la.py --report     # rewrite results/ from what is done
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import torch
from torch import nn

from sfr_teach.config import get_config
from sfr_teach.data import LADataset
from sfr_teach.sam import build_from_config
from sfr_teach.sam.finetune import finetune
from sfr_teach.sam.lora import count_parameters, set_trainable
from sfr_teach.sam.predict import predict_volume
from sfr_teach.sam.pseudo import dice_score, generate_pseudo_labels
from sfr_teach.stitching import make_layout

GEOMETRIES = {"classroom": (56, 56, 40), "slices24": (56, 56, 24)}
ARMS = {  # name -> SamConfig overrides
    "tiny": {"sam.model_type": "tiny", "sam.finetune": "full"},  # image size etc. from the classroom preset
    "lite_decoder": {"sam.model_type": "lite_medsam", "sam.image_size": 256, "sam.finetune": "decoder"},
    "lite_lora": {"sam.model_type": "lite_medsam", "sam.image_size": 256, "sam.finetune": "lora"},
}
SAM_NAME = {"tiny": "tiny SAM (random init)", "lite_medsam": "LiteMedSAM (pretrained)"}
DEFAULT_STEPS = 300  # the classroom preset's sam.steps
N_UNLABELLED = 63  # classroom SFR run: 80 - 1 labelled - 16 validation
RESULTS = Path(__file__).resolve().parents[1] / "results"


def device_name(threads: int) -> str:
    return f"cpu {platform.machine()} x{threads} threads (load avg {os.getloadavg()[0]:.1f})"


class CachedLiteEncoder(nn.Module):
    """LiteMedSAM's encoder with its frozen parts memoised by input content (benchmark speed-up only).

    ``stem`` cache: the convolutional stem (frozen in every mode but ``full``); ``full`` cache
    (decoder-only fine-tuning): the whole embedding. Same outputs as the wrapped encoder.
    """

    def __init__(self, enc: nn.Module, stems: Dict[str, torch.Tensor], fulls: Optional[Dict[str, torch.Tensor]]):
        super().__init__()
        self.enc, self.stems, self.fulls, self.img_size = enc, stems, fulls, enc.img_size

    def _stem(self, x: torch.Tensor, keys: List[str]) -> torch.Tensor:
        for i, k in enumerate(keys):
            if k not in self.stems:
                with torch.no_grad():
                    self.stems[k] = self.enc.stem(x[i : i + 1])[0]
        return torch.stack([self.stems[k] for k in keys])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keys = [hashlib.sha1(xi.detach().contiguous().numpy().tobytes()).hexdigest() for xi in x]
        if self.fulls is None:
            return self.enc.trunk(self._stem(x, keys))
        for i, k in enumerate(keys):
            if k not in self.fulls:
                with torch.no_grad():
                    self.fulls[k] = self.enc.trunk(self._stem(x[i : i + 1], [k]))[0]
        return torch.stack([self.fulls[k] for k in keys])


def sam_config(arm: str, crop, steps: int):
    over = {**ARMS[arm], "sam.crop_size": tuple(crop), "sam.steps": steps, "sam.warmup": max(1, steps // 10)}
    return get_config("classroom", over).sam


def run_row(arm: str, geometry: str, steps: int, seed: int, train, evals, caches, threads: int) -> Dict[str, Any]:
    base = "tiny" if arm == "tiny300" else arm
    cfg = sam_config(base, GEOMETRIES[geometry], steps)
    model = build_from_config(cfg, 2, seed=seed)
    if cfg.model_type == "lite_medsam":
        set_trainable(model, cfg)  # LoRA is injected before the encoder is wrapped (names stay matched)
        model.sam.image_encoder = CachedLiteEncoder(model.sam.image_encoder, caches["stem"],
                                                    caches["full"] if cfg.finetune == "decoder" else None)
    t0 = time.perf_counter()
    hist = finetune(model, train, cfg, None, seed=seed, resume=False, progress=False, intensity_prob=0.5)
    t_ft = time.perf_counter() - t0
    t0 = time.perf_counter()
    dice = []
    for v in evals:
        label, _ = predict_volume(model, v.image, cfg.crop_size, cfg.image_size, "cpu", 2, stride=cfg.crop_size)
        dice.append(dice_score(label, v.label, 2))
    t_pl = time.perf_counter() - t0
    params = count_parameters(model)
    return {
        "geometry": geometry, "crop": "x".join(map(str, cfg.crop_size)), "image_size": cfg.image_size,
        "px_per_slice": round(cfg.crop_size[0] * make_layout(cfg.crop_size, cfg.image_size).scale), "arm": arm, "sam": SAM_NAME[cfg.model_type],
        "finetune": cfg.finetune, "steps": steps, "seed": seed, "trainable_params": params["trainable"],
        "lora_params": params["by_module"]["lora"], "dice_mean": float(np.mean(dice)), "dice_std": float(np.std(dice)),
        "loss_last10": float(np.mean([h["loss"] for h in hist[-10:]])), "finetune_s": round(t_ft, 1),
        "pseudo_s": round(t_pl, 1), "seconds_note": "as run, LiteMedSAM frozen parts cached" if cfg.model_type != "tiny" else "as run",
        "device": device_name(threads), "dice": [round(d, 4) for d in dice],
    }


def _timed(what: str, sam: str, unit: str, per: int, threads: int, fn) -> Dict[str, Any]:
    """Run ``fn`` once: wall seconds and process CPU seconds / threads (~ the wall time on free cores), / ``per``."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = (time.perf_counter() - w0) / per, (time.process_time() - c0) / threads / per
    return {"what": what, "sam": sam, "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "unit": unit,
            "device": device_name(threads)}


def timing_rows(train, evals, threads: int, done: set) -> Iterator[Dict[str, Any]]:
    """Uncached costs on this machine, one measurement each (``cpu_seconds`` = CPU time / threads, an
    estimate of the wall time on free cores; the load average is recorded with every row)."""
    from sfr_teach.sam import build_sam

    for size in (256, 448, 512):
        if f"encoder_forward_{size}" not in done:
            enc = build_sam("lite_medsam", image_size=size).image_encoder.eval()
            x = torch.randn(1, 3, size, size)
            with torch.no_grad():
                yield _timed(f"encoder_forward_{size}", "lite_medsam", "s per mosaic", 1, threads, lambda: enc(x))
    for arm in ("tiny", "lite_decoder", "lite_lora"):
        cfg = sam_config(arm, GEOMETRIES["classroom"], 3)
        if f"step_{arm}" not in done:
            model = build_from_config(cfg, 2, seed=0)
            yield _timed(f"step_{arm}", cfg.model_type, "s per fine-tuning step (batch 2)", cfg.steps, threads,
                         lambda: finetune(model, train, cfg, None, seed=0, resume=False, progress=False))
        if f"pseudo_{arm}" not in done and arm != "lite_lora":  # LoRA adds ~nothing to inference
            model = build_from_config(cfg, 2, seed=0)
            yield _timed(f"pseudo_{arm}", cfg.model_type, "s per volume (library default: half-overlapping tiles)", 1,
                         threads, lambda: generate_pseudo_labels(model, evals[:1], cfg, None, progress=False))


def read_jsonl(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def retrain_minutes() -> Optional[float]:
    """Minutes of the classroom mean-teacher baseline in results/la_classroom.csv (the re-training stage)."""
    path = RESULTS / "la_classroom.csv"
    if not path.is_file():
        return None
    for r in csv.DictReader(path.open()):
        if r["method"] == "mean_teacher" and r["variant"] == "baseline":
            return float(r["minutes"])
    return None


def write_results(rows: List[Dict[str, Any]], timing: List[Dict[str, Any]], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = [k for k in rows[0] if k != "dice"] + ["dice"] if rows else []
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({**r, "dice": " ".join(map(str, r["dice"]))})
    md = ["# SAM backbones on LA: pseudo-label Dice from one labelled volume", "",
          "Written by `benchmarks/sam_backbones_la.py` (its docstring has the protocol). 16 validation volumes "
          "(last 16 of `train.list`), LA downsampled x2, fine-tuned on the first `train.list` volume. "
          "Dice is for teaching only: SFR never sees these labels.", "",
          "## Mean over seeds", "", "| geometry | px / slice | SAM | fine-tuning | steps | seeds | pseudo-label Dice |",
          "|---|---|---|---|---|---|---|"]
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["geometry"], r["arm"], r["steps"]), []).append(r)
    for (g, arm, steps), rs in groups.items():
        m = [r["dice_mean"] for r in rs]
        md.append(f"| {g} ({rs[0]['crop']} @ {rs[0]['image_size']}) | {rs[0]['px_per_slice']} | {rs[0]['sam']} | "
                  f"{rs[0]['finetune']} | {steps} | {len(rs)} | {np.mean(m):.3f} ± {np.std(m):.3f} "
                  f"(seeds: {', '.join(f'{x:.3f}' for x in m)}) |")
    md += ["", "## Every row", "", "| geometry | SAM | arm | seed | steps | trainable | Dice (mean ± std over volumes) | "
           "fine-tune s | pseudo-label s | device |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['geometry']} | {r['sam']} | {r['arm']} | {r['seed']} | {r['steps']} | {r['trainable_params']:,} | "
                  f"{r['dice_mean']:.3f} ± {r['dice_std']:.3f} | {r['finetune_s']} | {r['pseudo_s']} | {r['device']} |")
    md += ["", "Seconds in these rows are wall time as run, with LiteMedSAM's frozen computations cached across rows "
           "(see the script), two or three such runs sharing the 2 cores and paused while other benchmarks ran: "
           "not the cost of a pipeline run. Those are below.", ""]
    if timing:
        md += ["## Uncached costs on this machine", "",
               "Wall seconds under the load shown, and CPU seconds / threads: an estimate of the wall time on 2 "
               "free cores (the decision below uses it).", "",
               "| what | SAM | wall s | CPU s / thread | unit | device |", "|---|---|---|---|---|---|"]
        md += [f"| {t['what']} | {t['sam']} | {t['seconds']} | {t['cpu_seconds']} | {t['unit']} | {t['device']} |"
               for t in timing]
        md.append("")
    md += decision(groups, {t["what"]: t["cpu_seconds"] for t in timing})
    out.with_suffix(".md").write_text("\n".join(md) + "\n")


def decision(groups, timing: Dict[str, float]) -> List[str]:
    """The decision-rule section: the Dice criterion from the rows, the time criterion from ``timing``
    (CPU seconds / thread); either one failing for every LiteMedSAM setting decides it."""
    text = ["## Decision rule", "",
            "If a LiteMedSAM setting beats the tiny SAM (the classroom default: 300 steps, classroom geometry) by "
            ">= 0.10 pseudo-label Dice on the validation volumes while a whole classroom SFR run stays <= 15 min on "
            "2 cores, it becomes the `classroom` default; otherwise the tiny SAM stays the default and LiteMedSAM is an "
            "option (`--sam-model lite_medsam`) with the numbers above.", ""]
    retrain, pl = retrain_minutes(), timing.get("pseudo_lite_decoder")
    fast: Dict[str, bool] = {}
    if pl is not None and retrain is not None:
        text.append(f"Time: pseudo-labelling the {N_UNLABELLED} unlabelled classroom volumes with LiteMedSAM takes "
                    f"{N_UNLABELLED} x {pl} s = {N_UNLABELLED * pl / 60:.1f} min on its own; re-training (mean teacher, "
                    f"results/la_classroom.csv) {retrain} min. Seconds are CPU seconds / thread of the uncached "
                    "timings above (~ the wall time on 2 free cores; the load average is recorded with each).")
        for arm in ("lite_decoder", "lite_lora"):
            if f"step_{arm}" in timing:
                total = (DEFAULT_STEPS * timing[f"step_{arm}"] + N_UNLABELLED * pl) / 60 + retrain
                fast[arm] = total <= 15
                text.append(f"- {arm}: {DEFAULT_STEPS} steps x {timing[f'step_{arm}']} s + pseudo-labels + re-training "
                            f"= {total:.1f} min for a whole classroom SFR run ({'<=' if fast[arm] else '>'} 15 min).")
    means = {k: np.mean([r["dice_mean"] for r in rs]) for k, rs in groups.items()}
    ref = [v for (g, arm, _), v in means.items() if arm == "tiny300" and g == "classroom"]
    lite = {k: v for k, v in means.items() if k[1].startswith("lite")}
    good: Optional[List[tuple]] = None
    if ref and lite:
        good = [k for k, v in lite.items() if v - ref[0] >= 0.10]
        best = max(lite, key=lite.get)
        text.append(f"Dice: best LiteMedSAM setting {best[1]} at {best[0]} ({lite[best]:.3f}) vs the tiny SAM classroom "
                    f"default {ref[0]:.3f}: {lite[best] - ref[0]:+.3f}.")
    if fast and not any(fast.values()):
        verdict = ("The tiny SAM stays the classroom default: no LiteMedSAM setting keeps a classroom SFR run within "
                   "15 min on 2 cores, whatever its Dice. LiteMedSAM is an option (`--sam-model lite_medsam`).")
    elif good is None:
        verdict = "Not decided yet: rows missing."
    elif any(fast.get(k[1], False) for k in good):
        verdict = "A LiteMedSAM setting meets both criteria: it becomes the classroom default."
    else:
        verdict = ("The tiny SAM stays the classroom default; LiteMedSAM is an option with these numbers "
                   f"(Dice criterion {'met' if good else 'not met'}).")
    return text + ["", f"**Decision: {verdict}**", ""]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--la-dir", default=os.environ.get("SFR_LA_DIR"), help="LA folder (default $SFR_LA_DIR)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--steps", type=int, default=100, help="fine-tuning steps of every arm (default 100)")
    ap.add_argument("--geometries", nargs="+", default=list(GEOMETRIES), choices=list(GEOMETRIES))
    ap.add_argument("--arms", nargs="+", default=[*ARMS, "tiny300"], choices=[*ARMS, "tiny300"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-eval", type=int, default=16, help="validation volumes (16; fewer only to try the script)")
    ap.add_argument("--timing", action="store_true", help="measure the uncached costs instead of the Dice rows")
    ap.add_argument("--report", action="store_true", help="only rewrite the csv / md from <work>/*.jsonl")
    ap.add_argument("--work", default="runs/sam_backbones_la", help="rows.jsonl / timing.jsonl (resume state)")
    ap.add_argument("--out", default=str(RESULTS / "sam_backbones_la"), help="csv + md path stem")
    args = ap.parse_args(argv)
    work = Path(args.work)
    rows_path, timing_path = work / "rows.jsonl", work / "timing.jsonl"
    if args.report:
        write_results(read_jsonl(rows_path), read_jsonl(timing_path), Path(args.out))
        return
    if not args.la_dir:
        ap.error("give --la-dir or set SFR_LA_DIR to the LA folder (the one holding train.list)")
    torch.set_num_threads(args.threads)
    work.mkdir(parents=True, exist_ok=True)
    la = LADataset(args.la_dir, downsample=2)
    split = la.split(labeled=1, val=16)
    train = [la.load(n) for n in split.labeled]
    evals = [la.load(n) for n in split.test[: args.n_eval]]
    if args.timing:
        done = {t["what"] for t in read_jsonl(timing_path)}
        for t in timing_rows(train, evals, args.threads, done):
            with open(timing_path, "a") as f:
                f.write(json.dumps(t) + "\n")
            print(t, flush=True)
            write_results(read_jsonl(rows_path), read_jsonl(timing_path), Path(args.out))
        return
    done = {(r["geometry"], r["arm"], r["steps"], r["seed"]) for r in read_jsonl(rows_path)}
    for geometry in args.geometries:
        caches: Dict[str, Dict[str, torch.Tensor]] = {"stem": {}, "full": {}}  # per geometry (same mosaics)
        # the expensive tiny300 reference comes after both seeds of the same-steps arms
        order = [(seed, arm) for seed in args.seeds for arm in args.arms if arm != "tiny300"]
        order += [(seed, "tiny300") for seed in args.seeds if "tiny300" in args.arms and geometry == "classroom"]
        for seed, arm in order:
            steps = DEFAULT_STEPS if arm == "tiny300" else args.steps
            if (geometry, arm, steps, seed) in done:
                continue
            row = run_row(arm, geometry, steps, seed, train, evals, caches, args.threads)
            with open(rows_path, "a") as f:
                f.write(json.dumps(row) + "\n")
            print({k: v for k, v in row.items() if k != "dice"}, flush=True)
            write_results(read_jsonl(rows_path), read_jsonl(timing_path), Path(args.out))


if __name__ == "__main__":
    main()
