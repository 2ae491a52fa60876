"""Helpers the lowering rules of several op families share: broadcast reads and scalar building blocks."""

from __future__ import annotations

from fusecc.ir.core import Operation, Value
from fusecc.ir.types import DType

from ..emitter import Emitter


def broadcast_index(e: Emitter, idx: list[Value], in_shape: tuple) -> list[Value]:
    """Index into an operand broadcast (numpy rules) to the output index ``idx``."""
    offset = len(idx) - len(in_shape)
    return [e.index(0) if d == 1 else idx[offset + i] for i, d in enumerate(in_shape)]


def broadcast_at(e: Emitter, value: Value, idx: list[Value]) -> Value:
    """The element of ``value``, broadcast (numpy rules) to the output, at the output index ``idx``."""
    return e.at(value, broadcast_index(e, idx, value.type.shape))


def dtype_of(op: Operation) -> DType:
    """The element type ``op`` computes in: its input's."""
    return op.input.type.dtype


def const_like(e: Emitter, x: Value, value) -> Value:
    """The constant ``value`` with the element type of ``x``."""
    return e.const(value, x.type.dtype)


def abs_value(e: Emitter, x: Value) -> Value:
    """|x| for any element type (unsigned integers are their own)."""
    if x.type.dtype.is_float:
        return e.fn("absf", x)
    if not x.type.dtype.is_signed:
        return x
    return e.select(e.cmp("lt", x, const_like(e, x, 0)), e.sub(const_like(e, x, 0), x), x)


def float_pow(e: Emitter, a: Value, b: Value) -> Value:
    """a ** b; constant small exponents become multiplications or a square root (no libm call)."""
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


def wrap_index(e: Emitter, raw: Value, size: int) -> Value:
    """An index read from a tensor as an in-bounds position: negative counts from the end, then clamped."""
    raw = e.cast(raw, DType.INDEX)
    wrapped = e.select(e.cmp("lt", raw, e.index(0)), e.iadd(raw, e.index(size)), raw)
    return e.imin(e.imax(wrapped, e.index(0)), e.index(size - 1))
