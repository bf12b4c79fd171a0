"""Data: the built-in sample datasets (:mod:`.sample`), datalists from the papers' published dataset layouts
(:mod:`.datalists`), the datalist checks the bundle configs run before training or inference
(:mod:`.datalist_checks`) and the error both raise (:mod:`.errors`)."""

from .sample import SAMPLE_KINDS, make_sample_data

__all__ = ["SAMPLE_KINDS", "make_sample_data"]
