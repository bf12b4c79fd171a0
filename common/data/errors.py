"""The error a user's dataset folder or datalist can cause."""

from __future__ import annotations

from common.workflows.errors import UserError

__all__ = ["DatalistError"]


class DatalistError(UserError, ValueError):
    """A dataset folder or datalist does not have the layout a bundle reads; the message names the file or case
    and the fix."""
