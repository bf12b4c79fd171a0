"""CHNet: a pre-trained encoder with a pixel classification head as the whole decoder.

Wei et al., "Only Classification Head is Sufficient for Medical Image Segmentation".
Section 3.1 and Fig. 2 define the network: a Res2Net-50 encoder without
its last stage, a 1x1 convolution that reduces the channels of every kept level, upsampling of every
level to the input size, concatenation to a 256 x H x W map, and a classification head of 1x1
convolutions with BatchNorm and ReLU. Section 4 (encoder-decoder decoupling) pairs a frozen trained
encoder with another decoder, the FCN-32s head of Long et al. being the lightest one; Table 6 uses the
same FCN-32s head as the ablation baseline and a 3x3 variant of the classification head.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from timm.models import load_state_dict

__all__ = ["CHNet", "ClassificationHeadDecoder", "FCN32sDecoder"]

logger = logging.getLogger(__name__)

DECODERS = ("classification_head", "fcn32s")


class ClassificationHeadDecoder(nn.Module):
    """The CHNet decoder (Section 3.1, Fig. 2): per level a 1x1 convolution to ``reduced_channels``,
    bilinear upsampling of every level to the input size, concatenation along the channel axis
    (4 levels x 64 = 256 channels in the paper), then the pixel classification head: a convolution to
    ``head_channels`` with BatchNorm and ReLU, and a 1x1 convolution to ``out_channels``.

    Args:
        in_channels: channel count of every encoder level, shallowest first.
        out_channels: number of output channels (classes).
        reduced_channels: channels of every level after the 1x1 reduction. Defaults to 64 (4 x 64 = 256).
        head_channels: hidden width of the classification head. Defaults to 128, the width for which
            the decoder holds the paper's "about 0.15 M" parameters (Table 5, Section 5.5).
        head_kernel_size: kernel size of the head's hidden convolution: 1 (the paper's choice) or 3
            (the "CHNet (3x3 Conv)" row of Table 6).

    With a 1x1 head (the paper's), the head's first convolution runs on every level at the level's own
    resolution, before the upsampling: a 1x1 convolution without bias and bilinear upsampling are both
    linear maps, one acting on channels and the other on pixels, so they commute, and a convolution of a
    concatenation is the sum of the convolutions of its parts with the matching slices of the weight:
    ``conv_W(cat_l(up(r_l))) = sum_l up(conv_{W_l}(r_l))``. Same function, same parameters and state
    dict, but 0.34 instead of 4.06 GMACs for that convolution at 352 x 352 (the shallowest level is at
    1/2 of the input size).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int = 1,
        reduced_channels: int = 64,
        head_channels: int = 128,
        head_kernel_size: int = 1,
    ) -> None:
        super().__init__()
        if head_kernel_size % 2 != 1:
            raise ValueError(f"head_kernel_size must be odd (1 or 3 in the paper), got {head_kernel_size}.")
        self.reduced_channels = reduced_channels
        self.head_kernel_size = head_kernel_size
        self.reductions = nn.ModuleList(
            Convolution(2, c, reduced_channels, kernel_size=1, conv_only=True) for c in in_channels
        )
        self.head = nn.Sequential(
            Convolution(
                2,
                reduced_channels * len(in_channels),
                head_channels,
                kernel_size=head_kernel_size,
                act="relu",
                norm="batch",
                bias=False,
            ),
            Convolution(2, head_channels, out_channels, kernel_size=1, conv_only=True),
        )

    def forward(self, features: list[torch.Tensor], size: list[int]) -> torch.Tensor:
        reduced = [reduce(features[i]) for i, reduce in enumerate(self.reductions)]
        if self.head_kernel_size != 1:
            upsampled = [F.interpolate(r, size=size, mode="bilinear", align_corners=False) for r in reduced]
            return self.head(torch.cat(upsampled, dim=1))
        # the hidden 1x1 convolution per level before upsampling (class docstring): same function. The
        # levels go channels-last, where the bilinear kernel runs over the contiguous channels, and are
        # summed in place (upsampling does not keep its output for the backward pass).
        weights = self.head[0].conv.weight.split(self.reduced_channels, dim=1)
        mixed = reduced[0]  # replaced by the first level
        for k, (r, w) in enumerate(zip(reduced, weights)):
            level = F.conv2d(r, w).contiguous(memory_format=torch.channels_last)
            level = F.interpolate(level, size=size, mode="bilinear", align_corners=False)
            mixed = level if k == 0 else mixed.add_(level)
        return self.head[1](self.head[0].adn(mixed)).contiguous()


class FCN32sDecoder(nn.Module):
    """FCN-32s-style decoder (Long et al., CVPR 2015), the light decoder of Section 4.2 and the
    baseline of Table 6: a 1x1 score convolution on the deepest encoder level, bilinearly upsampled to
    the input size in one step. It ignores the shallower levels.

    Args:
        in_channels: channel count of every encoder level, shallowest first (only the last is used).
        out_channels: number of output channels (classes).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 1) -> None:
        super().__init__()
        self.score = Convolution(2, in_channels[-1], out_channels, kernel_size=1, conv_only=True)

    def forward(self, features: list[torch.Tensor], size: list[int]) -> torch.Tensor:
        return F.interpolate(self.score(features[-1]), size=size, mode="bilinear", align_corners=False)


class CHNet(nn.Module):
    """CHNet of Wei et al., "Only Classification Head is Sufficient for Medical Image Segmentation"
    (Section 3.1, Fig. 2): a timm encoder (Res2Net-50 26w x 4s without its last stage) and a pixel
    classification head (:class:`ClassificationHeadDecoder`). With the defaults the network holds
    8.80 M parameters, 0.15 M of them in the decoder (Table 5: about 8.8 M and 0.15 M).

    The network returns segmentation logits at the input's spatial size in both train and eval mode
    (train with :class:`common.losses.chnet.WeightedIoUBCELoss`).

    Args:
        spatial_dims: number of spatial dimensions; CHNet is a 2D network, only 2 is accepted.
        in_channels: number of input channels (3 for RGB; 1 for a CT slice, in which case pretrained
            RGB weights of the first convolution are summed over colour, as timm does).
        out_channels: number of output channels (1 for the paper's binary tasks).
        backbone: timm model name of the encoder. Defaults to ``"res2net50_26w_4s"``.
        out_indices: encoder levels kept, as timm ``features_only`` indices. Defaults to ``(0, 1, 2, 3)``:
            the stem and the first three stages, i.e. Res2Net-50 without its last stage.
        decoder: ``"classification_head"`` (CHNet) or ``"fcn32s"`` (the FCN-32s head of Section 4 and
            the baseline of Table 6).
        reduced_channels: channels of each kept level after its 1x1 reduction (64 x 4 levels = 256).
        head_channels: hidden width of the classification head (128 gives Table 5's 0.15 M decoder).
        head_kernel_size: 1 (paper) or 3 (Table 6 ablation).
        pretrained_path: local file with encoder weights: a timm/torchvision state dict of the backbone, loaded
            by timm (``pretrained_cfg_overlay=dict(file=...)``: strict, the classifier dropped, the first
            convolution adapted to ``in_channels``; the stages not kept are pruned after loading), or a trained
            CHNet checkpoint (its ``encoder.*`` entries, loaded strictly; this is how Section 4's decoupling
            reuses a trained encoder). ``None`` leaves the encoder random (the paper uses ImageNet weights);
            nothing is ever downloaded.
        freeze_encoder: freeze the encoder (no gradients, BatchNorm statistics kept) to train only the
            decoder, as in the decoupling experiments of Section 4.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        backbone: str = "res2net50_26w_4s",
        out_indices: Sequence[int] = (0, 1, 2, 3),
        decoder: str = "classification_head",
        reduced_channels: int = 64,
        head_channels: int = 128,
        head_kernel_size: int = 1,
        pretrained_path: str | os.PathLike | None = None,
        freeze_encoder: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"CHNet is a 2D network: spatial_dims must be 2, got {spatial_dims}.")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}.")
        self.encoder = _encoder(backbone, out_indices, in_channels, pretrained_path)
        encoder_channels = self.encoder.feature_info.channels()
        if decoder == "classification_head":
            self.decoder: nn.Module = ClassificationHeadDecoder(
                encoder_channels, out_channels, reduced_channels, head_channels, head_kernel_size
            )
        else:
            self.decoder = FCN32sDecoder(encoder_channels, out_channels)
        if pretrained_path:
            logger.info("CHNet: loaded the %s encoder from %s.", backbone, pretrained_path)
        else:
            logger.warning(
                "CHNet: no pretrained_path given, the %s encoder starts from random weights (the paper "
                "uses ImageNet weights): set network_def#pretrained_path to a local state-dict file.",
                backbone,
            )
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            self.encoder.requires_grad_(False)

    def train(self, mode: bool = True) -> CHNet:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x), x.shape[2:])


def _encoder(backbone: str, out_indices: Sequence[int], in_channels: int, path: str | os.PathLike | None) -> nn.Module:
    """timm's ``features_only`` encoder, with its weights from the local file ``path`` when given (see CHNet's
    ``pretrained_path``): a trained CHNet's ``encoder.*`` entries through the encoder's ``load_state_dict``, a
    backbone's state dict through timm."""
    create = functools.partial(
        timm.create_model, backbone, features_only=True, out_indices=tuple(out_indices), in_chans=in_channels
    )
    if not path:
        return create(pretrained=False)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"CHNet pretrained_path {path!s} does not exist: give a local timm/torchvision state-dict "
            "file of the backbone or a trained CHNet model.pt, or leave it empty for a random encoder."
        )
    state = load_state_dict(str(path), use_ema=False)  # timm's reader: bare, "state_dict" or "model"; no "module."
    trained = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    try:
        if trained:
            encoder = create(pretrained=False)
            encoder.load_state_dict(trained)
            return encoder
        encoder = create(pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    except RuntimeError as e:  # torch's load_state_dict: missing or unexpected keys, other shapes
        raise ValueError(
            f"CHNet pretrained_path {path!s} does not fit the {backbone} encoder ({e}): it must be a state dict "
            "of the same backbone (timm key names) or a trained CHNet model."
        ) from e
    # timm loads a features_only model non-strictly (its classifier is dropped), so a tensor the file lacks would
    # keep its random start without a word
    missing = [k for k in encoder.state_dict() if k not in state]
    if missing:
        raise ValueError(
            f"CHNet pretrained_path {path!s} lacks {len(missing)} encoder weights (e.g. {missing[:3]}): "
            "it must be a state dict of the same backbone (timm key names) or a trained CHNet model."
        )
    return encoder
