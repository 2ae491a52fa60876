"""``CompiledModel``: checks inputs, allocates outputs and calls a compiled model's native entry.

The native code comes from the in-process JIT (the entry takes the weights
blob and a workspace from here) or from a shared library built by
``fusecc model.onnx -o lib.so`` (weights embedded; it allocates its own
workspace; see ``library``). A model owns that code and frees it when closed.
This module never imports the compiler.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .library import SharedLibrary


class InputError(ValueError):
    """A feed does not match the model's inputs (name, shape or dtype)."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str

    def describe(self) -> str:
        return f"{self.dtype}{list(self.shape)}"

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @staticmethod
    def from_json(data: dict) -> "TensorSpec":
        return TensorSpec(data["name"], tuple(data["shape"]), data["dtype"])


@dataclass(frozen=True)
class KernelInfo:
    """One native kernel: its name, the fusion pattern and the ONNX nodes it computes."""

    name: str
    pattern: str
    nodes: tuple[str, ...]
    extent: int

    def to_json(self) -> dict:
        return {"name": self.name, "pattern": self.pattern, "nodes": list(self.nodes), "extent": self.extent}

    @staticmethod
    def from_json(data: dict) -> "KernelInfo":
        return KernelInfo(data["name"], data["pattern"], tuple(data["nodes"]), data["extent"])


_PTR_ARRAY = ctypes.c_void_p


def _pointer_array(arrays: list[np.ndarray]):
    pointers = (_PTR_ARRAY * max(len(arrays), 1))()
    for i, array in enumerate(arrays):
        pointers[i] = array.ctypes.data
    return pointers


@dataclass(eq=False)
class CompiledModel:
    """A compiled model: ``run(feeds)`` or ``model(*arrays)`` returns the outputs in graph order.

    It owns its native code (``native``: a JIT engine or a shared library, anything with ``close()``) and
    frees it on :meth:`close`, at the end of a ``with`` block, or when it is garbage-collected, whichever
    comes first. Closing while another thread runs the model is not allowed.
    """

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    kernels: list[KernelInfo]
    invoke: Callable[[object, object], None] = field(repr=False)
    native: object = field(repr=False)
    saver: Callable[[str, str | None], None] | None = field(default=None, repr=False)

    def __post_init__(self):
        # the finalizer holds the native code, not the model; at interpreter exit the process frees it anyway
        self._finalizer = weakref.finalize(self, self.native.close)
        self._finalizer.atexit = False

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Free the native code now; ``run`` raises afterwards. Closing twice is harmless."""
        self._finalizer()

    def __enter__(self) -> "CompiledModel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check(self, feeds: dict) -> list[np.ndarray]:
        if not isinstance(feeds, dict):
            raise InputError("run() takes a dict mapping input names to numpy arrays")
        known = {spec.name for spec in self.inputs}
        unknown = sorted(set(feeds) - known)
        if unknown:
            raise InputError(f"unknown input {unknown[0]!r}; the model's inputs are "
                             + ", ".join(f"{s.name!r} {s.describe()}" for s in self.inputs))
        arrays = []
        for spec in self.inputs:
            if spec.name not in feeds:
                raise InputError(f"missing input {spec.name!r} (expected {spec.describe()})")
            value = feeds[spec.name]
            array = np.asarray(value)
            if array.dtype != np.dtype(spec.dtype):
                raise InputError(f"input {spec.name!r} expects dtype {spec.dtype}, got {array.dtype} "
                                 f"(expected {spec.describe()})")
            if tuple(array.shape) != spec.shape:
                raise InputError(f"input {spec.name!r} expects shape {list(spec.shape)}, got {list(array.shape)}")
            arrays.append(np.ascontiguousarray(array))
        return arrays

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.closed:
            raise ValueError("run() on a closed model")
        arrays = self._check(feeds)
        outputs = [np.empty(spec.shape, dtype=spec.dtype) for spec in self.outputs]
        in_ptrs, out_ptrs = _pointer_array(arrays), _pointer_array(outputs)
        self.invoke(in_ptrs, out_ptrs)
        return outputs

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        if len(arrays) != len(self.inputs):
            raise InputError(f"the model takes {len(self.inputs)} inputs "
                             f"({', '.join(s.name for s in self.inputs)}), got {len(arrays)}")
        return self.run({spec.name: array for spec, array in zip(self.inputs, arrays)})

    def save(self, path: str, name: str | None = None) -> None:
        """Write a shared library (with a C header beside it) that ``fusecc.load`` reads back; ``name``
        prefixes its C API (default: from the file name, ``model.so`` -> ``model_run``, ...)."""
        if self.saver is None:
            raise RuntimeError("this model was loaded from a shared library; copy that file instead")
        self.saver(str(path), name)

    def info(self) -> dict:
        return {"inputs": [s.to_json() for s in self.inputs], "outputs": [s.to_json() for s in self.outputs],
                "kernels": [k.to_json() for k in self.kernels]}


def _model(info: dict, invoke, native, saver) -> CompiledModel:
    return CompiledModel([TensorSpec.from_json(d) for d in info["inputs"]],
                         [TensorSpec.from_json(d) for d in info["outputs"]],
                         [KernelInfo.from_json(d) for d in info["kernels"]], invoke, native, saver)


_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


def from_jit(entry_address: int, weights: bytes, info: dict, native, saver=None) -> CompiledModel:
    """Wrap a JIT-compiled ``fusecc_main`` (which takes the weights and a workspace) owned by ``native``."""
    entry = _ENTRY(entry_address)
    blob = np.frombuffer(weights, dtype=np.uint8) if weights else np.zeros(1, dtype=np.uint8)
    workspace_size = info["workspace_size"]

    def invoke(in_ptrs, out_ptrs):
        workspace = np.empty(max(workspace_size, 1), dtype=np.uint8)
        entry(ctypes.addressof(in_ptrs), ctypes.addressof(out_ptrs), blob.ctypes.data, workspace.ctypes.data)

    return _model(info, invoke, native, saver)


def load(path: str) -> CompiledModel:
    """Load a shared library written by ``fusecc ... -o lib.so`` or ``CompiledModel.save``."""
    path = os.path.abspath(str(path))
    if not os.path.isfile(path):
        raise OSError(f"cannot load compiled model '{path}': no such file")
    library = SharedLibrary(path)
    return _model(library.info(), library.run, library, None)
