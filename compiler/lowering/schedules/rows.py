"""Row schedules: a compute op's output row computed at once, the reduction outside a contiguous loop.

A conv's row takes, per input channel and tap, a scalar weight times a contiguous stretch of an input
row; a MatMul's or Gemm's row a scalar of A times a contiguous row of B per depth step. Depthwise convs
and max pooling have rows in vector registers (``window_rows``).
"""

from __future__ import annotations

from typing import Callable

from fusecc.dialects.tensor import ConvOp, GemmOp, MatMulOp
from fusecc.ir.core import Operation, Value

from ..emitter import Emitter
from ..rules.common import broadcast_at, broadcast_index, dtype_of
from .window_rows import (blocked_depthwise_row, blocked_pool_row, depthwise_row, is_2d_max_pool, is_blocked_depthwise,
                          is_blocked_pool, is_depthwise, max_pool_row)


def _init_row(e: Emitter, row: Value, length: int, value: Value) -> None:
    with e.loop_in(e.current, 0, length) as (j, _):
        e.store(value, row, j)


def _accumulate(e: Emitter, row: Value, j: Value, term: Value) -> None:
    e.store(e.add(e.load_mutable(row, j), term), row, j)


def _conv_row(e: Emitter, op: Operation, row: Value, outer: list[Value]) -> None:
    """out[n, co, oh, :] for a 2-D conv (out[n, co, :] for a 1-D one, a 2-D conv of height 1): for each
    (ci, kh, kw) tap, one multiply-add over the valid columns.

    The valid column range of each tap is computed (not tested per element),
    so the inner loop is a plain strided load and FMA the vectorizer handles.
    """
    x, w = op.input, op.weight
    dtype = dtype_of(op)
    strides, pads, dilations = op.window()
    if x.type.rank == 3:
        n, co = outer
        oh = e.index(0)
        (sw,), (dw,), (pw, _) = strides, dilations, pads
        sh, dh, ph = 1, 1, 0
        (_, _, width), height = x.type.shape, 1
        kh_size, kw_size = 1, op.kernel_shape[0]
    else:
        n, co, oh = outer
        (sh, sw), (dh, dw) = strides, dilations
        ph, pw = pads[0], pads[1]
        _, _, height, width = x.type.shape
        kh_size, kw_size = op.kernel_shape
    out_w = op.results[0].type.shape[-1]
    c_in_group = w.type.shape[1]
    c_out_group = w.type.shape[0] // op.group
    bias = e.at(op.bias, [co]) if op.bias is not None else e.const(0.0, dtype)
    _init_row(e, row, out_w, bias)
    group_base = e.imul(e.idiv(co, e.index(c_out_group)), e.index(c_in_group))
    scope = e.current
    with e.loop_in(scope, 0, c_in_group) as (ci, ci_scope):
        channel = e.iadd(group_base, ci)
        with e.loop_in(ci_scope, 0, kh_size) as (kh, kh_scope):
            ih = e.iadd(e.imul(oh, e.index(sh)), e.isub(e.imul(kh, e.index(dh)), e.index(ph)))
            inside = e.logical("arith.andi", e.cmp("ge", ih, e.index(0)), e.cmp("lt", ih, e.index(height)))
            ih_safe = e.imin(e.imax(ih, e.index(0)), e.index(height - 1))
            with e.loop_in(kh_scope, 0, kw_size) as (kw, _):
                weight = e.at(w, [co, ci, kh, kw] if w.type.rank == 4 else [co, ci, kw])
                offset = e.isub(e.imul(kw, e.index(dw)), e.index(pw))
                # first column j with j*sw + offset >= 0, and one past the last with j*sw + offset < width
                lead = e.imax(e.isub(e.index(0), offset), e.index(0))
                lo = e.idiv(e.iadd(lead, e.index(sw - 1)), e.index(sw))
                room = e.isub(e.index(width - 1), offset)
                hi = e.imin(e.select(e.cmp("lt", room, e.index(0)), e.index(0),
                                     e.iadd(e.idiv(e.imax(room, e.index(0)), e.index(sw)), e.index(1))),
                            e.index(out_w))
                hi = e.select(inside, hi, lo)
                row_start = [n, channel, ih_safe, e.index(0)] if x.type.rank == 4 else [n, channel, e.index(0)]
                base = e.linearize(row_start, x.type.shape)
                with e.loop_in(e.current, lo, hi) as (j, _):
                    column = e.iadd(e.imul(j, e.index(sw)), offset)
                    source = e.at_buffer(x, e.iadd(base, column))
                    _accumulate(e, row, j, e.mul(weight, source))


def _matmul_row(e: Emitter, op: Operation, row: Value, outer: list[Value]) -> None:
    """out[..., i, :] = sum_k a[..., i, k] * b[..., k, :]: a scalar times a contiguous row of b per k."""
    a, b = op.a, op.b
    dtype = dtype_of(op)
    if isinstance(op, GemmOp):
        k_size = a.type.shape[0] if op.transA else a.type.shape[1]
        n_size = b.type.shape[1]
        batch, i = [], outer[0]
        b_shape = b.type.shape
    else:
        k_size, n_size = a.type.shape[-1], b.type.shape[-1]
        batch = outer[:-1] if a.type.rank > 1 else outer
        i = outer[-1] if a.type.rank > 1 else None
        b_shape = b.type.shape
    _init_row(e, row, n_size, e.const(0.0, dtype))
    with e.loop_in(e.current, 0, k_size) as (k, _):
        if isinstance(op, GemmOp):
            a_val = e.at(a, [k, i] if op.transA else [i, k])
        elif a.type.rank == 1:
            a_val = e.at(a, [k])
        else:
            a_val = e.at(a, broadcast_index(e, batch, a.type.shape[:-2]) + [i, k])
        b_base = e.linearize(broadcast_index(e, batch, b_shape[:-2]) + [k, e.index(0)], b_shape)
        with e.loop_in(e.current, 0, n_size) as (j, _):
            _accumulate(e, row, j, e.mul(a_val, e.at_buffer(b, e.iadd(b_base, j))))
    if isinstance(op, GemmOp) and (op.alpha != 1.0 or (op.c is not None and op.beta != 0.0)):
        with e.loop_in(e.current, 0, n_size) as (j, _):
            acc = e.load_mutable(row, j)
            if op.alpha != 1.0:
                acc = e.mul(acc, e.const(op.alpha, dtype))
            if op.c is not None and op.beta != 0.0:
                c = broadcast_at(e, op.c, [i, j])
                acc = e.add(acc, c if op.beta == 1.0 else e.mul(c, e.const(op.beta, dtype)))
            e.store(acc, row, j)


def row_schedule(op: Operation, buffers: dict, vector_width: int = 1) -> Callable | None:
    """The row schedule for a compute op whose operands (those read by rows) are buffers, or None. Depthwise
    convs and poolings have rows in vector registers where the target has vectors (``window_rows``)."""
    vectors = vector_width > 1
    if isinstance(op, ConvOp) and op.input.type.rank in (3, 4) and id(op.input) in buffers:
        return depthwise_row if vectors and is_depthwise(op) else _conv_row
    if vectors and is_2d_max_pool(op) and id(op.input) in buffers:
        return max_pool_row
    if vectors and is_blocked_pool(op) and id(op.input) in buffers:
        return blocked_pool_row
    if vectors and is_blocked_depthwise(op) and id(op.input) in buffers and id(op.weight) in buffers:
        return blocked_depthwise_row
    if isinstance(op, MatMulOp) and op.b.type.rank >= 2 and id(op.b) in buffers:
        return _matmul_row
    if isinstance(op, GemmOp) and not op.transB and id(op.b) in buffers:
        return _matmul_row
    return None
