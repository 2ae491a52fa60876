"""Pass ``shape-inference``."""

from __future__ import annotations

from dataclasses import dataclass

from fusecc.dialects.tensor import TensorOp
from fusecc.ir.core import Module, ReturnOp
from fusecc.ir.types import TensorType

from .manager import Pass


def refine(known: TensorType, inferred: TensorType) -> TensorType:
    """``inferred``, keeping the static dimensions ``known`` already has where ``inferred`` has ``?``."""
    if not isinstance(known, TensorType) or known.rank != inferred.rank:
        return inferred
    shape = tuple(i if i is not None else k for k, i in zip(known.shape, inferred.shape))
    return TensorType(shape, inferred.dtype)


@dataclass
class ShapeInference(Pass):
    """Recomputes every tensor op's result types from its operands, in program order.

    Refines dynamic dimensions (``?``) wherever operands became static, e.g.
    after constant folding resolved a shape computation; function result types
    follow the returned values. Ops keep their results when the shape rule
    cannot say more. Leaves non-tensor ops alone.
    """

    name = "shape-inference"

    def run(self, module: Module) -> None:
        for func in module.funcs:
            for op in func.walk():
                if isinstance(op, TensorOp):
                    for result, inferred in zip(op.results, op.infer_types()):
                        result.type = refine(result.type, inferred)
            if func.body.ops and isinstance(func.body.ops[-1], ReturnOp):
                func.result_types = [v.type for v in func.return_op.operands]
