"""Lowering rules of reductions, normalizations and scans: reduction loops opened with ``e.reduce``
(or a row cached whole) inside the output index."""

from __future__ import annotations

import math
from typing import Callable

from fusecc.dialects import loop
from fusecc.dialects.tensor import (ArgMaxOp, ArgMinOp, CumProdOp, CumSumOp, HardmaxOp, InstanceNormOp, LRNOp,
                                    LayerNormOp, LogSoftmaxOp, RMSNormOp, ReduceL1Op, ReduceL2Op, ReduceLogSumExpOp,
                                    ReduceLogSumOp, ReduceMaxOp, ReduceMeanOp, ReduceMinOp, ReduceProdOp, ReduceSumOp,
                                    ReduceSumSquareOp, ReverseSequenceOp, SoftmaxOp, normalize_axis)
from fusecc.ir.core import Value
from fusecc.ir.types import DType, MemRefType

from ..emitter import float_limit
from .common import abs_value, broadcast_index, const_like, dtype_of
from .registry import lowers


def _reduce_axes(e, op, idx, axes, keepdims, in_shape, body_value, combine, init, key, dtype=None,
                 extents=None):
    """Reduce the input over ``axes``; ``body_value(in_idx)`` gives the reduced term.

    The accumulator has the input's dtype unless ``dtype`` says otherwise (an
    index reduction, such as the position of a maximum). ``extents`` replaces
    the input's extents along ``axes`` (for a run-time trip count).
    """
    kept = [i for i in range(len(in_shape)) if i not in axes]
    out_pos = {axis: (axis if keepdims else kept.index(axis)) for axis in kept}
    deps = [idx[out_pos[a]] for a in kept]
    extents = [in_shape[a] for a in axes] if extents is None else extents
    dtype = dtype_of(op) if dtype is None else dtype

    def body(ks):
        in_idx = [None] * len(in_shape)
        for a in kept:
            in_idx[a] = idx[out_pos[a]]
        for a, k in zip(axes, ks):
            in_idx[a] = k
        return body_value(in_idx)

    return e.reduce(key, deps, extents, dtype, init, combine, body)


#: reductions that end in a logarithm or a square root: of an integer tensor they are computed in
#: float64 and truncated toward zero, as ONNX Runtime does
_FLOAT_RESULT = {"l2", "log_sum"}


def _reduction(kind, e, op, idx, axes, keepdims, key_base):
    x = op.input
    if kind == "log_sum_exp" and not x.type.dtype.is_float:
        # ONNX Runtime: the integer maximum plus the truncated log of the shifted exponentials' sum
        peak = _reduction_of("max", e, op, idx, axes, keepdims, key_base, x.type.dtype, lambda i: e.at(x, i))
        shift = e.cast(peak, DType.F64)
        total = _reduction_of("sum", e, op, idx, axes, keepdims, (key_base, "shifted"), DType.F64,
                              lambda i: e.fn("exp", e.sub(e.cast(e.at(x, i), DType.F64), shift), at_most=0.0))
        return e.add(peak, e.cast(e.fn("log", total), x.type.dtype))
    if kind in _FLOAT_RESULT and not x.type.dtype.is_float:
        wide = _reduction_of(kind, e, op, idx, axes, keepdims, key_base, DType.F64,
                             lambda in_idx: e.cast(e.at(x, in_idx), DType.F64))
        return e.cast(wide, x.type.dtype)
    return _reduction_of(kind, e, op, idx, axes, keepdims, key_base, x.type.dtype, lambda in_idx: e.at(x, in_idx))


def _reduction_of(kind, e, op, idx, axes, keepdims, key_base, dtype, load):
    """The reduction ``kind`` of the terms ``load(in_idx)``, accumulated in ``dtype``."""
    shape = op.input.type.shape
    count = int(math.prod(shape[a] for a in axes))

    def run(term, combine, init, tag):
        return _reduce_axes(e, op, idx, axes, keepdims, shape, term, combine, init, (key_base, tag), dtype)

    if kind in ("sum", "mean"):
        total = run(load, e.add, 0, "sum")
        return e.div(total, e.const(count, dtype)) if kind == "mean" else total
    if kind == "max":
        return run(load, e.max, float_limit(dtype, -1), "max")
    if kind == "min":
        return run(load, e.min, float_limit(dtype, 1), "min")
    if kind == "prod":
        return run(load, e.mul, 1, "prod")
    if kind == "l1":
        return run(lambda i: abs_value(e, load(i)), e.add, 0, "l1")
    if kind in ("l2", "sum_square"):
        total = run(lambda i: e.mul(load(i), load(i)), e.add, 0, "sumsq")
        return e.fn("sqrt", total) if kind == "l2" else total
    if kind == "log_sum":
        return e.fn("log", run(load, e.add, 0, "sum"))
    if kind == "log_sum_exp":
        peak = run(load, e.max, -math.inf, "max")
        safe = e.select(e.cmp("eq", peak, e.const(-math.inf, dtype)), e.const(0.0, dtype), peak)
        total = run(lambda i: e.fn("exp", e.sub(load(i), safe), at_most=0.0), e.add, 0, "sumexp")
        return e.add(safe, e.fn("log", total))
    raise NotImplementedError(kind)


@lowers(ReduceSumOp, ReduceMeanOp, ReduceMaxOp, ReduceMinOp, ReduceProdOp, ReduceL1Op, ReduceL2Op, ReduceSumSquareOp,
        ReduceLogSumOp, ReduceLogSumExpOp)
def _reduce(e, op, result_index, idx):
    return _reduction(op.reduction, e, op, idx, op.reduced_axes(), op.keepdims, id(op))


@lowers(ArgMaxOp, ArgMinOp)
def _arg_reduce(e, op, result_index, idx):
    x = op.input
    axis = normalize_axis(op, op.axis, x.type.rank)
    kind = "max" if isinstance(op, ArgMaxOp) else "min"
    best = _reduction(kind, e, op, idx, [axis], op.keepdims, id(op))  # NaN when the line holds one
    size = x.type.shape[axis]

    def position(in_idx):
        value = e.at(x, in_idx)
        hit = e.cmp("eq", value, best)
        if x.type.dtype.is_float:  # a NaN is the line's maximum and minimum, as numpy's argmax/argmin
            hit = e.logical("arith.ori", hit, e.cmp("ne", value, value))
        return e.select(hit, in_idx[axis], e.index(-1 if op.select_last_index else size))

    combine = e.imax if op.select_last_index else e.imin
    init = -1 if op.select_last_index else size
    found = _reduce_axes(e, op, idx, [axis], op.keepdims, x.type.shape, position, combine, init, (id(op), "pos"),
                         DType.INDEX)
    return e.cast(e.imin(e.imax(found, e.index(0)), e.index(size - 1)), DType.I64)


def _row_stats(e, op, idx, axes, tag):
    """Max and sum(exp(x - max)) over ``axes`` for the row of ``idx`` (softmax family)."""
    x = op.input
    load = lambda in_idx: e.at(x, in_idx)  # noqa: E731
    peak = _reduce_axes(e, op, idx, axes, True, x.type.shape, load, e.max_number, -math.inf,
                        (id(op), tag, "max"))
    total = _reduce_axes(e, op, idx, axes, True, x.type.shape,
                         lambda i: e.fn("exp", e.sub(load(i), peak), at_most=0.0), e.add, 0.0, (id(op), tag, "sum"))
    return peak, total


@lowers(SoftmaxOp)
def _softmax(e, op, result_index, idx):
    axis = normalize_axis(op, op.axis, len(idx))
    if axis == len(idx) - 1 and e.in_row(idx):
        exps, start, total = _softmax_row(e, op, idx)
        return e.mul(e.load_mutable(exps, e.iadd(start, idx[-1])), e.reciprocal(total))
    peak, total = _row_stats(e, op, idx, [axis], "softmax")
    return e.div(e.fn("exp", e.sub(e.at(op.input, idx), peak), at_most=0.0), total)


def _softmax_row(e, op, idx) -> tuple[Value, Value, Value]:
    """exp(x - max) of the whole row, stored while it is summed, and the sum: the output pass only divides.

    The exps go where the output row will be when the softmax is a result of the kernel (the output pass
    then rescales them in place, and the row's first write to the output overlaps the exps' arithmetic),
    else to a stack buffer. Returns the buffer, the row's start in it, and the sum.
    """
    key = ("softmax_row", id(op), tuple(id(i) for i in idx[:-1]))
    cached = e.memo.get(key)
    if cached is not None and e.scope_of[id(cached[2])].encloses(e.current):
        return cached
    x = op.input
    outer, length = idx[:-1], x.type.shape[-1]  # the softmax's own row: a reduction may walk it from a 1-long one
    peak = _reduce_axes(e, op, idx, [len(idx) - 1], True, x.type.shape, lambda i: e.at(x, i), e.max_number,
                        -math.inf, (id(op), "softmax", "max"))
    exps = e.destinations.get(id(op.results[0]))
    if exps is not None:
        start = e.linearize(outer + [e.index(0)], x.type.shape)
    else:
        exps = e.emit(loop.AllocaOp, [], MemRefType((length,), x.type.dtype), scope=e.alloca_scope, pure=False)
        start = e.index(0)

    def term(ks):
        value = e.fn("exp", e.sub(e.at(x, outer + [ks[0]]), peak), at_most=0.0)
        e.store(value, exps, e.iadd(start, ks[0]))
        return value

    total = e.reduce((id(op), "softmax", "sum"), outer, [length], x.type.dtype, 0.0, e.add, term)
    e.memo[key] = (exps, start, total)
    return exps, start, total


@lowers(LogSoftmaxOp)
def _log_softmax(e, op, result_index, idx):
    axis = normalize_axis(op, op.axis, len(idx))
    peak, total = _row_stats(e, op, idx, [axis], "logsoftmax")
    return e.sub(e.sub(e.at(op.input, idx), peak), e.fn("log", total))


@lowers(HardmaxOp)
def _hardmax(e, op, result_index, idx):
    x = op.input
    axis = normalize_axis(op, op.axis, len(idx))
    load = lambda in_idx: e.at(x, in_idx)  # noqa: E731
    peak = _reduce_axes(e, op, idx, [axis], True, x.type.shape, load, e.max, -math.inf, (id(op), "max"))
    first = _reduce_axes(e, op, idx, [axis], True, x.type.shape,
                         lambda i: e.select(e.cmp("eq", load(i), peak), i[axis], e.index(x.type.shape[axis])),
                         e.imin, x.type.shape[axis], (id(op), "first"), DType.INDEX)
    dtype = x.type.dtype
    return e.select(e.cmp("eq", first, idx[axis]), e.const(1.0, dtype), e.const(0.0, dtype))


#: how many leading elements of a normalized region average into the shift of its one-pass moments
_SHIFT_SAMPLE = 16
#: the largest share of the shifted sum of squares that the shift's own offset may take before the
#: variance is recomputed around the mean (at this share its rounding error at most doubles)
_SHIFT_SHARE = 0.25


def _normalize(e, op, idx, axes, epsilon, rms=False):
    """(x - mean) / sqrt(var + eps) over ``axes`` (or x / sqrt(mean(x^2) + eps) when ``rms``).

    The statistics and the result are in ``_stats_dtype``: the caller applies
    scale and bias in it and rounds once, with ``_narrow``.
    """
    x = op.input
    dtype = _stats_dtype(x)
    shape = x.type.shape
    count = e.const(math.prod(shape[a] for a in axes), dtype)
    load = lambda in_idx: _widened(e, x, in_idx)  # noqa: E731
    value = load(idx)
    if rms:
        square = _reduce_axes(e, op, idx, axes, True, shape, lambda i: e.mul(load(i), load(i)), e.add, 0.0,
                              (id(op), "sumsq"), dtype)
        return e.mul(value, e.reciprocal(e.fn("sqrt", e.add(e.div(square, count), e.const(epsilon, dtype)))))
    mean, var = _moments(e, op, idx, axes, count)
    return e.mul(e.sub(value, mean), e.reciprocal(e.fn("sqrt", e.add(var, e.const(epsilon, dtype)))))


def _stats_dtype(x: Value) -> DType:
    """The dtype a normalisation of ``x`` sums in: float32 for float16 (as ONNX Runtime does; a float16
    sum of a few thousand elements is off by whole percents), else x's own."""
    return DType.F32 if x.type.dtype is DType.F16 else x.type.dtype


def _widened(e, x: Value, idx) -> Value:
    """``x[idx]`` in ``_stats_dtype(x)``."""
    value = e.at(x, idx)
    wide = _stats_dtype(x)
    return value if wide is x.type.dtype else e.cast(value, wide)


def _narrow(e, value: Value, x: Value) -> Value:
    """A normalisation's result, computed in ``_stats_dtype(x)``, rounded to x's dtype."""
    return value if value.type.dtype is x.type.dtype else e.cast(value, x.type.dtype)


def _moments(e, op, idx, axes, count):
    """Mean and variance of x over ``axes``, in one pass over x where that keeps the variance's rounding
    error within twice the two-pass method's.

    The pass sums d = x - s and d^2 around a shift s, the mean of the
    region's first few elements: mean = s + sum(d) / n and
    var = (sum(d^2) - sum(d)^2 / n) / n. Its rounding error grows with the
    share sum(d)^2 / n of sum(d^2) that the shift's offset from the mean
    takes; above ``_SHIFT_SHARE`` (a row whose first elements are not
    typical of it), a second pass sums (x - mean)^2, as the two-pass method
    always does. The subtraction is ``strict``: reassociated, it would turn
    sum(x - s) back into sum(x) - n s.
    """
    x = op.input
    dtype, shape = _stats_dtype(x), x.type.shape
    load = lambda in_idx: _widened(e, x, in_idx)  # noqa: E731
    last = axes[-1]
    sample = min(_SHIFT_SAMPLE, shape[last])

    def leading(ks):
        return load([ks[0] if a == last else e.index(0) if a in axes else i for a, i in enumerate(idx)])

    deps = [i for a, i in enumerate(idx) if a not in axes]
    shift = e.div(e.reduce((id(op), "shift"), deps, [sample], dtype, 0.0, e.add, leading),
                  e.const(sample, dtype))
    offset = lambda in_idx: e.sub(load(in_idx), shift, strict=True)  # noqa: E731
    total = _reduce_axes(e, op, idx, axes, True, shape, offset, e.add, 0.0, (id(op), "shifted sum"), dtype)
    squares = _reduce_axes(e, op, idx, axes, True, shape, lambda i: e.mul(offset(i), offset(i)), e.add, 0.0,
                           (id(op), "shifted squares"), dtype)
    mean_offset = e.div(total, count)
    mean = e.add(shift, mean_offset)
    offset_share = e.mul(mean_offset, total)
    recompute = e.cmp("gt", offset_share, e.mul(squares, e.const(_SHIFT_SHARE, dtype)))

    def centered_square(in_idx):
        d = e.sub(load(in_idx), mean)
        return e.mul(d, d)

    trips = [e.select(recompute, e.index(shape[axes[0]]), e.index(0))] + [shape[a] for a in axes[1:]]
    centered = _reduce_axes(e, op, idx, axes, True, shape, centered_square, e.add, 0.0, (id(op), "var"),
                            dtype, extents=trips)
    var = e.select(recompute, centered, e.sub(squares, offset_share))
    return mean, e.div(var, count)


@lowers(LayerNormOp)
def _layer_norm(e, op, result_index, idx):
    rank = len(idx)
    axis = normalize_axis(op, op.axis, rank)
    normed = _normalize(e, op, idx, list(range(axis, rank)), op.epsilon)
    tail = idx[axis:]
    scale, bias = op.scale, op.bias
    out = e.mul(normed, _widened(e, scale, broadcast_index(e, tail, scale.type.shape)))
    if bias is not None:
        out = e.add(out, _widened(e, bias, broadcast_index(e, tail, bias.type.shape)))
    return _narrow(e, out, op.input)


@lowers(RMSNormOp)
def _rms_norm(e, op, result_index, idx):
    rank = len(idx)
    axis = normalize_axis(op, op.axis, rank)
    normed = _normalize(e, op, idx, list(range(axis, rank)), op.epsilon, rms=True)
    scale = op.scale
    return _narrow(e, e.mul(normed, _widened(e, scale, broadcast_index(e, idx[axis:], scale.type.shape))),
                   op.input)


@lowers(InstanceNormOp)
def _instance_norm(e, op, result_index, idx):
    normed = _normalize(e, op, idx, list(range(2, len(idx))), op.epsilon)
    channel = [idx[1]]
    scaled = e.mul(normed, _widened(e, op.scale, channel))
    return _narrow(e, e.add(scaled, _widened(e, op.bias, channel)), op.input)


def _scan(e, op, idx, combine, identity):
    """Cumulative ``combine`` along ``op.axis`` (exclusive and reverse as ONNX's CumSum).

    Along the rows the nest walks, one running accumulator fills the row once (linear in the row
    length); along any other axis, each element reduces the prefix it covers.
    """
    x = op.input
    axis = normalize_axis(op, op.axis, len(idx))
    if axis == len(idx) - 1 and e.in_row(idx):
        result = op.results[0]
        if id(result) not in e.row_cached:
            e.cache_rows(result, idx[:-1], x.type.shape[axis])  # filled by ``row_fill``
        return e.at(result, idx)
    here = idx[axis]
    predicate = ("gt" if op.exclusive else "ge") if op.reverse else ("lt" if op.exclusive else "le")

    def term(ks):
        in_idx = list(idx)
        in_idx[axis] = ks[0]
        value = e.at(x, in_idx)
        return e.select(e.cmp(predicate, ks[0], here), value, const_like(e, value, identity))

    return e.reduce((id(op), "scan"), idx, [x.type.shape[axis]], x.type.dtype, identity, combine, term)


def _scan_row(e, op, row, outer, combine, identity) -> None:
    """Fill ``row`` with the scan of ``x[outer, :]``, walking it backwards when ``op.reverse``."""
    x = op.input
    length = x.type.shape[-1]
    zero = e.index(0)
    acc = e.emit(loop.AllocaOp, [], MemRefType((1,), x.type.dtype), scope=e.alloca_scope, pure=False)
    e.store(e.const(identity, x.type.dtype), acc, zero)
    with e.loop_in(e.current, 0, length) as (j, _):
        k = e.isub(e.index(length - 1), j) if op.reverse else j
        before = e.load_mutable(acc, zero)
        after = combine(before, e.at(x, outer + [k]))
        e.store(after, acc, zero)
        e.store(before if op.exclusive else after, row, k)


#: scans: op class -> (the Emitter method combining two values, its identity)
_SCANS = {CumSumOp: ("add", 0), CumProdOp: ("mul", 1)}


@lowers(*_SCANS)
def _cumulative(e, op, result_index, idx):
    combine, identity = _SCANS[type(op)]
    return _scan(e, op, idx, getattr(e, combine), identity)


def row_fill(value: Value) -> Callable | None:
    """How a cached row of ``value`` is filled whole, for ops that compute a row better at once than
    element by element (a scan along the row: one running accumulator), else None.

    Every cache of such a row uses it, whoever asked for the cache (the scan itself, or a softmax or
    reduction reading the scan's row), so a row is never filled by reading itself.
    """
    op = value.op
    if type(op) not in _SCANS or normalize_axis(op, op.axis, value.type.rank) != value.type.rank - 1:
        return None
    combine, identity = _SCANS[type(op)]
    return lambda e, row, outer: _scan_row(e, op, row, outer, getattr(e, combine), identity)


@lowers(ReverseSequenceOp)
def _reverse_sequence(e, op, result_index, idx):
    x, lengths = op.operands
    batch, time = idx[op.batch_axis], idx[op.time_axis]
    length = e.cast(e.at(lengths, [batch]), DType.INDEX)
    flipped = e.isub(e.isub(length, e.index(1)), time)
    in_idx = list(idx)
    in_idx[op.time_axis] = e.select(e.cmp("lt", time, length), flipped, time)
    return e.at(x, in_idx)


@lowers(LRNOp)
def _lrn(e, op, result_index, idx):
    x = op.input
    channels = x.type.shape[1]
    lo = (op.size - 1) // 2
    dtype = x.type.dtype

    def term(ks):
        c = e.iadd(e.isub(idx[1], e.index(lo)), ks[0])
        inside = e.logical("arith.andi", e.cmp("ge", c, e.index(0)), e.cmp("lt", c, e.index(channels)))
        safe = e.imin(e.imax(c, e.index(0)), e.index(channels - 1))
        value = e.at(x, [idx[0], safe] + idx[2:])
        return e.select(inside, e.mul(value, value), e.const(0.0, dtype))

    square = e.reduce((id(op), "lrn"), idx, [op.size], dtype, 0.0, e.add, term)
    base = e.add(e.const(op.bias, dtype), e.mul(e.const(op.alpha / op.size, dtype), square))
    return e.div(e.at(x, idx), e.pow(base, e.const(op.beta, dtype)))
