"""Translates a loop-level module into LLVM IR with ``llvmlite.ir``.

Kernels become ``void name(ptr bufs, ptr dims, i64 begin, i64 end)``: the
buffers arrive as an array of pointers, ``dims`` carries run-time sizes for
kernels with symbolic extents, and [begin, end) is the slice of the outermost
(parallel) loop to run, so a runtime can split a kernel across threads. Its
code is in ``name.body``, inlined into it, which takes the buffers as
``noalias`` pointers. The graph becomes ``void fusecc_main(ptr inputs, ptr
outputs, ptr weights, ptr workspace, ptr threading)``, which launches the
kernels in order. Weights are laid out in one blob (64-byte aligned) that the
caller passes in; ``weights_blob`` returns it. A kernel whose range has more
than one step is launched through ``fusecc_parallel_for(threading, kernel,
bufs, extent, work)`` (``runtime/threadpool.c``: ``threading`` is a
``fusecc_threading`` or NULL, ``work`` the launch's estimated work per step),
which splits the range across threads where the work pays for it.

Kernels have internal linkage (hidden, where ``parts`` compiles them apart
from the entry): no symbol of one model can stand in for another's when
several share a process, and calls to them never go through a PLT. A kernel
whose code is the same as an earlier one's (a network's repeated blocks) is
emitted once: its launches call the earlier function, so LLVM optimises and
compiles each distinct kernel once. ``fusecc_main`` is the one external
symbol (the JIT looks it up; a shared library hides it behind its C API, see
``aot``).

``emit_llvm(module, profile=True)`` builds the entry instrumented for
``fusecc profile``: it reads the monotonic clock before the first kernel and
after every kernel launch and copy (``timed_steps``), and stores the
nanoseconds in the global array ``fusecc_profile`` (one more entry than there
are steps), which the JIT's caller reads after a run. Normal builds carry none
of it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from fusecc.dialects.kernel import AllocOp, CopyOp, LaunchOp, ViewOp, WeightOp
from fusecc.host_memory import zeroed_array
from fusecc.ir.core import FuncOp, IRError, Module, Operation, ReturnOp, Value
from fusecc.ir.types import DType, MemRefType, VectorType

from .parts import BODY_SUFFIX
from .pool import PARALLEL_FOR

ENTRY = "fusecc_main"
#: the array of clock readings in a profiling build (see ``timed_steps``)
PROFILE_TIMES = "fusecc_profile"
ALIGN = 64

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
PTR = ir.PointerType()
F16, F32, F64 = ir.HalfType(), ir.FloatType(), ir.DoubleType()

_SCALAR = {DType.F16: F16, DType.F32: F32, DType.F64: F64, DType.I1: I1, DType.I8: I8, DType.U8: I8,
           DType.I16: ir.IntType(16), DType.U16: ir.IntType(16), DType.I32: I32, DType.U32: I32,
           DType.I64: I64, DType.U64: I64, DType.INDEX: I64}

#: math ops with an LLVM intrinsic
_INTRINSIC = {"exp": "llvm.exp", "exp2": "llvm.exp2", "log": "llvm.log", "sqrt": "llvm.sqrt", "sin": "llvm.sin",
              "cos": "llvm.cos", "tan": "llvm.tan", "asin": "llvm.asin", "acos": "llvm.acos", "atan": "llvm.atan",
              "sinh": "llvm.sinh", "cosh": "llvm.cosh", "tanh": "llvm.tanh", "floor": "llvm.floor",
              "ceil": "llvm.ceil", "roundeven": "llvm.roundeven", "absf": "llvm.fabs"}
#: math ops called in libm (name for f64; ``f`` suffix for f32)
_LIBM = {"erf": "erf", "log1p": "log1p", "expm1": "expm1", "asinh": "asinh", "acosh": "acosh", "atanh": "atanh"}


def scalar_type(dtype: DType) -> ir.Type:
    return _SCALAR[dtype]


def value_type(t) -> ir.Type:
    if isinstance(t, VectorType):
        return ir.VectorType(_SCALAR[t.dtype], t.shape[0])
    return _SCALAR[t.dtype]


def memory_type(dtype: DType) -> ir.Type:
    """How an element is stored: bools take a byte, as in numpy."""
    return I8 if dtype is DType.I1 else _SCALAR[dtype]


@dataclass
class WeightLayout:
    offsets: dict[int, int]
    size: int
    arrays: list[tuple[int, np.ndarray]]

    def blob(self) -> memoryview:
        """The weights' bytes at their offsets (zeros between them), each array copied once."""
        data = zeroed_array((self.size,), np.uint8)
        for offset, array in self.arrays:
            raw = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
            data[offset:offset + raw.size] = raw
        return memoryview(data)


def layout_weights(main: FuncOp) -> WeightLayout:
    """Offsets of every ``kernel.weight`` in the blob; identical resources share storage."""
    offsets, arrays, by_resource, size = {}, [], {}, 0
    for op in main.body.ops:
        if not isinstance(op, WeightOp):
            continue
        attr = op.attr("value")
        key = attr.resource
        if key is not None and key in by_resource:
            offsets[id(op)] = by_resource[key]
            continue
        array = attr.value
        offsets[id(op)] = size
        if key is not None:
            by_resource[key] = size
        arrays.append((size, array))
        size += (max(array.nbytes, 1) + ALIGN - 1) // ALIGN * ALIGN
    return WeightLayout(offsets, size, arrays)


class _FunctionEmitter:
    def __init__(self, module: ir.Module, func: ir.Function):
        self.module = module
        self.func = func
        self.entry = func.append_basic_block("entry")
        self.builder = ir.IRBuilder(self.entry)
        self.values: dict[int, ir.Value] = {}

    def alloca(self, ty: ir.Type, count: int) -> ir.Value:
        with self.builder.goto_entry_block():
            if self.builder.block.instructions:
                self.builder.position_before(self.builder.block.instructions[0])
            return self.builder.alloca(ty, count)

    def intrinsic(self, name: str, ty: ir.Type, arity: int = 1) -> ir.Function:
        """The overload of intrinsic ``name`` for a float type or a vector of one (``llvm.maximum.v8f32``)."""
        if isinstance(ty, ir.VectorType):
            suffix = f"v{ty.count}{ty.element.intrinsic_name}"
        else:
            suffix = {F32: "f32", F64: "f64", F16: "f16"}[ty]
        full = f"{name}.{suffix}"
        existing = self.module.globals.get(full)
        if existing is not None:
            return existing
        return ir.Function(self.module, ir.FunctionType(ty, [ty] * arity), name=full)

    def libm(self, name: str, ty: ir.Type) -> ir.Function:
        if ty == F16:
            raise IRError(f"math.{name} is not available for f16")
        full = name + ("f" if ty == F32 else "")
        existing = self.module.globals.get(full)
        if existing is not None:
            return existing
        return ir.Function(self.module, ir.FunctionType(ty, [ty]), name=full)

    def __getitem__(self, value: Value) -> ir.Value:
        return self.values[id(value)]

    def block(self, ops) -> None:
        for op in ops:
            self.op(op)

    def op(self, op: Operation) -> None:
        handler = _HANDLERS.get(op.name)
        if handler is not None:
            handler(self, op)
            return
        prefix, _, short = op.name.partition(".")
        if prefix == "math" and short in _INTRINSIC:
            x = self[op.operands[0]]
            self.set(op, self.builder.call(self.intrinsic(_INTRINSIC[short], x.type), [x]))
        elif prefix == "math" and short in _LIBM:
            x = self[op.operands[0]]
            self.set(op, self.builder.call(self.libm(_LIBM[short], x.type), [x]))
        elif op.name in _FAST_MATH:
            a, b = self[op.operands[0]], self[op.operands[1]]
            flags = () if op.attr("strict", False) else FAST
            self.set(op, getattr(self.builder, _FAST_MATH[op.name])(a, b, flags=flags))
        elif op.name in _BINARY:
            a, b = self[op.operands[0]], self[op.operands[1]]
            self.set(op, _BINARY[op.name](self, a, b))
        else:
            raise IRError(f"{op.describe()}: no LLVM translation for this op")

    def set(self, op: Operation, value: ir.Value) -> None:
        self.values[id(op.result)] = value


def _for(fe: _FunctionEmitter, op: Operation) -> None:
    b = fe.builder
    lo, hi = fe[op.operands[0]], fe[op.operands[1]]
    pre = b.block
    header = fe.func.append_basic_block("loop.header")
    body = fe.func.append_basic_block("loop.body")
    exit_block = fe.func.append_basic_block("loop.exit")
    b.branch(header)
    b.position_at_end(header)
    iv = b.phi(I64, name="i")
    iv.add_incoming(lo, pre)
    b.cbranch(b.icmp_signed("<", iv, hi), body, exit_block)
    b.position_at_end(body)
    fe.values[id(op.body.args[0])] = iv
    fe.block(op.body.ops)
    step = b.add(iv, ir.Constant(I64, op.attr("step", 1)), flags=["nsw"])
    iv.add_incoming(step, b.block)
    latch = b.branch(header)
    hints = []
    if op.attr("interleave", 0):
        hints.append(fe.module.add_metadata([ir.MetaDataString(fe.module, "llvm.loop.interleave.count"),
                                             ir.Constant(I32, op.attr("interleave"))]))
    # a parallel loop's range is split among threads: vectorized or unrolled, it would run the steps at a
    # split's edge in its remainder, with other code (sums reassociated otherwise: other bits), and results
    # would depend on the split; so every step of it runs the same code
    parallel = op.attr("parallel", False)
    if not op.attr("vectorize", True) or parallel:
        hints.append(fe.module.add_metadata([ir.MetaDataString(fe.module, "llvm.loop.vectorize.enable"),
                                             ir.Constant(I1, 0)]))
    if parallel:
        hints.append(fe.module.add_metadata([ir.MetaDataString(fe.module, "llvm.loop.unroll.disable")]))
    if hints:
        latch.set_metadata("llvm.loop", _LoopID(fe.module, hints))
    b.position_at_end(exit_block)


class _LoopID(ir.values.MDValue):
    """A loop's ``distinct`` self-referential metadata node, which carries its hints to LLVM."""

    def __init__(self, module: ir.Module, hints: list):
        super().__init__(module, [], name=str(len(module.metadata)))
        self.operands = (self, *hints)

    def descr(self, buf):
        buf += ("distinct ",)
        super().descr(buf)

    __eq__ = object.__eq__
    __hash__ = object.__hash__


def _element_ptr(fe: _FunctionEmitter, buffer: Value, index: Value) -> ir.Value:
    ty = memory_type(buffer.type.dtype)
    return fe.builder.gep(fe[buffer], [fe[index]], inbounds=True, source_etype=ty)


def _load(fe, op):
    dtype = op.operands[0].type.dtype
    value = fe.builder.load(_element_ptr(fe, op.operands[0], op.operands[1]), typ=memory_type(dtype))
    if dtype is DType.I1:
        value = fe.builder.icmp_unsigned("!=", value, ir.Constant(I8, 0))
    fe.set(op, value)


def _store(fe, op):
    value, buffer, index = op.operands
    llvm_value = fe[value]
    if buffer.type.dtype is DType.I1:
        llvm_value = fe.builder.zext(llvm_value, I8)
    fe.builder.store(llvm_value, _element_ptr(fe, buffer, index))


def _alloca(fe, op):
    t = op.result.type
    slot = fe.alloca(memory_type(t.dtype), t.num_elements)
    slot.align = 64 if t.num_elements > 1 else None
    slot.type = PTR  # an opaque pointer, like every other buffer (vectors are stored through it too)
    fe.set(op, slot)


def _constant(fe, op):
    dtype = op.result.type.dtype
    value = op.attr("value")
    if dtype.is_float:
        fe.set(op, ir.Constant(scalar_type(dtype), float(value)))
    else:
        bits = dtype.bits
        fe.set(op, ir.Constant(scalar_type(dtype), int(value) & ((1 << bits) - 1)))


def _cmp(fe, op):
    a, b = fe[op.operands[0]], fe[op.operands[1]]
    pred = op.attr("predicate")
    builder = fe.builder
    if op.name == "arith.cmpf":
        symbols = {"oeq": "==", "one": "!=", "olt": "<", "ole": "<=", "ogt": ">", "oge": ">="}
        if pred in symbols:
            fe.set(op, builder.fcmp_ordered(symbols[pred], a, b))
        elif pred == "une":
            fe.set(op, builder.fcmp_unordered("!=", a, b))
        else:
            fe.set(op, builder.fcmp_unordered("uno", a, b) if pred == "uno" else builder.fcmp_ordered("ord", a, b))
        return
    symbols = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
    if pred in ("eq", "ne"):
        fe.set(op, builder.icmp_signed(symbols[pred], a, b))
    elif pred.startswith("s"):
        fe.set(op, builder.icmp_signed(symbols[pred[1:]], a, b))
    else:
        fe.set(op, builder.icmp_unsigned(symbols[pred[1:]], a, b))


def _select(fe, op):
    c, a, b = (fe[v] for v in op.operands)
    fe.set(op, fe.builder.select(c, a, b))


def _cast(fe, op):
    src, dst = op.operands[0].type.dtype, op.result.type.dtype
    x = fe[op.operands[0]]
    b = fe.builder
    to = scalar_type(dst)
    if src is dst or (scalar_type(src) == to and src.is_signed == dst.is_signed):
        result = x if scalar_type(src) == to else b.bitcast(x, to)
    elif dst is DType.I1:
        result = b.fcmp_unordered("!=", x, ir.Constant(x.type, 0.0)) if src.is_float else \
            b.icmp_unsigned("!=", x, ir.Constant(x.type, 0))
    elif src.is_float and dst.is_float:
        result = b.fpext(x, to) if dst.bits > src.bits else b.fptrunc(x, to)
    elif src.is_float:
        result = b.fptosi(x, to) if dst.is_signed else b.fptoui(x, to)
    elif dst.is_float:
        result = b.sitofp(x, to) if src.is_signed and src is not DType.I1 else b.uitofp(x, to)
    elif dst.bits > src.bits:
        result = b.sext(x, to) if src.is_signed and src is not DType.I1 else b.zext(x, to)
    elif dst.bits < src.bits:
        result = b.trunc(x, to)
    else:
        result = x
    fe.set(op, result)


def _powf(fe, a, b):
    return fe.builder.call(fe.intrinsic("llvm.pow", a.type, 2), [a, b])


def _atan2(fe, a, b):
    return fe.builder.call(fe.intrinsic("llvm.atan2", a.type, 2), [a, b])


def _smax(fe, a, b):
    return fe.builder.select(fe.builder.icmp_signed(">", a, b), a, b)


def _smin(fe, a, b):
    return fe.builder.select(fe.builder.icmp_signed("<", a, b), a, b)


def _umax(fe, a, b):
    return fe.builder.select(fe.builder.icmp_unsigned(">", a, b), a, b)


def _umin(fe, a, b):
    return fe.builder.select(fe.builder.icmp_unsigned("<", a, b), a, b)


def _fmax(fe, a, b):
    """NaN-propagating maximum, as numpy and ONNX define Max.

    (``llvm.maxnum`` reductions without fast-math flags also trip an
    assertion in LLVM 22's loop vectorizer for some trip counts;
    ``llvm.maximum`` does not.)
    """
    return _bounded(fe, a, b, "llvm.maxnum") or fe.builder.call(fe.intrinsic("llvm.maximum", a.type, 2), [a, b])


def _fmin(fe, a, b):
    return _bounded(fe, a, b, "llvm.minnum") or fe.builder.call(fe.intrinsic("llvm.minimum", a.type, 2), [a, b])


def _bounded(fe, a, b, number_intrinsic: str):
    """A NaN-propagating maximum or minimum of a value and a constant that is not NaN (a ReLU, a clip bound) as
    ``x`` ordered ? ``number_intrinsic``(x, bound) : NaN, or None for other operands.

    ``llvm.maximum(x, 0)`` expands to ``select(isnan(x), x, max(x, 0))``; where ``x`` was loaded from the
    address the result is stored to (an epilogue applied in place to a GEMM's output), the backend turns
    that store into a masked store of only the non-NaN lanes, ``vmaskmovps``, which AMD cores run about ten
    times slower than a plain store (a pointwise conv's ReLU took longer than the conv). Selecting a
    constant NaN instead never selects ``x`` itself.
    """
    bound, x = (b, a) if _is_number_constant(b) else (a, b) if _is_number_constant(a) else (None, None)
    if bound is None:
        return None
    number = fe.builder.call(fe.intrinsic(number_intrinsic, x.type, 2), [x, bound], fastmath=("nnan", "nsz"))
    return fe.builder.select(fe.builder.fcmp_ordered("ord", x, x), number, ir.Constant(x.type, float("nan")))


def _is_number_constant(value) -> bool:
    return isinstance(value, ir.Constant) and isinstance(value.constant, float) and value.constant == value.constant


def _fmax_number(fe, a, b):
    """The larger operand, for a maximum whose consumer does not care which NaN wins: one ``vmaxps``.

    Softmax's shift is one: a NaN in the row makes every output NaN whatever
    the maximum is. (``nsz`` as well as ``nnan``: LLVM 22's loop vectorizer
    asserts on ``maxnum`` reductions without both.)
    """
    return fe.builder.call(fe.intrinsic("llvm.maxnum", a.type, 2), [a, b], fastmath=("nnan", "nsz"))


#: reassociation lets LLVM vectorize float reductions; NaN and infinity semantics are kept, and division
#: stays exact (rules multiply by a hoisted reciprocal where one is meant)
FAST = ("reassoc", "nsz", "contract")
#: the float ops that take ``FAST`` unless marked ``strict``
_FAST_MATH = {"arith.addf": "fadd", "arith.subf": "fsub", "arith.mulf": "fmul"}

_BINARY = {
    "arith.divf": lambda fe, a, b: fe.builder.fdiv(a, b, flags=("nsz",)),
    "arith.remf": lambda fe, a, b: fe.builder.frem(a, b), "arith.maxf": _fmax, "arith.minf": _fmin,
    "arith.maxnumf": _fmax_number,
    "math.powf": _powf, "math.atan2": _atan2,
    "arith.addi": lambda fe, a, b: fe.builder.add(a, b), "arith.subi": lambda fe, a, b: fe.builder.sub(a, b),
    "arith.muli": lambda fe, a, b: fe.builder.mul(a, b), "arith.divsi": lambda fe, a, b: fe.builder.sdiv(a, b),
    "arith.divui": lambda fe, a, b: fe.builder.udiv(a, b), "arith.remsi": lambda fe, a, b: fe.builder.srem(a, b),
    "arith.remui": lambda fe, a, b: fe.builder.urem(a, b), "arith.maxsi": _smax, "arith.minsi": _smin,
    "arith.maxui": _umax, "arith.minui": _umin,
    "arith.andi": lambda fe, a, b: fe.builder.and_(a, b), "arith.ori": lambda fe, a, b: fe.builder.or_(a, b),
    "arith.xori": lambda fe, a, b: fe.builder.xor(a, b), "arith.shli": lambda fe, a, b: fe.builder.shl(a, b),
    "arith.shrsi": lambda fe, a, b: fe.builder.ashr(a, b), "arith.shrui": lambda fe, a, b: fe.builder.lshr(a, b),
}

def _lane_mask(vector_type: ir.VectorType, lanes: int) -> ir.Constant:
    return ir.Constant(ir.VectorType(I1, vector_type.count), [i < lanes for i in range(vector_type.count)])


def _masked(fe, name: str, vector_type: ir.VectorType, return_type, arg_types) -> ir.Function:
    full = f"llvm.masked.{name}.v{vector_type.count}{vector_type.element.intrinsic_name}.p0"
    return fe.module.globals.get(full) or ir.Function(fe.module, ir.FunctionType(return_type, arg_types), name=full)


def _vector_load(fe, op):
    ptr = _element_ptr(fe, op.operands[0], op.operands[1])
    vector_type = value_type(op.result.type)
    align = op.result.type.dtype.itemsize
    lanes = op.attr("lanes", 0)
    stride = op.attr("stride", 1)
    if stride > 1:
        # the span from the first lane's element to the last's, as one masked load (never past the last),
        # then every stride-th of its lanes
        count = vector_type.count
        span = ((lanes or count) - 1) * stride + 1
        wide = ir.VectorType(vector_type.element, count * stride)
        fn = _masked(fe, "load", wide, wide, [PTR, I32, ir.VectorType(I1, wide.count), wide])
        loaded = fe.builder.call(fn, [ptr, ir.Constant(I32, align), _lane_mask(wide, span), ir.Constant(wide, None)])
        picked = [i * stride for i in range(count)]
        fe.set(op, fe.builder.shuffle_vector(loaded, ir.Constant(wide, ir.Undefined),
                                             ir.Constant(ir.VectorType(I32, count), picked)))
    elif lanes and lanes < vector_type.count:
        fn = _masked(fe, "load", vector_type, vector_type, [PTR, I32, ir.VectorType(I1, vector_type.count),
                                                             vector_type])
        fe.set(op, fe.builder.call(fn, [ptr, ir.Constant(I32, align), _lane_mask(vector_type, lanes),
                                        ir.Constant(vector_type, None)]))
    else:
        fe.set(op, fe.builder.load(ptr, typ=vector_type, align=align))


def _vector_store(fe, op):
    value, buffer, index = op.operands
    ptr = _element_ptr(fe, buffer, index)
    align = buffer.type.dtype.itemsize
    vector_type = value_type(value.type)
    lanes = op.attr("lanes", 0)
    if lanes and lanes < vector_type.count:
        fn = _masked(fe, "store", vector_type, ir.VoidType(), [vector_type, PTR, I32,
                                                               ir.VectorType(I1, vector_type.count)])
        fe.builder.call(fn, [fe[value], ptr, ir.Constant(I32, align), _lane_mask(vector_type, lanes)])
    else:
        fe.builder.store(fe[value], ptr, align=align)


def _vector_broadcast(fe, op):
    vector_type = value_type(op.result.type)
    lanes = vector_type.count
    single = fe.builder.insert_element(ir.Constant(vector_type, ir.Undefined), fe[op.operands[0]],
                                       ir.Constant(I32, 0))
    fe.set(op, fe.builder.shuffle_vector(single, ir.Constant(vector_type, ir.Undefined),
                                         ir.Constant(ir.VectorType(I32, lanes), [0] * lanes)))


def _vector_fma(fe, op):
    vector_type = value_type(op.result.type)
    name = f"llvm.fma.v{vector_type.count}{vector_type.element.intrinsic_name}"
    fn = fe.module.globals.get(name) or ir.Function(fe.module, ir.FunctionType(vector_type, [vector_type] * 3),
                                                    name=name)
    fe.set(op, fe.builder.call(fn, [fe[v] for v in op.operands]))


def _fma(fe, op):
    a = fe[op.operands[0]]
    fe.set(op, fe.builder.call(fe.intrinsic("llvm.fma", a.type, 3), [fe[v] for v in op.operands]))


_HANDLERS = {
    "math.fma": _fma,
    "vector.load": _vector_load, "vector.store": _vector_store, "vector.broadcast": _vector_broadcast,
    "vector.fma": _vector_fma, "vector.max": lambda fe, op: fe.set(op, _fmax(fe, *(fe[v] for v in op.operands))),
    "vector.add": lambda fe, op: fe.set(op, fe.builder.fadd(*(fe[v] for v in op.operands), flags=FAST)),
    "vector.div": lambda fe, op: fe.set(op, fe.builder.fdiv(*(fe[v] for v in op.operands), flags=("nsz",))),
    "loop.for": _for, "loop.load": _load, "loop.store": _store, "loop.alloca": _alloca,
    "arith.constant": _constant, "arith.cmpf": _cmp, "arith.cmpi": _cmp, "arith.select": _select,
    "arith.cast": _cast, "func.return": lambda fe, op: None,
    "arith.bitcast": lambda fe, op: fe.set(op, fe.builder.bitcast(fe[op.operands[0]],
                                                                 scalar_type(op.result.type.dtype))),
}


def _emit_kernel(module: ir.Module, func: FuncOp, exported: bool = False,
                 faulty: bool = False) -> tuple[ir.Function, ir.Function]:
    """``void name(ptr bufs, ptr dims, i64 begin, i64 end)``, which loads the buffers' pointers and calls the
    kernel's body: ``name.body(ptr noalias buf0, ..., i64 begin, i64 end)``, inlined into it. A kernel's
    buffers never overlap where it writes (``plan-buffers`` gives buffers live at once their own bytes, and
    in-place slices of a concat are disjoint), and ``noalias`` says so to LLVM, which may then keep loads of
    one buffer ahead of stores to another and vectorize epilogues over short rows. Returns the kernel and
    its body."""
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, PTR, I64, I64]), name=func.sym_name)
    if not exported:
        fn.linkage = "internal"
    fn.attributes.add("nounwind")
    # each kernel stays a function of its own, named in profiles and assembly, however small
    fn.attributes.add("noinline")
    bufs, _dims, begin, end = fn.args
    bufs.name, _dims.name, begin.name, end.name = "bufs", "dims", "begin", "end"
    buffer_args = [a for a in func.args if isinstance(a.type, MemRefType)]
    body = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR] * len(buffer_args) + [I64, I64]),
                       name=func.sym_name + BODY_SUFFIX)
    body.linkage = "internal"
    body.attributes.add("nounwind")
    body.attributes.add("alwaysinline")
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    pointers = []
    for position, arg in enumerate(buffer_args):
        slot = builder.gep(bufs, [ir.Constant(I64, position)], inbounds=True, source_etype=PTR)
        pointers.append(builder.load(slot, typ=PTR, name=f"buf{position}"))
        body.args[position].add_attribute("noalias")
        body.args[position].name = f"buf{position}"
    builder.call(body, [*pointers, begin, end])
    builder.ret_void()
    fe = _FunctionEmitter(module, body)
    for arg, pointer in zip(buffer_args, body.args):
        fe.values[id(arg)] = pointer
    index_args = [a for a in func.args if not isinstance(a.type, MemRefType)]
    fe.values[id(index_args[0])] = body.args[-2]
    fe.values[id(index_args[1])] = body.args[-1]
    body.args[-2].name, body.args[-1].name = "begin", "end"
    fe.block(func.body.ops)
    if faulty:
        _add_one_to_first_output(fe, func, body.args[-2])
    fe.builder.ret_void()
    return fn, body


def _add_one_to_first_output(fe: _FunctionEmitter, func: FuncOp, begin: ir.Value) -> None:
    """A fault on purpose (``FUSECC_INJECT_FAULT``): the run's chunk starting at 0 adds one to the first element
    of the kernel's first output, after computing it."""
    out = next(a for a in func.args if a.name_hint == "out0")
    b, dtype = fe.builder, out.type.dtype
    with b.if_then(b.icmp_signed("==", begin, ir.Constant(I64, 0))):
        element = scalar_type(dtype)
        old = b.load(fe.values[id(out)], typ=element)
        new = b.fadd(old, ir.Constant(element, 1.0)) if dtype.is_float else b.add(old, ir.Constant(element, 1))
        b.store(new, fe.values[id(out)])


#: the ops of ``@main`` that a profiling build times
_TIMED = ("kernel.launch", "kernel.copy")


def timed_steps(main: FuncOp) -> list[Operation]:
    """The ops of a lowered ``@main`` that a profiling build times, in order: kernel launches and copies.

    Reading ``i + 1`` of ``fusecc_profile`` is taken after step ``i`` and reading 0 before the first, so
    step ``i`` took ``times[i + 1] - times[i]`` nanoseconds and the steps add up to the whole entry."""
    return [op for op in main.body.ops if op.name in _TIMED]


class _Clock:
    """Stores ``clock_gettime(CLOCK_MONOTONIC)`` in nanoseconds into slot ``i`` of the global ``fusecc_profile``.

    The clock is Python's ``time.monotonic_ns()`` too (the vDSO serves it in some 20 ns, without a system call);
    calls to libc are opaque to LLVM, so it moves no kernel or copy across a reading."""

    def __init__(self, fe: _FunctionEmitter, slots: int):
        module = fe.module
        self.fe = fe
        self.times = ir.GlobalVariable(module, ir.ArrayType(I64, slots), name=PROFILE_TIMES)
        self.times.initializer = ir.Constant(self.times.value_type, None)
        self.times.align = ALIGN
        self.timespec_type = ir.LiteralStructType([I64, I64])  # struct timespec on LP64: tv_sec, tv_nsec
        self.clock_gettime = ir.Function(module, ir.FunctionType(I32, [I32, PTR]), name="clock_gettime")
        self.timespec = fe.alloca(self.timespec_type, 1)

    def read(self, slot: int) -> None:
        b, zero = self.fe.builder, ir.Constant(I32, 0)
        b.call(self.clock_gettime, [ir.Constant(I32, time.CLOCK_MONOTONIC), self.timespec])
        seconds = b.load(b.gep(self.timespec, [zero, zero], inbounds=True, source_etype=self.timespec_type), typ=I64)
        nanoseconds = b.load(b.gep(self.timespec, [zero, ir.Constant(I32, 1)], inbounds=True,
                                   source_etype=self.timespec_type), typ=I64)
        total = b.add(b.mul(seconds, ir.Constant(I64, 1_000_000_000)), nanoseconds)
        b.store(total, b.gep(self.times, [ir.Constant(I64, 0), ir.Constant(I64, slot)], inbounds=True))


def _emit_entry(module: ir.Module, main: FuncOp, weights: WeightLayout, kernels: dict[str, ir.Function],
                profile: bool = False) -> None:
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, PTR, PTR, PTR, PTR]), name=ENTRY)
    inputs, outputs, weight_base, workspace, threading = fn.args
    for arg, name in zip(fn.args, ("inputs", "outputs", "weights", "workspace", "threading")):
        arg.name = name
    fe = _FunctionEmitter(module, fn)
    b = fe.builder
    num_inputs = len(main.args) - len(main.attr("output_names"))
    for position, arg in enumerate(main.args):
        array, slot_index = (inputs, position) if position < num_inputs else (outputs, position - num_inputs)
        slot = b.gep(array, [ir.Constant(I64, slot_index)], inbounds=True, source_etype=PTR)
        fe.values[id(arg)] = b.load(slot, typ=PTR, name=arg.name_hint or "")
    null = ir.Constant(PTR, None)
    clock = _Clock(fe, len(timed_steps(main)) + 1) if profile else None
    steps = 0
    if clock:
        clock.read(steps)
    for op in main.body.ops:
        if isinstance(op, WeightOp):
            fe.set(op, b.gep(weight_base, [ir.Constant(I64, weights.offsets[id(op)])], inbounds=True,
                             source_etype=I8))
        elif isinstance(op, AllocOp):
            fe.set(op, b.gep(workspace, [ir.Constant(I64, op.attr("offset"))], inbounds=True, source_etype=I8))
        elif isinstance(op, ViewOp):
            offset = op.attr("offset", 0)
            base = fe[op.operands[0]]
            fe.set(op, b.gep(base, [ir.Constant(I64, offset)], inbounds=True, source_etype=I8) if offset else base)
        elif isinstance(op, LaunchOp):
            args = fe.alloca(PTR, len(op.operands))
            for position, value in enumerate(op.operands):
                b.store(fe[value], b.gep(args, [ir.Constant(I64, position)], inbounds=True, source_etype=PTR))
            kernel, extent = kernels[op.attr("callee")], op.attr("extent")
            if extent > 1:
                parallel_for = module.globals.get(PARALLEL_FOR) or ir.Function(
                    module, ir.FunctionType(ir.VoidType(), [PTR, PTR, PTR, I64, I64]), name=PARALLEL_FOR)
                b.call(parallel_for, [threading, kernel, args, ir.Constant(I64, extent),
                                      ir.Constant(I64, op.attr("work", 1))])
            else:
                b.call(kernel, [args, null, ir.Constant(I64, 0), ir.Constant(I64, extent)])
        elif isinstance(op, CopyOp):
            src, dst = op.operands
            memcpy = module.declare_intrinsic("llvm.memcpy", [PTR, PTR, I64])
            b.call(memcpy, [fe[dst], fe[src], ir.Constant(I64, src.type.nbytes), ir.Constant(I1, 0)])
        elif isinstance(op, ReturnOp):
            b.ret_void()
        else:
            raise IRError(f"{op.describe()}: unexpected in the lowered graph")
        if clock and op.name in _TIMED:
            steps += 1
            clock.read(steps)


def _code_of(body: ir.Function) -> str:
    """The LLVM IR of a kernel's body with its own name left out and each loop's ``distinct`` metadata node
    (``_LoopID``) written as the hints it holds: equal for kernels that compute the same."""
    hints = {f"!{loop.name}": " ".join(str(hint.get_reference()) for hint in loop.operands[1:])
             for block in body.blocks for instruction in block.instructions
             for loop in [instruction.metadata.get("llvm.loop")] if loop is not None}
    text = str(body).replace(f'@"{body.name}"(', "@kernel(", 1)
    return re.sub(r"!llvm\.loop (!\d+)", lambda m: f"!llvm.loop {{{hints[m.group(1)]}}}", text)


def emit_llvm(module: Module, name: str = "fusecc_model", profile: bool = False, exported_kernels: bool = False,
              fault: str | None = None) -> tuple[ir.Module, WeightLayout]:
    """The LLVM module for a lowered fusecc module, and the layout of its weights blob.

    ``profile`` instruments the entry with clock readings (see the module's docstring); such a build is for
    the JIT only (its one ``fusecc_profile`` array serves every run, so one thread at a time runs it).
    ``exported_kernels`` gives every kernel a function of its own under its name, external, for a caller
    that launches kernels one by one (``fusecc.check``). ``fault`` names a kernel that adds one to the first
    element of its first output (see ``_add_one_to_first_output``)."""
    llvm_module = ir.Module(name=name)
    main = module.main
    kernels, by_code = {}, {}
    for func in module.funcs:
        if func is not main:
            kernel, body = _emit_kernel(llvm_module, func, exported_kernels, func.sym_name == fault)
            same = kernel if exported_kernels else by_code.setdefault(_code_of(body), kernel)
            if same is not kernel:  # its launches call the same code under its first name
                del llvm_module.globals[kernel.name], llvm_module.globals[body.name]
            kernels[func.sym_name] = same
    weights = layout_weights(main)
    _emit_entry(llvm_module, main, weights, kernels, profile)
    return llvm_module, weights
