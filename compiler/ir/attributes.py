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
        return self.data.tobytes() == other.data.tobytes()

    def __hash__(self) -> int:
        return hash((self.type, None if self.data is None else self.data.tobytes()[:256]))

    def __repr__(self) -> str:
        return f"DenseAttr({self.type}, resource={self.resource!r})"


def attr_key(value) -> object:
    """A hashable key for an attribute value (used by CSE)."""
    if isinstance(value, DenseAttr):
        if value.data is None:
            return ("elided", value.type, value.resource)
        return ("dense", value.type, value.data.tobytes())
    if isinstance(value, (list, tuple)):
        return tuple(attr_key(v) for v in value)
    if isinstance(value, float):
        return ("float", repr(value))
    return value
