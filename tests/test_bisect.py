"""``fusecc bisect``: the first wrong kernel, the smallest group of its ops that is still wrong, a reproducer.

Faults come from ``FUSECC_INJECT_FAULT``: by ONNX node name, the fault follows the node into every group that
holds it, so the smallest failing group is that node's; by kernel name, it stays with the model's kernel.
"""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import fusecc
from fusecc.bisect import bisect
from fusecc.driver import Options
from fusecc.tools import models

MODELS = pathlib.Path(__file__).parent / "models"


@pytest.fixture(scope="module")
def residual_fault(block, tmp_path_factory):
    """The bisection of the block with its residual add made wrong, and its reproducer directory."""
    directory = tmp_path_factory.mktemp("bisect") / "repro"
    return bisect(block, Options(cache=False, inject_fault="residual"), {}, str(directory)), directory


def _options(monkeypatch, fault=None):
    if fault is None:
        monkeypatch.delenv("FUSECC_INJECT_FAULT", raising=False)
    else:
        monkeypatch.setenv("FUSECC_INJECT_FAULT", fault)
    return Options(cache=False)


def test_a_fault_by_node_is_cut_down_to_that_node(residual_fault):
    found, directory = residual_fault
    assert found.kernel == "fused_conv_add_relu_2"
    assert found.nodes == ["conv2", "bn2", "residual", "relu2"]
    assert found.isolated and found.group_nodes == ["residual"] and found.group_ops == 1
    assert found.mismatch.got == pytest.approx(found.mismatch.expected + 1.0)
    # the shrinking compiled the whole region, then longer prefixes until one failed, then shorter suffixes
    assert found.tried[0] == (0, found.region_ops, True)
    # ONNX Runtime's value of relu2's output at that element is the reference's, not the kernel's
    assert found.ort.startswith("ONNX Runtime computes ") and found.ort.endswith("(node relu2, tensor y): "
                                                                                  "agrees with the reference")
    assert sorted(os.listdir(directory)) == ["expected.npz", "group.fir", "inputs.npz", "replay.sh"]


def test_the_reproducer_replays_the_wrong_answer_and_only_with_the_fault(residual_fault, monkeypatch, tmp_path):
    _, repro = residual_fault
    group = str(repro / "group.fir")
    with np.load(repro / "inputs.npz") as archive:
        inputs = {name: archive[name] for name in archive.files}
    with np.load(repro / "expected.npz") as archive:
        expected = [archive[name] for name in archive.files]
    assert bisect(group, _options(monkeypatch, "residual"), inputs, str(tmp_path / "again")).ort is None
    faulty = fusecc.compile(group, cache=False).run(inputs)
    assert faulty[0].flat[0] == pytest.approx(expected[0].flat[0] + 1.0)
    monkeypatch.delenv("FUSECC_INJECT_FAULT")
    right = fusecc.compile(group, cache=False).run(inputs)
    np.testing.assert_allclose(right[0], expected[0], rtol=1e-5, atol=1e-5)
    replay = (repro / "replay.sh").read_text()
    assert "fusecc-opt group.fir -p 'shape-inference," in replay and "lower-to-loops" in replay
    assert "FUSECC_INJECT_FAULT=residual fusecc bisect group.fir --inputs inputs.npz" in replay


def test_a_fault_inside_a_long_region_is_found_among_its_ops(monkeypatch, tmp_path):
    """BERT's attention-scores kernel fuses seven nodes; the scaling Mul alone is wrong."""
    node = "/inner/encoder/layer.0/attention/self/Mul"
    found = bisect(str(MODELS / "bert4.onnx"), _options(monkeypatch, node), {}, str(tmp_path / "repro"))
    assert node in found.nodes and len(found.nodes) == 7
    assert found.group_nodes == [node] and found.region_ops == 7
    assert "tensor.mul(" in (tmp_path / "repro" / "group.fir").read_text()


def test_a_fault_in_a_layernorm_chain_is_found_among_its_ops(monkeypatch, tmp_path):
    """LayerNorm, a tanh GELU, a scale, a bias and a softmax fuse into one kernel; the scale alone is wrong."""
    found = bisect(models.layernorm_gelu_softmax(rows=8, width=64), _options(monkeypatch, "scale"), {},
                   str(tmp_path / "repro"))
    assert len(found.nodes) == 12 and found.group_nodes == ["scale"] and found.isolated


def test_a_fault_in_the_kernel_as_compiled_keeps_the_whole_region(block, monkeypatch, tmp_path):
    found = bisect(block, _options(monkeypatch, "fused_conv_add_relu_2"), {}, str(tmp_path / "repro"))
    assert not found.isolated and found.mismatch is None
    assert found.group_ops == found.region_ops == 3 and found.tried == [(0, 3, False)]
    assert "the fault is in the kernel as compiled in the model" in found.describe()
    assert "FUSECC_INJECT_FAULT" not in (tmp_path / "repro" / "replay.sh").read_text()


def test_a_right_model_bisects_to_nothing(block, monkeypatch, tmp_path):
    assert bisect(block, _options(monkeypatch), {}, str(tmp_path / "repro")) is None
    assert not (tmp_path / "repro").exists()


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fusecc.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_the_command_reports_and_exits_1_when_it_finds_a_group(block, tmp_path):
    done = _cli("bisect", block, "--out", str(tmp_path / "repro"), env={"FUSECC_INJECT_FAULT": "relu2"})
    assert done.returncode == 1, done.stderr
    assert "first kernel over tolerance: fused_conv_add_relu_2" in done.stdout
    assert "smallest failing group: 1 of the region's 3 ops (ONNX nodes relu2)" in done.stdout
    assert (tmp_path / "repro" / "group.fir").exists()


def test_the_tolerance_is_the_command_s_to_set(block, tmp_path):
    """The fault adds one: within an absolute tolerance of 2, every kernel matches."""
    done = _cli("bisect", block, "--atol", "2", "--out", str(tmp_path / "repro"), env={"FUSECC_INJECT_FAULT": "relu2"})
    assert (done.returncode, done.stdout) == (0, "every kernel matches the reference\n"), done.stderr


def test_the_command_exits_0_for_a_right_model_and_2_for_a_bad_one(block, tmp_path):
    env = {"FUSECC_INJECT_FAULT": ""}
    done = _cli("bisect", block, "--out", str(tmp_path / "repro"), env=env)
    assert (done.returncode, done.stdout) == (0, "every kernel matches the reference\n"), done.stderr
    missing = _cli("bisect", str(tmp_path / "missing.onnx"), env=env)
    assert missing.returncode == 2 and missing.stderr.startswith("fusecc: error:") and "Traceback" not in missing.stderr
