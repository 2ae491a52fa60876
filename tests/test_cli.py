"""The command-line tools ``fusecc`` and ``fusecc-opt``, run as subprocesses."""

import os
import platform
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

import fusecc
import fusecc.dialects  # noqa: F401  (registers the ops the parser reads)
import fusecc.lowering  # noqa: F401
from fusecc.frontend.onnx_import import supported_ops
from fusecc.ir.parser import parse_module
from fusecc.ir.printer import print_module
from fusecc.pipeline import PHASES, phase_pipelines

DUMP_HEADER = re.compile(r"^// -----// IR Dump (Before|After) ([\w-]+) //----- //$", re.M)


def run_tool(module, *args, check_ok=True, **kwargs):
    result = subprocess.run([sys.executable, "-c", f"import sys; from fusecc.cli import {module}; sys.exit({module}())",
                             *map(str, args)], capture_output=True, text=True, timeout=300, **kwargs)
    assert "Traceback" not in result.stderr, result.stderr
    if check_ok:
        assert result.returncode == 0, result.stderr
    return result


def fusecc_cli(*args, **kwargs):
    return run_tool("main", *args, **kwargs)


def fusecc_opt(*args, **kwargs):
    return run_tool("opt_main", *args, **kwargs)


def mlp_block_model():
    """x @ W + b -> Relu: three ONNX nodes that fuse into one kernel; W is a resource (> 16 values)."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["mm"], name="matmul"),
             helper.make_node("Add", ["mm", "b"], ["biased"], name="add"),
             helper.make_node("Relu", ["biased"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TP.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, [2, 16])],
                              [numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "W"),
                               numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "block.onnx"
    onnx.save(mlp_block_model(), path)
    return path


def renumbered(ir):
    """``ir`` with numeric SSA names renumbered in order of appearance (the parser keeps the names it read)."""
    numbers = {}
    return re.sub(r"%(\d+)\b", lambda m: "%" + str(numbers.setdefault(m.group(1), len(numbers))), ir)


def passes_of(phase, fusion=True):
    return [p.split("{")[0] for p in re.split(r",(?![^{]*})", phase_pipelines(fusion)[phase])]


# --------------------------------------------------------------------------------------
# --version, --no-cache
# --------------------------------------------------------------------------------------
def test_version():
    assert fusecc_cli("--version").stdout == f"fusecc {fusecc.__version__}\n"


def test_no_cache_leaves_the_cache_alone(model_path, tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "FUSECC_CACHE": "1", "FUSECC_CACHE_DIR": str(cache)}
    fusecc_cli(model_path, "-o", tmp_path / "lib.so", "--no-cache", env=env)
    assert (tmp_path / "lib.so").exists() and not cache.exists()
    fusecc_cli(model_path, "-o", tmp_path / "lib.so", env=env)
    kept = set(cache.glob("*.entry"))  # the library, and the thread pool asked for its default thread count
    assert len(kept) == 2
    fusecc_cli(model_path, "-o", tmp_path / "lib.so", env=env)
    assert set(cache.glob("*.entry")) == kept


# --------------------------------------------------------------------------------------
# --list-ops
# --------------------------------------------------------------------------------------
def test_list_ops():
    result = fusecc_cli("--list-ops")
    ops = result.stdout.splitlines()
    assert ops == sorted(set(ops)) == supported_ops()
    assert {"Add", "BatchNormalization", "Conv", "Gemm", "MatMul", "MaxPool", "Relu", "Softmax"} <= set(ops)
    assert "NonMaxSuppression" not in ops
    assert result.stderr.strip() == f"# {len(ops)} ONNX op types"


# --------------------------------------------------------------------------------------
# --emit and --compile-to
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra", [[], ["--emit=ir"], ["--compile-to=import"], ["--compile-to=graph"],
                                   ["--compile-to=fusion"], ["--compile-to=loops"]],
                         ids=["default", "emit-ir", "import", "graph", "fusion", "loops"])
def test_printed_ir_reparses_unchanged(model_path, tmp_path, extra):
    """Whatever the phase, ``fusecc-opt`` reads the printed IR back and prints it identically."""
    ir = fusecc_cli(model_path, *extra).stdout
    assert ir.startswith("func @main(")
    path = tmp_path / "printed.fir"
    path.write_text(ir)
    assert fusecc_opt(path).stdout == ir


def test_compile_to_stops_after_each_phase(model_path):
    imported = fusecc_cli(model_path, "--compile-to=import").stdout
    graph = fusecc_cli(model_path, "--compile-to=graph").stdout
    fused = fusecc_cli(model_path, "--compile-to=fusion").stdout
    loops = fusecc_cli(model_path, "--emit=ir").stdout
    assert "tensor.matmul" in imported and "kernel.fused" not in imported
    assert "tensor.matmul" in graph and "kernel.fused" not in graph and "memref" not in graph
    assert "kernel.fused" in fused and "memref" not in fused
    assert "memref<" in loops and "loop.for" in loops and "kernel.launch" in loops and "tensor." not in loops
    assert fusecc_cli(model_path, "--compile-to=loops").stdout == loops


def test_loop_level_ir_compiles_as_the_model_does(model_path, tmp_path):
    """``--emit=ir``'s output, edited or not, compiles on: to a library with the CLI, and with the API."""
    loops = tmp_path / "loops.fir"
    fusecc_cli(model_path, "--emit=ir", "-o", loops)
    fusecc_cli(loops, "-o", tmp_path / "loops.so")
    x = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    from_loops = fusecc.compile(str(loops), cache=False)
    assert [k.name for k in from_loops.kernels] == [k.name for k in fusecc.compile(str(model_path), cache=False).kernels]
    np.testing.assert_array_equal(from_loops.run({"x": x})[0], fusecc.load(str(tmp_path / "loops.so")).run({"x": x})[0])
    np.testing.assert_allclose(from_loops.run({"x": x})[0], fusecc.compile(str(model_path)).run({"x": x})[0],
                               rtol=1e-6, atol=1e-6)
    elided = tmp_path / "elided.fir"
    fusecc_cli(model_path, "--emit=ir", "--elide-weights", "-o", elided)
    result = fusecc_cli(elided, "-o", tmp_path / "elided.so", check_ok=False)
    assert result.returncode == 1 and "were elided from this IR" in result.stderr


@pytest.mark.parametrize("stage", ["llvm", "asm", "obj"])
def test_compile_to_reaches_the_code(model_path, tmp_path, stage):
    """``--compile-to`` stops at LLVM IR, assembly or the object as ``--emit`` does, to a file or stdout."""
    out = tmp_path / f"model.{stage}"
    fusecc_cli(model_path, f"--compile-to={stage}", "-o", out)
    fusecc_cli(model_path, f"--emit={stage}", "-o", tmp_path / "emitted")
    if stage == "obj":
        assert out.read_bytes()[:4] == b"\x7fELF"
    else:
        assert out.read_text() == (tmp_path / "emitted").read_text()
        assert "fusecc_main" in out.read_text()


@pytest.mark.parametrize("command", [["main", "--compile-to=import"], ["main", "--emit=llvm"], ["opt_main"]])
def test_output_to_a_reader_that_left_ends_quietly(model_path, tmp_path, command):
    """``fusecc model.onnx --emit=llvm | head``: once the reader has gone, writing fails; the tool stops with
    status 1 and no traceback."""
    source = model_path
    if command[0] == "opt_main":
        source = tmp_path / "graph.fir"
        fusecc_cli(model_path, "--compile-to=graph", "-o", source)
    process = subprocess.Popen([sys.executable, "-c", f"import sys; from fusecc.cli import {command[0]}; "
                                f"sys.exit({command[0]}())", str(source), *command[1:]],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader leaves before anything is written
    stderr = process.stderr.read()
    assert process.wait(timeout=300) == 1 and stderr == ""


def test_compile_to_and_emit_must_agree(model_path):
    result = fusecc_cli(model_path, "--compile-to=llvm", "--emit=asm", check_ok=False)
    assert result.returncode == 1
    assert result.stderr == "fusecc: error: --compile-to=llvm and --emit=asm ask for different outputs\n"


def test_emit_llvm(model_path):
    text = fusecc_cli(model_path, "--emit=llvm").stdout
    assert re.search(r"^define .*@fusecc_main\(", text, re.M)
    kernels = re.findall(r"^define .*@(fused_\w+)\(", text, re.M)
    assert kernels == [k.name for k in fusecc.compile(str(model_path)).kernels]


def test_emit_asm_has_kernel_symbols(model_path):
    """Kernels are labelled by name but local to the object; ``fusecc_main`` is its one global symbol."""
    text = fusecc_cli(model_path, "--emit=asm").stdout
    labels = re.findall(r"^(fused_\w+):", text, re.M)
    assert labels and re.findall(r"^\s\.globl\s+(\w+)", text, re.M) == ["fusecc_main"]
    assert re.search(r"^fusecc_main:", text, re.M)


def test_emit_obj_is_elf(model_path, tmp_path):
    fusecc_cli(model_path, "-o", tmp_path / "model.o")
    assert (tmp_path / "model.o").read_bytes()[:4] == b"\x7fELF"
    assert fusecc_cli(model_path, "--emit=obj", check_ok=False).returncode == 1


def test_emit_from_unknown_suffix_is_an_error(model_path, tmp_path):
    result = fusecc_cli(model_path, "-o", tmp_path / "model.bin", check_ok=False)
    assert result.returncode == 1
    assert result.stderr.startswith("fusecc: error: cannot tell what to emit") and "--emit" in result.stderr


def test_fir_input_compiles_to_library(model_path, tmp_path):
    graph = tmp_path / "graph.fir"
    fusecc_cli(model_path, "--compile-to=graph", "-o", graph)
    fusecc_cli(graph, "-o", tmp_path / "from_fir.so")
    loaded = fusecc.load(str(tmp_path / "from_fir.so"))
    x = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)
    expected = fusecc.compile(mlp_block_model()).run({"x": x})[0]
    np.testing.assert_allclose(loaded.run({"x": x})[0], expected, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------------
# Fusion levels
# --------------------------------------------------------------------------------------
def test_o0_gives_one_kernel_per_op():
    model = mlp_block_model()
    assert len(fusecc.compile(model, opt_level=0).kernels) == len(model.graph.node) == 3
    assert len(fusecc.compile(model, fusion=False).kernels) == 3
    assert len(fusecc.compile(model).kernels) == 1
    assert len(fusecc.compile(model, opt_level=0, fusion=True).kernels) == 1


@pytest.mark.parametrize("flags, launches", [([], 1), (["-O0"], 3), (["--no-fusion"], 3), (["-O1"], 1)])
def test_cli_fusion_flags(model_path, flags, launches):
    ir = fusecc_cli(model_path, "--emit=ir", *flags).stdout
    assert ir.count("kernel.launch(") == launches


# --------------------------------------------------------------------------------------
# Debugging flags
# --------------------------------------------------------------------------------------
def test_print_ir_after_pass(model_path, tmp_path):
    result = fusecc_cli(model_path, "--print-ir-after=fold-constants", "-o", tmp_path / "m.so")
    headers = DUMP_HEADER.findall(result.stderr)
    assert headers == [("After", "fold-constants")] * passes_of("graph").count("fold-constants")
    dump = result.stderr.split("//----- //\n", 1)[1]
    assert dump.startswith("func @main(") and "tensor.matmul" in dump


def test_print_ir_before_and_after_all(model_path):
    result = fusecc_cli(model_path, "--compile-to=graph", "--print-ir-before=cse", "--print-ir-after-all")
    headers = DUMP_HEADER.findall(result.stderr)
    graph = passes_of("graph")
    assert [name for when, name in headers if when == "After"] == graph
    assert [name for when, name in headers if when == "Before"] == ["cse"]
    before_cse = headers.index(("Before", "cse"))
    assert headers[before_cse + 1] == ("After", "cse")


def test_time_passes_reports_the_whole_compile_in_one_table(model_path, tmp_path):
    """The import, every pass of every phase and LLVM's steps up to the linked library: one report."""
    result = fusecc_cli(model_path, "--time-passes", "--no-cache", "-o", tmp_path / "m.so")
    assert result.stderr.count("Compile timing report") == 1
    timed = re.findall(r"^\s+\d+\.\d+ \(\s*[\d.]+%\)\s+([\w-]+)$", result.stderr, re.M)
    expected = ["import"] + [p for phase in PHASES[1:4] for p in passes_of(phase)] + \
        ["llvm-ir", "llvm-optimize", "llvm-object", "link"]
    assert [name for name in timed if name != "Total"] == expected


def test_time_passes_of_an_emitted_object_and_of_fusecc_opt(model_path, tmp_path):
    result = fusecc_cli(model_path, "--time-passes", "--emit=obj", "-o", tmp_path / "m.o")
    timed = re.findall(r"^\s+\d+\.\d+ \(\s*[\d.]+%\)\s+([\w-]+)$", result.stderr, re.M)
    assert timed[0] == "import" and timed[-4:] == ["llvm-ir", "llvm-optimize", "llvm-object", "Total"]
    fir = tmp_path / "m.fir"
    fusecc_cli(model_path, "--compile-to=import", "-o", fir)
    opt = fusecc_opt(fir, "-p", "cse,dce", "--time-passes")
    assert opt.stderr.count("Compile timing report") == 1, opt.stderr
    assert re.findall(r"^\s+\d+\.\d+ \(\s*[\d.]+%\)\s+([\w-]+)$", opt.stderr, re.M) == ["cse", "dce", "Total"]


def test_dump_ir_dir_with_weights_writes_numbered_files_that_read_back(model_path, tmp_path):
    dump_dir = tmp_path / "dumps"
    fusecc_cli(model_path, "--dump-ir-dir", dump_dir, "--dump-weights", "-o", tmp_path / "m.so")
    files = sorted(os.listdir(dump_dir))
    expected = [p for phase in PHASES[1:4] for p in passes_of(phase)]
    assert all(re.fullmatch(r"\d{3}_[\w-]+\.fir", f) for f in files)
    assert sorted(f[4:-4] for f in files) == sorted(expected)
    # Dumps hold the weights and read back unchanged.
    for name in files:
        text = (dump_dir / name).read_text()
        assert "__elided__" not in text
        assert print_module(parse_module(text, name)) == text, name
    assert any("loop.for" in (dump_dir / f).read_text() for f in files)


def test_dump_ir_dir_elides_weights_by_default(model_path, tmp_path):
    dump_dir = tmp_path / "dumps"
    fusecc_cli(model_path, "--dump-ir-dir", dump_dir, "-o", tmp_path / "m.so")
    texts = [(dump_dir / name).read_text() for name in sorted(os.listdir(dump_dir))]
    assert all("dense_resource" not in text or "__elided__" in text for text in texts)
    assert any("__elided__" in text for text in texts)


def test_dump_ir_dir_numbers_follow_the_pipeline(model_path, tmp_path):
    dump_dir = tmp_path / "dumps"
    fusecc_cli(model_path, "--dump-ir-dir", dump_dir, "-o", tmp_path / "m.so")
    files = sorted(os.listdir(dump_dir))
    expected = [p for phase in PHASES[1:4] for p in passes_of(phase)]
    assert [f[4:-4] for f in files] == expected
    assert [int(f[:3]) for f in files] == list(range(1, len(expected) + 1))


def test_ir_with_elided_weights_reparses(model_path, tmp_path):
    """Dumps and reproducers elide weights; fusecc-opt must still read them (e.g. to replay a reproducer)."""
    text = fusecc_cli(model_path, "--compile-to=graph", "--elide-weights").stdout
    assert "__elided__" in text
    path = tmp_path / "elided.fir"
    path.write_text(text)
    assert fusecc_opt(path, "-p", "cse").stdout == text


# --------------------------------------------------------------------------------------
# Shared libraries: names and targets
# --------------------------------------------------------------------------------------
def test_name_prefixes_the_library_api(model_path, tmp_path):
    fusecc_cli(model_path, "-o", tmp_path / "block.so", "--name", "mlp_block")
    header = (tmp_path / "block.h").read_text()
    assert "int mlp_block_run(const void *const *inputs, void *const *outputs);" in header
    assert "#define MLP_BLOCK_INPUT_0_NAME \"x\"" in header and "#ifndef MLP_BLOCK_FUSECC_H" in header
    with fusecc.load(str(tmp_path / "block.so")) as loaded:
        assert [s.name for s in loaded.inputs] == ["x"]


def test_name_must_be_a_c_identifier(model_path, tmp_path):
    result = fusecc_cli(model_path, "-o", tmp_path / "block.so", "--name", "mlp-block", check_ok=False)
    assert result.returncode == 1
    assert result.stderr.startswith("fusecc: error: the library name 'mlp-block' is not a C identifier")
    assert not (tmp_path / "block.so").exists()


def test_list_cpus():
    """The names FUSECC_CPU and FUSECC_CPU_FEATURES accept, as LLVM lists them: one per line."""
    listing = fusecc_cli("--list-cpus").stdout.splitlines()
    features_at = next(i for i, line in enumerate(listing) if line.startswith("# features"))
    cpus, features = listing[1:features_at], listing[features_at + 1:]
    assert listing[0].startswith("# CPUs") and "generic" in cpus and features
    assert all(re.fullmatch(r"[\w.-]+", name) for name in cpus + features)
    if platform.machine() == "x86_64":
        assert "x86-64-v3" in cpus and {"avx2", "avx512f"} <= set(features)


def test_unknown_cpu_is_a_one_line_error(model_path, tmp_path):
    """LLVM would end the process on an unknown CPU; the CLI names the variable, the value and the way out."""
    env = {**os.environ, "FUSECC_CPU": "not-a-cpu"}
    result = fusecc_cli(model_path, "-o", tmp_path / "m.so", env=env, check_ok=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "fusecc: error: FUSECC_CPU='not-a-cpu' is not a CPU LLVM knows; `fusecc --list-cpus` lists the CPUs and "
        "features LLVM knows ('host' means this machine's)"]


def test_opt_unknown_target_is_a_one_line_error(tmp_path):
    source = tmp_path / "m.fir"
    source.write_text("func @f(%x: tensor<4xf32>) -> (tensor<4xf32>) {\n  func.return(%x)\n}\n")
    result = fusecc_opt(source, "--target=skylake-avx", "-p", "plan-contractions", check_ok=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "fusecc-opt: error: --target='skylake-avx' is not a CPU LLVM knows (did you mean skylake-avx512 or "
        "skylake_avx512 or skylake?); `fusecc --list-cpus` lists the CPUs and features LLVM knows ('host' means "
        "this machine's)"]


# --------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dynamic_model_path(tmp_path_factory):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "dynamic",
                              [helper.make_tensor_value_info("x", TP.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, ["N", 4])])
    path = tmp_path_factory.mktemp("dynamic") / "dynamic.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_input_shape_fixes_dynamic_dims(dynamic_model_path, tmp_path):
    assert "tensor<?x4xf32>" in fusecc_cli(dynamic_model_path, "--compile-to=import").stdout
    assert "tensor<3x4xf32>" in fusecc_cli(dynamic_model_path, "--input-shape", "x=3x4", "--compile-to=graph").stdout
    fusecc_cli(dynamic_model_path, "--input-shape", "x=3x4", "-o", tmp_path / "dyn.so")
    assert "#define DYN_INPUT_0_SHAPE {3, 4}" in (tmp_path / "dyn.h").read_text()


def test_dynamic_shape_without_input_shape_is_an_error(dynamic_model_path, tmp_path):
    result = fusecc_cli(dynamic_model_path, "-o", tmp_path / "dyn.so", check_ok=False)
    assert result.returncode == 1
    assert result.stderr.startswith("fusecc: error: ") and "'x'" in result.stderr and "?x4" in result.stderr


def test_bad_input_shape_argument(dynamic_model_path):
    result = fusecc_cli(dynamic_model_path, "--input-shape", "x=3xa", check_ok=False)
    assert result.returncode == 2 and "bad dimensions in 'x=3xa'" in result.stderr


# --------------------------------------------------------------------------------------
# fusecc-opt
# --------------------------------------------------------------------------------------
def test_opt_runs_a_pipeline(model_path, tmp_path):
    graph = tmp_path / "graph.fir"
    fusecc_cli(model_path, "--compile-to=graph", "-o", graph)
    fused = fusecc_opt(graph, "-p", "fuse,outline-kernels").stdout
    assert renumbered(fused) == renumbered(fusecc_cli(model_path, "--compile-to=fusion").stdout)
    lowered = fusecc_opt(graph, "--pass-pipeline", "outline-kernels,lower-to-loops").stdout
    assert lowered.count("kernel.launch(") == 3


def test_opt_unknown_pass(model_path, tmp_path):
    graph = tmp_path / "graph.fir"
    fusecc_cli(model_path, "--compile-to=graph", "-o", graph)
    result = fusecc_opt(graph, "-p", "fuse,no-such-pass", check_ok=False)
    assert result.returncode == 1
    assert result.stderr.startswith("fusecc-opt: error: unknown pass 'no-such-pass'") and "fold-constants" in result.stderr


def test_opt_split_input_file(tmp_path):
    relu = ("func @main(%x: tensor<3xf32>) -> (tensor<3xf32>) {\n"
            "  %0 = tensor.relu(%x) : tensor<3xf32>\n  func.return(%0)\n}\n")
    path = tmp_path / "split.fir"
    path.write_text(relu + "// -----\n" + relu.replace("3xf32", "5xf32"))
    out = fusecc_opt(path, "--split-input-file", "-p", "cse").stdout
    assert out.split("// -----\n") == [relu, relu.replace("3xf32", "5xf32")]


def test_opt_list_passes():
    result = fusecc_opt("--list-passes")
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert {"fold-constants", "fuse", "lower-to-loops", "cse", "dce"} <= set(names)


def test_threads_plan_the_kernels_blocks(tmp_path):
    """A projection out of attention heads copies its rows of A once per panel of columns: as many panels as
    threads, none for one thread."""
    from fusecc.tools import models
    path = tmp_path / "heads.onnx"
    onnx.save(models.projection_out_of_heads(sequence=6, hidden=640, heads=5), str(path))
    panels = {}
    for threads in (1, 3):
        loops = fusecc_cli(path, "--emit=ir", "--elide-weights", f"--threads={threads}").stdout
        found = re.findall(r"column_panels = (\d+)", loops.split("func @fused")[1].split("\n")[0])
        panels[threads] = int(found[0]) if found else 1
    assert panels == {1: 1, 3: 3}
    refused = fusecc_cli(path, "--threads=0", check_ok=False)
    assert refused.returncode == 2 and "--threads: expected 1 or more, got 0" in refused.stderr
