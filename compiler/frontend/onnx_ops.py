"""Per-op converters of the ONNX importer: one ONNX node -> tensor dialect ops.

A converter takes the node's ``NodeContext`` (see ``onnx_import``) and returns
one ``Value`` per node output (``None`` for outputs nobody uses). It reads
attributes with ``ctx.attr``, operands with ``ctx.input``, and the constant
inputs that the tensor dialect keeps as attributes (shapes, axes, pads, ...)
with ``ctx.const``; it builds ops with ``ctx.build``, which verifies them and
folds them when every operand is a constant.

The op's version (``ctx.version``, the ``since_version`` of its schema in the
model's opset) decides between the spellings ONNX used over time (attributes
that became inputs, changed defaults); each converter names the versions it
tells apart. Converters for ops whose ONNX attributes are exactly the tensor
op's declared fields (most elementwise ops, LRN, Gather*, Scatter*, ...) are
generated from the ``onnx = (...)`` lists of ``fusecc.dialects.tensor``. Ops
ONNX defines by a function body are listed in ``FUNCTION_OPS``; those fusecc
rejects with a reason in ``UNSUPPORTED``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from fusecc.dialects import tensor as T
from fusecc.dialects.base import declared_attrs
from fusecc.ir import DenseAttr, DType, TensorType, Value

from . import formats
from .formats import FORMATS, Format
from .recurrent import RECURRENT, convert_recurrent

if TYPE_CHECKING:
    from .onnx_import import NodeContext

Converter = Callable[["NodeContext"], Sequence["Value | None"]]

#: ONNX op type -> converter
CONVERTERS: dict[str, Converter] = {}


def converter(*op_types: str):
    def register(fn: Converter) -> Converter:
        for op_type in op_types:
            CONVERTERS[op_type] = fn
        return fn
    return register


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------
def dense(array) -> DenseAttr:
    """A dense attribute typed by the array's own shape (0-d arrays stay 0-d)."""
    array = np.asarray(array)
    return DenseAttr(array, TensorType(tuple(int(d) for d in array.shape), DType.from_numpy(array.dtype)))


def ints(array) -> list[int]:
    return [int(v) for v in np.asarray(array).reshape(-1)]


def floats(array) -> list[float]:
    return [float(v) for v in np.asarray(array).reshape(-1)]


def scalar(ctx: "NodeContext", array, what: str):
    """The single element of a constant input as a Python number."""
    array = np.asarray(array)
    if array.size != 1:
        raise ctx.error(f"{what} must hold exactly one value, got shape {list(array.shape)}")
    value = array.reshape(-1)[0].item()
    return int(value) if isinstance(value, bool) else value


def normalize_axes(ctx: "NodeContext", axes, rank: int, what: str = "axis") -> list[int]:
    out = []
    for axis in axes:
        if not -rank <= axis < max(rank, 1):
            raise ctx.error(f"{what} {axis} is out of range for rank {rank}")
        out.append(axis % rank if rank else 0)
    if len(set(out)) != len(out):
        raise ctx.error(f"{what} {list(axes)} repeats an axis")
    return out


def reshape(ctx: "NodeContext", x: Value, shape) -> Value:
    """A ``tensor.reshape`` to a fully resolved shape (no-op reshapes are skipped)."""
    shape = [int(d) for d in shape]
    if list(x.type.shape) == shape:
        return x
    return ctx.build(T.ReshapeOp, [x], {"shape": shape})[0]


def generic(ctx: "NodeContext") -> list[Value]:
    """ONNX attributes that the tensor op declares are copied as they are; operands in order."""
    cls = T.onnx_op_table()[ctx.op_type]
    fields = {f.name for f in declared_attrs(cls)}
    attrs = {name: value for name, value in ctx.attrs.items() if name in fields}
    return ctx.build(cls, ctx.inputs(), attrs)


# --------------------------------------------------------------------------------------
# Constants, shapes, aliases
# --------------------------------------------------------------------------------------
@converter("Constant")
def constant(ctx):
    attrs = ctx.attrs
    if "value" in attrs:
        value = attrs["value"]
    elif "value_float" in attrs:
        value = np.array(attrs["value_float"], dtype=np.float32)
    elif "value_floats" in attrs:
        value = np.array(attrs["value_floats"], dtype=np.float32)
    elif "value_int" in attrs:
        value = np.array(attrs["value_int"], dtype=np.int64)
    elif "value_ints" in attrs:
        value = np.array(attrs["value_ints"], dtype=np.int64)
    else:
        given = ", ".join(sorted(attrs)) or "no attribute"
        raise ctx.error(f"only tensor, float(s) and int(s) constants are supported, got {given}")
    return [ctx.constant(value)]


@converter("ConstantOfShape")
def constant_of_shape(ctx):
    shape = ints(ctx.const(0, "shape", required=True))
    value = ctx.attr("value")
    if value is None:
        value = np.zeros(1, dtype=np.float32)
    if value.size != 1:
        raise ctx.error(f"attribute 'value' must hold one element, got shape {list(value.shape)}")
    return ctx.build(T.ConstantOfShapeOp, [], {"shape": shape, "value": dense(value.reshape(1))})


@converter("Range")
def range_(ctx):
    start = ctx.const(0, "start", required=True)
    limit = scalar(ctx, ctx.const(1, "limit", required=True), "limit")
    delta = scalar(ctx, ctx.const(2, "delta", required=True), "delta")
    dtype = DType.from_numpy(start.dtype)
    start = scalar(ctx, start, "start")
    if delta == 0:
        raise ctx.error("delta must not be 0")
    count = max(math.ceil((limit - start) / delta), 0)
    return ctx.build(T.RangeOp, [], {"start": start, "delta": delta, "count": count, "dtype": dtype})


@converter("Shape")
def shape(ctx):
    x = ctx.input_type(0)
    rank = x.rank
    start = ctx.attr("start", 0)
    end = ctx.attr("end", rank)
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = max(min(max(end + rank if end < 0 else end, 0), rank), start)
    dims = x.shape[start:end]
    if None not in dims:
        return [ctx.constant(np.array(dims, dtype=np.int64))]
    full = ctx.build(T.ShapeOp, [ctx.input(0)])[0]
    if (start, end) == (0, rank):
        return [full]
    return ctx.build(T.SliceOp, [full], {"starts": [start], "ends": [end], "axes": [0], "steps": [1]})


@converter("Size")
def size(ctx):
    x = ctx.input_type(0)
    if not x.is_static:
        raise ctx.need_static(0, "Size")
    return [ctx.constant(np.array(x.num_elements, dtype=np.int64))]


@converter("EyeLike")
def eye_like(ctx):
    """Ones on diagonal ``k`` of a matrix shaped like the input: a constant, whatever the input holds."""
    x = ctx.input_type(0)
    if x.rank != 2 or None in x.shape:
        raise ctx.need_static(0, "EyeLike") if x.rank == 2 else ctx.error(f"expects a 2-D input, got {x}")
    code = ctx.attr("dtype")
    dtype = x.dtype if code is None else ctx.onnx_dtype(code, "attribute 'dtype'")
    return [ctx.constant(np.eye(x.shape[0], x.shape[1], ctx.attr("k", 0), dtype=dtype.numpy))]


WINDOWS = {
    "HannWindow": lambda n, size: np.sin(n * np.pi / size) ** 2,
    "HammingWindow": lambda n, size: 25.0 / 46.0 - np.cos(n * np.pi * 2 / size) * (1 - 25.0 / 46.0),
    "BlackmanWindow": lambda n, size: 0.42 - 0.5 * np.cos(n * np.pi * 2 / size) + 0.08 * np.cos(n * np.pi * 4 / size),
}


@converter(*WINDOWS)
def window(ctx):
    """A window function of ``size`` points: a constant of that size."""
    size = int(scalar(ctx, ctx.const(0, "size", required=True), "size"))
    if size < 0:
        raise ctx.error(f"size {size} must not be negative")
    dtype = ctx.onnx_dtype(ctx.attr("output_datatype", 1), "attribute 'output_datatype'")
    period = size if ctx.attr("periodic", 1) else size - 1
    values = WINDOWS[ctx.op_type](np.arange(size, dtype=np.float64), period) if size else np.zeros(0)
    return [ctx.constant(values.astype(dtype.numpy))]


@converter("Identity")
def identity(ctx):
    if ctx.input_format(0):
        ctx.result_formats[0] = ctx.input_format(0)
    return [ctx.input(0)]


@converter("Dropout")
def dropout(ctx):
    """Inference Dropout passes its input through, with a mask of all ones.

    Training mode drops elements at random, which fusecc does not do; it is only
    accepted with ratio 0, where it drops nothing.
    """
    if ctx.version >= 12 and ctx.has_input(2):
        if scalar(ctx, ctx.const(2, "training_mode"), "training_mode"):
            ratio = ctx.const(1, "ratio")
            if ratio is None or scalar(ctx, ratio, "ratio") != 0:
                raise ctx.error("training_mode=1 drops elements at random, which fusecc does not do "
                                "(only ratio=0 is accepted in training mode)")
    x = ctx.input(0)
    if not ctx.output_used(1):
        return [x]
    if not x.type.is_static:
        raise ctx.need_static(0, "Dropout's mask output")
    mask_dtype = np.bool_ if ctx.version >= 10 else x.type.dtype.numpy
    one = np.ones(1, dtype=mask_dtype)
    return [x] + ctx.build(T.ConstantOfShapeOp, [], {"shape": list(x.type.shape), "value": dense(one)})


@converter("Cast")
def cast(ctx):
    code = ctx.attr("to")
    return [_convert(ctx, code if code in FORMATS else ctx.onnx_dtype(code, "attribute 'to'"))]


@converter("CastLike")
def cast_like(ctx):
    return [_convert(ctx, ctx.input_format(1) or ctx.input_type(1).dtype)]


def _convert(ctx, to: "DType | int | Format") -> Value:
    """Cast input #0 to a dtype or a format (given as one or by its ONNX code); see ``formats``."""
    x = ctx.input(0)
    source = ctx.input_format(0)
    if source is not None:
        x = formats.decode(ctx, x, source)
    target = FORMATS.get(to) if isinstance(to, int) else to
    if isinstance(target, Format):
        if target == source:
            x = ctx.input(0)
        else:
            x = formats.encode(ctx, x, target, saturate=bool(ctx.attr("saturate", 1)),
                               round_mode=ctx.attr("round_mode", "up"))
        ctx.result_formats[0] = target
        return x
    return _cast(ctx, x, target)


@converter("BitCast")
def bitcast(ctx):
    """Bits of a format are stored as they are, so reinterpreting them is a bitcast of the storage."""
    code = ctx.attr("to")
    target = FORMATS.get(code)
    to = target.storage if target is not None else ctx.onnx_dtype(code, "attribute 'to'")
    if target is not None:
        ctx.result_formats[0] = target
    x = ctx.input(0)
    if to is x.type.dtype:
        return [x]
    return ctx.build(T.BitcastOp, [x], {"to": to})


def _cast(ctx, x: Value, to: DType) -> Value:
    if x.type.dtype is to:
        return x
    return ctx.build(T.CastOp, [x], {"to": to})[0]


# --------------------------------------------------------------------------------------
# Reshapes
# --------------------------------------------------------------------------------------
@converter("Reshape")
def reshape_(ctx):
    target = ints(ctx.const(1, "shape", required=True))
    allowzero = ctx.attr("allowzero", 0)
    in_shape = ctx.input_type(0).shape
    out = []
    for axis, dim in enumerate(target):
        if dim == 0 and not allowzero:
            if axis >= len(in_shape):
                raise ctx.error(f"shape {target} copies dimension {axis} (0) of a rank-{len(in_shape)} input")
            dim = in_shape[axis]
            if dim is None:
                raise ctx.need_static(0, f"Reshape to {target}")
        elif dim < -1:
            raise ctx.error(f"shape {target} has the invalid entry {dim}")
        out.append(dim)
    if out.count(-1) > 1:
        raise ctx.error(f"shape {target} has more than one -1")
    if -1 in out:
        if None in in_shape:
            raise ctx.need_static(0, f"Reshape to {target}")
        total = math.prod(in_shape)
        known = math.prod(d for d in out if d != -1)
        if known == 0 or total % known:
            raise ctx.error(f"cannot reshape {ctx.input_type(0)} to {target}")
        out[out.index(-1)] = total // known
    return [reshape(ctx, ctx.input(0), out)]


@converter("Flatten")
def flatten(ctx):
    x = ctx.input_type(0)
    axis = ctx.attr("axis", 1)
    if not -x.rank <= axis <= x.rank:
        raise ctx.error(f"axis {axis} is out of range for rank {x.rank}")
    axis = axis + x.rank if axis < 0 else axis
    if None in x.shape:
        raise ctx.need_static(0, "Flatten")
    return [reshape(ctx, ctx.input(0), [math.prod(x.shape[:axis]), math.prod(x.shape[axis:])])]


@converter("Squeeze")
def squeeze(ctx):
    x = ctx.input_type(0)
    axes = ctx.attr("axes") if ctx.version < 13 else ctx.const(1, "axes")
    if axes is None or len(axes) == 0:
        if None in x.shape:
            raise ctx.need_static(0, "Squeeze without axes")
        out = [d for d in x.shape if d != 1]
    else:
        axes = normalize_axes(ctx, ints(axes), x.rank)
        for axis in axes:
            if x.shape[axis] not in (1, None):
                raise ctx.error(f"cannot squeeze axis {axis} of size {x.shape[axis]}")
        out = [d for i, d in enumerate(x.shape) if i not in axes]
        if None in out:
            raise ctx.need_static(0, "Squeeze")
    return [reshape(ctx, ctx.input(0), out)]


@converter("Unsqueeze")
def unsqueeze(ctx):
    x = ctx.input_type(0)
    axes = ctx.attr("axes") if ctx.version < 13 else ctx.const(1, "axes", required=True)
    if axes is None:
        raise ctx.error("missing attribute 'axes'")
    axes = normalize_axes(ctx, ints(axes), x.rank + len(axes))
    if None in x.shape:
        raise ctx.need_static(0, "Unsqueeze")
    dims = iter(x.shape)
    out = [1 if i in axes else next(dims) for i in range(x.rank + len(axes))]
    return [reshape(ctx, ctx.input(0), out)]


@converter("Transpose")
def transpose(ctx):
    rank = ctx.input_type(0).rank
    perm = ctx.attr("perm") or list(range(rank))[::-1]
    return ctx.build(T.TransposeOp, [ctx.input(0)], {"perm": list(perm)})


# --------------------------------------------------------------------------------------
# Data movement with constant operands
# --------------------------------------------------------------------------------------
@converter("Slice")
def slice_(ctx):
    rank = ctx.input_type(0).rank
    if ctx.version < 10:
        starts, ends, axes = ctx.attr("starts"), ctx.attr("ends"), ctx.attr("axes")
        if starts is None or ends is None:
            raise ctx.error("missing attribute 'starts' or 'ends'")
        steps = None
    else:
        starts = ints(ctx.const(1, "starts", required=True))
        ends = ints(ctx.const(2, "ends", required=True))
        axes, steps = ctx.const(3, "axes"), ctx.const(4, "steps")
    axes = list(range(len(starts))) if axes is None else ints(axes)
    steps = [1] * len(starts) if steps is None else ints(steps)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.error(f"starts {starts}, ends {ends}, axes {axes} and steps {steps} differ in length")
    axes = normalize_axes(ctx, axes, rank)
    return ctx.build(T.SliceOp, [ctx.input(0)],
                     {"starts": list(starts), "ends": list(ends), "axes": axes, "steps": steps})


@converter("Split")
def split(ctx):
    x = ctx.input_type(0)
    axis = normalize_axes(ctx, [ctx.attr("axis", 0)], x.rank)[0]
    sizes = ctx.attr("split") if ctx.version < 13 else ctx.const(1, "split")
    outputs = ctx.num_outputs
    if sizes is not None and len(sizes):
        sizes = ints(sizes)
    else:
        dim = x.shape[axis]
        if dim is None:
            raise ctx.need_static(0, f"Split along axis {axis} without explicit sizes")
        parts = ctx.attr("num_outputs") if ctx.version >= 18 else None
        if parts is not None:
            if parts != outputs:
                raise ctx.error(f"num_outputs={parts} but the node has {outputs} outputs")
            chunk = -(-dim // parts)
            sizes = [chunk] * (parts - 1) + [dim - chunk * (parts - 1)]
            if sizes[-1] < 0:
                raise ctx.error(f"cannot split {dim} elements into {parts} chunks of {chunk}")
        elif dim % outputs:
            raise ctx.error(f"axis {axis} of size {dim} does not split evenly into {outputs} outputs")
        else:
            sizes = [dim // outputs] * outputs
    if len(sizes) != outputs:
        raise ctx.error(f"split sizes {sizes} do not match the {outputs} outputs")
    return ctx.build(T.SplitOp, [ctx.input(0)], {"axis": axis, "split": sizes})


@converter("Pad")
def pad(ctx):
    x = ctx.input_type(0)
    if ctx.version < 11:
        pads, value = ctx.attr("pads"), ctx.attr("value", 0.0)
        if pads is None:
            raise ctx.error("missing attribute 'pads'")
    else:
        pads = ints(ctx.const(1, "pads", required=True))
        given = ctx.const(2, "constant_value")
        value = 0 if given is None or given.size == 0 else scalar(ctx, given, "constant_value")
        axes = ctx.const(3, "axes") if ctx.version >= 18 else None
        if axes is not None:
            axes = normalize_axes(ctx, ints(axes), x.rank)
            if len(pads) != 2 * len(axes):
                raise ctx.error(f"pads {pads} must have two entries per axis of {axes}")
            full = [0] * (2 * x.rank)
            for j, axis in enumerate(axes):
                full[axis], full[axis + x.rank] = pads[j], pads[j + len(axes)]
            pads = full
    value = float(value) if x.dtype.is_float else int(value)
    mode = ctx.attr("mode", "constant")
    return ctx.build(T.PadOp, [ctx.input(0)], {"pads": list(pads), "mode": mode, "value": value})


@converter("Expand")
def expand(ctx):
    return ctx.build(T.ExpandOp, [ctx.input(0)], {"shape": ints(ctx.const(1, "shape", required=True))})


@converter("Tile")
def tile(ctx):
    return ctx.build(T.TileOp, [ctx.input(0)], {"repeats": ints(ctx.const(1, "repeats", required=True))})


@converter("TensorScatter")
def tensor_scatter(ctx):
    """present[.., s, ..] = update[.., s - w[b], ..] where that is a valid position (modulo the cache length
    in circular mode), else past: a GatherElements and a Where over index arithmetic."""
    past, update = ctx.input(0), ctx.input(1)
    shape = past.type.shape
    if None in shape or None in update.type.shape:
        raise ctx.need_static(0, "TensorScatter")
    rank = len(shape)
    axis = normalize_axes(ctx, [ctx.attr("axis", -2)], rank)[0]
    if axis == 0:
        raise ctx.error("axis must not be the batch axis")
    capacity, length = shape[axis], update.type.shape[axis]
    i64 = DType.I64

    def const(array):
        return ctx.constant(np.asarray(array, dtype=np.int64))

    position = const(np.arange(capacity).reshape([capacity if a == axis else 1 for a in range(rank)]))
    if ctx.has_input(2):
        start = reshape(ctx, _cast(ctx, ctx.input(2), i64), [shape[0]] + [1] * (rank - 1))
        offset = ctx.build(T.SubOp, [position, start])[0]
    else:
        offset = position
    if ctx.attr("mode", "linear") == "circular":
        offset = ctx.build(T.ModOp, [offset, const(capacity)])[0]
    elif ctx.attr("mode", "linear") != "linear":
        raise ctx.error(f"unknown mode '{ctx.attr('mode')}'")
    valid = ctx.build(T.AndOp, [ctx.build(T.GreaterOrEqualOp, [offset, const(0)])[0],
                                ctx.build(T.LessOp, [offset, const(length)])[0]])[0]
    index = ctx.build(T.ClipOp, [offset], {"min": 0, "max": length - 1})[0]
    index = ctx.build(T.ExpandOp, [index], {"shape": list(shape)})[0]
    gathered = ctx.build(T.GatherElementsOp, [update, index], {"axis": axis})[0]
    return ctx.build(T.WhereOp, [valid, gathered, past])


@converter("Compress")
def compress(ctx):
    """A Gather of the positions ``condition`` selects; ``condition`` sets the output shape, so it must be known."""
    condition = ctx.const(1, "condition", required=True).reshape(-1).astype(bool)
    x = ctx.input(0)
    axis = ctx.attr("axis")
    if axis is None:
        if not x.type.is_static:
            raise ctx.need_static(0, "Compress without axis")
        x, axis = reshape(ctx, x, [x.type.num_elements]), 0
    axis = normalize_axes(ctx, [axis], x.type.rank)[0]
    size = x.type.shape[axis]
    if size is not None and condition.size > size:
        raise ctx.error(f"condition has {condition.size} entries, more than axis {axis} ({size})")
    positions = np.nonzero(condition)[0].astype(np.int64)
    return ctx.build(T.GatherOp, [x, ctx.constant(positions)], {"axis": axis})


@converter("OneHot")
def one_hot(ctx):
    depth = scalar(ctx, ctx.const(1, "depth", required=True), "depth")
    return ctx.build(T.OneHotOp, [ctx.input(0), ctx.input(2)],
                     {"axis": ctx.attr("axis", -1), "depth": int(depth)})


@converter("Trilu")
def trilu(ctx):
    k = ctx.const(1, "k")
    k = 0 if k is None else int(scalar(ctx, k, "k"))
    return ctx.build(T.TriluOp, [ctx.input(0)], {"upper": ctx.attr("upper", 1), "k": k})


@converter("CumSum", "CumProd")
def cumulative(ctx):
    cls = T.CumSumOp if ctx.op_type == "CumSum" else T.CumProdOp
    axis = int(scalar(ctx, ctx.const(1, "axis", required=True), "axis"))
    return ctx.build(cls, [ctx.input(0)], {"axis": axis, "exclusive": ctx.attr("exclusive", 0),
                                           "reverse": ctx.attr("reverse", 0)})


@converter("Scatter")
def scatter(ctx):
    """Scatter (opsets 9 and 10) is ScatterElements without a reduction."""
    return ctx.build(T.ScatterElementsOp, ctx.inputs(), {"axis": ctx.attr("axis", 0)})


@converter("TopK")
def topk(ctx):
    k = ctx.attr("k") if ctx.version < 10 else scalar(ctx, ctx.const(1, "K", required=True), "K")
    attrs = {"k": int(k), "axis": ctx.attr("axis", -1)}
    if ctx.version >= 11:
        attrs.update(largest=ctx.attr("largest", 1), sorted=ctx.attr("sorted", 1))
    return ctx.build(T.TopKOp, [ctx.input(0)], attrs)


# --------------------------------------------------------------------------------------
# Resampling: Resize, Upsample, AffineGrid, GridSample
# --------------------------------------------------------------------------------------
@converter("Resize")
def resize(ctx):
    """Resolves scales or sizes (with ``axes`` and keep_aspect_ratio_policy) to every axis's size and scale."""
    x = ctx.input_type(0)
    if None in x.shape:
        raise ctx.need_static(0, "Resize")
    if ctx.version < 11:
        return _resize(ctx, floats(ctx.const(1, "scales", required=True)), {"mode": ctx.attr("mode", "nearest")})
    rank = x.rank
    axes = normalize_axes(ctx, ctx.attr("axes") or list(range(rank)), rank)
    attrs = {name: ctx.attr(name) for name in ("mode", "coordinate_transformation_mode", "nearest_mode",
                                               "cubic_coeff_a", "exclude_outside", "extrapolation_value",
                                               "antialias") if ctx.attr(name) is not None}
    scales, sizes = ctx.const(2, "scales"), ctx.const(3, "sizes")
    scales = None if scales is None or scales.size == 0 else floats(scales)
    sizes = None if sizes is None or sizes.size == 0 else ints(sizes)
    if (scales is None) == (sizes is None):
        raise ctx.error("exactly one of 'scales' and 'sizes' must be given")
    given = scales or sizes
    if len(given) != len(axes):
        raise ctx.error(f"{'scales' if scales else 'sizes'} {given} must have one entry per axis of {axes}")
    full_scales, full_sizes = [1.0] * rank, list(x.shape)
    in_shape = [x.shape[a] for a in axes]
    if scales is not None:
        picked = scales
        out = [int(math.floor(s * d)) for s, d in zip(scales, in_shape)]
    else:
        factors = [o / d for o, d in zip(sizes, in_shape)]
        policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
        if policy == "stretch":
            picked, out = factors, sizes
        elif policy in ("not_larger", "not_smaller"):
            common = min(factors) if policy == "not_larger" else max(factors)
            picked, out = [common] * len(axes), [int(common * d + 0.5) for d in in_shape]
        else:
            raise ctx.error(f"unknown keep_aspect_ratio_policy '{policy}'")
    for j, a in enumerate(axes):
        full_scales[a], full_sizes[a] = picked[j], out[j]
    if attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize":
        roi = ctx.const(1, "roi", required=True)
        roi = floats(roi)
        if len(roi) != 2 * len(axes):
            raise ctx.error(f"roi {roi} must have two entries per axis of {axes}")
        attrs["roi"] = [0.0] * rank + [1.0] * rank
        for j, a in enumerate(axes):
            attrs["roi"][a], attrs["roi"][rank + a] = roi[j], roi[len(axes) + j]
    return ctx.build(T.ResizeOp, [ctx.input(0)], {**attrs, "scales": full_scales, "sizes": full_sizes})


@converter("Upsample")
def upsample(ctx):
    scales = ctx.attr("scales") if ctx.version < 9 else floats(ctx.const(1, "scales", required=True))
    if scales is None:
        raise ctx.error("missing attribute 'scales'")
    if None in ctx.input_type(0).shape:
        raise ctx.need_static(0, "Upsample")
    return _resize(ctx, list(scales), {"mode": ctx.attr("mode", "nearest")})


def _resize(ctx, scales, attrs):
    """Resize-10 and Upsample: output floor(size * scale), asymmetric coordinates, nearest rounds down."""
    x = ctx.input_type(0)
    if len(scales) != x.rank:
        raise ctx.error(f"scales {scales} must have {x.rank} entries")
    if attrs["mode"] not in ("nearest", "linear"):
        raise ctx.error(f"unknown mode '{attrs['mode']}'")
    sizes = [int(math.floor(s * d)) for s, d in zip(scales, x.shape)]
    return ctx.build(T.ResizeOp, [ctx.input(0)], {**attrs, "scales": [float(s) for s in scales], "sizes": sizes,
                                                   "coordinate_transformation_mode": "asymmetric",
                                                   "nearest_mode": "floor"})


@converter("AffineGrid")
def affine_grid(ctx):
    """theta (N, r, r+1) applied to the constant grid of normalized output coordinates (x, y[, z], 1):
    one MatMul. ``size`` must be a constant."""
    theta = ctx.input(0)
    size = ints(ctx.const(1, "size", required=True))
    spatial = size[2:]
    rank = len(spatial)
    if rank not in (2, 3) or theta.type.shape[1:] != (rank, rank + 1):
        raise ctx.error(f"theta {theta.type} does not transform {rank}-D grids of size {size}")
    axes = []
    for n in spatial:
        if ctx.attr("align_corners", 0):
            axes.append(np.linspace(-1.0, 1.0, n) if n > 1 else np.array([-1.0]))
        else:
            axes.append((2.0 * np.arange(n) + 1.0) / n - 1.0)
    mesh = np.meshgrid(*axes, indexing="ij")  # z, y, x order of the spatial axes
    columns = [m.reshape(-1) for m in reversed(mesh)] + [np.ones(math.prod(spatial))]
    base = ctx.constant(np.stack(columns, axis=1).astype(theta.type.dtype.numpy))  # (points, r+1)
    transposed = ctx.build(T.TransposeOp, [theta], {"perm": [0, 2, 1]})[0]
    points = ctx.build(T.MatMulOp, [base, transposed])[0]  # (N, points, r)
    return [reshape(ctx, points, [theta.type.shape[0]] + spatial + [rank])]


@converter("GridSample")
def grid_sample(ctx):
    """GridSample-16 names its modes bilinear and bicubic, and samples 2-D inputs only."""
    mode = ctx.attr("mode", "bilinear" if ctx.version < 20 else "linear")
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    attrs = {"mode": mode, "padding_mode": ctx.attr("padding_mode", "zeros"),
             "align_corners": ctx.attr("align_corners", 0)}
    return ctx.build(T.GridSampleOp, [ctx.input(0), ctx.input(1)], attrs)


# --------------------------------------------------------------------------------------
# Signal processing
# --------------------------------------------------------------------------------------
@converter("DFT")
def dft(ctx):
    """``dft_length`` and ``axis`` must be constants; see ``_fourier``."""
    x = ctx.input(0)
    if None in x.type.shape:
        raise ctx.need_static(0, "DFT")
    if ctx.version >= 20:
        given = ctx.const(2, "axis")
        axis = -2 if given is None or given.size == 0 else int(scalar(ctx, given, "axis"))
    else:
        axis = ctx.attr("axis", 1)
    axis = normalize_axes(ctx, [axis], x.type.rank)[0]
    inverse, onesided = ctx.attr("inverse", 0), ctx.attr("onesided", 0)
    length = ctx.const(1, "dft_length")
    if length is not None and length.size:
        length = int(scalar(ctx, length, "dft_length"))
    else:
        length = 2 * (x.type.shape[axis] - 1) if inverse and onesided else x.type.shape[axis]
    return [_fourier(ctx, x, axis, length, inverse, onesided)]


@converter("STFT")
def stft(ctx):
    """Frames gathered from the signal (a constant index table), windowed, then one DFT per frame."""
    x = ctx.input(0)
    if None in x.type.shape:
        raise ctx.need_static(0, "STFT")
    batch, samples, parts = x.type.shape
    step = int(scalar(ctx, ctx.const(1, "frame_step", required=True), "frame_step"))
    window = ctx.input(2) if ctx.has_input(2) else None
    given = ctx.const(3, "frame_length")
    if given is not None and given.size:
        length = int(scalar(ctx, given, "frame_length"))
    else:
        length = window.type.shape[0] if window is not None else samples
    if window is not None and window.type.shape[0] != length:
        raise ctx.error(f"the window has {window.type.shape[0]} values, frame_length is {length}")
    frames = (samples - length) // step + 1
    if step < 1 or frames < 1:
        raise ctx.error(f"frame_step {step} and frame_length {length} give no frame of {samples} samples")
    positions = np.arange(frames)[:, None] * step + np.arange(length)[None, :]
    framed = ctx.build(T.GatherOp, [x, ctx.constant(positions.astype(np.int64))], {"axis": 1})[0]
    if window is not None:
        framed = ctx.build(T.MulOp, [framed, reshape(ctx, window, [1, 1, length, 1])])[0]
    return [_fourier(ctx, framed, 2, length, 0, ctx.attr("onesided", 1))]


def _fourier(ctx, x: Value, axis: int, length: int, inverse: int, onesided: int) -> Value:
    """numpy's fft/ifft/irfft of length ``length`` along ``axis`` of ``x``, whose last axis holds the real
    (and imaginary) parts. The transform is linear in both parts: it is MatMuls with constant matrices,
    the transform of each unit signal (zero padding or truncation to ``length`` included)."""
    rank = x.type.rank
    if axis == rank - 1:
        raise ctx.error("axis must not be the last axis (it holds the real and imaginary parts)")
    n, parts = x.type.shape[axis], x.type.shape[-1]
    if parts not in (1, 2):
        raise ctx.error(f"the last axis must hold 1 (real) or 2 (complex) values, got {parts}")

    def transform(signal):
        if not inverse:
            out = np.fft.fft(signal, n=length)
            return out[:length // 2 + 1] if onesided else out
        return np.fft.irfft(signal, n=length) if onesided else np.fft.ifft(signal, n=length)

    eye = np.eye(n)
    from_real = np.stack([transform(row) for row in eye], axis=1)  # [out, n] complex
    from_imag = np.stack([transform(1j * row) for row in eye], axis=1)
    dtype = x.type.dtype.numpy
    last = rank - 2  # the signal axis's position once the parts axis is dropped
    perm = [a for a in range(rank - 1) if a != axis] + [axis]
    back = [int(a) for a in np.argsort(perm)]

    def part(index):
        sliced = ctx.build(T.SliceOp, [x], {"starts": [index], "ends": [index + 1], "axes": [rank - 1],
                                            "steps": [1]})[0]
        flat = reshape(ctx, sliced, x.type.shape[:-1])
        return flat if axis == last else ctx.build(T.TransposeOp, [flat], {"perm": perm})[0]

    inputs = [(part(0), from_real)] + ([(part(1), from_imag)] if parts == 2 else [])

    def apply(select):
        total = None
        for signal, matrix in inputs:
            term = ctx.build(T.MatMulOp, [signal, ctx.constant(select(matrix).T.astype(dtype))])[0]
            total = term if total is None else ctx.build(T.AddOp, [total, term])[0]
        moved = total if axis == last else ctx.build(T.TransposeOp, [total], {"perm": back})[0]
        return reshape(ctx, moved, list(moved.type.shape) + [1])

    if inverse and onesided:  # irfft: a real signal
        return apply(np.real)
    return ctx.build(T.ConcatOp, [apply(np.real), apply(np.imag)], {"axis": rank - 1})[0]


# --------------------------------------------------------------------------------------
# Recurrent networks (unrolled; see ``recurrent``)
# --------------------------------------------------------------------------------------
@converter(*RECURRENT)
def recurrent(ctx):
    return convert_recurrent(ctx)


# --------------------------------------------------------------------------------------
# Elementwise
# --------------------------------------------------------------------------------------
def _variadic(ctx, cls) -> Value:
    values = ctx.inputs()
    if not values:
        raise ctx.error("needs at least one input")
    result = values[0]
    for value in values[1:]:
        result = ctx.build(cls, [result, value])[0]
    return result


@converter("Sum")
def sum_(ctx):
    return [_variadic(ctx, T.AddOp)]


@converter("Max")
def max_(ctx):
    return [_variadic(ctx, T.MaxOp)]


@converter("Min")
def min_(ctx):
    return [_variadic(ctx, T.MinOp)]


@converter("Mean")
def mean(ctx):
    total = _variadic(ctx, T.AddOp)
    count = len(ctx.inputs())
    if count == 1:
        return [total]
    scale = ctx.constant(np.array(1.0 / count, dtype=total.type.dtype.numpy))
    return ctx.build(T.MulOp, [total, scale])


@converter("Pow")
def pow_(ctx):
    """Since opset 12 the exponent may have another dtype.

    An integer exponent of a float base is cast to the base's type (exactly); a float
    exponent of an integer base is computed in float64 and truncated back to the
    base's type, as numpy's ``power(...).astype`` does.
    """
    base, exponent = ctx.input_type(0), ctx.input_type(1)
    if not base.dtype.is_float and exponent.dtype.is_float:
        values = [_cast(ctx, ctx.input(i), DType.F64) for i in (0, 1)]
        return [_cast(ctx, ctx.build(T.PowOp, values)[0], base.dtype)]
    return ctx.build(T.PowOp, [ctx.input(0), _cast(ctx, ctx.input(1), base.dtype)])


@converter("Clip")
def clip(ctx):
    if ctx.version < 11:
        low, high = ctx.attr("min"), ctx.attr("max")
    else:
        low, high = ctx.const(1, "min"), ctx.const(2, "max")
        low = None if low is None else scalar(ctx, low, "min")
        high = None if high is None else scalar(ctx, high, "max")
    attrs = {}
    if low is not None:
        attrs["min"] = low
    if high is not None:
        attrs["max"] = high
    return ctx.build(T.ClipOp, [ctx.input(0)], attrs)


# --------------------------------------------------------------------------------------
# Reductions and normalizations
# --------------------------------------------------------------------------------------
#: ONNX reduction -> (tensor op, first opset in which ``axes`` is an input)
REDUCTIONS = {
    "ReduceSum": (T.ReduceSumOp, 13), "ReduceMean": (T.ReduceMeanOp, 18), "ReduceMax": (T.ReduceMaxOp, 18),
    "ReduceMin": (T.ReduceMinOp, 18), "ReduceProd": (T.ReduceProdOp, 18), "ReduceL1": (T.ReduceL1Op, 18),
    "ReduceL2": (T.ReduceL2Op, 18), "ReduceSumSquare": (T.ReduceSumSquareOp, 18),
    "ReduceLogSum": (T.ReduceLogSumOp, 18), "ReduceLogSumExp": (T.ReduceLogSumExpOp, 18),
}


@converter(*REDUCTIONS)
def reduce(ctx):
    cls, axes_input_since = REDUCTIONS[ctx.op_type]
    rank = ctx.input_type(0).rank
    if ctx.version >= axes_input_since:
        axes = ctx.const(1, "axes")
        noop = ctx.attr("noop_with_empty_axes", 0)
    else:
        axes, noop = ctx.attr("axes"), 0
    axes = [] if axes is None else ints(axes)
    if not axes and noop:  # each element reduced alone (|x| for ReduceL1, log x for ReduceLogSum, ...)
        x = ctx.input(0)
        (column,) = ctx.build(T.ReshapeOp, [x], {"shape": list(x.type.shape) + [1]})
        return ctx.build(cls, [column], {"axes": [rank], "keepdims": 0})
    axes = sorted(normalize_axes(ctx, axes, rank)) if axes else list(range(rank))
    return ctx.build(cls, [ctx.input(0)], {"axes": axes, "keepdims": ctx.attr("keepdims", 1)})


@converter("GlobalAveragePool", "GlobalMaxPool")
def global_pool(ctx):
    cls = T.ReduceMeanOp if ctx.op_type == "GlobalAveragePool" else T.ReduceMaxOp
    rank = ctx.input_type(0).rank
    if rank < 3:
        raise ctx.error(f"expects an N x C x D1 x ... input, got {ctx.input_type(0)}")
    return ctx.build(cls, [ctx.input(0)], {"axes": list(range(2, rank)), "keepdims": 1})


SOFTMAX_FAMILY = {"Softmax": T.SoftmaxOp, "LogSoftmax": T.LogSoftmaxOp, "Hardmax": T.HardmaxOp}


@converter(*SOFTMAX_FAMILY)
def softmax(ctx):
    """Before opset 13 the input is coerced to 2-D [prod(:axis), prod(axis:)] around the op."""
    cls = SOFTMAX_FAMILY[ctx.op_type]
    x = ctx.input_type(0)
    if ctx.version >= 13:
        return ctx.build(cls, [ctx.input(0)], {"axis": ctx.attr("axis", -1)})
    axis = ctx.attr("axis", 1)
    if not -x.rank <= axis <= x.rank:
        raise ctx.error(f"axis {axis} is out of range for rank {x.rank}")
    axis = axis + x.rank if axis < 0 else axis
    if axis == x.rank - 1:
        return ctx.build(cls, [ctx.input(0)], {"axis": -1})
    if None in x.shape:
        raise ctx.need_static(0, f"{ctx.op_type} before opset 13 (coerced to 2-D)")
    flat = reshape(ctx, ctx.input(0), [math.prod(x.shape[:axis]), math.prod(x.shape[axis:])])
    result = ctx.build(cls, [flat], {"axis": -1})[0]
    return [reshape(ctx, result, x.shape)]


@converter("BatchNormalization")
def batch_norm(ctx):
    if ctx.version < 9 and ctx.attr("spatial", 1) == 0:
        raise ctx.error("spatial=0 (per-activation statistics) is not supported")
    training = ctx.attr("training_mode", 0) if ctx.version >= 14 else 0
    if training:
        return _batch_norm_training(ctx)
    for index in range(1, ctx.num_outputs):
        if ctx.output_used(index):
            raise ctx.error(f"output #{index} (running or saved statistics) is only produced in training "
                            "mode; only output #0 is supported")
    return ctx.build(T.BatchNormOp, [ctx.input(i) for i in range(5)], {"epsilon": ctx.attr("epsilon", 1e-5)})


def _batch_norm_training(ctx):
    """training_mode=1: normalize with the batch's mean and (population) variance per channel, and
    return the running statistics updated with ``momentum``."""
    x = ctx.input(0)
    rank, dtype = x.type.rank, x.type.dtype
    axes = [0] + list(range(2, rank))
    channel = [1, -1] + [1] * (rank - 2)

    def per_channel(value):  # [C] -> broadcastable against x
        return reshape(ctx, value, [d if d != -1 else value.type.shape[0] for d in channel])

    def scalar_(value):
        return ctx.constant(np.array(value, dtype=dtype.numpy))

    mean = ctx.build(T.ReduceMeanOp, [x], {"axes": axes, "keepdims": 0})[0]
    centered = ctx.build(T.SubOp, [x, per_channel(mean)])[0]
    var = ctx.build(T.ReduceMeanOp, [ctx.build(T.MulOp, [centered, centered])[0]], {"axes": axes, "keepdims": 0})[0]
    y = ctx.build(T.BatchNormOp, [x, ctx.input(1), ctx.input(2), mean, var], {"epsilon": ctx.attr("epsilon", 1e-5)})[0]
    momentum = ctx.attr("momentum", 0.9)

    def running(index, batch):
        kept = ctx.build(T.MulOp, [ctx.input(index), scalar_(momentum)])[0]
        return ctx.build(T.AddOp, [kept, ctx.build(T.MulOp, [batch, scalar_(1 - momentum)])[0]])[0]

    return [y, running(3, mean), running(4, var)]


@converter("LayerNormalization")
def layer_norm(ctx):
    """One ``tensor.layer_normalization``; when the Mean or InvStdDev output is used, the ops it stands for.

    The statistics are computed in float32 (``stash_type`` 1, the default) or in the
    input's type (``stash_type`` 0 or a float64 input), as ONNX's function body does.
    """
    axis, epsilon = ctx.attr("axis", -1), ctx.attr("epsilon", 1e-5)
    if not (ctx.output_used(1) or ctx.output_used(2)):
        return ctx.build(T.LayerNormOp, ctx.inputs(), {"axis": axis, "epsilon": epsilon})
    x = ctx.input(0)
    rank = x.type.rank
    axes = list(range(normalize_axes(ctx, [axis], rank)[0], rank))
    stash = DType.F32 if ctx.attr("stash_type", 1) == 1 and x.type.dtype is not DType.F64 else x.type.dtype
    wide = _cast(ctx, x, stash)
    mean = ctx.build(T.ReduceMeanOp, [wide], {"axes": axes, "keepdims": 1})[0]
    centered = ctx.build(T.SubOp, [wide, mean])[0]
    variance = ctx.build(T.ReduceMeanOp, [ctx.build(T.MulOp, [centered, centered])[0]], {"axes": axes,
                                                                                        "keepdims": 1})[0]
    shifted = ctx.build(T.AddOp, [variance, ctx.constant(np.array(epsilon, dtype=stash.numpy))])[0]
    inv_std = ctx.build(T.ReciprocalOp, [ctx.build(T.SqrtOp, [shifted])[0]])[0]
    normed = _cast(ctx, ctx.build(T.MulOp, [centered, inv_std])[0], x.type.dtype)
    y = ctx.build(T.MulOp, [normed, ctx.input(1)])[0]
    if ctx.has_input(2):
        y = ctx.build(T.AddOp, [y, ctx.input(2)])[0]
    return [y, mean, inv_std]


@converter("LpNormalization")
def lp_normalization(ctx):
    """x / ||x||_p along ``axis`` (p 1 or 2); where the norm is 0 the result is 0."""
    p, axis = ctx.attr("p", 2), ctx.attr("axis", -1)
    if p not in (1, 2):
        raise ctx.error(f"p={p}; only 1 and 2 are defined")
    x = ctx.input(0)
    axes = normalize_axes(ctx, [axis], x.type.rank)
    cls = T.ReduceL1Op if p == 1 else T.ReduceL2Op
    norm = ctx.build(cls, [x], {"axes": axes, "keepdims": 1})[0]
    zero = ctx.constant(np.array(0, dtype=x.type.dtype.numpy))
    quotient = ctx.build(T.DivOp, [x, norm])[0]
    return ctx.build(T.WhereOp, [ctx.build(T.EqualOp, [norm, zero])[0], zero, quotient])


# --------------------------------------------------------------------------------------
# Convolution and pooling
# --------------------------------------------------------------------------------------
def _window(ctx, kernel: list[int]) -> tuple[list[int], list[int]]:
    spatial = len(kernel)
    strides = list(ctx.attr("strides") or [1] * spatial)
    dilations = list(ctx.attr("dilations") or [1] * spatial)
    if len(strides) != spatial or len(dilations) != spatial:
        raise ctx.error(f"strides {strides} and dilations {dilations} must have {spatial} entries")
    return strides, dilations


def _split_total(total: int, upper: bool) -> tuple[int, int]:
    """(begin, end) padding for a SAME_* auto_pad: the odd element goes to the end for SAME_UPPER."""
    begin = total // 2 if upper else total - total // 2
    return begin, total - begin


def _explicit_pads(ctx, kernel, strides, dilations) -> list[int]:
    """``pads`` from the ``auto_pad``/``pads`` attributes, against the static input shape."""
    spatial = len(kernel)
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad == "NOTSET":
        pads = list(ctx.attr("pads") or [0] * (2 * spatial))
        if len(pads) != 2 * spatial:
            raise ctx.error(f"pads {pads} must have {2 * spatial} entries")
        return pads
    if auto_pad == "VALID":
        return [0] * (2 * spatial)
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.error(f"unknown auto_pad '{auto_pad}'")
    sizes = ctx.input_type(0).shape[2:]
    if None in sizes:
        raise ctx.need_static(0, f"auto_pad={auto_pad}")
    begins, ends = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        begin, end = _split_total(total, auto_pad == "SAME_UPPER")
        begins.append(begin)
        ends.append(end)
    return begins + ends


def _kernel_from_weight(ctx) -> list[int]:
    kernel = ctx.attr("kernel_shape")
    if kernel is None:
        kernel = list(ctx.input_type(1).shape[2:])
        if None in kernel:
            raise ctx.error(f"kernel_shape is not given and the weight {ctx.input_type(1)} is not static")
    return list(kernel)


@converter("Conv")
def conv(ctx):
    kernel = _kernel_from_weight(ctx)
    strides, dilations = _window(ctx, kernel)
    attrs = {"kernel_shape": kernel, "strides": strides, "pads": _explicit_pads(ctx, kernel, strides, dilations),
             "dilations": dilations, "group": ctx.attr("group", 1)}
    return ctx.build(T.ConvOp, ctx.inputs(), attrs)


@converter("ConvTranspose")
def conv_transpose(ctx):
    kernel = _kernel_from_weight(ctx)
    strides, dilations = _window(ctx, kernel)
    spatial = len(kernel)
    output_padding = list(ctx.attr("output_padding") or [0] * spatial)
    output_shape = ctx.attr("output_shape")
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        sizes = ctx.input_type(0).shape[2:]
        if None in sizes:
            raise ctx.need_static(0, "output_shape or auto_pad=SAME_*")
        if output_shape is None:
            output_shape = [size * s for size, s in zip(sizes, strides)]
        output_shape = list(output_shape)[-spatial:]
        begins, ends = [], []
        for i in range(spatial):
            total = (strides[i] * (sizes[i] - 1) + output_padding[i] + (kernel[i] - 1) * dilations[i] + 1
                     - output_shape[i])
            begin, end = _split_total(total, auto_pad == "SAME_UPPER")
            begins.append(begin)
            ends.append(end)
        pads = begins + ends
    elif auto_pad in ("NOTSET", "VALID"):
        pads = [0] * (2 * spatial) if auto_pad == "VALID" else list(ctx.attr("pads") or [0] * (2 * spatial))
    else:
        raise ctx.error(f"unknown auto_pad '{auto_pad}'")
    attrs = {"kernel_shape": kernel, "strides": strides, "pads": pads, "dilations": dilations,
             "group": ctx.attr("group", 1), "output_padding": output_padding}
    return ctx.build(T.ConvTransposeOp, ctx.inputs(), attrs)


@converter("MaxPool", "AveragePool", "LpPool")
def pool(ctx):
    kernel = ctx.attr("kernel_shape")
    if kernel is None:
        raise ctx.error("missing attribute 'kernel_shape'")
    kernel = list(kernel)
    strides, dilations = _window(ctx, kernel)
    attrs = {"kernel_shape": kernel, "strides": strides, "pads": _explicit_pads(ctx, kernel, strides, dilations),
             "dilations": dilations, "ceil_mode": ctx.attr("ceil_mode", 0)}
    if ctx.op_type == "AveragePool":
        attrs["count_include_pad"] = ctx.attr("count_include_pad", 0)
        return ctx.build(T.AveragePoolOp, [ctx.input(0)], attrs)
    if ctx.op_type == "LpPool":
        return ctx.build(T.LpPoolOp, [ctx.input(0)], {**attrs, "p": _lp_order(ctx)})
    values = ctx.build(T.MaxPoolOp, [ctx.input(0)], attrs)
    if not ctx.output_used(1):
        return values
    order = ctx.attr("storage_order", 0)
    return values + ctx.build(T.MaxPoolIndicesOp, [ctx.input(0)], {**attrs, "storage_order": order})


@converter("GlobalLpPool")
def global_lp_pool(ctx):
    x = ctx.input_type(0)
    if x.rank < 3 or None in x.shape[2:]:
        raise ctx.need_static(0, "GlobalLpPool")
    return ctx.build(T.LpPoolOp, [ctx.input(0)], {"kernel_shape": list(x.shape[2:]), "p": _lp_order(ctx)})


def _lp_order(ctx) -> int:
    p = ctx.attr("p", 2)
    if isinstance(p, float):  # LpPool-1 declared p as a float
        if p != int(p):
            raise ctx.error(f"p={p} must be a whole number")
        p = int(p)
    if p < 1:
        raise ctx.error(f"p={p} must be at least 1")
    return p


@converter("MaxUnpool")
def max_unpool(ctx):
    """Scatter X to the flat positions in ``I`` of a zero tensor, padded at the end to ``output_shape``."""
    x = ctx.input_type(0)
    if None in x.shape:
        raise ctx.need_static(0, "MaxUnpool")
    kernel = list(ctx.attr("kernel_shape"))
    spatial = len(kernel)
    strides = list(ctx.attr("strides") or [1] * spatial)
    pads = list(ctx.attr("pads") or [0] * (2 * spatial))
    inferred = list(x.shape[:2]) + [(x.shape[2 + i] - 1) * strides[i] - (pads[i] + pads[spatial + i]) + kernel[i]
                                    for i in range(spatial)]
    total = math.prod(inferred)
    zeros = ctx.constant(np.zeros(total, dtype=x.dtype.numpy))
    flat_x = reshape(ctx, ctx.input(0), [x.num_elements])
    flat_i = reshape(ctx, ctx.input(1), [x.num_elements])
    scattered = ctx.build(T.ScatterElementsOp, [zeros, flat_i, flat_x], {"axis": 0})[0]
    result = reshape(ctx, scattered, inferred)
    wanted = ctx.const(2, "output_shape")
    if wanted is None:
        return [result]
    extra = [int(w) - d for w, d in zip(ints(wanted), inferred)]
    if any(e < 0 for e in extra):
        raise ctx.error(f"output_shape {ints(wanted)} is smaller than the unpooled shape {inferred}")
    return ctx.build(T.PadOp, [result], {"pads": [0] * len(extra) + extra, "mode": "constant",
                                         "value": 0.0 if x.dtype.is_float else 0})


@converter("Col2Im")
def col2im(ctx):
    """Col2Im is a ConvTranspose of the block grid with a one-hot weight: input channel (c, tap) adds to
    output channel c at that tap. ``image_shape`` and ``block_shape`` must be constants."""
    x = ctx.input_type(0)
    if None in x.shape:
        raise ctx.need_static(0, "Col2Im")
    image = ints(ctx.const(1, "image_shape", required=True))
    block = ints(ctx.const(2, "block_shape", required=True))
    spatial = len(image)
    strides = list(ctx.attr("strides") or [1] * spatial)
    dilations = list(ctx.attr("dilations") or [1] * spatial)
    pads = list(ctx.attr("pads") or [0] * (2 * spatial))
    taps = math.prod(block)
    batch, rows, count = x.shape
    if rows % taps:
        raise ctx.error(f"input has {rows} rows, not a multiple of the block size {taps}")
    channels = rows // taps
    grid = [(image[i] + pads[i] + pads[i + spatial] - dilations[i] * (block[i] - 1) - 1) // strides[i] + 1
            for i in range(spatial)]
    if math.prod(grid) != count:
        raise ctx.error(f"{count} blocks do not tile image {image} with blocks {block}: expected {grid}")
    weight = np.zeros((rows, channels) + tuple(block), dtype=x.dtype.numpy)
    for c in range(channels):
        for tap in range(taps):
            weight[(c * taps + tap, c) + np.unravel_index(tap, block)] = 1
    blocks = reshape(ctx, ctx.input(0), [batch, rows] + grid)
    # positions past the last block's reach (when the stride leaves a remainder) stay zero
    reach = [(grid[i] - 1) * strides[i] + dilations[i] * (block[i] - 1) + 1 - pads[i] - pads[i + spatial]
             for i in range(spatial)]
    attrs = {"kernel_shape": block, "strides": strides, "pads": pads, "dilations": dilations, "group": 1,
             "output_padding": [size - r for size, r in zip(image, reach)]}
    return ctx.build(T.ConvTransposeOp, [blocks, ctx.constant(weight)], attrs)


@converter("Gemm")
def gemm(ctx):
    attrs = {name: ctx.attr(name, default) for name, default in
             (("alpha", 1.0), ("beta", 1.0), ("transA", 0), ("transB", 0))}
    return ctx.build(T.GemmOp, ctx.inputs(), attrs)


@converter("Einsum")
def einsum(ctx):
    """The equation with its ellipses spelled out as letters and its output made explicit."""
    equation = ctx.attr("equation", "").replace(" ", "")
    operands = ctx.inputs()
    inputs, arrow, output = equation.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(operands):
        raise ctx.error(f"equation '{equation}' has {len(terms)} operands, the node {len(operands)}")
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in equation]
    width = 0
    for term, value in zip(terms, operands):
        if "..." in term:
            width = max(width, value.type.rank - (len(term) - 3))
    batch = "".join(spare[:width])
    explicit = []
    for term, value in zip(terms, operands):
        if "..." in term:
            covered = value.type.rank - (len(term) - 3)
            term = term.replace("...", batch[width - covered:] if covered else "")
        explicit.append(term)
    if not arrow:
        letters = "".join(explicit)
        output = batch + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c not in batch))
    else:
        output = output.replace("...", batch)
    return ctx.build(T.EinsumOp, operands, {"equation": ",".join(explicit) + "->" + output})


# --------------------------------------------------------------------------------------
# Ops converted as they are
# --------------------------------------------------------------------------------------
#: tensor ops (beyond the unary and binary elementwise ones) whose ONNX form maps field by field
GENERIC = ("MatMul", "Where", "Concat", "Gather", "ArgMax", "ArgMin", "LRN", "InstanceNormalization",
           "RMSNormalization", "DepthToSpace", "SpaceToDepth", "GatherElements", "GatherND",
           "ScatterElements", "ScatterND", "ReverseSequence")


def _register_generic() -> None:
    for op_type, cls in T.onnx_op_table().items():
        elementwise = issubclass(cls, (T.UnaryOp, T.BinaryOp))
        if op_type not in CONVERTERS and (elementwise or op_type in GENERIC):
            CONVERTERS[op_type] = generic


_register_generic()


# --------------------------------------------------------------------------------------
# Ops imported through their ONNX function body
# --------------------------------------------------------------------------------------
#: ops that ONNX defines by a function body of other ops, which fusecc imports node by node -> the inputs
#: that decide shapes in the body (they must be constants, like a Reshape's shape)
FUNCTION_OPS = {"Attention": {}, "NegativeLogLikelihoodLoss": {}, "SoftmaxCrossEntropyLoss": {},
                "CenterCropPad": {1: "shape"}, "GroupNormalization": {}, "MeanVarianceNormalization": {},
                "Swish": {}, "RotaryEmbedding": {}, "SwiGLU": {}, "CausalConvWithState": {},
                "DynamicQuantizeLinear": {}}


@converter(*FUNCTION_OPS)
def function_op(ctx):
    for index, what in FUNCTION_OPS[ctx.op_type].items():
        ctx.const(index, what, required=True)
    return ctx.expand_function()


#: converters that handle inputs and results stored as bits of a format themselves (see ``formats``);
#: other ops compute bfloat16 in float32 and reject the other formats
FORMAT_AWARE = {"Cast", "CastLike", "Identity", "BitCast", "QuantizeLinear", "DequantizeLinear"}

#: ONNX ops fusecc does not convert, and why (named in the error)
UNSUPPORTED = {
    **dict.fromkeys(("NonZero", "Unique", "NonMaxSuppression", "StringSplit"),
                    "its output shape depends on the input values, and fusecc compiles static shapes"),
    **dict.fromkeys(("If", "Loop", "Scan"), "control flow (subgraphs) is not supported"),
    **dict.fromkeys(("RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli",
                     "Multinomial"), "fusecc does not generate random numbers"),
    **dict.fromkeys(("SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert",
                     "SequenceLength", "SequenceMap", "SplitToSequence", "ConcatFromSequence", "Optional",
                     "OptionalGetElement", "OptionalHasElement"), "only tensor values are supported"),
}


# --------------------------------------------------------------------------------------
# Quantization
# --------------------------------------------------------------------------------------
#: integer types quantization saturates to
QUANT_RANGES = {DType.U8: (0, 255), DType.I8: (-128, 127), DType.U16: (0, 65535), DType.I16: (-32768, 32767)}
FORMAT_RANGES = {"INT4": (-8, 7), "UINT4": (0, 15), "INT2": (-2, 1), "UINT2": (0, 3)}


def _decoded(ctx, index: int) -> Value | None:
    """Input ``index`` with a format decoded (see ``formats``); None when absent."""
    if not ctx.has_input(index):
        return None
    value, fmt = ctx.input(index), ctx.input_format(index)
    return formats.decode(ctx, value, fmt) if fmt is not None else value


def _quant_param(ctx, value: Value, shape: tuple, axis: int, block_size: int) -> Value:
    """A scale or zero point shaped to broadcast against the quantized tensor (per tensor, axis or block)."""
    if value.type.rank == 0 or value.type.num_elements == 1:
        return reshape(ctx, value, [])
    rank = len(shape)
    axis = normalize_axes(ctx, [axis], rank)[0]
    if not block_size:
        if value.type.rank != 1:
            raise ctx.error(f"a per-axis scale or zero point must be 1-D, got {value.type}")
        return reshape(ctx, value, [value.type.shape[0] if a == axis else 1 for a in range(rank)])
    if value.type.rank != rank:
        raise ctx.error(f"a blocked scale or zero point must have the rank of the input, got {value.type}")
    positions = np.arange(shape[axis], dtype=np.int64) // block_size
    return ctx.build(T.GatherOp, [value, ctx.constant(positions)], {"axis": axis})[0]


@converter("QuantizeLinear")
def quantize_linear(ctx):
    """saturate(round(x / scale) + zero_point), rounding half to even, into the zero point's type."""
    x = _decoded(ctx, 0)
    shape = x.type.shape
    axis, block = ctx.attr("axis", 1), ctx.attr("block_size", 0)
    scale = _decoded(ctx, 1)
    precision = ctx.attr("precision")
    dtype = ctx.onnx_dtype(precision, "attribute 'precision'") if precision else scale.type.dtype
    quotient = ctx.build(T.DivOp, [_cast(ctx, x, dtype), _cast(ctx, _quant_param(ctx, scale, shape, axis, block),
                                                                 dtype)])[0]
    zero = _decoded(ctx, 2)
    if ctx.has_input(2):
        target = ctx.input_format(2) or ctx.input_type(2).dtype
    elif ctx.attr("output_dtype"):
        code = ctx.attr("output_dtype")
        target = FORMATS.get(code) or ctx.onnx_dtype(code, "attribute 'output_dtype'")
    else:
        target = DType.U8
    zero = None if zero is None else _cast(ctx, _quant_param(ctx, zero, shape, axis, block), dtype)
    if isinstance(target, Format) and target.kind != "int":
        if zero is not None and target.code not in formats.SATURABLE:
            quotient = ctx.build(T.AddOp, [quotient, zero])[0]
        ctx.result_formats[0] = target
        return [formats.encode(ctx, quotient, target, saturate=bool(ctx.attr("saturate", 1)))]
    low, high = FORMAT_RANGES[target.name] if isinstance(target, Format) else QUANT_RANGES.get(target, (None, None))
    if low is None:
        raise ctx.error(f"cannot quantize to {target}")
    rounded = ctx.build(T.RoundOp, [quotient])[0]
    if zero is not None:
        rounded = ctx.build(T.AddOp, [rounded, zero])[0]
    clipped = ctx.build(T.ClipOp, [rounded], {"min": low, "max": high})[0]
    if isinstance(target, Format):
        ctx.result_formats[0] = target
        return [formats.encode(ctx, clipped, target)]
    return [_cast(ctx, clipped, target)]


@converter("DequantizeLinear")
def dequantize_linear(ctx):
    """(x - zero_point) * scale, computed in float32, in the scale's type (or ``output_dtype``)."""
    fmt = ctx.input_format(0)
    x = _decoded(ctx, 0)
    shape = x.type.shape
    axis, block = ctx.attr("axis", 1), ctx.attr("block_size", 0)
    scale_format = ctx.input_format(1)
    scale = _decoded(ctx, 1)
    centered = _cast(ctx, x, DType.F32)
    if ctx.has_input(2) and not (fmt is not None and fmt.kind == "float"):  # float formats ignore it
        zero = _cast(ctx, _quant_param(ctx, _decoded(ctx, 2), shape, axis, block), DType.F32)
        centered = ctx.build(T.SubOp, [centered, zero])[0]
    y = ctx.build(T.MulOp, [centered, _cast(ctx, _quant_param(ctx, scale, shape, axis, block), DType.F32)])[0]
    code = ctx.attr("output_dtype")
    target = (FORMATS.get(code) or ctx.onnx_dtype(code, "attribute 'output_dtype'")) if code else \
        (scale_format or scale.type.dtype)
    if isinstance(target, Format):
        ctx.result_formats[0] = target
        return [formats.encode(ctx, y, target)]
    return [_cast(ctx, y, target)]


@converter("MatMulInteger")
def matmul_integer(ctx):
    """(A - a_zero_point) @ (B - b_zero_point) in int32; A's zero point is per row, B's per column."""
    a, b = (_cast(ctx, ctx.input(i), DType.I32) for i in (0, 1))
    if ctx.has_input(2):
        zero = _cast(ctx, ctx.input(2), DType.I32)
        if zero.type.rank == 1 and zero.type.shape != (1,):
            zero = reshape(ctx, zero, list(zero.type.shape) + [1])
        a = ctx.build(T.SubOp, [a, zero])[0]
    if ctx.has_input(3):
        b = ctx.build(T.SubOp, [b, _cast(ctx, ctx.input(3), DType.I32)])[0]
    return ctx.build(T.MatMulOp, [a, b])


@converter("QLinearMatMul")
def qlinear_matmul(ctx):
    """Integer matmul of the zero-point-shifted inputs, rescaled and requantized (as onnx's reference does)."""
    if any(ctx.input_format(i) for i in (0, 3, 7)):
        raise ctx.error("float8 QLinearMatMul is not supported")
    a, b = (_cast(ctx, ctx.input(i), DType.I32) for i in (0, 3))
    a = ctx.build(T.SubOp, [a, _cast(ctx, ctx.input(2), DType.I32)])[0]
    b = ctx.build(T.SubOp, [b, _cast(ctx, ctx.input(5), DType.I32)])[0]
    product = ctx.build(T.MatMulOp, [a, b])[0]
    return [_requantize(ctx, product, [ctx.input(1), ctx.input(4)], ctx.input(6), 7)]


def _requantize(ctx, accumulated: Value, scales: list[Value], y_scale: Value, zero_index: int) -> Value:
    """round(acc * (scale_a * scale_b / y_scale) + y_zero_point), saturated to the zero point's type."""
    factor = ctx.build(T.DivOp, [ctx.build(T.MulOp, scales)[0], y_scale])[0]
    scaled = ctx.build(T.MulOp, [_cast(ctx, accumulated, DType.F64), _cast(ctx, factor, DType.F64)])[0]
    target = ctx.input_type(zero_index).dtype if ctx.has_input(zero_index) else ctx.input_type(0).dtype
    if ctx.has_input(zero_index):
        scaled = ctx.build(T.AddOp, [scaled, _cast(ctx, ctx.input(zero_index), DType.F64)])[0]
    low, high = QUANT_RANGES[target]
    rounded = ctx.build(T.RoundOp, [scaled])[0]
    return _cast(ctx, ctx.build(T.ClipOp, [rounded], {"min": low, "max": high})[0], target)


def _integer_conv(ctx, x: Value, x_zero: Value | None, w: Value, w_zero: Value | None, bias: Value | None) -> Value:
    """Conv of zero-point-shifted integers, computed exactly in float64 (sums of 8-bit products)."""
    x = _cast(ctx, x, DType.F64)
    if x_zero is not None:
        x = ctx.build(T.SubOp, [x, _cast(ctx, x_zero, DType.F64)])[0]
    w = _cast(ctx, w, DType.F64)
    if w_zero is not None:
        zero = _cast(ctx, w_zero, DType.F64)
        if zero.type.rank == 1 and zero.type.shape[0] != 1:
            zero = reshape(ctx, zero, [zero.type.shape[0]] + [1] * (w.type.rank - 1))
        w = ctx.build(T.SubOp, [w, zero])[0]
    kernel = list(ctx.attr("kernel_shape") or w.type.shape[2:])
    strides, dilations = _window(ctx, kernel)
    attrs = {"kernel_shape": kernel, "strides": strides, "pads": _explicit_pads(ctx, kernel, strides, dilations),
             "dilations": dilations, "group": ctx.attr("group", 1)}
    operands = [x, w] + ([_cast(ctx, bias, DType.F64)] if bias is not None else [])
    return ctx.build(T.ConvOp, operands, attrs)[0]


@converter("ConvInteger")
def conv_integer(ctx):
    optional = [ctx.input(i) if ctx.has_input(i) else None for i in (2, 3)]
    return [_cast(ctx, _integer_conv(ctx, ctx.input(0), optional[0], ctx.input(1), optional[1], None), DType.I32)]


@converter("QLinearConv")
def qlinear_conv(ctx):
    bias = ctx.input(8) if ctx.has_input(8) else None
    accumulated = _integer_conv(ctx, ctx.input(0), ctx.input(2), ctx.input(3), ctx.input(5), bias)
    w_scale = ctx.input(4)
    if w_scale.type.rank == 1 and w_scale.type.shape[0] != 1:
        w_scale = reshape(ctx, w_scale, [1, w_scale.type.shape[0]] + [1] * (accumulated.type.rank - 2))
    return [_requantize(ctx, accumulated, [ctx.input(1), w_scale], ctx.input(6), 7)]
