"""Pass ``outline-kernels``: every tensor op not yet in a fused region gets its own."""

from __future__ import annotations

from dataclasses import dataclass

from fusecc.dialects.kernel import FusedOp, YieldOp
from fusecc.dialects.tensor import ConcatOp, TensorOp
from fusecc.ir.core import Block, Module, Operation, Region
from fusecc.ir.rewriter import Rewriter

from .manager import Pass
from .rewrite import INLINE_LIMIT, constant_value

def concat_in_place(op: Operation) -> bool:
    """Whether a concat can be a view: its producers write straight into slices of its buffer.

    Needs each operand to be a contiguous slice of the result (all dimensions
    before the axis are 1), computed by a kernel or by a concat that is
    itself in place (nested slices of one buffer, as a chain of DenseNet's
    concats makes), and appearing in no other concat and only once in this
    one: a value has one place. Its other consumers read it from the slice.
    """
    if not isinstance(op, ConcatOp) or not op.results[0].type.is_static:
        return False
    shape = op.results[0].type.shape
    axis = op.axis % len(shape)
    if any(d != 1 for d in shape[:axis]):
        return False
    for value in op.operands:
        producer = getattr(value, "op", None)
        concats = [user for user, _ in value.uses if isinstance(user, ConcatOp)]
        if producer is None or len(concats) != 1:
            return False
        if isinstance(producer, ConcatOp):
            if not concat_in_place(producer):
                return False
        elif not isinstance(producer, FusedOp) and not (isinstance(producer, TensorOp) and producer.needs_kernel):
            return False
    return True


def is_splat_constant(value) -> bool:
    """A small constant with one value everywhere (a scalar of the computation, not a weight)."""
    data = constant_value(value)
    return data is not None and 1 <= data.size <= INLINE_LIMIT and bool((data.reshape(-1) == data.reshape(-1)[0]).all())


def wrap_in_region(ops: list[Operation], pattern: str) -> FusedOp:
    """Move ``ops`` (in program order, one block) into a new ``kernel.fused`` placed at the last one.

    Operands defined outside become region arguments, except splat constants,
    which are cloned inside so the kernel sees them as scalars. Results used
    outside the group become the region's results.
    """
    members = {id(op) for op in ops}
    inputs, mapping = [], {}
    body = Block()
    region_end = Rewriter.at_end(body)
    for op in ops:
        for operand in op.operands:
            if id(operand) in mapping or (getattr(operand, "op", None) is not None and id(operand.op) in members):
                continue
            if is_splat_constant(operand):
                clone = region_end.create(type(operand.op), [], [operand.type], dict(operand.op.attributes),
                                          loc=operand.op.loc)
                mapping[id(operand)] = clone.result
                continue
            inputs.append(operand)
            mapping[id(operand)] = body.add_arg(operand.type, None)
    outputs = [r for op in ops for r in op.results
               if any(id(user) not in members for user, _ in r.uses)]
    fused = Rewriter.before(ops[-1]).create(FusedOp, inputs, [r.type for r in outputs], {"pattern": pattern},
                                            [Region([body])], loc=ops[-1].loc)
    for op in ops:
        for index, operand in enumerate(op.operands):
            if id(operand) in mapping:
                op.set_operand(index, mapping[id(operand)])
        region_end.move(op)
    region_end.create(YieldOp, list(outputs), [])
    for result, new in zip(outputs, fused.results):
        for user, index in list(result.uses):
            if id(user) not in members and user is not body.ops[-1]:
                user.set_operand(index, new)
    return fused


def name_kernels(module: Module) -> None:
    """Give each ``kernel.fused`` that has none the name of its kernel function: ``fused_``, the kinds of its
    first four ops, and its position among the module's regions (``fused_matmul_add_relu_3``)."""
    regions = [op for func in module.funcs for op in func.body.ops if isinstance(op, FusedOp)]
    for position, region in enumerate(regions):
        if not region.sym_name:
            kinds = list(dict.fromkeys(op.name.split(".", 1)[1] for op in region.members))
            region.attributes["sym_name"] = "fused_" + "_".join(kinds[:4]) + f"_{position}"


@dataclass
class OutlineKernels(Pass):
    """Wraps each tensor op outside a fused region into a ``kernel.fused`` of its own, then names every region's
    kernel (``name_kernels``).

    This is the unfused schedule (one kernel per op) and the fallback for ops
    that fusion left alone. Constants (weights), reshapes (views) and concats
    whose inputs can be written in place (``concat_in_place``) stay outside:
    they need no kernel. The names are attributes of the regions from here on,
    so the model info, the profiler and the code generator agree on them.
    """

    name = "outline-kernels"

    def run(self, module: Module) -> None:
        for func in module.funcs:
            for op in list(func.body.ops):
                if isinstance(op, TensorOp) and op.needs_kernel and not concat_in_place(op):
                    wrap_in_region([op], op.kind.value)
        name_kernels(module)
