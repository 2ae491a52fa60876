"""Register-blocked GEMM micro-kernels for the loop dialect.

``C[r, j] = init(r) + sum_k A(r, k) * B[k, j]`` for a block of rows (``k``
may be a nest of loops, as the (channel, kernel row, kernel column) of a
convolution). For
each tile of columns, groups of ``micro`` rows run the micro-kernel over the
whole depth while that panel of B stays in cache: each step of ``k`` loads
``tile`` vectors of the contiguous row ``k`` of B and broadcasts one element
of A per row, and ``micro x tile`` vector accumulators (held in registers
once LLVM promotes their stack slots) take the fused multiply-adds. The tile
is as wide as the target's registers allow: with AVX-512's 32, 6 rows take 4
vectors (24 accumulators, 4 B vectors and a broadcast: 29 registers, one
load per 6 FMAs); with AVX2's 16, 6 rows take 2 (15 registers). A tile that
outgrew the registers would spill its accumulators to the stack at every
step of ``k``. Columns left over past the last full tile take one shorter
tile whose last vector's loads and stores are masked to the columns that exist.
"""

from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import Callable

from fusecc.dialects import loop, vector
from fusecc.host_memory import zeroed_array
from fusecc.ir.core import Value
from fusecc.ir.types import MemRefType, VectorType

from .emitter import Emitter

#: most vectors of B per tile: wider tiles gain nothing once loads are a sixth of the FMAs
MAX_TILE_VECTORS = 4


@dataclass(frozen=True)
class Simd:
    """The vector unit the micro-kernels are shaped for: float32 lanes per vector and vector registers."""

    width: int
    registers: int = 32

    def tile_vectors(self, rows: int) -> int:
        """Vectors of B per tile for ``rows`` rows of A: as many as keep the ``rows x vectors`` accumulators,
        the B vectors and A's broadcast within the registers."""
        return max(1, min(MAX_TILE_VECTORS, (self.registers - 1) // (rows + 1)))


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


def pick_rows_with_tail(count: int) -> int:
    """The micro-kernel height for ``count`` rows when the rows left over may run one at a time: the
    largest of 6, 4, 3 dividing ``count``, else 6 (197 rows: 32 groups of 6, then 5 single rows)."""
    rows = pick_rows(count)
    return 6 if rows < 3 and count > 6 else rows


def pick_block(count: int, micro: int, row_elements: int, limit: int) -> int:
    """Rows per block: a multiple of ``micro`` dividing ``count``, as many as fit ``limit`` elements; when
    ``micro`` does not divide ``count``, all of them where they fit (the rows left over run in the same pass
    over B), else as few blocks as fit, evened out to whole micro-tiles (the last one shorter), rather than
    a last block of the few rows left over, which would stream B once more and leave a thread idle."""
    if count % micro:
        fitting = max(micro, max(1, limit // row_elements) // micro * micro)
        if count <= fitting:
            return count
        per_block = -(-count // -(-count // fitting))  # as few blocks as fit, their rows shared out
        return -(-per_block // micro) * micro
    best = micro
    for rows in range(micro, count + 1, micro):
        if count % rows == 0 and rows * row_elements <= limit:
            best = rows
    return best


@dataclass
class Gemm:
    """One block of a GEMM: what the micro-kernel needs to know about its operands."""

    rows: int | Value                            # rows of A (and of the block result)
    micro: int                                   # rows per micro-kernel (rows left over run one at a time)
    depth: list[int]                             # K, as nested loop extents (e.g. [Cin, KH, KW])
    columns: int                                 # N
    a: Callable[[Emitter, Value, list], Value]   # A(r, ks) as a scalar
    b: Value                                     # buffer holding B, rows contiguous
    b_row: Callable[[Emitter, list], Value]      # linear index of B[ks, 0]
    init: Callable[[Emitter, Value], Value]      # initial value of row r
    out_row: Callable[[Emitter, Value], Value] | None = None  # linear index of C[r, 0]; default r * N
    #: B's tile of columns from j0 starts at ``b_row + j0 * b_strip_depth``: 1 when B's rows are contiguous
    #: rows of N, the depth K when B is packed in strips as wide as a tile (see ``pack_strips``)
    b_strip_depth: int = 1
    #: vectors of B per tile (0: as many as the registers hold)
    vectors: int = 0
    #: steps of the outermost depth loop per pass over the tiles (0: all of them in one pass); between
    #: passes the accumulators go through ``out``, so a block of B stays in cache for every row of the block
    depth_block: int = 0
    #: when nonzero (the block's most rows), A is copied once per pass over the depth into a scratch
    #: buffer that the tiles read: for an A that a prologue computes (a transpose, say), which each tile
    #: of columns would otherwise compute again, or one read across its rows (transA). Single depth loop.
    pack_a: int = 0
    #: whether A's rows are its contiguous axis in memory (transA): the copy of ``pack_a`` then reads A a
    #: depth step at a time across the rows, not a row at a time across the depth
    a_rows_contiguous: bool = False
    #: the columns [first, stop) of C this block computes (Values; a panel, see ``GemmSchedule.column_panels``),
    #: ``first`` a multiple of the tile's width; None: all ``columns``
    column_range: tuple[Value, Value] | None = None
    #: each tile's sliver of B (this pass's depth x the tile's columns) is copied to a contiguous scratch
    #: buffer before the block's rows read it: a B read in place has its rows N elements apart, which for
    #: a wide B map to few sets of the L1 cache and evict each other while the sliver is reused
    pack_b_tiles: bool = False
    #: offset of C's column ``j`` (a multiple of the vector width) from its row's start (``out_row``); default
    #: ``j``. A blocked conv's result holds each block of channels (one vector) a whole plane apart.
    out_column: Callable[[Emitter, Value], Value] | None = None

    def out_offset(self, e: Emitter, row: Value, column: Value) -> Value:
        """Where ``C[row, column]`` is stored (``column`` a multiple of the vector width)."""
        base = self.out_row(e, row) if self.out_row else e.imul(row, e.index(self.columns))
        return e.iadd(base, self.out_column(e, column) if self.out_column else column)


def pack_strips(b, columns: int):
    """A K x N matrix (numpy) as strips of ``columns`` columns, each K x ``columns`` contiguous, the last one
    zero-padded: the layout a micro-kernel whose tiles are ``columns`` wide reads sequentially."""
    depth, n = b.shape
    whole = n // columns
    packed = zeroed_array((-(-n // columns), depth, columns), b.dtype)
    packed[:whole] = b[:, :whole * columns].reshape(depth, whole, columns).transpose(1, 0, 2)
    if whole < len(packed):
        packed[whole, :, :n - whole * columns] = b[:, whole * columns:]
    return packed


def strip_offset(e: Emitter, index: list[Value], depth: int, columns: int) -> Value:
    """Offset of ``B[k, j]`` in the layout of ``pack_strips``: strip ``j // columns``, row ``k``, column ``j % columns``."""
    k, j = index
    strip = e.idiv(j, e.index(columns))
    return e.iadd(e.imul(strip, e.index(depth * columns)),
                  e.iadd(e.imul(k, e.index(columns)), e.irem(j, e.index(columns))))


def emit_gemm(e: Emitter, gemm: Gemm, out: Value, simd: Simd) -> None:
    """Write the block ``C[rr, j]`` to ``out[rr * columns + j]`` at the current scope."""
    width = simd.width
    vtype = VectorType((width,), out.type.dtype)
    tile = gemm.vectors or simd.tile_vectors(gemm.micro)
    step = tile * width
    full = gemm.columns // step * step
    rest = gemm.columns - full
    outer = gemm.depth[0]
    blocked = 0 < gemm.depth_block < outer
    if blocked:
        _fill_with_init(e, gemm, out, simd, vtype)
    with ExitStack() as stack:
        first = None
        if blocked:
            first, _ = stack.enter_context(e.loop_in(e.current, 0, outer, step=gemm.depth_block))
        if gemm.pack_a:
            gemm = _with_packed_a(e, gemm, first)
        start, stop = gemm.column_range or (0, full)
        if gemm.column_range:
            stop = e.imin(stop, e.index(full))
        if full:
            with e.loop_in(e.current, start, stop, step=step) as (j0, _):
                b, b_at = _tile_of_b(e, gemm, j0, tile, width, vtype, 0, first)
                for r0, micro in _row_groups(e, gemm):
                    _tile(e, gemm, out, r0, micro, j0, b, b_at, tile, width, vtype, first=first)
        if rest:
            with _in_range(e, gemm, full, step) as j0:
                vectors = -(-rest // width)
                lanes = rest - (vectors - 1) * width
                b, b_at = _tile_of_b(e, gemm, j0, vectors, width, vtype, lanes, first)
                for r0, micro in _row_groups(e, gemm):
                    _tile(e, gemm, out, r0, micro, j0, b, b_at, vectors, width, vtype, lanes=lanes, first=first)


@contextmanager
def _in_range(e: Emitter, gemm: Gemm, column: int, step: int):
    """Yields ``column`` as an index, the code emitted meanwhile running only where the block's columns hold it
    (always without a ``column_range``: a loop of one step or none, from ``column`` to at most its range's end)."""
    if gemm.column_range is None:
        yield e.index(column)
        return
    with e.loop_in(e.current, column, e.imax(e.index(column), gemm.column_range[1]), step=step) as (j0, _):
        yield j0


def _tile_of_b(e: Emitter, gemm: Gemm, j0: Value, vectors: int, width: int, vtype: VectorType, lanes: int,
               first: Value | None) -> tuple[Value, Callable[[Emitter, list], Value]]:
    """Where the tile of columns from ``j0`` reads B: the buffer, and the linear index of ``B[ks, j0]``.

    That is B itself, unless ``gemm.pack_b_tiles``: then this pass's sliver of the tile is first copied
    to a scratch buffer, depth step after depth step, ``vectors x width`` columns each (the last vector
    masked to ``lanes`` when nonzero; its other lanes feed accumulator lanes that are never stored).
    """
    def in_b(em: Emitter, ks: list) -> Value:
        return em.iadd(gemm.b_row(em, ks), em.imul(j0, em.index(gemm.b_strip_depth)))

    if not gemm.pack_b_tiles:
        return gemm.b, in_b
    outer, inner = gemm.depth[0], gemm.depth[1:]
    steps = gemm.depth_block if first is not None else outer
    start = first if first is not None else e.index(0)
    stop = e.imin(e.iadd(first, e.index(steps)), e.index(outer)) if first is not None else outer
    step = vectors * width
    inner_size = math.prod(inner)
    scratch = e.emit(loop.AllocaOp, [], MemRefType((steps * inner_size * step,), vtype.dtype),
                     scope=e.alloca_scope, pure=False)

    def in_scratch(em: Emitter, ks: list) -> Value:
        row = em.isub(ks[0], start)
        if inner:
            row = em.iadd(em.imul(row, em.index(inner_size)), em.linearize(ks[1:], tuple(inner)))
        return em.imul(row, em.index(step))

    with e.loop_in(e.current, start, stop) as (k0, _):
        with _depth_loops(e, inner) as inner_ivs:
            ks = [k0] + inner_ivs
            source, target = in_b(e, ks), in_scratch(e, ks)
            for v in range(vectors):
                mask = {"lanes": lanes} if lanes and v == vectors - 1 else {}
                value = e.emit(vector.LoadOp, [gemm.b, e.iadd(source, e.index(v * width))], vtype, **mask)
                e.insert(vector.StoreOp.create([value, scratch, e.iadd(target, e.index(v * width))], []))
    return scratch, in_scratch


def _with_packed_a(e: Emitter, gemm: Gemm, first: Value | None) -> Gemm:
    """``gemm`` reading A from a scratch copy of this pass's rows x depth steps (from ``first``), laid out in
    micro-panels: the ``micro`` rows of each group side by side at every depth step, so a micro-kernel reads
    its A as one contiguous stream. The copy walks A along its contiguous axis (``a_rows_contiguous``)."""
    span = gemm.depth_block if first is not None else gemm.depth[0]
    start = first if first is not None else e.index(0)
    stop = e.imin(e.iadd(start, e.index(span)), e.index(gemm.depth[0])) if first is not None else gemm.depth[0]
    micro = gemm.micro
    panels = -(-gemm.pack_a // micro)
    scratch = e.emit(loop.AllocaOp, [], MemRefType((panels * micro * span,), gemm.b.type.dtype),
                     scope=e.alloca_scope, pure=False)

    def where(em: Emitter, r: Value, k: Value) -> Value:
        panel = em.imul(em.idiv(r, em.index(micro)), em.index(micro * span))
        return em.iadd(panel, em.iadd(em.imul(em.isub(k, start), em.index(micro)), em.irem(r, em.index(micro))))

    if gemm.a_rows_contiguous:
        with e.loop_in(e.current, start, stop) as (k, _):
            with e.loop_in(e.current, 0, gemm.rows) as (r, _):
                e.store(gemm.a(e, r, [k]), scratch, where(e, r, k))
    else:
        with e.loop_in(e.current, 0, gemm.rows) as (r, _):
            with e.loop_in(e.current, start, stop) as (k, _):
                e.store(gemm.a(e, r, [k]), scratch, where(e, r, k))

    def packed(em: Emitter, r: Value, ks: list) -> Value:
        return em.load_mutable(scratch, where(em, r, ks[0]))

    return replace(gemm, a=packed)


def _row_groups(e: Emitter, gemm: Gemm):
    """Loops over the block's rows, yielding (first row, rows) for each micro-kernel: groups of
    ``gemm.micro`` rows, then the rows left over one at a time. The loop of each is open while its
    caller emits the tile."""
    rows, micro = gemm.rows, gemm.micro
    if isinstance(rows, int):
        full = rows - rows % micro
        left = rows > full
    else:
        full = e.isub(rows, e.irem(rows, e.index(micro))) if micro > 1 else rows
        left = micro > 1
    if not isinstance(full, int) or full:
        with e.loop_in(e.current, 0, full, step=micro) as (r0, _):
            yield r0, micro
    if left:
        with e.loop_in(e.current, full, rows) as (r0, _):
            yield r0, 1


def _fill_with_init(e: Emitter, gemm: Gemm, out: Value, simd: Simd, vtype: VectorType) -> None:
    """``out``'s rows (in the block's columns) set to their initial values, for depth passes that each add
    to them."""
    width = simd.width
    vectors = -(-gemm.columns // width)
    lanes = gemm.columns - (vectors - 1) * width
    last_vector = (vectors - 1) * width
    with e.loop_in(e.current, 0, gemm.rows) as (row, _):
        start = e.emit(vector.BroadcastOp, [gemm.init(e, row)], vtype)
        first, stop = gemm.column_range or (0, last_vector)
        if gemm.column_range:
            stop = e.imin(stop, e.index(last_vector))
        if vectors > 1:
            with e.loop_in(e.current, first, stop, step=width) as (j, _):
                e.insert(vector.StoreOp.create([start, out, gemm.out_offset(e, row, j)], []))
        last = {"lanes": lanes} if lanes != width else {}
        with _in_range(e, gemm, last_vector, width) as j:
            e.insert(vector.StoreOp.create([start, out, gemm.out_offset(e, row, j)], [], last))


def _tile(e: Emitter, gemm: Gemm, out: Value, r0: Value, micro: int, j0: Value, b: Value,
          b_at: Callable[[Emitter, list], Value], tile: int, width: int, vtype: VectorType, lanes: int = 0,
          first: Value | None = None) -> None:
    """Rows [r0, r0 + micro) x ``tile`` vectors from column j0: accumulators over the depth, reading the
    tile's columns of B row ``ks`` from ``b`` at ``b_at(ks)`` (see ``_tile_of_b``).

    ``lanes`` limits the last vector to its first lanes: the row's last columns. With ``first`` (the
    first step of the outermost depth loop this pass covers) the pass covers ``depth_block`` steps
    from there, its accumulators starting from ``out`` (which ``_fill_with_init`` set before the first).
    """
    zero = e.index(0)
    rows = [e.iadd(r0, e.index(rr)) for rr in range(micro)]
    accs = [[e.emit(loop.AllocaOp, [], MemRefType((width,), vtype.dtype), scope=e.alloca_scope, pure=False)
             for _ in range(tile)] for _ in rows]
    masks = [{"lanes": lanes} if lanes and v == tile - 1 else {} for v in range(tile)]

    def target(row: Value, v: int) -> Value:
        return gemm.out_offset(e, row, e.iadd(j0, e.index(v * width)))

    for row, slots in zip(rows, accs):
        start = e.emit(vector.BroadcastOp, [gemm.init(e, row)], vtype) if first is None else None
        for v, slot in enumerate(slots):
            value = start if first is None else \
                e.emit(vector.LoadOp, [out, target(row, v)], vtype, scope=e.current, pure=False, **masks[v])
            e.insert(vector.StoreOp.create([value, slot, zero], []))
    depth = list(gemm.depth)
    with ExitStack() as stack:
        ks = []
        if first is not None:
            stop = e.imin(e.iadd(first, e.index(gemm.depth_block)), e.index(depth[0]))
            k0, _ = stack.enter_context(e.loop_in(e.current, first, stop))
            ks.append(k0)
            depth = depth[1:]
        ks += stack.enter_context(_depth_loops(e, depth))
        b_row = b_at(e, ks)
        bs = [e.emit(vector.LoadOp, [b, e.iadd(b_row, e.index(v * width))], vtype, **masks[v])
              for v in range(tile)]
        for row, slots in zip(rows, accs):
            a = e.emit(vector.BroadcastOp, [gemm.a(e, row, ks)], vtype)
            for v, slot in enumerate(slots):
                old = e.emit(vector.LoadOp, [slot, zero], vtype, scope=e.current, pure=False)
                e.insert(vector.StoreOp.create([e.emit(vector.FMAOp, [a, bs[v], old], vtype), slot, zero], []))
    for row, slots in zip(rows, accs):
        for v, slot in enumerate(slots):
            done = e.emit(vector.LoadOp, [slot, zero], vtype, scope=e.current, pure=False)
            e.insert(vector.StoreOp.create([done, out, target(row, v)], [], masks[v]))
