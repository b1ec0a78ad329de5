"""Seconds per SAM fine-tuning step and peak memory, on CPU and (when present) CUDA.

Models: tiny at the smoke and classroom sizes (``get_config(...).sam``) and ViT-B (random
weights -- the architecture and cost of the official model -- LoRA r=4, 1024 input, batch 2).
One step = forward + Dice/CE loss + backward + AdamW on a stitched batch. Every case runs in its
own subprocess; peak memory is CUDA's ``max_memory_allocated`` or, on CPU, the subprocess's
maximum resident set size (the whole process: Python, torch and the model included).

    python benchmarks/bench_sam.py            # all models, CPU (+ CUDA)
    python benchmarks/bench_sam.py --quick    # tiny models only, 2 timed steps, CPU
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import resource
import subprocess
import sys
import time

import torch

from sfr_teach.config import get_config
from sfr_teach.losses import IGNORE_INDEX, ce_dice
from sfr_teach.sam import build_from_config
from sfr_teach.sam.lora import count_parameters, set_trainable


def _cases(quick: bool = False):
    smoke = get_config("smoke").sam
    classroom = get_config("classroom").sam
    other = dict(tiny_patch_size=8, tiny_window_size=8) if classroom.tiny_patch_size != 8 else dict(
        tiny_patch_size=16, tiny_window_size=7)
    yield f"tiny smoke ({smoke.image_size}, {smoke.finetune}, patch {smoke.tiny_patch_size})", smoke
    for c in (classroom, dataclasses.replace(classroom, **other)):
        yield f"tiny classroom ({c.image_size}, {c.finetune}, patch {c.tiny_patch_size})", c
    if not quick:
        yield "vit_b random (1024, LoRA r=4)", dataclasses.replace(get_config("paper").sam, checkpoint=None)


def bench(cfg, device: torch.device, steps: int, warmup: int = 1) -> dict:
    model = set_trainable(build_from_config(cfg, 2), cfg).to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    s, b = cfg.image_size, cfg.batch_size
    x = torch.randn(b, 1, s, s, device=device)
    y = torch.randint(0, 2, (b, s, s), device=device)
    y[:, :8] = IGNORE_INDEX
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x)
        loss = ce_dice(logits, y, ce_weight=cfg.ce_weight, squared=cfg.dice_squared)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    c = count_parameters(model)
    return {"s_per_step": sum(times) / len(times), "peak_mib": peak, "trainable": c["trainable"], "total": c["total"]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny models only, 2 timed steps, CPU only")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--case", type=int, default=None, help=argparse.SUPPRESS)  # internal: one case, JSON out
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or (2 if args.quick else 5)
    if args.case is not None:
        _, cfg = list(_cases())[args.case]
        dev = torch.device(args.device)
        slow = dev.type == "cpu" and cfg.model_type != "tiny"  # ViT-B on CPU: fewer steps, no warm-up step
        n = max(1, steps // 3) if slow else steps
        print(json.dumps(bench(cfg, dev, n, warmup=0 if slow else 1)))
        return
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.quick:
        devices.append(torch.device("cuda"))
    print(f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads; "
          f"torch {torch.__version__}")
    if torch.cuda.is_available():
        print(f"CUDA: {torch.cuda.get_device_name(0)}")
    print(f"{'model':40s} {'device':6s} {'batch':>5s} {'s/step':>8s} {'peak MiB':>9s} {'trainable':>12s} {'total':>12s}")
    for i, (name, cfg) in enumerate(_cases(args.quick)):
        for dev in devices:
            cmd = [sys.executable, __file__, "--case", str(i), "--device", dev.type, "--steps", str(steps),
                   "--threads", str(torch.get_num_threads())]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            print(f"{name:40s} {dev.type:6s} {cfg.batch_size:5d} {r['s_per_step']:8.3f} {r['peak_mib']:9.0f} "
                  f"{r['trainable']:12,d} {r['total']:12,d}", flush=True)


if __name__ == "__main__":
    main()
