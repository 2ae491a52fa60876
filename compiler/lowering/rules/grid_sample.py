"""Lowering rule of GridSample: per spatial axis a coordinate read from the grid (float32, as onnx's
reference), then one element (nearest) or 2 or 4 weighted taps per axis (linear, cubic), all unrolled."""

from __future__ import annotations

import itertools

from fusecc.dialects.tensor import GridSampleOp
from fusecc.ir.core import Value
from fusecc.ir.types import DType

from .registry import lowers


def _reflect(e, v: Value, low: float, high: float) -> Value:
    """Fold ``v`` into [low, high] by reflecting at the nearer border, as many times as needed."""
    dtype = v.type.dtype
    c = lambda value: e.const(value, dtype)  # noqa: E731
    span = high - low
    below, above = e.cmp("lt", v, c(low)), e.cmp("gt", v, c(high))
    distance = e.select(below, e.sub(c(low), v), e.select(above, e.sub(v, c(high)), c(0.0)))
    folds = e.fn("floor", e.div(distance, c(span))) if span > 0 else c(0.0)
    rest = e.sub(distance, e.mul(folds, c(span)))
    half = e.mul(folds, c(0.5))
    even = e.cmp("eq", e.fn("floor", half), half)
    from_low = e.select(even, e.add(c(low), rest), e.sub(c(high), rest))
    from_high = e.select(even, e.sub(c(high), rest), e.add(c(low), rest))
    return e.select(below, from_low, e.select(above, from_high, v))


def _grid_cubic(e, t: Value) -> list[Value]:
    a = -0.75
    c = lambda value: e.const(value, t.type.dtype)  # noqa: E731

    def near(d):
        return e.add(e.mul(e.mul(e.sub(e.mul(c(a + 2), d), c(a + 3)), d), d), c(1.0))

    def far(d):
        return e.sub(e.mul(e.add(e.mul(e.sub(e.mul(c(a), d), c(5 * a)), d), c(8 * a)), d), c(4 * a))

    one = c(1.0)
    return [far(e.add(t, one)), near(t), near(e.sub(one, t)), far(e.sub(c(2.0), t))]


@lowers(GridSampleOp)
def _grid_sample(e, op, result_index, idx):
    x, grid = op.operands
    dtype = x.type.dtype
    dims = x.type.shape[2:]
    rank = len(dims)
    n, channel, out = idx[0], idx[1], idx[2:]
    c = lambda value: e.const(value, DType.F32)  # noqa: E731
    coords, borders = [], []
    for axis, dim in enumerate(dims):
        g = e.cast(e.at(grid, [n] + out + [e.index(rank - 1 - axis)]), DType.F32)
        if op.align_corners:
            v = e.mul(e.div(e.add(g, c(1.0)), c(2.0)), c(dim - 1))
            borders.append((0.0, dim - 1.0))
        else:
            v = e.div(e.sub(e.mul(e.add(g, c(1.0)), c(dim)), c(1.0)), c(2.0))
            borders.append((-0.5, dim - 0.5))
        if op.mode == "nearest":
            v = e.fn("roundeven", v)
        low, high = borders[-1]
        if op.padding_mode == "border":  # only coordinates beyond the border are clamped
            outside = e.logical("arith.ori", e.cmp("lt", v, c(low)), e.cmp("gt", v, c(high)))
            v = e.select(outside, e.min(e.max(v, c(0.0)), c(dim - 1.0)), v)
        elif op.padding_mode == "reflection":
            v = _reflect(e, v, low, high)
        coords.append(v)

    def pixel(indices: list[Value]) -> Value:
        """x at integer positions (index values) with the padding mode for positions outside."""
        inside, fixed = e.const(1, DType.I1), []
        for axis, (index, dim) in enumerate(zip(indices, dims)):
            if op.padding_mode == "reflection":
                index = e.cast(_reflect(e, e.cast(index, DType.F32), *borders[axis]), DType.INDEX)
            elif op.padding_mode == "zeros":
                ok = e.logical("arith.andi", e.cmp("ge", index, e.index(0)), e.cmp("lt", index, e.index(dim)))
                inside = e.logical("arith.andi", inside, ok)
            fixed.append(e.imin(e.imax(index, e.index(0)), e.index(dim - 1)))
        value = e.at(x, [n, channel] + fixed)
        return e.select(inside, value, e.const(0.0, dtype)) if op.padding_mode == "zeros" else value

    if op.mode == "nearest":
        return pixel([e.cast(v, DType.INDEX) for v in coords])
    taps = []
    for v in coords:
        floor = e.fn("floor", v)
        t = e.cast(e.sub(v, floor), dtype)
        base = e.cast(floor, DType.INDEX)
        if op.mode == "linear":
            taps.append([(base, e.sub(e.const(1.0, dtype), t)), (e.iadd(base, e.index(1)), t)])
        else:
            taps.append([(e.iadd(base, e.index(k - 1)), w) for k, w in enumerate(_grid_cubic(e, t))])
    total = None
    for combination in itertools.product(*taps):
        weight = combination[0][1]
        for _, w in combination[1:]:
            weight = e.mul(weight, w)
        term = e.mul(weight, pixel([index for index, _ in combination]))
        total = term if total is None else e.add(total, term)
    return total
