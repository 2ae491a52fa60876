"""Random-graph fuzzer for fusion: random valid ONNX graphs, fusecc fused and unfused against ONNX Runtime.

Run it from the repository root:

    python -m fusecc.tools.fuzz --minutes 10 --seed 1        # failures minimised into tests/fuzz_cases/
    python -m fusecc.tools.fuzz --count 300 --seed 7 --json  # a bounded run, machine-readable report
    python -m fusecc.tools.fuzz --seed 1 --replay 42         # graph #42 of seed 1: its nodes and outcome

Graph #i of seed S is built from a generator seeded with (S, i) alone, so any
graph of a run can be replayed. A graph is one to a few dozen ONNX nodes
(opset 17 to 21, default domain) over the ops in ``GENERATORS``, chosen by a
theme (elementwise chains, row ops, matmul/gemm, conv, data movement,
integers); operands are picked mostly from the values built so far, which
gives chains, diamonds and broadcasting. Every value carries an interval
bound and whether any correct implementation computes it bit for bit, so
ops with a restricted domain (Log, Div, Exp, ...) only see inputs inside it
and ops that are discontinuous in their input (Floor, comparisons, ArgMax,
...) only see exactly computed inputs: a difference is then a bug, not a
rounding artefact. Each graph must pass ``onnx.checker.check_model(model,
full_check=True)`` and load in ONNX Runtime, else it counts as ``invalid``
(a generator defect).

Each graph runs ONNX Runtime (graph optimisations off) in this process and
fusecc in a worker process: the reference interpreter on the imported
module, ``fusecc.compile(model, fusion=False)`` and ``fusecc.compile(model)``.
Outcomes:

    match        every output of the three agrees with ONNX Runtime
    clear-error  fusecc refused the model with a message naming the problem (unsupported op, attribute, ...)
    mismatch     an output differs (shape, dtype, value or NaN position)
    error        fusecc raised an internal error (a failed pass, a converter bug, a Python exception)
    crash        the worker died (segfault, LLVM abort) in a variant, or freeing its compiled models ("cleanup")
    hang         a variant ran longer than ``--timeout`` seconds

A failure is minimised (nodes dropped, dimensions shrunk, attributes and
weights removed while it still fails the same way) and written to ``--out``
as ``<name>.onnx`` with a sidecar ``<name>.json``: the seed of its random
inputs, the failure class and the minimal graph. ``tests/test_fuzz.py`` runs
every such case. A failure whose graph contains the pattern of a case
already minimised (same failure class, same op-to-op edges) counts as a
duplicate of it and is not minimised again.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# --------------------------------------------------------------------------------------
# Element types and random inputs
# --------------------------------------------------------------------------------------
ONNX_TYPES = {"f32": TensorProto.FLOAT, "f16": TensorProto.FLOAT16, "i32": TensorProto.INT32,
              "i64": TensorProto.INT64, "bool": TensorProto.BOOL}
NUMPY_TYPES = {"f32": np.float32, "f16": np.float16, "i32": np.int32, "i64": np.int64, "bool": np.bool_}
DTYPE_OF_ONNX = {code: name for name, code in ONNX_TYPES.items()}
FLOATS = ("f32", "f16")
INTS = ("i32", "i64")
NUMBERS = FLOATS + INTS

#: graph inputs hold these values (floats: standard normal clipped to the range), so every
#: graph input, including one the minimiser makes of an intermediate value, has a known bound
INPUT_RANGE = {"f32": (-4.0, 4.0), "f16": (-4.0, 4.0), "i32": (-20.0, 20.0), "i64": (-20.0, 20.0),
               "bool": (0.0, 1.0)}

#: largest magnitude a value may reach: f16 keeps its rounding error small, ints stay far from overflow
MAGNITUDE_LIMIT = {"f32": 1e5, "f16": 1e3, "i32": 2.0 ** 30, "i64": 2.0 ** 40, "bool": 1.0}


def input_values(seed: int, name: str, shape: tuple, dtype: str) -> np.ndarray:
    """The values a graph input named ``name`` is fed: the same for a name and seed in every graph."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    low, high = INPUT_RANGE[dtype]
    if dtype in FLOATS:
        values = np.clip(rng.standard_normal(shape), low, high)
    elif dtype == "bool":
        values = rng.random(shape) < 0.5
    else:
        values = rng.integers(int(low), int(high) + 1, shape)
    return np.asarray(values).astype(NUMPY_TYPES[dtype])


def graph_inputs(model: onnx.ModelProto) -> list[tuple[str, tuple, str]]:
    """(name, shape, dtype) of the inputs a model is fed (graph inputs that are not initializers)."""
    initialized = {t.name for t in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initialized:
            continue
        tensor = value.type.tensor_type
        specs.append((value.name, tuple(d.dim_value for d in tensor.shape.dim), DTYPE_OF_ONNX[tensor.elem_type]))
    return specs


def sample_feeds(model: onnx.ModelProto, seed: int) -> dict[str, np.ndarray]:
    return {name: input_values(seed, name, shape, dtype) for name, shape, dtype in graph_inputs(model)}


# --------------------------------------------------------------------------------------
# Values and the graph builder
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Value:
    """A tensor of the graph being built, with what the generators know about its elements."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    lo: float
    hi: float
    #: every correct implementation computes it bit for bit (inputs, weights, data movement, ints, ...)
    exact: bool = False
    #: axes along which comparing two elements gives the same answer everywhere (for ArgMax, Hardmax)
    ordered: frozenset = frozenset()

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def bound(self) -> float:
        return max(abs(self.lo), abs(self.hi))

    def ordered_along(self, axis: int) -> bool:
        return self.exact or axis % max(self.rank, 1) in self.ordered


#: the most elements any value of a generated graph holds
MAX_ELEMENTS = 1 << 15
SMALL_DIMS = (1, 1, 2, 3, 4, 5, 7, 8, 13, 16, 17, 31, 33)
#: sizes of the occasional long axis (the axis row ops and reductions run along)
LONG_DIMS = (100, 127, 257, 513, 1000, 1025, 2049, 3001)


class GraphBuilder:
    """Collects nodes, graph inputs and initializers; ``pool`` holds the values ops may read."""

    def __init__(self, rng: np.random.Generator, opset: int, dtype: str, long_axis: float):
        self.rng = rng
        self.opset = opset
        #: element type of new graph inputs when an op takes it
        self.dtype = dtype
        #: probability that a new input's shape has one long axis
        self.long_axis = long_axis
        self.nodes: list[onnx.NodeProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.pool: list[Value] = []
        self.uses: Counter = Counter()
        self._counter = 0

    # -- names and random choices -------------------------------------------------------
    def fresh_name(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def choice(self, options):
        return options[int(self.rng.integers(len(options)))]

    def axis(self, rank: int, allowed=None) -> int | None:
        """An axis of a rank-``rank`` tensor, the last one half the time, written negative or not."""
        axes = [a for a in range(rank) if allowed is None or a in allowed]
        if not axes:
            return None
        axis = rank - 1 if rank - 1 in axes and self.chance(0.5) else self.choice(axes)
        return axis - rank if self.chance(0.4) else axis

    def shape(self, rank: int | None = None) -> tuple[int, ...]:
        """A random shape: small dims with 1s and odd sizes, now and then one long axis."""
        rank = self.choice((1, 2, 2, 3, 3, 4)) if rank is None else rank
        dims = [self.choice(SMALL_DIMS) for _ in range(rank)]
        if rank and self.chance(self.long_axis):
            dims[rank - 1 if self.chance(0.7) else int(self.rng.integers(rank))] = self.choice(LONG_DIMS)
        return fit_elements(dims)

    def input_dtype(self, accepted: tuple[str, ...]) -> str:
        return self.dtype if self.dtype in accepted else accepted[0]

    # -- values ---------------------------------------------------------------------------
    def add_input(self, shape: tuple, dtype: str) -> Value:
        name = self.fresh_name("x")
        self.inputs.append(helper.make_tensor_value_info(name, ONNX_TYPES[dtype], list(shape)))
        low, high = INPUT_RANGE[dtype]
        value = Value(name, tuple(shape), dtype, low, high, exact=True)
        self.pool.append(value)
        return value

    def add_weight(self, array: np.ndarray, dtype: str) -> Value:
        """An initializer operand; it joins the pool so later ops may read it too."""
        array = np.asarray(array).astype(NUMPY_TYPES[dtype])
        name = self.fresh_name("w")
        self.initializers.append(numpy_helper.from_array(array, name))
        lo, hi = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
        value = Value(name, array.shape, dtype, lo, hi, exact=True)
        self.pool.append(value)
        return value

    def random_weight(self, shape: tuple, dtype: str, low: float = -1.0, high: float = 1.0) -> Value:
        if dtype in FLOATS:
            return self.add_weight(self.rng.uniform(low, high, shape), dtype)
        if dtype == "bool":
            return self.add_weight(self.rng.random(shape) < 0.5, dtype)
        return self.add_weight(self.rng.integers(int(low), int(high) + 1, shape), dtype)

    def constant(self, values, dtype: str = "i64") -> str:
        """An operand that is not data (axes, shapes, bounds, scalars): an initializer, or now and
        then a ``Constant`` node. Not in the pool."""
        name = self.fresh_name("c")
        tensor = numpy_helper.from_array(np.asarray(values, dtype=NUMPY_TYPES[dtype]), name)
        if self.chance(0.15):
            self.nodes.append(helper.make_node("Constant", [], [name], name=f"constant_{len(self.nodes)}",
                                               value=tensor))
        else:
            self.initializers.append(tensor)
        return name

    def operand(self, accept: Callable[[Value], bool], fresh: Callable[[], Value], reuse: float = 0.8) -> Value:
        """A pool value ``accept`` takes (the newest one half the time), else a new one from ``fresh()``
        that it takes; ``GiveUp`` when a few tries give none."""
        candidates = [v for v in self.pool if accept(v)]
        if candidates and self.chance(reuse):
            return candidates[-1] if self.chance(0.5) else self.choice(candidates)
        for _ in range(4):
            value = fresh()
            if accept(value):
                return value
        raise GiveUp

    def emit(self, op: str, inputs: list[str], results: list[Value], **attributes) -> list[Value]:
        """Append a node reading ``inputs`` (names; "" for an absent optional one) and producing ``results``."""
        name = f"{op.lower()}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [r.name for r in results], name=name, **attributes))
        for input_name in inputs:
            self.uses[input_name] += 1
        self.pool.extend(results)
        return results

    def result(self, shape, dtype, lo, hi, exact=False, ordered=frozenset()) -> Value:
        """A new node result (not yet in the pool: ``emit`` adds it)."""
        return Value(self.fresh_name("v"), tuple(int(d) for d in shape), dtype, float(lo), float(hi), exact,
                     frozenset(ordered))

    def fits(self, dtype: str, lo: float, hi: float) -> bool:
        return max(abs(lo), abs(hi)) <= MAGNITUDE_LIMIT[dtype] and math.isfinite(lo) and math.isfinite(hi)

    # -- the model ------------------------------------------------------------------------
    def outputs(self) -> list[str]:
        """Values nothing reads (the graph's sinks), and now and then an intermediate one too."""
        produced = [v for v in self.pool if v.name not in {i.name for i in self.inputs}
                    and v.name not in {t.name for t in self.initializers}]
        sinks = [v.name for v in produced if self.uses[v.name] == 0]
        used = [v.name for v in produced if self.uses[v.name] > 0]
        if used and self.chance(0.2):
            sinks.append(self.choice(used))
        return sinks

    def model(self) -> onnx.ModelProto:
        """The ONNX model; inputs and initializers no node reads (left by a generator that gave up) are dropped."""
        read = {name for node in self.nodes for name in node.input}
        inputs = [v for v in self.inputs if v.name in read]
        initializers = [t for t in self.initializers if t.name in read]
        values = {v.name: v for v in self.pool}
        outputs = [helper.make_tensor_value_info(name, ONNX_TYPES[values[name].dtype], list(values[name].shape))
                   for name in self.outputs()]
        graph = helper.make_graph(self.nodes, "fuzz", inputs, outputs, initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = min(model.ir_version, 10)
        return model


class GiveUp(Exception):
    """A generator found no operand it can use; the graph goes on without its op."""


def try_generator(g: GraphBuilder, op: str) -> bool:
    """Run the generator of ``op``: True if it added its node(s)."""
    try:
        return GENERATORS[op](g, op)
    except GiveUp:
        return False


def fit_elements(dims: list[int]) -> tuple[int, ...]:
    """Shrink the largest dims until the shape holds at most ``MAX_ELEMENTS`` elements."""
    dims = list(dims)
    while math.prod(dims) > MAX_ELEMENTS:
        largest = max(range(len(dims)), key=lambda i: dims[i])
        dims[largest] = max(1, dims[largest] // 2 + 1 if dims[largest] > 2 else 1)
    return tuple(dims)


def interval_of(fn: Callable[[np.ndarray], np.ndarray], lo: float, hi: float) -> tuple[float, float]:
    """Bounds of ``fn`` over [lo, hi], sampled densely (enough for the smooth functions used here)."""
    xs = np.concatenate([np.linspace(lo, hi, 4001), [lo, hi, min(max(0.0, lo), hi)]])
    with np.errstate(all="ignore"):
        ys = fn(xs)
    margin = 1e-3 * (np.max(np.abs(ys)) + 1e-3)
    return float(np.min(ys) - margin), float(np.max(ys) + margin)


def broadcast_shape(*shapes) -> tuple[int, ...] | None:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        return None


def normalized(axis: int, rank: int) -> int:
    return axis % rank if rank else 0


# --------------------------------------------------------------------------------------
# Op generators: each picks operands that suit its op, adds its node(s), returns False if it cannot
# --------------------------------------------------------------------------------------
GENERATORS: dict[str, Callable[[GraphBuilder, str], bool]] = {}


def generates(*op_types: str):
    def register(fn):
        for op_type in op_types:
            GENERATORS[op_type] = fn
        return fn
    return register


def new_input(g: GraphBuilder, dtypes: tuple[str, ...], rank: int | None = None) -> Callable[[], Value]:
    return lambda: g.add_input(g.shape(rank), g.input_dtype(dtypes))


def float_operand(g: GraphBuilder, accept=lambda v: True, rank: int | None = None, dtypes=FLOATS) -> Value:
    return g.operand(lambda v: v.dtype in dtypes and accept(v) and (rank is None or v.rank == rank),
                     new_input(g, dtypes, rank))


def positive(g: GraphBuilder, x: Value, margin: float) -> Value:
    """``x`` itself when it is at least ``margin``, else ``Abs(x) + margin`` (or ``Sigmoid(x) + margin``).
    Integers get a margin of at least 1."""
    if x.dtype in INTS:
        margin = max(margin, 1.0)
    if x.lo >= margin:
        return x
    shifted = g.emit("Sigmoid" if x.dtype in FLOATS and g.chance(0.3) else "Abs", [x.name],
                     [g.result(x.shape, x.dtype, 0.0, max(x.bound, 1.0))])[0]
    offset = g.constant(margin, x.dtype)
    return g.emit("Add", [shifted.name, offset], [g.result(x.shape, x.dtype, margin, shifted.hi + margin)])[0]


def bounded(g: GraphBuilder, x: Value, limit: float) -> Value:
    """``x`` itself when its magnitude stays within ``limit``, else ``Clip(x, -limit, limit)`` or (for a
    limit of 1 or more) ``Tanh(x)``."""
    if x.bound <= limit:
        return x
    if limit < 1 or g.chance(0.5):
        low, high = g.constant(-limit, x.dtype), g.constant(limit, x.dtype)
        return g.emit("Clip", [x.name, low, high], [g.result(x.shape, x.dtype, -limit, limit)])[0]
    return g.emit("Tanh", [x.name], [g.result(x.shape, x.dtype, -1.0, 1.0)])[0]


@dataclass(frozen=True)
class Unary:
    """An elementwise unary op: its float64 function of (x, attributes) for bounds, its random
    attributes and its input domain."""

    fn: Callable[[np.ndarray, dict], np.ndarray]
    attrs: Callable[[GraphBuilder], dict] = lambda g: {}
    #: "any", "positive" (at least 0.05), "nonnegative", "bounded" (|x| <= ``limit``), "at-least-1"
    domain: str = "any"
    limit: float = 10.0
    #: strictly monotone: keeps which elements compare greater (ArgMax after it sees what it saw)
    monotone: bool = False
    #: output computed exactly from an exact input (no rounding)
    exact: bool = False
    #: discontinuous: only exact inputs (a rounding difference could flip the result)
    needs_exact: bool = False
    dtypes: tuple[str, ...] = FLOATS
    #: the opset that introduced the op
    since: int = 1


def _softplus(x):
    return np.logaddexp(0.0, x)


def _elu(x, alpha):
    return np.where(x > 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1))


UNARY: dict[str, Unary] = {
    "Abs": Unary(lambda x, a: np.abs(x), exact=True, dtypes=NUMBERS),
    "Neg": Unary(lambda x, a: -x, exact=True, monotone=True, dtypes=NUMBERS),
    "Relu": Unary(lambda x, a: np.maximum(x, 0), exact=True, dtypes=FLOATS + ("i32",)),
    "Sigmoid": Unary(lambda x, a: 1 / (1 + np.exp(-x)), domain="bounded", monotone=True),
    "Tanh": Unary(lambda x, a: np.tanh(x), domain="bounded", monotone=True),
    "Erf": Unary(lambda x, a: np.vectorize(math.erf)(x), domain="bounded", monotone=True, dtypes=("f32",)),
    "Exp": Unary(lambda x, a: np.exp(x), domain="bounded", monotone=True),
    "Log": Unary(lambda x, a: np.log(x), domain="positive", monotone=True),
    "Sqrt": Unary(lambda x, a: np.sqrt(x), domain="nonnegative", monotone=True),
    "Reciprocal": Unary(lambda x, a: 1 / x, domain="positive"),
    "Softplus": Unary(lambda x, a: _softplus(x), domain="bounded", monotone=True),
    "Softsign": Unary(lambda x, a: x / (1 + np.abs(x)), monotone=True),
    "Sin": Unary(lambda x, a: np.sin(x), domain="bounded"),
    "Cos": Unary(lambda x, a: np.cos(x), domain="bounded"),
    "Tan": Unary(lambda x, a: np.tan(x), domain="bounded", limit=1.2, monotone=True, dtypes=("f32",)),
    "Sinh": Unary(lambda x, a: np.sinh(x), domain="bounded", monotone=True, dtypes=("f32",)),
    "Cosh": Unary(lambda x, a: np.cosh(x), domain="bounded", dtypes=("f32",)),
    "Asin": Unary(lambda x, a: np.arcsin(x), domain="bounded", limit=0.9, monotone=True, dtypes=("f32",)),
    "Acos": Unary(lambda x, a: np.arccos(x), domain="bounded", limit=0.9, dtypes=("f32",)),
    "Atan": Unary(lambda x, a: np.arctan(x), monotone=True, dtypes=("f32",)),
    "Asinh": Unary(lambda x, a: np.arcsinh(x), monotone=True, dtypes=("f32",)),
    "Acosh": Unary(lambda x, a: np.arccosh(x), domain="at-least-1", monotone=True, dtypes=("f32",)),
    "Atanh": Unary(lambda x, a: np.arctanh(x), domain="bounded", limit=0.9, monotone=True, dtypes=("f32",)),
    "LeakyRelu": Unary(lambda x, a: np.where(x > 0, x, a["alpha"] * x),
                       attrs=lambda g: {"alpha": g.choice((0.01, 0.1, 0.3))}),
    "Elu": Unary(lambda x, a: _elu(x, a["alpha"]), attrs=lambda g: {"alpha": g.choice((1.0, 0.5))},
                 domain="bounded"),
    "Selu": Unary(lambda x, a: 1.0507009873554805 * _elu(x, 1.6732632423543772), domain="bounded"),
    "Celu": Unary(lambda x, a: _elu(x, a["alpha"]), attrs=lambda g: {"alpha": g.choice((1.0, 2.0))},
                  domain="bounded", dtypes=("f32",)),
    "HardSigmoid": Unary(lambda x, a: np.clip(a["alpha"] * x + a["beta"], 0, 1),
                         attrs=lambda g: {"alpha": g.choice((0.2, 0.5)), "beta": g.choice((0.5, 0.3))}),
    "HardSwish": Unary(lambda x, a: x * np.clip(x / 6 + 0.5, 0, 1)),
    "Mish": Unary(lambda x, a: x * np.tanh(_softplus(x)), domain="bounded", since=18),
    "ThresholdedRelu": Unary(lambda x, a: np.where(x > a["alpha"], x, 0),
                             attrs=lambda g: {"alpha": g.choice((0.5, 1.0))}, exact=True, needs_exact=True,
                             dtypes=("f32",)),
    "Shrink": Unary(lambda x, a: np.where(x < -a["lambd"], x + a["bias"], np.where(x > a["lambd"], x - a["bias"], 0)),
                    attrs=lambda g: {"lambd": g.choice((0.5, 1.0)), "bias": g.choice((0.0, 0.5))},
                    needs_exact=True, dtypes=("f32",)),
    "Floor": Unary(lambda x, a: np.floor(x), exact=True, needs_exact=True),
    "Ceil": Unary(lambda x, a: np.ceil(x), exact=True, needs_exact=True),
    "Round": Unary(lambda x, a: np.round(x), exact=True, needs_exact=True),
    "Sign": Unary(lambda x, a: np.sign(x), exact=True, needs_exact=True, dtypes=NUMBERS),
    "Identity": Unary(lambda x, a: x, exact=True, monotone=True, dtypes=NUMBERS + ("bool",)),
}


@generates(*UNARY)
def gen_unary(g: GraphBuilder, op: str) -> bool:
    spec = UNARY[op]
    x = g.operand(lambda v: v.dtype in spec.dtypes and (v.exact or not spec.needs_exact),
                  new_input(g, spec.dtypes))
    return apply_unary(g, op, x)


def apply_unary(g: GraphBuilder, op: str, x: Value) -> bool:
    """``op(x)``, with ``x`` first moved into the op's domain (``Abs``, ``+ margin``, ``Clip``, ``Tanh``)."""
    spec = UNARY[op]
    if g.opset < spec.since:
        return False
    if spec.domain == "positive":
        x = positive(g, x, 0.05)
    elif spec.domain == "nonnegative" and x.lo < 0:
        x = g.emit("Abs", [x.name], [g.result(x.shape, x.dtype, 0.0, x.bound)])[0]
    elif spec.domain == "at-least-1":
        x = positive(g, x, 1.1)
    elif spec.domain == "bounded":
        x = bounded(g, x, 6.0 if op == "Exp" and x.dtype == "f16" else spec.limit)
    attrs = spec.attrs(g)
    lo, hi = (x.lo, x.hi) if op == "Identity" else interval_of(lambda xs: spec.fn(xs, attrs), x.lo, x.hi)
    if spec.exact and x.dtype in INTS:
        lo, hi = math.floor(lo), math.ceil(hi)
    if not g.fits(x.dtype, lo, hi):
        return False
    exact = spec.exact and x.exact
    ordered = frozenset(range(x.rank)) if spec.monotone and x.exact else (x.ordered if spec.monotone else ())
    g.emit(op, [x.name], [g.result(x.shape, x.dtype, lo, hi, exact, ordered)], **attrs)
    return True


@generates("Gelu")
def gen_gelu(g: GraphBuilder, op: str) -> bool:
    if g.opset < 20:
        return gen_gelu_pattern(g, "GeluPattern")
    x = float_operand(g, dtypes=("f32",))
    x = bounded(g, x, 10.0)
    approximate = g.choice(("none", "tanh"))
    g.emit("Gelu", [x.name], [g.result(x.shape, x.dtype, min(-0.2, x.lo), max(x.hi, 0.0))], approximate=approximate)
    return True


@generates("GeluPattern")
def gen_gelu_pattern(g: GraphBuilder, op: str) -> bool:
    """GELU written out (the recognize-gelu pass turns it into one op): erf or tanh form."""
    x = float_operand(g, dtypes=("f32",))
    x = bounded(g, x, 10.0)
    shape, dtype = x.shape, x.dtype

    def binary(op_type, a, b_name, lo, hi):
        return g.emit(op_type, [a.name, b_name], [g.result(shape, dtype, lo, hi)])[0]

    b = max(x.bound, 1.0)
    if g.chance(0.5):
        op_type, factor = g.choice((("Div", 1.4142135), ("Mul", 0.70710677)))
        scaled = binary(op_type, x, g.constant(factor, "f32"), -b, b)
        inner = g.emit("Erf", [scaled.name], [g.result(shape, dtype, -1.0, 1.0)])[0]
    else:
        cube = binary("Pow", x, g.constant(3.0, "f32"), -b ** 3, b ** 3)
        term = binary("Mul", cube, g.constant(0.044715, "f32"), -b ** 3, b ** 3)
        summed = g.emit("Add", [x.name, term.name], [g.result(shape, dtype, -2 * b ** 3, 2 * b ** 3)])[0]
        scaled = binary("Mul", summed, g.constant(0.7978846, "f32"), -2 * b ** 3, 2 * b ** 3)
        inner = g.emit("Tanh", [scaled.name], [g.result(shape, dtype, -1.0, 1.0)])[0]
    one_plus = binary("Add", inner, g.constant(1.0, "f32"), 0.0, 2.0)
    half_x = binary("Mul", x, g.constant(0.5, "f32"), -b, b)
    g.emit("Mul", [half_x.name, one_plus.name], [g.result(shape, dtype, -2 * b, 2 * b)])
    return True


def partner_shape(g: GraphBuilder, shape: tuple) -> tuple:
    """A shape that broadcasts with ``shape``: some dims 1, leading dims dropped, a 1 of ``shape`` grown."""
    dims = []
    for d in shape:
        roll = g.rng.random()
        dims.append(1 if roll < 0.3 else (g.choice(SMALL_DIMS) if d == 1 and roll > 0.85 else d))
    if dims and g.chance(0.25):
        dims = dims[int(g.rng.integers(0, len(dims) + 1)):]
    return tuple(dims)


def partner(g: GraphBuilder, a: Value, accept=lambda v: True, low=-1.0, high=1.0) -> Value:
    """A second operand for an elementwise op with ``a``: a pool value, a new input or a weight."""
    def compatible(v: Value) -> bool:
        out = broadcast_shape(a.shape, v.shape)
        return v is not a and v.dtype == a.dtype and out is not None and math.prod(out) <= MAX_ELEMENTS and accept(v)

    def fresh() -> Value:
        shape = () if g.chance(0.1) else partner_shape(g, a.shape)
        if math.prod(broadcast_shape(a.shape, shape)) > MAX_ELEMENTS:
            shape = ()
        if g.chance(0.4) and low <= INPUT_RANGE[a.dtype][0] and INPUT_RANGE[a.dtype][1] <= high:
            return g.add_input(shape, a.dtype)
        return g.random_weight(shape, a.dtype, low, high)

    return g.operand(compatible, fresh, reuse=0.6)


def product_bounds(a: Value, b: Value) -> tuple[float, float]:
    corners = [a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi]
    return min(corners), max(corners)


@generates("Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "PRelu", "Mod")
def gen_binary(g: GraphBuilder, op: str) -> bool:
    dtypes = {"Pow": ("f32",), "PRelu": FLOATS, "Mod": INTS}.get(op, NUMBERS)
    a = g.operand(lambda v: v.dtype in dtypes, new_input(g, dtypes))
    if op == "Div" and a.dtype in INTS:
        b = g.add_weight(g.rng.integers(1, 6, partner_shape(g, a.shape)) * g.choice((1, -1)), a.dtype)
    elif op == "Mod":
        b = g.add_weight(g.rng.integers(1, 9, partner_shape(g, a.shape)) * g.choice((1, -1)), a.dtype)
    elif op == "Div":
        b = partner(g, a, lambda v: v.lo >= 0.1 or v.hi <= -0.1, 0.5, 2.0)
    elif op == "Pow":
        a = positive(g, bounded(g, a, 10.0), 0.1)
        b = g.add_weight(np.full(partner_shape(g, a.shape), g.choice((2.0, 3.0, 0.5, -1.0, 1.5))), a.dtype) \
            if g.chance(0.7) else partner(g, a, lambda v: v.bound <= 2.0, -2.0, 2.0)
    elif op == "PRelu":
        b = g.random_weight(unidirectional_shape(g, a.shape), a.dtype, -0.5, 0.5)
    else:
        b = partner(g, a)
    shape = broadcast_shape(a.shape, b.shape)
    if op == "PRelu" and shape != a.shape:
        return False
    lo, hi = binary_bounds(op, a, b)
    if a.dtype in INTS:
        lo, hi = math.floor(lo), math.ceil(hi)
    if not g.fits(a.dtype, lo, hi):
        return False
    exact = op in ("Max", "Min") and a.exact and b.exact or a.dtype in INTS
    if g.chance(0.5) and op in ("Add", "Mul", "Max", "Min"):
        a, b = b, a
    g.emit(op, [a.name, b.name], [g.result(shape, a.dtype, lo, hi, exact)], **({"fmod": 0} if op == "Mod" else {}))
    return True


def unidirectional_shape(g: GraphBuilder, shape: tuple) -> tuple:
    """A shape that broadcasts to ``shape`` without growing it (PRelu's slope)."""
    dims = [1 if g.chance(0.5) else d for d in shape]
    return tuple(dims[int(g.rng.integers(0, len(dims) + 1)):]) if dims and g.chance(0.3) else tuple(dims)


def binary_bounds(op: str, a: Value, b: Value) -> tuple[float, float]:
    if op == "Add":
        return a.lo + b.lo, a.hi + b.hi
    if op == "Sub":
        return a.lo - b.hi, a.hi - b.lo
    if op == "Mul":
        return product_bounds(a, b)
    if op == "Div":
        if a.dtype in INTS:
            return -a.bound, a.bound
        return product_bounds(a, Value("", (), "f32", 1.0 / b.hi, 1.0 / b.lo))
    if op == "Max":
        return max(a.lo, b.lo), max(a.hi, b.hi)
    if op == "Min":
        return min(a.lo, b.lo), min(a.hi, b.hi)
    if op == "Pow":
        corners = [a.lo ** b.lo, a.lo ** b.hi, a.hi ** b.lo, a.hi ** b.hi]
        return min(corners), max(corners)
    if op == "PRelu":
        return min(a.lo, a.lo * b.hi, a.lo * b.lo, 0.0), max(a.hi, a.lo * b.lo, 0.0)
    if op == "Mod":
        return -b.bound, b.bound
    raise ValueError(op)


@generates("Sum", "Mean", "VariadicMax", "VariadicMin")
def gen_variadic(g: GraphBuilder, op: str) -> bool:
    """Sum/Mean/Max/Min over three broadcasting operands."""
    op_type = {"VariadicMax": "Max", "VariadicMin": "Min"}.get(op, op)
    a = float_operand(g, dtypes=("f32",))
    operands = [a]
    for _ in range(2):
        other = partner(g, a)
        if broadcast_shape(*(v.shape for v in operands), other.shape) is None:
            return False
        operands.append(other)
    shape = broadcast_shape(*(v.shape for v in operands))
    if math.prod(shape) > MAX_ELEMENTS:
        return False
    if op_type in ("Sum", "Mean"):
        lo, hi = sum(v.lo for v in operands), sum(v.hi for v in operands)
        lo, hi = (lo / 3, hi / 3) if op_type == "Mean" else (lo, hi)
    else:
        pick = max if op_type == "Max" else min
        lo, hi = pick(v.lo for v in operands), pick(v.hi for v in operands)
    exact = op_type in ("Max", "Min") and all(v.exact for v in operands)
    g.emit(op_type, [v.name for v in operands], [g.result(shape, a.dtype, lo, hi, exact)])
    return True


@generates("Clip")
def gen_clip(g: GraphBuilder, op: str) -> bool:
    x = g.operand(lambda v: v.dtype in NUMBERS, new_input(g, NUMBERS))
    low = float(np.floor(x.lo + (x.hi - x.lo) * g.rng.uniform(0.0, 0.5)))
    high = float(np.ceil(x.hi - (x.hi - x.lo) * g.rng.uniform(0.0, 0.5)))
    if low > high:
        low, high = high, low
    bounds = [g.constant(low, x.dtype) if g.chance(0.8) else "", g.constant(high, x.dtype) if g.chance(0.8) else ""]
    while bounds and bounds[-1] == "":
        bounds.pop()
    lo = max(x.lo, low) if len(bounds) > 0 and bounds[0] else x.lo
    hi = min(x.hi, high) if len(bounds) > 1 and bounds[1] else x.hi
    g.emit("Clip", [x.name] + bounds, [g.result(x.shape, x.dtype, min(lo, hi), max(lo, hi), x.exact)])
    return True


@generates("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual")
def gen_compare(g: GraphBuilder, op: str) -> bool:
    a = g.operand(lambda v: v.dtype in NUMBERS and v.exact, new_input(g, NUMBERS))
    b = partner(g, a, lambda v: v.exact, *INPUT_RANGE[a.dtype])
    g.emit(op, [a.name, b.name], [g.result(broadcast_shape(a.shape, b.shape), "bool", 0, 1, exact=True)])
    return True


@generates("BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot")
def gen_bitwise(g: GraphBuilder, op: str) -> bool:
    if g.opset < 18:
        return False
    a = g.operand(lambda v: v.dtype in INTS, new_input(g, INTS))
    if op == "BitwiseNot":
        g.emit(op, [a.name], [g.result(a.shape, a.dtype, -a.bound - 1, a.bound, exact=True)])
        return True
    b = partner(g, a, low=-20, high=20)
    # two's complement: the result stays within the next power of two of the operands' magnitude
    bound = 2.0 ** math.ceil(math.log2(max(a.bound, b.bound, 1.0) + 1))
    g.emit(op, [a.name, b.name], [g.result(broadcast_shape(a.shape, b.shape), a.dtype, -bound, bound, exact=True)])
    return True


@generates("And", "Or", "Xor", "Not")
def gen_logical(g: GraphBuilder, op: str) -> bool:
    a = g.operand(lambda v: v.dtype == "bool", new_input(g, ("bool",)))
    if op == "Not":
        g.emit(op, [a.name], [g.result(a.shape, "bool", 0, 1, exact=True)])
        return True
    b = partner(g, a, low=0, high=1)
    g.emit(op, [a.name, b.name], [g.result(broadcast_shape(a.shape, b.shape), "bool", 0, 1, exact=True)])
    return True


@generates("Where")
def gen_where(g: GraphBuilder, op: str) -> bool:
    a = g.operand(lambda v: v.dtype in NUMBERS, new_input(g, NUMBERS))
    b = partner(g, a)
    condition = g.operand(lambda v: v.dtype == "bool" and broadcast_shape(v.shape, a.shape, b.shape) is not None,
                          lambda: g.add_input(partner_shape(g, a.shape), "bool"))
    shape = broadcast_shape(condition.shape, a.shape, b.shape)
    if shape is None or math.prod(shape) > MAX_ELEMENTS:
        return False
    g.emit(op, [condition.name, a.name, b.name],
           [g.result(shape, a.dtype, min(a.lo, b.lo), max(a.hi, b.hi), a.exact and b.exact)])
    return True


@generates("Cast", "CastLike")
def gen_cast(g: GraphBuilder, op: str) -> bool:
    """Cast, or CastLike to the type of a pool value (or a one-element weight)."""
    x = g.operand(lambda v: v.dtype in NUMBERS + ("bool",), new_input(g, NUMBERS))
    targets = [t for t in ONNX_TYPES if t != x.dtype and cast_is_safe(x, t)]
    if not targets:
        return False
    target = g.choice(targets)
    lo, hi = (0, 1) if target == "bool" else (x.lo, x.hi)
    if target in INTS:
        lo, hi = math.floor(lo), math.ceil(hi)
    # conversions round correctly, so an exact value stays exact
    result = g.result(x.shape, target, lo, hi, x.exact)
    if op == "Cast":
        g.emit(op, [x.name], [result], to=ONNX_TYPES[target])
    else:
        like = g.operand(lambda v: v.dtype == target, lambda: g.random_weight((1,), target))
        g.emit(op, [x.name, like.name], [result])
    return True


def cast_is_safe(x: Value, target: str) -> bool:
    """Casts that cannot turn a rounding difference into another value, nor overflow; and no
    float16 rounding error carried into float32, which is compared more tightly."""
    if target in INTS or target == "bool" or (x.dtype, target) == ("f16", "f32"):
        return x.exact and x.bound < 2 ** 30
    if target == "f16":
        return x.bound <= MAGNITUDE_LIMIT["f16"]
    return True


# -- row ops and reductions --------------------------------------------------------------
@generates("Softmax", "LogSoftmax", "Hardmax")
def gen_softmax(g: GraphBuilder, op: str) -> bool:
    if op == "Hardmax":
        x = float_operand(g, lambda v: v.rank >= 1 and (v.exact or bool(v.ordered)))
        axis = g.axis(x.rank, None if x.exact else x.ordered)
        if axis is None:
            return False
    else:
        x = float_operand(g, lambda v: v.rank >= 1)
        axis = g.axis(x.rank)
    n = x.shape[axis]
    if op == "Softmax":
        lo, hi, exact = 0.0, 1.0, False
    elif op == "LogSoftmax":
        lo, hi, exact = -(x.hi - x.lo) - math.log(n) - 1.0, 0.0, False
    else:
        lo, hi, exact = 0.0, 1.0, True
    ordered = {normalized(axis, x.rank)} if x.ordered_along(axis) else ()
    g.emit(op, [x.name], [g.result(x.shape, x.dtype, lo, hi, exact, ordered)], axis=axis)
    return True


@generates("LayerNormalization")
def gen_layer_norm(g: GraphBuilder, op: str) -> bool:
    x = float_operand(g, lambda v: v.rank >= 1)
    axis = g.axis(x.rank)
    normalized_shape = x.shape[normalized(axis, x.rank):]
    scale = g.random_weight(normalized_shape, x.dtype, 0.5, 1.5) if g.chance(0.7) else \
        g.random_weight(normalized_shape, x.dtype, -1.0, 1.0)
    inputs = [x.name, scale.name]
    bound = math.sqrt(math.prod(normalized_shape)) * scale.bound
    if g.chance(0.6):
        bias = g.random_weight(normalized_shape, x.dtype)
        inputs.append(bias.name)
        bound += bias.bound
    epsilon = g.choice((1e-5, 1e-3, 0.1))
    g.emit(op, inputs, [g.result(x.shape, x.dtype, -bound, bound)], axis=axis, epsilon=epsilon)
    return True


@generates("CumSum")
def gen_cumsum(g: GraphBuilder, op: str) -> bool:
    x = g.operand(lambda v: v.dtype in ("f32", "i32", "i64") and v.rank >= 1, new_input(g, ("f32", "i64")))
    axis = g.axis(x.rank)
    n = x.shape[axis]
    lo, hi = n * min(x.lo, 0.0), n * max(x.hi, 0.0)
    if not g.fits(x.dtype, lo, hi):
        return False
    attrs = {key: 1 for key in ("exclusive", "reverse") if g.chance(0.3)}
    axis_input = g.constant(axis, g.choice(("i64", "i32")))
    g.emit(op, [x.name, axis_input], [g.result(x.shape, x.dtype, lo, hi, x.dtype in INTS)], **attrs)
    return True


REDUCTIONS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")


def reduce_axes(g: GraphBuilder, rank: int) -> list[int] | None:
    """The axes to reduce: the last, one, several or (None) all of them."""
    roll = g.rng.random()
    if roll < 0.45:
        return [g.axis(rank, {rank - 1})]
    if roll < 0.7:
        return [g.axis(rank)]
    if roll < 0.9:
        axes = sorted(int(a) for a in g.rng.choice(rank, int(g.rng.integers(1, rank + 1)), replace=False))
        return [a - rank if g.chance(0.3) else a for a in axes]
    return None


@generates(*REDUCTIONS)
def gen_reduce(g: GraphBuilder, op: str) -> bool:
    # integer LogSumExp has no agreed meaning (ONNX drops integer types from it in opset 28): ONNX
    # Runtime gives max + trunc(log sum exp(x - max)), fusecc trunc(log sum exp x)
    dtypes = FLOATS if op == "ReduceLogSumExp" else NUMBERS
    x = g.operand(lambda v: v.dtype in dtypes and v.rank >= 1, new_input(g, dtypes))
    if op == "ReduceLogSum":
        x = positive(g, x, 0.05)
    elif op == "ReduceLogSumExp":
        x = bounded(g, x, 10.0)
    axes = reduce_axes(g, x.rank)
    reduced = sorted({normalized(a, x.rank) for a in axes}) if axes is not None else list(range(x.rank))
    n = math.prod(x.shape[a] for a in reduced)
    lo, hi = reduction_bounds(op, x, n)
    if not g.fits(x.dtype, lo, hi):
        return False
    keepdims = int(g.chance(0.5))
    shape = tuple(1 if a in reduced else d for a, d in enumerate(x.shape) if keepdims or a not in reduced)
    inputs, attrs = [x.name], {"keepdims": keepdims}
    if axes is None and (op == "ReduceSum" or g.opset >= 18) and g.chance(0.15):
        # no axes and noop_with_empty_axes: nothing is reduced (each element as a row of one)
        shape, attrs["noop_with_empty_axes"] = x.shape, 1
        lo, hi = reduction_bounds(op, x, 1)
    if axes is not None:
        if op == "ReduceSum" or g.opset >= 18:
            inputs.append(g.constant(axes))
        else:
            attrs["axes"] = axes
    exact = op in ("ReduceMax", "ReduceMin") and x.exact or x.dtype in INTS
    g.emit(op, inputs, [g.result(shape, x.dtype, lo, hi, exact)], **attrs)
    return True


def reduction_bounds(op: str, x: Value, n: int) -> tuple[float, float]:
    if op == "ReduceSum":
        return n * min(x.lo, 0.0), n * max(x.hi, 0.0)
    if op in ("ReduceMean", "ReduceMax", "ReduceMin"):
        return x.lo, x.hi
    if op == "ReduceProd":
        return (-x.bound ** n, x.bound ** n) if n * math.log(max(x.bound, 1.0)) < 60 else (-math.inf, math.inf)
    if op == "ReduceL1":
        return 0.0, n * x.bound
    if op == "ReduceL2":
        return 0.0, math.sqrt(n) * x.bound
    if op == "ReduceSumSquare":
        return 0.0, n * x.bound ** 2
    if op == "ReduceLogSum":
        return math.log(n * x.lo), math.log(n * x.hi)
    if op == "ReduceLogSumExp":
        return x.lo, x.hi + math.log(n)
    raise ValueError(op)


@generates("ArgMax", "ArgMin")
def gen_argmax(g: GraphBuilder, op: str) -> bool:
    x = g.operand(lambda v: v.dtype in NUMBERS and v.rank >= 1 and (v.exact or bool(v.ordered)),
                  new_input(g, NUMBERS))
    axis = g.axis(x.rank, None if x.exact else x.ordered)
    if axis is None:
        return False
    keepdims = int(g.chance(0.5))
    attrs = {"axis": axis, "keepdims": keepdims}
    if g.chance(0.3):
        attrs["select_last_index"] = 1
    a = normalized(axis, x.rank)
    shape = tuple(1 if i == a else d for i, d in enumerate(x.shape) if keepdims or i != a)
    g.emit(op, [x.name], [g.result(shape, "i64", 0, x.shape[a] - 1, exact=True)], **attrs)
    return True


@generates("AttentionPooling")
def gen_attention_pooling(g: GraphBuilder, op: str) -> bool:
    """``ReduceSum(Softmax(s) * x)`` along the softmax's axis: attention-style pooling."""
    x = float_operand(g, lambda v: v.rank >= 1, dtypes=("f32",))
    axis = g.axis(x.rank)
    weights = g.emit("Softmax", [x.name], [g.result(x.shape, x.dtype, 0.0, 1.0)], axis=axis)[0]
    product = g.emit("Mul", [weights.name, x.name], [g.result(x.shape, x.dtype, -x.bound, x.bound)])[0]
    keepdims = int(g.chance(0.5))
    a = normalized(axis, x.rank)
    shape = tuple(1 if i == a else d for i, d in enumerate(x.shape) if keepdims or i != a)
    g.emit("ReduceSum", [product.name, g.constant([axis])], [g.result(shape, x.dtype, -x.bound, x.bound)],
           keepdims=keepdims)
    return True


@generates("Standardize")
def gen_standardize(g: GraphBuilder, op: str) -> bool:
    """LayerNorm written out: ``(x - mean) / sqrt(mean((x - mean)^2) + eps)`` along one axis."""
    x = float_operand(g, lambda v: v.rank >= 1 and v.bound <= 100, dtypes=("f32",))
    axis = g.axis(x.rank)
    a = normalized(axis, x.rank)
    kept = tuple(1 if i == a else d for i, d in enumerate(x.shape))
    n = x.shape[a]

    def reduce_mean(value, lo, hi):
        if g.opset >= 18:
            return g.emit("ReduceMean", [value.name, g.constant([axis])], [g.result(kept, "f32", lo, hi)],
                          keepdims=1)[0]
        return g.emit("ReduceMean", [value.name], [g.result(kept, "f32", lo, hi)], axes=[axis], keepdims=1)[0]

    mean = reduce_mean(x, x.lo, x.hi)
    span = x.hi - x.lo
    centered = g.emit("Sub", [x.name, mean.name], [g.result(x.shape, "f32", -span, span)])[0]
    square = g.emit("Mul", [centered.name, centered.name], [g.result(x.shape, "f32", 0.0, span ** 2)])[0]
    variance = reduce_mean(square, 0.0, span ** 2)
    shifted = g.emit("Add", [variance.name, g.constant(np.float32(1e-3), "f32")],
                     [g.result(kept, "f32", 1e-3, span ** 2 + 1e-3)])[0]
    deviation = g.emit("Sqrt", [shifted.name], [g.result(kept, "f32", 0.03, span + 0.1)])[0]
    limit = math.sqrt(n) + 1
    g.emit("Div", [centered.name, deviation.name], [g.result(x.shape, "f32", -limit, limit)])
    return True


@generates("SoftmaxPattern")
def gen_softmax_pattern(g: GraphBuilder, op: str) -> bool:
    """Softmax written out: ``exp(x - max(x)) / sum(exp(x - max(x)))`` along one axis."""
    x = float_operand(g, lambda v: v.rank >= 1, dtypes=("f32",))
    axis = g.axis(x.rank)
    a = normalized(axis, x.rank)
    kept = tuple(1 if i == a else d for i, d in enumerate(x.shape))
    if g.opset >= 18:
        peak = g.emit("ReduceMax", [x.name, g.constant([axis])], [g.result(kept, "f32", x.lo, x.hi, x.exact)],
                      keepdims=1)[0]
    else:
        peak = g.emit("ReduceMax", [x.name], [g.result(kept, "f32", x.lo, x.hi, x.exact)], axes=[axis],
                      keepdims=1)[0]
    shifted = g.emit("Sub", [x.name, peak.name], [g.result(x.shape, "f32", x.lo - x.hi, 0.0)])[0]
    exps = g.emit("Exp", [shifted.name], [g.result(x.shape, "f32", 0.0, 1.0)])[0]
    total = g.emit("ReduceSum", [exps.name, g.constant([axis])], [g.result(kept, "f32", 1.0, x.shape[a])],
                   keepdims=1)[0]
    g.emit("Div", [exps.name, total.name], [g.result(x.shape, "f32", 0.0, 1.0)])
    return True


# -- compute ops -------------------------------------------------------------------------
def scaled_weight(g: GraphBuilder, shape: tuple, fan_in: int, dtype: str) -> Value:
    """Weights uniform in ±1/sqrt(fan_in): sums over fan_in products keep the input's magnitude."""
    limit = 1.0 / math.sqrt(max(fan_in, 1))
    return g.random_weight(shape, dtype, -limit, limit)


#: the most elements of a generated weight (regression cases stay well under 100 KiB)
MAX_WEIGHT_ELEMENTS = 8192


def matmul_bound(a: Value, b: Value, k: int) -> float:
    return k * a.bound * b.bound


@generates("MatMul")
def gen_matmul(g: GraphBuilder, op: str) -> bool:
    a = float_operand(g, lambda v: v.rank >= 1 and v.shape[-1] <= 4096 and v.bound <= 100)
    k = a.shape[-1]
    n = min(g.choice((1, 3, 8, 16, 17, 32, 64)), max(1, MAX_WEIGHT_ELEMENTS // k))
    roll = g.rng.random()
    if a.rank == 1 or roll < 0.6:
        b_shape = (k, n) if roll > 0.1 or a.rank == 1 else (k,)
    else:
        batch = tuple(1 if g.chance(0.3) else d for d in a.shape[:-2])
        b_shape = batch + (k, n)
    candidates = lambda v: v.dtype == a.dtype and v.shape == b_shape and v is not a and v.bound <= 100
    b = g.operand(candidates, lambda: scaled_weight(g, b_shape, k, a.dtype) if g.chance(0.75)
                  else g.add_input(b_shape, a.dtype), reuse=0.3)
    if g.chance(0.15) and b.rank == 2:
        b = transposed_weight(g, b)
    shape = matmul_shape(a.shape, b.shape)
    if shape is None or math.prod(shape) > MAX_ELEMENTS:
        return False
    bound = matmul_bound(a, b, a.shape[-1])
    if not g.fits(a.dtype, -bound, bound):
        return False
    g.emit("MatMul", [a.name, b.name], [g.result(shape, a.dtype, -bound, bound)])
    return True


def transposed_weight(g: GraphBuilder, like: Value) -> Value:
    """A 2-D weight of ``like``'s shape read through a Transpose: data movement on a streamed operand."""
    source = g.random_weight((like.shape[1], like.shape[0]), like.dtype, -like.bound, like.bound)
    return g.emit("Transpose", [source.name], [g.result(like.shape, like.dtype, source.lo, source.hi, True)],
                  perm=[1, 0])[0]


def matmul_shape(a: tuple, b: tuple) -> tuple | None:
    if a[-1] != (b[0] if len(b) == 1 else b[-2]):
        return None
    if len(a) == 1 and len(b) == 1:
        return ()
    if len(a) == 1:
        return b[:-2] + b[-1:]
    if len(b) == 1:
        return a[:-1]
    batch = broadcast_shape(a[:-2], b[:-2])
    return None if batch is None else batch + (a[-2], b[-1])


@generates("Gemm")
def gen_gemm(g: GraphBuilder, op: str) -> bool:
    a = float_operand(g, lambda v: v.bound <= 100, rank=2)
    trans_a, trans_b = int(g.chance(0.3)), int(g.chance(0.4))
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    n = min(g.choice((1, 4, 7, 16, 32, 33)), max(1, MAX_WEIGHT_ELEMENTS // k))
    b = scaled_weight(g, (n, k) if trans_b else (k, n), k, a.dtype) if g.chance(0.8) else \
        g.add_input((n, k) if trans_b else (k, n), a.dtype)
    inputs = [a.name, b.name]
    alpha, beta = g.choice((1.0, 1.0, 0.5, 2.0)), g.choice((1.0, 1.0, 0.5))
    bound = abs(alpha) * matmul_bound(a, b, k)
    if g.chance(0.7):
        c = g.random_weight(g.choice(((n,), (1, n), (m, 1), (m, n), ())), a.dtype)
        inputs.append(c.name)
        bound += abs(beta) * c.bound
    if not g.fits(a.dtype, -bound, bound):
        return False
    g.emit("Gemm", inputs, [g.result((m, n), a.dtype, -bound, bound)], alpha=alpha, beta=beta,
           transA=trans_a, transB=trans_b)
    return True


def image_input(g: GraphBuilder, spatial: int) -> Callable[[], Value]:
    def fresh():
        dims = (g.choice((1, 1, 2)), g.choice((1, 2, 3, 4, 8, 16))) + \
            tuple(g.choice((1, 3, 5, 7, 8, 9, 12, 16, 17)) for _ in range(spatial))
        return g.add_input(fit_elements(list(dims)), g.input_dtype(FLOATS))
    return fresh


def window(g: GraphBuilder, size: int, allow_dilation: bool) -> tuple[int, int, int, int, int] | None:
    """(kernel, stride, dilation, pad_begin, pad_end) for one spatial axis of ``size`` elements."""
    for _ in range(8):
        kernel = g.choice((1, 2, 3, 3, 5))
        dilation = g.choice((1, 1, 2, 3)) if allow_dilation else 1
        stride = g.choice((1, 1, 2, 3))
        pad_begin, pad_end = (int(g.rng.integers(0, kernel)) if g.chance(0.5) else 0 for _ in range(2))
        if size + pad_begin + pad_end >= dilation * (kernel - 1) + 1:
            return kernel, stride, dilation, pad_begin, pad_end
    return None


def windows(g: GraphBuilder, spatial_dims: tuple, allow_dilation: bool) -> list | None:
    chosen = [window(g, d, allow_dilation) for d in spatial_dims]
    return None if any(w is None for w in chosen) else chosen


def window_output(size: int, kernel: int, stride: int, dilation: int, pad_begin: int, pad_end: int,
                  ceil_mode: int = 0) -> int:
    span = size + pad_begin + pad_end - dilation * (kernel - 1) - 1
    return (-(-span // stride) if ceil_mode else span // stride) + 1


def last_window_in_padding(size: int, kernel: int, stride: int, dilation: int, pad_begin: int, pad_end: int) -> bool:
    """Whether ceil_mode's last window starts in the end padding: ONNX Runtime drops it, ONNX's
    shape inference keeps it, so the generator avoids ceil_mode there."""
    out = window_output(size, kernel, stride, dilation, pad_begin, pad_end, ceil_mode=1)
    return (out - 1) * stride >= size + pad_begin


def window_attrs(g: GraphBuilder, chosen: list, dilation: bool) -> dict:
    attrs = {"kernel_shape": [w[0] for w in chosen]}
    if any(w[1] != 1 for w in chosen) or g.chance(0.3):
        attrs["strides"] = [w[1] for w in chosen]
    if dilation and (any(w[2] != 1 for w in chosen) or g.chance(0.2)):
        attrs["dilations"] = [w[2] for w in chosen]
    if any(w[3] or w[4] for w in chosen) or g.chance(0.2):
        attrs["pads"] = [w[3] for w in chosen] + [w[4] for w in chosen]
    return attrs


@generates("Conv")
def gen_conv(g: GraphBuilder, op: str) -> bool:
    spatial = 2 if g.chance(0.8) else 1
    x = g.operand(lambda v: v.dtype in FLOATS and v.rank == spatial + 2 and v.shape[1] <= 64 and v.bound <= 100,
                  image_input(g, spatial))
    channels = x.shape[1]
    group = g.choice([d for d in (1, 1, 2, 3, 4, channels) if channels % d == 0])
    out_channels = group * g.choice((1, 2, 3)) if group > 1 else g.choice((1, 2, 4, 5, 8, 16))
    chosen = windows(g, x.shape[2:], allow_dilation=True)
    if chosen is None:
        return False
    kernel = tuple(w[0] for w in chosen)
    fan_in = channels // group * math.prod(kernel)
    w = scaled_weight(g, (out_channels, channels // group) + kernel, fan_in, x.dtype)
    inputs = [x.name, w.name]
    bound = fan_in * x.bound * w.bound
    if g.chance(0.6):
        bias = g.random_weight((out_channels,), x.dtype)
        inputs.append(bias.name)
        bound += bias.bound
    attrs = window_attrs(g, chosen, dilation=True)
    if not g.chance(0.7):
        del attrs["kernel_shape"]
    if group > 1:
        attrs["group"] = group
    spatial_out = tuple(window_output(d, *wd) for d, wd in zip(x.shape[2:], chosen))
    if g.chance(0.15) and "dilations" not in attrs:  # ONNX Runtime has no SAME padding with dilations
        attrs.pop("pads", None)
        attrs["auto_pad"] = g.choice(("SAME_UPPER", "SAME_LOWER", "VALID"))
        spatial_out = tuple(-(-d // w[1]) if attrs["auto_pad"] != "VALID" else window_output(d, *w[:3], 0, 0)
                            for d, w in zip(x.shape[2:], chosen))
    shape = (x.shape[0], out_channels) + spatial_out
    if min(spatial_out) < 1 or math.prod(shape) > MAX_ELEMENTS or not g.fits(x.dtype, -bound, bound):
        return False
    y = g.emit("Conv", inputs, [g.result(shape, x.dtype, -bound, bound)], **attrs)[0]
    if g.chance(0.5):
        conv_epilogue(g, y)
    return True


def conv_epilogue(g: GraphBuilder, y: Value) -> None:
    """A binary op with a per-channel or scalar constant, or an activation, right after a conv."""
    if g.chance(0.6):
        op = g.choice(("Mul", "Add", "Sub", "Max"))
        shape = g.choice(((), (1,), (1, y.shape[1]) + (1,) * (y.rank - 2)))
        scale = g.random_weight(shape, y.dtype, 0.5, 2.0)
        lo, hi = binary_bounds(op, y, scale)
        g.emit(op, [y.name, scale.name], [g.result(y.shape, y.dtype, lo, hi)])
    else:
        apply_unary(g, g.choice(("Relu", "Sigmoid", "Tanh", "LeakyRelu", "HardSwish")), y)


@generates("MaxPool", "AveragePool")
def gen_pool(g: GraphBuilder, op: str) -> bool:
    spatial = 2 if g.chance(0.8) else 1
    x = g.operand(lambda v: v.dtype in FLOATS and v.rank == spatial + 2, image_input(g, spatial))
    dilation = op == "MaxPool" or g.opset >= 19
    chosen = windows(g, x.shape[2:], allow_dilation=dilation)
    if chosen is None:
        return False
    attrs = window_attrs(g, chosen, dilation)
    ceil_mode = int(g.chance(0.25) and not any(last_window_in_padding(d, *w) for d, w in zip(x.shape[2:], chosen)))
    if ceil_mode:
        attrs["ceil_mode"] = 1
    if op == "AveragePool" and g.chance(0.4):
        attrs["count_include_pad"] = 1
    spatial_out = tuple(window_output(d, *w, ceil_mode) for d, w in zip(x.shape[2:], chosen))
    if min(spatial_out) < 1:
        return False
    g.emit(op, [x.name], [g.result(x.shape[:2] + spatial_out, x.dtype, min(x.lo, 0.0), max(x.hi, 0.0),
                                   x.exact and op == "MaxPool")], **attrs)
    return True


@generates("GlobalAveragePool", "GlobalMaxPool")
def gen_global_pool(g: GraphBuilder, op: str) -> bool:
    x = g.operand(lambda v: v.dtype in FLOATS and v.rank in (3, 4), image_input(g, 2))
    g.emit(op, [x.name], [g.result(x.shape[:2] + (1,) * (x.rank - 2), x.dtype, x.lo, x.hi,
                                   x.exact and op == "GlobalMaxPool")])
    return True


@generates("InstanceNormalization")
def gen_instance_norm(g: GraphBuilder, op: str) -> bool:
    x = g.operand(lambda v: v.dtype in FLOATS and v.rank in (3, 4), image_input(g, 2))
    channels = x.shape[1]
    scale = g.random_weight((channels,), x.dtype, 0.5, 1.5)
    bias = g.random_weight((channels,), x.dtype)
    bound = math.sqrt(math.prod(x.shape[2:])) * scale.bound + bias.bound
    g.emit(op, [x.name, scale.name, bias.name], [g.result(x.shape, x.dtype, -bound, bound)],
           epsilon=g.choice((1e-5, 1e-2)))
    return True


@generates("BatchNormalization")
def gen_batch_norm(g: GraphBuilder, op: str) -> bool:
    """Inference-mode BatchNormalization (folded into a conv before it by fold-batchnorm)."""
    x = g.operand(lambda v: v.dtype in FLOATS and 2 <= v.rank <= 4 and v.bound <= 1000, image_input(g, 2))
    channels = x.shape[1]
    scale = g.random_weight((channels,), x.dtype, 0.5, 1.5)
    bias = g.random_weight((channels,), x.dtype)
    mean = g.random_weight((channels,), x.dtype)
    variance = g.random_weight((channels,), x.dtype, 0.5, 2.0)
    bound = (x.bound + mean.bound) / math.sqrt(0.5) * scale.bound + bias.bound
    g.emit(op, [x.name, scale.name, bias.name, mean.name, variance.name],
           [g.result(x.shape, x.dtype, -bound, bound)], epsilon=g.choice((1e-5, 1e-3)))
    return True


@generates("ConvTranspose")
def gen_conv_transpose(g: GraphBuilder, op: str) -> bool:
    spatial = 2 if g.chance(0.8) else 1
    x = g.operand(lambda v: v.dtype in FLOATS and v.rank == spatial + 2 and v.shape[1] <= 32 and v.bound <= 100,
                  image_input(g, spatial))
    channels = x.shape[1]
    group = g.choice([d for d in (1, 1, 2, channels) if channels % d == 0])
    per_group = g.choice((1, 2, 3))
    kernel = tuple(g.choice((1, 2, 3)) for _ in range(spatial))
    strides = tuple(g.choice((1, 1, 2, 3)) for _ in range(spatial))
    dilations = tuple(g.choice((1, 1, 2)) for _ in range(spatial))
    pads = [int(g.rng.integers(0, k)) for k in kernel for _ in range(2)]
    pad_begin, pad_end = pads[0::2], pads[1::2]
    output_padding = tuple(int(g.rng.integers(0, s)) if g.chance(0.3) else 0 for s in strides)
    spatial_out = tuple(s * (i - 1) + op_ + (k - 1) * d + 1 - b - e for i, s, op_, k, d, b, e in
                        zip(x.shape[2:], strides, output_padding, kernel, dilations, pad_begin, pad_end))
    shape = (x.shape[0], group * per_group) + spatial_out
    if min(spatial_out) < 1 or math.prod(shape) > MAX_ELEMENTS:
        return False
    fan_in = channels // group * math.prod(kernel)
    w = scaled_weight(g, (channels, per_group) + kernel, fan_in, x.dtype)
    inputs = [x.name, w.name]
    bound = fan_in * x.bound * w.bound
    if g.chance(0.5):
        bias = g.random_weight((group * per_group,), x.dtype)
        inputs.append(bias.name)
        bound += bias.bound
    attrs = {"kernel_shape": list(kernel), "strides": list(strides), "dilations": list(dilations),
             "pads": pad_begin + pad_end}
    if any(output_padding):
        attrs["output_padding"] = list(output_padding)
    if group > 1:
        attrs["group"] = group
    g.emit(op, inputs, [g.result(shape, x.dtype, -bound, bound)], **attrs)
    return True


@generates("GroupNormalization")
def gen_group_norm(g: GraphBuilder, op: str) -> bool:
    """GroupNormalization-21 (the checker refuses the deprecated version 18 in the opsets after it)."""
    if g.opset < 21:
        return False
    x = g.operand(lambda v: v.dtype in FLOATS and v.rank in (3, 4), image_input(g, 2))
    channels = x.shape[1]
    groups = g.choice([d for d in (1, 2, 3, 4, channels) if channels % d == 0])
    scale = g.random_weight((channels,), x.dtype, 0.5, 1.5)
    bias = g.random_weight((channels,), x.dtype)
    bound = math.sqrt(channels // groups * math.prod(x.shape[2:])) * scale.bound + bias.bound
    g.emit(op, [x.name, scale.name, bias.name], [g.result(x.shape, x.dtype, -bound, bound)], num_groups=groups,
           epsilon=g.choice((1e-5, 1e-2)))
    return True


@generates("LpNormalization")
def gen_lp_norm(g: GraphBuilder, op: str) -> bool:
    x = float_operand(g, lambda v: v.rank >= 1)
    x = positive(g, x, 0.1) if g.chance(0.3) else x
    axis = g.axis(x.rank)
    g.emit(op, [x.name], [g.result(x.shape, x.dtype, -1.0, 1.0)], axis=axis, p=g.choice((1, 2)))
    return True


@generates("MeanVarianceNormalization")
def gen_mean_variance_norm(g: GraphBuilder, op: str) -> bool:
    """MeanVarianceNormalization, whose ONNX definition takes the variance as E[x^2] - E[x]^2: it
    cancels for a mean far from 0 or few elements, so it only sees exact inputs (near 0 mean) over
    at least 16 elements."""
    x = float_operand(g, lambda v: v.rank >= 2 and v.exact and v.size >= 16, dtypes=("f32",))
    # always explicit: the checker fails on the default axes (onnx 1.23's function body)
    axes = [0, 2, 3] if x.rank == 4 and g.chance(0.4) else \
        sorted(int(a) for a in g.rng.choice(x.rank, int(g.rng.integers(1, x.rank + 1)), replace=False))
    if math.prod(x.shape[a] for a in axes) < 16:
        axes = list(range(x.rank))
    bound = math.sqrt(math.prod(x.shape[a] for a in axes)) + 1
    g.emit(op, [x.name], [g.result(x.shape, x.dtype, -bound, bound)], axes=axes)
    return True


@generates("TopK")
def gen_topk(g: GraphBuilder, op: str) -> bool:
    x = g.operand(lambda v: v.dtype in NUMBERS and v.rank >= 1 and v.exact, new_input(g, NUMBERS))
    axis = g.axis(x.rank)
    a = normalized(axis, x.rank)
    k = int(g.rng.integers(1, min(x.shape[a], 8) + 1))
    shape = x.shape[:a] + (k,) + x.shape[a + 1:]
    attrs = {"axis": axis}
    if g.chance(0.3):
        attrs["largest"] = 0
    g.emit(op, [x.name, g.constant([k])], [g.result(shape, x.dtype, x.lo, x.hi, True),
                                           g.result(shape, "i64", 0, x.shape[a] - 1, True)], **attrs)
    return True


@generates("Einsum")
def gen_einsum(g: GraphBuilder, op: str) -> bool:
    """Einsum as matmul, batched matmul, outer product, transpose or row sum."""
    a = float_operand(g, lambda v: 1 <= v.rank <= 3 and v.bound <= 100, dtypes=("f32",))
    letters = "bij"[3 - a.rank:]
    kind = g.choice(("contract", "contract", "transpose", "sum", "outer"))
    if kind == "contract" and a.rank >= 2:
        n = min(g.choice((1, 4, 9, 16)), max(1, MAX_WEIGHT_ELEMENTS // a.shape[-1]))
        b = scaled_weight(g, a.shape[:-2] + (a.shape[-1], n), a.shape[-1], a.dtype)
        equation = f"{letters},{letters[:-2]}{letters[-1]}k->{letters[:-1]}k"
        shape = a.shape[:-1] + (n,)
        operands, bound = [a, b], a.shape[-1] * a.bound * b.bound
    elif kind == "outer" and a.rank == 1:
        b = g.random_weight((g.choice((2, 5, 8)),), a.dtype)
        equation, shape, operands, bound = "i,j->ij", (a.shape[0], b.shape[0]), [a, b], a.bound * b.bound
    elif kind == "sum":
        equation = f"{letters}->{letters[:-1]}"
        shape, operands, bound = a.shape[:-1], [a], a.shape[-1] * a.bound
    else:
        equation = f"{letters}->{letters[::-1]}"
        shape, operands, bound = a.shape[::-1], [a], a.bound
    if math.prod(shape) > MAX_ELEMENTS:
        return False
    g.emit(op, [v.name for v in operands], [g.result(shape, a.dtype, -bound, bound)], equation=equation)
    return True


# -- data movement -------------------------------------------------------------------------
def moved(g: GraphBuilder, x: Value, shape: tuple, lo=None, hi=None) -> Value:
    """The result of a data-movement op: ``x``'s values (and exactness) in a new shape."""
    return g.result(shape, x.dtype, x.lo if lo is None else lo, x.hi if hi is None else hi, x.exact)


def any_operand(g: GraphBuilder, accept=lambda v: True, min_rank: int = 0) -> Value:
    """A pool value of any element type ``accept`` takes, else a new input of rank at least ``min_rank``."""
    def fresh():
        return g.add_input(g.shape(int(g.rng.integers(max(min_rank, 1), 5))), g.input_dtype(NUMBERS))
    return g.operand(lambda v: v.rank >= min_rank and accept(v), fresh)


@generates("Transpose")
def gen_transpose(g: GraphBuilder, op: str) -> bool:
    x = any_operand(g, min_rank=2)
    perm = [int(p) for p in g.rng.permutation(x.rank)]
    attrs = {"perm": perm} if g.chance(0.9) else {}
    perm = perm if attrs else list(reversed(range(x.rank)))
    g.emit(op, [x.name], [moved(g, x, tuple(x.shape[p] for p in perm))], **attrs)
    return True


def reshaped(g: GraphBuilder, shape: tuple) -> tuple[int, ...]:
    """Another shape with as many elements: adjacent dims merged or split by a factor."""
    dims = list(shape)
    for _ in range(int(g.rng.integers(1, 4))):
        if len(dims) >= 2 and g.chance(0.5):
            i = int(g.rng.integers(len(dims) - 1))
            dims[i:i + 2] = [dims[i] * dims[i + 1]]
        elif dims:
            i = int(g.rng.integers(len(dims)))
            factors = [f for f in range(2, dims[i]) if dims[i] % f == 0]
            if factors:
                f = g.choice(factors)
                dims[i:i + 1] = [f, dims[i] // f]
            elif len(dims) < 5 and g.chance(0.5):
                dims.insert(i, 1)
    return tuple(dims)


@generates("Reshape")
def gen_reshape(g: GraphBuilder, op: str) -> bool:
    x = any_operand(g)
    shape = reshaped(g, x.shape)
    target = list(shape)
    if target and g.chance(0.3):
        target[int(g.rng.integers(len(target)))] = -1
    if target and g.chance(0.2):
        same = [i for i in range(min(len(target), x.rank)) if target[i] == x.shape[i]]
        if same:
            target[g.choice(same)] = 0
    if len(shape) > 6:
        return False
    g.emit(op, [x.name, g.constant(target)], [moved(g, x, shape)])
    return True


@generates("Flatten")
def gen_flatten(g: GraphBuilder, op: str) -> bool:
    x = any_operand(g, min_rank=1)
    axis = int(g.rng.integers(-x.rank, x.rank + 1))
    a = axis + x.rank if axis < 0 else axis
    g.emit(op, [x.name], [moved(g, x, (math.prod(x.shape[:a]), math.prod(x.shape[a:])))], axis=axis)
    return True


@generates("Squeeze", "Unsqueeze")
def gen_squeeze(g: GraphBuilder, op: str) -> bool:
    x = any_operand(g, lambda v: op == "Unsqueeze" or 1 in v.shape)
    ones = [i for i, d in enumerate(x.shape) if d == 1]
    if op == "Squeeze" and ones:
        axes = sorted(int(a) for a in g.rng.choice(ones, int(g.rng.integers(1, len(ones) + 1)), replace=False))
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        inputs = [x.name, g.constant([a - x.rank if g.chance(0.3) else a for a in axes])]
    else:
        if x.rank >= 5:
            return False
        out_rank = x.rank + int(g.rng.integers(1, 3))
        axes = sorted(int(a) for a in g.rng.choice(out_rank, out_rank - x.rank, replace=False))
        dims = iter(x.shape)
        shape = tuple(1 if i in axes else next(dims) for i in range(out_rank))
        op = "Unsqueeze"
        inputs = [x.name, g.constant([a - out_rank if g.chance(0.3) else a for a in axes])]
    g.emit(op, inputs, [moved(g, x, shape)])
    return True


@generates("Concat")
def gen_concat(g: GraphBuilder, op: str) -> bool:
    x = any_operand(g, min_rank=1)
    axis = g.axis(x.rank)
    a = normalized(axis, x.rank)
    parts = [x]
    for _ in range(int(g.rng.integers(1, 3))):
        def fits_beside(v: Value) -> bool:
            return v.dtype == x.dtype and v.rank == x.rank and all(
                d == e for i, (d, e) in enumerate(zip(v.shape, x.shape)) if i != a)
        size = g.choice((1, 2, 3, x.shape[a]))
        shape = x.shape[:a] + (size,) + x.shape[a + 1:]
        parts.append(g.operand(fits_beside, lambda: g.add_input(shape, x.dtype) if g.chance(0.5)
                               else g.random_weight(shape, x.dtype, *INPUT_RANGE[x.dtype]), reuse=0.6))
    total = sum(p.shape[a] for p in parts)
    shape = x.shape[:a] + (total,) + x.shape[a + 1:]
    if math.prod(shape) > MAX_ELEMENTS:
        return False
    g.emit(op, [p.name for p in parts], [g.result(shape, x.dtype, min(p.lo for p in parts),
                                                  max(p.hi for p in parts), all(p.exact for p in parts))],
           axis=axis)
    return True


@generates("Slice")
def gen_slice(g: GraphBuilder, op: str) -> bool:
    x = any_operand(g, lambda v: max(v.shape) > 1, min_rank=1)
    if max(x.shape) == 1:
        return False
    axes = sorted({normalized(g.axis(x.rank), x.rank) for _ in range(int(g.rng.integers(1, x.rank + 1)))})
    starts, ends, steps, shape = [], [], [], list(x.shape)
    for a in axes:
        start, end, step = slice_bounds(g, x.shape[a])
        starts.append(start)
        ends.append(end)
        steps.append(step)
        shape[a] = len(range(*slice(start, end, step).indices(x.shape[a])))
    if min(shape) < 1:
        return False
    inputs = [x.name, g.constant(starts), g.constant(ends)]
    if g.chance(0.8) or any(s != 1 for s in steps):
        inputs.append(g.constant([a - x.rank if g.chance(0.3) else a for a in axes]))
        if any(s != 1 for s in steps) or g.chance(0.3):
            inputs.append(g.constant(steps))
    elif axes != list(range(len(axes))):
        return False
    g.emit(op, inputs, [moved(g, x, tuple(shape))])
    return True


def slice_bounds(g: GraphBuilder, size: int) -> tuple[int, int, int]:
    """Start, end and step of a slice of a ``size``-element axis: negative, reversed, clamped."""
    step = g.choice((1, 1, 1, 2, 3, -1, -2))
    start = int(g.rng.integers(0, size))
    if step > 0:
        end = int(g.rng.integers(start + 1, size + 1))
        end = end if not g.chance(0.2) else size + 7
    else:
        end = int(g.rng.integers(-1, start)) if start > 0 else -1
        end = -size - 5 if end == -1 else end
    if g.chance(0.3):
        start -= size
    return start, end, step


@generates("Expand")
def gen_expand(g: GraphBuilder, op: str) -> bool:
    x = any_operand(g, lambda v: v.rank <= 3)
    target = [g.choice(SMALL_DIMS[2:8]) if d == 1 and g.chance(0.6) else (1 if g.chance(0.2) else d)
              for d in x.shape]
    leading = [g.choice((1, 2, 3)) for _ in range(int(g.rng.integers(0, 2)))]
    target = leading + target
    shape = broadcast_shape(x.shape, tuple(target))
    if shape is None or math.prod(shape) > MAX_ELEMENTS:
        return False
    g.emit(op, [x.name, g.constant(target)], [moved(g, x, shape)])
    return True


@generates("Tile")
def gen_tile(g: GraphBuilder, op: str) -> bool:
    x = any_operand(g, min_rank=1)
    repeats = [g.choice((1, 1, 2, 3)) for _ in x.shape]
    shape = tuple(d * r for d, r in zip(x.shape, repeats))
    if math.prod(shape) > MAX_ELEMENTS:
        return False
    g.emit(op, [x.name, g.constant(repeats)], [moved(g, x, shape)])
    return True


@generates("Pad")
def gen_pad(g: GraphBuilder, op: str) -> bool:
    x = any_operand(g, lambda v: v.dtype != "bool", min_rank=1)
    if x.dtype == "bool":
        return False
    mode = g.choice(("constant", "constant", "reflect", "edge"))
    axes = list(range(x.rank)) if g.opset < 18 or g.chance(0.5) else \
        sorted({normalized(g.axis(x.rank), x.rank) for _ in range(2)})
    limit = lambda a: 4 if mode != "reflect" else min(4, x.shape[a])
    begins = [int(g.rng.integers(0, limit(a))) for a in axes]
    ends = [int(g.rng.integers(0, limit(a))) for a in axes]
    shape = list(x.shape)
    for a, b, e in zip(axes, begins, ends):
        shape[a] += b + e
    if math.prod(shape) > MAX_ELEMENTS:
        return False
    value = float(g.choice((0.0, 2.0, -2.0))) if mode == "constant" else 0.0
    inputs = [x.name, g.constant(begins + ends)]
    if mode == "constant" and value != 0.0:
        inputs.append(g.constant(value, x.dtype))
    if axes != list(range(x.rank)):
        inputs += [""] * (3 - len(inputs)) + [g.constant(axes)]
    g.emit(op, inputs, [moved(g, x, tuple(shape), min(x.lo, value), max(x.hi, value))], mode=mode)
    return True


@generates("Split")
def gen_split(g: GraphBuilder, op: str) -> bool:
    x = any_operand(g, lambda v: max(v.shape) >= 2, min_rank=1)
    axes = [a for a in range(x.rank) if x.shape[a] >= 2]
    if not axes:
        return False
    a = g.choice(axes)
    size = x.shape[a]
    parts = min(size, g.choice((2, 2, 3)))
    cuts = sorted(int(c) for c in g.rng.choice(range(1, size), parts - 1, replace=False))
    sizes = [e - b for b, e in zip([0] + cuts, cuts + [size])]
    inputs, attrs = [x.name], {"axis": a - x.rank if g.chance(0.3) else a}
    if g.opset >= 18 and g.chance(0.4) and size % parts == 0:
        sizes = [size // parts] * parts
        attrs["num_outputs"] = parts
    else:
        inputs.append(g.constant(sizes))
    results = [moved(g, x, x.shape[:a] + (s,) + x.shape[a + 1:]) for s in sizes]
    g.emit(op, inputs, results, **attrs)
    return True


@generates("Gather")
def gen_gather(g: GraphBuilder, op: str) -> bool:
    x = any_operand(g, min_rank=1)
    axis = g.axis(x.rank)
    a = normalized(axis, x.rank)
    size = x.shape[a]
    index_shape = g.choice(((), (1,), (3,), (2, 2), (5,)))
    indices = g.rng.integers(-size, size, index_shape)
    shape = x.shape[:a] + tuple(index_shape) + x.shape[a + 1:]
    if math.prod(shape) > MAX_ELEMENTS:
        return False
    g.emit(op, [x.name, g.constant(indices, g.choice(("i64", "i32")))], [moved(g, x, shape)], axis=axis)
    return True


@generates("DepthToSpace", "SpaceToDepth")
def gen_depth_space(g: GraphBuilder, op: str) -> bool:
    block = g.choice((2, 3))

    def fresh():
        n, h, w = g.choice((1, 2)), g.choice((1, 2, 3, 5)), g.choice((1, 2, 4, 7))
        if op == "DepthToSpace":
            return g.add_input((n, block * block * g.choice((1, 2, 3)), h, w), g.input_dtype(FLOATS))
        return g.add_input((n, g.choice((1, 2, 3)), block * h, block * w), g.input_dtype(FLOATS))

    # ONNX Runtime implements them for floats only
    if op == "DepthToSpace":
        x = g.operand(lambda v: v.dtype in FLOATS and v.rank == 4 and v.shape[1] % (block * block) == 0, fresh)
        shape = (x.shape[0], x.shape[1] // block ** 2, x.shape[2] * block, x.shape[3] * block)
        attrs = {"blocksize": block, "mode": g.choice(("DCR", "CRD"))}
    else:
        x = g.operand(lambda v: v.dtype in FLOATS and v.rank == 4 and v.shape[2] % block == 0
                      and v.shape[3] % block == 0, fresh)
        shape = (x.shape[0], x.shape[1] * block ** 2, x.shape[2] // block, x.shape[3] // block)
        attrs = {"blocksize": block}
    g.emit(op, [x.name], [moved(g, x, shape)], **attrs)
    return True


@generates("Trilu")
def gen_trilu(g: GraphBuilder, op: str) -> bool:
    x = any_operand(g, min_rank=2)
    inputs = [x.name] + ([g.constant(int(g.rng.integers(-3, 4)))] if g.chance(0.6) else [])
    g.emit(op, inputs, [moved(g, x, x.shape, min(x.lo, 0.0), max(x.hi, 0.0))], upper=int(g.chance(0.5)))
    return True


@generates("GatherElements")
def gen_gather_elements(g: GraphBuilder, op: str) -> bool:
    x = any_operand(g, min_rank=1)
    axis = g.axis(x.rank)
    a = normalized(axis, x.rank)
    shape = tuple(g.choice((1, 2, 3, 5)) if i == a else int(g.rng.integers(1, d + 1))
                  for i, d in enumerate(x.shape))
    indices = g.rng.integers(-x.shape[a], x.shape[a], shape)
    g.emit(op, [x.name, g.constant(indices, g.choice(("i64", "i32")))], [moved(g, x, shape)], axis=axis)
    return True


@generates("ShapePattern")
def gen_shape_pattern(g: GraphBuilder, op: str) -> bool:
    """``Reshape(x, Concat(Shape(x)[:1], [-1]))``: a shape computed in the graph, folded at import."""
    x = any_operand(g, min_rank=2)
    shape_of = g.result((x.rank,), "i64", 0, max(x.shape), True)
    g.emit("Shape", [x.name], [shape_of])
    first = g.result((1,), "i64", 0, x.shape[0], True)
    g.emit("Slice", [shape_of.name, g.constant([0]), g.constant([1])], [first])
    target = g.result((2,), "i64", -1, x.shape[0], True)
    g.emit("Concat", [first.name, g.constant([-1])], [target], axis=0)
    g.emit("Reshape", [x.name, target.name], [moved(g, x, (x.shape[0], math.prod(x.shape[1:])))])
    return True


@generates("Dropout")
def gen_dropout(g: GraphBuilder, op: str) -> bool:
    """Dropout at inference: the identity."""
    x = float_operand(g)
    inputs = [x.name] + ([g.constant(np.float32(0.3), "f32")] if g.chance(0.5) else [])
    g.emit(op, inputs, [moved(g, x, x.shape)])
    return True


# --------------------------------------------------------------------------------------
# Themes: which ops a graph is made of
# --------------------------------------------------------------------------------------
ELEMENTWISE = {**{op: 0.7 for op in UNARY}, "Add": 4, "Sub": 3, "Mul": 4, "Div": 2, "Max": 1, "Min": 1,
               "Pow": 1, "PRelu": 1, "Sum": 0.5, "Mean": 0.5, "VariadicMax": 0.3, "VariadicMin": 0.3,
               "Clip": 1, "Where": 1, "Cast": 1, "CastLike": 0.3, "Equal": 0.3, "Greater": 0.5, "Less": 0.3,
               "GeluPattern": 1, "Gelu": 0.5}
ROWS = {"Softmax": 4, "LogSoftmax": 3, "Hardmax": 1, "LayerNormalization": 3, "CumSum": 3, "ArgMax": 2,
        "ArgMin": 1, "AttentionPooling": 1, "Standardize": 1, "SoftmaxPattern": 1, "LpNormalization": 0.7,
        "MeanVarianceNormalization": 0.5, "TopK": 1, **{op: 1.5 for op in REDUCTIONS}, "ReduceSum": 3,
        "ReduceMax": 2, "ReduceMean": 2}
MOVEMENT = {"Transpose": 2, "Reshape": 2, "Flatten": 0.5, "Squeeze": 0.5, "Unsqueeze": 0.5, "Concat": 2,
            "Slice": 2, "Expand": 1, "Tile": 0.5, "Pad": 1, "Split": 0.7, "Gather": 0.7, "GatherElements": 0.5,
            "Trilu": 0.5, "ShapePattern": 0.5, "Dropout": 0.2, "DepthToSpace": 0.3, "SpaceToDepth": 0.3}
COMPUTE = {"MatMul": 4, "Gemm": 2, "Einsum": 1}
IMAGES = {"Conv": 6, "ConvTranspose": 1.5, "BatchNormalization": 2, "MaxPool": 1.5, "AveragePool": 1.5,
          "GlobalAveragePool": 0.5, "GlobalMaxPool": 0.3, "InstanceNormalization": 0.5, "GroupNormalization": 0.5,
          "DepthToSpace": 0.3, "SpaceToDepth": 0.3}
INTEGER = {"Add": 3, "Sub": 2, "Mul": 2, "Div": 1, "Mod": 1, "Max": 1, "Min": 1, "Abs": 1, "Neg": 1,
           "Relu": 0.5, "Sign": 0.5, "Clip": 1, "CumSum": 2, "ArgMax": 1, "ArgMin": 1, "Cast": 2, "Where": 1,
           "Equal": 1, "Greater": 1, "Less": 1, "GreaterOrEqual": 0.5, "LessOrEqual": 0.5, "And": 0.5,
           "Or": 0.5, "Xor": 0.3, "Not": 0.5, "TopK": 0.5, "BitwiseAnd": 0.4, "BitwiseOr": 0.4, "BitwiseXor": 0.4,
           "BitwiseNot": 0.3, **{op: 0.6 for op in REDUCTIONS}}


def mix(*weighted: tuple[dict, float]) -> dict[str, float]:
    weights: Counter = Counter()
    for table, share in weighted:
        total = sum(table.values())
        for op, w in table.items():
            weights[op] += share * w / total
    return dict(weights)


#: theme -> (weight of the theme, op weights, element type of its inputs, probability of a long axis)
THEMES = {
    "elementwise": (3, mix((ELEMENTWISE, 0.8), (MOVEMENT, 0.1), (ROWS, 0.1)), "f32", 0.1),
    "rows": (4, mix((ROWS, 0.55), (ELEMENTWISE, 0.3), (MOVEMENT, 0.15)), "f32", 0.25),
    "matmul": (2, mix((COMPUTE, 0.3), (ELEMENTWISE, 0.3), (ROWS, 0.25), (MOVEMENT, 0.15)), "f32", 0.05),
    "conv": (2, mix((IMAGES, 0.45), (ELEMENTWISE, 0.35), (MOVEMENT, 0.1), (ROWS, 0.1)), "f32", 0.0),
    "movement": (2, mix((MOVEMENT, 0.5), (ELEMENTWISE, 0.3), (ROWS, 0.2)), "f32", 0.05),
    "integer": (1, mix((INTEGER, 0.8), (MOVEMENT, 0.2)), "i64", 0.1),
    "int32": (0.5, mix((INTEGER, 0.8), (MOVEMENT, 0.2)), "i32", 0.05),
    "float16": (1, mix((ELEMENTWISE, 0.5), (ROWS, 0.3), (COMPUTE, 0.1), (MOVEMENT, 0.1)), "f16", 0.0),
}
OPSETS = (17, 17, 18, 19, 20, 21)


@dataclass
class Case:
    """A generated graph and the seed of its inputs."""

    model: onnx.ModelProto
    input_seed: int
    theme: str = ""
    origin: str = ""

    @property
    def feeds(self) -> dict[str, np.ndarray]:
        return sample_feeds(self.model, self.input_seed)


def generate(seed: int, index: int) -> Case:
    """Graph #``index`` of ``seed``: a theme, an opset and 1 to 16 op generator calls."""
    rng = np.random.default_rng([seed, index])
    names = list(THEMES)
    shares = np.array([THEMES[n][0] for n in names], dtype=float)
    theme = names[int(rng.choice(len(names), p=shares / shares.sum()))]
    _, weights, dtype, long_axis = THEMES[theme]
    g = GraphBuilder(rng, int(rng.choice(OPSETS)), dtype, long_axis)
    ops = list(weights)
    p = np.array([weights[o] for o in ops])
    target = int(rng.choice((1, 2, 3, 4, 5, 6, 8, 10, 12, 16)))
    for _ in range(4 * target):
        if len(g.nodes) >= target:
            break
        try_generator(g, ops[int(rng.choice(len(ops), p=p / p.sum()))])
    if not g.nodes:
        gen_unary(g, "Relu")
    return Case(g.model(), int(rng.integers(2 ** 31)), theme, f"seed {seed}, graph {index}")


# --------------------------------------------------------------------------------------
# The oracle: ONNX Runtime without graph optimisations
# --------------------------------------------------------------------------------------
class InvalidModel(Exception):
    """The ONNX checker or ONNX Runtime refuses the model."""


def check_model(model: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise InvalidModel(f"onnx.checker: {first_line(str(error))}") from None


def onnxruntime_session(model: onnx.ModelProto):
    import onnxruntime as ort

    options = ort.SessionOptions()
    # with its graph optimisations on, ONNX Runtime itself mis-fuses some patterns
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4  # its errors are raised as exceptions; no log lines besides
    try:
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT reports invalid models with its own exception types
        raise InvalidModel(f"onnxruntime: {first_line(str(error))}") from None


@dataclass
class Expected:
    """ONNX Runtime's outputs and, per output, the magnitude of the values it is computed from."""

    outputs: list[np.ndarray]
    scales: list[float]


def run_onnxruntime(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> Expected:
    """Check ``model`` and run it; every intermediate value is fetched too, to measure the scales."""
    check_model(model)
    produced = [name for node in model.graph.node for name in node.output if name]
    outputs = [o.name for o in model.graph.output]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in produced if name not in outputs)
    session = onnxruntime_session(probe)
    names = [o.name for o in session.get_outputs()]
    try:
        values = dict(zip(names, session.run(None, feeds)))
    except Exception as error:  # shapes the checker could not see through, refused at run time
        raise InvalidModel(f"onnxruntime: {first_line(str(error))}") from None
    values.update(feeds)
    values.update({t.name: numpy_helper.to_array(t) for t in model.graph.initializer})
    return Expected([values[name] for name in outputs], [ancestor_scale(model, name, values) for name in outputs])


def ancestor_scale(model: onnx.ModelProto, output: str, values: dict[str, np.ndarray]) -> float:
    """The largest finite magnitude among the float values ``output`` is computed from (at least 1),
    each multiplied by the error gain of the normalisations between it and ``output``."""
    producer = {name: node for node in model.graph.node for name in node.output}
    scales: dict[str, float] = {}

    def scale(name: str) -> float:
        if name in scales:
            return scales[name]
        scales[name] = 1.0  # a cycle cannot occur in a valid graph; this only guards the recursion
        result = magnitude(values.get(name))
        node = producer.get(name)
        if node is not None:
            gain = normalisation_gain(node, values)
            result = max([result] + [gain * scale(source) for source in node.input if source])
        scales[name] = result
        return result

    return scale(output)


def magnitude(value: np.ndarray | None) -> float:
    """The largest finite magnitude of a float ``value``, at least 1 (1 for anything else)."""
    if value is None or not np.issubdtype(value.dtype, np.floating) or not value.size:
        return 1.0
    finite = np.abs(value[np.isfinite(value)].astype(np.float64))
    return max(1.0, float(finite.max()) if finite.size else 0.0)


def normalisation_gain(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> float:
    """How much a rounding error in a normalisation's input can grow in its output: the largest scale
    over the smallest spread sqrt(variance + epsilon) it divides by (1 for every other op). A group
    of nearly equal values (a saturated erf, say) has a spread far below its magnitude, and there
    two correct implementations differ by the last bits of the input times this gain."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    x = values.get(node.input[0]) if node.input else None
    if x is None or not np.issubdtype(x.dtype, np.floating) or not x.size:
        return 1.0
    x = x.astype(np.float64)
    epsilon = attrs.get("epsilon", 1e-5)
    if node.op_type == "LayerNormalization":
        axis = attrs.get("axis", -1) % x.ndim
        variance = x.reshape(x.shape[:axis] + (-1,)).var(axis=-1)
    elif node.op_type == "GroupNormalization":
        variance = x.reshape(x.shape[0], attrs["num_groups"], -1).var(axis=-1)
    elif node.op_type == "InstanceNormalization":
        variance = x.reshape(x.shape[:2] + (-1,)).var(axis=-1)
    elif node.op_type == "MeanVarianceNormalization":
        variance, epsilon = x.var(axis=tuple(attrs.get("axes", [0, 2, 3]))), 1e-9
    else:
        return 1.0
    weight = values.get(node.input[1]) if len(node.input) > 1 else None
    largest_scale = magnitude(np.abs(weight)) if weight is not None else 1.0
    return max(1.0, largest_scale / math.sqrt(float(variance.min()) + epsilon))


#: (rtol, atol) of tests/test_ops.py for float32; the absolute part is scaled by the magnitude of the
#: values an output is computed from (a rounding error is relative to those, not to the result).
#: float16 rounds at every op in ONNX Runtime and once per fused region in fusecc: its bound is
#: float32's scaled by the ratio of their machine epsilons, capped at a few float16 ulps.
TOLERANCES = {np.dtype(np.float32): (1e-4, 1e-5), np.dtype(np.float16): (1e-2, 5e-3)}


def compare(got: np.ndarray, want: np.ndarray, scale: float) -> str | None:
    """None if ``got`` matches ``want``, else what differs. Ints and bools must be equal, NaNs in the same places."""
    got = np.asarray(got)
    if got.shape != want.shape:
        return f"shape {got.shape}, expected {want.shape}"
    if got.dtype != want.dtype:
        return f"dtype {got.dtype}, expected {want.dtype}"
    if want.dtype in TOLERANCES:
        rtol, atol = TOLERANCES[want.dtype]
        a, b = got.astype(np.float64), want.astype(np.float64)
        bad = ~np.isclose(a, b, rtol=rtol, atol=atol * scale, equal_nan=True)
    else:
        bad = got != want
    if not bad.any():
        return None
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    return (f"{int(bad.sum())} of {bad.size} elements differ, first at {list(index)}: {got[index]!r}, "
            f"expected {want[index]!r}")


# --------------------------------------------------------------------------------------
# The worker: fusecc runs in a process of its own, so a crash or a hang is an outcome
# --------------------------------------------------------------------------------------
#: in this order: the pure-Python reference first, then unfused and fused native code
VARIANTS = ("reference", "unfused", "fused")


@dataclass
class Job:
    model: bytes
    feeds: dict[str, np.ndarray]
    #: "abort" or "hang" makes the worker do that before compiling the fused variant; tests of the
    #: crash and hang handling use it
    fault: str | None = None


@dataclass
class VariantResult:
    outputs: list[np.ndarray] | None = None
    error: str | None = None
    #: the error is a refusal naming the problem (unsupported op, attribute, constant input, ...)
    clear: bool = False
    key: str = ""


def is_clear_error(error: Exception) -> bool:
    """A refusal by the importer that is not a Python exception it caught and passed on."""
    from fusecc.frontend.onnx_import import FrontendError
    return isinstance(error, FrontendError) and not re.search(r"internal error|\b[A-Z]\w*(Error|Exception): ",
                                                               str(error))


def error_key(error: Exception) -> str:
    """What tells internal errors apart: fusecc's exception class (and the pass that failed), or
    "Python exception" for any exception fusecc did not raise itself."""
    if not type(error).__module__.startswith("fusecc"):
        return "Python exception"
    failed_pass = re.search(r"pass '([^']+)' failed", str(error))
    return type(error).__name__ + (f" in {failed_pass.group(1)}" if failed_pass else "")


def describe_error(error: Exception) -> str:
    return f"{type(error).__name__}: {first_line(str(error))}"


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def run_variant(variant: str, job: Job) -> VariantResult:
    import fusecc
    from fusecc.frontend.onnx_import import import_model
    from fusecc.reference import interpret

    try:
        if variant == "reference":
            outputs = interpret(import_model(job.model), job.feeds)
        else:
            outputs = fusecc.compile(job.model, fusion=variant == "fused").run(job.feeds)
        return VariantResult(outputs=[np.array(o) for o in outputs])
    except Exception as error:  # every exception is a result to classify
        return VariantResult(error=describe_error(error), clear=is_clear_error(error), key=error_key(error))


def inject_fault(fault: str | None) -> None:
    if fault == "abort":
        os.abort()
    if fault == "hang":
        while True:
            time.sleep(60)


def worker_main(connection, stderr_path: str, temp_dir: str) -> None:
    """Run jobs from ``connection``; before each variant, say which one starts (a crash is then located)."""
    with open(stderr_path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 2)
    tempfile.tempdir = temp_dir  # pass reproducers land here, removed with the worker
    # every graph is compiled afresh: the fuzzer tests the compiler, and its thousands of one-off
    # models would evict the user's entries from the compile cache
    os.environ["FUSECC_CACHE"] = "0"
    import fusecc.lowering  # noqa: F401  (import the compiler before the first job's clock starts)

    connection.send(("ready", None))
    while True:
        job = connection.recv()
        if job is None:
            return
        results = {}
        for variant in VARIANTS:
            connection.send(("start", variant))
            if variant == "fused":
                inject_fault(job.fault)
            results[variant] = run_variant(variant, job)
            if results[variant].error and results[variant].clear:
                break
        # the compiled models are freed here, so a crash in a finaliser is reported with its graph
        connection.send(("start", "cleanup"))
        gc.collect()
        connection.send(("done", results))


@dataclass
class WorkerReport:
    results: dict[str, VariantResult] = field(default_factory=dict)
    #: "crash" or "hang" when the worker did not finish, with the variant it was running
    failure: str | None = None
    stage: str | None = None
    detail: str = ""


class Worker:
    """A fusecc worker process, restarted after a crash, a hang or ``recycle_after`` jobs.

    ``timeout`` bounds each variant of a job (the reference, unfused and fused runs);
    starting the process has ``STARTUP_SECONDS``.
    """

    STARTUP_SECONDS = 120.0

    def __init__(self, timeout: float = 60.0, recycle_after: int = 200):
        self.timeout = timeout
        #: compiled models keep some native memory (issue 12): a fresh process bounds it
        self.recycle_after = recycle_after
        self.process = None
        self.connection = None
        self.jobs = 0
        self.directory = None

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.directory = tempfile.mkdtemp(prefix="fusecc_fuzz_")
        self.stderr_path = os.path.join(self.directory, "stderr.txt")
        ours, theirs = context.Pipe()
        process = context.Process(target=worker_main, args=(theirs, self.stderr_path, self.directory), daemon=True)
        process.start()
        theirs.close()
        self.process, self.connection, self.jobs = process, ours, 0
        if not wait_for([ours, process.sentinel], timeout=self.STARTUP_SECONDS) or not ours.poll():
            self.close()
            raise RuntimeError(f"the fuzz worker did not start within {self.STARTUP_SECONDS:g} s")
        ours.recv()

    def close(self) -> None:
        if self.process is not None and self.connection is not None:
            try:
                self.connection.send(None)
            except (OSError, ValueError):
                pass
            self.process.join(timeout=5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
            self.connection.close()
            self.process = None
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.close()

    def run(self, job: Job) -> WorkerReport:
        if self.process is None or not self.process.is_alive() or self.jobs >= self.recycle_after:
            self.close()
            self.start()
        self.jobs += 1
        stderr_start = os.path.getsize(self.stderr_path) if os.path.exists(self.stderr_path) else 0
        self.connection.send(job)
        deadline = time.monotonic() + self.timeout
        stage = VARIANTS[0]
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                return WorkerReport(failure="hang", stage=stage, detail=f"{stage} ran longer than {self.timeout:g} s")
            ready = wait_for([self.connection, self.process.sentinel], timeout=remaining)
            if self.connection in ready:
                try:
                    kind, payload = self.connection.recv()
                except (EOFError, OSError):
                    return self._crashed(stage, stderr_start)
                if kind == "start":
                    stage, deadline = payload, time.monotonic() + self.timeout
                    continue
                return WorkerReport(results=payload)
            if self.process.sentinel in ready:
                return self._crashed(stage, stderr_start)

    def _crashed(self, stage: str | None, stderr_start: int) -> WorkerReport:
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        code = self.process.exitcode
        detail = f"worker died with {signal_name(code)}"
        tail = self._stderr_since(stderr_start)
        if tail:
            detail += f": {tail}"
        self.close()
        return WorkerReport(failure="crash", stage=stage, detail=detail)

    def _stderr_since(self, offset: int) -> str:
        try:
            with open(self.stderr_path, "rb") as log:
                log.seek(offset)
                lines = log.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-3:])


def signal_name(exitcode: int | None) -> str:
    import signal

    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


# --------------------------------------------------------------------------------------
# Outcomes
# --------------------------------------------------------------------------------------
FAILURES = ("mismatch", "error", "crash", "hang")


@dataclass
class Outcome:
    """What one graph gave: ``kind`` (match, clear-error, invalid, or one of ``FAILURES``), the variants
    that failed, a key that tells failures of one kind apart, and the details."""

    kind: str
    variants: tuple[str, ...] = ()
    key: str = ""
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.kind in FAILURES

    @property
    def signature(self) -> tuple:
        """Two failures with one signature fail the same way (what the minimiser preserves)."""
        return self.kind, self.variants, self.key

    def describe(self) -> str:
        where = f" ({', '.join(self.variants)})" if self.variants else ""
        return f"{self.kind}{where}: {self.detail}" if self.detail else f"{self.kind}{where}"


def evaluate(model: onnx.ModelProto, input_seed: int, worker: Worker, fault: str | None = None) -> Outcome:
    """Run ``model`` on ONNX Runtime here and on fusecc in ``worker``, and classify what happened."""
    feeds = sample_feeds(model, input_seed)
    try:
        expected = run_onnxruntime(model, feeds)
    except InvalidModel as error:
        return Outcome("invalid", detail=str(error))
    report = worker.run(Job(model.SerializeToString(), feeds, fault))
    if report.failure:
        return Outcome(report.failure, (report.stage,), report.stage, report.detail)
    errors = {v: r for v, r in report.results.items() if r.error}
    internal = {v: r for v, r in errors.items() if not r.clear}
    if internal:
        variant, result = next(iter(internal.items()))
        return Outcome("error", tuple(internal), result.key, f"{variant}: {result.error}")
    if errors:
        return Outcome("clear-error", detail=next(iter(errors.values())).error)
    differences = {}
    for variant, result in report.results.items():
        difference = compare_outputs(result.outputs, expected)
        if difference:
            differences[variant] = difference
    if differences:
        return Outcome("mismatch", tuple(differences), detail=describe_differences(differences))
    return Outcome("match")


def describe_differences(differences: dict[str, str]) -> str:
    """``variant, variant: difference; ...``, variants with the same difference named together."""
    grouped: dict[str, list[str]] = {}
    for variant, difference in differences.items():
        grouped.setdefault(difference, []).append(variant)
    return "; ".join(f"{', '.join(variants)}: {difference}" for difference, variants in grouped.items())


def compare_outputs(outputs: list[np.ndarray], expected: Expected) -> str | None:
    if len(outputs) != len(expected.outputs):
        return f"{len(outputs)} outputs, expected {len(expected.outputs)}"
    for index, (got, want, scale) in enumerate(zip(outputs, expected.outputs, expected.scales)):
        difference = compare(got, want, scale)
        if difference:
            return f"output #{index}: {difference}"
    return None


# --------------------------------------------------------------------------------------
# The minimiser: delta debugging over ONNX models
# --------------------------------------------------------------------------------------
def value_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """The type of every value of ``model`` (graph inputs, initializers, node results)."""
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    types = {v.name: v.type for v in list(inferred.graph.input) + list(inferred.graph.value_info)
             + list(inferred.graph.output) if v.type.HasField("tensor_type")}
    for tensor in model.graph.initializer:
        types[tensor.name] = helper.make_tensor_type_proto(tensor.data_type, list(tensor.dims))
    return types


def retyped(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with unused nodes, inputs and initializers removed and its outputs' types inferred again
    (an output that shape inference cannot type, such as GroupNormalization-18's, keeps its type)."""
    model = pruned(model)
    previous = {}
    for output in model.graph.output:
        previous[output.name] = onnx.TypeProto()
        previous[output.name].CopyFrom(output.type)
        output.ClearField("type")
    types = value_types(model)
    for output in model.graph.output:
        output.type.CopyFrom(types.get(output.name) or previous[output.name])
    return model


def pruned(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop nodes whose results nothing reads, then inputs and initializers no node reads."""
    model = copy_model(model)
    graph = model.graph
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    keep_inputs = [v for v in graph.input if v.name in needed]
    del graph.input[:]
    graph.input.extend(keep_inputs)
    keep_initializers = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(keep_initializers)
    graph.ClearField("value_info")
    return model


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def cost(model: onnx.ModelProto) -> tuple:
    """What the minimiser shrinks, most important first."""
    graph = model.graph
    fed = sum(math.prod(d.dim_value for d in v.type.tensor_type.shape.dim) for v in graph.input)
    weights = sum(math.prod(t.dims) for t in graph.initializer)
    return (len(graph.node), len(graph.output), fed + weights, weights,
            sum(len(n.attribute) for n in graph.node), len(graph.input))


def rename_uses(model: onnx.ModelProto, old: str, new: str) -> None:
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def without_node(model: onnx.ModelProto, index: int, types: dict) -> Iterator[onnx.ModelProto]:
    """Node ``index`` removed: the nodes that read its results read one of its inputs of the same
    type instead, and graph outputs it produced become that input (when another node computes it);
    or its results become graph inputs."""
    node = model.graph.node[index]
    results = [name for name in node.output if name]
    outputs = [o.name for o in model.graph.output]
    produced = {name for other in model.graph.node for name in other.output}
    read = {name for other in model.graph.node for name in other.input}
    is_output = any(name in outputs for name in results)
    for source in dict.fromkeys(node.input):
        if not source or any(types.get(source) != types.get(name) for name in results if name in read):
            continue
        if is_output and (source not in produced or source in outputs):
            continue
        candidate = copy_model(model)
        del candidate.graph.node[index]
        for name in results:
            rename_uses(candidate, name, source)
        for output in candidate.graph.output:
            if output.name in results:
                output.name = source
        yield candidate
    if not is_output and node.op_type != "Constant" and all(name in types for name in results):
        candidate = copy_model(model)
        del candidate.graph.node[index]
        for name in results:
            candidate.graph.input.append(helper.make_value_info(name, types[name]))
        yield candidate


def with_constants_as_initializers(model: onnx.ModelProto) -> Iterator[onnx.ModelProto]:
    """A ``Constant`` node with a tensor value becomes an initializer (one node less)."""
    for index, node in enumerate(model.graph.node):
        if node.op_type == "Constant" and [a.name for a in node.attribute] == ["value"]:
            candidate = copy_model(model)
            del candidate.graph.node[index]
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            candidate.graph.initializer.append(tensor)
            yield candidate


def with_one_output(model: onnx.ModelProto) -> Iterator[onnx.ModelProto]:
    if len(model.graph.output) < 2:
        return
    for output in model.graph.output:
        candidate = copy_model(model)
        del candidate.graph.output[:]
        candidate.graph.output.append(output)
        yield candidate


def without_attributes(model: onnx.ModelProto) -> Iterator[onnx.ModelProto]:
    for i, node in enumerate(model.graph.node):
        for j in range(len(node.attribute)):
            candidate = copy_model(model)
            del candidate.graph.node[i].attribute[j]
            yield candidate


def with_weights_as_inputs(model: onnx.ModelProto) -> Iterator[onnx.ModelProto]:
    """A float initializer becomes a graph input (random values, a smaller file)."""
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.data_type not in (TensorProto.FLOAT, TensorProto.FLOAT16) or math.prod(tensor.dims) <= 1:
            continue
        candidate = copy_model(model)
        del candidate.graph.initializer[i]
        candidate.graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
        yield candidate


#: inputs holding shapes: their entries are dims, shrunk with the dims they name
SHAPE_OPERANDS = {("Reshape", 1), ("Expand", 1)}


def with_dim_shrunk(model: onnx.ModelProto) -> Iterator[onnx.ModelProto]:
    """Every dim of size n (graph inputs, initializer axes, shape operands) made m < n at once."""
    dims = sorted({d.dim_value for v in model.graph.input for d in v.type.tensor_type.shape.dim
                   if d.dim_value > 1}, reverse=True)
    for n in dims:
        for m in sorted({1, 2, n // 2, n - 1} - {n}):
            if 1 <= m < n:
                yield shrink_dim(model, n, m)


def shrink_dim(model: onnx.ModelProto, n: int, m: int) -> onnx.ModelProto:
    candidate = copy_model(model)
    for value in candidate.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_value == n:
                dim.dim_value = m
    shape_operands = {node.input[i] for node in candidate.graph.node for op, i in SHAPE_OPERANDS
                      if node.op_type == op and len(node.input) > i}
    for i, tensor in enumerate(candidate.graph.initializer):
        array = numpy_helper.to_array(tensor)
        if tensor.name in shape_operands:
            array = np.where(array == n, m, array)
        else:
            for axis, size in enumerate(array.shape):
                if size == n:
                    array = np.take(array, range(m), axis=axis)
        candidate.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, tensor.name))
    return candidate


def reductions(model: onnx.ModelProto) -> Iterator[onnx.ModelProto]:
    """Smaller variants of ``model``, the biggest reductions first."""
    yield from with_one_output(model)
    yield from with_constants_as_initializers(model)
    types = value_types(model)
    for index in range(len(model.graph.node)):
        yield from without_node(model, index, types)
    yield from with_dim_shrunk(model)
    yield from without_attributes(model)
    yield from with_weights_as_inputs(model)


def is_checked(model: onnx.ModelProto) -> bool:
    try:
        check_model(model)
        return True
    except InvalidModel:
        return False


def minimize(model: onnx.ModelProto, fails: Callable[[onnx.ModelProto], bool],
             budget_seconds: float = 120.0) -> onnx.ModelProto:
    """The smallest variant of ``model`` that ``fails`` (greedy delta debugging, restarted after each
    reduction), within ``budget_seconds``. Variants the ONNX checker refuses are skipped."""
    best = retyped(model)
    deadline = time.monotonic() + budget_seconds
    tried = set()
    improved = True
    while improved and time.monotonic() < deadline:
        improved = False
        for candidate in reductions(best):
            if time.monotonic() >= deadline:
                break
            try:
                candidate = retyped(candidate)
            except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError):
                continue
            key = candidate.SerializeToString(deterministic=True)
            if key in tried or cost(candidate) >= cost(best):
                continue
            tried.add(key)
            if is_checked(candidate) and fails(candidate):
                best, improved = candidate, True
                break
    return best


# --------------------------------------------------------------------------------------
# Regression cases
# --------------------------------------------------------------------------------------
def describe_graph(model: onnx.ModelProto) -> list[str]:
    """One line per node, ``y = Op(a, b) {attrs}``, after the inputs' and weights' types."""
    lines = []
    for name, shape, dtype in graph_inputs(model):
        lines.append(f"input {name}: {dtype}{list(shape)}")
    for tensor in model.graph.initializer:
        array = numpy_helper.to_array(tensor)
        shown = np.array2string(array.ravel(), threshold=6, precision=4) if array.size <= 6 else "..."
        lines.append(f"weight {tensor.name}: {array.dtype}{list(array.shape)} = {shown}")
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        text = f"{', '.join(node.output)} = {node.op_type}({', '.join(node.input)})"
        lines.append(text + (f" {attrs}" if attrs else ""))
    lines.append(f"outputs: {', '.join(o.name for o in model.graph.output)}")
    return lines


def op_edges(model: onnx.ModelProto) -> set[tuple[str, str]]:
    """(producer op, consumer op) pairs, and (op, "") for every op: the pattern of a graph."""
    producer = {name: node.op_type for node in model.graph.node for name in node.output}
    edges = {(node.op_type, "") for node in model.graph.node}
    edges |= {(producer[name], node.op_type) for node in model.graph.node for name in node.input if name in producer}
    return edges


def case_name(model: onnx.ModelProto, outcome: Outcome) -> str:
    ops = []
    for node in model.graph.node:
        op = node.op_type.lower()
        if not ops or ops[-1] != op:
            ops.append(op)
    parts = [outcome.kind] + [v for v in outcome.variants if v] + ops
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts))[:72].strip("-")


@dataclass
class Found:
    """A minimised failure: its model, outcome and where it was written."""

    model: onnx.ModelProto
    outcome: Outcome
    path: str | None = None

    def matches(self, model: onnx.ModelProto, outcome: Outcome) -> bool:
        return outcome.signature == self.outcome.signature and op_edges(self.model) <= op_edges(model)


def write_case(directory: str, model: onnx.ModelProto, input_seed: int, outcome: Outcome, origin: str) -> str:
    """``<directory>/<name>.onnx`` and its sidecar ``<name>.json``; returns the .onnx path."""
    os.makedirs(directory, exist_ok=True)
    base = case_name(model, outcome)
    name, number = base, 1
    while os.path.exists(os.path.join(directory, name + ".onnx")):
        number += 1
        name = f"{base}-{number}"
    path = os.path.join(directory, name + ".onnx")
    onnx.save(model, path)
    sidecar = {"input_seed": input_seed, "outcome": outcome.kind, "variants": list(outcome.variants),
               "key": outcome.key, "detail": outcome.detail, "found_by": origin, "graph": describe_graph(model)}
    with open(os.path.join(directory, name + ".json"), "w") as handle:
        json.dump(sidecar, handle, indent=2)
        handle.write("\n")
    return path


@dataclass
class RegressionCase:
    path: str
    model: onnx.ModelProto
    input_seed: int
    sidecar: dict


def load_cases(directory: str) -> list[RegressionCase]:
    cases = []
    for path in sorted(Path(directory).glob("*.onnx")):
        with open(path.with_suffix(".json")) as handle:
            sidecar = json.load(handle)
        cases.append(RegressionCase(str(path), onnx.load(str(path)), int(sidecar["input_seed"]), sidecar))
    return cases


def known_failures(directory: str | None) -> list[Found]:
    """The cases already in ``directory``, as minimised failures new ones are compared with."""
    if not directory or not os.path.isdir(directory):
        return []
    return [Found(case.model, Outcome(case.sidecar["outcome"], tuple(case.sidecar["variants"]),
                                      case.sidecar.get("key", ""), case.sidecar.get("detail", "")), case.path)
            for case in load_cases(directory)]


# --------------------------------------------------------------------------------------
# The run and its report
# --------------------------------------------------------------------------------------
@dataclass
class Report:
    """The counts of a run by outcome, the refusals by reason, and every failure (minimised or a duplicate)."""

    seed: int
    counts: Counter = field(default_factory=Counter)
    clear_errors: Counter = field(default_factory=Counter)
    invalid: list[str] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def tried(self) -> int:
        return sum(self.counts.values())

    def failing(self) -> int:
        return sum(self.counts[k] for k in FAILURES)

    def to_json(self) -> dict:
        return {"seed": self.seed, "graphs": self.tried, "seconds": round(self.seconds, 1),
                **{kind: self.counts[kind] for kind in ("match", "clear-error", "invalid") + FAILURES},
                "clear_errors": dict(self.clear_errors.most_common()), "invalid_graphs": self.invalid,
                "failures": self.failures}

    def text(self) -> str:
        lines = [f"fuzzed {self.tried} graphs in {self.seconds:.0f} s (seed {self.seed})"]
        for kind in ("match", "clear-error", "invalid") + FAILURES:
            lines.append(f"  {kind:<12} {self.counts[kind]}")
        for reason, count in self.clear_errors.most_common(8):
            lines.append(f"    {count:>5}  {reason}")
        duplicates: dict[str, list[int]] = {}
        for failure in self.failures:
            if failure.get("duplicate_of"):
                duplicates.setdefault(failure["duplicate_of"], []).append(failure["index"])
                continue
            lines.append(f"- {failure['graph']}: {failure['outcome']}")
            lines.append(f"    replay: python -m fusecc.tools.fuzz --seed {self.seed} --replay {failure['index']}")
            if failure.get("case"):
                lines.append(f"    minimal case: {failure['case']}")
            if failure.get("minimal"):
                lines += [f"      {line}" for line in failure["minimal"]]
                lines.append(f"      {failure['minimal_outcome']}")
        for case, indices in duplicates.items():
            shown = ", ".join(map(str, indices[:8])) + (", ..." if len(indices) > 8 else "")
            lines.append(f"- {len(indices)} graph(s) failing like {case}: {shown}")
        return "\n".join(lines)


def clear_error_reason(detail: str) -> str:
    """A refusal's message without node names, so equal reasons count together."""
    return re.sub(r"'[^']*'", "'…'", re.sub(r"^[^(]*\(", "(", detail, count=1))[:120]


def fuzz(seed: int, *, minutes: float | None = None, count: int | None = None, out_dir: str | None = None,
         cases_dir: str | None = None, minimize_failures: bool = True, minimize_seconds: float = 120.0,
         timeout: float = 60.0, faults: dict[int, str] | None = None, log=None) -> Report:
    """Generate and check graphs #0, #1, ... of ``seed`` for ``minutes`` or ``count`` graphs.

    New failures are written to ``out_dir``; a failure like a case of ``cases_dir`` (default
    ``out_dir``) counts as its duplicate. ``faults`` maps graph numbers to a fault the worker
    injects for them ("abort", "hang"): the tests of the crash and hang handling use it.
    """
    report = Report(seed)
    found = known_failures(cases_dir or out_dir)
    deadline = time.monotonic() + 60 * minutes if minutes is not None else math.inf
    start = time.monotonic()
    with Worker(timeout) as worker:
        index = 0
        while (count is None or index < count) and time.monotonic() < deadline:
            case = generate(seed, index)
            outcome = evaluate(case.model, case.input_seed, worker, (faults or {}).get(index))
            report.counts[outcome.kind] += 1
            if outcome.kind == "clear-error":
                report.clear_errors[clear_error_reason(outcome.detail)] += 1
            elif outcome.kind == "invalid":
                report.invalid.append(f"graph {index}: {outcome.detail}")
            elif outcome.failed:
                record_failure(report, found, case, index, outcome, worker, out_dir, minimize_failures,
                               minimize_seconds, log)
            index += 1
    report.seconds = time.monotonic() - start
    return report


def record_failure(report: Report, found: list[Found], case: Case, index: int, outcome: Outcome, worker: Worker,
                   out_dir: str | None, minimize_failures: bool, minimize_seconds: float, log) -> None:
    entry = {"index": index, "graph": case.origin, "theme": case.theme, "outcome": outcome.describe()}
    report.failures.append(entry)
    same = next((f for f in found if f.matches(case.model, outcome)), None)
    if same is not None:
        entry["duplicate_of"] = same.path or "an earlier failure"
        return
    if log:
        log(f"graph {index}: {outcome.describe()}")
    model = case.model
    if minimize_failures:
        model = minimize(case.model, lambda m: evaluate(m, case.input_seed, worker).signature == outcome.signature,
                         minimize_seconds)
        outcome = evaluate(model, case.input_seed, worker)
        entry["minimal"] = describe_graph(model)
        entry["minimal_outcome"] = outcome.describe()
        if log:
            log("  minimised to:\n    " + "\n    ".join(entry["minimal"]) + f"\n  {outcome.describe()}")
    path = write_case(out_dir, model, case.input_seed, outcome, case.origin) if out_dir else None
    entry["case"] = path
    found.append(Found(model, outcome, path))


def replay(seed: int, index: int, timeout: float) -> str:
    case = generate(seed, index)
    with Worker(timeout) as worker:
        outcome = evaluate(case.model, case.input_seed, worker)
    lines = [f"{case.origin} (theme {case.theme}, opset {case.model.opset_import[0].version}, "
             f"input seed {case.input_seed})"]
    lines += ["  " + line for line in describe_graph(case.model)]
    lines.append(outcome.describe())
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, help="how long to fuzz")
    parser.add_argument("--count", type=int, help="how many graphs to try (with or instead of --minutes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("tests", "fuzz_cases"),
                        help="where minimised failures are written (default: tests/fuzz_cases)")
    parser.add_argument("--no-minimize", action="store_true", help="report failures without minimising them")
    parser.add_argument("--minimize-seconds", type=float, default=120.0, help="time budget per minimisation")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds a run of fusecc on a graph may take before it counts as a hang")
    parser.add_argument("--replay", type=int, metavar="INDEX", help="run graph INDEX of --seed and print it")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.replay is not None:
        print(replay(args.seed, args.replay, args.timeout))
        return 0
    if args.minutes is None and args.count is None:
        parser.error("give --minutes or --count")
    log = None if args.json else lambda text: print(text, file=sys.stderr, flush=True)
    report = fuzz(args.seed, minutes=args.minutes, count=args.count, out_dir=args.out,
                  minimize_failures=not args.no_minimize, minimize_seconds=args.minimize_seconds,
                  timeout=args.timeout, log=log)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.text())
    return 1 if report.failing() else 0


if __name__ == "__main__":
    sys.exit(main())
