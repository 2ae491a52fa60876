"""The ``tensor`` dialect: graph-level ops with ONNX semantics.

Each op is declared once here: its operands and typed attributes, verifier,
shape rule (``infer_types``), fusion kind and numpy reference (``reference``),
so a reference interpreter can run any tensor-level module. Operands that ONNX
passes as constant inputs in newer opsets (axes, pads, slice bounds, ...) are
attributes here; the frontend reads them from the constants.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from fusecc.ir.attributes import DenseAttr
from fusecc.ir.core import Operation, OpResult, VerifyError
from fusecc.ir.types import DType, TensorType

from .base import OpKind, attr, declared_attrs, operand

Shape = tuple


class _Reference:
    """The numpy kernels of ``tensor_reference``, imported on first use."""

    def __getattr__(self, name):
        from . import tensor_reference
        return getattr(tensor_reference, name)


R = _Reference()


class TensorOp(Operation):
    """Base of tensor ops: checks operand types and that results match the shape rule."""

    kind: ClassVar[OpKind] = OpKind.OPAQUE
    #: (min, max) operand count; max None means variadic
    arity: ClassVar[tuple[int, int | None]] = (1, 1)
    #: ONNX op types this op implements (for --list-ops and diagnostics)
    onnx: ClassVar[tuple[str, ...]] = ()
    float_only: ClassVar[bool] = False
    #: operands its micro-kernel streams from memory as vectors: nothing is fused into them
    streamed_operands: ClassVar[tuple[int, ...]] = ()
    #: its result is computed a block of rows at a time, so a fused region must read it at its own index
    row_blocked: ClassVar[bool] = False
    #: it only moves data: indices remapped, no arithmetic on values, no choice between inputs
    moves_data: ClassVar[bool] = False
    #: it needs a kernel when left alone (a constant becomes a weight, a reshape a view of its input)
    needs_kernel: ClassVar[bool] = True
    #: the data it reads (ONNX's X, input or data); ops with more operands name the others
    input = operand(0)

    def reduced_axes(self) -> list[int] | None:
        """The axes a reduction or a row op (softmax, a normalization, a scan) reduces; None for others."""
        return None

    def row_passes(self) -> int:
        """How often it reads each element of a reduced row that is not cached (softmax: max, sum, output)."""
        return 1

    def verify_(self) -> None:
        low, high = self.arity
        count = len(self.operands)
        if count < low or (high is not None and count > high):
            want = f"{low}" if low == high else f"{low} to {high if high is not None else 'any'}"
            raise self.error(f"expected {want} operands, got {count}")
        for field in declared_attrs(type(self)):
            field.check(self)
        for index, value in enumerate(self.operands):
            if not isinstance(value.type, TensorType):
                raise self.error(f"operand #{index} must be a tensor, got {value.type}")
        if self.float_only and not self.operands[0].type.dtype.is_float:
            raise self.error(f"expects floating-point operands, got {self.operands[0].type.dtype}")
        expected = self.infer_types()
        actual = [r.type for r in self.results]
        if len(expected) != len(actual):
            raise self.error(f"expected {len(expected)} results, got {len(actual)}")
        for index, (want, got) in enumerate(zip(expected, actual)):
            if not _compatible(want, got):
                raise self.error(f"result #{index} has type {got}, but its operands give {want}")

    @classmethod
    def build(cls, operands, attributes=None, loc: str | None = None) -> "TensorOp":
        """Create the op with result types from its shape rule, then verify it."""
        op = cls.create(operands, (), attributes, (), loc)
        op.results = []
        for index, result_type in enumerate(op.infer_types()):
            op.results.append(OpResult(result_type, op, index))
        op.verify()
        return op

    @property
    def in_types(self) -> list[TensorType]:
        return [v.type for v in self.operands]

    def constant_operand(self, index: int) -> np.ndarray | None:
        """The value of operand ``index`` when a ``tensor.constant`` produces it."""
        producer = getattr(self.operands[index], "op", None)
        return producer.value.value if isinstance(producer, ConstantOp) else None

    def check_indices(self, index: int, size: int | None, what: str) -> None:
        """A constant operand ``index`` of indices must lie in [-size, size) (ONNX Runtime refuses others)."""
        indices = self.constant_operand(index)
        if indices is None or size is None or indices.size == 0:
            return
        bad = (indices < -size) | (indices >= size)
        if bad.any():
            raise self.error(f"index {int(indices[bad].flat[0])} is out of range for {what} of size {size} "
                             f"(valid: {-size} to {size - 1})")

    def infer_types(self) -> list[TensorType]:
        """The result types implied by the operand types and attributes."""
        raise NotImplementedError(self.name)

    def reference(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Numpy evaluation of the op (results as a list)."""
        raise NotImplementedError(self.name)


def _compatible(want: TensorType, got) -> bool:
    if not isinstance(got, TensorType) or want.dtype != got.dtype or want.rank != got.rank:
        return False
    return all(w is None or g is None or w == g for w, g in zip(want.shape, got.shape))


def broadcast_shapes(op: Operation, *shapes: Shape) -> Shape:
    rank = max(len(s) for s in shapes)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    out = []
    for axis, dims in enumerate(zip(*padded)):
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise VerifyError(op, "operand shapes " + ", ".join(str(list(s)) for s in shapes)
                              + f" do not broadcast (axis {axis})")
        if known:
            out.append(known.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def normalize_axis(op: Operation, axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise VerifyError(op, f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


# --------------------------------------------------------------------------------------
# Constants and shapes
# --------------------------------------------------------------------------------------
class ConstantOp(TensorOp):
    """A constant tensor: ``%w = tensor.constant() {value = dense<...> : tensor<..>}``."""

    name = "tensor.constant"
    arity = (0, 0)
    needs_kernel = False
    onnx = ("Constant",)
    value = attr(DenseAttr)

    def infer_types(self):
        return [self.value.type]

    def reference(self):
        return [self.value.value]


class ShapeOp(TensorOp):
    name = "tensor.shape"
    onnx = ("Shape",)
    start = attr(int, 0)
    end = attr(int, None)

    def _range(self):
        rank = self.in_types[0].rank
        start = min(max(self.start + rank if self.start < 0 else self.start, 0), rank)
        end = rank if self.end is None else self.end
        end = min(max(end + rank if end < 0 else end, 0), rank)
        return start, max(end, start)

    def infer_types(self):
        start, end = self._range()
        return [TensorType((end - start,), DType.I64)]

    def reference(self, x):
        start, end = self._range()
        return [np.array(x.shape[start:end], dtype=np.int64)]


class ConstantOfShapeOp(TensorOp):
    name = "tensor.constant_of_shape"
    kind = OpKind.INJECTIVE
    arity = (0, 0)
    onnx = ("ConstantOfShape",)
    shape = attr([int])
    value = attr(DenseAttr)

    def infer_types(self):
        return [TensorType(tuple(self.shape), self.value.type.dtype)]

    def reference(self):
        return [np.full(self.shape, self.value.value.reshape(-1)[0], dtype=self.value.value.dtype)]


class RangeOp(TensorOp):
    name = "tensor.range"
    kind = OpKind.INJECTIVE
    arity = (0, 0)
    onnx = ("Range",)
    start = attr(float)
    delta = attr(float)
    count = attr(int)
    dtype = attr(DType)

    def infer_types(self):
        return [TensorType((self.count,), self.dtype)]

    def reference(self):
        values = self.start + self.delta * np.arange(self.count, dtype=np.float64)
        return [values.astype(self.dtype.numpy)]


# --------------------------------------------------------------------------------------
# Elementwise
# --------------------------------------------------------------------------------------
class UnaryOp(TensorOp):
    """out[i] = f(x[i])."""

    kind = OpKind.ELEMENTWISE
    result_bool: ClassVar[bool] = False

    def infer_types(self):
        x = self.in_types[0]
        return [TensorType(x.shape, DType.I1 if self.result_bool else x.dtype)]

    def reference(self, x):
        with np.errstate(all="ignore"):
            return [np.asarray(self.fn(x)).astype(DType.I1.numpy if self.result_bool else x.dtype, copy=False)]

    def fn(self, x):
        raise NotImplementedError


def _unary(op_name: str, onnx_name: str, fn, float_only=True, result_bool=False, **fields):
    body = {"name": f"tensor.{op_name}", "onnx": (onnx_name,), "float_only": float_only,
            "result_bool": result_bool, "fn": lambda self, x: fn(self, x),
            "__doc__": f"Elementwise ONNX {onnx_name}."}
    body.update(fields)
    return type(f"{onnx_name}Op", (UnaryOp,), body)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


NegOp = _unary("neg", "Neg", lambda s, x: -x, float_only=False)
AbsOp = _unary("abs", "Abs", lambda s, x: np.abs(x), float_only=False)
SqrtOp = _unary("sqrt", "Sqrt", lambda s, x: np.sqrt(x))
ExpOp = _unary("exp", "Exp", lambda s, x: np.exp(x))
LogOp = _unary("log", "Log", lambda s, x: np.log(x))
ErfOp = _unary("erf", "Erf", lambda s, x: R.erf(x))
ReluOp = _unary("relu", "Relu", lambda s, x: np.maximum(x, 0).astype(x.dtype), float_only=False)
SigmoidOp = _unary("sigmoid", "Sigmoid", lambda s, x: _sigmoid(x))
TanhOp = _unary("tanh", "Tanh", lambda s, x: np.tanh(x))
ReciprocalOp = _unary("reciprocal", "Reciprocal", lambda s, x: 1.0 / x)
FloorOp = _unary("floor", "Floor", lambda s, x: np.floor(x))
CeilOp = _unary("ceil", "Ceil", lambda s, x: np.ceil(x))
RoundOp = _unary("round", "Round", lambda s, x: np.round(x))
SignOp = _unary("sign", "Sign", lambda s, x: np.sign(x), float_only=False)
SinOp = _unary("sin", "Sin", lambda s, x: np.sin(x))
CosOp = _unary("cos", "Cos", lambda s, x: np.cos(x))
TanOp = _unary("tan", "Tan", lambda s, x: np.tan(x))
AsinOp = _unary("asin", "Asin", lambda s, x: np.arcsin(x))
AcosOp = _unary("acos", "Acos", lambda s, x: np.arccos(x))
AtanOp = _unary("atan", "Atan", lambda s, x: np.arctan(x))
SinhOp = _unary("sinh", "Sinh", lambda s, x: np.sinh(x))
CoshOp = _unary("cosh", "Cosh", lambda s, x: np.cosh(x))
AsinhOp = _unary("asinh", "Asinh", lambda s, x: np.arcsinh(x))
AcoshOp = _unary("acosh", "Acosh", lambda s, x: np.arccosh(x))
AtanhOp = _unary("atanh", "Atanh", lambda s, x: np.arctanh(x))
SoftplusOp = _unary("softplus", "Softplus", lambda s, x: np.logaddexp(0, x))
SoftsignOp = _unary("softsign", "Softsign", lambda s, x: x / (1 + np.abs(x)))
MishOp = _unary("mish", "Mish", lambda s, x: x * np.tanh(np.logaddexp(0, x)))
HardSwishOp = _unary("hard_swish", "HardSwish", lambda s, x: x * np.clip(x / 6 + 0.5, 0, 1))
NotOp = _unary("not", "Not", lambda s, x: np.logical_not(x), float_only=False)
IsNaNOp = _unary("isnan", "IsNaN", lambda s, x: np.isnan(x), result_bool=True)
BitwiseNotOp = _unary("bitwise_not", "BitwiseNot", lambda s, x: np.invert(x), float_only=False)
LeakyReluOp = _unary("leaky_relu", "LeakyRelu", lambda s, x: np.where(x >= 0, x, s.alpha * x),
                     alpha=attr(float, 0.01))
EluOp = _unary("elu", "Elu", lambda s, x: np.where(x >= 0, x, s.alpha * (np.exp(x) - 1)), alpha=attr(float, 1.0))
CeluOp = _unary("celu", "Celu", lambda s, x: np.maximum(x, 0) + np.minimum(0, s.alpha * (np.exp(x / s.alpha) - 1)),
                alpha=attr(float, 1.0))
SeluOp = _unary("selu", "Selu", lambda s, x: s.gamma * np.where(x > 0, x, s.alpha * (np.exp(x) - 1)),
                alpha=attr(float, 1.6732632423543772), gamma=attr(float, 1.0507009873554805))
ThresholdedReluOp = _unary("thresholded_relu", "ThresholdedRelu", lambda s, x: np.where(x > s.alpha, x, 0),
                           alpha=attr(float, 1.0))
HardSigmoidOp = _unary("hard_sigmoid", "HardSigmoid", lambda s, x: np.clip(s.alpha * x + s.beta, 0, 1),
                       alpha=attr(float, 0.2), beta=attr(float, 0.5))
ShrinkOp = _unary("shrink", "Shrink",
                  lambda s, x: np.where(x < -s.lambd, x + s.bias, np.where(x > s.lambd, x - s.bias, 0)),
                  float_only=False, bias=attr(float, 0.0), lambd=attr(float, 0.5))
GeluOp = _unary("gelu", "Gelu", lambda s, x: R.gelu(x, approximate=s.approximate),
                approximate=attr(("none", "tanh"), "none"))
ClipOp = _unary("clip", "Clip", lambda s, x: np.clip(x, s.min, s.max), float_only=False,
                min=attr(float, -math.inf), max=attr(float, math.inf))
IsInfOp = _unary("isinf", "IsInf",
                 lambda s, x: (np.isposinf(x) & bool(s.detect_positive)) | (np.isneginf(x) & bool(s.detect_negative)),
                 result_bool=True, detect_positive=attr(int, 1), detect_negative=attr(int, 1))


class CastOp(UnaryOp):
    """ONNX Cast: float to int truncates toward zero, anything to bool is ``!= 0``."""

    name = "tensor.cast"
    onnx = ("Cast", "CastLike")
    to = attr(DType)

    def infer_types(self):
        return [TensorType(self.in_types[0].shape, self.to)]

    def reference(self, x):
        with np.errstate(all="ignore"):
            if self.to is DType.I1:
                return [x != 0]
            return [x.astype(self.to.numpy)]


class BitcastOp(UnaryOp):
    """Reinterprets each element's bits as another dtype of the same width (bool as a byte, 0 or 1)."""

    name = "tensor.bitcast"
    onnx = ("BitCast",)
    to = attr(DType)

    def verify_(self):
        super().verify_()
        source = self.in_types[0].dtype
        if source.itemsize != self.to.itemsize or self.to is DType.I1 and source is not DType.I1:
            raise self.error(f"cannot reinterpret {source} as {self.to}: the widths differ")

    def infer_types(self):
        return [TensorType(self.in_types[0].shape, self.to)]

    def reference(self, x):
        x = x.astype(np.uint8) if x.dtype == np.bool_ else x.copy()  # a copy is contiguous, even 0-d
        return [x.view(self.to.numpy)]


class BinaryOp(TensorOp):
    """out = f(a, b) with numpy broadcasting; operands share one dtype."""

    kind = OpKind.BROADCAST
    arity = (2, 2)
    lhs = operand(0)
    rhs = operand(1)
    result_bool: ClassVar[bool] = False
    bool_operands: ClassVar[bool] = False

    def verify_(self):
        super().verify_()
        a, b = self.in_types
        if a.dtype != b.dtype:
            raise self.error(f"operands have different dtypes {a.dtype} and {b.dtype}")
        if self.bool_operands and a.dtype is not DType.I1:
            raise self.error(f"expects i1 operands, got {a.dtype}")

    def infer_types(self):
        a, b = self.in_types
        return [TensorType(broadcast_shapes(self, a.shape, b.shape), DType.I1 if self.result_bool else a.dtype)]

    def reference(self, a, b):
        with np.errstate(all="ignore"):
            out = np.asarray(self.fn(a, b))
        return [out.astype(DType.I1.numpy if self.result_bool else a.dtype, copy=False)]


def _binary(op_name: str, onnx_name: str, fn, result_bool=False, bool_operands=False, **fields):
    body = {"name": f"tensor.{op_name}", "onnx": (onnx_name,), "result_bool": result_bool,
            "bool_operands": bool_operands, "fn": lambda self, a, b: fn(self, a, b),
            "__doc__": f"Broadcasting ONNX {onnx_name}."}
    body.update(fields)
    return type(f"{onnx_name}Op", (BinaryOp,), body)


def _int_div(a, b):
    if a.dtype.kind in "iu":
        return np.trunc(a / np.where(b == 0, 1, b)).astype(a.dtype)
    return a / b


def _pow(a, b):
    if a.dtype.kind in "iu":
        return np.power(a.astype(np.float64), b).astype(a.dtype)
    return np.power(a, b)


AddOp = _binary("add", "Add", lambda s, a, b: a + b)
SubOp = _binary("sub", "Sub", lambda s, a, b: a - b)
MulOp = _binary("mul", "Mul", lambda s, a, b: a * b)
DivOp = _binary("div", "Div", lambda s, a, b: _int_div(a, b))
PowOp = _binary("pow", "Pow", lambda s, a, b: _pow(a, b))
MaxOp = _binary("max", "Max", lambda s, a, b: np.maximum(a, b))
MinOp = _binary("min", "Min", lambda s, a, b: np.minimum(a, b))
PReluOp = _binary("prelu", "PRelu", lambda s, a, b: np.where(a < 0, a * b, a))
ModOp = _binary("mod", "Mod", lambda s, a, b: R.mod(a, b, fmod=s.fmod), fmod=attr(int, 0))
EqualOp = _binary("equal", "Equal", lambda s, a, b: a == b, result_bool=True)
LessOp = _binary("less", "Less", lambda s, a, b: a < b, result_bool=True)
GreaterOp = _binary("greater", "Greater", lambda s, a, b: a > b, result_bool=True)
LessOrEqualOp = _binary("less_equal", "LessOrEqual", lambda s, a, b: a <= b, result_bool=True)
GreaterOrEqualOp = _binary("greater_equal", "GreaterOrEqual", lambda s, a, b: a >= b, result_bool=True)
AndOp = _binary("and", "And", lambda s, a, b: a & b, bool_operands=True)
OrOp = _binary("or", "Or", lambda s, a, b: a | b, bool_operands=True)
XorOp = _binary("xor", "Xor", lambda s, a, b: a ^ b, bool_operands=True)
BitwiseAndOp = _binary("bitwise_and", "BitwiseAnd", lambda s, a, b: a & b)
BitwiseOrOp = _binary("bitwise_or", "BitwiseOr", lambda s, a, b: a | b)
BitwiseXorOp = _binary("bitwise_xor", "BitwiseXor", lambda s, a, b: a ^ b)


class BitShiftOp(BinaryOp):
    """Integer shifts (arithmetic right shifts for signed types). Shifting by a negative amount or
    by the bit width or more gives what sign extension alone gives: -1 (right shift of a negative
    value) or 0."""

    name = "tensor.bitshift"
    onnx = ("BitShift",)
    direction = attr(("LEFT", "RIGHT"))

    def verify_(self):
        super().verify_()
        dtype = self.in_types[0].dtype
        if dtype.is_float or dtype is DType.I1:
            raise self.error(f"expects integer operands, got {dtype}")

    def fn(self, a, b):
        bits = np.dtype(a.dtype).itemsize * 8
        outside = (b >= bits) | (b < 0)
        amount = np.where(outside, 0, b)
        if self.direction == "LEFT":
            return np.where(outside, 0, np.left_shift(a, amount))
        fill = np.where(a < 0, -1, 0) if a.dtype.kind == "i" else 0
        return np.where(outside, fill, np.right_shift(a, amount))


class WhereOp(TensorOp):
    """out = cond ? x : y with three-way broadcasting."""

    name = "tensor.where"
    kind = OpKind.BROADCAST
    arity = (3, 3)
    condition = operand(0)
    if_true = operand(1)
    if_false = operand(2)
    onnx = ("Where",)

    def verify_(self):
        super().verify_()
        cond, x, y = self.in_types
        if cond.dtype is not DType.I1 or x.dtype != y.dtype:
            raise self.error(f"expects (i1, T, T) operands, got ({cond.dtype}, {x.dtype}, {y.dtype})")

    def infer_types(self):
        cond, x, y = self.in_types
        return [TensorType(broadcast_shapes(self, cond.shape, x.shape, y.shape), x.dtype)]

    def reference(self, cond, x, y):
        return [np.where(cond, x, y)]


class BatchNormOp(TensorOp):
    """Inference BatchNormalization: (x - mean) / sqrt(var + eps) * scale + bias per channel (axis 1)."""

    name = "tensor.batch_normalization"
    kind = OpKind.BROADCAST
    arity = (5, 5)
    scale = operand(1)
    bias = operand(2)
    mean = operand(3)
    variance = operand(4)
    onnx = ("BatchNormalization",)
    float_only = True
    epsilon = attr(float, 1e-5)

    def verify_(self):
        super().verify_()
        x = self.in_types[0]
        if x.rank < 2:
            raise self.error(f"input must have a channel axis, got {x}")
        for index, t in enumerate(self.in_types[1:], 1):
            if t.rank != 1 or (t.shape[0] is not None and x.shape[1] is not None and t.shape[0] != x.shape[1]):
                raise self.error(f"operand #{index} must be a vector of {x.shape[1]} channels, got {t}")

    def infer_types(self):
        return [self.in_types[0]]

    def reference(self, x, scale, bias, mean, var):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        inv = (scale / np.sqrt(var + np.float32(self.epsilon))).reshape(shape)
        return [((x - mean.reshape(shape)) * inv + bias.reshape(shape)).astype(x.dtype)]


# --------------------------------------------------------------------------------------
# Reductions and normalizations
# --------------------------------------------------------------------------------------
class ReduceOp(TensorOp):
    """Reduces ``axes`` (all when empty) of the input, keeping them as 1 when ``keepdims``."""

    kind = OpKind.REDUCTION
    reduction: ClassVar[str] = ""
    axes = attr([int], [])
    keepdims = attr(int, 1)

    def reduced_axes(self) -> list[int]:
        rank = self.in_types[0].rank
        axes = self.axes or list(range(rank))
        return sorted(normalize_axis(self, a, rank) for a in axes)

    def infer_types(self):
        x = self.in_types[0]
        axes = self.reduced_axes()
        shape = [1 if i in axes else d for i, d in enumerate(x.shape)] if self.keepdims else \
            [d for i, d in enumerate(x.shape) if i not in axes]
        return [TensorType(tuple(shape), x.dtype)]

    def reference(self, x):
        out = R.reduce(x, self.reduction, self.reduced_axes(), keepdims=self.keepdims)
        return [np.asarray(out).astype(x.dtype, copy=False)]


def _reduce(op_name: str, onnx_name: str):
    return type(f"{onnx_name}Op", (ReduceOp,), {
        "name": f"tensor.{op_name}", "onnx": (onnx_name,), "reduction": op_name.removeprefix("reduce_"),
        "__doc__": f"ONNX {onnx_name}."})


ReduceSumOp = _reduce("reduce_sum", "ReduceSum")
ReduceMeanOp = _reduce("reduce_mean", "ReduceMean")
ReduceMaxOp = _reduce("reduce_max", "ReduceMax")
ReduceMinOp = _reduce("reduce_min", "ReduceMin")
ReduceProdOp = _reduce("reduce_prod", "ReduceProd")
ReduceL1Op = _reduce("reduce_l1", "ReduceL1")
ReduceL2Op = _reduce("reduce_l2", "ReduceL2")
ReduceSumSquareOp = _reduce("reduce_sum_square", "ReduceSumSquare")
ReduceLogSumOp = _reduce("reduce_log_sum", "ReduceLogSum")
ReduceLogSumExpOp = _reduce("reduce_log_sum_exp", "ReduceLogSumExp")


class ArgReduceOp(TensorOp):
    kind = OpKind.REDUCTION
    axis = attr(int, 0)
    keepdims = attr(int, 1)
    select_last_index = attr(int, 0)

    def reduced_axes(self) -> list[int]:
        return [normalize_axis(self, self.axis, self.in_types[0].rank)]

    def infer_types(self):
        x = self.in_types[0]
        axis = normalize_axis(self, self.axis, x.rank)
        shape = [1 if i == axis else d for i, d in enumerate(x.shape)] if self.keepdims else \
            [d for i, d in enumerate(x.shape) if i != axis]
        return [TensorType(tuple(shape), DType.I64)]

    def reference(self, x):
        fn = R.argmax if self.name == "tensor.argmax" else R.argmin
        return [fn(x, axis=self.axis, keepdims=self.keepdims, select_last_index=self.select_last_index)]


class ArgMaxOp(ArgReduceOp):
    name = "tensor.argmax"
    onnx = ("ArgMax",)


class ArgMinOp(ArgReduceOp):
    name = "tensor.argmin"
    onnx = ("ArgMin",)


class AxisNormOp(TensorOp):
    """Normalizes along one axis (softmax family); the result has the input's type."""

    kind = OpKind.REDUCTION
    float_only = True
    axis = attr(int, -1)

    def reduced_axes(self) -> list[int]:
        return [normalize_axis(self, self.axis, self.in_types[0].rank)]

    def row_passes(self) -> int:
        return 3  # max, sum of exponentials, output

    def verify_(self):
        super().verify_()
        normalize_axis(self, self.axis, self.in_types[0].rank)

    def infer_types(self):
        return [self.in_types[0]]


class SoftmaxOp(AxisNormOp):
    name = "tensor.softmax"
    onnx = ("Softmax",)

    def reference(self, x):
        return [R.softmax(x, axis=self.axis)]


class LogSoftmaxOp(AxisNormOp):
    name = "tensor.log_softmax"
    onnx = ("LogSoftmax",)

    def reference(self, x):
        return [R.log_softmax(x, axis=self.axis)]


class HardmaxOp(AxisNormOp):
    name = "tensor.hardmax"
    onnx = ("Hardmax",)

    def reference(self, x):
        return [R.hardmax(x, axis=self.axis)]


class LayerNormOp(TensorOp):
    """LayerNormalization over axes [axis, rank): (x - mean) / sqrt(var + eps) * scale (+ bias)."""

    name = "tensor.layer_normalization"
    kind = OpKind.REDUCTION
    arity = (2, 3)
    scale = operand(1)
    bias = operand(2, optional=True)
    onnx = ("LayerNormalization",)
    float_only = True
    axis = attr(int, -1)
    epsilon = attr(float, 1e-5)

    def reduced_axes(self) -> list[int]:
        rank = self.in_types[0].rank
        return list(range(normalize_axis(self, self.axis, rank), rank))

    def row_passes(self) -> int:
        return 3  # mean, variance, output

    def infer_types(self):
        return [self.in_types[0]]

    def reference(self, x, scale, bias=None):
        out = R.layer_normalization(x, scale, bias, axis=self.axis, epsilon=self.epsilon)
        return [np.asarray(out[0] if isinstance(out, tuple) else out).astype(x.dtype)]


class RMSNormOp(TensorOp):
    """RMSNormalization over axes [axis, rank): x / sqrt(mean(x^2) + eps) * scale."""

    name = "tensor.rms_normalization"
    kind = OpKind.REDUCTION
    arity = (2, 2)
    scale = operand(1)
    onnx = ("RMSNormalization",)
    float_only = True
    axis = attr(int, -1)
    epsilon = attr(float, 1e-5)

    def reduced_axes(self) -> list[int]:
        rank = self.in_types[0].rank
        return list(range(normalize_axis(self, self.axis, rank), rank))

    def row_passes(self) -> int:
        return 2  # mean of squares, output

    def infer_types(self):
        return [self.in_types[0]]

    def reference(self, x, scale):
        return [np.asarray(R.rms_normalization(x, scale, axis=self.axis, epsilon=self.epsilon)).astype(x.dtype)]


class InstanceNormOp(TensorOp):
    """InstanceNormalization: normalizes each (n, c) plane, then per-channel scale and bias."""

    name = "tensor.instance_normalization"
    kind = OpKind.REDUCTION
    arity = (3, 3)
    scale = operand(1)
    bias = operand(2)
    onnx = ("InstanceNormalization",)
    float_only = True
    epsilon = attr(float, 1e-5)

    def reduced_axes(self) -> list[int]:
        return list(range(2, self.in_types[0].rank))

    def row_passes(self) -> int:
        return 3  # mean, variance, output

    def infer_types(self):
        return [self.in_types[0]]

    def reference(self, x, scale, bias):
        return [np.asarray(R.instance_normalization(x, scale, bias, epsilon=self.epsilon)).astype(x.dtype)]


class LRNOp(TensorOp):
    """Local response normalization across channels."""

    name = "tensor.lrn"
    kind = OpKind.COMPUTE
    onnx = ("LRN",)
    float_only = True
    size = attr(int)
    alpha = attr(float, 1e-4)
    beta = attr(float, 0.75)
    bias = attr(float, 1.0)

    def infer_types(self):
        return [self.in_types[0]]

    def reference(self, x):
        return [R.lrn(x, size=self.size, alpha=self.alpha, beta=self.beta, bias=self.bias)]


# --------------------------------------------------------------------------------------
# Compute ops
# --------------------------------------------------------------------------------------
class MatMulOp(TensorOp):
    """numpy.matmul semantics: 1-D operands are promoted, batch dimensions broadcast."""

    name = "tensor.matmul"
    kind = OpKind.COMPUTE
    arity = (2, 2)
    a = operand(0)
    b = operand(1)
    onnx = ("MatMul",)
    streamed_operands = (1,)
    row_blocked = True

    def infer_types(self):
        a, b = self.in_types
        if a.dtype != b.dtype:
            raise self.error(f"operands have different dtypes {a.dtype} and {b.dtype}")
        if a.rank == 0 or b.rank == 0:
            raise self.error("operands must have rank >= 1")
        a_shape = (1,) + a.shape if a.rank == 1 else a.shape
        b_shape = b.shape + (1,) if b.rank == 1 else b.shape
        k1, k2 = a_shape[-1], b_shape[-2]
        if k1 is not None and k2 is not None and k1 != k2:
            raise self.error(f"contraction dimensions differ: {a} @ {b}")
        batch = broadcast_shapes(self, a_shape[:-2], b_shape[:-2])
        shape = batch + ((a_shape[-2],) if a.rank > 1 else ()) + ((b_shape[-1],) if b.rank > 1 else ())
        return [TensorType(shape, a.dtype)]

    def reference(self, a, b):
        return [np.matmul(a, b)]


class GemmOp(TensorOp):
    """alpha * op(A) @ op(B) + beta * C, with C broadcast to (M, N)."""

    name = "tensor.gemm"
    kind = OpKind.COMPUTE
    arity = (2, 3)
    a = operand(0)
    b = operand(1)
    c = operand(2, optional=True)
    onnx = ("Gemm",)
    streamed_operands = (1,)
    row_blocked = True
    alpha = attr(float, 1.0)
    beta = attr(float, 1.0)
    transA = attr(int, 0)
    transB = attr(int, 0)

    def infer_types(self):
        a, b = self.in_types[:2]
        if a.rank != 2 or b.rank != 2:
            raise self.error(f"operands A and B must be 2-D, got {a} and {b}")
        m, k1 = a.shape[::-1] if self.transA else a.shape
        k2, n = b.shape[::-1] if self.transB else b.shape
        if k1 is not None and k2 is not None and k1 != k2:
            raise self.error(f"contraction dimensions differ: {k1} vs {k2}")
        if len(self.operands) == 3:
            broadcast_shapes(self, (m, n), self.in_types[2].shape)
        return [TensorType((m, n), a.dtype)]

    def reference(self, a, b, c=None):
        return [R.gemm(a, b, c, alpha=self.alpha, beta=self.beta, transA=self.transA, transB=self.transB)]


class WindowOp(TensorOp):
    """Ops sliding a window over spatial axes 2..: explicit pads (begin..., end...)."""

    kind = OpKind.COMPUTE
    float_only = True
    kernel_shape = attr([int])
    strides = attr([int], [])
    pads = attr([int], [])
    dilations = attr([int], [])

    def window(self):
        spatial = len(self.kernel_shape)
        strides = self.strides or [1] * spatial
        pads = self.pads or [0] * (2 * spatial)
        dilations = self.dilations or [1] * spatial
        if len(strides) != spatial or len(pads) != 2 * spatial or len(dilations) != spatial:
            raise self.error(f"strides/pads/dilations do not match kernel_shape {self.kernel_shape}")
        return strides, pads, dilations

    def spatial_shape(self, shape):
        """The extents of the axes the window slides over: those after N and C (and before a pooling's
        trailing block of channels)."""
        return tuple(shape[2:2 + len(self.kernel_shape)])

    def spatial_out(self, in_spatial, ceil_mode=0):
        strides, pads, dilations = self.window()
        out = []
        for size, k, s, lo, hi, d in zip(in_spatial, self.kernel_shape, strides, pads[:len(strides)],
                                          pads[len(strides):], dilations):
            if size is None:
                out.append(None)
                continue
            span = size + lo + hi - d * (k - 1) - 1
            count = (-(-span // s) if ceil_mode else span // s) + 1
            if ceil_mode and (count - 1) * s >= size + lo:
                count -= 1
            if count <= 0:
                raise self.error(f"window {self.kernel_shape} does not fit input spatial size {list(in_spatial)}")
            out.append(count)
        return tuple(out)

    def empty_window_runs(self, in_spatial, ceil_mode=0):
        """Per spatial axis, the runs ``[start, stop)`` of output positions whose window holds no input tap.

        Such windows lie wholly in the padding or between dilated taps that skip the
        input; a max over them has nothing to take.
        """
        strides, pads, dilations = self.window()
        runs = []
        for axis, (size, out) in enumerate(zip(in_spatial, self.spatial_out(in_spatial, ceil_mode))):
            taps = range(self.kernel_shape[axis])
            empty = [not any(0 <= o * strides[axis] - pads[axis] + k * dilations[axis] < size for k in taps)
                     for o in range(out)]
            axis_runs = []
            for o, is_empty in enumerate(empty):
                if is_empty and axis_runs and axis_runs[-1][1] == o:
                    axis_runs[-1][1] = o + 1
                elif is_empty:
                    axis_runs.append([o, o + 1])
            runs.append([tuple(r) for r in axis_runs])
        return runs


class ConvOp(WindowOp):
    """N-D convolution (NCHW) with groups; bias optional."""

    name = "tensor.conv"
    arity = (2, 3)
    weight = operand(1)
    bias = operand(2, optional=True)
    onnx = ("Conv",)
    streamed_operands = (0,)
    group = attr(int, 1)

    def verify_(self):
        super().verify_()
        x, w = self.in_types[:2]
        if x.rank != w.rank or x.rank != len(self.kernel_shape) + 2:
            raise self.error(f"input {x} and weight {w} do not match kernel_shape {self.kernel_shape}")
        if x.shape[1] is not None and w.shape[1] * self.group != x.shape[1]:
            raise self.error(f"input has {x.shape[1]} channels, weight expects {w.shape[1]} x group {self.group}")
        if w.shape[0] % self.group:
            raise self.error(f"{w.shape[0]} output channels do not divide into {self.group} groups")

    def infer_types(self):
        x, w = self.in_types[:2]
        return [TensorType((x.shape[0], w.shape[0]) + self.spatial_out(x.shape[2:]), x.dtype)]

    def reference(self, x, w, b=None):
        strides, pads, dilations = self.window()
        return [R.conv(x, w, b, kernel_shape=self.kernel_shape, strides=strides, pads=pads,
                       dilations=dilations, group=self.group)]


class BlockedConvOp(TensorOp):
    """2-D convolution in the blocked channel layout nChw{B}c: ``x`` is [N, C/B, H, W, B] (channel
    ``cb * B + c`` at ``[n, cb, h, w, c]``), the result [N, Cout/B, OH, OW, B].

    ``weight`` is the contraction's B matrix, [C/B * KH * KW * B, Cout]: its row
    ``((cb * KH + kh) * KW + kw) * B + c`` holds input channel ``cb * B + c`` at tap ``(kh, kw)``
    for every output channel. No padding (an explicit ``tensor.pad`` of the spatial axes gives it),
    no bias (a ``tensor.add`` follows) and no groups. ``blocked-convs`` creates it.

    With ``out_block`` the result's blocks hold that many channels and the input's as many as its last
    dimension says: a network's first conv reads its few channels as blocks of one, [N, C, H, W, 1].
    """

    name = "tensor.conv_blocked"
    kind = OpKind.COMPUTE
    arity = (2, 2)
    float_only = True
    weight = operand(1)
    streamed_operands = (0,)
    kernel_shape = attr([int])
    strides = attr([int], [1, 1])
    dilations = attr([int], [1, 1])
    #: channels per block of the result; 0: as many as the input's blocks
    out_block = attr(int, 0)

    @property
    def block(self) -> int:
        """Channels per block of the input (B)."""
        return self.in_types[0].shape[-1]

    @property
    def result_block(self) -> int:
        """Channels per block of the result."""
        return self.out_block or self.block

    def verify_(self):
        super().verify_()
        x, w = self.in_types
        if x.rank != 5 or w.rank != 2 or len(self.kernel_shape) != 2 or len(self.strides) != 2 \
                or len(self.dilations) != 2:
            raise self.error(f"expects a 5-D blocked input, a 2-D weight and 2-D window attributes, got {x} and {w}")
        depth = x.shape[1] * self.kernel_shape[0] * self.kernel_shape[1] * x.shape[4]
        if w.shape[0] != depth or w.shape[1] % self.result_block:
            raise self.error(f"weight {w} must be {depth} x a multiple of {self.result_block} for input {x}")

    def infer_types(self):
        x, w = self.in_types
        out = []
        for size, k, s, d in zip(x.shape[2:4], self.kernel_shape, self.strides, self.dilations):
            span = size - d * (k - 1) - 1
            if span < 0:
                raise self.error(f"window {self.kernel_shape} does not fit input spatial size {list(x.shape[2:4])}")
            out.append(span // s + 1)
        block = self.result_block
        return [TensorType((x.shape[0], w.shape[1] // block, *out, block), x.dtype)]

    def reference(self, x, w):
        n, blocks, height, width, block = x.shape
        kh, kw = self.kernel_shape
        c_out = w.shape[1]
        oihw = w.reshape(blocks, kh, kw, block, c_out).transpose(4, 0, 3, 1, 2).reshape(c_out, blocks * block, kh, kw)
        nchw = x.transpose(0, 1, 4, 2, 3).reshape(n, blocks * block, height, width)
        y = R.conv(nchw, oihw, None, kernel_shape=self.kernel_shape, strides=self.strides, pads=[0, 0, 0, 0],
                   dilations=self.dilations)
        out_h, out_w = y.shape[2:]
        out_block = self.result_block
        blocked = y.reshape(n, c_out // out_block, out_block, out_h, out_w).transpose(0, 1, 3, 4, 2)
        return [np.ascontiguousarray(blocked)]


class BlockedDepthwiseConvOp(WindowOp):
    """Depthwise 2-D convolution in the blocked channel layout nChw{B}c: ``x`` is [N, C/B, H, W, B], the
    result [N, C/B, OH, OW, B], each channel convolved with its own window of ``weight``, [C/B, KH, KW, B]
    (channel ``cb * B + c``'s tap ``(kh, kw)`` at ``[cb, kh, kw, c]``). Pads (zeros) as a conv's; no bias
    (a ``tensor.add`` follows). ``blocked-convs`` creates it from a conv with a group per channel."""

    name = "tensor.depthwise_conv_blocked"
    arity = (2, 2)
    weight = operand(1)
    streamed_operands = (0,)

    def verify_(self):
        super().verify_()
        x, w = self.in_types
        self.window()
        if x.rank != 5 or len(self.kernel_shape) != 2:
            raise self.error(f"expects a 5-D blocked input and a 2-D window, got {x} and {self.kernel_shape}")
        expected = (x.shape[1], *self.kernel_shape, x.shape[4])
        if tuple(w.shape) != expected:
            raise self.error(f"weight {w} must be {'x'.join(map(str, expected))} for input {x}")

    def infer_types(self):
        x = self.in_types[0]
        return [TensorType((*x.shape[:2], *self.spatial_out(self.spatial_shape(x.shape)), x.shape[4]), x.dtype)]

    def reference(self, x, w):
        n, blocks, height, width, block = x.shape
        channels = blocks * block
        oihw = w.transpose(0, 3, 1, 2).reshape(channels, 1, *self.kernel_shape)
        nchw = x.transpose(0, 1, 4, 2, 3).reshape(n, channels, height, width)
        strides, pads, dilations = self.window()
        y = R.conv(nchw, oihw, None, kernel_shape=self.kernel_shape, strides=strides, pads=pads,
                   dilations=dilations, group=channels)
        out_h, out_w = y.shape[2:]
        return [np.ascontiguousarray(y.reshape(n, blocks, block, out_h, out_w).transpose(0, 1, 3, 4, 2))]


class ConvTransposeOp(WindowOp):
    name = "tensor.conv_transpose"
    arity = (2, 3)
    weight = operand(1)
    bias = operand(2, optional=True)
    onnx = ("ConvTranspose",)
    group = attr(int, 1)
    output_padding = attr([int], [])

    def infer_types(self):
        x, w = self.in_types[:2]
        strides, pads, dilations = self.window()
        spatial = len(self.kernel_shape)
        extra = self.output_padding or [0] * spatial
        out = []
        for i, size in enumerate(x.shape[2:]):
            out.append(None if size is None else strides[i] * (size - 1) + extra[i]
                       + (self.kernel_shape[i] - 1) * dilations[i] + 1 - pads[i] - pads[i + spatial])
        return [TensorType((x.shape[0], w.shape[1] * self.group) + tuple(out), x.dtype)]

    def reference(self, x, w, b=None):
        strides, pads, dilations = self.window()
        return [R.conv_transpose(x, w, b, kernel_shape=self.kernel_shape, strides=strides, pads=pads,
                                 dilations=dilations, group=self.group,
                                 output_padding=self.output_padding or None)]


class PoolOp(WindowOp):
    """A pooling: the input is NCHW-like, or with ``channel_block`` B its channels are in blocks,
    [N, C/B, H, W, B] (the layout ``blocked-convs`` gives convs), pooled lane by lane."""

    ceil_mode = attr(int, 0)
    #: channels of the trailing block; 0: none
    channel_block = attr(int, 0)

    def verify_(self):
        super().verify_()
        x = self.in_types[0]
        trailing = 1 if self.channel_block else 0
        if x.rank != len(self.kernel_shape) + 2 + trailing:
            raise self.error(f"input {x} does not match kernel_shape {self.kernel_shape}"
                             + (f" and a trailing block of {self.channel_block} channels" if trailing else ""))
        if trailing and x.shape[-1] != self.channel_block:
            raise self.error(f"input {x} does not end in its block of {self.channel_block} channels")

    def infer_types(self):
        x = self.in_types[0]
        spatial = self.spatial_shape(x.shape)
        return [TensorType(x.shape[:2] + self.spatial_out(spatial, self.ceil_mode) + x.shape[2 + len(spatial):],
                           x.dtype)]

    def reference(self, x):
        if not self.channel_block:
            return [self.pooled(x)]
        n, blocks, *spatial, block = x.shape
        out = self.pooled(np.moveaxis(x, -1, 2).reshape(n, blocks * block, *spatial))
        return [np.moveaxis(out.reshape(n, blocks, block, *out.shape[2:]), 2, -1)]

    def pooled(self, x):
        """The reference result for an input in NCHW."""
        raise NotImplementedError


class MaxPoolOp(PoolOp):
    """Max over each window; a window holding no input element gives the dtype's lowest finite value.

    That value is ONNX Runtime's (its max starts there), where max's identity -inf
    would be the other natural choice; a window of -inf inputs still gives -inf.
    """

    name = "tensor.max_pool"
    onnx = ("MaxPool",)
    float_only = False

    def pooled(self, x):
        strides, pads, dilations = self.window()
        out = R.max_pool(x, kernel_shape=self.kernel_shape, strides=strides, pads=pads,
                         dilations=dilations, ceil_mode=self.ceil_mode)
        out = np.array(out[0] if isinstance(out, tuple) else out)
        if out.dtype.kind == "f":
            for axis, runs in enumerate(self.empty_window_runs(x.shape[2:], self.ceil_mode)):
                for start, stop in runs:
                    index = [slice(None)] * out.ndim
                    index[2 + axis] = slice(start, stop)
                    out[tuple(index)] = np.finfo(out.dtype).min
        return out


class MaxPoolIndicesOp(MaxPoolOp):
    """The Indices output of MaxPool: the flat position in the input of each window's (first) maximum."""

    name = "tensor.max_pool_indices"
    onnx = ()
    storage_order = attr(int, 0)

    def verify_(self):
        super().verify_()
        if self.channel_block:
            raise self.error("indices are positions in NCHW: no block of channels")

    def infer_types(self):
        return [TensorType(super().infer_types()[0].shape, DType.I64)]

    def reference(self, x):
        strides, pads, dilations = self.window()
        return [R.max_pool(x, kernel_shape=self.kernel_shape, strides=strides, pads=pads, dilations=dilations,
                           ceil_mode=self.ceil_mode, storage_order=self.storage_order, return_indices=True)[1]]


class LpPoolOp(WindowOp):
    name = "tensor.lp_pool"
    onnx = ("LpPool", "GlobalLpPool")
    ceil_mode = attr(int, 0)
    p = attr(int, 2)

    def infer_types(self):
        x = self.in_types[0]
        return [TensorType(x.shape[:2] + self.spatial_out(x.shape[2:], self.ceil_mode), x.dtype)]

    def reference(self, x):
        strides, pads, dilations = self.window()
        return [R.lp_pool(x, kernel_shape=self.kernel_shape, strides=strides, pads=pads, dilations=dilations,
                          ceil_mode=self.ceil_mode, p=self.p)]


class AveragePoolOp(PoolOp):
    name = "tensor.average_pool"
    onnx = ("AveragePool",)
    count_include_pad = attr(int, 0)

    def pooled(self, x):
        strides, pads, dilations = self.window()
        return np.asarray(R.average_pool(x, kernel_shape=self.kernel_shape, strides=strides, pads=pads,
                                         dilations=dilations, ceil_mode=self.ceil_mode,
                                         count_include_pad=self.count_include_pad))


# --------------------------------------------------------------------------------------
# Data movement
# --------------------------------------------------------------------------------------
class ReshapeOp(TensorOp):
    """Reshape to the static ``shape`` attribute (the frontend resolves 0 and -1)."""

    name = "tensor.reshape"
    kind = OpKind.INJECTIVE
    moves_data = True
    needs_kernel = False
    onnx = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")
    shape = attr([int])

    def verify_(self):
        super().verify_()
        x = self.in_types[0]
        if any(d < 0 for d in self.shape):
            raise self.error(f"target shape {self.shape} must be resolved (no -1 or 0 placeholders)")
        if x.is_static and x.num_elements != int(np.prod(self.shape, dtype=np.int64)):
            raise self.error(f"cannot reshape {x} ({x.num_elements} elements) to {self.shape}")

    def infer_types(self):
        return [TensorType(tuple(self.shape), self.in_types[0].dtype)]

    def reference(self, x):
        return [x.reshape(self.shape)]


class TransposeOp(TensorOp):
    name = "tensor.transpose"
    kind = OpKind.INJECTIVE
    moves_data = True
    onnx = ("Transpose",)
    perm = attr([int])

    def verify_(self):
        super().verify_()
        if sorted(self.perm) != list(range(self.in_types[0].rank)):
            raise self.error(f"perm {self.perm} is not a permutation of the {self.in_types[0].rank} axes")

    def infer_types(self):
        x = self.in_types[0]
        return [TensorType(tuple(x.shape[p] for p in self.perm), x.dtype)]

    def reference(self, x):
        return [np.transpose(x, self.perm)]


class ConcatOp(TensorOp):
    name = "tensor.concat"
    kind = OpKind.INJECTIVE
    arity = (1, None)
    onnx = ("Concat",)
    axis = attr(int)

    def infer_types(self):
        types = self.in_types
        rank = types[0].rank
        axis = normalize_axis(self, self.axis, rank)
        shape = list(types[0].shape)
        for t in types[1:]:
            if t.rank != rank or t.dtype != types[0].dtype:
                raise self.error(f"cannot concatenate {types[0]} with {t}")
            for i, (a, b) in enumerate(zip(shape, t.shape)):
                if i != axis and a is not None and b is not None and a != b:
                    raise self.error(f"operands differ on axis {i}: {types[0]} vs {t}")
        sizes = [t.shape[axis] for t in types]
        shape[axis] = None if None in sizes else sum(sizes)
        return [TensorType(tuple(shape), types[0].dtype)]

    def reference(self, *xs):
        return [np.concatenate(xs, axis=self.axis)]


class SplitOp(TensorOp):
    name = "tensor.split"
    kind = OpKind.INJECTIVE
    num_results = None
    onnx = ("Split",)
    axis = attr(int, 0)
    split = attr([int])

    def infer_types(self):
        x = self.in_types[0]
        axis = normalize_axis(self, self.axis, x.rank)
        if x.shape[axis] is not None and sum(self.split) != x.shape[axis]:
            raise self.error(f"split sizes {self.split} do not add up to {x.shape[axis]}")
        return [TensorType(x.shape[:axis] + (s,) + x.shape[axis + 1:], x.dtype) for s in self.split]

    def reference(self, x):
        bounds = np.cumsum(self.split)[:-1]
        return list(np.split(x, bounds, axis=self.axis))


class SliceOp(TensorOp):
    """Static slice: per axis start, end (clamped) and step, in ONNX semantics."""

    name = "tensor.slice"
    kind = OpKind.INJECTIVE
    moves_data = True
    onnx = ("Slice",)
    starts = attr([int])
    ends = attr([int])
    axes = attr([int])
    steps = attr([int])

    def ranges(self):
        """Per input axis: (start, step, count)."""
        x = self.in_types[0]
        out = [(0, 1, d) for d in x.shape]
        for start, end, axis, step in zip(self.starts, self.ends, self.axes, self.steps):
            axis = normalize_axis(self, axis, x.rank)
            if step == 0:
                raise self.error("slice step must not be 0")
            size = x.shape[axis]
            if size is None:
                raise self.error("slicing a dynamic axis is not supported")
            start, stop, step = slice(start, end, step).indices(size)
            out[axis] = (start, step, len(range(start, stop, step)))
        return out

    def infer_types(self):
        x = self.in_types[0]
        return [TensorType(tuple(c for _, _, c in self.ranges()), x.dtype)]

    def reference(self, x):
        index = np.ix_(*[start + step * np.arange(count) for start, step, count in self.ranges()])
        return [x[index]]


class GatherOp(TensorOp):
    name = "tensor.gather"
    kind = OpKind.INJECTIVE
    moves_data = True
    arity = (2, 2)
    indices = operand(1)
    onnx = ("Gather",)
    axis = attr(int, 0)

    def infer_types(self):
        data, indices = self.in_types
        if indices.dtype not in (DType.I32, DType.I64):
            raise self.error(f"indices must be i32 or i64, got {indices.dtype}")
        axis = normalize_axis(self, self.axis, data.rank)
        self.check_indices(1, data.shape[axis], f"axis {axis}")
        return [TensorType(data.shape[:axis] + indices.shape + data.shape[axis + 1:], data.dtype)]

    def reference(self, data, indices):
        return [R.gather(data, indices, axis=self.axis)]


class GatherElementsOp(TensorOp):
    """out[i] = data[i with i[axis] replaced by indices[i]] (indices may be negative)."""

    name = "tensor.gather_elements"
    kind = OpKind.INJECTIVE
    arity = (2, 2)
    indices = operand(1)
    onnx = ("GatherElements",)
    axis = attr(int, 0)

    def infer_types(self):
        data, indices = self.in_types
        if indices.dtype not in (DType.I32, DType.I64):
            raise self.error(f"indices must be i32 or i64, got {indices.dtype}")
        if data.rank != indices.rank:
            raise self.error(f"data {data} and indices {indices} must have the same rank")
        axis = normalize_axis(self, self.axis, data.rank)
        self.check_indices(1, data.shape[axis], f"axis {axis}")
        return [TensorType(indices.shape, data.dtype)]

    def reference(self, data, indices):
        return [R.gather_elements(data, indices, axis=self.axis)]


class GatherNDOp(TensorOp):
    """out[b, i, rest] = data[b, indices[b, i, :], rest] with ``batch_dims`` leading batch axes."""

    name = "tensor.gather_nd"
    kind = OpKind.INJECTIVE
    arity = (2, 2)
    indices = operand(1)
    onnx = ("GatherND",)
    batch_dims = attr(int, 0)

    def infer_types(self):
        data, indices = self.in_types
        if indices.dtype is not DType.I64:
            raise self.error(f"indices must be i64, got {indices.dtype}")
        b, k = self.batch_dims, indices.shape[-1] if indices.rank else None
        if k is None or indices.rank < 1 or b + k > data.rank or b >= indices.rank:
            raise self.error(f"indices {indices} do not index data {data} with batch_dims={b}")
        return [TensorType(indices.shape[:-1] + data.shape[b + k:], data.dtype)]

    def reference(self, data, indices):
        return [R.gather_nd(data, indices, batch_dims=self.batch_dims)]


class ScatterOp(TensorOp):
    """Scatter ops: a copy of ``data`` with ``updates`` written (or combined) at indexed positions."""

    kind = OpKind.OPAQUE
    arity = (3, 3)
    indices = operand(1)
    updates = operand(2)
    reduction = attr(("none", "add", "mul", "max", "min"), "none")

    def infer_types(self):
        data, indices, updates = self.in_types
        if indices.dtype not in (DType.I32, DType.I64):
            raise self.error(f"indices must be i32 or i64, got {indices.dtype}")
        if updates.dtype != data.dtype:
            raise self.error(f"updates ({updates.dtype}) and data ({data.dtype}) differ in dtype")
        self.check_shapes(data, indices, updates)
        return [data]


class ScatterElementsOp(ScatterOp):
    name = "tensor.scatter_elements"
    onnx = ("ScatterElements",)
    axis = attr(int, 0)

    def check_shapes(self, data, indices, updates):
        if not (data.rank == indices.rank and indices.shape == updates.shape):
            raise self.error(f"indices {indices} and updates {updates} must match, with the rank of {data}")
        normalize_axis(self, self.axis, data.rank)

    def reference(self, data, indices, updates):
        return [R.scatter_elements(data, indices, updates, axis=self.axis, reduction=self.reduction)]


class ScatterNDOp(ScatterOp):
    name = "tensor.scatter_nd"
    onnx = ("ScatterND",)

    def check_shapes(self, data, indices, updates):
        k = indices.shape[-1] if indices.rank else None
        if k is None or k > data.rank or updates.shape != indices.shape[:-1] + data.shape[k:]:
            raise self.error(f"updates {updates} do not match indices {indices} into {data}")

    def reference(self, data, indices, updates):
        return [R.scatter_nd(data, indices, updates, reduction=self.reduction)]


class PadOp(TensorOp):
    name = "tensor.pad"
    kind = OpKind.INJECTIVE
    onnx = ("Pad",)
    pads = attr([int])
    mode = attr(("constant", "reflect", "edge", "wrap"), "constant")
    value = attr(float, 0.0)

    def infer_types(self):
        x = self.in_types[0]
        if len(self.pads) != 2 * x.rank:
            raise self.error(f"pads {self.pads} must have {2 * x.rank} entries")
        shape = tuple(None if d is None else d + self.pads[i] + self.pads[i + x.rank] for i, d in enumerate(x.shape))
        return [TensorType(shape, x.dtype)]

    def reference(self, x):
        value = np.array(self.value, dtype=x.dtype)
        return [R.pad(x, self.pads, value, mode=self.mode)]


class ExpandOp(TensorOp):
    name = "tensor.expand"
    kind = OpKind.BROADCAST
    moves_data = True
    onnx = ("Expand",)
    shape = attr([int])

    def infer_types(self):
        x = self.in_types[0]
        return [TensorType(broadcast_shapes(self, x.shape, tuple(self.shape)), x.dtype)]

    def reference(self, x):
        return [np.broadcast_to(x, self.infer_types()[0].shape).copy()]


class TileOp(TensorOp):
    name = "tensor.tile"
    kind = OpKind.INJECTIVE
    moves_data = True
    onnx = ("Tile",)
    repeats = attr([int])

    def infer_types(self):
        x = self.in_types[0]
        if len(self.repeats) != x.rank:
            raise self.error(f"repeats {self.repeats} must have {x.rank} entries")
        return [TensorType(tuple(None if d is None else d * r for d, r in zip(x.shape, self.repeats)), x.dtype)]

    def reference(self, x):
        return [np.tile(x, self.repeats)]


class ResizeOp(TensorOp):
    """ONNX Resize with its output ``sizes`` and per-axis ``scales`` resolved for every axis.

    ``roi`` (every axis's start, then every axis's end) is only read by
    coordinate_transformation_mode ``tf_crop_and_resize``. An axis whose size
    and scale are unchanged (and whose roi is the whole axis) is passed through.
    """

    name = "tensor.resize"
    kind = OpKind.COMPUTE
    onnx = ("Resize", "Upsample")
    sizes = attr([int])
    scales = attr([float])
    roi = attr([float], [])
    mode = attr(("nearest", "linear", "cubic"), "nearest")
    coordinate_transformation_mode = attr(("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel",
                                           "align_corners", "asymmetric", "tf_crop_and_resize"), "half_pixel")
    nearest_mode = attr(("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"), "round_prefer_floor")
    cubic_coeff_a = attr(float, -0.75)
    exclude_outside = attr(int, 0)
    extrapolation_value = attr(float, 0.0)
    antialias = attr(int, 0)

    def verify_(self):
        super().verify_()
        rank = self.in_types[0].rank
        if len(self.scales) != rank or (self.roi and len(self.roi) != 2 * rank):
            raise self.error(f"needs {rank} scales and 0 or {2 * rank} roi values, got {self.scales}, {self.roi}")
        if any(s <= 0 for s in self.scales):
            raise self.error(f"scales {self.scales} must be positive")
        if self.mode == "nearest" and self.antialias:
            raise self.error("antialias applies to linear and cubic modes only")

    def infer_types(self):
        x = self.in_types[0]
        if len(self.sizes) != x.rank or any(d <= 0 for d in self.sizes):
            raise self.error(f"sizes {self.sizes} must give {x.rank} positive dimensions")
        return [TensorType(tuple(self.sizes), x.dtype)]

    def is_identity(self, axis: int) -> bool:
        """Whether the axis is passed through unchanged (as the reference skips it)."""
        rank = self.in_types[0].rank
        size = self.in_types[0].shape[axis]
        whole = (not self.roi or self.coordinate_transformation_mode != "tf_crop_and_resize"
                 or (math.isclose(self.roi[axis], 0) and math.isclose(self.roi[rank + axis], 1)))
        return self.sizes[axis] == size and math.isclose(self.scales[axis], 1.0) and whole

    def reference(self, x):
        return [R.resize_static(x, self.sizes, self.scales, self.roi or None, mode=self.mode,
                                coordinate_transformation_mode=self.coordinate_transformation_mode,
                                nearest_mode=self.nearest_mode, cubic_coeff_a=self.cubic_coeff_a,
                                exclude_outside=self.exclude_outside, extrapolation_value=self.extrapolation_value,
                                antialias=self.antialias)]


class GridSampleOp(TensorOp):
    """Samples X (N, C, D1..Dr) at the normalized coordinates of ``grid`` (N, O1..Ok, r), whose last axis
    holds (x, y, ...) with x along the last spatial axis."""

    name = "tensor.grid_sample"
    kind = OpKind.COMPUTE
    arity = (2, 2)
    grid = operand(1)
    onnx = ("GridSample",)
    float_only = True
    mode = attr(("linear", "nearest", "cubic"), "linear")
    padding_mode = attr(("zeros", "border", "reflection"), "zeros")
    align_corners = attr(int, 0)

    def infer_types(self):
        x, grid = self.in_types
        spatial = x.rank - 2
        if spatial < 1 or grid.rank != x.rank or grid.shape[-1] not in (spatial, None):
            raise self.error(f"grid {grid} does not sample the {spatial} spatial axes of {x}")
        if grid.dtype != x.dtype:
            raise self.error(f"grid ({grid.dtype}) and input ({x.dtype}) differ in dtype")
        return [TensorType((x.shape[0], x.shape[1]) + grid.shape[1:-1], x.dtype)]

    def reference(self, x, grid):
        return [R.grid_sample(x, grid, align_corners=self.align_corners, mode=self.mode,
                              padding_mode=self.padding_mode)]


class DepthToSpaceOp(TensorOp):
    name = "tensor.depth_to_space"
    kind = OpKind.INJECTIVE
    moves_data = True
    onnx = ("DepthToSpace",)
    blocksize = attr(int)
    mode = attr(("DCR", "CRD"), "DCR")

    def infer_types(self):
        n, c, h, w = self.in_types[0].shape
        b = self.blocksize
        return [TensorType((n, c // (b * b), h * b, w * b), self.in_types[0].dtype)]

    def reference(self, x):
        return [R.depth_to_space(x, blocksize=self.blocksize, mode=self.mode)]


class SpaceToDepthOp(TensorOp):
    name = "tensor.space_to_depth"
    kind = OpKind.INJECTIVE
    moves_data = True
    onnx = ("SpaceToDepth",)
    blocksize = attr(int)
    mode = attr(("DCR", "CRD"), "DCR")

    def infer_types(self):
        n, c, h, w = self.in_types[0].shape
        b = self.blocksize
        return [TensorType((n, c * b * b, h // b, w // b), self.in_types[0].dtype)]

    def reference(self, x):
        return [R.space_to_depth(x, blocksize=self.blocksize, mode=self.mode)]


class TriluOp(TensorOp):
    name = "tensor.trilu"
    kind = OpKind.INJECTIVE
    onnx = ("Trilu",)
    upper = attr(int, 1)
    k = attr(int, 0)

    def infer_types(self):
        return [self.in_types[0]]

    def reference(self, x):
        return [R.trilu(x, self.k, upper=self.upper)]


class ScanOp(TensorOp):
    """A running reduction along ``axis`` (CumSum, CumProd): each output depends on a prefix of the axis,
    a reduction for fusion."""

    kind = OpKind.REDUCTION
    axis = attr(int)
    exclusive = attr(int, 0)
    reverse = attr(int, 0)

    def reduced_axes(self) -> list[int]:
        return [normalize_axis(self, self.axis, self.in_types[0].rank)]

    def row_passes(self) -> int:
        return self.in_types[0].shape[self.reduced_axes()[0]] or 1  # each element's prefix, uncached

    def infer_types(self):
        return [self.in_types[0]]


class CumSumOp(ScanOp):
    name = "tensor.cumsum"
    onnx = ("CumSum",)

    def reference(self, x):
        return [R.cumsum(x, self.axis, exclusive=self.exclusive, reverse=self.reverse)]


class CumProdOp(ScanOp):
    name = "tensor.cumprod"
    onnx = ("CumProd",)

    def reference(self, x):
        return [R.cumprod(x, self.axis, exclusive=self.exclusive, reverse=self.reverse)]


class ReverseSequenceOp(TensorOp):
    """Reverses the first ``sequence_lens[b]`` steps along ``time_axis`` of each batch entry."""

    name = "tensor.reverse_sequence"
    kind = OpKind.INJECTIVE
    arity = (2, 2)
    sequence_lens = operand(1)
    onnx = ("ReverseSequence",)
    batch_axis = attr(int, 1)
    time_axis = attr(int, 0)

    def infer_types(self):
        x, lens = self.in_types
        if sorted((self.batch_axis, self.time_axis)) != [0, 1] or x.rank < 2:
            raise self.error(f"batch_axis and time_axis must be 0 and 1 of a rank >= 2 input, got {x}")
        if lens.rank != 1 or lens.dtype is not DType.I64:
            raise self.error(f"sequence_lens must be a vector of i64, got {lens}")
        return [x]

    def reference(self, x, lens):
        return [R.reverse_sequence(x, lens, batch_axis=self.batch_axis, time_axis=self.time_axis)]


class OneHotOp(TensorOp):
    """out[..., j, ...] = on if indices[...] == j else off, on a new axis of size ``depth``; ``values`` is [off, on]."""

    name = "tensor.one_hot"
    kind = OpKind.INJECTIVE
    arity = (2, 2)
    values = operand(1)
    onnx = ("OneHot",)
    axis = attr(int, -1)
    depth = attr(int)

    def infer_types(self):
        indices, values = self.in_types
        rank = indices.rank + 1
        axis = normalize_axis(self, self.axis, rank)
        return [TensorType(indices.shape[:axis] + (self.depth,) + indices.shape[axis:], values.dtype)]

    def reference(self, indices, values):
        return [R.one_hot(indices, self.depth, values, axis=self.axis)]


class TopKOp(TensorOp):
    name = "tensor.topk"
    kind = OpKind.OPAQUE
    num_results = 2
    onnx = ("TopK",)
    k = attr(int)
    axis = attr(int, -1)
    largest = attr(int, 1)
    sorted = attr(int, 1)

    def infer_types(self):
        x = self.in_types[0]
        axis = normalize_axis(self, self.axis, x.rank)
        if self.k < 0 or (x.shape[axis] is not None and self.k > x.shape[axis]):
            raise self.error(f"k={self.k} must lie in [0, {x.shape[axis]}], the size of axis {axis}")
        shape = x.shape[:axis] + (self.k,) + x.shape[axis + 1:]
        return [TensorType(shape, x.dtype), TensorType(shape, DType.I64)]

    def reference(self, x):
        values, indices = R.topk(x, self.k, axis=self.axis, largest=self.largest,
                                 sorted=self.sorted)
        return [values, indices]


class EinsumOp(TensorOp):
    name = "tensor.einsum"
    kind = OpKind.COMPUTE
    arity = (1, None)
    onnx = ("Einsum",)
    equation = attr(str)

    def infer_types(self):
        inputs, _, output = self.equation.replace(" ", "").partition("->")
        sizes = {}
        for term, t in zip(inputs.split(","), self.in_types):
            if "." in term or len(term) != t.rank:
                raise self.error(f"equation term '{term}' does not match operand {t}")
            for letter, d in zip(term, t.shape):
                if d != 1 or letter not in sizes:
                    sizes[letter] = d
        if not _:
            output = "".join(sorted(c for c in set(inputs.replace(",", "")) if inputs.count(c) == 1))
        return [TensorType(tuple(sizes[c] for c in output), self.in_types[0].dtype)]

    def reference(self, *xs):
        return [np.asarray(np.einsum(self.equation, *xs)).astype(xs[0].dtype)]


def onnx_op_table() -> dict[str, type[TensorOp]]:
    """ONNX op type -> the tensor op class implementing it."""
    table = {}
    for cls in TensorOp.__subclasses__() + [c for base in TensorOp.__subclasses__() for c in _all_subclasses(base)]:
        for onnx_name in getattr(cls, "onnx", ()):
            table.setdefault(onnx_name, cls)
    return table


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)
