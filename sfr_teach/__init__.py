"""sfr-teach: a teaching reference implementation of SFR (Stitching, Fine-tuning, Re-training).

Stages, each in one obvious place:

* data            -- ``sfr_teach.data``       (LA h5, NIfTI, phantoms, splits, transforms, sampler)
* 1. stitching    -- ``sfr_teach.stitching``  (3D volume <-> 2D mosaic)
* 2. fine-tuning  -- ``sfr_teach.sam``        (SAM + LoRA, pseudo-labels, confidence, SFR+)
* 3. re-training  -- ``sfr_teach.nets``, ``sfr_teach.ssl`` (V-Net, five semi-supervised methods)
* evaluation      -- ``sfr_teach.metrics``, ``sfr_teach.evaluate``
* the whole thing -- ``sfr_teach.pipeline``   (driven by ``sfr_teach.config``)
"""
__version__ = "0.1.0"
