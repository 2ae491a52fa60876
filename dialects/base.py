"""Shared machinery for declaring dialect ops: named operands, typed attribute fields and fusion kinds."""

from __future__ import annotations

import enum
import functools

from fusecc.ir.core import VerifyError
from fusecc.ir.types import DType

_REQUIRED = object()


class OpKind(enum.Enum):
    """How an op may fuse (TVM's op pattern kinds).

    ELEMENTWISE  out[i] = f(in[i]) over same-shaped operands
    BROADCAST    elementwise after numpy broadcasting of operands
    INJECTIVE    out[i] = in[g(i)]: pure data movement (transpose, reshape, slice, ...)
    REDUCTION    reduces some axes (sum, max, softmax, normalizations)
    COMPUTE      compute-heavy ops with their own loop nest (matmul, conv, pooling)
    OPAQUE       cannot fuse at all
    """

    ELEMENTWISE = "elementwise"
    BROADCAST = "broadcast"
    INJECTIVE = "injective"
    REDUCTION = "reduction"
    COMPUTE = "compute"
    OPAQUE = "opaque"


class _Field:
    """A field declared on an op class, which learns the name it is declared under."""

    name = ""

    def __set_name__(self, owner, name):
        self.name = name


class attr(_Field):
    """A typed attribute field of an op class: ``axis = attr(int, default=1)``.

    Reading ``op.axis`` gives the attribute or its default; ``check`` validates
    the stored value against the declared type during verification.
    """

    def __init__(self, kind, default=_REQUIRED):
        self.kind = kind
        self.default = default

    def __get__(self, op, owner=None):
        if op is None:
            return self
        if self.name in op.attributes:
            return op.attributes[self.name]
        if self.default is _REQUIRED:
            raise VerifyError(op, f"missing required attribute '{self.name}'")
        return self.default

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def check(self, op) -> None:
        if self.name not in op.attributes:
            if self.required:
                raise VerifyError(op, f"missing required attribute '{self.name}'")
            return
        value = op.attributes[self.name]
        if not _matches(value, self.kind):
            raise VerifyError(op, f"attribute '{self.name}' must be {_describe(self.kind)}, got {value!r}")


class operand(_Field):
    """A named operand of an op class: ``bias = operand(2, optional=True)``.

    Reading ``op.bias`` gives the operand's value; an optional operand the op
    was built without reads as None.
    """

    def __init__(self, index: int, optional: bool = False):
        self.index = index
        self.optional = optional

    def __get__(self, op, owner=None):
        if op is None:
            return self
        if self.index < len(op.operands):
            return op.operands[self.index]
        if self.optional:
            return None
        raise VerifyError(op, f"missing operand '{self.name}' (#{self.index})")


def _matches(value, kind) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(kind, list):
        return isinstance(value, list) and all(_matches(v, kind[0]) for v in value)
    if isinstance(kind, tuple):
        return value in kind
    return isinstance(value, kind)


def _describe(kind) -> str:
    if isinstance(kind, list):
        return f"a list of {_describe(kind[0])}"
    if isinstance(kind, tuple):
        return "one of " + ", ".join(repr(k) for k in kind)
    return {int: "an integer", float: "a number", str: "a string", bool: "a boolean",
            DType: "a dtype"}.get(kind, getattr(kind, "__name__", str(kind)))


@functools.cache
def declared_attrs(cls) -> tuple[attr, ...]:
    """The typed attribute fields of an op class, its bases' included."""
    seen, fields = set(), []
    for klass in cls.__mro__:
        for name, value in vars(klass).items():
            if isinstance(value, attr) and name not in seen:
                seen.add(name)
                fields.append(value)
    return tuple(fields)
