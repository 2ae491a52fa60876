"""Pass ``recognize-gelu``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fusecc.dialects.tensor import AddOp, DivOp, ErfOp, GeluOp, MulOp, NegOp, PowOp, SubOp, TanhOp
from fusecc.ir.core import Module, Operation, Value
from fusecc.ir.printer import loc_names
from fusecc.ir.rewriter import Rewriter

from .manager import Pass
from .rewrite import constant_value

#: a polynomial in the GELU's input x and the tanh/erf result t: {(degree of x, degree of t): coefficient}
Poly = dict[tuple[int, int], float]

_ARITHMETIC = (AddOp, SubOp, MulOp, DivOp, NegOp, PowOp)
#: 0.5 x (1 + t): the outer expression of both GELU forms
_OUTER = {(1, 0): 0.5, (1, 1): 0.5}
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
#: the argument of tanh / erf as a polynomial in x, per form
_INNER = {TanhOp: ("tanh", {(1, 0): _SQRT_2_OVER_PI, (3, 0): _SQRT_2_OVER_PI * 0.044715}),
          ErfOp: ("none", {(1, 0): 1.0 / math.sqrt(2.0)})}
#: how many single-use ops above tanh/erf the outer product may take
_MAX_CLIMB = 6


@dataclass
class RecognizeGelu(Pass):
    """Rewrites GELU written out in primitive ops into one ``tensor.gelu``.

    Exporters spell GELU as ``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 *
    x^3)))`` or ``0.5 * x * (1 + erf(x / sqrt(2)))`` in any association of
    Add, Mul, Sub, Div, Neg and Pow. The pass evaluates the expressions around
    each Tanh and Erf symbolically, as polynomials in x and the tanh/erf
    result, so every spelling with the same coefficients (to 1e-4) matches.
    The matched ops must be used only inside the pattern, except x.

    It runs with fusion: the single op lowers to the cheaper identity
    ``x * sigmoid(2u)`` instead of a tanh, and the fusion report lists the
    replaced nodes under the one op's fused location.
    """

    name = "recognize-gelu"

    def run(self, module: Module) -> None:
        for func in module.funcs:
            for op in list(func.body.ops):
                if type(op) in _INNER:
                    _rewrite(op)


def _rewrite(special: Operation) -> None:
    approximate, inner_expected = _INNER[type(special)]
    inner_ops: list[Operation] = []
    x = _single_leaf(special.input)
    if x is None or not x.type.dtype.is_float:
        return
    inner = _poly(special.input, x, None, inner_ops, set())
    if inner is None or not _close(inner, inner_expected):
        return
    t = special.results[0]
    current, outer_ops = t, []
    for _ in range(_MAX_CLIMB):
        if len(current.uses) != 1:
            return
        user = current.uses[0][0]
        if not isinstance(user, _ARITHMETIC):
            return
        visited: list[Operation] = []
        poly = _poly(user.results[0], x, t, visited, set(), top=True)
        if poly is None:
            return
        outer_ops = visited
        current = user.results[0]
        if current.type == x.type and _close(poly, _OUTER):
            break
    else:
        return
    members = _in_block_order(outer_ops + [special] + inner_ops)
    names = [name for op in members for name in loc_names(op.loc)]
    root = current.op
    attributes = {"approximate": approximate} if approximate != "none" else {}
    gelu = Rewriter.before(root).build(GeluOp, [x], attributes, loc=names if len(names) > 1 else root.loc)
    current.replace_all_uses_with(gelu.result)
    for op in reversed(members):
        op.erase()


def _single_leaf(value: Value) -> Value | None:
    """The one non-constant value the arithmetic tree of ``value`` is built from, or None."""
    leaves = set()

    def visit(v: Value) -> None:
        op = getattr(v, "op", None)
        if constant_value(v) is not None:
            return
        if isinstance(op, _ARITHMETIC) and len(v.uses) == 1:
            for operand in op.operands:
                visit(operand)
            return
        leaves.add(v)

    visit(value)
    if len(leaves) != 1:
        return None
    return leaves.pop()


def _poly(value: Value, x: Value, t: Value | None, ops: list[Operation], on_path: set,
          top: bool = False) -> Poly | None:
    """``value`` as a polynomial in ``x`` and ``t``, collecting the ops it passes through into ``ops``.

    Ops below the ``top`` one must be used once (by the pattern); constants
    must hold one element.
    """
    if value is x:
        return {(1, 0): 1.0}
    if t is not None and value is t:
        return {(0, 1): 1.0}
    array = constant_value(value)
    if array is not None:
        return {(0, 0): float(array.reshape(-1)[0])} if array.size == 1 else None
    op = getattr(value, "op", None)
    if not isinstance(op, _ARITHMETIC) or (len(value.uses) != 1 and not top) or id(op) in on_path:
        return None
    on_path.add(id(op))
    if isinstance(op, PowOp):
        exponent = constant_value(op.rhs)
        if exponent is None or exponent.size != 1 or float(exponent.reshape(-1)[0]) not in (1.0, 2.0, 3.0, 4.0):
            return None
        base = _poly(op.lhs, x, t, ops, on_path)
        result = base
        for _ in range(int(exponent.reshape(-1)[0]) - 1):
            result = None if result is None else _times(result, base)
    elif isinstance(op, NegOp):
        base = _poly(op.input, x, t, ops, on_path)
        result = None if base is None else _scale(base, -1.0)
    else:
        a = _poly(op.lhs, x, t, ops, on_path)
        b = _poly(op.rhs, x, t, ops, on_path)
        if a is None or b is None:
            return None
        if isinstance(op, AddOp):
            result = _plus(a, b)
        elif isinstance(op, SubOp):
            result = _plus(a, _scale(b, -1.0))
        elif isinstance(op, MulOp):
            result = _times(a, b)
        else:
            divisor = b.get((0, 0))
            result = _scale(a, 1.0 / divisor) if set(b) == {(0, 0)} and divisor else None
    if result is not None:
        ops.append(op)
    return result


def _plus(a: Poly, b: Poly) -> Poly:
    out = dict(a)
    for key, coefficient in b.items():
        out[key] = out.get(key, 0.0) + coefficient
    return out


def _scale(a: Poly, factor: float) -> Poly:
    return {key: coefficient * factor for key, coefficient in a.items()}


def _times(a: Poly, b: Poly) -> Poly:
    out: Poly = {}
    for (ax, at), ca in a.items():
        for (bx, bt), cb in b.items():
            key = (ax + bx, at + bt)
            out[key] = out.get(key, 0.0) + ca * cb
    return out


def _close(got: Poly, want: Poly) -> bool:
    scale = max(abs(c) for c in want.values())
    return all(np.isclose(got.get(key, 0.0), want.get(key, 0.0), rtol=1e-4, atol=1e-6 * scale)
               for key in set(got) | set(want))


def _in_block_order(ops: list[Operation]) -> list[Operation]:
    """``ops`` in the order of their block (producers before users)."""
    position = {id(op): i for i, op in enumerate(ops[0].parent.ops)}
    return sorted(ops, key=lambda op: position[id(op)])
