"""Pass ``contraction-layout``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusecc.dialects.tensor import CastOp, ConvOp, ConvTransposeOp, EinsumOp, GemmOp, MatMulOp, TransposeOp
from fusecc.ir.core import Module, Operation, Value
from fusecc.ir.types import DType
from fusecc.ir.printer import loc_names
from fusecc.ir.rewriter import Rewriter

from .manager import Pass
from .rewrite import constant_value, make_constant, resource_names

#: contractions: a float16 one sums in float32
CONTRACTIONS = (MatMulOp, GemmOp, ConvOp, ConvTransposeOp, EinsumOp)


@dataclass
class ContractionLayout(Pass):
    """Gives every Gemm its B operand as K x N rows, the layout the micro-kernel streams.

    ``gemm(a, b) {transB = 1}`` (what ``torch.nn.Linear`` exports) becomes
    ``gemm(a, b') {transB = 0}``: a constant ``b`` is transposed once, here,
    and stored transposed among the weights; a computed one gets a
    ``tensor.transpose`` of its own, a copy of K x N elements that lets the
    M x K x N contraction run on the micro-kernel instead of walking B with
    a stride of K. transA, alpha, beta and C are left as they are.

    A matrix-vector product with a constant matrix, ``matmul(w, v)`` with
    ``w`` M x K and ``v`` a vector (``torch.mv``), becomes ``matmul(v, w')``
    with ``w'`` the K x M transpose, stored so: one row of the result, each
    step of K adding a scaled contiguous row of ``w'`` (a vectorized row
    schedule) instead of M separate dot products.

    A float16 contraction is computed in float32 and rounded once: its
    operands are widened (constants here, once), its result narrowed, so the
    K-long sums keep float32's precision (as ONNX Runtime's do) and run on
    the float32 micro-kernels.
    """

    name = "contraction-layout"

    def run(self, module: Module) -> None:
        taken = resource_names(module)
        for func in module.funcs:
            transposed = {}  # id(B) -> B as K x N rows, shared by the gemms that read one B
            for op in list(func.body.ops):
                if isinstance(op, CONTRACTIONS) and op.results[0].type.dtype is DType.F16:
                    op = self._in_float32(op, taken)
                if isinstance(op, MatMulOp):
                    self._vector_on_the_left(op, taken)
            for gemm in list(func.body.ops):
                if not isinstance(gemm, GemmOp) or not gemm.transB:
                    continue
                b = gemm.b
                rows = transposed.get(id(b))
                if rows is None:
                    weights = constant_value(b)
                    if weights is not None:
                        name = f"{(loc_names(gemm.loc) or ['gemm'])[0]}_kn"
                        rows = make_constant(Rewriter.before(gemm), np.ascontiguousarray(weights.T), name, taken,
                                             loc=getattr(b.op, "loc", None))
                    else:
                        rows = Rewriter.before(gemm).build(TransposeOp, [b], {"perm": [1, 0]}, loc=gemm.loc).result
                    transposed[id(b)] = rows
                attributes = dict(gemm.attributes)
                attributes["transB"] = 0
                rewritten = Rewriter.before(gemm).build(GemmOp, [gemm.a, rows, *gemm.operands[2:]], attributes,
                                                        loc=gemm.loc)
                Rewriter.replace(gemm, [rewritten.result])

    @staticmethod
    def _vector_on_the_left(matmul: MatMulOp, taken: set[str]) -> None:
        matrix, vector = matmul.a, matmul.b
        weights = constant_value(matrix)
        if vector.type.rank != 1 or matrix.type.rank < 2 or weights is None:
            return
        name = f"{(loc_names(matmul.loc) or ['matmul'])[0]}_km"
        rewriter = Rewriter.before(matmul)
        rows = make_constant(rewriter, np.ascontiguousarray(np.swapaxes(weights, -1, -2)), name, taken,
                             loc=matrix.op.loc)
        Rewriter.replace(matmul, [rewriter.build(MatMulOp, [vector, rows], {}, loc=matmul.loc).result])

    @staticmethod
    def _in_float32(op: Operation, taken: set[str]) -> Operation:
        """``op`` computed on float32 operands, its result rounded back to float16; returns the new op."""
        rewriter = Rewriter.before(op)

        def widened(value: Value) -> Value:
            array = constant_value(value)
            if array is not None:
                name = f"{(loc_names(value.op.loc) or ['weight'])[0]}_f32"
                return make_constant(rewriter, array.astype(np.float32), name, taken, loc=value.op.loc)
            return rewriter.build(CastOp, [value], {"to": DType.F32}, loc=op.loc).result

        wide = rewriter.build(type(op), [widened(v) for v in op.operands], dict(op.attributes), loc=op.loc)
        Rewriter.replace(op, [rewriter.build(CastOp, [wide.result], {"to": DType.F16}, loc=op.loc).result])
        return wide
