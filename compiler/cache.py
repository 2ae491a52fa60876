"""The compile cache: what fusecc built, kept on disk under a key (``cache_key``: a SHA-256 of everything the
build depends on), so compiling the same model again takes a file read.

Where: ``$FUSECC_CACHE_DIR``, else ``$XDG_CACHE_HOME/fusecc``, else ``~/.cache/fusecc``, created private to the
user (0700). A directory owned by another user, or writable by group or others, is refused with a
:class:`CacheWarning` and the compilation runs uncached: whoever can write there chooses the code this process
runs.

An entry is one file, ``<key>.entry``: a line with the SHA-256 of the rest, a JSON line listing the parts (name,
size), then the parts' bytes. A read checks the digest; an entry that fails it (truncated, altered) is deleted
and counts as a miss. An entry is written to a temporary file in the directory, flushed to the disk and renamed,
so a reader sees a whole entry or none, whatever runs at the same time.

The directory holds at most ``$FUSECC_CACHE_SIZE`` bytes of entries (a number, or with a K, M or G suffix for
KiB, MiB, GiB; default 1 GiB): after each write the least recently used entries go until the rest fit. An
entry's modification time records its last use; a hit renews it.

``FUSECC_CACHE=0`` switches the cache off (as do ``cache=False`` and ``--no-cache``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import time
import warnings

from fusecc.runtime.files import write_atomically

DIRECTORY_VARIABLE = "FUSECC_CACHE_DIR"
SIZE_VARIABLE = "FUSECC_CACHE_SIZE"
SWITCH_VARIABLE = "FUSECC_CACHE"
DEFAULT_SIZE_LIMIT = 1 << 30

_SIZE_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_OFF = ("0", "false", "no", "off")
_KEY = re.compile(r"[0-9a-f]{64}\Z")
_ENTRY_SUFFIX = ".entry"
#: a temporary file this old was left by a process that died while writing it
_ABANDONED_AFTER_SECONDS = 3600


class CacheWarning(UserWarning):
    """The cache cannot be used as configured, or held a corrupt entry; the compilation goes on uncached."""


def switched_on() -> bool:
    """False when ``FUSECC_CACHE`` is 0 (or false, no, off)."""
    return os.environ.get(SWITCH_VARIABLE, "").strip().lower() not in _OFF


def cache_directory() -> str:
    """``$FUSECC_CACHE_DIR``, else ``$XDG_CACHE_HOME/fusecc``, else ``~/.cache/fusecc``."""
    chosen = os.environ.get(DIRECTORY_VARIABLE)
    if chosen:
        return os.path.abspath(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(base), "fusecc")


def size_limit() -> int:
    """The bound on the entries' total size, from ``FUSECC_CACHE_SIZE``; raises ValueError for a malformed value."""
    text = os.environ.get(SIZE_VARIABLE, "").strip()
    if not text:
        return DEFAULT_SIZE_LIMIT
    match = re.fullmatch(r"(\d+)\s*([KMG]?)(?:i?B)?", text, re.IGNORECASE)
    if match is None:
        raise ValueError(f"{SIZE_VARIABLE}={text!r} is not a size: give bytes, or a number with K, M or G "
                         "(KiB, MiB, GiB), e.g. 512M")
    return int(match.group(1)) * _SIZE_SUFFIXES[match.group(2).upper()]


def _refusal(directory: str) -> str | None:
    """Create ``directory`` (0700) if it is missing; why it cannot hold the cache, or None if it can."""
    try:
        os.makedirs(os.path.dirname(directory), exist_ok=True)
        os.mkdir(directory, 0o700)
        os.chmod(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as error:
        return f"cannot create it: {error.strerror or error}"
    try:
        info = os.stat(directory)
    except OSError as error:
        return f"cannot look at it: {error.strerror or error}"
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory"
    if info.st_uid != os.getuid():
        return f"it belongs to user id {info.st_uid}, not to this user ({os.getuid()})"
    if info.st_mode & 0o022:
        return f"group or others may write to it (mode {stat.S_IMODE(info.st_mode):04o}; chmod 700 it)"
    return None


def open_cache() -> CompileCache | None:
    """The cache, or None if ``FUSECC_CACHE`` switches it off or its directory is refused (with a warning)."""
    if not switched_on():
        return None
    limit = size_limit()
    directory = cache_directory()
    refusal = _refusal(directory)
    if refusal is not None:
        warnings.warn(f"not using the compile cache {directory}: {refusal}; compiling without it "
                      f"(choose another with {DIRECTORY_VARIABLE}, or set {SWITCH_VARIABLE}=0)", CacheWarning,
                      stacklevel=2)
        return None
    return CompileCache(directory, limit)


class CorruptEntry(Exception):
    """An entry whose bytes do not match its digest or its list of parts."""


def encode_entry(parts: dict[str, bytes]) -> list[bytes]:
    """The chunks of an entry file holding ``parts``: digest line, list of parts, then their bytes."""
    listing = json.dumps([[name, len(data)] for name, data in parts.items()]).encode() + b"\n"
    digest = hashlib.sha256(listing)
    for data in parts.values():
        digest.update(data)
    return [digest.hexdigest().encode() + b"\n", listing, *parts.values()]


def decode_entry(blob: bytes) -> dict[str, memoryview]:
    """The parts of an entry file's bytes (views into them); raises :class:`CorruptEntry` unless they match their
    digest."""
    view = memoryview(blob)
    first = blob.find(b"\n")
    if first < 0 or hashlib.sha256(view[first + 1:]).hexdigest().encode() != blob[:first]:
        raise CorruptEntry("its bytes do not match their SHA-256")
    second = blob.find(b"\n", first + 1)
    parts, offset = {}, second + 1
    for name, size in json.loads(blob[first + 1:second]):
        parts[name] = view[offset:offset + size]
        offset += size
    if offset != len(blob):
        raise CorruptEntry("its parts do not add up to its size")
    return parts


class CompileCache:
    """Entries under ``directory``, at most ``limit`` bytes in all; see the module's docstring."""

    def __init__(self, directory: str, limit: int):
        self.directory = directory
        self.limit = limit

    def path(self, key: str) -> str:
        """The file of ``key``'s entry (a SHA-256 in hex)."""
        if not _KEY.match(key):
            raise ValueError(f"a cache key is a SHA-256 in lowercase hex, not {key!r}")
        return os.path.join(self.directory, key + _ENTRY_SUFFIX)

    def get(self, key: str) -> dict[str, memoryview] | None:
        """The parts stored under ``key``, or None. A corrupt entry is deleted (with a warning) and is a miss."""
        path = self.path(key)
        try:
            with open(path, "rb") as handle:
                blob = handle.read()
        except FileNotFoundError:
            return None
        except OSError as error:
            warnings.warn(f"cannot read the compile cache entry {path}: {error.strerror or error}", CacheWarning,
                          stacklevel=2)
            return None
        try:
            parts = decode_entry(blob)
        except (CorruptEntry, ValueError, TypeError) as problem:
            warnings.warn(f"deleted the corrupt compile cache entry {path} ({problem}); compiling again",
                          CacheWarning, stacklevel=2)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return None
        self._mark_used(path)
        return parts

    def put(self, key: str, parts: dict[str, bytes]) -> None:
        """Store ``parts`` under ``key`` (unless they alone exceed the bound), then evict down to the bound. A
        failure to write is a warning: the compilation has its result anyway."""
        chunks = encode_entry(parts)
        if sum(len(chunk) for chunk in chunks) > self.limit:
            return
        path = self.path(key)
        try:
            write_atomically(path, *chunks, mode=0o600, durable=True)
        except OSError as error:
            warnings.warn(f"cannot write the compile cache entry {path}: {error.strerror or error}", CacheWarning,
                          stacklevel=2)
            return
        self._mark_used(path)
        self.evict()

    def evict(self) -> None:
        """Delete the least recently used entries until the rest fit the bound, and temporary files left behind."""
        now = time.time()
        entries = []
        with os.scandir(self.directory) as items:
            for item in items:
                with contextlib.suppress(FileNotFoundError):
                    info = item.stat(follow_symlinks=False)
                    if item.name.endswith(_ENTRY_SUFFIX):
                        entries.append((info.st_mtime_ns, info.st_size, item.path))
                    elif item.name.endswith(".tmp") and now - info.st_mtime > _ABANDONED_AFTER_SECONDS:
                        os.unlink(item.path)
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.limit:
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            total -= size

    @staticmethod
    def _mark_used(path: str) -> None:
        now = time.time_ns()
        with contextlib.suppress(FileNotFoundError):
            os.utime(path, ns=(now, now))
