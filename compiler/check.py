"""Check mode: a compiled model that runs kernel by kernel, each kernel's outputs compared with the reference.

``fusecc.compile(model, check=True)`` (or ``FUSECC_CHECK=1``) compiles the model as usual, but its kernels keep
functions of their own, and a run launches them one at a time from Python in the order ``fusecc_main`` would,
on the same buffers. After each launch, the kernel's fused region is evaluated by the reference interpreter on
the inputs the kernel actually read (constant weights as the graph holds them, not as packed for the
micro-kernel), and its outputs must match within ``RTOL`` and ``ATOL``. The first kernel that does not raises a
:class:`CheckError` naming the kernel, its ONNX nodes, the first element over tolerance and both values. Every
kernel is checked on its own inputs, so an error in one never shows up as an error in the next.

A checked run is slow (the reference is numpy, and every kernel runs on the calling thread); it is for finding
which kernel computes a wrong answer, not for serving.
"""

from __future__ import annotations

import ctypes

import numpy as np

from fusecc.dialects.kernel import AllocOp, CopyOp, FusedOp, LaunchOp, ViewOp, WeightOp
from fusecc.ir.core import ReturnOp
from fusecc.ir.printer import loc_names
from fusecc.passes.rewrite import constant_value
from fusecc.reference import run_region

#: a kernel's element passes when |got - expected| <= ATOL + RTOL * |expected| (floats; others must be equal)
RTOL = 1e-3
ATOL = 1e-4

_KERNEL = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)


class CheckError(AssertionError):
    """A kernel's output differs from the reference: ``kernel``, its ONNX ``nodes``, the ``output`` number, the
    element ``index`` and the ``got`` and ``expected`` values; the kernel's fused ``region`` and the ``inputs`` it
    read (what ``fusecc bisect`` starts from)."""

    def __init__(self, kernel: str, nodes: list[str], output: int, index: tuple, got, expected, region=None,
                 inputs=None):
        self.kernel, self.nodes, self.output, self.index, self.got, self.expected = \
            kernel, nodes, output, index, got, expected
        self.region, self.inputs = region, inputs
        super().__init__(f"check mode: kernel {kernel} (ONNX nodes {', '.join(nodes)}) computes output #{output} "
                         f"element {list(index)} as {got!r}, the reference {expected!r}")


def compile_checked(source, options):
    """``source`` compiled in check mode (``options`` as ``driver.compile_model``'s)."""
    from fusecc.driver import Options, generate_code, load_module, write_library
    from fusecc.runtime.model import _model

    regions = {}

    def keep_regions(module):
        regions.update({op.sym_name: op for op in module.main.body.ops if isinstance(op, FusedOp)})

    code = generate_code(load_module(source, options.input_shapes), options, after_fusion=keep_regions,
                         exported_kernels=True)
    library = code.jit()
    unchecked = Options(**{**options.__dict__, "check": False})

    def save(path: str, name: str | None = None) -> None:
        write_library(source, unchecked, path, name, None)

    tolerance = options.check_tolerance or (RTOL, ATOL)
    return _model(code.info, _Stepper(code, regions, library, tolerance).run, library, save)


class _Stepper:
    """Runs the launches of a lowered ``@main`` one by one, checking each against its region."""

    def __init__(self, code, regions: dict[str, FusedOp], library, tolerance: tuple[float, float]):
        self.tolerance = tolerance
        self.main = code.lowered.main
        self.weight_offsets = code.weight_offsets
        self.weights = np.frombuffer(code.weights, dtype=np.uint8) if code.weights else np.zeros(1, np.uint8)
        self.workspace_size = code.info["workspace_size"]
        self.regions = regions
        self.kernels = {op.attr("callee"): _KERNEL(library.address(op.attr("callee")))
                        for op in self.main.body.ops if isinstance(op, LaunchOp)}

    def run(self, in_ptrs, out_ptrs, threads: int = 0) -> None:
        workspace = np.empty(max(self.workspace_size, 1), dtype=np.uint8)
        inputs = len(self.main.args) - len(self.main.attr("output_names"))
        address = {id(arg): (in_ptrs[i] if i < inputs else out_ptrs[i - inputs])
                   for i, arg in enumerate(self.main.args)}
        for op in self.main.body.ops:
            if isinstance(op, WeightOp):
                address[id(op.result)] = self.weights.ctypes.data + self.weight_offsets[id(op)]
            elif isinstance(op, AllocOp):
                address[id(op.result)] = workspace.ctypes.data + op.attr("offset")
            elif isinstance(op, ViewOp):
                address[id(op.result)] = address[id(op.operands[0])] + op.attr("offset", 0)
            elif isinstance(op, LaunchOp):
                buffers = [address[id(v)] for v in op.operands]
                region = self.regions[op.attr("callee")]
                inputs = self._region_inputs(region, buffers)
                expected = run_region(region, inputs)
                pointers = (ctypes.c_void_p * len(buffers))(*buffers)
                self.kernels[op.attr("callee")](ctypes.addressof(pointers), None, 0, op.attr("extent"))
                self._compare(op.attr("callee"), region, inputs, buffers[len(region.operands):], expected)
            elif isinstance(op, CopyOp):
                source, target = op.operands
                ctypes.memmove(address[id(target)], address[id(source)], source.type.nbytes)
            elif isinstance(op, ReturnOp):
                return

    @staticmethod
    def _region_inputs(region: FusedOp, buffers: list[int]) -> list[np.ndarray]:
        """What the kernel reads, read before it runs (it may write in place): each operand's buffer, or for a
        constant the graph's array (the buffer may hold it packed)."""
        inputs = []
        for value, buffer in zip(region.operands, buffers):
            constant = constant_value(value)
            inputs.append(constant if constant is not None else _array_at(buffer, value.type).copy())
        return inputs

    def _compare(self, kernel: str, region: FusedOp, inputs: list[np.ndarray], buffers: list[int],
                 expected: list[np.ndarray]) -> None:
        for number, (buffer, result, want) in enumerate(zip(buffers, region.results, expected)):
            wrong = first_mismatch(_array_at(buffer, result.type), want, *self.tolerance)
            if wrong is not None:
                nodes = [name for op in region.members for name in (loc_names(op.loc) or [op.name])]
                raise CheckError(kernel, nodes, number, *wrong, region, inputs)


def first_mismatch(got: np.ndarray, want, rtol: float = RTOL, atol: float = ATOL) -> tuple | None:
    """The index of ``got``'s first element that differs from ``want``'s (floats: by more than ``atol + rtol *
    |want|``, NaN matching NaN; others: at all), and both values; None when none does."""
    want = np.asarray(want).reshape(got.shape)
    wrong = ~np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True) if got.dtype.kind == "f" else got != want
    if not wrong.any():
        return None
    index = np.unravel_index(int(np.flatnonzero(wrong)[0]), got.shape)
    return tuple(int(i) for i in index), got[index].item(), want[index].item()


def _array_at(address: int, tensor_type) -> np.ndarray:
    """The tensor of ``tensor_type`` stored at ``address`` (a view, not a copy)."""
    dtype = tensor_type.dtype.numpy
    raw = (ctypes.c_char * max(tensor_type.nbytes, 1)).from_address(address)
    return np.frombuffer(raw, dtype=dtype, count=int(np.prod(tensor_type.shape, dtype=np.int64))) \
        .reshape(tensor_type.shape)
