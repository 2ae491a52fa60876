"""The thread pool (``runtime/threadpool.c``) that a model's entry launches its kernels through.

A shared library compiles the pool's source in (``aot``), its symbols hidden, so each library has a pool of its
own. The JIT's models share one pool per process: :func:`load_for_jit` compiles the source with the host's C
compiler into a private helper library once (kept in the compile cache when it is on), loads it and hands its
functions to LLVM's symbol resolution. Where there is no C compiler, :class:`SerialPool` stands in (with a
warning): the same functions compiled from LLVM IR, running every kernel on the calling thread.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
import threading
import warnings

from . import target

#: the pool's entry that a model's entry launches kernels through
PARALLEL_FOR = "fusecc_parallel_for"
#: the pool's functions that generated code and C APIs call
FUNCTIONS = (PARALLEL_FOR, "fusecc_default_threads", "fusecc_set_default_threads")


def _runtime_dir() -> str:
    """Where ``threadpool.c`` and its header are: the directory of the ``fusecc.runtime`` package."""
    from fusecc import runtime
    return os.path.dirname(os.path.abspath(runtime.__file__))


def source_path() -> str:
    return os.path.join(_runtime_dir(), "threadpool.c")


def c_flags() -> list[str]:
    """Flags to compile ``threadpool.c`` or a file that includes ``threadpool.h``."""
    return ["-std=gnu11", f"-I{_runtime_dir()}", "-pthread"]


class ThreadPoolWarning(UserWarning):
    """The JIT's thread pool could not be built; its models run on one thread."""


#: the pool's functions for a process without a C compiler: each kernel runs whole on the calling thread
SERIAL_POOL_IR = """
define void @fusecc_parallel_for(ptr %threading, ptr %kernel, ptr %bufs, i64 %extent, i64 %work) {
  call void %kernel(ptr %bufs, ptr null, i64 0, i64 %extent)
  ret void
}
define i32 @fusecc_default_threads() {
  ret i32 1
}
define void @fusecc_set_default_threads(i32 %threads) {
  ret void
}
"""


class SerialPool:
    """The pool's functions compiled from ``SERIAL_POOL_IR`` and registered with LLVM, in place of the C pool
    where no C compiler can build it."""

    def __init__(self):
        from llvmlite import binding as llvm

        self._library = target.JitLibrary(target.parse_and_optimize(SERIAL_POOL_IR, 2))
        for name in FUNCTIONS:
            llvm.add_symbol(name, self._library.address(name))
        self.fusecc_default_threads = ctypes.CFUNCTYPE(ctypes.c_int)(self._library.address("fusecc_default_threads"))


_loaded: ctypes.CDLL | SerialPool | None = None
_loading = threading.Lock()


def load_for_jit(cache: bool = True) -> ctypes.CDLL | SerialPool:
    """The pool as a helper library of this process, its functions registered with LLVM. Built on first use,
    or taken from the compile cache (unless ``cache`` is False), keyed by the source, the header and the
    compiler command; a :class:`SerialPool` where there is no C compiler."""
    global _loaded
    with _loading:
        if _loaded is None:
            try:
                target.find_c_compiler()
            except target.CodegenError:
                warnings.warn("no C compiler to build the thread pool with (set CC or install gcc/clang): models "
                              "compiled in this process run every kernel on the calling thread", ThreadPoolWarning,
                              stacklevel=2)
                _loaded = SerialPool()
            else:
                _loaded = _load(cache)
        return _loaded


def _load(cache: bool) -> ctypes.CDLL:
    from llvmlite import binding as llvm

    from fusecc.cache import open_cache

    directory = tempfile.mkdtemp(prefix="fusecc_pool_")
    path = os.path.join(directory, "libfusecc_pool.so")
    command = target.find_c_compiler() + ["-shared", "-fPIC", "-O2", *target.baseline_c_flags(), *c_flags(),
                                          "-DFUSECC_POOL_API=__attribute__((visibility(\"default\")))",
                                          "-o", path, source_path()]
    digest = hashlib.sha256(b"fusecc thread pool\0" + " ".join(command[:-3] + command[-1:]).encode())
    for name in ("threadpool.c", "threadpool.h"):
        with open(os.path.join(_runtime_dir(), name), "rb") as handle:
            digest.update(handle.read())
    key, cache = digest.hexdigest(), open_cache() if cache else None
    try:
        entry = cache.get(key) if cache is not None else None
        if entry is not None:
            with open(path, "wb") as handle:
                handle.write(entry["library"])
        else:
            _build(command)
            if cache is not None:
                with open(path, "rb") as handle:
                    cache.put(key, {"library": handle.read()})
        library = ctypes.CDLL(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(directory)
    for name in FUNCTIONS:
        llvm.add_symbol(name, ctypes.cast(library[name], ctypes.c_void_p).value)
    return library


def default_threads(cache: bool = True) -> int:
    """The threads a run uses unless told otherwise, as the pool counts them: ``FUSECC_NUM_THREADS``, else the
    physical cores of this process's CPU affinity within its cgroup's quota. ``cache`` as for
    :func:`load_for_jit`."""
    return int(load_for_jit(cache).fusecc_default_threads())


def _build(command: list[str]) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=300)
    except OSError as exc:
        raise target.CodegenError(f"cannot run the C compiler to build the thread pool: {exc}") from None
    if done.returncode != 0:
        raise target.CodegenError(f"building the thread pool failed (exit {done.returncode}): "
                                  f"{' '.join(command)}\n{done.stderr.strip()}")
