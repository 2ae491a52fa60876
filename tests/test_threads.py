"""Threads: kernels split across the thread pool (``runtime/threadpool.c``), in the JIT and in shared libraries.

The suite splits every kernel of more than one step (``conftest``), so these runs cut each kernel into many
uneven chunks. Results may not change by a bit with the number of threads: each chunk computes whole output
elements in the same order as one thread would.
"""

import concurrent.futures
import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
from onnx import TensorProto, helper
import onnxruntime as ort
import pytest

import fusecc
from fusecc.codegen.target import CodegenError, find_c_compiler
from fusecc.tools import models

try:
    CC = find_c_compiler()
except CodegenError:
    CC = None

needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler")

#: models with every kind of kernel range: blocks of conv channels, blocks of GEMM rows (some shorter),
#: rows of row ops, elementwise rows, batched products
MODELS = {
    "resnet_block": lambda: models.resnet_block(channels=16, size=14),
    "depthwise_silu_se": lambda: models.depthwise_silu_se(channels=16, size=14, reduced=4),
    "mlp": lambda: models.mlp(batch=13, sizes=(64, 96, 40)),
    "linear_mlp": lambda: models.linear_mlp(batch=32, sizes=(64, 200, 10)),
    "layernorm_gelu_softmax": lambda: models.layernorm_gelu_softmax(rows=37, width=96),
    "projection_into_heads": lambda: models.projection_into_heads(sequence=30, hidden=48, heads=4),
    "matmul_300x600x40": lambda: models.matmul(300, 600, 40),
    "batched_matmul": lambda: models.batched_matmul(3, 30, 64, 37),
    # few rows, wide B: panels of columns (the last one narrower, its last tile masked), over depth passes
    "panels_8x700x1000_weight": lambda: models.matmul(8, 700, 1000, weight=True),
    "panels_8x700x1000_inputs": lambda: models.matmul(8, 700, 1000),
    "panels_gemm_alpha_beta": lambda: gemm_alpha_beta(8, 700, 1000),
    # panels of a Gemm over a reshaped 3-D activation (read in place), and of one whose A each panel copies
    "panels_sequence_linear": lambda: models.sequence_linear(sequence=13, hidden=300, width=1000),
    "panels_projection_out_of_heads": lambda: models.projection_out_of_heads(sequence=6, hidden=640, heads=5),
    # a pointwise conv computed in place, a block of channels per thread
    "pointwise_conv_in_place": lambda: pointwise_conv_relu(96, 28),
}


def pointwise_conv_relu(channels, size):
    """Conv 1x1 with a bias, then Relu."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
    weights = [numpy_helper.from_array(rng.standard_normal((channels, channels, 1, 1)).astype(np.float32), "w"),
               numpy_helper.from_array(rng.standard_normal((channels,)).astype(np.float32), "b")]
    shape = [1, channels, size, size]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def gemm_alpha_beta(m, k, n):
    """Gemm(x, W, c) * alpha + beta * c, then Relu: an epilogue over each panel's columns."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["g"], alpha=0.5, beta=2.0),
             helper.make_node("Relu", ["g"], ["y"])]
    weights = [numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w"),
               numpy_helper.from_array(rng.standard_normal((n,)).astype(np.float32), "c")]
    graph = helper.make_graph(nodes, "gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def feeds_for(model, seed=0):
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
            for i in model.graph.input}


def assert_same_bits(got, want, what):
    for g, w in zip(got, want):
        assert g.tobytes() == w.tobytes(), what


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_gives_the_same_bits_for_any_thread_count(name):
    model = MODELS[name]()
    feeds = feeds_for(model)
    compiled = fusecc.compile(model)
    one = compiled.run(feeds, threads=1)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for got, want in zip(one, expected):
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)
    for threads in (2, 3, 7):
        assert_same_bits(compiled.run(feeds, threads=threads), one, f"{threads} threads differ from 1")


def test_threads_default_comes_from_compile_and_a_run_overrides_it():
    model = MODELS["resnet_block"]()
    feeds = feeds_for(model)
    compiled = fusecc.compile(model, threads=3)
    assert compiled.threads == 3
    assert_same_bits(compiled.run(feeds), compiled.run(feeds, threads=1), "threads=3 differs from 1")


@pytest.mark.parametrize("threads", [0, -2, 1.5, "2", True])
def test_a_bad_thread_count_is_refused(threads):
    model = MODELS["mlp"]()
    with pytest.raises(ValueError, match="threads must be a positive int or None"):
        fusecc.compile(model, threads=threads)
    compiled = fusecc.compile(model)
    with pytest.raises(ValueError, match="threads must be a positive int or None"):
        compiled.run(feeds_for(model), threads=threads)


@pytest.mark.parametrize("cached", [False, True], ids=["jit", "library"])
def test_eight_python_threads_run_one_model_at_once(cached, compile_cache, monkeypatch):
    if not cached:
        monkeypatch.setenv("FUSECC_CACHE", "0")  # the JIT: compile_cache switched the cache on
    model = MODELS["resnet_block"]()
    compiled = fusecc.compile(model)
    assert compiled.cache_hit is False
    inputs = [feeds_for(model, seed) for seed in range(8)]
    expected = [compiled.run(feeds, threads=1) for feeds in inputs]

    def runs(worker):
        return [compiled.run(inputs[worker], threads=1 + worker % 3) for _ in range(10)]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for worker, results in enumerate(pool.map(runs, range(8))):
            for result in results:
                assert_same_bits(result, expected[worker], f"python thread {worker}")


C_PROGRAM = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib.h"

static float input[LIB_INPUT_0_ELEMENTS];
static float expected[LIB_OUTPUT_0_ELEMENTS];

/* A host's parallel-for: runs the tasks in order on the calling thread, counting them. */
static void serial_for(void *host, lib_task_fn task, void *context, int64_t count) {
    int64_t i;
    *(int64_t *)host += count;
    for (i = 0; i < count; i++)
        task(context, i);
}

static void *runs(void *failures) {
    static float output[2][LIB_OUTPUT_0_ELEMENTS];
    float *mine = output[*(int *)failures];
    const void *inputs[1] = {input};
    void *outputs[1] = {mine};
    int i;
    for (i = 0; i < 50; i++) {
        memset(mine, 0, sizeof output[0]);
        if (lib_run_with_threads(inputs, outputs, 2) != LIB_OK || memcmp(mine, expected, sizeof expected) != 0)
            *(int *)failures += 100;
    }
    return NULL;
}

int main(int argc, char **argv) {
    FILE *file;
    pthread_t threads[2];
    int failures[2] = {0, 1};
    int64_t tasks = 0;
    float output[LIB_OUTPUT_0_ELEMENTS];
    const void *inputs[1] = {input};
    void *outputs[1] = {output};
    (void)argc;
    file = fopen(argv[1], "rb");
    if (file == NULL || fread(input, sizeof input, 1, file) != 1 || fread(expected, sizeof expected, 1, file) != 1)
        return 2;
    fclose(file);
    if (pthread_create(&threads[0], NULL, runs, &failures[0]) || pthread_create(&threads[1], NULL, runs, &failures[1]))
        return 3;
    pthread_join(threads[0], NULL);
    pthread_join(threads[1], NULL);
    if (failures[0] != 0 || failures[1] != 1)
        return 4;
    lib_set_parallel_for(serial_for, &tasks);
    if (lib_run(inputs, outputs) != LIB_OK || memcmp(output, expected, sizeof expected) != 0)
        return 5;
    printf("threads %d tasks %lld\n", lib_num_threads(), (long long)tasks);
    return 0;
}
"""


def build_program(source: str, library_directory, tmp_path) -> None:
    """Compiles C ``source`` to ``tmp_path / "prog"``, against ``lib.h`` and ``lib.so`` in ``library_directory``."""
    (tmp_path / "prog.c").write_text(source)
    built = subprocess.run([*CC, "-std=c11", "-Wall", "-Wextra", "-Werror", str(tmp_path / "prog.c"), "-o",
                            str(tmp_path / "prog"), "-I", str(library_directory), "-L", str(library_directory),
                            "-l:lib.so", f"-Wl,-rpath,{library_directory}", "-pthread"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A ResNet block as ``lib.so`` (with ``lib.h``), its input and its output."""
    directory = tmp_path_factory.mktemp("threads")
    model = MODELS["resnet_block"]()
    feeds = feeds_for(model)
    with fusecc.compile(model) as compiled:
        expected = compiled.run(feeds, threads=1)[0]
        compiled.save(str(directory / "lib.so"))
    return directory / "lib.so", feeds, expected


@needs_cc
def test_c_program_runs_the_library_from_two_threads_and_on_its_own_parallel_for(library, tmp_path):
    path, feeds, expected = library
    directory = path.parent
    build_program(C_PROGRAM, directory, tmp_path)
    data = tmp_path / "data.bin"
    data.write_bytes(next(iter(feeds.values())).tobytes() + expected.tobytes())
    environment = {**os.environ, "FUSECC_NUM_THREADS": "3"}
    ran = subprocess.run([str(tmp_path / "prog"), str(data)], capture_output=True, text=True, timeout=300,
                         env=environment)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    words = ran.stdout.split()
    assert words[:2] == ["threads", "3"] and words[2] == "tasks" and int(words[3]) > 1, ran.stdout


FORK_SCRIPT = r"""
import os, sys
import numpy as np
import fusecc
from fusecc.tools import models

model = models.resnet_block(channels=16, size=14)
x = np.random.default_rng(0).standard_normal((1, 16, 14, 14)).astype(np.float32)
compiled = fusecc.load(sys.argv[1]) if len(sys.argv) > 1 else fusecc.compile(model)
expected = compiled.run({"x": x}, threads=2)[0]
child = os.fork()
if child == 0:
    same = all(compiled.run({"x": x}, threads=2)[0].tobytes() == expected.tobytes() for _ in range(3))
    os._exit(0 if same else 1)
_, status = os.waitpid(child, 0)
assert os.WEXITSTATUS(status) == 0, status
assert compiled.run({"x": x}, threads=2)[0].tobytes() == expected.tobytes()
print("ok")
"""


@pytest.mark.parametrize("kind", ["jit", "library"])
def test_a_forked_child_runs_the_model_on_threads_of_its_own(kind, library):
    args = [str(library[0])] if kind == "library" else []
    assert list(library[1]) == ["x"]  # the script's feed
    ran = subprocess.run([sys.executable, "-c", FORK_SCRIPT, *args], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0 and ran.stdout.strip() == "ok", ran.stdout + ran.stderr


def test_small_kernels_run_on_the_calling_thread_by_default(tmp_path):
    """Without ``FUSECC_MIN_CHUNK_WORK`` a kernel is split only where its work pays for waking threads: a host
    parallel-for sees the 64x1024x1024 product split, and nothing of a 4x8 addition."""
    script = textwrap.dedent(r"""
        import ctypes, sys
        import numpy as np
        import fusecc
        from onnx import TensorProto as TP, helper
        from fusecc.tools import models

        HOST_FOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
        TASK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)
        small = helper.make_model(helper.make_graph(
            [helper.make_node("Add", ["a", "a"], ["y"])], "small",
            [helper.make_tensor_value_info("a", TP.FLOAT, [4, 8])],
            [helper.make_tensor_value_info("y", TP.FLOAT, [4, 8])]))
        for name, model in (("small", small), ("large", models.matmul(64, 1024, 1024, weight=True))):
            path = sys.argv[1] + f"/{name}.so"
            fusecc.compile(model).save(path)
            loaded = fusecc.load(path)
            library = loaded.native._dll
            tasks = []
            def host_for(host, task, context, count):
                tasks.append(count)
                run = TASK(task)
                for i in range(count):
                    run(context, i)
            callback = HOST_FOR(host_for)
            getattr(library, f"{name}_set_parallel_for")(callback, None)
            feeds = {i.name: np.ones([d.dim_value for d in i.type.tensor_type.shape.dim], np.float32)
                     for i in model.graph.input}
            loaded.run(feeds, threads=2)
            print(name, sum(tasks))
    """)
    environment = {key: value for key, value in os.environ.items() if key != "FUSECC_MIN_CHUNK_WORK"}
    ran = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=600,
                         env=environment)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    counts = dict(line.split() for line in ran.stdout.splitlines())
    assert counts["small"] == "0" and int(counts["large"]) >= 2, counts


def test_unloading_a_library_stops_its_workers(library):
    """``close()`` unmaps a library whose workers ran its kernels: they end first (else they would return into
    unmapped code)."""
    path, feeds, expected = library
    for _ in range(20):
        with fusecc.load(str(path)) as loaded:
            assert_same_bits(loaded.run(feeds, threads=3), [expected], "a loaded library")


POOL_STRESS = r"""
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "threadpool.h"

#define EXTENT 1000
static _Atomic int hits[EXTENT];

/* Marks the steps it runs, slowly (a call that returned before its last chunk was done would be seen);
   each must be run once per call, and all before fusecc_parallel_for returns. */
static void mark(void **bufs, const int64_t *dims, int64_t begin, int64_t end) {
    (void)bufs;
    (void)dims;
    for (int64_t i = begin; i < end; i++) {
        for (volatile int delay = 0; delay < 2000; delay++) {
        }
        atomic_fetch_add(&hits[i], 1);
    }
}

int main(void) {
    static const int threads[] = {2, 7, 1, 3, 8, 2, 5};
    for (int round = 0; round < 2000; round++) {
        fusecc_threading threading = {threads[round % 7], NULL, NULL};
        int64_t extent = 1 + round % EXTENT;
        memset(hits, 0, sizeof hits);
        fusecc_parallel_for(&threading, mark, NULL, extent, 1);
        for (int64_t i = 0; i < EXTENT; i++)
            if (atomic_load(&hits[i]) != (i < extent)) {
                printf("round %d (%d threads, extent %lld): step %lld ran %d times\n", round, threads[round % 7],
                       (long long)extent, (long long)i, atomic_load(&hits[i]));
                return 1;
            }
    }
    printf("ok\n");
    return 0;
}
"""


@needs_cc
def test_the_pool_runs_every_step_once_before_returning_whatever_the_thread_counts(tmp_path):
    """The pool alone, from C: 2000 calls that change the thread count between them (new workers join a pool
    that has run jobs before), with every chunk at its least work (``FUSECC_MIN_CHUNK_WORK=1``)."""
    from fusecc.codegen import pool

    (tmp_path / "stress.c").write_text(POOL_STRESS)
    built = subprocess.run([*CC, "-O2", *pool.c_flags(), "-DFUSECC_POOL_API=", str(tmp_path / "stress.c"),
                            pool.source_path(), "-o", str(tmp_path / "stress")], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    ran = subprocess.run([str(tmp_path / "stress")], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "FUSECC_MIN_CHUNK_WORK": "1"})
    assert ran.returncode == 0 and ran.stdout == "ok\n", ran.stdout + ran.stderr


SMALL_STACK_PROGRAM = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib.h"

static float a[LIB_INPUT_0_ELEMENTS], b[LIB_INPUT_1_ELEMENTS], expected[LIB_OUTPUT_0_ELEMENTS];
static float output[LIB_OUTPUT_0_ELEMENTS];

static void *run(void *status) {
    const void *inputs[2] = {a, b};
    void *outputs[1] = {output};
    *(int *)status = lib_run_with_threads(inputs, outputs, 1) != LIB_OK || memcmp(output, expected, sizeof output);
    return NULL;
}

int main(int argc, char **argv) {
    FILE *file;
    pthread_t thread;
    pthread_attr_t attributes;
    int status = 1;
    (void)argc;
    file = fopen(argv[1], "rb");
    if (file == NULL || fread(a, sizeof a, 1, file) != 1 || fread(b, sizeof b, 1, file) != 1 ||
        fread(expected, sizeof expected, 1, file) != 1)
        return 2;
    fclose(file);
    pthread_attr_init(&attributes);
    pthread_attr_setstacksize(&attributes, 1 << 20);
    if (pthread_create(&thread, &attributes, run, &status))
        return 3;
    pthread_join(thread, NULL);
    printf("status %d\n", status);
    return status;
}
"""


@needs_cc
def test_a_run_fits_the_stack_the_header_asks_for(tmp_path):
    """The header asks a thread that runs a float32 model for 1 MiB of stack: a kernel holding the most a
    kernel keeps there (a block buffer of rows a softmax reads whole, A copied for transA, B copied a tile's
    sliver at a time) runs from a thread of exactly that much."""
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["a", "b"], ["g"], transA=1), helper.make_node("Softmax", ["g"], ["y"], axis=-1)],
        "stack", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2048, 256]),
                  helper.make_tensor_value_info("b", TensorProto.FLOAT, [2048, 1024])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [256, 1024])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = feeds_for(model)
    with fusecc.compile(model) as compiled:
        schedule = compiled.kernels[0]
        expected = compiled.run(feeds, threads=1)[0]
        compiled.save(str(tmp_path / "lib.so"))
    build_program(SMALL_STACK_PROGRAM, tmp_path, tmp_path)
    data = tmp_path / "data.bin"
    data.write_bytes(feeds["a"].tobytes() + feeds["b"].tobytes() + expected.tobytes())
    ran = subprocess.run([str(tmp_path / "prog"), str(data)], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0 and ran.stdout.split() == ["status", "0"], (schedule, ran.stdout + ran.stderr)


NO_COMPILER_SCRIPT = r"""
import numpy as np
import onnxruntime as ort
import fusecc
from fusecc.tools import models
model = models.mlp(batch=40)
compiled = fusecc.compile(model, cache=False)
x = np.random.default_rng(0).standard_normal(compiled.inputs[0].shape).astype(np.float32)
want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
for threads in (1, 2):
    np.testing.assert_allclose(compiled.run({"x": x}, threads=threads)[0], want, rtol=1e-4, atol=1e-5)
print("ran")
"""


def test_the_jit_runs_on_one_thread_without_a_c_compiler(tmp_path):
    """Without a C compiler there is no thread pool to build: the JIT says so once and runs every kernel on the
    calling thread, with the same results."""
    environment = {**os.environ, "CC": str(tmp_path / "no-such-compiler"), "FUSECC_CACHE": "0"}
    ran = subprocess.run([sys.executable, "-c", NO_COMPILER_SCRIPT], capture_output=True, text=True, timeout=300,
                         env=environment)
    assert ran.returncode == 0 and ran.stdout.split() == ["ran"], ran.stdout + ran.stderr
    assert ran.stderr.count("ThreadPoolWarning: no C compiler to build the thread pool with") == 1, ran.stderr
