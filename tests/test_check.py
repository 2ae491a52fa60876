"""Check mode (``check=True``, ``FUSECC_CHECK=1``) and the fault it is tried out on (``FUSECC_INJECT_FAULT``)."""

import functools
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import fusecc
from fusecc.tools.export_models import example_feeds

MODELS = pathlib.Path(__file__).parent / "models"


def _feeds(name):
    return example_feeds(onnx.load(str(MODELS / f"{name}.onnx")))


def _ort(name, feeds):
    return ort.InferenceSession(str(MODELS / f"{name}.onnx")).run(None, feeds)


@pytest.mark.parametrize("name", ["resnet18", "bert4"])
def test_a_checked_model_runs_every_kernel_and_gives_the_results(name):
    feeds = _feeds(name)
    model = fusecc.compile(str(MODELS / f"{name}.onnx"), check=True, cache=False)
    for got, want in zip(model.run(feeds), _ort(name, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@functools.cache
def _kernel_names(name):
    return tuple(kernel.name for kernel in fusecc.compile(str(MODELS / f"{name}.onnx"), cache=False).kernels)


@pytest.mark.parametrize("name, pick", [
    ("resnet18", lambda names: next(n for n in names if "conv" in n and "add_relu" in n)),  # a residual block's end
    ("bert4", lambda names: next(n for n in names if "layer_normalization" in n)),  # a transformer's LayerNorm
    ("bert4", lambda names: names[len(names) // 2]),
])
def test_check_mode_names_the_kernel_that_computes_a_wrong_result(name, pick, monkeypatch):
    faulty = pick(_kernel_names(name))
    monkeypatch.setenv("FUSECC_INJECT_FAULT", faulty)
    model = fusecc.compile(str(MODELS / f"{name}.onnx"), check=True, cache=False)
    with pytest.raises(fusecc.CheckError) as caught:
        model.run(_feeds(name))
    error = caught.value
    assert error.kernel == faulty and error.output == 0 and error.index == (0,) * len(error.index)
    assert error.got == pytest.approx(error.expected + 1, rel=1e-3, abs=1e-3)
    nodes = next(kernel.nodes for kernel in model.kernels if kernel.name == faulty)
    assert error.nodes == list(nodes) and f"kernel {faulty} (ONNX nodes {', '.join(nodes)})" in str(error)


def test_the_environment_turns_check_mode_on(monkeypatch):
    faulty = _kernel_names("mlp_b32")[1]
    monkeypatch.setenv("FUSECC_INJECT_FAULT", faulty)
    monkeypatch.setenv("FUSECC_CHECK", "1")
    with pytest.raises(fusecc.CheckError, match=f"kernel {faulty} "):
        fusecc.compile(str(MODELS / "mlp_b32.onnx"), cache=False).run(_feeds("mlp_b32"))


def test_an_injected_fault_changes_a_normal_run_and_stays_out_of_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("FUSECC_CACHE_DIR", str(tmp_path))
    feeds = _feeds("mlp_b32")
    want = _ort("mlp_b32", feeds)
    monkeypatch.setenv("FUSECC_INJECT_FAULT", _kernel_names("mlp_b32")[1])
    faulty = fusecc.compile(str(MODELS / "mlp_b32.onnx"))
    assert not np.allclose(faulty.run(feeds)[0], want[0], rtol=1e-4, atol=1e-5)
    monkeypatch.delenv("FUSECC_INJECT_FAULT")
    clean = fusecc.compile(str(MODELS / "mlp_b32.onnx"))
    assert not clean.cache_hit
    np.testing.assert_allclose(clean.run(feeds)[0], want[0], rtol=1e-4, atol=1e-5)


def test_a_fault_in_no_kernel_is_an_error_listing_the_kernels(monkeypatch):
    monkeypatch.setenv("FUSECC_INJECT_FAULT", "fused_nothing_9")
    with pytest.raises(ValueError, match="FUSECC_INJECT_FAULT=fused_nothing_9 names no kernel or ONNX node of the "
                                         "model; its kernels are fused_"):
        fusecc.compile(str(MODELS / "mlp_b1.onnx"), cache=False)


def test_a_checked_model_saves_the_library_it_checks(tmp_path):
    feeds = _feeds("mlp_b32")
    checked = fusecc.compile(str(MODELS / "mlp_b32.onnx"), check=True, cache=False)
    checked.save(tmp_path / "mlp.so")
    loaded = fusecc.load(tmp_path / "mlp.so")
    np.testing.assert_allclose(loaded.run(feeds)[0], checked.run(feeds)[0], rtol=1e-5, atol=1e-6)
