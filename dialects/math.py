"""The ``math`` dialect: elementary functions of one floating-point scalar.

Two-operand functions (``math.powf``, ``math.atan2``) are declared with the
binary arithmetic ops in ``arith``; ``math.fma`` is the fused multiply-add.
"""

from __future__ import annotations

import math

from .arith import ArithOp
from .base import attr

UNARY_FUNCTIONS = ["log", "sqrt", "tanh", "erf", "sin", "cos", "tan", "asin", "acos", "atan", "sinh",
                   "cosh", "asinh", "acosh", "atanh", "floor", "ceil", "roundeven", "absf", "log1p", "expm1"]


class UnaryMathOp(ArithOp):
    num_operands = 1

    def verify_(self) -> None:
        super().verify_()
        if self.result.type != self.operands[0].type or not self.result.type.dtype.is_float:
            raise self.error(f"maps a float to the same type, got {self.operands[0].type} -> {self.result.type}")


for _fn in UNARY_FUNCTIONS:
    type(_fn.capitalize() + "Op", (UnaryMathOp,), {"name": f"math.{_fn}"})


class ExponentialOp(UnaryMathOp):
    """``at_most`` is the producer's promise that the operand (NaN aside) never exceeds that value,
    as for softmax's ``x - max(x)``; ``expand-math`` drops the overflow handling it makes unnecessary."""

    at_most = attr(float, math.inf)


class ExpOp(ExponentialOp):
    """e^x."""

    name = "math.exp"


class Exp2Op(ExponentialOp):
    """2^x."""

    name = "math.exp2"


class FmaOp(ArithOp):
    """a * b + c with one rounding, never reassociated (exact range reductions rely on it)."""

    name = "math.fma"
    num_operands = 3

    def verify_(self) -> None:
        super().verify_()
        if any(v.type != self.result.type for v in self.operands) or not self.result.type.dtype.is_float:
            raise self.error("maps three floats of one type to that type")
