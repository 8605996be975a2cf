"""This process's memory as the kernel counts it: resident now, and its peak."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

__all__ = ["current_rss", "peak_rss_bytes"]


def current_rss() -> int | None:
    """This process's resident memory now, in bytes (Linux; None elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_bytes() -> int:
    """This process's peak resident set size in bytes (0 where unknown). A job process logs
    it at its end (``memory: {"peak_rss_bytes": N}``), so what a job cost each process is in
    its logs (``benchmarks/poc_memory.py`` reads them). On Linux ``VmHWM``, the high-water
    mark of this process's own memory: ``ru_maxrss`` starts at the parent's resident size
    when the process was spawned (a daemon's, for a job process)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024
