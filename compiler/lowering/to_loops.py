"""Pass ``lower-to-loops``: fused regions become loop-dialect kernels, the graph becomes launches."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fusecc.costs import op_flops, region_cost
from fusecc.dialects.base import OpKind
from fusecc.dialects.kernel import AllocOp, CopyOp, FusedOp, LaunchOp, ViewOp, WeightOp
from fusecc.dialects.tensor import ConcatOp, ConstantOp, ReshapeOp, TransposeOp
from fusecc.ir.core import FuncOp, IRError, Module, ReturnOp, Value
from fusecc.dialects.loop import AllocaOp
from fusecc.ir.attributes import DenseAttr
from fusecc.ir.types import DType, MemRefType, ScalarType, TensorType
from fusecc.passes.manager import Pass
from fusecc.passes.outline import name_kernels
from fusecc.passes.rewrite import constant_value

from .emitter import Emitter, Scope
from .rules import row_fill, rule_for
from .microkernel import Simd, pack_strips, strip_offset
from .schedules.blocks import (GemmSchedule, block_plan, contraction, in_place_output, region_buffers,
                               runs_on_micro_kernel)
from .schedules.limits import ROW_CACHE_LIMIT
from .schedules.rows import row_schedule

INDEX = ScalarType(DType.INDEX)
#: rows shorter than this many elements are walked two dims at a time (see ``lower_region``)
SHORT_ROW = 32
#: rows of at most this many elements, a multiple of 4 (a blocked layout's block of channels), without reductions
#: along them, are vectorized lane by lane (see ``lower_region``)
MOST_LANES = 16
#: how many times a FLOP off the register-blocked micro-kernel counts in a launch's work (``launch_work``).
#: Depthwise convs ran at 10-20 GFLOP/s here and GEMMs at 70-80 (``fusecc profile`` of MobileNetV2, one core
#: of AVX2): counted like GEMM FLOPs, a 90-microsecond depthwise conv looked too small to split.
OFF_KERNEL_FLOP_WEIGHT = 8


def memref(t: TensorType) -> MemRefType:
    if not t.is_static:
        raise IRError(f"cannot lower {t}: dynamic dimensions must be fixed first: input_shapes={...} (API) or --input-shape NAME=DIMS (CLI)")
    return MemRefType(t.shape, t.dtype)


def launch_work(fused: FusedOp) -> int:
    """The thread pool's measure of a region's work, in units of about a micro-kernel FLOP's time: the FLOPs
    of the ops the micro-kernel computes, ``OFF_KERNEL_FLOP_WEIGHT`` times the other FLOPs, and the bytes
    the region reads and writes (``costs.region_cost``)."""
    flops = sum(op_flops(member) * (1 if runs_on_micro_kernel(member) else OFF_KERNEL_FLOP_WEIGHT)
                for member in fused.members)
    return flops + region_cost(fused).bytes


def _producer(e: Emitter, value: Value, idx: list[Value]) -> Value:
    op = value.op
    rule = rule_for(op)
    if rule is None:
        raise IRError(f"{op.describe()}: no loop lowering for this op")
    return rule(e, op, value.index, idx)


def _row_reduced_values(fused: FusedOp, shape: tuple) -> list[Value]:
    """Values computed in the region that a reduction reads along the last axis, row by row.

    Caching their rows means a softmax or LayerNorm computes its fused
    prologue once per element instead of once per pass over the row.
    """
    values = []
    for op in fused.members:
        if op.kind is not OpKind.REDUCTION or not op.operands:
            continue
        source = op.operands[0]
        axes = op.reduced_axes()
        if axes != [len(shape) - 1] or tuple(source.type.shape) != tuple(shape):
            continue
        if getattr(source, "op", None) is not None and source.op.parent is fused.body:
            values.append(source)
    return values


def packed_operand(fused: FusedOp, width: int) -> tuple[int, np.ndarray] | None:
    """The operand a ``packed_b`` schedule reads packed (its position among the region's operands) and
    its value in strips of the tile's width; None without such a schedule."""
    schedule = GemmSchedule.recorded(fused)
    if schedule is None or not schedule.packed_b:
        return None
    shape = tuple(fused.body.ops[-1].operands[0].type.shape)
    op = contraction(fused.members, shape)
    b = op.operands[1] if op is not None else None
    value = constant_value(fused.operands[fused.body.args.index(b)]) if b in fused.body.args else None
    if value is None or value.ndim != 2:
        raise IRError(f"{fused.describe()}: packed_b needs a contraction whose B is a constant matrix")
    return fused.body.args.index(b), pack_strips(value, schedule.strip(width))


def lower_region(fused: FusedOp, name: str, simd: Simd = Simd(16), packed: dict[int, MemRefType] | None = None) -> FuncOp:
    """Build the kernel function computing ``fused``'s results in one loop nest.

    The nest walks rows (all dimensions but the last, flattened) and then the
    last dimension; every result is stored at the same index, so all results
    must share one shape. The outermost, parallel loop over [begin, end)
    walks blocks of rows: one row each, or as many as the block schedule of
    the region's compute op fills at once with its micro-kernel. ``packed`` gives the buffer types of
    operands passed packed (see ``packed_operand``).
    """
    outputs = fused.body.ops[-1].operands
    shapes = {tuple(v.type.shape) for v in outputs}
    if len(shapes) != 1:
        raise IRError(f"{fused.describe()}: results of one fused region must share a shape, got {shapes}")
    shape = shapes.pop()
    in_types = [(packed or {}).get(i) or memref(v.type) for i, v in enumerate(fused.operands)]
    out_types = [memref(v.type) for v in outputs]
    rows = math.prod(shape[:-1]) if shape else 1
    names = [f"in{i}" for i in range(len(in_types))] + [f"out{i}" for i in range(len(out_types))] + ["begin", "end"]
    func = FuncOp(name, in_types + out_types + [INDEX, INDEX], [], names)
    args = func.args
    buffers = region_buffers(fused.members, fused.body.args, args, frozenset(packed or {}))
    out_buffers = args[len(in_types):len(in_types) + len(out_types)]
    begin, end = args[-2], args[-1]
    root = Scope(func.body, None)
    e = Emitter(root, _producer, buffers, row_fill, simd.width)
    for arg in args:
        e.scope_of[id(arg)] = root
    for value, buffer in zip(outputs, out_buffers):
        e.destinations.setdefault(id(value), buffer)
    for index, packed_type in (packed or {}).items():  # other reads of a packed B find its elements too
        strips, depth, columns = packed_type.shape
        e.layouts[id(fused.body.args[index])] = lambda em, idx, depth=depth, columns=columns: \
            strip_offset(em, idx, depth, columns)
    plan = block_plan(fused.members, shape, buffers, simd, GemmSchedule.recorded(fused), tuple(outputs)) \
        if simd.width > 1 else None
    tile = _transpose_tile(fused, shape) if plan is None else 0
    if tile:
        return _lower_transposing_copy(e, func, outputs, out_buffers, shape, tile)
    # planes of short rows (a blocked layout's blocks of channels, a 7x7 image) go two dims at a time: each
    # parallel iteration walks the rows of its last-but-one dim, so dividing its index is paid once per plane
    paired = plan is None and len(shape) >= 3 and shape[-1] < SHORT_ROW and shape[-2] > 1
    func.attributes["extent"] = plan.block_count(shape) if plan is not None else \
        rows // shape[-2] if paired else rows
    if plan is not None:
        for key in GemmSchedule.ATTRIBUTES:  # the schedule stays visible on the kernel it shaped
            if key in fused.attributes:
                func.attributes[key] = fused.attributes[key]
    block, block_scope = e.open_loop(begin, end, root, parallel=True, nest=True)
    e.current = block_scope
    columns = None  # all of them, unless the plan cuts its blocks into panels of columns
    if plan is not None:
        block_buffer = out_buffers[in_place_output(plan.op, fused.members, tuple(outputs))] if plan.in_place else \
            e.emit(AllocaOp, [], MemRefType((plan.buffer_elements,), plan.op.results[0].type.dtype),
                   scope=e.alloca_scope, pure=False)
        row_block, columns = plan.block_columns(e, block)
        first_row, block_rows = plan.block_rows(e, row_block, shape)
        if plan.chunk:
            block_scope, in_block, row_scope, locate = _chunked_block(e, plan, block_buffer, row_block, first_row,
                                                                      block_rows, block_scope, simd)
        else:
            locate = plan.fill(e, block_buffer, row_block, first_row, block_rows, simd,
                               **({"columns": columns} if columns else {}))
            in_block, row_scope = e.open_loop(e.index(0), e.as_index(block_rows), block_scope, nest=True)
        row = e.iadd(first_row, in_block)
        e.current = row_scope
    elif paired:
        pair, row_scope = e.open_loop(e.index(0), e.index(shape[-2]), block_scope, nest=True)
    else:
        row, row_scope = block, block_scope
    outer = e.delinearize_within(block, shape[:-2]) + [pair] if paired else \
        e.delinearize_within(row, shape[:-1]) if shape else []
    if plan is not None:
        e.cache_block(plan.op.results[0], block_buffer, lambda em, index: locate(em, index, in_block),
                      None if plan.channels and not plan.in_place else outer, block_scope)
    if shape:
        first_col, stop_col = columns or (e.index(0), e.index(shape[-1]))
        col, inner_scope = e.open_loop(first_col, stop_col, row_scope, nest=True)
        e.current = inner_scope
        idx = outer + [col]
        if columns is None and shape[-1] <= MOST_LANES and shape[-1] % 4 == 0 and \
                not any(op.kind is OpKind.REDUCTION for op in fused.members):
            # LLVM unrolls a row this short and would then vectorize the loop over rows, gathering each lane
            # from rows apart with shuffles (ResNet-50's residual epilogues ran 20% slower so); left alone,
            # the row's unrolled lanes become vectors of their own: a load, its arithmetic, a store per row
            row_scope.block.parent.parent.attributes["vectorize"] = False
    else:
        idx = []
    if shape and shape[-1] <= ROW_CACHE_LIMIT:
        e.row, e.row_scope = outer, row_scope
        for value in _row_reduced_values(fused, shape):
            if plan is None or value is not plan.op.results[0]:  # a block buffer already holds its rows
                e.cache_rows(value, outer, shape[-1])
        for op in fused.members:
            schedule = row_schedule(op, buffers, simd.width) if op.kind is OpKind.COMPUTE and op is not getattr(plan, "op", None) \
                else None
            if schedule is not None and tuple(op.results[0].type.shape) == tuple(shape):
                e.cache_rows(op.results[0], outer, shape[-1],
                             lambda em, row, out, op=op, schedule=schedule: schedule(em, op, row, out))
    # with a block plan, the row's start plus the column: the same expression as the block's reads of its
    # in-place result, so LLVM sees each element read and then stored at one address (through div/rem of
    # the nest's row it could not, and would guard the vector loop with an overlap check that in-place
    # blocks always fail)
    linear = e.iadd(e.imul(row, e.index(shape[-1])), col) if plan is not None and shape \
        else e.linearize(idx, shape)
    for value, buffer in zip(outputs, out_buffers):
        if plan is not None and plan.in_place and value is plan.op.results[0] and buffer is block_buffer:
            continue  # the micro-kernel wrote it there
        e.store(e.at(value, idx), buffer, linear)
    func.body.append(ReturnOp.create([], []))
    return func


def _chunked_block(e: Emitter, plan, buffer: Value, row_block: Value, first_row: Value, block_rows: int,
                   block_scope: Scope, simd: Simd):
    """The block of ``plan`` a chunk at a time (see ``BlockPlan.chunk``): each chunk filled, then its rows of every
    run walked while the chunk is in cache. Returns the chunk's scope, the row within the block, the row's
    scope and the chunk's locator."""
    run, chunk = plan.chunk_run, plan.chunk
    start, chunk_scope = e.open_loop(e.index(0), e.index(run), block_scope, nest=True, step=chunk)
    e.current = chunk_scope
    count = chunk if run % chunk == 0 else e.imin(e.index(chunk), e.isub(e.index(run), start))
    locate = plan.fill(e, buffer, row_block, first_row, block_rows, simd, chunk=(start, count))
    which, run_scope = e.open_loop(e.index(0), e.index(block_rows // run), chunk_scope, nest=True)
    offset, row_scope = e.open_loop(e.index(0), e.as_index(count), run_scope, nest=True)
    in_block = e.iadd(e.imul(which, e.index(run)), e.iadd(start, offset))
    return chunk_scope, in_block, row_scope, locate


#: rows of a transposing copy that walk their columns together (each input line read once per tile)
TRANSPOSE_TILES = (16, 8)


def _transpose_tile(fused: FusedOp, shape: tuple) -> int:
    """Rows per tile for a region that only moves data and moves its last axis (a transpose), so that
    consecutive columns of one output row read the input a whole row apart; 0 for any other region.

    Walking such a copy row by row touches a new input line per element and keeps none of them for
    the next row (a power-of-two row pitch maps them all to a few cache sets). Walking a tile of rows
    column by column reads each input line once for the whole tile.
    """
    if len(shape) < 2 or not fused.members:
        return 0
    if any(op.kind not in (OpKind.INJECTIVE, OpKind.ELEMENTWISE, OpKind.BROADCAST) for op in fused.members):
        return 0
    if not any(isinstance(op, TransposeOp) and op.perm[-1] != len(op.perm) - 1 for op in fused.members):
        return 0
    rows = math.prod(shape[:-1])
    return next((tile for tile in TRANSPOSE_TILES if rows % tile == 0 and shape[-2] % tile == 0), 0)


def _lower_transposing_copy(e: Emitter, func: FuncOp, outputs, out_buffers, shape: tuple, tile: int) -> FuncOp:
    """The nest of ``lower_region`` for a transposing copy: tiles of ``tile`` rows, each walked column by
    column, the rows of the tile innermost."""
    args = func.args
    func.attributes["extent"] = math.prod(shape[:-1]) // tile
    block, block_scope = e.open_loop(args[-2], args[-1], e.root, parallel=True, nest=True)
    col, col_scope = e.open_loop(e.index(0), e.index(shape[-1]), block_scope, nest=True)
    in_tile, row_scope = e.open_loop(e.index(0), e.index(tile), col_scope, nest=True)
    e.current = row_scope
    first = e.imul(block, e.index(tile))
    start = e.delinearize(first, shape[:-1])  # once per tile: a tile's rows share all but their last index
    idx = start[:-1] + [e.iadd(start[-1], in_tile), col]
    linear = e.iadd(e.imul(e.iadd(first, in_tile), e.index(shape[-1])), col)
    for value, buffer in zip(outputs, out_buffers):
        e.store(e.at(value, idx), buffer, linear)
    func.body.append(ReturnOp.create([], []))
    return func


@dataclass
class LowerToLoops(Pass):
    """Lowers every ``kernel.fused`` region to a loop-dialect kernel function.

    The graph function ``@main`` is rewritten to work on buffers: its tensor
    arguments become memrefs and one memref argument per result is appended
    (named after the outputs); constants become ``kernel.weight``, reshapes
    outside regions become ``kernel.view`` (no copy), a concat left outside
    regions becomes one buffer whose slices its producers write in place
    (views at byte offsets), each region becomes a
    ``kernel.alloc`` of its results plus a ``kernel.launch`` of its kernel,
    the function its ``sym_name`` names (regions without one, as a
    hand-written module may have, are named first). Results produced by a region are written straight into the output
    buffers; anything else returned is copied there. ``vector-width`` is
    the SIMD width (f32 lanes) the micro-kernels use, 1 turning them off;
    ``vector-registers`` how many vector registers their tiles may fill.
    """

    name = "lower-to-loops"
    vector_width: int = 16
    vector_registers: int = 32

    def run(self, module: Module) -> None:
        name_kernels(module)
        old = module.main
        returned = old.return_op.operands
        output_names = old.attr("output_names") or [f"output{i}" for i in range(len(returned))]
        arg_names = [a.name_hint or f"arg{i}" for i, a in enumerate(old.args)]
        out_arg_names = [f"out_{i}" for i in range(len(returned))]
        main = FuncOp("main", [memref(a.type) for a in old.args] + [memref(v.type) for v in returned], [],
                      arg_names + out_arg_names, dict(old.attributes), old.loc)
        buffers = {id(a): b for a, b in zip(old.args, main.args)}
        out_args = main.args[len(old.args):]
        direct = {}
        for position, value in enumerate(returned):
            producer = getattr(value, "op", None)
            if (isinstance(producer, FusedOp) or isinstance(producer, ConcatOp)) \
                    and id(value) not in direct:
                direct[id(value)] = out_args[position]
        kernels = []
        body = main.body
        slices = {}  # producer result -> (concat op, byte offset): written in place
        for op in old.body.ops:
            if isinstance(op, ConcatOp):
                offset = 0
                for value in op.operands:
                    slices[id(value)] = (op, offset)
                    offset += value.type.nbytes
        concat_buffers = {}

        def concat_buffer(concat) -> Value:
            buffer = concat_buffers.get(id(concat))
            if buffer is None:
                result = concat.results[0]
                if id(result) in slices:  # itself a slice of an outer concat's buffer
                    outer, offset = slices[id(result)]
                    buffer = body.append(ViewOp.create([concat_buffer(outer)], [memref(result.type)],
                                                       {"offset": offset} if offset else {}, loc=concat.loc)).result
                else:
                    buffer = direct.get(id(result))
                    if buffer is None:
                        buffer = body.append(AllocOp.create([], [memref(result.type)], loc=concat.loc)).result
                concat_buffers[id(concat)] = buffer
            return buffer

        for op in old.body.ops:
            if isinstance(op, ConstantOp):
                weight = WeightOp.create([], [memref(op.result.type)], {"value": op.value}, loc=op.loc)
                body.append(weight)
                buffers[id(op.result)] = weight.result
            elif isinstance(op, ReshapeOp):
                view = ViewOp.create([buffers[id(op.input)]], [memref(op.result.type)], loc=op.loc)
                body.append(view)
                buffers[id(op.result)] = view.result
            elif isinstance(op, ConcatOp):
                buffers[id(op.result)] = concat_buffer(op)
            elif isinstance(op, FusedOp):
                name = op.sym_name
                operands = [buffers[id(v)] for v in op.operands]
                packed = packed_operand(op, self.vector_width)
                packed_types = {}
                if packed is not None:
                    index, array = packed
                    weight = WeightOp.create([], [MemRefType(array.shape, op.operands[index].type.dtype)],
                                             {"value": DenseAttr(array, resource=f"{name}_packed_b")}, loc=op.loc)
                    body.append(weight)
                    operands[index] = weight.result
                    packed_types[index] = weight.result.type
                kernel = lower_region(op, name, Simd(self.vector_width, self.vector_registers), packed_types)
                kernels.append(kernel)
                outs = []
                for result in op.results:
                    target = direct.get(id(result))
                    if id(result) in slices:
                        concat, offset = slices[id(result)]
                        target = body.append(ViewOp.create([concat_buffer(concat)], [memref(result.type)],
                                                           {"offset": offset} if offset else {}, loc=op.loc)).result
                    elif target is None:
                        target = body.append(AllocOp.create([], [memref(result.type)], loc=op.loc)).result
                    buffers[id(result)] = target
                    outs.append(target)
                extent = kernel.attr("extent")
                work = -(-launch_work(op) // max(extent, 1))
                body.append(LaunchOp.create(operands + outs, [], {"callee": name, "extent": extent, "work": work},
                                            loc=op.loc))
            elif isinstance(op, ReturnOp):
                for value, out in zip(returned, out_args):
                    if buffers[id(value)] is not out:
                        body.append(CopyOp.create([buffers[id(value)], out], []))
                body.append(ReturnOp.create([], []))
            else:
                raise IRError(f"{op.describe()}: not inside a fused region; run outline-kernels or fuse first")
        main.attributes["output_names"] = list(output_names)
        module.funcs = [main] + kernels + [f for f in module.funcs if f is not old and f.sym_name != "main"]
