"""Small rewriting helpers shared by passes."""

from __future__ import annotations

import numpy as np

from fusecc.ir.attributes import DenseAttr
from fusecc.ir.core import Value
from fusecc.ir.rewriter import Rewriter

#: constants with more elements than this print as named resources
INLINE_LIMIT = 16


def constant_value(value: Value) -> np.ndarray | None:
    """The array a value holds if it is defined by ``tensor.constant`` with known data."""
    from fusecc.dialects.tensor import ConstantOp

    owner = getattr(value, "op", None)
    if not isinstance(owner, ConstantOp):
        return None
    attr = owner.attributes.get("value")
    return attr.data if isinstance(attr, DenseAttr) else None


def make_constant(rewriter: Rewriter, array: np.ndarray, name_hint: str, resources: set[str],
                  loc: str | None = None) -> Value:
    """Insert a ``tensor.constant`` holding ``array`` at ``rewriter``'s insertion point; one with more than
    ``INLINE_LIMIT`` elements prints as a resource named after ``name_hint`` (kept apart from ``resources``)."""
    from fusecc.dialects.tensor import ConstantOp

    resource = None
    if array.size > INLINE_LIMIT:
        resource = unique_name(name_hint, resources)
    return rewriter.build(ConstantOp, [], {"value": DenseAttr(np.ascontiguousarray(array), resource=resource)},
                          loc=loc).result


def unique_name(base: str, taken: set[str]) -> str:
    base = "".join(c if c.isalnum() or c in "_." else "_" for c in base) or "c"
    if not (base[0].isalpha() or base[0] == "_"):
        base = "c" + base
    name, n = base, 1
    while name in taken:
        name = f"{base}_{n}"
        n += 1
    taken.add(name)
    return name


def resource_names(module) -> set[str]:
    names = set()
    for op in module.walk():
        for value in op.attributes.values():
            if isinstance(value, DenseAttr) and value.resource:
                names.add(value.resource)
    return names
