"""SAM as a prompt-free semantic segmenter: mosaic in, one logit map per class out.

:class:`SamSegmenter` wraps a ``segment_anything`` :class:`~segment_anything.modeling.Sam`
whose mask decoder owns one mask token per class (see :mod:`sfr_teach.sam.build`)::

    images (B, 1|3, S, S) float, already normalised (pixel mean 0 / std 1)
      -> image_encoder            -> embeddings (B, 256, S/p, S/p)
      -> prompt_encoder(None, None, None): empty sparse (1, 0, 256) + no-mask dense (1, 256, S/p, S/p)
      -> mask_decoder.predict_masks -> low-res masks (B, C, 4S/p, 4S/p)   (all C mask tokens)
      -> bilinear upsampling        -> logits (B, C, S, S)

No prompts are used (as SFR / SAMed). The prompt embeddings have batch 1 and broadcast over
the B images inside the decoder's two-way transformer, so one call handles the whole batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from torch import nn

__all__ = ["SamSegmenter"]


class SamSegmenter(nn.Module):
    """``forward(images (B, 1|3, S, S)) -> logits (B, C, S, S)``; C = ``num_classes``.

    Attributes: ``sam`` (the wrapped model), ``num_classes``, ``image_size`` (S),
    ``model_type`` ("tiny", "vit_b", ...). Its submodules are reachable as
    ``image_encoder`` / ``prompt_encoder`` / ``mask_decoder``.
    """

    def __init__(self, sam: Sam, num_classes: int, model_type: str = "tiny") -> None:
        super().__init__()
        if sam.mask_decoder.num_mask_tokens != num_classes:
            raise ValueError(
                f"the mask decoder has {sam.mask_decoder.num_mask_tokens} mask tokens but num_classes={num_classes}; "
                "build it with num_multimask_outputs = num_classes - 1 (see sfr_teach.sam.build)"
            )
        self.sam = sam
        self.num_classes = int(num_classes)
        self.model_type = model_type
        self.image_size = int(sam.image_encoder.img_size)

    @property
    def image_encoder(self) -> nn.Module:
        return self.sam.image_encoder

    @property
    def prompt_encoder(self) -> nn.Module:
        return self.sam.prompt_encoder

    @property
    def mask_decoder(self) -> nn.Module:
        return self.sam.mask_decoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images shaped (B, 1 or 3, S, S), got {tuple(images.shape)}")
        s = self.image_size
        if tuple(images.shape[-2:]) != (s, s):
            raise ValueError(
                f"images are {tuple(images.shape[-2:])} but this SAM takes {s}x{s}; "
                f"stitch with out_size={s} (sfr_teach.stitching.stitch)"
            )
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        emb = self.sam.image_encoder(images)  # (B, 256, s/p, s/p)
        sparse, dense = self.sam.prompt_encoder(points=None, boxes=None, masks=None)  # batch 1, broadcast
        low, _ = self.sam.mask_decoder.predict_masks(
            image_embeddings=emb,
            image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )  # (B, C, 4*s/p, 4*s/p)
        return F.interpolate(low, size=(s, s), mode="bilinear", align_corners=False)
