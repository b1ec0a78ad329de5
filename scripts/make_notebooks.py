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
# Colab only: install sfr-teach from the repository (nothing happens anywhere else)
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

device = resolve_device("auto")  # the GPU when there is one (Colab: Runtime > Change runtime type)
print("device:", torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)")
'''

PARAMS = '''
# Parameters (papermill overrides these; edit them to run a bigger experiment)
preset = "smoke"  # smoke (synthetic phantoms, seconds) | classroom (real LA, CPU minutes) | paper (GPU)
data_dir = None  # LA root for classroom / paper (default: $SFR_LA_DIR or data/LA)
seed = 1337
sam_steps = None  # SAM fine-tuning budget (None: the preset's)
retrain_steps = None  # V-Net re-training budget (None: the preset's)
labeled = None  # number of labelled volumes (None: the preset's)
cache_dir = "../runs/notebooks"  # results shared by lessons 03-10: SAM is fine-tuned once
record_path = None  # JSON file where the lesson records its key numbers (used by the tests)
'''

SETUP = '''
import os
import numpy as np
from sfr_teach import pipeline, viz
from sfr_teach.config import get_config
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


def header(num: str, slug: str, title: str, intro: str) -> List[Cell]:
    badge = f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({COLAB}/{num}_{slug}.ipynb)"
    return [
        md(f"# {int(num)}. {title}\n\n{badge}\n\n{intro.strip()}"),
        code(INSTALL),
        code(DEVICE),
        code(PARAMS, "parameters"),
        code(SETUP),
    ]


def exercise(title: str, task: str, stub: str, checker: str, solution: str, key: str) -> List[Cell]:
    """Exercise: task text, a stub the student edits + the checker, the hidden solution (checked and recorded)."""
    fn = stub.split("def ", 1)[1].split("(", 1)[0]
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
    '''
def foreground_fraction(label):
    # your code here
    raise NotImplementedError
''',
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
ch, cw, cd = cfg.sam.crop_size
image, label = vol.image[:ch, :cw, :cd], vol.label[:ch, :cw, :cd]
print(f"crop {image.shape}: {cd} slices -> a {grid_size(cd)}x{grid_size(cd)} grid of {ch}x{cw} cells")
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
    '''
def my_stitch(volume):
    # your code here
    raise NotImplementedError
''',
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
    '''
def my_unstitch(mosaic, depth):
    # your code here
    raise NotImplementedError
''',
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

LESSONS: Dict[str, Tuple[str, List[Cell]]] = {
    "01": ("data", L01),
    "02": ("stitching", L02),
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
