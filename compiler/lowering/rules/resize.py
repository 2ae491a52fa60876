"""Lowering rule of Resize: per resized axis, a source coordinate; nearest reads one element, linear and
cubic sum weighted taps (coordinates and weights in f64, as the numpy reference does)."""

from __future__ import annotations

import math

from fusecc.dialects.tensor import ResizeOp
from fusecc.ir.core import Value
from fusecc.ir.types import DType

from ..emitter import float_limit
from .registry import lowers


def _resize_source(e, op, axis: int, o: Value) -> Value:
    """The input coordinate (f64) that output position ``o`` of ``axis`` maps to."""
    x = op.input
    rank = x.type.rank
    in_len, out_len, scale = x.type.shape[axis], op.sizes[axis], op.scales[axis]
    mode = op.coordinate_transformation_mode
    y = e.cast(o, DType.F64)

    def c(value):
        return e.const(value, DType.F64)

    out_w = scale * in_len
    if mode in ("half_pixel", "pytorch_half_pixel", "half_pixel_symmetric"):
        if mode == "pytorch_half_pixel" and out_len == 1:
            return c(0.0)
        source = e.sub(e.div(e.add(y, c(0.5)), c(scale)), c(0.5))
        if mode == "half_pixel_symmetric":
            source = e.add(c(in_len / 2 * (1 - out_len / out_w)), source)
        return source
    if mode == "align_corners":
        return c(0.0) if out_w == 1 else e.div(e.mul(y, c(in_len - 1)), c(out_w - 1))
    if mode == "asymmetric":
        return e.div(y, c(scale))
    start, end = (op.roi[axis], op.roi[rank + axis]) if op.roi else (0.0, 1.0)
    if out_w == 1:
        return c((end - start) * (in_len - 1) / 2 + start * (in_len - 1))
    return e.add(e.div(e.mul(e.mul(y, c(end - start)), c(in_len - 1)), c(out_w - 1)), c(start * (in_len - 1)))


def _nearest(e, op, source: Value, size: int) -> Value:
    floor, ceil = e.fn("floor", source), e.fn("ceil", source)
    if op.nearest_mode == "floor":
        picked = floor
    elif op.nearest_mode == "ceil":
        picked = ceil
    else:
        predicate = "le" if op.nearest_mode == "round_prefer_floor" else "lt"
        picked = e.select(e.cmp(predicate, e.sub(source, floor), e.const(0.5, DType.F64)), floor, ceil)
    return e.imin(e.imax(e.cast(picked, DType.INDEX), e.index(0)), e.index(size - 1))


def _cubic_weight(e, distance: Value, a: float) -> Value:
    def c(value):
        return e.const(value, DType.F64)

    d = e.fn("absf", distance)
    d2 = e.mul(d, d)
    d3 = e.mul(d2, d)
    near = e.add(e.sub(e.mul(c(a + 2), d3), e.mul(c(a + 3), d2)), c(1.0))
    far = e.sub(e.add(e.sub(e.mul(c(a), d3), e.mul(c(5 * a), d2)), e.mul(c(8 * a), d)), c(4 * a))
    return e.select(e.cmp("le", d, c(1.0)), near, e.select(e.cmp("lt", d, c(2.0)), far, c(0.0)))


class _ResizeTaps:
    """The taps of one interpolated axis at one output position: positions and weights."""

    def __init__(self, e, op, axis: int, o: Value):
        self.e, self.op, self.axis = e, op, axis
        self.size = op.input.type.shape[axis]
        source = _resize_source(e, op, axis, o)
        self.source = source
        floor = e.fn("floor", source)
        ratio = e.sub(source, floor)
        integral = e.cmp("eq", ratio, e.const(0.0, DType.F64))  # the left neighbour, with ratio 1
        self.base = e.isub(e.cast(floor, DType.INDEX), e.select(integral, e.index(1), e.index(0)))
        self.ratio = e.select(integral, e.const(1.0, DType.F64), ratio)
        support = 1 if op.mode == "linear" else 2
        self.s_eff = min(op.scales[axis], 1.0) if op.antialias else 1.0
        self.start = math.floor(-support / self.s_eff) + 1
        self.count = 2 - 2 * self.start
        self.norm = None
        if op.antialias or op.exclude_outside:
            total = e.reduce((id(op), "resize-norm", axis), [o], [self.count], DType.F64, 0.0, e.add,
                             lambda ks: self.raw_weight(ks[0]))
            zero = e.cmp("eq", total, e.const(0.0, DType.F64))
            self.norm = e.select(zero, e.const(1.0, DType.F64), total)

    def position(self, k: Value) -> Value:
        return self.e.iadd(self.base, self.e.iadd(k, self.e.index(self.start)))

    def raw_weight(self, k: Value) -> Value:
        e = self.e
        tap = e.cast(e.iadd(k, e.index(self.start)), DType.F64)
        distance = e.mul(e.sub(tap, self.ratio), e.const(self.s_eff, DType.F64))
        if self.op.mode == "linear":
            one = e.const(1.0, DType.F64)
            weight = e.max(e.min(e.sub(one, e.fn("absf", distance)), one), e.const(0.0, DType.F64))
        else:
            weight = _cubic_weight(e, distance, self.op.cubic_coeff_a)
        if self.op.exclude_outside:
            position = self.position(k)
            inside = e.logical("arith.andi", e.cmp("ge", position, e.index(0)),
                               e.cmp("lt", position, e.index(self.size)))
            weight = e.select(inside, weight, e.const(0.0, DType.F64))
        return weight

    def weight(self, k: Value) -> Value:
        weight = self.raw_weight(k)
        return weight if self.norm is None else self.e.div(weight, self.norm)

    def clamped(self, k: Value) -> Value:
        return self.e.imin(self.e.imax(self.position(k), self.e.index(0)), self.e.index(self.size - 1))


@lowers(ResizeOp)
def _resize(e, op, result_index, idx):
    x = op.input
    dtype = x.type.dtype
    axes = [a for a in range(x.type.rank) if not op.is_identity(a)]
    sources = {}
    if op.mode == "nearest" or not axes:
        in_idx = list(idx)
        for a in axes:
            sources[a] = _resize_source(e, op, a, idx[a])
            in_idx[a] = _nearest(e, op, sources[a], x.type.shape[a])
        value = e.at(x, in_idx)
    else:
        taps = [_ResizeTaps(e, op, a, idx[a]) for a in axes]
        sources = {t.axis: t.source for t in taps}

        def term(ks):
            in_idx = list(idx)
            weight = None
            for tap, k in zip(taps, ks):
                in_idx[tap.axis] = tap.clamped(k)
                weight = tap.weight(k) if weight is None else e.mul(weight, tap.weight(k))
            element = e.cast(e.at(x, in_idx), DType.F64)
            return element if weight is None else e.mul(weight, element)

        total = e.reduce((id(op), "resize"), idx, [t.count for t in taps], DType.F64, 0.0, e.add, term)
        if dtype.is_float:
            value = e.cast(total, dtype)
        else:
            rounded = e.fn("roundeven", total)
            low, high = (e.const(float(float_limit(dtype, s)), DType.F64) for s in (-1, 1))
            value = e.cast(e.min(e.max(rounded, low), high), dtype)
    if op.coordinate_transformation_mode == "tf_crop_and_resize" and sources:
        outside = e.const(0, DType.I1)
        for a, source in sources.items():
            beyond = e.logical("arith.ori", e.cmp("lt", source, e.const(0.0, DType.F64)),
                               e.cmp("gt", source, e.const(float(x.type.shape[a] - 1), DType.F64)))
            outside = e.logical("arith.ori", outside, beyond)
        value = e.select(outside, e.const(op.extrapolation_value, dtype), value)
    return value
