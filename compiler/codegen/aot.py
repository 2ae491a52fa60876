"""Ahead-of-time output: a shared library with the weights embedded, its C API and its C header.

The model's object (internal kernels, ``fusecc_main``) and an object of its weights are linked with the C
source of its API (``c_api``) and the thread pool (``pool``), so the library exports only its ``<prefix>_`` functions
(``<prefix>_run`` and the others ``c_api`` lists), and the header's macros
start with ``<PREFIX>_``: any number of models share a process or a program. The prefix is chosen with
``fusecc --name`` or ``save(path, name=...)``, else derived from the file name (``model.so`` -> ``model``).

Weights enter an object of their own through ``.incbin`` in module-level assembly
(never as a textual LLVM array), so a 100 MB model links in seconds.
"""

from __future__ import annotations

import os
import re
import tempfile

from . import c_api, pool, target
from .llvm_emit import ENTRY

WEIGHTS_SYMBOL = "fusecc_weights"

_C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def default_prefix(out_path: str) -> str:
    """The API prefix for a library file: its name without the last extension, each character outside
    ``[A-Za-z0-9_]`` replaced by ``_``, and ``model_`` in front if that is empty or starts with a digit."""
    stem = re.sub(r"[^A-Za-z0-9_]", "_", os.path.splitext(os.path.basename(out_path))[0])
    return stem if stem and not stem[0].isdigit() else "model_" + stem


def api_prefix(name: str | None, out_path: str) -> str:
    """``name``, or the default for ``out_path``; raises CodegenError if it is not a C identifier."""
    prefix = default_prefix(out_path) if name is None else name
    if not _C_IDENTIFIER.match(prefix):
        raise target.CodegenError(f"the library name {prefix!r} is not a C identifier; its functions are "
                                  f"{prefix}_run, ... (choose one with --name or save(path, name=...))")
    return prefix


def build_shared_library(code: tuple[bytes, ...], weights_object, requirements, weights_blob: memoryview, info: dict,
                         out_path: str, name: str | None = None) -> None:
    """Link the model's objects ``code`` (from ``generate.GeneratedCode``, the entry's first) with the object that
    ``weights_object(path)`` makes of the weights file and with its C API into ``out_path``, and write the header
    ``<stem>.h`` beside it. ``requirements`` (``cpu.CpuRequirements``) is what the code needs of a CPU, which the
    library checks when loaded; ``name`` prefixes the API (see :func:`api_prefix`)."""
    prefix = api_prefix(name, out_path)
    c_api.buffers(info)  # sizes that do not fit in int64 fail before anything is compiled
    header_path = os.path.splitext(out_path)[0] + ".h"
    with tempfile.TemporaryDirectory(prefix="fusecc_aot_") as tmp:
        blob_path = os.path.join(tmp, "weights.bin")
        with open(blob_path, "wb") as handle:
            handle.write(weights_blob or b"\0")
        weights_path = os.path.join(tmp, "weights.o")
        with open(weights_path, "wb") as handle:
            handle.write(weights_object(blob_path))
        api = c_api.CApi(prefix, os.path.basename(out_path), os.path.basename(header_path), info, requirements)
        source = api.write_source(tmp, ENTRY, WEIGHTS_SYMBOL)
        parts = []
        for number, part in enumerate(code[1:], 1):
            parts.append(os.path.join(tmp, f"part{number}.o"))
            with open(parts[-1], "wb") as handle:
                handle.write(part)
        target.link_shared_library(code[0], out_path, [*parts, weights_path, source, pool.source_path()],
                                   [*target.baseline_c_flags(), *pool.c_flags()])
    with open(header_path, "w") as handle:
        handle.write(api.header_text())
