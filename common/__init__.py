"""Shared code of the medseg-bundles collection: networks, losses, transforms, inferers and metrics
that the bundle configs under ``bundles/`` name by ``_target_``."""
