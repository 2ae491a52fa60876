"""The ``kernel`` dialect: fused regions at the graph level, kernel launches after lowering.

``kernel.fused`` holds the tensor ops it fuses in one region whose block
arguments stand for the op's operands and whose ``kernel.yield`` gives its
results; it lowers to exactly one native kernel. After lowering, the graph
function holds buffers (``kernel.alloc``, ``kernel.weight``, ``kernel.view``)
and ``kernel.launch`` calls, one per fused region.
"""

from __future__ import annotations

from fusecc.ir.attributes import DenseAttr
from fusecc.ir.core import Block, Operation
from fusecc.ir.types import MemRefType, TensorType

from .base import attr, declared_attrs


class KernelOp(Operation):
    def verify_(self) -> None:
        for field in declared_attrs(type(self)):
            field.check(self)


class FusedOp(KernelOp):
    """A fused region: its body computes the results from the block arguments."""

    name = "kernel.fused"
    num_results = None
    num_regions = 1
    #: the pattern of the region (``elementwise``, ``reduction``, ``compute``, ...)
    pattern = attr(str)
    #: the name of the region's kernel function (given by ``outline-kernels``, see ``passes.outline.name_kernels``)
    sym_name = attr(str, "")

    @property
    def body(self) -> Block:
        return self.regions[0].block

    def verify_(self) -> None:
        super().verify_()
        body = self.body
        if len(body.args) != len(self.operands):
            raise self.error(f"region has {len(body.args)} arguments for {len(self.operands)} operands")
        for index, (arg, operand) in enumerate(zip(body.args, self.operands)):
            if arg.type != operand.type:
                raise self.error(f"region argument #{index} is {arg.type} but operand is {operand.type}")
        if not body.ops or body.ops[-1].name != "kernel.yield":
            raise self.error("region must end with kernel.yield")
        yielded = [v.type for v in body.ops[-1].operands]
        if yielded != [r.type for r in self.results]:
            raise self.error("kernel.yield types do not match the op's results")

    @property
    def members(self) -> list[Operation]:
        return [op for op in self.body.ops if op.name not in ("kernel.yield", "tensor.constant")]


class YieldOp(KernelOp):
    """Ends a fused region, giving its results."""

    name = "kernel.yield"
    side_effects = True
    num_results = 0


class AllocOp(KernelOp):
    """A workspace buffer; ``offset`` (bytes into the workspace) is set by buffer planning."""

    name = "kernel.alloc"
    num_operands = 0
    fresh_each_time = True
    offset = attr(int, -1)

    def verify_(self) -> None:
        super().verify_()
        if not isinstance(self.result.type, MemRefType) or not self.result.type.is_static:
            raise self.error(f"allocates a static memref, not {self.result.type}")


class WeightOp(KernelOp):
    """A read-only buffer holding a constant; codegen places it in the weights blob."""

    name = "kernel.weight"
    num_operands = 0
    value = attr(DenseAttr)

    def verify_(self) -> None:
        super().verify_()
        if self.result.type.shape != self.value.type.shape or self.result.type.dtype != self.value.type.dtype:
            raise self.error(f"buffer {self.result.type} does not match its constant {self.value.type}")


class ViewOp(KernelOp):
    """Bytes of its operand from ``offset`` on, under another shape: a reshape, or a slice of a
    concatenation's buffer that a producer writes in place. No copy."""

    name = "kernel.view"
    num_operands = 1
    offset = attr(int, 0)

    def verify_(self) -> None:
        super().verify_()
        src, dst = self.operands[0].type, self.result.type
        if src.dtype != dst.dtype or self.offset < 0 or self.offset + dst.nbytes > src.nbytes:
            raise self.error(f"cannot view {src} as {dst} at byte offset {self.offset}")


class CopyOp(KernelOp):
    """Copies a buffer into another of the same size (used when an output aliases an input)."""

    name = "kernel.copy"
    side_effects = True
    num_operands = 2
    num_results = 0


class LaunchOp(KernelOp):
    """Runs kernel ``callee`` over outer iterations [0, extent) on its buffer operands; ``work`` estimates
    one iteration's FLOPs plus bytes moved, by which the thread pool chooses how to split the range."""

    name = "kernel.launch"
    side_effects = True
    num_results = 0
    callee = attr(str)
    extent = attr(int)
    work = attr(int, 1)


def is_tensor(value) -> bool:
    return isinstance(value.type, TensorType)
