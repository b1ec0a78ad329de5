"""Benchmark: sliding-window inference on an LA-size volume, LA "constant" protocol vs MONAI Gaussian.

    python benchmarks/bench_inference.py [--quick] [--threads N] [--filters F]

The network is the project's V-Net (:class:`sfr_teach.nets.VNet`, 16 base filters = the ~9.45 M
parameter V-Net of the LA literature). Volume 192x144x88, patch 112x112x80, the LA test stride 18/18/4
(6 x 3 x 3 = 54 windows); ``--quick`` uses stride 80/32/8 (2 x 2 x 2 = 8 windows) so it finishes on
a laptop CPU. Reports seconds per volume and windows per second. Not a test: prints a table.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stitching import cpu_name  # noqa: E402

from sfr_teach.evaluate import sliding_window_predict, window_positions  # noqa: E402
from sfr_teach.nets import VNet  # noqa: E402

SHAPE, PATCH = (192, 144, 88), (112, 112, 80)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="stride 80/32/8 (8 windows) instead of 18/18/4 (54)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--filters", type=int, default=16, help="V-Net base filters (16: the literature's size)")
    ap.add_argument("--batch-size", type=int, default=0, help="windows per forward pass (default 4 on GPU, 1 on CPU)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bs = args.batch_size or (4 if device.type == "cuda" else 1)
    stride = (80, 32, 8) if args.quick else (18, 18, 4)
    net = VNet(n_channels=1, n_classes=2, n_filters=args.filters).to(device)
    desc = f"sfr_teach.nets.VNet (n_filters={args.filters})"
    params = sum(p.numel() for p in net.parameters())
    n_win = len(window_positions(SHAPE, PATCH, stride))
    print(f"CPU: {cpu_name()} ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()})")
    print(f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none (CUDA not available)'}")
    print(f"net: {desc}, {params / 1e6:.2f} M parameters; device {device}" + (" (bf16 autocast)" if device.type == "cuda" else " (fp32)"))
    print(f"volume {SHAPE}, patch {PATCH}, stride {stride}: {n_win} windows, batch {bs}\n")
    image = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    sliding_window_predict(net, image[:112, :112, :80], PATCH, stride, 2, device=device)  # warm-up
    head = f"{'mode':<10} {'s / volume':>11} {'windows / s':>12}"
    print(head)
    print("-" * len(head))
    probs = {}
    for mode in ("constant", "gaussian"):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        probs[mode] = sliding_window_predict(net, image, PATCH, stride, 2, mode=mode, device=device, batch_size=bs)
        dt = time.perf_counter() - t
        print(f"{mode:<10} {dt:>11.2f} {n_win / dt:>12.2f}")
    agree = float((probs["constant"].argmax(0) == probs["gaussian"].argmax(0)).mean())
    print(f"\nvoxels with the same argmax in both modes (random weights): {agree:.4f}")


if __name__ == "__main__":
    main()
