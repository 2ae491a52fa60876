"""Imports an ONNX model as a module of tensor dialect ops.

``import_model`` turns the ONNX graph into ``func @main``: graph inputs that are
not initializers become its arguments, graph outputs its results. Each node is
converted by the converter registered for its op type in ``onnx_ops``.

Opsets: a model may use any default-domain opset the installed onnx knows. Ops
change meaning only at their own versions, so each node is converted by the
``since_version`` of its op's schema in that opset (``NodeContext.version``);
an op version newer than ``REVIEWED_OPSET`` is rejected rather than given an
older meaning. Ops that ONNX defines by a function body (Attention, the losses,
...) are imported node by node from the body ONNX builds for the node.

Constants are tracked by value: initializers and ``Constant`` nodes become
``tensor.constant`` ops when an op uses them as an operand, while inputs that
the tensor dialect keeps as attributes (a Reshape's shape, Slice bounds, ...)
are read straight from them; when such an input is a graph input,
``NeedsConstantInput`` names it (``fusecc.backend`` then compiles the model for
the value fed). An op whose operands are all constants is
evaluated at import time with its numpy ``reference()`` and replaced by a
constant, so shape computations (Shape -> Gather -> Concat -> Reshape) resolve
to static attributes. Constants nobody uses in the end are dropped; those with
more than 16 elements are stored as named resources (``dense_resource<...>``).

Element types the IR has no dtype for (bfloat16, float8, float4, int4, int2) are
stored as their bits and converted by ops; see ``formats``.

Every error names the node it is about:
``ONNX node 'conv1' (Conv, opset 13): <what is wrong>``.
"""

from __future__ import annotations

import os
import re

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import AttributeProto, TensorProto, numpy_helper

from fusecc.dialects import tensor as T
from fusecc.ir import DenseAttr, DType, FuncOp, Module, OpResult, ReturnOp, TensorType, Value, VerifyError
from fusecc.ir.rewriter import Rewriter
from fusecc.passes.fold_constants import MAX_FOLDED_ELEMENTS

from . import formats
from .formats import FORMATS, Format
from .onnx_ops import CONVERTERS, FORMAT_AWARE, UNSUPPORTED, dense

#: the oldest default-domain opset whose op definitions fusecc implements; a model with an older
#: opset is accepted when each of its ops is still defined as in this one
MIN_OPSET = 7
#: every converter has been checked against the versions of its op up to this opset: a node whose
#: op has a newer version (a newer onnx package) is rejected rather than given the old semantics
REVIEWED_OPSET = 28
#: constants with more elements than this are stored as resources, not printed inline
INLINE_ELEMENTS = 16

ONNX_DTYPES = {
    TensorProto.FLOAT: DType.F32, TensorProto.DOUBLE: DType.F64, TensorProto.FLOAT16: DType.F16,
    TensorProto.INT8: DType.I8, TensorProto.INT16: DType.I16, TensorProto.INT32: DType.I32,
    TensorProto.INT64: DType.I64, TensorProto.UINT8: DType.U8, TensorProto.UINT16: DType.U16,
    TensorProto.UINT32: DType.U32, TensorProto.UINT64: DType.U64, TensorProto.BOOL: DType.I1,
}


class FrontendError(Exception):
    """An ONNX model (or a node of it) that fusecc cannot import."""


class NeedsConstantInput(FrontendError):
    """An input that fusecc needs as a constant (axes, pads, shape, ...) is a graph input.

    ``input_name`` names the graph input. A caller that knows the value it will
    feed (``fusecc.backend``) can make it an initializer and import again.
    """

    def __init__(self, message: str, input_name: str):
        super().__init__(message)
        self.input_name = input_name


def supported_ops() -> list[str]:
    """The ONNX op types (default domain) the importer converts, sorted."""
    return sorted(CONVERTERS)


def sanitize_name(name: str) -> str:
    """An ONNX name as an IR name: ``[A-Za-z0-9_.]`` only, not starting with a digit or dot."""
    text = re.sub(r"[^A-Za-z0-9_.]", "_", name)
    if not text or not (text[0].isalpha() or text[0] == "_"):
        text = "v" + text
    return text


def dtype_name(code: int) -> str:
    try:
        return TensorProto.DataType.Name(code)
    except ValueError:
        return str(code)


def import_model(model, input_shapes: dict[str, tuple] | None = None) -> Module:
    """Import ``model`` (a ``ModelProto``, a file path or the serialized bytes).

    ``input_shapes`` maps graph input names to shapes that replace the declared
    ones (use it to give symbolic dimensions a size).
    """
    return _Importer(load_model(model), input_shapes or {}).run()


def load_model(model) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    path = None
    if isinstance(model, (bytes, bytearray, memoryview)):
        data, source = bytes(model), "<bytes>"
    elif isinstance(model, (str, os.PathLike)):
        path = source = os.fspath(model)
        try:
            with open(path, "rb") as file:
                data = file.read()
        except OSError as error:
            raise FrontendError(f"cannot read ONNX model '{source}': {error.strerror or error}") from None
    else:
        raise TypeError(f"expected an onnx.ModelProto, a path or bytes, got {type(model).__name__}")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except DecodeError as error:
        raise FrontendError(f"cannot read ONNX model '{source}': {error}") from None
    if not proto.HasField("graph"):
        raise FrontendError(f"cannot read ONNX model '{source}': it has no graph (is it an ONNX file?)")
    if path is not None and any(t.data_location == TensorProto.EXTERNAL for t in proto.graph.initializer):
        from onnx.external_data_helper import load_external_data_for_model
        try:
            load_external_data_for_model(proto, os.path.dirname(os.path.abspath(path)))
        except (OSError, ValueError, onnx.checker.ValidationError) as error:
            raise FrontendError(f"cannot read ONNX model '{source}': its external data: {error}") from None
    return proto


class _Pending:
    """An initializer not yet materialized as a ``tensor.constant`` (only operands need one)."""

    __slots__ = ("array", "loc", "format")

    def __init__(self, array: np.ndarray, loc: str, fmt: Format | None = None):
        self.array = array
        self.loc = loc
        self.format = fmt


class NodeContext:
    """What a converter sees of one ONNX node; see ``onnx_ops``."""

    def __init__(self, importer: "_Importer", node: onnx.NodeProto, index: int, opset: int, version: int,
                 label: str, loc: str | None = None):
        self.importer = importer
        self.node = node
        self.index = index
        self.op_type = node.op_type
        #: the default-domain opset of the model (or of the function body the node belongs to)
        self.opset = opset
        #: the version of the op's definition in that opset (``since_version`` of its schema): what
        #: converters compare against, since ops change semantics only at these versions
        self.version = version
        self.loc = loc or node.name or f"{node.op_type}#{index}"
        self.label = label
        self.attrs = {a.name: importer.attribute(self, a) for a in node.attribute}
        #: output index -> format, for outputs a converter produces as bits of a format
        self.result_formats: dict[int, Format] = {}

    def error(self, message: str) -> FrontendError:
        return FrontendError(f"ONNX node '{self.label}' ({self.op_type}, opset {self.opset}): {message}")

    def attr(self, name: str, default=None):
        return self.attrs.get(name, default)

    # --- inputs and outputs -----------------------------------------------------------
    def has_input(self, index: int) -> bool:
        return index < len(self.node.input) and self.node.input[index] != ""

    def input(self, index: int) -> Value:
        if not self.has_input(index):
            raise self.error(f"missing required input #{index}")
        return self.importer.value(self.node.input[index])

    def inputs(self) -> list[Value]:
        """All given inputs; an absent input may only be followed by absent ones."""
        given = [i for i in range(len(self.node.input)) if self.has_input(i)]
        count = given[-1] + 1 if given else 0
        if len(given) != count:
            missing = next(i for i in range(count) if not self.has_input(i))
            raise self.error(f"input #{missing} is absent but a later input is given; not supported")
        return [self.input(i) for i in range(count)]

    def input_format(self, index: int) -> Format | None:
        """The element format of an input stored as bits (bfloat16, float8, ...; see ``formats``), if any."""
        return self.importer.format_of(self.node.input[index]) if self.has_input(index) else None

    def input_type(self, index: int) -> TensorType:
        if not self.has_input(index):
            raise self.error(f"missing required input #{index}")
        return self.importer.type_of(self.node.input[index])

    def is_constant(self, index: int) -> bool:
        return self.has_input(index) and self.importer.constant_of(self.node.input[index]) is not None

    def const(self, index: int, what: str, required: bool = False) -> np.ndarray | None:
        """A constant input as an array; ``None`` when it is absent and not required."""
        if not self.has_input(index):
            if required:
                raise self.error(f"missing required input #{index} ({what})")
            return None
        name = self.node.input[index]
        array = self.importer.constant_of(name)
        if array is None:
            if name in self.importer.graph_inputs:
                raise NeedsConstantInput(
                    f"ONNX node '{self.label}' ({self.op_type}, opset {self.opset}): input #{index} "
                    f"('{name}', the {what}) must be a constant, but it is a graph input; make it an "
                    "initializer", name)
            raise self.error(f"input #{index} ('{name}', the {what}) must be a constant: an initializer, "
                             "a Constant, or computable from them at import time")
        return array

    @property
    def num_outputs(self) -> int:
        return len(self.node.output)

    def output_used(self, index: int) -> bool:
        outputs = self.node.output
        return index < len(outputs) and outputs[index] != "" and outputs[index] in self.importer.used

    def output_hint(self, index: int = 0) -> str:
        names = [n for n in self.node.output if n]
        if index < len(self.node.output) and self.node.output[index]:
            return self.node.output[index]
        return names[0] if names else self.loc

    # --- building -----------------------------------------------------------------------
    def build(self, cls: type[T.TensorOp], operands, attributes=None) -> list[Value]:
        return self.importer.build(self, cls, list(operands), attributes or {})

    def constant(self, array: np.ndarray) -> Value:
        return self.importer.add_constant(dense(array), self.output_hint(), self.loc)

    def expand_function(self) -> list[Value | None]:
        return self.importer.expand_function(self)

    def onnx_dtype(self, code, what: str) -> DType:
        if code is None:
            raise self.error(f"missing {what}")
        if code not in ONNX_DTYPES:
            raise self.error(f"{what}: element type {dtype_name(code)} is not supported")
        return ONNX_DTYPES[code]

    def need_static(self, index: int, purpose: str) -> FrontendError:
        """The error for a dynamic shape where ``purpose`` needs a static one."""
        message = (f"{purpose} needs a static input shape, but input #{index} ('{self.node.input[index]}') "
                   f"is {self.input_type(index)}")
        dynamic = self.importer.dynamic_inputs()
        if dynamic:
            example = ", ".join(f"'{name}': (...)" for name, _ in dynamic)
            message += ("; graph inputs with unknown dimensions: "
                        + ", ".join(f"{name} ({t})" for name, t in dynamic)
                        + f"; pass input_shapes={{{example}}} (API) or --input-shape NAME=DIMS (CLI)")
        return self.error(message)


class _Importer:
    def __init__(self, model: onnx.ModelProto, input_shapes: dict[str, tuple]):
        if model.functions:
            from onnx.inliner import inline_local_functions
            model = inline_local_functions(model)
        self.model = model
        self.graph = model.graph
        self.input_shapes = dict(input_shapes)
        self.opsets = {("" if o.domain in ("", "ai.onnx") else o.domain): o.version for o in model.opset_import}
        self.opset = self.opsets.get("")
        self.values: dict[str, Value] = {}
        self.pending: dict[str, _Pending] = {}
        self.const_hints: dict[int, str] = {}
        self.used: set[str] = set()
        self.graph_inputs: set[str] = set()
        #: id(value) -> format of values stored as bits
        self.formats: dict[int, Format] = {}
        self._elem_types: dict[str, int] | None = None
        self.func: FuncOp | None = None

    # --- the graph ----------------------------------------------------------------------
    def run(self) -> Module:
        if self.opset is None:
            raise FrontendError("the ONNX model does not import the default opset (domain '' or 'ai.onnx')")
        newest = onnx.defs.onnx_opset_version()
        if not 1 <= self.opset <= newest:
            raise FrontendError(f"the ONNX model uses opset {self.opset}; fusecc supports opsets up to "
                                f"{newest} of the default domain (the newest the installed onnx "
                                f"{onnx.__version__} knows)")
        graph = self.graph
        for tensor in graph.initializer:
            fmt = FORMATS.get(tensor.data_type)
            array = self.tensor_array(tensor, lambda m, n=tensor.name: FrontendError(f"ONNX initializer '{n}': {m}"),
                                      formats_ok=True)
            self.pending[tensor.name] = _Pending(array, tensor.name, fmt)
        inputs = [vi for vi in graph.input if vi.name not in self.pending]
        unknown = sorted(set(self.input_shapes) - {vi.name for vi in inputs})
        if unknown:
            raise FrontendError(f"input_shapes names {', '.join(map(repr, unknown))}, which "
                                f"{'is' if len(unknown) == 1 else 'are'} not graph inputs; graph inputs: "
                                + ", ".join(vi.name for vi in inputs))
        arg_types = [self.input_type(vi) for vi in inputs]
        attributes = {"input_names": [vi.name for vi in inputs], "output_names": [vi.name for vi in graph.output]}
        self.func = FuncOp("main", arg_types, [], [sanitize_name(vi.name) for vi in inputs], attributes)
        self.graph_end = Rewriter.at_end(self.func.body)
        for vi, arg in zip(inputs, self.func.args):
            self.values[vi.name] = arg
            fmt = FORMATS.get(vi.type.tensor_type.elem_type)
            if fmt is not None:
                self.formats[id(arg)] = fmt
        self.graph_inputs = {vi.name for vi in inputs}
        self.used = {name for node in graph.node for name in node.input if name}
        self.used.update(vi.name for vi in graph.output)
        self.check_single_producers()

        for index in self.topological_order():
            self.convert(graph.node[index], index)

        results = []
        for vi in graph.output:
            if vi.name not in self.values and vi.name not in self.pending:
                raise FrontendError(f"ONNX graph output '{vi.name}' is not produced by any node, input or initializer")
            results.append(self.value(vi.name))
            self.check_declared_type(vi, results[-1])
        self.graph_end.insert(ReturnOp.create(results))
        self.func.result_types = [v.type for v in results]
        self.finish_constants()
        module = Module([self.func])
        module.verify()
        return module

    def check_single_producers(self) -> None:
        """Every value has one producer: a node output named twice, or naming a graph input or an
        initializer, is an invalid model (ONNX Runtime refuses it)."""
        producers = {name: "a graph input" for name in self.graph_inputs}
        producers.update({name: "an initializer" for name in self.pending})
        for index, node in enumerate(self.graph.node):
            label = f"ONNX node '{node.name or f'<unnamed #{index}>'}' ({node.op_type})"
            for name in node.output:
                if not name:
                    continue
                if name in producers:
                    raise FrontendError(f"{label}: its output '{name}' is already produced by {producers[name]}; "
                                        "each value of an ONNX graph has one producer")
                producers[name] = label.replace("ONNX node", "node", 1)

    def check_declared_type(self, vi: onnx.ValueInfoProto, value: Value) -> None:
        """A graph output declared with an element type must be computed with that type."""
        declared = vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0
        if not declared:
            return
        fmt = FORMATS.get(declared)
        computed_fmt = self.formats.get(id(value))
        if fmt is not None or computed_fmt is not None:
            matches = fmt is computed_fmt
            computed = str(computed_fmt) if computed_fmt is not None else str(value.type.dtype)
        else:
            matches = ONNX_DTYPES.get(declared) is value.type.dtype
            computed = dtype_name(next((c for c, d in ONNX_DTYPES.items() if d is value.type.dtype), 0))
        if not matches:
            raise FrontendError(f"ONNX graph output '{vi.name}' is declared {dtype_name(declared)}, but the "
                                f"graph computes it as {computed}")

    def input_type(self, vi: onnx.ValueInfoProto) -> TensorType:
        where = f"ONNX graph input '{vi.name}'"
        if not vi.type.HasField("tensor_type"):
            raise FrontendError(f"{where}: only tensor inputs are supported")
        tensor_type = vi.type.tensor_type
        fmt = FORMATS.get(tensor_type.elem_type)
        if tensor_type.elem_type not in ONNX_DTYPES and fmt is None:
            raise FrontendError(f"{where}: element type {dtype_name(tensor_type.elem_type)} is not supported")
        dtype = fmt.storage if fmt is not None else ONNX_DTYPES[tensor_type.elem_type]
        declared = None
        if tensor_type.HasField("shape"):
            for axis, d in enumerate(tensor_type.shape.dim):
                if d.HasField("dim_value") and d.dim_value < 0:
                    raise FrontendError(f"{where}: dimension {axis} is {d.dim_value}; a dimension is a size "
                                        "(0 or more) or a symbol")
            declared = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
        override = self.input_shapes.get(vi.name)
        if override is None:
            if declared is None:
                raise FrontendError(f"{where} has no shape (unknown rank); pass "
                                    f"input_shapes={{'{vi.name}': (...)}} to import_model")
            return _tensor_type(declared, dtype, where)
        shape = tuple(None if d is None or int(d) < 0 else int(d) for d in override)
        if declared is not None and len(declared) != len(shape):
            raise FrontendError(f"{where}: input_shapes gives rank {len(shape)} {tuple(override)}, "
                                f"but the model declares rank {len(declared)}")
        return _tensor_type(shape, dtype, where)

    def dynamic_inputs(self) -> list[tuple[str, TensorType]]:
        return [(name, arg.type) for name, arg in zip(self.func.attributes["input_names"], self.func.args)
                if not arg.type.is_static]

    def topological_order(self) -> list[int]:
        """Node indices with producers first; the given order when it already is one."""
        nodes = self.graph.node
        producer = {name: i for i, node in enumerate(nodes) for name in node.output if name}
        state = [0] * len(nodes)  # 0: unvisited, 1: on the stack, 2: done
        order = []

        def deps(i):
            return iter([producer[n] for n in nodes[i].input if n in producer])

        for root in range(len(nodes)):
            if state[root]:
                continue
            state[root] = 1
            stack = [(root, deps(root))]
            while stack:
                index, pending = stack[-1]
                for dep in pending:
                    if state[dep] == 1:
                        node = nodes[dep]
                        raise FrontendError(f"the ONNX graph has a cycle through node "
                                            f"'{node.name or f'<unnamed #{dep}>'}' ({node.op_type})")
                    if state[dep] == 0:
                        state[dep] = 1
                        stack.append((dep, deps(dep)))
                        break
                else:
                    state[index] = 2
                    order.append(index)
                    stack.pop()
        return order

    def convert(self, node: onnx.NodeProto, index: int, opset: int | None = None, label: str | None = None,
                loc: str | None = None) -> None:
        """Convert one node; ``opset``, ``label`` and ``loc`` are given for the nodes of a function body."""
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        opset = self.opset if opset is None else opset
        label = label or node.name or f"<unnamed #{index}>"
        fn = CONVERTERS.get(node.op_type) if domain == "" else None
        if fn is None:
            why = UNSUPPORTED.get(node.op_type) if domain == "" else None
            raise FrontendError(f"unsupported ONNX op '{node.op_type}' (domain '{domain}', opset "
                                f"{self.opsets.get(domain, '?') if domain else opset}) at node '{label}'"
                                + (f": {why}" if why else "; run 'fusecc --list-ops' for the supported ops"))
        ctx = NodeContext(self, node, index, opset, self.op_version(node, opset, label), label, loc)
        for name in node.input:
            if name and name not in self.values and name not in self.pending:
                raise ctx.error(f"input '{name}' is not produced by any node, graph input or initializer")
        formatted = {i: ctx.input_format(i) for i in range(len(node.input)) if ctx.input_format(i)}
        try:
            if formatted and node.op_type not in FORMAT_AWARE:
                results = self.convert_in_float32(ctx, fn, formatted)
            else:
                results = list(fn(ctx))
        except FrontendError:
            raise
        except Exception as error:  # a converter bug: still say which node triggered it
            raise ctx.error(f"internal error: {type(error).__name__}: {error}") from error
        for i, name in enumerate(node.output):
            value = results[i] if i < len(results) else None
            if not name:
                continue
            if value is None:
                if name in self.used:
                    raise ctx.error(f"output #{i} ('{name}') is used, but fusecc does not produce it")
                continue
            self.values[name] = value
            if i in ctx.result_formats:
                self.formats[id(value)] = ctx.result_formats[i]

    def convert_in_float32(self, ctx: "NodeContext", fn, formatted: dict[int, Format]) -> list:
        """Convert a node whose bfloat16 inputs are decoded to float32, rounding its bfloat16 results back.

        A result is bfloat16 when ONNX's type inference says so, or (for values it
        does not type, inside function bodies) when it is float32 here.
        """
        for index, fmt in formatted.items():
            if fmt.kind != "bfloat16":
                raise ctx.error(f"input #{index} ('{ctx.node.input[index]}') is {fmt}, which fusecc only "
                                f"converts (Cast, CastLike, QuantizeLinear, DequantizeLinear, BitCast)")
        saved = {}
        for index in formatted:
            name = ctx.node.input[index]
            if name not in saved:
                saved[name] = self.values.get(name)
                self.values[name] = formats.decode(ctx, ctx.input(index), formatted[index])
        try:
            results = list(fn(ctx))
        finally:
            for name, value in saved.items():
                if value is None:
                    del self.values[name]
                else:
                    self.values[name] = value
        bfloat16 = FORMATS[TensorProto.BFLOAT16]
        types = self.elem_types()
        for i, value in enumerate(results):
            name = ctx.node.output[i] if i < len(ctx.node.output) else ""
            if value is None or not name:
                continue
            declared = types.get(name)
            if declared == TensorProto.BFLOAT16 or (declared is None and value.type.dtype is DType.F32):
                results[i] = formats.encode(ctx, value, bfloat16)
                ctx.result_formats[i] = bfloat16
        return results

    def elem_types(self) -> dict[str, int]:
        """ONNX element types of the graph's values, from ONNX's type inference (computed once)."""
        if self._elem_types is None:
            try:
                inferred = onnx.shape_inference.infer_shapes(self.model).graph
            except Exception:
                inferred = self.graph
            self._elem_types = {vi.name: vi.type.tensor_type.elem_type
                                for vi in list(inferred.value_info) + list(inferred.output) + list(inferred.input)
                                if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type}
        return self._elem_types

    def expand_function(self, ctx: "NodeContext") -> list[Value | None]:
        """Convert a node by converting the nodes of its ONNX function body (see ``onnx_ops.FUNCTION_OPS``).

        The body is the one ONNX defines for the node's op version (built for the
        node's attributes and input types when it depends on them); its nodes are
        imported with the function's own opset.
        """
        node = ctx.node
        schema = onnx.defs.get_schema(node.op_type, ctx.opset, "")
        expanded = onnx.NodeProto()
        expanded.CopyFrom(node)
        given = {a.name for a in node.attribute}
        for name, attribute in schema.attributes.items():
            if name not in given and attribute.default_value.name:
                expanded.attribute.append(attribute.default_value)
        versions = [v for v in schema.function_opset_versions if v <= ctx.opset]
        context_versions = [v for v in schema.context_dependent_function_opset_versions if v <= ctx.opset]
        function = onnx.FunctionProto()
        if versions:
            function.ParseFromString(schema.get_function_with_opset_version(max(versions)))
        elif context_versions:
            types = [self.type_proto(name).SerializeToString() if name else onnx.TypeProto().SerializeToString()
                     for name in node.input]
            try:
                data = schema.get_context_dependent_function_with_opset_version(
                    max(context_versions), expanded.SerializeToString(), types)
            except Exception as error:
                raise ctx.error(f"ONNX cannot build its function body: {error}") from None
            function.ParseFromString(data)
        else:
            raise ctx.error(f"{node.op_type}-{ctx.version} has no ONNX function body")
        body_opset = next((o.version for o in function.opset_import if o.domain in ("", "ai.onnx")), ctx.opset)
        prefix = f"{sanitize_name(node.name or node.op_type)}#{ctx.index}/"
        rename = {formal: (node.input[i] if i < len(node.input) else "") for i, formal in enumerate(function.input)}
        rename.update({formal: node.output[i] for i, formal in enumerate(function.output)
                       if i < len(node.output) and node.output[i]})
        attributes = {a.name: a for a in expanded.attribute}

        def actual(name: str) -> str:
            return rename.get(name, prefix + name if name else "")

        body = []
        for inner in function.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(inner)
            del copy.input[:], copy.output[:], copy.attribute[:]
            copy.input.extend(actual(n) for n in inner.input)
            copy.output.extend(actual(n) for n in inner.output)
            for attribute in inner.attribute:
                if attribute.HasField("ref_attr_name"):
                    if attribute.ref_attr_name not in attributes:
                        continue
                    resolved = onnx.AttributeProto()
                    resolved.CopyFrom(attributes[attribute.ref_attr_name])
                    resolved.name = attribute.name
                    copy.attribute.append(resolved)
                elif attribute.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
                    raise ctx.error(f"its function body has a subgraph (in {inner.op_type}); not supported")
                else:
                    copy.attribute.append(attribute)
            body.append(copy)
        self.used.update(name for inner in body for name in inner.input if name)
        for position, inner in enumerate(body):
            step = inner.name or f"{inner.op_type}#{position}"
            self.convert(inner, position, body_opset, f"{ctx.label}/{step}", f"{ctx.loc}/{step}")
        return [self.values.get(name) if name else None for name in node.output]

    def type_proto(self, name: str) -> onnx.TypeProto:
        t = self.type_of(name)
        code = next(code for code, dtype in ONNX_DTYPES.items() if dtype is t.dtype)
        return onnx.helper.make_tensor_type_proto(code, [d if d is not None else "?" for d in t.shape])

    def op_version(self, node: onnx.NodeProto, opset: int, label: str) -> int:
        """The ``since_version`` of the node's op in ``opset``; rejects versions not reviewed."""
        where = f"ONNX node '{label}' ({node.op_type}, opset {opset})"
        try:
            version = onnx.defs.get_schema(node.op_type, opset, "").since_version
        except onnx.defs.SchemaError:
            raise FrontendError(f"{where}: opset {opset} has no op '{node.op_type}'") from None
        if version > REVIEWED_OPSET:
            raise FrontendError(f"{where}: {node.op_type}-{version} is newer than the versions fusecc "
                                f"implements (checked up to opset {REVIEWED_OPSET})")
        if opset < MIN_OPSET:
            try:
                current = onnx.defs.get_schema(node.op_type, MIN_OPSET, "").since_version
            except onnx.defs.SchemaError:
                current = None
            if current != version:
                raise FrontendError(f"{where}: {node.op_type}-{version} predates opset {MIN_OPSET}, the oldest "
                                    "fusecc supports (it differs from the op's definition there)")
        return version

    # --- values and constants -------------------------------------------------------------
    def value(self, name: str) -> Value:
        value = self.values.get(name)
        if value is None:
            pending = self.pending[name]
            value = self.add_constant(dense(pending.array), name, pending.loc)
            self.values[name] = value
            if pending.format is not None:
                self.formats[id(value)] = pending.format
        return value

    def format_of(self, name: str) -> Format | None:
        if name in self.values:
            return self.formats.get(id(self.values[name]))
        pending = self.pending.get(name)
        return pending.format if pending is not None else None

    def type_of(self, name: str) -> TensorType:
        if name in self.values:
            return self.values[name].type
        array = self.pending[name].array
        return TensorType(tuple(array.shape), DType.from_numpy(array.dtype))

    def constant_of(self, name: str) -> np.ndarray | None:
        if name in self.values:
            return self.array_of(self.values[name])
        return self.pending[name].array

    @staticmethod
    def array_of(value: Value) -> np.ndarray | None:
        if isinstance(value, OpResult) and isinstance(value.op, T.ConstantOp):
            return value.op.value.value
        return None

    def add_constant(self, attr: DenseAttr, hint: str, loc: str) -> Value:
        op = self.graph_end.build(T.ConstantOp, [], {"value": attr}, loc=loc)
        self.const_hints[id(op)] = hint
        return op.result

    def finish_constants(self) -> None:
        """Drop constants nobody uses; give the large ones resource names."""
        for op in list(self.func.body.ops):
            if isinstance(op, T.ConstantOp) and not op.result.uses:
                op.erase()
        taken = set()
        for op in self.func.body.ops:
            if not isinstance(op, T.ConstantOp):
                continue
            attr = op.value
            if attr.resource is None and attr.type.num_elements > INLINE_ELEMENTS:
                name = base = sanitize_name(self.const_hints.get(id(op), op.loc or "cst"))
                suffix = 0
                while name in taken:
                    suffix += 1
                    name = f"{base}_{suffix}"
                taken.add(name)
                op.attributes["value"] = DenseAttr(attr.data, attr.type, resource=name)

    def build(self, ctx: NodeContext, cls, operands: list[Value], attributes: dict) -> list[Value]:
        try:
            op = cls.build(operands, attributes, loc=ctx.loc)
        except VerifyError as error:
            raise ctx.error(str(error)) from None
        except FrontendError:
            raise
        except Exception as error:
            raise ctx.error(f"cannot build {cls.name}: {type(error).__name__}: {error}") from error
        arrays = [self.array_of(v) for v in operands]
        if all(a is not None for a in arrays):
            folded = self.fold(ctx, op, arrays)
            if folded is not None:
                return folded
        self.graph_end.insert(op)
        return list(op.results)

    def fold(self, ctx: NodeContext, op: T.TensorOp, arrays: list[np.ndarray]) -> list[Value] | None:
        """Evaluate ``op`` on constant operands; ``None`` when no numpy kernel is available or a result
        is too large to hold as a constant (the op is then computed at run time)."""
        if any(not r.type.is_static or r.type.num_elements > MAX_FOLDED_ELEMENTS for r in op.results):
            return None
        try:
            outputs = op.reference(*arrays)
            attrs = [DenseAttr(np.asarray(out), r.type) for out, r in zip(outputs, op.results)]
        except (ImportError, AttributeError, NotImplementedError):
            return None
        except Exception as error:
            raise ctx.error(f"constant folding {op.name} failed: {type(error).__name__}: {error}") from error
        op.drop_operands()
        return [self.add_constant(attr, ctx.output_hint(i), ctx.loc) for i, attr in enumerate(attrs)]

    # --- ONNX protos ------------------------------------------------------------------------
    def attribute(self, ctx: NodeContext, a: AttributeProto):
        kind = a.type
        if kind == AttributeProto.FLOAT:
            return _float(a.f)
        if kind == AttributeProto.INT:
            return int(a.i)
        if kind == AttributeProto.STRING:
            return a.s.decode("utf-8", errors="replace")
        if kind == AttributeProto.TENSOR:
            return self.tensor_array(a.t, lambda m: ctx.error(f"attribute '{a.name}': {m}"))
        if kind == AttributeProto.FLOATS:
            return [_float(v) for v in a.floats]
        if kind == AttributeProto.INTS:
            return [int(v) for v in a.ints]
        if kind == AttributeProto.STRINGS:
            return [s.decode("utf-8", errors="replace") for s in a.strings]
        return a  # graphs, sparse tensors, type protos: no converter accepts them

    @staticmethod
    def tensor_array(tensor: TensorProto, error, formats_ok: bool = False) -> np.ndarray:
        """The tensor's data; with ``formats_ok``, a tensor of a format comes as its bits."""
        if tensor.data_location == TensorProto.EXTERNAL:
            raise error("its data is stored in an external file, which is not supported here; "
                        "import the model from its file path so fusecc can load the data")
        fmt = FORMATS.get(tensor.data_type) if formats_ok else None
        if tensor.data_type not in ONNX_DTYPES and fmt is None:
            raise error(f"element type {dtype_name(tensor.data_type)} is not supported")
        try:
            array = numpy_helper.to_array(tensor)
        except Exception as failure:
            raise error(f"cannot decode the tensor data: {failure}") from None
        if fmt is not None:
            return formats.to_storage(np.asarray(array, dtype=fmt.numpy))
        return np.asarray(array, dtype=ONNX_DTYPES[tensor.data_type].numpy)


def _tensor_type(shape: tuple, dtype: DType, where: str) -> TensorType:
    try:
        return TensorType(shape, dtype)
    except ValueError as error:
        raise FrontendError(f"{where}: {error}") from None


def _float(value: float) -> float:
    """ONNX float attributes are float32; keep the shortest decimal that rounds back to it."""
    return float(str(np.float32(value)))
