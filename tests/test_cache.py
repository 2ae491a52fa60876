"""The compile cache: a second compilation of the same model is served from disk, any change to what the library
depends on misses, corrupt entries are recompiled, the directory is private and bounded, and nothing that asks
for no cache (or watches the compilation) touches it.

Every test works in a directory of its own (the ``compile_cache`` fixture of conftest.py); whether a compilation
hit is read from ``CompiledModel.cache_hit`` or from the CLI's message, never from a timing.
"""

import os
import platform
import stat
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

import fusecc
from fusecc import cache as compile_cache_module
from fusecc.cache import CacheWarning, CompileCache, CorruptEntry, decode_entry, encode_entry, size_limit
from fusecc.cache_key import cache_key
from fusecc.codegen.target import CodegenError, find_c_compiler

ort = pytest.importorskip("onnxruntime")


def _has_c_compiler():
    try:
        find_c_compiler()
    except CodegenError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _has_c_compiler(), reason="the cache holds shared libraries: no C compiler")


def mlp(seed=0, batch=2):
    """x @ W + b -> Relu, with weights from ``seed``."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["biased"]),
             helper.make_node("Relu", ["biased"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TP.FLOAT, [batch, 8])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, [batch, 16])],
                              [numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "W"),
                               numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def feeds(batch=2):
    return {"x": np.linspace(-1, 1, batch * 8, dtype=np.float32).reshape(batch, 8)}


def expected(model, batch=2):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds(batch))


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp(), path)
    return path


@pytest.fixture(autouse=True)
def _thread_pool_loaded():
    """The JIT's thread pool loaded before a test switches the cache on: a compilation asks it for the default
    thread count, and the process's first ask would keep the pool in that test's cache beside its models."""
    from fusecc.codegen import pool
    pool.load_for_jit(cache=False)


def entries(directory):
    return sorted(directory.glob("*.entry"))


def run_cli(*args):
    result = subprocess.run([sys.executable, "-m", "fusecc.cli", *map(str, args)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return result


# --------------------------------------------------------------------------------------
# hits
# --------------------------------------------------------------------------------------
HIT_IN_A_NEW_PROCESS = """
import sys, numpy as np, fusecc
model = fusecc.compile(sys.argv[1])
np.save(sys.argv[2], model.run({"x": np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)})[0])
print("cache_hit", model.cache_hit)
"""


def test_a_new_process_compiling_the_same_model_hits(compile_cache, model_path, tmp_path):
    first = fusecc.compile(str(model_path))
    assert not first.cache_hit and len(entries(compile_cache)) == 1
    result = subprocess.run([sys.executable, "-c", HIT_IN_A_NEW_PROCESS, str(model_path), str(tmp_path / "y.npy")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["cache_hit", "True"]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), first.run(feeds())[0])
    np.testing.assert_allclose(first.run(feeds())[0], expected(mlp())[0], rtol=1e-5, atol=1e-5)


def test_a_hit_has_the_kernels_and_specs_and_saves(compile_cache, model_path, tmp_path):
    cold = fusecc.compile(str(model_path))
    warm = fusecc.compile(str(model_path))
    assert (cold.cache_hit, warm.cache_hit) == (False, True)
    assert warm.kernels == cold.kernels and len(warm.kernels) == 1
    assert warm.inputs == cold.inputs and warm.outputs == cold.outputs
    np.testing.assert_array_equal(warm.run(feeds())[0], cold.run(feeds())[0])
    for name, prefix in ((None, "saved"), ("renamed", "renamed")):
        library = tmp_path / "saved.so"
        warm.save(str(library), name=name)
        assert f"int {prefix}_run(" in (tmp_path / "saved.h").read_text()
        with fusecc.load(str(library)) as loaded:
            np.testing.assert_array_equal(loaded.run(feeds())[0], cold.run(feeds())[0])


def test_the_same_bytes_at_another_path_hit(compile_cache, model_path, tmp_path):
    """The key is the content: neither the path nor the modification time is part of it."""
    assert not fusecc.compile(str(model_path)).cache_hit
    elsewhere = tmp_path / "elsewhere" / "renamed.onnx"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(model_path.read_bytes())
    os.utime(elsewhere, (1, 1))
    assert fusecc.compile(str(elsewhere)).cache_hit
    assert fusecc.compile(model_path.read_bytes()).cache_hit
    assert fusecc.compile(onnx.load(str(model_path))).cache_hit


def test_a_second_cli_run_hits(compile_cache, model_path, tmp_path):
    first = run_cli(model_path, "-o", tmp_path / "lib.so")
    assert "from the compile cache" not in first.stderr
    library = (tmp_path / "lib.so").read_bytes()
    (tmp_path / "lib.so").unlink()
    second = run_cli(model_path, "-o", tmp_path / "lib.so")
    assert second.stderr.strip().endswith("(1 kernels, from the compile cache)")
    assert (tmp_path / "lib.so").read_bytes() == library
    assert "lib_run(" in (tmp_path / "lib.h").read_text()
    with fusecc.load(str(tmp_path / "lib.so")) as loaded:
        np.testing.assert_allclose(loaded.run(feeds())[0], expected(mlp())[0], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------
# misses: the key
# --------------------------------------------------------------------------------------
def base_key(**changes):
    arguments = {"content": mlp().SerializeToString(), "opt_level": 3, "input_shapes": None,
                 "pipelines": {"graph": "cse", "fusion": "fuse", "loops": "lower-to-loops{vector-width=16}"},
                 "library": "model.so", "prefix": "model", **changes}
    content = arguments.pop("content")
    return cache_key(content, **arguments)


@pytest.mark.parametrize("change", [
    {"content": mlp(seed=1).SerializeToString()},
    {"opt_level": 2},
    {"input_shapes": {"x": (4, 8)}},
    {"pipelines": {"graph": "cse", "fusion": "outline-kernels", "loops": "lower-to-loops{vector-width=16}"}},
    {"pipelines": {"graph": "cse", "fusion": "fuse", "loops": "lower-to-loops{vector-width=8}"}},
    {"library": "other.so"},
    {"prefix": "other"},
], ids=["model", "opt_level", "input_shapes", "fusion", "vector_width", "library", "prefix"])
def test_the_key_changes_with_what_the_library_depends_on(change):
    assert base_key(**change) != base_key() == base_key()


def test_the_key_changes_with_fusecc_version(monkeypatch):
    before = base_key()
    monkeypatch.setattr(fusecc, "__version__", fusecc.__version__ + ".post1")
    assert base_key() != before


def test_the_key_changes_with_the_compilers_own_files(monkeypatch):
    import fusecc.cache_key as cache_key_module
    before = base_key()
    monkeypatch.setattr(cache_key_module, "compiler_digest", lambda: "0" * 64)
    assert base_key() != before


@pytest.mark.skipif(platform.machine() != "x86_64", reason="toggles an x86 feature")
def test_the_key_changes_with_the_target_features(monkeypatch):
    from fusecc.codegen import target
    before = base_key()
    host = target.host_cpu_features()
    monkeypatch.setenv("FUSECC_CPU_FEATURES", host + (",-avx512f" if "+avx512f" in host.split(",") else ",+avx512f"))
    assert base_key() != before


@pytest.mark.parametrize("options", [{"opt_level": 2}, {"fusion": False}], ids=["opt_level", "fusion"])
def test_a_compilation_with_another_option_misses(compile_cache, model_path, options):
    assert not fusecc.compile(str(model_path)).cache_hit
    other = fusecc.compile(str(model_path), **options)
    assert not other.cache_hit and len(entries(compile_cache)) == 2
    assert fusecc.compile(str(model_path), **options).cache_hit
    np.testing.assert_allclose(other.run(feeds())[0], expected(mlp())[0], rtol=1e-5, atol=1e-5)


def test_input_shapes_are_part_of_the_key(compile_cache, tmp_path):
    dynamic = mlp()
    dynamic.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    dynamic.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    two = fusecc.compile(dynamic, input_shapes={"x": (2, 8)})
    three = fusecc.compile(dynamic, input_shapes={"x": (3, 8)})
    assert not two.cache_hit and not three.cache_hit
    assert [s.shape for s in three.inputs] == [(3, 8)]
    np.testing.assert_allclose(three.run(feeds(3))[0], expected(mlp(batch=3), 3)[0], rtol=1e-5, atol=1e-5)


def test_external_data_is_part_of_the_model(compile_cache, tmp_path):
    path = tmp_path / "external.onnx"
    onnx.save(mlp(seed=0), path, save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert not fusecc.compile(str(path)).cache_hit
    assert fusecc.compile(str(path)).cache_hit
    other = tmp_path / "other"
    other.mkdir()
    onnx.save(mlp(seed=1), other / "external.onnx", save_as_external_data=True, location="weights.bin",
              size_threshold=0)
    assert (other / "external.onnx").read_bytes() == path.read_bytes()  # only the weights differ
    (tmp_path / "weights.bin").write_bytes((other / "weights.bin").read_bytes())
    changed = fusecc.compile(str(path))
    assert not changed.cache_hit
    np.testing.assert_allclose(changed.run(feeds())[0], expected(mlp(seed=1))[0], rtol=1e-5, atol=1e-5)


def test_a_model_file_changed_while_it_compiles_is_not_stored(compile_cache, model_path, monkeypatch):
    from fusecc import driver
    build = driver.build_library

    def build_then_change_the_file(*args):
        library = build(*args)
        onnx.save(mlp(seed=1), model_path)
        return library

    monkeypatch.setattr(driver, "build_library", build_then_change_the_file)
    assert not fusecc.compile(str(model_path)).cache_hit
    assert entries(compile_cache) == []


# --------------------------------------------------------------------------------------
# entries
# --------------------------------------------------------------------------------------
def test_an_entry_holds_its_parts():
    parts = {"library": b"\x7fELF\n\x00 bytes", "header": b"/* header */\n", "info": b"{}"}
    assert {name: bytes(data) for name, data in decode_entry(b"".join(encode_entry(parts))).items()} == parts


@pytest.mark.parametrize("damage", ["truncate", "flip_a_byte", "append"])
def test_a_damaged_entry_is_refused(damage):
    blob = bytearray(b"".join(encode_entry({"library": bytes(range(256)) * 4, "info": b"{}"})))
    if damage == "truncate":
        del blob[-100:]
    elif damage == "flip_a_byte":
        blob[len(blob) // 2] ^= 0x01
    else:
        blob += b"\0"
    with pytest.raises(CorruptEntry):
        decode_entry(bytes(blob))


@pytest.mark.parametrize("damage", ["truncate", "flip_a_byte"])
def test_a_corrupt_entry_is_deleted_and_recompiled(compile_cache, model_path, damage):
    reference = fusecc.compile(str(model_path)).run(feeds())[0]
    (entry,) = entries(compile_cache)
    blob = bytearray(entry.read_bytes())
    if damage == "truncate":
        del blob[len(blob) // 2:]
    else:
        blob[len(blob) * 3 // 4] ^= 0x10
    entry.write_bytes(bytes(blob))
    with pytest.warns(CacheWarning, match="deleted the corrupt compile cache entry"):
        recompiled = fusecc.compile(str(model_path))
    assert not recompiled.cache_hit
    np.testing.assert_array_equal(recompiled.run(feeds())[0], reference)
    assert decode_entry(entry.read_bytes())  # written again, whole
    assert fusecc.compile(str(model_path)).cache_hit


def test_writes_leave_no_temporary_files(compile_cache, model_path):
    fusecc.compile(str(model_path))
    fusecc.compile(str(model_path), opt_level=1)
    assert sorted(p.suffix for p in compile_cache.iterdir()) == [".entry", ".entry"]


# --------------------------------------------------------------------------------------
# the directory
# --------------------------------------------------------------------------------------
def test_the_directory_is_created_private(compile_cache, model_path, monkeypatch):
    nested = compile_cache / "a" / "b"
    monkeypatch.setenv("FUSECC_CACHE_DIR", str(nested))
    fusecc.compile(str(model_path))
    assert stat.S_IMODE(nested.stat().st_mode) == 0o700
    assert len(entries(nested)) == 1
    assert all(stat.S_IMODE(entry.stat().st_mode) == 0o600 for entry in entries(nested))


def test_the_default_directory_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("FUSECC_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache_module.cache_directory() == str(tmp_path / "xdg" / "fusecc")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compile_cache_module.cache_directory() == str(tmp_path / "home" / ".cache" / "fusecc")


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_a_directory_others_may_write_is_refused(compile_cache, model_path, mode):
    compile_cache.mkdir()
    compile_cache.chmod(mode)
    with pytest.warns(CacheWarning, match=f"group or others may write to it \\(mode {mode:04o}"):
        compiled = fusecc.compile(str(model_path))
    assert not compiled.cache_hit and list(compile_cache.iterdir()) == []
    np.testing.assert_allclose(compiled.run(feeds())[0], expected(mlp())[0], rtol=1e-5, atol=1e-5)


def test_a_directory_of_another_user_is_refused(compile_cache, model_path, monkeypatch):
    compile_cache.mkdir(mode=0o700)
    other_user = os.getuid() + 1
    monkeypatch.setattr(os, "getuid", lambda: other_user)
    with pytest.warns(CacheWarning, match=f"belongs to user id {compile_cache.stat().st_uid}, not to this user"):
        assert not fusecc.compile(str(model_path)).cache_hit
    assert list(compile_cache.iterdir()) == []


# --------------------------------------------------------------------------------------
# the bound
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, size", [("", 1 << 30), ("4096", 4096), ("3K", 3 << 10), ("2m", 2 << 20),
                                        ("1G", 1 << 30), ("512MiB", 512 << 20)])
def test_size_limit_from_the_environment(monkeypatch, text, size):
    monkeypatch.setenv("FUSECC_CACHE_SIZE", text)
    assert size_limit() == size


@pytest.mark.parametrize("text", ["12X", "-1", "1.5G", "G"])
def test_a_malformed_size_limit_is_an_error(monkeypatch, text):
    monkeypatch.setenv("FUSECC_CACHE_SIZE", text)
    with pytest.raises(ValueError, match="FUSECC_CACHE_SIZE=.* is not a size"):
        size_limit()


def test_least_recently_used_entries_are_evicted(tmp_path):
    parts = {"library": b"x" * 1000}
    entry_size = sum(map(len, encode_entry(parts)))
    store = CompileCache(str(tmp_path), limit=2 * entry_size)
    a, b, c = ("a" * 64, "b" * 64, "c" * 64)
    store.put(a, parts)
    store.put(b, parts)
    os.utime(store.path(a), ns=(10**9, 10**9))  # used in 1970, then b a second later
    os.utime(store.path(b), ns=(2 * 10**9, 2 * 10**9))
    assert store.get(a) is not None  # renews a: b is now the least recently used
    store.put(c, parts)
    assert (os.path.exists(store.path(a)), os.path.exists(store.path(b)), os.path.exists(store.path(c))) == \
        (True, False, True)


def test_compilations_keep_the_cache_within_its_bound(compile_cache, model_path, monkeypatch):
    fusecc.compile(str(model_path))
    (entry,) = entries(compile_cache)
    monkeypatch.setenv("FUSECC_CACHE_SIZE", str(entry.stat().st_size * 3 // 2))
    fusecc.compile(str(model_path), opt_level=1)
    (kept,) = entries(compile_cache)
    assert kept != entry
    assert not fusecc.compile(str(model_path)).cache_hit


def test_an_entry_larger_than_the_bound_is_not_kept(tmp_path):
    store = CompileCache(str(tmp_path), limit=100)
    store.put("d" * 64, {"library": b"x" * 1000})
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# switched off, or bypassed
# --------------------------------------------------------------------------------------
def test_cache_false_never_touches_the_directory(compile_cache, model_path):
    compiled = fusecc.compile(str(model_path), cache=False)
    assert not compiled.cache_hit and not compile_cache.exists()


def test_fusecc_cache_0_never_touches_the_directory(compile_cache, model_path, monkeypatch):
    monkeypatch.setenv("FUSECC_CACHE", "0")
    assert not fusecc.compile(str(model_path)).cache_hit
    assert not compile_cache.exists()


@pytest.mark.parametrize("options", [{"time_passes": True}, {"print_ir_after": ("fuse",)},
                                     {"dump_ir_dir": "DUMP"}], ids=["time_passes", "print_ir", "dump_ir_dir"])
def test_watched_compilations_bypass_the_cache(compile_cache, model_path, tmp_path, options, capsys):
    if options.get("dump_ir_dir"):
        options = {"dump_ir_dir": str(tmp_path / "dump")}
    assert not fusecc.compile(str(model_path), **options).cache_hit
    assert not compile_cache.exists()
    assert capsys.readouterr().err or os.listdir(tmp_path / "dump")


def test_fusecc_debug_bypasses_the_cache(compile_cache, model_path, monkeypatch, capsys):
    monkeypatch.setenv("FUSECC_DEBUG", "1")
    assert not fusecc.compile(str(model_path)).cache_hit
    assert "[fusecc] compiled in" in capsys.readouterr().err and not compile_cache.exists()


@pytest.mark.parametrize("flags", [["--emit=llvm"], ["--fusion-report"], ["-o", "lib.so", "--time-passes"],
                                   ["-o", "lib.so", "--print-ir-after=fuse"]],
                         ids=["emit_llvm", "fusion_report", "time_passes", "print_ir"])
def test_the_cli_bypasses_the_cache_when_watched(compile_cache, model_path, tmp_path, flags, monkeypatch,
                                                          capsys):
    from fusecc.cli import main
    monkeypatch.chdir(tmp_path)
    assert main([str(model_path), *flags]) == 0
    assert not compile_cache.exists()
