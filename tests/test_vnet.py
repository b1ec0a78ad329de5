"""The LA-literature V-Net: exact size, shapes, options and input errors."""
import pytest
import torch

from sfr_teach.nets import NETS, VNet, build_net, count_parameters


def test_reference_parameter_count():
    assert count_parameters(build_net("vnet", n_channels=1, n_classes=2, n_filters=16)) == 9_448_866


def test_parameter_count_scales_with_classes_and_width():
    # only the 1x1x1 output conv (16 inputs + bias per class) depends on the number of classes
    assert count_parameters(VNet(n_classes=5)) - count_parameters(VNet(n_classes=2)) == 3 * 17
    assert count_parameters(VNet(n_filters=8)) < count_parameters(VNet(n_filters=16)) / 3


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
