"""Pieces the bundles' MONAI workflows plug in: atomic checkpoints, resume, reproducible epochs and the
non-finite-loss stop for training (:mod:`.training`); failure-tolerant, atomically written inference
(:mod:`.inference`); bf16 autocast on any device and the ``compile`` switch (:mod:`.precision`); the
``keep_freed_memory`` allocator switch (:mod:`.memory`); the true/false parser of those switches (:mod:`.switches`)."""
