"""Pass ``contraction-layout``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusecc.dialects.tensor import GemmOp, TransposeOp
from fusecc.ir.core import Module
from fusecc.ir.printer import loc_names

from .manager import Pass
from .rewrite import constant_value, make_constant, replace_op, resource_names


@dataclass
class ContractionLayout(Pass):
    """Gives every Gemm its B operand as K x N rows, the layout the micro-kernel streams.

    ``gemm(a, b) {transB = 1}`` (what ``torch.nn.Linear`` exports) becomes
    ``gemm(a, b') {transB = 0}``: a constant ``b`` is transposed once, here,
    and stored transposed among the weights; a computed one gets a
    ``tensor.transpose`` of its own, a copy of K x N elements that lets the
    M x K x N contraction run on the micro-kernel instead of walking B with
    a stride of K. transA, alpha, beta and C are left as they are.
    """

    name = "contraction-layout"

    def run(self, module: Module) -> None:
        taken = resource_names(module)
        for func in module.funcs:
            transposed = {}  # id(B) -> B as K x N rows, shared by the gemms that read one B
            for gemm in list(func.body.ops):
                if not isinstance(gemm, GemmOp) or not gemm.transB:
                    continue
                b = gemm.operands[1]
                rows = transposed.get(id(b))
                if rows is None:
                    weights = constant_value(b)
                    if weights is not None:
                        name = f"{(loc_names(gemm.loc) or ['gemm'])[0]}_kn"
                        rows = make_constant(np.ascontiguousarray(weights.T), func.body, gemm, name, taken,
                                             loc=getattr(b.op, "loc", None))
                    else:
                        transpose = TransposeOp.build([b], {"perm": [1, 0]}, loc=gemm.loc)
                        func.body.insert_before(gemm, transpose)
                        rows = transpose.result
                    transposed[id(b)] = rows
                attributes = dict(gemm.attributes)
                attributes["transB"] = 0
                rewritten = GemmOp.build([gemm.operands[0], rows, *gemm.operands[2:]], attributes, loc=gemm.loc)
                func.body.insert_before(gemm, rewritten)
                replace_op(gemm, [rewritten.result])
