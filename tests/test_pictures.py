"""Pictures of the fused graph: ``--dump-graph`` (Graphviz) and ``--export-fused`` (ONNX, for Netron)."""

import re
import shutil
import subprocess
import sys

import onnx

import fusecc


def _fusecc(*args):
    return subprocess.run([sys.executable, "-m", "fusecc.cli", *map(str, args)], capture_output=True, text=True)


KERNELS = {"fused_pad_0": ("injective", ["conv1", "bn1"]),
           "fused_conv_relu_pad_1": ("compute", ["conv1", "bn1", "relu1", "conv2", "bn2"]),
           "fused_conv_add_relu_2": ("compute", ["conv2", "bn2", "residual", "relu2"])}


def test_the_kernels_are_those_the_compile_makes(block):
    assert [k.name for k in fusecc.compile(block, cache=False).kernels] == list(KERNELS)


def test_dot_draws_each_kernel_as_a_cluster_of_its_ops_with_typed_edges(block, tmp_path):
    done = _fusecc(block, "--dump-graph", tmp_path / "g.dot")
    assert done.returncode == 0, done.stderr
    dot = (tmp_path / "g.dot").read_text()
    clusters = re.findall(r'subgraph cluster_(\w+) \{\n    label="\w+ \((\w+)\)"; style=filled; '
                          r'fillcolor="(#\w+)"', dot)
    assert [(name, pattern) for name, pattern, _ in clusters] == [(k, p) for k, (p, _) in KERNELS.items()]
    assert clusters[1][2] == clusters[2][2] != clusters[0][2]  # coloured by pattern
    ops = re.findall(r'^    (op\d+) \[label="(\w+)\\n([\w+]+)"\];$', dot, re.M)
    assert [(op, nodes) for _, op, nodes in ops] == [("pad", "conv1+bn1"), ("conv", "conv1+bn1"), ("relu", "relu1"),
                                                     ("pad", "conv2+bn2"), ("conv", "conv2+bn2"), ("add", "residual"),
                                                     ("relu", "relu2")]
    edges = re.findall(r'^  (\w+) -> (\w+) \[label="([^"]+)"\];$', dot, re.M)
    assert ("in0", "op6", "tensor<1x16x14x14xf32>") in edges  # the residual reads the block's input
    assert ("op1", "op2", "tensor<1x16x16x16xf32>") in edges  # the padded input of the first conv
    assert ("op7", "out0", "tensor<1x16x14x14xf32>") in edges and len(edges) == 9


def test_svg_needs_graphviz_and_other_files_are_refused(block, tmp_path):
    done = _fusecc(block, "--dump-graph", tmp_path / "g.svg")
    if shutil.which("dot"):
        assert done.returncode == 0 and (tmp_path / "g.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    else:
        assert done.returncode == 1 and "needs Graphviz's dot on PATH" in done.stderr
    refused = _fusecc(block, "--dump-graph", tmp_path / "g.png")
    assert refused.returncode == 1 and "writes .dot or .svg files" in refused.stderr


def test_the_fused_graph_exports_as_onnx_with_a_node_per_kernel(block, tmp_path):
    done = _fusecc(block, "--export-fused", tmp_path / "fused.onnx")
    assert done.returncode == 0, done.stderr
    model = onnx.load(str(tmp_path / "fused.onnx"))
    onnx.checker.check_model(model)
    kernels = [node for node in model.graph.node if node.domain == "fusecc"]
    assert [(n.name, n.op_type) for n in kernels] == [(k, p) for k, (p, _) in KERNELS.items()]
    assert [list(onnx.helper.get_attribute_value(n.attribute[0])) for n in kernels] == \
        [[name.encode() for name in nodes] for _, nodes in KERNELS.values()]
    assert [i.name for i in model.graph.input] == ["x"] and [o.name for o in model.graph.output] == ["y"]
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
    assert shapes[kernels[0].output[0]] == [1, 16, 16, 16] and shapes[kernels[2].output[0]] == [1, 16, 14, 14]
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    assert [16, 16, 3, 3] in weights.values()  # the convs' weights (BatchNorm folded in) ride along
