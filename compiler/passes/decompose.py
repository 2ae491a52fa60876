"""Pass ``decompose``."""

from __future__ import annotations

from dataclasses import dataclass

from fusecc.dialects.tensor import SliceOp, SplitOp, normalize_axis
from fusecc.ir.core import Module

from .manager import Pass
from .rewrite import replace_op


@dataclass
class Decompose(Pass):
    """Rewrites multi-result data movement into single-result ops.

    ``tensor.split`` becomes one ``tensor.slice`` per piece, so every kernel
    computes results of one shape and pieces can fuse into their consumers
    independently. Everything else is left alone.
    """

    name = "decompose"

    def run(self, module: Module) -> None:
        for func in module.funcs:
            for op in list(func.body.ops):
                if isinstance(op, SplitOp):
                    axis = normalize_axis(op, op.axis, op.input.type.rank)
                    pieces, start = [], 0
                    for size in op.split:
                        piece = SliceOp.build([op.input], {"starts": [start], "ends": [start + size],
                                                                 "axes": [axis], "steps": [1]}, loc=op.loc)
                        func.body.insert_before(op, piece)
                        pieces.append(piece.result)
                        start += size
                    replace_op(op, pieces)
