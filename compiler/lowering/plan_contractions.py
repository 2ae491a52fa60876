"""Pass ``plan-contractions``: each region's contraction gets its micro-kernel schedule, recorded in the IR."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from fusecc.dialects.kernel import FusedOp
from fusecc.dialects.tensor import BlockedConvOp
from fusecc.ir.core import IRError, Module
from fusecc.passes.manager import Pass
from fusecc.passes.rewrite import constant_value

from .microkernel import Simd, pick_rows, pick_rows_with_tail
from .schedules.blocks import (GemmSchedule, block_plan, contraction, copies_b_tiles, ends_blocks_mid_matrix,
                               copies_a, gemm_shape, in_place_output, only_elementwise_around,
                               packable_b, region_buffers)
from .schedules.limits import BLOCK_LIMIT

#: the share of the level-1 data cache a depth block of B's tile may fill (the rest holds A and C)
L1_SHARE = 0.5
#: the share of the level-2 cache a block's rows of A over one depth pass may fill (the rest holds B's
#: slivers and the output rows)
L2_SHARE = 0.5
#: the fewest blocks a contraction's kernel is cut into where its rows allow: the steps of its range that
#: threads share (a block per thread would leave a thread idle whenever another is slowed down)
PARALLEL_BLOCKS = 8
#: the least work of a block cut for threads, in FLOPs (plus, for a panel of columns, bytes of B read):
#: smaller ones cost more than a thread gains (the thread pool runs a kernel of a few such blocks on one
#: thread anyway)
PARALLEL_BLOCK_WORK = 1 << 21
#: the share of the level-2 cache a tile's sliver of a packed or copied B may fill over one depth pass (the
#: row groups of a block read it from there; the rest of the cache holds the block's rows of A)
SLIVER_L2_SHARE = 0.25
#: most bytes of a tile's sliver of B copied to the stack per depth pass (``pack_b_tiles``), so a kernel's
#: stack stays within what the C API asks of a thread that runs it (1 MiB of float32, with its block buffers)
COPIED_SLIVER_BYTES = 1 << 17
#: what an output element moved between depth passes costs against an element of B streamed once more: an
#: output tile is read and written back at every pass, and its first reads wait on the cache, while a packed
#: B streams sequentially and is prefetched (fitted to the shapes of ``bench_contractions``: one pass beats
#: two over 768 steps of K, six passes beat four over 3072)
OUTPUT_TRAFFIC_WEIGHT = 6
#: bytes of a cache line
CACHE_LINE_BYTES = 64
#: the fewest micro-kernel row groups that must read a tile's sliver of B for copying it to be worth a
#: second pass over B: below, the copy would cost more than the cache misses it saves
TILE_COPY_ROW_GROUPS = 4


@dataclass
class PlanContractions(Pass):
    """Chooses how each region's contraction runs on the micro-kernel and records it on the region.

    A region whose one contraction (MatMul, Gemm, Conv) runs a block at a time gets, as attributes of
    its ``kernel.fused`` op (see ``GemmSchedule``):

    * ``micro_tile = [rows, vectors]``: the largest of 6, 4, 3, 2 or 1 rows dividing the rows of A
      (a MatMul or Gemm takes 6 when only 2 or 1 would divide, its last rows then running one at a
      time), and as many vectors of B as keep ``rows x vectors`` accumulators, the B vectors and a
      broadcast of A within the target's vector registers (``vector-registers``); a shorter
      micro-tile where the tallest one's block of rows would overflow the stack (a conv's wide
      output planes), rather than no block schedule at all;
    * ``depth_block``: steps of the outermost depth loop per pass over the tiles. With a packed or
      copied B (see ``_streamed_depth_block``), the pass count that moves the fewest bytes between the
      caches: every pass moves the output once more, every block of rows streams B once more.
      Otherwise the B sliver one tile reads (``depth_block x`` inner depth ``x`` tile columns) fills
      at most half the level-1 data cache (``l1-bytes``, the host's) and stays there while every row
      of the block uses it. Absent when the whole depth fits;
    * ``packed_b``: a constant K x N B is stored in strips as wide as a tile, each contiguous over
      the depth, so the micro-kernel streams it sequentially instead of one short run per row of B;
    * ``pack_b_tiles``: a MatMul or Gemm B that is not constant (an attention product, a GEMM of two
      inputs), or the input planes of a pointwise conv computed in place (or whose planes straddle
      cache lines, see ``_rows_straddle_lines``), wider than one tile is copied at run time, one
      tile's sliver per pass, into a contiguous buffer that every row group of the block then reads
      from L1 (rows of B N elements apart fall in few cache sets and evict each other); only where at
      least ``TILE_COPY_ROW_GROUPS`` row groups share the copy.

    * ``block_rows``: most rows of A (a conv's output channels) a block covers: for a MatMul or
      Gemm, or a pointwise conv computed in place, few enough that those rows of one depth pass fit
      ``L2_SHARE`` of the level-2 cache (``l2-bytes``) while every tile of columns reads them, and,
      through a block buffer, a block for each of ``threads`` threads; for another conv, few enough
      that the kernel has ``PARALLEL_BLOCKS`` blocks for threads to share; absent when all rows fit.

    * ``block_columns``: a blocked conv's output channels per block (see ``_blocked_conv_schedule``, which
      also reads ``depth_block`` and ``block_rows`` its own way); absent when a block holds them all.

    * ``column_panels``: a MatMul or Gemm computed in place with only elementwise ops around it, whose
      blocks of rows give fewer than ``PARALLEL_BLOCKS`` steps, has each block cut into that many
      panels of columns (see ``_with_column_panels``).

    ``lower-to-loops`` only reads these. The options ``micro-tile`` (``ROWSxVECTORS``),
    ``depth-block`` (0: none) and ``column-panels`` (1: none) override the choice for every region
    (panels: every region that may have them), for experiments.
    """

    name = "plan-contractions"
    vector_width: int = 16
    vector_registers: int = 32
    l1_bytes: int = 32768
    l2_bytes: int = 524288
    threads: int = 1
    micro_tile: str = ""
    depth_block: int = -1
    column_panels: int = -1

    def run(self, module: Module) -> None:
        simd = Simd(self.vector_width, self.vector_registers)
        for func in module.funcs:
            for fused in func.walk():
                if not isinstance(fused, FusedOp) or GemmSchedule.recorded(fused) is not None:
                    continue  # a schedule already recorded (by hand, or from a fusion plan) stays
                schedule = self._choose(fused, simd)
                if schedule is not None:
                    schedule.record(fused)

    def _choose(self, fused: FusedOp, simd: Simd) -> GemmSchedule | None:
        shape = tuple(fused.body.ops[-1].operands[0].type.shape) if fused.body.ops[-1].operands else ()
        op = contraction(fused.members, shape)
        if op is None:
            return None
        rows_of_a, depth, _ = gemm_shape(op)
        buffers = region_buffers(fused.members, fused.body.args, fused.body.args)
        outputs = tuple(fused.body.ops[-1].operands)
        blocked = isinstance(op, BlockedConvOp)
        tiles = _blocked_conv_tiles(simd) if blocked and not self.micro_tile else \
            self._micro_tiles(fused, rows_of_a, simd, tail=blocked or ends_blocks_mid_matrix(op))
        for rows, vectors in tiles:
            schedule = self._blocked_conv_schedule(fused, op, rows, vectors, simd) if blocked else \
                self._schedule(fused, op, depth, rows, vectors, simd, copies_a(op, buffers))
            if schedule is None:
                continue
            plan = block_plan(fused.members, shape, buffers, simd, schedule, outputs)
            if plan is not None:
                return self._with_column_panels(schedule, plan, op, fused, shape, simd, copies_a(op, buffers))
        return None

    def _with_column_panels(self, schedule: GemmSchedule, plan, op, fused: FusedOp, shape: tuple,
                            simd: Simd, copying_a: bool) -> GemmSchedule:
        """``schedule`` with its blocks cut into panels of columns where blocks of rows alone give fewer than
        ``PARALLEL_BLOCKS`` steps (a GEMM of few rows, or whose rows share one pass over a wide B): as many
        panels of whole tiles as make up the difference, each of at least ``PARALLEL_BLOCK_WORK``. Threads
        then share B's columns, each streaming its own share of B once; where the blocks copy their rows of A
        (``copying_a``), no more panels than give each of ``threads`` threads one, since every panel copies
        them again. Only for a MatMul or Gemm computed in place with nothing but elementwise ops around it
        (see ``only_elementwise_around``)."""
        if not ends_blocks_mid_matrix(op) or not plan.in_place or not only_elementwise_around(op, fused.members):
            return schedule
        blocks = plan.block_count(shape)
        if self.column_panels >= 0:
            panels = self.column_panels
        elif blocks >= PARALLEL_BLOCKS:
            return schedule
        else:
            rows_of_a, depth, columns = gemm_shape(op)
            matrices = math.prod(shape[:-1]) // rows_of_a
            work = 2 * math.prod(shape[:-1]) * math.prod(depth) * columns + \
                matrices * math.prod(depth) * columns * op.input.type.dtype.itemsize
            panels = min(-(-PARALLEL_BLOCKS // blocks), columns // schedule.strip(simd.width),
                         work // blocks // PARALLEL_BLOCK_WORK)
            if copying_a:
                panels = min(panels, -(-self.threads // blocks))  # each panel copies its rows of A again
        return replace(schedule, column_panels=panels) if panels > 1 else schedule

    def _schedule(self, fused: FusedOp, op, depth: list[int], rows: int, vectors: int, simd: Simd,
                  copying_a: bool) -> GemmSchedule:
        strip = vectors * simd.width
        inner = 1
        for extent in depth[1:]:
            inner *= extent
        packed = packable_b(op) and op.b in fused.body.args and \
            constant_value(fused.operands[fused.body.args.index(op.b)]) is not None
        in_place = in_place_output(op, fused.members, tuple(fused.body.ops[-1].operands)) is not None
        # blocks that copy their rows of A share the rows out among threads (panels would copy them again)
        by_threads = not in_place or ends_blocks_mid_matrix(op) and copying_a
        rows_of_a, _, columns = gemm_shape(op)
        copied = copies_b_tiles(op) and not packed and columns > strip and \
            rows_of_a >= TILE_COPY_ROW_GROUPS * rows and \
            (ends_blocks_mid_matrix(op) or in_place or _rows_straddle_lines(op))
        if self.depth_block >= 0:
            block = self.depth_block
        elif packed or copied:
            block = self._streamed_depth_block(op, rows, strip, in_place, copied, by_threads)
        else:
            block = max(1, int(self.l1_bytes * L1_SHARE) // (strip * op.input.type.dtype.itemsize * inner))
        block = 0 if block >= depth[0] else block
        return GemmSchedule(rows, vectors, block, packed, copied,
                            self._block_rows(op, rows, (block or depth[0]) * inner, in_place, by_threads))

    def _blocked_conv_schedule(self, fused: FusedOp, op: BlockedConvOp, rows: int, vectors: int,
                               simd: Simd) -> GemmSchedule | None:
        """The schedule of a blocked conv (see ``_blocked_conv_plan``), its weight packed when constant:

        * ``depth_block``: input channel blocks per pass, few enough that a tile's sliver of the weight
          fills at most ``L1_SHARE`` of the level-1 cache while every row group of the chunk reads it;
        * ``block_rows``: pixels per chunk, as many as keep the chunk's rows of A over one pass and its
          output rows each within a quarter of the level-2 cache, which every tile reads again; all of
          them where the block's weights outgrow ``L2_SHARE`` of that cache (each chunk would stream them
          again: ResNet-50's 3x3 convs of 256 channels on 14x14 ran 18% faster unchunked);
        * ``block_columns``: output channels per block, whole strips dividing the channels: a block for
          each of ``threads`` threads per image, and, through a block buffer, as many as it holds.

        None where not even one strip of whole planes fits a block buffer."""
        pixels, (c_blocks, k_h, k_w, in_block), columns = gemm_shape(op)
        block = op.result_block
        strip = vectors * simd.width
        itemsize = op.input.type.dtype.itemsize
        packed = op.weight in fused.body.args and \
            constant_value(fused.operands[fused.body.args.index(op.weight)]) is not None
        in_place = in_place_output(op, fused.members, tuple(fused.body.ops[-1].operands)) is not None
        step = k_h * k_w * in_block  # depth of one input channel block
        if self.depth_block >= 0:
            depth_block = self.depth_block
        else:
            depth_block = max(1, int(self.l1_bytes * L1_SHARE) // (step * strip * itemsize))
        depth_block = 0 if depth_block >= c_blocks else depth_block
        groups = columns // block
        choices = [g for g in range(1, groups + 1)
                   if groups % g == 0 and (g * block % strip == 0 or g == groups)
                   and (in_place or g * block * pixels <= BLOCK_LIMIT)]
        if not choices:
            return None
        per_thread = -(-groups // -(-self.threads // op.results[0].type.shape[0]))
        group = max([g for g in choices if g <= per_thread] or [min(choices)])
        span = (depth_block or c_blocks) * step
        quarter = self.l2_bytes // 4
        chunk = min(quarter // (span * itemsize), quarter // (group * block * itemsize)) // rows * rows
        if c_blocks * step * group * block * itemsize > self.l2_bytes * L2_SHARE:
            chunk = pixels  # every chunk would stream the block's weights from beyond L2 again
        chunk = max(rows, chunk)
        return GemmSchedule(rows, vectors, depth_block, packed, False, 0 if chunk >= pixels else chunk,
                            block_columns=0 if group == groups else group * block)

    def _streamed_depth_block(self, op, micro: int, strip: int, in_place: bool, copied: bool,
                              by_threads: bool) -> int:
        """Depth steps per pass of a MatMul or Gemm whose B tiles stream contiguously (packed, or ``copied``
        a tile at a time): of the even splits of the depth whose tile slivers fit ``SLIVER_L2_SHARE`` of the
        level-2 cache (and, copied, ``COPIED_SLIVER_BYTES``), the one moving the fewest bytes, where each
        pass moves the output (weighted ``OUTPUT_TRAFFIC_WEIGHT``) and each block of rows (see
        ``_block_rows``, which a longer pass makes shorter) streams B. Fewer passes on a tie."""
        rows_of_a, (depth, *inner), columns = gemm_shape(op)
        assert math.prod(inner) == 1, "a streamed B has one depth loop"
        itemsize = op.input.type.dtype.itemsize
        sliver_bytes = int(self.l2_bytes * SLIVER_L2_SHARE)
        if copied:
            sliver_bytes = min(sliver_bytes, COPIED_SLIVER_BYTES)
        longest = max(1, sliver_bytes // (strip * itemsize))
        best = None
        for passes in range(-(-depth // longest), depth + 1):
            block = -(-depth // passes)
            blocks = -(-rows_of_a // (self._block_rows(op, micro, block, in_place, by_threads) or rows_of_a))
            traffic = OUTPUT_TRAFFIC_WEIGHT * passes * rows_of_a * columns + blocks * depth * columns
            if best is None or traffic < best[0]:
                best = (traffic, block)
            if block * strip * itemsize <= self.l1_bytes * L1_SHARE:
                break  # shorter passes gain nothing once a sliver fits the level-1 cache
        return best[1]

    def _block_rows(self, op, micro: int, span: int, in_place: bool, by_threads: bool) -> int:
        """Most rows of A per block, a multiple of ``micro``. A MatMul or Gemm, or a pointwise conv computed
        ``in_place``: few enough that the rows' ``span`` depth steps of A stay within ``L2_SHARE`` of the
        level-2 cache, which every tile of columns reads again (as many blocks as that takes, the rows
        shared out evenly); and, when its blocks go through a block buffer (a row op reads its rows whole,
        so its columns cannot be cut into panels, or they copy their rows of A, which every panel would copy
        again: ``by_threads``) or it is a conv, one block per thread (``threads``) and
        image, each streaming B once (more blocks would each stream all of B again). A conv's blocks of
        whole channels also keep each thread on the channels that the kernels before and after it give
        that thread: cutting the planes instead would have each thread read what the other core wrote.
        Another conv (rows: output channels): few enough that its images have ``PARALLEL_BLOCKS`` blocks
        for threads to share. Blocks for threads hold at least ``PARALLEL_BLOCK_WORK`` FLOPs. 0 (no bound)
        where all rows fit."""
        rows_of_a, depth, columns = gemm_shape(op)
        least = -(-PARALLEL_BLOCK_WORK // (2 * math.prod(depth) * columns))
        if ends_blocks_mid_matrix(op) or in_place:
            fitting = int(self.l2_bytes * L2_SHARE) // (span * op.input.type.dtype.itemsize)
            bound = max(micro, fitting // micro * micro)
            bound = _whole_tiles(-(-rows_of_a // -(-rows_of_a // bound)), micro)  # as many blocks, evened out
            if by_threads:
                bound = min(bound, _whole_tiles(max(-(-rows_of_a // self.threads), least), micro))
            elif not ends_blocks_mid_matrix(op):
                per_image = -(-self.threads // op.results[0].type.shape[0])
                bound = min(bound, _whole_tiles(max(-(-rows_of_a // per_image), least), micro))
        else:
            per_matrix = -(-PARALLEL_BLOCKS // op.results[0].type.shape[0])
            bound = _whole_tiles(max(-(-rows_of_a // per_matrix), least), micro)
        return bound if bound < rows_of_a else 0

    def _micro_tiles(self, fused: FusedOp, rows_of_a: int, simd: Simd, tail: bool) -> list[tuple[int, int]]:
        """The micro-tiles to try, best first: the tallest the rows allow, then shorter ones, whose
        blocks may fit a block buffer the taller ones overflow (a conv's wide output planes)."""
        if not self.micro_tile:
            first = pick_rows_with_tail(rows_of_a) if tail else pick_rows(rows_of_a)
            heights = [first] + [rows for rows in (4, 3, 2, 1) if rows < first and (tail or rows_of_a % rows == 0)]
            return [(rows, simd.tile_vectors(rows)) for rows in heights]
        try:
            rows, vectors = (int(part) for part in self.micro_tile.lower().split("x"))
        except ValueError:
            raise IRError(f"plan-contractions: micro-tile '{self.micro_tile}' is not ROWSxVECTORS, e.g. 6x2") from None
        if rows < 1 or vectors < 1 or rows_of_a % rows and not tail:
            raise IRError(f"{fused.describe()}: micro-tile {rows}x{vectors} does not divide {rows_of_a} rows of A")
        return [(rows, vectors)]


def _blocked_conv_tiles(simd: Simd) -> list[tuple[int, int]]:
    """The micro-tiles to try for a blocked conv, best first: 6 pixels by as many vectors (blocks of output
    channels) as the registers hold, the pixels left over one at a time; then fewer vectors, whose blocks
    of whole planes fit a block buffer that wider ones overflow."""
    return [(6, vectors) for vectors in range(simd.tile_vectors(6), 0, -1)]


def _rows_straddle_lines(conv) -> bool:
    """Whether a pointwise conv's B rows (its input planes) start at other offsets than whole cache lines,
    so that loads of a tile's vector straddle lines: a copy of each tile's sliver then pays even for the
    few channels of a block buffer's block (7x7 and 14x14 planes), where rows of whole lines stream well
    in place."""
    plane = math.prod(conv.input.type.shape[2:]) * conv.input.type.dtype.itemsize
    return plane % CACHE_LINE_BYTES != 0


def _whole_tiles(rows: int, micro: int) -> int:
    """``rows`` rounded up to whole micro-tiles of ``micro`` rows."""
    return -(-rows // micro) * micro
