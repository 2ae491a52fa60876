"""Pass ``blocked-convs``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fusecc.costs import op_flops
from fusecc.dialects.base import OpKind
from fusecc.dialects.tensor import (AddOp, AveragePoolOp, BatchNormOp, BitcastOp, BlockedConvOp,
                                    BlockedDepthwiseConvOp, ConcatOp, ConvOp, ExpandOp, MaxPoolOp, MulOp, PadOp,
                                    ReshapeOp, SubOp, TransposeOp)
from fusecc.ir.core import Module, Operation, Value
from fusecc.ir.printer import loc_names
from fusecc.ir.rewriter import Rewriter
from fusecc.ir.types import DType
from fusecc.lowering.schedules.limits import BLOCK_LIMIT
from fusecc.lowering.schedules.window_rows import is_depthwise

from .manager import Pass
from .rewrite import constant_value, make_constant, resource_names

#: elementwise and broadcasting ops whose operands are not laid out as their result is (per-channel vectors,
#: a target shape, a reinterpretation of the bits): they keep the NCHW layout
_LAYOUT_BOUND = (BatchNormOp, ExpandOp, BitcastOp)


#: the fewest FLOPs a group of blocked convs must compute per element it reorders into or out of the blocked
#: layout. Measured on the light models, one thread, each compiled with and without blocked convs: ResNet-50
#: (one group of 52 convs, reordered only on its way in and out) ran 8% faster blocked, ResNet-18 4%; the
#: groups of MobileNetV2 (pointwise convs between depthwise ones that kept NCHW: at most 800 FLOPs per
#: reordered element) ran 3-5% slower. With its depthwise convs blocked too, MobileNetV2 is one group that
#: its 112x112 pointwise convs (too large for a block buffer, so NCHW) reorder in and out of, 413 FLOPs per
#: element on AVX2: blocked regardless, it ran 23% slower
LEAST_FLOPS_PER_REORDER = 1500


@dataclass
class BlockedConvs(Pass):
    """Runs 2-D convolutions and the elementwise ops between them in the blocked channel layout nChw{B}c,
    ``B`` the vector width (``vector-width``, the target's).

    In NCHW a conv's micro-kernel takes output channels as rows and pixels as vectors: a plane narrower
    than a tile wastes lanes (7x7: 49 pixels in 72 columns) and every step of the depth reads a run of
    another plane. In the blocked layout [N, C/B, H, W, B] a pixel's B channels are one vector, so
    ``tensor.conv_blocked`` takes pixels as rows and blocks of output channels as vectors, whatever the
    plane's size, streaming its weights packed; strides need no regrouping of the input.

    A conv (2-D, one group, float32, constant weights, output channels a multiple of B, input channels
    too or fewer than B, an output plane of at most ``BLOCK_LIMIT / B`` pixels) becomes ``conv_blocked``
    of its input in the blocked layout (a first conv's few channels in blocks of one), padded by a
    ``tensor.pad`` of the spatial axes, and its bias an ``add``; a depthwise conv (a group per channel,
    channels a multiple of B) becomes ``depthwise_conv_blocked``, each lane a channel, padded and biased
    the same way (the pad, an epilogue of the kernel before it, leaves every tap of its window inside). An
    elementwise or broadcasting op reading a blocked value (a ReLU, a residual add, an inference
    BatchNormalization, as a subtract, multiply and add of constants) and a constant pad of
    the spatial axes run blocked too, their other operands converted: constants here (per channel or
    not), computed tensors by a reorder; so do a concat of channels that are whole blocks (Inception's
    branches, DenseNet's layers) and a max or average pooling (lane by lane, ``channel_block``). A
    value leaves the blocked layout only where an op that does not run blocked reads it, through a
    reorder back to NCHW (a transpose and a reshape, which fuse into that op's kernel). A network of
    convs, activations, residual adds and poolings thus reorders on its way in and out, not around
    every conv (ResNet's body, Inception's modules, inverted residual blocks); an op that stays in NCHW
    between convs (an LRN) costs a reorder each way.
    So the convs of a connected group run blocked only where they compute ``LEAST_FLOPS_PER_REORDER``
    FLOPs per element the group reorders; and where a network pays for that only past its large planes
    (MobileNetV2), only the convs whose input planes are at most some size are candidates, the size that
    runs the most FLOPs blocked.
    """

    name = "blocked-convs"
    vector_width: int = 16

    def run(self, module: Module) -> None:
        taken = resource_names(module)
        for func in module.funcs:
            _Layout(self.vector_width, taken).run(func.body.ops)


def _may_follow(op: Operation) -> bool:
    """Whether ``op`` may run blocked when its input does (see ``_Layout.run``, which decides)."""
    if getattr(op, "kind", None) in (OpKind.ELEMENTWISE, OpKind.BROADCAST):
        return not isinstance(op, _LAYOUT_BOUND) or isinstance(op, BatchNormOp)
    return isinstance(op, (ConcatOp, PadOp)) and op.results[0].type.rank == 4 or _blockable_pool(op)


def _input_pixels(op: Operation) -> int:
    """The pixels of a conv's input plane."""
    return math.prod(op.input.type.shape[2:])


def _blockable_pool(op: Operation) -> bool:
    """A max or average pooling over the two spatial axes of an NCHW tensor."""
    return type(op) in (MaxPoolOp, AveragePoolOp) and op.input.type.rank == 4 and not op.channel_block


def _pad_spatially(rewriter: Rewriter, x: Value, pads, loc, value: float = 0.0) -> Value:
    """``x`` ([N, C/B, H, W, B]) padded by ``pads`` = (top, left, bottom, right) with ``value``."""
    top, left, bottom, right = pads
    attributes = {"pads": [0, 0, top, left, 0, 0, 0, bottom, right, 0]}
    if value or np.signbit(value):  # the default, +0.0, goes unsaid
        attributes["value"] = value
    return rewriter.build(PadOp, [x], attributes, loc=loc).result


@dataclass
class _Layout:
    block: int
    taken: set[str]
    #: id of a value (in NCHW, as the graph's other ops read it) -> the same value in the blocked layout
    blocked: dict[int, Value] = field(default_factory=dict)
    #: ids of the convs that run blocked (see ``_worth_blocking``)
    chosen: set[int] = field(default_factory=set)

    def run(self, ops: list[Operation]) -> None:
        self.chosen = self._worth_blocking(ops)
        for op in list(ops):
            if id(op) in self.chosen:
                self._replace(op, self._conv(op))
            elif getattr(op, "kind", None) in (OpKind.ELEMENTWISE, OpKind.BROADCAST) \
                    and not isinstance(op, _LAYOUT_BOUND):
                value = self._elementwise(op)
                if value is not None:
                    self._replace(op, value)
            elif isinstance(op, BatchNormOp) and id(op.input) in self.blocked \
                    and all(constant_value(v) is not None for v in op.operands[1:]):
                self._replace(op, self._batch_norm(op))
            elif isinstance(op, ConcatOp) and op.results[0].type.rank == 4 and op.axis in (1, -3) \
                    and any(id(v) in self.blocked for v in op.operands):
                value = self._concat(op)
                if value is not None:
                    self._replace(op, value)
            elif _blockable_pool(op) and id(op.input) in self.blocked:
                pool = Rewriter.before(op).build(type(op), [self.blocked[id(op.input)]],
                                                 {**op.attributes, "channel_block": self.block}, loc=op.loc)
                self._replace(op, pool.result)
            elif isinstance(op, PadOp) and id(op.input) in self.blocked and op.mode == "constant" \
                    and op.input.type.rank == 4 and not any(op.pads[i] for i in (0, 1, 4, 5)):
                self._replace(op, _pad_spatially(Rewriter.before(op), self.blocked[id(op.input)],
                                                 (op.pads[2], op.pads[3], op.pads[6], op.pads[7]), op.loc, op.value))

    def _worth_blocking(self, ops: list[Operation]) -> set[int]:
        """The convs to run blocked: of the convs that can, those whose input planes have at most some number
        of pixels, that number chosen so that the most FLOPs run blocked (see ``_worth_blocking_among``).

        A network whose first convs cannot run blocked (MobileNetV2's 112x112 planes) reorders large planes
        wherever its early convs join the rest, and as one group it would not pay for that; its later stages,
        entered through a small plane, do."""
        convertible = {id(op): op for op in ops if self._convertible_conv(op)}
        best, most = set(), 0
        for limit in sorted({_input_pixels(op) for op in convertible.values()}, reverse=True):
            chosen = self._worth_blocking_among(ops, {key for key, op in convertible.items()
                                                      if _input_pixels(op) <= limit})
            flops = sum(op_flops(convertible[key]) for key in chosen)
            if flops > most:
                best, most = chosen, flops
        return best

    def _worth_blocking_among(self, ops: list[Operation], convs: set[int]) -> set[int]:
        """Of ``convs``, those of the connected groups of convs and ops that may follow them into the blocked
        layout (see ``_may_follow``; they follow where they read a member's result) whose convs compute at
        least ``LEAST_FLOPS_PER_REORDER`` FLOPs per element the group reorders in or out (its inputs and
        results that other ops use). A pooling of an NCHW conv's output thus stays outside, reordering its
        smaller result rather than its input."""
        members, group = [], {}
        for op in ops:
            if id(op) in convs or _may_follow(op) and any(id(getattr(v, "op", None)) in group for v in op.operands):
                members.append(op)
                group[id(op)] = id(op)

        def root(key: int) -> int:
            while group[key] != key:
                group[key] = group[group[key]]
                key = group[key]
            return key

        for op in members:
            for value in op.operands:
                producer = getattr(value, "op", None)
                if id(producer) in group:
                    group[root(id(producer))] = root(id(op))
        flops, reordered = {}, {}
        for op in members:
            key = root(id(op))
            if id(op) in convs:
                flops[key] = flops.get(key, 0) + op_flops(op)
            crossing = reordered.setdefault(key, {})
            for value in op.operands:
                producer = id(getattr(value, "op", None))
                if (producer not in group or root(producer) != key) and value.type.rank \
                        and constant_value(value) is None:
                    crossing[id(value)] = value
            for value in op.results:
                if any(id(user) not in group or root(id(user)) != key for user in value.users):
                    crossing[id(value)] = value
        worth = {key for key, total in flops.items()
                 if total >= LEAST_FLOPS_PER_REORDER * sum(v.type.num_elements for v in reordered[key].values())}
        return {key for key in convs if root(key) in worth}

    def _convertible_conv(self, op: Operation) -> bool:
        if not isinstance(op, ConvOp) or op.input.type.rank != 4 or op.input.type.dtype is not DType.F32 \
                or not op.input.type.is_static or len(op.kernel_shape) != 2:
            return False
        if constant_value(op.weight) is None or op.bias is not None and constant_value(op.bias) is None:
            return False
        c_out, c_in = op.weight.type.shape[:2]
        if op.group != 1:
            return is_depthwise(op) and c_out == op.group and c_out % self.block == 0  # a channel per group
        out_h, out_w = op.results[0].type.shape[2:]
        return (c_in % self.block == 0 or c_in < self.block) and c_out % self.block == 0 \
            and out_h * out_w * self.block <= BLOCK_LIMIT

    def _conv(self, op: ConvOp) -> Value:
        """``conv_blocked`` of ``op``'s input in blocks, or, with fewer channels than a block (a network's
        first conv, of an image's 3), of its channels as blocks of one: [N, C, H, W, 1], a view of NCHW;
        a depthwise conv's ``depthwise_conv_blocked``."""
        rewriter = Rewriter.before(op)
        if op.group != 1:
            return self._depthwise(op, rewriter)
        weights = constant_value(op.weight)
        c_out, c_in, k_h, k_w = weights.shape
        in_block = self.block if c_in % self.block == 0 else 1
        if in_block == 1:
            n, _, height, width = op.input.type.shape
            x = rewriter.build(ReshapeOp, [op.input], {"shape": [n, c_in, height, width, 1]}, loc=op.loc).result
        else:
            x = self._operand(op.input, rewriter, op.loc, full=op.input.type.shape)
        strides, pads, dilations = op.window()
        if any(pads):
            x = _pad_spatially(rewriter, x, pads, op.loc)
        rows = weights.reshape(c_out, c_in // in_block, in_block, k_h, k_w).transpose(1, 3, 4, 2, 0)
        name = f"{(loc_names(op.loc) or ['conv'])[0]}_blocked"
        matrix = make_constant(rewriter, rows.reshape(-1, c_out), name, self.taken, loc=op.weight.op.loc)
        conv = rewriter.build(BlockedConvOp, [x, matrix],
                              {"kernel_shape": list(op.kernel_shape), "strides": list(strides),
                               "dilations": list(dilations), **({"out_block": self.block} if in_block == 1 else {})},
                              loc=op.loc).result
        if op.bias is None:
            return conv
        bias = self._operand(op.bias, rewriter, op.loc, channel_axis=0)
        return rewriter.build(AddOp, [conv, bias], loc=op.loc).result

    def _depthwise(self, op: ConvOp, rewriter: Rewriter) -> Value:
        """``depthwise_conv_blocked`` of ``op``'s input in blocks, padded by a ``tensor.pad`` (which the kernel
        before it writes, so every tap of the conv's window is inside), its weights [C/B, KH, KW, B]."""
        x = self._operand(op.input, rewriter, op.loc, full=op.input.type.shape)
        strides, pads, dilations = op.window()
        if any(pads):
            x = _pad_spatially(rewriter, x, pads, op.loc)
        weights = constant_value(op.weight)
        channels, _, k_h, k_w = weights.shape
        per_block = weights.reshape(channels // self.block, self.block, k_h, k_w).transpose(0, 2, 3, 1)
        name = f"{(loc_names(op.loc) or ['conv'])[0]}_blocked"
        kernel = make_constant(rewriter, per_block, name, self.taken, loc=op.weight.op.loc)
        conv = rewriter.build(BlockedDepthwiseConvOp, [x, kernel],
                              {"kernel_shape": list(op.kernel_shape), "strides": list(strides),
                               "dilations": list(dilations)}, loc=op.loc).result
        if op.bias is None:
            return conv
        return rewriter.build(AddOp, [conv, self._operand(op.bias, rewriter, op.loc, channel_axis=0)], loc=op.loc).result

    def _batch_norm(self, op: BatchNormOp) -> Value:
        """An inference BatchNormalization as ``(x - mean) * (scale / sqrt(var + eps)) + bias``, its vectors in
        blocks."""
        rewriter = Rewriter.before(op)
        x = self.blocked[id(op.input)]
        scale, bias, mean, variance = (constant_value(v) for v in op.operands[1:])
        inverse = scale / np.sqrt(variance + np.float32(op.epsilon))
        for array, op_class in ((mean, SubOp), (inverse.astype(x.type.dtype.numpy), MulOp), (bias, AddOp)):
            vector = self._constant(rewriter, array, (1, array.shape[0], 1, 1), loc=op.loc)
            x = rewriter.build(op_class, [x, vector], loc=op.loc).result
        return x

    def _concat(self, op: ConcatOp) -> Value | None:
        """A concat of channels, when each operand's are whole blocks: a concat of the blocks."""
        rewriter = Rewriter.before(op)
        operands = []
        for value in op.operands:
            converted = self._operand(value, rewriter, op.loc, full=value.type.shape)
            if converted is None or converted.type.rank != 5 or converted.type.shape[-1] != self.block:
                return None
            operands.append(converted)
        return rewriter.build(ConcatOp, operands, {"axis": 1}, loc=op.loc).result

    def _elementwise(self, op: Operation) -> Value | None:
        """``op`` rebuilt on blocked operands, if one operand is blocked, the result has its shape and
        every other operand converts."""
        shape = op.results[0].type.shape
        if len(op.results) != 1 or not any(id(v) in self.blocked and v.type.shape == shape for v in op.operands):
            return None
        rewriter = Rewriter.before(op)
        operands = []
        for value in op.operands:
            converted = self._operand(value, rewriter, op.loc, full=shape)
            if converted is None:
                return None
            operands.append(converted)
        return rewriter.build(type(op), operands, dict(op.attributes), loc=op.loc).result

    def _operand(self, value: Value, rewriter: Rewriter, loc: str | None, full: tuple | None = None,
                 channel_axis: int | None = None) -> Value | None:
        """``value`` in the blocked layout: the blocked value it stands for, a scalar as it is, a constant
        converted here, a computed tensor reordered (at ``loc``, the reading op's). ``full`` is the NCHW
        shape it broadcasts to; a value of the conv's channels alone (a bias) gives ``channel_axis``. None
        when its channels are neither all of them nor one (they would not broadcast per block)."""
        blocked = self.blocked.get(id(value))
        if blocked is not None:
            return blocked
        shape = value.type.shape
        if not shape:
            return value
        if channel_axis is not None:
            dims = (1, shape[0], 1, 1)
        elif len(shape) <= 4 and full is not None and len(full) == 4:
            dims = (1,) * (4 - len(shape)) + tuple(shape)
        else:
            return None
        n, channels, height, width = dims
        if channels % self.block and channels != 1 or not value.type.is_static:
            return None
        array = constant_value(value)
        if array is not None:
            return self._constant(rewriter, array, dims, value.op.loc)
        if channels == 1:
            return rewriter.build(ReshapeOp, [value], {"shape": [n, 1, height, width, 1]}, loc=loc).result
        split = rewriter.build(ReshapeOp, [value], {"shape": [n, channels // self.block, self.block, height, width]},
                               loc=loc).result
        reordered = rewriter.build(TransposeOp, [split], {"perm": [0, 1, 3, 4, 2]}, loc=loc).result
        self.blocked[id(value)] = reordered
        return reordered

    def _constant(self, rewriter: Rewriter, array, dims: tuple, loc: str | None) -> Value:
        """A constant ``array`` of NCHW ``dims`` (each 1 or the full size; channels all or one) in blocks."""
        n, channels, height, width = dims
        array = array.reshape(dims)
        if channels != 1:
            array = array.reshape(n, channels // self.block, self.block, height, width).transpose(0, 1, 3, 4, 2)
        else:
            array = array.reshape(n, 1, height, width, 1)
        name = f"{(loc_names(loc) or ['constant'])[0]}_blocked"
        return make_constant(rewriter, array, name, self.taken, loc=loc)

    def _replace(self, op: Operation, value: Value) -> None:
        """Replace ``op`` by its blocked ``value`` reordered back to NCHW, for the ops that read it unblocked
        (the reorder stays dead where none do)."""
        rewriter = Rewriter.before(op)
        n, blocks, height, width, block = value.type.shape
        merged = rewriter.build(TransposeOp, [value], {"perm": [0, 1, 4, 2, 3]}, loc=op.loc).result
        back = rewriter.build(ReshapeOp, [merged], {"shape": [n, blocks * block, height, width]}, loc=op.loc).result
        self.blocked[id(back)] = value
        Rewriter.replace(op, [back])
