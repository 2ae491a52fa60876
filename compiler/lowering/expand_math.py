"""Pass ``expand-math``: f32 exp, exp2, tanh and erf as polynomial arithmetic the vectorizer can use."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fusecc.dialects.arith import constant_of
from fusecc.ir.core import OP_REGISTRY, Module, OpResult, Operation, Value
from fusecc.ir.rewriter import Rewriter
from fusecc.ir.types import DType, ScalarType
from fusecc.passes.manager import Pass

F32 = ScalarType(DType.F32)
I32 = ScalarType(DType.I32)

# exp(r) = 1 + r (1 + r P(r)) on [-ln2/2, ln2/2]: P of degree 4 fitted for relative error (exp is within
# 1.26 ulp over [-86.6, 88.72]: as good as Cephes' degree 5 at one FMA less)
_EXP_POLY = [1.3814592966809869e-3, 8.3687175065279e-3, 4.166838899254799e-2, 1.666652113199234e-1,
             4.999999403953552e-1]
# 2^f = 1 + f Q(f) on [-1/2, 1/2]: Q of degree 5 fitted for relative error (1.3 ulp); f is exact, so
# base 2 needs no reduction to r = f ln2 before its polynomial
_EXP2_POLY = [1.5353360504377633e-4, 1.3398875016719103e-3, 9.61843691766262e-3, 5.5503323674201965e-2,
              2.4022647738456726e-1, 6.931471824645996e-1]
# tanh(x) = x P(x^2) / Q(x^2) on [-7.9053, 7.9053] (the rational form used by Eigen and MLAS)
_TANH_P = [-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
           1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03]
_TANH_Q = [1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03]
_TANH_CLAMP = 7.90531110763549805
_LOG2E = 1.44269504088896341
#: adding 1.5 * 2^23 rounds a float below 2^22 to an integer held in the low bits of the sum's mantissa
_EXP_SHIFTER = 12582912.0
#: ln 2 split so that n * _LN2_HI is exact for |n| < 2^9
_LN2_HI, _LN2_LO = 0.693359375, -2.12194440e-4
#: the exponent's range (base 2) with a 2^(n - 1) scale: below, the scale is 0; above, the result is inf
_HALF_SCALE_MIN, _HALF_SCALE_MAX = -126.2, 128.4
#: exponents (base 2) that keep n <= 127, where 2^n is a normal float; below the minimum, 2^n is 0
_SINGLE_SCALE_MIN, _SINGLE_SCALE_MAX = -127.0, 127.0
_ERF_SMALL = [7.853861353153693e-5, -8.010193625184903e-4, 5.188327685732524e-3, -2.685381193529856e-2,
              1.128358514861418e-1, -3.761262582423300e-1, 1.128379165726710e+0]
# Abramowitz & Stegun 7.1.26 for |x| >= 1 (absolute error below 1.5e-7 there).
_ERF_AS = [1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592]
_ERF_P = 0.3275911


class _Arithmetic(Rewriter):
    """Inserts scalar f32 arithmetic, spelled as the expansions read."""

    def op(self, name: str, operands, result_type=F32, **attributes) -> Value:
        return self.create(OP_REGISTRY[name], operands, [result_type], attributes).result

    def c(self, value: float, dtype=F32) -> Value:
        return self.op("arith.constant", [], dtype, value=float(value) if dtype is F32 else int(value))

    def add(self, a, b):
        return self.op("arith.addf", [a, b])

    def sub(self, a, b):
        return self.op("arith.subf", [a, b])

    def mul(self, a, b):
        return self.op("arith.mulf", [a, b])

    def div(self, a, b):
        return self.op("arith.divf", [a, b])

    def horner(self, x: Value, coefficients: list[float]) -> Value:
        acc = self.c(coefficients[0])
        for coefficient in coefficients[1:]:
            acc = self.add(self.mul(acc, x), self.c(coefficient))
        return acc

    def select(self, cond, a, b):
        return self.op("arith.select", [cond, a, b])

    def less(self, a, b):
        return self.op("arith.cmpf", [a, b], ScalarType(DType.I1), predicate="olt")

    def fma(self, a, b, c):
        return self.op("math.fma", [a, b, c])

    def exp(self, x: Value, at_most: float = math.inf) -> Value:
        """exp(x) = 2^n exp(r) with n = round(x / ln2) and r = x - n ln2 in two exact FMAs (Cody-Waite)."""
        return self._exponential(x, at_most, _LOG2E)

    def exp2(self, x: Value, at_most: float = math.inf) -> Value:
        """2^x = 2^n 2^f with n = round(x) and f = x - n (exact)."""
        return self._exponential(x, at_most, 1.0)

    def _exponential(self, x: Value, at_most: float, log2_per_unit: float) -> Value:
        """2^(x log2_per_unit) as 2^n (1 + t Q(t)), t the reduced argument.

        n comes from a shifter near 1.5 * 2^23: the sum's low mantissa bits hold n plus an exponent
        bias, and shifting those bits into the exponent field makes a power of two. How 2^n is
        applied depends on ``at_most``, a bound on x (NaN aside):

        - when n cannot exceed 127, (t 2^n) Q(t) + 2^n in one FMA, whose product t 2^n is exact and
          independent of the polynomial; x is clamped below where n reaches -127, which makes 2^n zero;
        - otherwise (2 + 2 t Q(t)) 2^(n - 1), so that n = 128 still has a normal scale and larger x
          overflow to inf; x is clamped to n in [-126, 128], and results under 2^-125 flush to zero.

        The clamps keep NaN."""
        if at_most * log2_per_unit <= _SINGLE_SCALE_MAX:
            x = self.op("arith.maxf", [x, self.c(_SINGLE_SCALE_MIN / log2_per_unit)])
            shifted, t, poly = self._reduce(x, log2_per_unit, 127)
            scale = self._power_of_two(shifted)
            return self.fma(self.mul(t, scale), self.horner(t, poly), scale)
        x = self.op("arith.minf", [self.op("arith.maxf", [x, self.c(_HALF_SCALE_MIN / log2_per_unit)]),
                                   self.c(_HALF_SCALE_MAX / log2_per_unit)])
        shifted, t, poly = self._reduce(x, log2_per_unit, 126)
        twice = self.fma(t, self.horner(t, [2 * c for c in poly]), self.c(2.0))
        return self.mul(twice, self._power_of_two(shifted))

    def _reduce(self, x: Value, log2_per_unit: float, bias: int) -> tuple[Value, Value, list[float]]:
        """The shifted sum (low mantissa bits: n + bias), the reduced argument t and Q's coefficients,
        with 2^(x log2_per_unit - n) = 1 + t Q(t). In base 2, n is x rounded (one instruction off the
        FMA pipes) and t = x - n is exact; otherwise t = x - n ln2, and 1 + t Q(t) = exp(t)."""
        shifter = self.c(_EXP_SHIFTER + bias)
        if log2_per_unit == 1.0:
            n = self.op("math.roundeven", [x])
            return self.add(n, shifter), self.sub(x, n), _EXP2_POLY
        shifted = self.fma(x, self.c(log2_per_unit), shifter)
        n = self.sub(shifted, shifter)
        return shifted, self.fma(n, self.c(-_LN2_LO), self.fma(n, self.c(-_LN2_HI), x)), [*_EXP_POLY, 1.0]

    def _power_of_two(self, shifted: Value) -> Value:
        """The float whose exponent field is the shifted sum's low mantissa bits: 2^(n + bias - 127)."""
        bits = self.op("arith.bitcast", [shifted], I32)
        return self.op("arith.bitcast", [self.op("arith.shli", [bits, self.c(23, I32)], I32)])

    def tanh(self, x: Value) -> Value:
        clamped = self.op("arith.minf", [self.op("arith.maxf", [x, self.c(-_TANH_CLAMP)]), self.c(_TANH_CLAMP)])
        z = self.mul(clamped, clamped)
        ratio = self.div(self.mul(clamped, self.horner(z, _TANH_P)), self.horner(z, _TANH_Q))
        return self.select(self.less(self.op("math.absf", [x]), self.c(0.0004)), x, ratio)

    def erf(self, x: Value) -> Value:
        ax = self.op("math.absf", [x])
        small = self.mul(x, self.horner(self.mul(x, x), _ERF_SMALL))
        t = self.div(self.c(1.0), self.add(self.c(1.0), self.mul(self.c(_ERF_P), ax)))
        poly = self.mul(self.horner(t, _ERF_AS), t)
        tail = self.sub(self.c(1.0), self.mul(poly, self.exp(self.sub(self.c(0.0), self.mul(ax, ax)), at_most=0.0)))
        large = self.select(self.less(x, self.c(0.0)), self.sub(self.c(0.0), tail), tail)
        return self.select(self.less(ax, self.c(1.0)), small, large)


_EXPONENTIALS = ("math.exp", "math.exp2")
_EXPANDED = (*_EXPONENTIALS, "math.tanh", "math.erf")


def _upper_bound(op: Operation) -> float:
    """A bound an exponential's operand (NaN aside) never exceeds: its ``at_most`` promise, or the constant
    of a clamp by ``arith.minf``."""
    operand = op.operands[0]
    producer = operand.owner if isinstance(operand, OpResult) else None
    clamps = [] if producer is None or producer.name != "arith.minf" else \
        [c for c in map(constant_of, producer.operands) if c is not None]
    return min([op.at_most, *clamps])


@dataclass
class ExpandMath(Pass):
    """Replaces f32 ``math.exp``, ``math.exp2``, ``math.tanh`` and ``math.erf`` in kernels by polynomial
    arithmetic.

    Calls into libm keep LLVM from vectorizing a loop; the expansions (Cephes
    range reduction and polynomials for exp and small erf, a rational
    approximation for tanh, Abramowitz-Stegun for the erf tail) are
    straight-line arithmetic, accurate to a few ulp (erf: 1.5e-7 absolute),
    so loops of sigmoid, GELU or softmax vectorize. An exponential whose
    operand is bounded (its ``at_most`` promise, or a clamp by ``arith.minf``
    with a constant) so that 2^n stays a normal float drops its upper clamp
    and applies 2^n in one FMA. f64 and other functions are left to libm.
    """

    name = "expand-math"

    def run(self, module: Module) -> None:
        for func in module.funcs:
            for op in list(func.walk()):
                if op.name in _EXPANDED and op.result.type == F32:
                    expand = getattr(_Arithmetic.before(op), op.name.split(".")[1])
                    if op.name in _EXPONENTIALS:
                        value = expand(op.operands[0], _upper_bound(op))
                    else:
                        value = expand(op.operands[0])
                    op.result.replace_all_uses_with(value)
                    op.erase()
