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

import os

import numpy as np
import onnx
import onnx.backend.test
import pytest

import fusecc
import fusecc.backend
from test_models import LIGHT_DIR, assert_close_to_scale, backend_test_input, random_weights

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
    one_thread = compiled.run({input_name: x}, threads=1)
    for threads in (2, 3, 7):  # blocks of channels and rows split unevenly: not a bit may change
        for got, want in zip(compiled.run({input_name: x}, threads=threads), one_thread):
            assert got.tobytes() == want.tobytes(), f"{threads} threads differ from 1"
