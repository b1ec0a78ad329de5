"""Small torch helpers shared by both stages: parameter counts, bf16 autocast, RNG state.

* :func:`count_parameters` -- ``{"trainable", "total", "frozen", "by_module"}`` of any model
  (the V-Net, SAM with or without LoRA);
* :func:`autocast` -- bf16 autocast on CUDA, a no-op context elsewhere (CPU runs stay float32);
* :func:`eval_mode` -- a model in eval mode for a ``with`` block, its training flag restored after;
* :func:`rng_state` / :func:`set_rng_state` -- every generator a training step draws from
  (torch, CUDA, numpy, Python), saved into and restored from a checkpoint for an exact resume;
* :func:`reuse_freed_memory` -- glibc's allocator keeps freed tensor memory for the next tensor
  instead of handing it back to the system (fewer page faults; the same numbers, faster on a CPU).
"""
from __future__ import annotations

import contextlib
import ctypes
import platform
import random
from typing import Any, ContextManager, Dict, Iterator, Union

import numpy as np
import torch
from torch import nn

__all__ = ["count_parameters", "autocast", "eval_mode", "rng_state", "set_rng_state", "on_glibc", "reuse_freed_memory"]


def _group_names(names) -> list:
    """Parameter names with the leading components shared by all of them removed (a wrapper such
    as ``SamSegmenter.sam``), so the first remaining component names a part of the model."""
    parts = [n.split(".") for n in names]
    k = 0
    while parts and all(len(p) > k + 1 for p in parts) and len({p[k] for p in parts}) == 1:
        k += 1
    return [p[k] for p in parts]


def count_parameters(model: nn.Module) -> Dict[str, Any]:
    """``{"trainable", "total", "frozen", "by_module": {part: count}}`` of ``model``.

    Each Parameter is counted once (deduplicated by identity, so shared modules never count twice).
    ``by_module`` groups by the model's top-level parts (after a common wrapper prefix): e.g.
    ``image_encoder`` / ``prompt_encoder`` / ``mask_decoder`` for SAM, the V-Net's blocks; LoRA
    matrices (names with ``lora_``) count under ``lora`` (always present, 0 without LoRA).
    The V-Net of the LA literature: ``count_parameters(VNet())["total"] == 9_448_866``.
    """
    seen, named = set(), []
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) not in seen:
            seen.add(id(p))
            named.append((name, p))
    by: Dict[str, int] = {}
    for (name, p), part in zip(named, _group_names([n for n, _ in named])):
        key = "lora" if "lora_" in name else part
        by[key] = by.get(key, 0) + p.numel()
    by.setdefault("lora", 0)
    total = sum(p.numel() for _, p in named)
    trainable = sum(p.numel() for _, p in named if p.requires_grad)
    return {"trainable": trainable, "total": total, "frozen": total - trainable, "by_module": by}


def autocast(device: Union[str, torch.device]) -> ContextManager:
    """bf16 autocast on a CUDA ``device``; a no-op context on any other device."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``with eval_mode(model):`` -- dropout off, BatchNorm on running statistics; the flag is restored."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def rng_state() -> Dict[str, Any]:
    """The states of torch's, CUDA's (every device, when available), numpy's and Python's generators."""
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (the CUDA states only where CUDA is available)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# glibc's mallopt(3) parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit
_TRIM_THRESHOLD = 1024 * 1024 * 1024


def on_glibc() -> bool:
    """True on Linux with glibc, where :func:`reuse_freed_memory` can take effect."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def reuse_freed_memory() -> bool:
    """Let glibc's ``malloc`` reuse freed tensor memory instead of returning it to the system.

    PyTorch's CPU tensors come straight from ``malloc``. glibc serves every allocation above its
    *mmap threshold* (128 KiB to begin with) with a fresh ``mmap`` and unmaps it on ``free``, so
    each new activation of a few MB -- every layer, every step -- faults in and zeroes its pages
    again. Raising the mmap threshold to 32 MiB and the trim threshold to 1 GiB (``mallopt``) keeps
    that memory in the heap for the next tensor: what is computed is unchanged, and on 2 cores a
    classroom V-Net step went from ~15,000-24,000 page faults to ~100 and got 1.10x faster
    (``benchmarks/bench_retrain_changes.py --only malloc``); a whole classroom run's evaluation stage
    got 1.37x faster (``results/speed_classroom.md`` section 6). The price: up to the trim threshold
    of freed memory stays with the process until it exits (a classroom run peaked 0.13 GB higher).

    The same as ``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=...``, set from inside the process.
    Returns ``True`` when both settings took effect; ``False`` (and changes nothing) off glibc
    (macOS, Windows, musl).
    """
    if not on_glibc():
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
