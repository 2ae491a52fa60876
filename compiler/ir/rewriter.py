"""Changing IR in place: ops inserted at a point of a block, results replaced, ops erased.

Every pass that rewrites the IR, the lowering's ``Emitter`` and ``expand-math`` insert through a
:class:`Rewriter`, so the bookkeeping of uses and parents lives here once.
"""

from __future__ import annotations

from .core import Block, IRError, Operation, Value


class Rewriter:
    """Inserts ops into ``block`` before ``anchor`` (at its end when ``anchor`` is None), in program order: ops
    inserted one after another come out in that order, all before the anchor."""

    def __init__(self, block: Block, anchor: Operation | None = None):
        if anchor is not None and anchor.parent is not block:
            raise IRError(f"cannot insert before {anchor.describe()}: it is not in the block")
        self.block = block
        self.anchor = anchor

    @classmethod
    def before(cls, op: Operation) -> "Rewriter":
        """Insertion just before ``op``, in ``op``'s block."""
        if op.parent is None:
            raise IRError(f"cannot insert before {op.describe()}: it is in no block")
        return cls(op.parent, op)

    @classmethod
    def after(cls, op: Operation) -> "Rewriter":
        """Insertion just after ``op``, in ``op``'s block."""
        if op.parent is None:
            raise IRError(f"cannot insert after {op.describe()}: it is in no block")
        ops = op.parent.ops
        position = ops.index(op) + 1
        return cls(op.parent, ops[position] if position < len(ops) else None)

    @classmethod
    def at_end(cls, block: Block) -> "Rewriter":
        """Insertion at the end of ``block``."""
        return cls(block)

    def insert(self, op: Operation) -> Operation:
        """Put ``op`` at the insertion point."""
        if self.anchor is None:
            return self.block.append(op)
        return self.block.insert_before(self.anchor, op)

    def move(self, op: Operation) -> Operation:
        """Take ``op`` out of its block and put it at the insertion point, its operands and uses unchanged."""
        op.parent.ops.remove(op)
        return self.insert(op)

    def build(self, op_class, operands, attributes=None, loc=None) -> Operation:
        """A tensor-level op built (its result types from its shape rule, verified) and inserted."""
        return self.insert(op_class.build(list(operands), attributes, loc=loc))

    def create(self, op_class, operands, result_types, attributes=None, regions=(), loc=None) -> Operation:
        """An op made from its generic parts (``Operation.create``) and inserted."""
        return self.insert(op_class.create(list(operands), list(result_types), attributes, regions, loc))

    @staticmethod
    def replace(op: Operation, new_values: list[Value]) -> None:
        """Redirect every use of ``op``'s results to ``new_values``, in order, and erase ``op``."""
        if len(new_values) != len(op.results):
            raise IRError(f"cannot replace {op.describe()}: {len(op.results)} results, {len(new_values)} values")
        for old, new in zip(op.results, new_values):
            old.replace_all_uses_with(new)
        op.erase()
