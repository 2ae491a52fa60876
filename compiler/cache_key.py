"""The key of a build in the compile cache: a SHA-256 of everything the shared library depends on.

* the model (:class:`ModelSource`): a file's bytes, an ``onnx.ModelProto`` serialized, the data of external-data
  files included; never a path or a modification time;
* the options that change the code: the optimisation level, the input shapes, and each phase's pass pipeline with
  the passes' options (fusion on or off and the vector width among them);
* the library's file name and C API prefix, which its code and header spell out;
* fusecc's version, and a digest of the compiler's own files, so an edited checkout never serves stale code;
* the llvmlite and LLVM versions, the target triple, CPU name and features (``codegen.fingerprint``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass

#: bytes every external-data reference holds (the ``location`` key of a ``StringStringEntryProto``: field 1,
#: length 8); a model file without them has no external data
_EXTERNAL_DATA_MARK = b"\n\x08location"


@dataclass(frozen=True)
class ModelSource:
    """A model as a compilation reads it: ``content``, the bytes that identify it, and ``model``, what the
    frontend is given: the path of the file ``content`` was read from (so errors name it), or the model itself."""

    content: bytes
    model: object

    @staticmethod
    def read(source) -> "ModelSource | None":
        """The content of a path, bytes or ``onnx.ModelProto`` (a ``ModelSource`` is its own); None for a file that
        cannot be read (the frontend says why when it reads it)."""
        if isinstance(source, ModelSource):
            return source
        if isinstance(source, (bytes, bytearray, memoryview)):
            return ModelSource(bytes(source), bytes(source))
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            try:
                with open(path, "rb") as handle:
                    content = handle.read()
            except OSError:
                return None
            if not path.endswith(".fir") and _EXTERNAL_DATA_MARK in content:
                from .frontend.onnx_import import load_model
                proto = load_model(path)  # with its external data
                return ModelSource(proto.SerializeToString(deterministic=True), proto)
            return ModelSource(content, path)
        import onnx
        if isinstance(source, onnx.ModelProto):
            return ModelSource(source.SerializeToString(deterministic=True), source)
        raise TypeError(f"expected an onnx.ModelProto, a path or bytes, got {type(source).__name__}")

    @property
    def path(self) -> str | None:
        return self.model if isinstance(self.model, str) else None

    def unchanged(self) -> bool:
        """Whether the file this was read from still holds ``content`` (True when it was not read from a file)."""
        if self.path is None:
            return True
        try:
            with open(self.path, "rb") as handle:
                return handle.read() == self.content
        except OSError:
            return False

    def in_memory(self) -> "ModelSource":
        """The same model, no longer read from its file (a ``.fir`` file is, as only a path reaches its parser)."""
        if self.path is None or self.path.endswith(".fir"):
            return self
        return ModelSource(self.content, self.content)


@functools.lru_cache(maxsize=1)
def compiler_digest() -> str:
    """SHA-256 of the compiler's files (packages ``fusecc``, ``fusecc.dialects`` and ``fusecc.runtime``: Python,
    grammar, and the C linked into libraries)."""
    digest = hashlib.sha256()
    for package in ("fusecc", "fusecc.dialects", "fusecc.runtime"):
        for root in importlib.util.find_spec(package).submodule_search_locations:
            for directory, subdirectories, files in os.walk(root):
                subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
                for name in sorted(f for f in files if f.endswith((".py", ".lark", ".c", ".h"))):
                    path = os.path.join(directory, name)
                    digest.update(os.path.relpath(path, root).encode() + b"\0")
                    with open(path, "rb") as handle:
                        digest.update(handle.read() + b"\0")
    return digest.hexdigest()


def cache_key(content: bytes, *, opt_level: int, input_shapes: dict | None, pipelines: dict[str, str],
              library: str, prefix: str) -> str:
    """The key of the library named ``library`` (a file name) with C API ``prefix``, built from the model
    ``content`` with these options, by this fusecc for the target the environment chooses."""
    import fusecc
    from .codegen.fingerprint import codegen_fingerprint

    shapes = {name: [None if d is None else int(d) for d in dims] for name, dims in (input_shapes or {}).items()}
    facts = {"model": hashlib.sha256(content).hexdigest(), "opt_level": opt_level, "input_shapes": shapes,
             "pipelines": pipelines, "library": library, "prefix": prefix, "fusecc": fusecc.__version__,
             "compiler": compiler_digest(), "codegen": codegen_fingerprint(opt_level)}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()
