"""The ``keep_freed_memory`` switch: let glibc keep the memory of large freed tensors for the next ones.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and returns it
to the kernel when it is freed. A 3D network at BraTS size makes and frees hundreds of such tensors each forward
(a 32-channel 160x160x80 float map is 262 MB), and the kernel zero-fills every page of each on first touch:
measured for ConResNet at 4x160x160x80, a third of the forward's CPU time was this system time (its docs,
``python -m benchmarks.conresnet allocator``). ``mallopt(M_MMAP_MAX, 0)`` makes glibc serve them from its heap
and ``mallopt(M_TRIM_THRESHOLD, 2**31 - 1)`` stops it from giving back freed heap memory (up to 2 GiB of free
top of heap), so the pages are reused.
Nearly the same as starting the process with ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776`` (the
environment can set a larger trim threshold than ``mallopt``'s C int); the price
is a higher peak memory (the heap keeps what it once held). CPU tensors only: CUDA has its own caching
allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

from .switches import config_switch

__all__ = ["keep_freed_memory"]

# glibc's malloc.h; mallopt takes a C int, so the largest trim threshold it can set is 2**31 - 1 (2 GiB of free
# memory at the top of the heap before glibc gives any back)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1


def keep_freed_memory(enabled: bool | str = False) -> bool:
    """Switch glibc's allocator to keep freed memory (see the module docstring) when ``enabled`` (a bool, or
    ``"true"``/``"false"`` from the command line). Returns whether the setting is in force; with a C library
    other than glibc it logs that nothing changed and returns False. Once set it stays for the process."""
    if not config_switch(enabled, "keep_freed_memory"):
        return False
    name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    if mallopt is None or not (mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        logging.getLogger(__name__).warning(
            "keep_freed_memory: this C library has no glibc mallopt; the allocator is unchanged"
        )
        return False
    return True
