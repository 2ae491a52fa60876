"""RNN, GRU and LSTM, imported as their time steps unrolled into tensor ops.

The sequence length is static, so each step is a few ops: the input
projection of every step is one MatMul ahead of the loop (``X @ W^T + Wb``),
then per step a MatMul with the recurrence weights, the gate activations and
the state update. Directions (forward, reverse, bidirectional), ``layout``,
``clip``, the activation list, GRU's ``linear_before_reset``, LSTM peepholes
and ``input_forget``, initial states and ``sequence_lens`` follow the ONNX
definitions. With ``sequence_lens``, steps past a batch entry's length keep its
state and output zeros; the reverse direction runs over each entry's own
length (``tensor.reverse_sequence`` before and after).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fusecc.dialects import tensor as T
from fusecc.ir import DType, Value

if TYPE_CHECKING:
    from .onnx_import import NodeContext

#: op -> (number of gates, default activations of one direction)
RECURRENT = {"RNN": (1, ["Tanh"]), "GRU": (3, ["Sigmoid", "Tanh"]), "LSTM": (4, ["Sigmoid", "Tanh", "Tanh"])}


class _Builder:
    """Tensor ops for one node, in a terse spelling."""

    def __init__(self, ctx: "NodeContext"):
        self.ctx = ctx

    def op(self, cls, *operands, **attrs) -> Value:
        return self.ctx.build(cls, list(operands), attrs)[0]

    def const(self, value, like: Value) -> Value:
        return self.ctx.constant(np.asarray(value, dtype=like.type.dtype.numpy))

    def slice(self, x: Value, axis: int, start: int, end: int) -> Value:
        return self.op(T.SliceOp, x, starts=[start], ends=[end], axes=[axis], steps=[1])

    def reshape(self, x: Value, shape) -> Value:
        shape = [int(d) for d in shape]
        return x if list(x.type.shape) == shape else self.op(T.ReshapeOp, x, shape=shape)

    def add(self, *values: Value) -> Value:
        total = values[0]
        for value in values[1:]:
            total = self.op(T.AddOp, total, value)
        return total

    def mul(self, a: Value, b: Value) -> Value:
        return self.op(T.MulOp, a, b)

    def concat(self, values: list[Value], axis: int) -> Value:
        return values[0] if len(values) == 1 else self.op(T.ConcatOp, *values, axis=axis)


def _activation(b: _Builder, name: str, alpha, beta):
    """The function an ONNX activation name denotes, with its alpha and beta."""
    simple = {"Relu": T.ReluOp, "Tanh": T.TanhOp, "Sigmoid": T.SigmoidOp, "Softsign": T.SoftsignOp,
              "Softplus": T.SoftplusOp}
    if name in simple:
        return lambda x: b.op(simple[name], x)
    if name == "LeakyRelu":
        return lambda x: b.op(T.LeakyReluOp, x, alpha=0.01 if alpha is None else alpha)
    if name == "ThresholdedRelu":
        return lambda x: b.op(T.ThresholdedReluOp, x, alpha=1.0 if alpha is None else alpha)
    if name == "Elu":
        return lambda x: b.op(T.EluOp, x, alpha=1.0 if alpha is None else alpha)
    if name == "HardSigmoid":
        return lambda x: b.op(T.HardSigmoidOp, x, alpha=0.2 if alpha is None else alpha,
                              beta=0.5 if beta is None else beta)
    if name == "Affine":
        return lambda x: b.add(b.mul(x, b.const(1.0 if alpha is None else alpha, x)), b.const(beta or 0.0, x))
    if name == "ScaledTanh":
        return lambda x: b.mul(b.op(T.TanhOp, b.mul(x, b.const(1.0 if beta is None else beta, x))),
                               b.const(1.0 if alpha is None else alpha, x))
    raise b.ctx.error(f"unknown activation '{name}'")


def convert_recurrent(ctx: "NodeContext") -> list[Value | None]:
    b = _Builder(ctx)
    gates, defaults = RECURRENT[ctx.op_type]
    x = ctx.input(0)
    if None in x.type.shape:
        raise ctx.need_static(0, f"{ctx.op_type} (its steps are unrolled)")
    layout = ctx.attr("layout", 0)
    if layout:
        x = b.op(T.TransposeOp, x, perm=[1, 0, 2])
    steps, batch, _ = x.type.shape
    hidden = ctx.attr("hidden_size")
    if hidden is None:
        hidden = ctx.input_type(2).shape[-1]
    direction = ctx.attr("direction", "forward")
    directions = {"forward": ["forward"], "reverse": ["reverse"], "bidirectional": ["forward", "reverse"]}.get(direction)
    if directions is None:
        raise ctx.error(f"unknown direction '{direction}'")
    names = ctx.attr("activations") or defaults * len(directions)
    alphas, betas = ctx.attr("activation_alpha") or [], ctx.attr("activation_beta") or []
    per_direction = len(defaults)
    if len(names) != per_direction * len(directions):
        raise ctx.error(f"activations {names} must name {per_direction} functions per direction")
    functions = [_activation(b, name, alphas[i] if i < len(alphas) else None, betas[i] if i < len(betas) else None)
                 for i, name in enumerate(names)]
    clip = ctx.attr("clip")
    lengths = ctx.input(4) if ctx.has_input(4) else None
    if lengths is not None and lengths.type.dtype is not DType.I64:
        lengths = b.op(T.CastOp, lengths, to=DType.I64)

    outputs, finals, cells = [], [], []
    for d, name in enumerate(directions):
        acts = functions[d * per_direction:(d + 1) * per_direction]
        if clip is not None:
            acts = [lambda v, f=f: f(b.op(T.ClipOp, v, min=-clip, max=clip)) for f in acts]
        sequence = x
        if name == "reverse":
            sequence = _reverse(b, x, lengths)
        ys, h, c = _direction(ctx, b, sequence, d, gates, hidden, acts, lengths)
        if name == "reverse":
            ys = _unreverse(b, ys, lengths)
        outputs.append(ys)
        finals.append(b.reshape(h, [1, batch, hidden]))
        if c is not None:
            cells.append(b.reshape(c, [1, batch, hidden]))
    y = b.concat([b.reshape(ys, [steps, 1, batch, hidden]) for ys in outputs], axis=1)
    y_h = b.concat(finals, axis=0)
    y_c = b.concat(cells, axis=0) if cells else None
    if layout:
        y = b.op(T.TransposeOp, y, perm=[2, 0, 1, 3])
        y_h = b.op(T.TransposeOp, y_h, perm=[1, 0, 2])
        y_c = b.op(T.TransposeOp, y_c, perm=[1, 0, 2]) if y_c is not None else None
    return [y, y_h] + ([y_c] if ctx.op_type == "LSTM" else [])


def _reverse(b: _Builder, x: Value, lengths: Value | None) -> Value:
    """The sequence in reverse time order (per batch entry, within its length)."""
    if lengths is None:
        steps = x.type.shape[0]
        return b.op(T.SliceOp, x, starts=[steps - 1], ends=[-steps - 1], axes=[0], steps=[-1])
    return b.op(T.ReverseSequenceOp, x, lengths, batch_axis=1, time_axis=0)


def _unreverse(b: _Builder, ys: Value, lengths: Value | None) -> Value:
    return _reverse(b, ys, lengths)


def _direction(ctx, b: _Builder, x: Value, d: int, gates: int, hidden: int, acts, lengths):
    """Run one direction over ``x`` [steps, batch, input]; (outputs [steps, batch, hidden], h, c)."""
    steps, batch, _ = x.type.shape
    size = gates * hidden
    w = b.reshape(b.slice(ctx.input(1), 0, d, d + 1), [size, x.type.shape[2]])
    r = b.reshape(b.slice(ctx.input(2), 0, d, d + 1), [size, hidden])
    w_t, r_t = b.op(T.TransposeOp, w, perm=[1, 0]), b.op(T.TransposeOp, r, perm=[1, 0])
    projected = b.op(T.MatMulOp, x, w_t)  # [steps, batch, size]
    w_bias = r_bias = None
    if ctx.has_input(3):
        bias = b.reshape(b.slice(ctx.input(3), 0, d, d + 1), [2 * size])
        w_bias, r_bias = b.slice(bias, 0, 0, size), b.slice(bias, 0, size, 2 * size)
    zeros = b.const(np.zeros((batch, hidden)), x)
    h = b.reshape(b.slice(ctx.input(5), 0, d, d + 1), [batch, hidden]) if ctx.has_input(5) else zeros
    c = None
    if ctx.op_type == "LSTM":
        c = b.reshape(b.slice(ctx.input(6), 0, d, d + 1), [batch, hidden]) if ctx.has_input(6) else zeros
    peephole = b.reshape(b.slice(ctx.input(7), 0, d, d + 1), [3 * hidden]) if ctx.op_type == "LSTM" and \
        ctx.has_input(7) else None

    def gate(values: Value, k: int) -> Value:
        return b.slice(values, 1, k * hidden, (k + 1) * hidden)

    ys = []
    for t in range(steps):
        xw = b.reshape(b.slice(projected, 0, t, t + 1), [batch, size])
        if w_bias is not None:
            xw = b.add(xw, w_bias)
        hr = b.op(T.MatMulOp, h, r_t)
        if ctx.op_type == "RNN":
            new_h, new_c = acts[0](b.add(xw, hr, r_bias) if r_bias is not None else b.add(xw, hr)), None
        elif ctx.op_type == "GRU":
            new_h, new_c = _gru_step(ctx, b, xw, hr, h, r_t, r_bias, gate, hidden, acts), None
        else:
            new_h, new_c = _lstm_step(ctx, b, xw, hr, c, r_bias, peephole, gate, hidden, acts)
        if lengths is not None:  # past a sequence's end, the state stays and the output is zero
            valid = b.reshape(b.op(T.LessOp, b.const(t, lengths), lengths), [batch, 1])
            new_h = b.op(T.WhereOp, valid, new_h, h)
            new_c = b.op(T.WhereOp, valid, new_c, c) if new_c is not None else None
            ys.append(b.op(T.WhereOp, valid, new_h, zeros))
        else:
            ys.append(new_h)
        h, c = new_h, new_c
    return b.concat([b.reshape(y, [1, batch, hidden]) for y in ys], axis=0), h, c


def _gru_step(ctx, b, xw, hr, h, r_t, r_bias, gate, hidden, acts):
    f, g = acts
    hr_bias = b.add(hr, r_bias) if r_bias is not None else hr
    z = f(b.add(gate(xw, 0), gate(hr_bias, 0)))
    r = f(b.add(gate(xw, 1), gate(hr_bias, 1)))
    if ctx.attr("linear_before_reset", 0):
        candidate = g(b.add(gate(xw, 2), b.mul(r, gate(hr_bias, 2))))
    else:
        reset = b.op(T.MatMulOp, b.mul(r, h), b.slice(r_t, 1, 2 * hidden, 3 * hidden))
        if r_bias is not None:
            reset = b.add(reset, b.slice(r_bias, 0, 2 * hidden, 3 * hidden))
        candidate = g(b.add(gate(xw, 2), reset))
    one = b.const(1.0, h)
    return b.add(b.mul(b.op(T.SubOp, one, z), candidate), b.mul(z, h))


def _lstm_step(ctx, b, xw, hr, c, r_bias, peephole, gate, hidden, acts):
    f, g, h_act = acts
    pre = b.add(xw, hr, r_bias) if r_bias is not None else b.add(xw, hr)
    i_pre, o_pre, f_pre, c_pre = (gate(pre, k) for k in range(4))
    if peephole is not None:
        p_i, p_o, p_f = (b.slice(peephole, 0, k * hidden, (k + 1) * hidden) for k in range(3))
        i_pre = b.add(i_pre, b.mul(p_i, c))
        f_pre = b.add(f_pre, b.mul(p_f, c))
    i = f(i_pre)
    forget = b.op(T.SubOp, b.const(1.0, i), i) if ctx.attr("input_forget", 0) else f(f_pre)
    new_c = b.add(b.mul(forget, c), b.mul(i, g(c_pre)))
    if peephole is not None:
        o_pre = b.add(o_pre, b.mul(p_o, new_c))
    new_h = b.mul(f(o_pre), h_act(new_c))
    return new_h, new_c
