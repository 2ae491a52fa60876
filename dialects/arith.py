"""The ``arith`` dialect: scalar constants, arithmetic, comparisons, selects and casts.

Float ops end in ``f`` and integer ops in ``i`` (MLIR's convention); ``index``
values are 64-bit integers.
"""

from __future__ import annotations

import math
from typing import ClassVar

from fusecc.ir.core import Operation
from fusecc.ir.types import DType, ScalarType

from .base import attr, declared_attrs

FLOAT_PREDICATES = ("oeq", "one", "olt", "ole", "ogt", "oge", "une", "uno", "ord")
INT_PREDICATES = ("eq", "ne", "slt", "sle", "sgt", "sge", "ult", "ule", "ugt", "uge")


class ArithOp(Operation):
    def verify_(self) -> None:
        for field in declared_attrs(type(self)):
            field.check(self)
        for index, value in enumerate(self.operands):
            if not isinstance(value.type, ScalarType):
                raise self.error(f"operand #{index} must be a scalar, got {value.type}")


class ConstantOp(ArithOp):
    name = "arith.constant"
    num_operands = 0
    value = attr((int, float, bool))

    def verify_(self) -> None:
        value = self.attributes.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(f"value must be a number, got {value!r}")
        dtype = self.result.type.dtype
        if isinstance(value, float) and not dtype.is_float:
            raise self.error(f"float value for {dtype}")
        if not dtype.is_float and not math.isfinite(value):
            raise self.error(f"non-finite value for {dtype}")


class BinaryArithOp(ArithOp):
    """Two operands and a result of one scalar type."""

    num_operands = 2
    float_op: ClassVar[bool] = True

    def verify_(self) -> None:
        super().verify_()
        a, b = self.operands
        if a.type != b.type or self.result.type != a.type:
            raise self.error(f"operand and result types differ: {a.type}, {b.type} -> {self.result.type}")
        if self.float_op != a.type.dtype.is_float:
            kind = "floating-point" if self.float_op else "integer"
            raise self.error(f"expects {kind} operands, got {a.type}")


class FastMathOp(BinaryArithOp):
    """A float add, subtract or multiply the code generator may reassociate and contract into FMAs (how
    it vectorizes float reductions), unless ``strict``: then it is evaluated as written, for arithmetic
    whose rounding is the point (a shift that must not be folded into the sum it feeds)."""

    strict = attr(bool, False)


def _binary(name: str, float_op: bool, base: type = BinaryArithOp):
    cls_name = "".join(p.capitalize() for p in name.split(".")[1].split("_")) + "Op"
    return type(cls_name, (base,), {"name": name, "float_op": float_op})


FAST_MATH = ["arith.addf", "arith.subf", "arith.mulf"]
FLOAT_BINARY = [*FAST_MATH, "arith.divf", "arith.remf", "arith.maxf", "arith.minf", "arith.maxnumf",
                "math.powf", "math.atan2"]
INT_BINARY = ["arith.addi", "arith.subi", "arith.muli", "arith.divsi", "arith.divui", "arith.remsi",
              "arith.remui", "arith.maxsi", "arith.minsi", "arith.maxui", "arith.minui", "arith.andi",
              "arith.ori", "arith.xori", "arith.shli", "arith.shrsi", "arith.shrui"]
for _name in FLOAT_BINARY:
    _binary(_name, True, FastMathOp if _name in FAST_MATH else BinaryArithOp)
for _name in INT_BINARY:
    _binary(_name, False)


class CmpFOp(ArithOp):
    name = "arith.cmpf"
    num_operands = 2
    predicate = attr(FLOAT_PREDICATES)

    def verify_(self) -> None:
        super().verify_()
        if self.result.type.dtype is not DType.I1 or not self.operands[0].type.dtype.is_float:
            raise self.error("compares floats to an i1")


class CmpIOp(ArithOp):
    name = "arith.cmpi"
    num_operands = 2
    predicate = attr(INT_PREDICATES)

    def verify_(self) -> None:
        super().verify_()
        if self.result.type.dtype is not DType.I1 or self.operands[0].type.dtype.is_float:
            raise self.error("compares integers to an i1")


class SelectOp(ArithOp):
    """cond ? a : b."""

    name = "arith.select"
    num_operands = 3

    def verify_(self) -> None:
        super().verify_()
        cond, a, b = self.operands
        if cond.type.dtype is not DType.I1 or a.type != b.type or self.result.type != a.type:
            raise self.error("expects (i1, T, T) -> T")


class CastOp(ArithOp):
    """Converts between scalar types with numpy/ONNX semantics (float->int truncates)."""

    name = "arith.cast"
    num_operands = 1


class BitcastOp(ArithOp):
    """Reinterprets the bits of a scalar as another type of the same width (f32 <-> i32)."""

    name = "arith.bitcast"
    num_operands = 1

    def verify_(self) -> None:
        super().verify_()
        if self.operands[0].type.dtype.bits != self.result.type.dtype.bits:
            raise self.error(f"cannot bitcast {self.operands[0].type} to {self.result.type}: widths differ")


def constant_of(value) -> int | float | None:
    """The value of an ``arith.constant`` result, or None for any other value."""
    owner = getattr(value, "op", None)
    return owner.attr("value") if owner is not None and owner.name == ConstantOp.name else None
