#!/usr/bin/env python
"""Write the lesson notebooks (``notebooks/NN_*.ipynb``) from the cell lists below.

The committed ``.ipynb`` files are what students open; this script is how they are (re)made:

    python scripts/make_notebooks.py            # write every lesson (outputs are cleared)
    python scripts/make_notebooks.py 02 05      # only these lessons
    python scripts/run_notebooks.py --preset smoke   # then execute them in place

Every lesson starts the same way: title + "Open in Colab" badge, a Colab-only install cell, a
device cell, ONE ``parameters`` cell (papermill injects values after it) and a setup cell that
builds the config and says which preset and data produced the page. Every lesson ends with
exercises: a stub for the student, the checker from :mod:`sfr_teach.exercises`, and the
solution in a cell whose input is hidden behind a toggle in the book.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO = Path(__file__).resolve().parents[1]
NB_DIR = REPO / "notebooks"
REPO_URL = "https://github.com/sfr-teach/sfr-teach"
COLAB = "https://colab.research.google.com/github/sfr-teach/sfr-teach/blob/main/notebooks"

Cell = Tuple[str, str, List[str]]


def md(src: str) -> Cell:
    return ("md", src.strip("\n"), [])


def code(src: str, *tags: str) -> Cell:
    return ("code", src.strip("\n"), list(tags))


INSTALL = f'''
# Colab only: install sfr-teach from the repository
try:
    import google.colab  # noqa: F401
    IN_COLAB = True
except ImportError:
    IN_COLAB = False
if IN_COLAB:
    %pip install -q "sfr-teach @ git+{REPO_URL}"
'''

DEVICE = '''
import torch
from sfr_teach.config import resolve_device

# the GPU when there is one (Colab: Runtime > Change runtime type)
device = resolve_device("auto")
name = torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
print("device:", name)
'''

PARAMS = '''
# Parameters: edit them to run a bigger experiment (papermill overrides them)
preset = "smoke"  # smoke | classroom (real LA, CPU) | paper (GPU)
data_dir = None  # LA root (default: $SFR_LA_DIR or data/LA)
seed = 1337
sam_steps = None  # SAM fine-tuning steps (None: preset)
retrain_steps = None  # V-Net steps (None: preset)
labeled = None  # labelled volumes (None: preset)
cache_dir = "../runs/notebooks"  # shared results: SAM trains once
record_path = None  # JSON of key numbers (for the tests)
'''

SETUP = '''
import os
import numpy as np
from sfr_teach import pipeline, viz
from sfr_teach.config import get_config
from sfr_teach.data import crop_around_label
from sfr_teach.exercises import record

overrides = {"seed": seed, "out_dir": f"{cache_dir}/{preset}"}
if preset != "smoke":
    overrides["data.data_dir"] = data_dir or os.environ.get("SFR_LA_DIR", "data/LA")
for key, value in {"sam.steps": sam_steps, "retrain.steps": retrain_steps, "data.labeled": labeled}.items():
    if value is not None:
        overrides[key] = value
cfg = get_config(preset, overrides)
data = pipeline.load_data(cfg)
print(f"This page was executed with preset '{cfg.preset}' on {data.description}.")
print(f"split: {len(data.labeled)} labelled, {len(data.unlabeled)} unlabelled, {len(data.test)} test ({data.test_source})")

'''


def header(num: str, slug: str, title: str, intro: str, extra_params: str = "") -> List[Cell]:
    badge = f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({COLAB}/{num}_{slug}.ipynb)"
    return [
        md(f"# {int(num)}. {title}\n\n{badge}\n\n{intro.strip()}"),
        code(INSTALL, "hide-cell"),
        code(DEVICE, "hide-input"),
        code(PARAMS + extra_params, "parameters"),
        code(SETUP, "hide-input"),
    ]


def exercise(title: str, task: str, signature: str, checker: str, solution: str, key: str) -> List[Cell]:
    """Exercise: task text, a stub ``def <signature>`` the student edits + the checker, the hidden solution.

    The solution cell runs the same checker and records whether it passes under ``key``.
    """
    fn = signature.split("(", 1)[0]
    stub = f"def {signature}:\n    # your code here\n    raise NotImplementedError"
    return [
        md(f"### Exercise: {title}\n\n{task.strip()}\n\nRun the checker; it says which case fails, with the expected and the actual value."),
        code(f"from sfr_teach.exercises import {checker}\n\n{stub.strip()}\n\n\n{checker}({fn});"),
        md("**Solution** (click to reveal the code; try it yourself first):"),
        code(f"{solution.strip()}\n\n\nrecord(\"{key}\", bool({checker}({fn})), record_path);", "hide-input"),
    ]


# ============================================================================ lessons
L01 = header("01", "data", "Data: 3D volumes, labels and the semi-supervised split", """
SFR works on **3D volumes**: an MRI of the left atrium (LA) is a stack of `D` 2D slices, each `H x W`
(the slicing axis is the **last** axis, `image[:, :, k]` is slice `k`). A *label* volume of the same
shape says, voxel by voxel, which class it belongs to (0 = background, 1 = atrium).
*Semi-supervised*: only a few volumes come with labels, most come without.

At the `smoke` preset the volumes are synthetic phantoms (an atrium-like blob in textured noise),
so this page runs in seconds anywhere; at `classroom`/`paper` they are the real LA MRIs.
""") + [
    md("## What did we load?\n\nEvery volume is a `sfr_teach.data.Volume` with `.image` (float32), `.label` (uint8) and `.spacing` (mm)."),
    code('''
vol = data.labeled[0]
print(vol)
print("image:", vol.image.dtype, vol.image.shape, f"range [{vol.image.min():.2f}, {vol.image.max():.2f}]")
print("label values:", np.unique(vol.label), f"foreground {100 * (vol.label > 0).mean():.1f}% of the voxels")
record("n_labeled", len(data.labeled), record_path)
record("n_unlabeled", len(data.unlabeled), record_path)
record("image_shape", list(vol.image.shape), record_path)
record("label_values", np.unique(vol.label).tolist(), record_path);
'''),
    md("## Slices of one volume\n\nA montage shows evenly spaced slices along the last axis (spread over the slices that contain the atrium)."),
    code('viz.montage(vol.image, n=10, label=vol.label, title=f"{vol.name}: image slices");'),
    md("The ground-truth label drawn on top (green outline) -- this is what SFR must learn to predict:"),
    code('viz.plot_volume_overlays(vol.image, vol.label, slices=5, title=f"{vol.name}: ground truth");'),
    md("## Scroll through the volume\n\nIn a live notebook, the slider below moves through the slices. "
       "(The rendered book cannot run widgets; the animation after it plays anywhere.)"),
    code("viz.slice_viewer(vol.image, vol.label)", "remove-output"),
    code("viz.animate_slices(vol.image, vol.label, step=2)"),
    md("## The whole split at a glance\n\nHow big is the structure in each volume? Small structures are harder to segment "
       "(and give noisier Dice scores)."),
    code('''
rows = [{"name": v.name, "foreground %": 100 * float((v.label > 0).mean()), "role": role}
        for role in ("labeled", "unlabeled", "test") for v in getattr(data, role) if v.label is not None]
viz.plot_case_bars(rows, "foreground %", group_key="role", title="foreground share per volume");
'''),
    md("The unlabelled volumes *do* have labels on disk here (phantoms / the public LA set). SFR never trains on them; "
       "the lessons use them only to show how good the pseudo-labels are."),
] + exercise(
    "the foreground fraction",
    "Write `foreground_fraction(label)` returning the share of voxels (0..1) whose label is not background (> 0).",
    "foreground_fraction(label)",
    "check_foreground_fraction",
    '''
def foreground_fraction(label):
    return float((label > 0).mean())
''',
    "solution_ok",
)

L02 = header("02", "stitching", "Stitching: a 3D volume as one 2D mosaic", """
SAM is a 2D model. SFR's first idea: instead of feeding SAM one slice at a time, lay **all `D` slices of a
volume side by side** on a `d x d` grid (`d = ceil(sqrt(D))`, row-major, empty cells zero) and give SAM the
whole mosaic as one image. SAM then sees every slice of the volume at once, and its prediction is cut
back into a 3D label volume (*unstitching*). An LA crop of 112 x 112 x 80 becomes a 9 x 9 grid,
1008 x 1008 pixels, padded to SAM's 1024 x 1024.
""") + [
    md("## The grid\n\n`make_layout` plans where every slice lands; `stitch` builds the mosaic. We stitch a training crop "
       "(`cfg.sam.crop_size`, what SAM is fine-tuned on). Yellow lines are cell borders, numbers are slice indices, "
       "hatched cells are empty."),
    code('''
from sfr_teach.stitching import grid_size, make_layout, stitch, unstitch, valid_mask, get_strategy

vol = data.labeled[0]
image, label = crop_around_label(vol, cfg.sam.crop_size)
h, w, d = image.shape
print(f"crop {image.shape}: {d} slices -> a {grid_size(d)}x{grid_size(d)} grid of {h}x{w} cells")
layout = make_layout(image.shape, out_size=cfg.sam.image_size)
print(layout)
mosaic = stitch(image, layout)
mosaic_label = stitch(label, layout, is_label=True)
viz.show_mosaic(mosaic, layout, label=mosaic_label);
'''),
    md("## Stitching is exactly invertible\n\nThe crop's mosaic fits in SAM's input, so it is only padded: unstitching "
       "gives back the very same image and label, voxel for voxel."),
    code('''
label_error = int((unstitch(mosaic_label, layout, is_label=True) != label).sum())
image_error = float(np.abs(unstitch(mosaic, layout) - image).max())
print(f"resized: {layout.resized}; label voxels changed: {label_error}; max image error: {image_error}")
record("stitch_label_error", label_error, record_path)
record("stitch_image_error", image_error, record_path);
'''),
    md("A whole volume is bigger than a crop. When its mosaic does not fit, it is **resized** (bilinear for the image, "
       "nearest for the label) and the round trip is no longer exact -- no slice is ever dropped, but thin structures "
       "can lose a voxel here and there:"),
    code('''
full_layout = make_layout(vol.image.shape, out_size=cfg.sam.image_size)
full_back = unstitch(stitch(vol.label, full_layout, is_label=True), full_layout, is_label=True)
changed = int((full_back != vol.label).sum())
print(f"whole volume {vol.image.shape} -> {full_layout.grid}x{full_layout.grid} grid, {full_layout.raw} pixels, "
      f"scaled x{full_layout.scale:.3f}; label voxels changed: {changed} of {vol.label.size}")
record("full_volume_label_changed_fraction", changed / vol.label.size, record_path)
viz.show_mosaic(stitch(vol.image, full_layout), full_layout, label=stitch(vol.label, full_layout, is_label=True));
'''),
    md("The loss must ignore pixels that come from no slice (padding, empty cells): `valid_mask` marks the real ones."),
    code('''
vm = valid_mask(layout).numpy()
print(f"{100 * vm.mean():.1f}% of the mosaic pixels come from a real voxel")
viz.show_mosaic(vm.astype(np.float32), layout, title="valid_mask: white = a real voxel");
'''),
    md("## Why a grid? The paper's ablation\n\nTwo alternatives the paper compares with:\n\n"
       "* **up-sampling**: every slice alone, resized to SAM's input -- `D` SAM passes per volume, and SAM never sees 3D context;\n"
       "* **down-sampling**: only every 2nd slice on a smaller grid (bigger cells) -- the dropped slices must be interpolated back.\n\n"
       "Below, for the same crop: what SAM sees for each, how many SAM passes a volume costs, and how faithfully the label survives the round trip (Dice)."),
    code('''
import matplotlib.pyplot as plt

def dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())

strategies = {"grid (SFR)": get_strategy("grid", cfg.sam.image_size),
              "upsample": get_strategy("upsample", cfg.sam.image_size),
              "downsample": get_strategy("downsample", cfg.sam.image_size, step=2)}
fig, axes = plt.subplots(1, 3, figsize=(12, 4.3))
rows = []
for ax, (name, s) in zip(axes, strategies.items()):
    imgs = s.to_images(image)
    lab_back = s.from_images(s.to_images(label, is_label=True), label.shape, is_label=True)
    k = imgs.shape[0] // 2
    ax.imshow(imgs[k], cmap="gray"); ax.set_xticks([]); ax.set_yticks([])
    ax.set_title(f"{name}: image {k + 1} of {imgs.shape[0]}")
    rows.append({"name": name, "SAM passes per volume": imgs.shape[0], "label round-trip Dice": dice(lab_back > 0, label > 0)})
fig.tight_layout()
for r in rows:
    print(f"{r['name']:12s} SAM passes per volume: {r['SAM passes per volume']:3d}   label round-trip Dice: {r['label round-trip Dice']:.4f}")
record("strategy_roundtrip_dice", {r["name"]: float(r["label round-trip Dice"]) for r in rows}, record_path);
'''),
    code('viz.plot_case_bars(rows, "label round-trip Dice", title="how much of the label survives stitch + unstitch");'),
    md("The grid keeps every voxel with a single SAM pass. Up-sampling is exact too, but costs `D` passes and "
       "throws away the 3D context; down-sampling loses the slices it skipped."),
] + exercise(
    "stitch a volume",
    "Write `my_stitch(volume)` that turns an `(H, W, D)` volume into the `(d*H, d*W)` mosaic, `d = ceil(sqrt(D))`: "
    "slice `k` in row `k // d`, column `k % d`, empty cells zero (no padding to SAM's size).",
    "my_stitch(volume)",
    "check_stitch",
    '''
import math

def my_stitch(volume):
    h, w, d = volume.shape
    g = math.ceil(math.sqrt(d))
    mosaic = np.zeros((g * h, g * w), dtype=volume.dtype)
    for k in range(d):
        r, c = divmod(k, g)
        mosaic[r * h:(r + 1) * h, c * w:(c + 1) * w] = volume[:, :, k]
    return mosaic
''',
    "solution_ok_stitch",
) + exercise(
    "unstitch a mosaic",
    "Write `my_unstitch(mosaic, depth)`, the inverse: from the `(d*H, d*W)` mosaic back to the `(H, W, depth)` volume.",
    "my_unstitch(mosaic, depth)",
    "check_unstitch",
    '''
import math

def my_unstitch(mosaic, depth):
    g = math.ceil(math.sqrt(depth))
    h, w = mosaic.shape[0] // g, mosaic.shape[1] // g
    slices = [mosaic[(k // g) * h:(k // g + 1) * h, (k % g) * w:(k % g + 1) * w] for k in range(depth)]
    return np.stack(slices, axis=-1)
''',
    "solution_ok_unstitch",
)

SAM_STAGE = code("""
# Stage 2, cached: SAM is fine-tuned once per results folder and reused by every later lesson
seg = pipeline.run_finetune(cfg, data)
pseudo = pipeline.run_pseudo_labels(cfg, seg, data)
print(f"SAM: {pipeline.sam_provenance(cfg)}; {len(pseudo)} pseudo-labels, "
      f"mean Dice vs the hidden ground truth {np.mean([p.dice for p in pseudo]):.3f}")
""")

L03 = header("03", "sam_lora", "SAM and LoRA: fine-tuning a 2D foundation model on mosaics", """
SAM {cite}`kirillov2023sam` has three parts: a big **image encoder** (a ViT) that turns the image into
features, a **prompt encoder** (points, boxes) and a light **mask decoder**. SFR uses SAM without prompts
(the prompt encoder's "no prompt" embeddings) and asks the decoder for **one mask per class**, background
included, as SAMed does. The encoder stays frozen; small **LoRA** adapters {cite}`hu2021lora` in its
attention `qkv` projections and the mask decoder are what trains.
""") + [
    md("## The model and its parameters\n\n`pipeline.build_segmenter` builds SAM for this preset "
       "(the `paper` preset loads the ViT-B checkpoint; `smoke`/`classroom` build a small SAM-architecture model "
       "from scratch, because pretrained weights cannot be downloaded here)."),
    code("""
from sfr_teach.sam import build_from_config
from sfr_teach.sam.lora import apply_lora, count_parameters, lora_parameter_names

print(pipeline.sam_provenance(cfg))
fresh = build_from_config(cfg.sam, data.num_classes)
counts = count_parameters(fresh)
rows = [{"name": k, "parameters": v} for k, v in counts["by_module"].items() if v]
for r in rows:
    print(f"{r['name']:15s} {r['parameters']:>10,d}")
viz.plot_case_bars(rows, "parameters", mean=False, log=True, title="parameters per part of SAM (this preset, log scale)");
"""),
    md("## Where LoRA goes\n\nLoRA replaces a frozen weight `W` by `W + (alpha/r) B A` with `A` (`r x d_in`) and `B` "
       "(`d_out x r`), `B = 0` at the start -- so the model predicts exactly as before until it trains. "
       "We put it on every `image_encoder.blocks.<i>.attn.qkv`."),
    code("""
lora_model = apply_lora(build_from_config(cfg.sam, data.num_classes), rank=4)
names = lora_parameter_names(lora_model)
print(f"{len(names)} LoRA matrices (an A and a B per block), e.g.:", *names[:4], sep="\\n  ")
c = count_parameters(lora_model)
blocks = len(lora_model.image_encoder.blocks)
dim = lora_model.image_encoder.blocks[0].attn.qkv.in_features
expected = blocks * 4 * (dim + 3 * dim)
print(f"LoRA parameters: {c['by_module']['lora']:,d} = {blocks} blocks x 4 x ({dim} + {3 * dim})")
print(f"trainable: {c['trainable']:,d} of {c['total']:,d} ({100 * c['trainable'] / c['total']:.1f}%)")
print("ViT-B for comparison: 12 x 4 x (768 + 2304) =", f"{12 * 4 * (768 + 2304):,d} LoRA parameters beside ~86 M frozen "
      "encoder weights; this small model's encoder is tiny, so its decoder dominates the trainable share")
record("lora_params", c["by_module"]["lora"], record_path)
record("lora_params_expected", expected, record_path)
viz.plot_case_bars([{"name": "frozen", "parameters": c["total"] - c["trainable"]},
                    {"name": "trainable (LoRA + decoder)", "parameters": c["trainable"]}],
                   "parameters", mean=False, title="with LoRA: frozen vs trainable parameters (this model)");
"""),
    md("## Fine-tuning on stitched crops\n\nTraining samples are random crops of the labelled volumes, rotated/flipped, "
       "stitched into mosaics. The loss is CE + Dice on the real (non-padding) pixels. "
       f"This preset fine-tunes the whole small model (`cfg.sam.finetune`); with the ViT-B checkpoint it is LoRA."),
    code("""
from pathlib import Path

print("fine-tuning mode:", cfg.sam.finetune, "| steps:", cfg.sam.steps, "| mosaic:", cfg.sam.image_size, "px")
seg = pipeline.run_finetune(cfg, data)  # cached in the results folder: later lessons reuse it
log_csv = Path(cfg.out_dir) / "sam" / "sam_log.csv"
viz.plot_curves(log_csv, ["loss", "ce", "dice"], title="SAM fine-tuning (dice = the Dice loss term)");
"""),
    code("""
import csv
hist = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(open(log_csv))]
k = max(1, len(hist) // 5)
first, last = np.mean([r["loss"] for r in hist[:k]]), np.mean([r["loss"] for r in hist[-k:]])
print(f"loss: first {k} steps {first:.3f} -> last {k} steps {last:.3f}")
record("sam_loss_first", first, record_path)
record("sam_loss_last", last, record_path);
"""),
    md("## What SAM predicts on a mosaic\n\nA stitched crop of the labelled volume, SAM's prediction (red, dashed) "
       "against the ground truth (green):"),
    code("""
import torch
from sfr_teach.stitching import make_layout, stitch
from sfr_teach.sam.predict import predict_mosaics

vol = data.labeled[0]
img, lab = crop_around_label(vol, cfg.sam.crop_size)
layout = make_layout(img.shape, out_size=cfg.sam.image_size)
mosaic = stitch(img, layout)
with torch.no_grad():
    prob = predict_mosaics(seg, torch.from_numpy(mosaic)[None, None], device)[0].cpu().numpy()
pred = prob.argmax(0)
gt = stitch(lab, layout, is_label=True)
viz.overlay(mosaic, gt, pred, title="SAM on a stitched crop (training volume)");
"""),
] + exercise(
    "count LoRA parameters",
    "Write `lora_params(d_in, d_out, rank)`: how many parameters LoRA of rank `rank` adds to one `Linear(d_in, d_out)`.",
    "lora_params(d_in, d_out, rank)",
    "check_lora_params",
    """
def lora_params(d_in, d_out, rank):
    return rank * d_in + d_out * rank  # A: rank x d_in, B: d_out x rank
""",
    "solution_ok",
)

L04 = header("04", "pseudo_labels", "Pseudo-labels: SAM labels the unlabelled volumes", """
The fine-tuned SAM now predicts every **unlabelled** volume: the volume is cut into crops of the
fine-tuning size, each crop is stitched, SAM predicts the mosaic, and the prediction is unstitched
back to 3D. The result is a **pseudo-label** and, voxel by voxel, SAM's class probabilities. The
*confidence* of a volume -- the mean of the largest class probability -- is what SFR+ uses to
decide which pseudo-labels to trust.
""") + [SAM_STAGE,
    md("## Pseudo-labels against the (hidden) ground truth\n\nThe unlabelled volumes of this data set do have labels on disk; "
       "SFR never uses them, but they tell us how good the pseudo-labels are."),
    code("""
p0 = pseudo[0]
v0 = next(v for v in data.unlabeled if v.name == p0.name)
viz.plot_volume_overlays(v0.image, v0.label, p0.label, slices=5, pred_name="pseudo-label",
                         title=f"{p0.name}: pseudo-label (red) vs ground truth (green), Dice {p0.dice:.3f}");
"""),
    code("viz.animate_slices(v0.image, v0.label, p0.label, step=2)"),
    md("## Where is SAM unsure?\n\nThe confidence map: bright = one class has almost all the probability, dark = SAM "
       "hesitates. Unsure voxels sit on the boundary of the structure."),
    code("viz.plot_confidence_map(p0.prob, slices=4, image=v0.image);"),
    md("## Does confidence predict quality?\n\nEach dot is one unlabelled volume. SFR+ trusts the volumes right of the "
       "threshold `tau`."),
    code("""
conf = [p.confidence for p in pseudo]
dice = [p.dice for p in pseudo]
viz.plot_dice_vs_confidence(conf, dice, tau=cfg.sam.tau, names=[p.name for p in pseudo]);
for p in sorted(pseudo, key=lambda p: -p.confidence)[:10]:
    print(f"{p.name:20s} confidence {p.confidence:.4f}  Dice {p.dice:.3f}  foreground {100 * p.foreground_fraction:.1f}%")
if len(pseudo) > 10:
    print(f"... and {len(pseudo) - 10} more (the 10 most confident are shown)")
record("n_pseudo", len(pseudo), record_path)
record("pseudo_dice", dice, record_path)
record("pseudo_confidence", conf, record_path);
"""),
    md("How many volumes count as high-confidence depends on `tau`:"),
    code("""
taus = np.linspace(min(conf) - 0.005, 1.0, 50)
viz.plot_curves({"tau": list(taus), "high-confidence volumes": [int(sum(c >= t for c in conf)) for t in taus]},
                ["high-confidence volumes"], x="tau", title="volumes with confidence >= tau");
"""),
    code("""
rows = [{"name": p.name, "Dice": p.dice} for p in pseudo]
viz.plot_case_bars(rows, "Dice", title="pseudo-label Dice per unlabelled volume");
"""),
] + exercise(
    "the confidence of a volume",
    "Write `confidence(prob)` for class probabilities `prob` of shape `(C, H, W, D)`: the mean over voxels of the "
    "largest class probability.",
    "confidence(prob)",
    "check_confidence",
    """
def confidence(prob):
    return float(prob.max(axis=0).mean())
""",
    "solution_ok",
)


def retrain_cells(method: str, label: str) -> List[Cell]:
    """Baseline vs +SFR for one method: train both (cached), curves, per-case Dice, overlays, records."""
    return [
        md(f"## {label}: baseline vs +SFR\n\nThe same V-Net, the same seed, the same budget -- once with the method alone "
           "(*baseline*), once with SAM's pseudo-labels supervising the unlabelled volumes as well (*+SFR*). "
           "Both runs are cached in the results folder."),
        code(f"""
import copy
from pathlib import Path

METHOD = "{method}"
runs = {{}}
for variant, use_sfr in (("baseline", False), ("+SFR", True)):
    c = copy.deepcopy(cfg)
    c.retrain.method, c.retrain.sfr = METHOD, use_sfr
    out = Path(cfg.out_dir) / f"{{METHOD}}_{{'sfr' if use_sfr else 'baseline'}}"
    result = pipeline.run_retrain(c, data, pseudo if use_sfr else None, out_dir=out / "retrain")
    table = pipeline.run_evaluate(c, result.model, data, out_dir=out)
    runs[variant] = (c, result, table)
    d = table.summary["dice"]
    print(f"{{variant:9s}} {{c.retrain.steps}} iterations, test Dice {{d['mean']:.3f}} ± {{d['std']:.3f}} ({{len(table.rows)}} cases)")
"""),
        code("""
hists = {v: r.history for v, (_, r, _) in runs.items()}
keys = [k for k in ("loss", "loss_sup", "loss_cons", "loss_sfr") if any(k in row for h in hists.values() for row in h)]
viz.plot_curves_compare(hists, keys, x="iter", title=f"{METHOD}: training losses");
"""),
        code("""
rows = [dict(row, variant=v) for v, (_, _, t) in runs.items() for row in t.rows]
viz.plot_case_bars(rows, "dice", group_key="variant", title=f"{METHOD}: test Dice per case");
"""),
        md("What the two networks predict on a test volume (green: ground truth, red: prediction):"),
        code("""
from sfr_teach.evaluate import sliding_window_predict

tv = data.test[0]
for variant, (c, result, _) in runs.items():
    prob = sliding_window_predict(result.model, tv.image, c.eval.patch_size, c.eval.stride, data.num_classes, device=device)
    viz.plot_volume_overlays(tv.image, tv.label, prob.argmax(0), slices=4, pred_name=f"{variant} prediction",
                             title=f"{METHOD} {variant} on {tv.name}")
"""),
        code("""
for variant, (c, result, table) in runs.items():
    losses = [row["loss"] for row in result.history if "loss" in row]
    k = max(1, len(losses) // 4)
    tag = "sfr" if variant == "+SFR" else "baseline"
    record(f"{tag}_loss_first", float(np.mean(losses[:k])), record_path)
    record(f"{tag}_loss_last", float(np.mean(losses[-k:])), record_path)
    record(f"{tag}_dice", table.summary["dice"]["mean"], record_path)
    record(f"{tag}_cases", len(table.rows), record_path);
""", "remove-cell"),
    ]


L05 = header("05", "self_training", "Self-training: a network labels its own data", """
The simplest semi-supervised method: a frozen copy of the network predicts the unlabelled crops,
and the network learns from those predictions as if they were labels (refreshing the copy now and
then). Its weakness: early on its own predictions are poor, and it learns its own mistakes. SFR adds
a *second* source of labels for the unlabelled volumes: SAM's pseudo-labels.
""") + [SAM_STAGE,
    md("## The supervision +SFR adds\n\nFor each unlabelled volume, SAM's pseudo-label (red) -- the network is trained to "
       "match it, on top of the labelled loss and the method's own loss:"),
    code("""
p = pseudo[-1]
v = next(u for u in data.unlabeled if u.name == p.name)
viz.plot_volume_overlays(v.image, v.label, p.label, slices=4, pred_name="SAM pseudo-label",
                         title=f"{p.name}: what +SFR supervises with (Dice {p.dice:.3f})");
"""),
] + retrain_cells("self_training", "Self-training") + exercise(
    "the Dice score",
    "Write `dice(pred, gt)` for two binary 3D masks: `2 |P ∩ G| / (|P| + |G|)`.",
    "dice(pred, gt)",
    "check_dice",
    """
def dice(pred, gt):
    p, g = pred > 0, gt > 0
    return 2.0 * np.logical_and(p, g).sum() / (p.sum() + g.sum())
""",
    "solution_ok",
)

L06 = header("06", "mean_teacher", "Mean Teacher: a teacher that averages the student", """
Mean Teacher {cite}`tarvainen2017meanteacher` keeps two copies of the network. The **student** learns
by gradient descent; the **teacher**'s weights are an exponential moving average (EMA) of the student's.
On unlabelled crops the student must agree with the teacher (a consistency loss, the MSE between their
softmax outputs, the teacher seeing a noisy input), with a weight that ramps up slowly. With one labelled
LA volume the paper reports 29.68% Dice for Mean Teacher and 74.40% for SFR + Mean Teacher.
""") + [SAM_STAGE,
    md("## The two schedules\n\nThe EMA factor `a = min(1 - 1/(step + 1), 0.99)` and the consistency weight "
       "`0.1 * exp(-5 (1 - t/L)^2)` (t = iteration // 150) over the paper's 6000 iterations:"),
    code("""
from sfr_teach.ssl.base import EMATeacher
from sfr_teach.ssl.ramps import consistency_weight

its = list(range(0, 6000, 25))
ema = EMATeacher(torch.nn.Linear(1, 1), decay=0.99)  # the trainers' EMA teacher; .alpha(step) is its factor
viz.plot_curves({"iter": its, "EMA factor a": [ema.alpha(i) for i in its],
                 "consistency weight": [consistency_weight(i, 0.1, 40.0) for i in its]},
                ["EMA factor a", "consistency weight"], x="iter", title="Mean Teacher schedules (paper protocol)");
"""),
] + retrain_cells("mean_teacher", "Mean Teacher") + exercise(
    "the EMA update",
    "Write `ema_update(teacher, student, alpha, step)` that updates the teacher's parameters **in place**: "
    "`a = min(1 - 1/(step + 1), alpha)`, then `teacher = a * teacher + (1 - a) * student`.",
    "ema_update(teacher, student, alpha, step)",
    "check_ema_update",
    """
def ema_update(teacher, student, alpha, step):
    a = min(1 - 1 / (step + 1), alpha)
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.data.mul_(a).add_(s.data, alpha=1 - a)
""",
    "solution_ok",
) + exercise(
    "the sigmoid ramp-up",
    "Write `sigmoid_rampup(current, length)`: `exp(-5 (1 - t/L)^2)` with `t = current` clipped to `[0, L]`, and 1.0 when `L == 0`.",
    "sigmoid_rampup(current, length)",
    "check_sigmoid_rampup",
    """
import math

def sigmoid_rampup(current, length):
    if length == 0:
        return 1.0
    t = min(max(current, 0.0), length)
    return math.exp(-5.0 * (1.0 - t / length) ** 2)
""",
    "solution_ok_rampup",
)

L07 = header("07", "ua_mt", "UA-MT: only trust the teacher where it is certain", """
UA-MT {cite}`yu2019uamt` is Mean Teacher with an **uncertainty** filter: the teacher predicts each
unlabelled crop several times with random noise (and dropout), the entropy of the averaged prediction
measures its uncertainty, and the consistency loss only counts voxels whose uncertainty is below a
threshold that rises from 0.75 ln 2 to ln 2 during training.
""") + [SAM_STAGE] + retrain_cells("ua_mt", "UA-MT") + [
    md("## The teacher's uncertainty\n\nThe entropy of the trained +SFR teacher's stochastic passes on a test crop "
       "(bright = uncertain). Uncertainty concentrates on the boundary of the structure:"),
    code("""
import torch
from sfr_teach.ssl.ua_mt import uamt_threshold

_, res, _ = runs["+SFR"]
crop, _ = crop_around_label(tv, cfg.retrain.patch_size)
pd = crop.shape[2]
x = torch.from_numpy(np.ascontiguousarray(crop))[None, None].to(device)
with torch.no_grad():
    unc = res.method.uncertainty(x)[0, 0].float().cpu().numpy()
print(f"entropy range [{unc.min():.3f}, {unc.max():.3f}] nats (ln 2 = {np.log(2):.3f} is the maximum for 2 classes)")
for when, it in (("start", 0), ("end", cfg.retrain.steps)):
    thr = uamt_threshold(it, cfg.retrain.steps)
    print(f"threshold at the {when} of training {thr:.3f}: {100 * (unc < thr).mean():.1f}% of the voxels count in the consistency loss")
record("uncertainty_max", float(unc.max()), record_path)
viz.show_slices(unc, [int(s) for s in np.linspace(0, pd - 1, 4)], cmap="magma", title="teacher uncertainty (entropy)");
"""),
] + exercise(
    "the entropy of a prediction",
    "Write `entropy(prob)` for probabilities `prob` of shape `(C, ...)`: `-sum_c p log p` per voxel, natural log.",
    "entropy(prob)",
    "check_entropy",
    """
def entropy(prob):
    p = np.clip(prob, 1e-12, 1.0)
    return -(prob * np.log(p)).sum(axis=0)
""",
    "solution_ok",
)

L08 = header("08", "ac_mt", "AC-MT: learn from the ambiguous voxels", """
AC-MT {cite}`xu2023acmt` makes the opposite choice to UA-MT: the consistency loss is computed on the
**ambiguous** voxels, where the student's normalised entropy is at least a threshold (rising from 0.75
to 0.95) -- the easy voxels are already learnt, the hard ones carry the information.
""") + [SAM_STAGE] + retrain_cells("ac_mt", "AC-MT") + [
    md("## Which voxels are ambiguous?\n\nThe trained +SFR student on a test crop: its normalised entropy and the "
       "voxels AC-MT would select at the start (0.75) and at the end (0.95) of training:"),
    code("""
import math
import torch
from sfr_teach.evaluate import sliding_window_predict

c, res, _ = runs["+SFR"]
prob = sliding_window_predict(res.model, tv.image, c.eval.patch_size, c.eval.stride, data.num_classes, device=device)
h = -(prob * np.log(np.clip(prob, 1e-12, None))).sum(0) / math.log(prob.shape[0])
k = int(np.argmax((tv.label > 0).sum(axis=(0, 1))))
for tau in (0.75, 0.95):
    print(f"tau {tau}: {100 * (h >= tau).mean():.2f}% of the voxels are ambiguous")
record("ambiguous_fraction_075", float((h >= 0.75).mean()), record_path)
viz.show_slices(np.stack([h[:, :, k], (h >= 0.75)[:, :, k], (h >= 0.95)[:, :, k]], -1).astype(np.float32), [0, 1, 2],
                cmap="magma", title=f"slice {k}: normalised entropy | ambiguous at 0.75 | at 0.95");
"""),
] + exercise(
    "the ambiguity mask",
    "Write `ambiguous_mask(prob, tau)`: for `prob` of shape `(C, ...)`, True where the entropy divided by `ln C` is >= `tau`.",
    "ambiguous_mask(prob, tau)",
    "check_ambiguous_mask",
    """
import math

def ambiguous_mask(prob, tau):
    ent = -(prob * np.log(np.clip(prob, 1e-12, None))).sum(axis=0)
    return ent / math.log(prob.shape[0]) >= tau
""",
    "solution_ok",
)

L09 = header("09", "magicnet", "MagicNet: the magic cube", """
MagicNet {cite}`chen2023magicnet` cuts each training patch into `n x n x n` small cubes. **Cross-image**:
cubes of a labelled and an unlabelled patch are mixed, the network segments the mix and the cubes are
put back. **Within-image**: a patch's cubes are shuffled and a small head learns each cube's original
position. Recovered cube predictions are blended with the teacher's into pseudo-labels. It was designed
for multi-organ CT; here we plug it into SFR on the same data as the other lessons.
""") + [
    code("""
# MagicNet needs patches divisible into cubes the V-Net can take (16 n voxels per side)
n = cfg.retrain.magicnet_cube if preset == "paper" else 2
side = 16 * n
cfg.retrain.magicnet_cube = n
cfg.retrain.patch_size = tuple(max(side, (p // side) * side) for p in cfg.retrain.patch_size)
print(f"{n}^3 = {n ** 3} cubes per patch, patch {cfg.retrain.patch_size}")
"""),
    SAM_STAGE,
    md("## The cubes\n\nA patch of the labelled volume, its cubes shuffled (within-image partition) -- the network "
       "must still segment it and tell where each cube came from:"),
    code("""
import torch
from sfr_teach.ssl.magicnet import to_cubes, from_cubes

vol = data.labeled[0]
crop, _ = crop_around_label(vol, cfg.retrain.patch_size)
pd = crop.shape[2]
patch = torch.from_numpy(np.ascontiguousarray(crop))[None, None]
perm = torch.randperm(n ** 3, generator=torch.Generator().manual_seed(seed))
shuffled = from_cubes(to_cubes(patch, n)[:, perm], n)[0, 0].numpy()
assert np.array_equal(from_cubes(to_cubes(patch, n), n)[0, 0].numpy(), patch[0, 0].numpy())  # exact inverse
k = [int(s) for s in np.linspace(0, pd - 1, 3)]
viz.show_slices(np.concatenate([patch[0, 0].numpy()[:, :, k], shuffled[:, :, k]], axis=-1), list(range(6)), cols=3,
                title="top: original patch, bottom: cubes shuffled");
"""),
] + retrain_cells("magicnet", "MagicNet") + exercise(
    "cut a volume into cubes",
    "Write `cube_partition(volume, n)`: `(H, W, D)` -> `(n**3, H/n, W/n, D/n)`, cube `(i, j, k)` at index `i*n*n + j*n + k`.",
    "cube_partition(volume, n)",
    "check_cube_partition",
    """
def cube_partition(volume, n):
    h, w, d = (s // n for s in volume.shape)
    return np.stack([volume[i * h:(i + 1) * h, j * w:(j + 1) * w, k * d:(k + 1) * d]
                     for i in range(n) for j in range(n) for k in range(n)])
""",
    "solution_ok",
)

L10 = header("10", "sfr_plus", "SFR+: trust the confident pseudo-labels more", """
SFR+ splits the unlabelled volumes by SAM's confidence. Volumes with confidence >= tau (0.985 in the paper)
are **high-confidence**: their pseudo-labels join the labelled volumes in SAM's fine-tuning set, and SAM
is fine-tuned again (`pipeline.run_sfr_plus`) -- more (pseudo-)labelled data for SAM. The re-fine-tuned SAM then predicts the
**low-confidence** volumes again, and re-training uses the improved pseudo-labels.
""") + [SAM_STAGE,
    md("## Choosing the high-confidence volumes\n\nThe paper's `tau = 0.985` assumes a pretrained SAM. A small SAM "
       "trained from scratch is less confident; when no volume reaches `tau` we use the median confidence instead, "
       "so that the mechanism is visible -- the page says which `tau` it used."),
    code("""
conf = {p.name: p.confidence for p in pseudo}
tau = cfg.sam.tau
if not any(c >= tau for c in conf.values()):
    tau = float(np.median(list(conf.values())))
    print(f"no volume reaches tau={cfg.sam.tau}; using the median confidence tau={tau:.4f} for this preset")
cfg.sam.tau = tau
viz.plot_dice_vs_confidence(list(conf.values()), [p.dice for p in pseudo], tau, names=list(conf));
"""),
    code("""
import copy
from pathlib import Path

c = copy.deepcopy(cfg)
c.out_dir = str(Path(cfg.out_dir) / f"sfr_plus_tau{tau:.4f}")  # cached per tau: a re-run reuses the second fine-tuning
# high-confidence volumes join the labelled set, SAM is fine-tuned again, the low-confidence ones are re-predicted
plus = pipeline.run_sfr_plus(c, seg, data, pseudo, device=device)
plus_pseudo = plus["pseudo_labels"]
print("high-confidence (join SAM's training set):", plus["high"])
print("low-confidence (re-predicted by the re-fine-tuned SAM):", plus["low"])
log_csv = Path(c.out_dir) / "sfr_plus" / "finetune" / "sam_log.csv"
if log_csv.is_file():
    viz.plot_curves(log_csv, ["loss"], title="SAM fine-tuned again with the high-confidence volumes");
"""),
    code("""
before = {p.name: p.dice for p in pseudo}
after = {p.name: p.dice for p in plus_pseudo}
rows = [{"name": n, "Dice": before[n], "round": "SFR"} for n in before] + \\
       [{"name": n, "Dice": after[n], "round": "SFR+"} for n in after]
viz.plot_case_bars(rows, "Dice", group_key="round", title="pseudo-label Dice before / after SFR+");
record("n_high", len(plus["high"]), record_path)
record("n_low", len(plus["low"]), record_path)
record("pseudo_dice_sfr", float(np.mean(list(before.values()))), record_path)
record("pseudo_dice_sfr_plus", float(np.mean(list(after.values()))), record_path);
"""),
    md("## Re-training with the SFR+ pseudo-labels\n\nMean Teacher + SFR (lesson 6) against Mean Teacher + SFR+:"),
    code("""
results = {}
for variant, pls in (("+SFR", pseudo), ("+SFR+", plus_pseudo)):
    cc = copy.deepcopy(cfg)
    cc.retrain.method, cc.retrain.sfr = "mean_teacher", True
    out = Path(cfg.out_dir) / ("mean_teacher_sfr" if variant == "+SFR" else "mean_teacher_sfr_plus")
    result = pipeline.run_retrain(cc, data, pls, out_dir=out / "retrain")
    table = pipeline.run_evaluate(cc, result.model, data, out_dir=out)
    results[variant] = table
    print(f"Mean Teacher {variant:6s} test Dice {table.summary['dice']['mean']:.3f} ± {table.summary['dice']['std']:.3f}")
record("mt_sfr_plus_dice", results["+SFR+"].summary["dice"]["mean"], record_path)
rows = [dict(r, variant=v) for v, t in results.items() for r in t.rows]
viz.plot_case_bars(rows, "dice", group_key="variant", title="Mean Teacher: SFR vs SFR+, test Dice per case");
"""),
] + exercise(
    "split by confidence",
    "Write `split_by_tau(confidences, tau)` for a dict `{name: confidence}`: return `(high, low)`, two lists of names; "
    "high means confidence >= tau.",
    "split_by_tau(confidences, tau)",
    "check_tau_selection",
    """
def split_by_tau(confidences, tau):
    high = [name for name, c in confidences.items() if c >= tau]
    low = [name for name, c in confidences.items() if c < tau]
    return high, low
""",
    "solution_ok",
)

L11 = header("11", "results", "Results: our runs beside the paper's", """
Everything the earlier lessons trained, in one place: the mean test Dice of every method, baseline
and +SFR, and the full-scale table the lead runs at the `classroom` preset on the real LA data,
beside the numbers the paper reports {cite}`li2025sfr`.
""", extra_params='results_dir = "../results"  # where la_classroom.csv / .json / .md live\n') + [
    md("## The paper's numbers (Dice %, LA, 20 test volumes)\n\n"
       "| labelled | method | Dice % |\n|---|---|---|\n"
       "| 1 | Mean Teacher | 29.68 |\n| 1 | SFR + Mean Teacher | 74.40 |\n| 16 | V-Net | 86.03 |\n"
       "| 16 | Mean Teacher | 88.23 |\n| 16 | UA-MT | 88.88 |\n| 16 | AC-MT | 90.31 |\n| 80 | V-Net (all labelled) | 91.14 |"),
    md("## The committed classroom results\n\n`results/la_classroom.csv` / `.json` in the repository: real LA at half "
       "resolution, the offline small SAM (no pretrained weights), CPU budgets."),
    code("""
import csv
import json
from pathlib import Path

def read_rows(path):
    if path.suffix == ".csv":
        return list(csv.DictReader(open(path)))
    doc = json.loads(path.read_text())
    if isinstance(doc, dict):
        doc = doc.get("rows") or doc.get("runs") or doc.get("cases") or [doc]
    return list(doc)

from IPython.display import Markdown, display

results = Path(results_dir)
found = [p for p in (results / "la_classroom.csv", results / "la_classroom.json") if p.is_file()]
classroom_rows = read_rows(found[0]) if found else []
if not found:
    print(f"{results / 'la_classroom.csv'} (or .json) is not in this checkout yet: run the classroom experiments "
          "and scripts/collect_results.py to produce it. The lesson continues with this session's runs.")
elif (results / "la_classroom.md").is_file():
    display(Markdown((results / "la_classroom.md").read_text()))
else:
    print(f"{found[0]}: {len(classroom_rows)} rows")
    for r in classroom_rows:
        print(", ".join(f"{k}={v}" for k, v in r.items() if k in ("method", "variant", "dice_mean", "dice_std")))
record("classroom_rows", len(classroom_rows), record_path);
"""),
    code("""
def as_float(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None

dice_key = next((k for k in ("dice_mean", "dice", "Dice") if classroom_rows and k in classroom_rows[0]), None)
if dice_key and "method" in classroom_rows[0]:
    vkey = next((k for k in ("variant", "sfr") if k in classroom_rows[0]), None)
    rows = [{"name": r["method"], "Dice": as_float(r[dice_key]), "variant": str(r[vkey]) if vkey else "run"}
            for r in classroom_rows if as_float(r[dice_key]) is not None]
    viz.plot_case_bars(rows, "Dice", group_key="variant", title="classroom preset: mean test Dice per method");
"""),
    md("## How good were the classroom pseudo-labels?\n\nOne SAM fine-tuning (the `mt_sfr` row) labelled the 63 unlabelled "
       "LA volumes; each dot is a volume, its confidence (mean max probability) against its Dice with the hidden ground "
       "truth. SFR+ keeps the volumes right of the threshold for a second fine-tuning."),
    code("""
from IPython.display import Image
png = results / "la_classroom_pseudo_labels.png"
if png.is_file():
    display(Image(filename=str(png)))
    pl_rows = list(csv.DictReader(open(results / "la_classroom_pseudo_labels.csv")))
    print(f"{len(pl_rows)} volumes; confidence {min(float(r['confidence']) for r in pl_rows):.3f}"
          f"-{max(float(r['confidence']) for r in pl_rows):.3f}")
else:
    print(f"{png} is not in this checkout yet (scripts/plot_pseudo_label_confidence.py makes it)")
"""),
    md("## This session's runs\n\nThe re-training lessons (05-10) stored their evaluations in the shared results folder; "
       "here they are side by side (preset and data as stated at the top of this page)."),
    code("""
base = Path(cfg.out_dir)
session = []
for f in sorted(base.glob("*/metrics.csv")):
    rows_f = list(csv.DictReader(open(f)))
    d = [float(r["dice"]) for r in rows_f if r.get("dice") not in (None, "", "nan")]
    if not d:
        continue
    name = f.parent.name
    for suffix, label in (("_sfr_plus", "+SFR+"), ("_sfr", "+SFR"), ("_baseline", "baseline")):
        if name.endswith(suffix):
            session.append({"name": name[: -len(suffix)], "Dice": float(np.mean(d)), "std": float(np.std(d)),
                            "variant": label, "cases": len(d)})
            break
if not session:
    print(f"no re-training results under {base} yet: run lessons 05-10 first (same preset and cache_dir)")
else:
    for r in session:
        print(f"{r['name']:14s} {r['variant']:9s} Dice {r['Dice']:.3f} ± {r['std']:.3f} ({r['cases']} cases)")
    viz.plot_case_bars(session, "Dice", group_key="variant", title="this session: mean test Dice per method");
record("session_runs", len(session), record_path);
"""),
    md("At the `smoke` preset these are tiny networks trained for a few dozen steps on synthetic phantoms: they "
       "show that every piece runs and how to read the comparison, not the paper's accuracy."),
] + exercise(
    "mean and standard deviation",
    "Write `mean_std(values)` returning `(mean, std)` as the tables report them: the population standard deviation "
    "(divide by N).",
    "mean_std(values)",
    "check_mean_std",
    """
def mean_std(values):
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(np.sqrt(((v - v.mean()) ** 2).mean()))
""",
    "solution_ok",
)

LESSONS: Dict[str, Tuple[str, List[Cell]]] = {
    "01": ("data", L01),
    "02": ("stitching", L02),
    "03": ("sam_lora", L03),
    "04": ("pseudo_labels", L04),
    "05": ("self_training", L05),
    "06": ("mean_teacher", L06),
    "07": ("ua_mt", L07),
    "08": ("ac_mt", L08),
    "09": ("magicnet", L09),
    "10": ("sfr_plus", L10),
    "11": ("results", L11),
}


def build(cells: List[Cell]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    for kind, src, tags in cells:
        cell = new_markdown_cell(src) if kind == "md" else new_code_cell(src)
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i:02d}"
    return nb


def main(argv: Optional[List[str]] = None) -> None:
    wanted = (argv if argv is not None else sys.argv[1:]) or list(LESSONS)
    NB_DIR.mkdir(exist_ok=True)
    for num in wanted:
        slug, cells = LESSONS[num]
        path = NB_DIR / f"{num}_{slug}.ipynb"
        nbformat.write(build(cells), path)
        print("wrote", path.relative_to(REPO))


if __name__ == "__main__":
    main()
