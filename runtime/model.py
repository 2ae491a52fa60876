"""``CompiledModel``: checks inputs, allocates outputs and calls a compiled model's native entry.

The native code comes from the in-process JIT (the entry takes the weights
blob and a workspace from here) or from a shared library built by
``fusecc model.onnx -o lib.so`` (weights embedded; it allocates its own
workspace). This module never imports the compiler.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


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


@dataclass
class CompiledModel:
    """A compiled model: ``run(feeds)`` or ``model(*arrays)`` returns the outputs in graph order."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    kernels: list[KernelInfo]
    invoke: Callable[[object, object], None] = field(repr=False)
    saver: Callable[[str], None] | None = field(default=None, repr=False)
    keepalive: object = field(default=None, repr=False)

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

    def save(self, path: str) -> None:
        """Write a shared library (with a C header beside it) that ``fusecc.load`` reads back."""
        if self.saver is None:
            raise RuntimeError("this model was loaded from a shared library; copy that file instead")
        self.saver(str(path))

    def info(self) -> dict:
        return {"inputs": [s.to_json() for s in self.inputs], "outputs": [s.to_json() for s in self.outputs],
                "kernels": [k.to_json() for k in self.kernels]}


_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


def from_jit(entry_address: int, weights: bytes, workspace_size: int, info: dict, keepalive,
             saver=None) -> CompiledModel:
    """Wrap a JIT-compiled ``fusecc_main`` (which takes the weights and a workspace)."""
    entry = _ENTRY(entry_address)
    blob = np.frombuffer(weights, dtype=np.uint8) if weights else np.zeros(1, dtype=np.uint8)
    weights_ptr = blob.ctypes.data

    def invoke(in_ptrs, out_ptrs):
        workspace = np.empty(max(workspace_size, 1), dtype=np.uint8)
        entry(ctypes.addressof(in_ptrs), ctypes.addressof(out_ptrs), weights_ptr, workspace.ctypes.data)

    return CompiledModel([TensorSpec.from_json(d) for d in info["inputs"]],
                         [TensorSpec.from_json(d) for d in info["outputs"]],
                         [KernelInfo.from_json(d) for d in info["kernels"]], invoke, saver, (keepalive, blob))


def _private_copy(path: str) -> str:
    """A copy of the library under a fresh name: the dynamic loader returns an already-loaded
    library for a path it has seen, which would keep serving an older build of the same file."""
    handle, copy = tempfile.mkstemp(prefix="fusecc_model_", suffix=".so")
    os.close(handle)
    shutil.copyfile(path, copy)
    return copy


def load(path: str) -> CompiledModel:
    """Load a shared library written by ``fusecc ... -o lib.so`` or ``CompiledModel.save``."""
    path = os.path.abspath(str(path))
    if not os.path.isfile(path):
        raise OSError(f"cannot load compiled model '{path}': no such file")
    copy = _private_copy(path)
    try:
        library = ctypes.CDLL(copy)
    except OSError as exc:
        raise OSError(f"cannot load compiled model '{path}': {exc}") from None
    finally:
        os.unlink(copy)
    try:
        info_fn = library.fusecc_model_info
        run_fn = library.fusecc_run
    except AttributeError:
        raise OSError(f"'{path}' is not a fusecc model library (no fusecc_model_info symbol)") from None
    info_fn.restype = ctypes.c_char_p
    info = json.loads(info_fn().decode())
    run_fn.restype = ctypes.c_int
    run_fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p]

    def invoke(in_ptrs, out_ptrs):
        status = run_fn(ctypes.addressof(in_ptrs), ctypes.addressof(out_ptrs))
        if status != 0:
            raise MemoryError(f"'{path}': fusecc_run failed with status {status} (workspace allocation)")

    return CompiledModel([TensorSpec.from_json(d) for d in info["inputs"]],
                         [TensorSpec.from_json(d) for d in info["outputs"]],
                         [KernelInfo.from_json(d) for d in info["kernels"]], invoke, None, library)
