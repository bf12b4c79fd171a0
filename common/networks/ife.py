"""Instructive Feature Enhancement (IFE) and the networks it is plugged into.

Liu, Zhou, Chen, Liu, Shi, Ni, Fan, Yang, "Instructive Feature Enhancement for Dichotomous Medical Image
Segmentation", MICCAI 2023 (https://github.com/yezi-66/IFE).

IFE scores every channel of a feature map, either by the mean curvature of Eq. 1 (``curvature_score``) or by
the 2D information entropy of Eq. 2 / Algorithm 1 (``entropy_score``), keeps the top ratio ``r`` of the
channels of each sample (Eq. 3) and concatenates them to the raw features along the channel axis,
``F = [F_x, F'_x]``. The selection is a discrete, data-dependent gather: gradients flow to the kept channels,
not through the scores.

Both scores are written for 2D and 3D feature maps (the paper's stated next step is 3D):

* Eq. 1's 3x3 kernel ``K = [[a, b, a], [b, c, b], [a, b, a]]`` with ``a, b, c = -1/16, 5/16, -1`` is a
  weighted neighbour mean minus the centre, i.e. ``(3/16) h^2 * Laplacian`` to second order. Its 3D
  counterpart (``curvature_kernel(3)``) is the mean of ``K`` placed on the three orthogonal planes through
  the voxel: centre -1, the 6 face neighbours 5/24, the 12 edge neighbours -1/48, the 8 corners 0 (weights
  of the neighbours sum to 1 as in 2D; ``(1/8) h^2 * Laplacian`` to second order).
* The entropy uses 3x3 (2D) or 3x3x3 (3D) windows: the centre value ``i`` and the mean ``j`` of the other 8
  (26) values.

Both scores use "valid" windows only (no padding), as the authors' release does for the curvature: padding
would invent values at the border and give a constant channel a non-zero score. Feature maps must therefore
be at least 3 elements along every spatial axis.
"""

from collections.abc import Sequence

import timm
import torch
import torch.nn.functional as F
from monai.networks.nets.basic_unet import Down, TwoConv, UpCat
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP

__all__ = [
    "IFE",
    "IFEUNet",
    "IFEDeepLabV3Plus",
    "curvature_kernel",
    "mean_curvature",
    "curvature_score",
    "entropy_score",
    "descending_order",
    "IFE_UNET_RATIOS",
]

_MODES = ("none", "curvature", "entropy")

#: Best selection ratios of the U-Net per mode, (skip at 1/2, skip at 1/4), Table 2 of the paper.
IFE_UNET_RATIOS: dict[str, tuple[float, float]] = {
    "none": (0.0, 0.0),
    "curvature": (0.75, 0.50),
    "entropy": (0.50, 0.50),
}


def curvature_kernel(spatial_dims: int = 2) -> torch.Tensor:
    """The mean-curvature filter of Eq. 1 (Gong and Sbalzarini), shape ``(3,) * spatial_dims``.

    2D: ``[[-1/16, 5/16, -1/16], [5/16, -1, 5/16], [-1/16, 5/16, -1/16]]``. 3D: the mean of the 2D kernel
    laid on the three orthogonal planes through the centre (see the module docstring).
    """
    a, b, c = -1.0 / 16.0, 5.0 / 16.0, -1.0
    k2 = torch.tensor([[a, b, a], [b, c, b], [a, b, a]], dtype=torch.float64)
    if spatial_dims == 2:
        return k2
    if spatial_dims == 3:
        k3 = torch.zeros(3, 3, 3, dtype=torch.float64)
        k3[1, :, :] += k2
        k3[:, 1, :] += k2
        k3[:, :, 1] += k2
        return k3 / 3.0
    raise ValueError(f"curvature_kernel: spatial_dims must be 2 or 3, got {spatial_dims}.")


def _as_single_channel_batch(x: torch.Tensor, caller: str) -> torch.Tensor:
    """(B, C, *spatial) -> (B * C, 1, *spatial), checking the valid 3x3(x3) window fits."""
    if x.ndim not in (4, 5):
        raise ValueError(
            f"{caller}: expected a (B, C, H, W) or (B, C, D, H, W) feature map, got shape {list(x.shape)}."
        )
    if not torch.jit.is_tracing() and min(x.shape[2:]) < 3:
        raise ValueError(
            f"{caller}: every spatial size of the feature map must be >= 3 for the 3x3 windows, got "
            f"{list(x.shape[2:])}; use a larger input image or place IFE at a higher resolution."
        )
    return x.reshape([x.shape[0] * x.shape[1], 1] + list(x.shape[2:]))


def _depthwise_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Valid convolution of every channel of ``x`` (B, C, *spatial) with ``kernel``: one grouped convolution."""
    channels = x.shape[1]
    weight = kernel.to(dtype=x.dtype, device=x.device)[None, None]
    weight = weight.expand([channels, 1] + list(kernel.shape))
    if x.ndim == 4:
        return F.conv2d(x, weight, groups=channels)
    return F.conv3d(x, weight, groups=channels)


def mean_curvature(x: torch.Tensor) -> torch.Tensor:
    """Approximate mean curvature ``C = K * X`` of every channel (Eq. 1), one depthwise (grouped) convolution.

    Args:
        x: feature map ``(B, C, H, W)`` or ``(B, C, D, H, W)``.

    Returns:
        ``(B, C, H - 2, W - 2)`` (or ``(B, C, D - 2, H - 2, W - 2)``) curvature map, same dtype as ``x``.
    """
    _as_single_channel_batch(x, "mean_curvature")
    return _depthwise_conv(x, curvature_kernel(x.ndim - 2))


def curvature_score(x: torch.Tensor) -> torch.Tensor:
    """Curvature score of every channel: ``sum |C|`` of Eq. 1's map over the valid positions, ``(B, C)``.

    The map is computed in the dtype of ``x``; the sum is accumulated in float64.
    """
    return mean_curvature(x).abs().flatten(2).sum(-1, dtype=torch.float64)


def _pair_codes(x: torch.Tensor, bins: int) -> torch.Tensor:
    """``(B * C, N)`` int64 codes ``i * bins + j`` of the N valid windows of every channel (see ``entropy_score``)."""
    spatial_dims = x.ndim - 2
    flat = _as_single_channel_batch(x, "entropy_score").float()
    flat_rows = flat.reshape(flat.shape[0], -1)
    low = flat_rows.amin(dim=1)
    span = (flat_rows.amax(dim=1) - low).clamp_min(
        1.1754943508222875e-38
    )  # torch.finfo(torch.float32).tiny (TorchScript has no finfo)
    view = [-1, 1] + [1] * spatial_dims
    u = (flat - low.reshape(view)) / span.reshape(view)
    box = u
    for axis in range(2, 2 + spatial_dims):
        size = box.shape[axis] - 2
        box = box.narrow(axis, 0, size) + box.narrow(axis, 1, size) + box.narrow(axis, 2, size)
    centre = u
    for axis in range(2, 2 + spatial_dims):
        centre = centre.narrow(axis, 1, centre.shape[axis] - 2)
    mean = (box - centre) / (3**spatial_dims - 1)
    i = (centre * bins).floor_().clamp_(0, bins - 1)
    j = (mean * bins).floor_().clamp_(0, bins - 1)
    return (i * bins + j).reshape(flat.shape[0], -1).long()  # exact: bins**2 <= 2**24


def _log2_count_sums(codes: torch.Tensor, table: torch.Tensor, bins: int) -> torch.Tensor:
    """``sum over windows of table[n(code)]`` per row, ``n`` the count of the window's code in its row (int64):
    a dense int32 histogram of ``bins**2`` bins per row, read back at every window's code."""
    rows, num_codes = codes.shape[0], bins * bins
    offsets = torch.arange(rows, device=codes.device) * num_codes
    index = (codes + offsets[:, None]).flatten()
    histogram = torch.zeros(rows * num_codes, dtype=torch.int32, device=codes.device)
    histogram.scatter_add_(0, index, torch.ones_like(index, dtype=torch.int32))
    return table[histogram[index].long()].reshape(codes.shape).sum(dim=1)


def _log2_count_sums_by_sort(codes: torch.Tensor, table: torch.Tensor, bins: int) -> torch.Tensor:
    """The same integer sums as :func:`_log2_count_sums`, ``sum over codes of n table[n]``, from the runs of
    equal codes after one sort of all rows' codes (cheaper than ``bins**2`` bins per row for small maps)."""
    rows, num_codes = codes.shape[0], bins * bins
    offsets = torch.arange(rows, device=codes.device) * num_codes
    keys = (codes + offsets[:, None]).flatten().sort().values
    runs, counts = torch.unique_consecutive(keys, return_counts=True)
    sums = torch.zeros(rows, dtype=torch.int64, device=codes.device)
    return sums.index_add_(0, runs // num_codes, counts * table[counts])


def _log2_levels(windows: int, device: torch.device) -> torch.Tensor:
    """``round(2**30 log2 n)`` for ``n = 0..windows`` (``n = 0`` as 1), int64, computed on the CPU (the same
    integers on every device) and moved to ``device``."""
    levels = torch.arange(windows + 1, dtype=torch.float64)
    return (torch.log2(levels.clamp_min(1)) * 2**30).round().long().to(device)  # fixed point: 2**-30 bits


def _log2_table(windows: int, device: torch.device, tables: dict[int, torch.Tensor] | None) -> torch.Tensor:
    """:func:`_log2_levels` of a map of ``windows`` windows, kept in ``tables`` (the caller's cache, by map size:
    each :class:`IFE` keeps one, eager and scripted alike) and rebuilt only for another device. Without
    ``tables``, or while tracing (the map size is traced then, so the table is part of the trace), it is built
    for the call."""
    if tables is None or torch.jit.is_tracing():
        return _log2_levels(windows, device)
    table = tables.get(windows)
    if table is None or table.device != device:
        table = _log2_levels(windows, device)
        tables[windows] = table
    return table


def entropy_score(x: torch.Tensor, bins: int = 256, tables: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """2D information entropy of every channel (Eq. 2, Algorithm 1), in bits.

    Quantisation of float features (the paper defines Eq. 2 for 0..255 grey values only): each channel of
    each sample is min-max scaled to ``u`` in [0, 1] over its own spatial extent; the centre value
    ``i = min(floor(bins * u), bins - 1)`` and the neighbour mean ``j = min(floor(bins * m), bins - 1)``,
    where ``m`` is the mean of the 8 (2D) or 26 (3D) neighbours of ``u`` in the window. ``P_ij`` is the
    frequency of the pair ``(i, j)`` over the ``N`` valid windows and ``E = -sum P_ij log2 P_ij``.
    A constant channel has entropy 0; the score is invariant to a positive affine rescaling of a channel.

    Computation, identical on every device by construction: the codes ``i * bins + j`` come from float32
    element-wise operations in a fixed order (no reduction except min and max); their counts ``n`` are an int32
    histogram of ``bins**2`` bins per channel (``scatter_add_``, a few channels at a time), or, for maps of fewer
    than ``bins**2 / 64`` windows, the run lengths of the sorted codes (same integers); with
    ``E = log2 N - (1 / N) sum_windows log2 n(window)``, the ``log2 n`` are read from a table built on the CPU
    in units of ``2**-30`` bits (rounded) and summed as int64, so the sum does not depend on the order of
    the additions; ``E = (N L(N) - sum_windows L(n)) / (N 2**30)`` with ``L(n) = round(2**30 log2 n)`` is then
    one float64 division. The result is exact to about ``2**-30`` bits.

    Args:
        x: feature map ``(B, C, H, W)`` or ``(B, C, D, H, W)``, any float dtype (quantised in float32).
        bins: number of quantisation levels of ``i`` and of ``j`` (256 in the paper), 1..4096.
        tables: a dict the caller keeps between calls, where the ``L(n)`` table of each map size is kept
            (``IFE`` passes its own); without it the table is built for the call.

    Returns:
        ``(B, C)`` entropies in float64.
    """
    if not 1 <= bins <= 4096:
        raise ValueError(f"entropy_score: bins must be an integer in 1..4096 (256 in the paper), got {bins}.")
    codes = _pair_codes(x, bins)
    windows = codes.shape[1]
    if not torch.jit.is_tracing() and windows > 2**28:
        raise ValueError(
            f"entropy_score: {windows} windows per channel exceed the 2**28 that the int64 fixed-point sums hold; "
            "place IFE at a lower resolution or score the channels of smaller crops."
        )
    table = _log2_table(windows, codes.device, tables)
    if torch.jit.is_tracing():
        sums = _log2_count_sums(codes, table, bins)  # one pass: a loop over chunks would freeze the batch size
    # the literals below are TorchScript's (it reads no module constants): dense histograms once a channel has at
    # least bins**2 / 64 windows, a sort below (the faster on this CPU, ``python -m benchmarks.ife``; both give the
    # same integers); 2**21 bytes of bins**2 int32 histograms counted at once; 2**30, the fixed-point scale
    elif windows * 64 < bins * bins:
        sums = _log2_count_sums_by_sort(codes, table, bins)
    else:
        step = max(1, (1 << 21) // (4 * bins * bins))
        sums = torch.cat([_log2_count_sums(part, table, bins) for part in codes.split(step)])
    total = table[-1] * windows  # N L(N): a constant channel (n = N everywhere) scores exactly 0
    entropy = (total - sums).double() / (windows * 2.0**30)
    return entropy.reshape(x.shape[0], x.shape[1])


def descending_order(scores: torch.Tensor) -> torch.Tensor:
    """Channel indices of every row of ``scores`` (B, C) by decreasing score, ties to the lower index.

    The same as ``scores.sort(dim=1, descending=True, stable=True).indices``, written as ranks from pairwise
    comparisons (``B x C x C`` booleans) and one scatter, which ONNX exports (no ``aten::sort``).
    """
    channels = torch.arange(scores.shape[1], device=scores.device)
    before = (scores[:, None, :] > scores[:, :, None]) | (
        (scores[:, None, :] == scores[:, :, None]) & (channels[None, :] < channels[:, None])
    )
    rank = before.sum(dim=2)  # rank[b, c]: how many channels go before channel c
    return torch.zeros_like(rank).scatter_(1, rank, channels.expand_as(rank).contiguous())


class IFE(nn.Module):
    """Instructive feature enhancement, Eq. 3: ``F = [F_x, max{S(F_x), r}]``.

    The ``int(r * C)`` channels with the highest score ``S`` (curvature, Eq. 1, or 2D entropy, Eq. 2) are
    chosen independently for each sample, ordered by decreasing score (a stable sort: ties go to the lower
    channel index, so the result is deterministic; the entropy scores are exact integers divided once, see
    :func:`entropy_score`), and concatenated after the ``C`` raw channels. The next layer takes
    ``out_channels = C + int(r * C)`` channels. ``mode="none"`` or ``ratio=0`` returns the input unchanged.

    Args:
        spatial_dims: 2 or 3.
        in_channels: number of channels ``C`` of the feature map.
        mode: ``"curvature"``, ``"entropy"`` or ``"none"``.
        ratio: selected proportion ``r`` in [0, 1].
        bins: quantisation levels of the entropy score (256 in the paper).
    """

    #: the entropy's ``L(n)`` table of each map size (number of windows) this layer has scored, on the device of
    #: its last use: built once a size, not every forward (an attribute, not a buffer: state_dict unchanged)
    log2_tables: dict[int, torch.Tensor]

    def __init__(
        self, spatial_dims: int, in_channels: int, mode: str = "curvature", ratio: float = 0.5, bins: int = 256
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"IFE: spatial_dims must be 2 or 3, got {spatial_dims}.")
        if mode not in _MODES:
            raise ValueError(f"IFE: mode must be one of {_MODES}, got {mode!r}.")
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"IFE: ratio must be in [0, 1] (the proportion of channels kept), got {ratio}.")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.mode = mode
        self.ratio = ratio
        self.bins = bins
        self.num_selected = 0 if mode == "none" else int(ratio * in_channels)
        self.out_channels = in_channels + self.num_selected
        self.log2_tables = {}

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` channel scores of the configured mode."""
        if self.mode == "curvature":
            return curvature_score(x)
        return entropy_score(x, self.bins, self.log2_tables)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and (x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels):
            raise ValueError(
                f"IFE: expected a feature map with {self.in_channels} channels and {self.spatial_dims} spatial "
                f"dims, got shape {list(x.shape)}; set in_channels/spatial_dims to match the layer it follows."
            )
        if self.num_selected == 0:
            return x
        order = descending_order(self.score(x.detach()))  # detached: no graph through the scores
        index = order[:, : self.num_selected].reshape([x.shape[0], self.num_selected] + [1] * self.spatial_dims)
        selected = torch.gather(x, 1, index.expand([-1, -1] + list(x.shape[2:])))
        return torch.cat([x, selected], dim=1)

    def extra_repr(self) -> str:
        return (
            f"mode={self.mode!r}, ratio={self.ratio}, in_channels={self.in_channels}, out_channels={self.out_channels}"
        )


class _IFENetwork(nn.Module):
    """What the IFE networks share: ``mode`` checked and kept, and the ``ratios`` of their two IFE places, (0, 0)
    for ``mode="none"`` and ``default`` when ``None``, checked to be two."""

    def __init__(self, mode: str, ratios: Sequence[float] | None, default: tuple[float, float]) -> None:
        super().__init__()
        name = type(self).__name__
        if mode not in _MODES:
            raise ValueError(f"{name}: mode must be one of {_MODES}, got {mode!r}.")
        if mode != "none":
            ratios = default if ratios is None else tuple(float(r) for r in ratios)
            if len(ratios) != 2:
                raise ValueError(f"{name}: ratios must be two proportions, got {ratios}.")
        self.mode = mode
        self.ratios = (0.0, 0.0) if mode == "none" else ratios


class IFEUNet(_IFENetwork):
    """U-Net (Ronneberger et al. 2015) with IFE on its middle skip connections (Fig. 4 of the IFE paper).

    Five levels of two 3x3 conv + BN + ReLU (64, 128, 256, 512, 1024 channels), max-pool down, 2x2 transposed
    conv up, as in the authors' release; built from MONAI's ``BasicUNet`` blocks. IFE enhances the skips at 1/2
    and 1/4 resolution with ``ratios = (r_1/2, r_1/4)``; the default ratios are the best of Table 2:
    curvature (0.75, 0.50), entropy (0.50, 0.50). The decoder convs that take these skips grow accordingly.

    Args:
        spatial_dims: 2 (the paper) or 3.
        in_channels: image channels.
        out_channels: logit channels (1 for dichotomous segmentation with a sigmoid).
        mode: ``"none"`` (plain U-Net), ``"curvature"`` or ``"entropy"``.
        ratios: IFE ratios for the skips at 1/2 and 1/4; ``None`` takes Table 2's best for ``mode``.
        features: channels of the five levels.
        bins: quantisation levels of the entropy score.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        mode: str = "none",
        ratios: Sequence[float] | None = None,
        features: Sequence[int] = (64, 128, 256, 512, 1024),
        bins: int = 256,
    ) -> None:
        if len(features) != 5:
            raise ValueError(f"IFEUNet: features must list the channels of 5 levels, got {features}.")
        super().__init__(mode, ratios, IFE_UNET_RATIOS.get(mode, (0.0, 0.0)))
        f = tuple(features)
        act, norm, bias = ("relu", {"inplace": True}), "batch", True
        self.conv_0 = TwoConv(spatial_dims, in_channels, f[0], act, norm, bias)
        self.down_1 = Down(spatial_dims, f[0], f[1], act, norm, bias)
        self.down_2 = Down(spatial_dims, f[1], f[2], act, norm, bias)
        self.down_3 = Down(spatial_dims, f[2], f[3], act, norm, bias)
        self.down_4 = Down(spatial_dims, f[3], f[4], act, norm, bias)
        self.ife_1 = IFE(spatial_dims, f[1], mode, self.ratios[0], bins)
        self.ife_2 = IFE(spatial_dims, f[2], mode, self.ratios[1], bins)
        self.upcat_4 = UpCat(spatial_dims, f[4], f[3], f[3], act, norm, bias)
        self.upcat_3 = UpCat(spatial_dims, f[3], self.ife_2.out_channels, f[2], act, norm, bias)
        self.upcat_2 = UpCat(spatial_dims, f[2], self.ife_1.out_channels, f[1], act, norm, bias)
        self.upcat_1 = UpCat(spatial_dims, f[1], f[0], f[0], act, norm, bias)
        self.final_conv = nn.Conv2d(f[0], out_channels, 1) if spatial_dims == 2 else nn.Conv3d(f[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.conv_0(x)
        x1 = self.down_1(x0)
        x2 = self.down_2(x1)
        x3 = self.down_3(x2)
        x4 = self.down_4(x3)
        u3 = self.upcat_4(x4, x3)
        u2 = self.upcat_3(u3, self.ife_2(x2))
        u1 = self.upcat_2(u2, self.ife_1(x1))
        u0 = self.upcat_1(u1, x0)
        return self.final_conv(u0)


class IFEDeepLabV3Plus(_IFENetwork):
    """DeepLabV3+ (Chen et al., ECCV 2018) with IFE on its low-level features (Fig. 4 of the IFE paper).

    Encoder: a timm ResNet (``backbone``, ResNet-101 as in the release, never pretrained here unless
    ``pretrained_path`` names a local timm state dict) at output stride 16; ASPP (torchvision, rates 6, 12,
    18, 256 channels). Decoder: 1x1 conv + BN + ReLU reduces the stride-4 low-level features to 48 channels,
    IFE enhances them with ``ratios[0]`` (48 -> 48 + int(48 r)); the ASPP output, bilinearly upsampled,
    is concatenated; two 3x3 conv + BN + ReLU (dropout 0.5, 0.1) and a 1x1 conv give the logits, upsampled
    bilinearly to the input size. ``ratios[1]`` (0 by default, the paper's text) also enhances the ASPP
    output, as the authors' release does with 0.5.

    Args:
        spatial_dims: must be 2.
        in_channels: image channels.
        out_channels: logit channels.
        mode: ``"none"``, ``"curvature"`` or ``"entropy"``.
        ratios: ``(low-level, ASPP output)`` IFE ratios; ``None`` gives (0.5, 0.0).
        backbone: timm ResNet name with ``features_only`` support.
        pretrained_path: optional local file with the backbone's timm weights (nothing is downloaded).
        bins: quantisation levels of the entropy score.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        mode: str = "none",
        ratios: Sequence[float] | None = None,
        backbone: str = "resnet101",
        pretrained_path: str | None = None,
        bins: int = 256,
    ) -> None:
        if spatial_dims != 2:
            raise ValueError(
                f"IFEDeepLabV3Plus: only spatial_dims=2 is supported (2D ResNet backbone), got {spatial_dims}."
            )
        super().__init__(mode, ratios, (0.5, 0.0))
        kwargs = {"pretrained_cfg_overlay": {"file": pretrained_path}} if pretrained_path else {}
        self.backbone = timm.create_model(
            backbone,
            pretrained=bool(pretrained_path),
            features_only=True,
            out_indices=(1, 4),
            output_stride=16,
            in_chans=in_channels,
            **kwargs,
        )
        low_channels, high_channels = self.backbone.feature_info.channels()
        self.aspp = ASPP(high_channels, [6, 12, 18], 256)
        self.reduce = nn.Sequential(nn.Conv2d(low_channels, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU())
        self.ife_low = IFE(2, 48, mode, self.ratios[0], bins)
        self.ife_aspp = IFE(2, 256, mode, self.ratios[1], bins)
        decoder_in = self.ife_low.out_channels + self.ife_aspp.out_channels
        self.decoder = nn.Sequential(
            nn.Conv2d(decoder_in, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Conv2d(256, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Conv2d(256, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.backbone(x)
        high = self.ife_aspp(self.aspp(high))
        low = self.ife_low(self.reduce(low))
        high = F.interpolate(high, size=low.shape[2:], mode="bilinear", align_corners=True)
        logits = self.decoder(torch.cat([high, low], dim=1))
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=True)
