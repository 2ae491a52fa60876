"""The ``vector`` dialect: SIMD values of the loop level (``vector<16xf32>``).

Micro-kernels use these to keep accumulators in registers: contiguous (or
strided) loads and stores at a linear index of a buffer, a broadcast of a
scalar, fused multiply-add and maximum.
"""

from __future__ import annotations

from fusecc.ir.core import Operation
from fusecc.ir.types import MemRefType, ScalarType, VectorType

from .base import attr


class VectorOp(Operation):
    def _check_vector(self, value, what: str) -> VectorType:
        if not isinstance(value.type, VectorType):
            raise self.error(f"{what} must be a vector, got {value.type}")
        return value.type


class LoadOp(VectorOp):
    """``vector<NxT>`` from elements [index, index + N) of a buffer, or with ``stride`` from every
    stride-th element from index (a strided conv's input columns); only the first ``lanes`` are read
    when given (the others are zero), so a row's tail never reads past its end."""

    name = "vector.load"
    num_operands = 2
    fresh_each_time = True
    lanes = attr(int, 0)
    stride = attr(int, 1)

    def verify_(self) -> None:
        buffer, _ = self.operands
        result = self._check_vector(self.result, "result")
        if not 0 <= self.lanes <= result.shape[0]:
            raise self.error(f"lanes={self.lanes} does not fit {result}")
        if self.stride < 1:
            raise self.error(f"stride={self.stride} must be at least 1")
        if not isinstance(buffer.type, MemRefType) or buffer.type.dtype != result.dtype:
            raise self.error(f"loads {result} from {buffer.type}")


class StoreOp(VectorOp):
    """Writes a vector to elements [index, index + N) of a buffer (only the first ``lanes`` when given)."""

    name = "vector.store"
    side_effects = True
    num_operands = 3
    num_results = 0
    lanes = attr(int, 0)

    def verify_(self) -> None:
        value, buffer, _ = self.operands
        vector = self._check_vector(value, "stored value")
        if not 0 <= self.lanes <= vector.shape[0]:
            raise self.error(f"lanes={self.lanes} does not fit {vector}")
        if not isinstance(buffer.type, MemRefType) or buffer.type.dtype != vector.dtype:
            raise self.error(f"stores {vector} into {buffer.type}")


class BroadcastOp(VectorOp):
    """A vector with every lane equal to a scalar."""

    name = "vector.broadcast"
    num_operands = 1

    def verify_(self) -> None:
        result = self._check_vector(self.result, "result")
        if self.operands[0].type != ScalarType(result.dtype):
            raise self.error(f"broadcasts {self.operands[0].type} to {result}")


class LanewiseOp(VectorOp):
    """An op combining its operands lane by lane: operands and result of one vector type."""

    def verify_(self) -> None:
        types = {v.type for v in self.operands} | {self.result.type}
        if len(types) != 1:
            raise self.error("operands and result must have one vector type")
        self._check_vector(self.result, "result")


class FMAOp(LanewiseOp):
    """a * b + c, lane by lane, with one rounding."""

    name = "vector.fma"
    num_operands = 3


class MaxOp(LanewiseOp):
    """The larger of a and b, lane by lane; NaN where either is NaN (as ``arith.maxf``)."""

    name = "vector.max"
    num_operands = 2


class AddOp(LanewiseOp):
    """a + b, lane by lane (as ``arith.addf``)."""

    name = "vector.add"
    num_operands = 2


class DivOp(LanewiseOp):
    """a / b, lane by lane, exactly rounded (as ``arith.divf``)."""

    name = "vector.div"
    num_operands = 2
