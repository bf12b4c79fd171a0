"""ConResNet: inter-slice context residual learning for 3D medical image segmentation.

Zhang, Xie, Wang, Xia, "Inter-slice Context Residual Learning for 3D Medical Image Segmentation",
IEEE Transactions on Medical Imaging, 2021 (authors' code: https://git.io/ConResNet).

The network has a shared encoder (Section III-A), a segmentation decoder and a context residual
(ConRes) decoder (Section III-B) bridged by three context residual modules (Section III-C, Eq. 3-6),
and deep supervision heads on the ConRes decoder (Section III-D).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Dropout
from torch import nn

__all__ = [
    "ConResNet",
    "ConResNetEnsemble",
    "ContextResidualModule",
    "PreActivationResidualBlock",
    "WeightStandardizedConv",
    "inter_slice_residual",
    "resolve_residual_axis",
]

#: Spatial axis of each view in MONAI's channel-first RAS layout (C, X, Y, Z): axial slices are
#: stacked along Z, coronal along Y, sagittal along X (Section V-C of the paper).
RESIDUAL_VIEWS = {"sagittal": 0, "coronal": 1, "axial": 2}


def resolve_residual_axis(residual_axis: int | str, spatial_dims: int = 3) -> int:
    """Spatial axis index (0-based, excluding batch and channel) along which residuals are taken.

    Args:
        residual_axis: a view name (``"axial"``, ``"coronal"``, ``"sagittal"``, for volumes in MONAI's
            channel-first RAS layout, i.e. after ``Orientationd(axcodes="RAS")``) or a spatial axis
            index in ``[-spatial_dims, spatial_dims)``.
        spatial_dims: number of spatial dimensions.
    """
    if isinstance(residual_axis, str):
        if residual_axis.lower() not in RESIDUAL_VIEWS:
            raise ValueError(
                f"residual_axis '{residual_axis}' is not a view name; use one of {sorted(RESIDUAL_VIEWS)} "
                f"or a spatial axis index in [0, {spatial_dims})."
            )
        axis = RESIDUAL_VIEWS[residual_axis.lower()]
    else:
        axis = int(residual_axis)
    if not -spatial_dims <= axis < spatial_dims:
        raise ValueError(
            f"residual_axis {residual_axis} is out of range for spatial_dims={spatial_dims}; "
            f"use a spatial axis index in [0, {spatial_dims}) or a view name {sorted(RESIDUAL_VIEWS)}."
        )
    return axis % spatial_dims


def inter_slice_residual(x: torch.Tensor, spatial_axis: int) -> torch.Tensor:
    """Inter-slice context residual ``|x_{s+1} - x_s|`` along one spatial axis, Eq. 1 and Eq. 4.

    The first slice has no predecessor and is set to zero, so the output has the shape of ``x``.
    Without autograd the result is written into one new tensor (no intermediate tensors), which matters
    on large volumes, where every fresh tensor costs the kernel's page faults.

    Args:
        x: tensor of shape (B, C, *spatial).
        spatial_axis: spatial axis index (0 is the first axis after the channel axis).
    """
    dim = spatial_axis + 2
    n = x.shape[dim]
    if torch.jit.is_tracing() or (torch.is_grad_enabled() and x.requires_grad):
        # autograd does not differentiate through ``out=``: the plain form, F.pad adds the zero slice
        pad = [0, 0] * (x.dim() - 1 - dim) + [1, 0]
        return F.pad(torch.diff(x, dim=dim).abs(), pad)
    # inference: one output tensor written in place, no intermediate tensors (diff, abs, zeros, cat)
    out = torch.empty_like(x)
    out.narrow(dim, 0, 1).zero_()
    torch.sub(x.narrow(dim, 1, n - 1), x.narrow(dim, 0, n - 1), out=out.narrow(dim, 1, n - 1))
    return out.abs_()


class WeightStandardizedConv(nn.Module):
    """Convolution with weight standardization (Qiao et al., arXiv:1903.10520), Section III-A.

    Every output filter of the weight is standardized to zero mean and unit standard deviation
    (``eps`` is added to the variance inside the square root) before the convolution; there is no bias.

    In ``train()`` mode (or whenever autograd is recording) the standardized weight is computed on
    every call so that gradients flow to the raw weight. In ``eval()`` mode without autograd it is
    computed once and reused until the weight changes (a new storage, an in-place update such as an
    optimizer step or ``load_state_dict``, or a dtype/device change), when it is recomputed.
    Under ``torch.jit.trace`` the standardization is recorded in the graph, so the exported module
    standardizes its own stored weight.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: number of input channels.
        out_channels: number of output channels.
        kernel_size: convolution kernel size.
        stride: convolution stride.
        dilation: convolution dilation; padding keeps the size ("same" for stride 1).
        eps: added to the per-filter variance.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        eps: float = 1e-12,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        reference = Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size, bias=False)
        self.weight = reference.weight
        self.spatial_dims = spatial_dims
        self.stride = stride
        self.dilation = dilation
        self.padding = dilation * (kernel_size - 1) // 2
        self.eps = eps
        self._cached_weight: torch.Tensor | None = None
        self._cache_key: tuple | None = None

    def standardized_weight(self) -> torch.Tensor:
        """The weight with every output filter standardized to zero mean and unit std."""
        w = self.weight
        flat = w.reshape(w.shape[0], -1)
        mean = flat.mean(dim=1, keepdim=True)
        std = torch.sqrt(flat.var(dim=1, keepdim=True) + self.eps)
        return ((flat - mean) / std).reshape(w.shape)

    @torch.jit.unused
    def _cached_standardized_weight(self) -> torch.Tensor:
        w = self.weight
        key = (w.data_ptr(), w._version, w.dtype, w.device)
        if self._cached_weight is None or self._cache_key != key:
            self._cached_weight = self.standardized_weight()
            self._cache_key = key
        return self._cached_weight

    def train(self, mode: bool = True) -> WeightStandardizedConv:
        self._cached_weight = None
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # type: ignore[override]
        self._cached_weight = None
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting() or torch.jit.is_tracing() or self.training or torch.is_grad_enabled():
            weight = self.standardized_weight()
        else:
            weight = self._cached_standardized_weight()
        if self.spatial_dims == 3:
            return F.conv3d(x, weight, None, self.stride, self.padding, self.dilation)
        return F.conv2d(x, weight, None, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        out_c, in_c, *k = self.weight.shape
        return (
            f"{in_c}, {out_c}, kernel_size={tuple(k)}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, eps={self.eps}"
        )


def _norm_act_conv(
    spatial_dims: int, in_channels: int, out_channels: int, norm_groups: int, **conv_args
) -> nn.Sequential:
    """GroupNorm -> ReLU -> weight-standardized convolution (the pre-activation unit of the paper)."""
    return nn.Sequential(
        nn.GroupNorm(norm_groups, in_channels),
        nn.ReLU(inplace=True),
        WeightStandardizedConv(spatial_dims, in_channels, out_channels, **conv_args),
    )


class PreActivationResidualBlock(nn.Module):
    """Residual block of the shared encoder, Section III-A: (GN -> ReLU -> 3x3x3 WS-conv) x 2 + identity.

    Args:
        spatial_dims: number of spatial dimensions.
        channels: input and output channels.
        norm_groups: GroupNorm groups (8 in the paper).
        dilation: dilation of both convolutions (2 in the last encoder stage).
    """

    def __init__(self, spatial_dims: int, channels: int, norm_groups: int = 8, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _norm_act_conv(spatial_dims, channels, channels, norm_groups, dilation=dilation)
        self.conv2 = _norm_act_conv(spatial_dims, channels, channels, norm_groups, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place on the fresh conv output (autograd-safe: conv backward does not need its output)
        return self.conv2(self.conv1(x)).add_(x)


class ContextResidualModule(nn.Module):
    """Context residual module, Section III-C and Fig. 2(b).

    Segmentation path (context residual mapping, Eq. 3): ``F = Conv(I_seg + I_skip)`` with
    ``Conv`` = GN -> ReLU -> 3x3x3 WS-conv (the caller adds ``I_skip``).
    Eq. 4: ``G = |sigmoid(F)_{s+1} - sigmoid(F)_s|`` along ``residual_axis`` (first slice zero).
    Eq. 5: ``O_res = Conv(Conv1x1(G) + I_res)``; ``I_res`` first goes through GN -> ReLU -> 3x3x3 conv
    when its channel count differs from ``out_channels``; the outer ``Conv`` is GN -> ReLU -> 3x3x3 conv.
    Context attention mapping, Eq. 6: ``O_seg = F * (1 + sigmoid(O_res))``.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: channels of ``I_seg + I_skip``.
        out_channels: channels of ``O_seg`` and ``O_res``.
        residual_in_channels: channels of ``I_res``; ``None`` means ``in_channels``.
        residual_axis: spatial axis of the inter-slice residual.
        norm_groups: GroupNorm groups.
        project_residual_input: if True, ``I_res`` is taken through a plain 3x3x3 WS-conv (no GN/ReLU),
            used by the first module, whose ``I_res`` is the image's own inter-slice residual.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        residual_in_channels: int | None = None,
        residual_axis: int = 2,
        norm_groups: int = 8,
        project_residual_input: bool = False,
    ) -> None:
        super().__init__()
        residual_in_channels = in_channels if residual_in_channels is None else residual_in_channels
        self.residual_axis = residual_axis
        self.seg_conv = _norm_act_conv(spatial_dims, in_channels, out_channels, norm_groups)
        self.residual_mapping = WeightStandardizedConv(spatial_dims, out_channels, out_channels, kernel_size=1)
        self.residual_input: nn.Module
        if project_residual_input:
            self.residual_input = WeightStandardizedConv(spatial_dims, residual_in_channels, out_channels)
        elif residual_in_channels != out_channels:
            self.residual_input = _norm_act_conv(spatial_dims, residual_in_channels, out_channels, norm_groups)
        else:
            self.residual_input = nn.Identity()
        self.res_conv = _norm_act_conv(spatial_dims, out_channels, out_channels, norm_groups)

    def forward(self, seg: torch.Tensor, res: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(O_seg, O_res)`` from ``I_seg + I_skip`` (``seg``) and ``I_res`` (``res``)."""
        f = self.seg_conv(seg)
        g = inter_slice_residual(torch.sigmoid(f), self.residual_axis)
        o_res = self.res_conv(self.residual_mapping(g).add_(self.residual_input(res)))
        if torch.is_grad_enabled() and (f.requires_grad or o_res.requires_grad):
            return f * (1.0 + torch.sigmoid(o_res)), o_res
        # inference: Eq. 6 in place on one new tensor (sigmoid's backward would need its output)
        return torch.sigmoid(o_res).add_(1.0).mul_(f), o_res


class ConResNet(nn.Module):
    """3D context residual network (ConResNet), Zhang et al., IEEE TMI 2021, Fig. 2.

    Shared encoder: a 3x3x3 conv to ``init_filters``, then five stages of ``blocks`` pre-activation
    residual blocks at ``init_filters * (1, 2, 4, 8, 8)`` channels; stages 2-4 start with a stride-2
    GN -> ReLU -> 3x3x3 conv, the last stage is dilated (rate ``dilation``) without downsampling.
    All 3x3x3 convolutions are weight standardized and bias-free; GroupNorm has ``norm_groups`` groups.
    Bridge: GN -> ReLU -> Dropout(``dropout_prob``) -> 3x3x3 conv to ``4 * init_filters``.
    Decoders: three :class:`ContextResidualModule` at 1/4, 1/2 and 1/1 resolution, each after trilinear
    upsampling (align_corners) of both paths and the skip addition on the segmentation path. The first
    module's residual path starts from the image's inter-slice residual, computed here from the input unless
    given (``image_residual``).
    Heads: 1x1x1 convs on the segmentation path and on the residual paths at 1/1, 1/2 and 1/4 (deep
    supervision, upsampled to the input size).

    ``forward(x, image_residual=None)``: ``image_residual`` is the image's inter-slice residual, shaped like
    ``x``; by default it is computed from ``x`` (the first slice zero), as the release does for its training
    patches. At inference the release computes it once on the whole volume and crops it with each window;
    :class:`common.inferers.conresnet.WholeVolumeResidualInferer` passes it so.

    ``eval()`` returns the segmentation logits (B, out_channels, *spatial). ``train()`` returns the tuple
    ``(segmentation, residual at 1/1, residual at 1/2, residual at 1/4)``, all at the input size, which
    :class:`common.losses.conresnet.ConResNetLoss` consumes.

    Args:
        spatial_dims: number of spatial dimensions (3 in the paper; 2 also works).
        in_channels: image channels (4 MR modalities for BraTS, 1 for CT).
        out_channels: segmentation channels (3 sigmoid channels ET, WT, TC for BraTS; in ``multiclass``
            mode the number of classes including background).
        init_filters: width of the first stage (32 in the paper).
        blocks: residual blocks per encoder stage (1, 2, 2, 2, 2 in the paper).
        norm_groups: GroupNorm groups (8).
        dilation: dilation rate of the last encoder stage (2).
        dropout_prob: dropout before the decoders (0.1).
        residual_axis: the view of the inter-slice residual (Section V-C): ``"axial"``, ``"coronal"``,
            ``"sagittal"`` (for MONAI's channel-first RAS layout) or a spatial axis index.
        multiclass: Section V-D: the segmentation is a softmax over ``out_channels`` classes and the
            residual heads give one sigmoid channel per foreground class (``out_channels - 1``); the
            background residual is not predicted.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 4,
        out_channels: int = 3,
        init_filters: int = 32,
        blocks: Sequence[int] = (1, 2, 2, 2, 2),
        norm_groups: int = 8,
        dilation: int = 2,
        dropout_prob: float = 0.1,
        residual_axis: int | str = "axial",
        multiclass: bool = False,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"ConResNet supports spatial_dims 2 or 3, got {spatial_dims}.")
        if len(blocks) != 5:
            raise ValueError(f"blocks must give the residual block count of the 5 encoder stages, got {blocks}.")
        if init_filters % norm_groups:
            raise ValueError(
                f"init_filters ({init_filters}) must be a multiple of norm_groups ({norm_groups}) for GroupNorm."
            )
        if multiclass and out_channels < 2:
            raise ValueError("multiclass=True needs out_channels >= 2 (background + at least one class).")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.multiclass = multiclass
        self.residual_axis = resolve_residual_axis(residual_axis, spatial_dims)
        self.upsample_mode = "trilinear" if spatial_dims == 3 else "bilinear"
        widths = [init_filters * m for m in (1, 2, 4, 8, 8)]
        sd, g = spatial_dims, norm_groups

        def stage(channels: int, count: int, rate: int = 1) -> nn.Sequential:
            return nn.Sequential(*[PreActivationResidualBlock(sd, channels, g, rate) for _ in range(count)])

        self.conv_init = WeightStandardizedConv(sd, in_channels, widths[0])
        self.stage1 = stage(widths[0], blocks[0])
        self.down2 = _norm_act_conv(sd, widths[0], widths[1], g, stride=2)
        self.stage2 = stage(widths[1], blocks[1])
        self.down3 = _norm_act_conv(sd, widths[1], widths[2], g, stride=2)
        self.stage3 = stage(widths[2], blocks[2])
        self.down4 = _norm_act_conv(sd, widths[2], widths[3], g, stride=2)
        self.stage4 = stage(widths[3], blocks[3])
        self.stage5 = stage(widths[4], blocks[4], dilation)
        self.bridge = nn.Sequential(
            nn.GroupNorm(g, widths[4]),
            nn.ReLU(inplace=True),
            Dropout[Dropout.DROPOUT, sd](dropout_prob),
            WeightStandardizedConv(sd, widths[4], widths[2]),
        )
        axis = self.residual_axis
        self.context_residual_x4 = ContextResidualModule(
            sd, widths[2], widths[1], in_channels, axis, g, project_residual_input=True
        )
        self.context_residual_x2 = ContextResidualModule(sd, widths[1], widths[0], widths[1], axis, g)
        self.context_residual_x1 = ContextResidualModule(sd, widths[0], widths[0], widths[0], axis, g)
        residual_channels = out_channels - 1 if multiclass else out_channels
        conv = Conv[Conv.CONV, sd]
        self.seg_head = conv(widths[0], out_channels, kernel_size=1)
        self.res_head = conv(widths[0], residual_channels, kernel_size=1)
        self.res_head_x2 = conv(widths[0], residual_channels, kernel_size=1)
        self.res_head_x4 = conv(widths[1], residual_channels, kernel_size=1)

    def _upsample(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=like.shape[2:], mode=self.upsample_mode, align_corners=True)

    def forward(
        self, x: torch.Tensor, image_residual: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if not torch.jit.is_tracing() and x.shape[1] != self.in_channels:
            raise ValueError(
                f"ConResNet expects {self.in_channels} input channels, got {x.shape[1]} (input shape "
                f"{list(x.shape)}); set in_channels to the number of image channels/modalities."
            )
        if image_residual is None:
            image_residual = inter_slice_residual(x, self.residual_axis)
        elif image_residual.shape != x.shape:
            raise ValueError(
                f"image_residual has shape {list(image_residual.shape)}, the image {list(x.shape)}; give the "
                "image's inter-slice residual cropped like the image."
            )
        skip1 = self.stage1(self.conv_init(x))
        skip2 = self.stage2(self.down2(skip1))
        skip3 = self.stage3(self.down3(skip2))
        deep = self.bridge(self.stage5(self.stage4(self.down4(skip3))))

        # skip additions in place on the fresh upsampled tensors (upsampling's backward does not need them)
        seg4, res4 = self.context_residual_x4(
            self._upsample(deep, skip3).add_(skip3), self._upsample(image_residual, skip3)
        )
        seg2, res2 = self.context_residual_x2(self._upsample(seg4, skip2).add_(skip2), self._upsample(res4, skip2))
        seg1, res1 = self.context_residual_x1(self._upsample(seg2, skip1).add_(skip1), self._upsample(res2, skip1))

        seg = self.seg_head(seg1)
        if not self.training:
            return seg
        return (
            seg,
            self.res_head(res1),
            self._upsample(self.res_head_x2(res2), x),
            self._upsample(self.res_head_x4(res4), x),
        )


class ConResNetEnsemble(nn.Module):
    """Average of the probabilities of independently trained networks, for inference (Section IV-C: the
    BraTS test results come from an ensemble of three ConResNets).

    Returns logits of the mean probability, ``logit(mean_k sigmoid(f_k(x)))`` (or ``log(mean_k
    softmax(f_k(x)))`` with ``multiclass=True``), so the single network's post-processing (sigmoid or
    softmax, threshold or argmax) applies unchanged. Only ``eval()`` mode is supported.

    Args:
        networks: the members, all with the same output channels.
        multiclass: average softmax instead of sigmoid probabilities.
        eps: probabilities are clamped to ``[eps, 1 - eps]`` before the logit/log.
    """

    def __init__(self, networks: Sequence[nn.Module], multiclass: bool = False, eps: float = 1e-6) -> None:
        super().__init__()
        if not networks:
            raise ValueError("ConResNetEnsemble needs at least one network (or checkpoint).")
        self.networks = nn.ModuleList(networks)
        self.multiclass = multiclass
        self.eps = eps

    @classmethod
    def from_checkpoints(
        cls,
        network: nn.Module,
        checkpoints: Sequence[str | Path],
        map_location: str | torch.device | None = None,
        multiclass: bool | None = None,
    ) -> ConResNetEnsemble:
        """One copy of ``network`` a checkpoint; a checkpoint is a state dict (``model.pt``) or a training
        checkpoint holding it under ``"model"``. ``multiclass`` defaults to ``network.multiclass``."""
        members = []
        for path in checkpoints:
            if not Path(path).is_file():
                raise FileNotFoundError(
                    f"ensemble checkpoint {path} does not exist; list existing model.pt files in 'ensemble_ckpts'."
                )
            state = torch.load(str(path), map_location=map_location, weights_only=True)
            if isinstance(state.get("model"), dict):
                state = state["model"]
            member = copy.deepcopy(network)
            member.load_state_dict(state)
            members.append(member)
        if multiclass is None:
            multiclass = bool(getattr(network, "multiclass", False))
        return cls(members, multiclass=multiclass)

    def forward(self, x: torch.Tensor, image_residual: torch.Tensor | None = None) -> torch.Tensor:
        """``image_residual`` as for :class:`ConResNet`, passed to every member."""
        if self.training:
            raise RuntimeError("ConResNetEnsemble is for inference only; call .eval() first.")
        if self.multiclass:
            probs = torch.stack([torch.softmax(n(x, image_residual), dim=1) for n in self.networks]).mean(0)
            return torch.log(probs.clamp_min(self.eps))
        probs = torch.stack([torch.sigmoid(n(x, image_residual)) for n in self.networks]).mean(0)
        return torch.logit(probs, eps=self.eps)
