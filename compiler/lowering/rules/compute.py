"""Lowering rules of contractions and pooling, element by element (the block and row schedules of
``lowering.schedules`` cover the shapes that have them)."""

from __future__ import annotations

import math

import numpy as np

from fusecc.dialects.tensor import (AveragePoolOp, BlockedConvOp, BlockedDepthwiseConvOp, ConvOp, ConvTransposeOp,
                                    EinsumOp, GemmOp, LpPoolOp, MatMulOp, MaxPoolIndicesOp, MaxPoolOp)
from fusecc.ir.types import DType

from ..emitter import float_limit
from .common import broadcast_at, broadcast_index, dtype_of, float_pow
from .registry import lowers


@lowers(MatMulOp)
def _matmul(e, op, result_index, idx):
    a, b = op.a, op.b
    a_shape = (1,) + a.type.shape if a.type.rank == 1 else a.type.shape
    b_shape = b.type.shape + (1,) if b.type.rank == 1 else b.type.shape
    out = list(idx)
    j = out.pop() if b.type.rank > 1 else e.index(0)
    i = out.pop() if a.type.rank > 1 else e.index(0)
    batch = out
    k_size = a_shape[-1]

    def term(ks):
        a_idx = broadcast_index(e, batch, a_shape[:-2]) + [i, ks[0]]
        b_idx = broadcast_index(e, batch, b_shape[:-2]) + [ks[0], j]
        a_val = e.at(a, a_idx if a.type.rank > 1 else [ks[0]])
        b_val = e.at(b, b_idx if b.type.rank > 1 else [ks[0]])
        return e.mul(a_val, b_val)

    return e.reduce((id(op), "matmul"), idx, [k_size], dtype_of(op), 0, e.add, term)


@lowers(GemmOp)
def _gemm(e, op, result_index, idx):
    a, b = op.a, op.b
    i, j = idx
    k_size = a.type.shape[0] if op.transA else a.type.shape[1]
    dtype = dtype_of(op)

    def term(ks):
        k = ks[0]
        a_val = e.at(a, [k, i] if op.transA else [i, k])
        b_val = e.at(b, [j, k] if op.transB else [k, j])
        return e.mul(a_val, b_val)

    acc = e.reduce((id(op), "gemm"), idx, [k_size], dtype, 0, e.add, term)
    if op.alpha != 1.0:
        acc = e.mul(acc, e.const(op.alpha, dtype))
    if op.c is not None and op.beta != 0.0:
        c = broadcast_at(e, op.c, idx)
        acc = e.add(acc, c if op.beta == 1.0 else e.mul(c, e.const(op.beta, dtype)))
    return acc


def _window_source(e, op, out_spatial, ks, in_spatial_shape):
    """Input spatial indices of a window tap, whether it is inside the input, and clamped indices."""
    strides, pads, dilations = op.window()
    spatial = len(op.kernel_shape)
    positions, valid = [], None
    for axis in range(spatial):
        pos = e.iadd(e.imul(out_spatial[axis], e.index(strides[axis])),
                     e.isub(e.imul(ks[axis], e.index(dilations[axis])), e.index(pads[axis])))
        size = in_spatial_shape[axis]
        inside = e.logical("arith.andi", e.cmp("ge", pos, e.index(0)), e.cmp("lt", pos, e.index(size)))
        valid = inside if valid is None else e.logical("arith.andi", valid, inside)
        positions.append(e.imin(e.imax(pos, e.index(0)), e.index(size - 1)))
    return positions, valid


def _plus_bias(e, op, acc, channel):
    """``acc`` plus a conv's bias of output ``channel``, if it has one."""
    return acc if op.bias is None else e.add(acc, e.at(op.bias, [channel]))


@lowers(ConvOp)
def _conv(e, op, result_index, idx):
    x, w = op.input, op.weight
    dtype = dtype_of(op)
    n, co, out_spatial = idx[0], idx[1], idx[2:]
    c_in_group = w.type.shape[1]
    c_out_group = w.type.shape[0] // op.group
    group_base = e.imul(e.idiv(co, e.index(c_out_group)), e.index(c_in_group))

    def term(ks):
        ci, taps = ks[0], ks[1:]
        positions, valid = _window_source(e, op, out_spatial, taps, x.type.shape[2:])
        x_val = e.at(x, [n, e.iadd(group_base, ci)] + positions)
        product = e.mul(x_val, e.at(w, [co, ci] + taps))
        return e.select(valid, product, e.const(0.0, dtype))

    acc = e.reduce((id(op), "conv"), idx, [c_in_group] + list(op.kernel_shape), dtype, 0.0, e.add, term)
    return _plus_bias(e, op, acc, co)


@lowers(BlockedConvOp)
def _blocked_conv(e, op, result_index, idx):
    x, w = op.input, op.weight
    block = op.block
    n, ob, oh, ow, lane = idx
    k_h, k_w = op.kernel_shape
    (s_h, s_w), (d_h, d_w) = op.strides, op.dilations
    channel = e.iadd(e.imul(ob, e.index(op.result_block)), lane)

    def term(ks):
        cb, kh, kw, ci = ks
        h = e.iadd(e.imul(oh, e.index(s_h)), e.imul(kh, e.index(d_h)))
        col = e.iadd(e.imul(ow, e.index(s_w)), e.imul(kw, e.index(d_w)))
        row = e.iadd(e.imul(e.iadd(e.imul(e.iadd(e.imul(cb, e.index(k_h)), kh), e.index(k_w)), kw),
                            e.index(block)), ci)
        return e.mul(e.at(x, [n, cb, h, col, ci]), e.at(w, [row, channel]))

    return e.reduce((id(op), "conv_blocked"), idx, [x.type.shape[1], k_h, k_w, block], dtype_of(op), 0.0, e.add,
                    term)


@lowers(BlockedDepthwiseConvOp)
def _blocked_depthwise_conv(e, op, result_index, idx):
    x, w = op.input, op.weight
    n, cb, lane = idx[0], idx[1], idx[4]
    dtype = dtype_of(op)

    def term(taps):
        positions, valid = _window_source(e, op, idx[2:4], taps, x.type.shape[2:4])
        product = e.mul(e.at(x, [n, cb, *positions, lane]), e.at(w, [cb, *taps, lane]))
        return e.select(valid, product, e.const(0.0, dtype))

    return e.reduce((id(op), "depthwise_conv_blocked"), idx, list(op.kernel_shape), dtype, 0.0, e.add, term)


@lowers(ConvTransposeOp)
def _conv_transpose(e, op, result_index, idx):
    x, w = op.input, op.weight
    dtype = dtype_of(op)
    strides, pads, dilations = op.window()
    n, co, out_spatial = idx[0], idx[1], idx[2:]
    c_in_group = x.type.shape[1] // op.group
    c_out_group = w.type.shape[1]
    group = e.idiv(co, e.index(c_out_group))
    co_local = e.irem(co, e.index(c_out_group))

    def term(ks):
        ci, taps = e.iadd(e.imul(group, e.index(c_in_group)), ks[0]), ks[1:]
        positions, valid = [], None
        for axis, tap in enumerate(taps):
            shifted = e.isub(e.iadd(out_spatial[axis], e.index(pads[axis])), e.imul(tap, e.index(dilations[axis])))
            size = x.type.shape[2 + axis]
            stride = e.index(strides[axis])
            pos = e.idiv(e.imax(shifted, e.index(0)), stride)
            ok = e.logical("arith.andi", e.cmp("ge", shifted, e.index(0)),
                           e.cmp("eq", e.irem(e.imax(shifted, e.index(0)), stride), e.index(0)))
            ok = e.logical("arith.andi", ok, e.cmp("lt", pos, e.index(size)))
            valid = ok if valid is None else e.logical("arith.andi", valid, ok)
            positions.append(e.imin(pos, e.index(size - 1)))
        product = e.mul(e.at(x, [n, ci] + positions), e.at(w, [ci, co_local] + taps))
        return e.select(valid, product, e.const(0.0, dtype))

    acc = e.reduce((id(op), "convT"), idx, [c_in_group] + list(op.kernel_shape), dtype, 0.0, e.add, term)
    return _plus_bias(e, op, acc, co)


@lowers(MaxPoolOp)
def _max_pool(e, op, result_index, idx):
    x = op.input
    dtype = dtype_of(op)
    lowest = e.const(float_limit(dtype, -1), dtype)

    lanes = idx[2 + len(op.kernel_shape):]  # a block's channel

    def term(ks):
        positions, valid = _window_source(e, op, idx[2:], ks, op.spatial_shape(x.type.shape))
        return e.select(valid, e.at(x, idx[:2] + positions + lanes), lowest)

    best = e.reduce((id(op), "maxpool"), idx, list(op.kernel_shape), dtype, float_limit(dtype, -1), e.max, term)
    if not dtype.is_float:
        return best
    empty = None
    for axis, runs in enumerate(op.empty_window_runs(op.spatial_shape(x.type.shape), op.ceil_mode)):
        for start, stop in runs:
            o = idx[2 + axis]
            inside = e.logical("arith.andi", e.cmp("ge", o, e.index(start)), e.cmp("lt", o, e.index(stop)))
            empty = inside if empty is None else e.logical("arith.ori", empty, inside)
    if empty is None:
        return best
    return e.select(empty, e.const(float(np.finfo(dtype.numpy).min), dtype), best)


@lowers(MaxPoolIndicesOp)
def _max_pool_indices(e, op, result_index, idx):
    """The first tap (in row-major kernel order) holding the window's maximum, as a flat input index."""
    x = op.input
    dtype = dtype_of(op)
    strides, pads, dilations = op.window()
    lowest = e.const(float_limit(dtype, -1), dtype)

    def value(ks):
        positions, valid = _window_source(e, op, idx[2:], ks, x.type.shape[2:])
        return valid, e.select(valid, e.at(x, idx[:2] + positions), lowest)

    best = e.reduce((id(op), "max"), idx, list(op.kernel_shape), dtype, float_limit(dtype, -1), e.max,
                    lambda ks: value(ks)[1])
    taps = tuple(op.kernel_shape)
    none = math.prod(taps)

    def first(ks):
        valid, v = value(ks)
        hit = e.logical("arith.andi", valid, e.cmp("eq", v, best))
        return e.select(hit, e.linearize(ks, taps), e.index(none))

    tap = e.reduce((id(op), "argmax"), idx, list(taps), DType.INDEX, none, e.imin, first)
    ks = e.delinearize(e.imin(tap, e.index(none - 1)), taps)
    spatial = x.type.shape[2:]
    coords = [e.iadd(e.imul(o, e.index(s)), e.isub(e.imul(k, e.index(d)), e.index(p)))
              for o, k, s, d, p in zip(idx[2:], ks, strides, dilations, pads)]
    order = range(len(spatial)) if op.storage_order == 0 else reversed(range(len(spatial)))
    flat = e.linearize(idx[:2], x.type.shape[:2])
    flat = e.imul(flat, e.index(math.prod(spatial)))
    offset = e.index(0)
    for axis in order:
        offset = e.iadd(e.imul(offset, e.index(spatial[axis])), coords[axis])
    return e.cast(e.iadd(flat, offset), DType.I64)


@lowers(LpPoolOp)
def _lp_pool(e, op, result_index, idx):
    x = op.input
    dtype = dtype_of(op)
    zero = e.const(0.0, dtype)

    def term(ks):
        positions, valid = _window_source(e, op, idx[2:], ks, x.type.shape[2:])
        magnitude = e.fn("absf", e.at(x, idx[:2] + positions))
        power = float_pow(e, magnitude, e.const(float(op.p), dtype))
        return e.select(valid, power, zero)

    total = e.reduce((id(op), "lp"), idx, list(op.kernel_shape), dtype, 0.0, e.add, term)
    return float_pow(e, total, e.const(1.0 / op.p, dtype))


@lowers(AveragePoolOp)
def _average_pool(e, op, result_index, idx):
    x = op.input
    dtype = dtype_of(op)
    strides, pads, dilations = op.window()
    spatial = len(op.kernel_shape)
    lanes = idx[2 + spatial:]  # a block's channel

    def term(ks):
        positions, valid = _window_source(e, op, idx[2:], ks, op.spatial_shape(x.type.shape))
        return e.select(valid, e.at(x, idx[:2] + positions + lanes), e.const(0.0, dtype))

    def counted(ks):
        inside = None
        for axis in range(spatial):
            pos = e.iadd(e.imul(idx[2 + axis], e.index(strides[axis])),
                         e.isub(e.imul(ks[axis], e.index(dilations[axis])), e.index(pads[axis])))
            if op.count_include_pad:
                lo, hi = -pads[axis], x.type.shape[2 + axis] + pads[axis + spatial]
            else:
                lo, hi = 0, x.type.shape[2 + axis]
            ok = e.logical("arith.andi", e.cmp("ge", pos, e.index(lo)), e.cmp("lt", pos, e.index(hi)))
            inside = ok if inside is None else e.logical("arith.andi", inside, ok)
        return e.select(inside, e.const(1.0, dtype), e.const(0.0, dtype))

    total = e.reduce((id(op), "sum"), idx, list(op.kernel_shape), dtype, 0.0, e.add, term)
    count = e.reduce((id(op), "count"), idx, list(op.kernel_shape), dtype, 0.0, e.add, counted)
    return e.div(total, e.max(count, e.const(1.0, dtype)))


@lowers(EinsumOp)
def _einsum(e, op, result_index, idx):
    inputs, _, output = op.equation.replace(" ", "").partition("->")
    terms = inputs.split(",")
    if not _:
        output = "".join(sorted(c for c in set(inputs.replace(",", "")) if inputs.count(c) == 1))
    sizes = {}
    for term, value in zip(terms, op.operands):
        for letter, d in zip(term, value.type.shape):
            if d != 1 or letter not in sizes:
                sizes[letter] = d
    summed = sorted(set("".join(terms)) - set(output))
    position = dict(zip(output, idx))

    def product(ks):
        where = dict(position)
        where.update(zip(summed, ks))
        result = None
        for term, value in zip(terms, op.operands):
            at = [e.index(0) if d == 1 and sizes[c] != 1 else where[c] for c, d in zip(term, value.type.shape)]
            scalar = e.at(value, at)
            result = scalar if result is None else e.mul(result, scalar)
        return result

    if not summed:
        return product([])
    return e.reduce((id(op), "einsum"), idx, [sizes[c] for c in summed], dtype_of(op), 0, e.add, product)
