"""Pass ``outline-kernels``: every tensor op not yet in a fused region gets its own."""

from __future__ import annotations

from dataclasses import dataclass

from fusecc.dialects.kernel import FusedOp, YieldOp
from fusecc.dialects.tensor import ConcatOp, TensorOp
from fusecc.ir.core import Block, Module, Operation, Region

from .manager import Pass
from .rewrite import INLINE_LIMIT, constant_value

def concat_in_place(op: Operation) -> bool:
    """Whether a concat can be a view: its producers write straight into slices of its buffer.

    Needs each operand to be a contiguous slice of the result (all dimensions
    before the axis are 1), computed by a kernel, and used only here, once.
    """
    if not isinstance(op, ConcatOp) or not op.results[0].type.is_static:
        return False
    shape = op.results[0].type.shape
    axis = op.axis % len(shape)
    if any(d != 1 for d in shape[:axis]):
        return False
    seen = set()
    for value in op.operands:
        producer = getattr(value, "op", None)
        if producer is None or id(value) in seen or len(value.uses) != 1:
            return False
        if isinstance(producer, TensorOp) and (not producer.needs_kernel or isinstance(producer, ConcatOp)):
            return False
        if not isinstance(producer, (TensorOp, FusedOp)):
            return False
        seen.add(id(value))
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
    block = ops[-1].parent
    inputs, mapping = [], {}
    body = Block()
    for op in ops:
        for operand in op.operands:
            if id(operand) in mapping or (getattr(operand, "op", None) is not None and id(operand.op) in members):
                continue
            if is_splat_constant(operand):
                clone = operand.op.create([], [operand.type], dict(operand.op.attributes), (), operand.op.loc)
                body.append(clone)
                mapping[id(operand)] = clone.result
                continue
            inputs.append(operand)
            mapping[id(operand)] = body.add_arg(operand.type, None)
    outputs = [r for op in ops for r in op.results
               if any(id(user) not in members for user, _ in r.uses)]
    fused = FusedOp.create(inputs, [r.type for r in outputs], {"pattern": pattern}, [Region([body])],
                           loc=ops[-1].loc)
    block.insert_before(ops[-1], fused)
    for op in ops:
        for index, operand in enumerate(op.operands):
            if id(operand) in mapping:
                op.set_operand(index, mapping[id(operand)])
        block.ops.remove(op)
        body.append(op)
    body.append(YieldOp.create(list(outputs), []))
    for result, new in zip(outputs, fused.results):
        for user, index in list(result.uses):
            if id(user) not in members and user is not body.ops[-1]:
                user.set_operand(index, new)
    return fused


@dataclass
class OutlineKernels(Pass):
    """Wraps each tensor op outside a fused region into a ``kernel.fused`` of its own.

    This is the unfused schedule (one kernel per op) and the fallback for ops
    that fusion left alone. Constants (weights), reshapes (views) and concats
    whose inputs can be written in place (``concat_in_place``) stay outside:
    they need no kernel.
    """

    name = "outline-kernels"

    def run(self, module: Module) -> None:
        for func in module.funcs:
            for op in list(func.body.ops):
                if isinstance(op, TensorOp) and op.needs_kernel and not concat_in_place(op):
                    wrap_in_region([op], op.kind.value)
