"""CHNet network (common/networks/chnet.py): sizes against Table 5, shapes, TorchScript, weight loading."""

from __future__ import annotations

import copy
import logging

import pytest
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.chnet import with_concatenation_decoder
from common.networks.chnet import CHNet


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameters_match_table5():
    with torch.device("meta"):
        net = CHNet()
    # Table 5: about 8.8 M parameters in all, the decoder about 0.15 M (Section 5.5)
    assert count(net) == 8_804_009
    assert abs(count(net) - 8.8e6) / 8.8e6 < 0.03
    assert count(net.encoder) == 8_651_816  # Res2Net-50 26w x 4s without its last stage
    assert count(net.decoder) == 152_193
    assert abs(count(net.decoder) - 0.15e6) / 0.15e6 < 0.03


def test_macs_at_352():
    with torch.device("meta"):
        net = CHNet().eval()
        x = torch.empty(1, 3, 352, 352)
        with FlopCounterMode(display=False) as counter:
            net(x)
        with FlopCounterMode(display=False) as encoder_counter:
            net.encoder(x)
    # FlopCounterMode counts 2 x MACs; 8.38 G in the encoder + 0.70 G in the decoder (paper: about 7.1 G).
    # Decoder: reductions 64*64*176^2 + (256*88^2 + 512*44^2 + 1024*22^2)*64, hidden 1x1 conv per level
    # 64*128*(176^2 + 88^2 + 44^2 + 22^2), classifier 128*352^2 (4.06 G more for the hidden conv at 352^2)
    decoder = 64 * 64 * 176**2 + (256 * 88**2 + 512 * 44**2 + 1024 * 22**2) * 64
    decoder += 64 * 128 * (176**2 + 88**2 + 44**2 + 22**2) + 128 * 352**2
    assert counter.get_total_flops() / 2 - encoder_counter.get_total_flops() / 2 == decoder
    assert encoder_counter.get_total_flops() / 2 == pytest.approx(8.382e9, rel=1e-3)
    assert counter.get_total_flops() / 2 == pytest.approx(9.083e9, rel=1e-3)


@pytest.mark.parametrize("train", [False, True])
def test_per_level_head_equals_concatenation(train):
    """The decoder's per-level 1x1 convolution computes the paper's concatenation form (benchmarks.chnet):
    outputs in float32, and in float64 (where rounding is far below the tolerance) outputs, every gradient
    and the BatchNorm statistics. This pins the decoder's use of MONAI ``Convolution``'s children ``conv`` (its
    weight, split by level) and ``adn`` (run after the sum) against the whole ``Convolution`` forward: if MONAI
    adds a step to ``Convolution``, this fails."""
    torch.manual_seed(0)
    net = CHNet().train(train)
    reference = with_concatenation_decoder(net).train(train)
    x = torch.randn(2, 3, 50, 70)  # levels of 25x35, 13x18, 7x9, 4x5: upsampling by non-integer factors
    net64 = copy.deepcopy(net).double()
    torch.testing.assert_close(net(x), reference(x), rtol=1e-5, atol=1e-5)
    net, reference, x = net64, with_concatenation_decoder(net64), x.double()
    out, expected = net(x), reference(x)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    if train:
        out.square().sum().backward()
        expected.square().sum().backward()
        # the reductions' biases have a true gradient of 0 (train-mode BatchNorm removes constants): atol
        for (name, p), q in zip(net.named_parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-9, msg=name)
        norm, expected_norm = net.decoder.head[0].adn.N, reference.decoder.head[0].adn.N
        torch.testing.assert_close(norm.running_var, expected_norm.running_var, rtol=1e-12, atol=1e-12)


def test_state_dict_keys_unchanged():
    with torch.device("meta"):
        net = CHNet()
    decoder_keys = [k for k in net.state_dict() if k.startswith("decoder.")]
    assert decoder_keys == [
        *(f"decoder.reductions.{i}.conv.{p}" for i in range(4) for p in ("weight", "bias")),
        "decoder.head.0.conv.weight",
        *(
            f"decoder.head.0.adn.N.{b}"
            for b in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        ),
        "decoder.head.1.conv.weight",
        "decoder.head.1.conv.bias",
    ]
    assert net.decoder.head[0].conv.weight.shape == (128, 256, 1, 1)
    assert [name for name, _ in net.decoder.head[0].named_children()] == ["conv", "adn"]  # all the decoder runs


def test_variants_sizes():
    with torch.device("meta"):
        fcn = CHNet(decoder="fcn32s")
        conv3 = CHNet(head_kernel_size=3)
        three_levels = CHNet(out_indices=(1, 2, 3))
    assert count(fcn.decoder) == 1024 + 1  # a 1x1 score convolution on the 1024-channel level
    assert count(conv3.decoder) == 152_193 + 8 * 256 * 128  # Table 6's 3x3 head
    assert count(three_levels.decoder) == (256 + 512 + 1024 + 3) * 64 + 192 * 128 + 256 + 129


@pytest.mark.parametrize("decoder", ["classification_head", "fcn32s"])
def test_output_shape_train_and_eval(decoder):
    net = CHNet(decoder=decoder, out_channels=2)
    x = torch.randn(2, 3, 40, 56)
    assert net.train()(x).shape == (2, 2, 40, 56)
    assert net.eval()(x).shape == (2, 2, 40, 56)


def test_torchscript_trace_matches_eager():
    net = CHNet().eval()
    x = torch.randn(1, 3, 32, 32)
    traced = torch.jit.trace(net, x, check_trace=False)
    y = torch.randn(2, 3, 48, 64)  # another size: the upsampling follows the input
    torch.testing.assert_close(traced(y), net(y))


def test_bad_arguments():
    with pytest.raises(ValueError, match="spatial_dims"):
        CHNet(spatial_dims=3)
    with pytest.raises(ValueError, match="decoder"):
        CHNet(decoder="unet")
    with pytest.raises(FileNotFoundError, match="pretrained_path"):
        CHNet(backbone="resnet18", pretrained_path="/nonexistent/weights.pth")


def test_random_encoder_is_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="common.networks.chnet"):
        CHNet(backbone="resnet18")
    assert "starts from random weights" in caplog.text


def test_loads_timm_state_dict_and_adapts_grey_input(tmp_path):
    """A backbone's state dict saved to a local file (under "state_dict" and with DDP's "module." too) loads
    through timm into every tensor of the encoder, identical to the saved ones; grey input sums the RGB filters."""
    full = timm.create_model("resnet18", pretrained=False)  # has layer4 and fc, which CHNet drops
    saved = full.state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(saved, path)
    torch.save({"state_dict": {f"module.{k}": v for k, v in saved.items()}}, tmp_path / "wrapped.pth")
    for weights in (path, tmp_path / "wrapped.pth"):
        encoder = CHNet(backbone="resnet18", pretrained_path=weights).encoder.state_dict()
        assert set(encoder) == {k for k in saved if not k.startswith(("layer4.", "fc."))}
        assert all(torch.equal(value, saved[key]) for key, value in encoder.items())
    grey = CHNet(backbone="resnet18", in_channels=1, pretrained_path=path)
    torch.testing.assert_close(grey.encoder.conv1.weight, full.conv1.weight.sum(dim=1, keepdim=True))
    torch.save({"conv1.weight": full.conv1.weight}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=f"partial.pth lacks {len(encoder) - 1} encoder weights"):  # all but conv1
        CHNet(backbone="resnet18", pretrained_path=tmp_path / "partial.pth")
    torch.save({**saved, "layer3.0.conv1.weight": torch.zeros(8, 128, 3, 3)}, tmp_path / "other.pth")
    with pytest.raises(
        ValueError, match=r"other.pth does not fit the resnet18 encoder (?s:.)*size mismatch for layer3.0.conv1.weight"
    ):
        CHNet(backbone="resnet18", pretrained_path=tmp_path / "other.pth")


def test_decoupling_frozen_trained_encoder(tmp_path):
    trained = CHNet(backbone="resnet18")
    torch.save(trained.state_dict(), tmp_path / "model.pt")
    net = CHNet(backbone="resnet18", decoder="fcn32s", pretrained_path=tmp_path / "model.pt", freeze_encoder=True)
    expected = trained.encoder.state_dict()
    assert net.encoder.state_dict().keys() == expected.keys()
    assert all(torch.equal(value, expected[key]) for key, value in net.encoder.state_dict().items())
    torch.save({"model": trained.state_dict(), "epoch": 3}, tmp_path / "checkpoint_final.pt")  # a training checkpoint
    resumed = CHNet(backbone="resnet18", pretrained_path=tmp_path / "checkpoint_final.pt")
    assert torch.equal(resumed.encoder.layer3[0].conv1.weight, trained.encoder.layer3[0].conv1.weight)
    net.train()
    assert not net.encoder.training and net.decoder.training  # BatchNorm statistics of the encoder stay
    assert all(not p.requires_grad for p in net.encoder.parameters())
    net(torch.randn(2, 3, 32, 32)).sum().backward()
    assert net.decoder.score.conv.weight.grad is not None
