"""Pass ``fuse``: groups tensor ops into ``kernel.fused`` regions by their pattern kinds."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

from fusecc.dialects.base import OpKind
from fusecc.dialects.tensor import (AveragePoolOp, BlockedConvOp, ConcatOp, ConstantOp, ConvOp, ConvTransposeOp,
                                    EinsumOp, GemmOp, MatMulOp, MaxPoolOp, PadOp, ReshapeOp, TensorOp)
from fusecc.ir.core import Module, Operation, Value
from fusecc.ir.printer import loc_names
from fusecc.lowering.schedules.limits import COLUMN_TILE, ROW_CACHE_LIMIT

from .manager import Pass
from .outline import concat_in_place, wrap_in_region


def _elements(value: Value) -> int:
    return math.prod(d or 1 for d in value.type.shape)


def _broadcast_reads(out: Value, operand: Value) -> float:
    """Reads per element of an operand broadcast to ``out``.

    An operand broadcast along the last axis is read with an index that
    depends on the row only, so the lowering computes it once per row.
    """
    factor = _elements(out) / max(_elements(operand), 1)
    last_out = out.type.shape[-1] if out.type.rank else 1
    last_in = operand.type.shape[-1] if operand.type.rank else 1
    if last_in == 1 and (last_out or 1) > 1:
        factor /= last_out
    return max(factor, 1.0)


def reads_per_element(consumer: Operation, operand_index: int) -> float:
    """How many times the consumer's lowering reads each element of one operand.

    Elementwise ops read once; broadcasting multiplies by the broadcast
    factor; reductions over a cacheable last-axis row read once (the row is
    computed once into a buffer), otherwise once per pass; compute ops reread
    their inputs for every output they contribute to.
    """
    operand = consumer.operands[operand_index]
    out = consumer.results[0]
    kind = consumer.kind
    if kind in (OpKind.ELEMENTWISE, OpKind.BROADCAST):
        return _broadcast_reads(out, operand)
    if kind is OpKind.INJECTIVE:
        if isinstance(consumer, ConcatOp):
            return float(len(consumer.operands))
        if isinstance(consumer, PadOp):
            return 1.0  # every input element lands in one place; the border reads nothing
        return _broadcast_reads(out, operand)
    if kind is OpKind.REDUCTION:
        axes = consumer.reduced_axes() or []
        rank = operand.type.rank
        row = operand.type.shape[-1] if rank else 1
        last_axis_only = axes == [rank - 1]
        if operand_index > 0:  # scale/bias vectors
            return _broadcast_reads(out, operand)
        if last_axis_only and row is not None and row <= ROW_CACHE_LIMIT:
            return 1.0
        return float(consumer.row_passes())
    if kind is OpKind.COMPUTE:
        if consumer.row_blocked and operand_index == 0:
            return float(math.ceil(out.type.shape[-1] / COLUMN_TILE))  # broadcast once per column tile
        if isinstance(consumer, (MatMulOp, GemmOp, EinsumOp)):
            return max(_elements(out) * _contraction(consumer) / max(_elements(operand), 1), 1.0)
        if isinstance(consumer, (ConvOp, ConvTransposeOp, MaxPoolOp, AveragePoolOp)):
            taps = math.prod(consumer.kernel_shape)
            if isinstance(consumer, ConvOp) and operand_index == 0:
                taps *= consumer.weight.type.shape[0] // consumer.group
            elif isinstance(consumer, ConvTransposeOp) and operand_index == 0:
                taps *= consumer.weight.type.shape[1]
            strides = math.prod(consumer.window()[0])
            return max(taps / strides, 1.0)
        return float(_elements(out))
    return math.inf


def _contraction(op: Operation) -> int:
    if isinstance(op, GemmOp):
        a = op.a.type.shape
        return a[0] if op.transA else a[1]
    if isinstance(op, MatMulOp):
        return op.a.type.shape[-1]
    return 1


@dataclass
class Group:
    """A fused region being grown from its root (the op whose result leaves the region)."""

    root: Operation
    ops: list[Operation] = field(default_factory=list)
    reads: dict[int, float] = field(default_factory=dict)
    #: whether an op's last axis is the region's last axis (index passed through unchanged)
    aligned: dict[int, bool] = field(default_factory=dict)
    #: whether the region reads an op's result within the region's own rows (its outer index unchanged)
    in_row: dict[int, bool] = field(default_factory=dict)

    def __post_init__(self):
        self.ops.append(self.root)
        self.reads[id(self.root)] = 1.0
        self.aligned[id(self.root)] = True
        self.in_row[id(self.root)] = True

    @property
    def shape(self):
        return self.root.results[0].type.shape

    def contains(self, op: Operation) -> bool:
        return any(member is op for member in self.ops)

    def has_compute(self) -> bool:
        return any(op.kind is OpKind.COMPUTE for op in self.ops)

    horizontal: bool = False

    @property
    def pattern(self) -> str:
        return "horizontal" if self.horizontal else pattern_of(self.ops)


def pattern_of(ops: list[Operation]) -> str:
    """A region's pattern: the kind of its ops that shapes its kernel most (compute, then reduction, injective,
    broadcast, elementwise)."""
    kinds = {op.kind for op in ops}
    for kind in (OpKind.COMPUTE, OpKind.REDUCTION, OpKind.INJECTIVE, OpKind.BROADCAST):
        if kind in kinds:
            return kind.value
    return OpKind.ELEMENTWISE.value


@dataclass
class Decision:
    """Whether ``producer`` joined ``consumer``'s region: the ``reason`` it did not, or (None) the ``rule`` by
    which it did (``fusecc explain`` shows both)."""

    producer: Operation
    consumer: Operation
    reason: str | None
    rule: str = ""

    def describe(self) -> str:
        names = f"{label(self.producer)} -> {label(self.consumer)}"
        return f"fused {names}" if self.reason is None else f"did not fuse {names}: {self.reason}"


@dataclass
class Fuse(Pass):
    """Groups tensor ops into ``kernel.fused`` regions, each lowered to one kernel.

    Regions grow from the last op of the graph backwards: each op not yet in
    a region roots a new one, which absorbs the producers of its members while
    ``can_fuse`` allows. The cost rule, per producer:

    * it has a single result, every user of it is in the region (so nothing
      is computed twice and the region has one exit), and the region stays
      within ``max-ops`` ops;
    * elementwise, broadcast and injective producers fuse when each of their
      elements is computed at most ``max-recompute`` times by the region
      (broadcasting and window consumers such as pooling multiply the count;
      pure data movement -- transpose, reshape, slice, ... -- is index
      arithmetic and always fuses, its own producers paying the multiplied
      count);
    * nothing fuses into the operands micro-kernels stream from memory as
      vectors (B of matmul and gemm, the input of conv); A of matmul and gemm
      is broadcast element by element, once per 64 output columns, so cheap
      prologues (a scale, an activation, a normalization) fuse there within
      ``max-recompute``, as they do into pooling;
    * a reduction producer fuses when it reduces the region's last axis only
      (its result is computed once per row and reused along it) and is read
      at most ``max-recompute`` times per element;
    * a compute producer (matmul, gemm, conv, pooling) fuses only into a
      region without another compute op that reads each of its elements
      exactly once: bias, folded BatchNorm, activations and residual adds
      become its epilogue;
    * opaque and multi-result ops never fuse.

    Then, with ``horizontal``, sibling regions merge into one kernel when
    their results have one shape, they read a common input (loaded once per
    element for both), neither depends on the other, nothing outside uses
    the first before the second ends, and the merged region stays within
    ``max-ops``: the Q/K/V projections of attention, or parallel branches
    of the same shape.

    ``explain`` prints every decision, including why an op did not fuse.
    Constants and reshapes never root a region (they are weights and views).
    """

    name = "fuse"
    max_ops: int = 32
    max_recompute: int = 4
    horizontal: bool = True
    explain: bool = False
    decisions: list[Decision] = field(default_factory=list, repr=False)

    def run(self, module: Module) -> None:
        self.decisions = []
        for func in module.funcs:
            self._fuse_block(func.body)
        if self.explain:
            for decision in self.decisions:
                sys.stderr.write(f"[fuse] {decision.describe()}\n")

    def _fuse_block(self, block) -> None:
        ops = [op for op in block.ops if isinstance(op, TensorOp) and not isinstance(op, ConstantOp)]
        position = {id(op): i for i, op in enumerate(block.ops)}
        owner: dict[int, Group] = {}
        groups = []
        for op in reversed(ops):
            if id(op) in owner or isinstance(op, ReshapeOp) or op.kind is OpKind.OPAQUE or len(op.results) != 1:
                continue
            group = Group(op)
            owner[id(op)] = group
            self._grow(group, owner)
            groups.append(group)
        groups.reverse()
        if self.horizontal:
            groups = self._merge_siblings(groups, owner, position)
        for group in groups:
            if len(group.ops) > 1:
                wrap_in_region(sorted(group.ops, key=lambda o: position[id(o)]), group.pattern)

    def _merge_siblings(self, groups: list[Group], owner: dict[int, Group], position: dict) -> list[Group]:
        """Merge independent same-shape groups that read a common input (in program order)."""
        depends: dict[int, set[int]] = {}
        for group in groups:
            needs = set()
            for op in group.ops:
                for operand in op.operands:
                    producer = owner.get(id(getattr(operand, "op", None)))
                    if producer is not None and producer is not group:
                        needs.add(id(producer))
                        needs |= depends.get(id(producer), set())
            depends[id(group)] = needs
        merged: list[Group] = []
        for group in groups:
            partner = next((g for g in merged if self._siblings(g, group, depends, position)), None)
            if partner is None:
                merged.append(group)
                continue
            self.decisions.append(Decision(group.root, partner.root, None, HORIZONTAL_RULE))
            partner.ops.extend(group.ops)
            partner.horizontal = True
            for op in group.ops:
                owner[id(op)] = partner
            depends[id(partner)] |= depends[id(group)]
            for needs in depends.values():
                if id(group) in needs:
                    needs.add(id(partner))
        return merged

    def _siblings(self, a: Group, b: Group, depends: dict, position: dict) -> bool:
        if a.shape != b.shape or len(a.ops) + len(b.ops) > self.max_ops:
            return False
        if id(a) in depends[id(b)] or id(b) in depends[id(a)]:
            return False
        if any(op.kind is OpKind.REDUCTION for op in a.ops + b.ops):
            return False
        a_inputs = {id(v) for op in a.ops for v in op.operands if getattr(v, "op", None) not in a.ops}
        shared = any(id(v) in a_inputs for op in b.ops for v in op.operands
                     if not isinstance(getattr(v, "op", None), ConstantOp))
        if not shared:
            return False
        end = max(position[id(op)] for op in a.ops + b.ops)
        members = {id(op) for op in a.ops + b.ops}
        for op in a.ops + b.ops:
            for result in op.results:
                for user in result.users:
                    if id(user) not in members and position.get(id(user), end + 1) < end:
                        return False
        return True

    def _grow(self, group: Group, owner: dict[int, Group]) -> None:
        worklist = [group.root]
        while worklist:
            consumer = worklist.pop()
            for index, operand in enumerate(consumer.operands):
                producer = getattr(operand, "op", None)
                if not isinstance(producer, TensorOp) or isinstance(producer, ConstantOp):
                    continue
                if id(producer) in owner:
                    continue
                reads = group.reads[id(consumer)] * reads_per_element(consumer, index)
                aligned = group.aligned[id(consumer)] and _keeps_last_axis(consumer, index)
                in_row = group.in_row[id(consumer)] and _reads_in_own_row(consumer, index)
                reason = self.can_fuse(producer, consumer, index, group, owner, reads, aligned, in_row)
                self.decisions.append(Decision(producer, consumer, reason, "" if reason else fusion_rule(producer)))
                if reason is None:
                    group.ops.append(producer)
                    group.reads[id(producer)] = reads
                    group.aligned[id(producer)] = aligned
                    group.in_row[id(producer)] = in_row
                    owner[id(producer)] = group
                    worklist.append(producer)

    def can_fuse(self, producer: Operation, consumer: Operation, operand_index: int, group: Group,
                 owner: dict[int, Group], reads: float, aligned: bool = True, in_row: bool = True) -> str | None:
        """``None`` if ``producer`` may join ``group``, else the reason it may not.

        ``reads`` is how often the region would compute each of the
        producer's elements; ``aligned`` whether the producer's last axis is
        the region's (so per-row work hoists out of the inner loop);
        ``in_row`` whether the region reads the producer within its own rows.
        """
        if producer.kind is OpKind.OPAQUE:
            return "opaque op"
        if len(producer.results) != 1:
            return "op has several results"
        for user in producer.results[0].users:
            if owner.get(id(user)) is not group:
                return f"result is also used by {label(user)} outside the region"
        if len(group.ops) >= self.max_ops:
            return f"region reached max-ops={self.max_ops}"
        if operand_index in consumer.streamed_operands:
            return f"{label(consumer)} streams this operand from memory (its micro-kernel needs it)"
        if isinstance(producer, ConcatOp) and concat_in_place(producer):
            return "its inputs write into its buffer in place: it costs nothing, and its consumer reads a buffer"
        kind = producer.kind
        if kind is OpKind.INJECTIVE and producer.moves_data:
            return None
        if kind in (OpKind.ELEMENTWISE, OpKind.BROADCAST, OpKind.INJECTIVE):
            if reads > self.max_recompute:
                return f"each element would be recomputed {reads:.0f} times (max-recompute={self.max_recompute})"
            epilogue_of = _free_epilogue_host(producer)
            if epilogue_of is not None and (reads > 1.0 or consumer.kind is OpKind.COMPUTE):
                return f"it is better as the epilogue of {label(epilogue_of)} (read once there)"
            if isinstance(epilogue_of, BlockedConvOp) and group.shape[-1:] != epilogue_of.results[0].type.shape[-1:]:
                # the region reorders the blocked layout, so the conv could not join it and lose its epilogue
                return f"it is better as the epilogue of {label(epilogue_of)}, whose layout this region reorders"
            return None
        if kind is OpKind.REDUCTION:
            axes = producer.reduced_axes()
            rank = len(group.shape)
            value = producer.results[0]
            if value.type.rank != rank or axes != [rank - 1] or not aligned:
                return "reduction is not over the region's last axis, so it would be recomputed per element"
            if reads > self.max_recompute:
                return f"each element would be recomputed {reads:.0f} times (max-recompute={self.max_recompute})"
            return None
        if kind is OpKind.COMPUTE:
            if group.has_compute():
                return "region already holds a compute op"
            result = tuple(producer.results[0].type.shape)
            if len(result) in (4, 5) and tuple(group.shape[:2]) != result[:2] or \
                    isinstance(producer, BlockedConvOp) and tuple(group.shape[-1:]) != result[-1:]:
                return "the region walks other channels than the conv's output (its block schedule needs them)"
            if reads != 1.0:
                return f"compute result would be recomputed {reads:.0f} times per element"
            if producer.row_blocked and not in_row:
                return ("the region reads its result through index arithmetic (a transpose or reshape), which its "
                        "block schedule cannot serve")
            return None
        return f"{kind.value} op"


#: the rule by which two sibling regions merge (``horizontal``)
HORIZONTAL_RULE = "siblings: regions of one shape that read a common input, merged into one kernel"


def fusion_rule(producer: Operation) -> str:
    """The rule of :class:`Fuse` by which ``producer`` joins its consumer's region."""
    kind = producer.kind
    if kind is OpKind.COMPUTE:
        return "epilogue: the region reads each element of the compute op's result once, where it is computed"
    if kind is OpKind.REDUCTION:
        return "row reduction: over the region's last axis, computed once per row and reused along it"
    if kind is OpKind.INJECTIVE and producer.moves_data:
        return "data movement: index arithmetic on the consumer's reads"
    return f"{kind.value}: each element computed in the consumer's loop, at most max-recompute times"


def _keeps_last_axis(consumer: Operation, index: int) -> bool:
    """Whether reading operand ``index`` of ``consumer`` uses the consumer's last output index as its own."""
    operand, out = consumer.operands[index], consumer.results[0]
    if operand.type.rank != out.type.rank:
        return False
    if consumer.kind in (OpKind.ELEMENTWISE, OpKind.BROADCAST):
        return True
    if consumer.kind is OpKind.REDUCTION and index == 0:
        return consumer.reduced_axes() == [out.type.rank - 1]
    return False


def _reads_in_own_row(consumer: Operation, index: int) -> bool:
    """Whether ``consumer`` reads operand ``index`` (of its own shape) only within the row it writes: at its
    own element (elementwise), or along that row (a softmax or normalization over the last axis)."""
    operand, out = consumer.operands[index], consumer.results[0]
    if operand.type.shape != out.type.shape:
        return False
    if consumer.kind in (OpKind.ELEMENTWISE, OpKind.BROADCAST):
        return True
    return consumer.kind is OpKind.REDUCTION and index == 0 and consumer.reduced_axes() == [out.type.rank - 1]


def _free_epilogue_host(op: Operation, depth: int = 8) -> Operation | None:
    """The compute op that ``op`` would be a free epilogue of: reached through same-shape,
    single-use elementwise ops, so the whole chain runs once per element of its result."""
    shape = op.results[0].type.shape
    for operand in op.operands:
        producer = getattr(operand, "op", None)
        if not isinstance(producer, TensorOp) or len(operand.uses) != 1 or operand.type.shape != shape:
            continue
        if producer.kind is OpKind.COMPUTE:
            return producer
        if producer.kind in (OpKind.ELEMENTWISE, OpKind.BROADCAST) and depth:
            host = _free_epilogue_host(producer, depth - 1)
            if host is not None:
                return host
    return None


def label(op: Operation) -> str:
    """How diagnostics name an op: its source nodes, else its op name."""
    return "+".join(loc_names(op.loc)) or op.name
