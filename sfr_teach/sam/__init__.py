"""Stage 2 of SFR: SAM fine-tuned on stitched mosaics, then pseudo-labels.

* :mod:`.registry` -- ``SAM_MODELS`` (the backbone names), :class:`CheckpointError` (no torch import)
* :mod:`.build`    -- :func:`build_sam` (official ViT-B/L/H checkpoint or offline ``tiny``)
* :mod:`.model`    -- :class:`SamSegmenter`: mosaic (B, 1|3, S, S) -> logits (B, C, S, S)
* :mod:`.lora`     -- :func:`apply_lora` (peft), :func:`count_parameters`
* :mod:`.finetune` -- :class:`MosaicDataset`, :func:`finetune`, checkpoints of trainable weights
* :mod:`.predict`  -- :func:`predict_volume`: whole 3D volume -> label + class probabilities
* :mod:`.pseudo`   -- confidence, pseudo-labels on disk, SFR+ selection and round
"""
from importlib import import_module
from typing import Any

from .registry import SAM_MODELS, CheckpointError

# the rest is imported on first use (PEP 562), so that SAM_MODELS / CheckpointError cost no torch import
_LAZY = {"CHECKPOINT_URLS": "build", "build_from_config": "build", "build_sam": "build", "SamSegmenter": "model"}
__all__ = sorted(["SAM_MODELS", "CheckpointError", *_LAZY])


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value
