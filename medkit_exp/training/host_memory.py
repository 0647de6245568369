"""Keep a training process from holding on to the memory of freed tensors (glibc's malloc).

glibc serves a block at or above its *mmap threshold* with a memory mapping of its own, given
back to the system when the block is freed, and smaller blocks from heaps that keep freed
memory for reuse. The threshold starts at 128 KiB, but every time a mapped block is freed
glibc raises it to that block's size (up to 32 MiB). After the first training steps nearly
every activation therefore comes from the heaps, and batches of ever new lengths leave them
fragmented: the process's resident memory grows by hundreds of MB that it never uses again.
Fixing the threshold stops that adjustment, at a price: every such block costs page faults
again (measured in bench/README.md), so it is a setting. ``release_free_heap`` is the cheap
half: at the end of a phase it hands back what the heaps hold free.
"""

from __future__ import annotations

import ctypes
import functools
import sys

M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h
MAX_THRESHOLD_KIB = 32 * 1024  # glibc refuses larger values on 64-bit systems


def check_mmap_threshold(kib: int | None) -> None:
    """Raise ``ValueError`` (one line) for a threshold glibc would refuse."""
    if kib is None:
        return
    if isinstance(kib, bool) or not isinstance(kib, int) or not 0 < kib <= MAX_THRESHOLD_KIB:
        raise ValueError(f"malloc_mmap_threshold_kib={kib!r} must be an integer from 1 to {MAX_THRESHOLD_KIB} "
                         "(KiB), or null to keep glibc's own adjustment")


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """This process's C library with the two calls typed, or None where it is not glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):  # glibc only: another libc's mallopt takes other numbers
            return None
    except (OSError, AttributeError):
        return None
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return libc


def release_free_heap() -> bool:
    """Give the free memory of glibc's heaps back to the system (``malloc_trim``); cheap, so
    call it between phases (after training, before testing). False where glibc is not used."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def set_malloc_mmap_threshold(kib: int | None) -> bool:
    """Fix glibc's mmap threshold at ``kib`` KiB for this process; None leaves it alone.

    Blocks of that size or more are then mapped on their own and returned to the system when
    freed. Returns True when the threshold was set, False where it cannot be (not Linux, or a C
    library other than glibc) or ``kib`` is None. Call it early: memory the heaps already hold
    stays with them.
    """
    check_mmap_threshold(kib)
    libc = _glibc() if kib is not None else None
    if libc is None or kib is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, kib * 1024))
