"""SAM builders: tiny from config, vit_b architecture, checkpoint loading and its errors."""
from __future__ import annotations

import pytest
import torch

from sfr_teach.config import get_config
from sfr_teach.sam import CheckpointError, build_from_config, build_sam
from sfr_teach.sam.build import _make_sam, load_sam_checkpoint

SMALL = dict(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=4, patch_size=8,
             decoder_mlp_dim=64)


def test_tiny_from_config_outputs_one_mask_per_class_and_is_seeded():
    cfg = get_config("smoke").sam
    a, b = build_from_config(cfg, num_classes=3), build_from_config(cfg, num_classes=3)
    assert a.image_size == 256 and a.sam.mask_decoder.num_mask_tokens == 3
    assert a.sam.image_encoder.patch_embed.proj.weight.shape == (64, 3, 8, 8)  # tiny_embed_dim, patch 8
    x = torch.randn(2, 1, 256, 256)
    with torch.no_grad():
        ya, yb = a(x), b(x)
        single = a(x[1:])
    assert ya.shape == (2, 3, 256, 256)
    assert torch.equal(ya, yb)  # same seed -> same weights
    assert torch.allclose(ya[1:], single, atol=1e-5)  # batch items independent (prompt broadcast)
    c = build_from_config(cfg, num_classes=3, seed=1)
    assert not torch.equal(c.sam.mask_decoder.mask_tokens.weight, a.sam.mask_decoder.mask_tokens.weight)


def test_forward_rejects_wrong_size():
    m = build_sam("tiny", image_size=128, **SMALL)
    with pytest.raises(ValueError, match="128x128"):
        m(torch.zeros(1, 1, 96, 96))


def _fake_official(model_type_dims: dict, image_size: int = 1024) -> dict:
    """A state dict with the official layout (4 mask tokens, 1024 input) and the given sizes."""
    sam = _make_sam(image_size=image_size, num_classes=4, **model_type_dims)
    return sam.state_dict()


def test_checkpoint_load_adapts_size_and_mask_tokens(tmp_path, monkeypatch):
    # a miniature "official" model: patch 16 at 1024 (64x64 tokens), 4 mask tokens
    dims = dict(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), patch_size=16, window_size=14,
                decoder_mlp_dim=64)
    import sfr_teach.sam.build as B

    monkeypatch.setitem(B.VIT_SPECS, "vit_b", dict(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,)))
    sd = _fake_official(dims)
    path = tmp_path / "mini_vit_b.pth"
    torch.save(sd, path)
    target = _make_sam(image_size=512, num_classes=3, **dims)  # 32x32 tokens, 3 mask tokens
    rep = load_sam_checkpoint(target, path, "vit_b")
    own = target.state_dict()
    assert own["image_encoder.pos_embed"].shape == (1, 32, 32, 32)
    assert own["image_encoder.blocks.1.attn.rel_pos_h"].shape == (63, 16)  # global block: 2*32-1
    assert torch.equal(own["image_encoder.blocks.0.attn.rel_pos_h"], sd["image_encoder.blocks.0.attn.rel_pos_h"])
    assert torch.equal(own["mask_decoder.mask_tokens.weight"], sd["mask_decoder.mask_tokens.weight"][:3])
    assert torch.equal(own["mask_decoder.output_hypernetworks_mlps.2.layers.0.weight"],
                       sd["mask_decoder.output_hypernetworks_mlps.2.layers.0.weight"])
    assert "mask_decoder.mask_tokens.weight" in rep["partial"]
    # a decoder with more tokens than the checkpoint: copied rows + random rest
    big = _make_sam(image_size=1024, num_classes=6, **dims)
    rep = load_sam_checkpoint(big, path, "vit_b")
    assert torch.equal(big.mask_decoder.mask_tokens.weight[:4], sd["mask_decoder.mask_tokens.weight"])
    assert any("output_hypernetworks_mlps.5" in k for k in rep["random"])


def test_missing_checkpoint_names_url(tmp_path):
    with pytest.raises(CheckpointError, match=r"sam_vit_b_01ec64\.pth") as e:
        build_sam("vit_b", tmp_path / "nope.pth", image_size=256)
    assert str(tmp_path / "nope.pth") in str(e.value)
    with pytest.raises(CheckpointError, match=r"sam_vit_l_0b3195\.pth"):
        build_sam("vit_l", tmp_path / "nope.pth", image_size=256)


def test_mismatched_checkpoint_names_file_and_type(tmp_path):
    # a "vit_l-like" file: wrong encoder width for vit_b
    sd = {"image_encoder.patch_embed.proj.weight": torch.zeros(1024, 3, 16, 16),
          "image_encoder.patch_embed.proj.bias": torch.zeros(1024)}
    for i in range(24):
        sd[f"image_encoder.blocks.{i}.norm1.weight"] = torch.zeros(1024)
    path = tmp_path / "sam_vit_l_0b3195.pth"
    torch.save(sd, path)
    sam = _make_sam(image_size=256, num_classes=2, patch_size=16, window_size=14,
                    embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11))
    with pytest.raises(CheckpointError) as e:
        load_sam_checkpoint(sam, path, "vit_b")
    msg = str(e.value)
    assert str(path) in msg and "vit_b" in msg and "looks like a vit_l" in msg and "768" in msg
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_sam_checkpoint(sam, garbage, "vit_b")
