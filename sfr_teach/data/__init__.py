"""Data: volumes, loaders (LA h5, NIfTI), synthetic phantoms, splits, transforms, samplers, download,
and where the data lives (:func:`resolve_la_dir`, :func:`portable_path`).

Data knows no model and no method: everything here returns numpy volumes (:class:`Volume`),
name lists (:class:`Split`), transform pipelines or index batches.

Names are imported lazily (PEP 562), so ``sfr-teach data download`` or loading an h5 file does not
pay for importing torch and MONAI.
"""
from .._lazy import lazy_exports

_EXPORTS = {
    "volume": ("DataError", "MissingDataError", "Volume", "VolumeCache", "downsample_factors", "downsample_volume",
               "normalize_volume", "slice_axis_last", "validate_volume", "zscore"),
    "splits": ("Split", "make_split"),
    "la": ("LA_SPACING", "LADataset", "load_la_volume"),
    "download": ("DEFAULT_LA_URL", "DownloadError", "download_la", "fetch_file"),
    "nifti": ("NiftiDataset", "load_nifti_volume", "save_nifti"),
    "synthetic": ("HEART_CLASSES", "make_anisotropic_phantom", "make_phantom", "smooth_noise", "synthetic_dataset",
                  "write_msd_dataset"),
    "transforms": ("PlainCompose", "RandBezierIntensityd", "bezier_intensity", "center_crop_or_pad", "crop_around_label",
                   "to_channel_first", "train_transform", "volume_to_sample"),
    "sampler": ("TwoStreamBatchSampler", "infinite_batches"),
    "paths": ("portable_path", "resolve_la_dir"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
