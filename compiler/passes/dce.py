"""Pass ``dce``."""

from __future__ import annotations

from dataclasses import dataclass

from fusecc.ir.core import Block, Module

from .manager import Pass

@dataclass
class DeadCodeElimination(Pass):
    """Erases ops whose results are never used, innermost blocks first, last op first.

    Ops with side effects (stores, launches, copies, loops, terminators) are
    never erased.
    """

    name = "dce"

    def run(self, module: Module) -> None:
        for func in module.funcs:
            self._block(func.body)

    def _block(self, block: Block) -> None:
        for op in reversed(list(block.ops)):
            for region in op.regions:
                for nested in region.blocks:
                    self._block(nested)
            if not op.side_effects and all(not r.uses for r in op.results):
                op.erase()
