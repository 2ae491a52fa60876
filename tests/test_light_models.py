"""The nine "light" models of ONNX's model zoo (``onnx/backend/test/data/light``), through fusecc.

* ONNX's own runner, ``onnx.backend.test.BackendTest(fusecc.backend)``, on the
  light models: it feeds ``generate_dummy_data`` input through
  ``fusecc.backend`` and compares with the shipped ``light_*_output_0.pb``.
* The light models fill every weight with ``ConstantOfShape(0.02)``, which
  hides almost any bug, so each is also run with random weights and compared
  with ONNX Runtime on the logits (test_models.py does this for SqueezeNet and
  ResNet-50; here for the other seven).
"""

from __future__ import annotations

import math
import os

import numpy as np
import onnx
import onnx.backend.test
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

import fusecc
import fusecc.backend
from test_models import LIGHT_DIR, assert_close_to_scale, backend_test_input

ort = pytest.importorskip("onnxruntime")

LIGHT_MODELS = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
                "squeezenet", "vgg19", "zfnet512"]
#: covered with random weights by test_models.py
COVERED_ELSEWHERE = {"resnet50", "squeezenet"}


# --------------------------------------------------------------------------------------
# ONNX's runner
# --------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _onnx_home(tmp_path, monkeypatch):
    """ONNX's runner writes each light model's test data under $ONNX_HOME; keep it in a temporary directory."""
    monkeypatch.setenv("ONNX_HOME", str(tmp_path))
    monkeypatch.delenv("ONNX_MODELS", raising=False)


def _light_model_runner():
    """ONNX's real-model test class, reduced to the light models on CPU (the rest would only be skipped)."""
    wanted = {f"test_{model}_cpu" for model in LIGHT_MODELS}
    backend_test = onnx.backend.test.BackendTest(fusecc.backend, __name__)
    tests = backend_test.test_cases["OnnxBackendRealModelTest"]
    for name in [n for n in vars(tests) if n.startswith("test_") and n not in wanted]:
        delattr(tests, name)
    return tests


OnnxBackendRealModelTest = _light_model_runner()


def test_runner_covers_the_nine_light_models():
    names = {name for name in vars(OnnxBackendRealModelTest) if name.startswith("test_")}
    assert names == {f"test_{model}_cpu" for model in LIGHT_MODELS}
    shipped = {f[len("light_"):-len(".onnx")] for f in os.listdir(LIGHT_DIR) if f.endswith(".onnx")}
    assert shipped == set(LIGHT_MODELS)


# --------------------------------------------------------------------------------------
# Random weights, against ONNX Runtime
# --------------------------------------------------------------------------------------
#: ops a weight may pass through (as input 0) on its way to the op that uses it
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


def run_ort(model, feeds):
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the light models carry unused initializers ORT warns about
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


@pytest.mark.parametrize("name", sorted(set(LIGHT_MODELS) - COVERED_ELSEWHERE))
def test_light_model_with_random_weights_matches_onnxruntime(name):
    model, softmax = random_weights(onnx.load(os.path.join(LIGHT_DIR, f"light_{name}.onnx")))
    input_name, dummy = backend_test_input(model)
    compiled = fusecc.compile(model)
    assert [spec.name for spec in compiled.outputs] == [o.name for o in model.graph.output]
    x = np.random.default_rng(4).standard_normal(dummy.shape).astype(np.float32)
    outputs = compiled.run({input_name: x})
    expected = run_ort(model, {input_name: x})
    logits, expected_logits = outputs[-1], expected[-1]
    # the random weights make the comparison meaningful: spread-out logits, a non-uniform softmax
    flat = expected_logits.reshape(-1).astype(np.float64)
    spread = np.exp(flat - flat.max()) / np.exp(flat - flat.max()).sum()
    assert flat.std() > 0.1 and spread.max() > 2 / spread.size, (flat.std(), spread.max())
    assert_close_to_scale(logits, expected_logits, rtol=1e-3, atol=1e-3)
    if softmax:
        np.testing.assert_allclose(outputs[0], expected[0], rtol=1e-3, atol=1e-6)
    assert np.argmax(logits) == np.argmax(expected_logits)
