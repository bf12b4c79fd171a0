"""Sliding-window inference with the image's inter-slice residual taken on the whole volume, for ConResNet.

ConResNet's first context residual module starts from the image's inter-slice residual ``|x_s - x_{s-1}|``
(Zhang et al., IEEE TMI 2021; the authors' release). The release crops its training patches first and takes
the residual of each patch (the patch's first slice zero), but at inference it takes the residual once on
the whole volume and crops it with every window, so a window's first slice holds the true difference to
the slice before it. MONAI's :class:`~monai.inferers.SlidingWindowInferer` hands the network image windows
only, from which the network would recompute a residual with a zero first slice; this inferer crops the
whole-volume residual with each window and passes both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer

from common.networks.conresnet import inter_slice_residual, resolve_residual_axis

__all__ = ["WholeVolumeResidualInferer"]


class WholeVolumeResidualInferer(SlidingWindowInferer):
    """:class:`~monai.inferers.SlidingWindowInferer` that calls ``network(window, residual_window)``, with
    ``residual_window`` the same crop of the image's inter-slice residual computed once on the whole input.

    The residual is stacked with the image along the channel axis, so MONAI crops (and, where the volume is
    smaller than ``roi_size``, zero-pads) both alike, as the release pads its image and residual windows
    with zeros. Where one window covers the whole volume the output equals ``network(inputs)``.

    Args:
        roi_size: the window size, as for ``SlidingWindowInferer``.
        residual_axis: the network's ``residual_axis`` (a view name or a spatial axis index).
        kwargs: the other arguments of ``SlidingWindowInferer`` (``sw_batch_size``, ``overlap``, ``mode``...).
    """

    def __init__(self, roi_size: Sequence[int] | int, residual_axis: int | str = "axial", **kwargs: Any) -> None:
        super().__init__(roi_size, **kwargs)
        self.residual_axis = residual_axis

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        channels = inputs.shape[1]
        axis = resolve_residual_axis(self.residual_axis, inputs.dim() - 2)
        image = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        stacked = torch.cat([inputs, inter_slice_residual(image, axis)], dim=1)

        def predict(window: torch.Tensor, *a: Any, **k: Any) -> torch.Tensor:
            return network(window[:, :channels], window[:, channels:], *a, **k)

        return super().__call__(stacked, predict, *args, **kwargs)
