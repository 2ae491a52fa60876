"""What a fused region costs: its FLOPs and the bytes it moves.

``fusecc profile`` reports kernels against these; ``lower-to-loops`` weighs them into each launch's work
per step of its range (``work``), by which the thread pool decides whether a split pays for itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fusecc.dialects.base import OpKind
from fusecc.dialects.tensor import (ArgReduceOp, AxisNormOp, BatchNormOp, BitcastOp, BlockedConvOp,
                                    BlockedDepthwiseConvOp, CastOp, ConstantOp, ConvOp, ConvTransposeOp, EinsumOp,
                                    GemmOp, InstanceNormOp, LayerNormOp, LRNOp, MatMulOp, ReduceOp, RMSNormOp, ScanOp,
                                    TensorOp, WindowOp)

#: FLOPs per input element of the row ops (multiply-adds count two): softmax takes a maximum, a subtraction,
#: an exponential, a sum and a division per element; layer normalization a sum for the mean, a subtraction, a
#: multiply-add for the variance and a multiply-add for the scale and bias (and a multiply by 1/sigma)
_ROW_OP_FLOPS = {AxisNormOp: 5, LayerNormOp: 7, InstanceNormOp: 7, RMSNormOp: 4, BatchNormOp: 2}


def _elements(t) -> int:
    return math.prod(t.shape)


def op_flops(op) -> int:
    """Floating-point (or integer) operations of one tensor op, a multiply-add counting two.

    Contractions count their multiply-adds (MatMul ``2*M*N*K``, conv ``2*N*Cout*(Cin/group)*KH*KW*OH*OW``)
    plus one per output element for a bias; pooling windows one per tap; reductions one per input element;
    row ops (softmax, normalizations) a few per element (``_ROW_OP_FLOPS``); other elementwise ops one per
    output element; ops that only move or convert data (reshape, transpose, gather, pad, cast, ...) none.
    The counts are those of the ops as compiled: a strided conv that ``space-to-depth-convs`` rewrote counts
    the taps of its regrouped kernel, zeros included.
    """
    if not isinstance(op, TensorOp) or isinstance(op, (ConstantOp, CastOp, BitcastOp)) or op.moves_data:
        return 0
    out = _elements(op.results[0].type) if op.results else 0
    if isinstance(op, MatMulOp):
        return 2 * out * op.in_types[0].shape[-1]
    if isinstance(op, GemmOp):
        a = op.in_types[0]
        k = a.shape[0] if op.transA else a.shape[1]
        return 2 * out * k + (out if len(op.operands) == 3 else 0)
    if isinstance(op, ConvOp):
        w = op.in_types[1]  # Cout x Cin/group x KH x KW
        return 2 * out * math.prod(w.shape[1:]) + (out if len(op.operands) == 3 else 0)
    if isinstance(op, BlockedConvOp):
        return 2 * out * op.in_types[1].shape[0]  # the weight's rows: Cin x KH x KW
    if isinstance(op, BlockedDepthwiseConvOp):
        return 2 * out * math.prod(op.kernel_shape)
    if isinstance(op, ConvTransposeOp):
        x, w = op.in_types[:2]  # w: Cin x Cout/group x KH x KW; every input element meets a kernel's taps
        return 2 * _elements(x) * math.prod(w.shape[1:]) + (out if len(op.operands) == 3 else 0)
    if isinstance(op, WindowOp):
        return out * math.prod(op.kernel_shape)
    if isinstance(op, EinsumOp):
        sizes = {}
        terms = op.equation.replace(" ", "").partition("->")[0].split(",")
        for term, t in zip(terms, op.in_types):
            sizes.update((letter, max(d, sizes.get(letter, 1))) for letter, d in zip(term, t.shape))
        return (2 if len(terms) > 1 else 1) * math.prod(sizes.values())
    if isinstance(op, LRNOp):
        return out * (op.size + 3)
    for cls, per_element in _ROW_OP_FLOPS.items():
        if isinstance(op, cls):
            return per_element * _elements(op.in_types[0])
    if isinstance(op, (ReduceOp, ArgReduceOp, ScanOp)):
        return _elements(op.in_types[0])
    if op.kind is OpKind.INJECTIVE:
        return 0
    return out


@dataclass(frozen=True)
class RegionCost:
    """The work of a fused region: FLOPs of its ops (:func:`op_flops`) and the bytes of the tensors it reads and
    writes, each once (the least memory traffic it can have; padding the lowering adds to a buffer not counted)."""

    flops: int
    bytes: int


def region_cost(fused) -> RegionCost:
    """The cost of one ``kernel.fused`` region."""
    tensors = {id(value): value for value in [*fused.operands, *fused.results]}
    return RegionCost(sum(op_flops(member) for member in fused.members),
                      sum(value.type.nbytes for value in tensors.values()))

