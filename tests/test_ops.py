"""Differential tests: every ONNX op fusecc imports, compiled and run, against ONNX Runtime.

Each case is a single-node (or tiny) ONNX model built with ``onnx.helper``. It is
compiled with ``fusecc.compile`` at the default level and again with
``fusion=False``, run on random inputs drawn from a domain that suits the op
(positive for Log/Sqrt, [-0.9, 0.9] for Asin/Acos/Atanh, bool for logical ops,
...), and its outputs are compared with ONNX Runtime's (CPU provider) and with
the reference interpreter's (``fusecc.reference.interpret`` over the imported
tensor-level module). Shapes, dtypes and values must all match: float outputs
within ``DEFAULT_TOL``, integer and bool outputs exactly.

``test_every_supported_op_is_covered`` keeps the case list honest: an op added
to the importer without a case here fails it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import fusecc  # noqa: E402
from fusecc.frontend.onnx_import import import_model, supported_ops  # noqa: E402
from fusecc.reference import interpret  # noqa: E402

#: (rtol, atol) for float outputs. Measured against ONNX Runtime 1.32 and the reference, the largest
#: errors are accumulations in another order than ORT: Gemm 64x256 @ 256x128 (3e-5 relative),
#: ReduceSum over 4096 values (2e-5); transcendental ops, Pow and the normalizations stay below 1e-5
#: relative, and CumSum along a row sums in ORT's order.
DEFAULT_TOL = (1e-4, 1e-5)

# --------------------------------------------------------------------------------------
# Known bugs outside the lowering rules (strict xfails: fixing one makes its cases XPASS)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bug:
    reason: str
    raises: type


# --------------------------------------------------------------------------------------
# Case description
# --------------------------------------------------------------------------------------
NP_DTYPES = {"f32": np.float32, "f64": np.float64, "i32": np.int32, "i64": np.int64, "i8": np.int8,
             "u8": np.uint8, "u32": np.uint32, "bool": np.bool_}
ONNX_TYPES = {"f32": TensorProto.FLOAT, "f64": TensorProto.DOUBLE, "i32": TensorProto.INT32,
              "i64": TensorProto.INT64, "i8": TensorProto.INT8, "u8": TensorProto.UINT8,
              "u32": TensorProto.UINT32, "bool": TensorProto.BOOL}


def sample(rng: np.random.Generator, shape, dtype: str, dom: str) -> np.ndarray:
    """Random values of ``dtype`` in the domain ``dom``."""
    shape = tuple(shape)
    kind = dom.split(":")[0]
    if dtype == "bool" or kind == "bool":
        values = rng.random(shape) < 0.5
    elif kind == "normal":
        values = rng.standard_normal(shape)
    elif kind == "pos":  # Log, Sqrt, Pow base, ReduceLogSum
        values = rng.uniform(0.1, 3.0, shape)
    elif kind == "unit":  # Asin, Acos, Atanh; "unit:r" for [-r, r]
        bound = float(dom.split(":")[1]) if ":" in dom else 0.9
        values = rng.uniform(-bound, bound, shape)
    elif kind == "gt1":  # Acosh
        values = rng.uniform(1.1, 4.0, shape)
    elif kind == "near1":  # long products
        values = rng.uniform(0.5, 1.5, shape)
    elif kind == "wide":  # Round/Floor/Ceil/Cast: several integers apart, some exact halves
        values = rng.uniform(-6.0, 6.0, shape)
        halves = rng.random(shape) < 0.25
        values = np.where(halves, np.round(values) + 0.5, values)
    elif kind == "ties":  # small integers as floats: equal values for Equal, ArgMax ties, Hardmax
        values = rng.integers(-3, 4, shape).astype(np.float64)
    elif kind == "infs":  # infinities without NaN
        values = rng.standard_normal(shape)
        pick = rng.integers(0, 5, shape)
        values = np.where(pick == 0, np.inf, np.where(pick == 1, -np.inf, values))
    elif kind == "masked":  # attention-style masks: some -inf
        values = np.where(rng.random(shape) < 0.2, -np.inf, rng.standard_normal(shape))
    elif kind == "special":  # IsNaN, IsInf
        values = rng.standard_normal(shape)
        pick = rng.integers(0, 5, shape)
        values = np.where(pick == 0, np.inf, np.where(pick == 1, -np.inf, np.where(pick == 2, np.nan, values)))
    elif kind == "int":  # integer ops: both signs
        values = rng.integers(-20, 21, shape)
    elif kind == "nonzero":  # integer divisors
        values = rng.integers(1, 21, shape) * rng.choice([-1, 1], shape)
    elif kind == "posint":  # "posint" or "posint:n" for [0, n)
        values = rng.integers(0, int(dom.split(":")[1]), shape) if ":" in dom else rng.integers(1, 21, shape)
    elif kind == "index":  # valid (possibly negative) indices into an axis of size n: "index:n"
        n = int(dom.split(":")[1])
        values = rng.integers(-n, n, shape)
    elif kind == "bits":
        values = rng.integers(-1000, 1001, shape)
    else:
        raise ValueError(f"unknown domain {dom!r}")
    return np.asarray(values).astype(NP_DTYPES[dtype])


@dataclass(frozen=True)
class X:
    """A graph input of the case (fed with random values)."""

    shape: tuple
    dtype: str = "f32"
    dom: str = "normal"


@dataclass(frozen=True)
class W:
    """An initializer with random values (a weight), drawn like an input."""

    shape: tuple
    dtype: str = "f32"
    dom: str = "normal"


@dataclass(frozen=True)
class C:
    """An initializer with fixed values."""

    values: object
    dtype: str = "i64"


@dataclass
class Case:
    id: str
    nodes: list  # (op_type, input names, output names, attributes)
    inputs: dict  # name -> X | W | C
    outputs: list
    opset: int = 17
    xfail: Bug | None = None
    #: "ort", "onnx" for ops ONNX Runtime does not implement (onnx.reference.ReferenceEvaluator), or
    #: "reference" (fusecc's numpy reference interpreter) where ONNX Runtime's answer depends on where a
    #: NaN sits in the row (it compares with ``>``; fusecc and numpy let a NaN win)
    oracle: str = "ort"

    def build(self):
        """The ONNX model and the feeds for it."""
        rng = np.random.default_rng(zlib.crc32(self.id.encode()))
        graph_inputs, inits, feeds = [], [], {}
        for name, spec in self.inputs.items():
            if isinstance(spec, X):
                feeds[name] = sample(rng, spec.shape, spec.dtype, spec.dom)
                graph_inputs.append(helper.make_tensor_value_info(name, ONNX_TYPES[spec.dtype], list(spec.shape)))
            elif isinstance(spec, W):
                array = sample(rng, spec.shape, spec.dtype, spec.dom)
                inits.append(numpy_helper.from_array(array, name))
            else:
                inits.append(numpy_helper.from_array(np.asarray(spec.values, dtype=NP_DTYPES[spec.dtype]), name))
        nodes = [helper.make_node(op, ins, outs, name=f"{op.lower()}{i}", **attrs)
                 for i, (op, ins, outs, attrs) in enumerate(self.nodes)]
        graph = helper.make_graph(nodes, self.id.replace("-", "_"), graph_inputs,
                                  [helper.make_empty_tensor_value_info(o) for o in self.outputs], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = min(model.ir_version, 10)
        return model, feeds

    @property
    def op_types(self):
        return {op for op, *_ in self.nodes}


CASES: list[Case] = []


def add(case_id, op, ins, attrs=None, opset=17, outputs=1, xfail=None, oracle="ort"):
    """A single-node case: ``ins`` lists the node's inputs (X, W, C or None for an absent one)."""
    inputs, names = {}, []
    for i, spec in enumerate(ins):
        if spec is None:
            names.append("")
            continue
        name = f"{'x' if isinstance(spec, X) else 'c'}{i}"
        inputs[name] = spec
        names.append(name)
    outs = [f"y{i}" for i in range(outputs)] if isinstance(outputs, int) else outputs
    CASES.append(Case(case_id, [(op, names, outs, attrs or {})], inputs, [o for o in outs if o], opset,
                      xfail, oracle))


def graph(case_id, nodes, inputs, outputs, opset=17, xfail=None, oracle="ort"):
    """A tiny multi-node case."""
    CASES.append(Case(case_id, nodes, inputs, outputs, opset, xfail, oracle))


def shape_id(*shapes) -> str:
    return "_".join("x".join(map(str, s)) if s else "scalar" for s in shapes)


# --------------------------------------------------------------------------------------
# Elementwise unary
# --------------------------------------------------------------------------------------
SMALL_SHAPES = [(7, 13), (1,), ()]
LARGE = (64, 4096)

#: op -> (input domain, attributes, opset)
UNARY = {
    "Abs": ("normal", {}, 17), "Neg": ("normal", {}, 17),
    "Sqrt": ("pos", {}, 17), "Exp": ("normal", {}, 17),
    "Log": ("pos", {}, 17), "Erf": ("normal", {}, 17),
    "Relu": ("normal", {}, 17), "Sigmoid": ("normal", {}, 17),
    "Tanh": ("normal", {}, 17), "Reciprocal": ("pos", {}, 17),
    "Floor": ("wide", {}, 17), "Ceil": ("wide", {}, 17), "Round": ("wide", {}, 17),
    "Sign": ("ties", {}, 17),
    "Sin": ("normal", {}, 17), "Cos": ("normal", {}, 17),
    "Tan": ("unit", {}, 17), "Asin": ("unit", {}, 17),
    "Acos": ("unit", {}, 17), "Atan": ("normal", {}, 17),
    "Sinh": ("normal", {}, 17), "Cosh": ("normal", {}, 17),
    "Asinh": ("normal", {}, 17), "Acosh": ("gt1", {}, 17),
    "Atanh": ("unit", {}, 17),
    "Softplus": ("normal", {}, 17), "Softsign": ("normal", {}, 17),
    "Mish": ("normal", {}, 18), "HardSwish": ("normal", {}, 17),
    "HardSigmoid": ("normal", {"alpha": 0.3, "beta": 0.4}, 17),
    "LeakyRelu": ("normal", {"alpha": 0.2}, 17),
    "Elu": ("normal", {"alpha": 0.7}, 17),
    "Celu": ("normal", {"alpha": 1.5}, 17),
    "Selu": ("normal", {}, 17),
    "ThresholdedRelu": ("normal", {"alpha": 0.3}, 17),
    "Shrink": ("normal", {"lambd": 0.6, "bias": 0.2}, 17),
    "Gelu": ("normal", {}, 20),
    "IsNaN": ("special", {}, 17),
    "IsInf": ("special", {}, 17),
}

for _op, (_dom, _attrs, _opset) in UNARY.items():
    for _shape in SMALL_SHAPES:
        add(f"{_op}-{shape_id(_shape)}", _op, [X(_shape, "f32", _dom)], _attrs, _opset)

for _op in ("Relu", "Exp", "Sigmoid", "Tanh", "Log", "Sqrt", "Abs", "Erf", "HardSwish", "Round"):
    _dom, _attrs, _opset = UNARY[_op]
    add(f"{_op}-{shape_id(LARGE)}", _op, [X(LARGE, "f32", _dom)], _attrs, _opset)

add("Gelu-tanh-7x13", "Gelu", [X((7, 13))], {"approximate": "tanh"}, 20)
add("Gelu-tanh-64x4096", "Gelu", [X(LARGE)], {"approximate": "tanh"}, 20)
add("LeakyRelu-default-7x13", "LeakyRelu", [X((7, 13))])
add("Elu-default-7x13", "Elu", [X((7, 13))])
add("HardSigmoid-default-7x13", "HardSigmoid", [X((7, 13))])
add("Shrink-default-7x13", "Shrink", [X((7, 13))])
add("IsInf-positive-only-7x13", "IsInf", [X((7, 13), "f32", "special")], {"detect_negative": 0})
add("IsInf-negative-only-7x13", "IsInf", [X((7, 13), "f32", "special")], {"detect_positive": 0})
add("IsNaN-f64-7x13", "IsNaN", [X((7, 13), "f64", "special")])
add("Exp-f64-7x13", "Exp", [X((7, 13), "f64")])
add("Sqrt-f64-7x13", "Sqrt", [X((7, 13), "f64", "pos")])
add("Round-f64-7x13", "Round", [X((7, 13), "f64", "wide")])

# integer and bool unary ops
add("Abs-i32-7x13", "Abs", [X((7, 13), "i32", "int")])
add("Abs-i64-scalar", "Abs", [X((), "i64", "int")])
add("Abs-i8-7x13", "Abs", [X((7, 13), "i8", "int")])
add("Neg-i64-7x13", "Neg", [X((7, 13), "i64", "int")])
add("Neg-i32-1", "Neg", [X((1,), "i32", "int")])
add("Sign-i32-7x13", "Sign", [X((7, 13), "i32", "int")])
add("Sign-i64-7x13", "Sign", [X((7, 13), "i64", "int")])
add("Relu-i32-7x13", "Relu", [X((7, 13), "i32", "int")], opset=14)
for _shape in [(7, 13), (1,), (), LARGE]:
    add(f"Not-{shape_id(_shape)}", "Not", [X(_shape, "bool")])
for _dtype in ("i32", "i64", "u8"):
    add(f"BitwiseNot-{_dtype}-7x13", "BitwiseNot", [X((7, 13), _dtype, "bits" if _dtype != "u8" else "posint")],
        opset=18)
add("BitwiseNot-i32-scalar", "BitwiseNot", [X((), "i32", "bits")], opset=18)

# Clip: opset 6 attributes (model opset 10), opset 11+ constant inputs, integer Clip
add("Clip-opset6-7x13", "Clip", [X((7, 13))], {"min": -0.5, "max": 0.7}, opset=10)
add("Clip-opset6-default-7x13", "Clip", [X((7, 13))], opset=10)
add("Clip-opset6-min-only-7x13", "Clip", [X((7, 13))], {"min": 0.1}, opset=10)
add("Clip-7x13", "Clip", [X((7, 13)), C(-0.5, "f32"), C(0.7, "f32")])
add("Clip-min-only-7x13", "Clip", [X((7, 13)), C(-0.2, "f32")])
add("Clip-max-only-7x13", "Clip", [X((7, 13)), None, C(0.3, "f32")])
add("Clip-none-7x13", "Clip", [X((7, 13))])
add("Clip-scalar", "Clip", [X(()), C(-0.5, "f32"), C(0.5, "f32")])
add("Clip-64x4096", "Clip", [X(LARGE), C(-1.0, "f32"), C(1.0, "f32")])
add("Clip-i32-7x13", "Clip", [X((7, 13), "i32", "int"), C(-5, "i32"), C(7, "i32")])
add("Clip-i64-max-only-7x13", "Clip", [X((7, 13), "i64", "int"), None, C(3, "i64")])

# Cast and CastLike
CASTS = [("f32", "i64", "wide"), ("f32", "i32", "wide"), ("f32", "bool", "ties"), ("i64", "f32", "int"),
         ("i32", "i64", "int"), ("i64", "i32", "int"), ("bool", "f32", "bool"), ("i64", "bool", "int"),
         ("bool", "i64", "bool"), ("i32", "f32", "int"), ("f32", "f64", "normal"), ("f64", "f32", "normal"),
         ("f32", "f32", "normal"), ("u8", "i32", "posint"), ("f32", "u8", "pos")]
for _src, _dst, _dom in CASTS:
    add(f"Cast-{_src}-to-{_dst}-7x13", "Cast", [X((7, 13), _src, _dom)], {"to": ONNX_TYPES[_dst]})
add("Cast-f32-to-i64-scalar", "Cast", [X((), "f32", "wide")], {"to": TensorProto.INT64})
add("Cast-f32-to-i32-64x4096", "Cast", [X(LARGE, "f32", "wide")], {"to": TensorProto.INT32})
add("CastLike-f32-like-i64-7x13", "CastLike", [X((7, 13), "f32", "wide"), X((2,), "i64", "int")])
add("CastLike-i32-like-f32-7x13", "CastLike", [X((7, 13), "i32", "int"), X((1,), "f32")])
add("CastLike-bool-like-f32-1", "CastLike", [X((1,), "bool"), X((), "f32")])


# --------------------------------------------------------------------------------------
# Elementwise binary, variadic, Where
# --------------------------------------------------------------------------------------
BROADCASTS = [((7, 13), (7, 13)), ((7, 13), (13,)), ((7, 13), (7, 1)), ((1,), ()), ((), ()),
              ((3, 1, 5), (4, 1)), (LARGE, (4096,))]

#: op -> (domain of a, domain of b, attributes, opset)
BINARY_F32 = {
    "Add": ("normal", "normal", {}, 17), "Sub": ("normal", "normal", {}, 17),
    "Mul": ("normal", "normal", {}, 17), "Div": ("normal", "pos", {}, 17),
    "Pow": ("pos", "normal", {}, 17), "Max": ("normal", "normal", {}, 17),
    "Min": ("normal", "normal", {}, 17), "Equal": ("ties", "ties", {}, 17),
    "Less": ("ties", "ties", {}, 17), "Greater": ("ties", "ties", {}, 17),
    "LessOrEqual": ("ties", "ties", {}, 17), "GreaterOrEqual": ("ties", "ties", {}, 17),
    "Mod": ("normal", "pos", {"fmod": 1}, 17),
}
FULL_BROADCAST_OPS = ("Add", "Mul", "Div", "Pow", "Less", "Equal")

for _op, (_da, _db, _attrs, _opset) in BINARY_F32.items():
    _shapes = BROADCASTS if _op in FULL_BROADCAST_OPS else BROADCASTS[:4]
    for _sa, _sb in _shapes:
        add(f"{_op}-{shape_id(_sa, _sb)}", _op, [X(_sa, "f32", _da), X(_sb, "f32", _db)], _attrs, _opset)
add("Add-13_7x13", "Add", [X((13,)), X((7, 13))])
add("Sub-7x1_13", "Sub", [X((7, 1)), X((13,))])
add("Mod-fmod-negative-divisor-7x13", "Mod", [X((7, 13)), X((7, 13), "f32", "normal")], {"fmod": 1})
add("Pow-int-exponent-7x13", "Pow", [X((7, 13)), C([2, 3, 0, 1, 2, 3, 1, 2, 0, 3, 2, 1, 1], "i64")])
add("Pow-square-7x13", "Pow", [X((7, 13)), C(2.0, "f32")])
add("Pow-half-7x13", "Pow", [X((7, 13), "f32", "pos"), C(0.5, "f32")])
add("Div-f64-7x13", "Div", [X((7, 13), "f64"), X((13,), "f64", "pos")])

# PRelu: slope broadcast forms
for _slope in [(13,), (7, 1), (1,), (7, 13)]:
    add(f"PRelu-7x13-slope-{shape_id(_slope)}", "PRelu", [X((7, 13)), X(_slope)])
add("PRelu-2x3x5x5-slope-3x1x1", "PRelu", [X((2, 3, 5, 5)), W((3, 1, 1))])

# integer arithmetic
for _dtype in ("i32", "i64"):
    for _sa, _sb in [((7, 13), (7, 13)), ((7, 13), (13,)), ((7, 13), (7, 1)), ((), ())]:
        _sid = shape_id(_sa, _sb)
        add(f"Add-{_dtype}-{_sid}", "Add", [X(_sa, _dtype, "int"), X(_sb, _dtype, "int")])
        add(f"Mul-{_dtype}-{_sid}", "Mul", [X(_sa, _dtype, "int"), X(_sb, _dtype, "int")])
        add(f"Div-{_dtype}-{_sid}", "Div", [X(_sa, _dtype, "bits"), X(_sb, _dtype, "nonzero")])
        add(f"Mod-{_dtype}-{_sid}", "Mod", [X(_sa, _dtype, "bits"), X(_sb, _dtype, "nonzero")])
    add(f"Sub-{_dtype}-7x13_13", "Sub", [X((7, 13), _dtype, "int"), X((13,), _dtype, "int")])
    add(f"Mod-fmod-{_dtype}-7x13", "Mod", [X((7, 13), _dtype, "bits"), X((7, 13), _dtype, "nonzero")],
        {"fmod": 1})
    add(f"Max-{_dtype}-7x13_13", "Max", [X((7, 13), _dtype, "int"), X((13,), _dtype, "int")])
    add(f"Min-{_dtype}-7x13_7x1", "Min", [X((7, 13), _dtype, "int"), X((7, 1), _dtype, "int")])
    add(f"Pow-{_dtype}-7x13", "Pow", [X((7, 13), _dtype, "int"), C(np.arange(13) % 4, _dtype)], opset=15)
    for _op in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"):
        add(f"{_op}-{_dtype}-7x13_13", _op, [X((7, 13), _dtype, "int"), X((13,), _dtype, "int")])
    for _op in ("BitwiseAnd", "BitwiseOr", "BitwiseXor"):
        add(f"{_op}-{_dtype}-7x13_13", _op, [X((7, 13), _dtype, "bits"), X((13,), _dtype, "bits")], opset=18)
add("Add-i64-64x4096_4096", "Add", [X(LARGE, "i64", "int"), X((4096,), "i64", "int")])
add("Div-u8-7x13", "Div", [X((7, 13), "u8", "posint"), X((7, 13), "u8", "posint")])
add("BitwiseAnd-u8-7x13", "BitwiseAnd", [X((7, 13), "u8", "posint"), X((13,), "u8", "posint")], opset=18)

# logical
for _op in ("And", "Or", "Xor"):
    for _sa, _sb in [((7, 13), (7, 13)), ((7, 13), (13,)), ((7, 13), (7, 1)), ((), ())]:
        add(f"{_op}-{shape_id(_sa, _sb)}", _op, [X(_sa, "bool"), X(_sb, "bool")])
    add(f"{_op}-{shape_id(LARGE)}", _op, [X(LARGE, "bool"), X(LARGE, "bool")])
add("Equal-bool-7x13", "Equal", [X((7, 13), "bool"), X((7, 13), "bool")])

# Where
add("Where-7x13", "Where", [X((7, 13), "bool"), X((7, 13)), X((7, 13))])
add("Where-mask-7x1-x-13-y-7x13", "Where", [X((7, 1), "bool"), X((13,)), X((7, 13))])
add("Where-mask-13-scalar-y", "Where", [X((13,), "bool"), X((7, 13)), X(())])
add("Where-i64-7x13", "Where", [X((7, 13), "bool"), X((7, 13), "i64", "int"), X((1,), "i64", "int")])
add("Where-i32-scalar", "Where", [X((), "bool"), X((), "i32", "int"), X((), "i32", "int")])
add("Where-u8-values-7x13", "Where", [X((7, 13), "bool"), X((7, 13), "u8", "posint"), X((13,), "u8", "posint")])
add("Where-64x4096", "Where", [X(LARGE, "bool"), X(LARGE), X((4096,))])
graph("Where-from-compare-7x13", [("Greater", ["a", "b"], ["m"], {}), ("Where", ["m", "a", "z"], ["y"], {})],
      {"a": X((7, 13)), "b": X((13,)), "z": C(0.0, "f32")}, ["y"])

# variadic Sum / Mean / Max / Min
for _op in ("Sum", "Mean", "Max", "Min"):
    add(f"{_op}-one-input-7x13", _op, [X((7, 13))])
    add(f"{_op}-two-inputs-7x13_13", _op, [X((7, 13)), X((13,))])
    add(f"{_op}-three-inputs-7x13_7x1_13", _op, [X((7, 13)), X((7, 1)), X((13,))])
add("Sum-three-inputs-scalar", "Sum", [X(()), X(()), X((1,))])
add("Mean-four-inputs-64x4096", "Mean", [X(LARGE), X((4096,)), X((64, 1)), X(LARGE)])
add("Max-three-inputs-i64", "Max", [X((7, 13), "i64", "int"), X((13,), "i64", "int"), X((), "i64", "int")])
add("Min-two-inputs-i32", "Min", [X((7, 13), "i32", "int"), X((7, 13), "i32", "int")])
add("Sum-two-inputs-f64", "Sum", [X((7, 13), "f64"), X((7, 1), "f64")])


# --------------------------------------------------------------------------------------
# Reductions
# --------------------------------------------------------------------------------------
#: op -> (input domain, the opset in which axes became an input)
REDUCES = {
    "ReduceSum": ("normal", 13), "ReduceMean": ("normal", 18), "ReduceMax": ("normal", 18),
    "ReduceMin": ("normal", 18), "ReduceProd": ("near1", 18),
    "ReduceL1": ("normal", 18), "ReduceL2": ("normal", 18),
    "ReduceSumSquare": ("normal", 18), "ReduceLogSum": ("pos", 18),
    "ReduceLogSumExp": ("normal", 18),
}

for _op, (_dom, _since) in REDUCES.items():
    # axes as an input (new opsets)
    add(f"{_op}-axes-input-1-keepdims-7x13", _op, [X((7, 13), "f32", _dom), C([1])], opset=_since)
    add(f"{_op}-axes-input-0-nokeep-7x13", _op, [X((7, 13), "f32", _dom), C([0])], {"keepdims": 0},
        opset=_since)
    add(f"{_op}-axes-input-0+2-nokeep-3x5x7", _op, [X((3, 5, 7), "f32", _dom), C([0, 2])], {"keepdims": 0},
        opset=_since)
    add(f"{_op}-all-axes-keepdims-7x13", _op, [X((7, 13), "f32", _dom)], opset=_since)
    add(f"{_op}-all-axes-nokeep-1", _op, [X((1,), "f32", _dom)], {"keepdims": 0}, opset=_since)
    add(f"{_op}-axes-input-neg1-nokeep-64x4096", _op, [X(LARGE, "f32", _dom), C([-1])], {"keepdims": 0},
        opset=_since)
    # axes as an attribute (old opsets)
    add(f"{_op}-axes-attr-neg1-keepdims-7x13", _op, [X((7, 13), "f32", _dom)], {"axes": [-1]},
        opset=_since - 2 if _since == 13 else 13)
    add(f"{_op}-axes-attr-1-nokeep-3x5x7", _op, [X((3, 5, 7), "f32", _dom)], {"axes": [1], "keepdims": 0},
        opset=11)
add("ReduceSum-noop-empty-axes-7x13", "ReduceSum", [X((7, 13)), C([], "i64")], {"noop_with_empty_axes": 1},
    opset=13)
add("ReduceMean-noop-empty-axes-7x13", "ReduceMean", [X((7, 13))], {"noop_with_empty_axes": 1}, opset=18)
add("ReduceSum-axes-input-0-64x4096", "ReduceSum", [X(LARGE), C([0])], opset=13)
add("ReduceMax-all-64x4096", "ReduceMax", [X(LARGE)], {"keepdims": 0}, opset=18)
add("ReduceSum-i64-axes-1-7x13", "ReduceSum", [X((7, 13), "i64", "int"), C([1])], opset=13)
add("ReduceSum-i32-all-7x13", "ReduceSum", [X((7, 13), "i32", "int")], {"keepdims": 0}, opset=13)
add("ReduceMax-i32-axes-0-7x13", "ReduceMax", [X((7, 13), "i32", "int"), C([0])], opset=18)
add("ReduceMin-i64-axes-1-7x13", "ReduceMin", [X((7, 13), "i64", "int"), C([1])], {"keepdims": 0}, opset=18)
add("ReduceProd-i64-axes-1-7x5", "ReduceProd", [X((7, 5), "i64", "int"), C([1])], opset=18)
add("ReduceL1-i32-axes-1-7x13", "ReduceL1", [X((7, 13), "i32", "int"), C([1])], opset=18)
add("ReduceMean-4d-spatial-2x3x5x7", "ReduceMean", [X((2, 3, 5, 7)), C([2, 3])], opset=18)
add("ReduceMax-scalar-input", "ReduceMax", [X(())], opset=18)
add("ReduceSum-scalar-input", "ReduceSum", [X(())], {"keepdims": 0}, opset=13)

# ArgMax / ArgMin (ties from small-integer inputs decide select_last_index)
for _op in ("ArgMax", "ArgMin"):
    add(f"{_op}-axis0-7x13", _op, [X((7, 13), "f32", "ties")])
    add(f"{_op}-axis1-nokeep-7x13", _op, [X((7, 13), "f32", "ties")], {"axis": 1, "keepdims": 0})
    add(f"{_op}-axis-neg1-last-index-7x13", _op, [X((7, 13), "f32", "ties")],
        {"axis": -1, "select_last_index": 1})
    add(f"{_op}-axis1-last-index-nokeep-3x5x7", _op, [X((3, 5, 7), "f32", "ties")],
        {"axis": 1, "keepdims": 0, "select_last_index": 1})
    add(f"{_op}-1", _op, [X((1,))], {"keepdims": 0})
    add(f"{_op}-i32-axis1-7x13", _op, [X((7, 13), "i32", "int")], {"axis": 1})
    add(f"{_op}-axis-neg1-64x4096", _op, [X(LARGE)], {"axis": -1, "keepdims": 0})

# Softmax family: axis variants, opset-11 2-D coercion
for _op in ("Softmax", "LogSoftmax", "Hardmax"):
    _dom = "ties" if _op == "Hardmax" else "normal"
    add(f"{_op}-axis-neg1-7x13", _op, [X((7, 13), "f32", _dom)])
    add(f"{_op}-axis0-3x5x7", _op, [X((3, 5, 7), "f32", _dom)], {"axis": 0})
    add(f"{_op}-axis1-3x5x7", _op, [X((3, 5, 7), "f32", _dom)], {"axis": 1})
    add(f"{_op}-opset11-default-axis-3x5x7", _op, [X((3, 5, 7), "f32", _dom)], opset=11)
    add(f"{_op}-opset11-axis0-3x4x5", _op, [X((3, 4, 5), "f32", _dom)], {"axis": 0}, opset=11)
    add(f"{_op}-opset11-axis2-3x5x7", _op, [X((3, 5, 7), "f32", _dom)], {"axis": 2}, opset=11)
    add(f"{_op}-1", _op, [X((1,), "f32", _dom)])
    add(f"{_op}-64x4096", _op, [X(LARGE, "f32", _dom)])

add("GlobalAveragePool-2x3x5x7", "GlobalAveragePool", [X((2, 3, 5, 7))])
add("GlobalAveragePool-1d-2x3x9", "GlobalAveragePool", [X((2, 3, 9))])
add("GlobalAveragePool-1x8x64x64", "GlobalAveragePool", [X((1, 8, 64, 64))])
add("GlobalMaxPool-2x3x5x7", "GlobalMaxPool", [X((2, 3, 5, 7))])
add("GlobalMaxPool-1d-2x3x9", "GlobalMaxPool", [X((2, 3, 9))])

# CumSum
for _axis in (0, 1, -1):
    for _exclusive, _reverse in [(0, 0), (1, 0), (0, 1), (1, 1)]:
        add(f"CumSum-axis{_axis}-excl{_exclusive}-rev{_reverse}-7x13", "CumSum", [X((7, 13)), C(_axis)],
            {"exclusive": _exclusive, "reverse": _reverse})
add("CumSum-i32-axis-i32-1-7x13", "CumSum", [X((7, 13), "i32", "int"), C(1, "i32")])
add("CumSum-i64-reverse-3x5x7", "CumSum", [X((3, 5, 7), "i64", "int"), C(1)], {"reverse": 1})
add("CumSum-1", "CumSum", [X((1,)), C(0)])
add("CumSum-axis1-64x512", "CumSum", [X((64, 512)), C(1)])


# --------------------------------------------------------------------------------------
# Normalizations
# --------------------------------------------------------------------------------------
for _shape in [(2, 3, 5, 7), (4, 6), (1, 1, 1)]:
    _c = _shape[1]
    add(f"BatchNormalization-{shape_id(_shape)}", "BatchNormalization",
        [X(_shape), W((_c,)), W((_c,)), W((_c,)), W((_c,), "f32", "pos")], {"epsilon": 1e-3})
add("BatchNormalization-params-as-inputs-2x3x5x7", "BatchNormalization",
    [X((2, 3, 5, 7)), X((3,)), X((3,)), X((3,)), X((3,), "f32", "pos")])
add("BatchNormalization-opset9-2x3x5x7", "BatchNormalization",
    [X((2, 3, 5, 7)), W((3,)), W((3,)), W((3,)), W((3,), "f32", "pos")], opset=9)

add("LayerNormalization-axis-neg1-7x13", "LayerNormalization", [X((7, 13)), W((13,)), W((13,))])
add("LayerNormalization-no-bias-7x13", "LayerNormalization", [X((7, 13)), W((13,))])
add("LayerNormalization-axis1-3x5x7", "LayerNormalization", [X((3, 5, 7)), W((5, 7)), W((5, 7))],
    {"axis": 1, "epsilon": 1e-3})
add("LayerNormalization-axis-neg1-3x5x7", "LayerNormalization", [X((3, 5, 7)), W((7,)), W((7,))])
add("LayerNormalization-scale-broadcast-3x5x7", "LayerNormalization", [X((3, 5, 7)), W((1, 7)), W((7,))],
    {"axis": 1})
add("LayerNormalization-scale-as-input-7x13", "LayerNormalization", [X((7, 13)), X((13,)), X((13,))])
add("LayerNormalization-64x4096", "LayerNormalization", [X(LARGE), W((4096,)), W((4096,))])

add("RMSNormalization-axis-neg1-7x13", "RMSNormalization", [X((7, 13)), W((13,))], opset=23)
add("RMSNormalization-axis1-3x5x7", "RMSNormalization", [X((3, 5, 7)), W((5, 7))], {"axis": 1, "epsilon": 1e-3},
    opset=23)
add("RMSNormalization-scale-broadcast-3x5x7", "RMSNormalization", [X((3, 5, 7)), W((1, 7))], {"axis": 1},
    opset=23)
add("RMSNormalization-64x4096", "RMSNormalization", [X(LARGE), W((4096,))], opset=23)

add("InstanceNormalization-2x3x5x7", "InstanceNormalization", [X((2, 3, 5, 7)), W((3,)), W((3,))])
add("InstanceNormalization-1d-2x4x9", "InstanceNormalization", [X((2, 4, 9)), W((4,)), W((4,))],
    {"epsilon": 1e-3})
add("InstanceNormalization-1x2x64x64", "InstanceNormalization", [X((1, 2, 64, 64)), W((2,)), W((2,))])

add("LRN-size3-2x7x5x5", "LRN", [X((2, 7, 5, 5))], {"size": 3})
add("LRN-size5-attrs-2x7x5x5", "LRN", [X((2, 7, 5, 5))], {"size": 5, "alpha": 0.01, "beta": 0.5, "bias": 2.0})
add("LRN-size3-1x1x4x4", "LRN", [X((1, 1, 4, 4))], {"size": 3, "alpha": 0.2})


# --------------------------------------------------------------------------------------
# Convolution and pooling
# --------------------------------------------------------------------------------------
def conv(case_id, x, w, bias=True, opset=17, weights="normal", **attrs):
    ins = [X(x), W(w, "f32", weights)] + ([W((w[0],))] if bias else [])
    add(f"Conv-{case_id}", "Conv", ins, attrs, opset)


conv("3x3-bias", (1, 4, 9, 11), (6, 4, 3, 3))
conv("3x3-no-bias", (1, 4, 9, 11), (6, 4, 3, 3), bias=False)
conv("pads1", (2, 3, 7, 7), (4, 3, 3, 3), pads=[1, 1, 1, 1])
conv("asymmetric-pads", (1, 3, 7, 8), (4, 3, 3, 3), pads=[0, 1, 2, 1])
conv("strides2", (1, 3, 9, 11), (5, 3, 3, 3), strides=[2, 2])
conv("strides2-pads1", (1, 3, 10, 10), (5, 3, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1])
conv("strides-1x2", (1, 2, 7, 9), (3, 2, 3, 3), strides=[1, 2])
conv("dilations2", (1, 3, 11, 11), (4, 3, 3, 3), dilations=[2, 2])
conv("dilations2-pads2", (1, 2, 9, 9), (3, 2, 3, 3), dilations=[2, 2], pads=[2, 2, 2, 2])
conv("group2", (1, 4, 7, 7), (6, 2, 3, 3), group=2)
conv("group2-strides2-pads1", (2, 6, 8, 8), (4, 3, 3, 3), group=2, strides=[2, 2], pads=[1, 1, 1, 1])
conv("depthwise", (1, 5, 9, 9), (5, 1, 3, 3), group=5, pads=[1, 1, 1, 1])
conv("depthwise-multiplier2", (1, 3, 8, 8), (6, 1, 3, 3), group=3)
# depthwise rows in vector registers: several chunks of columns with a masked last vector, strided loads,
# edge columns on both sides, window rows skipped at the top and bottom, and an image all of whose columns
# are edges
conv("depthwise-wide-pads1", (2, 4, 6, 61), (4, 1, 3, 3), group=4, pads=[1, 1, 1, 1])
conv("depthwise-wide-strides2-pads1", (1, 4, 7, 61), (4, 1, 3, 3), group=4, strides=[2, 2], pads=[1, 1, 1, 1])
conv("depthwise-strides-2x1-no-bias", (1, 3, 9, 20), (3, 1, 3, 3), bias=False, group=3, strides=[2, 1],
     pads=[1, 0, 1, 2])
conv("depthwise-strides3-dilations2", (1, 2, 13, 29), (2, 1, 3, 3), group=2, strides=[3, 3], dilations=[2, 2],
     pads=[2, 1, 0, 3])
conv("depthwise-5x5-all-edges", (1, 3, 3, 4), (3, 1, 5, 5), group=3, pads=[2, 2, 2, 2])
conv("depthwise-multiplier2-strides2", (1, 3, 12, 17), (6, 1, 3, 3), group=3, strides=[2, 2], pads=[1, 1, 1, 1])
# strided convs of 32 channels or more: a stride-1 conv per phase of the input, added up
conv("phases-3x3-strides2-pads1", (2, 32, 9, 11), (8, 32, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1])
conv("phases-3x3-strides2-asymmetric-pads-no-bias", (1, 40, 10, 7), (6, 40, 3, 3), bias=False, strides=[2, 2],
     pads=[0, 1, 2, 0])
conv("phases-5x5-strides2-pads2", (1, 32, 12, 12), (5, 32, 5, 5), strides=[2, 2], pads=[2, 2, 2, 2])
conv("1x1", (2, 8, 5, 7), (4, 8, 1, 1))
conv("1x1-no-bias-strides2", (1, 8, 5, 7), (4, 8, 1, 1), bias=False, strides=[2, 2])
conv("auto-pad-same-upper", (1, 3, 7, 7), (4, 3, 3, 3), auto_pad="SAME_UPPER")
conv("auto-pad-same-upper-strides2", (1, 3, 8, 9), (4, 3, 4, 4), auto_pad="SAME_UPPER", strides=[2, 2])
conv("auto-pad-same-lower-strides2", (1, 3, 8, 9), (4, 3, 4, 4), auto_pad="SAME_LOWER", strides=[2, 2])
conv("auto-pad-valid", (1, 3, 7, 7), (4, 3, 3, 3), auto_pad="VALID")
conv("kernel-shape-attr-5x3", (1, 2, 9, 9), (3, 2, 5, 3), kernel_shape=[5, 3])
conv("1d", (2, 3, 17), (4, 3, 3), pads=[1, 1])
conv("1d-strides2-dilations2", (1, 2, 20), (3, 2, 3), strides=[2], dilations=[2])
conv("3d", (1, 2, 5, 6, 7), (3, 2, 3, 3, 3), pads=[1, 1, 1, 1, 1, 1])
conv("1x1-input", (1, 3, 1, 1), (4, 3, 1, 1))
conv("moderate-1x16x32x32", (1, 16, 32, 32), (16, 16, 3, 3), pads=[1, 1, 1, 1])
# channels in whole blocks of a vector (8 or 16), enough of them to compute more than the reorders into and
# out of the blocked layout cost: blocked convs, pixels as rows of the micro-kernel with a few left over (99,
# 121 and 108 pixels), output channels as vectors; small weights keep the long sums' rounding within tolerance
conv("blocked-3x3-pads1", (1, 176, 9, 11), (176, 176, 3, 3), pads=[1, 1, 1, 1], weights="unit:0.05")
conv("blocked-dilations-2x1-no-bias", (1, 176, 11, 11), (176, 176, 3, 3), bias=False, dilations=[2, 1],
     pads=[2, 1, 2, 1], weights="unit:0.05")
conv("blocked-5x3-strides-1x2", (1, 160, 12, 17), (160, 160, 5, 3), strides=[1, 2], pads=[2, 1, 2, 1],
     weights="unit:0.05")
add("Conv-weights-as-inputs", "Conv", [X((1, 3, 7, 7)), X((4, 3, 3, 3)), X((4,))])
graph("Conv-BatchNormalization-folded",
      [("Conv", ["x", "w", "cb"], ["c"], {"pads": [1, 1, 1, 1]}),
       ("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"], {})],
      {"x": X((1, 3, 6, 6)), "w": W((4, 3, 3, 3)), "cb": W((4,)), "s": W((4,)), "b": W((4,)), "m": W((4,)),
       "v": W((4,), "f32", "pos")}, ["y"])
graph("Conv-Relu-chain",
      [("Conv", ["x", "w"], ["c"], {}), ("Relu", ["c"], ["y"], {})],
      {"x": X((1, 3, 6, 6)), "w": W((4, 3, 3, 3))}, ["y"])


def conv_transpose(case_id, x, w, bias=True, **attrs):
    ins = [X(x), W(w)] + ([W((w[1] * attrs.get("group", 1),))] if bias else [])
    add(f"ConvTranspose-{case_id}", "ConvTranspose", ins, attrs)


conv_transpose("3x3", (1, 4, 5, 6), (4, 3, 3, 3))
conv_transpose("no-bias", (1, 4, 5, 6), (4, 3, 3, 3), bias=False)
conv_transpose("strides2", (1, 3, 4, 5), (3, 2, 3, 3), strides=[2, 2])
conv_transpose("strides2-pads1", (1, 3, 4, 5), (3, 2, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1])
conv_transpose("strides2-output-padding", (1, 3, 4, 5), (3, 2, 3, 3), strides=[2, 2], output_padding=[1, 1])
conv_transpose("dilations2", (1, 2, 4, 4), (2, 3, 3, 3), dilations=[2, 2])
conv_transpose("group2", (1, 4, 5, 5), (4, 2, 3, 3), group=2)
conv_transpose("auto-pad-same-upper-strides2", (1, 2, 4, 5), (2, 3, 3, 3), strides=[2, 2],
               auto_pad="SAME_UPPER")
conv_transpose("output-shape", (1, 2, 4, 5), (2, 3, 3, 3), strides=[2, 2], output_shape=[10, 11])
conv_transpose("1d", (2, 3, 7), (3, 2, 3), strides=[2])
conv_transpose("kernel2-strides2", (1, 4, 6, 6), (4, 2, 2, 2), strides=[2, 2])


def pool(op, case_id, x, opset=17, **attrs):
    add(f"{op}-{case_id}", op, [X(x)], attrs, opset)


for _op in ("MaxPool", "AveragePool"):
    pool(_op, "2x2-strides2", (1, 3, 8, 10), kernel_shape=[2, 2], strides=[2, 2])
    pool(_op, "3x3-pads1", (2, 2, 7, 7), kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    pool(_op, "3x3-strides2-odd", (1, 2, 9, 11), kernel_shape=[3, 3], strides=[2, 2])
    pool(_op, "ceil-mode", (1, 2, 8, 8), kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    pool(_op, "ceil-mode-pads1", (1, 2, 7, 9), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
         ceil_mode=1)
    pool(_op, "asymmetric-pads", (1, 2, 6, 7), kernel_shape=[3, 2], pads=[1, 0, 0, 1])
    pool(_op, "auto-pad-same-upper", (1, 2, 7, 7), kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")
    pool(_op, "auto-pad-same-lower", (1, 2, 7, 7), kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_LOWER")
    pool(_op, "1d", (2, 3, 11), kernel_shape=[3], strides=[2])
    pool(_op, "global-window", (1, 3, 5, 5), kernel_shape=[5, 5])
    pool(_op, "moderate-1x16x64x64", (1, 16, 64, 64), kernel_shape=[2, 2], strides=[2, 2])
pool("MaxPool", "dilations2", (1, 2, 9, 9), kernel_shape=[3, 3], dilations=[2, 2])
pool("MaxPool", "dilations2-pads2", (1, 2, 9, 9), kernel_shape=[2, 2], dilations=[2, 2], pads=[1, 1, 1, 1])
# windows holding no input element (between dilated taps, or wholly in the padding) give the lowest float;
# ONNX Runtime refuses pads as wide as the kernel, which an empty window amid full ones needs
pool("MaxPool", "empty-window-all", (1, 1, 1, 1), kernel_shape=[2, 3], dilations=[2, 1], pads=[1, 2, 1, 2])
pool("MaxPool", "empty-window-rows", (1, 2, 1, 5), kernel_shape=[2, 2], dilations=[2, 1], pads=[1, 1, 1, 1])
add("MaxPool-empty-window-middle", "MaxPool", [X((1, 2, 2, 5))],
    {"kernel_shape": [2, 2], "dilations": [3, 1], "pads": [2, 1, 2, 1]}, oracle="reference")
add("MaxPool-empty-window-columns", "MaxPool", [X((1, 2, 3, 2))],
    {"kernel_shape": [2, 2], "dilations": [1, 3], "pads": [1, 2, 1, 2]}, oracle="reference")
# rows in vector registers: chunks of columns, a masked last vector, strided loads, edge columns
pool("MaxPool", "3x3-strides2-pads1-wide", (1, 3, 9, 113), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
add("MaxPool-empty-window-1d", "MaxPool", [X((1, 2, 3))], {"kernel_shape": [2], "dilations": [4], "pads": [3, 3]},
    oracle="reference")
pool("AveragePool", "count-include-pad", (2, 2, 7, 7), kernel_shape=[3, 3], pads=[1, 1, 1, 1],
     count_include_pad=1)
pool("AveragePool", "count-include-pad-strides2", (1, 2, 8, 9), kernel_shape=[3, 3], strides=[2, 2],
     pads=[1, 2, 1, 0], count_include_pad=1)
pool("AveragePool", "count-include-pad-ceil-mode", (1, 2, 8, 8), kernel_shape=[3, 3], strides=[2, 2],
     pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1)
pool("AveragePool", "dilations2", (1, 2, 9, 9), kernel_shape=[2, 2], dilations=[2, 2], opset=19)
graph("MaxPool-indices-output-unused", [("MaxPool", ["x"], ["y", ""], {"kernel_shape": [2, 2]})],
      {"x": X((1, 2, 6, 6))}, ["y"])


# --------------------------------------------------------------------------------------
# Gemm, MatMul, Einsum
# --------------------------------------------------------------------------------------
def gemm(case_id, a, b, c=None, **attrs):
    ins = [X(a), W(b)] + ([] if c is None else [W(c)])
    add(f"Gemm-{case_id}", "Gemm", ins, attrs)


gemm("no-c", (7, 13), (13, 5))
gemm("c-mxn", (7, 13), (13, 5), (7, 5))
gemm("c-n", (7, 13), (13, 5), (5,))
gemm("c-1xn", (7, 13), (13, 5), (1, 5))
gemm("c-mx1", (7, 13), (13, 5), (7, 1))
gemm("c-scalar", (7, 13), (13, 5), ())
gemm("c-1", (7, 13), (13, 5), (1,))
gemm("transA", (13, 7), (13, 5), (5,), transA=1)
gemm("transB", (7, 13), (5, 13), (5,), transB=1)
gemm("transA-transB", (13, 7), (5, 13), (7, 5), transA=1, transB=1)
gemm("alpha-beta", (7, 13), (13, 5), (7, 5), alpha=0.5, beta=2.0)
gemm("beta0", (7, 13), (13, 5), (7, 5), beta=0.0)
gemm("alpha-no-c", (7, 13), (13, 5), alpha=-1.5)
gemm("1x1", (1, 1), (1, 1), (1,))
gemm("moderate-64x256x128", (64, 256), (128, 256), (128,), transB=1)
add("Gemm-all-inputs", "Gemm", [X((7, 13)), X((13, 5)), X((7, 5))], {"alpha": 2.0, "beta": 0.5})
add("Gemm-transB-computed-B-alpha", "Gemm", [X((7, 13)), X((37, 13)), W((37,))], {"transB": 1, "alpha": 0.5})
graph("fused-MatMul-Add-Reshape-Transpose-into-heads",
      [("MatMul", ["x", "w"], ["m"], {}), ("Add", ["m", "b"], ["a"], {}), ("Reshape", ["a", "s"], ["r"], {}),
       ("Transpose", ["r"], ["y"], {"perm": [0, 2, 1, 3]})],
      {"x": X((1, 12, 32)), "w": W((32, 48)), "b": W((48,)), "s": C([1, 12, 4, 12])}, ["y"])
graph("fused-MatMul-Transpose-square", [("MatMul", ["x", "w"], ["m"], {}), ("Transpose", ["m"], ["t"], {}),
                                        ("Relu", ["t"], ["y"], {})], {"x": X((24, 24)), "w": W((24, 24))}, ["y"])
graph("Gemm-transB-shared-weight-two-layers",
      [("Gemm", ["x", "w"], ["h"], {"transB": 1}), ("Relu", ["h"], ["r"], {}),
       ("Gemm", ["r", "w"], ["y"], {"transB": 1})], {"x": X((6, 24)), "w": W((24, 24))}, ["y"])


def matmul(case_id, a, b, b_weight=False):
    add(f"MatMul-{case_id}", "MatMul", [X(a), W(b) if b_weight else X(b)])


matmul("7x13_13x5", (7, 13), (13, 5))
matmul("1d-2d", (13,), (13, 5))
matmul("2d-1d", (7, 13), (13,))
matmul("1d-1d", (13,), (13,))
matmul("batched", (3, 7, 13), (3, 13, 5))
matmul("broadcast-batch-2d-rhs", (3, 7, 13), (13, 5), b_weight=True)
matmul("broadcast-batch-2d-lhs", (7, 13), (3, 13, 5))
matmul("broadcast-batch-4d", (2, 1, 4, 5), (3, 5, 6))
matmul("broadcast-batch-both", (2, 1, 4, 5), (1, 3, 5, 6))
matmul("batched-1d-rhs", (3, 7, 13), (13,))
matmul("1d-batched-rhs", (13,), (3, 13, 5))
matmul("1x1", (1, 1), (1, 1))
matmul("moderate-64x256_256x64", (64, 256), (256, 64))
add("MatMul-i32", "MatMul", [X((7, 13), "i32", "int"), X((13, 5), "i32", "int")])
add("MatMul-i64", "MatMul", [X((3, 4), "i64", "int"), X((4,), "i64", "int")])

for _eq, _shapes in [("ij,jk->ik", [(7, 13), (13, 5)]), ("bij,bjk->bik", [(3, 7, 13), (3, 13, 5)]),
                     ("ij->ji", [(7, 13)]), ("ii->i", [(7, 7)]), ("i,i->", [(13,), (13,)]),
                     ("ij->i", [(7, 13)]), ("ij,ij->ij", [(7, 13), (7, 13)]), ("ij,jk", [(7, 13), (13, 5)]),
                     ("bij->bji", [(3, 5, 7)]), ("i,j->ij", [(7,), (13,)]), ("ij,j->i", [(7, 13), (13,)]),
                     ("bhqd,bhkd->bhqk", [(2, 3, 5, 4), (2, 3, 6, 4)]), ("ij,kj->ik", [(7, 13), (5, 13)]),
                     ("ij->", [(7, 13)])]:
    _id = _eq.replace(",", "_").replace("->", "-to-")
    add(f"Einsum-{_id}", "Einsum", [X(s) for s in _shapes], {"equation": _eq}, opset=12)


# --------------------------------------------------------------------------------------
# Data movement
# --------------------------------------------------------------------------------------
# Gather
add("Gather-axis0-7x13", "Gather", [X((7, 13)), X((5,), "i64", "index:7")])
add("Gather-axis1-7x13", "Gather", [X((7, 13)), X((4,), "i64", "index:13")], {"axis": 1})
add("Gather-axis-neg1-3x5x7", "Gather", [X((3, 5, 7)), X((2, 3), "i64", "index:7")], {"axis": -1})
add("Gather-2d-indices-axis1-3x5x7", "Gather", [X((3, 5, 7)), X((2, 4), "i64", "index:5")], {"axis": 1})
add("Gather-scalar-index-axis0-7x13", "Gather", [X((7, 13)), X((), "i64", "index:7")])
add("Gather-scalar-index-axis1-7x13", "Gather", [X((7, 13)), X((), "i64", "index:13")], {"axis": 1})
add("Gather-const-negative-indices", "Gather", [X((7, 13)), C([-1, 0, -7, 3, -2])])
add("Gather-const-scalar-index-axis1", "Gather", [X((7, 13)), C(-3)], {"axis": 1})
add("Gather-i32-indices", "Gather", [X((7, 13)), X((6,), "i32", "index:7")])
add("Gather-const-data-input-indices", "Gather", [W((10, 4)), X((3, 5), "i64", "index:10")])
add("Gather-i64-data-1d", "Gather", [X((13,), "i64", "int"), X((4,), "i64", "index:13")])
add("Gather-embedding-512x64", "Gather", [W((512, 64)), X((2, 32), "i64", "index:512")])

# Concat
add("Concat-3-inputs-axis0", "Concat", [X((2, 13)), X((1, 13)), X((4, 13))], {"axis": 0})
add("Concat-3-inputs-axis1", "Concat", [X((7, 3)), X((7, 1)), X((7, 9))], {"axis": 1})
add("Concat-3-inputs-axis-neg1-3d", "Concat", [X((2, 3, 4)), X((2, 3, 1)), X((2, 3, 2))], {"axis": -1})
add("Concat-2-inputs-axis1-3d", "Concat", [X((2, 3, 4)), X((2, 5, 4))], {"axis": 1})
add("Concat-1-input", "Concat", [X((7, 13))], {"axis": 0})
add("Concat-1d-single-elements", "Concat", [X((1,)), X((1,)), X((1,))], {"axis": 0})
add("Concat-i64-with-const", "Concat", [X((2, 3), "i64", "int"), C([[7, 8, 9]]), X((1, 3), "i64", "int")],
    {"axis": 0})
add("Concat-bool", "Concat", [X((3, 2), "bool"), X((3, 5), "bool")], {"axis": 1})
add("Concat-large", "Concat", [X((32, 4096)), X((32, 4096))], {"axis": 0})

# Split
add("Split-equal-axis0", "Split", [X((6, 13))], {"axis": 0}, outputs=3)
add("Split-equal-axis1", "Split", [X((7, 12))], {"axis": 1}, outputs=2)
add("Split-sizes-input", "Split", [X((7, 13)), C([3, 10])], {"axis": 1}, outputs=2)
add("Split-sizes-input-3", "Split", [X((7, 13)), C([2, 4, 1])], outputs=3)
add("Split-opset11-attr", "Split", [X((7, 13))], {"axis": 1, "split": [5, 8]}, opset=11, outputs=2)
add("Split-opset18-num-outputs-uneven", "Split", [X((7, 13))], {"axis": 1, "num_outputs": 3}, opset=18,
    outputs=3)
add("Split-axis-neg1-3d", "Split", [X((2, 3, 8))], {"axis": -1}, outputs=4)
graph("Split-one-output-unused", [("Split", ["x"], ["y0", "unused", "y2"], {"axis": 0})], {"x": X((6, 4))},
      ["y0", "y2"])

# Slice: opset 9 attributes, opset 13 inputs, negative steps
add("Slice-opset9-7x13", "Slice", [X((7, 13))], {"starts": [1, 2], "ends": [5, 11]}, opset=9)
add("Slice-opset9-axes-7x13", "Slice", [X((7, 13))], {"starts": [-4], "ends": [100], "axes": [1]}, opset=9)
add("Slice-opset9-negative-3x5x7", "Slice", [X((3, 5, 7))],
    {"starts": [0, -3], "ends": [-1, 10000], "axes": [0, 2]}, opset=9)
add("Slice-basic-7x13", "Slice", [X((7, 13)), C([1, 2]), C([5, 11])])
add("Slice-axes-steps-7x13", "Slice", [X((7, 13)), C([0, 1]), C([7, 13]), C([0, 1]), C([2, 3])])
add("Slice-negative-step-7x13", "Slice", [X((7, 13)), C([-1]), C([-100]), C([1]), C([-1])])
add("Slice-negative-step2-7x13", "Slice", [X((7, 13)), C([10, 6]), C([1, 0]), C([1, 0]), C([-2, -3])])
add("Slice-negative-axes-3x5x7", "Slice", [X((3, 5, 7)), C([1]), C([-1]), C([-2])])
add("Slice-int-max-end-7x13", "Slice", [X((7, 13)), C([3]), C([2**63 - 1]), C([1])])
add("Slice-int-min-end-reverse-7x13", "Slice", [X((7, 13)), C([-1]), C([-(2**63)]), C([0]), C([-1])])
add("Slice-i32-bounds-7x13", "Slice", [X((7, 13)), C([2], "i32"), C([6], "i32"), C([0], "i32")])
add("Slice-i64-data-7x13", "Slice", [X((7, 13), "i64", "int"), C([1]), C([3]), C([0])])
add("Slice-to-one-element-7x13", "Slice", [X((7, 13)), C([3, 4]), C([4, 5])])
add("Slice-64x4096", "Slice", [X(LARGE), C([8, 1]), C([60, 4000]), C([0, 1]), C([1, 3])])

# Transpose
add("Transpose-default-7x13", "Transpose", [X((7, 13))])
add("Transpose-default-3x5x7", "Transpose", [X((3, 5, 7))])
add("Transpose-perm-102-3x5x7", "Transpose", [X((3, 5, 7))], {"perm": [1, 0, 2]})
add("Transpose-perm-0231-2x3x4x5", "Transpose", [X((2, 3, 4, 5))], {"perm": [0, 2, 3, 1]})
add("Transpose-identity-perm-7x13", "Transpose", [X((7, 13))], {"perm": [0, 1]})
add("Transpose-1", "Transpose", [X((1,))])
add("Transpose-i64-7x13", "Transpose", [X((7, 13), "i64", "int")])
add("Transpose-64x4096", "Transpose", [X(LARGE)])

# Reshape family (views, no kernel: the output is a copy of the input buffer)
add("Reshape-minus1-7x13", "Reshape", [X((7, 13)), C([-1])])
add("Reshape-zero-copies-dim-3x5x7", "Reshape", [X((3, 5, 7)), C([0, -1])])
add("Reshape-to-4d-6x10", "Reshape", [X((6, 10)), C([2, 3, 5, 2])])
add("Reshape-to-scalar", "Reshape", [X((1,)), C([], "i64")])
add("Reshape-scalar-to-1x1", "Reshape", [X(()), C([1, 1])])
add("Reshape-i64-7x13", "Reshape", [X((7, 13), "i64", "int"), C([13, 7])])
for _axis in (0, 1, 2, -1):
    add(f"Flatten-axis{_axis}-3x5x7", "Flatten", [X((3, 5, 7))], {"axis": _axis})
add("Flatten-default-2x3x4x5", "Flatten", [X((2, 3, 4, 5))])
add("Squeeze-opset11-attr-axes", "Squeeze", [X((1, 7, 1, 13))], {"axes": [0, 2]}, opset=11)
add("Squeeze-opset13-input-axes", "Squeeze", [X((1, 7, 1, 13)), C([-2])], opset=13)
add("Squeeze-no-axes", "Squeeze", [X((1, 7, 1, 13))], opset=13)
add("Squeeze-1-to-scalar", "Squeeze", [X((1,))], opset=13)
add("Unsqueeze-opset11-attr-axes", "Unsqueeze", [X((7, 13))], {"axes": [0, 3]}, opset=11)
add("Unsqueeze-opset13-input-axes", "Unsqueeze", [X((7, 13)), C([1])], opset=13)
add("Unsqueeze-opset13-negative-axes", "Unsqueeze", [X((7, 13)), C([-1, 0])], opset=13)
add("Unsqueeze-scalar", "Unsqueeze", [X(()), C([0])], opset=13)
graph("Reshape-then-Add", [("Reshape", ["x", "s"], ["r"], {}), ("Add", ["r", "b"], ["y"], {})],
      {"x": X((3, 5, 7)), "s": C([15, 7]), "b": X((7,))}, ["y"])
graph("Transpose-Reshape-Relu", [("Transpose", ["x"], ["t"], {"perm": [1, 0, 2]}),
                                 ("Reshape", ["t", "s"], ["r"], {}), ("Relu", ["r"], ["y"], {})],
      {"x": X((3, 5, 7)), "s": C([5, 21])}, ["y"])
# reshapes fused with a transpose and an add, read group by group of dims: split (heads out of a hidden dim),
# merged (heads back into it), regrouped (6x4 as 4x6), and size-1 dims on either side
for _name, _shape, _target, _perm in [("split", (2, 3, 12), [2, 3, 4, 3], [0, 2, 1, 3]),
                                      ("merge", (2, 4, 3, 5), [2, 12, 5], [0, 2, 1]),
                                      ("regroup", (2, 6, 4), [2, 4, 6], [0, 2, 1]),
                                      ("ones", (1, 2, 1, 6), [2, 1, 3, 1, 2], [1, 0, 2, 4, 3])]:
    graph(f"Add-Reshape-{_name}-Transpose", [("Add", ["x", "b"], ["a"], {}), ("Reshape", ["a", "s"], ["r"], {}),
                                             ("Transpose", ["r"], ["y"], {"perm": _perm})],
          {"x": X(_shape), "b": X(_shape[-1:]), "s": C(_target)}, ["y"])

# Identity, Dropout
add("Identity-7x13", "Identity", [X((7, 13))])
add("Identity-scalar", "Identity", [X(())])
add("Identity-i64-1", "Identity", [X((1,), "i64", "int")])
add("Dropout-opset12-ratio-input", "Dropout", [X((7, 13)), C(0.3, "f32")], opset=12)
add("Dropout-opset10-ratio-attr", "Dropout", [X((7, 13))], {"ratio": 0.5}, opset=10)
add("Dropout-mask-output-unused", "Dropout", [X((7, 13))], outputs=["y0", ""])
add("Dropout-training-mode-false", "Dropout", [X((7, 13)), C(0.5, "f32"), C(False, "bool")])
graph("Identity-Dropout-Relu", [("Identity", ["x"], ["i"], {}), ("Dropout", ["i"], ["d"], {}),
                                ("Relu", ["d"], ["y"], {})], {"x": X((7, 13))}, ["y"])

# Expand, Tile
add("Expand-7x1-to-7x13", "Expand", [X((7, 1)), C([7, 13])])
add("Expand-13-to-3x7x13", "Expand", [X((13,)), C([3, 7, 13])])
add("Expand-shape-smaller-rank", "Expand", [X((3, 1)), C([2, 1, 6])])
add("Expand-shape-with-ones", "Expand", [X((7, 13)), C([1, 1])])
add("Expand-scalar", "Expand", [X(()), C([2, 3])])
add("Expand-i64", "Expand", [X((1, 4), "i64", "int"), C([3, 4])])
add("Expand-to-64x4096", "Expand", [X((64, 1)), C([64, 4096])])
add("Tile-2x3-7x13", "Tile", [X((7, 13)), C([2, 3])])
add("Tile-3d", "Tile", [X((2, 3, 4)), C([1, 2, 3])])
add("Tile-ones", "Tile", [X((7, 13)), C([1, 1])])
add("Tile-1", "Tile", [X((1,)), C([5])])
add("Tile-i32", "Tile", [X((3, 2), "i32", "int"), C([2, 2])])

# Pad: opset 2 (attributes, model opset 10), opset 11 inputs, opset 18 axes, modes
add("Pad-opset2-constant", "Pad", [X((7, 13))], {"pads": [1, 2, 3, 0], "value": 1.5}, opset=10)
add("Pad-opset2-edge", "Pad", [X((7, 13))], {"pads": [2, 1, 0, 3], "mode": "edge"}, opset=10)
add("Pad-opset2-reflect", "Pad", [X((7, 13))], {"pads": [2, 3, 1, 2], "mode": "reflect"}, opset=10)
add("Pad-opset11-constant-value", "Pad", [X((7, 13)), C([1, 2, 3, 0]), C(-2.5, "f32")], opset=11)
add("Pad-opset11-constant-no-value", "Pad", [X((7, 13)), C([0, 1, 2, 3])], opset=11)
add("Pad-constant", "Pad", [X((3, 5, 7)), C([0, 1, 2, 1, 0, 3]), C(0.25, "f32")])
add("Pad-reflect", "Pad", [X((3, 5, 7)), C([0, 2, 3, 0, 4, 6])], {"mode": "reflect"})
add("Pad-edge", "Pad", [X((3, 5, 7)), C([1, 2, 3, 2, 1, 0])], {"mode": "edge"})
add("Pad-negative-crop", "Pad", [X((7, 13)), C([-1, 2, -2, -3])])
add("Pad-negative-crop-edge", "Pad", [X((7, 13)), C([-2, 3, 1, -4])], {"mode": "edge"})
add("Pad-opset18-axes", "Pad", [X((3, 5, 7)), C([1, 2, 3, 4]), C(1.0, "f32"), C([0, -1])], opset=18)
add("Pad-opset19-wrap", "Pad", [X((3, 5, 7)), C([0, 2, 3, 0, 4, 5])], {"mode": "wrap"}, opset=19)
add("Pad-i64-constant", "Pad", [X((7, 13), "i64", "int"), C([1, 1, 1, 1]), C(9, "i64")])
add("Pad-1", "Pad", [X((1,)), C([2, 3])], {"mode": "edge"})
add("Pad-64x4096", "Pad", [X(LARGE), C([1, 2, 3, 4])])

# DepthToSpace, SpaceToDepth
add("DepthToSpace-DCR", "DepthToSpace", [X((1, 8, 3, 5))], {"blocksize": 2})
add("DepthToSpace-CRD", "DepthToSpace", [X((1, 8, 3, 5))], {"blocksize": 2, "mode": "CRD"})
add("DepthToSpace-DCR-blocksize3-batch2", "DepthToSpace", [X((2, 18, 2, 3))], {"blocksize": 3})
add("DepthToSpace-CRD-blocksize3", "DepthToSpace", [X((1, 18, 2, 3))], {"blocksize": 3, "mode": "CRD"})
add("SpaceToDepth-blocksize2", "SpaceToDepth", [X((1, 2, 6, 4))], {"blocksize": 2})
add("SpaceToDepth-blocksize3-batch2", "SpaceToDepth", [X((2, 3, 6, 9))], {"blocksize": 3})

# Trilu
add("Trilu-upper-7x13", "Trilu", [X((7, 13))])
add("Trilu-lower-7x13", "Trilu", [X((7, 13))], {"upper": 0})
add("Trilu-upper-k1-13x7", "Trilu", [X((13, 7)), C(1)])
add("Trilu-lower-k-neg1-7x13", "Trilu", [X((7, 13)), C(-1)], {"upper": 0})
add("Trilu-upper-k-neg2-batched", "Trilu", [X((3, 5, 7)), C(-2)])
add("Trilu-lower-k3-batched", "Trilu", [X((2, 5, 5)), C(3)], {"upper": 0})
add("Trilu-i64-upper", "Trilu", [X((5, 5), "i64", "int")])

# OneHot
add("OneHot-axis-neg1", "OneHot", [X((3, 4), "i64", "index:5"), C(5), C([0.0, 1.0], "f32")], opset=11)
add("OneHot-axis0", "OneHot", [X((3, 4), "i64", "index:6"), C(6), C([-1.0, 2.0], "f32")], {"axis": 0},
    opset=11)
add("OneHot-axis1", "OneHot", [X((3, 4), "i64", "index:5"), C(5), C([0.0, 3.0], "f32")],
    {"axis": 1}, opset=11)
add("OneHot-i64-values", "OneHot", [X((7,), "i64", "index:9"), C(9), C([2, 7])], opset=11)
add("OneHot-float-indices", "OneHot", [X((5,), "f32", "ties"), C(4.0, "f32"), C([0.0, 1.0], "f32")], opset=11)


# --------------------------------------------------------------------------------------
# Constants and shapes (folded at import: the output is a weight copied out)
# --------------------------------------------------------------------------------------
_const = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4) / 7, "v")
graph("Constant-as-output", [("Constant", [], ["y"], {"value": _const})], {"x": X((3, 4))}, ["y"])
graph("Constant-feeding-Add", [("Constant", [], ["k"], {"value": _const}), ("Add", ["x", "k"], ["y"], {})],
      {"x": X((3, 4))}, ["y"])
graph("Constant-value-float-splat", [("Constant", [], ["k"], {"value_float": 2.5}), ("Mul", ["x", "k"], ["y"], {})],
      {"x": X((7, 13))}, ["y"])
graph("Constant-value-ints", [("Constant", [], ["k"], {"value_ints": [1, -2, 3]}),
                              ("Add", ["x", "k"], ["y"], {})], {"x": X((2, 3), "i64", "int")}, ["y"])
graph("ConstantOfShape-as-output", [("ConstantOfShape", ["s"], ["y"],
                                     {"value": numpy_helper.from_array(np.array([1.5], np.float32))})],
      {"x": X((1,)), "s": C([3, 4])}, ["y"])
graph("ConstantOfShape-default-zero", [("ConstantOfShape", ["s"], ["y"], {})], {"x": X((1,)), "s": C([2, 5])},
      ["y"])
graph("ConstantOfShape-i64-from-Shape", [("Shape", ["x"], ["s"], {}),
                                         ("ConstantOfShape", ["s"], ["k"],
                                          {"value": numpy_helper.from_array(np.array([3], np.int64))}),
                                         ("Mul", ["x", "k"], ["y"], {})], {"x": X((7, 13), "i64", "int")}, ["y"])
graph("ConstantOfShape-feeding-Add", [("Shape", ["x"], ["s"], {}),
                                      ("ConstantOfShape", ["s"], ["k"],
                                       {"value": numpy_helper.from_array(np.array([2.0], np.float32))}),
                                      ("Add", ["x", "k"], ["y"], {})], {"x": X((7, 13))}, ["y"])
graph("Shape-as-output", [("Shape", ["x"], ["y"], {})], {"x": X((3, 5, 7))}, ["y"])
graph("Shape-start-end", [("Shape", ["x"], ["y"], {"start": 1, "end": -1})], {"x": X((3, 5, 7, 2))}, ["y"],
      opset=15)
graph("Shape-of-scalar", [("Shape", ["x"], ["y"], {})], {"x": X(())}, ["y"])
graph("Shape-Gather-Concat-Reshape",
      [("Shape", ["x"], ["s"], {}), ("Gather", ["s", "i0"], ["d0"], {"axis": 0}),
       ("Unsqueeze", ["d0", "a0"], ["d0u"], {}), ("Concat", ["d0u", "m1"], ["shape"], {"axis": 0}),
       ("Reshape", ["x", "shape"], ["r"], {}), ("Relu", ["r"], ["y"], {})],
      {"x": X((3, 5, 7)), "i0": C(0), "a0": C([0]), "m1": C([-1])}, ["y"])
graph("Shape-Cast-Add", [("Shape", ["x"], ["s"], {}), ("Cast", ["s"], ["f"], {"to": TensorProto.FLOAT}),
                         ("Add", ["y_in", "f"], ["y"], {})], {"x": X((3, 5, 7)), "y_in": X((4, 3))}, ["y"])
graph("Size-as-output", [("Size", ["x"], ["y"], {})], {"x": X((3, 5, 7))}, ["y"])
graph("Size-Cast-Mul", [("Size", ["x"], ["n"], {}), ("Cast", ["n"], ["f"], {"to": TensorProto.FLOAT}),
                        ("Mul", ["x", "f"], ["y"], {})], {"x": X((7, 13))}, ["y"])
graph("Range-f32-as-output", [("Range", ["s", "l", "d"], ["y"], {})],
      {"x": X((1,)), "s": C(0.5, "f32"), "l": C(7.0, "f32"), "d": C(0.75, "f32")}, ["y"])
graph("Range-i64-negative-delta", [("Range", ["s", "l", "d"], ["y"], {})],
      {"x": X((1,)), "s": C(10), "l": C(-3), "d": C(-3)}, ["y"])
graph("Range-i32-feeding-Add", [("Range", ["s", "l", "d"], ["r"], {}), ("Add", ["x", "r"], ["y"], {})],
      {"x": X((4, 13), "i32", "int"), "s": C(0, "i32"), "l": C(13, "i32"), "d": C(1, "i32")}, ["y"])
graph("Range-empty", [("Range", ["s", "l", "d"], ["y"], {})],
      {"x": X((1,)), "s": C(5), "l": C(2), "d": C(1)}, ["y"])

# --------------------------------------------------------------------------------------
# Edge cases: NaN, empty tensors, high rank
# --------------------------------------------------------------------------------------
add("Cast-f32-to-bool-fractions-7x13", "Cast", [X((7, 13), "f32", "normal")], {"to": TensorProto.BOOL})
add("Cast-f32-to-bool-special-7x13", "Cast", [X((7, 13), "f32", "special")], {"to": TensorProto.BOOL})
add("Relu-special-7x13", "Relu", [X((7, 13), "f32", "special")])
add("Max-special-7x13", "Max", [X((7, 13), "f32", "special"), X((7, 13))])
add("Min-special-7x13", "Min", [X((7, 13)), X((7, 13), "f32", "special")])
add("Clip-special-7x13", "Clip", [X((7, 13), "f32", "special"), C(-0.5, "f32"), C(0.5, "f32")])
# ONNX Runtime's ReduceMax drops NaN (onnx.reference and numpy propagate it): compare infinities only
add("ReduceMax-infs-axes-1-7x13", "ReduceMax", [X((7, 13), "f32", "infs"), C([1])], opset=18)
add("ReduceMin-infs-axes-0-7x13", "ReduceMin", [X((7, 13), "f32", "infs"), C([0])], opset=18)
add("Sign-special-7x13", "Sign", [X((7, 13), "f32", "special")])
add("Abs-special-7x13", "Abs", [X((7, 13), "f32", "special")])
add("Shrink-i32-7x13", "Shrink", [X((7, 13), "i32", "int")], {"lambd": 2.0, "bias": 1.0})
add("Add-empty-0x13_13", "Add", [X((0, 13)), X((13,))])
add("Concat-with-empty-input", "Concat", [X((7, 3)), X((7, 0)), X((7, 2))], {"axis": 1})
add("Slice-empty-result", "Slice", [X((7, 13)), C([5]), C([2]), C([1])])
add("ReduceSum-over-empty-axis", "ReduceSum", [X((0, 13)), C([0])], opset=13)
add("Add-5d-broadcast", "Add", [X((2, 1, 3, 1, 5)), X((4, 1, 6, 1))])
add("Transpose-6d", "Transpose", [X((2, 1, 3, 2, 2, 3))], {"perm": [5, 3, 1, 0, 4, 2]})
add("ReduceMean-5d-axes-1+3", "ReduceMean", [X((2, 3, 4, 5, 2)), C([1, 3])], opset=18)
add("Gather-1d-data-scalar-index", "Gather", [X((13,)), X((), "i64", "index:13")])
add("Softmax-masked-7x13", "Softmax", [X((7, 13), "f32", "masked")])
add("LogSoftmax-masked-7x13", "LogSoftmax", [X((7, 13), "f32", "masked")])
add("ReduceLogSumExp-masked-axes-1-7x13", "ReduceLogSumExp", [X((7, 13), "f32", "masked"), C([1])], opset=18)
add("ReduceMean-i32-axes-1-7x13", "ReduceMean", [X((7, 13), "i32", "int"), C([1])], opset=18)
add("OneHot-fractional-float-indices", "OneHot", [X((5, 3), "f32", "wide"), C(7.0, "f32"), C([0.0, 1.0], "f32")],
    opset=11)
add("Pow-negative-base-integral-exponent", "Pow", [X((7, 13)), X((7, 13), "f32", "ties")])
add("Clip-min-above-max-7x13", "Clip", [X((7, 13)), C(0.5, "f32"), C(-0.5, "f32")])
add("Pad-opset19-wrap-wider-than-axis", "Pad", [X((2, 3)), C([0, 4, 0, 5])], {"mode": "wrap"}, opset=19)
add("Tile-zero-repeat", "Tile", [X((7, 13)), C([0, 2])])
add("Flatten-axis-rank-3x5x7", "Flatten", [X((3, 5, 7))], {"axis": 3})
add("LayerNormalization-axis0-3x5x7", "LayerNormalization", [X((3, 5, 7)), W((3, 5, 7)), W((3, 5, 7))],
    {"axis": 0})
add("InstanceNormalization-1x1-spatial", "InstanceNormalization", [X((2, 3, 1, 1)), W((3,)), W((3,))])
add("ConvTranspose-auto-pad-same-lower-strides2", "ConvTranspose", [X((1, 2, 4, 5)), W((2, 3, 3, 3))],
    {"strides": [2, 2], "auto_pad": "SAME_LOWER"})
add("Selu-attrs-7x13", "Selu", [X((7, 13))], {"alpha": 2.0, "gamma": 0.5})
graph("output-and-its-reshape", [("Relu", ["x"], ["r"], {}), ("Reshape", ["r", "s"], ["y"], {})],
      {"x": X((3, 5, 7)), "s": C([15, 7])}, ["r", "y"])
graph("output-twice-through-Identity", [("Relu", ["x"], ["r"], {}), ("Identity", ["r"], ["i"], {})],
      {"x": X((7, 13))}, ["r", "i"])
graph("input-returned-and-used", [("Identity", ["x"], ["i"], {}), ("Neg", ["x"], ["n"], {})],
      {"x": X((7, 13))}, ["i", "n"])

# max/min reductions over rows of these lengths once aborted the process in LLVM's loop vectorizer
add("Softmax-1x77", "Softmax", [X((1, 77))])
add("LogSoftmax-3x105", "LogSoftmax", [X((3, 105))])
add("ReduceMax-axes-neg1-3x105", "ReduceMax", [X((3, 105)), C([-1])], opset=18)
add("ArgMin-axis1-3x125", "ArgMin", [X((3, 125))], {"axis": 1})
add("GlobalMaxPool-1d-2x3x89", "GlobalMaxPool", [X((2, 3, 89))])


# --------------------------------------------------------------------------------------
# Tiny graphs that the fusion pass groups into one kernel (or a few)
# --------------------------------------------------------------------------------------
def softmax_graph(case_id, shape, axis):
    graph(case_id, [("ReduceMax", ["x", "a"], ["m"], {}), ("Sub", ["x", "m"], ["d"], {}), ("Exp", ["d"], ["e"], {}),
                    ("ReduceSum", ["e", "a"], ["s"], {}), ("Div", ["e", "s"], ["y"], {})],
          {"x": X(shape), "a": C([axis])}, ["y"], opset=18)


softmax_graph("fused-manual-softmax-7x13", (7, 13), -1)
softmax_graph("fused-manual-softmax-axis0-7x13", (7, 13), 0)
softmax_graph("fused-manual-softmax-64x4096", LARGE, -1)
graph("fused-manual-layernorm-7x13",
      [("ReduceMean", ["x", "a"], ["mu"], {}), ("Sub", ["x", "mu"], ["d"], {}), ("Mul", ["d", "d"], ["d2"], {}),
       ("ReduceMean", ["d2", "a"], ["var"], {}), ("Add", ["var", "eps"], ["ve"], {}), ("Sqrt", ["ve"], ["sd"], {}),
       ("Div", ["d", "sd"], ["n"], {}), ("Mul", ["n", "g"], ["ng"], {}), ("Add", ["ng", "b"], ["y"], {})],
      {"x": X((7, 13)), "a": C([-1]), "eps": C(1e-5, "f32"), "g": W((13,)), "b": W((13,))}, ["y"], opset=18)
graph("fused-manual-gelu-64x4096",
      [("Div", ["x", "r2"], ["t"], {}), ("Erf", ["t"], ["e"], {}), ("Add", ["e", "one"], ["e1"], {}),
       ("Mul", ["x", "e1"], ["xe"], {}), ("Mul", ["xe", "half"], ["y"], {})],
      {"x": X(LARGE), "r2": C(1.4142135, "f32"), "one": C(1.0, "f32"), "half": C(0.5, "f32")}, ["y"])
graph("fused-dense-MatMul-Add-Relu",
      [("MatMul", ["x", "w"], ["m"], {}), ("Add", ["m", "b"], ["a"], {}), ("Relu", ["a"], ["y"], {})],
      {"x": X((7, 13)), "w": W((13, 5)), "b": W((5,))}, ["y"])
graph("fused-Gemm-Sigmoid-Mul",
      [("Gemm", ["x", "w", "b"], ["g"], {"transB": 1}), ("Sigmoid", ["g"], ["s"], {}),
       ("Mul", ["g", "s"], ["y"], {})],
      {"x": X((7, 13)), "w": W((5, 13)), "b": W((5,))}, ["y"])
graph("fused-Conv-Add-Relu-MaxPool",
      [("Conv", ["x", "w"], ["c"], {"pads": [1, 1, 1, 1]}), ("Add", ["c", "b"], ["a"], {}),
       ("Relu", ["a"], ["r"], {}), ("MaxPool", ["r"], ["y"], {"kernel_shape": [2, 2], "strides": [2, 2]})],
      {"x": X((1, 3, 8, 8)), "w": W((4, 3, 3, 3)), "b": W((1, 4, 1, 1))}, ["y"])
graph("fused-column-normalize-reduce-axis0",
      [("ReduceSum", ["x", "a"], ["s"], {}), ("Div", ["x", "s"], ["y"], {})],
      {"x": X((7, 13), "f32", "pos"), "a": C([0])}, ["y"], opset=13)
graph("fused-Transpose-Softmax-Transpose",
      [("Transpose", ["x"], ["t"], {"perm": [1, 0]}), ("Softmax", ["t"], ["s"], {"axis": -1}),
       ("Transpose", ["s"], ["y"], {"perm": [1, 0]})], {"x": X((7, 13))}, ["y"])
graph("fused-diamond-two-consumers",
      [("Exp", ["x"], ["e"], {}), ("Mul", ["e", "e"], ["sq"], {}), ("Sin", ["e"], ["s"], {}),
       ("Add", ["sq", "s"], ["y"], {})], {"x": X((7, 13))}, ["y"])
graph("fused-intermediate-also-output",
      [("Relu", ["x"], ["r"], {}), ("Exp", ["r"], ["e"], {}), ("ReduceSum", ["e", "a"], ["y"], {})],
      {"x": X((7, 13)), "a": C([1])}, ["r", "e", "y"], opset=13)
graph("fused-broadcast-chain-different-shapes",
      [("Add", ["a", "b"], ["s"], {}), ("Mul", ["s", "c"], ["m"], {}), ("Tanh", ["m"], ["y"], {})],
      {"a": X((7, 1)), "b": X((13,)), "c": X((3, 1, 1))}, ["y"])
graph("fused-Slice-Concat-Add",
      [("Slice", ["x", "s0", "e0", "ax"], ["p"], {}), ("Slice", ["x", "s1", "e1", "ax"], ["q"], {}),
       ("Concat", ["q", "p"], ["c"], {"axis": 1}), ("Add", ["c", "x"], ["y"], {})],
      {"x": X((7, 13)), "s0": C([0]), "e0": C([5]), "s1": C([5]), "e1": C([13]), "ax": C([1])}, ["y"])
graph("fused-Cast-Where-ReduceMax",
      [("Greater", ["x", "t"], ["m"], {}), ("Cast", ["m"], ["f"], {"to": TensorProto.FLOAT}),
       ("Where", ["m", "x", "f"], ["w"], {}), ("ReduceMax", ["w", "a"], ["y"], {"keepdims": 0})],
      {"x": X((7, 13)), "t": C(0.2, "f32"), "a": C([1])}, ["y"], opset=18)
graph("fused-Softmax-then-MatMul",
      [("Softmax", ["x"], ["s"], {"axis": -1}), ("MatMul", ["s", "v"], ["y"], {})],
      {"x": X((2, 7, 13)), "v": X((2, 13, 5))}, ["y"])
graph("fused-siblings-elementwise", [("Exp", ["x"], ["a"], {}), ("Sin", ["x"], ["b"], {})], {"x": X((7, 13))},
      ["a", "b"])
graph("fused-siblings-reductions", [("ReduceSum", ["x", "ax"], ["a"], {}), ("ReduceMax", ["x", "ax"], ["b"], {})],
      {"x": X((7, 13)), "ax": C([1])}, ["a", "b"], opset=18)
graph("fused-reduce-nokeep-Unsqueeze-Sub",
      [("ReduceMean", ["x", "ax"], ["m"], {"keepdims": 0}), ("Unsqueeze", ["m", "ax"], ["u"], {}),
       ("Sub", ["x", "u"], ["y"], {})], {"x": X((7, 13)), "ax": C([1])}, ["y"], opset=18)
graph("fused-Softmax-row-beyond-cache-2x20000", [("Exp", ["x"], ["e"], {}), ("Softmax", ["e"], ["y"], {})],
      {"x": X((2, 20000))}, ["y"])
graph("fused-LayerNormalization-row-beyond-cache-2x20000",
      [("Mul", ["x", "x"], ["sq"], {}), ("LayerNormalization", ["sq", "g"], ["y"], {})],
      {"x": X((2, 20000)), "g": W((20000,))}, ["y"])
graph("fused-LayerNormalization-Gelu",
      [("LayerNormalization", ["x", "g", "b"], ["n"], {}), ("Gelu", ["n"], ["y"], {})],
      {"x": X((7, 13)), "g": W((13,)), "b": W((13,))}, ["y"], opset=20)

# A row op read by a reduction along the same axis (the reduction walks the row op's own rows), a scan
# read by a row op along its axis (the scan's row is filled once), a kernel-filled row read at a
# constant column: fused regions that once gave wrong answers.
for _reduce, _extra in [("ReduceSum", {"keepdims": 1}), ("ReduceMax", {"keepdims": 1}), ("ReduceMin", {}),
                        ("ReduceMean", {"keepdims": 1}), ("ReduceL2", {"keepdims": 1})]:
    graph(f"fused-Softmax-{_reduce}-same-axis-2x8", [("Softmax", ["x"], ["s"], {"axis": -1}),
                                                     (_reduce, ["s", "a"], ["y"], _extra)],
          {"x": X((2, 8)), "a": C([-1])}, ["y"], opset=18)
graph("fused-Softmax-ArgMax-same-axis-3x37", [("Softmax", ["x"], ["s"], {"axis": -1}),
                                              ("ArgMax", ["s"], ["y"], {"axis": -1, "keepdims": 1})],
      {"x": X((3, 37))}, ["y"])
graph("fused-attention-pooling-ReduceSum-Softmax-Mul-2x8",
      [("Softmax", ["x"], ["s"], {"axis": -1}), ("Mul", ["s", "x"], ["p"], {}),
       ("ReduceSum", ["p", "a"], ["y"], {"keepdims": 1})], {"x": X((2, 8)), "a": C([-1])}, ["y"], opset=18)
graph("fused-LayerNormalization-ReduceMean-same-axis-3x5x7",
      [("LayerNormalization", ["x", "g", "b"], ["n"], {}), ("ReduceMean", ["n", "a"], ["y"], {"keepdims": 1})],
      {"x": X((3, 5, 7)), "g": W((7,)), "b": W((7,)), "a": C([-1])}, ["y"], opset=18)
for _row_op, _attrs in [("Softmax", {"axis": -1}), ("LogSoftmax", {"axis": -1}), ("Hardmax", {"axis": -1})]:
    graph(f"fused-CumSum-{_row_op}-same-axis-2x8", [("CumSum", ["x", "ax"], ["c"], {}), (_row_op, ["c"], ["y"], _attrs)],
          {"x": X((2, 8)), "ax": C(-1)}, ["y"])
graph("fused-CumSum-CumSum-reverse-exclusive-3x37",
      [("CumSum", ["x", "ax"], ["c"], {}), ("CumSum", ["c", "ax"], ["y"], {"reverse": 1, "exclusive": 1})],
      {"x": X((3, 37)), "ax": C(-1)}, ["y"])
graph("fused-CumSum-centered-by-ReduceMean-2x8",
      [("CumSum", ["x", "ax"], ["c"], {}), ("ReduceMean", ["c", "a"], ["m"], {"keepdims": 1}),
       ("Sub", ["c", "m"], ["y"], {})], {"x": X((2, 8)), "ax": C(-1), "a": C([-1])}, ["y"], opset=18)
graph("fused-CumSum-ArgMax-same-axis-3x37", [("CumSum", ["x", "ax"], ["c"], {}),
                                             ("ArgMax", ["c"], ["y"], {"axis": -1, "keepdims": 1})],
      {"x": X((3, 37)), "ax": C(-1)}, ["y"])
graph("fused-Conv-dilated-1-wide-rows-Mul", [("Conv", ["x", "w"], ["c"], {"dilations": [2, 2]}),
                                             ("Mul", ["c", "k"], ["y"], {})],
      {"x": X((1, 1, 7, 5)), "w": W((1, 1, 3, 3)), "k": C(2.0, "f32")}, ["y"])
graph("fused-Conv-1-wide-rows-Add-Relu", [("Conv", ["x", "w", "b"], ["c"], {"pads": [1, 0, 1, 0]}),
                                          ("Add", ["c", "r"], ["a"], {}), ("Relu", ["a"], ["y"], {})],
      {"x": X((2, 3, 6, 3)), "w": W((4, 3, 3, 3)), "b": W((4,)), "r": X((2, 4, 6, 1))}, ["y"])
# Reductions ending in a square root or a logarithm of integer tensors: computed in floating point and
# truncated, as ONNX Runtime does; with noop_with_empty_axes and no axes each element is reduced alone
for _reduce, _dom in [("ReduceL2", "int"), ("ReduceLogSum", "posint"), ("ReduceLogSumExp", "int")]:
    add(f"{_reduce}-i64-axis1-7x13", _reduce, [X((7, 13), "i64", _dom), C([1])], {"keepdims": 0}, opset=18)
for _reduce, _dom in [("ReduceL1", "normal"), ("ReduceL2", "normal"), ("ReduceSumSquare", "normal"),
                      ("ReduceLogSum", "pos"), ("ReduceLogSumExp", "normal")]:
    add(f"{_reduce}-noop-empty-axes-7x13", _reduce, [X((7, 13), "f32", _dom)], {"noop_with_empty_axes": 1}, opset=18)
add("ReduceLogSum-i32-noop-empty-axes-7x13", "ReduceLogSum", [X((7, 13), "i32", "posint")],
    {"noop_with_empty_axes": 1}, opset=18)

# NaN in a row: ArgMax/ArgMin give the first NaN's index (the last with select_last_index), the
# reductions and MaxPool give NaN, as numpy does
for _arg in ("ArgMax", "ArgMin"):
    for _last in (0, 1):
        add(f"{_arg}-nan-rows-last{_last}-7x13", _arg, [X((7, 13), "f32", "special")],
            {"axis": 1, "select_last_index": _last}, oracle="reference")
    graph(f"fused-Mul-{_arg}-nan-rows-7x13", [("Mul", ["x", "x"], ["m"], {}), (_arg, ["m"], ["y"], {"axis": -1})],
          {"x": X((7, 13), "f32", "special")}, ["y"], oracle="reference")
for _reduce in ("ReduceMax", "ReduceMin"):
    add(f"{_reduce}-nan-rows-7x13", _reduce, [X((7, 13), "f32", "special"), C([1])], opset=18, oracle="reference")
add("MaxPool-nan-1x2x6x6", "MaxPool", [X((1, 2, 6, 6), "f32", "special")], {"kernel_shape": [2, 2]},
    oracle="reference")

# --------------------------------------------------------------------------------------
# TopK: k passes per output line, ties to the lower index
# --------------------------------------------------------------------------------------
add("TopK-k3-7x13", "TopK", [X((7, 13)), C([3])], outputs=2)
add("TopK-smallest-axis0-7x13", "TopK", [X((7, 13)), C([2])], {"axis": 0, "largest": 0}, outputs=2)
graph("TopK-values-only-7x13", [("TopK", ["x", "k"], ["y", "indices"], {})], {"x": X((7, 13)), "k": C([4])}, ["y"])
add("TopK-nan-largest-7x13", "TopK", [X((7, 13), "f32", "special"), C([5])], outputs=2)
add("TopK-nan-smallest-k-all-7x13", "TopK", [X((7, 13), "f32", "special"), C([13])], {"largest": 0}, outputs=2)
add("TopK-ties-k-all-3x5x7", "TopK", [X((3, 5, 7), "f32", "ties"), C([7])], outputs=2)
add("TopK-ties-axis1-3x5x7", "TopK", [X((3, 5, 7), "f32", "ties"), C([3])], {"axis": 1}, outputs=2)
add("TopK-i64-smallest-7x13", "TopK", [X((7, 13), "i64", "int"), C([5])], {"largest": 0}, outputs=2)
add("TopK-opset9-attr-7x13", "TopK", [X((7, 13))], {"k": 2}, opset=9, outputs=2)


# --------------------------------------------------------------------------------------
# Resize and Upsample
# --------------------------------------------------------------------------------------
def resize(case_id, x, scales=None, sizes=None, roi=None, opset=19, **attrs):
    ins = [X(x), C(roi, "f32") if roi is not None else None, C(scales, "f32") if scales is not None else None,
           C(sizes) if sizes is not None else None]
    while ins[-1] is None:
        ins.pop()
    add(f"Resize-{case_id}", "Resize", ins, attrs, opset)


resize("nearest-up2", (1, 2, 3, 4), scales=[1, 1, 2, 2])
resize("nearest-down", (1, 2, 6, 8), scales=[1, 1, 0.5, 0.75])
resize("nearest-sizes-floor-asymmetric", (1, 1, 4, 5), sizes=[1, 1, 7, 9], mode="nearest", nearest_mode="floor",
       coordinate_transformation_mode="asymmetric")
resize("nearest-ceil-half-pixel", (1, 1, 4, 4), sizes=[1, 1, 8, 6], nearest_mode="ceil")
resize("linear-up", (1, 2, 4, 5), scales=[1, 1, 2, 1.5], mode="linear")
resize("linear-down-align-corners", (1, 1, 8, 8), sizes=[1, 1, 3, 5], mode="linear",
       coordinate_transformation_mode="align_corners")
resize("linear-pytorch-half-pixel", (2, 3, 5, 5), sizes=[2, 3, 3, 7], mode="linear",
       coordinate_transformation_mode="pytorch_half_pixel")
resize("cubic-up", (1, 1, 5, 6), scales=[1, 1, 2, 2], mode="cubic")
resize("cubic-exclude-outside", (1, 1, 6, 6), scales=[1, 1, 0.7, 1.3], mode="cubic", exclude_outside=1,
       cubic_coeff_a=-0.5)
resize("linear-antialias-down", (1, 1, 9, 9), scales=[1, 1, 0.5, 0.4], mode="linear", antialias=1)
resize("tf-crop-and-resize", (1, 1, 6, 6), sizes=[1, 1, 4, 5], roi=[0, 0, 0.2, 0.1, 1, 1, 0.9, 1.2],
       mode="linear", coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=7.0)
resize("axes-3-2", (2, 3, 4, 5), scales=[1.5, 2], axes=[3, 2], mode="nearest")
resize("not-larger", (1, 1, 4, 6), sizes=[8, 8], axes=[2, 3], keep_aspect_ratio_policy="not_larger")
resize("opset13-linear", (1, 2, 3, 3), scales=[1, 1, 2, 2], roi=[], mode="linear", opset=13)
resize("3d-linear", (2, 6, 5), scales=[1, 1, 1.6], mode="linear")
add("Upsample-nearest-opset9", "Upsample", [X((1, 2, 3, 3)), C([1, 1, 2, 3], "f32")], opset=9)
add("Upsample-linear-opset9", "Upsample", [X((1, 1, 3, 4)), C([1, 1, 2, 2], "f32")], {"mode": "linear"}, opset=9)


# GridSample: grids reach past the borders, so every padding mode matters. With cubic taps and border
# padding, ONNX Runtime clamps every coordinate to the border; ONNX (its reference, which makes the
# backend test data) clamps only those beyond the half-pixel border: that case is checked against ONNX.
for _mode in ("linear", "nearest", "cubic"):
    for _padding in ("zeros", "border", "reflection"):
        add(f"GridSample-{_mode}-{_padding}", "GridSample", [X((2, 3, 5, 6)), X((2, 4, 7, 2), "f32", "unit:1.3")],
            {"mode": _mode, "padding_mode": _padding}, opset=20,
            oracle="onnx" if (_mode, _padding) == ("cubic", "border") else "ort")
add("GridSample-linear-align-corners", "GridSample", [X((1, 2, 4, 4)), X((1, 3, 3, 2), "f32", "unit:1.2")],
    {"align_corners": 1}, opset=20)
add("GridSample-bilinear-opset16", "GridSample", [X((1, 2, 4, 5)), X((1, 3, 3, 2), "f32", "unit")], opset=16)
add("GridSample-volumetric-linear", "GridSample", [X((1, 2, 3, 4, 5)), X((1, 2, 3, 4, 3), "f32", "unit:1.1")],
    {"padding_mode": "border"}, opset=20)


add("AffineGrid-2d", "AffineGrid", [X((2, 2, 3)), C([2, 3, 4, 5])], opset=20)
add("AffineGrid-3d-align-corners", "AffineGrid", [X((1, 3, 4)), C([1, 1, 3, 4, 2])], {"align_corners": 1},
    opset=20)
graph("AffineGrid-GridSample",
      [("AffineGrid", ["theta", "size"], ["grid"], {}), ("GridSample", ["x", "grid"], ["y"], {})],
      {"theta": X((1, 2, 3), "f32", "unit:0.8"), "size": C([1, 2, 5, 6]), "x": X((1, 2, 4, 4))}, ["y"], opset=20)


# --------------------------------------------------------------------------------------
# Fourier transforms, Col2Im
# --------------------------------------------------------------------------------------
add("DFT-real-axis1", "DFT", [X((2, 8, 3, 1)), None, C(1)], opset=20)
add("DFT-complex-inverse", "DFT", [X((2, 5, 2))], {"inverse": 1}, opset=20)
add("DFT-onesided-length", "DFT", [X((3, 10, 1)), C(12)], {"onesided": 1}, opset=20)
add("DFT-irfft", "DFT", [X((2, 5, 2)), C(8)], {"inverse": 1, "onesided": 1}, opset=20)
add("DFT-opset17-axis-attr", "DFT", [X((1, 4, 6, 2))], {"axis": 2}, opset=17)
add("STFT-window", "STFT", [X((2, 32, 1)), C(4), W((8,)), C(8)], opset=17)
add("STFT-complex-two-sided", "STFT", [X((1, 20, 2)), C(5), None, C(6)], {"onesided": 0}, opset=17)
add("Col2Im-3x3", "Col2Im", [X((1, 18, 12)), C([5, 6]), C([3, 3])], opset=18)
add("Col2Im-strides-pads-dilations", "Col2Im", [X((2, 8, 12)), C([6, 7]), C([2, 2])],
    {"strides": [2, 2], "pads": [1, 0, 1, 1], "dilations": [1, 2]}, opset=18)


# --------------------------------------------------------------------------------------
# Gathers and scatters
# --------------------------------------------------------------------------------------
add("GatherElements-axis0-5x4", "GatherElements", [X((5, 4)), X((3, 4), "i64", "index:5")])
add("GatherElements-axis1-3x6", "GatherElements", [X((3, 6)), X((3, 2), "i64", "index:6")], {"axis": 1})
add("GatherElements-3d-i32-indices", "GatherElements", [X((2, 3, 4)), X((2, 3, 5), "i32", "index:4")],
    {"axis": -1})
add("GatherND-2x3x4", "GatherND", [X((2, 3, 4)), C([[0, 1], [1, -1]])])
add("GatherND-batch-dims1", "GatherND", [X((2, 3, 4)), C([[1], [2]])], {"batch_dims": 1})
add("ScatterElements-axis0", "ScatterElements", [X((4, 3)), C([[1, 0, 3], [2, 3, 0]]), X((2, 3))])
add("ScatterElements-axis1-add-duplicates", "ScatterElements", [X((3, 5)), C([[1, 1], [0, 4], [-1, 2]]),
                                                                X((3, 2))], {"axis": 1, "reduction": "add"},
    opset=18)
add("ScatterElements-max", "ScatterElements", [X((3, 4)), C([[1, 2, 1, 0]]), X((1, 4))], {"reduction": "max"},
    opset=18)
add("Scatter-opset10", "Scatter", [X((4, 3)), C([[3, 1, 0]]), X((1, 3))], opset=10)
add("ScatterND-rows", "ScatterND", [X((4, 3)), C([[2], [0]]), X((2, 3))])
add("ScatterND-elements-mul", "ScatterND", [X((2, 3, 4)), C([[0, 1, 2], [1, 2, 3], [0, 1, 2]]), X((3,))],
    {"reduction": "mul"}, opset=18)
add("TensorScatter-linear", "TensorScatter", [X((2, 3, 6, 4)), X((2, 3, 2, 4)), C([1, 4])], opset=24)
add("TensorScatter-circular-axis1", "TensorScatter", [X((3, 5, 2)), X((3, 3, 2)), C([0, 3, 4])],
    {"mode": "circular", "axis": 1}, opset=24)
add("TensorScatter-no-indices", "TensorScatter", [X((2, 4, 3)), X((2, 2, 3))], {"axis": 1}, opset=24)
add("ReverseSequence-time0", "ReverseSequence", [X((5, 3, 2)), C([5, 2, 0])], {"batch_axis": 1, "time_axis": 0})
add("ReverseSequence-batch0", "ReverseSequence", [X((3, 4)), C([1, 4, 3])], {"batch_axis": 0, "time_axis": 1})
add("Compress-axis0", "Compress", [X((4, 3)), C([True, False, True], "bool")], {"axis": 0})
add("Compress-flat", "Compress", [X((3, 4)), C([False, True, True, False, False, True], "bool")])
add("EyeLike-k1", "EyeLike", [X((4, 6))], {"k": 1})
add("EyeLike-int-k-neg2", "EyeLike", [X((5, 3))], {"k": -2, "dtype": TensorProto.INT32})
for _op in ("HannWindow", "HammingWindow", "BlackmanWindow"):
    add(f"{_op}-periodic", _op, [C(10)])
    add(f"{_op}-symmetric", _op, [C(7)], {"periodic": 0})


# --------------------------------------------------------------------------------------
# Integer and bit ops, quantization
# --------------------------------------------------------------------------------------
for _direction in ("LEFT", "RIGHT"):
    add(f"BitShift-{_direction}-u8", "BitShift", [X((7, 13), "u8", "posint"), C(np.arange(13) % 8, "u8")],
        {"direction": _direction}, opset=11)
    add(f"BitShift-{_direction}-u32", "BitShift", [X((7, 13), "u32", "posint"), X((13,), "u32", "posint")],
        {"direction": _direction}, opset=11)
add("BitCast-f32-to-i32", "BitCast", [X((7, 13))], {"to": TensorProto.INT32}, opset=26)
add("BitCast-i32-to-f32", "BitCast", [X((7, 13), "i32", "int")], {"to": TensorProto.FLOAT}, opset=26)
for _axis in (0, 1, -1):
    add(f"CumProd-axis{_axis}", "CumProd", [X((5, 6), "f32", "near1"), C(_axis)], opset=26)
add("CumProd-exclusive-reverse", "CumProd", [X((5, 6), "f32", "near1"), C(1)], {"exclusive": 1, "reverse": 1},
    opset=26)
add("MatMulInteger-u8", "MatMulInteger", [X((4, 5), "u8", "posint"), W((5, 3), "u8", "posint"), C(3, "u8"),
                                          C([1, 2, 3], "u8")], opset=10)
add("ConvInteger-u8", "ConvInteger", [X((1, 2, 5, 5), "u8", "posint"), W((3, 2, 3, 3), "u8", "posint"),
                                      C(2, "u8")], {"pads": [1, 1, 1, 1]}, opset=10)
add("QuantizeLinear-u8", "QuantizeLinear", [X((7, 13)), C(0.05, "f32"), C(128, "u8")], opset=19)
add("QuantizeLinear-i8-per-axis", "QuantizeLinear", [X((3, 4)), C([0.02, 0.05, 0.1, 0.2], "f32"),
                                                     C([0, 1, -2, 3], "i8")], {"axis": 1}, opset=19)
add("QuantizeLinear-blocked", "QuantizeLinear", [X((4, 6)), W((4, 3), "f32", "pos"), C(np.zeros((4, 3)), "u8")],
    {"axis": 1, "block_size": 2}, opset=21)
add("DequantizeLinear-u8", "DequantizeLinear", [X((7, 13), "u8", "posint"), C(0.05, "f32"), C(10, "u8")],
    opset=19)
add("DequantizeLinear-i8-per-axis", "DequantizeLinear", [X((3, 4), "i8", "int"), C([0.5, 0.25, 2.0], "f32")],
    {"axis": 0}, opset=19)
add("DequantizeLinear-i32", "DequantizeLinear", [X((5,), "i32", "int"), C(0.5, "f32")], opset=19)
add("DynamicQuantizeLinear", "DynamicQuantizeLinear", [X((3, 7))], opset=11, outputs=3)
add("QLinearMatMul-u8", "QLinearMatMul", [X((3, 4), "u8", "posint"), C(0.1, "f32"), C(3, "u8"),
                                          W((4, 5), "u8", "posint"), C(0.2, "f32"), C(2, "u8"), C(0.5, "f32"),
                                          C(100, "u8")], opset=10)
add("QLinearConv-u8", "QLinearConv", [X((1, 2, 5, 5), "u8", "posint"), C(0.1, "f32"), C(3, "u8"),
                                      W((3, 2, 3, 3), "u8", "posint"), C(0.05, "f32"), C(2, "u8"), C(0.4, "f32"),
                                      C(50, "u8")], opset=10)


# --------------------------------------------------------------------------------------
# Pooling and normalizations added for ONNX conformance
# --------------------------------------------------------------------------------------
pool("LpPool", "p2-3x3-pads1", (1, 2, 7, 7), kernel_shape=[3, 3], pads=[1, 1, 1, 1], opset=18)
pool("LpPool", "p1-strides2", (2, 3, 8, 8), kernel_shape=[2, 2], strides=[2, 2], p=1, opset=18)
pool("LpPool", "p3-1d", (1, 2, 9), kernel_shape=[3], p=3, opset=18)
add("GlobalLpPool-p2", "GlobalLpPool", [X((2, 3, 5, 5))])
graph("MaxPool-indices", [("MaxPool", ["x"], ["y", "i"], {"kernel_shape": [3, 3], "strides": [2, 2],
                                                         "pads": [1, 1, 1, 1]})],
      {"x": X((1, 2, 7, 8), "f32", "ties")}, ["y", "i"])
graph("MaxPool-indices-column-major", [("MaxPool", ["x"], ["y", "i"], {"kernel_shape": [2, 2],
                                                                      "storage_order": 1})],
      {"x": X((2, 2, 5, 6))}, ["y", "i"])
graph("MaxUnpool-after-MaxPool",
      [("MaxPool", ["x"], ["p", "i"], {"kernel_shape": [2, 2], "strides": [2, 2]}),
       ("MaxUnpool", ["p", "i"], ["y"], {"kernel_shape": [2, 2], "strides": [2, 2]})],
      {"x": X((1, 2, 6, 6))}, ["y"], opset=11)
# (with an output_shape, ONNX Runtime reads the indices in the output's layout, ONNX's reference and
# backend test data in the unpooled shape's, zero-padded at the end: fusecc follows ONNX; see the node tests)
add("LpNormalization-p2-axis1", "LpNormalization", [X((3, 5, 4))], {"axis": 1})
add("LpNormalization-p1", "LpNormalization", [X((7, 13))], {"p": 1})
add("LayerNormalization-mean-invstd", "LayerNormalization", [X((3, 4, 5)), W((4, 5)), W((4, 5))], {"axis": 1},
    outputs=3)
add("BatchNormalization-training", "BatchNormalization",
    [X((2, 3, 4, 5)), W((3,)), W((3,)), W((3,)), W((3,), "f32", "pos")], {"training_mode": 1, "momentum": 0.8},
    opset=15, outputs=3)
graph("Dropout-mask", [("Dropout", ["x"], ["y", "mask"], {})], {"x": X((7, 13))}, ["y", "mask"])
add("GroupNormalization", "GroupNormalization", [X((2, 6, 4, 3)), W((6,)), W((6,))], {"num_groups": 3},
    opset=21)
add("MeanVarianceNormalization", "MeanVarianceNormalization", [X((2, 3, 4, 5))])


# --------------------------------------------------------------------------------------
# RNN, GRU, LSTM (unrolled)
# --------------------------------------------------------------------------------------
def recurrent(case_id, op, seq, batch, size, hidden, directions=1, bias=True, lengths=None, initial=False,
              outputs=("y", "y_h"), opset=22, **attrs):
    """ONNX Runtime has no batchwise (layout=1) recurrences: those cases are checked against onnx.reference."""
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    names = ["x", "w", "r", "b" if bias else "", "lens" if lengths is not None else "", "h0" if initial else ""]
    inputs = {"x": X((seq, batch, size) if not attrs.get("layout") else (batch, seq, size)),
              "w": W((directions, gates * hidden, size)), "r": W((directions, gates * hidden, hidden))}
    if bias:
        inputs["b"] = W((directions, 2 * gates * hidden))
    if lengths is not None:
        inputs["lens"] = C(lengths, "i32")
    if initial:
        inputs["h0"] = W((directions, batch, hidden))
    if op == "LSTM" and initial:
        names += ["c0", "p"]
        inputs["c0"] = W((directions, batch, hidden))
        inputs["p"] = W((directions, 3 * hidden))
    while names[-1] == "":
        names.pop()
    graph(f"{op}-{case_id}", [(op, names, list(outputs), {"hidden_size": hidden, **attrs})], inputs,
          [o for o in outputs if o], opset=opset, oracle="onnx" if attrs.get("layout") else "ort")


for _op in ("RNN", "GRU", "LSTM"):
    _outputs = ("y", "y_h", "y_c") if _op == "LSTM" else ("y", "y_h")
    recurrent("forward", _op, 4, 2, 3, 5, outputs=_outputs)
    recurrent("reverse-no-bias", _op, 3, 2, 4, 3, bias=False, direction="reverse")
    recurrent("bidirectional-initial", _op, 3, 2, 3, 4, directions=2, initial=True, outputs=_outputs,
              direction="bidirectional")
    recurrent("sequence-lens-bidirectional", _op, 4, 3, 2, 3, directions=2, lengths=[4, 2, 1],
              direction="bidirectional")
    recurrent("batchwise", _op, 3, 2, 3, 4, layout=1)
    if _op != "LSTM":  # ONNX Runtime does not clip the cell state LSTM's h() activation reads; ONNX says to
        recurrent("clip", _op, 3, 2, 3, 4, clip=0.8)
recurrent("linear-before-reset", "GRU", 3, 2, 3, 4, linear_before_reset=1)
recurrent("activations", "RNN", 3, 2, 3, 4, activations=["Relu"])
recurrent("input-forget", "LSTM", 3, 1, 3, 2, input_forget=1)


# --------------------------------------------------------------------------------------
# Ops imported through their ONNX function body
# --------------------------------------------------------------------------------------
add("Attention-4d", "Attention", [X((2, 3, 4, 8)), X((2, 3, 6, 8)), X((2, 3, 6, 5))], opset=23)
add("Attention-causal-scale", "Attention", [X((1, 2, 5, 4)), X((1, 2, 5, 4)), X((1, 2, 5, 4))],
    {"is_causal": 1, "scale": 0.3}, opset=23)
add("Attention-gqa-bool-mask", "Attention", [X((1, 4, 3, 8)), X((1, 2, 5, 8)), X((1, 2, 5, 8)),
                                             X((3, 5), "bool")], opset=23)
add("Attention-3d-float-mask", "Attention", [X((2, 4, 12)), X((2, 6, 12)), X((2, 6, 12)), X((4, 6))],
    {"q_num_heads": 3, "kv_num_heads": 3}, opset=23)
add("RotaryEmbedding", "RotaryEmbedding", [X((1, 2, 3, 8)), X((4, 4)), X((4, 4)), C([[0, 2, 3]])], opset=23)
add("RotaryEmbedding-interleaved-3d", "RotaryEmbedding", [X((2, 3, 8)), X((5, 2)), X((5, 2)),
                                                           C([[0, 1, 4], [2, 3, 1]])],
    {"interleaved": 1, "num_heads": 2}, opset=23)
add("Swish", "Swish", [X((7, 13))], {"alpha": 1.5}, opset=24)
add("SwiGLU", "SwiGLU", [X((3, 8)), X((3, 8))], {"alpha": 1.7}, opset=28, oracle="onnx")
add("CausalConvWithState", "CausalConvWithState", [X((1, 4, 6)), W((4, 1, 3)), W((4,))], opset=27,
    oracle="onnx")
add("CenterCropPad-crop-and-pad", "CenterCropPad", [X((5, 7, 3)), C([8, 4])], {"axes": [0, 1]}, opset=18)
add("NegativeLogLikelihoodLoss-mean-weight", "NegativeLogLikelihoodLoss",
    [X((3, 5, 2)), X((3, 2), "i64", "posint:5"), W((5,), "f32", "pos")], opset=22)
add("NegativeLogLikelihoodLoss-none-ignore", "NegativeLogLikelihoodLoss", [X((4, 5)), C([1, 0, 3, 3])],
    {"reduction": "none", "ignore_index": 3}, opset=22)
add("SoftmaxCrossEntropyLoss-mean", "SoftmaxCrossEntropyLoss", [X((3, 5)), C([1, 4, 0])], opset=13)
add("SoftmaxCrossEntropyLoss-sum-log-prob", "SoftmaxCrossEntropyLoss", [X((2, 4, 3)), C([[0, 1, 3], [2, 2, 1]]),
                                                                        W((4,), "f32", "pos")],
    {"reduction": "sum"}, opset=13, outputs=2)


# --------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------
def check(actual: list, expected: list, tol: tuple[float, float], what: str) -> None:
    assert len(actual) == len(expected), f"{what}: {len(actual)} outputs, expected {len(expected)}"
    for i, (got, want) in enumerate(zip(actual, expected)):
        got, want = np.asarray(got), np.asarray(want)
        where = f"{what}, output #{i}"
        assert got.shape == want.shape, f"{where}: shape {got.shape}, expected {want.shape}"
        assert got.dtype == want.dtype, f"{where}: dtype {got.dtype}, expected {want.dtype}"
        if np.issubdtype(want.dtype, np.floating):
            np.testing.assert_allclose(got, want, rtol=tol[0], atol=tol[1], equal_nan=True, err_msg=where)
        else:
            np.testing.assert_array_equal(got, want, err_msg=where)


def run_onnxruntime(model, feeds: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def run_oracle(case: Case, model, feeds: dict) -> list[np.ndarray]:
    if case.oracle == "onnx":
        from onnx.reference import ReferenceEvaluator
        return ReferenceEvaluator(model).run(None, feeds)
    if case.oracle == "reference":
        return interpret(import_model(model), feeds)
    return run_onnxruntime(model, feeds)


#: thread counts every case runs with besides one (the suite splits every kernel, see ``conftest``)
THREAD_COUNTS = (2, 3, 7)


def _param(case: Case):
    bug = case.xfail
    marks = [pytest.mark.xfail(reason=bug.reason, raises=bug.raises, strict=True)] if bug else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_op(case: Case):
    model, feeds = case.build()
    expected = run_oracle(case, model, feeds)

    compiled = fusecc.compile(model)
    actual = compiled.run(feeds)
    check(actual, expected, DEFAULT_TOL, f"fusecc vs the oracle ({case.oracle})")
    one_thread = compiled.run(feeds, threads=1)
    for threads in THREAD_COUNTS:  # chunks of rows split unevenly: the results must not change by a bit
        for got, want in zip(compiled.run(feeds, threads=threads), one_thread):
            assert got.tobytes() == want.tobytes(), f"{threads} threads differ from 1"

    reference = interpret(import_model(model), feeds)
    check(actual, reference, DEFAULT_TOL, "fusecc vs the reference interpreter")

    unfused = fusecc.compile(model, fusion=False)
    check(unfused.run(feeds), expected, DEFAULT_TOL, "fusecc (fusion=False) vs the oracle")


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert sorted({i for i in ids if ids.count(i) > 1}) == []


def test_every_supported_op_is_covered():
    covered = set().union(*(c.op_types for c in CASES if not c.xfail))
    xfailed = set().union(*(c.op_types for c in CASES if c.xfail)) - covered
    assert sorted(set(supported_ops()) - covered - xfailed) == []
    assert xfailed == set()
