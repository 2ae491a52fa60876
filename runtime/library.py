"""A model's shared library, opened for one ``CompiledModel``: its C API found in its symbol table, every
run's status checked, and the mapping released by ``close()``.

The dynamic loader returns the library it already loaded for a path it has seen, which would keep
serving an older build of a file rebuilt in place; so each load opens a private copy, removed as soon
as it is mapped, and ``close()`` unmaps it with ``dlclose``. The copy stays open until then, so
:meth:`SharedLibrary.save_copy` writes exactly the bytes that were loaded.
"""

from __future__ import annotations

import _ctypes
import ctypes
import json
import mmap
import os
import shutil
import struct
import tempfile

from .files import write_atomically

#: the functions of the C API, after ``<prefix>_``
API_FUNCTIONS = ("run", "run_with_workspace", "workspace_size", "model_info", "last_error", "run_with_threads",
                 "set_num_threads", "num_threads", "set_parallel_for")

_ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
_SECTION_HEADER = struct.Struct("<IIQQQQIIQQ")
_SYMBOL = struct.Struct("<IBBHQQ")
_SHT_DYNSYM = 11
_STT_FUNC = 2


class RunError(RuntimeError):
    """A library refused a run: the status it returned and its ``<prefix>_last_error()`` message."""


def _read_exported_functions(data, path: str) -> set[str]:
    header = _ELF_HEADER.unpack_from(data)
    ident, section_offset, entry_size, count = header[0], header[6], header[11], header[12]
    if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
        raise OSError(f"'{path}' is not a little-endian ELF64 shared library")
    sections = [_SECTION_HEADER.unpack_from(data, section_offset + i * entry_size) for i in range(count)]
    names = set()
    for _, kind, _, _, offset, size, link, *_ in sections:
        if kind != _SHT_DYNSYM:
            continue
        strings = sections[link][4]
        for at in range(offset, offset + size, _SYMBOL.size):
            name, info, _, section, _, _ = _SYMBOL.unpack_from(data, at)
            if section != 0 and info & 0xF == _STT_FUNC:
                start = strings + name
                names.add(data[start:data.find(b"\0", start)].decode())
    return names


def exported_functions(path: str, label: str | None = None) -> set[str]:
    """The functions an ELF64 little-endian shared library defines in its dynamic symbol table (errors name the
    library ``label``, by default its path)."""
    label = label or path
    try:
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _read_exported_functions(data, label)
    except (ValueError, IndexError, struct.error, UnicodeDecodeError) as exc:
        raise OSError(f"cannot read the symbols of '{label}': {exc}") from None


def api_prefix(path: str, label: str | None = None) -> str:
    """The prefix of the one fusecc model API that ``path`` exports (``<prefix>_model_info`` and the rest); errors
    name the library ``label``, by default its path."""
    label = label or path
    functions = exported_functions(path, label)
    prefixes = sorted(name[:-len("_model_info")] for name in functions if name.endswith("_model_info"))
    if len(prefixes) != 1:
        found = f"several ({', '.join(prefixes)})" if prefixes else "no <name>_model_info function"
        raise OSError(f"'{label}' is not a fusecc model library: it exports {found}")
    missing = [f"{prefixes[0]}_{name}" for name in API_FUNCTIONS if f"{prefixes[0]}_{name}" not in functions]
    if missing:
        raise OSError(f"'{label}' lacks {', '.join(missing)}: rebuild it with this version of fusecc")
    return prefixes[0]


def _private_copy(source: str | bytes) -> str:
    """A copy of the library at the path ``source``, or of the library bytes ``source``, under a fresh name (see
    the module's docstring)."""
    handle, copy = tempfile.mkstemp(prefix="fusecc_model_", suffix=".so")
    if isinstance(source, str):
        os.close(handle)
        shutil.copyfile(source, copy)
    else:
        with os.fdopen(handle, "wb") as file:
            file.write(source)
    return copy


class SharedLibrary:
    """One private mapping of a model library; :meth:`close` unmaps it (no call may run then or after)."""

    def __init__(self, path: str, data: bytes | None = None):
        """Map the library at ``path``, or the library whose bytes are ``data`` (``path`` then only names it)."""
        self.path = path
        copy = _private_copy(path if data is None else data)
        try:
            self.prefix = api_prefix(copy, label=path)
            self._loaded_bytes = open(copy, "rb")
            try:
                self._dll = ctypes.CDLL(copy)
            except OSError as exc:
                self._loaded_bytes.close()
                raise OSError(f"cannot load compiled model '{path}': {exc}") from None
        finally:
            os.unlink(copy)
        self._run = self._function("run", ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p])
        self._run_with_threads = self._function("run_with_threads", ctypes.c_int,
                                                [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int])
        self._model_info = self._function("model_info", ctypes.c_char_p, [])
        self._last_error = self._function("last_error", ctypes.c_char_p, [])

    def _function(self, name: str, restype, argtypes):
        function = self._dll[f"{self.prefix}_{name}"]
        function.restype, function.argtypes = restype, argtypes
        return function

    def info(self) -> dict:
        """What ``<prefix>_model_info()`` describes: inputs, outputs, kernels, workspace size."""
        return json.loads(self._model_info().decode())

    def run(self, in_ptrs, out_ptrs, threads: int = 0) -> None:
        """``<prefix>_run`` on arrays of input and output pointers, or ``<prefix>_run_with_threads`` given a
        number of ``threads``; a non-zero status raises :class:`RunError`."""
        if threads:
            function = "run_with_threads"
            status = self._run_with_threads(ctypes.addressof(in_ptrs), ctypes.addressof(out_ptrs), threads)
        else:
            function = "run"
            status = self._run(ctypes.addressof(in_ptrs), ctypes.addressof(out_ptrs))
        if status != 0:
            message = self._last_error().decode(errors="replace")
            raise RunError(f"'{self.path}': {self.prefix}_{function} returned {status}: {message}")

    def save_copy(self, path: str, name: str | None = None) -> None:
        """Write the library as it was loaded to ``path`` (replacing any file there at once). Its C API keeps its
        prefix, so ``name``, if given, must be that prefix."""
        if name is not None and name != self.prefix:
            raise ValueError(f"'{self.path}' exports the C API {self.prefix}_run, ...; a copy keeps that prefix, "
                             f"so it cannot be saved with name={name!r} (compile the model again for another)")
        if self._dll is None:
            raise ValueError(f"save() on a closed model ('{self.path}')")
        with mmap.mmap(self._loaded_bytes.fileno(), 0, access=mmap.ACCESS_READ) as data:
            write_atomically(path, data, mode=0o777)

    def close(self) -> None:
        """``dlclose`` the library, once."""
        dll, self._dll = self._dll, None
        if dll is not None:
            _ctypes.dlclose(dll._handle)
            self._loaded_bytes.close()
