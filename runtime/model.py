"""``CompiledModel``: checks inputs, allocates outputs and calls a compiled model's native entry.

The native code comes from the in-process JIT (the entry takes the weights
blob and a workspace from here) or from a shared library built by
``fusecc model.onnx -o lib.so`` (weights embedded; it allocates its own
workspace; see ``library``). A model owns that code and frees it when closed.

Besides ``run(feeds)``, a model answers what an ``onnxruntime.InferenceSession``
user reaches for: ``get_inputs()``/``get_outputs()`` and ``run(output_names, feeds)``.
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
    """An input or output: its name, shape and numpy ``dtype`` as the native code reads or writes it.

    ``element_type`` is its ONNX element type (``float``, ``int64``, ``bfloat16``, ...). A tensor of a type numpy
    has no dtype for is stored as its bits (``dtype`` ``uint16`` for bfloat16); ``format`` then names the
    ``ml_dtypes`` type whose arrays hold those bits, and a feed of that type is accepted too.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    element_type: str
    format: str | None = None

    def describe(self) -> str:
        return f"{self.format or self.dtype}{list(self.shape)}"

    def to_json(self) -> dict:
        data = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "element_type": self.element_type}
        return data if self.format is None else {**data, "format": self.format}

    @staticmethod
    def from_json(data: dict) -> "TensorSpec":
        return TensorSpec(data["name"], tuple(data["shape"]), data["dtype"], data["element_type"], data.get("format"))

    def node_arg(self) -> "NodeArg":
        return NodeArg(self.name, list(self.shape), f"tensor({self.element_type})")

    def storage(self, array: np.ndarray) -> np.ndarray | None:
        """``array`` as the native code reads it, or None if its dtype is neither ``dtype`` nor ``format``."""
        if array.dtype == np.dtype(self.dtype):
            return array
        if self.format is not None and array.dtype == _ml_dtype(self.format):
            return array.view(self.dtype)
        return None


def _ml_dtype(name: str) -> np.dtype:
    import ml_dtypes  # imported only here: it takes a while, and whoever holds such an array has imported it
    return np.dtype(getattr(ml_dtypes, name))


@dataclass(frozen=True)
class NodeArg:
    """An input or output as ``onnxruntime.InferenceSession.get_inputs()`` describes it: ``shape`` is a list of
    sizes (a symbolic dimension by its name), ``type`` ONNX Runtime's string (``'tensor(float)'``)."""

    name: str
    shape: list[int | str]
    type: str


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


def _address(array: np.ndarray) -> int:
    """The address of ``array``'s first element: through the buffer protocol where the array is writable (a
    few times cheaper than ``array.ctypes.data``, which matters in a 0.1 ms run), else through ``ctypes``."""
    if array.flags.writeable and array.nbytes:
        return ctypes.addressof(ctypes.c_char.from_buffer(array))
    return array.ctypes.data


def _pointer_array(arrays: list[np.ndarray]):
    pointers = (ctypes.c_void_p * max(len(arrays), 1))()
    for i, array in enumerate(arrays):
        pointers[i] = _address(array)
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
    saver: Callable[[str, str | None], None] = field(repr=False)
    #: whether ``fusecc.compile`` took the model's library from the compile cache
    cache_hit: bool = False
    #: threads a run uses unless it says otherwise (None: the default, see ``runtime/threadpool.c``)
    threads: int | None = None

    def __post_init__(self):
        # the finalizer holds the native code, not the model; at interpreter exit the process frees it anyway
        self._finalizer = weakref.finalize(self, self.native.close)
        self._finalizer.atexit = False
        self._exact_feeds = [(spec.name, np.dtype(spec.dtype), spec.shape) for spec in self.inputs]
        self._output_storage = [(spec.shape, np.dtype(spec.dtype)) for spec in self.outputs]

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
        """The arrays the native code reads, in input order; raises :class:`InputError` naming what is wrong."""
        exact = self._exactly_fed(feeds)
        return exact if exact is not None else self._convert(feeds)

    def _exactly_fed(self, feeds) -> list[np.ndarray] | None:
        """The feeds as they are, if each input gets a C-contiguous array of its own dtype and shape and nothing
        else is fed (the usual call, checked without building messages); else None."""
        if type(feeds) is not dict or len(feeds) != len(self._exact_feeds):
            return None
        arrays = []
        for name, dtype, shape in self._exact_feeds:
            array = feeds.get(name)
            if (type(array) is not np.ndarray or array.shape != shape or array.dtype != dtype
                    or not array.flags.c_contiguous):
                return None
            arrays.append(array)
        return arrays

    def _convert(self, feeds: dict) -> list[np.ndarray]:
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
            array = np.asarray(feeds[spec.name])
            stored = spec.storage(array)
            if stored is None:
                accepted = spec.dtype if spec.format is None else f"{spec.format} (or its bits as {spec.dtype})"
                raise InputError(f"input {spec.name!r} expects dtype {accepted}, got {array.dtype} "
                                 f"(expected {spec.describe()})")
            if tuple(array.shape) != spec.shape:
                raise InputError(f"input {spec.name!r} expects shape {list(spec.shape)}, got {list(array.shape)}")
            arrays.append(np.ascontiguousarray(stored))
        return arrays

    def _output_indices(self, names) -> list[int]:
        """Positions of the outputs ``names`` asks for (None: all of them, in graph order)."""
        if names is None:
            return list(range(len(self.outputs)))
        if isinstance(names, str):
            raise TypeError(f"output names are a list of strings, got the string {names!r}")
        index = {spec.name: i for i, spec in enumerate(self.outputs)}
        unknown = [name for name in names if name not in index]
        if unknown:
            raise ValueError(f"unknown output {unknown[0]!r}; the model's outputs are "
                             + ", ".join(f"{s.name!r} {s.describe()}" for s in self.outputs))
        return [index[name] for name in names]

    def get_inputs(self) -> list[NodeArg]:
        """The inputs with their names, shapes and ONNX Runtime type strings, as ``InferenceSession.get_inputs()``."""
        return [spec.node_arg() for spec in self.inputs]

    def get_outputs(self) -> list[NodeArg]:
        """The outputs, as ``InferenceSession.get_outputs()``."""
        return [spec.node_arg() for spec in self.outputs]

    def run(self, *args, as_dict: bool = False, threads: int | None = None) -> list[np.ndarray] | dict[str, np.ndarray]:
        """Run the model on a dict of input arrays, called either way:

        * ``run(feeds)``: every output, in graph order;
        * ``run(output_names, feeds)``, as ``onnxruntime.InferenceSession.run``: the outputs named, in that
          order; ``None`` names them all.

        The result is a list of arrays, or with ``as_dict=True`` a dict from output name to array. A bfloat16 input
        takes an ``ml_dtypes.bfloat16`` array or its bits as ``uint16`` (likewise the other formats ``ml_dtypes``
        holds); such outputs come back as their bits. ``threads`` overrides the model's ``threads`` for this run.
        """
        if len(args) not in (1, 2):
            raise TypeError("run() takes a dict of inputs, or a list of output names (or None) and a dict of inputs")
        output_names, feeds = (None, *args) if len(args) == 1 else args
        if self.closed:
            raise ValueError("run() on a closed model")
        wanted = self._output_indices(output_names)
        arrays = self._check(feeds)
        outputs = [np.empty(shape, dtype) for shape, dtype in self._output_storage]
        in_ptrs, out_ptrs = _pointer_array(arrays), _pointer_array(outputs)
        check_threads(threads)
        self.invoke(in_ptrs, out_ptrs, threads or self.threads or 0)
        if as_dict:
            return {self.outputs[i].name: outputs[i] for i in wanted}
        return [outputs[i] for i in wanted]

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        if len(arrays) != len(self.inputs):
            raise InputError(f"the model takes {len(self.inputs)} inputs "
                             f"({', '.join(s.name for s in self.inputs)}), got {len(arrays)}")
        return self.run({spec.name: array for spec, array in zip(self.inputs, arrays)})

    def save(self, path: str, name: str | None = None) -> None:
        """Write a shared library (with a C header beside it) that ``fusecc.load`` reads back; ``name``
        prefixes its C API (default: from the file name, ``model.so`` -> ``model_run``, ...).

        A model loaded with ``fusecc.load`` writes the library it was loaded from, without a header: its C API
        keeps its prefix (``name`` may only repeat it), so the header written with it serves the copy too."""
        self.saver(str(path), name)

    def info(self) -> dict:
        return {"inputs": [s.to_json() for s in self.inputs], "outputs": [s.to_json() for s in self.outputs],
                "kernels": [k.to_json() for k in self.kernels]}


def check_threads(threads) -> None:
    """Raises ValueError unless ``threads`` is None or a positive int."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")


def _model(info: dict, invoke, native, saver, cache_hit: bool = False) -> CompiledModel:
    return CompiledModel([TensorSpec.from_json(d) for d in info["inputs"]],
                         [TensorSpec.from_json(d) for d in info["outputs"]],
                         [KernelInfo.from_json(d) for d in info["kernels"]], invoke, native, saver, cache_hit)


_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


class Threading(ctypes.Structure):
    """``fusecc_threading`` (``runtime/threadpool.h``): how one run uses threads."""

    _fields_ = [("threads", ctypes.c_int64), ("parallel_for", ctypes.c_void_p), ("host", ctypes.c_void_p)]


class _JitEntry:
    """Calls a JIT-compiled ``fusecc_main`` with the weights it holds, a fresh workspace and a ``Threading``
    kept per thread count (runs only read it, so concurrent runs may share one)."""

    def __init__(self, entry_address: int, weights: memoryview, workspace_size: int):
        self._entry = _ENTRY(entry_address)
        self._weights = np.frombuffer(weights, dtype=np.uint8) if weights else np.zeros(1, dtype=np.uint8)
        self._weights_address = self._weights.ctypes.data
        self._workspace_size = max(workspace_size, 1)
        self._threadings: dict[int, Threading] = {}

    def __call__(self, in_ptrs, out_ptrs, threads: int = 0) -> None:
        workspace = np.empty(self._workspace_size, dtype=np.uint8)
        threading = self._threadings.get(threads)
        if threading is None:
            threading = self._threadings.setdefault(threads, Threading(threads, None, None))
        self._entry(ctypes.addressof(in_ptrs), ctypes.addressof(out_ptrs), self._weights_address,
                    _address(workspace), ctypes.addressof(threading))


def from_jit(entry_address: int, weights: memoryview, info: dict, native, saver) -> CompiledModel:
    """Wrap a JIT-compiled ``fusecc_main`` (which takes the weights and a workspace) owned by ``native``."""
    return _model(info, _JitEntry(entry_address, weights, info["workspace_size"]), native, saver)


def load(path: str) -> CompiledModel:
    """Load a shared library written by ``fusecc ... -o lib.so`` or ``CompiledModel.save``; the model's ``save``
    writes a copy of it."""
    path = os.path.abspath(str(path))
    if not os.path.isfile(path):
        raise OSError(f"cannot load compiled model '{path}': no such file")
    library = SharedLibrary(path)
    return _model(library.info(), library.run, library, library.save_copy)


def from_library_bytes(data: bytes, name: str, saver, cache_hit: bool) -> CompiledModel:
    """A model from the bytes of its shared library (``name`` stands for the library in messages), saved by
    ``saver(path, name)``; ``cache_hit`` tells whether the library came from the compile cache."""
    library = SharedLibrary(name, data)
    return _model(library.info(), library.run, library, saver, cache_hit)
