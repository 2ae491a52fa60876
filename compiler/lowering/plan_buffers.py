"""Pass ``plan-buffers``: workspace offsets for intermediate buffers, reusing memory."""

from __future__ import annotations

from dataclasses import dataclass

from fusecc.dialects.kernel import AllocOp, ViewOp
from fusecc.ir.core import Module
from fusecc.passes.manager import Pass

ALIGN = 64


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class PlanBuffers(Pass):
    """Gives every ``kernel.alloc`` in ``@main`` a byte offset into one workspace.

    A buffer lives from its allocation to its last use (uses through views
    count); buffers whose lifetimes do not overlap share memory, placed
    first-fit by decreasing size. The workspace size goes into the
    ``workspace_size`` attribute of ``@main``.
    """

    name = "plan-buffers"

    def run(self, module: Module) -> None:
        main = module.main
        ops = main.body.ops
        allocs = [op for op in ops if isinstance(op, AllocOp)]
        root = {}
        for op in ops:
            if isinstance(op, AllocOp):
                root[id(op.result)] = op
            elif isinstance(op, ViewOp) and id(op.operands[0]) in root:
                root[id(op.result)] = root[id(op.operands[0])]
        first, last = {}, {}
        for position, op in enumerate(ops):
            if isinstance(op, AllocOp):
                first[id(op)] = last[id(op)] = position
            for value in op.operands:
                owner = root.get(id(value))
                if owner is not None:
                    last[id(owner)] = position
        placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
        for op in sorted(allocs, key=lambda a: -a.result.type.nbytes):
            size = _aligned(max(op.result.type.nbytes, 1))
            live = [(o, s) for o, s, f, l in placed if not (l < first[id(op)] or last[id(op)] < f)]
            offset = 0
            for o, s in sorted(live):
                if offset + size <= o:
                    break
                offset = max(offset, o + s)
            op.attributes["offset"] = offset
            placed.append((offset, size, first[id(op)], last[id(op)]))
        main.attributes["workspace_size"] = max((o + s for o, s, _, _ in placed), default=0)
