"""The LA-literature V-Net: exact size, shapes, options and input errors."""
import re

import pytest
import torch
from torch import nn

from sfr_teach.nets import NETS, VNet, build_net, count_parameters
from sfr_teach.nets.vnet import BatchNorm3d, reference_to_vnet_names


def test_reference_parameter_count():
    assert count_parameters(build_net("vnet", n_channels=1, n_classes=2, n_filters=16))["total"] == 9_448_866


def test_parameter_count_scales_with_classes_and_width():
    # only the 1x1x1 output conv (16 inputs + bias per class) depends on the number of classes
    assert count_parameters(VNet(n_classes=5))["total"] - count_parameters(VNet(n_classes=2))["total"] == 3 * 17
    assert count_parameters(VNet(n_filters=8))["total"] < count_parameters(VNet(n_filters=16))["total"] / 3


@pytest.mark.parametrize("norm", ["batchnorm", "instancenorm", "groupnorm", "none"])
def test_output_and_feature_shapes(norm):
    torch.manual_seed(0)
    net = VNet(n_classes=3, n_filters=4, normalization=norm).eval()
    x = torch.randn(2, 1, 32, 16, 48)
    logits, feats = net(x, return_features=True)
    assert logits.shape == (2, 3, 32, 16, 48)
    assert feats["bottleneck"].shape == (2, 64, 2, 1, 3)
    assert feats["decoder"].shape == (2, 4, 32, 16, 48)
    assert torch.equal(net(x), logits)  # eval mode: deterministic, same logits without features


def test_dropout_only_in_train_mode():
    torch.manual_seed(0)
    net = VNet(n_filters=4, normalization="none")
    x = torch.randn(1, 1, 16, 16, 16)
    net.train()
    assert not torch.equal(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))


def test_bad_inputs_give_clear_errors():
    net = VNet(n_filters=4)
    with pytest.raises(ValueError, match="divisible by 16.*patch size"):
        net(torch.zeros(1, 1, 32, 32, 24))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W, D\)"):
        net(torch.zeros(1, 32, 32, 32))
    with pytest.raises(ValueError, match="unknown normalization"):
        VNet(normalization="layernorm")
    with pytest.raises(ValueError, match="unknown network"):
        build_net("unet")
    assert "vnet" in NETS


# ----------------------------------------------------------------------------- reference checkpoints
class _RefBlock(nn.Module):
    """The reference layout: every block keeps its layers in ``self.conv`` (an nn.Sequential)."""

    def __init__(self, *layers):
        super().__init__()
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return self.conv(x)


def _ref_conv(n, c_in, c_out):
    layers = []
    for i in range(n):
        layers += [nn.Conv3d(c_in if i == 0 else c_out, c_out, 3, padding=1), nn.BatchNorm3d(c_out), nn.ReLU()]
    return _RefBlock(*layers)


class _ReferenceVNet(nn.Module):
    """UA-MT / SSL4MIS ``networks/vnet.py`` VNet(normalization='batchnorm') as published: the same
    attribute names (block_one ... block_nine, *_dw, *_up, out_conv) and the same layers."""

    def __init__(self, n_channels=1, n_classes=2, n_filters=16):
        super().__init__()
        f = n_filters
        enc = [(1, n_channels, f), (2, 2 * f, 2 * f), (3, 4 * f, 4 * f), (3, 8 * f, 8 * f), (3, 16 * f, 16 * f)]
        for name, (n, ci, co) in zip(("one", "two", "three", "four", "five"), enc):
            setattr(self, f"block_{name}", _ref_conv(n, ci, co))
            if name != "five":
                setattr(self, f"block_{name}_dw",
                        _RefBlock(nn.Conv3d(co, 2 * co, 2, stride=2), nn.BatchNorm3d(2 * co), nn.ReLU()))
        dec = [("five", 16 * f, None), ("six", 8 * f, 3), ("seven", 4 * f, 3), ("eight", 2 * f, 2), ("nine", f, 1)]
        for (up, ci, _), (name, co, n) in zip(dec, dec[1:]):
            setattr(self, f"block_{up}_up",
                    _RefBlock(nn.ConvTranspose3d(ci, co, 2, stride=2), nn.BatchNorm3d(co), nn.ReLU()))
            setattr(self, f"block_{name}", _ref_conv(n, co, co))
        self.out_conv = nn.Conv3d(f, n_classes, 1, padding=0)

    def forward(self, x):
        skips = []
        for name in ("one", "two", "three", "four"):
            x = getattr(self, f"block_{name}")(x)
            skips.append(x)
            x = getattr(self, f"block_{name}_dw")(x)
        x = self.block_five(x)
        for up, name, skip in zip(("five", "six", "seven", "eight"), ("six", "seven", "eight", "nine"), skips[::-1]):
            x = getattr(self, f"block_{name}")(getattr(self, f"block_{up}_up")(x) + skip)
        return self.out_conv(x)


def _randomise_bn(net, seed=0):
    """Non-trivial BatchNorm statistics, so that a swapped mean / variance would show in the output."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return net


def test_reference_architecture_names_and_count():
    ref = _ReferenceVNet(n_filters=16)
    assert "block_one.conv.0.weight" in ref.state_dict() and "block_one.conv.1.running_mean" in ref.state_dict()
    assert count_parameters(ref)["total"] == 9_448_866  # the published size
    renamed = {k: tuple(v.shape) for k, v in reference_to_vnet_names(ref.state_dict()).items()}
    assert renamed == {k: tuple(v.shape) for k, v in VNet().state_dict().items()}  # same names, same shapes


def test_load_reference_checkpoint_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    ref = _randomise_bn(_ReferenceVNet(n_filters=4, n_classes=3)).eval()
    path = tmp_path / "best_model.pth"
    torch.save(ref.state_dict(), path)  # as the UA-MT / SSL4MIS training scripts save it
    net = VNet(n_filters=4, n_classes=3).load_reference(path).eval()
    x = torch.randn(2, 1, 32, 32, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x), rtol=0, atol=0)
    # nn.DataParallel's "module." prefix and a {"state_dict": ...} wrapper load too
    wrapped = {"state_dict": {"module." + k: v for k, v in ref.state_dict().items()}}
    net2 = VNet(n_filters=4, n_classes=3).load_reference(wrapped).eval()
    with torch.no_grad():
        assert torch.equal(net2(x), net(x))


def test_round_trip_through_reference_names_is_exact():
    torch.manual_seed(1)
    src = _randomise_bn(VNet(n_filters=4), seed=1).eval()
    theirs = {re.sub(r"^(block_[a-z_]+?)\.(\d+)\.", r"\1.conv.\2.", k): v for k, v in src.state_dict().items()}
    assert "block_one.conv.0.weight" in theirs and "block_five_up.conv.1.running_var" in theirs
    assert "out_conv.weight" in theirs
    assert reference_to_vnet_names(theirs).keys() == src.state_dict().keys()
    dst = VNet(n_filters=4).load_reference(theirs).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(dst(x), src(x))
    assert VNet(n_filters=4).load_reference(src.state_dict()) is not None  # our own names load as they are


def test_load_reference_mismatch_lists_what_did_not_match(tmp_path):
    ref = _ReferenceVNet(n_filters=8, n_classes=2).state_dict()
    with pytest.raises(ValueError) as e:
        VNet(n_filters=4, n_classes=3).load_reference(ref)
    msg = str(e.value)
    assert "shape (" in msg and "block_one.0.weight: file (8, 1, 3, 3, 3) vs model (4, 1, 3, 3, 3)" in msg
    assert "VNet(n_channels=1, n_classes=2, n_filters=8, normalization='batchnorm')" in msg
    no_bn = {k: v for k, v in ref.items() if not re.search(r"\.conv\.[147]\.", k)}  # an instancenorm V-Net's keys
    with pytest.raises(ValueError, match=r"missing \(\d+\): block_one\.1\.weight.*normalization='instancenorm'"):
        VNet(n_filters=8).load_reference(no_bn)
    VNet(n_filters=8, normalization="instancenorm").load_reference(no_bn)  # built to match, it loads
    extra = dict(ref, **{"aux_head.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected \(1\): aux_head\.weight"):
        VNet(n_filters=8).load_reference(extra)
    with pytest.raises(FileNotFoundError, match="nope.pth: V-Net checkpoint not found"):
        VNet().load_reference(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth: cannot read the checkpoint"):
        VNet().load_reference(tmp_path / "junk.pth")


@pytest.mark.parametrize("threads", [1, 2])
def test_batchnorm_matches_torch_batchnorm_in_channels_last(threads):
    """The V-Net's BatchNorm3d (a contiguous copy where channels-last backward is slow on CPU) computes
    what nn.BatchNorm3d computes: outputs, gradients, running statistics; the result stays channels-last."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        cl = torch.channels_last_3d
        x = (3.0 * torch.randn(2, 8, 12, 10, 8) + 1.0).contiguous(memory_format=cl)
        g = torch.randn(2, 8, 12, 10, 8).contiguous(memory_format=cl)
        ref, ours = nn.BatchNorm3d(8), BatchNorm3d(8)
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5)
            ref.bias.uniform_(-0.5, 0.5)
        ours.load_state_dict(ref.state_dict())
        xr, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
        yr, yo = ref(xr), ours(xo)
        yr.backward(g)
        yo.backward(g)
        assert yo.is_contiguous(memory_format=cl) and xo.grad.is_contiguous(memory_format=cl)
        torch.testing.assert_close(yo, yr, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(xo.grad, xr.grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours.running_mean, ref.running_mean)
        torch.testing.assert_close(ours.running_var, ref.running_var)
        assert int(ours.num_batches_tracked) == 1
        ours.load_state_dict(ref.state_dict())
        ours.eval(), ref.eval()
        with torch.no_grad():  # evaluation mode: nn.BatchNorm3d itself, bit for bit
            assert torch.equal(ours(x), ref(x))
    finally:
        torch.set_num_threads(saved)


def test_vnet_uses_the_package_batchnorm():
    norms = [m for m in VNet(n_filters=4).modules() if isinstance(m, nn.BatchNorm3d)]
    assert norms and all(type(m) is BatchNorm3d for m in norms)
