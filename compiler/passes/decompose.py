"""Pass ``decompose``."""

from __future__ import annotations

from dataclasses import dataclass

from fusecc.dialects.tensor import SliceOp, SplitOp, normalize_axis
from fusecc.ir.core import Module
from fusecc.ir.rewriter import Rewriter

from .manager import Pass


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
                    rewriter, pieces, start = Rewriter.before(op), [], 0
                    for size in op.split:
                        pieces.append(rewriter.build(SliceOp, [op.input], {"starts": [start], "ends": [start + size],
                                                                           "axes": [axis], "steps": [1]},
                                                     loc=op.loc).result)
                        start += size
                    Rewriter.replace(op, pieces)
