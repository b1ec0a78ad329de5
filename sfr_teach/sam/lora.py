"""Which weights train: LoRA on the image encoder's ``qkv`` (peft), or everything.

:func:`apply_lora` injects a peft LoRA adapter (``A: r x dim``, ``B: 3*dim x r``) into every
``image_encoder.blocks.<i>.attn.qkv`` Linear *in place* with
:func:`peft.inject_adapter_in_model` -- the :class:`SamSegmenter` keeps its class and its
``forward`` (``get_peft_model`` would wrap it in a ``PeftModel`` whose forward expects
language-model arguments). Then image encoder + prompt encoder are frozen and the mask decoder
trains. ViT-B, rank 4: ``12 * 4 * (768 + 2304) = 147,456`` LoRA parameters -- the same count
as SAMed's / the official SFR code's rank-4 adapters on the q and v parts of ``qkv``.

:func:`set_trainable` applies ``SamConfig.finetune``: ``"lora"`` (above) or ``"full"`` (every
parameter trains; for the randomly initialised tiny SAM a frozen random encoder is a weak
feature extractor) or ``"decoder"`` (only the mask decoder, for a pretrained encoder such as
LiteMedSAM's). :func:`count_parameters` (from :mod:`sfr_teach.torch_utils`) counts each Parameter once,
the LoRA matrices under ``by_module["lora"]``.
"""
from __future__ import annotations

from typing import Any

import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from ..torch_utils import count_parameters

__all__ = ["QKV_PATTERN", "apply_lora", "set_trainable", "count_parameters", "lora_parameter_names"]

#: regex (peft matches it against full module names) of the encoder's attention projections:
#: ``image_encoder.blocks.<i>.attn.qkv`` (ViT) or ``image_encoder.layers.<j>.blocks.<i>.attn.qkv``
#: (LiteMedSAM's TinyViT: 10 attention blocks in stages 1-3, 29,696 rank-4 parameters)
QKV_PATTERN = r".*image_encoder\.(layers\.\d+\.)?blocks\.\d+\.attn\.qkv"


def apply_lora(segmenter: nn.Module, rank: int = 4, alpha: float = 4.0, dropout: float = 0.0,
               seed: int = 0) -> nn.Module:
    """Add LoRA (rank ``rank``, scale ``alpha / rank``) to the encoder's ``qkv``; freeze the encoders.

    Modifies ``segmenter`` in place and returns it; on a model that already has adapters it only
    re-applies the freezing. B starts at zero (peft's default), so the
    model predicts exactly as before until it trains; A's random init uses ``seed`` (the global
    torch RNG is left untouched), so rebuilding a model reproduces it. Trainable afterwards: the LoRA A/B
    matrices and the whole mask decoder.
    """
    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    if not lora_parameter_names(segmenter):  # idempotent: a second call only re-freezes
        cfg = LoraConfig(r=int(rank), lora_alpha=float(alpha), lora_dropout=float(dropout),
                         target_modules=QKV_PATTERN, bias="none")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            inject_adapter_in_model(cfg, segmenter)
    for name, p in segmenter.named_parameters():
        p.requires_grad_("lora_" in name or ".mask_decoder." in f".{name}")
    return segmenter


def set_trainable(segmenter: nn.Module, sam_cfg: Any) -> nn.Module:
    """Apply ``sam_cfg.finetune``: ``"lora"`` (with ``lora_rank/alpha/dropout``), ``"decoder"``
    (only the mask decoder trains; the encoders stay as loaded) or ``"full"``."""
    mode = sam_cfg.finetune
    if mode == "lora":
        return apply_lora(segmenter, sam_cfg.lora_rank, sam_cfg.lora_alpha, sam_cfg.lora_dropout)
    if mode == "decoder":
        for name, p in segmenter.named_parameters():
            p.requires_grad_(".mask_decoder." in f".{name}")
        return segmenter
    if mode == "full":
        for p in segmenter.parameters():
            p.requires_grad_(True)
        return segmenter
    raise ValueError(f"unknown SamConfig.finetune {mode!r}; choose 'lora', 'decoder' or 'full'")


def lora_parameter_names(model: nn.Module) -> list:
    return [n for n, _ in model.named_parameters() if "lora_" in n]
