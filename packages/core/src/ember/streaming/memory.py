"""Giving memory back: ``gc.collect()``, glibc's ``malloc_trim(0)``, and the CUDA cache."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import platform
import sys
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library is not glibc (musl, macOS)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_memory(cuda: bool = False) -> dict[str, int | bool]:
    """Collect garbage, drop the idle receive buffers (``ember.streaming.buffers``), return
    freed heap pages to the OS, and optionally empty the CUDA cache (only if torch is
    already imported). Returns what was done."""
    from ember.streaming.buffers import POOL

    collected = gc.collect()
    buffers_released = POOL.clear()
    trim = _malloc_trim()
    trimmed = bool(trim(0)) if trim is not None else False
    cuda_emptied = False
    if cuda and "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            cuda_emptied = True
    return {
        "collected": collected,
        "buffers_released": buffers_released,
        "malloc_trim": trimmed,
        "cuda_cache_emptied": cuda_emptied,
    }
