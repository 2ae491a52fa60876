"""Block schedules: compute ops whose result rows are computed a block at a time by a micro-kernel.

A schedule says how many consecutive rows of the region's loop nest one
block covers and how to fill a block buffer with the op's result for those
rows; the region's epilogue then reads the buffer row by row. MatMul, Gemm
(B not transposed), 2-D convolutions and blocked convolutions are GEMMs whose
B rows are contiguous, so they run on the register-blocked micro-kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from fusecc.dialects.base import OpKind
from fusecc.dialects.tensor import BlockedConvOp, ConvOp, GemmOp, MatMulOp, ReshapeOp
from fusecc.ir.core import IRError, Operation, Value

from ..emitter import Emitter
from ..microkernel import Gemm, Simd, emit_gemm, pick_block, pick_rows
from ..rules.common import broadcast_at, broadcast_index
from .limits import BLOCK_LIMIT, IN_PLACE_LIMIT


@dataclass(frozen=True)
class GemmSchedule:
    """How a region's contraction runs on the micro-kernel.

    ``plan-contractions`` chooses it and records it on the ``kernel.fused`` op as ``micro_tile = [rows,
    vectors]`` (rows of A and vectors of B per micro-kernel), ``depth_block`` (steps of the outermost
    depth loop per pass over the tiles; 0 for all at once), ``block_rows`` (most rows of A, or output
    channels of a conv, per block; 0 for no bound; the pixels of a blocked conv's chunk, see
    ``_blocked_conv_plan``), ``block_columns`` (output channels of a blocked conv per block; 0 for all),
    ``packed_b`` (a constant B stored in strips as wide as a tile,
    see ``pack_strips``), ``pack_b_tiles`` (a B read in place copied a tile's sliver at a time at
    run time, see ``Gemm.pack_b_tiles``) and ``column_panels`` (blocks of a MatMul or Gemm computed in
    place cut further into that many panels of columns, each a step of the kernel's range that threads
    share); ``lower-to-loops`` follows it.
    """

    rows: int
    vectors: int
    depth_block: int = 0
    packed_b: bool = False
    pack_b_tiles: bool = False
    block_rows: int = 0
    column_panels: int = 0
    block_columns: int = 0

    #: the attributes of a ``kernel.fused`` op (and of its kernel function) that record a schedule
    ATTRIBUTES = ("micro_tile", "depth_block", "block_rows", "block_columns", "column_panels", "packed_b",
                  "pack_b_tiles")

    @staticmethod
    def recorded(fused: Operation) -> "GemmSchedule | None":
        tile = fused.attributes.get("micro_tile")
        if tile is None:
            return None
        return GemmSchedule(int(tile[0]), int(tile[1]), int(fused.attributes.get("depth_block", 0)),
                            bool(fused.attributes.get("packed_b", False)),
                            bool(fused.attributes.get("pack_b_tiles", False)),
                            int(fused.attributes.get("block_rows", 0)),
                            int(fused.attributes.get("column_panels", 0)),
                            int(fused.attributes.get("block_columns", 0)))

    def record(self, fused: Operation) -> None:
        fused.attributes["micro_tile"] = [self.rows, self.vectors]
        if self.depth_block:
            fused.attributes["depth_block"] = self.depth_block
        if self.block_rows:
            fused.attributes["block_rows"] = self.block_rows
        if self.block_columns:
            fused.attributes["block_columns"] = self.block_columns
        if self.column_panels > 1:
            fused.attributes["column_panels"] = self.column_panels
        if self.packed_b:
            fused.attributes["packed_b"] = True
        if self.pack_b_tiles:
            fused.attributes["pack_b_tiles"] = True

    def strip(self, width: int) -> int:
        """Columns per tile (and per strip of a packed B) at ``width`` lanes per vector."""
        return self.vectors * width


@dataclass
class BlockPlan:
    """How a compute op's result is computed a block at a time.

    ``fill(e, buffer, block_index, first_row, row_count, simd)`` writes the block of the nest's rows from
    ``first_row`` (``row_count`` of them: a number, or a value for a last, shorter block) and returns
    ``locate(e, index, in_block) -> linear offset into the buffer`` for reads of the result at an index
    of the current block (row ``in_block`` of the block). Matmul blocks are ``rows`` consecutive rows of the result; convolution blocks are ``channels`` whole output
    planes of one image, so the region around the conv may walk a differently shaped nest (a padded
    copy of the output, say) as long as it walks the same images and channels.
    """

    op: Operation
    fill: Callable
    rows: int = 0
    channels: int = 0
    plane: int = 0  # elements per channel in the buffer (default: the result's plane)
    #: the block is written straight into the region's output that holds the op's result (no buffer)
    in_place: bool = False
    #: rows of the result per matrix (M) when blocks of ``rows`` need not divide it: each matrix then
    #: takes ceil(M / rows) blocks, the last one holding what is left (0: blocks divide every matrix)
    matrix_rows: int = 0
    #: panels of whole tiles of ``tile_columns`` columns that a block of rows is cut into, each a step of the
    #: range, their tile counts differing by one at most (1: blocks are whole rows); ``fill`` then takes the
    #: panel's columns as ``columns=(first, stop)``
    panels: int = 1
    tile_columns: int = 0
    #: rows per chunk when a block is computed and stored a chunk at a time (0: all at once): the block's rows
    #: are runs of ``chunk_run`` rows (a blocked conv's planes, one per block of channels), and ``fill``
    #: computes rows [start, start + count) of every run (``chunk=(start, count)``), which the region then
    #: stores while they are in cache
    chunk: int = 0
    chunk_run: int = 0

    @property
    def columns(self) -> int:
        """The result's columns (N)."""
        return self.op.results[0].type.shape[-1]

    def rows_per_block(self, shape: tuple) -> int:
        """Rows of a nest of ``shape`` that one (full) block covers."""
        if self.channels:
            return self.channels * math.prod(shape[2:-1])
        return self.rows

    def block_count(self, shape: tuple) -> int:
        """Blocks covering a nest of ``shape`` (each a step of the kernel's range)."""
        rows = math.prod(shape[:-1])
        if not self.matrix_rows:
            return rows // self.rows_per_block(shape) * self.panels
        return rows // self.matrix_rows * -(-self.matrix_rows // self.rows) * self.panels

    def block_columns(self, e: Emitter, block: Value) -> tuple[Value, tuple[Value, Value] | None]:
        """The block of rows that step ``block`` of the range covers, and its panel's columns [first, stop)
        (None: all of them)."""
        if self.panels == 1:
            return block, None
        panels, tiles = e.index(self.panels), e.index(-(-self.columns // self.tile_columns))
        panel = e.irem(block, panels)

        def boundary(p: Value) -> Value:  # the first column of panel p: tile p * tiles // panels
            return e.imul(e.idiv(e.imul(p, tiles), panels), e.index(self.tile_columns))

        stop = e.imin(boundary(e.iadd(panel, e.index(1))), e.index(self.columns))
        return e.idiv(block, panels), (boundary(panel), stop)

    def block_rows(self, e: Emitter, block: Value, shape: tuple) -> tuple[Value, int | Value]:
        """The first row of the nest that ``block`` covers, and how many rows it covers."""
        per_block = self.rows_per_block(shape)
        if not self.matrix_rows or self.matrix_rows % self.rows == 0:
            return e.imul(block, e.index(per_block)), per_block
        blocks = -(-self.matrix_rows // self.rows)
        local = e.imul(e.irem(block, e.index(blocks)), e.index(self.rows))
        first = e.iadd(e.imul(e.idiv(block, e.index(blocks)), e.index(self.matrix_rows)), local)
        return first, e.imin(e.index(self.rows), e.isub(e.index(self.matrix_rows), local))

    @property
    def buffer_elements(self) -> int:
        result = self.op.results[0].type.shape
        if self.channels:
            return self.channels * (self.plane or math.prod(result[2:]))
        return self.rows * result[-1]


def _block_limit(schedule: GemmSchedule, row_elements: int, limit: int) -> int:
    """Most elements of a block: ``limit``, and ``block_rows`` rows when the schedule bounds them."""
    if schedule.block_rows:
        return min(limit, schedule.block_rows * row_elements)
    return limit


def _a_scratch_rows(rows: int, depth: int, schedule: GemmSchedule) -> int:
    """Rows of A a block copies to a scratch buffer (see ``Gemm.pack_a``), 0 when the copy would not fit
    the stack as a block buffer does."""
    span = schedule.depth_block or depth
    panels = -(-rows // schedule.rows)  # the copy holds whole micro-panels
    return rows if panels * schedule.rows * span <= BLOCK_LIMIT else 0


def _matmul_plan(op: Operation, buffers: dict, schedule: GemmSchedule, in_place: bool) -> BlockPlan | None:
    a, b = op.operands
    if a.type.rank < 2 or b.type.rank < 2 or id(b) not in buffers:
        return None
    out_shape = op.results[0].type.shape
    m, k_size, n = a.type.shape[-2], a.type.shape[-1], b.type.shape[-1]
    micro = schedule.rows
    rows = pick_block(m, micro, n, _block_limit(schedule, n, IN_PLACE_LIMIT if in_place else BLOCK_LIMIT))
    batch_shape = out_shape[:-2]
    packed = schedule.packed_b and b.type.rank == 2

    def fill(e: Emitter, block: Value, index: Value, first: Value, count: int | Value, simd: Simd,
             columns: tuple[Value, Value] | None = None) -> None:
        batch = e.delinearize(e.idiv(first, e.index(m)), batch_shape) if batch_shape else []
        i0 = e.irem(first, e.index(m))
        a_batch = broadcast_index(e, batch, a.type.shape[:-2])
        b_batch = broadcast_index(e, batch, b.type.shape[:-2])
        b_base = e.linearize(b_batch + [e.index(0), e.index(0)], b.type.shape)
        row_elements = schedule.strip(simd.width) if packed else n
        gemm = Gemm(count, micro, [k_size], n,
                    a=lambda em, r, ks: em.at(a, a_batch + [em.iadd(i0, r), ks[0]]),
                    b=buffers[id(b)], b_row=lambda em, ks: em.iadd(b_base, em.imul(ks[0], em.index(row_elements))),
                    init=lambda em, r: em.const(0.0, a.type.dtype),
                    b_strip_depth=k_size if packed else 1, vectors=schedule.vectors,
                    depth_block=schedule.depth_block, pack_b_tiles=schedule.pack_b_tiles,
                    pack_a=_a_scratch_rows(rows, k_size, schedule) if copies_a(op, buffers) else 0,
                    out_row=_result_row(first, n) if in_place else None, column_range=columns)
        emit_gemm(e, gemm, block, simd)
        return _row_locator(n, first if in_place else None)

    return BlockPlan(op, fill, rows=rows, matrix_rows=m, in_place=in_place)


def _gemm_plan(op: Operation, buffers: dict, schedule: GemmSchedule, in_place: bool) -> BlockPlan | None:
    a, b = op.a, op.b
    if op.transB or id(b) not in buffers:
        return None
    m, n = op.results[0].type.shape
    k_size = a.type.shape[0] if op.transA else a.type.shape[1]
    micro = schedule.rows
    rows = pick_block(m, micro, n, _block_limit(schedule, n, IN_PLACE_LIMIT if in_place else BLOCK_LIMIT))
    dtype = a.type.dtype
    packed = schedule.packed_b

    def fill(e: Emitter, block: Value, index: Value, i0: Value, count: int | Value, simd: Simd,
             columns: tuple[Value, Value] | None = None) -> None:
        row_elements = schedule.strip(simd.width) if packed else n
        gemm = Gemm(count, micro, [k_size], n,
                    a=lambda em, r, ks: em.at(a, [ks[0], em.iadd(i0, r)] if op.transA else [em.iadd(i0, r), ks[0]]),
                    b=buffers[id(b)], b_row=lambda em, ks: em.imul(ks[0], em.index(row_elements)),
                    init=lambda em, r: em.const(0.0, dtype),
                    b_strip_depth=k_size if packed else 1, vectors=schedule.vectors,
                    depth_block=schedule.depth_block, pack_b_tiles=schedule.pack_b_tiles,
                    pack_a=_a_scratch_rows(rows, k_size, schedule) if copies_a(op, buffers) else 0,
                    a_rows_contiguous=bool(op.transA),
                    out_row=_result_row(i0, n) if in_place else None, column_range=columns)
        emit_gemm(e, gemm, block, simd)
        locate = _row_locator(n, i0 if in_place else None)
        c = op.c if op.beta != 0.0 else None
        if op.alpha == 1.0 and c is None:
            return locate
        with e.loop_in(e.current, 0, count) as (r, _):
            with e.loop_in(e.current, *(columns or (0, n))) as (j, _):
                slot = e.iadd(e.imul(e.iadd(i0, r) if in_place else r, e.index(n)), j)
                acc = e.load_mutable(block, slot)
                if op.alpha != 1.0:
                    acc = e.mul(acc, e.const(op.alpha, dtype))
                if c is not None:
                    c_value = broadcast_at(e, c, [e.iadd(i0, r), j])
                    acc = e.add(acc, c_value if op.beta == 1.0 else e.mul(c_value, e.const(op.beta, dtype)))
                e.store(acc, block, slot)
        return locate

    return BlockPlan(op, fill, rows=rows, matrix_rows=m, in_place=in_place)


def _pointwise_conv_plan(op: Operation, buffers: dict, schedule: GemmSchedule, in_place: bool) -> BlockPlan | None:
    """An unpadded 1x1 2-D conv: per image, W[Cout, Cin] @ X[Cin, pixels].

    At stride 1 the pixels of a plane are one contiguous run, so a block is
    one GEMM over whole planes, written ``in_place`` into the region's output
    where it may be (see ``block_plan``). At stride (sh, sw) each output row
    is one GEMM over input row ``sh * oh``, of which every sw-th column is
    used, into a block buffer.
    """
    x, w = op.input, op.weight
    if x.type.rank != 4 or list(op.kernel_shape) != [1, 1] or id(x) not in buffers:
        return None
    (s_h, s_w), pads, _ = op.window()
    if any(pads):
        return None
    n_in, c_in, height, width_in = x.type.shape
    out_h, out_w = op.results[0].type.shape[2:]
    c_out = w.type.shape[0]
    c_in_group, c_out_group = w.type.shape[1], c_out // op.group
    strided = (s_h, s_w) != (1, 1)
    pitch = s_w * (out_w - 1) + 1 if strided else out_w  # input columns a strided row GEMM covers
    plane = out_h * pitch
    in_place = in_place and not strided
    micro = schedule.rows
    rows = pick_block(c_out_group, micro, plane,
                      _block_limit(schedule, plane, IN_PLACE_LIMIT if in_place else BLOCK_LIMIT))
    bias = op.bias

    def fill(e: Emitter, block: Value, index: Value, first_row: Value, count: int, simd: Simd):
        first = e.imul(index, e.index(rows))  # = image * c_out + first output channel
        image, co0 = e.idiv(first, e.index(c_out)), e.irem(first, e.index(c_out))
        group = e.idiv(co0, e.index(c_out_group))
        x_base = e.imul(e.iadd(e.imul(image, e.index(c_in)), e.imul(group, e.index(c_in_group))),
                        e.index(height * width_in))
        zero = e.index(0)

        def gemm(row_base: Value | None, columns: int, out_row) -> Gemm:
            return Gemm(rows, micro, [c_in_group], columns,
                        a=lambda em, r, ks: em.at(w, [em.iadd(co0, r), ks[0], zero, zero]),
                        b=buffers[id(x)],
                        b_row=lambda em, ks: em.iadd(em.iadd(x_base, row_base) if row_base is not None else x_base,
                                                     em.imul(ks[0], em.index(height * width_in))),
                        init=lambda em, r: em.at(bias, [em.iadd(co0, r)]) if bias is not None
                        else em.const(0.0, x.type.dtype),
                        out_row=out_row, vectors=schedule.vectors, depth_block=schedule.depth_block,
                        pack_b_tiles=schedule.pack_b_tiles)

        if in_place:
            emit_gemm(e, gemm(None, plane, _result_row(first, plane)), block, simd)
            return _row_locator(out_w, first_row)
        if not strided:
            emit_gemm(e, gemm(None, plane, None), block, simd)
            return _plane_locator(co0, out_h, out_w)
        with e.loop_in(e.current, 0, out_h) as (oh, _):
            row_base = e.imul(oh, e.index(s_h * width_in))
            out_row = lambda em, r: em.imul(em.iadd(em.imul(r, em.index(out_h)), oh), em.index(pitch))  # noqa: E731
            emit_gemm(e, gemm(row_base, pitch, out_row), block, simd)
        return _plane_locator(co0, out_h, pitch, column_stride=s_w)

    return BlockPlan(op, fill, channels=rows, plane=plane, in_place=in_place)


def _spatial_conv_plan(op: Operation, buffers: dict, schedule: GemmSchedule) -> BlockPlan | None:
    """An unpadded stride-1 2-D conv as one implicit GEMM per block of output channels.

    Output pixel (oh, ow) is column ``oh * W + ow`` of the input's row pitch
    ``W``, so for each tap (ci, kh, kw) the B row is one contiguous run of the
    input starting at ``(ci * H + kh) * W + kw``; the ``W - OW`` columns per
    row past the output's width are computed and ignored. Padding must
    already be explicit (``pad-conv-inputs``).
    """
    x, w = op.input, op.weight
    if x.type.rank != 4 or op.group != 1 or id(x) not in buffers or id(w) not in buffers:
        return None
    strides, pads, dilations = op.window()
    if any(s != 1 for s in strides) or any(pads) or any(d != 1 for d in dilations):
        return None
    _, c_in, height, pitch = x.type.shape
    c_out = w.type.shape[0]
    k_h, k_w = op.kernel_shape
    out_h, out_w = op.results[0].type.shape[2:]
    span = (out_h - 1) * pitch + out_w  # columns up to the last output pixel
    micro = schedule.rows
    rows = pick_block(c_out, micro, out_h * pitch, _block_limit(schedule, out_h * pitch, BLOCK_LIMIT))
    bias = op.bias
    weights = buffers[id(w)]

    def fill(e: Emitter, block: Value, index: Value, first_row: Value, count: int, simd: Simd):
        first = e.imul(index, e.index(rows))
        image, co0 = e.idiv(first, e.index(c_out)), e.irem(first, e.index(c_out))
        image_base = e.imul(image, e.index(c_in * height * pitch))

        def a(em: Emitter, r: Value, ks: list) -> Value:
            ci, kh, kw = ks
            return em.load(weights, em.linearize([em.iadd(co0, r), ci, kh, kw], w.type.shape))

        def b_row(em: Emitter, ks: list) -> Value:
            ci, kh, kw = ks
            return em.iadd(image_base, em.iadd(em.imul(em.iadd(em.imul(ci, em.index(height)), kh),
                                                       em.index(pitch)), kw))

        gemm = Gemm(rows, micro, [c_in, k_h, k_w], span, a=a, b=buffers[id(x)], b_row=b_row,
                    init=lambda em, r: em.at(bias, [em.iadd(co0, r)]) if bias is not None
                    else em.const(0.0, x.type.dtype),
                    out_row=lambda em, r: em.imul(r, em.index(out_h * pitch)), vectors=schedule.vectors,
                    depth_block=schedule.depth_block)
        emit_gemm(e, gemm, block, simd)
        return _plane_locator(co0, out_h, pitch)

    return BlockPlan(op, fill, channels=rows, plane=out_h * pitch)


def _blocked_conv_plan(op: Operation, buffers: dict, schedule: GemmSchedule, in_place: bool) -> BlockPlan | None:
    """A conv in the blocked channel layout (``tensor.conv_blocked``) as one GEMM per image: output pixels are
    the rows of A, output channels the columns of B (the weight matrix, packed in strips where the schedule
    says), so each vector of a tile is one block of channels, stored a whole plane from the next.

    A row of A is an output pixel's window: element ``(cb, kh, kw, c)`` of the depth is input channel
    ``cb * B + c`` at the tap, a broadcast from memory whose pixels lie ``B`` elements apart (the input's
    ``B``, which is 1 for a first conv reading few channels; the result's blocks fill the vectors). A block is
    ``block_columns`` output channels of one image over all its pixels, computed a chunk of ``block_rows``
    pixels at a time (each chunk's inputs stay in cache while every tile of the block's channels reads them).
    In place, with only elementwise ops around, the region stores each chunk before the next is computed
    (``BlockPlan.chunk``), so its epilogue reads the chunk from cache; else the block fills a block buffer
    of whole planes.
    """
    x, w = op.input, op.weight
    if id(x) not in buffers or id(w) not in buffers:
        return None
    _, c_blocks, height, width, in_block = x.type.shape
    _, out_blocks, out_h, out_w, block = op.results[0].type.shape
    k_h, k_w = op.kernel_shape
    (s_h, s_w), (d_h, d_w) = op.strides, op.dilations
    pixels, depth = out_h * out_w, c_blocks * k_h * k_w * in_block
    columns = schedule.block_columns or out_blocks * block
    group = columns // block  # channel blocks per block
    if columns % block or out_blocks % group:
        raise IRError(f"{op.describe()}: block_columns {columns} must be whole blocks of {block} channels "
                      f"dividing {out_blocks * block}")
    rows_per_chunk = schedule.block_rows or pixels
    packed = schedule.packed_b
    strip = schedule.strip(block)
    if packed and group != out_blocks and columns % strip:
        raise IRError(f"{op.describe()}: block_columns {columns} must be whole strips of {strip} columns")
    flat = (s_h, s_w) == (1, 1) and (height, width) == (out_h, out_w)  # a pixel's window starts at the pixel

    def fill(e: Emitter, buffer: Value, index: Value, first_row: Value, count: int, simd: Simd,
             chunk: tuple[Value, int | Value] | None = None):
        if simd.width != block:
            raise IRError(f"{op.describe()}: blocks of {block} channels need {block}-lane vectors, "
                          f"not {simd.width}")
        first = e.imul(index, e.index(group))  # = image * out_blocks + first output block
        image, ob0 = e.idiv(first, e.index(out_blocks)), e.irem(first, e.index(out_blocks))
        x_base = e.imul(image, e.index(c_blocks * height * width * in_block))
        first_column = e.imul(ob0, e.index(block))
        b_base = e.imul(first_column, e.index(depth if packed else 1))
        row_elements = strip if packed else out_blocks * block
        out_base = e.imul(first, e.index(pixels * block)) if in_place else e.index(0)

        def pixel_offset(em: Emitter, p: Value) -> Value:
            if flat:
                return em.imul(p, em.index(in_block))
            oh, ow = em.idiv(p, em.index(out_w)), em.irem(p, em.index(out_w))
            return em.imul(em.iadd(em.imul(oh, em.index(s_h * width)), em.imul(ow, em.index(s_w))),
                           em.index(in_block))

        def tap_offset(em: Emitter, ks: list) -> Value:
            cb, kh, kw, c = ks
            row = em.iadd(em.imul(cb, em.index(height)), em.imul(kh, em.index(d_h)))
            return em.iadd(em.imul(em.iadd(em.imul(row, em.index(width)), em.imul(kw, em.index(d_w))),
                                   em.index(in_block)), c)

        def gemm(r0: Value, rows) -> Gemm:
            def a(em: Emitter, r: Value, ks: list) -> Value:
                return em.load(buffers[id(x)], em.iadd(em.iadd(x_base, pixel_offset(em, em.iadd(r0, r))),
                                                       tap_offset(em, ks)))

            return Gemm(rows, schedule.rows, [c_blocks, k_h, k_w, in_block], columns, a=a,
                        b=buffers[id(w)],
                        b_row=lambda em, ks: em.iadd(b_base, em.imul(em.linearize(ks, (c_blocks, k_h, k_w,
                                                                                       in_block)),
                                                                     em.index(row_elements))),
                        init=lambda em, r: em.const(0.0, x.type.dtype),
                        out_row=lambda em, r: em.iadd(out_base, em.imul(em.iadd(r0, r), em.index(block))),
                        out_column=lambda em, j: em.imul(em.idiv(j, em.index(block)), em.index(pixels * block)),
                        b_strip_depth=depth if packed else 1, vectors=schedule.vectors,
                        depth_block=schedule.depth_block)

        if chunk is not None:
            emit_gemm(e, gemm(*chunk), buffer, simd)
        elif rows_per_chunk >= pixels:
            emit_gemm(e, gemm(e.index(0), pixels), buffer, simd)
        else:
            with e.loop_in(e.current, 0, pixels, step=rows_per_chunk) as (r0, _):
                rows = rows_per_chunk if pixels % rows_per_chunk == 0 else \
                    e.imin(e.index(rows_per_chunk), e.isub(e.index(pixels), r0))
                emit_gemm(e, gemm(r0, rows), buffer, simd)
        if in_place:
            return _row_locator(block, first_row)
        return _blocked_plane_locator(ob0, out_h, out_w, block)

    chunked = in_place and rows_per_chunk < pixels
    return BlockPlan(op, fill, channels=group, plane=pixels * block, in_place=in_place,
                     chunk=rows_per_chunk if chunked else 0, chunk_run=pixels if chunked else 0)


def _blocked_plane_locator(first_block: Value, height: int, width: int, block: int):
    """Offsets of a block buffer of whole blocked planes (``block`` channels a pixel) from channel block
    ``first_block``: index = [n, channel block, h, w, c]."""
    def locate(e: Emitter, index: list[Value], in_block: Value) -> Value:
        _, channels, h, w, c = index
        plane = e.isub(channels, first_block)
        pixel = e.iadd(e.imul(e.iadd(e.imul(plane, e.index(height)), h), e.index(width)), w)
        return e.iadd(e.imul(pixel, e.index(block)), c)
    return locate


def _row_locator(columns: int, first_row: Value | None = None):
    """Offsets of a block of whole result rows: index = the nest's own row, then the column; rows count
    from the block's first (a block buffer) or, given ``first_row``, from the result's first (in place)."""
    def locate(e: Emitter, index: list[Value], in_block: Value) -> Value:
        row = in_block if first_row is None else e.iadd(first_row, in_block)
        return e.iadd(e.imul(row, e.index(columns)), index[-1])
    return locate


def _result_row(first_row: Value, columns: int):
    """``out_row`` of a micro-kernel writing a block in place: row ``r`` of the block is the result's
    row ``first_row + r``."""
    return lambda em, r: em.imul(em.iadd(first_row, r), em.index(columns))


def _plane_locator(first_channel: Value, height: int, pitch: int, column_stride: int = 1):
    """Offsets of a block of output planes from ``first_channel``, rows ``pitch`` apart and
    columns ``column_stride`` apart: index = [n, c, h, w]."""
    def locate(e: Emitter, index: list[Value], in_block: Value) -> Value:
        _, channel, h, w = index
        plane = e.isub(channel, first_channel)
        row = e.imul(e.iadd(e.imul(plane, e.index(height)), h), e.index(pitch))
        return e.iadd(row, e.imul(w, e.index(column_stride)))
    return locate


def _conv_plan(op: Operation, buffers: dict, schedule: GemmSchedule, in_place: bool) -> BlockPlan | None:
    """A conv's blocks are whole output planes: in a block buffer of their own, or in place for a stride-1
    pointwise conv."""
    if list(op.kernel_shape) == [1, 1]:
        return _pointwise_conv_plan(op, buffers, schedule, in_place)
    return _spatial_conv_plan(op, buffers, schedule)


_PLANS = {MatMulOp: _matmul_plan, GemmOp: _gemm_plan, ConvOp: _conv_plan, BlockedConvOp: _blocked_conv_plan}


def runs_on_micro_kernel(op: Operation) -> bool:
    """Whether a block schedule may compute ``op`` on the micro-kernel, its FLOPs a GEMM's multiply-adds: a
    float MatMul, Gemm or blocked conv, a pointwise conv, or a spatial conv of one group (a depthwise conv
    runs a row at a time instead)."""
    if type(op) not in _PLANS or not op.input.type.dtype.is_float:
        return False
    return not isinstance(op, ConvOp) or list(op.kernel_shape) == [1, 1] or op.group == 1


def _fits(op: Operation, shape: tuple) -> bool:
    """Whether the region's nest walks the op's result: the same shape, or for a conv the same
    images and channels (the region may pad the output around it)."""
    result = tuple(op.results[0].type.shape)
    if isinstance(op, ConvOp):
        return len(shape) == 4 and len(result) == 4 and tuple(shape[:2]) == result[:2]
    if isinstance(op, BlockedConvOp):
        return len(shape) == 5 and tuple(shape[:2]) == result[:2] and shape[-1] == result[-1]
    return result == tuple(shape)


def contraction(members: list[Operation], shape: tuple) -> Operation | None:
    """The region's one contraction a block schedule may compute, if it has exactly one."""
    candidates = [op for op in members if type(op) in _PLANS and op.input.type.dtype.is_float]
    if len(candidates) != 1 or not shape or not _fits(candidates[0], shape):
        return None
    return candidates[0]


def gemm_shape(op: Operation) -> tuple[int, list[int], int]:
    """(rows of A, the depth as nested loop extents, columns of B) of the GEMM a block of ``op`` runs."""
    if isinstance(op, MatMulOp):
        a, b = op.a.type, op.b.type
        return (a.shape[-2] if a.rank >= 2 else 1), [a.shape[-1]], (b.shape[-1] if b.rank >= 2 else 1)
    if isinstance(op, GemmOp):
        m, n = op.results[0].type.shape
        return m, [op.a.type.shape[0] if op.transA else op.a.type.shape[1]], n
    if isinstance(op, BlockedConvOp):
        _, c_blocks, _, _, block = op.input.type.shape
        _, _, out_h, out_w, _ = op.results[0].type.shape
        return out_h * out_w, [c_blocks, *op.kernel_shape, block], op.weight.type.shape[1]
    c_out, c_in_group = op.weight.type.shape[:2]
    return c_out // op.group, [c_in_group] + list(op.kernel_shape), math.prod(op.results[0].type.shape[2:])


def ends_blocks_mid_matrix(op: Operation) -> bool:
    """Whether ``op``'s blocks of rows may leave a shorter last block per matrix (MatMul, Gemm), so its
    micro-kernel height need not divide the rows of A."""
    return isinstance(op, (MatMulOp, GemmOp))


def copies_a(op: Operation, buffers: dict) -> bool:
    """Whether a MatMul's or Gemm's blocks copy their rows of A (see ``Gemm.pack_a``): a transposed A, or one
    the region computes, whose elements are not in a buffer row by row."""
    return bool(getattr(op, "transA", 0)) or id(op.operands[0]) not in buffers


def copies_b_tiles(op: Operation) -> bool:
    """Whether ``op``'s micro-kernel may copy B a tile's sliver at a time (``GemmSchedule.pack_b_tiles``): a
    MatMul or Gemm, or a pointwise conv, whose B rows are each one run of input."""
    return ends_blocks_mid_matrix(op) or isinstance(op, ConvOp) and all(k == 1 for k in op.kernel_shape)


def packable_b(op: Operation) -> bool:
    """Whether ``op``'s B is a matrix the micro-kernel may read packed (a K x N MatMul or Gemm operand, a
    blocked conv's weight)."""
    return isinstance(op, BlockedConvOp) or ends_blocks_mid_matrix(op) and op.b.type.rank == 2


def only_elementwise_around(op: Operation, members: list[Operation]) -> bool:
    """Whether every other op of the region is elementwise, or data movement or elementwise ops that feed
    ``op`` alone (a reshape of A, which its reads go through): each element of the region's result then
    depends on the same element of ``op``'s alone, so a block of ``op``'s columns computes those columns
    of the region."""
    feeding = _feeding_only(op, members)
    return all(other is op or other.kind in (OpKind.ELEMENTWISE, OpKind.BROADCAST) or
               id(other) in feeding and other.kind is OpKind.INJECTIVE for other in members)


def _feeding_only(op: Operation, members: list[Operation]) -> set[int]:
    """The ids of the members whose results only ``op`` reads, directly or through other such members."""
    feeding = {id(op)}
    for member in reversed(members[:members.index(op)]):
        if all(id(user) in feeding for result in member.results for user in result.users):
            feeding.add(id(member))
    feeding.discard(id(op))
    return feeding


def in_place_output(op: Operation, members: list[Operation], outputs: tuple) -> int | None:
    """The position among the region's ``outputs`` that ``op``'s result may be computed into (see
    ``block_plan``), or None. A MatMul or Gemm may be; so may a stride-1 pointwise conv (its blocks are
    whole rows of its output) or a blocked conv with only elementwise ops around it, which read each
    element where it is then stored."""
    if not ends_blocks_mid_matrix(op):
        pointwise = isinstance(op, BlockedConvOp) or copies_b_tiles(op) and all(s == 1 for s in op.window()[0])
        if not pointwise or not only_elementwise_around(op, members):
            return None
    for position, value in enumerate(outputs):
        if value is op.results[0]:
            return position
    same_type = len(outputs) == 1 and outputs[0].type == op.results[0].type
    return 0 if only_elementwise_around(op, members) and same_type else None


def region_buffers(members: list[Operation], args: list[Value], buffers: list[Value],
                   laid_out: frozenset[int] = frozenset()) -> dict[int, Value]:
    """{id(value): buffer} for a region's inputs (``args``, held in ``buffers``) and for the reshapes of
    them among its ``members``: a reshape of a row-major buffer holds the same elements at the same linear
    offsets, so its reads go straight to the buffer (a GEMM's A reshaped from 3-D activations then needs no
    copy). Inputs stored in another layout (the positions in ``laid_out``: a packed B) have no such
    reshapes."""
    by_value = {id(arg): buffer for arg, buffer in zip(args, buffers)}
    plain = {id(arg) for position, arg in enumerate(args) if position not in laid_out}
    for op in members:
        if isinstance(op, ReshapeOp) and id(op.input) in plain:
            by_value[id(op.result)] = by_value[id(op.input)]
            plain.add(id(op.result))
    return by_value


def block_plan(members: list[Operation], shape: tuple, buffers: dict, simd: Simd,
               schedule: GemmSchedule | None = None, outputs: tuple = ()) -> BlockPlan | None:
    """The block schedule of the region's one schedulable compute op, if there is one, run as
    ``schedule`` says (else on the largest micro-tile ``simd`` holds, over the whole depth, B unpacked).

    A MatMul, Gemm or stride-1 pointwise conv is computed in place where it can be: straight into the
    region output that holds its result, or into the region's one output when everything else in the
    region is elementwise (each element of the product is read once, where its result is then stored).
    Its blocks are then not bounded by a stack buffer: many rows share each pass over B, which a wide B
    (3072 or 50257 columns) would otherwise stream again for every few rows, and no copy from a buffer
    follows.
    """
    op = contraction(members, shape)
    if op is None:
        return None
    if schedule is None:
        rows = pick_rows(gemm_shape(op)[0])
        schedule = GemmSchedule(rows, simd.tile_vectors(rows))
    in_place = in_place_output(op, members, outputs) is not None
    plan = _PLANS[type(op)](op, buffers, schedule, in_place)
    if plan is None or plan.buffer_elements > BLOCK_LIMIT and not plan.in_place:
        return None
    if schedule.column_panels > 1:
        if not (ends_blocks_mid_matrix(op) and plan.in_place and only_elementwise_around(op, members)):
            raise IRError(f"{op.describe()}: column_panels needs a MatMul or Gemm computed in place with "
                          "only elementwise ops around it")
        plan.panels, plan.tile_columns = schedule.column_panels, schedule.strip(simd.width)
        if plan.panels > -(-plan.columns // plan.tile_columns):
            raise IRError(f"{op.describe()}: {plan.panels} column panels of whole tiles need "
                          f"{plan.panels * plan.tile_columns} columns or more, it has {plan.columns}")
    rows = plan.rows_per_block(shape)
    if plan.matrix_rows:
        return plan if math.prod(shape[:-1]) % plan.matrix_rows == 0 else None
    if math.prod(shape[:-1]) % rows:
        return None
    return plan
