"""Whole models, compiled and run natively, against ONNX Runtime and the reference interpreter.

An MLP and a small CNN are built here with random weights; SqueezeNet and
ResNet-50 come from ONNX's "light" model zoo (``onnx/backend/test/data/light``).
The light models fill every weight with ``ConstantOfShape(0.02)``, so their
outputs are uniform and hide almost any bug; each is therefore also run with
random weights of the same shapes, comparing the logits (the Softmax input).
"""

import math
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

import fusecc
from fusecc.driver import Options, run_phases
from fusecc.frontend.onnx_import import import_model
from fusecc.reference import interpret

ort = pytest.importorskip("onnxruntime")

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def init(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def make_model(nodes, inputs, outputs, initializers, opset=13):
    """inputs/outputs: {name: shape}, all float32."""
    graph = helper.make_graph(
        nodes, "model",
        [helper.make_tensor_value_info(name, TP.FLOAT, shape) for name, shape in inputs.items()],
        [helper.make_tensor_value_info(name, TP.FLOAT, shape) for name, shape in outputs.items()],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def run_ort(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def assert_close_to_scale(actual, expected, rtol=1e-3, atol=1e-3):
    """``atol`` relative to the largest magnitude of ``expected`` (the logit scale)."""
    scale = max(float(np.abs(expected).max()), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale)


# --------------------------------------------------------------------------------------
# MLP 784-1024-1024-10, batch 32
# --------------------------------------------------------------------------------------
def mlp_model(seed=0):
    rng = np.random.default_rng(seed)
    dims = [784, 1024, 1024, 10]
    nodes, initializers, x = [], [], "x"
    for i, (fan_in, fan_out) in enumerate(zip(dims, dims[1:])):
        initializers += [init(f"w{i}", rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)),
                         init(f"b{i}", rng.normal(0, 0.1, fan_out))]
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"mm{i}"], name=f"matmul{i}"),
                  helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"fc{i}"], name=f"add{i}")]
        x = f"fc{i}"
        if i < len(dims) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"relu{i}"], name=f"relu{i}"))
            x = f"relu{i}"
    nodes[-1].output[0] = "y"
    return make_model(nodes, {"x": [32, 784]}, {"y": [32, 10]}, initializers)


@pytest.fixture(scope="module")
def mlp():
    model = mlp_model()
    x = np.random.default_rng(1).standard_normal((32, 784)).astype(np.float32)
    return model, {"x": x}, run_ort(model, {"x": x})[0]


def test_mlp_matches_onnxruntime(mlp):
    model, feeds, expected = mlp
    compiled = fusecc.compile(model)
    (y,) = compiled.run(feeds)
    assert y.shape == (32, 10) and y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_mlp_matches_reference_interpreter(mlp):
    model, feeds, expected = mlp
    (reference,) = interpret(import_model(model), feeds)
    np.testing.assert_allclose(reference, expected, rtol=1e-4, atol=1e-4)
    (y,) = fusecc.compile(model)(feeds["x"])
    np.testing.assert_allclose(y, reference, rtol=1e-4, atol=1e-4)


def test_mlp_fuses_one_kernel_per_layer(mlp):
    model, feeds, expected = mlp
    unfused = fusecc.compile(model, opt_level=0)
    fused = fusecc.compile(model)
    assert len(unfused.kernels) == len(model.graph.node) == 8
    assert len(fused.kernels) == 3, [k.name for k in fused.kernels]
    assert [k.nodes for k in fused.kernels] == [("matmul0", "add0", "relu0"), ("matmul1", "add1", "relu1"),
                                                ("matmul2", "add2")]
    np.testing.assert_allclose(unfused.run(feeds)[0], expected, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------
# CNN: (conv-bn-relu-maxpool) x 3, Flatten, Gemm; batch 2, 3x32x32
# --------------------------------------------------------------------------------------
def cnn_model(seed=0):
    rng = np.random.default_rng(seed)
    nodes, initializers, x, channels, size = [], [], "x", 3, 32
    for i, out_channels in enumerate([8, 16, 32]):
        fan_in = channels * 9
        initializers += [
            init(f"conv{i}.w", rng.standard_normal((out_channels, channels, 3, 3)) * np.sqrt(2 / fan_in)),
            init(f"conv{i}.b", rng.normal(0, 0.1, out_channels)),
            init(f"bn{i}.scale", rng.uniform(0.5, 1.5, out_channels)),
            init(f"bn{i}.bias", rng.normal(0, 0.2, out_channels)),
            init(f"bn{i}.mean", rng.normal(0, 0.5, out_channels)),
            init(f"bn{i}.var", rng.uniform(0.25, 2.0, out_channels))]
        nodes += [
            helper.make_node("Conv", [x, f"conv{i}.w", f"conv{i}.b"], [f"conv{i}"], name=f"conv{i}",
                             kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("BatchNormalization",
                             [f"conv{i}"] + [f"bn{i}.{p}" for p in ("scale", "bias", "mean", "var")],
                             [f"bn{i}"], name=f"bn{i}", epsilon=1e-3),
            helper.make_node("Relu", [f"bn{i}"], [f"relu{i}"], name=f"relu{i}"),
            helper.make_node("MaxPool", [f"relu{i}"], [f"pool{i}"], name=f"pool{i}", kernel_shape=[2, 2],
                             strides=[2, 2])]
        x, channels, size = f"pool{i}", out_channels, size // 2
    features = channels * size * size
    initializers += [init("fc.w", rng.standard_normal((10, features)) / np.sqrt(features)),
                     init("fc.b", rng.normal(0, 0.1, 10))]
    nodes += [helper.make_node("Flatten", [x], ["flat"], name="flatten", axis=1),
              helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["y"], name="fc", transB=1)]
    return make_model(nodes, {"x": [2, 3, 32, 32]}, {"y": [2, 10]}, initializers)


@pytest.fixture(scope="module")
def cnn():
    model = cnn_model()
    x = np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32)
    return model, {"x": x}, run_ort(model, {"x": x})[0]


@pytest.mark.parametrize("fusion", [True, False], ids=["fused", "unfused"])
def test_cnn_matches_onnxruntime(cnn, fusion):
    model, feeds, expected = cnn
    compiled = fusecc.compile(model, fusion=fusion)
    (y,) = compiled.run(feeds)
    assert y.shape == (2, 10)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    # The whole batch must be computed, not just the first image.
    assert not np.allclose(y[0], y[1])


def test_cnn_fusion_reduces_kernels(cnn):
    model, _, _ = cnn
    fused = fusecc.compile(model, fusion=True)
    unfused = fusecc.compile(model, fusion=False)
    assert len(fused.kernels) < len(unfused.kernels)
    # Every ONNX node is computed by some kernel (BatchNorm may be folded into its Conv; a Flatten is a view).
    covered = {node for kernel in fused.kernels for node in kernel.nodes}
    assert {n.name for n in model.graph.node if n.op_type not in ("BatchNormalization", "Flatten")} <= covered


def test_cnn_fused_module_interprets_like_onnxruntime(cnn):
    """The reference interpreter runs the IR after fusion: fusion itself keeps the numbers."""
    model, feeds, expected = cnn
    module = run_phases(import_model(model), Options(compile_to="fusion"))
    assert any(op.name == "kernel.fused" for op in module.main.body.ops)
    (y,) = interpret(module, feeds)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------
# Light model zoo: SqueezeNet 1.0 and ResNet-50 (opset 9)
# --------------------------------------------------------------------------------------
def light_path(name):
    path = os.path.join(LIGHT_DIR, f"light_{name}.onnx")
    if not os.path.exists(path):
        pytest.skip(f"{path} is not shipped with this onnx version")
    return path


def backend_test_input(model):
    """The input the ONNX backend runner feeds light models (``generate_dummy_data(random=False)``)."""
    initializers = {t.name for t in model.graph.initializer}
    (value_info,) = [i for i in model.graph.input if i.name not in initializers]
    shape = tuple(d.dim_value for d in value_info.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return value_info.name, (np.arange(n).reshape(shape) / n).astype(np.float32)


_PASS_THROUGH = {"Reshape", "Unsqueeze", "Squeeze", "Flatten", "Transpose", "Identity"}


def random_weights(model: onnx.ModelProto, seed: int = 0) -> tuple[onnx.ModelProto, bool]:
    """A copy of a light model with random weights, and whether it ends with a Softmax.

    Each weight (a ``ConstantOfShape`` node or a float initializer) is drawn by the
    op that finally uses it (through reshapes): conv and fully connected weights
    He/LeCun-normal, biases and shifts N(0, 0.1), scales U(0.5, 1.5), BatchNorm
    statistics inside their domains; the classifier's weights are scaled up so the
    logits spread out. When the model ends with a Softmax, its input (the logits)
    becomes a second output.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    rng = np.random.default_rng(seed)
    consumers, producers = {}, {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, index))
        for name in node.output:
            producers[name] = node
    final = producers[graph.output[0].name]
    softmax = final.op_type == "Softmax"
    classifier = producers[final.input[0]] if softmax else final

    def user(name):
        node, index = consumers[name][0]
        while node.op_type in _PASS_THROUGH and index == 0:
            node, index = consumers[node.output[0]][0]
        return node, index

    def value(name, shape):
        node, index = user(name)
        fan_in = max(math.prod(shape) // max(shape), 1)
        gain = 8.0 if node is classifier else 1.0
        if node.op_type == "Conv" and index == 1:
            return rng.standard_normal(shape) * gain * np.sqrt(2.0 / math.prod(shape[1:]))
        if node.op_type in ("Gemm", "MatMul") and index == 1:
            return rng.standard_normal(shape) * gain / np.sqrt(fan_in)
        if node.op_type == "BatchNormalization":
            low_high = {1: (0.25, 0.75), 4: (0.5, 1.5)}.get(index)
            return rng.uniform(*low_high, shape) if low_high else rng.normal(0, 0.1, shape)
        if node.op_type == "Mul":
            return rng.uniform(0.5, 1.5, shape)
        if node.op_type in ("Conv", "Gemm", "Add", "Sub", "Sum"):
            return rng.normal(0, 0.1, shape)
        raise AssertionError(f"no rule for weight {name!r} used as input {index} of {node.op_type}")

    initializers = {t.name: t for t in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type == "ConstantOfShape":
            shape = numpy_helper.to_array(initializers[node.input[0]]).tolist()
            data = value(node.output[0], shape).astype(np.float32)
            node = helper.make_node("Constant", [], [node.output[0]], name=node.name or f"random:{node.output[0]}",
                                    value=numpy_helper.from_array(data))
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    for tensor in graph.initializer:
        if tensor.data_type == TP.FLOAT and tensor.name in consumers:
            data = value(tensor.name, list(tensor.dims)).astype(np.float32)
            tensor.CopyFrom(numpy_helper.from_array(data, tensor.name))
    if softmax:
        graph.output.append(helper.make_empty_tensor_value_info(final.input[0]))
    return model, softmax



class LightModel:
    """One light model, compiled once: the shipped one and its random-weight copy, lazily."""

    def __init__(self, name):
        self.path = light_path(name)
        self.model = onnx.load(self.path)
        self.input_name, self.backend_input = backend_test_input(self.model)
        self.shipped_output = numpy_helper.to_array(
            onnx.load_tensor(os.path.join(LIGHT_DIR, f"light_{name}_output_0.pb")))
        self._compiled = self._random = None

    @property
    def compiled(self):
        if self._compiled is None:
            self._compiled = fusecc.compile(self.path)
        return self._compiled

    @property
    def random(self):
        if self._random is None:
            model, _ = random_weights(self.model)
            self._random = model, fusecc.compile(model)
        return self._random


@pytest.fixture(scope="module", params=["squeezenet", "resnet50"])
def light(request):
    return LightModel(request.param)


def test_light_model_reproduces_shipped_output(light):
    feeds = {light.input_name: light.backend_input}
    (reference,) = run_ort(light.model, feeds)
    np.testing.assert_allclose(reference, light.shipped_output, rtol=1e-3, atol=1e-7)
    (y,) = light.compiled.run(feeds)
    assert y.shape == light.shipped_output.shape
    np.testing.assert_allclose(y, light.shipped_output, rtol=1e-3, atol=1e-7)


def test_light_model_matches_onnxruntime_on_random_input(light):
    x = np.random.default_rng(3).uniform(-1, 1, light.backend_input.shape).astype(np.float32)
    (expected,) = run_ort(light.model, {light.input_name: x})
    (y,) = light.compiled.run({light.input_name: x})
    np.testing.assert_allclose(y, expected, rtol=1e-3, atol=1e-6)


def test_light_model_with_random_weights_matches_onnxruntime(light):
    model, compiled = light.random
    assert [spec.name for spec in compiled.outputs] == [o.name for o in model.graph.output]
    x = np.random.default_rng(4).standard_normal(light.backend_input.shape).astype(np.float32)
    probabilities, logits = compiled.run({light.input_name: x})
    expected_probabilities, expected_logits = run_ort(model, {light.input_name: x})
    # The random weights must make the test meaningful: spread-out logits, a non-uniform softmax.
    assert expected_logits.std() > 0.1 and expected_probabilities.max() > 2 / expected_probabilities.size
    assert_close_to_scale(logits, expected_logits, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(probabilities, expected_probabilities, rtol=1e-3, atol=1e-6)
    assert np.argmax(logits) == np.argmax(expected_logits)


def test_light_model_unfused_matches_fused_and_onnxruntime(light):
    """One kernel per op gives the same logits as the fused model and ONNX Runtime."""
    model, fused = light.random
    unfused = fusecc.compile(model, fusion=False)
    assert len(unfused.kernels) > len(fused.kernels)
    x = np.random.default_rng(5).standard_normal(light.backend_input.shape).astype(np.float32)
    _, expected_logits = run_ort(model, {light.input_name: x})
    _, fused_logits = fused.run({light.input_name: x})
    _, unfused_logits = unfused.run({light.input_name: x})
    assert_close_to_scale(unfused_logits, expected_logits, rtol=1e-3, atol=1e-3)
    assert_close_to_scale(unfused_logits, fused_logits, rtol=1e-3, atol=1e-3)
