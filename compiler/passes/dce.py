"""Pass ``dce``."""

from __future__ import annotations

from dataclasses import dataclass

from fusecc.ir.core import Block, Module

from .manager import Pass

#: ops with effects beyond their results
SIDE_EFFECTS = {"func.return", "kernel.yield", "kernel.launch", "kernel.copy", "loop.store", "loop.for"}


@dataclass
class DeadCodeElimination(Pass):
    """Erases ops whose results are never used, innermost blocks first, last op first.

    Stores, launches, copies, loops and terminators are never erased.
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
            if op.name not in SIDE_EFFECTS and all(not r.uses for r in op.results):
                op.erase()
