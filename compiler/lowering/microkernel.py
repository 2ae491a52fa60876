"""Register-blocked GEMM micro-kernels for the loop dialect.

``C[r, j] = init(r) + sum_k A(r, k) * B[k, j]`` for a block of rows (``k``
may be a nest of loops, as the (channel, kernel row, kernel column) of a
convolution). For
each tile of columns, groups of ``micro`` rows run the micro-kernel over the
whole depth while that panel of B stays in cache: each step of ``k`` loads
``tile`` vectors of the contiguous row ``k`` of B and broadcasts one element
of A per row, and ``micro x tile`` vector accumulators (held in registers
once LLVM promotes their stack slots) take the fused multiply-adds. With 6
rows and 4 vectors that is 24 accumulators, 4 B vectors and a broadcast: 29
of AVX-512's 32 registers, and one load per 6 FMAs. Columns left over past
the last full tile take one shorter tile whose last vector's loads and
stores are masked to the columns that exist.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable

from fusecc.dialects import loop, vector
from fusecc.ir.core import Value
from fusecc.ir.types import MemRefType, VectorType

from .emitter import Emitter

#: vectors of B per tile, by rows of A per tile (keeps the tile within 32 vector registers)
TILE_VECTORS = {1: 4, 2: 4, 3: 4, 4: 4, 6: 4, 8: 3}


@contextmanager
def _depth_loops(e: Emitter, extents: list[int]):
    """Nested loops over the contraction; yields their induction variables, outermost first."""
    with ExitStack() as stack:
        ivs = []
        for extent in extents:
            iv, _ = stack.enter_context(e.loop_in(e.current, 0, extent))
            ivs.append(iv)
        yield ivs


def pick_rows(count: int, candidates=(6, 4, 3, 2, 1)) -> int:
    """The largest micro-kernel height dividing ``count``."""
    return next(r for r in candidates if count % r == 0)


def pick_block(count: int, micro: int, row_elements: int, limit: int) -> int:
    """Rows per block: a multiple of ``micro`` dividing ``count``, as many as fit ``limit`` elements."""
    best = micro
    for rows in range(micro, count + 1, micro):
        if count % rows == 0 and rows * row_elements <= limit:
            best = rows
    return best


@dataclass
class Gemm:
    """One block of a GEMM: what the micro-kernel needs to know about its operands."""

    rows: int                                    # rows of A (and of the block result)
    micro: int                                   # rows per micro-kernel (divides rows)
    depth: list[int]                             # K, as nested loop extents (e.g. [Cin, KH, KW])
    columns: int                                 # N
    a: Callable[[Emitter, Value, list], Value]   # A(r, ks) as a scalar
    b: Value                                     # buffer holding B, rows contiguous
    b_row: Callable[[Emitter, list], Value]      # linear index of B[ks, 0]
    init: Callable[[Emitter, Value], Value]      # initial value of row r
    out_row: Callable[[Emitter, Value], Value] | None = None  # linear index of C[r, 0]; default r * N


def emit_gemm(e: Emitter, gemm: Gemm, out: Value, width: int) -> None:
    """Write the block ``C[rr, j]`` to ``out[rr * columns + j]`` at the current scope."""
    vtype = VectorType((width,), out.type.dtype)
    tile = TILE_VECTORS.get(gemm.micro, 2)
    step = tile * width
    full = gemm.columns // step * step
    if full:
        with e.loop_in(e.current, 0, full, step=step) as (j0, _):
            with e.loop_in(e.current, 0, gemm.rows, step=gemm.micro) as (r0, _):
                _tile(e, gemm, out, r0, j0, tile, width, vtype)
    rest = gemm.columns - full
    if rest:
        vectors = -(-rest // width)
        with e.loop_in(e.current, 0, gemm.rows, step=gemm.micro) as (r0, _):
            _tile(e, gemm, out, r0, e.index(full), vectors, width, vtype, lanes=rest - (vectors - 1) * width)


def _tile(e: Emitter, gemm: Gemm, out: Value, r0: Value, j0: Value, tile: int, width: int,
          vtype: VectorType, lanes: int = 0) -> None:
    """Rows [r0, r0 + micro) x ``tile`` vectors from column j0: accumulators over the whole depth.

    ``lanes`` limits the last vector to its first lanes: the row's last columns.
    """
    zero = e.index(0)
    rows = [e.iadd(r0, e.index(rr)) for rr in range(gemm.micro)]
    accs = [[e.emit(loop.AllocaOp, [], MemRefType((width,), vtype.dtype), scope=e.alloca_scope, pure=False)
             for _ in range(tile)] for _ in rows]
    for row, slots in zip(rows, accs):
        start = e.emit(vector.BroadcastOp, [gemm.init(e, row)], vtype)
        for slot in slots:
            e.insert(vector.StoreOp.create([start, slot, zero], []))
    masks = [{"lanes": lanes} if lanes and v == tile - 1 else {} for v in range(tile)]
    with _depth_loops(e, gemm.depth) as ks:
        b_row = gemm.b_row(e, ks)
        bs = [e.emit(vector.LoadOp, [gemm.b, e.iadd(b_row, e.iadd(j0, e.index(v * width)))], vtype, **masks[v])
              for v in range(tile)]
        for row, slots in zip(rows, accs):
            a = e.emit(vector.BroadcastOp, [gemm.a(e, row, ks)], vtype)
            for v, slot in enumerate(slots):
                old = e.emit(vector.LoadOp, [slot, zero], vtype, scope=e.current, pure=False)
                e.insert(vector.StoreOp.create([e.emit(vector.FMAOp, [a, bs[v], old], vtype), slot, zero], []))
    for row, slots in zip(rows, accs):
        for v, slot in enumerate(slots):
            done = e.emit(vector.LoadOp, [slot, zero], vtype, scope=e.current, pure=False)
            base = gemm.out_row(e, row) if gemm.out_row else e.imul(row, e.index(gemm.columns))
            target = e.iadd(base, e.iadd(j0, e.index(v * width)))
            e.insert(vector.StoreOp.create([done, out, target], [], masks[v]))
