"""Writing a file whole or not at all, so a reader (a process loading a library, a compile-cache lookup) never
sees half of one."""

from __future__ import annotations

import contextlib
import os
import uuid


def write_atomically(path: str, *chunks, mode: int = 0o666, durable: bool = False) -> None:
    """Write the concatenated ``chunks`` (bytes-like) to ``path``: into a new file beside it, created with
    ``mode`` less the umask, flushed to the disk first if ``durable``, then renamed over ``path``. A process that
    opened the old file keeps reading the old bytes."""
    path = os.path.abspath(os.fspath(path))
    temporary = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
