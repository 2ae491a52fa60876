"""Lowering rules: for each tensor op, the scalar it computes at an output index.

A rule is ``rule(e, op, result_index, idx) -> scalar`` where ``e`` is the
``Emitter``, ``idx`` the output index (one index value per result dimension)
and operands are read with ``e.at(operand, index)``. Elementwise rules map
scalars; injective rules remap the index; reductions and compute ops open
reduction loops with ``e.reduce``. Because operands are read through
``e.at``, any producer fused into the same region is computed inline.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable

import numpy as np

from fusecc.dialects import arith, loop
from fusecc.dialects.tensor import normalize_axis
from fusecc.ir.core import Operation, Value
from fusecc.ir.types import DType, MemRefType, ScalarType

from .window_rows import depthwise_row, is_2d_max_pool, is_depthwise, max_pool_row
from .emitter import Emitter, float_limit

Rule = Callable[[Emitter, Operation, int, list[Value]], Value]
RULES: dict[str, Rule] = {}


def rule(*names: str):
    def register(fn):
        for name in names:
            RULES[name] = fn
        return fn
    return register


def broadcast_index(e: Emitter, idx: list[Value], in_shape: tuple) -> list[Value]:
    """Index into an operand broadcast (numpy rules) to the output index ``idx``."""
    offset = len(idx) - len(in_shape)
    return [e.index(0) if d == 1 else idx[offset + i] for i, d in enumerate(in_shape)]


def operand_at(e: Emitter, op: Operation, number: int, idx: list[Value]) -> Value:
    value = op.operands[number]
    return e.at(value, broadcast_index(e, idx, value.type.shape))


def dtype_of(op: Operation) -> DType:
    return op.operands[0].type.dtype


# ---------------------------------------------------------------------------------------
# Elementwise
# ---------------------------------------------------------------------------------------
def _c(e: Emitter, x: Value, value) -> Value:
    return e.const(value, x.type.dtype)


def _exp_in_divisor(e, z, function="exp"):
    """exp(z) (or exp2) for a divisor 1 + exp(z). In f32, z is clamped where the power reaches 2^127:
    that moves the quotient by under 1e-38 and lets expand-math use its single-scale exponential."""
    if z.type.dtype is DType.F32:
        z = e.min(z, _c(e, z, 88.0 if function == "exp" else 127.0))
    return e.fn(function, z)


def _sigmoid(e, x):
    return e.div(_c(e, x, 1.0), e.add(_c(e, x, 1.0), _exp_in_divisor(e, e.sub(_c(e, x, 0.0), x))))


def _softplus(e, x):
    # max(x, 0) + log1p(exp(-|x|)): exact for large |x|
    minus_abs = e.sub(_c(e, x, 0.0), e.fn("absf", x))
    return e.add(e.max(x, _c(e, x, 0.0)), e.fn("log1p", e.fn("exp", minus_abs, at_most=0.0)))


def _abs(e, x):
    if x.type.dtype.is_float:
        return e.fn("absf", x)
    if not x.type.dtype.is_signed:
        return x
    return e.select(e.cmp("lt", x, _c(e, x, 0)), e.sub(_c(e, x, 0), x), x)


def _sign(e, x):
    """-1, 0 or 1; a NaN stays NaN (as in numpy and ONNX Runtime)."""
    dtype = x.type.dtype
    zero, one = _c(e, x, 0), _c(e, x, 1)
    if not (dtype.is_signed or dtype.is_float):
        return e.select(e.cmp("gt", x, zero), one, zero)
    sign = e.select(e.cmp("gt", x, zero), one, e.select(e.cmp("lt", x, zero), _c(e, x, -1), zero))
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
        x = e.max(x, _c(e, x, lo))
    if hi is not None:
        x = e.min(x, _c(e, x, hi))
    return x


def _gelu(e, x, approximate):
    half, one = _c(e, x, 0.5), _c(e, x, 1.0)
    if approximate == "tanh":
        # 0.5 x (1 + tanh(u)) = x sigmoid(2u) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3):
        # one exponential and a division instead of a tanh and its division. The exponent is taken in
        # base 2 with log2(e) folded into the polynomial's coefficients, which leaves exp2 no range
        # reduction by ln 2 and adds no rounding.
        a = -2.0 * math.sqrt(2.0 / math.pi) * math.log2(math.e)
        exponent = e.mul(x, e.add(_c(e, x, a), e.mul(_c(e, x, a * 0.044715), e.mul(x, x))))
        return e.div(x, e.add(one, _exp_in_divisor(e, exponent, "exp2")))
    return e.mul(e.mul(half, x), e.add(one, e.fn("erf", e.mul(x, _c(e, x, 1.0 / math.sqrt(2.0))))))


def _elu(e, x, alpha):
    zero = _c(e, x, 0.0)
    return e.select(e.cmp("ge", x, zero), x, e.mul(_c(e, x, alpha), e.fn("expm1", x)))


UNARY: dict[str, Callable] = {
    "tensor.neg": lambda e, op, x: e.sub(_c(e, x, 0), x),
    "tensor.abs": lambda e, op, x: _abs(e, x),
    "tensor.sqrt": lambda e, op, x: e.fn("sqrt", x),
    "tensor.exp": lambda e, op, x: e.fn("exp", x),
    "tensor.log": lambda e, op, x: e.fn("log", x),
    "tensor.erf": lambda e, op, x: e.fn("erf", x),
    "tensor.tanh": lambda e, op, x: e.fn("tanh", x),
    "tensor.sin": lambda e, op, x: e.fn("sin", x),
    "tensor.cos": lambda e, op, x: e.fn("cos", x),
    "tensor.tan": lambda e, op, x: e.fn("tan", x),
    "tensor.asin": lambda e, op, x: e.fn("asin", x),
    "tensor.acos": lambda e, op, x: e.fn("acos", x),
    "tensor.atan": lambda e, op, x: e.fn("atan", x),
    "tensor.sinh": lambda e, op, x: e.fn("sinh", x),
    "tensor.cosh": lambda e, op, x: e.fn("cosh", x),
    "tensor.asinh": lambda e, op, x: e.fn("asinh", x),
    "tensor.acosh": lambda e, op, x: e.fn("acosh", x),
    "tensor.atanh": lambda e, op, x: e.fn("atanh", x),
    "tensor.floor": lambda e, op, x: e.fn("floor", x),
    "tensor.ceil": lambda e, op, x: e.fn("ceil", x),
    "tensor.round": lambda e, op, x: e.fn("roundeven", x),
    "tensor.relu": lambda e, op, x: e.max(x, _c(e, x, 0)),
    "tensor.sigmoid": lambda e, op, x: _sigmoid(e, x),
    "tensor.reciprocal": lambda e, op, x: e.div(_c(e, x, 1.0), x),
    "tensor.sign": lambda e, op, x: _sign(e, x),
    "tensor.softplus": lambda e, op, x: _softplus(e, x),
    "tensor.softsign": lambda e, op, x: e.div(x, e.add(_c(e, x, 1.0), e.fn("absf", x))),
    "tensor.mish": lambda e, op, x: e.mul(x, e.fn("tanh", _softplus(e, x))),
    "tensor.hard_swish": lambda e, op, x: e.mul(x, _clip(e, e.add(e.mul(x, _c(e, x, 1 / 6)), _c(e, x, 0.5)), 0, 1)),
    "tensor.hard_sigmoid": lambda e, op, x: _clip(e, e.add(e.mul(x, _c(e, x, op.alpha)), _c(e, x, op.beta)), 0, 1),
    "tensor.leaky_relu": lambda e, op, x: e.select(e.cmp("ge", x, _c(e, x, 0)), x, e.mul(x, _c(e, x, op.alpha))),
    "tensor.thresholded_relu": lambda e, op, x: e.select(e.cmp("gt", x, _c(e, x, op.alpha)), x, _c(e, x, 0)),
    "tensor.elu": lambda e, op, x: _elu(e, x, op.alpha),
    "tensor.selu": lambda e, op, x: e.mul(_c(e, x, op.gamma), e.select(
        e.cmp("gt", x, _c(e, x, 0.0)), x, e.mul(_c(e, x, op.alpha), e.fn("expm1", x)))),
    "tensor.celu": lambda e, op, x: e.add(e.max(x, _c(e, x, 0.0)), e.min(_c(e, x, 0.0), e.mul(
        _c(e, x, op.alpha), e.fn("expm1", e.div(x, _c(e, x, op.alpha)))))),
    "tensor.shrink": lambda e, op, x: e.select(
        e.cmp("lt", x, _c(e, x, -op.lambd)), e.add(x, _c(e, x, op.bias)),
        e.select(e.cmp("gt", x, _c(e, x, op.lambd)), e.sub(x, _c(e, x, op.bias)), _c(e, x, 0))),
    "tensor.gelu": lambda e, op, x: _gelu(e, x, op.approximate),
    "tensor.clip": lambda e, op, x: _clip(e, x, op.min, op.max),
    "tensor.not": lambda e, op, x: e.logical("arith.xori", x, e.const(1, DType.I1)),
    "tensor.bitwise_not": lambda e, op, x: e.logical("arith.xori", x, _c(e, x, -1 if x.type.dtype.is_signed
                                                                          else 2 ** x.type.dtype.bits - 1)),
    "tensor.isnan": lambda e, op, x: e.cmp("ne", x, x),
    "tensor.isinf": lambda e, op, x: _isinf(e, op, x),
    "tensor.cast": lambda e, op, x: e.cast(x, op.to),
    "tensor.bitcast": lambda e, op, x: _bitcast(e, x, op.to),
}


def _bitcast(e, x, to: DType):
    source = x.type.dtype
    if source is DType.I1 or not (source.is_float or to.is_float):
        return e.cast(x, to)  # between integers of one width (or a bool's 0/1 byte) the value is the bits
    return e.emit(arith.BitcastOp, [x], ScalarType(to))


def _isinf(e, op, x):
    result = e.const(0, DType.I1)
    if op.detect_positive:
        result = e.logical("arith.ori", result, e.cmp("eq", x, _c(e, x, math.inf)))
    if op.detect_negative:
        result = e.logical("arith.ori", result, e.cmp("eq", x, _c(e, x, -math.inf)))
    return result


#: unary ops computed in float32 for a float16 input (libm has no float16 functions; numpy's float16
#: ufuncs compute in float32 too), rounding the result once
_WIDEN_F16 = set(UNARY) - {"tensor.neg", "tensor.abs", "tensor.relu", "tensor.sign", "tensor.not",
                          "tensor.bitwise_not", "tensor.isnan", "tensor.isinf", "tensor.cast", "tensor.bitcast"}


def _unary_rule(e, op, result_index, idx):
    x = e.at(op.operands[0], idx)
    if x.type.dtype is DType.F16 and op.name in _WIDEN_F16:
        return e.cast(UNARY[op.name](e, op, e.cast(x, DType.F32)), DType.F16)
    return UNARY[op.name](e, op, x)


for _name in UNARY:
    RULES[_name] = _unary_rule


def _float_pow(e, a, b):
    """Constant small exponents become multiplications or a square root (no libm call)."""
    exponent = e.known.get(id(b))
    if exponent == 1.0:
        return a
    if exponent == 2.0:
        return e.mul(a, a)
    if exponent == 3.0:
        return e.mul(e.mul(a, a), a)
    if exponent == 4.0:
        square = e.mul(a, a)
        return e.mul(square, square)
    if exponent == 0.5:
        return e.fn("sqrt", a)
    if exponent == -1.0:
        return e.div(e.const(1.0, a.type.dtype), a)
    return e.pow(a, b)


def _int_pow(e, a, b):
    as_float = e.pow(e.cast(a, DType.F64), e.cast(b, DType.F64))
    return e.cast(as_float, a.type.dtype)


def _mod(e, op, a, b):
    if a.type.dtype.is_float:
        rem = e.binary("arith.remf", "arith.remf", a, b)
        if op.fmod:
            return rem
        # floor modulo: a nonzero remainder takes the divisor's sign (an infinite divisor then gives itself)
        zero = _c(e, a, 0.0)
        differ = e.logical("arith.xori", e.cmp("lt", rem, zero), e.cmp("lt", b, zero))
        return e.select(e.logical("arith.andi", differ, e.cmp("ne", rem, zero)), e.add(rem, b), rem)
    rem = e.logical("arith.remsi" if a.type.dtype.is_signed else "arith.remui", a, b)
    if op.fmod or not a.type.dtype.is_signed:
        return rem
    zero = _c(e, a, 0)
    differ = e.logical("arith.xori", e.cmp("lt", rem, zero), e.cmp("lt", b, zero))
    fix = e.logical("arith.andi", differ, e.cmp("ne", rem, zero))
    return e.select(fix, e.add(rem, b), rem)


BINARY: dict[str, Callable] = {
    "tensor.add": lambda e, op, a, b: e.add(a, b),
    "tensor.sub": lambda e, op, a, b: e.sub(a, b),
    "tensor.mul": lambda e, op, a, b: e.mul(a, b),
    "tensor.div": lambda e, op, a, b: e.div(a, e.select(e.cmp("eq", b, _c(e, b, 0)), _c(e, b, 1), b))
    if not a.type.dtype.is_float else e.div(a, b),
    "tensor.pow": lambda e, op, a, b: _float_pow(e, a, b) if a.type.dtype.is_float else _int_pow(e, a, b),
    "tensor.max": lambda e, op, a, b: e.max(a, b),
    "tensor.min": lambda e, op, a, b: e.min(a, b),
    "tensor.prelu": lambda e, op, a, b: e.select(e.cmp("lt", a, _c(e, a, 0)), e.mul(a, b), a),
    "tensor.mod": _mod,
    "tensor.equal": lambda e, op, a, b: e.cmp("eq", a, b),
    "tensor.less": lambda e, op, a, b: e.cmp("lt", a, b),
    "tensor.greater": lambda e, op, a, b: e.cmp("gt", a, b),
    "tensor.less_equal": lambda e, op, a, b: e.cmp("le", a, b),
    "tensor.greater_equal": lambda e, op, a, b: e.cmp("ge", a, b),
    "tensor.and": lambda e, op, a, b: e.logical("arith.andi", a, b),
    "tensor.or": lambda e, op, a, b: e.logical("arith.ori", a, b),
    "tensor.xor": lambda e, op, a, b: e.logical("arith.xori", a, b),
    "tensor.bitwise_and": lambda e, op, a, b: e.logical("arith.andi", a, b),
    "tensor.bitwise_or": lambda e, op, a, b: e.logical("arith.ori", a, b),
    "tensor.bitwise_xor": lambda e, op, a, b: e.logical("arith.xori", a, b),
    "tensor.bitshift": lambda e, op, a, b: _bitshift(e, op, a, b),
}


def _bitshift(e, op, a, b):
    """Right shifts of signed integers are arithmetic. LLVM leaves shifts by a negative amount or by
    the bit width or more undefined; ONNX gives what the sign extension alone produces (-1 or 0)."""
    signed = a.type.dtype.is_signed
    if op.direction == "LEFT":
        shifted, fill = e.logical("arith.shli", a, b), _c(e, a, 0)
    else:
        shifted = e.logical("arith.shrsi" if signed else "arith.shrui", a, b)
        fill = e.select(e.cmp("lt", a, _c(e, a, 0)), _c(e, a, -1), _c(e, a, 0)) if signed else _c(e, a, 0)
    outside = e.cmp("ge", b, _c(e, b, a.type.dtype.bits))
    if signed:
        outside = e.logical("arith.ori", outside, e.cmp("lt", b, _c(e, b, 0)))
    return e.select(outside, fill, shifted)


def _binary_rule(e, op, result_index, idx):
    return BINARY[op.name](e, op, operand_at(e, op, 0, idx), operand_at(e, op, 1, idx))


for _name in BINARY:
    RULES[_name] = _binary_rule


@rule("tensor.where")
def _where(e, op, result_index, idx):
    return e.select(operand_at(e, op, 0, idx), operand_at(e, op, 1, idx), operand_at(e, op, 2, idx))


@rule("tensor.batch_normalization")
def _batch_norm(e, op, result_index, idx):
    x = e.at(op.operands[0], idx)
    channel = [idx[1]]
    scale, bias, mean, var = (e.at(v, channel) for v in op.operands[1:])
    inv = e.div(scale, e.fn("sqrt", e.add(var, _c(e, x, op.epsilon))))
    return e.add(e.mul(e.sub(x, mean), inv), bias)


@rule("tensor.constant")
def _constant(e, op, result_index, idx):
    data = op.value.value
    flat = data.reshape(-1)
    if flat.size and (flat == flat[0]).all():
        return e.const(flat[0].item(), op.value.type.dtype)
    raise NotImplementedError("non-splat constants are region inputs, not inlined")


@rule("tensor.constant_of_shape")
def _constant_of_shape(e, op, result_index, idx):
    return e.const(op.value.value.reshape(-1)[0].item(), op.value.type.dtype)


@rule("tensor.range")
def _range(e, op, result_index, idx):
    position = e.cast(idx[0], DType.F64)
    value = e.add(e.const(op.start, DType.F64), e.mul(e.const(op.delta, DType.F64), position))
    return e.cast(value, op.dtype)


# ---------------------------------------------------------------------------------------
# Data movement
# ---------------------------------------------------------------------------------------
@rule("tensor.reshape")
def _reshape(e, op, result_index, idx):
    source = op.operands[0]
    return e.at(source, reshape_index(e, idx, tuple(op.shape), tuple(source.type.shape)))


def reshape_index(e: Emitter, idx: list[Value], out_shape: tuple, in_shape: tuple) -> list[Value]:
    """The input index of output element ``idx`` of a reshape, group by group of dims whose sizes multiply
    to the same: a dim split into several (heads out of a hidden dim) is read at their linear index, with no
    division; only dims merged into one (heads back into it) divide it."""
    if 0 in out_shape or 0 in in_shape:
        return e.delinearize(e.linearize(idx, out_shape), in_shape)
    result: list[Value] = []
    i = j = 0
    while i < len(in_shape) or j < len(out_shape):
        ins, outs = [i] if i < len(in_shape) else [], [j] if j < len(out_shape) else []
        in_size, out_size = (in_shape[i] if ins else 1), (out_shape[j] if outs else 1)
        i, j = i + 1, j + 1
        while in_size != out_size:
            if in_size < out_size:
                ins.append(i)
                in_size, i = in_size * in_shape[i], i + 1
            else:
                outs.append(j)
                out_size, j = out_size * out_shape[j], j + 1
        if not ins:
            continue
        at = [idx[k] for k in outs]
        linear = at[0] if len(at) == 1 else e.linearize(at, tuple(out_shape[k] for k in outs))
        result += [linear] if len(ins) == 1 else e.delinearize(linear, tuple(in_shape[k] for k in ins))
    return result


@rule("tensor.transpose")
def _transpose(e, op, result_index, idx):
    in_idx = [None] * len(idx)
    for out_axis, in_axis in enumerate(op.perm):
        in_idx[in_axis] = idx[out_axis]
    return e.at(op.operands[0], in_idx)


@rule("tensor.expand")
def _expand(e, op, result_index, idx):
    return operand_at(e, op, 0, idx)


@rule("tensor.tile")
def _tile(e, op, result_index, idx):
    shape = op.operands[0].type.shape
    return e.at(op.operands[0], [e.irem(i, e.index(d)) for i, d in zip(idx, shape)])


@rule("tensor.slice")
def _slice(e, op, result_index, idx):
    in_idx = [e.iadd(e.index(start), e.imul(i, e.index(step))) for i, (start, step, _) in zip(idx, op.ranges())]
    return e.at(op.operands[0], in_idx)


@rule("tensor.split")
def _split(e, op, result_index, idx):
    axis = normalize_axis(op, op.axis, len(idx))
    offset = sum(op.split[:result_index])
    in_idx = list(idx)
    in_idx[axis] = e.iadd(idx[axis], e.index(offset))
    return e.at(op.operands[0], in_idx)


@rule("tensor.concat")
def _concat(e, op, result_index, idx):
    axis = normalize_axis(op, op.axis, len(idx))
    position = idx[axis]
    result, offset = None, 0
    pieces = []
    for value in op.operands:
        size = value.type.shape[axis]
        local = e.imin(e.imax(e.isub(position, e.index(offset)), e.index(0)), e.index(size - 1))
        in_idx = list(idx)
        in_idx[axis] = local
        pieces.append((offset + size, e.at(value, in_idx)))
        offset += size
    result = pieces[-1][1]
    for end, piece in reversed(pieces[:-1]):
        result = e.select(e.cmp("lt", position, e.index(end)), piece, result)
    return result


@rule("tensor.gather")
def _gather(e, op, result_index, idx):
    data, indices = op.operands
    axis = normalize_axis(op, op.axis, data.type.rank)
    q = indices.type.rank
    raw = e.cast(e.at(indices, idx[axis:axis + q]), DType.INDEX)
    size = e.index(data.type.shape[axis])
    wrapped = e.select(e.cmp("lt", raw, e.index(0)), e.iadd(raw, size), raw)
    safe = e.imin(e.imax(wrapped, e.index(0)), e.index(data.type.shape[axis] - 1))
    return e.at(data, idx[:axis] + [safe] + idx[axis + q:])


@rule("tensor.pad")
def _pad(e, op, result_index, idx):
    x = op.operands[0]
    rank = x.type.rank
    in_idx, valid = [], None
    for axis, i in enumerate(idx):
        size = x.type.shape[axis]
        j = e.isub(i, e.index(op.pads[axis]))
        if op.mode == "constant":
            inside = e.logical("arith.andi", e.cmp("ge", j, e.index(0)), e.cmp("lt", j, e.index(size)))
            valid = inside if valid is None else e.logical("arith.andi", valid, inside)
            j = e.imin(e.imax(j, e.index(0)), e.index(size - 1))
        elif op.mode == "edge":
            j = e.imin(e.imax(j, e.index(0)), e.index(size - 1))
        elif op.mode == "reflect":
            period = e.index(max(2 * (size - 1), 1))
            m = e.irem(e.iadd(e.irem(j, period), period), period)
            j = e.select(e.cmp("lt", m, e.index(size)), m, e.isub(period, m))
        else:  # wrap
            j = e.irem(e.iadd(e.irem(j, e.index(size)), e.index(size)), e.index(size))
        in_idx.append(j)
    value = e.at(x, in_idx)
    if op.mode == "constant" and valid is not None and rank:
        return e.select(valid, value, e.const(op.value, x.type.dtype))
    return value


@rule("tensor.depth_to_space")
def _depth_to_space(e, op, result_index, idx):
    n, c, h, w = idx
    b = op.blocksize
    out_c = op.results[0].type.shape[1]
    bh, bw = e.irem(h, e.index(b)), e.irem(w, e.index(b))
    ih, iw = e.idiv(h, e.index(b)), e.idiv(w, e.index(b))
    if op.mode == "DCR":
        ic = e.iadd(e.imul(e.iadd(e.imul(bh, e.index(b)), bw), e.index(out_c)), c)
    else:
        ic = e.iadd(e.imul(c, e.index(b * b)), e.iadd(e.imul(bh, e.index(b)), bw))
    return e.at(op.operands[0], [n, ic, ih, iw])


@rule("tensor.space_to_depth")
def _space_to_depth(e, op, result_index, idx):
    n, c, h, w = idx
    b = op.blocksize
    in_c = op.operands[0].type.shape[1]
    if op.mode == "DCR":
        block, ic = e.idiv(c, e.index(in_c)), e.irem(c, e.index(in_c))
    else:
        block, ic = e.irem(c, e.index(b * b)), e.idiv(c, e.index(b * b))
    bh, bw = e.idiv(block, e.index(b)), e.irem(block, e.index(b))
    return e.at(op.operands[0], [n, ic, e.iadd(e.imul(h, e.index(b)), bh), e.iadd(e.imul(w, e.index(b)), bw)])


@rule("tensor.trilu")
def _trilu(e, op, result_index, idx):
    x = e.at(op.operands[0], idx)
    row, col = idx[-2], idx[-1]
    diagonal = e.isub(col, row)
    keep = e.cmp("ge" if op.upper else "le", diagonal, e.index(op.k))
    return e.select(keep, x, _c(e, x, 0))


@rule("tensor.one_hot")
def _one_hot(e, op, result_index, idx):
    indices, values = op.operands
    axis = normalize_axis(op, op.axis, len(idx))
    raw = e.cast(e.at(indices, idx[:axis] + idx[axis + 1:]), DType.INDEX)
    depth = e.index(op.depth)
    wrapped = e.select(e.cmp("lt", raw, e.index(0)), e.iadd(raw, depth), raw)
    off, on = e.at(values, [e.index(0)]), e.at(values, [e.index(1)])
    return e.select(e.cmp("eq", wrapped, idx[axis]), on, off)


def _wrap_index(e, raw: Value, size: int) -> Value:
    """An index read from a tensor as an in-bounds position: negative counts from the end, then clamped."""
    raw = e.cast(raw, DType.INDEX)
    wrapped = e.select(e.cmp("lt", raw, e.index(0)), e.iadd(raw, e.index(size)), raw)
    return e.imin(e.imax(wrapped, e.index(0)), e.index(size - 1))


@rule("tensor.gather_elements")
def _gather_elements(e, op, result_index, idx):
    data, indices = op.operands
    axis = normalize_axis(op, op.axis, data.type.rank)
    in_idx = list(idx)
    in_idx[axis] = _wrap_index(e, e.at(indices, idx), data.type.shape[axis])
    return e.at(data, in_idx)


@rule("tensor.gather_nd")
def _gather_nd(e, op, result_index, idx):
    data, indices = op.operands
    b, q = op.batch_dims, indices.type.rank
    k = indices.type.shape[-1]
    positions = idx[:q - 1]
    picked = [_wrap_index(e, e.at(indices, positions + [e.index(t)]), data.type.shape[b + t]) for t in range(k)]
    return e.at(data, idx[:b] + picked + idx[q - 1:])


# ---------------------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------------------
def _reduce_axes(e, op, idx, axes, keepdims, in_shape, body_value, combine, init, key, dtype=None,
                 extents=None):
    """Reduce the input over ``axes``; ``body_value(in_idx)`` gives the reduced term.

    The accumulator has the input's dtype unless ``dtype`` says otherwise (an
    index reduction, such as the position of a maximum). ``extents`` replaces
    the input's extents along ``axes`` (for a run-time trip count).
    """
    kept = [i for i in range(len(in_shape)) if i not in axes]
    out_pos = {axis: (axis if keepdims else kept.index(axis)) for axis in kept}
    deps = [idx[out_pos[a]] for a in kept]
    extents = [in_shape[a] for a in axes] if extents is None else extents
    dtype = dtype_of(op) if dtype is None else dtype

    def body(ks):
        in_idx = [None] * len(in_shape)
        for a in kept:
            in_idx[a] = idx[out_pos[a]]
        for a, k in zip(axes, ks):
            in_idx[a] = k
        return body_value(in_idx)

    return e.reduce(key, deps, extents, dtype, init, combine, body)


#: reductions that end in a logarithm or a square root: of an integer tensor they are computed in
#: float64 and truncated toward zero, as ONNX Runtime does
_FLOAT_RESULT = {"l2", "log_sum"}


def _reduction(kind, e, op, idx, axes, keepdims, key_base):
    x = op.operands[0]
    if kind == "log_sum_exp" and not x.type.dtype.is_float:
        # ONNX Runtime: the integer maximum plus the truncated log of the shifted exponentials' sum
        peak = _reduction_of("max", e, op, idx, axes, keepdims, key_base, x.type.dtype, lambda i: e.at(x, i))
        shift = e.cast(peak, DType.F64)
        total = _reduction_of("sum", e, op, idx, axes, keepdims, (key_base, "shifted"), DType.F64,
                              lambda i: e.fn("exp", e.sub(e.cast(e.at(x, i), DType.F64), shift), at_most=0.0))
        return e.add(peak, e.cast(e.fn("log", total), x.type.dtype))
    if kind in _FLOAT_RESULT and not x.type.dtype.is_float:
        wide = _reduction_of(kind, e, op, idx, axes, keepdims, key_base, DType.F64,
                             lambda in_idx: e.cast(e.at(x, in_idx), DType.F64))
        return e.cast(wide, x.type.dtype)
    return _reduction_of(kind, e, op, idx, axes, keepdims, key_base, x.type.dtype, lambda in_idx: e.at(x, in_idx))


def _reduction_of(kind, e, op, idx, axes, keepdims, key_base, dtype, load):
    """The reduction ``kind`` of the terms ``load(in_idx)``, accumulated in ``dtype``."""
    shape = op.operands[0].type.shape
    count = int(math.prod(shape[a] for a in axes))

    def run(term, combine, init, tag):
        return _reduce_axes(e, op, idx, axes, keepdims, shape, term, combine, init, (key_base, tag), dtype)

    if kind in ("sum", "mean"):
        total = run(load, e.add, 0, "sum")
        return e.div(total, e.const(count, dtype)) if kind == "mean" else total
    if kind == "max":
        return run(load, e.max, float_limit(dtype, -1), "max")
    if kind == "min":
        return run(load, e.min, float_limit(dtype, 1), "min")
    if kind == "prod":
        return run(load, e.mul, 1, "prod")
    if kind == "l1":
        return run(lambda i: _abs(e, load(i)), e.add, 0, "l1")
    if kind in ("l2", "sum_square"):
        total = run(lambda i: e.mul(load(i), load(i)), e.add, 0, "sumsq")
        return e.fn("sqrt", total) if kind == "l2" else total
    if kind == "log_sum":
        return e.fn("log", run(load, e.add, 0, "sum"))
    if kind == "log_sum_exp":
        peak = run(load, e.max, -math.inf, "max")
        safe = e.select(e.cmp("eq", peak, e.const(-math.inf, dtype)), e.const(0.0, dtype), peak)
        total = run(lambda i: e.fn("exp", e.sub(load(i), safe), at_most=0.0), e.add, 0, "sumexp")
        return e.add(safe, e.fn("log", total))
    raise NotImplementedError(kind)


@rule("tensor.reduce_sum", "tensor.reduce_mean", "tensor.reduce_max", "tensor.reduce_min", "tensor.reduce_prod",
      "tensor.reduce_l1", "tensor.reduce_l2", "tensor.reduce_sum_square", "tensor.reduce_log_sum",
      "tensor.reduce_log_sum_exp")
def _reduce(e, op, result_index, idx):
    return _reduction(op.reduction, e, op, idx, op.reduced_axes(), op.keepdims, id(op))


@rule("tensor.argmax", "tensor.argmin")
def _arg_reduce(e, op, result_index, idx):
    x = op.operands[0]
    axis = normalize_axis(op, op.axis, x.type.rank)
    kind = "max" if op.name == "tensor.argmax" else "min"
    best = _reduction(kind, e, op, idx, [axis], op.keepdims, id(op))  # NaN when the line holds one
    size = x.type.shape[axis]

    def position(in_idx):
        value = e.at(x, in_idx)
        hit = e.cmp("eq", value, best)
        if x.type.dtype.is_float:  # a NaN is the line's maximum and minimum, as numpy's argmax/argmin
            hit = e.logical("arith.ori", hit, e.cmp("ne", value, value))
        return e.select(hit, in_idx[axis], e.index(-1 if op.select_last_index else size))

    combine = e.imax if op.select_last_index else e.imin
    init = -1 if op.select_last_index else size
    found = _reduce_axes(e, op, idx, [axis], op.keepdims, x.type.shape, position, combine, init, (id(op), "pos"),
                         DType.INDEX)
    return e.cast(e.imin(e.imax(found, e.index(0)), e.index(size - 1)), DType.I64)


def _row_stats(e, op, idx, axes, tag):
    """Max and sum(exp(x - max)) over ``axes`` for the row of ``idx`` (softmax family)."""
    x = op.operands[0]
    load = lambda in_idx: e.at(x, in_idx)  # noqa: E731
    peak = _reduce_axes(e, op, idx, axes, True, x.type.shape, load, e.max_number, -math.inf,
                        (id(op), tag, "max"))
    total = _reduce_axes(e, op, idx, axes, True, x.type.shape,
                         lambda i: e.fn("exp", e.sub(load(i), peak), at_most=0.0), e.add, 0.0, (id(op), tag, "sum"))
    return peak, total


@rule("tensor.softmax")
def _softmax(e, op, result_index, idx):
    axis = normalize_axis(op, op.axis, len(idx))
    if axis == len(idx) - 1 and e.in_row(idx):
        exps, start, total = _softmax_row(e, op, idx)
        return e.mul(e.load_mutable(exps, e.iadd(start, idx[-1])), e.reciprocal(total))
    peak, total = _row_stats(e, op, idx, [axis], "softmax")
    return e.div(e.fn("exp", e.sub(e.at(op.operands[0], idx), peak), at_most=0.0), total)


def _softmax_row(e, op, idx) -> tuple[Value, Value, Value]:
    """exp(x - max) of the whole row, stored while it is summed, and the sum: the output pass only divides.

    The exps go where the output row will be when the softmax is a result of the kernel (the output pass
    then rescales them in place, and the row's first write to the output overlaps the exps' arithmetic),
    else to a stack buffer. Returns the buffer, the row's start in it, and the sum.
    """
    key = ("softmax_row", id(op), tuple(id(i) for i in idx[:-1]))
    cached = e.memo.get(key)
    if cached is not None and e.scope_of[id(cached[2])].encloses(e.current):
        return cached
    x = op.operands[0]
    outer, length = idx[:-1], x.type.shape[-1]  # the softmax's own row: a reduction may walk it from a 1-long one
    peak = _reduce_axes(e, op, idx, [len(idx) - 1], True, x.type.shape, lambda i: e.at(x, i), e.max_number,
                        -math.inf, (id(op), "softmax", "max"))
    exps = e.destinations.get(id(op.results[0]))
    if exps is not None:
        start = e.linearize(outer + [e.index(0)], x.type.shape)
    else:
        exps = e.emit(loop.AllocaOp, [], MemRefType((length,), x.type.dtype), scope=e.alloca_scope, pure=False)
        start = e.index(0)

    def term(ks):
        value = e.fn("exp", e.sub(e.at(x, outer + [ks[0]]), peak), at_most=0.0)
        e.store(value, exps, e.iadd(start, ks[0]))
        return value

    total = e.reduce((id(op), "softmax", "sum"), outer, [length], x.type.dtype, 0.0, e.add, term)
    e.memo[key] = (exps, start, total)
    return exps, start, total


@rule("tensor.log_softmax")
def _log_softmax(e, op, result_index, idx):
    axis = normalize_axis(op, op.axis, len(idx))
    peak, total = _row_stats(e, op, idx, [axis], "logsoftmax")
    return e.sub(e.sub(e.at(op.operands[0], idx), peak), e.fn("log", total))


@rule("tensor.hardmax")
def _hardmax(e, op, result_index, idx):
    x = op.operands[0]
    axis = normalize_axis(op, op.axis, len(idx))
    load = lambda in_idx: e.at(x, in_idx)  # noqa: E731
    peak = _reduce_axes(e, op, idx, [axis], True, x.type.shape, load, e.max, -math.inf, (id(op), "max"))
    first = _reduce_axes(e, op, idx, [axis], True, x.type.shape,
                         lambda i: e.select(e.cmp("eq", load(i), peak), i[axis], e.index(x.type.shape[axis])),
                         e.imin, x.type.shape[axis], (id(op), "first"), DType.INDEX)
    dtype = x.type.dtype
    return e.select(e.cmp("eq", first, idx[axis]), e.const(1.0, dtype), e.const(0.0, dtype))


#: how many leading elements of a normalized region average into the shift of its one-pass moments
_SHIFT_SAMPLE = 16
#: the largest share of the shifted sum of squares that the shift's own offset may take before the
#: variance is recomputed around the mean (at this share its rounding error at most doubles)
_SHIFT_SHARE = 0.25


def _normalize(e, op, idx, axes, epsilon, rms=False):
    """(x - mean) / sqrt(var + eps) over ``axes`` (or x / sqrt(mean(x^2) + eps) when ``rms``).

    The statistics and the result are in ``_stats_dtype``: the caller applies
    scale and bias in it and rounds once, with ``_narrow``.
    """
    x = op.operands[0]
    dtype = _stats_dtype(x)
    shape = x.type.shape
    count = e.const(math.prod(shape[a] for a in axes), dtype)
    load = lambda in_idx: _widened(e, x, in_idx)  # noqa: E731
    value = load(idx)
    if rms:
        square = _reduce_axes(e, op, idx, axes, True, shape, lambda i: e.mul(load(i), load(i)), e.add, 0.0,
                              (id(op), "sumsq"), dtype)
        return e.mul(value, e.reciprocal(e.fn("sqrt", e.add(e.div(square, count), e.const(epsilon, dtype)))))
    mean, var = _moments(e, op, idx, axes, count)
    return e.mul(e.sub(value, mean), e.reciprocal(e.fn("sqrt", e.add(var, e.const(epsilon, dtype)))))


def _stats_dtype(x: Value) -> DType:
    """The dtype a normalisation of ``x`` sums in: float32 for float16 (as ONNX Runtime does; a float16
    sum of a few thousand elements is off by whole percents), else x's own."""
    return DType.F32 if x.type.dtype is DType.F16 else x.type.dtype


def _widened(e, x: Value, idx) -> Value:
    """``x[idx]`` in ``_stats_dtype(x)``."""
    value = e.at(x, idx)
    wide = _stats_dtype(x)
    return value if wide is x.type.dtype else e.cast(value, wide)


def _narrow(e, value: Value, x: Value) -> Value:
    """A normalisation's result, computed in ``_stats_dtype(x)``, rounded to x's dtype."""
    return value if value.type.dtype is x.type.dtype else e.cast(value, x.type.dtype)


def _moments(e, op, idx, axes, count):
    """Mean and variance of x over ``axes``, in one pass over x where that keeps the variance's rounding
    error within twice the two-pass method's.

    The pass sums d = x - s and d^2 around a shift s, the mean of the
    region's first few elements: mean = s + sum(d) / n and
    var = (sum(d^2) - sum(d)^2 / n) / n. Its rounding error grows with the
    share sum(d)^2 / n of sum(d^2) that the shift's offset from the mean
    takes; above ``_SHIFT_SHARE`` (a row whose first elements are not
    typical of it), a second pass sums (x - mean)^2, as the two-pass method
    always does. The subtraction is ``strict``: reassociated, it would turn
    sum(x - s) back into sum(x) - n s.
    """
    x = op.operands[0]
    dtype, shape = _stats_dtype(x), x.type.shape
    load = lambda in_idx: _widened(e, x, in_idx)  # noqa: E731
    last = axes[-1]
    sample = min(_SHIFT_SAMPLE, shape[last])

    def leading(ks):
        return load([ks[0] if a == last else e.index(0) if a in axes else i for a, i in enumerate(idx)])

    deps = [i for a, i in enumerate(idx) if a not in axes]
    shift = e.div(e.reduce((id(op), "shift"), deps, [sample], dtype, 0.0, e.add, leading),
                  e.const(sample, dtype))
    offset = lambda in_idx: e.sub(load(in_idx), shift, strict=True)  # noqa: E731
    total = _reduce_axes(e, op, idx, axes, True, shape, offset, e.add, 0.0, (id(op), "shifted sum"), dtype)
    squares = _reduce_axes(e, op, idx, axes, True, shape, lambda i: e.mul(offset(i), offset(i)), e.add, 0.0,
                           (id(op), "shifted squares"), dtype)
    mean_offset = e.div(total, count)
    mean = e.add(shift, mean_offset)
    offset_share = e.mul(mean_offset, total)
    recompute = e.cmp("gt", offset_share, e.mul(squares, e.const(_SHIFT_SHARE, dtype)))

    def centered_square(in_idx):
        d = e.sub(load(in_idx), mean)
        return e.mul(d, d)

    trips = [e.select(recompute, e.index(shape[axes[0]]), e.index(0))] + [shape[a] for a in axes[1:]]
    centered = _reduce_axes(e, op, idx, axes, True, shape, centered_square, e.add, 0.0, (id(op), "var"),
                            dtype, extents=trips)
    var = e.select(recompute, centered, e.sub(squares, offset_share))
    return mean, e.div(var, count)


@rule("tensor.layer_normalization")
def _layer_norm(e, op, result_index, idx):
    rank = len(idx)
    axis = normalize_axis(op, op.axis, rank)
    normed = _normalize(e, op, idx, list(range(axis, rank)), op.epsilon)
    tail = idx[axis:]
    scale = op.operands[1]
    out = e.mul(normed, _widened(e, scale, broadcast_index(e, tail, scale.type.shape)))
    if len(op.operands) == 3:
        bias = op.operands[2]
        out = e.add(out, _widened(e, bias, broadcast_index(e, tail, bias.type.shape)))
    return _narrow(e, out, op.operands[0])


@rule("tensor.rms_normalization")
def _rms_norm(e, op, result_index, idx):
    rank = len(idx)
    axis = normalize_axis(op, op.axis, rank)
    normed = _normalize(e, op, idx, list(range(axis, rank)), op.epsilon, rms=True)
    scale = op.operands[1]
    return _narrow(e, e.mul(normed, _widened(e, scale, broadcast_index(e, idx[axis:], scale.type.shape))),
                   op.operands[0])


@rule("tensor.instance_normalization")
def _instance_norm(e, op, result_index, idx):
    normed = _normalize(e, op, idx, list(range(2, len(idx))), op.epsilon)
    channel = [idx[1]]
    scaled = e.mul(normed, _widened(e, op.operands[1], channel))
    return _narrow(e, e.add(scaled, _widened(e, op.operands[2], channel)), op.operands[0])


def _scan(e, op, idx, combine, identity):
    """Cumulative ``combine`` along ``op.axis`` (exclusive and reverse as ONNX's CumSum).

    Along the rows the nest walks, one running accumulator fills the row once (linear in the row
    length); along any other axis, each element reduces the prefix it covers.
    """
    x = op.operands[0]
    axis = normalize_axis(op, op.axis, len(idx))
    if axis == len(idx) - 1 and e.in_row(idx):
        result = op.results[0]
        if id(result) not in e.row_cached:
            e.cache_rows(result, idx[:-1], x.type.shape[axis])  # filled by ``row_fill``
        return e.at(result, idx)
    here = idx[axis]
    predicate = ("gt" if op.exclusive else "ge") if op.reverse else ("lt" if op.exclusive else "le")

    def term(ks):
        in_idx = list(idx)
        in_idx[axis] = ks[0]
        value = e.at(x, in_idx)
        return e.select(e.cmp(predicate, ks[0], here), value, _c(e, value, identity))

    return e.reduce((id(op), "scan"), idx, [x.type.shape[axis]], x.type.dtype, identity, combine, term)


def _scan_row(e, op, row, outer, combine, identity) -> None:
    """Fill ``row`` with the scan of ``x[outer, :]``, walking it backwards when ``op.reverse``."""
    x = op.operands[0]
    length = x.type.shape[-1]
    zero = e.index(0)
    acc = e.emit(loop.AllocaOp, [], MemRefType((1,), x.type.dtype), scope=e.alloca_scope, pure=False)
    e.store(e.const(identity, x.type.dtype), acc, zero)
    with e.loop_in(e.current, 0, length) as (j, _):
        k = e.isub(e.index(length - 1), j) if op.reverse else j
        before = e.load_mutable(acc, zero)
        after = combine(before, e.at(x, outer + [k]))
        e.store(after, acc, zero)
        e.store(before if op.exclusive else after, row, k)


#: scans: op name -> (the Emitter method combining two values, its identity)
_SCANS = {"tensor.cumsum": ("add", 0), "tensor.cumprod": ("mul", 1)}


@rule(*_SCANS)
def _cumulative(e, op, result_index, idx):
    combine, identity = _SCANS[op.name]
    return _scan(e, op, idx, getattr(e, combine), identity)


def row_fill(value: Value) -> Callable | None:
    """How a cached row of ``value`` is filled whole, for ops that compute a row better at once than
    element by element (a scan along the row: one running accumulator), else None.

    Every cache of such a row uses it, whoever asked for the cache (the scan itself, or a softmax or
    reduction reading the scan's row), so a row is never filled by reading itself.
    """
    op = value.op
    if op.name not in _SCANS or normalize_axis(op, op.axis, value.type.rank) != value.type.rank - 1:
        return None
    combine, identity = _SCANS[op.name]
    return lambda e, row, outer: _scan_row(e, op, row, outer, getattr(e, combine), identity)


@rule("tensor.reverse_sequence")
def _reverse_sequence(e, op, result_index, idx):
    x, lengths = op.operands
    batch, time = idx[op.batch_axis], idx[op.time_axis]
    length = e.cast(e.at(lengths, [batch]), DType.INDEX)
    flipped = e.isub(e.isub(length, e.index(1)), time)
    in_idx = list(idx)
    in_idx[op.time_axis] = e.select(e.cmp("lt", time, length), flipped, time)
    return e.at(x, in_idx)


@rule("tensor.lrn")
def _lrn(e, op, result_index, idx):
    x = op.operands[0]
    channels = x.type.shape[1]
    lo = (op.size - 1) // 2
    dtype = x.type.dtype

    def term(ks):
        c = e.iadd(e.isub(idx[1], e.index(lo)), ks[0])
        inside = e.logical("arith.andi", e.cmp("ge", c, e.index(0)), e.cmp("lt", c, e.index(channels)))
        safe = e.imin(e.imax(c, e.index(0)), e.index(channels - 1))
        value = e.at(x, [idx[0], safe] + idx[2:])
        return e.select(inside, e.mul(value, value), e.const(0.0, dtype))

    square = e.reduce((id(op), "lrn"), idx, [op.size], dtype, 0.0, e.add, term)
    base = e.add(e.const(op.bias, dtype), e.mul(e.const(op.alpha / op.size, dtype), square))
    return e.div(e.at(x, idx), e.pow(base, e.const(op.beta, dtype)))


# ---------------------------------------------------------------------------------------
# Compute ops
# ---------------------------------------------------------------------------------------
@rule("tensor.matmul")
def _matmul(e, op, result_index, idx):
    a, b = op.operands
    a_shape = (1,) + a.type.shape if a.type.rank == 1 else a.type.shape
    b_shape = b.type.shape + (1,) if b.type.rank == 1 else b.type.shape
    out = list(idx)
    j = out.pop() if b.type.rank > 1 else e.index(0)
    i = out.pop() if a.type.rank > 1 else e.index(0)
    batch = out
    k_size = a_shape[-1]

    def term(ks):
        a_idx = broadcast_index(e, batch, a_shape[:-2]) + [i, ks[0]]
        b_idx = broadcast_index(e, batch, b_shape[:-2]) + [ks[0], j]
        a_val = e.at(a, a_idx if a.type.rank > 1 else [ks[0]])
        b_val = e.at(b, b_idx if b.type.rank > 1 else [ks[0]])
        return e.mul(a_val, b_val)

    return e.reduce((id(op), "matmul"), idx, [k_size], dtype_of(op), 0, e.add, term)


@rule("tensor.gemm")
def _gemm(e, op, result_index, idx):
    a, b = op.operands[:2]
    i, j = idx
    k_size = a.type.shape[0] if op.transA else a.type.shape[1]
    dtype = dtype_of(op)

    def term(ks):
        k = ks[0]
        a_val = e.at(a, [k, i] if op.transA else [i, k])
        b_val = e.at(b, [j, k] if op.transB else [k, j])
        return e.mul(a_val, b_val)

    acc = e.reduce((id(op), "gemm"), idx, [k_size], dtype, 0, e.add, term)
    if op.alpha != 1.0:
        acc = e.mul(acc, e.const(op.alpha, dtype))
    if len(op.operands) == 3 and op.beta != 0.0:
        c = operand_at(e, op, 2, idx)
        acc = e.add(acc, c if op.beta == 1.0 else e.mul(c, e.const(op.beta, dtype)))
    return acc


def _window_source(e, op, out_spatial, ks, in_spatial_shape):
    """Input spatial indices of a window tap, whether it is inside the input, and clamped indices."""
    strides, pads, dilations = op.window()
    spatial = len(op.kernel_shape)
    positions, valid = [], None
    for axis in range(spatial):
        pos = e.iadd(e.imul(out_spatial[axis], e.index(strides[axis])),
                     e.isub(e.imul(ks[axis], e.index(dilations[axis])), e.index(pads[axis])))
        size = in_spatial_shape[axis]
        inside = e.logical("arith.andi", e.cmp("ge", pos, e.index(0)), e.cmp("lt", pos, e.index(size)))
        valid = inside if valid is None else e.logical("arith.andi", valid, inside)
        positions.append(e.imin(e.imax(pos, e.index(0)), e.index(size - 1)))
    return positions, valid


@rule("tensor.conv")
def _conv(e, op, result_index, idx):
    x, w = op.operands[:2]
    dtype = dtype_of(op)
    n, co, out_spatial = idx[0], idx[1], idx[2:]
    c_in_group = w.type.shape[1]
    c_out_group = w.type.shape[0] // op.group
    group_base = e.imul(e.idiv(co, e.index(c_out_group)), e.index(c_in_group))

    def term(ks):
        ci, taps = ks[0], ks[1:]
        positions, valid = _window_source(e, op, out_spatial, taps, x.type.shape[2:])
        x_val = e.at(x, [n, e.iadd(group_base, ci)] + positions)
        product = e.mul(x_val, e.at(w, [co, ci] + taps))
        return e.select(valid, product, e.const(0.0, dtype))

    acc = e.reduce((id(op), "conv"), idx, [c_in_group] + list(op.kernel_shape), dtype, 0.0, e.add, term)
    if len(op.operands) == 3:
        acc = e.add(acc, e.at(op.operands[2], [co]))
    return acc


@rule("tensor.conv_transpose")
def _conv_transpose(e, op, result_index, idx):
    x, w = op.operands[:2]
    dtype = dtype_of(op)
    strides, pads, dilations = op.window()
    n, co, out_spatial = idx[0], idx[1], idx[2:]
    c_in_group = x.type.shape[1] // op.group
    c_out_group = w.type.shape[1]
    group = e.idiv(co, e.index(c_out_group))
    co_local = e.irem(co, e.index(c_out_group))

    def term(ks):
        ci, taps = e.iadd(e.imul(group, e.index(c_in_group)), ks[0]), ks[1:]
        positions, valid = [], None
        for axis, tap in enumerate(taps):
            shifted = e.isub(e.iadd(out_spatial[axis], e.index(pads[axis])), e.imul(tap, e.index(dilations[axis])))
            size = x.type.shape[2 + axis]
            stride = e.index(strides[axis])
            pos = e.idiv(e.imax(shifted, e.index(0)), stride)
            ok = e.logical("arith.andi", e.cmp("ge", shifted, e.index(0)),
                           e.cmp("eq", e.irem(e.imax(shifted, e.index(0)), stride), e.index(0)))
            ok = e.logical("arith.andi", ok, e.cmp("lt", pos, e.index(size)))
            valid = ok if valid is None else e.logical("arith.andi", valid, ok)
            positions.append(e.imin(pos, e.index(size - 1)))
        product = e.mul(e.at(x, [n, ci] + positions), e.at(w, [ci, co_local] + taps))
        return e.select(valid, product, e.const(0.0, dtype))

    acc = e.reduce((id(op), "convT"), idx, [c_in_group] + list(op.kernel_shape), dtype, 0.0, e.add, term)
    if len(op.operands) == 3:
        acc = e.add(acc, e.at(op.operands[2], [co]))
    return acc


@rule("tensor.max_pool")
def _max_pool(e, op, result_index, idx):
    x = op.operands[0]
    dtype = dtype_of(op)
    lowest = e.const(float_limit(dtype, -1), dtype)

    def term(ks):
        positions, valid = _window_source(e, op, idx[2:], ks, x.type.shape[2:])
        return e.select(valid, e.at(x, idx[:2] + positions), lowest)

    best = e.reduce((id(op), "maxpool"), idx, list(op.kernel_shape), dtype, float_limit(dtype, -1), e.max, term)
    if not dtype.is_float:
        return best
    empty = None
    for axis, runs in enumerate(op.empty_window_runs(x.type.shape[2:], op.ceil_mode)):
        for start, stop in runs:
            o = idx[2 + axis]
            inside = e.logical("arith.andi", e.cmp("ge", o, e.index(start)), e.cmp("lt", o, e.index(stop)))
            empty = inside if empty is None else e.logical("arith.ori", empty, inside)
    if empty is None:
        return best
    return e.select(empty, e.const(float(np.finfo(dtype.numpy).min), dtype), best)


@rule("tensor.max_pool_indices")
def _max_pool_indices(e, op, result_index, idx):
    """The first tap (in row-major kernel order) holding the window's maximum, as a flat input index."""
    x = op.operands[0]
    dtype = dtype_of(op)
    strides, pads, dilations = op.window()
    lowest = e.const(float_limit(dtype, -1), dtype)

    def value(ks):
        positions, valid = _window_source(e, op, idx[2:], ks, x.type.shape[2:])
        return valid, e.select(valid, e.at(x, idx[:2] + positions), lowest)

    best = e.reduce((id(op), "max"), idx, list(op.kernel_shape), dtype, float_limit(dtype, -1), e.max,
                    lambda ks: value(ks)[1])
    taps = tuple(op.kernel_shape)
    none = math.prod(taps)

    def first(ks):
        valid, v = value(ks)
        hit = e.logical("arith.andi", valid, e.cmp("eq", v, best))
        return e.select(hit, e.linearize(ks, taps), e.index(none))

    tap = e.reduce((id(op), "argmax"), idx, list(taps), DType.INDEX, none, e.imin, first)
    ks = e.delinearize(e.imin(tap, e.index(none - 1)), taps)
    spatial = x.type.shape[2:]
    coords = [e.iadd(e.imul(o, e.index(s)), e.isub(e.imul(k, e.index(d)), e.index(p)))
              for o, k, s, d, p in zip(idx[2:], ks, strides, dilations, pads)]
    order = range(len(spatial)) if op.storage_order == 0 else reversed(range(len(spatial)))
    flat = e.linearize(idx[:2], x.type.shape[:2])
    flat = e.imul(flat, e.index(math.prod(spatial)))
    offset = e.index(0)
    for axis in order:
        offset = e.iadd(e.imul(offset, e.index(spatial[axis])), coords[axis])
    return e.cast(e.iadd(flat, offset), DType.I64)


@rule("tensor.lp_pool")
def _lp_pool(e, op, result_index, idx):
    x = op.operands[0]
    dtype = dtype_of(op)
    zero = e.const(0.0, dtype)

    def term(ks):
        positions, valid = _window_source(e, op, idx[2:], ks, x.type.shape[2:])
        magnitude = e.fn("absf", e.at(x, idx[:2] + positions))
        power = _float_pow(e, magnitude, e.const(float(op.p), dtype))
        return e.select(valid, power, zero)

    total = e.reduce((id(op), "lp"), idx, list(op.kernel_shape), dtype, 0.0, e.add, term)
    return _float_pow(e, total, e.const(1.0 / op.p, dtype))


@rule("tensor.average_pool")
def _average_pool(e, op, result_index, idx):
    x = op.operands[0]
    dtype = dtype_of(op)
    strides, pads, dilations = op.window()
    spatial = len(op.kernel_shape)

    def term(ks):
        positions, valid = _window_source(e, op, idx[2:], ks, x.type.shape[2:])
        return e.select(valid, e.at(x, idx[:2] + positions), e.const(0.0, dtype))

    def counted(ks):
        inside = None
        for axis in range(spatial):
            pos = e.iadd(e.imul(idx[2 + axis], e.index(strides[axis])),
                         e.isub(e.imul(ks[axis], e.index(dilations[axis])), e.index(pads[axis])))
            if op.count_include_pad:
                lo, hi = -pads[axis], x.type.shape[2 + axis] + pads[axis + spatial]
            else:
                lo, hi = 0, x.type.shape[2 + axis]
            ok = e.logical("arith.andi", e.cmp("ge", pos, e.index(lo)), e.cmp("lt", pos, e.index(hi)))
            inside = ok if inside is None else e.logical("arith.andi", inside, ok)
        return e.select(inside, e.const(1.0, dtype), e.const(0.0, dtype))

    total = e.reduce((id(op), "sum"), idx, list(op.kernel_shape), dtype, 0.0, e.add, term)
    count = e.reduce((id(op), "count"), idx, list(op.kernel_shape), dtype, 0.0, e.add, counted)
    return e.div(total, e.max(count, e.const(1.0, dtype)))


@rule("tensor.einsum")
def _einsum(e, op, result_index, idx):
    inputs, _, output = op.equation.replace(" ", "").partition("->")
    terms = inputs.split(",")
    if not _:
        output = "".join(sorted(c for c in set(inputs.replace(",", "")) if inputs.count(c) == 1))
    sizes = {}
    for term, value in zip(terms, op.operands):
        for letter, d in zip(term, value.type.shape):
            if d != 1 or letter not in sizes:
                sizes[letter] = d
    summed = sorted(set("".join(terms)) - set(output))
    position = dict(zip(output, idx))

    def product(ks):
        where = dict(position)
        where.update(zip(summed, ks))
        result = None
        for term, value in zip(terms, op.operands):
            at = [e.index(0) if d == 1 and sizes[c] != 1 else where[c] for c, d in zip(term, value.type.shape)]
            scalar = e.at(value, at)
            result = scalar if result is None else e.mul(result, scalar)
        return result

    if not summed:
        return product([])
    return e.reduce((id(op), "einsum"), idx, [sizes[c] for c in summed], dtype_of(op), 0, e.add, product)


# ---------------------------------------------------------------------------------------
# Row schedules: a compute op's output row at once, the reduction outside a contiguous loop
# ---------------------------------------------------------------------------------------
def _init_row(e: Emitter, row: Value, length: int, value: Value) -> None:
    with e.loop_in(e.current, 0, length) as (j, _):
        e.store(value, row, j)


def _accumulate(e: Emitter, row: Value, j: Value, term: Value) -> None:
    e.store(e.add(e.load_mutable(row, j), term), row, j)


def _conv_row(e: Emitter, op: Operation, row: Value, outer: list[Value]) -> None:
    """out[n, co, oh, :] for a 2-D conv (out[n, co, :] for a 1-D one, a 2-D conv of height 1): for each
    (ci, kh, kw) tap, one multiply-add over the valid columns.

    The valid column range of each tap is computed (not tested per element),
    so the inner loop is a plain strided load and FMA the vectorizer handles.
    """
    x, w = op.operands[:2]
    dtype = dtype_of(op)
    strides, pads, dilations = op.window()
    if x.type.rank == 3:
        n, co = outer
        oh = e.index(0)
        (sw,), (dw,), (pw, _) = strides, dilations, pads
        sh, dh, ph = 1, 1, 0
        (_, _, width), height = x.type.shape, 1
        kh_size, kw_size = 1, op.kernel_shape[0]
    else:
        n, co, oh = outer
        (sh, sw), (dh, dw) = strides, dilations
        ph, pw = pads[0], pads[1]
        _, _, height, width = x.type.shape
        kh_size, kw_size = op.kernel_shape
    out_w = op.results[0].type.shape[-1]
    c_in_group = w.type.shape[1]
    c_out_group = w.type.shape[0] // op.group
    bias = e.at(op.operands[2], [co]) if len(op.operands) == 3 else e.const(0.0, dtype)
    _init_row(e, row, out_w, bias)
    group_base = e.imul(e.idiv(co, e.index(c_out_group)), e.index(c_in_group))
    scope = e.current
    with e.loop_in(scope, 0, c_in_group) as (ci, ci_scope):
        channel = e.iadd(group_base, ci)
        with e.loop_in(ci_scope, 0, kh_size) as (kh, kh_scope):
            ih = e.iadd(e.imul(oh, e.index(sh)), e.isub(e.imul(kh, e.index(dh)), e.index(ph)))
            inside = e.logical("arith.andi", e.cmp("ge", ih, e.index(0)), e.cmp("lt", ih, e.index(height)))
            ih_safe = e.imin(e.imax(ih, e.index(0)), e.index(height - 1))
            with e.loop_in(kh_scope, 0, kw_size) as (kw, _):
                weight = e.at(w, [co, ci, kh, kw] if w.type.rank == 4 else [co, ci, kw])
                offset = e.isub(e.imul(kw, e.index(dw)), e.index(pw))
                # first column j with j*sw + offset >= 0, and one past the last with j*sw + offset < width
                lead = e.imax(e.isub(e.index(0), offset), e.index(0))
                lo = e.idiv(e.iadd(lead, e.index(sw - 1)), e.index(sw))
                room = e.isub(e.index(width - 1), offset)
                hi = e.imin(e.select(e.cmp("lt", room, e.index(0)), e.index(0),
                                     e.iadd(e.idiv(e.imax(room, e.index(0)), e.index(sw)), e.index(1))),
                            e.index(out_w))
                hi = e.select(inside, hi, lo)
                row_start = [n, channel, ih_safe, e.index(0)] if x.type.rank == 4 else [n, channel, e.index(0)]
                base = e.linearize(row_start, x.type.shape)
                with e.loop_in(e.current, lo, hi) as (j, _):
                    column = e.iadd(e.imul(j, e.index(sw)), offset)
                    source = e.at_buffer(x, e.iadd(base, column))
                    _accumulate(e, row, j, e.mul(weight, source))


def _matmul_row(e: Emitter, op: Operation, row: Value, outer: list[Value]) -> None:
    """out[..., i, :] = sum_k a[..., i, k] * b[..., k, :]: a scalar times a contiguous row of b per k."""
    a, b = op.operands[:2]
    dtype = dtype_of(op)
    if op.name == "tensor.gemm":
        k_size = a.type.shape[0] if op.transA else a.type.shape[1]
        n_size = b.type.shape[1]
        batch, i = [], outer[0]
        b_shape = b.type.shape
    else:
        k_size, n_size = a.type.shape[-1], b.type.shape[-1]
        batch = outer[:-1] if a.type.rank > 1 else outer
        i = outer[-1] if a.type.rank > 1 else None
        b_shape = b.type.shape
    _init_row(e, row, n_size, e.const(0.0, dtype))
    with e.loop_in(e.current, 0, k_size) as (k, _):
        if op.name == "tensor.gemm":
            a_val = e.at(a, [k, i] if op.transA else [i, k])
        elif a.type.rank == 1:
            a_val = e.at(a, [k])
        else:
            a_val = e.at(a, broadcast_index(e, batch, a.type.shape[:-2]) + [i, k])
        b_base = e.linearize(broadcast_index(e, batch, b_shape[:-2]) + [k, e.index(0)], b_shape)
        with e.loop_in(e.current, 0, n_size) as (j, _):
            _accumulate(e, row, j, e.mul(a_val, e.at_buffer(b, e.iadd(b_base, j))))
    if op.name == "tensor.gemm" and (op.alpha != 1.0 or (len(op.operands) == 3 and op.beta != 0.0)):
        with e.loop_in(e.current, 0, n_size) as (j, _):
            acc = e.load_mutable(row, j)
            if op.alpha != 1.0:
                acc = e.mul(acc, e.const(op.alpha, dtype))
            if len(op.operands) == 3 and op.beta != 0.0:
                c = operand_at(e, op, 2, [i, j])
                acc = e.add(acc, c if op.beta == 1.0 else e.mul(c, e.const(op.beta, dtype)))
            e.store(acc, row, j)


def row_schedule(op: Operation, buffers: dict, vector_width: int = 1) -> Callable | None:
    """The row schedule for a compute op whose operands (those read by rows) are buffers, or None. Depthwise
    convs and max pooling have rows in vector registers where the target has vectors (``window_rows``)."""
    vectors = vector_width > 1
    if op.name == "tensor.conv" and op.operands[0].type.rank in (3, 4) and id(op.operands[0]) in buffers:
        return depthwise_row if vectors and is_depthwise(op) else _conv_row
    if vectors and is_2d_max_pool(op) and id(op.operands[0]) in buffers:
        return max_pool_row
    if op.name == "tensor.matmul" and op.operands[1].type.rank >= 2 and id(op.operands[1]) in buffers:
        return _matmul_row
    if op.name == "tensor.gemm" and not op.transB and id(op.operands[1]) in buffers:
        return _matmul_row
    return None


# ---------------------------------------------------------------------------------------
# Opaque ops: each is alone in its kernel, so its operands are buffers
# ---------------------------------------------------------------------------------------
def _scatter(e, op, idx, extents, target_matches, update_at):
    """out[idx] for a scatter: ``data[idx]`` combined with every update whose target is ``idx``.

    Each output element scans the update positions (``extents``):
    ``target_matches(ks)`` says whether update ``ks`` targets ``idx`` and
    ``update_at(ks)`` reads it. Without a reduction the last matching update wins.
    """
    data = op.operands[0]
    dtype = data.type.dtype
    current = e.at(data, idx)
    key = (id(op), "scatter")
    if op.reduction == "none":
        def last(ks):
            return e.select(target_matches(ks), e.linearize(ks, tuple(extents)), e.index(-1))

        found = e.reduce(key, idx, extents, DType.INDEX, -1, e.imax, last)
        ks = e.delinearize(e.imax(found, e.index(0)), tuple(extents))
        return e.select(e.cmp("ge", found, e.index(0)), update_at(ks), current)
    combine, neutral = {"add": (e.add, 0), "mul": (e.mul, 1), "max": (e.max, float_limit(dtype, -1)),
                        "min": (e.min, float_limit(dtype, 1))}[op.reduction]
    return e.reduce(key, idx, extents, dtype, current, combine,
                    lambda ks: e.select(target_matches(ks), update_at(ks), e.const(neutral, dtype)))


def _all(e, conditions: list[Value]) -> Value:
    result = e.const(1, DType.I1)
    for condition in conditions:
        result = e.logical("arith.andi", result, condition)
    return result


@rule("tensor.scatter_elements")
def _scatter_elements(e, op, result_index, idx):
    data, indices, updates = op.operands
    axis = normalize_axis(op, op.axis, data.type.rank)
    shape = indices.type.shape
    # updates that can land on idx share its position on every other axis
    inside = _all(e, [e.cmp("lt", i, e.index(d)) for a, (i, d) in enumerate(zip(idx, shape)) if a != axis])
    clamped = [e.imin(i, e.index(d - 1)) for i, d in zip(idx, shape)]

    def position(ks):
        at = list(clamped)
        at[axis] = ks[0]
        return at

    def matches(ks):
        target = _wrap_index(e, e.at(indices, position(ks)), data.type.shape[axis])
        return e.logical("arith.andi", inside, e.cmp("eq", target, idx[axis]))

    return _scatter(e, op, idx, [shape[axis]], matches, lambda ks: e.at(updates, position(ks)))


@rule("tensor.scatter_nd")
def _scatter_nd(e, op, result_index, idx):
    data, indices, updates = op.operands
    k = indices.type.shape[-1]
    extents = list(indices.type.shape[:-1])

    def matches(ks):
        return _all(e, [e.cmp("eq", _wrap_index(e, e.at(indices, list(ks) + [e.index(t)]), data.type.shape[t]),
                              idx[t]) for t in range(k)])

    return _scatter(e, op, idx, extents, matches, lambda ks: e.at(updates, list(ks) + idx[k:]))


@rule("tensor.topk")
def _topk(e, op, result_index, idx):
    """The k best along ``axis``, selected in k passes into stack buffers once per output line.

    Pass p takes the best element that ranks after the one pass p-1 took (ranking
    by value, then by lower index): a max reduction finds its value, a min
    reduction its first position. A NaN is the largest value, as in ONNX
    Runtime and PyTorch: first when ``largest``, last otherwise.
    """
    axis = normalize_axis(op, op.axis, op.operands[0].type.rank)
    others = idx[:axis] + idx[axis + 1:]
    key = ("topk", id(op), tuple(id(i) for i in others))
    buffers = e.memo.get(key)
    if buffers is None:
        buffers = _topk_line(e, op, idx, axis)
        e.memo[key] = buffers
    return e.load_mutable(buffers[result_index], idx[axis])


def _topk_line(e, op, idx, axis):
    x = op.operands[0]
    dtype = x.type.dtype
    n, k = x.type.shape[axis], op.k
    worst = float_limit(dtype, -1 if op.largest else 1)
    values = e.emit(loop.AllocaOp, [], MemRefType((max(k, 1),), dtype), scope=e.alloca_scope, pure=False)
    positions = e.emit(loop.AllocaOp, [], MemRefType((max(k, 1),), DType.I64), scope=e.alloca_scope, pure=False)
    scope = e.deepest_scope(idx[:axis] + idx[axis + 1:])

    def isnan(value):
        return e.cmp("ne", value, value) if dtype.is_float else e.const(False, DType.I1)

    def both(a, b):
        return e.logical("arith.andi", a, b)

    def either(a, b):
        return e.logical("arith.ori", a, b)

    def ranks_after(value, last):
        """``value`` comes after ``last`` in the order TopK takes them (a NaN is the largest value)."""
        if op.largest:
            return either(e.cmp("lt", value, last), both(isnan(last), e.cmp("eq", isnan(value), e.const(False, DType.I1))))
        return either(e.cmp("gt", value, last), both(isnan(value), e.cmp("eq", isnan(last), e.const(False, DType.I1))))

    def same(a, b):
        return either(e.cmp("eq", a, b), both(isnan(a), isnan(b)))

    with e.loop_in(scope, 0, k) as (p, _):
        first = e.cmp("eq", p, e.index(0))
        before = e.imax(e.isub(p, e.index(1)), e.index(0))
        last_value = e.load_mutable(values, before)
        last_position = e.cast(e.load_mutable(positions, before), DType.INDEX)

        def at(i):
            in_idx = list(idx)
            in_idx[axis] = i
            return e.at(x, in_idx)

        def eligible(i):
            value = at(i)
            later = either(ranks_after(value, last_value), both(same(value, last_value), e.cmp("gt", i, last_position)))
            return either(first, later)

        deps = [p] + idx[:axis] + idx[axis + 1:]
        if op.largest:  # the maximum propagates a NaN, the largest value
            best = e.reduce((id(op), "topk", "value"), deps, [n], dtype, worst, e.max,
                            lambda ks: e.select(eligible(ks[0]), at(ks[0]), e.const(worst, dtype)))
        else:  # the smallest number; NaN only when every eligible element is one
            def number(i):
                return both(eligible(i), e.cmp("eq", isnan(at(i)), e.const(False, DType.I1)))

            smallest = e.reduce((id(op), "topk", "value"), deps, [n], dtype, worst, e.min,
                                lambda ks: e.select(number(ks[0]), at(ks[0]), e.const(worst, dtype)))
            best = smallest
            if dtype.is_float:
                found = e.reduce((id(op), "topk", "found"), deps, [n], DType.I1, False, either,
                                 lambda ks: number(ks[0]))
                best = e.select(found, smallest, e.const(math.nan, dtype))
        where = e.reduce((id(op), "topk", "position"), deps, [n], DType.INDEX, n, e.imin,
                         lambda ks: e.select(both(eligible(ks[0]), same(at(ks[0]), best)), ks[0], e.index(n)))
        e.store(best, values, p)
        e.store(e.cast(e.imin(where, e.index(n - 1)), DType.I64), positions, p)
    return values, positions


# ---------------------------------------------------------------------------------------
# Resize: per resized axis, a source coordinate; nearest reads one element, linear and
# cubic sum weighted taps (coordinates and weights in f64, as the numpy reference does)
# ---------------------------------------------------------------------------------------
def _resize_source(e, op, axis: int, o: Value) -> Value:
    """The input coordinate (f64) that output position ``o`` of ``axis`` maps to."""
    x = op.operands[0]
    rank = x.type.rank
    in_len, out_len, scale = x.type.shape[axis], op.sizes[axis], op.scales[axis]
    mode = op.coordinate_transformation_mode
    y = e.cast(o, DType.F64)

    def c(value):
        return e.const(value, DType.F64)

    out_w = scale * in_len
    if mode in ("half_pixel", "pytorch_half_pixel", "half_pixel_symmetric"):
        if mode == "pytorch_half_pixel" and out_len == 1:
            return c(0.0)
        source = e.sub(e.div(e.add(y, c(0.5)), c(scale)), c(0.5))
        if mode == "half_pixel_symmetric":
            source = e.add(c(in_len / 2 * (1 - out_len / out_w)), source)
        return source
    if mode == "align_corners":
        return c(0.0) if out_w == 1 else e.div(e.mul(y, c(in_len - 1)), c(out_w - 1))
    if mode == "asymmetric":
        return e.div(y, c(scale))
    start, end = (op.roi[axis], op.roi[rank + axis]) if op.roi else (0.0, 1.0)
    if out_w == 1:
        return c((end - start) * (in_len - 1) / 2 + start * (in_len - 1))
    return e.add(e.div(e.mul(e.mul(y, c(end - start)), c(in_len - 1)), c(out_w - 1)), c(start * (in_len - 1)))


def _nearest(e, op, source: Value, size: int) -> Value:
    floor, ceil = e.fn("floor", source), e.fn("ceil", source)
    if op.nearest_mode == "floor":
        picked = floor
    elif op.nearest_mode == "ceil":
        picked = ceil
    else:
        predicate = "le" if op.nearest_mode == "round_prefer_floor" else "lt"
        picked = e.select(e.cmp(predicate, e.sub(source, floor), e.const(0.5, DType.F64)), floor, ceil)
    return e.imin(e.imax(e.cast(picked, DType.INDEX), e.index(0)), e.index(size - 1))


def _cubic_weight(e, distance: Value, a: float) -> Value:
    def c(value):
        return e.const(value, DType.F64)

    d = e.fn("absf", distance)
    d2 = e.mul(d, d)
    d3 = e.mul(d2, d)
    near = e.add(e.sub(e.mul(c(a + 2), d3), e.mul(c(a + 3), d2)), c(1.0))
    far = e.sub(e.add(e.sub(e.mul(c(a), d3), e.mul(c(5 * a), d2)), e.mul(c(8 * a), d)), c(4 * a))
    return e.select(e.cmp("le", d, c(1.0)), near, e.select(e.cmp("lt", d, c(2.0)), far, c(0.0)))


class _ResizeTaps:
    """The taps of one interpolated axis at one output position: positions and weights."""

    def __init__(self, e, op, axis: int, o: Value):
        self.e, self.op, self.axis = e, op, axis
        self.size = op.operands[0].type.shape[axis]
        source = _resize_source(e, op, axis, o)
        self.source = source
        floor = e.fn("floor", source)
        ratio = e.sub(source, floor)
        integral = e.cmp("eq", ratio, e.const(0.0, DType.F64))  # the left neighbour, with ratio 1
        self.base = e.isub(e.cast(floor, DType.INDEX), e.select(integral, e.index(1), e.index(0)))
        self.ratio = e.select(integral, e.const(1.0, DType.F64), ratio)
        support = 1 if op.mode == "linear" else 2
        self.s_eff = min(op.scales[axis], 1.0) if op.antialias else 1.0
        self.start = math.floor(-support / self.s_eff) + 1
        self.count = 2 - 2 * self.start
        self.norm = None
        if op.antialias or op.exclude_outside:
            total = e.reduce((id(op), "resize-norm", axis), [o], [self.count], DType.F64, 0.0, e.add,
                             lambda ks: self.raw_weight(ks[0]))
            zero = e.cmp("eq", total, e.const(0.0, DType.F64))
            self.norm = e.select(zero, e.const(1.0, DType.F64), total)

    def position(self, k: Value) -> Value:
        return self.e.iadd(self.base, self.e.iadd(k, self.e.index(self.start)))

    def raw_weight(self, k: Value) -> Value:
        e = self.e
        tap = e.cast(e.iadd(k, e.index(self.start)), DType.F64)
        distance = e.mul(e.sub(tap, self.ratio), e.const(self.s_eff, DType.F64))
        if self.op.mode == "linear":
            one = e.const(1.0, DType.F64)
            weight = e.max(e.min(e.sub(one, e.fn("absf", distance)), one), e.const(0.0, DType.F64))
        else:
            weight = _cubic_weight(e, distance, self.op.cubic_coeff_a)
        if self.op.exclude_outside:
            position = self.position(k)
            inside = e.logical("arith.andi", e.cmp("ge", position, e.index(0)),
                               e.cmp("lt", position, e.index(self.size)))
            weight = e.select(inside, weight, e.const(0.0, DType.F64))
        return weight

    def weight(self, k: Value) -> Value:
        weight = self.raw_weight(k)
        return weight if self.norm is None else self.e.div(weight, self.norm)

    def clamped(self, k: Value) -> Value:
        return self.e.imin(self.e.imax(self.position(k), self.e.index(0)), self.e.index(self.size - 1))


@rule("tensor.resize")
def _resize(e, op, result_index, idx):
    x = op.operands[0]
    dtype = x.type.dtype
    axes = [a for a in range(x.type.rank) if not op.is_identity(a)]
    sources = {}
    if op.mode == "nearest" or not axes:
        in_idx = list(idx)
        for a in axes:
            sources[a] = _resize_source(e, op, a, idx[a])
            in_idx[a] = _nearest(e, op, sources[a], x.type.shape[a])
        value = e.at(x, in_idx)
    else:
        taps = [_ResizeTaps(e, op, a, idx[a]) for a in axes]
        sources = {t.axis: t.source for t in taps}

        def term(ks):
            in_idx = list(idx)
            weight = None
            for tap, k in zip(taps, ks):
                in_idx[tap.axis] = tap.clamped(k)
                weight = tap.weight(k) if weight is None else e.mul(weight, tap.weight(k))
            element = e.cast(e.at(x, in_idx), DType.F64)
            return element if weight is None else e.mul(weight, element)

        total = e.reduce((id(op), "resize"), idx, [t.count for t in taps], DType.F64, 0.0, e.add, term)
        if dtype.is_float:
            value = e.cast(total, dtype)
        else:
            rounded = e.fn("roundeven", total)
            low, high = (e.const(float(float_limit(dtype, s)), DType.F64) for s in (-1, 1))
            value = e.cast(e.min(e.max(rounded, low), high), dtype)
    if op.coordinate_transformation_mode == "tf_crop_and_resize" and sources:
        outside = e.const(0, DType.I1)
        for a, source in sources.items():
            beyond = e.logical("arith.ori", e.cmp("lt", source, e.const(0.0, DType.F64)),
                               e.cmp("gt", source, e.const(float(x.type.shape[a] - 1), DType.F64)))
            outside = e.logical("arith.ori", outside, beyond)
        value = e.select(outside, e.const(op.extrapolation_value, dtype), value)
    return value


# ---------------------------------------------------------------------------------------
# GridSample: per spatial axis a coordinate read from the grid (float32, as onnx's reference),
# then one element (nearest) or 2 or 4 weighted taps per axis (linear, cubic), all unrolled
# ---------------------------------------------------------------------------------------
def _reflect(e, v: Value, low: float, high: float) -> Value:
    """Fold ``v`` into [low, high] by reflecting at the nearer border, as many times as needed."""
    dtype = v.type.dtype
    c = lambda value: e.const(value, dtype)  # noqa: E731
    span = high - low
    below, above = e.cmp("lt", v, c(low)), e.cmp("gt", v, c(high))
    distance = e.select(below, e.sub(c(low), v), e.select(above, e.sub(v, c(high)), c(0.0)))
    folds = e.fn("floor", e.div(distance, c(span))) if span > 0 else c(0.0)
    rest = e.sub(distance, e.mul(folds, c(span)))
    half = e.mul(folds, c(0.5))
    even = e.cmp("eq", e.fn("floor", half), half)
    from_low = e.select(even, e.add(c(low), rest), e.sub(c(high), rest))
    from_high = e.select(even, e.sub(c(high), rest), e.add(c(low), rest))
    return e.select(below, from_low, e.select(above, from_high, v))


def _grid_cubic(e, t: Value) -> list[Value]:
    a = -0.75
    c = lambda value: e.const(value, t.type.dtype)  # noqa: E731

    def near(d):
        return e.add(e.mul(e.mul(e.sub(e.mul(c(a + 2), d), c(a + 3)), d), d), c(1.0))

    def far(d):
        return e.sub(e.mul(e.add(e.mul(e.sub(e.mul(c(a), d), c(5 * a)), d), c(8 * a)), d), c(4 * a))

    one = c(1.0)
    return [far(e.add(t, one)), near(t), near(e.sub(one, t)), far(e.sub(c(2.0), t))]


@rule("tensor.grid_sample")
def _grid_sample(e, op, result_index, idx):
    x, grid = op.operands
    dtype = x.type.dtype
    dims = x.type.shape[2:]
    rank = len(dims)
    n, channel, out = idx[0], idx[1], idx[2:]
    c = lambda value: e.const(value, DType.F32)  # noqa: E731
    coords, borders = [], []
    for axis, dim in enumerate(dims):
        g = e.cast(e.at(grid, [n] + out + [e.index(rank - 1 - axis)]), DType.F32)
        if op.align_corners:
            v = e.mul(e.div(e.add(g, c(1.0)), c(2.0)), c(dim - 1))
            borders.append((0.0, dim - 1.0))
        else:
            v = e.div(e.sub(e.mul(e.add(g, c(1.0)), c(dim)), c(1.0)), c(2.0))
            borders.append((-0.5, dim - 0.5))
        if op.mode == "nearest":
            v = e.fn("roundeven", v)
        low, high = borders[-1]
        if op.padding_mode == "border":  # only coordinates beyond the border are clamped
            outside = e.logical("arith.ori", e.cmp("lt", v, c(low)), e.cmp("gt", v, c(high)))
            v = e.select(outside, e.min(e.max(v, c(0.0)), c(dim - 1.0)), v)
        elif op.padding_mode == "reflection":
            v = _reflect(e, v, low, high)
        coords.append(v)

    def pixel(indices: list[Value]) -> Value:
        """x at integer positions (index values) with the padding mode for positions outside."""
        inside, fixed = e.const(1, DType.I1), []
        for axis, (index, dim) in enumerate(zip(indices, dims)):
            if op.padding_mode == "reflection":
                index = e.cast(_reflect(e, e.cast(index, DType.F32), *borders[axis]), DType.INDEX)
            elif op.padding_mode == "zeros":
                ok = e.logical("arith.andi", e.cmp("ge", index, e.index(0)), e.cmp("lt", index, e.index(dim)))
                inside = e.logical("arith.andi", inside, ok)
            fixed.append(e.imin(e.imax(index, e.index(0)), e.index(dim - 1)))
        value = e.at(x, [n, channel] + fixed)
        return e.select(inside, value, e.const(0.0, dtype)) if op.padding_mode == "zeros" else value

    if op.mode == "nearest":
        return pixel([e.cast(v, DType.INDEX) for v in coords])
    taps = []
    for v in coords:
        floor = e.fn("floor", v)
        t = e.cast(e.sub(v, floor), dtype)
        base = e.cast(floor, DType.INDEX)
        if op.mode == "linear":
            taps.append([(base, e.sub(e.const(1.0, dtype), t)), (e.iadd(base, e.index(1)), t)])
        else:
            taps.append([(e.iadd(base, e.index(k - 1)), w) for k, w in enumerate(_grid_cubic(e, t))])
    total = None
    for combination in itertools.product(*taps):
        weight = combination[0][1]
        for _, w in combination[1:]:
            weight = e.mul(weight, w)
        term = e.mul(weight, pixel([index for index, _ in combination]))
        total = term if total is None else e.add(total, term)
    return total
