"""Tests for the ONNX frontend (fusecc.frontend.onnx_import)."""

import glob
import os
import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from fusecc.frontend.onnx_import import FrontendError, NeedsConstantInput, import_model, supported_ops
from fusecc.ir import parse_module, print_module

F = TP.FLOAT
LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
LIGHT_MODELS = sorted(glob.glob(os.path.join(LIGHT_DIR, "light_*.onnx")))


def make_model(nodes, inputs, outputs, initializers=None, opset=13):
    """inputs: {name: (elem_type, shape)}; outputs: names; initializers: {name: array}."""
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(name, elem, shape) for name, (elem, shape) in inputs.items()],
        [helper.make_empty_tensor_value_info(name) for name in outputs],
        [numpy_helper.from_array(np.asarray(a), name) for name, a in (initializers or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def import_text(model, **kwargs):
    module = import_model(model, **kwargs)
    module.verify()
    text = print_module(module)
    assert print_module(parse_module(text)) == text
    return module, text


def ops_of(module):
    return [op.name for op in module.main.body.ops]


def i64(*values):
    return np.array(values, dtype=np.int64)


# --------------------------------------------------------------------------------------
# Structure of the imported IR
# --------------------------------------------------------------------------------------
def test_reshape_resolves_zero_and_minus_one():
    model = make_model([helper.make_node("Reshape", ["x", "shape"], ["y"], name="r")],
                       {"x": (F, [2, 3, 4])}, ["y"], {"shape": i64(0, -1)})
    module, text = import_text(model)
    assert ops_of(module) == ["tensor.reshape", "func.return"]
    assert 'tensor.reshape(%x) {shape = [2, 12]} : tensor<2x12xf32> loc("r")' in text
    assert module.main.attributes == {"input_names": ["x"], "output_names": ["y"]}


def test_reshape_allowzero_keeps_zero():
    model = make_model([helper.make_node("Reshape", ["x", "shape"], ["y"], allowzero=1)],
                       {"x": (F, [0, 3])}, ["y"], {"shape": i64(3, 0)}, opset=14)
    _, text = import_text(model)
    assert "{shape = [3, 0]} : tensor<3x0xf32>" in text


def test_shape_gather_unsqueeze_concat_reshape_folds():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes"], ["batch1"]),
        helper.make_node("Concat", ["batch1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"], name="flatten"),
    ]
    model = make_model(nodes, {"x": (F, [2, 3, 4])}, ["y"],
                       {"zero": np.array(0, dtype=np.int64), "axes": i64(0), "minus1": i64(-1)})
    module, text = import_text(model)
    assert ops_of(module) == ["tensor.reshape", "func.return"]
    assert '{shape = [2, 12]} : tensor<2x12xf32> loc("flatten")' in text


def test_shape_of_dynamic_input_stays_an_op():
    nodes = [helper.make_node("Shape", ["x"], ["s"], end=1), helper.make_node("Shape", ["x"], ["t"], start=1)]
    module, text = import_text(make_model(nodes, {"x": (F, ["N", 3])}, ["s", "t"], opset=15))
    assert ops_of(module) == ["tensor.shape", "tensor.slice", "tensor.constant", "func.return"]
    assert "-> (tensor<1xi64>, tensor<1xi64>)" in text
    assert "dense<3> : tensor<1xi64>" in text


@pytest.mark.parametrize("auto_pad, pads", [("SAME_UPPER", [0, 0, 1, 1]), ("SAME_LOWER", [1, 1, 0, 0]),
                                            ("VALID", [0, 0, 0, 0])])
def test_conv_auto_pad_becomes_explicit_pads(auto_pad, pads):
    weight = np.ones((4, 3, 3, 3), dtype=np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv1", auto_pad=auto_pad, strides=[2, 2])
    module, text = import_text(make_model([node], {"x": (F, [1, 3, 6, 6])}, ["y"], {"w": weight}))
    size = 2 if auto_pad == "VALID" else 3
    assert (f"tensor.conv(%x, %0) {{kernel_shape = [3, 3], strides = [2, 2], pads = {pads}, dilations = [1, 1], "
            f"group = 1}} : tensor<1x4x{size}x{size}xf32>") in text
    assert "dense_resource<w> : tensor<4x3x3x3xf32>" in text


def test_softmax_before_opset_13_is_coerced_to_2d():
    node = helper.make_node("Softmax", ["x"], ["y"])
    module, text = import_text(make_model([node], {"x": (F, [2, 3, 4])}, ["y"], opset=11))
    assert ops_of(module) == ["tensor.reshape", "tensor.softmax", "tensor.reshape", "func.return"]
    assert "{shape = [2, 12]} : tensor<2x12xf32>" in text
    assert "tensor.softmax(%0) {axis = -1} : tensor<2x12xf32>" in text
    assert "{shape = [2, 3, 4]} : tensor<2x3x4xf32>" in text

    module, text = import_text(make_model([node], {"x": (F, [2, 3, 4])}, ["y"], opset=13))
    assert ops_of(module) == ["tensor.softmax", "func.return"]
    assert "tensor.softmax(%x) {axis = -1} : tensor<2x3x4xf32>" in text


def test_clip_attributes_before_opset_11_and_inputs_after():
    old = helper.make_node("Clip", ["x"], ["y"], min=0.0, max=6.0)
    _, text = import_text(make_model([old], {"x": (F, [4])}, ["y"], opset=10))
    assert "tensor.clip(%x) {min = 0.0, max = 6.0} : tensor<4xf32>" in text

    new = helper.make_node("Clip", ["x", "lo", ""], ["y"])
    module, text = import_text(make_model([new], {"x": (F, [4])}, ["y"], {"lo": np.array(-1.5, np.float32)}))
    assert ops_of(module) == ["tensor.clip", "func.return"]
    assert "tensor.clip(%x) {min = -1.5} : tensor<4xf32>" in text


def test_variadic_ops_and_aliases():
    nodes = [
        helper.make_node("Mean", ["a", "b", "c"], ["m"]),
        helper.make_node("Dropout", ["m"], ["d"]),
        helper.make_node("Identity", ["d"], ["y"]),
        helper.make_node("Sum", ["a"], ["z"]),
    ]
    module, text = import_text(make_model(nodes, {n: (F, [3]) for n in "abc"}, ["y", "z"], opset=11))
    assert ops_of(module) == ["tensor.add", "tensor.add", "tensor.constant", "tensor.mul", "func.return"]
    assert "dense<0.33333334> : tensor<f32>" in text
    assert "func.return(%3, %a)" in text


def test_constants_fold_and_small_ones_print_inline():
    nodes = [
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.arange(4, dtype=np.float32))),
        helper.make_node("Add", ["c", "c"], ["two_c"]),
        helper.make_node("Mul", ["x", "two_c"], ["y"]),
        helper.make_node("Add", ["x", "big"], ["z"]),
    ]
    model = make_model(nodes, {"x": (F, [4])}, ["y", "z"], {"big": np.ones((5, 4), np.float32)})
    module, text = import_text(model)
    assert ops_of(module) == ["tensor.constant", "tensor.mul", "tensor.constant", "tensor.add", "func.return"]
    assert "dense<[0.0, 2.0, 4.0, 6.0]> : tensor<4xf32>" in text
    assert "dense_resource<big> : tensor<5x4xf32>" in text


def test_names_are_sanitized_and_kept_as_attributes():
    nodes = [helper.make_node("Relu", ["gpu_0/data:0"], ["out/1"]), helper.make_node("Neg", ["0in"], ["out2"])]
    model = make_model(nodes, {"gpu_0/data:0": (F, [2]), "0in": (F, [2])}, ["out/1", "out2"])
    module, text = import_text(model)
    assert text.startswith("func @main(%gpu_0_data_0: tensor<2xf32>, %v0in: tensor<2xf32>)")
    assert module.main.attributes["input_names"] == ["gpu_0/data:0", "0in"]
    assert module.main.attributes["output_names"] == ["out/1", "out2"]
    assert 'loc("Relu#0")' in text


def test_input_shapes_override_symbolic_dims():
    model = make_model([helper.make_node("Flatten", ["x"], ["y"])], {"x": (F, ["N", 3, 4])}, ["y"])
    with pytest.raises(FrontendError, match=r"pass input_shapes=\{'x': \(\.\.\.\)\}"):
        import_model(model)
    _, text = import_text(model, input_shapes={"x": (2, 3, 4)})
    assert "{shape = [2, 12]} : tensor<2x12xf32>" in text
    with pytest.raises(FrontendError, match="rank 2"):
        import_model(model, input_shapes={"x": (2, 12)})
    with pytest.raises(FrontendError, match="'y'.*not graph inputs"):
        import_model(model, input_shapes={"y": (2, 12)})


def test_unsorted_graph_is_imported_in_dependency_order():
    nodes = [helper.make_node("Neg", ["t"], ["y"]), helper.make_node("Relu", ["x"], ["t"])]
    module, _ = import_text(make_model(nodes, {"x": (F, [2])}, ["y"]))
    assert ops_of(module) == ["tensor.relu", "tensor.neg", "func.return"]


def test_supported_ops():
    ops = supported_ops()
    assert ops == sorted(ops)
    assert {"Conv", "Gemm", "Reshape", "Softmax", "Dropout", "Mean", "GlobalAveragePool", "Clip", "Resize",
            "TopK", "Attention", "GatherElements", "ScatterND"} <= set(ops)
    assert len(ops) >= 110
    assert not {"NonZero", "Unique", "If", "Loop", "RandomNormal"} & set(ops)


# --------------------------------------------------------------------------------------
# Each converter against ONNX shape inference
# --------------------------------------------------------------------------------------
def _node(op_type, inputs, outputs=("y",), **attrs):
    return helper.make_node(op_type, list(inputs), list(outputs), **attrs)


X234 = {"x": (F, [2, 3, 4])}
IMG = {"x": (F, [1, 4, 6, 6])}
CHANNELS = {n: np.linspace(0.5, 1.5, 4).astype(np.float32) for n in ("scale", "bias", "mean", "var")}

# (id, nodes, inputs, initializers, opset)
CASES = [
    ("gemm", [_node("Gemm", "abc", transB=1, alpha=0.5)], {"a": (F, [2, 3]), "b": (F, [5, 3]), "c": (F, [5])}, {}, 13),
    ("matmul", [_node("MatMul", "ab")], {"a": (F, [2, 2, 3]), "b": (F, [3, 5])}, {}, 13),
    ("batchnorm9", [_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"])], IMG, CHANNELS, 9),
    ("batchnorm15", [_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], epsilon=1e-3)], IMG,
     CHANNELS, 15),
    ("cast", [_node("Cast", "x", to=TP.INT32)], X234, {}, 13),
    ("castlike", [_node("CastLike", ["x", "like"])], X234, {"like": np.zeros(1, np.float64)}, 15),
    ("pad10", [_node("Pad", "x", pads=[0, 1, 2, 0, 0, 1], mode="reflect")], X234, {}, 10),
    ("pad18_axes", [_node("Pad", ["x", "pads", "value", "axes"])], X234,
     {"pads": i64(1, 2, 3, 4), "value": np.array(1.5, np.float32), "axes": i64(0, -1)}, 18),
    ("slice9", [_node("Slice", "x", starts=[1], ends=[100], axes=[2])], X234, {}, 9),
    ("slice13", [_node("Slice", ["x", "starts", "ends", "axes", "steps"])], X234,
     {"starts": i64(-1, 0), "ends": i64(-100, 3), "axes": i64(2, 1), "steps": i64(-2, 2)}, 13),
    ("split_equal", [_node("Split", "x", ["p", "q"], axis=2)], X234, {}, 11),
    ("split_input", [_node("Split", ["x", "sizes"], ["p", "q"], axis=1)], X234, {"sizes": i64(1, 2)}, 13),
    ("split_num_outputs", [_node("Split", "x", ["p", "q", "r"], axis=-1, num_outputs=3)], {"x": (F, [2, 5])}, {}, 18),
    ("reducesum11", [_node("ReduceSum", "x", axes=[1], keepdims=0)], X234, {}, 11),
    ("reducesum13", [_node("ReduceSum", ["x", "axes"])], X234, {"axes": i64(-1, 0)}, 13),
    ("reducemean18_all", [_node("ReduceMean", "x", keepdims=0)], X234, {}, 18),
    ("reducemax_noop", [_node("ReduceMax", "x", noop_with_empty_axes=1)], X234, {}, 18),
    ("reducel2", [_node("ReduceL2", "x", axes=[2])], X234, {}, 13),
    ("argmax", [_node("ArgMax", "x", axis=1, keepdims=0)], X234, {}, 13),
    ("topk", [_node("TopK", ["x", "k"], ["v", "i"], axis=1)], X234, {"k": i64(2)}, 11),
    ("expand", [_node("Expand", ["x", "shape"])], {"x": (F, [3, 1])}, {"shape": i64(2, 3, 4)}, 13),
    ("tile", [_node("Tile", ["x", "reps"])], X234, {"reps": i64(1, 2, 3)}, 13),
    ("onehot", [_node("OneHot", ["idx", "depth", "values"], axis=0)], {"idx": (TP.INT64, [3])},
     {"depth": np.array(5, np.int64), "values": np.array([0, 1], np.float32)}, 11),
    ("range", [_node("Range", ["start", "limit", "delta"], ["r"]), _node("Add", ["x", "r"])], {"x": (F, [5])},
     {"start": np.array(1.0, np.float32), "limit": np.array(6.0, np.float32), "delta": np.array(1.0, np.float32)},
     11),
    ("constantofshape", [_node("ConstantOfShape", ["shape"], ["c"], value=numpy_helper.from_array(
        np.array([2], np.int64))), _node("Mul", ["x", "c"])], {"x": (TP.INT64, [2, 3])}, {"shape": i64(2, 3)}, 13),
    ("where", [_node("Less", ["x", "zero"], ["m"]), _node("Where", ["m", "zero", "x"])], X234,
     {"zero": np.zeros(1, np.float32)}, 13),
    ("logic", [_node("Not", "a", ["n"]), _node("Xor", ["n", "b"], ["y"])], {"a": (TP.BOOL, [4]), "b": (TP.BOOL, [4])},
     {}, 13),
    ("pow_int_exponent", [_node("Pow", ["x", "e"])], X234, {"e": np.array(2, np.int64)}, 15),
    ("prelu", [_node("PRelu", ["x", "slope"])], IMG, {"slope": np.full((4, 1, 1), 0.1, np.float32)}, 13),
    ("activations", [_node("LeakyRelu", "x", ["a"], alpha=0.2), _node("Elu", "a", ["b"]), _node("Selu", "b", ["c"]),
                     _node("HardSigmoid", "c", ["d"]), _node("HardSwish", "d", ["e"]), _node("Softplus", "e", ["f"]),
                     _node("Softsign", "f", ["g"]), _node("Mish", "g", ["h"]), _node("Celu", "h", ["i"]),
                     _node("Erf", "i", ["j"]), _node("Gelu", "j", approximate="tanh")], X234, {}, 20),
    ("lrn", [_node("LRN", "x", size=3)], IMG, {}, 13),
    ("layernorm", [_node("LayerNormalization", ["x", "s", "b"], axis=-1)], X234,
     {"s": np.ones(4, np.float32), "b": np.zeros(4, np.float32)}, 17),
    ("rmsnorm", [_node("RMSNormalization", ["x", "s"], axis=-1)], X234, {"s": np.ones(4, np.float32)}, 23),
    ("instancenorm", [_node("InstanceNormalization", ["x", "s", "b"])], IMG,
     {"s": np.ones(4, np.float32), "b": np.zeros(4, np.float32)}, 13),
    ("einsum", [_node("Einsum", "ab", equation="ij,jk->ik")], {"a": (F, [2, 3]), "b": (F, [3, 4])}, {}, 13),
    ("trilu", [_node("Trilu", ["x", "k"], upper=0)], X234, {"k": np.array(1, np.int64)}, 14),
    ("cumsum", [_node("CumSum", ["x", "axis"], reverse=1)], X234, {"axis": np.array(1, np.int64)}, 14),
    ("depth_space", [_node("DepthToSpace", "x", ["d"], blocksize=2), _node("SpaceToDepth", "d", blocksize=2)], IMG,
     {}, 13),
    ("transpose_concat_gather", [_node("Transpose", "x", ["t"]), _node("Concat", ["t", "t"], ["c"], axis=0),
                                 _node("Gather", ["c", "idx"], axis=1)], X234, {"idx": i64(2, 0)}, 13),
    ("flatten_squeeze11", [_node("Unsqueeze", "x", ["u"], axes=[0, -1]), _node("Squeeze", "u", ["s"], axes=[0]),
                           _node("Flatten", "s", axis=-1)], X234, {}, 11),
    ("squeeze13_all", [_node("Squeeze", "x")], {"x": (F, [1, 3, 1])}, {}, 13),
    ("conv_transpose", [_node("ConvTranspose", ["x", "w"], strides=[2, 2], output_padding=[1, 0], pads=[1, 0, 1, 0])],
     IMG, {"w": np.ones((4, 2, 3, 3), np.float32)}, 13),
    ("conv_transpose_output_shape", [_node("ConvTranspose", ["x", "w"], strides=[2, 2], output_shape=[12, 13])],
     IMG, {"w": np.ones((4, 2, 3, 3), np.float32)}, 13),
    ("pools", [_node("AveragePool", "x", ["a"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER"),
               _node("MaxPool", "a", ["m"], kernel_shape=[2, 2], ceil_mode=1, strides=[2, 2]),
               _node("GlobalMaxPool", "m", ["g"]), _node("GlobalAveragePool", "x", ["h"]),
               _node("Add", ["g", "h"])], IMG, {}, 13),
    ("max_min", [_node("Max", "abc", ["m"]), _node("Min", ["m", "a"])], {n: (F, [3]) for n in "abc"}, {}, 13),
    ("size_shape", [_node("Size", "x", ["s"]), _node("Shape", "x", ["t"], start=-2), _node("Cast", "x", ["c"], to=7),
                    _node("Mul", ["c", "s"], ["m"]), _node("ReduceSum", ["t"], ["r"], keepdims=0),
                    _node("Add", ["m", "r"])], X234, {}, 15),
    ("hardmax11_axis2", [_node("Hardmax", "x", axis=2), ], X234, {}, 11),
    ("logsoftmax11_axis0", [_node("LogSoftmax", "x", axis=0)], X234, {}, 11),
    ("mod_div_int", [_node("Mod", "ab", ["m"], fmod=0), _node("Div", ["m", "b"])],
     {"a": (TP.INT32, [4]), "b": (TP.INT32, [4])}, {}, 13),
]


def _expected_outputs(model):
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {vi.name: vi.type.tensor_type for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    out = []
    for vi in model.graph.output:
        t = types[vi.name]
        out.append((tuple(d.dim_value for d in t.shape.dim), t.elem_type))
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_converter_matches_onnx_shape_inference(case):
    _, nodes, inputs, initializers, opset = case
    outputs = [o for o in nodes[-1].output]
    model = make_model(nodes, inputs, outputs, initializers, opset)
    module, _ = import_text(model)
    dtypes = {"f32": F, "f64": TP.DOUBLE, "i32": TP.INT32, "i64": TP.INT64, "i1": TP.BOOL}
    got = [(t.shape, dtypes[str(t.dtype)]) for t in module.main.result_types]
    assert got == _expected_outputs(model)


_NUMPY = {F: np.float32, TP.DOUBLE: np.float64, TP.INT32: np.int32, TP.INT64: np.int64, TP.BOOL: np.bool_}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_folded_converter_matches_onnxruntime(case):
    """With every input an initializer the whole graph folds; the constants must match ONNX Runtime."""
    ort = pytest.importorskip("onnxruntime")
    _, nodes, inputs, initializers, opset = case
    rng = np.random.default_rng(0)
    feeds = {}
    for name, (elem, shape) in inputs.items():
        if elem == TP.BOOL:
            feeds[name] = rng.random(shape) > 0.5
        elif elem in (TP.INT32, TP.INT64):
            feeds[name] = rng.integers(1, 4, shape).astype(_NUMPY[elem])
        else:
            feeds[name] = rng.standard_normal(shape).astype(_NUMPY[elem])
    outputs = list(nodes[-1].output)
    model = make_model(nodes, {}, outputs, {**initializers, **feeds}, opset)
    module, _ = import_text(model)
    assert ops_of(module) == ["tensor.constant"] * len(outputs) + ["func.return"]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    for value, expected in zip(module.main.return_op.operands, session.run(None, {})):
        got = value.op.value.value
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------
def test_unsupported_op_is_one_line():
    nodes = [helper.make_node("Relu", ["x"], [f"a{i}"], name=f"n{i}") for i in range(3)]
    nodes.append(helper.make_node("Foo", ["x"], ["y"], name="n3"))
    with pytest.raises(FrontendError) as info:
        import_model(make_model(nodes, {"x": (F, [2])}, ["y"], opset=17))
    assert str(info.value) == ("unsupported ONNX op 'Foo' (domain '', opset 17) at node 'n3'; "
                               "run 'fusecc --list-ops' for the supported ops")


def test_op_from_another_domain_is_unsupported():
    node = helper.make_node("FusedConv", ["x"], ["y"], domain="com.microsoft")
    with pytest.raises(FrontendError, match=r"^unsupported ONNX op 'FusedConv' \(domain 'com.microsoft', "
                                            r"opset \?\) at node '<unnamed #0>'"):
        import_model(make_model([node], {"x": (F, [2])}, ["y"]))


def test_truncated_model_file(tmp_path):
    model = make_model([helper.make_node("Add", ["x", "w"], ["y"])], {"x": (F, [64])}, ["y"],
                       {"w": np.ones(64, np.float32)})
    data = model.SerializeToString()
    path = tmp_path / "half.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FrontendError) as info:
        import_model(str(path))
    message = str(info.value)
    assert message.startswith(f"cannot read ONNX model '{path}': ")
    assert "\n" not in message
    with pytest.raises(FrontendError, match="cannot read ONNX model"):
        import_model(tmp_path / "missing.onnx")
    whole = tmp_path / "whole.onnx"
    whole.write_bytes(data)
    assert ops_of(import_model(whole)) == ["tensor.constant", "tensor.add", "func.return"]


def test_dropout_mask_is_all_ones():
    nodes = [helper.make_node("Dropout", ["x"], ["y", "mask"], name="drop"),
             helper.make_node("Not", ["mask"], ["z"])]
    module, text = import_text(make_model(nodes, {"x": (F, [2])}, ["y", "z"], opset=11))
    assert "dense<false> : tensor<2xi1>" in text  # Not(mask) folded: the mask is all ones


def test_training_dropout_is_an_error_unless_ratio_is_zero():
    node = helper.make_node("Dropout", ["x", "ratio", "training"], ["y"], name="drop")
    inputs = {"x": (F, [2])}
    training = {"training": np.array(True)}
    with pytest.raises(FrontendError, match=r"^ONNX node 'drop' \(Dropout, opset 13\): training_mode=1 drops "
                                            r"elements at random"):
        import_model(make_model([node], inputs, ["y"], {"ratio": np.array(0.5, np.float32), **training}))
    module = import_model(make_model([node], inputs, ["y"], {"ratio": np.array(0.0, np.float32), **training}))
    assert ops_of(module) == ["func.return"]


def test_dropout_with_unused_mask_is_an_alias():
    node = helper.make_node("Dropout", ["x"], ["y", "mask"], name="drop")
    module, text = import_text(make_model([node], {"x": (F, [2])}, ["y"], opset=11))
    assert ops_of(module) == ["func.return"]
    assert "func.return(%x)" in text


def test_non_constant_attribute_input_is_an_error():
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="r1")
    model = make_model([node], {"x": (F, [2, 3]), "shape": (TP.INT64, [2])}, ["y"])
    with pytest.raises(NeedsConstantInput, match=r"^ONNX node 'r1' \(Reshape, opset 13\): input #1 \('shape', the "
                                                 r"shape\) must be a constant, but it is a graph input") as info:
        import_model(model)
    assert info.value.input_name == "shape"


def test_computed_attribute_input_is_not_a_graph_input_to_freeze():
    """A shape computed from a graph input is a plain error: only graph inputs themselves are frozen."""
    nodes = [helper.make_node("Abs", ["s"], ["shape"]), helper.make_node("Reshape", ["x", "shape"], ["y"], name="r1")]
    model = make_model(nodes, {"x": (F, [2, 3]), "s": (TP.INT64, [2])}, ["y"])
    with pytest.raises(FrontendError, match=r"must be a constant: an initializer") as info:
        import_model(model)
    assert not isinstance(info.value, NeedsConstantInput)


def test_verifier_errors_name_the_node():
    node = helper.make_node("Add", ["a", "b"], ["y"], name="add7")
    model = make_model([node], {"a": (TP.INT32, [2]), "b": (TP.INT64, [2])}, ["y"])
    with pytest.raises(FrontendError, match=r"^ONNX node 'add7' \(Add, opset 13\): .*different dtypes i32 and i64"):
        import_model(model)


def test_maxpool_indices_and_layer_norm_statistics():
    pool = helper.make_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2])
    module = import_model(make_model([pool], IMG, ["y", "idx"]))
    assert ops_of(module) == ["tensor.max_pool", "tensor.max_pool_indices", "func.return"]
    norm = helper.make_node("LayerNormalization", ["x", "s"], ["y", "mean", "inv"], axis=1)
    module = import_model(make_model([norm], X234, ["y", "mean", "inv"], {"s": np.ones((3, 4), np.float32)},
                                     opset=17))
    assert "tensor.layer_normalization" not in ops_of(module)
    assert [str(t) for t in module.main.result_types] == ["tensor<2x3x4xf32>", "tensor<2x1x1xf32>",
                                                          "tensor<2x1x1xf32>"]


def test_batch_norm_training_outputs_running_statistics():
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"], training_mode=1)
    weights = {name: np.ones(3, np.float32) for name in "sbmv"}
    module = import_model(make_model([node], {"x": (F, [2, 3, 4])}, ["y", "rm", "rv"], weights, opset=15))
    assert [str(t) for t in module.main.result_types] == ["tensor<2x3x4xf32>", "tensor<3xf32>", "tensor<3xf32>"]


def test_newer_opsets_use_the_op_version_in_force():
    """Opset 28 is accepted: each node converts by its op's since_version (Relu-14 here)."""
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (F, [2])}, ["y"], opset=28)
    assert ops_of(import_model(model)) == ["tensor.relu", "func.return"]
    newest = onnx.defs.onnx_opset_version()
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (F, [2])}, ["y"], opset=newest + 1)
    with pytest.raises(FrontendError, match=f"opset {newest + 1}; fusecc supports opsets up to {newest}"):
        import_model(model)


def test_opsets_before_7_only_for_ops_unchanged_since():
    model = make_model([helper.make_node("Not", ["x"], ["y"])], {"x": (TP.BOOL, [2])}, ["y"], opset=1)
    assert ops_of(import_model(model)) == ["tensor.not", "func.return"]
    model = make_model([helper.make_node("Add", ["x", "x"], ["y"], name="a")], {"x": (F, [2])}, ["y"], opset=6)
    with pytest.raises(FrontendError, match=r"^ONNX node 'a' \(Add, opset 6\): Add-6 predates opset 7"):
        import_model(model)


def test_op_with_data_dependent_shape_says_why():
    node = helper.make_node("NonZero", ["x"], ["y"], name="nz")
    with pytest.raises(FrontendError, match=r"^unsupported ONNX op 'NonZero' \(domain '', opset 13\) at node "
                                            r"'nz': its output shape depends on the input values"):
        import_model(make_model([node], {"x": (F, [4])}, ["y"]))


def test_function_op_is_imported_through_its_body():
    """Attention has no converter of its own: its ONNX function body is imported node by node."""
    node = helper.make_node("Attention", ["q", "k", "v"], ["y"], name="att", is_causal=1)
    shape = [1, 2, 3, 4]
    model = make_model([node], {"q": (F, shape), "k": (F, shape), "v": (F, shape)}, ["y"], opset=23)
    module, text = import_text(model)
    assert {"tensor.matmul", "tensor.softmax"} <= set(ops_of(module))
    assert 'loc("att/' in text
    assert module.main.result_types[0].shape == (1, 2, 3, 4)


def test_formats_are_stored_as_bits():
    """bfloat16 and float8 values are unsigned integers holding their bits; Cast converts them."""
    nodes = [helper.make_node("Cast", ["x"], ["f"], to=TP.FLOAT),
             helper.make_node("Cast", ["f"], ["y"], to=TP.FLOAT8E4M3FN)]
    module = import_model(make_model(nodes, {"x": (TP.BFLOAT16, [3])}, ["y"]))
    assert str(module.main.args[0].type) == "tensor<3xu16>"
    assert str(module.main.result_types[0]) == "tensor<3xu8>"
    node = helper.make_node("Relu", ["x"], ["y"], name="r")
    with pytest.raises(FrontendError, match=r"input #0 \('x'\) is float8e4m3fn, which fusecc only converts"):
        import_model(make_model([node], {"x": (TP.FLOAT8E4M3FN, [3])}, ["y"]))


@pytest.mark.parametrize("name, values", [
    ("FLOAT8E4M3FN", {0x00: 0.0, 0x01: 2.0 ** -9, 0x08: 2.0 ** -6, 0x38: 1.0, 0x7E: 448.0, 0xFE: -448.0,
                      0x80: -0.0}),
    ("FLOAT8E4M3FNUZ", {0x01: 2.0 ** -10, 0x40: 1.0, 0x7F: 240.0, 0xFF: -240.0}),
    ("FLOAT8E5M2", {0x01: 2.0 ** -16, 0x3C: 1.0, 0x7B: 57344.0, 0x7C: np.inf, 0xFC: -np.inf}),
    ("FLOAT8E5M2FNUZ", {0x01: 2.0 ** -17, 0x40: 1.0, 0x7F: 57344.0}),
    ("FLOAT4E2M1", {0x1: 0.5, 0x2: 1.0, 0x3: 1.5, 0x4: 2.0, 0x5: 3.0, 0x6: 4.0, 0x7: 6.0, 0x8: -0.0, 0xF: -6.0}),
    ("FLOAT8E8M0", {0x00: 2.0 ** -127, 0x7F: 1.0, 0xFE: 2.0 ** 127}),
    ("INT4", {0x7: 7, 0x8: -8, 0xF: -1}),
    ("UINT4", {0xF: 15}),
    ("INT2", {0x1: 1, 0x2: -2, 0x3: -1}),
    ("UINT2", {0x3: 3}),
])
def test_format_values_come_from_the_format_definition(name, values):
    """Each code's value, from OCP's float8/float4 definitions and two's complement, not from a library."""
    from fusecc.frontend.formats import FORMATS, value_table
    table = value_table(next(f for f in FORMATS.values() if f.name == name))
    for code, value in values.items():
        assert table[code] == value and np.signbit(table[code]) == np.signbit(value), (hex(code), table[code])
    nan_codes = {"FLOAT8E4M3FN": [0x7F, 0xFF], "FLOAT8E4M3FNUZ": [0x80], "FLOAT8E5M2FNUZ": [0x80],
                 "FLOAT8E5M2": [0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF], "FLOAT8E8M0": [0xFF]}.get(name, [])
    assert np.flatnonzero(np.isnan(table.astype(np.float64))).tolist() == nan_codes


@pytest.mark.parametrize("to", [TP.INT4, TP.UINT4, TP.INT2, TP.UINT2])
def test_float_to_small_int_truncates_toward_zero_and_keeps_the_low_bits(to):
    """Out of the format's range ONNX leaves Cast undefined; fusecc keeps the low bits of the truncated
    value, as it does for int8 (whatever the installed ml_dtypes computes)."""
    import fusecc
    from fusecc.frontend.formats import FORMATS
    fmt = FORMATS[to]
    x = np.array([-300.7, -9, -8.5, -7.9, -1.5, -0.5, -0.0, 0.4, 1.99, 2.5, 3.5, 7.9, 8, 15.5, 16, 17.2, 255,
                  300.7, np.nan, np.inf, -np.inf], np.float32)
    model = make_model([helper.make_node("Cast", ["x"], ["y"], to=to)], {"x": (F, [x.size])}, ["y"],
                       opset=25)
    (bits,) = fusecc.compile(model).run({"x": x})
    finite = np.where(np.isfinite(x), x, 0)
    expected = (np.trunc(finite).astype(np.int64) & (2 ** fmt.bits - 1)).astype(np.uint8)
    np.testing.assert_array_equal(bits, expected)


# --------------------------------------------------------------------------------------
# The light model zoo shipped with onnx
# --------------------------------------------------------------------------------------
def test_light_models_are_present():
    assert len(LIGHT_MODELS) == 9


@pytest.mark.parametrize("path", LIGHT_MODELS, ids=lambda p: os.path.basename(p)[len("light_"):-len(".onnx")])
def test_light_model(path):
    module = import_model(path)
    module.verify()
    expected = numpy_helper.to_array(onnx.load_tensor(path.replace(".onnx", "_output_0.pb")))
    (result,) = module.main.result_types
    assert result.shape == expected.shape
    assert str(result.dtype) == "f32"
    assert not any(re.match(r"tensor\.(constant_of_shape|shape)$", name) for name in ops_of(module))
