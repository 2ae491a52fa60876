"""Pure-numpy reference implementations of the non-trivial ONNX operators.

This module is the *numpy reference* of fusecc's tensor dialect: the reference
interpreter and the constant folder call these functions to compute the value
of a tensor-dialect op.  Semantics follow the latest ONNX opset of each
operator (as shipped with onnx 1.23: e.g. Pad-25, Resize-19, TopK-24,
Reduce*-18/20).

Calling convention (shared by every op function):

* one function per ONNX op, named after the op in snake_case (``reduce``
  covers every ``Reduce*`` op through its ``kind`` argument; ``resize_static``
  is Resize with its sizes and scales already resolved for every axis);
* tensor inputs are positional, in ONNX input order; optional inputs default
  to ``None``; inputs that newer opsets take as tensors (Pad pads, TopK k,
  CumSum axis, OneHot depth, Trilu k, reduce axes) are taken as the tensor
  op's attribute holds them (a python int or list; ``dialects/tensor.py``
  calls them so) or as the ONNX input's numpy array.  Empty ones count as
  "not given" where ONNX allows it;
* attributes are keyword-only, with the exact ONNX attribute names and ONNX
  default values; string attributes may be ``str`` or ``bytes``;
* a numpy array is returned, or a tuple for multi-output ops (``topk``).  A
  few ops whose extra outputs are optional take an extra, non-ONNX keyword to
  request them: ``max_pool(return_indices=True)``,
  ``layer_normalization(return_stats=True)``.

Numerics: floating ops keep the input dtype.  float16/bfloat16 are computed in
float32, float32 in float32 and float64 in float64; a few accumulations
(cumsum, resize weights, normalisation statistics) use float64 internally and
are cast back.  Index outputs are int64.  Everything is vectorised: convs are
im2col + batched matmul, pools use strided window views, resize applies one
dense interpolation matrix per axis.

Only numpy and the standard library are used.
"""

from __future__ import annotations

import itertools
import math
import numpy as np

__all__ = [
    "conv_output_shape",
    "pool_output_shape",
    "resolve_auto_pad",
    "conv",
    "conv_transpose",
    "max_pool",
    "average_pool",
    "lp_pool",
    "lrn",
    "instance_normalization",
    "layer_normalization",
    "rms_normalization",
    "softmax",
    "log_softmax",
    "hardmax",
    "gemm",
    "gather",
    "gather_elements",
    "gather_nd",
    "scatter_elements",
    "scatter_nd",
    "pad",
    "resize_static",
    "grid_sample",
    "topk",
    "cumsum",
    "cumprod",
    "reverse_sequence",
    "depth_to_space",
    "space_to_depth",
    "one_hot",
    "trilu",
    "argmax",
    "argmin",
    "reduce",
    "gelu",
    "erf",
    "mod",
]


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


def _is_float(dtype) -> bool:
    """True for numpy floats and ml_dtypes floats (bfloat16, float8, ...)."""
    dt = np.dtype(dtype)
    return dt.kind == "f" or (dt.kind == "V" and "float" in dt.name)


def _acc_dtype(dtype) -> np.dtype:
    """Computation dtype for a floating input dtype."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def _as_acc(x: np.ndarray) -> np.ndarray:
    return x.astype(_acc_dtype(x.dtype), copy=False)


def _str(s) -> str:
    return s.decode() if isinstance(s, bytes) else str(s)


def _is_given(v) -> bool:
    """ONNX optional input present (``None`` and empty tensors mean absent)."""
    return v is not None and np.asarray(v).size > 0


def _int_list(v, n: int | None = None, default: int | None = None) -> list[int]:
    if v is None or (not isinstance(v, (int, np.integer)) and len(v) == 0):
        assert n is not None and default is not None
        return [default] * n
    return [int(i) for i in np.asarray(v).ravel()]


def _scalar_int(v) -> int:
    return int(np.asarray(v).ravel()[0])


def _norm_axis(axis: int, rank: int) -> int:
    axis = int(axis)
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def _lowest(dtype):
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return False
    if dt.kind in "iu":
        return np.iinfo(dt).min
    return -np.inf


def _highest(dtype):
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return True
    if dt.kind in "iu":
        return np.iinfo(dt).max
    return np.inf


# ---------------------------------------------------------------------------
# shape rules shared with the compiler
# ---------------------------------------------------------------------------


def conv_output_shape(in_spatial, kernel_shape, strides, pads, dilations) -> list[int]:
    """Conv output spatial shape for explicit ``pads`` (begin..., end...)."""
    nd = len(in_spatial)
    strides = _int_list(strides, nd, 1)
    dilations = _int_list(dilations, nd, 1)
    pads = _int_list(pads, 2 * nd, 0)
    out = []
    for i in range(nd):
        ek = (kernel_shape[i] - 1) * dilations[i] + 1
        out.append((in_spatial[i] + pads[i] + pads[nd + i] - ek) // strides[i] + 1)
    return out


def pool_output_shape(in_spatial, kernel_shape, strides, pads, dilations, ceil_mode) -> list[int]:
    """Pool output spatial shape for explicit ``pads`` (begin..., end...).

    With ``ceil_mode`` the last window must start inside the input or the
    begin padding (windows starting in the end padding are dropped), as in
    ONNX/PyTorch.
    """
    nd = len(in_spatial)
    strides = _int_list(strides, nd, 1)
    dilations = _int_list(dilations, nd, 1)
    pads = _int_list(pads, 2 * nd, 0)
    out = []
    for i in range(nd):
        ek = (kernel_shape[i] - 1) * dilations[i] + 1
        span = in_spatial[i] + pads[i] + pads[nd + i] - ek
        if ceil_mode:
            o = -(-span // strides[i]) + 1
            if (o - 1) * strides[i] >= in_spatial[i] + pads[i]:
                o -= 1
        else:
            o = span // strides[i] + 1
        out.append(o)
    return out


def resolve_auto_pad(auto_pad, in_spatial, kernel_shape, strides, dilations, pads=None) -> list[int]:
    """Explicit pads (begin..., end...) for an ``auto_pad`` setting.

    SAME_*: output = ceil(in / stride), total = max((out-1)*stride + (k-1)*d + 1 - in, 0);
    SAME_UPPER puts the odd extra pad at the end, SAME_LOWER at the beginning.
    VALID: zeros.  NOTSET: ``pads`` (zeros if ``None``).
    """
    auto_pad = _str(auto_pad)
    nd = len(in_spatial)
    strides = _int_list(strides, nd, 1)
    dilations = _int_list(dilations, nd, 1)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(nd):
            out = -(-in_spatial[i] // strides[i])
            ek = (kernel_shape[i] - 1) * dilations[i] + 1
            total = max((out - 1) * strides[i] + ek - in_spatial[i], 0)
            small, big = total // 2, total - total // 2
            if auto_pad == "SAME_UPPER":
                begin.append(small)
                end.append(big)
            else:
                begin.append(big)
                end.append(small)
        return begin + end
    if auto_pad == "VALID":
        return [0] * (2 * nd)
    if auto_pad in ("NOTSET", ""):
        return _int_list(pads, 2 * nd, 0)
    raise ValueError(f"unknown auto_pad {auto_pad!r}")


# ---------------------------------------------------------------------------
# convolution & pooling
# ---------------------------------------------------------------------------


def _window_view(x, pads_begin, out, kernel_shape, strides, dilations, fill):
    """Strided view (N, C, *out, *kernel) of all (dilated) windows of ``x``.

    ``x`` is padded with ``fill``: ``pads_begin`` in front and as much as the
    last window needs at the end.
    """
    nd = len(out)
    eks = [(k - 1) * d + 1 for k, d in zip(kernel_shape, dilations)]
    widths = [(0, 0), (0, 0)]
    for i in range(nd):
        need = (out[i] - 1) * strides[i] + eks[i] - x.shape[2 + i] - pads_begin[i]
        widths.append((pads_begin[i], max(need, 0)))
    xp = np.pad(x, widths, mode="constant", constant_values=fill)
    view = np.lib.stride_tricks.sliding_window_view(xp, eks, axis=tuple(range(2, 2 + nd)))
    index = (slice(None), slice(None))
    index += tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out, strides))
    index += tuple(slice(None, None, d) for d in dilations)
    return view[index]


def conv(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """ONNX Conv (1-D/2-D/3-D/N-D, groups incl. depthwise) via im2col + matmul."""
    x, w = np.asarray(x), np.asarray(w)
    dtype = x.dtype
    nd = x.ndim - 2
    ks = list(w.shape[2:])
    strides = _int_list(strides, nd, 1)
    dilations = _int_list(dilations, nd, 1)
    pads = resolve_auto_pad(auto_pad, x.shape[2:], ks, strides, dilations, pads)
    out = conv_output_shape(x.shape[2:], ks, strides, pads, dilations)
    if min(out) <= 0:
        raise ValueError(f"Conv output shape {out} is empty")

    n, c = x.shape[:2]
    m = w.shape[0]
    g = int(group)
    cg, mg = c // g, m // g
    p, kp = math.prod(out), math.prod(ks)
    xa = _as_acc(x)
    win = _window_view(xa, pads[:nd], out, ks, strides, dilations, 0)  # (N, C, *O, *K)
    win = win.reshape(n, g, cg, *out, *ks)
    perm = (0, 1) + tuple(range(3, 3 + nd)) + (2,) + tuple(range(3 + nd, 3 + 2 * nd))
    cols = win.transpose(perm).reshape(n, g, p, cg * kp)  # im2col (copy)
    wr = w.astype(xa.dtype, copy=False).reshape(g, mg, cg * kp).transpose(0, 2, 1)
    y = np.matmul(cols, wr)  # (N, g, P, Mg)
    y = y.transpose(0, 1, 3, 2).reshape(n, m, *out)
    if _is_given(b):
        y = y + np.asarray(b).astype(y.dtype).reshape((1, m) + (1,) * nd)
    return y.astype(dtype, copy=False)


def conv_transpose(
    x,
    w,
    b=None,
    *,
    auto_pad="NOTSET",
    dilations=None,
    group=1,
    kernel_shape=None,
    output_padding=None,
    output_shape=None,
    pads=None,
    strides=None,
):
    """ONNX ConvTranspose (N-D, groups) via matmul + col2im scatter-add.

    Output size: ``stride*(in-1) + output_padding + (k-1)*dil + 1 - pad_begin - pad_end``.
    If ``output_shape`` is given (or auto_pad is SAME_*, where output = in*stride)
    pads are derived from it: total = full - output_shape, SAME_UPPER puts
    ``total//2`` in front, otherwise ``total - total//2`` goes in front; a
    negative total extends the output with zeros.
    """
    x, w = np.asarray(x), np.asarray(w)
    dtype = x.dtype
    auto_pad = _str(auto_pad)
    nd = x.ndim - 2
    in_sp = list(x.shape[2:])
    ks = list(w.shape[2:])
    strides = _int_list(strides, nd, 1)
    dilations = _int_list(dilations, nd, 1)
    output_padding = _int_list(output_padding, nd, 0)[:nd]
    eks = [(k - 1) * d + 1 for k, d in zip(ks, dilations)]
    # length of the un-cropped result, output_padding included (zeros at the end)
    full = [s * (i - 1) + e + op for s, i, e, op in zip(strides, in_sp, eks, output_padding)]

    if output_shape is not None and len(output_shape) > 0:
        target = _int_list(output_shape)[-nd:]
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = [i * s for i, s in zip(in_sp, strides)]
    else:
        target = None
    if target is not None:
        begin = []
        for f, t in zip(full, target):
            total = f - t
            begin.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
    else:
        pads = _int_list(pads, 2 * nd, 0)
        begin = pads[:nd]
        target = [f - pads[i] - pads[nd + i] for i, f in enumerate(full)]

    n, c = x.shape[:2]
    g = int(group)
    cg, mg = c // g, w.shape[1]
    m = mg * g
    p, kp = math.prod(in_sp), math.prod(ks)
    xa = _as_acc(x)
    xr = xa.reshape(n, g, cg, p).transpose(0, 1, 3, 2)  # (N, g, P, Cg)
    wr = w.astype(xa.dtype, copy=False).reshape(g, cg, mg * kp)
    cols = np.matmul(xr, wr)  # (N, g, P, Mg*K)
    cols = cols.reshape(n, g, *in_sp, mg, *ks)
    perm = (0, 1, 2 + nd) + tuple(range(3 + nd, 3 + 2 * nd)) + tuple(range(2, 2 + nd))
    cols = cols.transpose(perm).reshape(n, m, *ks, *in_sp)

    buf = np.zeros((n, m, *full), dtype=xa.dtype)
    for tap in np.ndindex(*ks):
        index = (slice(None), slice(None)) + tuple(
            slice(k * d, k * d + s * (i - 1) + 1, s) for k, d, s, i in zip(tap, dilations, strides, in_sp)
        )
        buf[index] += cols[(slice(None), slice(None)) + tap]

    # crop (or zero-extend) to the target window [begin, begin + target)
    widths = [(0, 0), (0, 0)]
    crop = [slice(None), slice(None)]
    for f, bgn, t in zip(full, begin, target):
        front, back = max(-bgn, 0), max(bgn + t - f, 0)
        widths.append((front, back))
        start = bgn + front
        crop.append(slice(start, start + t))
    if any(wd != (0, 0) for wd in widths):
        buf = np.pad(buf, widths)
    y = buf[tuple(crop)]
    if _is_given(b):
        y = y + np.asarray(b).astype(y.dtype).reshape((1, m) + (1,) * nd)
    return np.ascontiguousarray(y).astype(dtype, copy=False)


def _pool_geometry(x, auto_pad, ceil_mode, dilations, kernel_shape, pads, strides):
    nd = x.ndim - 2
    ks = _int_list(kernel_shape)
    strides = _int_list(strides, nd, 1)
    dilations = _int_list(dilations, nd, 1)
    auto_pad = _str(auto_pad)
    pads = resolve_auto_pad(auto_pad, x.shape[2:], ks, strides, dilations, pads)
    ceil = bool(ceil_mode) and auto_pad in ("NOTSET", "")
    out = pool_output_shape(x.shape[2:], ks, strides, pads, dilations, ceil)
    if min(out) <= 0:
        raise ValueError(f"pool output shape {out} is empty")
    return nd, ks, strides, dilations, pads, out


def max_pool(
    x,
    *,
    auto_pad="NOTSET",
    ceil_mode=0,
    dilations=None,
    kernel_shape=None,
    pads=None,
    storage_order=0,
    strides=None,
    return_indices=False,
):
    """ONNX MaxPool.  ``return_indices=True`` also returns the ``Indices`` output
    (int64 flat indices into X incl. batch/channel; ``storage_order=1`` means
    column-major spatial order)."""
    x = np.asarray(x)
    nd, ks, strides, dilations, pads, out = _pool_geometry(x, auto_pad, ceil_mode, dilations, kernel_shape, pads, strides)
    win = _window_view(x, pads[:nd], out, ks, strides, dilations, _lowest(x.dtype))
    win_axes = tuple(range(2 + nd, 2 + 2 * nd))
    y = win.max(axis=win_axes)
    if not return_indices:
        return y
    flat = win.reshape(*win.shape[: 2 + nd], -1)
    tap = np.unravel_index(flat.argmax(axis=-1), ks)  # per spatial dim: kernel offset
    grid = np.indices(out, sparse=True)
    in_sp = x.shape[2:]
    coords = [grid[i] * strides[i] - pads[i] + tap[i] * dilations[i] for i in range(nd)]
    n, c = x.shape[:2]
    base = (np.arange(n)[:, None] * c + np.arange(c)[None, :]) * math.prod(in_sp)
    base = base.reshape((n, c) + (1,) * nd)
    idx = np.zeros(y.shape, dtype=np.int64)
    if int(storage_order) == 0:  # row major
        for i in range(nd):
            idx = idx * in_sp[i] + coords[i]
    else:  # column major over the spatial dims
        for i in reversed(range(nd)):
            idx = idx * in_sp[i] + coords[i]
    return y, (idx + base).astype(np.int64)


def average_pool(
    x,
    *,
    auto_pad="NOTSET",
    ceil_mode=0,
    count_include_pad=0,
    dilations=None,
    kernel_shape=None,
    pads=None,
    strides=None,
):
    """ONNX AveragePool.  With ``count_include_pad`` the divisor counts the
    (explicit or auto) padding but never the extra ceil_mode overhang."""
    x = np.asarray(x)
    dtype = x.dtype
    nd, ks, strides, dilations, pads, out = _pool_geometry(x, auto_pad, ceil_mode, dilations, kernel_shape, pads, strides)
    xa = _as_acc(x)
    win = _window_view(xa, pads[:nd], out, ks, strides, dilations, 0)
    total = win.sum(axis=tuple(range(2 + nd, 2 + 2 * nd)))
    # the divisor is separable: product over dims of the valid taps per window
    count = np.ones((), dtype=xa.dtype)
    for i in range(nd):
        pos = np.arange(out[i])[:, None] * strides[i] + np.arange(ks[i])[None, :] * dilations[i]
        lo = 0 if count_include_pad else pads[i]
        hi = x.shape[2 + i] + pads[i] + (pads[nd + i] if count_include_pad else 0)
        cnt = ((pos >= lo) & (pos < hi)).sum(axis=1).astype(xa.dtype)
        count = count[..., None] * cnt if count.ndim else cnt
    return (total / count).astype(dtype, copy=False)


def lp_pool(x, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, p=2, pads=None, strides=None):
    """ONNX LpPool: ``(sum |x|^p) ** (1/p)`` over the taps of each window inside the input."""
    x = np.asarray(x)
    nd, ks, strides, dilations, pads, out = _pool_geometry(x, auto_pad, ceil_mode, dilations, kernel_shape, pads, strides)
    xa = _as_acc(x)
    win = _window_view(np.abs(xa) ** p, pads[:nd], out, ks, strides, dilations, 0)
    total = win.sum(axis=tuple(range(2 + nd, 2 + 2 * nd)))
    return (total ** (1.0 / p)).astype(x.dtype, copy=False)


def lrn(x, *, alpha=0.0001, beta=0.75, bias=1.0, size):
    """ONNX LRN: square-sum over channels [c - floor((size-1)/2), c + ceil((size-1)/2)]."""
    x = np.asarray(x)
    xa = _as_acc(x)
    size = int(size)
    lo = (size - 1) // 2
    hi = size - 1 - lo
    sq = np.pad(xa * xa, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    sqsum = np.lib.stride_tricks.sliding_window_view(sq, size, axis=1).sum(axis=-1)
    y = xa / (bias + (alpha / size) * sqsum) ** beta
    return y.astype(x.dtype, copy=False)


# ---------------------------------------------------------------------------
# normalisations
# ---------------------------------------------------------------------------


def _channel_shape(x):
    return (1, -1) + (1,) * (x.ndim - 2)


def instance_normalization(x, scale, b, *, epsilon=1e-5):
    x = np.asarray(x)
    xa = _as_acc(x)
    axes = tuple(range(2, x.ndim))
    mean = xa.mean(axis=axes, keepdims=True, dtype=np.float64)
    var = ((xa - mean) ** 2).mean(axis=axes, keepdims=True)
    cs = _channel_shape(x)
    y = (xa - mean) / np.sqrt(var + epsilon) * np.asarray(scale).reshape(cs) + np.asarray(b).reshape(cs)
    return y.astype(x.dtype)


def _stash_dtype(stash_type, dtype):
    # stash_type 1 = float32; never compute float64 inputs in less than float64
    if np.dtype(dtype) == np.float64 or int(stash_type) == 11:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def layer_normalization(x, scale, b=None, *, axis=-1, epsilon=1e-5, stash_type=1, return_stats=False):
    """ONNX LayerNormalization over dims [axis, rank).  Returns ``Y``, or
    ``(Y, Mean, InvStdDev)`` (stash-type dtype, reduced dims kept) with
    ``return_stats=True``."""
    x = np.asarray(x)
    axis = _norm_axis(axis, x.ndim)
    sd = _stash_dtype(stash_type, x.dtype)
    xs = x.astype(sd)
    axes = tuple(range(axis, x.ndim))
    mean = xs.mean(axis=axes, keepdims=True, dtype=np.float64)
    d = xs - mean
    var = (d * d).mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + epsilon)
    y = d * inv_std * np.asarray(scale).astype(sd)
    if _is_given(b):
        y = y + np.asarray(b).astype(sd)
    y = y.astype(x.dtype)
    if return_stats:
        return y, mean.astype(sd), inv_std.astype(sd)
    return y


def rms_normalization(x, scale, *, axis=-1, epsilon=1e-5, stash_type=1):
    """ONNX RMSNormalization: ``x / sqrt(mean(x^2 over [axis, rank)) + eps) * scale``."""
    x = np.asarray(x)
    axis = _norm_axis(axis, x.ndim)
    sd = _stash_dtype(stash_type, x.dtype)
    xs = x.astype(sd)
    ms = (xs * xs).mean(axis=tuple(range(axis, x.ndim)), keepdims=True, dtype=np.float64)
    y = xs / np.sqrt(ms + epsilon) * np.asarray(scale).astype(sd)
    return y.astype(x.dtype)


# ---------------------------------------------------------------------------
# softmax family
# ---------------------------------------------------------------------------


def softmax(x, *, axis=-1):
    x = np.asarray(x)
    xa = _as_acc(x)
    e = np.exp(xa - xa.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype, copy=False)


def log_softmax(x, *, axis=-1):
    x = np.asarray(x)
    xa = _as_acc(x)
    shifted = xa - xa.max(axis=axis, keepdims=True)
    y = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return y.astype(x.dtype, copy=False)


def hardmax(x, *, axis=-1):
    """1 at the first maximum along ``axis``, 0 elsewhere."""
    x = np.asarray(x)
    idx = np.expand_dims(np.argmax(x, axis=axis), axis)
    y = np.zeros(x.shape, dtype=x.dtype)
    np.put_along_axis(y, idx, 1, axis=axis)
    return y


# ---------------------------------------------------------------------------
# linear algebra
# ---------------------------------------------------------------------------


def gemm(a, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    a, b = np.asarray(a), np.asarray(b)
    dtype = a.dtype
    if _is_float(dtype):
        a, b = _as_acc(a), b.astype(_acc_dtype(dtype), copy=False)
    A = a.T if transA else a
    B = b.T if transB else b
    y = A @ B
    if alpha != 1.0:
        y = alpha * y
    if _is_given(c):
        cc = np.asarray(c)
        y = y + (beta * cc if beta != 1.0 else cc)
    return np.asarray(y).astype(dtype, copy=False)


# ---------------------------------------------------------------------------
# indexing
# ---------------------------------------------------------------------------


def _wrap_indices(indices, dim):
    idx = np.asarray(indices).astype(np.int64)
    return np.where(idx < 0, idx + dim, idx)


def gather(data, indices, *, axis=0):
    data = np.asarray(data)
    axis = _norm_axis(axis, data.ndim)
    return np.take(data, _wrap_indices(indices, data.shape[axis]), axis=axis)


def gather_elements(data, indices, *, axis=0):
    """out[i] = data[i with i[axis] replaced by indices[i]]; the output has the indices' shape, which may
    be smaller than the data's along the other axes too."""
    data = np.asarray(data)
    axis = _norm_axis(axis, data.ndim)
    where = list(np.indices(np.shape(indices), sparse=True))
    where[axis] = _wrap_indices(indices, data.shape[axis])
    return data[tuple(where)]


def gather_nd(data, indices, *, batch_dims=0):
    data = np.asarray(data)
    indices = np.asarray(indices).astype(np.int64)
    bd = int(batch_dims)
    k = indices.shape[-1]
    batch_shape = data.shape[:bd]
    nb = math.prod(batch_shape)
    d = data.reshape((nb,) + data.shape[bd:])
    idx = indices.reshape(nb, -1, k)
    dims = np.asarray(data.shape[bd : bd + k])
    idx = np.where(idx < 0, idx + dims, idx)
    gathered = d[(np.arange(nb)[:, None],) + tuple(idx[..., i] for i in range(k))]
    return gathered.reshape(indices.shape[:-1] + data.shape[bd + k :])


_SCATTER_UFUNC = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _scatter(out, index, updates, reduction):
    reduction = _str(reduction)
    if reduction == "none":
        out[index] = updates
    elif reduction in _SCATTER_UFUNC:
        _SCATTER_UFUNC[reduction].at(out, index, updates)
    else:
        raise ValueError(f"unknown reduction {reduction!r}")
    return out


def scatter_elements(data, indices, updates, *, axis=0, reduction="none"):
    data = np.asarray(data)
    axis = _norm_axis(axis, data.ndim)
    idx = _wrap_indices(indices, data.shape[axis])
    grid = list(np.indices(idx.shape, sparse=True))
    grid[axis] = idx
    return _scatter(data.copy(), tuple(grid), np.asarray(updates).astype(data.dtype), reduction)


def scatter_nd(data, indices, updates, *, reduction="none"):
    data = np.asarray(data)
    idx = np.asarray(indices).astype(np.int64)
    k = idx.shape[-1]
    idx = np.where(idx < 0, idx + np.asarray(data.shape[:k]), idx)
    index = tuple(idx[..., i] for i in range(k))
    return _scatter(data.copy(), index, np.asarray(updates).astype(data.dtype), reduction)


# ---------------------------------------------------------------------------
# data movement
# ---------------------------------------------------------------------------


def pad(data, pads, constant_value=None, axes=None, *, mode="constant"):
    """ONNX Pad-25: modes constant/reflect/edge/wrap; negative pads crop."""
    data = np.asarray(data)
    mode = _str(mode)
    r = data.ndim
    pads = _int_list(pads)
    axes = list(range(r)) if not _is_given(axes) else [_norm_axis(a, r) for a in _int_list(axes)]
    n = len(axes)
    widths = [[0, 0] for _ in range(r)]
    for i, a in enumerate(axes):
        widths[a] = [pads[i], pads[i + n]]
    # negative pads crop the input first
    crop = tuple(
        slice(max(-b, 0), data.shape[a] - max(-e, 0)) for a, (b, e) in enumerate(widths)
    )
    data = data[crop]
    widths = [(max(b, 0), max(e, 0)) for b, e in widths]
    if mode == "constant":
        cv = np.asarray(constant_value).ravel()[0] if _is_given(constant_value) else 0
        return np.pad(data, widths, mode="constant", constant_values=np.asarray(cv).astype(data.dtype))
    if mode in ("reflect", "edge", "wrap"):
        return np.pad(data, widths, mode=mode)
    raise ValueError(f"unknown pad mode {mode!r}")


def depth_to_space(input, *, blocksize, mode="DCR"):  # noqa: A002
    x = np.asarray(input)
    n, c, h, w = x.shape
    bs = int(blocksize)
    if _str(mode) == "DCR":
        t = x.reshape(n, bs, bs, c // bs**2, h, w).transpose(0, 3, 4, 1, 5, 2)
    else:  # CRD
        t = x.reshape(n, c // bs**2, bs, bs, h, w).transpose(0, 1, 4, 2, 5, 3)
    return t.reshape(n, c // bs**2, h * bs, w * bs)


def space_to_depth(input, *, blocksize, mode="DCR"):  # noqa: A002
    """Inverse of depth_to_space (``mode`` attribute new in opset 28, default DCR)."""
    x = np.asarray(input)
    n, c, h, w = x.shape
    bs = int(blocksize)
    t = x.reshape(n, c, h // bs, bs, w // bs, bs)
    if _str(mode) == "DCR":
        t = t.transpose(0, 3, 5, 1, 2, 4)
    else:  # CRD
        t = t.transpose(0, 1, 3, 5, 2, 4)
    return t.reshape(n, c * bs * bs, h // bs, w // bs)


def one_hot(indices, depth, values, *, axis=-1):
    """ONNX OneHot: negative indices wrap once, out-of-range ones give all 'off'."""
    depth = int(np.asarray(depth).ravel()[0])
    values = np.asarray(values)
    idx = np.asarray(indices).astype(np.int64)
    idx = np.where(idx < 0, idx + depth, idx)
    rank = idx.ndim + 1
    axis = _norm_axis(axis, rank)
    classes = np.arange(depth).reshape([-1 if i == axis else 1 for i in range(rank)])
    hot = np.expand_dims(idx, axis) == classes
    return np.where(hot, values.ravel()[1], values.ravel()[0]).astype(values.dtype)


def trilu(input, k=None, *, upper=1):  # noqa: A002
    x = np.asarray(input)
    kk = _scalar_int(k) if _is_given(k) else 0
    return np.triu(x, kk) if upper else np.tril(x, kk)


def cumsum(x, axis, *, exclusive=0, reverse=0):
    x = np.asarray(x)
    ax = _norm_axis(_scalar_int(axis), x.ndim)
    acc = np.float64 if _is_float(x.dtype) else x.dtype
    xa = np.flip(x, ax) if reverse else x
    y = np.cumsum(xa, axis=ax, dtype=acc)
    if exclusive and y.shape[ax] > 0:
        zero_shape = y.shape[:ax] + (1,) + y.shape[ax + 1 :]
        head = (slice(None),) * ax + (slice(0, -1),)
        y = np.concatenate([np.zeros(zero_shape, dtype=y.dtype), y[head]], axis=ax)
    if reverse:
        y = np.flip(y, ax)
    return np.ascontiguousarray(y).astype(x.dtype, copy=False)


def cumprod(x, axis, *, exclusive=0, reverse=0):
    """ONNX CumProd: running products along ``axis`` (exclusive: starting from 1)."""
    x = np.asarray(x)
    ax = _norm_axis(_scalar_int(axis), x.ndim)
    acc = np.float64 if _is_float(x.dtype) else x.dtype
    xa = np.flip(x, ax) if reverse else x
    y = np.cumprod(xa, axis=ax, dtype=acc)
    if exclusive and y.shape[ax] > 0:
        one_shape = y.shape[:ax] + (1,) + y.shape[ax + 1 :]
        head = (slice(None),) * ax + (slice(0, -1),)
        y = np.concatenate([np.ones(one_shape, dtype=y.dtype), y[head]], axis=ax)
    if reverse:
        y = np.flip(y, ax)
    return np.ascontiguousarray(y).astype(x.dtype, copy=False)


def reverse_sequence(x, sequence_lens, *, batch_axis=1, time_axis=0):
    """ONNX ReverseSequence: the first ``sequence_lens[b]`` steps of each batch entry reversed."""
    x = np.asarray(x)
    y = x.copy()
    lens = np.asarray(sequence_lens).astype(np.int64)
    for b, length in enumerate(lens):
        index = [slice(None)] * x.ndim
        index[batch_axis] = b
        index[time_axis] = slice(0, int(length))
        y[tuple(index)] = np.flip(x[tuple(index)], axis=time_axis - (time_axis > batch_axis))
    return y


# ---------------------------------------------------------------------------
# resize
# ---------------------------------------------------------------------------


def _cubic_kernel(d, a):
    d = np.abs(d)
    d2, d3 = d * d, d * d * d
    near = (a + 2) * d3 - (a + 3) * d2 + 1
    far = a * d3 - 5 * a * d2 + 8 * a * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _source_coords(ctm, out_len, in_len, scale, roi_pair):
    """Map output indices to input coordinates (float64), ONNX Resize-19 rules.

    Like the ONNX reference (and its backend test data), 'length_resized' in
    the align_corners / tf_crop_and_resize / half_pixel_symmetric formulas is
    ``scale * in_len`` (fractional when scales are given)."""
    y = np.arange(out_len, dtype=np.float64)
    out_w = scale * in_len
    if ctm == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if ctm == "half_pixel_symmetric":
        adjustment = out_len / out_w
        offset = in_len / 2 * (1 - adjustment)
        return offset + (y + 0.5) / scale - 0.5
    if ctm == "pytorch_half_pixel":  # spec (and onnxruntime): 0 when the output length is 1
        return (y + 0.5) / scale - 0.5 if out_len > 1 else np.zeros(out_len)
    if ctm == "align_corners":
        return y * (in_len - 1) / (out_w - 1) if out_w != 1 else np.zeros(out_len)
    if ctm == "asymmetric":
        return y / scale
    if ctm == "tf_crop_and_resize":
        r0, r1 = roi_pair
        if out_w == 1:
            x = np.full(out_len, (r1 - r0) * (in_len - 1) / 2)
        else:
            x = y * (r1 - r0) * (in_len - 1) / (out_w - 1)
        return x + r0 * (in_len - 1)
    raise ValueError(f"unknown coordinate_transformation_mode {ctm!r}")


def _nearest_index(x, nearest_mode):
    if nearest_mode == "round_prefer_floor":
        return np.where(x - np.floor(x) <= 0.5, np.floor(x), np.ceil(x))
    if nearest_mode == "round_prefer_ceil":
        return np.where(x - np.floor(x) < 0.5, np.floor(x), np.ceil(x))
    if nearest_mode == "floor":
        return np.floor(x)
    if nearest_mode == "ceil":
        return np.ceil(x)
    raise ValueError(f"unknown nearest_mode {nearest_mode!r}")


def _interp_matrix(x, in_len, scale, mode, cubic_a, exclude_outside, antialias):
    """Dense (out, in) interpolation matrix for source coordinates ``x``."""
    base = np.floor(x)
    ratio = x - base
    # like the ONNX reference, an integral coordinate uses the left neighbour
    # with ratio 1 (only matters for which taps exclude_outside drops)
    integral = ratio == 0
    base = np.where(integral, base - 1, base)
    ratio = np.where(integral, 1.0, ratio)
    support = 1 if mode == "linear" else 2
    s_eff = min(scale, 1.0) if antialias else 1.0
    start = int(math.floor(-support / s_eff)) + 1
    taps = np.arange(start, 1 - start + 1)  # 2 - 2*start taps
    dist = (taps[None, :] - ratio[:, None]) * s_eff
    if mode == "linear":
        wts = np.clip(1 - np.abs(dist), 0, 1)
    else:
        wts = _cubic_kernel(dist, cubic_a)
    if antialias:
        wts = wts / wts.sum(axis=1, keepdims=True)
    pos = base.astype(np.int64)[:, None] + taps[None, :]
    if exclude_outside:
        wts = np.where((pos < 0) | (pos >= in_len), 0.0, wts)
        tot = wts.sum(axis=1, keepdims=True)
        wts = wts / np.where(tot == 0, 1.0, tot)
    mat = np.zeros((len(x), in_len), dtype=np.float64)
    rows = np.broadcast_to(np.arange(len(x))[:, None], pos.shape)
    np.add.at(mat, (rows, np.clip(pos, 0, in_len - 1)), wts)
    return mat


def resize_static(x, sizes, scales, roi=None, *, mode="nearest", coordinate_transformation_mode="half_pixel",
                  nearest_mode="round_prefer_floor", cubic_coeff_a=-0.75, exclude_outside=0,
                  extrapolation_value=0.0, antialias=0):
    """Resize with the output ``sizes`` and per-axis ``scales`` resolved for every axis (what
    the frontend resolves from Resize's inputs); ``roi`` holds every axis's start, then every axis's end."""
    x = np.asarray(x)
    dtype = x.dtype
    r = x.ndim
    mode, ctm, nearest_mode = _str(mode), _str(coordinate_transformation_mode), _str(nearest_mode)
    if mode == "nearest" and antialias:
        raise ValueError("antialias is not supported with mode='nearest'")
    y = x if mode == "nearest" else x.astype(np.float64)
    for a in range(r):
        in_len, out_len, scale = x.shape[a], int(sizes[a]), float(scales[a])
        roi_pair = (float(roi[a]), float(roi[r + a])) if roi is not None else (0.0, 1.0)
        if out_len == in_len and math.isclose(scale, 1.0) and (
            ctm != "tf_crop_and_resize" or (math.isclose(roi_pair[0], 0) and math.isclose(roi_pair[1], 1))
        ):
            continue  # identity along this axis
        src = _source_coords(ctm, out_len, in_len, scale, roi_pair)
        if mode == "nearest":
            idx = np.clip(_nearest_index(src, nearest_mode), 0, in_len - 1).astype(np.int64)
            y = np.take(y, idx, axis=a)
        elif mode in ("linear", "cubic"):
            mat = _interp_matrix(src, in_len, scale, mode, float(cubic_coeff_a), bool(exclude_outside), bool(antialias))
            y = np.moveaxis(np.tensordot(mat, np.moveaxis(y, a, 0), axes=1), 0, a)
        else:
            raise ValueError(f"unknown resize mode {mode!r}")
        if ctm == "tf_crop_and_resize":
            outside = (src < 0) | (src > in_len - 1)
            if outside.any():
                shape = [1] * r
                shape[a] = out_len
                y = np.where(outside.reshape(shape), extrapolation_value, y)
    if y.dtype != dtype:
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            y = np.clip(np.round(y), info.min, info.max)
        y = y.astype(dtype)
    return np.ascontiguousarray(y)


# ---------------------------------------------------------------------------
# grid sample
# ---------------------------------------------------------------------------


def _reflect(v, low, high):
    """Reflect coordinates by the nearer border until they are inside [low, high] (ONNX GridSample)."""
    span = high - low
    below, above = v < low, v > high
    distance = np.where(below, low - v, np.where(above, v - high, 0.0))
    folds = np.trunc(distance / span) if span > 0 else np.zeros_like(distance)
    rest = distance - folds * span
    even = np.mod(folds, 2) == 0
    from_low = np.where(even, low + rest, high - rest)
    from_high = np.where(even, high - rest, low + rest)
    return np.where(below, from_low, np.where(above, from_high, v))


def _cubic_coefficients(t, a=-0.75):
    """Keys' cubic convolution weights of the taps at -1, 0, 1, 2 for a fraction ``t`` in [0, 1)."""
    def near(d):
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def grid_sample(x, grid, *, align_corners=0, mode="linear", padding_mode="zeros"):
    """ONNX GridSample (opset 20+ mode names; 'bilinear'/'bicubic' accepted) for any number of spatial axes.

    Coordinates are float32 as in onnx's reference; ``grid[..., 0]`` indexes the last spatial axis."""
    x = np.asarray(x)
    grid = np.asarray(grid)
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(_str(mode), _str(mode))
    padding_mode = _str(padding_mode)
    n, c = x.shape[:2]
    dims = x.shape[2:]
    r = len(dims)
    out_spatial = grid.shape[1:-1]
    coords, borders = [], []
    for i, dim in enumerate(dims):
        g = grid[..., r - 1 - i].astype(np.float32)
        if align_corners:
            v = (g + np.float32(1)) / np.float32(2) * np.float32(dim - 1)
            borders.append((0.0, dim - 1.0))
        else:
            v = ((g + np.float32(1)) * np.float32(dim) - np.float32(1)) / np.float32(2)
            borders.append((-0.5, dim - 0.5))
        coords.append(v.astype(np.float32))
    if mode == "nearest":
        coords = [np.rint(v) for v in coords]
    for i, (v, (low, high)) in enumerate(zip(coords, borders)):
        if padding_mode == "border":
            coords[i] = np.where((v < low) | (v > high), np.clip(v, 0, dims[i] - 1), v).astype(np.float32)
        elif padding_mode == "reflection":
            coords[i] = _reflect(v.astype(np.float64), low, high).astype(np.float32)

    batch = np.arange(n).reshape((n, 1) + (1,) * len(out_spatial))
    channel = np.arange(c).reshape((1, c) + (1,) * len(out_spatial))

    def pixel(indices):
        """x[n, c, indices...] with the padding mode for indices outside (each [n, *out] int)."""
        inside = np.ones((n,) + tuple(out_spatial), dtype=bool)
        fixed = []
        for i, index in enumerate(indices):
            if padding_mode == "zeros":
                inside &= (index >= 0) & (index < dims[i])
                index = np.clip(index, 0, dims[i] - 1)
            elif padding_mode == "border":
                index = np.clip(index, 0, dims[i] - 1)
            else:
                index = np.trunc(_reflect(index.astype(np.float64), *borders[i])).astype(np.int64)
            fixed.append(index[:, None])
        values = x[(batch, channel) + tuple(fixed)]
        return np.where(inside[:, None], values, 0)

    if mode == "nearest":
        return pixel([v.astype(np.int64) for v in coords]).astype(x.dtype)
    taps_per_axis = []
    for v in coords:
        base = np.floor(v)
        t = (v - base).astype(x.dtype if x.dtype.kind == "f" else np.float32)
        base = base.astype(np.int64)
        if mode == "linear":
            taps_per_axis.append([(base, 1 - t), (base + 1, t)])
        elif mode == "cubic":
            weights = _cubic_coefficients(t)
            taps_per_axis.append([(base + k - 1, weights[k]) for k in range(4)])
        else:
            raise ValueError(f"unknown GridSample mode {mode!r}")
    total = 0
    for combination in itertools.product(*taps_per_axis):
        weight = 1
        for _, w in combination:
            weight = weight * w
        total = total + weight[:, None] * pixel([index for index, _ in combination])
    return np.asarray(total).astype(x.dtype)


# ---------------------------------------------------------------------------
# sorting / arg / reductions
# ---------------------------------------------------------------------------


def topk(x, k, *, axis=-1, largest=1, sorted=1):  # noqa: A002 - ONNX attribute name
    """ONNX TopK: ``(values, indices int64)``; ties keep the lower index first.
    Results are always sorted (allowed for ``sorted=0``)."""
    x = np.asarray(x)
    axis = _norm_axis(axis, x.ndim)
    kk = _scalar_int(k)
    n = x.shape[axis]
    if largest:
        # stable ascending sort of the reversed axis, read backwards:
        # descending values, equal values in increasing original index
        order = np.argsort(np.flip(x, axis), axis=axis, kind="stable")
        order = (n - 1) - np.flip(order, axis)
    else:
        order = np.argsort(x, axis=axis, kind="stable")
    idx = np.take(order, np.arange(kk), axis=axis).astype(np.int64)
    return np.take_along_axis(x, idx, axis=axis), idx


def _arg_reduce(fn, x, axis, keepdims, select_last_index):
    x = np.asarray(x)
    axis = _norm_axis(axis, x.ndim)
    if select_last_index:
        idx = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis)
    else:
        idx = fn(x, axis=axis)
    idx = idx.astype(np.int64)
    return np.expand_dims(idx, axis) if keepdims else idx


def argmax(data, *, axis=0, keepdims=1, select_last_index=0):
    return _arg_reduce(np.argmax, data, axis, keepdims, select_last_index)


def argmin(data, *, axis=0, keepdims=1, select_last_index=0):
    return _arg_reduce(np.argmin, data, axis, keepdims, select_last_index)


_REDUCE_KINDS = ("sum", "mean", "max", "min", "prod", "l1", "l2", "log_sum", "log_sum_exp", "sum_square")


def reduce(data, kind, axes=None, keepdims=1, noop_with_empty_axes=0):
    """All ONNX Reduce* ops: ``kind`` in sum, mean, max, min, prod, l1, l2,
    log_sum, log_sum_exp, sum_square.  ``axes`` is the (opset 18+) input
    tensor.  Empty/None axes reduce everything unless
    ``noop_with_empty_axes``, in which case only the element-wise part of
    the reduction is applied (|x| for l1/l2, x^2 for sum_square, log for
    log_sum, identity otherwise).  Reducing an empty set yields the identity
    of the reduction (0, 1, -inf/+inf or the integer limits, -inf for the log
    reductions, NaN for mean)."""
    kind = _str(kind).lower()
    if kind not in _REDUCE_KINDS:
        raise ValueError(f"unknown reduction kind {kind!r}")
    x = np.asarray(data)
    dtype = x.dtype
    if not _is_given(axes):
        if noop_with_empty_axes:
            elementwise = {
                "l1": np.abs,
                "l2": np.abs,
                "sum_square": np.square,
                "log_sum": np.log,
            }.get(kind)
            return elementwise(x).astype(dtype) if elementwise else x.copy()
        ax = tuple(range(x.ndim))
    else:
        ax = tuple(sorted({_norm_axis(a, x.ndim) for a in _int_list(axes)}))
    kd = bool(keepdims)

    if kind == "max":
        return np.max(x, axis=ax, keepdims=kd, initial=_lowest(dtype))
    if kind == "min":
        return np.min(x, axis=ax, keepdims=kd, initial=_highest(dtype))

    is_float = _is_float(dtype)
    xa = _as_acc(x) if is_float else x
    acc = xa.dtype if is_float else None
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "sum":
            y = np.sum(xa, axis=ax, keepdims=kd, dtype=acc or dtype)
        elif kind == "mean":
            y = np.mean(xa, axis=ax, keepdims=kd, dtype=acc or np.float64)
        elif kind == "prod":
            y = np.prod(xa, axis=ax, keepdims=kd, dtype=acc or dtype)
        elif kind == "l1":
            y = np.sum(np.abs(xa), axis=ax, keepdims=kd, dtype=acc or dtype)
        elif kind == "l2":
            y = np.sqrt(np.sum(np.square(xa.astype(acc or np.float64)), axis=ax, keepdims=kd))
        elif kind == "sum_square":
            y = np.sum(np.square(xa), axis=ax, keepdims=kd, dtype=acc or dtype)
        elif kind == "log_sum":
            y = np.log(np.sum(xa.astype(acc or np.float64), axis=ax, keepdims=kd))
        else:  # log_sum_exp, shifted by the max for stability
            xf = xa.astype(acc or np.float64)
            m = np.max(xf, axis=ax, keepdims=True, initial=-np.inf)
            m = np.where(np.isfinite(m), m, 0)
            shifted = np.log(np.sum(np.exp(xf - m), axis=ax, keepdims=True))
            # an integer result is the maximum plus the truncated log (ONNX Runtime's), not log truncated
            y = shifted + m if is_float else np.trunc(shifted).astype(dtype) + m.astype(dtype)
            if not kd:
                y = np.squeeze(y, axis=ax)
    return np.asarray(y).astype(dtype)


# ---------------------------------------------------------------------------
# element-wise ops with non-trivial semantics
# ---------------------------------------------------------------------------

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _erf_f64(x: np.ndarray) -> np.ndarray:
    """erf in float64 to ~1e-15: positive power series for |x| < 3,
    continued fraction for erfc beyond."""
    a = np.abs(x)
    out = np.empty_like(a)
    small = a < 3.0
    xs = a[small]
    if xs.size:
        # erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_n (2x^2)^n x / (2n+1)!!  (all terms positive)
        two_x2 = 2.0 * xs * xs
        term = xs.copy()
        total = xs.copy()
        for n in range(1, 200):
            term = term * two_x2 / (2 * n + 1)
            total += term
            if not np.any(term > 1e-17 * total):
                break
        out[small] = _TWO_OVER_SQRT_PI * np.exp(-xs * xs) * total
    xl = a[~small]
    if xl.size:
        # erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
        with np.errstate(invalid="ignore", over="ignore"):
            t = xl.copy()
            for n in range(80, 0, -1):
                t = xl + (n / 2.0) / t
            erfc = np.exp(-xl * xl) / (math.sqrt(math.pi) * t)
        out[~small] = np.where(np.isinf(xl), 0.0, erfc)
        out[~small] = 1.0 - out[~small]
    return np.copysign(out, x)


def erf(x):
    """ONNX Erf, vectorised (float64 internally, accurate to float64 ~1e-15)."""
    x = np.asarray(x)
    return _erf_f64(x.astype(np.float64)).astype(x.dtype)


def gelu(x, *, approximate="none"):
    x = np.asarray(x)
    xd = x.astype(np.float64)
    if _str(approximate) == "tanh":
        y = 0.5 * xd * (1 + np.tanh(math.sqrt(2 / math.pi) * (xd + 0.044715 * xd**3)))
    else:
        y = 0.5 * xd * (1 + _erf_f64(xd / math.sqrt(2)))
    return y.astype(x.dtype)


def mod(a, b, *, fmod=0):
    """ONNX Mod: ``fmod=0`` -> sign of the divisor (numpy.mod), ``fmod=1`` ->
    C fmod (sign of the dividend).  Integer division by zero yields 0."""
    a, b = np.asarray(a), np.asarray(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.fmod(a, b) if fmod else np.mod(a, b)
    return y.astype(np.result_type(a, b), copy=False)
