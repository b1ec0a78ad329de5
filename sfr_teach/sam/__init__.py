"""Stage 2 of SFR: SAM fine-tuned on stitched mosaics, then pseudo-labels.

* :mod:`.build`    -- :func:`build_sam` (official ViT-B/L/H checkpoint or offline ``tiny``)
* :mod:`.model`    -- :class:`SamSegmenter`: mosaic (B, 1|3, S, S) -> logits (B, C, S, S)
* :mod:`.lora`     -- :func:`apply_lora` (peft), :func:`count_parameters`
* :mod:`.finetune` -- :class:`MosaicDataset`, :func:`finetune`, checkpoints of trainable weights
* :mod:`.predict`  -- :func:`predict_volume`: whole 3D volume -> label + class probabilities
* :mod:`.pseudo`   -- confidence, pseudo-labels on disk, SFR+ selection and round
"""
from .build import CHECKPOINT_URLS, CheckpointError, build_from_config, build_sam
from .model import SamSegmenter

__all__ = ["CHECKPOINT_URLS", "CheckpointError", "SamSegmenter", "build_from_config", "build_sam"]
