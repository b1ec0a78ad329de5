"""3D segmentation networks for re-training (stage 3).

``build_net("vnet", n_classes=2, n_filters=16)`` -> :class:`VNet` (the LA-literature V-Net,
9,448,866 parameters at 16 filters / 2 classes). Register more with :data:`NETS`.
"""
from __future__ import annotations

from typing import Callable, Dict

from torch import nn

from ..torch_utils import count_parameters
from .vnet import VNet

NETS: Dict[str, Callable[..., nn.Module]] = {"vnet": VNet}


def build_net(name: str = "vnet", **kw) -> nn.Module:
    """Build a registered network by name; ``kw`` go to its constructor (e.g. n_classes, n_filters)."""
    if name not in NETS:
        raise ValueError(f"sfr_teach/nets: unknown network {name!r}; registered: {', '.join(sorted(NETS))}")
    return NETS[name](**kw)


__all__ = ["NETS", "VNet", "build_net", "count_parameters"]
