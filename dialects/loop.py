"""The ``loop`` dialect: loops over flat, row-major buffers with explicit loads and stores.

Kernels are functions whose arguments are memrefs followed by two ``index``
arguments ``begin`` and ``end``: the range of the outermost (parallel) loop a
caller asks for, so a runtime can split that loop across threads.
"""

from __future__ import annotations

from fusecc.ir.core import Block, Operation
from fusecc.ir.types import DType, MemRefType, ScalarType

from .base import attr, declared_attrs


class LoopOp(Operation):
    def verify_(self) -> None:
        for field in declared_attrs(type(self)):
            field.check(self)


def _is_index(value) -> bool:
    return isinstance(value.type, ScalarType) and value.type.dtype in (DType.INDEX, DType.I64)


class ForOp(LoopOp):
    """for (i = lo; i < hi; i += step) body(i); ``parallel`` marks the loop a runtime may split.

    ``interleave`` (0: the code generator's choice) is how many vector
    iterations the code generator should run side by side; ``vectorize`` false
    tells it not to vectorize this loop itself (its inner loops it still may).
    """

    name = "loop.for"
    side_effects = True
    num_operands = 2
    num_results = 0
    num_regions = 1
    step = attr(int, 1)
    parallel = attr(bool, False)
    interleave = attr(int, 0)
    vectorize = attr(bool, True)

    @property
    def body(self) -> Block:
        return self.regions[0].block

    def verify_(self) -> None:
        super().verify_()
        if not all(_is_index(v) for v in self.operands):
            raise self.error("bounds must be index values")
        if len(self.body.args) != 1 or not _is_index(self.body.args[0]):
            raise self.error("body takes exactly one index argument")
        if self.step <= 0:
            raise self.error(f"step must be positive, got {self.step}")
        if self.interleave < 0:
            raise self.error(f"interleave must not be negative, got {self.interleave}")


class LoadOp(LoopOp):
    """Reads element ``index`` (linear, row-major) of a buffer."""

    name = "loop.load"
    num_operands = 2
    fresh_each_time = True

    def verify_(self) -> None:
        buffer, index = self.operands
        if not isinstance(buffer.type, MemRefType) or not _is_index(index):
            raise self.error("expects (memref, index) operands")
        if self.result.type != ScalarType(buffer.type.dtype):
            raise self.error(f"loads {buffer.type.dtype}, not {self.result.type}")


class StoreOp(LoopOp):
    """Writes a scalar to element ``index`` of a buffer."""

    name = "loop.store"
    side_effects = True
    num_operands = 3
    num_results = 0

    def verify_(self) -> None:
        value, buffer, index = self.operands
        if not isinstance(buffer.type, MemRefType) or not _is_index(index):
            raise self.error("expects (value, memref, index) operands")
        if value.type != ScalarType(buffer.type.dtype):
            raise self.error(f"stores {value.type} into {buffer.type}")


class AllocaOp(LoopOp):
    """A small buffer on the kernel's stack (accumulators)."""

    name = "loop.alloca"
    num_operands = 0
    fresh_each_time = True

    def verify_(self) -> None:
        if not isinstance(self.result.type, MemRefType) or not self.result.type.is_static:
            raise self.error("allocates a static memref")
