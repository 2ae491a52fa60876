"""Pass ``cse``."""

from __future__ import annotations

from dataclasses import dataclass

from fusecc.ir.attributes import attr_key
from fusecc.ir.core import Block, Module

from .manager import Pass

@dataclass
class CommonSubexpressionElimination(Pass):
    """Merges ops that compute the same thing: same name, operands, attributes and result types.

    Works block by block (an op in a nested region may reuse one from an
    enclosing block). Ops with regions, side effects, allocations and loads
    (memory may change between two loads) are kept.
    """

    name = "cse"

    def run(self, module: Module) -> None:
        for func in module.funcs:
            self._block(func.body, {})

    def _block(self, block: Block, outer: dict) -> None:
        seen = dict(outer)
        for op in list(block.ops):
            for region in op.regions:
                for nested in region.blocks:
                    self._block(nested, seen)
            if op.regions or op.side_effects or op.fresh_each_time:
                continue
            key = (op.name, tuple(id(v) for v in op.operands),
                   tuple(sorted((k, attr_key(v)) for k, v in op.attributes.items())),
                   tuple(str(r.type) for r in op.results))
            existing = seen.get(key)
            if existing is None:
                seen[key] = op
                continue
            for old, new in zip(op.results, existing.results):
                old.replace_all_uses_with(new)
            op.erase()
