"""A compiled or loaded model owns its native code: ``close()``, ``with`` and the garbage collector free it.

The memory tests run in a child process, so the rest of the suite does not disturb the measure: the
resident set (/proc/self/statm) after a warm-up, then after 200 compile or load cycles, half of them
closed by ``with`` and half dropped (the finalizer frees them).
"""

import gc
import os
import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto as TP
from onnx import helper

import fusecc
from fusecc.codegen.target import CodegenError, find_c_compiler

CYCLES = 200
#: what the resident set may grow by over CYCLES cycles; without the fixes a compile kept ~75 KiB
#: (15 MiB in all) and a load of this library ~1 MiB (200 MiB in all)
BOUND = 4 << 20

MEMORY_CHECK = r"""
import gc, os, sys
import numpy as np
from onnx import TensorProto as TP, helper, numpy_helper
import fusecc

def resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

mode, cycles, library = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "compile":  # small: the compiler's own memory is what is measured
    nodes, weights, width = [helper.make_node("Relu", ["x"], ["y"])], [], 4
else:  # 1 MiB of weights, all read by every run
    width = 512
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    weights = [numpy_helper.from_array(np.random.default_rng(0).standard_normal((width, width)).astype(np.float32), "w")]
graph = helper.make_graph(nodes, "memory", [helper.make_tensor_value_info("x", TP.FLOAT, [1, width])],
                          [helper.make_tensor_value_info("y", TP.FLOAT, [1, width])], weights)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
x = np.ones((1, width), np.float32)
if mode == "load":
    with fusecc.compile(model) as compiled:
        compiled.save(library)

def open_model():
    return fusecc.compile(model) if mode == "compile" else fusecc.load(library)

def cycle(i):
    if i % 2:
        with open_model() as opened:
            opened.run({"x": x})
    else:  # freed by reference counting alone: nothing the model holds refers back to it
        open_model().run({"x": x})

for i in range(20):
    cycle(i)
gc.collect()
before = resident_bytes()
for i in range(cycles):
    cycle(i)
gc.collect()
print(before, resident_bytes())
"""


def _have_cc():
    try:
        find_c_compiler()
        return True
    except CodegenError:
        return False


def resident_growth(mode, tmp_path):
    """Bytes the child's resident set grew by over CYCLES cycles; its temporary directory must end empty."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    ran = subprocess.run([sys.executable, "-c", MEMORY_CHECK, mode, str(CYCLES), str(tmp_path / "model.so")],
                         capture_output=True, text=True, env={**os.environ, "TMPDIR": str(temporary)}, timeout=600)
    assert ran.returncode == 0, ran.stderr
    assert os.listdir(temporary) == []
    before, after = map(int, ran.stdout.split())
    return after - before


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_compile_and_close_keeps_memory_flat(tmp_path):
    growth = resident_growth("compile", tmp_path)
    assert growth < BOUND, f"{CYCLES} compiles grew the resident set by {growth >> 10} KiB"


@pytest.mark.skipif(not os.path.exists("/proc/self/statm") or not _have_cc(), reason="needs /proc and cc")
def test_load_and_close_keeps_memory_flat(tmp_path):
    growth = resident_growth("load", tmp_path)
    assert growth < BOUND, f"{CYCLES} loads grew the resident set by {growth >> 10} KiB"


def _relu_model():
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TP.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, [4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


X = np.array([-1, 2, -3, 4], np.float32)


def test_closed_model_refuses_to_run():
    with fusecc.compile(_relu_model()) as model:
        np.testing.assert_array_equal(model.run({"x": X})[0], [0, 2, 0, 4])
        assert not model.closed
    assert model.closed
    with pytest.raises(ValueError, match="closed"):
        model.run({"x": X})
    model.close()


def test_collected_model_frees_its_engine():
    model = fusecc.compile(_relu_model())
    engine = model.native
    engine.address("fusecc_main")
    del model
    gc.collect()
    with pytest.raises(CodegenError, match="closed"):
        engine.address("fusecc_main")


@pytest.mark.skipif(not _have_cc(), reason="needs cc")
def test_loaded_model_closes(tmp_path):
    fusecc.compile(_relu_model()).save(str(tmp_path / "relu.so"))
    with fusecc.load(str(tmp_path / "relu.so")) as model:
        np.testing.assert_array_equal(model(X)[0], [0, 2, 0, 4])
    assert model.closed
    with pytest.raises(ValueError, match="closed"):
        model(X)


@pytest.mark.parametrize("shape, dtype", [((3, 5), np.float32), ((700_001,), np.float32), ((2, 3, 1 << 19), np.uint8)])
def test_zeroed_arrays_are_zero_writable_and_freed_with_their_last_view(shape, dtype):
    from fusecc.host_memory import zeroed_array
    array = zeroed_array(shape, dtype)
    assert array.shape == shape and array.dtype == dtype and array.flags.c_contiguous and array.flags.writeable
    assert not array.any()
    array[...] = 7
    view = array.reshape(-1)[-3:]
    del array
    gc.collect()
    assert view.tolist() == [7, 7, 7]  # the mapping lives as long as a view of it
