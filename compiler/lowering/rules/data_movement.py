"""Lowering rules of constants and data movement: the output index remapped to an input index."""

from __future__ import annotations

from fusecc.dialects.tensor import (ConcatOp, ConstantOfShapeOp, ConstantOp, DepthToSpaceOp, ExpandOp, GatherElementsOp,
                                    GatherNDOp, GatherOp, OneHotOp, PadOp, RangeOp, ReshapeOp, SliceOp, SpaceToDepthOp,
                                    SplitOp, TileOp, TransposeOp, TriluOp, normalize_axis)
from fusecc.ir.core import Value
from fusecc.ir.types import DType

from ..emitter import Emitter
from .common import broadcast_at, const_like, wrap_index
from .registry import lowers


@lowers(ConstantOp)
def _constant(e, op, result_index, idx):
    data = op.value.value
    flat = data.reshape(-1)
    if flat.size and (flat == flat[0]).all():
        return e.const(flat[0].item(), op.value.type.dtype)
    raise NotImplementedError("non-splat constants are region inputs, not inlined")


@lowers(ConstantOfShapeOp)
def _constant_of_shape(e, op, result_index, idx):
    return e.const(op.value.value.reshape(-1)[0].item(), op.value.type.dtype)


@lowers(RangeOp)
def _range(e, op, result_index, idx):
    position = e.cast(idx[0], DType.F64)
    value = e.add(e.const(op.start, DType.F64), e.mul(e.const(op.delta, DType.F64), position))
    return e.cast(value, op.dtype)


@lowers(ReshapeOp)
def _reshape(e, op, result_index, idx):
    source = op.input
    return e.at(source, reshape_index(e, idx, tuple(op.shape), tuple(source.type.shape)))


def reshape_index(e: Emitter, idx: list[Value], out_shape: tuple, in_shape: tuple) -> list[Value]:
    """The input index of output element ``idx`` of a reshape, group by group of dims whose sizes multiply
    to the same: a dim split into several (heads out of a hidden dim) is read at their linear index, with no
    division; only dims merged into one (heads back into it) divide it."""
    if 0 in out_shape or 0 in in_shape:
        return e.delinearize(e.linearize(idx, out_shape), in_shape)
    result: list[Value] = []
    i = j = 0
    while i < len(in_shape) or j < len(out_shape):
        ins, outs = [i] if i < len(in_shape) else [], [j] if j < len(out_shape) else []
        in_size, out_size = (in_shape[i] if ins else 1), (out_shape[j] if outs else 1)
        i, j = i + 1, j + 1
        while in_size != out_size:
            if in_size < out_size:
                ins.append(i)
                in_size, i = in_size * in_shape[i], i + 1
            else:
                outs.append(j)
                out_size, j = out_size * out_shape[j], j + 1
        if not ins:
            continue
        at = [idx[k] for k in outs]
        linear = at[0] if len(at) == 1 else e.linearize(at, tuple(out_shape[k] for k in outs))
        result += [linear] if len(ins) == 1 else e.delinearize(linear, tuple(in_shape[k] for k in ins))
    return result


@lowers(TransposeOp)
def _transpose(e, op, result_index, idx):
    in_idx = [None] * len(idx)
    for out_axis, in_axis in enumerate(op.perm):
        in_idx[in_axis] = idx[out_axis]
    return e.at(op.input, in_idx)


@lowers(ExpandOp)
def _expand(e, op, result_index, idx):
    return broadcast_at(e, op.input, idx)


@lowers(TileOp)
def _tile(e, op, result_index, idx):
    shape = op.input.type.shape
    return e.at(op.input, [e.irem(i, e.index(d)) for i, d in zip(idx, shape)])


@lowers(SliceOp)
def _slice(e, op, result_index, idx):
    in_idx = [e.iadd(e.index(start), e.imul(i, e.index(step))) for i, (start, step, _) in zip(idx, op.ranges())]
    return e.at(op.input, in_idx)


@lowers(SplitOp)
def _split(e, op, result_index, idx):
    axis = normalize_axis(op, op.axis, len(idx))
    offset = sum(op.split[:result_index])
    in_idx = list(idx)
    in_idx[axis] = e.iadd(idx[axis], e.index(offset))
    return e.at(op.input, in_idx)


@lowers(ConcatOp)
def _concat(e, op, result_index, idx):
    axis = normalize_axis(op, op.axis, len(idx))
    position = idx[axis]
    result, offset = None, 0
    pieces = []
    for value in op.operands:
        size = value.type.shape[axis]
        local = e.imin(e.imax(e.isub(position, e.index(offset)), e.index(0)), e.index(size - 1))
        in_idx = list(idx)
        in_idx[axis] = local
        pieces.append((offset + size, e.at(value, in_idx)))
        offset += size
    result = pieces[-1][1]
    for end, piece in reversed(pieces[:-1]):
        result = e.select(e.cmp("lt", position, e.index(end)), piece, result)
    return result


@lowers(GatherOp)
def _gather(e, op, result_index, idx):
    data, indices = op.operands
    axis = normalize_axis(op, op.axis, data.type.rank)
    q = indices.type.rank
    raw = e.cast(e.at(indices, idx[axis:axis + q]), DType.INDEX)
    size = e.index(data.type.shape[axis])
    wrapped = e.select(e.cmp("lt", raw, e.index(0)), e.iadd(raw, size), raw)
    safe = e.imin(e.imax(wrapped, e.index(0)), e.index(data.type.shape[axis] - 1))
    return e.at(data, idx[:axis] + [safe] + idx[axis + q:])


@lowers(PadOp)
def _pad(e, op, result_index, idx):
    x = op.input
    rank = x.type.rank
    in_idx, valid = [], None
    for axis, i in enumerate(idx):
        size = x.type.shape[axis]
        j = e.isub(i, e.index(op.pads[axis]))
        if op.mode == "constant":
            inside = e.logical("arith.andi", e.cmp("ge", j, e.index(0)), e.cmp("lt", j, e.index(size)))
            valid = inside if valid is None else e.logical("arith.andi", valid, inside)
            j = e.imin(e.imax(j, e.index(0)), e.index(size - 1))
        elif op.mode == "edge":
            j = e.imin(e.imax(j, e.index(0)), e.index(size - 1))
        elif op.mode == "reflect":
            period = e.index(max(2 * (size - 1), 1))
            m = e.irem(e.iadd(e.irem(j, period), period), period)
            j = e.select(e.cmp("lt", m, e.index(size)), m, e.isub(period, m))
        else:  # wrap
            j = e.irem(e.iadd(e.irem(j, e.index(size)), e.index(size)), e.index(size))
        in_idx.append(j)
    value = e.at(x, in_idx)
    if op.mode == "constant" and valid is not None and rank:
        return e.select(valid, value, e.const(op.value, x.type.dtype))
    return value


@lowers(DepthToSpaceOp)
def _depth_to_space(e, op, result_index, idx):
    n, c, h, w = idx
    b = op.blocksize
    out_c = op.results[0].type.shape[1]
    bh, bw = e.irem(h, e.index(b)), e.irem(w, e.index(b))
    ih, iw = e.idiv(h, e.index(b)), e.idiv(w, e.index(b))
    if op.mode == "DCR":
        ic = e.iadd(e.imul(e.iadd(e.imul(bh, e.index(b)), bw), e.index(out_c)), c)
    else:
        ic = e.iadd(e.imul(c, e.index(b * b)), e.iadd(e.imul(bh, e.index(b)), bw))
    return e.at(op.input, [n, ic, ih, iw])


@lowers(SpaceToDepthOp)
def _space_to_depth(e, op, result_index, idx):
    n, c, h, w = idx
    b = op.blocksize
    in_c = op.input.type.shape[1]
    if op.mode == "DCR":
        block, ic = e.idiv(c, e.index(in_c)), e.irem(c, e.index(in_c))
    else:
        block, ic = e.irem(c, e.index(b * b)), e.idiv(c, e.index(b * b))
    bh, bw = e.idiv(block, e.index(b)), e.irem(block, e.index(b))
    return e.at(op.input, [n, ic, e.iadd(e.imul(h, e.index(b)), bh), e.iadd(e.imul(w, e.index(b)), bw)])


@lowers(TriluOp)
def _trilu(e, op, result_index, idx):
    x = e.at(op.input, idx)
    row, col = idx[-2], idx[-1]
    diagonal = e.isub(col, row)
    keep = e.cmp("ge" if op.upper else "le", diagonal, e.index(op.k))
    return e.select(keep, x, const_like(e, x, 0))


@lowers(OneHotOp)
def _one_hot(e, op, result_index, idx):
    indices, values = op.operands
    axis = normalize_axis(op, op.axis, len(idx))
    raw = e.cast(e.at(indices, idx[:axis] + idx[axis + 1:]), DType.INDEX)
    depth = e.index(op.depth)
    wrapped = e.select(e.cmp("lt", raw, e.index(0)), e.iadd(raw, depth), raw)
    off, on = e.at(values, [e.index(0)]), e.at(values, [e.index(1)])
    return e.select(e.cmp("eq", wrapped, idx[axis]), on, off)


@lowers(GatherElementsOp)
def _gather_elements(e, op, result_index, idx):
    data, indices = op.operands
    axis = normalize_axis(op, op.axis, data.type.rank)
    in_idx = list(idx)
    in_idx[axis] = wrap_index(e, e.at(indices, idx), data.type.shape[axis])
    return e.at(data, in_idx)


@lowers(GatherNDOp)
def _gather_nd(e, op, result_index, idx):
    data, indices = op.operands
    b, q = op.batch_dims, indices.type.rank
    k = indices.type.shape[-1]
    positions = idx[:q - 1]
    picked = [wrap_index(e, e.at(indices, positions + [e.index(t)]), data.type.shape[b + t]) for t in range(k)]
    return e.at(data, idx[:b] + picked + idx[q - 1:])
