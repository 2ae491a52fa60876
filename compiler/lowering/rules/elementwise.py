"""Lowering rules of elementwise and broadcasting ops: a scalar function of the operands at the output index."""

from __future__ import annotations

import math
from typing import Callable

from fusecc.dialects import arith
from fusecc.dialects.tensor import (AbsOp, AcosOp, AcoshOp, AddOp, AndOp, AsinOp, AsinhOp, AtanOp, AtanhOp, BatchNormOp,
                                    BitShiftOp, BitcastOp, BitwiseAndOp, BitwiseNotOp, BitwiseOrOp, BitwiseXorOp,
                                    CastOp, CeilOp, CeluOp, ClipOp, CosOp, CoshOp, DivOp,
                                    EluOp, EqualOp, ErfOp, ExpOp, FloorOp, GeluOp, GreaterOp, GreaterOrEqualOp,
                                    HardSigmoidOp, HardSwishOp, IsInfOp, IsNaNOp, LeakyReluOp, LessOp, LessOrEqualOp,
                                    LogOp, MaxOp, MinOp, MishOp, ModOp, MulOp, NegOp, NotOp, OrOp, PReluOp, PowOp,
                                    ReciprocalOp, ReluOp, RoundOp, SeluOp, ShrinkOp, SigmoidOp, SignOp, SinOp,
                                    SinhOp, SoftplusOp, SoftsignOp, SqrtOp, SubOp, TanOp, TanhOp, ThresholdedReluOp,
                                    WhereOp, XorOp)
from fusecc.ir.types import DType, ScalarType

from ..emitter import float_limit
from .common import abs_value, broadcast_at, const_like, float_pow
from .registry import lowers


def _exp_in_divisor(e, z, function="exp"):
    """exp(z) (or exp2) for a divisor 1 + exp(z). In f32, z is clamped where the power reaches 2^127:
    that moves the quotient by under 1e-38 and lets expand-math use its single-scale exponential."""
    if z.type.dtype is DType.F32:
        z = e.min(z, const_like(e, z, 88.0 if function == "exp" else 127.0))
    return e.fn(function, z)


def _sigmoid(e, x):
    one = const_like(e, x, 1.0)
    return e.div(one, e.add(one, _exp_in_divisor(e, e.sub(const_like(e, x, 0.0), x))))


def _softplus(e, x):
    # max(x, 0) + log1p(exp(-|x|)): exact for large |x|
    minus_abs = e.sub(const_like(e, x, 0.0), e.fn("absf", x))
    return e.add(e.max(x, const_like(e, x, 0.0)), e.fn("log1p", e.fn("exp", minus_abs, at_most=0.0)))


def _sign(e, x):
    """-1, 0 or 1; a NaN stays NaN (as in numpy and ONNX Runtime)."""
    dtype = x.type.dtype
    zero, one = const_like(e, x, 0), const_like(e, x, 1)
    if not (dtype.is_signed or dtype.is_float):
        return e.select(e.cmp("gt", x, zero), one, zero)
    sign = e.select(e.cmp("gt", x, zero), one, e.select(e.cmp("lt", x, zero), const_like(e, x, -1), zero))
    return e.select(e.cmp("ne", x, x), x, sign) if dtype.is_float else sign


def _clip(e, x, lo, hi):
    dtype = x.type.dtype
    if not dtype.is_float:
        info_lo, info_hi = float_limit(dtype, -1), float_limit(dtype, 1)
        lo = None if lo == -math.inf else int(max(lo, info_lo))
        hi = None if hi == math.inf else int(min(hi, info_hi))
    else:
        lo = None if lo == -math.inf else lo
        hi = None if hi == math.inf else hi
    if lo is not None:
        x = e.max(x, const_like(e, x, lo))
    if hi is not None:
        x = e.min(x, const_like(e, x, hi))
    return x


def _gelu(e, x, approximate):
    half, one = const_like(e, x, 0.5), const_like(e, x, 1.0)
    if approximate == "tanh":
        # 0.5 x (1 + tanh(u)) = x sigmoid(2u) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3):
        # one exponential and a division instead of a tanh and its division. The exponent is taken in
        # base 2 with log2(e) folded into the polynomial's coefficients, which leaves exp2 no range
        # reduction by ln 2 and adds no rounding.
        a = -2.0 * math.sqrt(2.0 / math.pi) * math.log2(math.e)
        exponent = e.mul(x, e.add(const_like(e, x, a), e.mul(const_like(e, x, a * 0.044715), e.mul(x, x))))
        return e.div(x, e.add(one, _exp_in_divisor(e, exponent, "exp2")))
    return e.mul(e.mul(half, x), e.add(one, e.fn("erf", e.mul(x, const_like(e, x, 1.0 / math.sqrt(2.0))))))


def _elu(e, x, alpha):
    zero = const_like(e, x, 0.0)
    return e.select(e.cmp("ge", x, zero), x, e.mul(const_like(e, x, alpha), e.fn("expm1", x)))


UNARY: dict[type, Callable] = {
    NegOp: lambda e, op, x: e.sub(const_like(e, x, 0), x),
    AbsOp: lambda e, op, x: abs_value(e, x),
    SqrtOp: lambda e, op, x: e.fn("sqrt", x),
    ExpOp: lambda e, op, x: e.fn("exp", x),
    LogOp: lambda e, op, x: e.fn("log", x),
    ErfOp: lambda e, op, x: e.fn("erf", x),
    TanhOp: lambda e, op, x: e.fn("tanh", x),
    SinOp: lambda e, op, x: e.fn("sin", x),
    CosOp: lambda e, op, x: e.fn("cos", x),
    TanOp: lambda e, op, x: e.fn("tan", x),
    AsinOp: lambda e, op, x: e.fn("asin", x),
    AcosOp: lambda e, op, x: e.fn("acos", x),
    AtanOp: lambda e, op, x: e.fn("atan", x),
    SinhOp: lambda e, op, x: e.fn("sinh", x),
    CoshOp: lambda e, op, x: e.fn("cosh", x),
    AsinhOp: lambda e, op, x: e.fn("asinh", x),
    AcoshOp: lambda e, op, x: e.fn("acosh", x),
    AtanhOp: lambda e, op, x: e.fn("atanh", x),
    FloorOp: lambda e, op, x: e.fn("floor", x),
    CeilOp: lambda e, op, x: e.fn("ceil", x),
    RoundOp: lambda e, op, x: e.fn("roundeven", x),
    ReluOp: lambda e, op, x: e.max(x, const_like(e, x, 0)),
    SigmoidOp: lambda e, op, x: _sigmoid(e, x),
    ReciprocalOp: lambda e, op, x: e.div(const_like(e, x, 1.0), x),
    SignOp: lambda e, op, x: _sign(e, x),
    SoftplusOp: lambda e, op, x: _softplus(e, x),
    SoftsignOp: lambda e, op, x: e.div(x, e.add(const_like(e, x, 1.0), e.fn("absf", x))),
    MishOp: lambda e, op, x: e.mul(x, e.fn("tanh", _softplus(e, x))),
    HardSwishOp: lambda e, op, x: e.mul(x, _clip(e, e.add(e.mul(x, const_like(e, x, 1 / 6)), const_like(e, x, 0.5)),
                                                 0, 1)),
    HardSigmoidOp: lambda e, op, x: _clip(e, e.add(e.mul(x, const_like(e, x, op.alpha)), const_like(e, x, op.beta)),
                                          0, 1),
    LeakyReluOp: lambda e, op, x: e.select(e.cmp("ge", x, const_like(e, x, 0)), x,
                                           e.mul(x, const_like(e, x, op.alpha))),
    ThresholdedReluOp: lambda e, op, x: e.select(e.cmp("gt", x, const_like(e, x, op.alpha)), x, const_like(e, x, 0)),
    EluOp: lambda e, op, x: _elu(e, x, op.alpha),
    SeluOp: lambda e, op, x: e.mul(const_like(e, x, op.gamma), e.select(
        e.cmp("gt", x, const_like(e, x, 0.0)), x, e.mul(const_like(e, x, op.alpha), e.fn("expm1", x)))),
    CeluOp: lambda e, op, x: e.add(e.max(x, const_like(e, x, 0.0)), e.min(const_like(e, x, 0.0), e.mul(
        const_like(e, x, op.alpha), e.fn("expm1", e.div(x, const_like(e, x, op.alpha)))))),
    ShrinkOp: lambda e, op, x: e.select(
        e.cmp("lt", x, const_like(e, x, -op.lambd)), e.add(x, const_like(e, x, op.bias)),
        e.select(e.cmp("gt", x, const_like(e, x, op.lambd)), e.sub(x, const_like(e, x, op.bias)), const_like(e, x, 0))),
    GeluOp: lambda e, op, x: _gelu(e, x, op.approximate),
    ClipOp: lambda e, op, x: _clip(e, x, op.min, op.max),
    NotOp: lambda e, op, x: e.logical("arith.xori", x, e.const(1, DType.I1)),
    BitwiseNotOp: lambda e, op, x: e.logical("arith.xori", x, const_like(e, x, -1 if x.type.dtype.is_signed
                                                                          else 2 ** x.type.dtype.bits - 1)),
    IsNaNOp: lambda e, op, x: e.cmp("ne", x, x),
    IsInfOp: lambda e, op, x: _isinf(e, op, x),
    CastOp: lambda e, op, x: e.cast(x, op.to),
    BitcastOp: lambda e, op, x: _bitcast(e, x, op.to),
}


def _bitcast(e, x, to: DType):
    source = x.type.dtype
    if source is DType.I1 or not (source.is_float or to.is_float):
        return e.cast(x, to)  # between integers of one width (or a bool's 0/1 byte) the value is the bits
    return e.emit(arith.BitcastOp, [x], ScalarType(to))


def _isinf(e, op, x):
    result = e.const(0, DType.I1)
    if op.detect_positive:
        result = e.logical("arith.ori", result, e.cmp("eq", x, const_like(e, x, math.inf)))
    if op.detect_negative:
        result = e.logical("arith.ori", result, e.cmp("eq", x, const_like(e, x, -math.inf)))
    return result


#: unary ops computed in float32 for a float16 input (libm has no float16 functions; numpy's float16
#: ufuncs compute in float32 too), rounding the result once
_WIDEN_F16 = set(UNARY) - {NegOp, AbsOp, ReluOp, SignOp, NotOp, BitwiseNotOp, IsNaNOp, IsInfOp, CastOp, BitcastOp}


@lowers(*UNARY)
def _unary_rule(e, op, result_index, idx):
    x = e.at(op.input, idx)
    if x.type.dtype is DType.F16 and type(op) in _WIDEN_F16:
        return e.cast(UNARY[type(op)](e, op, e.cast(x, DType.F32)), DType.F16)
    return UNARY[type(op)](e, op, x)


def _int_pow(e, a, b):
    as_float = e.pow(e.cast(a, DType.F64), e.cast(b, DType.F64))
    return e.cast(as_float, a.type.dtype)


def _mod(e, op, a, b):
    if a.type.dtype.is_float:
        rem = e.binary("arith.remf", "arith.remf", a, b)
        if op.fmod:
            return rem
        # floor modulo: a nonzero remainder takes the divisor's sign (an infinite divisor then gives itself)
        zero = const_like(e, a, 0.0)
        differ = e.logical("arith.xori", e.cmp("lt", rem, zero), e.cmp("lt", b, zero))
        return e.select(e.logical("arith.andi", differ, e.cmp("ne", rem, zero)), e.add(rem, b), rem)
    rem = e.logical("arith.remsi" if a.type.dtype.is_signed else "arith.remui", a, b)
    if op.fmod or not a.type.dtype.is_signed:
        return rem
    zero = const_like(e, a, 0)
    differ = e.logical("arith.xori", e.cmp("lt", rem, zero), e.cmp("lt", b, zero))
    fix = e.logical("arith.andi", differ, e.cmp("ne", rem, zero))
    return e.select(fix, e.add(rem, b), rem)


BINARY: dict[type, Callable] = {
    AddOp: lambda e, op, a, b: e.add(a, b),
    SubOp: lambda e, op, a, b: e.sub(a, b),
    MulOp: lambda e, op, a, b: e.mul(a, b),
    DivOp: lambda e, op, a, b: e.div(a, e.select(e.cmp("eq", b, const_like(e, b, 0)), const_like(e, b, 1), b))
    if not a.type.dtype.is_float else e.div(a, b),
    PowOp: lambda e, op, a, b: float_pow(e, a, b) if a.type.dtype.is_float else _int_pow(e, a, b),
    MaxOp: lambda e, op, a, b: e.max(a, b),
    MinOp: lambda e, op, a, b: e.min(a, b),
    PReluOp: lambda e, op, a, b: e.select(e.cmp("lt", a, const_like(e, a, 0)), e.mul(a, b), a),
    ModOp: _mod,
    EqualOp: lambda e, op, a, b: e.cmp("eq", a, b),
    LessOp: lambda e, op, a, b: e.cmp("lt", a, b),
    GreaterOp: lambda e, op, a, b: e.cmp("gt", a, b),
    LessOrEqualOp: lambda e, op, a, b: e.cmp("le", a, b),
    GreaterOrEqualOp: lambda e, op, a, b: e.cmp("ge", a, b),
    AndOp: lambda e, op, a, b: e.logical("arith.andi", a, b),
    OrOp: lambda e, op, a, b: e.logical("arith.ori", a, b),
    XorOp: lambda e, op, a, b: e.logical("arith.xori", a, b),
    BitwiseAndOp: lambda e, op, a, b: e.logical("arith.andi", a, b),
    BitwiseOrOp: lambda e, op, a, b: e.logical("arith.ori", a, b),
    BitwiseXorOp: lambda e, op, a, b: e.logical("arith.xori", a, b),
    BitShiftOp: lambda e, op, a, b: _bitshift(e, op, a, b),
}


def _bitshift(e, op, a, b):
    """Right shifts of signed integers are arithmetic. LLVM leaves shifts by a negative amount or by
    the bit width or more undefined; ONNX gives what the sign extension alone produces (-1 or 0)."""
    signed = a.type.dtype.is_signed
    if op.direction == "LEFT":
        shifted, fill = e.logical("arith.shli", a, b), const_like(e, a, 0)
    else:
        shifted = e.logical("arith.shrsi" if signed else "arith.shrui", a, b)
        zero = const_like(e, a, 0)
        fill = e.select(e.cmp("lt", a, zero), const_like(e, a, -1), zero) if signed else zero
    outside = e.cmp("ge", b, const_like(e, b, a.type.dtype.bits))
    if signed:
        outside = e.logical("arith.ori", outside, e.cmp("lt", b, const_like(e, b, 0)))
    return e.select(outside, fill, shifted)


@lowers(*BINARY)
def _binary_rule(e, op, result_index, idx):
    return BINARY[type(op)](e, op, broadcast_at(e, op.lhs, idx), broadcast_at(e, op.rhs, idx))


@lowers(WhereOp)
def _where(e, op, result_index, idx):
    return e.select(broadcast_at(e, op.condition, idx), broadcast_at(e, op.if_true, idx),
                    broadcast_at(e, op.if_false, idx))


@lowers(BatchNormOp)
def _batch_norm(e, op, result_index, idx):
    x = e.at(op.input, idx)
    channel = [idx[1]]
    scale, bias, mean, var = (e.at(v, channel) for v in (op.scale, op.bias, op.mean, op.variance))
    inv = e.div(scale, e.fn("sqrt", e.add(var, const_like(e, x, op.epsilon))))
    return e.add(e.mul(e.sub(x, mean), inv), bias)
