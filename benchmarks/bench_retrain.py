"""Re-training speed: iterations/s and peak memory of every SSL method's training step.

    python benchmarks/bench_retrain.py --quick            # few iterations, CPU (+ CUDA when present)
    python benchmarks/bench_retrain.py --sizes classroom --methods mean_teacher --iters 50

Sizes: ``full`` = the literature V-Net (16 filters) on 112x112x80 patches, batch 4 (2 labelled);
``classroom`` = ``get_config("classroom").retrain`` (width, patch, batch), with the patch rounded
up to a multiple of 16 when the preset's is not one (the V-Net needs it; the table says so).
One timed step = the method's forward/losses + backward + SGD step + its after_step (EMA), on random
input (data loading excluded; it is ~1 ms per crop). Each (size, method, device) runs in a fresh
subprocess so that the CPU peak (max RSS) is its own; CUDA peak = torch.cuda.max_memory_allocated.
Prints a table naming the hardware; ``--json`` also writes the rows.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

METHODS = ["supervised", "self_training", "mean_teacher", "ua_mt", "ac_mt", "magicnet"]


def _round16(patch):
    return tuple(max(16, -(-int(p) // 16) * 16) for p in patch)


def size_config(size: str, classroom_patch=None):
    from sfr_teach.config import get_config

    rc = get_config("paper" if size == "full" else "classroom").retrain
    if size == "full":
        rc.n_filters, rc.patch_size, rc.batch_size, rc.labeled_bs = 16, (112, 112, 80), 4, 2
    if size == "classroom" and classroom_patch:
        rc.patch_size = tuple(int(p) for p in classroom_patch)
    note = ""
    if tuple(rc.patch_size) != _round16(rc.patch_size):
        note = f"patch {tuple(rc.patch_size)} -> {_round16(rc.patch_size)} (V-Net needs multiples of 16)"
        rc.patch_size = _round16(rc.patch_size)
    if size == "full":
        rc.magicnet_cube = 3  # 112 is not divisible by 3: MagicNet uses its own 96^3 crops below
    return rc, note


def run_one(size: str, method: str, device: str, iters: int, warmup: int, threads: int, cpatch=None) -> dict:
    """Time one (size, method, device) in this process; returns a table row."""
    import torch

    from sfr_teach.nets import build_net
    from sfr_teach.ssl import build_method

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    rc, note = size_config(size, cpatch)
    patch = tuple(rc.patch_size)
    if method == "magicnet":  # crops divisible into n^3 cubes that are themselves multiples of 16
        side = 16 * rc.magicnet_cube * max(1, round(min(patch) / (16 * rc.magicnet_cube)))
        patch = (side,) * 3
    dev = torch.device(device)
    net = build_net("vnet", n_classes=2, n_filters=rc.n_filters, has_dropout=rc.dropout).to(dev)
    net = net.to(memory_format=torch.channels_last_3d)  # as the trainer does
    m = build_method(method, net, rc, 2)
    m.need_unlabeled_logits = False
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=rc.lr, momentum=rc.momentum, weight_decay=rc.weight_decay)
    bl = rc.labeled_bs
    bsz = rc.batch_size if m.uses_unlabeled else bl
    x = torch.randn(bsz, 1, *patch, device=dev).contiguous(memory_format=torch.channels_last_3d)
    y = torch.randint(0, 2, (bl, *patch), device=dev)
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")

    def step(it):
        with autocast:
            out = m.step({"image": x, "label": y}, it)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        m.after_step(it)

    for it in range(warmup):
        step(it)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t, c = time.perf_counter(), time.process_time()
    for it in range(warmup, warmup + iters):
        step(it)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt, ct = time.perf_counter() - t, time.process_time() - c
    peak = (
        torch.cuda.max_memory_allocated() / 2**30
        if dev.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    return {
        "size": size,
        "method": method,
        "device": device,
        "filters": rc.n_filters,
        "patch": "x".join(map(str, patch)),
        "batch": bsz,
        "iters": iters,
        "it_per_s": iters / dt,
        "s_per_it": dt / iters,
        "cpu_s_per_it": ct / iters,  # process CPU time (all threads): robust on a shared machine
        "peak_gib": peak,
        "threads": torch.get_num_threads() if dev.type == "cpu" else None,
        "note": note,
    }


def hardware(device: str) -> str:
    import torch

    if device == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(0)} (bf16 autocast)"
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {cpu}, {os.cpu_count()} logical cores visible"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few iterations (CPU full size: 1 timed step)")
    ap.add_argument("--sizes", nargs="+", default=["full", "classroom"], choices=["full", "classroom"])
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--devices", nargs="+", default=None, help="cpu and/or cuda (default: cpu + cuda if present)")
    ap.add_argument("--iters", type=int, default=None, help="timed iterations (default 20, quick 3)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2, the classroom laptop)")
    ap.add_argument("--classroom-patch", nargs=3, type=int, default=None, help="override the classroom patch")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._child:
        size, method, device, iters, warmup = a._child.split(",")
        row = run_one(size, method, device, int(iters), int(warmup), a.threads, a.classroom_patch)
        print("ROW " + json.dumps(row))
        return
    import torch

    devices = a.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    for device in devices:
        for size in a.sizes:
            slow_cpu = device == "cpu" and size == "full"
            iters = a.iters or (1 if (a.quick and slow_cpu) else 3 if a.quick else 20)
            warmup = 1 if (a.quick or slow_cpu) else 3
            for method in a.methods:
                cmd = [sys.executable, __file__, "--threads", str(a.threads), "--_child",
                       f"{size},{method},{device},{iters},{warmup}"]
                if a.classroom_patch:
                    cmd += ["--classroom-patch", *map(str, a.classroom_patch)]
                res = subprocess.run(cmd, capture_output=True, text=True)
                line = [ln for ln in res.stdout.splitlines() if ln.startswith("ROW ")]
                if res.returncode or not line:
                    print(f"{size}/{method}/{device} failed:\n{res.stderr[-2000:]}", file=sys.stderr)
                    continue
                rows.append(json.loads(line[0][4:]))
                print(_fmt(rows[-1]), flush=True)
    print()
    for device in devices:
        print(f"## {hardware(device)}; torch {torch.__version__}; CPU threads {a.threads}")
        print(_table([r for r in rows if r["device"] == device]))
        for note in sorted({r["note"] for r in rows if r["note"] and r["device"] == device}):
            print(f"note: {note}")
        print()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


def _fmt(r: dict) -> str:
    return (f"| {r['size']:9s} | {r['method']:13s} | {r['filters']:2d} | {r['patch']:10s} | {r['batch']} "
            f"| {r['it_per_s']:8.3f} | {r['s_per_it']:8.3f} | {r['cpu_s_per_it']:9.3f} | {r['peak_gib']:8.2f} |")


def _table(rows) -> str:
    head = ("| size      | method        |  F | patch      | B | it/s     | s/it     | CPU s/it  | peak GiB |\n"
            "|-----------|---------------|----|------------|---|----------|----------|-----------|----------|")
    return "\n".join([head] + [_fmt(r) for r in rows])


if __name__ == "__main__":
    main()
