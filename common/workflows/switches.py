"""The true/false switches of the bundle configs (``resume``, ``amp_bf16``, ``compile``, ``keep_freed_memory``),
which come from JSON as booleans and from the command line as strings (``--resume true``)."""

from __future__ import annotations

from monai.utils import str2bool

__all__ = ["config_switch"]


def config_switch(value: bool | str, name: str) -> bool:
    """``value`` as a bool: a bool as it is, a string by :func:`monai.utils.str2bool` (``true``/``false``,
    ``yes``/``no``, ``1``/``0``, any case; an empty string is false). Raises ``ValueError`` naming the key
    ``name`` and the fix for anything else."""
    if isinstance(value, str) and not value.strip():
        return False
    try:
        return str2bool(value.strip() if isinstance(value, str) else value)
    except ValueError:
        raise ValueError(f"{name} must be true or false, not {value!r}; e.g. --{name} true") from None
