"""LoRA via peft: exact parameter counts, freezing, unchanged predictions at init."""
from __future__ import annotations

import torch

from sfr_teach.config import get_config
from sfr_teach.sam import SamSegmenter, build_from_config, build_sam
from sfr_teach.sam.lora import apply_lora, count_parameters, set_trainable


def test_vit_b_lora_rank4_counts():
    m = build_sam("vit_b", checkpoint=None, image_size=1024, num_classes=2)  # random weights, official shapes
    before = count_parameters(m)
    apply_lora(m, rank=4, alpha=4.0)
    assert isinstance(m, SamSegmenter)  # adapters injected in place, forward() unchanged
    c = count_parameters(m)
    by = c["by_module"]
    info = f"before={before} after={c}"
    assert by["lora"] == 4 * (768 + 2304) * 12 == 147_456, info
    assert by["image_encoder"] == before["by_module"]["image_encoder"] == 89_670_912, info
    assert c["trainable"] == by["lora"] + by["mask_decoder"], info
    assert c["frozen"] == by["image_encoder"] + by["prompt_encoder"], info
    assert c["total"] == before["total"] + 147_456, info
    qkv = m.sam.image_encoder.blocks[0].attn.qkv
    assert qkv.lora_A["default"].weight.shape == (4, 768) and qkv.lora_B["default"].weight.shape == (2304, 4)


def test_lora_starts_as_identity_and_only_adapters_and_decoder_train():
    cfg = get_config("smoke").sam
    m = build_from_config(cfg, num_classes=2)
    x = torch.randn(1, 1, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        y0 = m(x)
    cfg.finetune = "lora"
    set_trainable(m, cfg)
    set_trainable(m, cfg)  # idempotent: no second adapter
    with torch.no_grad():
        assert torch.equal(m(x), y0)  # B = 0 at init
    names = [n for n, p in m.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n or "mask_decoder" in n for n in names)
    assert sum("lora_A" in n for n in names) == cfg.tiny_depth
    c = count_parameters(m)
    assert c["by_module"]["lora"] == cfg.tiny_depth * cfg.lora_rank * (64 + 3 * 64)
    cfg.finetune = "full"
    full = build_from_config(cfg, num_classes=2)
    set_trainable(full, cfg)
    assert count_parameters(full)["trainable"] == count_parameters(full)["total"]
