"""Process-wide settings that memrec's command line and service apply when they start.

Memory: glibc's malloc hands blocks above a threshold straight to ``mmap`` and returns the top of its
heap to the kernel once more than a threshold of it is free. A Transformer forward allocates and frees
many buffers of a few MB, so by default the process page-faults (and the kernel zeroes) the same
memory again on every batch. Raising both thresholds makes freed buffers reusable; the peak memory of
the process does not change, it is only kept until the process ends. Set ``MEMREC_MALLOC_TUNING=0``
to leave malloc as it is.

Garbage collection: a service that has loaded torch, FastAPI and a model tracks about 200,000
Python objects, and each full collection walks all of them, a pause of over 100 ms here that holds
every request behind it (``benchmarks/gc_pauses.py``). The service freezes what start-up built
(:func:`freeze_startup_objects`), so that collections walk only what requests create.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's upper bound for M_MMAP_THRESHOLD on 64-bit systems
TRIM_THRESHOLD = 2**30


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed blocks of up to 32 MB instead of returning them to the kernel.

    Returns True when the settings were applied; False off glibc (macOS, musl) or when
    ``MEMREC_MALLOC_TUNING=0``. Safe to call more than once.

    Example:
        >>> keep_freed_memory() in (True, False)
        True
    """
    if os.environ.get("MEMREC_MALLOC_TUNING", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def freeze_startup_objects() -> int:
    """Collect once, then move every object alive now out of the garbage collector's reach; returns
    how many objects were frozen. Call it when start-up is done (model loaded, store open).

    Example:
        >>> freeze_startup_objects() > 0
        True
        >>> import gc; gc.unfreeze()
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
