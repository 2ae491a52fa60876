"""Depthwise 2-D convolutions and max pooling a row at a time in vector registers.

Neither has a depth to run a GEMM micro-kernel over: each output element combines only its window's
``KH x KW`` taps of one channel. Row ``out[n, c, oh, :]`` is computed here in chunks of up to
``WINDOW_VECTORS`` vectors of output columns: the chunk's accumulators stay in registers while every tap
combines them with a vector of input columns (every ``stride``-th input element for a strided window) -- a
broadcast weight times it for a depthwise conv, a maximum for max pooling -- and each output element is
stored once. Rows of the window above or below the input are skipped by the bounds of the loop over the
window's rows; the few output columns whose window crosses the left or right edge run tap by tap, and only
their valid taps.

A pooling in the blocked channel layout ([N, C/B, H, W, B], ``channel_block``) and an unpadded depthwise conv
there (``tensor.depthwise_conv_blocked``) have a block of channels as their row: one vector, each tap a vector
load of the input pixel's block (times a vector of the block's weights at that tap, for the conv); a pooling's
window rows and columns bounded to those inside the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from fusecc.dialects import loop, vector
from fusecc.dialects.tensor import AveragePoolOp, BlockedDepthwiseConvOp, ConvOp, MaxPoolOp
from fusecc.ir.core import Operation, Value
from fusecc.ir.types import DType, MemRefType, VectorType

from ..emitter import Emitter

#: most vectors of output columns a row keeps in registers at once (with a broadcast weight and an input
#: vector, within the 16 registers of AVX2)
WINDOW_VECTORS = 6


def is_depthwise(op: Operation) -> bool:
    """Whether ``op`` is a 2-D float32 conv whose every group reads a single input channel."""
    return isinstance(op, ConvOp) and _is_2d_f32(op) and op.group > 1 and op.weight.type.shape[1] == 1


def is_2d_max_pool(op: Operation) -> bool:
    """Whether ``op`` is a float32 max pooling over two spatial axes."""
    return type(op) is MaxPoolOp and _is_2d_f32(op)  # not MaxPoolIndicesOp, which also gives indices


def is_blocked_pool(op: Operation) -> bool:
    """Whether ``op`` is a float32 max or average pooling over two spatial axes of the blocked layout."""
    return type(op) in (MaxPoolOp, AveragePoolOp) and op.input.type.rank == 5 and op.channel_block > 1 \
        and op.input.type.dtype == DType.F32


def is_blocked_depthwise(op: Operation) -> bool:
    """Whether ``op`` is an unpadded float32 depthwise conv in the blocked layout (``blocked-convs`` pads its
    input instead)."""
    return isinstance(op, BlockedDepthwiseConvOp) and op.input.type.dtype == DType.F32 and not any(op.window()[1])


def _is_2d_f32(op: Operation) -> bool:
    return op.input.type.rank == 4 and op.input.type.dtype == DType.F32


@dataclass
class _Window:
    """What the columns of one output row share: the op, the input channel, the window rows inside the
    input ([first, stop)), the linear index of the input row under window row kh, the value a row starts
    from, and how a tap combines into it (``combine(e, acc, tap, kh, kw)``, for scalars and vectors)."""

    op: Operation
    channel: Value
    rows: tuple[Value, Value]
    input_row: Callable[[Value], Value]
    initial: Value
    combine: Callable[[Emitter, Value, Value, Value, int], Value]
    #: what a column whose window holds no input element gives (its taps all outside the input)
    empty: Value

    def column(self, out_column: int, kw: int) -> int:
        """The input column tap ``kw`` of output column ``out_column`` reads (outside the input near edges)."""
        (_, sw), pads, (_, dw) = self.op.window()
        return out_column * sw + kw * dw - pads[1]


def depthwise_row(e: Emitter, op: Operation, row: Value, outer: list[Value]) -> None:
    """Fill ``row`` with ``out[n, c, oh, :]`` of the depthwise conv ``op`` (``outer`` is ``[n, c, oh]``)."""
    w = op.weight
    c = outer[1]
    multiplier = w.type.shape[0] // op.group  # output channels per input channel
    bias = e.at(op.bias, [c]) if op.bias is not None else e.const(0.0, DType.F32)

    def combine(em: Emitter, acc: Value, tap: Value, kh: Value, kw: int) -> Value:
        weight = em.at(w, [c, em.index(0), kh, em.index(kw)])
        if isinstance(tap.type, VectorType):
            return em.emit(vector.FMAOp, [em.emit(vector.BroadcastOp, [weight], tap.type), tap, acc], tap.type)
        return em.add(acc, em.mul(weight, tap))

    channel = e.idiv(c, e.index(multiplier)) if multiplier > 1 else c
    _fill_row(e, op, row, outer, channel, bias, combine, bias)


def max_pool_row(e: Emitter, op: Operation, row: Value, outer: list[Value]) -> None:
    """Fill ``row`` with ``out[n, c, oh, :]`` of the max pooling ``op``; a window holding no input element
    gives float32's lowest finite value (see ``MaxPoolOp``)."""
    def combine(em: Emitter, acc: Value, tap: Value, kh: Value, kw: int) -> Value:
        if isinstance(tap.type, VectorType):
            return em.emit(vector.MaxOp, [acc, tap], tap.type)
        return em.max(acc, tap)

    lowest = e.const(float(np.finfo(np.float32).min), DType.F32)
    _fill_row(e, op, row, outer, outer[1], e.const(-np.inf, DType.F32), combine, lowest)


def _fill_row(e: Emitter, op: Operation, row: Value, outer: list[Value], channel: Value, initial: Value,
              combine: Callable, empty: Value) -> None:
    x = op.input
    width = e.vector_width
    strides, pads, dilations = op.window()
    (sh, sw), (dh, dw), (ph, pw) = strides, dilations, pads[:2]
    _, _, height, in_width = x.type.shape
    kh_size, kw_size = op.kernel_shape
    out_width = op.results[0].type.shape[-1]
    n, _, oh = outer
    rows = _window_rows(e, oh, sh, dh, ph, height, kh_size)
    # a row whose window rows all lie outside the input starts from (and keeps) the empty value
    initial = e.select(e.cmp("eq", rows[0], rows[1]), empty, initial)
    window = _Window(op, channel, rows,
                     lambda kh: e.linearize([n, channel, e.isub(e.iadd(e.imul(oh, e.index(sh)),
                                                                       e.imul(kh, e.index(dh))), e.index(ph)),
                                             e.index(0)], x.type.shape),
                     initial, combine, empty)
    # output columns whose whole window lies inside the input
    first = min(out_width, -(-pw // sw))
    last = max(first, min(out_width, (in_width - 1 - (kw_size - 1) * dw + pw) // sw + 1))
    chunk = WINDOW_VECTORS * width
    for start in range(first, last, chunk):
        _vector_chunk(e, window, row, start, min(last, start + chunk), VectorType((width,), x.type.dtype))
    for column in [*range(first), *range(last, out_width)]:
        _edge_column(e, window, row, column)


def _window_rows(e: Emitter, oh: Value, sh: int, dh: int, ph: int, height: int, kh_size: int) -> tuple[Value, Value]:
    """[first, stop) of the window rows ``kh`` whose input row ``oh * sh + kh * dh - ph`` is inside the input."""
    top = e.isub(e.index(ph), e.imul(oh, e.index(sh)))  # kh * dh must reach at least this
    first = e.idiv(e.iadd(e.imax(top, e.index(0)), e.index(dh - 1)), e.index(dh))
    room = e.iadd(top, e.index(height - 1))  # kh * dh may reach at most this
    stop = e.select(e.cmp("lt", room, e.index(0)), e.index(0),
                    e.imin(e.iadd(e.idiv(e.imax(room, e.index(0)), e.index(dh)), e.index(1)), e.index(kh_size)))
    return first, e.imax(stop, first)


def _vector_chunk(e: Emitter, window: _Window, row: Value, start: int, stop: int, vtype: VectorType) -> None:
    """Output columns [start, stop) (every window inside the input's columns) in vector accumulators."""
    source = e.buffers[id(window.op.input)]
    width = vtype.shape[0]
    zero = e.index(0)
    vectors = -(-(stop - start) // width)
    masks = [{"lanes": stop - start - v * width} if (v + 1) * width > stop - start else {} for v in range(vectors)]
    (_, sw), _, _ = window.op.window()
    strided = {"stride": sw} if sw > 1 else {}
    accs = [e.emit(loop.AllocaOp, [], MemRefType((width,), vtype.dtype), scope=e.alloca_scope, pure=False)
            for _ in range(vectors)]
    initial = e.emit(vector.BroadcastOp, [window.initial], vtype)
    for acc in accs:
        e.insert(vector.StoreOp.create([initial, acc, zero], []))
    with e.loop_in(e.current, *window.rows) as (kh, _):
        base = window.input_row(kh)
        for kw in range(window.op.kernel_shape[1]):
            for v, acc in enumerate(accs):
                at = e.iadd(base, e.index(window.column(start + v * width, kw)))
                tap = e.emit(vector.LoadOp, [source, at], vtype, **masks[v], **strided)
                old = e.emit(vector.LoadOp, [acc, zero], vtype, scope=e.current, pure=False)
                e.insert(vector.StoreOp.create([window.combine(e, old, tap, kh, kw), acc, zero], []))
    for v, acc in enumerate(accs):
        done = e.emit(vector.LoadOp, [acc, zero], vtype, scope=e.current, pure=False)
        e.insert(vector.StoreOp.create([done, row, e.index(start + v * width)], [], masks[v]))


def _edge_column(e: Emitter, window: _Window, row: Value, column: int) -> None:
    """Output column ``column``, whose window crosses the input's left or right edge: its taps inside only."""
    x = window.op.input
    taps = [kw for kw in range(window.op.kernel_shape[1]) if 0 <= window.column(column, kw) < x.type.shape[-1]]
    target = e.index(column)
    if not taps:
        e.store(window.empty, row, target)
        return
    e.store(window.initial, row, target)
    with e.loop_in(e.current, *window.rows) as (kh, _):
        base = window.input_row(kh)
        total = e.load_mutable(row, target)
        for kw in taps:
            total = window.combine(e, total, e.at_buffer(x, e.iadd(base, e.index(window.column(column, kw)))), kh, kw)
        e.store(total, row, target)


def blocked_pool_row(e: Emitter, op: Operation, row: Value, outer: list[Value]) -> None:
    """Fill ``row`` with ``out[n, cb, oh, ow, :]`` of the blocked pooling ``op`` (``outer`` is its first four
    indices) in one vector: the maximum, or the sum divided by the taps counted (see ``AveragePoolOp``)."""
    x = op.input
    n, cb, oh, ow = outer
    _, _, height, width, block = x.type.shape
    vtype = VectorType((block,), x.type.dtype)
    (sh, sw), pads, (dh, dw) = op.window()
    kh_size, kw_size = op.kernel_shape
    rows = _window_rows(e, oh, sh, dh, pads[0], height, kh_size)
    columns = _window_rows(e, ow, sw, dw, pads[1], width, kw_size)
    is_max = isinstance(op, MaxPoolOp)
    if is_max:  # an empty window gives float32's lowest finite value (see ``MaxPoolOp``)
        empty = e.logical("arith.ori", e.cmp("eq", rows[0], rows[1]), e.cmp("eq", columns[0], columns[1]))
        initial = e.select(empty, e.const(float(np.finfo(np.float32).min), DType.F32), e.const(-np.inf, DType.F32))
    else:
        initial = e.const(0.0, DType.F32)
    zero = e.index(0)
    acc = e.emit(loop.AllocaOp, [], MemRefType((block,), vtype.dtype), scope=e.alloca_scope, pure=False)
    e.insert(vector.StoreOp.create([e.emit(vector.BroadcastOp, [initial], vtype), acc, zero], []))
    with e.loop_in(e.current, *rows) as (kh, _):
        ih = e.isub(e.iadd(e.imul(oh, e.index(sh)), e.imul(kh, e.index(dh))), e.index(pads[0]))
        with e.loop_in(e.current, *columns) as (kw, _):
            iw = e.isub(e.iadd(e.imul(ow, e.index(sw)), e.imul(kw, e.index(dw))), e.index(pads[1]))
            tap = e.emit(vector.LoadOp, [e.buffers[id(x)], e.linearize([n, cb, ih, iw, zero], x.type.shape)], vtype)
            old = e.emit(vector.LoadOp, [acc, zero], vtype, scope=e.current, pure=False)
            combined = e.emit(vector.MaxOp if is_max else vector.AddOp, [old, tap], vtype)
            e.insert(vector.StoreOp.create([combined, acc, zero], []))
    result = e.emit(vector.LoadOp, [acc, zero], vtype, scope=e.current, pure=False)
    if not is_max:
        if op.count_include_pad:  # taps inside the padded input
            bottom, right = pads[2], pads[3]
            rows = _window_rows(e, oh, sh, dh, 0, height + pads[0] + bottom, kh_size)
            columns = _window_rows(e, ow, sw, dw, 0, width + pads[1] + right, kw_size)
        taps = e.imul(e.isub(rows[1], rows[0]), e.isub(columns[1], columns[0]))
        count = e.max(e.cast(taps, DType.F32), e.const(1.0, DType.F32))
        result = e.emit(vector.DivOp, [result, e.emit(vector.BroadcastOp, [count], vtype)], vtype)
    e.insert(vector.StoreOp.create([result, row, zero], []))


def blocked_depthwise_row(e: Emitter, op: Operation, row: Value, outer: list[Value]) -> None:
    """Fill ``row`` with ``out[n, cb, oh, ow, :]`` of the unpadded blocked depthwise conv ``op`` (``outer`` is
    its first four indices) in one vector: the taps unrolled, each a multiply-add of the input pixel's block
    (at a constant offset from the window's first pixel) and the weights' for that tap."""
    x, w = op.input, op.weight
    n, cb, oh, ow = outer
    _, _, _, width, block = x.type.shape
    vtype = VectorType((block,), x.type.dtype)
    (sh, sw), _, (dh, dw) = op.window()
    kh_size, kw_size = op.kernel_shape
    zero = e.index(0)
    corner = e.linearize([n, cb, e.imul(oh, e.index(sh)), e.imul(ow, e.index(sw)), zero], x.type.shape)
    weights = e.imul(cb, e.index(kh_size * kw_size * block))
    sums = []  # a sum per window row, added up at the end: chains of KW multiply-adds, not one of KH x KW
    for kh in range(kh_size):
        total = e.emit(vector.BroadcastOp, [e.const(0.0, DType.F32)], vtype)
        for kw in range(kw_size):
            tap = e.emit(vector.LoadOp, [e.buffers[id(x)],
                                         e.iadd(corner, e.index((kh * dh * width + kw * dw) * block))], vtype)
            weight = e.emit(vector.LoadOp, [e.buffers[id(w)], e.iadd(weights, e.index((kh * kw_size + kw) * block))],
                            vtype)
            total = e.emit(vector.FMAOp, [tap, weight, total], vtype)
        sums.append(total)
    while len(sums) > 1:
        sums = [e.emit(vector.AddOp, sums[i:i + 2], vtype) if i + 1 < len(sums) else sums[i]
                for i in range(0, len(sums), 2)]
    e.insert(vector.StoreOp.create([sums[0], row, zero], []))
