"""Attribute values carried by operations.

Plain Python values stand for the simple attributes (``int``, ``float``,
``str``, ``bool``, lists of them, ``DType``); ``DenseAttr`` holds a constant
tensor. A dense attribute either prints inline (``dense<[1, 2]> : tensor<2xi64>``)
or, when it is large, refers by name to a resource that the module stores
exactly, apart from the text (``dense_resource<conv1_w> : tensor<64x3x7x7xf32>``).
"""

from __future__ import annotations

import numpy as np

from .types import DType, TensorType


class DenseAttr:
    """A constant tensor. ``data`` is ``None`` when it was elided from a dump."""

    __slots__ = ("data", "type", "resource")

    def __init__(self, data: np.ndarray | None, type: TensorType | None = None,
                 resource: str | None = None):
        if data is not None:
            data = np.array(data, order="C", copy=None)
            if type is None:
                type = TensorType(tuple(int(d) for d in data.shape), DType.from_numpy(data.dtype))
            data = data.reshape([int(d) for d in type.shape]).astype(type.dtype.numpy, copy=False)
            data.flags.writeable = False
        self.data = data
        self.type = type
        self.resource = resource

    @property
    def value(self) -> np.ndarray:
        if self.data is None:
            raise ValueError(f"the contents of resource '{self.resource}' were elided from this IR")
        return self.data

    def __eq__(self, other) -> bool:
        if not isinstance(other, DenseAttr) or self.type != other.type:
            return False
        if self.data is None or other.data is None:
            return self.data is None and other.data is None and self.resource == other.resource
        return self.data is other.data or np.array_equal(_bits(self.data), _bits(other.data))

    def __hash__(self) -> int:
        return hash((self.type, None if self.data is None else _bits(self.data)[:256].tobytes()))

    def __repr__(self) -> str:
        return f"DenseAttr({self.type}, resource={self.resource!r})"


def _bits(data: np.ndarray) -> np.ndarray:
    """``data``'s bytes as a flat uint8 view (no copy): equal bits, not equal values (-0.0 is not 0.0)."""
    return data.reshape(-1).view(np.uint8)


def attr_key(value) -> object:
    """A hashable key for an attribute value (used by CSE): a dense constant keys as itself, hashed by its
    type and first bytes and compared in full only against constants of the same hash."""
    if isinstance(value, DenseAttr):
        if value.data is None:
            return ("elided", value.type, value.resource)
        return ("dense", value)
    if isinstance(value, (list, tuple)):
        return tuple(attr_key(v) for v in value)
    if isinstance(value, float):
        return ("float", repr(value))
    return value
