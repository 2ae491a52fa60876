"""Large arrays on fresh memory that the kernel may back with huge pages.

A model's weights are copied at compile time (packed for the micro-kernels, then laid out in one blob), hundreds
of megabytes for a transformer. Written into ordinary fresh memory, every 4 KiB page faults once, which cost
more than the copy itself (1.4 s against 0.1 s for GPT-2's 474 MiB here). Anonymous memory advised for huge
pages (``MADV_HUGEPAGE``, where the kernel offers them on request) faults once per 2 MiB.
"""

from __future__ import annotations

import mmap

import numpy as np

#: below this many bytes an ordinary allocation is as fast (a huge page would mostly go unused)
HUGE_PAGE_BYTES = 2 << 20


def zeroed_array(shape, dtype) -> np.ndarray:
    """A zero-filled C-contiguous array of ``shape`` and ``dtype``; large ones on anonymous memory advised for
    huge pages (the array keeps the mapping alive)."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < HUGE_PAGE_BYTES:
        return np.zeros(shape, dtype)
    region = mmap.mmap(-1, size)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        region.madvise(mmap.MADV_HUGEPAGE)
    return np.frombuffer(region, np.uint8, count=size).view(dtype).reshape(shape)
