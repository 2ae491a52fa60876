"""Models exported from PyTorch and ``transformers`` as a user exports them, against ONNX Runtime.

The fixtures in ``tests/models`` are the architectures ``bench_models`` measures, shrunk below 2 MiB; they are
made by ``python -m fusecc.tools.export_models --tiny --out tests/models`` (torch 2.13.0 and transformers).
"""

import os

import numpy as np
import onnx
import pytest

import fusecc
from fusecc.tools.export_models import EXPORTS, example_feeds

ort = pytest.importorskip("onnxruntime")

FIXTURES = os.path.join(os.path.dirname(__file__), "models")


@pytest.fixture(scope="module", params=sorted(EXPORTS))
def exported(request):
    path = os.path.join(FIXTURES, f"{request.param}.onnx")
    model = onnx.load(path)
    feeds = example_feeds(model)
    expected = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)
    return path, feeds, expected


def test_every_export_has_a_fixture():
    assert sorted(name[:-len(".onnx")] for name in os.listdir(FIXTURES) if name.endswith(".onnx")) == sorted(EXPORTS)


@pytest.mark.parametrize("threads", [1, 2])
def test_exported_model_matches_onnxruntime(exported, threads):
    path, feeds, expected = exported
    compiled = fusecc.compile(path)
    for got, want in zip(compiled.run(feeds, threads=threads), expected):
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)


def test_integer_inputs_stay_in_their_recorded_range():
    model = onnx.load(os.path.join(FIXTURES, "bert4.onnx"))
    feeds = example_feeds(model)
    assert feeds["attention_mask"].min() == 1 and feeds["attention_mask"].max() == 1
    assert 0 <= feeds["input_ids"].min() and feeds["input_ids"].max() < 1000
    assert len(np.unique(feeds["input_ids"])) > 1
