"""Ahead-of-time libraries: ``fusecc model.onnx -o lib.so`` and ``CompiledModel.save``.

A C program includes the generated header, fills the inputs with a fixed
pattern (sin/cos of the index), calls ``<prefix>_run`` and writes the outputs as
raw bytes; the result must match ONNX Runtime. ``fusecc.load`` reads the same
libraries back into Python. Several models share one C program or one process;
the C API refuses NULL arguments and a CPU without the features the code needs.
"""

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

import fusecc
from fusecc.codegen import c_api
from fusecc.codegen.aot import default_prefix
from fusecc.codegen.cpu import CPUID_FEATURES, CpuRequirements
from fusecc.codegen.target import CodegenError, find_c_compiler
from fusecc.runtime.library import API_FUNCTIONS, RunError
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


def c_program(num_inputs, num_outputs, header, prefix):
    """Reads nothing, writes the outputs to argv[1] and describes the header's macros on stdout."""
    P = prefix.upper()
    lines = ["#include <math.h>", "#include <stdio.h>", "#include <stdlib.h>", "#include <string.h>",
             f'#include "{header}"', ""]
    for k in range(num_inputs):
        lines.append(f"static {prefix}_input_{k}_t in{k}[{P}_INPUT_{k}_ELEMENTS];")
    for k in range(num_outputs):
        lines += [f"static {prefix}_output_{k}_t out{k}[{P}_OUTPUT_{k}_ELEMENTS];",
                  f"static {prefix}_output_{k}_t again{k}[{P}_OUTPUT_{k}_ELEMENTS];"]
    lines += ["", "int main(int argc, char **argv) {", "    size_t i;", "    FILE *file;",
              "    void *workspace;", "    size_t workspace_size;"]
    for k in range(num_inputs):
        fn = "sin" if k % 2 == 0 else "cos"
        lines += [f"    for (i = 0; i < {P}_INPUT_{k}_ELEMENTS; i++) in{k}[i] = (float){fn}((double)i);",
                  f"    {{ static const long shape[] = {P}_INPUT_{k}_SHAPE;",
                  f'      printf("input %d %s %d %ld", {k}, {P}_INPUT_{k}_NAME, {P}_INPUT_{k}_RANK, '
                  f"(long){P}_INPUT_{k}_BYTES);",
                  f'      for (i = 0; i < {P}_INPUT_{k}_RANK; i++) printf(" %ld", shape[i]);',
                  '      printf("\\n"); }']
    for k in range(num_outputs):
        lines += [f"    {{ static const long shape[] = {P}_OUTPUT_{k}_SHAPE;",
                  f'      printf("output %d %s %d %ld", {k}, {P}_OUTPUT_{k}_NAME, {P}_OUTPUT_{k}_RANK, '
                  f"(long){P}_OUTPUT_{k}_BYTES);",
                  f'      for (i = 0; i < {P}_OUTPUT_{k}_RANK; i++) printf(" %ld", shape[i]);',
                  '      printf("\\n"); }']
    ins = ", ".join(f"in{k}" for k in range(num_inputs))
    outs = ", ".join(f"out{k}" for k in range(num_outputs))
    agains = ", ".join(f"again{k}" for k in range(num_outputs))
    lines += [
        f"    {{ const void *inputs[{P}_NUM_INPUTS] = {{{ins}}};",
        f"      void *outputs[{P}_NUM_OUTPUTS] = {{{outs}}};",
        f"      void *again[{P}_NUM_OUTPUTS] = {{{agains}}};",
        "      if (argc < 2) return 64;",
        f"      if ({prefix}_run(inputs, outputs) != {P}_OK) return 2;",
        "      /* the same call with a caller-provided workspace gives the same bytes */",
        f"      workspace_size = (size_t){prefix}_workspace_size();",
        f"      if (workspace_size != {P}_WORKSPACE_BYTES) return 8;",
        "      workspace = aligned_alloc(64, workspace_size ? (workspace_size + 63) / 64 * 64 : 64);",
        "      if (workspace == NULL) return 3;",
        f"      if ({prefix}_run_with_workspace(inputs, again, workspace) != {P}_OK) return 4;",
        "      free(workspace); }"]
    for k in range(num_outputs):
        lines.append(f"    if (memcmp(out{k}, again{k}, sizeof out{k}) != 0) return 5;")
    lines.append('    file = fopen(argv[1], "wb");')
    lines.append("    if (file == NULL) return 6;")
    for k in range(num_outputs):
        lines.append(f"    if (fwrite(out{k}, sizeof out{k}[0], {P}_OUTPUT_{k}_ELEMENTS, file)"
                     f" != {P}_OUTPUT_{k}_ELEMENTS) return 7;")
    lines += ["    fclose(file);", f'    printf("info %s\\n", {prefix}_model_info());', "    return 0;", "}", ""]
    return "\n".join(lines)


def compile_c(source, program, libraries, *extra):
    """Compile ``source`` strictly and link it with ``libraries`` (each with its header beside it)."""
    command = [*CC, "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", str(source), "-o", str(program)]
    for library in libraries:
        directory = os.path.dirname(os.path.abspath(library))
        command += ["-I", directory, "-L", directory, f"-l:{os.path.basename(library)}", f"-Wl,-rpath,{directory}"]
    command += [*extra, "-lm"]
    built = subprocess.run(command, capture_output=True, text=True)
    assert built.returncode == 0, f"{' '.join(command)}\n{built.stderr}"


def build_and_run_c(library, model, tmp_path):
    """Compile the C program against ``library`` (and its header), run it, return (outputs, stdout lines)."""
    header = os.path.splitext(os.path.basename(library))[0] + ".h"
    source = tmp_path / "prog.c"
    source.write_text(c_program(len(model.graph.input), len(model.graph.output), header, default_prefix(library)))
    program = tmp_path / "prog"
    compile_c(source, program, [library])
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
        ["input", "0", "input:0", "4", "1536", "2", "3", "8", "8"],
        ["input", "1", "gpu_0/bias", "3", "16", "4", "1", "1"],
        ["output", "0", "features/relu", "4", "2048", "2", "4", "8", "8"],
        ["output", "1", "pooled", "4", "32", "2", "4", "1", "1"]]
    (info_line,) = [line for line in stdout if line.startswith("info ")]
    info = json.loads(info_line[len("info "):])
    assert [i["name"] for i in info["inputs"]] == list(INPUT_NAMES)
    assert [o["name"] for o in info["outputs"]] == list(OUTPUT_NAMES)
    assert info["kernels"]


def test_cli_library_from_c(cli_library, model_and_expected, tmp_path):
    assert (cli_library.parent / "lib.h").exists()
    check_c_run(cli_library, model_and_expected, tmp_path)


def test_header_declares_entry_points(cli_library):
    """``lib.so``'s API and macros start with ``lib``; each buffer's size is given in elements and bytes."""
    header = (cli_library.parent / "lib.h").read_text()
    for declaration in ("int lib_run(const void *const *inputs, void *const *outputs);",
                        "int lib_run_with_workspace(const void *const *inputs, void *const *outputs, void *workspace);",
                        "int64_t lib_workspace_size(void);", "const char *lib_model_info(void);",
                        "const char *lib_last_error(void);",
                        "int lib_run_with_threads(const void *const *inputs, void *const *outputs, int threads);",
                        "void lib_set_num_threads(int threads);", "int lib_num_threads(void);",
                        "void lib_set_parallel_for(lib_parallel_for_fn parallel_for, void *host);"):
        assert declaration in header
    assert "#ifndef LIB_FUSECC_H" in header and "#define LIB_OK 0" in header
    assert "#define LIB_INPUT_0_ELEMENTS 384" in header and "#define LIB_INPUT_0_BYTES 1536" in header
    assert "#define LIB_INPUT_1_ELEMENTS 4" in header
    assert "#define LIB_OUTPUT_1_ELEMENTS 8" in header and "#define LIB_OUTPUT_1_BYTES 32" in header
    assert "#define LIB_NUM_INPUTS 2" in header and "#define LIB_NUM_OUTPUTS 2" in header
    code = re.sub(r"/\*.*?\*/", "", header, flags=re.S)  # comments may name FUSECC_NUM_THREADS
    assert not re.search(r"\bFUSECC_|\bfusecc_", code)


def nm(*args):
    """``nm`` on a library, or a skip if binutils are missing."""
    if shutil.which("nm") is None:
        pytest.skip("no nm")
    return subprocess.run(["nm", *map(str, args)], capture_output=True, text=True, check=True).stdout


def test_library_exports_only_its_api(cli_library):
    """The API functions are the only dynamic symbols; kernels, fusecc_main and the thread pool stay inside."""
    exported = {line.split()[-1] for line in nm("-D", "--defined-only", cli_library).splitlines()}
    assert exported == {f"lib_{name}" for name in API_FUNCTIONS}
    local = {line.split()[-1]: line.split()[-2] for line in nm(cli_library).splitlines() if len(line.split()) == 3}
    kernels = [name for name in local if name.startswith("fused_")]
    assert kernels and all(local[name] == "t" for name in kernels)
    assert local["fusecc_main"] == "t" and local["fusecc_parallel_for"] == "t"


@pytest.mark.skipif(CXX is None, reason="no C++ compiler")
def test_header_compiles_as_cxx(cli_library, tmp_path):
    source = tmp_path / "use.cpp"
    source.write_text('#include "lib.h"\nint main() { return LIB_NUM_INPUTS == 2 ? 0 : 1; }\n')
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
    loaded.save(str(cli_library.parent / "copy.so"))
    assert (cli_library.parent / "copy.so").read_bytes() == cli_library.read_bytes()
    loaded.close()


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
                      "int main(void) { fputs(NAMES_INPUT_0_NAME, stdout); return 0; }\n")
    built = subprocess.run([*CC, "-std=c11", "-Wall", "-Werror", "-I", str(tmp_path), str(source), "-o",
                            str(tmp_path / "names")], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    ran = subprocess.run([str(tmp_path / "names")], capture_output=True, check=True)
    assert ran.stdout == name.encode()


@pytest.mark.parametrize("library, prefix", [("model.so", "model"), ("/some/dir/lib.so", "lib"),
                                             ("my-net.v2.so", "my_net_v2"), ("2fast.so", "model_2fast"),
                                             (".hidden.so", "_hidden")])
def test_default_prefix_is_a_c_identifier(library, prefix):
    assert default_prefix(library) == prefix


def test_save_with_a_bad_name_is_an_error(tmp_path):
    with pytest.raises(CodegenError, match="'2fast' is not a C identifier"):
        fusecc.compile(_unary_model("Relu")).save(str(tmp_path / "m.so"), name="2fast")


def _info(shape, workspace_size=0):
    tensor = {"name": "x", "shape": shape, "dtype": "float32"}
    return {"inputs": [tensor], "outputs": [{**tensor, "name": "y"}], "kernels": [], "workspace_size": workspace_size}


@pytest.mark.parametrize("shape, problem", [([2 ** 32, 2 ** 32], "more than an int64 can count"),
                                            ([2 ** 61], "more than an int64 can count"),
                                            ([4, -1], "negative dimension -1")])
def test_header_refuses_sizes_beyond_int64(shape, problem):
    """``_ELEMENTS`` and ``_BYTES`` never overflow: a buffer of 2^63 bytes or more has no header."""
    api = c_api.CApi("m", "m.so", "m.h", _info(shape), CpuRequirements("x86-64", ()))
    with pytest.raises(CodegenError, match=problem):
        api.header_text()


def test_header_gives_sizes_up_to_int64():
    header = c_api.CApi("m", "m.so", "m.h", _info([2 ** 60, 1]), CpuRequirements("x86-64", ())).header_text()
    assert f"#define M_INPUT_0_ELEMENTS {2 ** 60}" in header and f"#define M_INPUT_0_BYTES {2 ** 62}" in header


def mlp_model(seed):
    """x[2,8] -> MatMul, Add, Relu -> MatMul, Add -> y[2,4], its weights drawn from ``seed``; and its numpy reference.

    Every seed gives the same kernels under the same names: only the weights differ."""
    rng = np.random.default_rng(seed)
    w1, b1 = rng.standard_normal((8, 16)).astype(np.float32), rng.standard_normal(16).astype(np.float32)
    w2, b2 = rng.standard_normal((16, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"), helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["o"], name="fc2"),
             helper.make_node("Add", ["o", "b2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TP.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, [2, 4])],
                              [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"),
                                                                         (b2, "b2"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return model, lambda x: np.maximum(x @ w1 + b1, 0) @ w2 + b2


MLP_INPUT = (np.arange(16, dtype=np.float32).reshape(2, 8) / 10 - 0.7)


def save_mlp(seed, path):
    model, reference = mlp_model(seed)
    with fusecc.compile(model) as compiled:
        compiled.save(str(path))
    return reference


def test_two_models_in_one_c_program(tmp_path):
    """Two libraries with the same kernel names linked into one program each compute their own model."""
    references = [save_mlp(seed, tmp_path / f"{name}.so") for seed, name in ((1, "first"), (2, "second"))]
    source = tmp_path / "two.c"
    body = []
    for name in ("first", "second"):
        P = name.upper()
        body += [f"    {{ static {name}_input_0_t x[{P}_INPUT_0_ELEMENTS];",
                 f"      static {name}_output_0_t y[{P}_OUTPUT_0_ELEMENTS];",
                 "      const void *inputs[1]; void *outputs[1];",
                 "      inputs[0] = x; outputs[0] = y;",
                 f"      for (i = 0; i < {P}_INPUT_0_ELEMENTS; i++) x[i] = (float)i / 10.0f - 0.7f;",
                 f"      if ({name}_run(inputs, outputs) != {P}_OK) return 2;",
                 f'      for (i = 0; i < {P}_OUTPUT_0_ELEMENTS; i++) printf("{name} %.9g\\n", (double)y[i]); }}']
    source.write_text("\n".join(['#include <stdio.h>', '#include "first.h"', '#include "second.h"', "",
                                 "int main(void) {", "    size_t i;", *body, "    return 0;", "}", ""]))
    compile_c(source, tmp_path / "two", [tmp_path / "first.so", tmp_path / "second.so"])
    ran = subprocess.run([str(tmp_path / "two")], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    for name, reference in zip(("first", "second"), references):
        got = np.array([float(line.split()[1]) for line in ran.stdout.splitlines() if line.startswith(name + " ")])
        np.testing.assert_allclose(got.reshape(2, 4), reference(MLP_INPUT), rtol=1e-5, atol=1e-5)


def test_ten_models_in_one_process(tmp_path):
    """Ten libraries loaded RTLD_GLOBAL, then ten ``fusecc.load``s of them: every model computes its own weights."""
    references, global_handles, models = [], [], []
    for seed in range(10):
        path = tmp_path / f"mlp{seed}.so"
        references.append(save_mlp(seed, path))
        global_handles.append(ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL))
        models.append(fusecc.load(str(path)))
    for seed, (reference, handle, model) in enumerate(zip(references, global_handles, models)):
        expected = reference(MLP_INPUT)
        with model:
            np.testing.assert_allclose(model.run({"x": MLP_INPUT})[0], expected, rtol=1e-5, atol=1e-5)
        y = np.empty((2, 4), np.float32)
        run = handle[f"mlp{seed}_run"]
        run.argtypes, run.restype = [ctypes.c_void_p, ctypes.c_void_p], ctypes.c_int
        assert run((ctypes.c_void_p * 1)(MLP_INPUT.ctypes.data), (ctypes.c_void_p * 1)(y.ctypes.data)) == 0
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


NULL_CALLS = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include "mlp.h"

static void report(const char *call, int status) {
    printf("%s|%d|%s\n", call, status, mlp_last_error());
}

static void *other_thread(void *unused) {
    (void)unused;
    printf("other thread|%s\n", mlp_last_error());
    return NULL;
}

int main(void) {
    static mlp_input_0_t x[MLP_INPUT_0_ELEMENTS];
    static mlp_output_0_t y[MLP_OUTPUT_0_ELEMENTS];
    static float both[MLP_INPUT_0_ELEMENTS + MLP_OUTPUT_0_ELEMENTS];  /* the input, then the output right after */
    const void *inputs[1];
    void *outputs[1];
    const void *null_input[1] = {NULL};
    void *null_output[1] = {NULL};
    void *workspace = aligned_alloc(64, MLP_WORKSPACE_BYTES);
    pthread_t thread;
    inputs[0] = x;
    outputs[0] = y;
    if (MLP_WORKSPACE_BYTES == 0 || workspace == NULL)
        return 2;
    report("run(NULL, outputs)", mlp_run(NULL, outputs));
    report("run(inputs, NULL)", mlp_run(inputs, NULL));
    report("run({NULL}, outputs)", mlp_run(null_input, outputs));
    report("run_with_workspace(inputs, {NULL}, workspace)", mlp_run_with_workspace(inputs, null_output, workspace));
    report("run_with_workspace(inputs, outputs, NULL)", mlp_run_with_workspace(inputs, outputs, NULL));
    outputs[0] = x + 1;
    report("run(inputs, {inside the input})", mlp_run(inputs, outputs));
    outputs[0] = workspace;
    report("run_with_workspace(inputs, {workspace}, workspace)", mlp_run_with_workspace(inputs, outputs, workspace));
    inputs[0] = both;
    outputs[0] = both + MLP_INPUT_0_ELEMENTS;
    report("run({both}, {right after the input})", mlp_run(inputs, outputs));
    inputs[0] = x;
    outputs[0] = y;
    if (pthread_create(&thread, NULL, other_thread, NULL) != 0 || pthread_join(thread, NULL) != 0)
        return 3;
    report("run(inputs, outputs)", mlp_run(inputs, outputs));
    report("run_with_workspace(inputs, outputs, workspace)", mlp_run_with_workspace(inputs, outputs, workspace));
    free(workspace);
    return 0;
}
"""


def test_c_api_refuses_null_and_overlapping_arguments(tmp_path):
    """NULL arrays, NULL elements and a NULL workspace return MLP_ERROR_NULL_ARGUMENT, an output sharing memory
    with an input or the workspace MLP_ERROR_OVERLAPPING_ARGUMENTS, each with a message, never a signal or a
    wrong answer (an output right after an input is fine); the message is the calling thread's, and a
    successful run clears it."""
    save_mlp(0, tmp_path / "mlp.so")
    (tmp_path / "nulls.c").write_text(NULL_CALLS)
    compile_c(tmp_path / "nulls.c", tmp_path / "nulls", [tmp_path / "mlp.so"], "-pthread")
    ran = subprocess.run([str(tmp_path / "nulls")], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, (ran.returncode, ran.stdout, ran.stderr)
    assert ran.stdout.splitlines() == [
        "run(NULL, outputs)|1|mlp_run: inputs is NULL",
        "run(inputs, NULL)|1|mlp_run: outputs is NULL",
        "run({NULL}, outputs)|1|mlp_run: inputs[0] is NULL",
        "run_with_workspace(inputs, {NULL}, workspace)|1|mlp_run_with_workspace: outputs[0] is NULL",
        "run_with_workspace(inputs, outputs, NULL)|1|mlp_run_with_workspace: workspace is NULL",
        "run(inputs, {inside the input})|4|mlp_run: outputs[0] shares memory with inputs[0]",
        "run_with_workspace(inputs, {workspace}, workspace)|4|mlp_run_with_workspace: outputs[0] shares memory "
        "with the workspace",
        "run({both}, {right after the input})|0|",
        "other thread|",
        "run(inputs, outputs)|0|",
        "run_with_workspace(inputs, outputs, workspace)|0|"]


def _feature_this_cpu_lacks():
    import llvmlite.binding as llvm
    host = llvm.get_host_cpu_features()
    lacking = [name for name in CPUID_FEATURES if not host.get(name, False)]
    if not lacking:
        pytest.skip("this CPU has every feature the library checks")
    return ("amx-tile" if "amx-tile" in lacking else lacking[0]), host.flatten()


CPU_CHECK_CALL = r"""
#include <stdio.h>
#include "cpu.h"

int main(void) {
    static cpu_input_0_t x[CPU_INPUT_0_ELEMENTS];
    static cpu_output_0_t y[CPU_OUTPUT_0_ELEMENTS];
    const void *inputs[1];
    void *outputs[1];
    int status;
    inputs[0] = x;
    outputs[0] = y;
    status = cpu_run(inputs, outputs);
    printf("%d|%s\n", status == CPU_ERROR_UNSUPPORTED_CPU, cpu_last_error());
    return 0;
}
"""


def test_library_refuses_a_cpu_without_its_features(tmp_path):
    """A library compiled for a feature this CPU lacks loads, and every run returns
    CPU_ERROR_UNSUPPORTED_CPU naming the feature, in C and in Python."""
    feature, host_features = _feature_this_cpu_lacks()
    model, _ = mlp_model(0)
    onnx.save(model, tmp_path / "mlp.onnx")
    env = {**os.environ, "FUSECC_CPU_FEATURES": f"{host_features},+{feature}"}
    env.pop("FUSECC_CPU", None)
    built = run_cli(tmp_path / "mlp.onnx", "-o", tmp_path / "cpu.so", env=env)
    assert built.returncode == 0, built.stderr
    assert feature in (tmp_path / "cpu.h").read_text()
    (tmp_path / "cpu.c").write_text(CPU_CHECK_CALL)
    compile_c(tmp_path / "cpu.c", tmp_path / "cpu", [tmp_path / "cpu.so"])
    ran = subprocess.run([str(tmp_path / "cpu")], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, (ran.returncode, ran.stderr)
    refused, message = ran.stdout.strip().split("|")
    assert refused == "1"
    assert message.startswith("cpu.so needs the CPU features ") and feature in message.split("this CPU lacks ")[1]
    with fusecc.load(str(tmp_path / "cpu.so")) as loaded:
        with pytest.raises(RunError, match=f"cpu_run returned 3: .*this CPU lacks .*{feature}"):
            loaded.run({"x": MLP_INPUT})


def test_load_reads_the_prefix_from_the_library(tmp_path):
    """A library saved under one name and renamed loads by the prefix it exports."""
    fusecc.compile(_unary_model("Relu")).save(str(tmp_path / "relu.so"), name="rectifier")
    assert "int rectifier_run(" in (tmp_path / "relu.h").read_text()
    shutil.copy(tmp_path / "relu.so", tmp_path / "renamed.so")
    with fusecc.load(str(tmp_path / "renamed.so")) as loaded:
        np.testing.assert_array_equal(loaded.run({"x": np.array([-1, 2, -3, 4], np.float32)})[0], [0, 2, 0, 4])


def test_load_refuses_a_library_without_a_model_api(tmp_path):
    (tmp_path / "other.c").write_text("int answer(void) { return 42; }\n")
    subprocess.run([*CC, "-shared", "-fPIC", str(tmp_path / "other.c"), "-o", str(tmp_path / "other.so")], check=True)
    with pytest.raises(OSError, match="not a fusecc model library: it exports no <name>_model_info"):
        fusecc.load(str(tmp_path / "other.so"))
    (tmp_path / "text.so").write_text("not a library")
    with pytest.raises(OSError, match="text.so"):
        fusecc.load(str(tmp_path / "text.so"))
