"""Ahead-of-time libraries: ``fusecc model.onnx -o lib.so`` and ``CompiledModel.save``.

A C program includes the generated header, fills the inputs with a fixed
pattern (sin/cos of the index), calls ``fusecc_run`` and writes the outputs as
raw bytes; the result must match ONNX Runtime. ``fusecc.load`` reads the same
libraries back into Python.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

import fusecc
from fusecc.codegen.target import CodegenError, find_c_compiler
from fusecc.runtime.model import InputError

ort = pytest.importorskip("onnxruntime")



def _c_compiler():
    """The compiler fusecc links with (``$CC``, else cc/gcc/clang), as an argv prefix; None if there is none."""
    try:
        return find_c_compiler()
    except CodegenError:
        return None


CC = _c_compiler()
CXX = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler")

#: ONNX names as other exporters write them: neither is a C identifier
INPUT_NAMES = ("input:0", "gpu_0/bias")
OUTPUT_NAMES = ("features/relu", "pooled")


def two_in_two_out_model(seed=0):
    """conv(x) + b -> relu -> output 0; its global average pool -> output 1."""
    rng = np.random.default_rng(seed)
    x, b = INPUT_NAMES
    relu, pooled = OUTPUT_NAMES
    nodes = [helper.make_node("Conv", [x, "w"], ["conv"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["conv", b], ["biased"], name="add"),
             helper.make_node("Relu", ["biased"], [relu], name="relu"),
             helper.make_node("GlobalAveragePool", [relu], [pooled], name="pool")]
    graph = helper.make_graph(
        nodes, "aot",
        [helper.make_tensor_value_info(x, TP.FLOAT, [2, 3, 8, 8]),
         helper.make_tensor_value_info(b, TP.FLOAT, [4, 1, 1])],
        [helper.make_tensor_value_info(relu, TP.FLOAT, [2, 4, 8, 8]),
         helper.make_tensor_value_info(pooled, TP.FLOAT, [2, 4, 1, 1])],
        [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) / 5, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


def pattern_inputs(model):
    """What the C program feeds: input k holds sin(i) (k even) or cos(i) (k odd), i the flat index."""
    feeds = {}
    for k, value_info in enumerate(model.graph.input):
        shape = [d.dim_value for d in value_info.type.tensor_type.shape.dim]
        index = np.arange(int(np.prod(shape)), dtype=np.float32)
        feeds[value_info.name] = (np.sin(index) if k % 2 == 0 else np.cos(index)).astype(np.float32).reshape(shape)
    return feeds


def c_program(num_inputs, num_outputs, header):
    """Reads nothing, writes the outputs to argv[1] and describes the header's macros on stdout."""
    lines = ["#include <math.h>", "#include <stdio.h>", "#include <stdlib.h>", "#include <string.h>",
             f'#include "{header}"', ""]
    for k in range(num_inputs):
        lines.append(f"static fusecc_input_{k}_t in{k}[FUSECC_INPUT_{k}_ELEMENTS];")
    for k in range(num_outputs):
        lines += [f"static fusecc_output_{k}_t out{k}[FUSECC_OUTPUT_{k}_ELEMENTS];",
                  f"static fusecc_output_{k}_t again{k}[FUSECC_OUTPUT_{k}_ELEMENTS];"]
    lines += ["", "int main(int argc, char **argv) {", "    size_t i;", "    FILE *file;",
              "    void *workspace;", "    size_t workspace_size;"]
    for k in range(num_inputs):
        fn = "sin" if k % 2 == 0 else "cos"
        lines += [f"    for (i = 0; i < FUSECC_INPUT_{k}_ELEMENTS; i++) in{k}[i] = (float){fn}((double)i);",
                  f"    {{ static const long shape[] = FUSECC_INPUT_{k}_SHAPE;",
                  f'      printf("input %d %s %d", {k}, FUSECC_INPUT_{k}_NAME, FUSECC_INPUT_{k}_RANK);',
                  f'      for (i = 0; i < FUSECC_INPUT_{k}_RANK; i++) printf(" %ld", shape[i]);',
                  '      printf("\\n"); }']
    for k in range(num_outputs):
        lines += [f"    {{ static const long shape[] = FUSECC_OUTPUT_{k}_SHAPE;",
                  f'      printf("output %d %s %d", {k}, FUSECC_OUTPUT_{k}_NAME, FUSECC_OUTPUT_{k}_RANK);',
                  f'      for (i = 0; i < FUSECC_OUTPUT_{k}_RANK; i++) printf(" %ld", shape[i]);',
                  '      printf("\\n"); }']
    ins = ", ".join(f"in{k}" for k in range(num_inputs))
    outs = ", ".join(f"out{k}" for k in range(num_outputs))
    agains = ", ".join(f"again{k}" for k in range(num_outputs))
    lines += [
        f"    {{ const void *inputs[FUSECC_NUM_INPUTS] = {{{ins}}};",
        f"      void *outputs[FUSECC_NUM_OUTPUTS] = {{{outs}}};",
        f"      void *again[FUSECC_NUM_OUTPUTS] = {{{agains}}};",
        "      if (argc < 2) return 64;",
        "      if (fusecc_run(inputs, outputs) != 0) return 2;",
        "      /* the same call with a caller-provided workspace gives the same bytes */",
        "      workspace_size = (size_t)fusecc_workspace_size();",
        "      workspace = aligned_alloc(64, workspace_size ? (workspace_size + 63) / 64 * 64 : 64);",
        "      if (workspace == NULL) return 3;",
        "      if (fusecc_run_with_workspace(inputs, again, workspace) != 0) return 4;",
        "      free(workspace); }"]
    for k in range(num_outputs):
        lines.append(f"    if (memcmp(out{k}, again{k}, sizeof out{k}) != 0) return 5;")
    lines.append('    file = fopen(argv[1], "wb");')
    lines.append("    if (file == NULL) return 6;")
    for k in range(num_outputs):
        lines.append(f"    if (fwrite(out{k}, sizeof out{k}[0], FUSECC_OUTPUT_{k}_ELEMENTS, file)"
                     f" != FUSECC_OUTPUT_{k}_ELEMENTS) return 7;")
    lines += ["    fclose(file);", '    printf("info %s\\n", fusecc_model_info());', "    return 0;", "}", ""]
    return "\n".join(lines)


def build_and_run_c(library, model, tmp_path):
    """Compile the C program against ``library`` (and its header), run it, return (outputs, stdout lines)."""
    directory = os.path.dirname(os.path.abspath(library))
    header = os.path.splitext(os.path.basename(library))[0] + ".h"
    source = tmp_path / "prog.c"
    source.write_text(c_program(len(model.graph.input), len(model.graph.output), header))
    program = tmp_path / "prog"
    compile_cmd = [*CC, "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", directory, str(source),
                   "-o", str(program), "-L", directory, f"-l:{os.path.basename(library)}",
                   f"-Wl,-rpath,{directory}", "-lm"]
    built = subprocess.run(compile_cmd, capture_output=True, text=True)
    assert built.returncode == 0, f"{' '.join(compile_cmd)}\n{built.stderr}"
    raw = tmp_path / "outputs.bin"
    ran = subprocess.run([str(program), str(raw)], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, f"exit {ran.returncode}\n{ran.stdout}\n{ran.stderr}"
    data = np.fromfile(raw, dtype=np.float32)
    outputs, offset = [], 0
    for value_info in model.graph.output:
        shape = [d.dim_value for d in value_info.type.tensor_type.shape.dim]
        count = int(np.prod(shape))
        outputs.append(data[offset:offset + count].reshape(shape))
        offset += count
    assert offset == data.size
    return outputs, ran.stdout.splitlines()


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "fusecc.cli", *map(str, args)], capture_output=True, text=True,
                          **kwargs)


@pytest.fixture(scope="module")
def model_and_expected():
    model = two_in_two_out_model()
    feeds = pattern_inputs(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return model, feeds, session.run(None, feeds)


@pytest.fixture(scope="module")
def cli_library(model_and_expected, tmp_path_factory):
    model, _, _ = model_and_expected
    directory = tmp_path_factory.mktemp("cli")
    onnx.save(model, directory / "model.onnx")
    result = run_cli(directory / "model.onnx", "-o", directory / "lib.so")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return directory / "lib.so"


def check_c_run(library, model_and_expected, tmp_path):
    model, _, expected = model_and_expected
    outputs, stdout = build_and_run_c(str(library), model, tmp_path)
    for got, want in zip(outputs, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    described = [line.split() for line in stdout if line.startswith(("input ", "output "))]
    assert described == [
        ["input", "0", "input:0", "4", "2", "3", "8", "8"], ["input", "1", "gpu_0/bias", "3", "4", "1", "1"],
        ["output", "0", "features/relu", "4", "2", "4", "8", "8"], ["output", "1", "pooled", "4", "2", "4", "1", "1"]]
    (info_line,) = [line for line in stdout if line.startswith("info ")]
    info = json.loads(info_line[len("info "):])
    assert [i["name"] for i in info["inputs"]] == list(INPUT_NAMES)
    assert [o["name"] for o in info["outputs"]] == list(OUTPUT_NAMES)
    assert info["kernels"]


def test_cli_library_from_c(cli_library, model_and_expected, tmp_path):
    assert (cli_library.parent / "lib.h").exists()
    check_c_run(cli_library, model_and_expected, tmp_path)


def test_header_declares_entry_points(cli_library):
    header = (cli_library.parent / "lib.h").read_text()
    assert "int fusecc_run(const void *const *inputs, void *const *outputs);" in header
    assert "#define FUSECC_INPUT_0_ELEMENTS 384" in header
    assert "#define FUSECC_INPUT_1_ELEMENTS 4" in header
    assert "#define FUSECC_OUTPUT_1_ELEMENTS 8" in header
    assert "#define FUSECC_NUM_INPUTS 2" in header and "#define FUSECC_NUM_OUTPUTS 2" in header


@pytest.mark.skipif(CXX is None, reason="no C++ compiler")
def test_header_compiles_as_cxx(cli_library, tmp_path):
    source = tmp_path / "use.cpp"
    source.write_text('#include "lib.h"\nint main() { return FUSECC_NUM_INPUTS == 2 ? 0 : 1; }\n')
    result = subprocess.run([CXX, "-std=c++11", "-Wall", "-Werror", "-fsyntax-only", "-I", str(cli_library.parent),
                             str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_saved_library_from_c(model_and_expected, tmp_path):
    model, _, _ = model_and_expected
    library = tmp_path / "saved" / "model.so"
    library.parent.mkdir()
    fusecc.compile(model).save(str(library))
    assert (tmp_path / "saved" / "model.h").exists()
    check_c_run(library, model_and_expected, tmp_path)


def test_load_cli_library(cli_library, model_and_expected):
    model, feeds, expected = model_and_expected
    loaded = fusecc.load(str(cli_library))
    assert [s.name for s in loaded.inputs] == list(INPUT_NAMES)
    assert [(s.name, s.shape, s.dtype) for s in loaded.outputs] == [
        ("features/relu", (2, 4, 8, 8), "float32"), ("pooled", (2, 4, 1, 1), "float32")]
    for got, want in zip(loaded.run(feeds), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="gpu_0/bias"):
        loaded.run({INPUT_NAMES[0]: feeds[INPUT_NAMES[0]]})
    with pytest.raises(RuntimeError):
        loaded.save(str(cli_library.parent / "copy.so"))


def test_load_saved_library_matches_jit(model_and_expected, tmp_path):
    model, feeds, expected = model_and_expected
    jit = fusecc.compile(model)
    path = tmp_path / "jit.so"
    jit.save(str(path))
    loaded = fusecc.load(str(path))
    assert loaded.kernels == jit.kernels
    assert loaded.inputs == jit.inputs and loaded.outputs == jit.outputs
    for got, want, reference in zip(loaded(*feeds.values()), jit.run(feeds), expected):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5)


def test_load_relative_path(model_and_expected, tmp_path, monkeypatch):
    """``fusecc.load("model.so")`` means the file in the working directory, as for any other file."""
    model, feeds, expected = model_and_expected
    monkeypatch.chdir(tmp_path)
    fusecc.compile(model).save("relative.so")
    loaded = fusecc.load("relative.so")
    np.testing.assert_allclose(loaded.run(feeds)[1], expected[1], rtol=1e-5, atol=1e-5)


def _unary_model(op_type):
    graph = helper.make_graph([helper.make_node(op_type, ["x"], ["y"], name=op_type.lower())], "unary",
                              [helper.make_tensor_value_info("x", TP.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, [4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_load_rebuilt_library_at_same_path(tmp_path):
    """Rebuilding a library in place and loading it again gives the new model, not the one loaded before."""
    x = np.array([-1, 2, -3, 4], dtype=np.float32)
    path = str(tmp_path / "model.so")
    fusecc.compile(_unary_model("Relu")).save(path)
    first = fusecc.load(path)
    np.testing.assert_array_equal(first.run({"x": x})[0], [0, 2, 0, 4])
    fusecc.compile(_unary_model("Neg")).save(path)
    second = fusecc.load(path)
    np.testing.assert_array_equal(second.run({"x": x})[0], [1, -2, 3, -4])
    np.testing.assert_array_equal(first.run({"x": x})[0], [0, 2, 0, 4])


@pytest.mark.parametrize("name", [
    "input:0",
    "caf\u00e9",
    'quote"back\\slash',
    "x*/y",
], ids=["colon", "non-ascii", "quote-backslash", "comment-end"])
def test_header_name_macro_for_any_onnx_name(name, tmp_path):
    """``FUSECC_INPUT_0_NAME`` is a C string equal to the ONNX name, whatever characters it holds."""
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", [name], ["y"], name="relu")], "names",
        [helper.make_tensor_value_info(name, TP.FLOAT, [4])], [helper.make_tensor_value_info("y", TP.FLOAT, [4])]),
        opset_imports=[helper.make_opsetid("", 13)])
    fusecc.compile(model).save(str(tmp_path / "names.so"))
    source = tmp_path / "names.c"
    source.write_text('#include <stdio.h>\n#include "names.h"\n'
                      "int main(void) { fputs(FUSECC_INPUT_0_NAME, stdout); return 0; }\n")
    built = subprocess.run([*CC, "-std=c11", "-Wall", "-Werror", "-I", str(tmp_path), str(source), "-o",
                            str(tmp_path / "names")], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    ran = subprocess.run([str(tmp_path / "names")], capture_output=True, check=True)
    assert ran.stdout == name.encode()
