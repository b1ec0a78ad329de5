"""The SAM backbones :func:`~sfr_teach.sam.build.build_sam` knows, by name (no torch import).

``SAM_MODELS`` is the one list of ``model_type`` names: ``build_sam`` refuses any other, and the
command line offers exactly these (``sfr-teach run --sam-model``). A new backbone is a branch in
``build.py`` plus its name here. :class:`CheckpointError` lives here too, so that a caller can
catch it without importing torch.
"""
from __future__ import annotations

from typing import Tuple

#: model_type names accepted by build_sam: the offline tiny SAM, the official ViT-B/L/H, then
#: LiteMedSAM (pretrained, from the optional ``lite`` extra: sfr_teach.sam.lite_medsam)
SAM_MODELS: Tuple[str, ...] = ("tiny", "vit_b", "vit_l", "vit_h", "lite_medsam")


class CheckpointError(ValueError):
    """A SAM checkpoint that is missing, unreadable or for another model type."""
