"""Pass ``subsample-pointwise-convs``."""

from __future__ import annotations

from dataclasses import dataclass

from fusecc.dialects.tensor import ConvOp, SliceOp
from fusecc.ir.core import Module

from .manager import Pass
from .rewrite import replace_op


@dataclass
class SubsamplePointwiseConvs(Pass):
    """Rewrites a strided, unpadded 1x1 convolution as a slice followed by a stride-1 1x1 conv.

    ``conv(x, 1x1, strides=s)`` reads only every s-th row and column, so it
    equals ``conv(x[:, :, ::s, ::s], 1x1)``: a GEMM over contiguous planes,
    which runs on the micro-kernel (ResNet's projection shortcuts). The
    slice is a cheap copy of the pixels used. Everything else is left alone.
    """

    name = "subsample-pointwise-convs"

    def run(self, module: Module) -> None:
        for func in module.funcs:
            for op in list(func.body.ops):
                if op.name != "tensor.conv" or op.operands[0].type.rank != 4 or list(op.kernel_shape) != [1, 1]:
                    continue
                strides, pads, dilations = op.window()
                if all(s == 1 for s in strides) or any(pads) or not op.operands[0].type.is_static:
                    continue
                x = op.operands[0]
                height, width = x.type.shape[2:]
                sliced = SliceOp.build([x], {"starts": [0, 0], "ends": [height, width], "axes": [2, 3],
                                             "steps": list(strides)}, loc=op.loc)
                func.body.insert_before(op, sliced)
                attributes = dict(op.attributes)
                attributes["strides"] = [1, 1]
                conv = ConvOp.build([sliced.result] + list(op.operands[1:]), attributes, loc=op.loc)
                func.body.insert_before(op, conv)
                replace_op(op, [conv.result])
