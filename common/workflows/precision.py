"""bf16 autocast for MONAI workflows on any device, CPU included.

MONAI's ``SupervisedTrainer(amp=True)`` / ``SupervisedEvaluator(amp=True)`` enter ``torch.autocast("cuda")``,
which does nothing on a CPU. :class:`AutocastInferer` wraps the workflow's inferer instead: the network runs
under ``torch.autocast(<device of the input>, dtype=torch.bfloat16)`` and its outputs come back as float32, so
the loss, post-processing and metrics run in float32 as before (``torch.autocast`` documents exactly this:
forward under autocast, loss and backward outside it on float32 values). In a bundle config::

    "amp_bf16": false,
    "trainer": {"_target_": "SupervisedTrainer", ...,
                "inferer": {"_target_": "common.workflows.precision.AutocastInferer",
                            "inferer": "@train#inferer", "enabled": "@amp_bf16"}}

and ``--amp_bf16 true`` on the command line switches it on. :func:`compiled` is the ``compile`` switch:
``"network": {"_target_": "common.workflows.precision.compiled", "network": "@network", "enabled": "@compile"}``
in an engine hands it ``torch.compile(network)`` while checkpoints keep saving ``@network`` (same keys). Both
switches take ``true``/``false`` strings from the command line. The measured effect per bundle on this
repository's CPU is in ``benchmarks/README.md`` (``python -m benchmarks.harness precision``).
"""

from __future__ import annotations

from typing import Any

import torch
from monai.inferers import Inferer

from .switches import config_switch

__all__ = ["AutocastInferer", "compiled"]


def compiled(network: torch.nn.Module, enabled: bool | str = False, **compile_kwargs: Any) -> torch.nn.Module:
    """``torch.compile(network, **compile_kwargs)`` when ``enabled`` (the bundle's ``compile`` switch), else
    ``network`` itself. The compiled module shares the network's parameters. MONAI's engines' own ``compile=``
    is not used: it tests the value with a plain ``if``, so ``--compile false`` would compile
    (``tests/test_workflows_precision.py`` pins it)."""
    return torch.compile(network, **compile_kwargs) if config_switch(enabled, "compile") else network


def _to_float32(output: Any) -> Any:
    """Floating tensors of ``output`` (a tensor, or lists, tuples and dicts of them) as float32."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, (list, tuple)):
        return type(output)(_to_float32(o) for o in output)
    if isinstance(output, dict):
        return {k: _to_float32(v) for k, v in output.items()}
    return output


class AutocastInferer(Inferer):
    """Runs ``inferer`` under ``torch.autocast`` on the input's device and returns float32 outputs.

    Args:
        inferer: the workflow's inferer (``SimpleInferer``, ``SlidingWindowInferer``, ...), called as usual.
        enabled: off by default: then the wrapped inferer runs exactly as without this wrapper; ``true``/``false``
            strings are accepted (the command line gives strings).
        dtype: the autocast dtype; ``torch.bfloat16`` (float16 on a CPU is slow and needs a gradient scaler).
    """

    def __init__(self, inferer: Inferer, enabled: bool = False, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.inferer, self.enabled, self.dtype = inferer, config_switch(enabled, "amp_bf16"), dtype

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.enabled:
            return self.inferer(inputs, network, *args, **kwargs)
        with torch.autocast(inputs.device.type, dtype=self.dtype):
            output = self.inferer(inputs, network, *args, **kwargs)
        return _to_float32(output)
