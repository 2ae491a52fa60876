"""The host's data cache sizes, which the contraction schedules are blocked for.

Read from Linux's ``/sys/devices/system/cpu/cpu0/cache``: the level-1 data cache and the unified level-2
and level-3 caches of the first CPU. Where that cannot be read, :data:`TYPICAL` stands in. A named
``FUSECC_CPU`` does not change them: code compiled for another CPU is still blocked for this host's caches.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

SYSFS = "/sys/devices/system/cpu/cpu0/cache"


@dataclass(frozen=True)
class CacheSizes:
    """Bytes of each level's cache one core sees (level 3 is often shared)."""

    l1: int
    l2: int
    l3: int


#: a common x86 core's caches (32 KiB, 512 KiB, 8 MiB), used where the host's cannot be read
TYPICAL = CacheSizes(32 << 10, 512 << 10, 8 << 20)


def _size(text: str) -> int:
    """``48K`` / ``1024K`` / ``32M`` (sysfs's notation) in bytes."""
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def read_caches(root: str = SYSFS) -> CacheSizes:
    """The caches described under ``root`` (a ``cache`` directory of sysfs); :data:`TYPICAL`'s size for a
    level it does not describe."""
    found = {}
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return TYPICAL
    for entry in entries:
        if not entry.startswith("index"):
            continue
        try:
            with open(os.path.join(root, entry, "level")) as handle:
                level = int(handle.read())
            with open(os.path.join(root, entry, "type")) as handle:
                kind = handle.read().strip()
            with open(os.path.join(root, entry, "size")) as handle:
                size = _size(handle.read())
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified") and size > 0:
            found[level] = size
    return CacheSizes(found.get(1, TYPICAL.l1), found.get(2, TYPICAL.l2), found.get(3, TYPICAL.l3))


@functools.cache
def host_caches() -> CacheSizes:
    return read_caches()
