"""Pass ``space-to-depth-convs``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusecc.dialects.tensor import AddOp, ConvOp, PadOp, SliceOp, SpaceToDepthOp
from fusecc.ir.core import Module
from fusecc.ir.rewriter import Rewriter

from .manager import Pass
from .rewrite import constant_value, make_constant, resource_names


#: the share of a phase-regrouped kernel's taps that may be zero before each phase becomes a conv of its own
#: (a 3x3 kernel at stride 2 regroups into 4 phases of 2x2 taps: 7 of 16 zero)
MOST_ZERO_TAPS = 0.3
#: the fewest input channels for a conv of one phase: its depth is as small as channels x its taps (1 x 1)
LEAST_PHASE_CHANNELS = 32


@dataclass
class SpaceToDepthConvs(Pass):
    """Rewrites a strided 2-D convolution as a stride-1 one over the input's phases.

    With stride ``s``, output pixel (oh, ow) reads input (oh*s + kh, ow*s + kw);
    splitting the padded input into its s*s phases (``tensor.space_to_depth``)
    makes that (oh + kh // s, ow + kw // s) of phase (kh % s, kw % s), so

        conv(x, w, stride s, pads p) == conv(space_to_depth(pad(x, p'), s), w')

    where ``w'`` holds the taps of ``w`` regrouped by phase (zero where a phase
    has no tap) with a kernel of ceil(K / s), and ``p'`` extends ``p`` so the
    padded size divides by ``s``. The stride-1 conv runs on the implicit-GEMM
    micro-kernel (ResNet's stem and downsampling convs). Grouped and dilated
    convs and convs with non-constant weights are left alone.

    Where more than ``MOST_ZERO_TAPS`` of ``w'`` would be zero (a 3x3 kernel
    at stride 2: 7 of 16) and the input has ``LEAST_PHASE_CHANNELS`` channels
    or more, each phase instead becomes a stride-1 conv of its own taps over a
    strided ``tensor.slice`` of the padded input, and the phases' convs are
    added up (each add fuses into the next conv's epilogue): no multiply by a
    zero tap, at the price of a few narrower GEMMs.

    An unpadded strided 1x1 conv reads every s-th pixel of every s-th row and
    nothing else: it becomes a stride-1 1x1 conv over ``tensor.slice`` of
    those pixels, a GEMM over contiguous planes instead of one over rows
    whose skipped pixels are computed and thrown away.
    """

    name = "space-to-depth-convs"

    def run(self, module: Module) -> None:
        taken = resource_names(module)
        for func in module.funcs:
            for op in list(func.body.ops):
                weights = constant_value(op.weight) if isinstance(op, ConvOp) else None
                if weights is None:
                    continue
                if self._strided_pointwise(op):
                    self._subsample(op)
                    continue
                if not self._applies(op):
                    continue
                (stride, _), pads, _ = op.window()
                top, left, bottom, right = pads
                _, channels, height, width = op.input.type.shape
                out_h, out_w = op.results[0].type.shape[2:]
                k_h, k_w = op.kernel_shape
                phased_k = (-(-k_h // stride), -(-k_w // stride))
                # padded extents: whole phases, covering every tap of every output pixel
                full_h = stride * (out_h + phased_k[0] - 1)
                full_w = stride * (out_w + phased_k[1] - 1)
                extra_h, extra_w = full_h - (height + top + bottom), full_w - (width + left + right)
                if extra_h < 0 or extra_w < 0:
                    continue
                rewriter = Rewriter.before(op)
                pad = rewriter.build(PadOp, [op.input], {"pads": [0, 0, top, left, 0, 0, bottom + extra_h,
                                                                  right + extra_w]}, loc=op.loc)
                zero_taps = 1 - k_h * k_w / (stride * stride * phased_k[0] * phased_k[1])
                if zero_taps > MOST_ZERO_TAPS and channels >= LEAST_PHASE_CHANNELS:
                    self._phase_convs(op, pad.result, weights, taken)
                    continue
                phases = rewriter.build(SpaceToDepthOp, [pad.result], {"blocksize": stride}, loc=op.loc)
                regrouped = _regroup(weights, stride, phased_k)
                w_value = make_constant(rewriter, regrouped, "phased_w", taken, loc=op.loc)
                attributes = dict(op.attributes)
                attributes.update(kernel_shape=list(phased_k), strides=[1, 1], pads=[0, 0, 0, 0])
                conv = rewriter.build(ConvOp, [phases.result, w_value] + list(op.operands[2:]), attributes,
                                      loc=op.loc)
                Rewriter.replace(op, [conv.result])

    @staticmethod
    def _phase_convs(op, padded, weights: np.ndarray, taken) -> None:
        """``op`` as the sum of a stride-1 conv per phase of ``padded`` (the input with the conv's padding and
        enough more to hold whole phases), each over that phase's taps of ``weights``; the bias goes with
        the first."""
        (stride, _), _, _ = op.window()
        out_h, out_w = op.results[0].type.shape[2:]
        rewriter, total = Rewriter.before(op), None
        for row_phase in range(stride):
            for column_phase in range(stride):
                taps = np.ascontiguousarray(weights[:, :, row_phase::stride, column_phase::stride])
                k_h, k_w = taps.shape[2:]
                phase = rewriter.build(SliceOp, [padded], {"starts": [row_phase, column_phase],
                                                           "ends": [row_phase + stride * (out_h + k_h - 2) + 1,
                                                                    column_phase + stride * (out_w + k_w - 2) + 1],
                                                           "axes": [2, 3], "steps": [stride, stride]}, loc=op.loc)
                w_value = make_constant(rewriter, taps, "phase_w", taken, loc=op.loc)
                attributes = dict(op.attributes)
                attributes.update(kernel_shape=[k_h, k_w], strides=[1, 1], pads=[0, 0, 0, 0])
                operands = [phase.result, w_value] + (list(op.operands[2:]) if total is None else [])
                conv = rewriter.build(ConvOp, operands, attributes, loc=op.loc)
                total = conv.result if total is None else rewriter.build(AddOp, [conv.result, total], loc=op.loc).result
        Rewriter.replace(op, [total])

    @staticmethod
    def _strided_pointwise(op) -> bool:
        x = op.input.type
        if x.rank != 4 or not x.is_static or not x.dtype.is_float or list(op.kernel_shape) != [1, 1]:
            return False
        strides, pads, _ = op.window()
        return any(s > 1 for s in strides) and not any(pads)

    @staticmethod
    def _subsample(op) -> None:
        strides, _, _ = op.window()
        height, width = op.input.type.shape[2:]
        rewriter = Rewriter.before(op)
        pixels = rewriter.build(SliceOp, [op.input], {"starts": [0, 0], "ends": [height, width], "axes": [2, 3],
                                                      "steps": list(strides)}, loc=op.loc)
        attributes = dict(op.attributes)
        attributes.update(strides=[1, 1])
        conv = rewriter.build(ConvOp, [pixels.result] + list(op.operands[1:]), attributes, loc=op.loc)
        Rewriter.replace(op, [conv.result])

    @staticmethod
    def _applies(op) -> bool:
        if op.input.type.rank != 4 or op.group != 1 or not op.input.type.is_static:
            return False
        strides, _, dilations = op.window()
        return strides[0] == strides[1] > 1 and all(d == 1 for d in dilations) and \
            list(op.kernel_shape) != [1, 1] and op.input.type.dtype.is_float


def _regroup(weights: np.ndarray, stride: int, phased_k: tuple[int, int]) -> np.ndarray:
    """w'[co, (ph*s + pw)*C + ci, a, b] = w[co, ci, a*s + ph, b*s + pw] (0 past the kernel).

    The channel order is space_to_depth's (DCR): phase-major, then input channel.
    """
    c_out, c_in, k_h, k_w = weights.shape
    out = np.zeros((c_out, stride * stride * c_in) + phased_k, dtype=weights.dtype)
    for ph in range(stride):
        for pw in range(stride):
            taps = weights[:, :, ph::stride, pw::stride]
            base = (ph * stride + pw) * c_in
            out[:, base:base + c_in, :taps.shape[2], :taps.shape[3]] = taps
    return out
