"""glibc's mmap threshold, fixed by the app (``malloc_mmap_threshold_kib``) so that freed tensor
memory goes back to the system instead of staying in the heap."""

import subprocess
import sys
import textwrap

import pytest

from medkit_exp.training.host_memory import check_mmap_threshold, set_malloc_mmap_threshold

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or "glibc" not in " ".join(
    __import__("platform").libc_ver()), reason="glibc's malloc only")

# Frees an 8 MiB block (glibc then raises its threshold to 8 MiB unless it was fixed), allocates
# 2 MiB and prints whether that block got a mapping of its own (mallinfo2's hblks).
PROBE = textwrap.dedent("""
    import ctypes, sys
    from medkit_exp.training.host_memory import set_malloc_mmap_threshold

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                          "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    if sys.argv[1] == "fixed":
        assert set_malloc_mmap_threshold(1024)
    libc.free(libc.malloc(8 << 20))
    before = libc.mallinfo2().hblks
    block = libc.malloc(2 << 20)
    print(libc.mallinfo2().hblks - before)
    libc.free(block)
""")


def mapped_blocks(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


@glibc
def test_fixed_threshold_maps_blocks_that_glibc_would_keep_in_its_heap():
    assert mapped_blocks("glibc-default") == 0  # the threshold rose to 8 MiB: 2 MiB came from the heap
    assert mapped_blocks("fixed") == 1  # fixed at 1 MiB: its own mapping, unmapped when freed


def test_none_leaves_malloc_alone_and_bad_values_are_refused():
    assert set_malloc_mmap_threshold(None) is False
    for bad in (0, -1, 32 * 1024 + 1, 1.5, True, "1024"):
        with pytest.raises(ValueError, match="must be an integer from 1 to 32768"):
            check_mmap_threshold(bad)


# Fills 200 MB of 1 KiB blocks, frees all but the last (which pins the heap's top, so glibc cannot
# shrink it by itself), then prints the resident MB before and after release_free_heap.
TRIM_PROBE = textwrap.dedent("""
    import ctypes
    from medkit_exp.training.host_memory import release_free_heap

    def rss_mb():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) // 1024

    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(1024) for _ in range(200 * 1024)]
    for block in blocks:
        ctypes.memset(block, 1, 1024)
    for block in blocks[:-1]:
        libc.free(block)
    before = rss_mb()
    assert release_free_heap()
    print(before, rss_mb())
""")


@glibc
def test_release_free_heap_gives_freed_heap_memory_back():
    result = subprocess.run([sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    before, after = map(int, result.stdout.split())
    assert before - after > 150, (before, after)  # the 200 MB freed, kept by the heap until trimmed
