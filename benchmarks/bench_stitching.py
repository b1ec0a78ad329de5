"""Benchmark: stitch + unstitch throughput and peak memory, numpy vs torch CPU vs torch CUDA.

    python benchmarks/bench_stitching.py [--quick] [--threads N]

Shapes: an LA training crop 112x112x80 (9x9 grid, padded to 1024, no resizing) and a whole LA-size
volume 192x144x88 (10x10 grid, 1920x1440 resized to 1024x768). Each run stitches an image batch
(bilinear when resizing) and a label batch (nearest) and unstitches both: one "volume" = one image
+ one label round trip. Batches of 1 and 8 volumes go through one call (leading batch dim).

Peak memory: on the CPU the process's resident-set high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs``) above the level before the call, with glibc's mmap threshold pinned
(``MALLOC_MMAP_THRESHOLD_``, the script re-executes itself once to set it) so freed large arrays
leave the resident set instead of being cached -- tracemalloc cannot see it because
``stitch`` works on torch tensors internally even for numpy input (torch's allocator is not traced);
on CUDA ``torch.cuda.max_memory_allocated`` above the inputs. Not a test: prints a table.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sfr_teach.stitching import make_layout, stitch, unstitch

SHAPES = {"crop 112x112x80": (112, 112, 80), "whole 192x144x88": (192, 144, 88)}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def round_trip(img, lab, layout):
    m_img = stitch(img, layout)
    m_lab = stitch(lab, layout, is_label=True, fill=255)
    return unstitch(m_img, layout), unstitch(m_lab, layout, is_label=True)


def bench(backend: str, shape, batch: int, reps: int):
    rng = np.random.default_rng(0)
    img = rng.standard_normal((batch, *shape)).astype(np.float32)
    lab = (rng.random((batch, *shape)) > 0.7).astype(np.uint8)
    if backend != "numpy":
        dev = "cuda" if backend == "torch cuda" else "cpu"
        img, lab = torch.from_numpy(img).to(dev), torch.from_numpy(lab).to(dev)
    layout = make_layout(shape, 1024)
    sync = torch.cuda.synchronize if backend == "torch cuda" else (lambda: None)
    round_trip(img, lab, layout)  # warm-up
    sync()
    if backend == "torch cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        ok = _reset_hwm()
        base = _rss_kb("VmRSS") * 1024 if ok else None
    t = time.perf_counter()
    for _ in range(reps):
        out = round_trip(img, lab, layout)
    sync()
    dt = (time.perf_counter() - t) / reps
    if backend == "torch cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _rss_kb("VmHWM") * 1024 - base if base is not None else float("nan")
    assert np.array_equal(np.asarray(out[1].cpu() if torch.is_tensor(out[1]) else out[1]), np.asarray(lab.cpu() if torch.is_tensor(lab) else lab)) or layout.resized
    return batch / dt, peak / 2**20, layout


def main() -> None:
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # see the module docstring (peak memory)
        os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    backends = ["numpy", "torch cpu"] + (["torch cuda"] if torch.cuda.is_available() else [])
    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()})")
    print(f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none (CUDA not available)'}")
    print(f"torch {torch.__version__}, numpy {np.__version__}\n")
    head = f"{'volume':<18} {'mosaic':<26} {'batch':>5}  " + "  ".join(f"{b + ' vol/s':>16} {'peak MB':>8}" for b in backends)
    print(head)
    print("-" * len(head))
    for name, shape in SHAPES.items():
        for batch in (1, 8):
            reps = (2 if batch == 8 else 5) if args.quick else (5 if batch == 8 else 20)
            cells, lay = [], None
            for b in backends:
                rate, peak, lay = bench(b, shape, batch, reps)
                cells.append(f"{rate:>16.1f} {peak:>8.0f}")
            mosaic = f"{lay.grid}x{lay.grid} {lay.raw[0]}x{lay.raw[1]}" + ("->" + "x".join(map(str, lay.scaled)) if lay.resized else " pad")
            print(f"{name:<18} {mosaic:<26} {batch:>5}  " + "  ".join(cells))
    print("\none volume = image (float32) + label (uint8) stitched to 1024 and unstitched back")


if __name__ == "__main__":
    main()
