"""Block schedules: compute ops whose result rows are computed a block at a time by a micro-kernel.

A schedule says how many consecutive rows of the region's loop nest one
block covers and how to fill a block buffer with the op's result for those
rows; the region's epilogue then reads the buffer row by row. MatMul, Gemm
(B not transposed) and 1x1 stride-1 convolutions are GEMMs whose B rows are
contiguous, so they run on the register-blocked micro-kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from fusecc.ir.core import Operation, Value

from .emitter import Emitter
from .microkernel import Gemm, emit_gemm, pick_block, pick_rows

#: largest block buffer, in elements (it lives on the kernel's stack)
BLOCK_LIMIT = 1 << 15


@dataclass
class BlockPlan:
    op: Operation
    rows: int                                           # rows of the loop nest per block
    fill: Callable[[Emitter, Value, Value, int], None]  # (emitter, block buffer, block index, vector width)


def _matmul_plan(op: Operation, buffers: dict, columns: int) -> BlockPlan | None:
    a, b = op.operands
    if a.type.rank < 2 or b.type.rank < 2 or id(b) not in buffers:
        return None
    out_shape = op.results[0].type.shape
    m, k_size, n = a.type.shape[-2], a.type.shape[-1], b.type.shape[-1]
    micro = pick_rows(m)
    rows = pick_block(m, micro, n, BLOCK_LIMIT)
    batch_shape = out_shape[:-2]

    def fill(e: Emitter, block: Value, index: Value, width: int) -> None:
        first = e.imul(index, e.index(rows))
        batch = e.delinearize(e.idiv(first, e.index(m)), batch_shape) if batch_shape else []
        i0 = e.irem(first, e.index(m))
        a_batch = _broadcast(e, batch, a.type.shape[:-2])
        b_batch = _broadcast(e, batch, b.type.shape[:-2])
        b_base = e.linearize(b_batch + [e.index(0), e.index(0)], b.type.shape)
        gemm = Gemm(rows, micro, k_size, n,
                    a=lambda em, r, k: em.at(a, a_batch + [em.iadd(i0, r), k]),
                    b=buffers[id(b)], b_row=lambda em, k: em.iadd(b_base, em.imul(k, em.index(n))),
                    init=lambda em, r: em.const(0.0, a.type.dtype))
        emit_gemm(e, gemm, block, width)

    return BlockPlan(op, rows, fill)


def _gemm_plan(op: Operation, buffers: dict, columns: int) -> BlockPlan | None:
    a, b = op.operands[:2]
    if op.transB or id(b) not in buffers:
        return None
    m, n = op.results[0].type.shape
    k_size = a.type.shape[0] if op.transA else a.type.shape[1]
    micro = pick_rows(m)
    rows = pick_block(m, micro, n, BLOCK_LIMIT)
    dtype = a.type.dtype

    def fill(e: Emitter, block: Value, index: Value, width: int) -> None:
        i0 = e.imul(index, e.index(rows))
        gemm = Gemm(rows, micro, k_size, n,
                    a=lambda em, r, k: em.at(a, [k, em.iadd(i0, r)] if op.transA else [em.iadd(i0, r), k]),
                    b=buffers[id(b)], b_row=lambda em, k: em.imul(k, em.index(n)),
                    init=lambda em, r: em.const(0.0, dtype))
        emit_gemm(e, gemm, block, width)
        if op.alpha == 1.0 and (len(op.operands) == 2 or op.beta == 0.0):
            return
        c = op.operands[2] if len(op.operands) == 3 else None
        with e.loop_in(e.current, 0, rows) as (r, _):
            with e.loop_in(e.current, 0, n) as (j, _):
                slot = e.iadd(e.imul(r, e.index(n)), j)
                acc = e.load_mutable(block, slot)
                if op.alpha != 1.0:
                    acc = e.mul(acc, e.const(op.alpha, dtype))
                if c is not None and op.beta != 0.0:
                    c_value = e.at(c, _broadcast(e, [e.iadd(i0, r), j], c.type.shape))
                    acc = e.add(acc, c_value if op.beta == 1.0 else e.mul(c_value, e.const(op.beta, dtype)))
                e.store(acc, block, slot)

    return BlockPlan(op, rows, fill)


def _pointwise_conv_plan(op: Operation, buffers: dict, columns: int) -> BlockPlan | None:
    """A 1x1, stride-1, unpadded 2-D conv: per image, W[Cout, Cin] @ X[Cin, H*W]."""
    x, w = op.operands[:2]
    if x.type.rank != 4 or list(op.kernel_shape) != [1, 1] or id(x) not in buffers:
        return None
    strides, pads, _ = op.window()
    if any(s != 1 for s in strides) or any(pads):
        return None
    n_in, c_in, height, width_in = x.type.shape
    c_out = w.type.shape[0]
    c_in_group, c_out_group = w.type.shape[1], c_out // op.group
    plane = height * width_in
    micro = pick_rows(c_out_group)
    rows = pick_block(c_out_group, micro, plane, BLOCK_LIMIT)
    bias = op.operands[2] if len(op.operands) == 3 else None

    def fill(e: Emitter, block: Value, index: Value, width: int) -> None:
        first = e.imul(index, e.index(rows))  # = image * c_out + first output channel
        image, co0 = e.idiv(first, e.index(c_out)), e.irem(first, e.index(c_out))
        group = e.idiv(co0, e.index(c_out_group))
        x_base = e.imul(e.iadd(e.imul(image, e.index(c_in)), e.imul(group, e.index(c_in_group))), e.index(plane))
        zero = e.index(0)
        gemm = Gemm(rows, micro, c_in_group, plane,
                    a=lambda em, r, k: em.at(w, [em.iadd(co0, r), k, zero, zero]),
                    b=buffers[id(x)], b_row=lambda em, k: em.iadd(x_base, em.imul(k, em.index(plane))),
                    init=lambda em, r: em.at(bias, [em.iadd(co0, r)]) if bias is not None
                    else em.const(0.0, x.type.dtype))
        emit_gemm(e, gemm, block, width)

    return BlockPlan(op, rows * height, fill)


_PLANS = {"tensor.matmul": _matmul_plan, "tensor.gemm": _gemm_plan, "tensor.conv": _pointwise_conv_plan}


def _broadcast(e: Emitter, idx: list[Value], shape: tuple) -> list[Value]:
    offset = len(idx) - len(shape)
    return [e.index(0) if d == 1 else idx[offset + i] for i, d in enumerate(shape)]


def block_plan(members: list[Operation], shape: tuple, buffers: dict) -> BlockPlan | None:
    """The block schedule of the region's compute op producing the nest's shape, if there is one."""
    candidates = [op for op in members if op.name in _PLANS
                  and tuple(op.results[0].type.shape) == tuple(shape) and op.operands[0].type.dtype.is_float]
    if len(candidates) != 1 or not shape:
        return None
    plan = _PLANS[candidates[0].name](candidates[0], buffers, shape[-1])
    if plan is None or plan.rows * shape[-1] > BLOCK_LIMIT or math.prod(shape[:-1]) % plan.rows:
        return None
    return plan
