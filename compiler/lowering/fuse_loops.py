"""Pass ``fuse-loops``: merges adjacent innermost loops over the same range into one."""

from __future__ import annotations

from dataclasses import dataclass

from fusecc.dialects.arith import constant_of
from fusecc.dialects.loop import ForOp, LoadOp, StoreOp
from fusecc.ir.core import Block, Module, Operation, Value
from fusecc.ir.rewriter import Rewriter
from fusecc.passes.manager import Pass

#: ops that touch memory and may sit in a loop the pass merges
_MEMORY = (LoadOp, StoreOp)


@dataclass
class FuseLoops(Pass):
    """Merges a ``loop.for`` into the innermost loop before it when both run the same range.

    The lowering emits one loop per row pass: a row buffer's fill, then a
    reduction over it (softmax's maximum), or independent reductions over one
    row. Each pass reads the row again; merged, the row is read once and the
    reduction rides along with the fill.

    Two loops merge when they are innermost, not ``parallel``, have the same
    bounds and step, and every buffer one of them writes is accessed by both
    only at the loop's own index (iteration ``i`` of the second loop then
    depends only on iteration ``i`` of the first). Ops between the loops move
    in front of the first when they do not touch what it writes (the second
    loop's accumulator initialisation), or behind the second when they read
    the first loop's results and the second loop does not use them. Distinct
    buffer values are distinct memory: kernel arguments never overlap, and
    allocas are private.
    """

    name = "fuse-loops"

    def run(self, module: Module) -> None:
        for func in module.funcs:
            for op in list(func.walk()):
                for region in op.regions:
                    for block in region.blocks:
                        self._fuse_in(block)

    def _fuse_in(self, block: Block) -> None:
        index = 0
        while index < len(block.ops):
            first = block.ops[index]
            if not _mergeable(first):
                index += 1
                continue
            between = []
            following = index + 1
            while following < len(block.ops) and not isinstance(block.ops[following], ForOp):
                between.append(block.ops[following])
                following += 1
            if following == len(block.ops):
                return
            second = block.ops[following]
            plan = _plan(first, second, between)
            if plan is None:
                index += 1
                continue
            hoist, sink = plan
            for op in hoist:
                Rewriter.before(first).move(op)
            after_second = Rewriter.after(second)
            for op in sink:
                after_second.move(op)
            _merge(first, second)


def _mergeable(loop: Operation) -> bool:
    return isinstance(loop, ForOp) and not loop.attr("parallel", False) and \
        all(isinstance(op, _MEMORY) or not op.side_effects for op in loop.body.ops)


def _plan(first: Operation, second: Operation, between: list[Operation]):
    """(ops to move in front of ``first``, ops to move behind ``second``), or None if the loops must stay."""
    if not _mergeable(second) or first.attr("step", 1) != second.attr("step", 1) or not all(
            _same_value(a, b) for a, b in zip(first.operands, second.operands)):
        return None
    first_access, second_access = _accesses(first), _accesses(second)
    for key in set(first_access) & set(second_access):
        if not (first_access[key][1] or second_access[key][1]):
            continue  # read by both: no order to keep
        for loop, access in ((first, first_access), (second, second_access)):
            loads, stores = access[key]
            if any(index is not loop.body.args[0] for index in loads + stores):
                return None
    first_writes = {key for key, (_, stores) in first_access.items() if stores}
    second_writes = {key for key, (_, stores) in second_access.items() if stores}
    hoist, sink, sunk = [], [], set()
    for op in between:
        if op.side_effects and not isinstance(op, StoreOp):
            return None
        buffer = _buffer_of(op)
        reads_first = isinstance(op, LoadOp) and id(buffer) in first_writes
        if reads_first or any(id(getattr(v, "op", None)) in sunk for v in op.operands):
            # a result of the first loop: computed after both, if the second loop does not need it
            if isinstance(op, StoreOp) or (buffer is not None and id(buffer) in second_writes):
                return None
            sink.append(op)
            sunk.add(id(op))
        elif buffer is not None and isinstance(op, StoreOp) and id(buffer) in first_access:
            return None
        else:
            hoist.append(op)
    if any(id(getattr(v, "op", None)) in sunk for op in second.walk() for v in op.operands):
        return None
    return hoist, sink


def _accesses(loop: Operation) -> dict[int, tuple[list[Value], list[Value]]]:
    """buffer id -> (indices loaded, indices stored) in the loop's body."""
    found: dict[int, tuple[list[Value], list[Value]]] = {}
    for op in loop.body.ops:
        if isinstance(op, _MEMORY):
            loads, stores = found.setdefault(id(_buffer_of(op)), ([], []))
            (stores if isinstance(op, StoreOp) else loads).append(op.operands[-1])
    return found


def _buffer_of(op: Operation) -> Value | None:
    if isinstance(op, LoadOp):
        return op.operands[0]
    if isinstance(op, StoreOp):
        return op.operands[1]
    return None


def _same_value(a: Value, b: Value) -> bool:
    return a is b or (constant_of(a) is not None and constant_of(a) == constant_of(b) and a.type == b.type)


def _merge(first: Operation, second: Operation) -> None:
    """Append ``second``'s body to ``first``'s, its induction variable replaced by ``first``'s."""
    second.body.args[0].replace_all_uses_with(first.body.args[0])
    end_of_first = Rewriter.at_end(first.body)
    for op in list(second.body.ops):
        end_of_first.move(op)
    second.erase()
