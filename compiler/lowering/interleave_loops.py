"""Pass ``interleave-loops``: asks LLVM to run several vector iterations of long row loops side by side."""

from __future__ import annotations

from dataclasses import dataclass

from fusecc.dialects.arith import constant_of
from fusecc.dialects.loop import ForOp
from fusecc.dialects.vector import VectorOp
from fusecc.ir.core import Module, Operation
from fusecc.passes.manager import Pass


@dataclass
class InterleaveLoops(Pass):
    """Sets ``interleave = count`` on innermost scalar loops with a constant trip count of at least ``min-trip``.

    A row pass of a fused reduction kernel (LayerNorm's normalisation feeding
    a GELU, softmax's exponentials) is one long chain of dependent FMAs per
    element: about 80 cycles of latency for 8 cycles of work. LLVM's cost
    model interleaves such loops twice, so the out-of-order window holds too
    few independent chains and the FMA units idle; with eight interleaved
    vector iterations the chains overlap. Short loops are left alone, since
    they would run mostly in the remainder, and so are loops written with
    explicit ``vector`` ops (the GEMM micro-kernels choose their own blocking).
    """

    name = "interleave-loops"
    count: int = 8
    min_trip: int = 512

    def run(self, module: Module) -> None:
        for func in module.funcs:
            for op in func.walk():
                if isinstance(op, ForOp) and not op.attr("parallel", False) and self._wants_interleave(op):
                    op.attributes["interleave"] = self.count

    def _wants_interleave(self, loop: Operation) -> bool:
        trip = _constant_trip_count(loop)
        if trip is None or trip < self.min_trip:
            return False
        # innermost loops only, and not a micro-kernel's (its vector ops are register-blocked by hand)
        return not any(isinstance(inner, (ForOp, VectorOp)) for inner in loop.walk() if inner is not loop)


def _constant_trip_count(loop: Operation) -> int | None:
    lo, hi = (constant_of(value) for value in loop.operands)
    if lo is None or hi is None:
        return None
    step = loop.attr("step", 1)
    return max(0, (hi - lo + step - 1) // step)
