"""EAA-Net: Edge Attention autoencoder Network (2.5D).

Ma, Li, Tang and Guo, "EAA-Net: Rethinking the autoencoder architecture with intra-class features for
medical image segmentation".

Three branches (Sec. 3, Fig. 3):

* the basic segmentation sub-network segments the centre slice ``x_i`` (Sec. 3.1, Eq. 1-2);
* the reconstruction sub-network reconstructs ``x_i`` from its neighbours ``x_{i-1}`` and ``x_{i+1}``
  (Sec. 3.2): same shape as the basic branch, fewer channels, no skip connections;
* the complete segmentation sub-network fuses the two at every scale with the
  :class:`I2Fusion` module (Sec. 3.3-3.4, Eq. 3-6).

The network takes one input with ``3 * M`` channels for ``M`` modalities, ordered modality by modality
as ``(m0[i-1], m0[i], m0[i+1], m1[i-1], m1[i], m1[i+1], ...)`` - the layout written by
:class:`common.transforms.eaanet.AdjacentSlicesd` and fed by
:class:`common.inferers.adjacent_slice.AdjacentSliceInferer`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.blocks import ChannelSELayer, SimpleASPP
from monai.networks.layers.factories import Act, Conv, Norm, Pool

__all__ = [
    "PreActConv",
    "EncoBlock",
    "DecoBlock",
    "I2Fusion",
    "LightUNetBackbone",
    "SegNetBackbone",
    "DeepLabV3PlusBackbone",
    "ReconstructionNetwork",
    "CompleteSegmentationNetwork",
    "EAANet",
]

_INTERP = {1: "linear", 2: "bilinear", 3: "trilinear"}


class PreActConv(nn.Sequential):
    """``Conv * act(BN(x))``: batch normalization, activation, then a 3x3 convolution (EAA-Net Eq. 1).

    The activation works in place on the batch norm's output (a fresh tensor that its backward does not
    need), which saves one feature-map allocation and copy per unit.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1
    ) -> None:
        super().__init__(
            Norm[Norm.BATCH, spatial_dims](in_channels),
            Act[Act.RELU](inplace=True),
            Conv[Conv.CONV, spatial_dims](
                in_channels, out_channels, kernel_size, padding=dilation * (kernel_size - 1) // 2, dilation=dilation
            ),
        )


def _se(spatial_dims: int, channels: int, se_reduction: int) -> nn.Module:
    """SE channel attention (Hu et al., EAA-Net ref. [58]) with at least one hidden unit."""
    return ChannelSELayer(spatial_dims, channels, r=min(se_reduction, channels), acti_type_1="relu")


class EncoBlock(nn.Sequential):
    """Enco block of the basic segmentation sub-network (EAA-Net Sec. 3.1, Eq. 1).

    Optional 2x max-pool down-sampling, two ``BN -> act -> 3x3 conv`` units and SE channel attention
    (``se_reduction=0`` drops the SE module, as in the reconstruction sub-network).
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, downsample: bool, se_reduction: int = 16
    ) -> None:
        layers: list[nn.Module] = [Pool[Pool.MAX, spatial_dims](2)] if downsample else []
        layers += [
            PreActConv(spatial_dims, in_channels, out_channels),
            PreActConv(spatial_dims, out_channels, out_channels),
        ]
        if se_reduction > 0:
            layers.append(_se(spatial_dims, out_channels, se_reduction))
        super().__init__(*layers)


class DecoBlock(nn.Module):
    """Deco block (EAA-Net Sec. 3.1, Eq. 2): ``Conv * act(BN([TC(x), skip]))``.

    The stride-2 transposed convolution ``TC`` up-samples ``x`` to ``out_channels``; the skip (when
    ``skip_channels > 0``) is concatenated, then one ``BN -> act -> 3x3 conv`` unit (Eq. 2) and SE
    channel attention.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        se_reduction: int = 16,
    ) -> None:
        super().__init__()
        self.up = Conv[Conv.CONVTRANS, spatial_dims](in_channels, out_channels, kernel_size=2, stride=2)
        layers: list[nn.Module] = [PreActConv(spatial_dims, out_channels + skip_channels, out_channels)]
        if se_reduction > 0:
            layers.append(_se(spatial_dims, out_channels, se_reduction))
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


class I2Fusion(nn.Module):
    """Intra-class and inter-class (I^2) fusion module (EAA-Net Sec. 3.4, Eq. 5-6).

    ``I2(x_b, x_r) = x_b + sigmoid(W(ReLU(BN(x_b * x_r))))`` with ``W`` a 1x1 convolution. The
    reconstruction features ``x_r`` are first matched to the channels of ``x_b`` by a 1x1 convolution
    (Sec. 3.4, last paragraph) when ``reconstruction_channels != channels``.
    """

    def __init__(self, spatial_dims: int, channels: int, reconstruction_channels: int) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.match: nn.Module = (
            nn.Identity() if reconstruction_channels == channels else conv(reconstruction_channels, channels, 1)
        )
        self.attention = nn.Sequential(
            Norm[Norm.BATCH, spatial_dims](channels),
            Act[Act.RELU](inplace=True),  # on the batch norm's output, as in PreActConv
            conv(channels, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x_b: torch.Tensor, x_r: torch.Tensor) -> torch.Tensor:
        return x_b + self.attention(x_b * self.match(x_r))


class _Backbone(nn.Module):
    """Basic segmentation backbones return ``[bottleneck, decoder features coarse to fine]``.

    ``feature_channels`` and ``feature_strides`` (down-sampling factor of each returned feature map
    with respect to the input), tuples of ints set by each backbone, tell the complete segmentation sub-network
    where to fuse.
    """


class LightUNetBackbone(_Backbone):
    """Light-weight U-Net of the basic segmentation sub-network (EAA-Net Sec. 3.1, Eq. 1-2).

    Enco blocks (max-pool, two ``BN -> act -> conv``, SE), a Code block at the bottom and Deco blocks
    (stride-2 transposed conv, concatenated skip, ``BN -> act -> conv``, SE).
    """

    def __init__(self, spatial_dims: int, in_channels: int, channels: Sequence[int], se_reduction: int = 16) -> None:
        super().__init__()
        channels = tuple(channels)
        self.encoders = nn.ModuleList(
            EncoBlock(spatial_dims, c_in, c_out, downsample=k > 0, se_reduction=se_reduction)
            for k, (c_in, c_out) in enumerate(zip((in_channels,) + channels[:-2], channels[:-1]))
        )
        self.code = EncoBlock(spatial_dims, channels[-2], channels[-1], downsample=True, se_reduction=se_reduction)
        self.decoders = nn.ModuleList(
            DecoBlock(spatial_dims, c_in, c_out, c_out, se_reduction=se_reduction)
            for c_in, c_out in zip(channels[:0:-1], channels[-2::-1])
        )
        self.feature_channels = channels[::-1]
        self.feature_strides = tuple(2**k for k in range(len(channels)))[::-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        x = self.code(x)
        features = [x]
        for i, decoder in enumerate(self.decoders):
            x = decoder(x, skips[-1 - i])
            features.append(x)
        return features


class SegNetBackbone(_Backbone):
    """SegNet-style basic segmentation sub-network (EAA-Net Tables 2-3, ref. [55]).

    Encoder of ``BN -> act -> conv`` pairs with 2x max-pooling that keeps the pooling indices; each
    decoder step reduces the channels with a conv unit, max-unpools with the matching indices (no skip
    concatenation) and applies another conv unit.
    """

    def __init__(self, spatial_dims: int, in_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        channels = tuple(channels)
        self.encoders = nn.ModuleList(
            EncoBlock(spatial_dims, c_in, c_out, downsample=False, se_reduction=0)
            for c_in, c_out in zip((in_channels,) + channels[:-1], channels)
        )
        self.pool = Pool[Pool.MAX, spatial_dims](2, return_indices=True)
        self.reductions = nn.ModuleList(
            PreActConv(spatial_dims, c_in, c_out) for c_in, c_out in zip(channels[:0:-1], channels[-2::-1])
        )
        self.decoders = nn.ModuleList(PreActConv(spatial_dims, c, c) for c in channels[-2::-1])
        self.feature_channels = channels[::-1]
        self.feature_strides = tuple(2**k for k in range(len(channels)))[::-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        pooled: list[tuple[torch.Tensor, torch.Tensor]] = []
        for k, encoder in enumerate(self.encoders):
            if k > 0:
                fine = x
                x, index = self.pool(x)
                pooled.append((fine, index))
            x = encoder(x)
        features = [x]
        for reduction, decoder, (fine, index) in zip(self.reductions, self.decoders, pooled[::-1]):
            x = decoder(self.max_unpool(reduction(x), index, fine))
            features.append(x)
        return features

    @staticmethod
    def max_unpool(x: torch.Tensor, index: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        """Max-unpooling to the shape of ``fine`` by scattering ``x`` to the pooling ``index``.

        Same result as ``torch.nn.MaxUnpool2d/3d``, written with ``scatter`` so that
        ``torch.jit.trace`` records it (``max_unpool`` does not trace).
        """
        out = torch.zeros_like(fine).flatten(2)
        return out.scatter(2, index.flatten(2), x.flatten(2)).view_as(fine)


class DeepLabV3PlusBackbone(_Backbone):
    """DeepLabV3+-style basic segmentation sub-network (EAA-Net Tables 2-3, ref. [15]).

    An encoder of Enco blocks to output stride 16, atrous spatial pyramid pooling (MONAI
    :class:`~monai.networks.blocks.SimpleASPP`), and the DeepLabV3+ decoder: the ASPP output is
    up-sampled 4x and concatenated with the 1x1-reduced low-level features at stride 4, then two
    3x3 conv units. Returns ``[ASPP features (stride 16), decoder features (stride 4)]``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        channels: Sequence[int],
        aspp_channels: int = 64,
        low_level_channels: int = 48,
        se_reduction: int = 16,
    ) -> None:
        super().__init__()
        if len(channels) != 5:
            raise ValueError(f"the DeepLabV3+ backbone needs 5 encoder widths (strides 1-16), got channels={channels}.")
        aspp_branches = 4
        if aspp_channels % aspp_branches:
            raise ValueError(
                f"aspp_channels must be a multiple of {aspp_branches} (ASPP branches), got {aspp_channels}."
            )
        channels = tuple(channels)
        self.encoders = nn.ModuleList(
            EncoBlock(spatial_dims, c_in, c_out, downsample=k > 0, se_reduction=se_reduction)
            for k, (c_in, c_out) in enumerate(zip((in_channels,) + channels[:-1], channels))
        )
        self.aspp = SimpleASPP(
            spatial_dims,
            channels[-1],
            aspp_channels // aspp_branches,
            kernel_sizes=(1, 3, 3, 3),
            dilations=(1, 6, 12, 18),
            norm_type="BATCH",
            acti_type="RELU",
        )
        self.up = nn.Upsample(scale_factor=4, mode=_INTERP[spatial_dims], align_corners=False)
        self.low_level = Conv[Conv.CONV, spatial_dims](channels[2], low_level_channels, 1)
        self.decoder = nn.Sequential(
            PreActConv(spatial_dims, aspp_channels + low_level_channels, aspp_channels),
            PreActConv(spatial_dims, aspp_channels, aspp_channels),
        )
        self.feature_channels = (aspp_channels, aspp_channels)
        self.feature_strides = (16, 4)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        low_level = x
        for k, encoder in enumerate(self.encoders):
            x = encoder(x)
            if k == 2:
                low_level = x
        aspp = self.aspp(x)
        decoded = self.decoder(torch.cat([self.up(aspp), self.low_level(low_level)], dim=1))
        return [aspp, decoded]


class ReconstructionNetwork(nn.Module):
    """Reconstruction sub-network (EAA-Net Sec. 3.2).

    Same encoder-decoder shape as the light U-Net (max-pool + two ``BN -> act -> conv``; stride-2
    transposed conv + one conv unit) with fewer channels and no skip connections. Input: the
    neighbour slices ``x_{i-1}, x_{i+1}``; output: the centre slice ``x_i`` (linear head).
    Returns ``(features, reconstruction)`` where ``features`` is ``[bottleneck, decoder coarse to
    fine]`` at strides ``2^(L-1), ..., 1``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        channels = tuple(channels)
        self.encoders = nn.ModuleList(
            EncoBlock(spatial_dims, c_in, c_out, downsample=k > 0, se_reduction=0)
            for k, (c_in, c_out) in enumerate(zip((in_channels,) + channels[:-1], channels))
        )
        self.decoders = nn.ModuleList(
            DecoBlock(spatial_dims, c_in, 0, c_out, se_reduction=0)
            for c_in, c_out in zip(channels[:0:-1], channels[-2::-1])
        )
        self.head = Conv[Conv.CONV, spatial_dims](channels[0], out_channels, 1)
        self.feature_channels = channels[::-1]
        self.feature_strides = tuple(2**k for k in range(len(channels)))[::-1]

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        for encoder in self.encoders:
            x = encoder(x)
        features = [x]
        for decoder in self.decoders:
            x = decoder(x)
            features.append(x)
        return features, self.head(x)


class CompleteSegmentationNetwork(nn.Module):
    """Complete segmentation sub-network (EAA-Net Sec. 3.3, Eq. 3-4).

    ``x_0 = I2(x^BE_l, x^RE_l)`` at the bottleneck, then at every finer scale of the basic branch
    ``x_k = Conv * act(BN(TC(x_{k-1}) + I2(x^BD_k, x^RD_k)))``, with ``TC`` a transposed convolution
    whose kernel and stride are the scale ratio (2 for U-Net and SegNet).
    """

    def __init__(
        self,
        spatial_dims: int,
        feature_channels: Sequence[int],
        feature_strides: Sequence[int],
        reconstruction_channels: Sequence[int],
    ) -> None:
        super().__init__()
        self.fusions = nn.ModuleList(
            I2Fusion(spatial_dims, c, r) for c, r in zip(feature_channels, reconstruction_channels)
        )
        self.ups = nn.ModuleList(
            Conv[Conv.CONVTRANS, spatial_dims](c_in, c_out, kernel_size=s_in // s_out, stride=s_in // s_out)
            for c_in, c_out, s_in, s_out in zip(
                feature_channels[:-1], feature_channels[1:], feature_strides[:-1], feature_strides[1:]
            )
        )
        self.convs = nn.ModuleList(PreActConv(spatial_dims, c, c) for c in feature_channels[1:])

    def forward(self, basic: list[torch.Tensor], reconstruction: list[torch.Tensor]) -> torch.Tensor:
        fused = [fusion(basic[i], reconstruction[i]) for i, fusion in enumerate(self.fusions)]
        x = fused[0]
        for i, (up, conv) in enumerate(zip(self.ups, self.convs)):
            x = conv(up(x) + fused[i + 1])
        return x


class EAANet(nn.Module):
    """EAA-Net (Ma et al., Sec. 3, Fig. 3) for 2.5D segmentation of a slice with its two neighbours.

    Args:
        spatial_dims: spatial dimensions of a slice (2 in the paper).
        in_channels: ``3 * M`` input channels for ``M`` modalities, ordered per modality as
            ``(i-1, i, i+1)`` (4 BraTS modalities: 12; CT: 3).
        out_channels: segmentation classes (2: background and whole tumour / lesion).
        backbone: basic segmentation sub-network: ``"unet"`` (the paper's light U-Net with SE, default),
            ``"segnet"`` or ``"deeplabv3plus"`` (Tables 2-3).
        channels: encoder widths of the basic branch, finest first (``"deeplabv3plus"`` needs 5).
        reconstruction_channels: encoder widths of the reconstruction branch (Sec. 3.2: reduced).
            Defaults to a quarter of ``channels`` (2.34 M parameters in all with the defaults,
            Table 2: 2.38 M). Its length sets the number of scales of that branch and
            must reach the coarsest scale of the basic branch.
        se_reduction: reduction ratio of the SE modules (Hu et al.: 16).
        aspp_channels: ASPP/decoder width of the ``"deeplabv3plus"`` backbone.

    ``eval()`` mode returns the complete segmentation logits ``(B, out_channels, *spatial)``.
    ``train()`` mode returns ``(complete, basic, reconstruction, centre)``: both segmentation logits,
    the reconstruction of the centre slices ``x_i`` from ``x_{i-1}, x_{i+1}`` ``(B, M, *spatial)`` and
    the centre slices themselves (the reconstruction target, Eq. 8-9), consumed by
    :class:`common.losses.eaanet.EAANetLoss`. Spatial sizes must be divisible by the coarsest stride
    (16 with the defaults).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 12,
        out_channels: int = 2,
        backbone: str = "unet",
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        reconstruction_channels: Sequence[int] | None = None,
        se_reduction: int = 16,
        aspp_channels: int = 128,
    ) -> None:
        super().__init__()
        if in_channels % 3 != 0 or in_channels < 3:
            raise ValueError(
                f"EAANet in_channels must be 3 x the number of modalities (slices i-1, i, i+1 of each), "
                f"got in_channels={in_channels}; use 12 for the 4 BraTS modalities, 3 for CT."
            )
        modalities = in_channels // 3
        channels = tuple(channels)
        if reconstruction_channels is None:
            reconstruction_channels = tuple(max(c // 4, 1) for c in channels)
        reconstruction_channels = tuple(reconstruction_channels)
        if backbone == "unet":
            self.basic: _Backbone = LightUNetBackbone(spatial_dims, modalities, channels, se_reduction)
        elif backbone == "segnet":
            self.basic = SegNetBackbone(spatial_dims, modalities, channels)
        elif backbone == "deeplabv3plus":
            self.basic = DeepLabV3PlusBackbone(
                spatial_dims, modalities, channels, aspp_channels=aspp_channels, se_reduction=se_reduction
            )
        else:
            raise ValueError(f"EAANet backbone must be 'unet', 'segnet' or 'deeplabv3plus', got {backbone!r}.")
        self.reconstruction = ReconstructionNetwork(spatial_dims, 2 * modalities, modalities, reconstruction_channels)
        strides = self.basic.feature_strides
        recon_strides = self.reconstruction.feature_strides
        missing = [s for s in strides if s not in recon_strides]
        if missing:
            raise ValueError(
                f"reconstruction_channels={reconstruction_channels} gives strides {recon_strides} but the "
                f"{backbone!r} basic branch fuses at strides {strides}; give reconstruction_channels "
                f"{len(strides) if backbone != 'deeplabv3plus' else 5} widths."
            )
        self._recon_index = [recon_strides.index(s) for s in strides]
        self.complete = CompleteSegmentationNetwork(
            spatial_dims,
            self.basic.feature_channels,
            strides,
            [self.reconstruction.feature_channels[k] for k in self._recon_index],
        )
        conv = Conv[Conv.CONV, spatial_dims]
        self.basic_head = conv(self.basic.feature_channels[-1], out_channels, 1)
        self.complete_head = conv(self.basic.feature_channels[-1], out_channels, 1)
        self.final_up: nn.Module = (
            nn.Upsample(scale_factor=strides[-1], mode=_INTERP[spatial_dims], align_corners=False)
            if strides[-1] > 1
            else nn.Identity()
        )
        self.in_channels = in_channels
        self.divisible_by = max(strides[0], recon_strides[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if not torch.jit.is_tracing():
            if x.shape[1] != self.in_channels:
                raise ValueError(
                    f"EAANet expects {self.in_channels} channels (slices i-1, i, i+1 of each modality), "
                    f"got input of shape {list(x.shape)}."
                )
            if any(size % self.divisible_by for size in x.shape[2:]):
                raise ValueError(
                    f"EAANet needs spatial sizes divisible by {self.divisible_by}, got input of shape "
                    f"{list(x.shape)}; pad (DivisiblePadd, or AdjacentSliceInferer(divisible_by={self.divisible_by}))."
                )
        centre = x[:, 1::3]
        neighbours = torch.cat([x[:, 0::3], x[:, 2::3]], dim=1)
        basic = self.basic(centre)
        recon_features, reconstruction = self.reconstruction(neighbours)
        complete = self.complete(basic, [recon_features[k] for k in self._recon_index])
        complete_logits = self.final_up(self.complete_head(complete))
        if not self.training:
            return complete_logits
        basic_logits = self.final_up(self.basic_head(basic[-1]))
        return complete_logits, basic_logits, reconstruction, centre
