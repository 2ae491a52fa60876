"""Pass ``pad-conv-inputs``."""

from __future__ import annotations

from dataclasses import dataclass

from fusecc.dialects.tensor import ConvOp, PadOp
from fusecc.ir.core import Module
from fusecc.ir.rewriter import Rewriter

from .manager import Pass


@dataclass
class PadConvInputs(Pass):
    """Moves the zero padding of stride-1 2-D convolutions into an explicit ``tensor.pad``.

    ``conv(x, pads=p)`` becomes ``conv(pad(x, p), pads=0)``. The unpadded
    conv reads every input row as one contiguous run, which is what the
    implicit-GEMM micro-kernel needs; the pad fuses into the kernel that
    produces ``x`` (the previous conv's epilogue writes the padded tensor).
    Grouped, strided and dilated convs, 1x1 convs and unpadded ones are left
    alone.
    """

    name = "pad-conv-inputs"

    def run(self, module: Module) -> None:
        for func in module.funcs:
            for op in list(func.body.ops):
                if not self._applies(op):
                    continue
                x = op.input
                top, left, bottom, right = op.pads
                rewriter = Rewriter.before(op)
                pad = rewriter.build(PadOp, [x], {"pads": [0, 0, top, left, 0, 0, bottom, right]}, loc=op.loc)
                attributes = dict(op.attributes)
                attributes["pads"] = [0, 0, 0, 0]
                conv = rewriter.build(ConvOp, [pad.result] + list(op.operands[1:]), attributes, loc=op.loc)
                Rewriter.replace(op, [conv.result])

    @staticmethod
    def _applies(op) -> bool:
        if not isinstance(op, ConvOp) or op.input.type.rank != 4 or op.group != 1:
            return False
        strides, pads, dilations = op.window()
        return any(pads) and list(op.kernel_shape) != [1, 1] and all(s == 1 for s in strides) \
            and all(d == 1 for d in dilations) and op.input.type.dtype.is_float
