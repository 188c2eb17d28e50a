"""Keep freed memory in the process instead of handing it back to the system after each step.

glibc's malloc serves every block above 32 MB (and, at first, above 128 kB) with its own mmap
and unmaps it on free, so a training step that allocates and frees the same large activation
tensors every time makes the kernel zero and map every page of them again, a page fault per 4 kB.
On a virtual machine whose page faults are dear that was a third of the CPU time and of a
training epoch's time (BENCHMARKS.md, "Training input pipeline"). Two remedies, each measured:
malloc with mmap and trimming off, so freed blocks are reused from the heap (batch building, numpy),
and TensorFlow's own best-fit allocator for its CPU tensors, which keeps and reuses its regions
(glibc's per-thread arenas still map blocks over 64 MB; one arena for all threads made them wait
on its lock). The process keeps its peak memory, which the next step needs again anyway.
"""
from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger("bioacoustics")

# mallopt parameters, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = -1  # "disables trimming completely" (man mallopt)
TF_BFC = "TF_CPU_ALLOCATOR_USE_BFC"  # read when TensorFlow makes its first CPU tensor


def user_chose_malloc_settings(environ=os.environ) -> bool:
    """True when the environment already tunes malloc: those choices are the user's to make."""
    return ("glibc.malloc." in environ.get("GLIBC_TUNABLES", "")
            or any(key.startswith("MALLOC_") for key in environ))


def keep_freed_memory() -> list[str]:
    """Turn off glibc malloc's mmap of large blocks and its heap trimming for this process (and
    processes it forks later), and have TensorFlow, if it runs here, keep its CPU tensors' memory
    (call before the first tensor). Returns what it changed: "malloc" (not elsewhere than glibc,
    nor where the environment sets malloc tunables) and "tensorflow" (unless the environment
    already says which allocator TensorFlow uses)."""
    changed = []
    if (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
            and not user_chose_malloc_settings()):
        libc = ctypes.CDLL(None)
        if libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM) == 1:
            changed.append("malloc")
    if TF_BFC not in os.environ:
        os.environ[TF_BFC] = "true"
        changed.append("tensorflow")
    log.debug("memory kept after use by: %s", changed)
    return changed
