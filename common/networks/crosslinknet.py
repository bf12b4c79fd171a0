"""Crosslink-Net: a double-branch encoder with vertical and horizontal kernels.

Q. Yu, L. Qi, L. Zhou, L. Wang, Y. Yin, Y. Shi, W. Wang, Y. Gao, "Crosslink-Net: Double-branch
Encoder Segmentation Network via Fusing Vertical and Horizontal Convolutions", 2021
(arXiv:2107.11517).

The encoder has a vertical branch of convolutional residual blocks (VCRB1-5, Table I) and a
horizontal branch (HCRB1-5); each block is followed by 2x2 max pooling. The pooled level-5 outputs of
the two branches are joined by a 1x1 convolution; the decoder has five up-convolution residual blocks
(UCRB5-1, Fig. 4 (b)) that take the bilinearly upsampled decoder features together with the skips of
both branches. Spatial attention maps are computed on the level-3 outputs (VCRB3, HCRB3) for the
attention loss of Eq. 1 (``common.losses.crosslinknet``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

__all__ = [
    "CrosslinkNet",
    "ConvBNAct",
    "BATCH_NORM_EPS",
    "RConv2d",
    "ConvResidualBlock",
    "UpConvResidualBlock",
    "SpatialAttentionHead",
    "CROSSLINK_VARIANTS",
    "VERTICAL_KERNELS",
    "HORIZONTAL_KERNELS",
    "SQUARE_KERNELS",
]

#: kernel sizes of the three paths of a VCRB (Table I): 3x1, 3x3, 5x3.
VERTICAL_KERNELS: tuple[tuple[int, int], ...] = ((3, 1), (3, 3), (5, 3))
#: kernel sizes of the three paths of an HCRB (Table I): 1x3, 3x3, 3x5.
HORIZONTAL_KERNELS: tuple[tuple[int, int], ...] = ((1, 3), (3, 3), (3, 5))
#: kernel sizes of SquareCrosslink (Section IV-C2): 1x1, 3x3, 5x5 in both branches.
SQUARE_KERNELS: tuple[tuple[int, int], ...] = ((1, 1), (3, 3), (5, 5))

#: Crosslink-Net and the architectures of Table III.
CROSSLINK_VARIANTS = ("crosslink", "square_crosslink", "ver_crosslink", "hor_crosslink", "double2single")


#: BatchNorm epsilon of the authors' release (ported weights reproduce its outputs only with it).
BATCH_NORM_EPS = 1e-4


def ConvBNAct(in_channels: int, out_channels: int, kernel_size: tuple[int, int], act: bool = True) -> Convolution:
    """One ``Conv2d`` (stride 1, 'same' padding, no bias) followed by BatchNorm (eps 1e-4) and optionally ReLU.

    Crosslink-Net, Section III-A: "Each convolution operation is followed by Batch Normalization and
    ReLU operation, except for the 1x1 convolution in front of the addition". The conv has no bias
    (the BatchNorm that follows cancels it), as in the authors' release. A MONAI ``Convolution``: its
    ``[0]`` is the ``Conv2d``, its ``[1]`` the BatchNorm (and ReLU).
    """
    return Convolution(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=kernel_size,
        act="RELU" if act else None,
        norm=("BATCH", {"eps": BATCH_NORM_EPS}),
        bias=False,
    )


class RConv2d(nn.Module):
    """Table I's ``RConv2d``: three consecutive convolutions with a residual connection.

    conv(in -> out), then conv(out -> out/2) and conv(out/2 -> out); the output of the last two is
    added to the output of the first. Every convolution is followed by BatchNorm and ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int]) -> None:
        super().__init__()
        mid = max(out_channels // 2, 1)
        self.conv1 = ConvBNAct(in_channels, out_channels, kernel_size)
        self.conv2 = ConvBNAct(out_channels, mid, kernel_size)
        self.conv3 = ConvBNAct(mid, out_channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return x + self.conv3(self.conv2(x))


class ConvResidualBlock(nn.Module):
    """A vertical (VCRB), horizontal (HCRB) or square convolutional residual block (Fig. 4 (a), (c)).

    Parallel paths (Table I, step 1) are concatenated and fused by a 1x1 convolution; a 1x1 residual
    convolution of the input (no ReLU) is added (step 3), followed by ReLU. A path is an
    :class:`RConv2d` with the given kernel, or a single 1x1 conv + BN where its kernel is ``(1, 1)``
    and ``point_path`` is true (the third path of the horizontal branch in the authors' release).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernels: kernel size of each path.
        fusion: a 1x1 fusion convolution ``len(kernels) * out -> out`` to use (shared with the block of
            the other branch), or ``None`` to create one.
        residual: a 1x1 residual convolution ``in -> out`` to use (shared), or ``None`` to create one.
        point_path: build ``(1, 1)`` paths as one 1x1 conv + BN instead of an :class:`RConv2d`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernels: Sequence[tuple[int, int]],
        fusion: nn.Module | None = None,
        residual: nn.Module | None = None,
        point_path: bool = False,
    ) -> None:
        super().__init__()
        paths: list[nn.Module] = []
        for k in kernels:
            if point_path and tuple(k) == (1, 1):
                paths.append(ConvBNAct(in_channels, out_channels, (1, 1), act=False))
            else:
                paths.append(RConv2d(in_channels, out_channels, tuple(k)))
        self.paths = nn.ModuleList(paths)
        self.fusion = (
            fusion if fusion is not None else ConvBNAct(len(kernels) * out_channels, out_channels, (1, 1), act=False)
        )
        self.residual = residual if residual is not None else ConvBNAct(in_channels, out_channels, (1, 1), act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fusion(torch.cat([path(x) for path in self.paths], dim=1))
        return F.relu(y + self.residual(x))


class UpConvResidualBlock(nn.Module):
    """Up-convolution residual block UCRB (Fig. 4 (b)): three 3x3 convs, the last two added to the first.

    Its input is the concatenation ``[vertical skip, upsampled decoder features, horizontal skip]``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(in_channels, out_channels, (3, 3))
        self.conv2 = ConvBNAct(out_channels, out_channels, (3, 3))
        self.conv3 = ConvBNAct(out_channels, out_channels, (3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return x + self.conv3(self.conv2(x))


class SpatialAttentionHead(nn.Sequential):
    """Spatial attention map of a level-3 block (Section III-B): 3x3 conv + BN + ReLU, 3x3 conv to 1 + BN, sigmoid.

    The BatchNorms (after both convs, no conv bias) are the authors' release's; the paper does not detail
    the head.
    """

    def __init__(self, in_channels: int) -> None:
        mid = max(in_channels // 2, 1)
        super().__init__(
            ConvBNAct(in_channels, mid, (3, 3)),
            ConvBNAct(mid, 1, (3, 3), act=False),
            nn.Sigmoid(),
        )


class CrosslinkNet(nn.Module):
    """Crosslink-Net (Yu et al., Fig. 3, Table I) and the architectures of its Table III.

    ``eval()`` mode returns the segmentation logits ``(B, out_channels, H, W)``. ``train()`` mode returns
    ``(logits, attention_vertical, attention_horizontal)``; the attention maps (values in (0, 1)) have
    the size of the level-3 features, ``(B, 1, H // 4, W // 4)``, and feed the attention loss of Eq. 1
    (:class:`common.losses.crosslinknet.CrosslinkNetLoss`). Single-branch variants return their one
    attention map in both places.

    Args:
        spatial_dims: must be 2 (Crosslink-Net is a 2D network; volumes are segmented slice by slice).
        in_channels: image channels (1 for the grey CT/MR images of the paper).
        out_channels: output channels (1 for a binary sigmoid output, else one per class incl. background).
        features: output channels of the encoder levels 1-5 (Table I: 32, 64, 128, 256, 512).
        decoder_features: output channels of UCRB1-5 (Table I: 16, 32, 64, 128, 256).
        variant: ``"crosslink"`` (the paper's network), or a Table III ablation: ``"square_crosslink"``
            (1x1, 3x3, 5x5 kernels in both branches), ``"ver_crosslink"`` (vertical branch only),
            ``"hor_crosslink"`` (horizontal branch only), ``"double2single"`` (one branch holding the
            vertical, horizontal, 3x3 and 1x1 kernels).
        structure: ``"release"`` (default): the structure of the authors' release, which matches the
            121 MB of Table III: the 1x1 fusion and residual convs of each level and the attention head
            are shared by both branches, and the horizontal branch's 3x3 path is one 1x1 conv + BN
            (likewise every 1x1 path of the ablations is one conv + BN).
            ``"table"``: Table I read literally (a 3x3 residual stack in both branches, nothing shared).
        attention_level: encoder level of the attention maps (the paper's choice is 3; Fig. 7 compares 1-5).

    Both structures build their layers as the release does: BatchNorm eps 1e-4, no conv bias where a
    BatchNorm follows, no activation after the 1x1 fusion conv (it is in front of the addition), BatchNorm
    after both attention-head convs, and PyTorch's default initialisation (the paper's "Gaussian" init is
    not what the release runs). ``release`` has 31,862,899 parameters (121.55 MiB fp32), ``table``
    37,701,493 (143.82 MiB).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        features: Sequence[int] = (32, 64, 128, 256, 512),
        decoder_features: Sequence[int] = (16, 32, 64, 128, 256),
        variant: str = "crosslink",
        structure: str = "release",
        attention_level: int = 3,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(
                f"CrosslinkNet is a 2D network, got spatial_dims={spatial_dims}; use spatial_dims=2 and "
                "segment volumes slice by slice (monai.inferers.SliceInferer)."
            )
        if variant not in CROSSLINK_VARIANTS:
            raise ValueError(f"CrosslinkNet variant must be one of {CROSSLINK_VARIANTS}, got {variant!r}.")
        if structure not in ("release", "table"):
            raise ValueError(f"CrosslinkNet structure must be 'release' or 'table', got {structure!r}.")
        if len(features) != 5 or len(decoder_features) != 5:
            raise ValueError(
                f"CrosslinkNet has five levels: features and decoder_features need 5 values each, got "
                f"{tuple(features)} and {tuple(decoder_features)}."
            )
        if not 1 <= attention_level <= 5:
            raise ValueError(f"attention_level must be in 1..5 (the paper uses 3), got {attention_level}.")
        self.in_channels = in_channels
        self.variant = variant
        self.structure = structure
        self.attention_level = attention_level
        release = structure == "release"

        if variant == "crosslink":
            branch_kernels = [VERTICAL_KERNELS, HORIZONTAL_KERNELS]
        elif variant == "square_crosslink":
            branch_kernels = [SQUARE_KERNELS, SQUARE_KERNELS]
        elif variant == "ver_crosslink":
            branch_kernels = [VERTICAL_KERNELS]
        elif variant == "hor_crosslink":
            branch_kernels = [HORIZONTAL_KERNELS]
        else:  # double2single: crosslink kernels, 3x3 and 1x1 in one branch
            branch_kernels = [((3, 1), (5, 3), (1, 3), (3, 5), (3, 3), (1, 1))]
        if release and variant in ("crosslink", "hor_crosslink"):
            # the release's horizontal branch: third path is a 1x1 conv + BN
            hor = ((1, 3), (1, 1), (3, 5))
            branch_kernels = [hor if k == HORIZONTAL_KERNELS else k for k in branch_kernels]
        n_branches = len(branch_kernels)
        share = release and n_branches == 2

        self.branches = nn.ModuleList([nn.ModuleList() for _ in range(n_branches)])
        c_in = in_channels
        for c_out in features:
            fusion = ConvBNAct(len(branch_kernels[0]) * c_out, c_out, (1, 1), act=False) if share else None
            residual = ConvBNAct(c_in, c_out, (1, 1), act=False) if share else None
            for branch, kernels in zip(self.branches, branch_kernels):
                branch.append(ConvResidualBlock(c_in, c_out, kernels, fusion, residual, point_path=release))
            c_in = c_out
        self.pool = nn.MaxPool2d(2, 2)
        self.bottleneck = ConvBNAct(n_branches * features[-1], features[-1], (1, 1))

        c_up = features[-1]
        decoder = []
        for level in reversed(range(5)):
            decoder.append(UpConvResidualBlock(n_branches * features[level] + c_up, decoder_features[level]))
            c_up = decoder_features[level]
        self.decoder = nn.ModuleList(decoder)
        self.head = nn.Conv2d(decoder_features[0], out_channels, 1)

        c_att = features[attention_level - 1]
        n_heads = 1 if (release or n_branches == 1) else 2
        self.attention = nn.ModuleList([SpatialAttentionHead(c_att) for _ in range(n_heads)])

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not torch.jit.is_tracing():  # user-facing checks; a traced graph keeps only the computation
            if x.ndim != 4 or x.shape[1] != self.in_channels:
                raise ValueError(
                    f"CrosslinkNet expects images (B, {self.in_channels}, H, W), got {list(x.shape)}; convert colour "
                    "images to grey or build the network with in_channels matching the images."
                )
            if min(x.shape[2:]) < 32:
                raise ValueError(
                    f"CrosslinkNet pools five times by 2: images need H, W >= 32, got {list(x.shape[2:])}; pad them "
                    "(monai.transforms.SpatialPadd) to at least 32 x 32."
                )
        skips: list[list[torch.Tensor]] = []  # skips[b][level - 1]: output of level 1..5 of branch b
        pooled: list[torch.Tensor] = []  # the pooled level-5 output of every branch
        for branch in self.branches:
            f = x
            outs: list[torch.Tensor] = []
            for block in branch:
                outs.append(block(f))
                f = self.pool(outs[-1])
            skips.append(outs)
            pooled.append(f)
        y = self.bottleneck(torch.cat(pooled, dim=1))
        for i, block in enumerate(self.decoder):
            skip = [outs[4 - i] for outs in skips]
            up = F.interpolate(y, size=skip[0].shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([skip[0], up] + skip[1:], dim=1))
        logits = self.head(y)
        if not self.training:
            return logits
        level_feats = [outs[self.attention_level - 1] for outs in skips]
        att = list(level_feats)
        for i, head in enumerate(self.attention):  # one head a branch, or one head shared by both
            for b in range(i, len(level_feats), len(self.attention)):
                att[b] = head(level_feats[b])
        return logits, att[0], att[-1]
