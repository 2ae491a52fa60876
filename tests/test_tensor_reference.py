"""Check dialects/tensor_reference.py against ONNX's own backend node tests.

Every single-node case of `onnx.backend.test.case.node.collect_testcases`
whose op is implemented by the reference module is run through the matching
function (inputs by graph-input name, attributes via
`onnx.helper.get_attribute_value`) and compared with the expected outputs
(`rtol`/`atol` of the case; exact for integer/bool outputs; dtypes must match).
"""

from __future__ import annotations

import importlib.util
import pathlib
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

_MODULE_PATH = pathlib.Path(__file__).resolve().parents[1] / "dialects" / "tensor_reference.py"
_spec = importlib.util.spec_from_file_location("fusecc_tensor_reference_under_test", _MODULE_PATH)
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


_REDUCE_KIND = {
    "ReduceSum": "sum",
    "ReduceMean": "mean",
    "ReduceMax": "max",
    "ReduceMin": "min",
    "ReduceProd": "prod",
    "ReduceL1": "l1",
    "ReduceL2": "l2",
    "ReduceLogSum": "log_sum",
    "ReduceLogSumExp": "log_sum_exp",
    "ReduceSumSquare": "sum_square",
}

# ONNX op -> reference function (Reduce* handled through ref.reduce)
_OPS = {
    "Conv": ref.conv,
    "ConvTranspose": ref.conv_transpose,
    "MaxPool": ref.max_pool,
    "AveragePool": ref.average_pool,
    "LRN": ref.lrn,
    "InstanceNormalization": ref.instance_normalization,
    "LayerNormalization": ref.layer_normalization,
    "RMSNormalization": ref.rms_normalization,
    "Softmax": ref.softmax,
    "LogSoftmax": ref.log_softmax,
    "Hardmax": ref.hardmax,
    "Gemm": ref.gemm,
    "Gather": ref.gather,
    "GatherElements": ref.gather_elements,
    "GatherND": ref.gather_nd,
    "ScatterElements": ref.scatter_elements,
    "ScatterND": ref.scatter_nd,
    "Pad": ref.pad,
    "TopK": ref.topk,
    "CumSum": ref.cumsum,
    "DepthToSpace": ref.depth_to_space,
    "SpaceToDepth": ref.space_to_depth,
    "OneHot": ref.one_hot,
    "Trilu": ref.trilu,
    "ArgMax": ref.argmax,
    "ArgMin": ref.argmin,
    "Gelu": ref.gelu,
    "Erf": ref.erf,
    "Mod": ref.mod,
}

def _attrs(node):
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        out[a.name] = v
    return out


def _to_numpy(v):
    return numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else np.asarray(v)


def _run_case(case):
    graph = case.model.graph
    node = graph.node[0]
    inputs, expected = case.data_sets[0]
    by_name = {vi.name: _to_numpy(val) for vi, val in zip(graph.input, inputs)}
    args = [by_name[n] if n else None for n in node.input]
    attrs = _attrs(node)
    expected = [_to_numpy(e) for e in expected]
    n_out = len([o for o in node.output if o])
    op = node.op_type

    if op in _REDUCE_KIND:
        got = ref.reduce(*args[:1], _REDUCE_KIND[op], *args[1:], **attrs)
    else:
        fn = _OPS[op]
        if op == "MaxPool" and n_out > 1:
            attrs["return_indices"] = True
        if op == "LayerNormalization" and n_out > 1:
            attrs["return_stats"] = True
        got = fn(*args, **attrs)
    if not isinstance(got, tuple):
        got = (got,)
    # optional outputs may be skipped with an empty name: select by position
    got = [got[i] for i, name in enumerate(node.output) if name]
    return got, expected


def _cases():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.case.node import collect_testcases

        all_cases = collect_testcases(None)
    params = []
    for case in all_cases:
        nodes = case.model.graph.node
        if len(nodes) != 1 or (nodes[0].op_type not in _OPS and nodes[0].op_type not in _REDUCE_KIND):
            continue
        params.append(pytest.param(case, id=case.name))
    return params


_CASES = _cases()


def test_case_collection_is_not_empty():
    assert len(_CASES) > 300


@pytest.mark.parametrize("case", _CASES)
def test_onnx_backend_case(case):
    with np.errstate(all="ignore"):
        got, expected = _run_case(case)
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        g = np.asarray(g)
        assert g.dtype == e.dtype, f"output {i}: dtype {g.dtype} != expected {e.dtype}"
        assert g.shape == e.shape, f"output {i}: shape {g.shape} != expected {e.shape}"
        if e.dtype.kind in "biuO":
            np.testing.assert_array_equal(g, e, err_msg=f"output {i}")
        else:
            rtol = case.rtol
            if e.dtype.itemsize == 2:
                # float16/bfloat16: the module computes in float32 and rounds once,
                # ONNX's generator rounds every intermediate -> allow 4 ulp.
                rtol = max(rtol, 4 * (2.0**-10 if e.dtype == np.float16 else 2.0**-7))
            np.testing.assert_allclose(
                g.astype(np.float64),
                e.astype(np.float64),
                rtol=rtol,
                atol=case.atol,
                equal_nan=True,
                err_msg=f"output {i}",
            )


# --- a few direct checks of things the backend cases do not cover ---------------


def test_erf_accuracy():
    import math

    x = np.concatenate([np.linspace(-7, 7, 20001), [0.0, -0.0, 1e-30, np.inf, -np.inf]])
    want = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(ref.erf(x), want, rtol=1e-13, atol=1e-15)
    x32 = x.astype(np.float32)
    want32 = np.array([math.erf(float(v)) for v in x32]).astype(np.float32)
    np.testing.assert_allclose(ref.erf(x32), want32, rtol=1e-6, atol=0)
    assert np.isnan(ref.erf(np.array([np.nan])))[0]


def test_conv_groups_and_same_padding_against_direct_sum():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 7, 9)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    y = ref.conv(x, w, b, group=2, strides=[2, 1], dilations=[1, 2], auto_pad="SAME_UPPER")
    pads = ref.resolve_auto_pad("SAME_UPPER", x.shape[2:], [3, 2], [2, 1], [1, 2])
    xp = np.pad(x, [(0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])])
    out = np.zeros((2, 4, *y.shape[2:]), dtype=np.float64)
    for m in range(4):
        g = m // 2
        for oh in range(y.shape[2]):
            for ow in range(y.shape[3]):
                patch = xp[:, g * 3 : g * 3 + 3, oh * 2 : oh * 2 + 3, ow : ow + 3 : 2]
                out[:, m, oh, ow] = (patch * w[m]).sum(axis=(1, 2, 3)) + b[m]
    assert y.shape == (2, 4, 4, 9)
    np.testing.assert_allclose(y, out, rtol=1e-5, atol=1e-5)


def test_depthwise_conv_transpose_roundtrip_shapes():
    x = np.ones((1, 4, 5, 5), dtype=np.float32)
    w = np.ones((4, 1, 3, 3), dtype=np.float32)
    y = ref.conv_transpose(x, w, group=4, strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])
    assert y.shape == (1, 4, 10, 10)
    assert y.dtype == np.float32


def test_shape_helpers():
    assert ref.conv_output_shape([224, 224], [7, 7], [2, 2], [3, 3, 3, 3], [1, 1]) == [112, 112]
    assert ref.pool_output_shape([5, 5], [3, 3], [2, 2], [0, 0, 0, 0], [1, 1], 1) == [2, 2]
    assert ref.pool_output_shape([4], [3], [3], [1, 1], [1], 1) == [2]
    assert ref.resolve_auto_pad("SAME_LOWER", [5], [2], [1], [1]) == [1, 0]
    assert ref.resolve_auto_pad("SAME_UPPER", [5], [2], [1], [1]) == [0, 1]
    assert ref.resolve_auto_pad("VALID", [5, 5], [3, 3], None, None) == [0, 0, 0, 0]


def test_misc_semantics():
    v, i = ref.topk(np.array([[3, 1, 3, 2]]), np.array([3]), largest=1)
    np.testing.assert_array_equal(i, [[0, 2, 3]])
    v, i = ref.topk(np.array([[3, 1, 3, 1]]), np.array([2]), largest=0)
    np.testing.assert_array_equal(i, [[1, 3]])
    x = np.arange(24, dtype=np.float32).reshape(1, 8, 3, 1)
    np.testing.assert_array_equal(ref.space_to_depth(ref.depth_to_space(x, blocksize=2), blocksize=2), x)
    np.testing.assert_array_equal(
        ref.space_to_depth(ref.depth_to_space(x, blocksize=2, mode="CRD"), blocksize=2, mode="CRD"), x
    )
    y = ref.reduce(np.zeros((2, 0)), "max", np.array([1]), keepdims=0)
    assert y.shape == (2,) and np.all(np.isneginf(y))
