"""Depthwise 2-D convolutions a row at a time in vector registers.

A depthwise conv (a group per input channel, each reading that channel alone) has no depth to run a GEMM
micro-kernel over: each output element sums only its window's ``KH x KW`` taps of one channel. Its row
``out[n, c, oh, :]`` is computed here in chunks of up to ``DEPTHWISE_VECTORS`` vectors of output columns:
the chunk's accumulators stay in registers while every tap adds one broadcast weight times a vector of
input columns (every ``stride``-th input element for a strided conv), and each output element is stored
once. Rows of the window above or below the input are skipped by the bounds of the loop over the window's
rows; the few output columns whose window crosses the left or right edge run tap by tap, and only their
valid taps.
"""

from __future__ import annotations

from typing import Callable

from fusecc.dialects import loop, vector
from fusecc.ir.core import Operation, Value
from fusecc.ir.types import DType, MemRefType, VectorType

from .emitter import Emitter

#: most vectors of output columns a row keeps in registers at once (with a broadcast weight and an input
#: vector, within the 16 registers of AVX2)
DEPTHWISE_VECTORS = 6


def is_depthwise(op: Operation) -> bool:
    """Whether ``op`` is a 2-D float32 conv whose every group reads a single input channel."""
    if op.name != "tensor.conv" or op.operands[0].type.rank != 4 or op.operands[0].type.dtype != DType.F32:
        return False
    return op.group > 1 and op.operands[1].type.shape[1] == 1


def depthwise_row(e: Emitter, op: Operation, row: Value, outer: list[Value]) -> None:
    """Fill ``row`` with ``out[n, c, oh, :]`` of the depthwise conv ``op`` (``outer`` is ``[n, c, oh]``)."""
    x, w = op.operands[:2]
    width = e.vector_width
    strides, pads, dilations = op.window()
    (sh, sw), (dh, dw), (ph, pw) = strides, dilations, pads[:2]
    _, _, height, in_width = x.type.shape
    kh_size, kw_size = op.kernel_shape
    out_width = op.results[0].type.shape[-1]
    n, c, oh = outer
    multiplier = w.type.shape[0] // op.group  # output channels per input channel
    channel = e.idiv(c, e.index(multiplier)) if multiplier > 1 else c
    window = _Window(
        op, c, e.at(op.operands[2], [c]) if len(op.operands) == 3 else e.const(0.0, x.type.dtype),
        _window_rows(e, oh, sh, dh, ph, height, kh_size),
        lambda kh: e.linearize([n, channel, e.isub(e.iadd(e.imul(oh, e.index(sh)), e.imul(kh, e.index(dh))),
                                                   e.index(ph)), e.index(0)], x.type.shape))
    # output columns whose whole window lies inside the input
    first = min(out_width, -(-pw // sw))
    last = max(first, min(out_width, (in_width - 1 - (kw_size - 1) * dw + pw) // sw + 1))
    chunk = DEPTHWISE_VECTORS * width
    for start in range(first, last, chunk):
        _vector_chunk(e, window, row, start, min(last, start + chunk), VectorType((width,), x.type.dtype))
    for column in [*range(first), *range(last, out_width)]:
        _edge_column(e, window, row, column)


class _Window:
    """What every column of one output row shares: the conv, its output channel, the bias, the window rows
    inside the input (``rows``: [first, stop)) and the linear index of the input row under window row kh."""

    def __init__(self, op: Operation, channel: Value, bias: Value, rows: tuple[Value, Value],
                 input_row: Callable[[Value], Value]):
        self.op, self.channel, self.bias, self.rows, self.input_row = op, channel, bias, rows, input_row
        _, pads, (_, self.dw) = op.window()
        self.sw, self.pw = op.window()[0][1], pads[1]

    def column(self, out_column: int, kw: int) -> int:
        """The input column tap ``kw`` of output column ``out_column`` reads (outside the input near edges)."""
        return out_column * self.sw + kw * self.dw - self.pw

    def weight(self, e: Emitter, kh: Value, kw: int) -> Value:
        return e.at(self.op.operands[1], [self.channel, e.index(0), kh, e.index(kw)])


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
    source = e.buffers[id(window.op.operands[0])]
    width = vtype.shape[0]
    zero = e.index(0)
    vectors = -(-(stop - start) // width)
    masks = [{"lanes": stop - start - v * width} if (v + 1) * width > stop - start else {} for v in range(vectors)]
    strided = {"stride": window.sw} if window.sw > 1 else {}
    accs = [e.emit(loop.AllocaOp, [], MemRefType((width,), vtype.dtype), scope=e.alloca_scope, pure=False)
            for _ in range(vectors)]
    initial = e.emit(vector.BroadcastOp, [window.bias], vtype)
    for acc in accs:
        e.insert(vector.StoreOp.create([initial, acc, zero], []))
    with e.loop_in(e.current, *window.rows) as (kh, _):
        base = window.input_row(kh)
        for kw in range(window.op.kernel_shape[1]):
            weight = e.emit(vector.BroadcastOp, [window.weight(e, kh, kw)], vtype)
            for v, acc in enumerate(accs):
                at = e.iadd(base, e.index(window.column(start + v * width, kw)))
                inputs = e.emit(vector.LoadOp, [source, at], vtype, **masks[v], **strided)
                old = e.emit(vector.LoadOp, [acc, zero], vtype, scope=e.current, pure=False)
                e.insert(vector.StoreOp.create([e.emit(vector.FMAOp, [weight, inputs, old], vtype), acc, zero], []))
    for v, acc in enumerate(accs):
        done = e.emit(vector.LoadOp, [acc, zero], vtype, scope=e.current, pure=False)
        e.insert(vector.StoreOp.create([done, row, e.index(start + v * width)], [], masks[v]))


def _edge_column(e: Emitter, window: _Window, row: Value, column: int) -> None:
    """Output column ``column``, whose window crosses the input's left or right edge: its taps inside only."""
    x = window.op.operands[0]
    taps = [kw for kw in range(window.op.kernel_shape[1]) if 0 <= window.column(column, kw) < x.type.shape[-1]]
    target = e.index(column)
    e.store(window.bias, row, target)
    with e.loop_in(e.current, *window.rows) as (kh, _):
        base = window.input_row(kh)
        total = e.load_mutable(row, target)
        for kw in taps:
            tap = e.at_buffer(x, e.iadd(base, e.index(window.column(column, kw))))
            total = e.add(total, e.mul(window.weight(e, kh, kw), tap))
        e.store(total, row, target)
