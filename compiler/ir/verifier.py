"""Module verification: SSA dominance plus every op's own ``verify``."""

from __future__ import annotations

from .core import Block, Module, Operation, VerifyError


def verify_module(module: Module) -> None:
    names = set()
    for func in module.funcs:
        if func.sym_name in names:
            raise VerifyError(func, f"function @{func.sym_name} is defined twice")
        names.add(func.sym_name)
        _verify_op(func, set())


def _verify_block(block: Block, visible: set[int]) -> None:
    """``visible`` holds the values defined above the block; the block's own are added while it is checked
    and taken out after (one set for the whole walk, not a copy per block)."""
    defined = [id(arg) for arg in block.args]
    visible.update(defined)
    try:
        for op in block.ops:
            for index, operand in enumerate(op.operands):
                if id(operand) not in visible:
                    raise VerifyError(op, f"operand #{index} does not dominate this use")
            _verify_op(op, visible)
            for result in op.results:
                visible.add(id(result))
                defined.append(id(result))
    finally:
        visible.difference_update(defined)


def _verify_op(op: Operation, visible: set[int]) -> None:
    """Nested ops first, so an error is reported where it starts (an op, not the return that sees it)."""
    for region in op.regions:
        for block in region.blocks:
            _verify_block(block, visible)
    op.verify()
