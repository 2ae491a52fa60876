"""``fusecc explain``: each region's nodes, the rule behind each fused pair, its schedule and cost, and the reason
each pair did not fuse."""

import json
import subprocess
import sys

import pytest
from onnx import TensorProto, helper

from fusecc.driver import Options
from fusecc.explain import about_node, explain, format_text


def _pairs(region, kind):
    return [(p["producer"]["nodes"], p["producer"]["op"], p["consumer"]["nodes"], p["consumer"]["op"],
             p["rule"] if kind == "fused" else p["reason"]) for p in region[kind]]


def test_each_region_says_what_fused_by_which_rule_and_what_did_not(block):
    regions = {r["kernel"]: r for r in explain(block, Options(cache=False))}
    assert list(regions) == ["fused_pad_0", "fused_conv_relu_pad_1", "fused_conv_add_relu_2"]
    last = regions["fused_conv_add_relu_2"]
    assert last["nodes"] == ["conv2", "bn2", "residual", "relu2"]
    fused = _pairs(last, "fused")
    assert [pair[:4] for pair in fused] == [(["conv2", "bn2"], "tensor.conv", ["residual"], "tensor.add"),
                                            (["residual"], "tensor.add", ["relu2"], "tensor.relu")]
    assert fused[0][4].startswith("epilogue:") and fused[1][4].startswith("broadcast:")
    [(producer, producer_op, consumer, consumer_op, reason)] = _pairs(last, "not_fused")
    assert (producer_op, consumer_op) == ("tensor.pad", "tensor.conv") and "streams this operand" in reason
    assert last["not_fused"][0]["producer_kernel"] == "fused_conv_relu_pad_1"
    # the contraction's schedule as plan-contractions records it; 16 x 16 x 9 x 14 x 14 multiply-adds plus the
    # bias, the residual add and the ReLU per output element
    assert "micro_tile" in last["schedule"] and regions["fused_pad_0"]["schedule"] == {}
    assert last["flops"] == 2 * 16 * 16 * 9 * 14 * 14 + 3 * 16 * 14 * 14
    assert last["saved_bytes"] == 2 * 2 * 16 * 14 * 14 * 4  # two intermediates, each written and read once


def test_sibling_regions_merged_are_explained():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"), helper.make_node("Sigmoid", ["x"], ["b"], name="sig")]
    graph = helper.make_graph(nodes, "siblings", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 8]) for n in ("a", "b")])
    [region] = explain(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), Options(cache=False))
    assert region["pattern"] == "horizontal" and sorted(region["nodes"]) == ["relu", "sig"]
    assert [p["rule"].split(":")[0] for p in region["fused"]] == ["siblings"]


def test_one_node_and_its_pairs(block):
    regions = explain(block, Options(cache=False))
    [region] = about_node(regions, "residual")
    assert region["kernel"] == "fused_conv_add_relu_2" and len(region["fused"]) == 2 and region["not_fused"] == []
    with pytest.raises(ValueError, match="no kernel holds an ONNX node named 'nope'"):
        about_node(regions, "nope")
    text = format_text([region])
    assert "fused residual [tensor.add] -> relu2 [tensor.relu]: broadcast:" in text


def test_the_command_prints_text_or_json(block):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "fusecc.cli", "explain", block, *args], capture_output=True,
                              text=True)
    text = run()
    assert text.returncode == 0, text.stderr
    assert "not fused conv2+bn2 [tensor.pad] (it is in fused_conv_relu_pad_1) -> conv2+bn2 [tensor.conv]" in text.stdout
    regions = json.loads(run("--format=json", "--node", "relu1").stdout)
    assert [r["kernel"] for r in regions] == ["fused_conv_relu_pad_1"]
    missing = run("--node", "nope")
    assert missing.returncode == 1 and missing.stderr.startswith("fusecc: error: no kernel holds")
