"""Fusion: numerics of fused vs unfused vs ONNX Runtime, kernel counts, the report and the API."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import fusecc
from fusecc.frontend.onnx_import import import_model
from fusecc.reference import interpret
from fusecc.tools import models

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def _ort(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _check(model, feeds, rtol=1e-4, atol=1e-5):
    expected = _ort(model, feeds)
    fused = fusecc.compile(model)
    unfused = fusecc.compile(model, fusion=False)
    for label, compiled in (("fused", fused), ("unfused", unfused)):
        for got, want in zip(compiled.run(feeds), expected):
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"{label} vs ORT")
    return fused, unfused


def test_layernorm_gelu_softmax_is_one_kernel():
    model = models.layernorm_gelu_softmax(rows=8, width=512)
    x = np.random.default_rng(1).standard_normal((8, 512)).astype(np.float32)
    fused, unfused = _check(model, {"x": x}, atol=1e-6)
    assert len(fused.kernels) == 1
    assert len(unfused.kernels) == len(model.graph.node)
    assert set(fused.kernels[0].nodes) == {n.name for n in model.graph.node}


def test_resnet_block_fuses_conv_epilogues():
    model = models.resnet_block(channels=16, size=14)
    x = np.random.default_rng(2).standard_normal((1, 16, 14, 14)).astype(np.float32)
    fused, _ = _check(model, {"x": x}, rtol=1e-4, atol=1e-4)
    # the input's padding for conv1 (x is also the residual, so it stays its own kernel);
    # conv1+bn1+relu1 writing the padded input of conv2; conv2+bn2+residual+relu2
    assert [sorted(set(k.nodes)) for k in fused.kernels] == [["bn1", "conv1"],
                                                              ["bn1", "bn2", "conv1", "conv2", "relu1"],
                                                              ["bn2", "conv2", "relu2", "residual"]]
    assert [k.pattern for k in fused.kernels] == ["injective", "compute", "compute"]


def test_depthwise_silu_squeeze_excite():
    model = models.depthwise_silu_se(channels=16, size=12, reduced=4)
    x = np.random.default_rng(3).standard_normal((1, 16, 12, 12)).astype(np.float32)
    fused, unfused = _check(model, {"x": x}, atol=1e-5)
    assert len(fused.kernels) < len(unfused.kernels)
    groups = {frozenset(k.nodes) for k in fused.kernels}
    assert frozenset({"depthwise", "silu_sigmoid", "silu_mul"}) in groups
    # the gate's sigmoid is the epilogue of the 1x1 conv; the pooled vector is not recomputed per pixel
    assert frozenset({"se_expand", "se_gate"}) in groups


def test_primitive_layernorm_matches_reference_interpreter():
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(4)
    init = [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
            numpy_helper.from_array(np.array(1e-5, np.float32), "eps")]
    nodes = [helper.make_node("ReduceMean", ["x"], ["mean"], axes=[-1], name="mean"),
             helper.make_node("Sub", ["x", "mean"], ["d"], name="center"),
             helper.make_node("Pow", ["d", "two"], ["sq"], name="square"),
             helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1], name="var"),
             helper.make_node("Add", ["var", "eps"], ["ve"], name="add_eps"),
             helper.make_node("Sqrt", ["ve"], ["std"], name="std"),
             helper.make_node("Div", ["d", "std"], ["y"], name="normalize")]
    graph = helper.make_graph(nodes, "ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6, 300])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [6, 300])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((6, 300)).astype(np.float32)
    fused, _ = _check(model, {"x": x}, atol=1e-5)
    assert len(fused.kernels) == 1
    reference = interpret(import_model(model), {"x": x})[0]
    np.testing.assert_allclose(fused.run({"x": x})[0], reference, rtol=1e-4, atol=1e-5)


def test_resnet50_kernel_count():
    from fusecc.driver import Options, run_phases
    module = import_model(os.path.join(LIGHT, "light_resnet50.onnx"))
    run_phases(module, Options(compile_to="fusion"))
    kernels = [op for op in module.main.body.ops if op.name == "kernel.fused"]
    # 60, a slice for each of the three strided 1x1 projections, and for each of the three strided 3x3 convs
    # a conv and a slice per phase of its input instead of one conv over its space_to_depth (space-to-depth-convs)
    assert len(kernels) <= 60 + 3 + 3 * 6


def test_fusion_report_cli(tmp_path):
    path = tmp_path / "chain.onnx"
    onnx.save(models.layernorm_gelu_softmax(rows=4, width=64), path)
    result = subprocess.run([sys.executable, "-m", "fusecc.cli", str(path), "--fusion-report"],
                            capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "1 kernels from 12 ONNX nodes"
    assert "layernorm" in lines[0] and "softmax" in lines[0] and "saves" in lines[0]


def test_fusion_decisions_are_explained(tmp_path):
    path = tmp_path / "block.onnx"
    onnx.save(models.resnet_block(channels=4, size=6), path)
    env = dict(os.environ, FUSECC_DEBUG="2")
    result = subprocess.run([sys.executable, "-m", "fusecc.cli", str(path), "--compile-to=fusion"],
                            capture_output=True, text=True, check=True, env=env)
    assert "[fuse] fused conv2+bn2 -> residual" in result.stderr
    assert "[fuse] fused relu1 -> conv2+bn2" in result.stderr  # relu1 feeds conv2's padding
    assert "did not fuse conv1+bn1 -> conv1+bn1: conv1+bn1 streams this operand from memory" in result.stderr


@pytest.mark.parametrize("width", [1, 2, 3, 7, 15, 16, 17, 33, 64, 100, 104, 105, 129, 257])
def test_row_kernels_across_trip_counts(width):
    """Softmax and max/min reductions at many row lengths (vectorizer remainders, row caches)."""
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Softmax", ["x"], ["s"], axis=-1, name="softmax"),
             helper.make_node("ReduceMax", ["x"], ["mx"], axes=[-1], name="max"),
             helper.make_node("ReduceMin", ["s"], ["mn"], axes=[-1], name="min")]
    graph = helper.make_graph(nodes, "rows", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, width])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("s", "mx", "mn")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(width).standard_normal((3, width)).astype(np.float32)
    _check(model, {"x": x}, atol=1e-6)


def test_qkv_projections_fuse_horizontally():
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(5)
    init, nodes, outputs = [], [], []
    for name in ("q", "k", "v"):
        init.append(numpy_helper.from_array((rng.standard_normal((64, 32)) / 8).astype(np.float32), f"w_{name}"))
        init.append(numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), f"b_{name}"))
        nodes += [helper.make_node("MatMul", ["x", f"w_{name}"], [f"m_{name}"], name=f"proj_{name}"),
                  helper.make_node("Add", [f"m_{name}", f"b_{name}"], [name], name=f"bias_{name}")]
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [10, 32]))
    graph = helper.make_graph(nodes, "qkv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [10, 64])],
                              outputs, init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((10, 64)).astype(np.float32)
    fused, _ = _check(model, {"x": x}, atol=1e-5)
    assert len(fused.kernels) == 1 and fused.kernels[0].pattern == "horizontal"


def test_prologue_fuses_into_matmul_a_operand():
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(7)
    init = [numpy_helper.from_array((rng.standard_normal((48, 40)) / 7).astype(np.float32), "w"),
            numpy_helper.from_array(rng.standard_normal(48).astype(np.float32), "gamma"),
            numpy_helper.from_array(rng.standard_normal(48).astype(np.float32), "beta")]
    nodes = [helper.make_node("Mul", ["x", "gamma"], ["scaled"], name="scale"),
             helper.make_node("Add", ["scaled", "beta"], ["shifted"], name="shift"),
             helper.make_node("Relu", ["shifted"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w"], ["y"], name="mm")]
    graph = helper.make_graph(nodes, "prologue", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [12, 48])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [12, 40])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((12, 48)).astype(np.float32)
    fused, _ = _check(model, {"x": x}, atol=1e-5)
    assert [sorted(k.nodes) for k in fused.kernels] == [["mm", "relu", "scale", "shift"]]
