"""Pass ``fold-batchnorm``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusecc.dialects.tensor import BatchNormOp, ConvOp
from fusecc.ir.core import Module
from fusecc.ir.printer import loc_names
from fusecc.ir.rewriter import Rewriter

from .manager import Pass
from .rewrite import constant_value, make_constant, resource_names


@dataclass
class FoldBatchNorm(Pass):
    """Folds an inference BatchNormalization into the Conv that feeds it.

    ``bn(conv(x, w, b))`` becomes ``conv(x, w * s, (b - mean) * s + beta)``
    with ``s = gamma / sqrt(var + eps)`` per output channel, so the network
    runs one op where it had two. Applies only when the conv's result has no
    other user and the weights and BatchNorm parameters are constants.
    """

    name = "fold-batchnorm"

    def run(self, module: Module) -> None:
        taken = resource_names(module)
        for func in module.funcs:
            for bn in list(func.body.ops):
                if not isinstance(bn, BatchNormOp):
                    continue
                conv = getattr(bn.input, "op", None)
                if not isinstance(conv, ConvOp) or len(conv.results[0].uses) != 1:
                    continue
                weight = constant_value(conv.weight)
                params = [constant_value(v) for v in (bn.scale, bn.bias, bn.mean, bn.variance)]
                bias = constant_value(conv.bias) if conv.bias is not None else None
                if weight is None or any(p is None for p in params) or (conv.bias is not None and bias is None):
                    continue
                gamma, beta, mean, var = (p.astype(np.float64) for p in params)
                scale = gamma / np.sqrt(var + bn.epsilon)
                dtype = weight.dtype
                new_weight = (weight.astype(np.float64) * scale.reshape((-1,) + (1,) * (weight.ndim - 1))).astype(dtype)
                old_bias = np.zeros_like(mean) if bias is None else bias.astype(np.float64)
                new_bias = ((old_bias - mean) * scale + beta).astype(dtype)
                base = (loc_names(conv.loc) or ["conv"])[0]
                w_value = make_constant(Rewriter.before(conv), new_weight, f"{base}_w", taken)
                b_value = make_constant(Rewriter.before(conv), new_bias, f"{base}_b", taken)
                loc = loc_names(conv.loc) + loc_names(bn.loc)
                folded = Rewriter.before(bn).build(ConvOp, [conv.input, w_value, b_value], dict(conv.attributes),
                                                   loc=loc if len(loc) > 1 else conv.loc)
                Rewriter.replace(bn, [folded.result])
                conv.erase()
