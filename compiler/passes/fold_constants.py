"""Pass ``fold-constants``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusecc.dialects.tensor import ConstantOp, ShapeOp, TensorOp
from fusecc.ir.core import Module, ReturnOp
from fusecc.ir.printer import loc_names
from fusecc.ir.rewriter import Rewriter

from .manager import Pass
from .shape_inference import refine
from .rewrite import constant_value, make_constant, resource_names


#: the largest result folded to a constant, in elements (512 MiB of f32, above VGG-19's largest weight,
#: 4096 x 25088): a larger one stays an op computed at run time, so a small model never asks for
#: gigabytes at compile time
MAX_FOLDED_ELEMENTS = 1 << 27


@dataclass
class FoldConstants(Pass):
    """Evaluates tensor ops whose operands are all constants, replacing them by constants.

    Uses each op's numpy reference, so shape subgraphs (``tensor.shape`` of a
    static tensor, then gather/concat/arithmetic on it) collapse to constants,
    as do weight transforms. Results larger than ``max-elements`` are left
    alone so folding never blows up the weights. Types of later ops are
    re-inferred as the sweep goes, so one pass resolves chains.
    """

    name = "fold-constants"
    max_elements: int = MAX_FOLDED_ELEMENTS

    def run(self, module: Module) -> None:
        taken = resource_names(module)
        for func in module.funcs:
            for op in list(func.body.ops):
                if not isinstance(op, TensorOp) or isinstance(op, ConstantOp):
                    continue
                for result, inferred in zip(op.results, op.infer_types()):
                    result.type = refine(result.type, inferred)
                arrays = self._inputs(op)
                if arrays is None:
                    continue
                if any(not r.type.is_static or r.type.num_elements > self.max_elements for r in op.results):
                    continue
                outputs = op.reference(*arrays)
                name = (loc_names(op.loc) or ["folded"])[0]
                values = [make_constant(Rewriter.before(op), np.asarray(out), f"{name}_{i}", taken, loc=op.loc)
                          for i, out in enumerate(outputs)]
                Rewriter.replace(op, values)
            if func.body.ops and isinstance(func.body.ops[-1], ReturnOp):
                func.result_types = [v.type for v in func.return_op.operands]

    @staticmethod
    def _inputs(op):
        if isinstance(op, ShapeOp) and op.input.type.is_static:
            return [np.empty(op.input.type.shape, dtype=np.uint8)]
        arrays = [constant_value(v) for v in op.operands]
        return None if any(a is None for a in arrays) else arrays
