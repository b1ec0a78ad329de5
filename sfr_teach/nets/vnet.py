"""The LA-literature 3D V-Net (UA-MT / SSL4MIS ``VNet``).

This is the network every left-atrium semi-supervised paper trains (UA-MT, SASSNet, DTC, MC-Net,
AC-MT, SFR): 16 base channels, BatchNorm, ReLU, strided-conv down-sampling, transposed-conv
up-sampling, *additive* skip connections and ``Dropout3d(0.5)`` at the bottleneck and before the
last 1x1x1 convolution. With ``n_filters=16`` and 2 classes it has exactly 9,448,866 parameters.
(MONAI's ``monai.networks.nets.VNet`` is a different, 45.6 M-parameter design.)

Shapes::

    x (B, n_channels, H, W, D)  -- H, W, D divisible by 16 (four 2x down-samplings)
    VNet(x)                   -> logits (B, n_classes, H, W, D)
    VNet(x, return_features=True) -> (logits, {"bottleneck": (B, 16F, H/16, W/16, D/16),
                                               "decoder":    (B, F, H, W, D)})

Stages (F = n_filters): encoder ConvBlocks of 1, 2, 3, 3, 3 convolutions at F, 2F, 4F, 8F, 16F
channels; decoder ConvBlocks of 3, 3, 2, 1 convolutions back to F; skip = element-wise sum.

Checkpoints trained with the UA-MT / SSL4MIS code load with ``VNet(...).load_reference(path)``
(their parameter names hold one more level, ``block_one.conv.0.weight`` for our ``block_one.0.weight``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Mapping, Tuple, Union

import torch
from torch import nn

NORMALIZATIONS = ("batchnorm", "instancenorm", "groupnorm", "none")


class BatchNorm3d(nn.BatchNorm3d):
    """``nn.BatchNorm3d``, same parameters, statistics and outputs, without one slow CPU path.

    On CPU with more than one thread, PyTorch's batch-norm *backward* on a ``channels_last_3d``
    tensor is 2-8x slower than on a contiguous one when the channel count is not a multiple of 16
    (torch 2.14, 2 threads, forward + backward of (4, 8, 48, 48, 32): 25 ms against 5 ms; at 16 and
    32 channels channels-last is the faster one; on 1 thread 8 channels are fine -- consistent with
    the threads' partial sums sharing a cache line). The classroom V-Net (8 filters) has three such
    layers at full resolution. In that case this layer normalises a contiguous copy and hands back a
    channels-last result: the classroom Mean-Teacher step gets about 1.2x faster
    (``benchmarks/bench_retrain_changes.py --only batchnorm``). Everywhere else (GPU, eval mode, no
    grad, one thread, a multiple of 16 channels) it is ``nn.BatchNorm3d`` unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.num_features % 16 and self.training and torch.is_grad_enabled() and x.device.type == "cpu"
                and torch.get_num_threads() > 1 and x.dim() == 5 and not x.is_contiguous()
                and x.is_contiguous(memory_format=torch.channels_last_3d)):
            return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last_3d)
        return super().forward(x)


def _norm(kind: str, channels: int) -> list:
    """The normalisation layer after each convolution ([] for 'none')."""
    if kind == "batchnorm":
        return [BatchNorm3d(channels)]
    if kind == "instancenorm":
        return [nn.InstanceNorm3d(channels)]
    if kind == "groupnorm":  # 16 groups as the reference, fewer when there are fewer channels
        return [nn.GroupNorm(num_groups=min(16, channels), num_channels=channels)]
    if kind == "none":
        return []
    raise ValueError(f"sfr_teach/nets/vnet.py: unknown normalization {kind!r}; choose one of {NORMALIZATIONS}")


class ConvBlock(nn.Sequential):
    """``n_stages`` x (Conv3d 3x3x3, padding 1 -> norm -> ReLU): (B, c_in, *S) -> (B, c_out, *S)."""

    def __init__(self, n_stages: int, c_in: int, c_out: int, normalization: str = "batchnorm"):
        layers: list = []
        for i in range(n_stages):
            layers += [nn.Conv3d(c_in if i == 0 else c_out, c_out, 3, padding=1), *_norm(normalization, c_out)]
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class DownBlock(nn.Sequential):
    """Conv3d kernel 2 stride 2 -> norm -> ReLU: (B, c_in, *S) -> (B, c_out, *S/2)."""

    def __init__(self, c_in: int, c_out: int, normalization: str = "batchnorm"):
        super().__init__(nn.Conv3d(c_in, c_out, 2, stride=2), *_norm(normalization, c_out), nn.ReLU(inplace=True))


class UpBlock(nn.Sequential):
    """ConvTranspose3d kernel 2 stride 2 -> norm -> ReLU: (B, c_in, *S) -> (B, c_out, *2S)."""

    def __init__(self, c_in: int, c_out: int, normalization: str = "batchnorm"):
        super().__init__(
            nn.ConvTranspose3d(c_in, c_out, 2, stride=2), *_norm(normalization, c_out), nn.ReLU(inplace=True)
        )


class VNet(nn.Module):
    """The UA-MT / SSL4MIS V-Net. See the module docstring for shapes.

    Args:
        n_channels: input channels (1 for MRI/CT).
        n_classes: output classes, background included.
        n_filters: base width F (16 in the literature; 4-8 for CPU lessons and tests).
        normalization: 'batchnorm' (reference) | 'instancenorm' | 'groupnorm' | 'none'.
        has_dropout: Dropout3d(dropout_p) on the bottleneck and before the output conv.
    """

    def __init__(
        self,
        n_channels: int = 1,
        n_classes: int = 2,
        n_filters: int = 16,
        normalization: str = "batchnorm",
        has_dropout: bool = True,
        dropout_p: float = 0.5,
    ):
        super().__init__()
        if normalization not in NORMALIZATIONS:
            _norm(normalization, 1)  # raises the clear error
        self.n_channels, self.n_classes, self.n_filters = n_channels, n_classes, n_filters
        self.normalization = normalization
        self.has_dropout = has_dropout
        f, nm = n_filters, normalization
        # encoder
        self.block_one = ConvBlock(1, n_channels, f, nm)
        self.block_one_dw = DownBlock(f, 2 * f, nm)
        self.block_two = ConvBlock(2, 2 * f, 2 * f, nm)
        self.block_two_dw = DownBlock(2 * f, 4 * f, nm)
        self.block_three = ConvBlock(3, 4 * f, 4 * f, nm)
        self.block_three_dw = DownBlock(4 * f, 8 * f, nm)
        self.block_four = ConvBlock(3, 8 * f, 8 * f, nm)
        self.block_four_dw = DownBlock(8 * f, 16 * f, nm)
        self.block_five = ConvBlock(3, 16 * f, 16 * f, nm)
        # decoder
        self.block_five_up = UpBlock(16 * f, 8 * f, nm)
        self.block_six = ConvBlock(3, 8 * f, 8 * f, nm)
        self.block_six_up = UpBlock(8 * f, 4 * f, nm)
        self.block_seven = ConvBlock(3, 4 * f, 4 * f, nm)
        self.block_seven_up = UpBlock(4 * f, 2 * f, nm)
        self.block_eight = ConvBlock(2, 2 * f, 2 * f, nm)
        self.block_eight_up = UpBlock(2 * f, f, nm)
        self.block_nine = ConvBlock(1, f, f, nm)
        self.out_conv = nn.Conv3d(f, n_classes, 1)
        self.dropout = nn.Dropout3d(p=dropout_p)

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, n_channels, H, W, D) -> skips x1..x4 and bottleneck x5 (B, 16F, H/16, W/16, D/16)."""
        _check_input(x, self.n_channels)
        x1 = self.block_one(x)
        x2 = self.block_two(self.block_one_dw(x1))
        x3 = self.block_three(self.block_two_dw(x2))
        x4 = self.block_four(self.block_three_dw(x3))
        x5 = self.block_five(self.block_four_dw(x4))
        if self.has_dropout:
            x5 = self.dropout(x5)
        return x1, x2, x3, x4, x5

    def decode(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Skips + bottleneck -> decoder features (B, F, H, W, D) (before the output conv)."""
        x1, x2, x3, x4, x5 = feats
        x = self.block_six(self.block_five_up(x5) + x4)
        x = self.block_seven(self.block_six_up(x) + x3)
        x = self.block_eight(self.block_seven_up(x) + x2)
        x = self.block_nine(self.block_eight_up(x) + x1)
        if self.has_dropout:
            x = self.dropout(x)
        return x

    def load_reference(self, source: Union[str, Path, Mapping[str, torch.Tensor]]) -> "VNet":
        """Load a UA-MT / SSL4MIS ``VNet`` checkpoint (or one of ours) into this network; returns ``self``.

        ``source``: a ``.pth`` path (``torch.save(model.state_dict())``, optionally wrapped in
        ``{"state_dict": ...}`` / ``{"model": ...}`` or saved from ``nn.DataParallel``) or a state dict.
        Their blocks hold an ``nn.Sequential`` named ``conv`` (``block_one.conv.0.weight``); ours are
        the ``Sequential`` itself (``block_one.0.weight``): :func:`reference_to_vnet_names` renames,
        then every name and shape is checked. Build this VNet as theirs was built (LA:
        ``VNet(n_channels=1, n_classes=2, n_filters=16, normalization="batchnorm")``); a mismatch
        raises ``ValueError`` listing the missing, unexpected and mis-shaped names and the sizes
        the file was made with.
        """
        what, state = _read_state(source)
        state = reference_to_vnet_names(state)
        own = self.state_dict()
        # checkpoints older than PyTorch 0.4.1 have no BatchNorm step counter: keep ours (unused in eval)
        missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in state if k not in own]
        shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or shapes:
            parts = [f"{label} ({len(items)}): {', '.join(items[:4])}"
                     + (f" and {len(items) - 4} more" if len(items) > 4 else "")
                     for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
                     if items]
            mine = (f"VNet(n_channels={self.n_channels}, n_classes={self.n_classes}, n_filters={self.n_filters}, "
                    f"normalization={self.normalization!r})")
            raise ValueError(
                f"sfr_teach/nets/vnet.py: {what} does not fit {mine}: {'; '.join(parts)}. "
                f"The file looks like {_describe_state(state)}: build the VNet with those arguments"
            )
        self.load_state_dict({k: state.get(k, v) for k, v in own.items()})
        return self

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, Dict[str, torch.Tensor]]]:
        feats = self.encode(x)
        dec = self.decode(feats)
        logits = self.out_conv(dec)
        if return_features:
            return logits, {"bottleneck": feats[4], "decoder": dec}
        return logits


def _check_input(x: torch.Tensor, n_channels: int) -> None:
    if x.ndim != 5 or x.shape[1] != n_channels:
        raise ValueError(
            f"sfr_teach/nets/vnet.py: VNet expects a (B, {n_channels}, H, W, D) tensor, got shape "
            f"{tuple(x.shape)}; add the channel axis with x[:, None] or x.unsqueeze(1)"
        )
    bad = [s for s in x.shape[2:] if s % 16]
    if bad:
        good = tuple(max(16, 16 * round(s / 16)) for s in x.shape[2:])
        raise ValueError(
            f"sfr_teach/nets/vnet.py: VNet needs H, W, D divisible by 16 (four 2x down-samplings), got "
            f"{tuple(x.shape[2:])}; use a patch size such as {good} (e.g. retrain.patch_size / eval.patch_size)"
        )


_REFERENCE_BLOCK = re.compile(r"^(block_[a-z]+(?:_dw|_up)?)\.conv\.(\d+)\.")


def reference_to_vnet_names(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """UA-MT / SSL4MIS parameter names -> ours; names already ours pass through unchanged.

    ``block_one.conv.0.weight`` -> ``block_one.0.weight`` (likewise ``*_dw`` / ``*_up`` blocks and
    BatchNorm's ``conv.1.running_mean``...); ``out_conv.*`` is the same in both; a ``module.``
    prefix (``nn.DataParallel``) is dropped.
    """
    out: Dict[str, torch.Tensor] = {}
    for k, v in state.items():
        k = k[len("module."):] if k.startswith("module.") else k
        out[_REFERENCE_BLOCK.sub(r"\1.\2.", k)] = v
    return out


def _read_state(source: Union[str, Path, Mapping[str, torch.Tensor]]) -> Tuple[str, Dict[str, torch.Tensor]]:
    """(description, state dict) from a path or a mapping; unwraps {"state_dict"|"model"|"net": ...}."""
    if isinstance(source, Mapping):
        what, state = "the state dict", source
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: V-Net checkpoint not found; pass the .pth saved by the UA-MT / SSL4MIS training "
                "script (e.g. its best_model.pth) or a state dict"
            )
        what = str(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 -- any unpickling error means an unusable file
            raise ValueError(f"{path}: cannot read the checkpoint ({e}); re-download or re-save it") from e
    for key in ("state_dict", "model", "net"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{what}: not a state dict of tensors (found {type(state).__name__}); "
                         "save it with torch.save(model.state_dict(), path)")
    return what, dict(state)


def _describe_state(state: Mapping[str, torch.Tensor]) -> str:
    """The constructor arguments a (renamed) V-Net state dict was made with, as far as shapes tell."""
    first, out = state.get("block_one.0.weight"), state.get("out_conv.weight")
    if first is None or out is None or first.ndim != 5 or out.ndim != 5:
        return "no V-Net (block_one.0.weight / out_conv.weight missing or not 3D convolutions)"
    if "block_one.1.running_mean" in state:
        norm = "batchnorm"
    elif "block_one.1.weight" in state:
        norm = "groupnorm"
    else:
        norm = "instancenorm" if "block_two.3.weight" in state else "none"
    return (f"VNet(n_channels={first.shape[1]}, n_classes={out.shape[0]}, n_filters={first.shape[0]}, "
            f"normalization={norm!r})")
