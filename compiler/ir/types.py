"""Types of the IR: element dtypes, tensors, buffers (memrefs), vectors and scalars.

Tensors are values of the graph-level dialect; memrefs are the buffers the
loop-level dialect loads from and stores to. A dimension is an ``int`` or
``None`` for a dynamic extent, printed as ``?``.
"""

from __future__ import annotations

import math

import enum
from dataclasses import dataclass

import numpy as np


class DType(enum.Enum):
    """Element types, named as they print (``f32``, ``i64``, ``i1`` for bool)."""

    F16 = "f16"
    F32 = "f32"
    F64 = "f64"
    I8 = "i8"
    I16 = "i16"
    I32 = "i32"
    I64 = "i64"
    U8 = "u8"
    U16 = "u16"
    U32 = "u32"
    U64 = "u64"
    I1 = "i1"
    INDEX = "index"

    def __str__(self) -> str:
        return self.value

    @property
    def numpy(self) -> np.dtype:
        return np.dtype(_TO_NUMPY[self])

    @property
    def is_float(self) -> bool:
        return self in (DType.F16, DType.F32, DType.F64)

    @property
    def is_int(self) -> bool:
        return not self.is_float and self is not DType.I1

    @property
    def is_signed(self) -> bool:
        return self in (DType.I8, DType.I16, DType.I32, DType.I64, DType.INDEX)

    @property
    def bits(self) -> int:
        return 1 if self is DType.I1 else 8 * self.numpy.itemsize

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    @staticmethod
    def from_numpy(dtype) -> "DType":
        dtype = np.dtype(dtype)
        for member, name in _TO_NUMPY.items():
            if member is not DType.INDEX and np.dtype(name) == dtype:
                return member
        raise TypeError(f"no IR dtype for numpy dtype {dtype}")


_TO_NUMPY = {
    DType.F16: "float16", DType.F32: "float32", DType.F64: "float64",
    DType.I8: "int8", DType.I16: "int16", DType.I32: "int32", DType.I64: "int64",
    DType.U8: "uint8", DType.U16: "uint16", DType.U32: "uint32", DType.U64: "uint64",
    DType.I1: "bool", DType.INDEX: "int64",
}

Dim = int | None


def _shape_text(shape: tuple[Dim, ...]) -> str:
    return "".join(("?" if d is None else str(d)) + "x" for d in shape)


class Type:
    """Base of every IR type."""


@dataclass(frozen=True)
class ScalarType(Type):
    dtype: DType

    def __str__(self) -> str:
        return str(self.dtype)


#: the most bytes a shaped value may hold: kernels address elements with signed 64-bit offsets
MAX_BYTES = 2 ** 63 - 1


@dataclass(frozen=True)
class ShapedType(Type):
    shape: tuple[Dim, ...]
    dtype: DType

    keyword = ""

    def __post_init__(self):
        if any(d is not None and d < 0 for d in self.shape):
            raise ValueError(f"{self} has a negative dimension")
        if self.is_static and math.prod(self.shape) * self.dtype.itemsize > MAX_BYTES:
            raise ValueError(f"{self} holds {math.prod(self.shape)} elements, more than 64-bit offsets address")

    def __str__(self) -> str:
        return f"{self.keyword}<{_shape_text(self.shape)}{self.dtype}>"

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(d is not None for d in self.shape)

    @property
    def num_elements(self) -> int:
        if not self.is_static:
            raise ValueError(f"{self} has dynamic dimensions")
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.num_elements * self.dtype.itemsize


@dataclass(frozen=True)
class TensorType(ShapedType):
    """An immutable value of the graph-level dialect: ``tensor<32x?xf32>``."""

    keyword = "tensor"

    def __str__(self) -> str:
        return super().__str__()


@dataclass(frozen=True)
class MemRefType(ShapedType):
    """A buffer in memory, row-major and contiguous: ``memref<64x64xf32>``."""

    keyword = "memref"

    def __str__(self) -> str:
        return super().__str__()


@dataclass(frozen=True)
class VectorType(ShapedType):
    """A SIMD register value of the loop-level dialect: ``vector<16xf32>``."""

    keyword = "vector"

    def __str__(self) -> str:
        return super().__str__()


def scalar(dtype: DType) -> ScalarType:
    return ScalarType(dtype)


INDEX = ScalarType(DType.INDEX)
F32 = ScalarType(DType.F32)
I1 = ScalarType(DType.I1)
