"""One configuration for the whole pipeline, at three scales (presets).

``get_config("classroom", **{"retrain.steps": 200})`` returns a fully resolved
:class:`Config`; every stage reads only its own section (``cfg.data``,
``cfg.sam``, ``cfg.retrain``, ``cfg.eval``). Presets:

=========  ============  ==================================  ===============  ====================
preset     where         data                                SAM              V-Net / iterations
=========  ============  ==================================  ===============  ====================
smoke      CI, tests     synthetic phantoms, small           offline tiny     4 filters, 30 steps
classroom  laptop CPU    real LA at half resolution          offline tiny     8 filters, 48x48x32, 1000
paper      one GPU       real LA, full resolution            ViT-B checkpoint 112x112x80, 6000
=========  ============  ==================================  ===============  ====================
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

PRESETS = ("smoke", "classroom", "paper")


@dataclass
class DataConfig:
    dataset: str = "synthetic"  # synthetic | la | nifti
    data_dir: Optional[str] = None  # LA: None -> $SFR_LA_DIR, else data/LA (sfr_teach.data.resolve_la_dir)
    labeled: int = 1  # "N labelled" = the first N names of train.list
    val: int = 16  # validation split = last K of train.list when test.list is absent
    fold: Optional[int] = None  # cross-validation: test = the fold-th block of `val` names (None: the last `val`)
    num_classes: int = 2  # background included
    # integer block-mean factors (H, W, D) applied on load (classroom: 2 on every axis); one number = every axis
    downsample: Tuple[int, ...] = (1, 1, 1)
    slice_axis: int = 2  # array axis the slices are stacked along; moved last on load (a data plan sets it)
    plan: str = "auto"  # geometry from a data plan (sfr_teach.plan): auto (nifti only) | on | off
    class_names: Tuple[str, ...] = ()  # background first; empty: "class 1", "class 2", ... (a plan reads dataset.json)
    normalize: str = "zscore"  # per-volume intensity normalisation on load: zscore | none
    synthetic_cases: int = 10
    synthetic_shape: Tuple[int, int, int] = (64, 64, 48)
    synthetic_kind: str = "single"  # single | multi


@dataclass
class SamConfig:
    model_type: str = "tiny"  # tiny | vit_b | vit_l | vit_h | lite_medsam (sfr_teach.sam.registry.SAM_MODELS)
    checkpoint: Optional[str] = None
    image_size: int = 1024  # SAM input side; the mosaic is padded / resized to it
    crop_size: Tuple[int, int, int] = (112, 112, 80)  # volume crop stitched per training sample
    # tiny encoder (ignored for vit_*)
    tiny_embed_dim: int = 192
    tiny_depth: int = 4
    tiny_heads: int = 4
    tiny_global_attn_indexes: Tuple[int, ...] = (1, 3)
    tiny_window_size: int = 8
    tiny_patch_size: int = 8
    finetune: str = "lora"  # lora | decoder (mask decoder only) | full (every weight, e.g. the random tiny encoder)
    lora_rank: int = 4
    lora_alpha: float = 4.0
    lora_dropout: float = 0.0
    steps: int = 6000
    batch_size: int = 2
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 250
    # the SAM stage's loss (sfr_teach.losses): w*CE + (1-w)*Dice; official SFR w = 0.5 (SAMed 0.2)
    ce_weight: float = 0.5
    # Dice denominators sum p + sum y (False) or sum p^2 + sum y^2 (True, the official SFR code). The squared form
    # collapsed the randomly initialised tiny SAM to all-background (foreground Dice 0.00 vs 0.59 after 40 steps on
    # one LA volume), so the fine-tuning default is the linear one; re-training keeps the squared Dice (UA-MT/SSL4MIS)
    dice_squared: bool = False
    augment: bool = True
    tau: float = 0.985  # SFR+ confidence threshold
    sfr_plus_rounds: int = 1
    sfr_plus_steps: Optional[int] = None  # steps of the second fine-tuning (None: same as steps)
    predict_batch_size: int = 2


@dataclass
class RetrainConfig:
    method: str = "mean_teacher"  # supervised | self_training | mean_teacher | ua_mt | ac_mt | magicnet
    sfr: bool = False  # add the SAM pseudo-label term
    pseudo_labels: str = "precomputed"  # precomputed | online
    sfr_weight: float = 1.0
    sfr_rampup: int = 0  # iterations to ramp the SFR term (0: constant, as in the official code)
    patch_size: Tuple[int, int, int] = (112, 112, 80)
    n_filters: int = 16
    dropout: bool = True
    steps: int = 6000
    batch_size: int = 4
    labeled_bs: int = 2
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_step: int = 2500  # lr x0.1 every lr_step iterations
    ema_decay: float = 0.99
    consistency: float = 0.1
    consistency_rampup: float = 40.0  # in units of iter // 150, as the reference code
    uamt_passes: int = 8
    magicnet_cube: int = 3  # cubes per side (27 cubes)
    log_every: int = 10
    ckpt_every: int = 200


@dataclass
class EvalConfig:
    patch_size: Tuple[int, int, int] = (112, 112, 80)
    stride: Tuple[int, int, int] = (18, 18, 4)
    mode: str = "constant"  # constant (LA protocol: averaged softmax) | gaussian (MONAI)
    batch_size: int = 1
    distance_metrics: bool = True


@dataclass
class Config:
    preset: str = "smoke"
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda
    out_dir: str = "runs/smoke"
    num_threads: int = 0  # torch CPU threads (0: torch's default)
    sam_from: Optional[str] = None  # reuse the sam/ and pseudo_labels/ stages of another results folder
    overrides: Tuple[str, ...] = ()  # keys set explicitly (get_config's overrides): a data plan never changes them
    data: DataConfig = field(default_factory=DataConfig)
    sam: SamConfig = field(default_factory=SamConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))


_PRESET_OVERRIDES: Dict[str, Dict[str, Any]] = {
    "smoke": {
        "out_dir": "runs/smoke",
        "data.dataset": "synthetic",
        "data.synthetic_cases": 8,
        "data.synthetic_shape": (48, 48, 32),
        "data.val": 3,
        "sam.image_size": 256,
        "sam.crop_size": (40, 40, 32),
        "sam.tiny_embed_dim": 64,
        "sam.tiny_depth": 2,
        "sam.tiny_heads": 2,
        "sam.tiny_global_attn_indexes": (1,),
        "sam.tiny_window_size": 4,
        "sam.tiny_patch_size": 8,
        "sam.finetune": "full",
        "sam.steps": 30,
        "sam.warmup": 5,
        "sam.lr": 3e-3,
        "sam.weight_decay": 0.01,
        "retrain.patch_size": (32, 32, 32),
        "retrain.magicnet_cube": 2,  # 8 cubes of 16^3
        "retrain.n_filters": 4,
        "retrain.steps": 30,
        "retrain.lr_step": 1000,
        "retrain.consistency_rampup": 0.0,  # runs are far shorter than one 150-iteration ramp unit
        "retrain.uamt_passes": 2,
        "retrain.log_every": 5,
        "retrain.ckpt_every": 15,
        "eval.patch_size": (32, 32, 32),
        "eval.stride": (16, 16, 16),
        "eval.distance_metrics": True,
    },
    "classroom": {
        "out_dir": "runs/classroom",
        "num_threads": 2,
        "data.dataset": "la",
        "data.downsample": (2, 2, 2),
        "data.val": 16,
        "sam.image_size": 448,
        "sam.crop_size": (56, 56, 40),  # the 112x112x80 reference crop at half resolution -> 7x7 grid
        "sam.tiny_patch_size": 16,  # 28x28 tokens at 448 (patch 8: 3136 tokens, ~8x slower on a CPU)
        "sam.tiny_window_size": 7,
        "sam.finetune": "full",
        "sam.steps": 300,
        "sam.warmup": 30,
        # the tiny SAM's confidences span ~0.92-0.975 on LA (none reaches the paper's 0.985);
        # 0.96 selects the most confident quarter (results/la_classroom_pseudo_labels.csv)
        "sam.tau": 0.96,
        "sam.lr": 1e-3,
        "sam.weight_decay": 0.01,
        "retrain.patch_size": (48, 48, 32),  # ~ the 112x112x80 reference crop at half resolution, /16
        "retrain.n_filters": 8,
        "retrain.steps": 1000,
        "retrain.lr_step": 600,
        "retrain.consistency_rampup": 4.0,
        "retrain.uamt_passes": 4,
        "retrain.magicnet_cube": 2,  # 8 cubes of 24x24x16
        "retrain.log_every": 10,
        "retrain.ckpt_every": 100,
        "eval.patch_size": (48, 48, 32),
        "eval.stride": (16, 16, 8),
    },
    "paper": {
        "out_dir": "runs/paper",
        "data.dataset": "la",
        "sam.model_type": "vit_b",
        "sam.checkpoint": "checkpoints/sam_vit_b_01ec64.pth",
        "sam.image_size": 1024,
        "sam.crop_size": (112, 112, 80),
        "sam.finetune": "lora",
    },
}


def _set_dotted(cfg: Config, key: str, value: Any) -> None:
    obj: Any = cfg
    parts = key.split(".")
    for p in parts[:-1]:
        if not hasattr(obj, p):
            raise KeyError(f"unknown config section {p!r} in override {key!r}")
        obj = getattr(obj, p)
    leaf = parts[-1]
    if not hasattr(obj, leaf):
        valid = ", ".join(f.name for f in dataclasses.fields(obj))
        raise KeyError(f"unknown config key {key!r}; valid keys here: {valid}")
    current = getattr(obj, leaf)
    if current is None:  # an Optional field at None: coerce to its declared type ("4" -> 4 for data.fold)
        declared = next(str(f.type) for f in dataclasses.fields(obj) if f.name == leaf)
        current = {"Optional[int]": 0, "Optional[float]": 0.0, "Optional[bool]": False}.get(declared)
    setattr(obj, leaf, _coerce(value, current, key))


def _coerce(value: Any, current: Any, key: str) -> Any:
    """Turn CLI strings ('0.5', '112,112,80', 'true', 'none') into the field's type."""
    if not isinstance(value, str):
        return tuple(value) if isinstance(current, tuple) and isinstance(value, list) else value
    low = value.strip().lower()
    if low in ("none", "null"):
        return None
    if isinstance(current, bool):
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"override {key}={value!r}: expected true/false")
    if isinstance(current, tuple):
        items = [v for v in value.replace("x", ",").split(",") if v.strip()]
        return tuple(int(v) if v.strip().lstrip("-").isdigit() else float(v) for v in items)
    try:
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
    except ValueError as e:
        raise ValueError(f"override {key}={value!r}: expected {type(current).__name__}") from e
    return value


def get_config(preset: str = "smoke", overrides: Optional[Dict[str, Any]] = None, **kw: Any) -> Config:
    """Resolve ``preset`` then apply dotted ``overrides`` ({"sam.steps": 10}, strings allowed)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    cfg = Config(preset=preset)
    for k, v in _PRESET_OVERRIDES[preset].items():
        _set_dotted(cfg, k, copy.deepcopy(v))
    explicit = {**(overrides or {}), **kw}
    for k, v in explicit.items():
        _set_dotted(cfg, k, v)
    cfg.overrides = tuple(sorted(explicit))
    return cfg


def magicnet_cube_problem(patch_size: Tuple[int, ...], n: int, how: str = "set ") -> Optional[Tuple[str, str]]:
    """``(what, fix)`` when MagicNet cannot cut ``patch_size`` into ``n``^3 cubes (a side not divisible by ``n``),
    else None. ``how`` starts each remedy: ``"set "`` for a library user, ``"add --set "`` on the command line."""
    if all(int(p) % int(n) == 0 for p in patch_size):
        return None
    return (f"retrain.patch_size {tuple(patch_size)} does not divide into {n}^3 MagicNet cubes (retrain.magicnet_cube={n})",
            f"{how}retrain.patch_size to multiples of {n} (the MagicNet paper: 96,96,96 with 3^3 cubes) "
            f"or {how}retrain.magicnet_cube to a divisor of every side (2 for 112,112,80)")


def config_from_dict(d: Dict[str, Any]) -> Config:
    """Rebuild a Config saved with :meth:`Config.save` (e.g. a run's ``config.json``)."""
    cfg = Config(preset=d.get("preset", "smoke"))
    for section in ("data", "sam", "retrain", "eval"):
        for k, v in d.get(section, {}).items():
            _set_dotted(cfg, f"{section}.{k}", v)
    for k, v in d.items():
        if k not in ("data", "sam", "retrain", "eval"):
            _set_dotted(cfg, k, v)
    return cfg


def resolve_device(name: str = "auto") -> "torch.device":  # noqa: F821
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
