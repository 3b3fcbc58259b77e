"""Keep freed memory for reuse on Linux (glibc), which makes CPU passes at ImageNet size much faster.

glibc's malloc hands every large block (over 128 KB at first) straight back to the kernel when it is freed, and
trims the heap top. A network's activations at 224 x 224 are exactly such blocks, allocated and freed on every
pass, so each pass pays page faults and zeroing for all of them: measured on EfficientNet-Lite0 at 224 on two
cores, 40 ms of a forward pass per image became 17 ms, and 56 ms of a forward and backward pass 41 ms, once freed
memory is kept (``bench/runner_scale.py`` prints both). The cost is that the process keeps its peak memory until
it exits, which suits a batch job. The runner applies it to CPU runs; ``XAIBOARD_MALLOC=system`` leaves the
allocator as it is (as does any other C library, or an allocator preloaded with LD_PRELOAD such as jemalloc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: blocks up to this size come from the heap and are kept when freed; the heap is not trimmed below it
KEEP_BYTES = 1 << 30

_applied = False


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse (once per process); True when it is in effect."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("XAIBOARD_MALLOC") == "system" \
            or "LD_PRELOAD" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))
    return _applied
