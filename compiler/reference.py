"""The reference interpreter: runs a tensor-level module with each op's numpy reference.

Fused regions are interpreted by running their bodies, so the interpreter
checks a module before and after fusion alike. It is the oracle the
differential tests compare native code against, next to ONNX Runtime.
"""

from __future__ import annotations

import numpy as np

from fusecc.dialects.kernel import FusedOp
from fusecc.ir.core import Block, IRError, Module


def interpret(module: Module, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Evaluate ``@main`` on ``feeds`` (keyed by the ONNX input names) and return its results."""
    main = module.main
    names = main.attr("input_names") or [a.name_hint for a in main.args]
    missing = [n for n in names if n not in feeds]
    if missing:
        raise IRError(f"no value given for input '{missing[0]}'")
    env = {id(arg): np.asarray(feeds[name]) for arg, name in zip(main.args, names)}
    return _run_block(main.body, env)


def run_region(region: FusedOp, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Evaluate a ``kernel.fused`` region on arrays for its operands; its results, in order."""
    return _run_block(region.body, {id(arg): np.asarray(value) for arg, value in zip(region.body.args, inputs)})


def _run_block(block: Block, env: dict) -> list[np.ndarray]:
    for op in block.ops:
        if op.name in ("func.return", "kernel.yield"):
            return [env[id(v)] for v in op.operands]
        args = [env[id(v)] for v in op.operands]
        if isinstance(op, FusedOp):
            inner = dict(env)
            inner.update({id(a): value for a, value in zip(op.body.args, args)})
            outputs = _run_block(op.body, inner)
        elif hasattr(op, "reference"):
            outputs = op.reference(*args)
        else:
            raise IRError(f"{op.describe()}: the reference interpreter runs tensor-level modules only")
        for result, value in zip(op.results, outputs):
            env[id(result)] = np.asarray(value)
    raise IRError("block has no terminator")
