"""Keep a CPU training's resident memory close to what it really uses.

glibc's malloc raises its mmap threshold each time a large block is freed (up to 32 MB),
so after the first steps the activation tensors of a transformer (a few MB each) come from
the heap, and the heap keeps their pages after they are freed: the process's resident
memory grows to the largest batch's activations plus fragmentation and stays there. Fixing
the threshold makes blocks above it mmapped, and so handed back to the system when freed.
Measured on NCBI-disease sentences with MiniLM (batch 16): peak RSS 1.72 GB -> 1.52 GB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h


@functools.lru_cache(maxsize=None)
def release_large_blocks(threshold_bytes: int = 4 << 20) -> bool:
    """Serve allocations of ``threshold_bytes`` or more with mmap from now on (glibc only).

    Returns whether the setting took effect (False on other C libraries, where it does
    nothing). Process-wide and harmless to repeat; done once per threshold.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, threshold_bytes))
