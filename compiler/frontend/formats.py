"""Element types the IR has no dtype for, kept as their bit patterns: bfloat16, float8, float4, int4, int2.

A tensor of one of these *formats* is stored in an unsigned integer tensor of
its width: ``u16`` for bfloat16, and one ``u8`` per element for the others,
holding the bits in its low end (the layout of ``ml_dtypes`` arrays, which is
how onnx's numpy helpers give them). The importer tags such values with their
format. Cast and CastLike convert to and from a format with ordinary tensor
ops, so the compiled code does the conversion:

* decoding reads a table of the format's values (a ``tensor.gather`` indexed
  by the bits), except bfloat16, whose bits are the top half of a float32;
* encoding to a float format rounds to the nearest representable value, ties
  to the even code, by counting the midpoints between representable values
  that lie below the magnitude (one broadcast compare and a sum), then sets the
  sign bit; NaN, overflow and saturation follow ONNX (``saturate``) and the
  ml_dtypes conversions onnx's reference uses; bfloat16 rounds the float32 bits;
  float8e8m0 keeps the float32 exponent, rounded as ``round_mode`` says;
* encoding to int4/uint4/int2/uint2 truncates toward zero and keeps the low bits.

Ops other than the conversions compute a bfloat16 value in float32 and round
their results back to bfloat16 (see ``onnx_import``), as ml_dtypes does.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from onnx import TensorProto

from fusecc.dialects import tensor as T
from fusecc.ir import DType, Value

if TYPE_CHECKING:
    from .onnx_import import NodeContext


@dataclass(frozen=True)
class Minifloat:
    """The bit layout of a small float format: sign, exponent and mantissa fields, and its special codes.

    ``specials`` says which codes are not finite numbers:

    * ``"ieee"``: an all-ones exponent holds infinity (mantissa 0) or NaN (float8e5m2);
    * ``"fn"``: only the all-ones exponent and mantissa code is NaN, there is no infinity (float8e4m3fn);
    * ``"fnuz"``: the negative-zero code is the only NaN, so zero is unsigned (float8e4m3fnuz, float8e5m2fnuz);
    * ``"finite"``: every code is a number (float4e2m1).
    """

    exponent_bits: int
    mantissa_bits: int
    bias: int
    specials: str

    @property
    def bits(self) -> int:
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def sign_bit(self) -> int:
        return 1 << (self.bits - 1)

    @property
    def _top_exponent(self) -> int:
        return (1 << self.exponent_bits) - 1

    def value(self, code: int) -> float:
        """The number a code holds (NaN and infinities included)."""
        sign = -1.0 if code & self.sign_bit else 1.0
        exponent = (code >> self.mantissa_bits) & self._top_exponent
        mantissa = code & ((1 << self.mantissa_bits) - 1)
        if self.specials == "fnuz" and code == self.sign_bit:
            return float("nan")
        if self.specials == "fn" and code & ~self.sign_bit == self.sign_bit - 1:
            return float("nan")
        if self.specials == "ieee" and exponent == self._top_exponent:
            return sign * float("inf") if mantissa == 0 else float("nan")
        if exponent == 0:  # zero and the subnormals
            return sign * mantissa * 2.0 ** (1 - self.bias - self.mantissa_bits)
        return sign * (1 + mantissa / (1 << self.mantissa_bits)) * 2.0 ** (exponent - self.bias)

    @property
    def nan_code(self) -> int:
        """The code a NaN converts to: the positive quiet NaN, or the only one; float4e2m1 has none and
        takes NaN to its negative-zero code (as onnx's reference conversion does)."""
        if self.specials == "ieee":
            return (self._top_exponent << self.mantissa_bits) | (1 << (self.mantissa_bits - 1))
        if self.specials == "fn":
            return self.sign_bit - 1
        return self.sign_bit  # fnuz: the negative-zero code; finite: -0

    @property
    def overflow_code(self) -> int:
        """What a magnitude beyond the largest finite value becomes without saturation."""
        if self.specials == "ieee":
            return self._top_exponent << self.mantissa_bits  # infinity
        if self.specials == "finite":
            return self.sign_bit - 1  # the largest value: there is nothing beyond it
        return self.nan_code

    @property
    def negative_zero(self) -> bool:
        return self.specials != "fnuz"


@dataclass(frozen=True)
class Format:
    """An element type stored as its bits in an unsigned integer dtype."""

    name: str
    code: int
    storage: DType
    #: the ml_dtypes type name of the arrays holding it
    numpy_name: str
    #: "bfloat16", "float" (a table of values), "e8m0" or "int"
    kind: str
    bits: int
    #: the bit layout of a "float" format
    layout: Minifloat | None = None

    def __str__(self) -> str:
        return self.name.lower()

    @property
    def numpy(self) -> np.dtype:
        import ml_dtypes
        return np.dtype(getattr(ml_dtypes, self.numpy_name))

    @property
    def signed(self) -> bool:
        return self.numpy_name in ("int4", "int2")

    @property
    def decoded(self) -> DType:
        """The dtype a value of the format is decoded to (exactly)."""
        if self.kind == "int":
            return DType.I8 if self.signed else DType.U8
        return DType.F32


_FORMATS = [
    Format("BFLOAT16", TensorProto.BFLOAT16, DType.U16, "bfloat16", "bfloat16", 16),
    Format("FLOAT8E4M3FN", TensorProto.FLOAT8E4M3FN, DType.U8, "float8_e4m3fn", "float", 8, Minifloat(4, 3, 7, "fn")),
    Format("FLOAT8E4M3FNUZ", TensorProto.FLOAT8E4M3FNUZ, DType.U8, "float8_e4m3fnuz", "float", 8,
           Minifloat(4, 3, 8, "fnuz")),
    Format("FLOAT8E5M2", TensorProto.FLOAT8E5M2, DType.U8, "float8_e5m2", "float", 8, Minifloat(5, 2, 15, "ieee")),
    Format("FLOAT8E5M2FNUZ", TensorProto.FLOAT8E5M2FNUZ, DType.U8, "float8_e5m2fnuz", "float", 8,
           Minifloat(5, 2, 16, "fnuz")),
    Format("FLOAT4E2M1", TensorProto.FLOAT4E2M1, DType.U8, "float4_e2m1fn", "float", 4, Minifloat(2, 1, 1, "finite")),
    Format("FLOAT8E8M0", TensorProto.FLOAT8E8M0, DType.U8, "float8_e8m0fnu", "e8m0", 8),
    Format("INT4", TensorProto.INT4, DType.U8, "int4", "int", 4),
    Format("UINT4", TensorProto.UINT4, DType.U8, "uint4", "int", 4),
    Format("INT2", TensorProto.INT2, DType.U8, "int2", "int", 2),
    Format("UINT2", TensorProto.UINT2, DType.U8, "uint2", "int", 2),
]

#: ONNX element type code -> its format
FORMATS: dict[int, Format] = {f.code: f for f in _FORMATS}
#: float8 formats: Cast saturates them unless ``saturate=0``
SATURABLE = {TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ, TensorProto.FLOAT8E5M2,
             TensorProto.FLOAT8E5M2FNUZ}


def format_of_numpy(dtype: np.dtype) -> Format | None:
    """The format of an ml_dtypes array dtype, if it is one."""
    if dtype.isbuiltin == 1:  # numpy's own types (ml_dtypes' are user-defined, 2)
        return None
    return next((f for f in _FORMATS if dtype == f.numpy), None)


def to_storage(array: np.ndarray) -> np.ndarray:
    """An ml_dtypes array as the unsigned integers holding its bits (other arrays unchanged)."""
    fmt = format_of_numpy(array.dtype)
    if fmt is None:
        return array
    contiguous = array if array.flags.c_contiguous else array.copy()
    return contiguous.view(fmt.storage.numpy)


def from_storage(array: np.ndarray, code: int) -> np.ndarray:
    """Bits computed by fusecc as an array of the format ``code``."""
    fmt = FORMATS.get(code)
    if fmt is None or array.dtype != fmt.storage.numpy:
        return array
    return array.view(fmt.numpy)


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def value_table(fmt: Format) -> np.ndarray:
    """The value of every bit pattern, indexed by the bits (float32, or int8/uint8 for the ints).

    Computed from the format's definition, so no library's conversion decides a value.
    """
    codes = np.arange(2 ** fmt.bits)
    if fmt.kind == "int":
        wrapped = codes - 2 ** fmt.bits * (codes >= 2 ** (fmt.bits - 1)) if fmt.signed else codes
        return wrapped.astype(fmt.decoded.numpy)
    if fmt.kind == "e8m0":
        with np.errstate(over="ignore"):
            values = np.ldexp(1.0, codes - 127)
        return np.where(codes == 0xFF, np.nan, values).astype(np.float32)
    if fmt.layout is None:
        raise ValueError(f"{fmt} is decoded from its bits, not from a table")
    return np.array([fmt.layout.value(int(c)) for c in codes], dtype=np.float32)


@dataclass(frozen=True)
class _Rounding:
    """How to round a float32 magnitude to a float format's code."""

    midpoints: np.ndarray       # float32, increasing
    ties_up: np.ndarray         # float32: the midpoints where a tie rounds up (NaN elsewhere)
    codes: np.ndarray           # uint8: code of each interval (one more than midpoints)
    largest: float              # largest finite value
    sign_bit: int
    negative_zero: bool
    nan_code: int


@lru_cache(maxsize=None)
def rounding(fmt: Format, saturate: bool) -> _Rounding:
    values = value_table(fmt)
    layout = fmt.layout
    half = layout.sign_bit
    positive = [(float(values[c]), c) for c in range(half) if np.isfinite(values[c])]
    positive.sort()
    finite = np.array([v for v, _ in positive], dtype=np.float64)
    codes = [c for _, c in positive]
    midpoints = list((finite[:-1] + finite[1:]) / 2)
    ties = [m if codes[j] % 2 else np.nan for j, m in enumerate(midpoints)]
    overflow = layout.overflow_code
    if not saturate and not np.isfinite(values[overflow]):
        # beyond the largest value the next step up is the overflow code (infinity or NaN)
        step = finite[-1] - finite[-2]
        midpoints.append(finite[-1] + step / 2)
        ties.append(midpoints[-1] if codes[-1] % 2 else np.nan)
        codes.append(overflow)
    return _Rounding(np.array(midpoints, dtype=np.float32), np.array(ties, dtype=np.float32),
                     np.array(codes, dtype=np.uint8), float(finite[-1]), half, layout.negative_zero,
                     layout.nan_code)


# --------------------------------------------------------------------------------------
# Conversions as tensor ops
# --------------------------------------------------------------------------------------
def _op(ctx: "NodeContext", cls, operands, attributes=None) -> Value:
    return ctx.build(cls, operands, attributes or {})[0]


def _const(ctx: "NodeContext", value, dtype: DType) -> Value:
    return ctx.constant(np.asarray(value, dtype=dtype.numpy))


def _cast(ctx: "NodeContext", x: Value, to: DType) -> Value:
    return x if x.type.dtype is to else _op(ctx, T.CastOp, [x], {"to": to})


def _shift(ctx: "NodeContext", x: Value, amount: int, direction: str) -> Value:
    return _op(ctx, T.BitShiftOp, [x, _const(ctx, amount, x.type.dtype)], {"direction": direction})


def _and(ctx: "NodeContext", x: Value, mask: int) -> Value:
    return _op(ctx, T.BitwiseAndOp, [x, _const(ctx, mask, x.type.dtype)])


def decode(ctx: "NodeContext", bits: Value, fmt: Format) -> Value:
    """The values held in ``bits`` (a tensor of the format's storage), as ``fmt.decoded``."""
    if fmt.kind == "bfloat16":
        wide = _shift(ctx, _cast(ctx, bits, DType.U32), 16, "LEFT")
        return _op(ctx, T.BitcastOp, [wide], {"to": DType.F32})
    index = _cast(ctx, _and(ctx, bits, 2 ** fmt.bits - 1), DType.I32)
    return _op(ctx, T.GatherOp, [ctx.constant(value_table(fmt)), index], {"axis": 0})


def encode(ctx: "NodeContext", x: Value, fmt: Format, saturate: bool = True, round_mode: str = "up") -> Value:
    """``x`` (any dtype) converted to the format, as bits in its storage dtype."""
    if fmt.kind == "int":
        return _encode_int(ctx, x, fmt)
    x32 = _cast(ctx, x, DType.F32)
    if fmt.kind == "bfloat16":
        return _encode_bfloat16(ctx, x32)
    if fmt.kind == "e8m0":
        return _encode_e8m0(ctx, x32, saturate, round_mode)
    return _encode_float(ctx, x32, fmt, saturate or fmt.code not in SATURABLE)


def _encode_int(ctx, x: Value, fmt: Format) -> Value:
    """Truncate toward zero (NaN and infinities give 0), keep the low bits (ml_dtypes' conversion)."""
    if x.type.dtype.is_float:
        zero = _const(ctx, 0, x.type.dtype)
        bad = _op(ctx, T.OrOp, [_op(ctx, T.IsNaNOp, [x]), _op(ctx, T.IsInfOp, [x])])
        x = _op(ctx, T.WhereOp, [bad, zero, x])
        if x.type.dtype is not DType.F16:  # keep the conversion to int64 defined
            x = _op(ctx, T.ClipOp, [x], {"min": -float(2 ** 62), "max": float(2 ** 62)})
    return _cast(ctx, _and(ctx, _cast(ctx, x, DType.I64), 2 ** fmt.bits - 1), DType.U8)


def _sign_bit(ctx, x32: Value) -> Value:
    """The float32 sign bit (0 or 1) as u32; read from the bits, so -0.0 counts."""
    return _shift(ctx, _op(ctx, T.BitcastOp, [x32], {"to": DType.U32}), 31, "RIGHT")


def _encode_float(ctx, x32: Value, fmt: Format, saturate: bool) -> Value:
    r = rounding(fmt, saturate)
    magnitude = _op(ctx, T.AbsOp, [x32])
    if saturate:
        magnitude = _op(ctx, T.MinOp, [magnitude, _const(ctx, r.largest, DType.F32)])
    shape = list(x32.type.shape)
    column = _op(ctx, T.ReshapeOp, [magnitude], {"shape": shape + [1]})
    above = _op(ctx, T.GreaterOp, [column, ctx.constant(r.midpoints)])
    tie = _op(ctx, T.EqualOp, [column, ctx.constant(r.ties_up)])
    steps = _cast(ctx, _op(ctx, T.OrOp, [above, tie]), DType.I32)
    index = _op(ctx, T.ReduceSumOp, [steps], {"axes": [len(shape)], "keepdims": 0})
    code = _op(ctx, T.GatherOp, [ctx.constant(r.codes), index], {"axis": 0})
    sign = _cast(ctx, _op(ctx, T.MulOp, [_sign_bit(ctx, x32), _const(ctx, r.sign_bit, DType.U32)]), DType.U8)
    signed = _op(ctx, T.BitwiseOrOp, [code, sign])
    zero = _const(ctx, 0, DType.U8)
    if not r.negative_zero:
        signed = _op(ctx, T.WhereOp, [_op(ctx, T.EqualOp, [code, zero]), zero, signed])
    return _op(ctx, T.WhereOp, [_op(ctx, T.IsNaNOp, [x32]), _const(ctx, r.nan_code, DType.U8), signed])


def _encode_bfloat16(ctx, x32: Value) -> Value:
    """Round the float32 bits to their top half, ties to even; NaN stays NaN (quiet)."""
    bits = _op(ctx, T.BitcastOp, [x32], {"to": DType.U32})
    odd = _and(ctx, _shift(ctx, bits, 16, "RIGHT"), 1)
    biased = _op(ctx, T.AddOp, [_op(ctx, T.AddOp, [bits, _const(ctx, 0x7FFF, DType.U32)]), odd])
    rounded = _shift(ctx, biased, 16, "RIGHT")
    quiet = _op(ctx, T.BitwiseOrOp, [_shift(ctx, bits, 16, "RIGHT"), _const(ctx, 0x40, DType.U32)])
    return _cast(ctx, _op(ctx, T.WhereOp, [_op(ctx, T.IsNaNOp, [x32]), quiet, rounded]), DType.U16)


def _encode_e8m0(ctx, x32: Value, saturate: bool, round_mode: str) -> Value:
    """The float32 exponent, rounded by ``round_mode`` (onnx.numpy_helper.to_float8e8m0)."""
    bits = _op(ctx, T.BitcastOp, [x32], {"to": DType.U32})
    exponent = _and(ctx, _shift(ctx, bits, 23, "RIGHT"), 0xFF)
    special = _op(ctx, T.EqualOp, [exponent, _const(ctx, 0xFF, DType.U32)])
    zero = _const(ctx, 0, DType.U32)

    def nonzero(mask: int) -> Value:
        return _op(ctx, T.GreaterOp, [_and(ctx, bits, mask), zero])

    if round_mode == "up":
        up = nonzero(0x7FFFFF)
    elif round_mode == "nearest":
        lsb = _op(ctx, T.GreaterOp, [exponent, zero])
        rest = _op(ctx, T.OrOp, [_op(ctx, T.OrOp, [nonzero(0x200000), nonzero(0x1FFFFF)]), lsb])
        up = _op(ctx, T.AndOp, [nonzero(0x400000), rest])
    elif round_mode == "down":
        up = None
    else:
        raise ctx.error(f"unknown round_mode '{round_mode}'")
    if up is not None:
        up = _op(ctx, T.AndOp, [up, _op(ctx, T.NotOp, [special])])
        if saturate:
            top = _op(ctx, T.EqualOp, [exponent, _const(ctx, 0xFE, DType.U32)])
            up = _op(ctx, T.AndOp, [up, _op(ctx, T.NotOp, [top])])
        exponent = _op(ctx, T.AddOp, [exponent, _cast(ctx, up, DType.U32)])
    exponent = _op(ctx, T.WhereOp, [special, _const(ctx, 0xFF, DType.U32), exponent])
    return _cast(ctx, exponent, DType.U8)
