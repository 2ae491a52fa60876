"""Builds loop-dialect code that computes tensor values element by element.

``Emitter.at(value, index)`` returns a scalar SSA value holding ``value[index]``.
A value produced inside the fused region is computed inline by the lowering
rule of its op (so fused intermediates never reach memory); a region input is
loaded from its buffer. Results are memoized per index.

Every emitted op is placed in the outermost *scope* (loop body) where all of its
operands are available: work that depends only on a row index (a row's max or
sum, a broadcast bias load) lands in the row loop, outside the inner loop.
This is what lets softmax or LayerNorm run as one kernel that walks each row a
few times in cache instead of once per output element.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable

from fusecc.dialects import arith, loop
from fusecc.dialects import math as _math_dialect  # noqa: F401  (registers math.* ops)
from fusecc.ir.core import OP_REGISTRY, Block, Operation, Region, Value
from fusecc.ir.rewriter import Rewriter
from fusecc.ir.types import DType, MemRefType, ScalarType

INDEX = ScalarType(DType.INDEX)
I1 = ScalarType(DType.I1)


class Scope(Rewriter):
    """A place to insert code: a block, at its end or before an anchor op (the nested loop), inside the scope
    of the loop that holds the block (``parent``)."""

    def __init__(self, block: Block, parent: "Scope | None", anchor: Operation | None = None):
        super().__init__(block, anchor)
        self.parent = parent
        self.depth = 0 if parent is None else parent.depth + 1

    def encloses(self, other: "Scope") -> bool:
        scope = other
        while scope is not None:
            if scope is self:
                return True
            scope = scope.parent
        return False


class Emitter:
    """Emits loop-dialect ops into a kernel function, tracking the scope of each value."""

    def __init__(self, root: Scope, producer_rule: Callable, buffers: dict[int, Value],
                 row_fill_rule: Callable[[Value], Callable | None] = lambda value: None, vector_width: int = 1):
        self.root = root
        #: float32 lanes of the target's vectors, for rules that emit vector ops (1: scalar code only)
        self.vector_width = vector_width
        self.current = root
        self.scope_of: dict[int, Scope] = {}
        self.memo: dict[tuple, Value] = {}
        self.consts: dict[tuple, Value] = {}
        self.known: dict[int, int | float] = {}
        self.producer_rule = producer_rule
        #: value -> how its producer fills a whole cached row, or None to compute it element by element
        self.row_fill_rule = row_fill_rule
        self.buffers = buffers
        #: buffers not in row-major order (a packed B): id(value) -> offset(e, index) of an element
        self.layouts: dict[int, Callable[["Emitter", list[Value]], Value]] = {}
        self.alloca_scope = root
        #: the loop nest's row: its index values (all but the last dimension), and the scope that walks it
        self.row: list[Value] | None = None
        self.row_scope: Scope | None = None
        #: values computed once per row into a stack buffer: id -> (row index values, row length)
        self.row_cached: dict[int, tuple[list[Value], int]] = {}
        self.row_buffers: dict[int, Value] = {}
        #: values a block schedule computed: id -> (buffer, locate(e, index) -> offset, required row or None)
        self.block_cached: dict[int, tuple[Value, Callable, list[Value] | None]] = {}
        #: the kernel's results: id -> the output buffer its elements are stored to (at their own index)
        self.destinations: dict[int, Value] = {}
        #: buffers the kernel fills (cached rows and blocks): id -> the scope whose code fills them
        self.filled_in: dict[int, Scope] = {}
        #: index values ``delinearize_within`` computed: their ids -> (the linear index, the shape)
        self.linear_of: dict[tuple, tuple[Value, tuple]] = {}

    # --- placement --------------------------------------------------------------
    def deepest_scope(self, values) -> Scope:
        """The innermost scope among ``values``' scopes: where code depending on all of them can go."""
        best = self.root
        for value in values:
            scope = self.scope_of.get(id(value), self.root)
            if scope.depth > best.depth:
                best = scope
        return best

    def emit(self, cls, operands, result_type, scope: Scope | None = None, pure: bool = True,
             **attributes) -> Value:
        """Insert an op in ``scope`` (default: the deepest scope of its operands).

        Pure ops are reused when the same op on the same operands is already
        visible from the current scope.
        """
        key = (cls.name, tuple(id(v) for v in operands), tuple(sorted(attributes.items())), str(result_type))
        if pure:
            cached = self.memo.get(key)
            if cached is not None and self.scope_of[id(cached)].encloses(self.current):
                return cached
        op = cls.create(operands, [result_type], attributes)
        target = scope or self.deepest_scope(operands)
        target.insert(op)
        self.scope_of[id(op.result)] = target
        if pure:
            self.memo[key] = op.result
        return op.result

    # --- constants and index arithmetic ------------------------------------------
    def const(self, value, dtype: DType) -> Value:
        if dtype is DType.I1:
            value = int(bool(value))
        elif dtype.is_float:
            value = float(value)
        else:
            value = int(value)
        key = (dtype, repr(value))
        cached = self.consts.get(key)
        if cached is None:
            cached = self.emit(arith.ConstantOp, [], ScalarType(dtype), scope=self.root, pure=False, value=value)
            self.consts[key] = cached
            self.known[id(cached)] = value
        return cached

    def index(self, value: int) -> Value:
        return self.const(value, DType.INDEX)

    def _fold(self, name: str, a: Value, b: Value):
        ka, kb = self.known.get(id(a)), self.known.get(id(b))
        if ka is not None and kb is not None:
            return {"add": ka + kb, "sub": ka - kb, "mul": ka * kb,
                    "div": ka // kb if kb else None, "rem": ka % kb if kb else None,
                    "min": min(ka, kb), "max": max(ka, kb)}[name]
        return None

    def _index_op(self, name: str, cls_name: str, a: Value, b: Value) -> Value:
        folded = self._fold(name, a, b)
        if folded is not None:
            return self.index(folded)
        kb = self.known.get(id(b))
        ka = self.known.get(id(a))
        if name in ("add", "sub") and kb == 0:
            return a
        if name == "add" and ka == 0:
            return b
        if name == "mul" and (kb == 1 or ka == 1):
            return a if kb == 1 else b
        if name == "mul" and (kb == 0 or ka == 0):
            return self.index(0)
        if name == "div" and kb == 1:
            return a
        if name == "rem" and kb == 1:
            return self.index(0)
        return self.emit(OP_REGISTRY[cls_name], [a, b], INDEX)

    def iadd(self, a, b):
        return self._index_op("add", "arith.addi", a, b)

    def isub(self, a, b):
        return self._index_op("sub", "arith.subi", a, b)

    def imul(self, a, b):
        return self._index_op("mul", "arith.muli", a, b)

    def idiv(self, a, b):
        """Floor division of a non-negative index by a positive one."""
        return self._index_op("div", "arith.divsi", a, b)

    def irem(self, a, b):
        return self._index_op("rem", "arith.remsi", a, b)

    def imin(self, a, b):
        return self._index_op("min", "arith.minsi", a, b)

    def imax(self, a, b):
        return self._index_op("max", "arith.maxsi", a, b)

    def as_index(self, value: int | Value) -> Value:
        return self.index(value) if isinstance(value, int) else value

    def linearize(self, index: list[Value], shape: tuple[int, ...]) -> Value:
        """The row-major offset of ``index`` in ``shape``, from the linear index its leading values were
        computed from where ``delinearize_within`` knows it (an operand the shape of the loop nest is read
        at the row's offset, not through the division and remainder of each dimension)."""
        total, known = self.index(0), 0
        for length in range(len(index), 0, -1):
            source = self.linear_of.get(tuple(id(i) for i in index[:length]))
            if source is not None and source[1] == tuple(shape[:length]):
                total, known = source[0], length
                break
        for i, d in zip(index[known:], shape[known:]):
            total = self.iadd(self.imul(total, self.index(d)), i)
        return total

    def delinearize_within(self, linear: Value, shape: tuple[int, ...]) -> list[Value]:
        """``delinearize`` of a linear index known to lie within ``shape``, remembered for ``linearize``."""
        index = self.delinearize(linear, shape)
        if math.prod(shape) > 1:
            self.linear_of[tuple(id(i) for i in index)] = (linear, tuple(shape))
        return index

    def delinearize(self, linear: Value, shape: tuple[int, ...]) -> list[Value]:
        out = []
        for d in reversed(shape):
            out.append(self.irem(linear, self.index(d)))
            linear = self.idiv(linear, self.index(d))
        return out[::-1]

    # --- scalar arithmetic ----------------------------------------------------------
    def binary(self, float_name: str, int_name: str, a: Value, b: Value, **attributes) -> Value:
        if a.type.dtype.is_float:
            return self.emit(OP_REGISTRY[float_name], [a, b], a.type, **attributes)
        return self.emit(OP_REGISTRY[int_name], [a, b], a.type)

    def add(self, a, b):
        return self.binary("arith.addf", "arith.addi", a, b)

    def sub(self, a, b, strict: bool = False):
        """a - b; ``strict`` keeps the code generator from folding a float subtraction into its users."""
        return self.binary("arith.subf", "arith.subi", a, b, **({"strict": True} if strict else {}))

    def mul(self, a, b):
        return self.binary("arith.mulf", "arith.muli", a, b)

    def reciprocal(self, a):
        """1 / a, computed once where ``a`` is computed (e.g. per row) so later divisions become products."""
        return self.div(self.const(1.0, a.type.dtype), a)

    def div(self, a, b):
        return self.binary("arith.divf", "arith.divsi" if a.type.dtype.is_signed else "arith.divui", a, b)

    def max(self, a, b):
        return self.binary("arith.maxf", "arith.maxsi" if a.type.dtype.is_signed else "arith.maxui", a, b)

    def max_number(self, a, b):
        """``max`` where a NaN operand may be dropped (the consumer turns NaN rows into NaN anyway)."""
        return self.binary("arith.maxnumf", "arith.maxsi" if a.type.dtype.is_signed else "arith.maxui", a, b)

    def min(self, a, b):
        return self.binary("arith.minf", "arith.minsi" if a.type.dtype.is_signed else "arith.minui", a, b)

    def fn(self, name: str, x: Value, **attributes) -> Value:
        return self.emit(OP_REGISTRY[f"math.{name}"], [x], x.type, **attributes)

    def pow(self, a: Value, b: Value) -> Value:
        return self.emit(OP_REGISTRY["math.powf"], [a, b], a.type)

    def cmp(self, predicate: str, a: Value, b: Value) -> Value:
        """Compare with a signedness-neutral predicate name: eq, ne, lt, le, gt, ge."""
        if a.type.dtype.is_float:
            pred = {"eq": "oeq", "ne": "une", "lt": "olt", "le": "ole", "gt": "ogt", "ge": "oge"}[predicate]
            return self.emit(arith.CmpFOp, [a, b], I1, predicate=pred)
        if predicate in ("eq", "ne"):
            pred = predicate
        else:
            pred = ("s" if a.type.dtype.is_signed or a.type.dtype is DType.I1 else "u") + predicate
        return self.emit(arith.CmpIOp, [a, b], I1, predicate=pred)

    def select(self, cond: Value, a: Value, b: Value) -> Value:
        kc = self.known.get(id(cond))
        if kc is not None:
            return a if kc else b
        return self.emit(arith.SelectOp, [cond, a, b], a.type)

    def cast(self, x: Value, dtype: DType) -> Value:
        if x.type.dtype is dtype:
            return x
        return self.emit(arith.CastOp, [x], ScalarType(dtype))

    def logical(self, name: str, a: Value, b: Value) -> Value:
        return self.emit(OP_REGISTRY[name], [a, b], a.type)

    # --- memory -----------------------------------------------------------------------
    def load(self, buffer: Value, linear: Value) -> Value:
        """``buffer[linear]``, placed with its operands; a buffer the kernel fills is read no higher than
        the scope that fills it (a cached row read at a constant column still follows the row's fill)."""
        scope = self.deepest_scope([buffer, linear])
        filled = self.filled_in.get(id(buffer))
        if filled is not None and filled.depth > scope.depth:
            scope = filled
        return self.emit(loop.LoadOp, [buffer, linear], ScalarType(buffer.type.dtype), scope=scope)

    def at_buffer(self, value: Value, linear: Value) -> Value:
        """``value`` (a region input, so a buffer) at a linear index."""
        return self.load(self.buffers[id(value)], linear)

    def insert(self, op: Operation) -> Operation:
        """Place an op with no results (a store) in the current scope."""
        return self.current.insert(op)

    def store(self, value: Value, buffer: Value, linear: Value) -> None:
        op = loop.StoreOp.create([value, buffer, linear], [])
        self.current.insert(op)

    # --- loops ---------------------------------------------------------------------------
    def open_loop(self, lo: Value, hi: Value, scope: Scope, parallel: bool = False,
                  nest: bool = False, step: int = 1) -> tuple[Value, Scope]:
        """Create ``loop.for`` at ``scope``; return its induction variable and body scope.

        With ``nest`` the loop becomes ``scope``'s anchor: code placed in
        ``scope`` later goes before it (hoisted out of the loop).
        """
        body = Block([INDEX])
        attributes = {"parallel": True} if parallel else {}
        if step != 1:
            attributes["step"] = step
        for_op = loop.ForOp.create([lo, hi], [], attributes, [Region([body])])
        scope.insert(for_op)
        if nest:
            scope.anchor = for_op
        inner = Scope(body, scope)
        self.scope_of[id(body.args[0])] = inner
        return body.args[0], inner

    def reduce(self, key: tuple, deps: list[Value], extents: list[int | Value], dtype: DType, init,
               combine: Callable[[Value, Value], Value], body: Callable[[list[Value]], Value]) -> Value:
        """Reduce ``body(ks)`` over the loop nest ``extents`` (constants or index values) with ``combine``.

        The loops go in the deepest scope among ``deps`` (the indices the result
        depends on), so a row reduction runs once per row. Memoized by ``key``.
        """
        target = self.deepest_scope(deps)
        if self._is_nest_row(deps):
            target = self._at_least_row_scope(target)
        memo_key = ("reduce", key, tuple(id(d) for d in deps))
        cached = self.memo.get(memo_key)
        if cached is not None and self.scope_of[id(cached)].encloses(self.current):
            return cached
        acc = self.emit(loop.AllocaOp, [], MemRefType((1,), dtype), scope=self.alloca_scope, pure=False)
        zero = self.index(0)
        init_value = init if isinstance(init, Value) else self.const(init, dtype)
        target.insert(loop.StoreOp.create([init_value, acc, zero], []))
        saved_current, saved_anchor = self.current, target.anchor
        scope, ks = target, []
        for extent in extents:
            k, scope = self.open_loop(zero, self.as_index(extent), scope, nest=True)
            ks.append(k)
        self.current = scope
        value = body(ks)
        old = self.emit(loop.LoadOp, [acc, zero], ScalarType(dtype), scope=scope, pure=False)
        scope.insert(loop.StoreOp.create([combine(old, value), acc, zero], []))
        self.current, target.anchor = saved_current, saved_anchor
        result = self.emit(loop.LoadOp, [acc, zero], ScalarType(dtype), scope=target, pure=False)
        self.memo[memo_key] = result
        return result

    # --- tensor values --------------------------------------------------------------------
    def at(self, value: Value, index: list[Value]) -> Value:
        """The scalar ``value[index]``: loaded from a buffer, or computed by its producer."""
        key = (id(value), tuple(id(i) for i in index))
        cached = self.memo.get(key)
        if cached is not None and self.scope_of.get(id(cached), self.root).encloses(self.current):
            return cached
        buffer = self.buffers.get(id(value))
        if buffer is not None:
            layout = self.layouts.get(id(value))
            offset = layout(self, index) if layout is not None else self.linearize(index, value.type.shape)
            result = self.load(buffer, offset)
        elif self._in_cached_row(value, index):
            result = self.load(self._row_buffer(value), index[-1])
        elif self._in_block(value, index):
            block, locate, _ = self.block_cached[id(value)]
            result = self.load(block, locate(self, index))
        else:
            result = self.producer_rule(self, value, index)
        self.memo[key] = result
        return result

    def cache_rows(self, value: Value, outer: list[Value], length: int, fill: Callable | None = None) -> None:
        """Compute ``value[outer, :]`` once per row into a stack buffer that later reads use.

        ``fill(e, row_buffer, outer)`` writes the whole row (compute ops use
        this to run their reduction outside a vectorizable loop over the
        row); by default the producer's ``row_fill_rule`` does, or else each
        element is computed by the producer's rule.
        """
        self.row_cached[id(value)] = (outer, length, fill)

    @contextmanager
    def loop_in(self, scope: Scope, lo: Value | int, hi: Value | int, step: int = 1):
        """A loop in ``scope`` that code hoisted into ``scope`` stays in front of; yields (iv, body)."""
        saved_anchor, saved_current = scope.anchor, self.current
        iv, body = self.open_loop(self.as_index(lo), self.as_index(hi), scope, nest=True, step=step)
        self.current = body
        try:
            yield iv, body
        finally:
            scope.anchor, self.current = saved_anchor, saved_current

    def load_mutable(self, buffer: Value, linear: Value) -> Value:
        """A load from a buffer the kernel writes (never reused across stores)."""
        return self.emit(loop.LoadOp, [buffer, linear], ScalarType(buffer.type.dtype), scope=self.current,
                         pure=False)

    def _is_nest_row(self, values: list[Value]) -> bool:
        return self.row is not None and len(values) == len(self.row) and all(a is b for a, b in zip(values, self.row))

    def _at_least_row_scope(self, scope: Scope) -> Scope:
        """``scope``, or the nest's row scope when that is deeper: work done once per row (a cached row, a row's
        statistics) stays inside the row loop even when the row's indices are constants (a nest of one row),
        so it follows a block the row reads from."""
        if self.row_scope is not None and self.row_scope.depth > scope.depth:
            return self.row_scope
        return scope

    def in_row(self, index: list[Value]) -> bool:
        """Whether ``index`` walks a row at the nest's current row index (along its last axis, which may
        be longer than the nest's: a reduction keeping its last axis walks its operand's row)."""
        return self.row is not None and len(index) == len(self.row) + 1 and \
            all(a is b for a, b in zip(index, self.row))

    def cache_block(self, value: Value, block: Value, locate: Callable, row: list[Value] | None,
                    filled_in: Scope) -> None:
        """Reads of ``value`` come from the block buffer a schedule filled in ``filled_in``: at
        ``locate(e, index)``, for any index of the current block, or only for indices in the nest's
        ``row`` when given."""
        self.block_cached[id(value)] = (block, locate, row)
        self.filled_in[id(block)] = filled_in

    def _in_block(self, value: Value, index: list[Value]) -> bool:
        entry = self.block_cached.get(id(value))
        if entry is None:
            return False
        row = entry[2]
        return row is None or (len(index) == len(row) + 1 and all(a is b for a, b in zip(index, row)))

    def _in_cached_row(self, value: Value, index: list[Value]) -> bool:
        entry = self.row_cached.get(id(value))
        return entry is not None and len(index) == len(entry[0]) + 1 and \
            all(a is b for a, b in zip(index, entry[0]))

    def _row_buffer(self, value: Value) -> Value:
        """The row buffer of ``value``, filled by a loop placed in the row's scope on first use."""
        row = self.row_buffers.get(id(value))
        if row is not None:
            return row
        outer, length, fill = self.row_cached[id(value)]
        row = self.emit(loop.AllocaOp, [], MemRefType((length,), value.type.dtype), scope=self.alloca_scope,
                        pure=False)
        self.row_buffers[id(value)] = row
        saved = self.current
        row_scope = self._at_least_row_scope(self.deepest_scope(outer) if outer else self.root)
        self.filled_in[id(row)] = row_scope
        entry = self.row_cached.pop(id(value))
        self.current = row_scope
        fill = fill or self.row_fill_rule(value)
        if fill is not None:
            fill(self, row, outer)
        else:
            with self.loop_in(row_scope, 0, length) as (j, _):
                self.store(self.producer_rule(self, value, outer + [j]), row, j)
        self.row_cached[id(value)] = entry
        self.current = saved
        return row


def float_limit(dtype: DType, sign: int) -> float:
    """The identity of max (sign -1) or min (sign +1) reductions: +-inf, or the integer type's extremes."""
    if dtype.is_float:
        return sign * math.inf
    if dtype is DType.I1:
        return 0 if sign < 0 else 1
    if not dtype.is_signed:
        return 0 if sign < 0 else 2 ** dtype.bits - 1
    return -(2 ** (dtype.bits - 1)) if sign < 0 else 2 ** (dtype.bits - 1) - 1
