"""Bad input gets one clear message, never a traceback or a crash.

Covered: unreadable ONNX files, unsupported ops, ``.fir`` syntax and
verification errors, and ``run()`` feeds that do not match the model.
"""

import os
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper

import fusecc
from fusecc.frontend.onnx_import import FrontendError
from fusecc.runtime.model import InputError

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def run_tool(module, *args):
    result = subprocess.run([sys.executable, "-c", f"import sys; from fusecc.cli import {module}; sys.exit({module}())",
                             *map(str, args)], capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def make_model(nodes, inputs, outputs, opset_imports=(("", 13),)):
    graph = helper.make_graph(
        nodes, "errors",
        [helper.make_tensor_value_info(name, elem, shape) for name, (elem, shape) in inputs.items()],
        [helper.make_tensor_value_info(name, elem, shape) for name, (elem, shape) in outputs.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opset_imports])


# --------------------------------------------------------------------------------------
# Unreadable ONNX files
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def truncated_model(tmp_path_factory):
    source = os.path.join(LIGHT_DIR, "light_squeezenet.onnx")
    if not os.path.exists(source):
        pytest.skip("light_squeezenet.onnx is not shipped with this onnx version")
    with open(source, "rb") as handle:
        data = handle.read()
    path = tmp_path_factory.mktemp("bad") / "truncated.onnx"
    path.write_bytes(data[:len(data) // 2])
    return path


def test_truncated_model_cli(truncated_model, tmp_path):
    result = run_tool("main", truncated_model, "-o", tmp_path / "lib.so")
    assert result.returncode == 1
    assert result.stderr.startswith(f"fusecc: error: cannot read ONNX model '{truncated_model}'")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "lib.so").exists() and not (tmp_path / "lib.h").exists()


def test_truncated_model_api(truncated_model):
    with pytest.raises(FrontendError, match=re.escape(f"cannot read ONNX model '{truncated_model}'")):
        fusecc.compile(str(truncated_model))


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all\n", b"\x08\x07"],
                         ids=["empty", "text", "no-graph"])
def test_non_model_files(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(FrontendError, match=re.escape(f"cannot read ONNX model '{path}'")):
        fusecc.compile(str(path))
    result = run_tool("main", path)
    assert result.returncode == 1 and result.stderr.startswith(f"fusecc: error: cannot read ONNX model '{path}'")


def test_missing_model_file(tmp_path):
    path = tmp_path / "missing.onnx"
    result = run_tool("main", path, "-o", tmp_path / "lib.so")
    assert result.returncode == 1
    assert result.stderr == f"fusecc: error: cannot read ONNX model '{path}': No such file or directory\n"
    with pytest.raises(FrontendError, match="missing.onnx"):
        fusecc.compile(str(path))


# --------------------------------------------------------------------------------------
# Unsupported ops
# --------------------------------------------------------------------------------------
def nms_model():
    return make_model(
        [helper.make_node("Relu", ["boxes"], ["relu_boxes"], name="relu"),
         helper.make_node("NonMaxSuppression", ["relu_boxes", "scores"], ["selected"], name="nms_1")],
        {"boxes": (TP.FLOAT, [1, 4, 4]), "scores": (TP.FLOAT, [1, 1, 4])}, {"selected": (TP.INT64, [None, 3])},
        opset_imports=[("", 11)])


def custom_domain_model():
    return make_model([helper.make_node("FancyGelu", ["x"], ["y"], name="my_custom", domain="com.example")],
                      {"x": (TP.FLOAT, [2, 3])}, {"y": (TP.FLOAT, [2, 3])},
                      opset_imports=[("", 13), ("com.example", 2)])


@pytest.mark.parametrize("model, op_type, node, opset", [
    (nms_model(), "NonMaxSuppression", "nms_1", "11"),
    (custom_domain_model(), "FancyGelu", "my_custom", "2"),
], ids=["NonMaxSuppression", "custom-domain"])
def test_unsupported_op(tmp_path, model, op_type, node, opset):
    path = tmp_path / "unsupported.onnx"
    onnx.save(model, path)
    with pytest.raises(FrontendError) as info:
        fusecc.compile(model)
    message = str(info.value)
    assert "\n" not in message
    assert op_type in message and f"'{node}'" in message and f"opset {opset}" in message
    result = run_tool("main", path, "-o", tmp_path / "lib.so")
    assert result.returncode == 1
    assert result.stderr == f"fusecc: error: {message}\n"


def test_unsupported_op_in_unnamed_node():
    model = make_model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Unique", ["r"], ["y"])],
                       {"x": (TP.FLOAT, [4])}, {"y": (TP.FLOAT, [None])})
    with pytest.raises(FrontendError, match=r"'Unique'.*opset 13") as info:
        fusecc.compile(model)
    assert "#1" in str(info.value)  # the node is named by its position when it has no name


# --------------------------------------------------------------------------------------
# .fir files
# --------------------------------------------------------------------------------------
SYNTAX_ERROR = """\
func @main(%x: tensor<2x3xf32>) -> (tensor<2x3xf32>) {
  %0 = tensor.relu(%x) : tensor<2x3xf32>
  %1 = tensor.relu(%0 : tensor<2x3xf32>
  func.return(%1)
}
"""

VERIFY_ERROR = """\
func @main(%x: tensor<2x3xf32>, %y: tensor<4xf32>) -> (tensor<2x3xf32>) {
  %0 = tensor.relu(%x) : tensor<2x3xf32>
  %1 = tensor.add(%0, %y) : tensor<2x3xf32>
  func.return(%1)
}
"""


def test_fir_syntax_error(tmp_path):
    path = tmp_path / "syntax.fir"
    path.write_text(SYNTAX_ERROR)
    result = run_tool("opt_main", path, "-p", "cse")
    assert result.returncode == 1
    lines = result.stderr.rstrip("\n").split("\n")
    line, column = 3, SYNTAX_ERROR.splitlines()[2].index(":") + 1
    assert lines[0].startswith(f"{path}:{line}:{column}: error: ")
    # The offending line, then a caret under the offending column.
    assert lines[1].strip() == SYNTAX_ERROR.splitlines()[2].strip()
    assert lines[2].strip() == "^"
    assert lines[1][lines[2].index("^")] == ":"


def test_fir_syntax_error_split_input_file_reports_real_line(tmp_path):
    path = tmp_path / "split.fir"
    good = "func @main(%x: tensor<3xf32>) -> (tensor<3xf32>) {\n  func.return(%x)\n}\n"
    path.write_text(good + "// -----\n" + SYNTAX_ERROR)
    result = run_tool("opt_main", path, "--split-input-file")
    assert result.returncode == 1
    assert f"{path}:{4 + 3}:" in result.stderr


def test_fir_syntax_error_through_fusecc(tmp_path):
    path = tmp_path / "syntax.fir"
    path.write_text(SYNTAX_ERROR)
    result = run_tool("main", path, "-o", tmp_path / "lib.so")
    assert result.returncode == 1 and f"{path}:3:" in result.stderr


def test_fir_verification_error(tmp_path):
    path = tmp_path / "verify.fir"
    path.write_text(VERIFY_ERROR)
    result = run_tool("opt_main", path)
    assert result.returncode == 1
    assert result.stderr.startswith("fusecc-opt: error: ")
    assert "tensor.add" in result.stderr and f"{path}:3:3" in result.stderr
    assert "[2, 3]" in result.stderr and "[4]" in result.stderr
    with pytest.raises(Exception, match=re.escape(f"{path}:3:3")) as info:
        fusecc.compile(str(path))
    assert "tensor.add" in str(info.value)


@pytest.mark.parametrize("body, names, where", [
    # the op whose declared type contradicts its shape rule is reported, not the return that uses it
    ("%0 = tensor.add(%x, %x) : tensor<3x3xf32>", ["tensor.add"], "2:3"),
    ("%0 = arith.addf(%x, %x) {strict = 1} : tensor<3xf32>",
     ["'arith.addf'", "attribute 'strict' must be a boolean, got 1"], "2:3"),
    ("%0 = tensor.relu(%nope) : tensor<3xf32>", ["%nope"], "2:"),
    ("%0 = tensor.frobnicate(%x) : tensor<3xf32>", ["tensor.frobnicate"], "2:"),
], ids=["declared-type", "attribute-kind", "undefined-value", "unknown-op"])
def test_fir_error_names_what_and_where(tmp_path, body, names, where):
    path = tmp_path / "bad.fir"
    path.write_text(f"func @main(%x: tensor<3xf32>) -> (tensor<3xf32>) {{\n  {body}\n  func.return(%0)\n}}\n")
    result = run_tool("opt_main", path)
    assert result.returncode == 1
    assert all(name in result.stderr for name in names) and f"{path}:{where}" in result.stderr, result.stderr


def test_missing_fir_file(tmp_path):
    result = run_tool("opt_main", tmp_path / "missing.fir")
    assert result.returncode == 1
    assert result.stderr.startswith("fusecc-opt: error: ") and "missing.fir" in result.stderr


# --------------------------------------------------------------------------------------
# run() with feeds that do not match the model
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def add_model():
    model = make_model([helper.make_node("Add", ["x", "bias"], ["y"], name="add")],
                       {"x": (TP.FLOAT, [2, 3]), "bias": (TP.FLOAT, [3])}, {"y": (TP.FLOAT, [2, 3])})
    return fusecc.compile(model)


X = np.arange(6, dtype=np.float32).reshape(2, 3)
BIAS = np.ones(3, dtype=np.float32)


def test_wrong_shape(add_model):
    with pytest.raises(InputError) as info:
        add_model.run({"x": X.T.copy(), "bias": BIAS})
    message = str(info.value)
    assert "'x'" in message and "[2, 3]" in message and "[3, 2]" in message


def test_wrong_rank(add_model):
    with pytest.raises(InputError, match=r"'bias'.*\[3\].*\[1, 3\]"):
        add_model.run({"x": X, "bias": BIAS[None]})


def test_wrong_dtype(add_model):
    with pytest.raises(InputError) as info:
        add_model.run({"x": X.astype(np.float64), "bias": BIAS})
    message = str(info.value)
    assert "'x'" in message and "float32" in message and "float64" in message


def test_python_lists_are_not_silently_converted(add_model):
    with pytest.raises(InputError, match=r"'bias'.*float32.*int64"):
        add_model.run({"x": X, "bias": [1, 2, 3]})


def test_missing_input(add_model):
    with pytest.raises(InputError) as info:
        add_model.run({"x": X})
    message = str(info.value)
    assert "missing" in message and "'bias'" in message and "float32[3]" in message


def test_unknown_input(add_model):
    with pytest.raises(InputError) as info:
        add_model.run({"x": X, "bias": BIAS, "z": BIAS})
    message = str(info.value)
    assert "'z'" in message and "'x' float32[2, 3]" in message and "'bias' float32[3]" in message


def test_wrong_number_of_positional_inputs(add_model):
    with pytest.raises(InputError, match=r"2 inputs \(x, bias\), got 1"):
        add_model(X)


def test_feeds_must_be_a_dict(add_model):
    with pytest.raises(InputError, match="dict"):
        add_model.run([X, BIAS])


def test_non_contiguous_inputs_are_copied(add_model):
    """Strided views are valid inputs: the result is the same as for a contiguous copy."""
    wide = np.arange(12, dtype=np.float32).reshape(2, 6)
    view = wide[:, ::2]
    (y,) = add_model.run({"x": view, "bias": BIAS[::-1]})
    np.testing.assert_array_equal(y, view + BIAS)


def test_bad_input_does_not_poison_the_model(add_model):
    with pytest.raises(InputError):
        add_model.run({"x": X.astype(np.int32), "bias": BIAS})
    np.testing.assert_array_equal(add_model(X, BIAS)[0], X + BIAS)


def test_unknown_pass_option_names_the_options(tmp_path):
    path = tmp_path / "ok.fir"
    path.write_text("func @main(%x: tensor<3xf32>) -> (tensor<3xf32>) {\n  func.return(%x)\n}\n")
    result = run_tool("opt_main", path, "-p", "fuse{no-such-option=3}")
    assert result.returncode == 1
    assert "'fuse'" in result.stderr and "no-such-option" in result.stderr and "options:" in result.stderr



# --------------------------------------------------------------------------------------
# Invalid models that ONNX Runtime refuses are refused, naming the node or input
# --------------------------------------------------------------------------------------
def _one_input_model(nodes, shape=(3, 4), output_type=TP.FLOAT, initializers=()):
    graph = helper.make_graph(nodes, "invalid", [helper.make_tensor_value_info("x", TP.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", output_type, None)], list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("model, message", [
    (_one_input_model([helper.make_node("Relu", ["x"], ["y"], name="a"), helper.make_node("Neg", ["x"], ["y"], name="b")]),
     r"^ONNX node 'b' \(Neg\): its output 'y' is already produced by node 'a' \(Relu\)"),
    (_one_input_model([helper.make_node("Relu", ["x"], ["x"], name="a"), helper.make_node("Neg", ["x"], ["y"])]),
     r"^ONNX node 'a' \(Relu\): its output 'x' is already produced by a graph input"),
    (_one_input_model([helper.make_node("Relu", ["x"], ["y"])], output_type=TP.INT64),
     r"^ONNX graph output 'y' is declared INT64, but the graph computes it as FLOAT$"),
    (_one_input_model([helper.make_node("Relu", ["x"], ["y"])], shape=(3, -4)),
     r"^ONNX graph input 'x': dimension 1 is -4"),
    (_one_input_model([helper.make_node("Relu", ["x"], ["y"])], shape=(2 ** 40, 2 ** 30)),
     r"^ONNX graph input 'x': tensor<1099511627776x1073741824xf32> holds \d+ elements, more than 64-bit"),
    (_one_input_model([helper.make_node("TopK", ["x", "k"], ["y", "i"], name="top")],
                      initializers=[onnx.numpy_helper.from_array(np.array([5], np.int64), "k")]),
     r"^ONNX node 'top' \(TopK, opset 18\): .*k=5 must lie in \[0, 4\], the size of axis 1"),
    (_one_input_model([helper.make_node("Gather", ["x", "i"], ["y"], name="pick", axis=1)],
                      initializers=[onnx.numpy_helper.from_array(np.array([0, -5], np.int64), "i")]),
     r"^ONNX node 'pick' \(Gather, opset 18\): .*index -5 is out of range for axis 1 of size 4 \(valid: -4 to 3\)"),
    (_one_input_model([helper.make_node("GatherElements", ["x", "i"], ["y"], name="pick", axis=0)],
                      initializers=[onnx.numpy_helper.from_array(np.full((3, 4), 3, np.int64), "i")]),
     r"^ONNX node 'pick' \(GatherElements, opset 18\): .*index 3 is out of range for axis 0 of size 3"),
], ids=["two-producers", "output-is-an-input", "declared-dtype", "negative-dim", "overflowing-dims", "topk-k",
        "gather-index", "gather-elements-index"])
def test_invalid_model_is_refused(model, message):
    with pytest.raises(FrontendError, match=message):
        fusecc.compile(model)


def test_large_constant_results_are_computed_at_run_time():
    """A 4 GiB ConstantOfShape from a 100-byte model is not folded at compile time."""
    shape = onnx.numpy_helper.from_array(np.array([1 << 30], np.int64), "s")
    graph = helper.make_graph([helper.make_node("ConstantOfShape", ["s"], ["c"]),
                               helper.make_node("Slice", ["c", "lo", "hi"], ["y"])], "big", [],
                              [helper.make_tensor_value_info("y", TP.FLOAT, None)],
                              [shape, onnx.numpy_helper.from_array(np.array([0], np.int64), "lo"),
                               onnx.numpy_helper.from_array(np.array([3], np.int64), "hi")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    from fusecc.frontend.onnx_import import import_model
    module = import_model(model)
    assert any(op.name == "tensor.constant_of_shape" for op in module.main.body.ops)
    np.testing.assert_array_equal(fusecc.compile(model).run({})[0], np.zeros(3, np.float32))


def test_missing_external_data_is_one_line(tmp_path):
    weights = onnx.numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "ext",
                              [helper.make_tensor_value_info("x", TP.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, None)], [weights])
    path = tmp_path / "ext.onnx"
    onnx.save_model(helper.make_model(graph), path, save_as_external_data=True, location="ext.bin",
                    size_threshold=0)
    os.unlink(tmp_path / "ext.bin")
    result = run_tool("main", path, "-o", tmp_path / "lib.so")
    assert result.returncode == 1
    assert result.stderr.startswith(f"fusecc: error: cannot read ONNX model '{path}': its external data: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_reproducers_go_to_one_directory_that_keeps_the_newest(tmp_path, monkeypatch):
    import fusecc.lowering  # noqa: F401  (registers lower-to-loops)
    from fusecc.ir.parser import parse_module
    from fusecc.passes.manager import KEPT_REPRODUCERS, PassError, PassManager, parse_pipeline
    failing = tmp_path / "two_shapes.fir"
    failing.write_text(
        "func @main(%x: tensor<2x3xf32>) -> (tensor<2x3xf32>, tensor<3xf32>) {\n"
        "  %0, %1 = kernel.fused(%x) {pattern = \"reduction\"} ({\n"
        "  ^(%a: tensor<2x3xf32>):\n"
        "    %r = tensor.relu(%a) : tensor<2x3xf32>\n"
        "    %s = tensor.reduce_sum(%a) {axes = [0], keepdims = 0} : tensor<3xf32>\n"
        "    kernel.yield(%r, %s)\n"
        "  }) : tensor<2x3xf32>, tensor<3xf32>\n"
        "  func.return(%0, %1)\n}\n")
    directory = tmp_path / "repro"
    monkeypatch.setenv("FUSECC_REPRO_DIR", str(directory))
    named = []
    for _ in range(KEPT_REPRODUCERS + 3):
        with pytest.raises(PassError, match="must share a shape") as info:
            PassManager(parse_pipeline("lower-to-loops")).run(parse_module(failing.read_text()))
        named.append(re.search(r"reproducer: fusecc-opt (\S+)", str(info.value))[1])
    assert all(os.path.dirname(path) == str(directory) for path in named)
    assert sorted(os.listdir(directory)) == sorted(os.path.basename(p) for p in named[-KEPT_REPRODUCERS:])
    assert os.stat(directory).st_mode & 0o777 == 0o700


@pytest.mark.parametrize("flag", ["--print-ir-after", "--print-ir-before"])
def test_printing_around_an_unknown_pass_is_an_error(tmp_path, flag):
    path = tmp_path / "ok.fir"
    path.write_text("func @main(%x: tensor<3xf32>) -> (tensor<3xf32>) {\n  func.return(%x)\n}\n")
    result = run_tool("opt_main", path, "-p", "cse", f"{flag}=nosuchpass")
    assert result.returncode == 1
    assert f"{flag} names no pass: nosuchpass; passes: " in result.stderr and "lower-to-loops" in result.stderr
