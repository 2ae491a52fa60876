"""Lowering rules of opaque ops: each is alone in its kernel, so its operands are buffers."""

from __future__ import annotations

import math

from fusecc.dialects import loop
from fusecc.dialects.tensor import ScatterElementsOp, ScatterNDOp, TopKOp, normalize_axis
from fusecc.ir.core import Value
from fusecc.ir.types import DType, MemRefType

from ..emitter import float_limit
from .common import wrap_index
from .registry import lowers


def _scatter(e, op, idx, extents, target_matches, update_at):
    """out[idx] for a scatter: ``data[idx]`` combined with every update whose target is ``idx``.

    Each output element scans the update positions (``extents``):
    ``target_matches(ks)`` says whether update ``ks`` targets ``idx`` and
    ``update_at(ks)`` reads it. Without a reduction the last matching update wins.
    """
    data = op.input
    dtype = data.type.dtype
    current = e.at(data, idx)
    key = (id(op), "scatter")
    if op.reduction == "none":
        def last(ks):
            return e.select(target_matches(ks), e.linearize(ks, tuple(extents)), e.index(-1))

        found = e.reduce(key, idx, extents, DType.INDEX, -1, e.imax, last)
        ks = e.delinearize(e.imax(found, e.index(0)), tuple(extents))
        return e.select(e.cmp("ge", found, e.index(0)), update_at(ks), current)
    combine, neutral = {"add": (e.add, 0), "mul": (e.mul, 1), "max": (e.max, float_limit(dtype, -1)),
                        "min": (e.min, float_limit(dtype, 1))}[op.reduction]
    return e.reduce(key, idx, extents, dtype, current, combine,
                    lambda ks: e.select(target_matches(ks), update_at(ks), e.const(neutral, dtype)))


def _all(e, conditions: list[Value]) -> Value:
    result = e.const(1, DType.I1)
    for condition in conditions:
        result = e.logical("arith.andi", result, condition)
    return result


@lowers(ScatterElementsOp)
def _scatter_elements(e, op, result_index, idx):
    data, indices, updates = op.operands
    axis = normalize_axis(op, op.axis, data.type.rank)
    shape = indices.type.shape
    # updates that can land on idx share its position on every other axis
    inside = _all(e, [e.cmp("lt", i, e.index(d)) for a, (i, d) in enumerate(zip(idx, shape)) if a != axis])
    clamped = [e.imin(i, e.index(d - 1)) for i, d in zip(idx, shape)]

    def position(ks):
        at = list(clamped)
        at[axis] = ks[0]
        return at

    def matches(ks):
        target = wrap_index(e, e.at(indices, position(ks)), data.type.shape[axis])
        return e.logical("arith.andi", inside, e.cmp("eq", target, idx[axis]))

    return _scatter(e, op, idx, [shape[axis]], matches, lambda ks: e.at(updates, position(ks)))


@lowers(ScatterNDOp)
def _scatter_nd(e, op, result_index, idx):
    data, indices, updates = op.operands
    k = indices.type.shape[-1]
    extents = list(indices.type.shape[:-1])

    def matches(ks):
        return _all(e, [e.cmp("eq", wrap_index(e, e.at(indices, list(ks) + [e.index(t)]), data.type.shape[t]),
                              idx[t]) for t in range(k)])

    return _scatter(e, op, idx, extents, matches, lambda ks: e.at(updates, list(ks) + idx[k:]))


@lowers(TopKOp)
def _topk(e, op, result_index, idx):
    """The k best along ``axis``, selected in k passes into stack buffers once per output line.

    Pass p takes the best element that ranks after the one pass p-1 took (ranking
    by value, then by lower index): a max reduction finds its value, a min
    reduction its first position. A NaN is the largest value, as in ONNX
    Runtime and PyTorch: first when ``largest``, last otherwise.
    """
    axis = normalize_axis(op, op.axis, op.input.type.rank)
    others = idx[:axis] + idx[axis + 1:]
    key = ("topk", id(op), tuple(id(i) for i in others))
    buffers = e.memo.get(key)
    if buffers is None:
        buffers = _topk_line(e, op, idx, axis)
        e.memo[key] = buffers
    return e.load_mutable(buffers[result_index], idx[axis])


def _topk_line(e, op, idx, axis):
    x = op.input
    dtype = x.type.dtype
    n, k = x.type.shape[axis], op.k
    worst = float_limit(dtype, -1 if op.largest else 1)
    values = e.emit(loop.AllocaOp, [], MemRefType((max(k, 1),), dtype), scope=e.alloca_scope, pure=False)
    positions = e.emit(loop.AllocaOp, [], MemRefType((max(k, 1),), DType.I64), scope=e.alloca_scope, pure=False)
    scope = e.deepest_scope(idx[:axis] + idx[axis + 1:])

    def isnan(value):
        return e.cmp("ne", value, value) if dtype.is_float else e.const(False, DType.I1)

    def both(a, b):
        return e.logical("arith.andi", a, b)

    def either(a, b):
        return e.logical("arith.ori", a, b)

    def ranks_after(value, last):
        """``value`` comes after ``last`` in the order TopK takes them (a NaN is the largest value)."""
        if op.largest:
            return either(e.cmp("lt", value, last), both(isnan(last), e.cmp("eq", isnan(value), e.const(False, DType.I1))))
        return either(e.cmp("gt", value, last), both(isnan(value), e.cmp("eq", isnan(last), e.const(False, DType.I1))))

    def same(a, b):
        return either(e.cmp("eq", a, b), both(isnan(a), isnan(b)))

    with e.loop_in(scope, 0, k) as (p, _):
        first = e.cmp("eq", p, e.index(0))
        before = e.imax(e.isub(p, e.index(1)), e.index(0))
        last_value = e.load_mutable(values, before)
        last_position = e.cast(e.load_mutable(positions, before), DType.INDEX)

        def at(i):
            in_idx = list(idx)
            in_idx[axis] = i
            return e.at(x, in_idx)

        def eligible(i):
            value = at(i)
            later = either(ranks_after(value, last_value), both(same(value, last_value), e.cmp("gt", i, last_position)))
            return either(first, later)

        deps = [p] + idx[:axis] + idx[axis + 1:]
        if op.largest:  # the maximum propagates a NaN, the largest value
            best = e.reduce((id(op), "topk", "value"), deps, [n], dtype, worst, e.max,
                            lambda ks: e.select(eligible(ks[0]), at(ks[0]), e.const(worst, dtype)))
        else:  # the smallest number; NaN only when every eligible element is one
            def number(i):
                return both(eligible(i), e.cmp("eq", isnan(at(i)), e.const(False, DType.I1)))

            smallest = e.reduce((id(op), "topk", "value"), deps, [n], dtype, worst, e.min,
                                lambda ks: e.select(number(ks[0]), at(ks[0]), e.const(worst, dtype)))
            best = smallest
            if dtype.is_float:
                found = e.reduce((id(op), "topk", "found"), deps, [n], DType.I1, False, either,
                                 lambda ks: number(ks[0]))
                best = e.select(found, smallest, e.const(math.nan, dtype))
        where = e.reduce((id(op), "topk", "position"), deps, [n], DType.INDEX, n, e.imin,
                         lambda ks: e.select(both(eligible(ks[0]), same(at(ks[0]), best)), ks[0], e.index(n)))
        e.store(best, values, p)
        e.store(e.cast(e.imin(where, e.index(n - 1)), DType.I64), positions, p)
    return values, positions
