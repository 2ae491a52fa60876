"""Tests for fusecc.codegen.target (LLVM target, pipeline, JIT, AOT linking)."""

import ctypes
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from fusecc.codegen import target
from fusecc.codegen.cpu import CPUID_FEATURES
from fusecc.target import host_target


F32P = ctypes.POINTER(ctypes.c_float)


def _fptr(a):
    return a.ctypes.data_as(F32P)


# sum_i erff(expf(x[i])) over n elements, plus malloc/free for good measure.
SUM_EXP_ERF_IR = r"""
declare float @expf(float)
declare float @erff(float)
declare ptr @malloc(i64)
declare void @free(ptr)

define float @sum_exp_erf(ptr noalias %x, i64 %n) {
entry:
  %tmp = call ptr @malloc(i64 4)
  store float 0.0, ptr %tmp
  %nonempty = icmp sgt i64 %n, 0
  br i1 %nonempty, label %loop, label %exit
loop:
  %i = phi i64 [0, %entry], [%i.next, %loop]
  %acc = phi float [0.0, %entry], [%acc.next, %loop]
  %p = getelementptr inbounds float, ptr %x, i64 %i
  %v = load float, ptr %p
  %e = call float @expf(float %v)
  %r = call float @erff(float %e)
  %acc.next = fadd float %acc, %r
  %i.next = add nuw nsw i64 %i, 1
  %done = icmp eq i64 %i.next, %n
  br i1 %done, label %exit, label %loop
exit:
  %res = phi float [0.0, %entry], [%acc.next, %loop]
  %t = load float, ptr %tmp
  %res2 = fadd float %res, %t
  call void @free(ptr %tmp)
  ret float %res2
}
"""

VADD_IR = r"""
define void @vadd(ptr noalias %a, ptr noalias %b, ptr noalias %c, i64 %n) {
entry:
  %nonempty = icmp sgt i64 %n, 0
  br i1 %nonempty, label %loop, label %exit
loop:
  %i = phi i64 [0, %entry], [%i.next, %loop]
  %pa = getelementptr inbounds float, ptr %a, i64 %i
  %pb = getelementptr inbounds float, ptr %b, i64 %i
  %pc = getelementptr inbounds float, ptr %c, i64 %i
  %x = load float, ptr %pa
  %y = load float, ptr %pb
  %z = fadd float %x, %y
  store float %z, ptr %pc
  %i.next = add nuw nsw i64 %i, 1
  %done = icmp eq i64 %i.next, %n
  br i1 %done, label %exit, label %loop
exit:
  ret void
}
"""


def _have_cc():
    try:
        target.find_c_compiler()
        return True
    except target.CodegenError:
        return False


@pytest.mark.parametrize("opt_level", [0, 1, 2, 3])
def test_jit_loop_with_libm_calls(opt_level):
    mod = target.parse_and_optimize(SUM_EXP_ERF_IR, opt_level)
    lib = target.JitLibrary(mod)
    fn = ctypes.CFUNCTYPE(ctypes.c_float, F32P, ctypes.c_int64)(
        lib.address("sum_exp_erf"))
    x = np.linspace(-3.0, 0.5, 1001, dtype=np.float32)
    expected = sum(math.erf(math.exp(float(v))) for v in x)
    got = fn(_fptr(x), x.size)
    assert got == pytest.approx(expected, rel=1e-4)
    assert fn(_fptr(x), 0) == 0.0


def test_jit_vadd_and_missing_symbol():
    lib = target.JitLibrary(target.parse_and_optimize(VADD_IR, 3))
    fn = ctypes.CFUNCTYPE(None, F32P, F32P, F32P, ctypes.c_int64)(
        lib.address("vadd"))
    rng = np.random.default_rng(0)
    a = rng.standard_normal(1037).astype(np.float32)
    b = rng.standard_normal(1037).astype(np.float32)
    c = np.zeros_like(a)
    fn(_fptr(a), _fptr(b), _fptr(c), a.size)
    np.testing.assert_array_equal(c, a + b)
    with pytest.raises(target.CodegenError, match="no_such_symbol"):
        lib.address("no_such_symbol")


def test_jit_unresolved_external_raises():
    ir = ("declare float @fusecc_surely_undefined(float)\n"
          "define float @f(float %x) {\n"
          "  %r = call float @fusecc_surely_undefined(float %x)\n"
          "  ret float %r\n}\n")
    mod = target.parse_and_optimize(ir, 2)
    with pytest.raises(target.CodegenError, match="fusecc_surely_undefined"):
        target.JitLibrary(mod)


def test_parse_and_verify_errors():
    with pytest.raises(target.CodegenError, match="pars"):
        target.parse_and_optimize("define void @f( {", 2)
    bad = ("define i32 @f() {\nentry:\n  %x = add i32 1, 2\n}\n")  # no terminator
    with pytest.raises(target.CodegenError):
        target.parse_and_optimize(bad, 2)
    with pytest.raises(ValueError):
        target.parse_and_optimize(VADD_IR, 4)


def test_module_triple_layout_and_tm_cache():
    tm = target.host_target_machine(3)
    assert target.host_target_machine(3) is tm
    assert target.host_target_machine(2) is not tm
    mod = target.parse_and_optimize(VADD_IR, 2)
    assert mod.triple == tm.triple
    assert mod.data_layout == str(tm.target_data)


def test_cpu_env_override(monkeypatch):
    monkeypatch.setenv("FUSECC_CPU", "x86-64")
    monkeypatch.delenv("FUSECC_CPU_FEATURES", raising=False)
    assert target.host_cpu_name() == "x86-64"
    assert target.host_cpu_features() == ""
    monkeypatch.setenv("FUSECC_CPU_FEATURES", "+avx2,+fma")
    assert target.host_cpu_features() == "+avx2,+fma"
    import llvmlite.binding as llvm
    if llvm.get_process_triple().startswith("x86_64"):
        monkeypatch.setenv("FUSECC_CPU_FEATURES", "")
        asm = target.emit_assembly(target.parse_and_optimize(VADD_IR, 3))
        assert "zmm" not in asm and "ymm" not in asm  # baseline SSE2 only


def test_o3_float_loop_uses_zmm():
    import llvmlite.binding as llvm
    target._initialize()
    if os.environ.get("FUSECC_CPU") or os.environ.get("FUSECC_CPU_FEATURES"):
        pytest.skip("CPU overridden by environment")
    if not llvm.get_host_cpu_features().get("avx512f", False):
        pytest.skip("host has no AVX-512")
    asm = target.emit_assembly(target.parse_and_optimize(VADD_IR, 3))
    assert "vaddps" in asm
    assert "%zmm" in asm, asm
    # no vectorization at O0
    asm0 = target.emit_assembly(target.parse_and_optimize(VADD_IR, 0))
    assert "%zmm" not in asm0 and "vaddps" not in asm0


def test_incbin_module_asm_escaping(tmp_path):
    p = tmp_path / 'we"ird\\dir'
    p.mkdir()
    f = p / "w.bin"
    f.write_bytes(b"abc")
    text = target.incbin_module_asm("blob", str(f))
    lines = text.splitlines()
    assert all(l.startswith('module asm "') and l.endswith('"') for l in lines)
    assert any(".incbin" in l for l in lines)
    # IR string escapes: `"` -> \22, `\` -> \5C
    assert '\\5C042' in text and '\\5C134' in text
    assert target._incbin_paths(text) == [str(f)]
    with pytest.raises(ValueError):
        target.incbin_module_asm("bad name", str(f))
    with pytest.raises(target.CodegenError):
        target.incbin_module_asm("blob", str(tmp_path / "missing.bin"))


def _blob_ir(blob_path):
    return (
        target.incbin_ir_declarations("fusecc_blob")
        + "define ptr @get_blob() {\n  ret ptr @fusecc_blob\n}\n"
        + "define i64 @get_blob_size() {\n"
        + "  %a = ptrtoint ptr @fusecc_blob to i64\n"
        + "  %b = ptrtoint ptr @fusecc_blob_end to i64\n"
        + "  %s = sub i64 %b, %a\n  ret i64 %s\n}\n"
        + target.incbin_module_asm("fusecc_blob", blob_path)
    )


@pytest.mark.skipif(not _have_cc(), reason="no C compiler")
def test_incbin_shared_library_roundtrip(tmp_path):
    blob = np.random.default_rng(42).integers(0, 256, 1 << 20,
                                              dtype=np.uint8).tobytes()
    blob_path = tmp_path / "weights.bin"
    blob_path.write_bytes(blob)
    mod = target.parse_and_optimize(_blob_ir(str(blob_path)), 2)
    obj = target.emit_object(mod)
    assert len(obj) > len(blob)
    so = tmp_path / "sub" / "libblob.so"
    out = target.link_shared_library(obj, str(so))
    assert out == str(so) and so.is_file()
    lib = ctypes.CDLL(str(so))
    lib.get_blob.restype = ctypes.c_void_p
    lib.get_blob_size.restype = ctypes.c_int64
    addr = lib.get_blob()
    assert addr % 64 == 0
    assert lib.get_blob_size() == len(blob)
    assert ctypes.string_at(addr, len(blob)) == blob
    # the blob symbol is hidden: not exported from the .so
    with pytest.raises(AttributeError):
        lib.fusecc_blob
    # section placement in the object (the linker folds .rodata.* together)
    if os.path.exists("/usr/bin/readelf"):
        (tmp_path / "m.o").write_bytes(obj)
        sections = subprocess.run(["readelf", "-SW", str(tmp_path / "m.o")],
                                  capture_output=True, text=True).stdout
        assert ".rodata.fusecc_weights" in sections


def test_incbin_jit_roundtrip(tmp_path):
    blob = os.urandom(4096 + 3)
    blob_path = tmp_path / "w.bin"
    blob_path.write_bytes(blob)
    lib = target.JitLibrary(target.parse_and_optimize(_blob_ir(str(blob_path)), 3))
    get = ctypes.CFUNCTYPE(ctypes.c_void_p)(lib.address("get_blob"))
    size = ctypes.CFUNCTYPE(ctypes.c_int64)(lib.address("get_blob_size"))
    assert size() == len(blob)
    assert ctypes.string_at(get(), len(blob)) == blob


def test_incbin_missing_file_at_emission(tmp_path):
    blob_path = tmp_path / "w.bin"
    blob_path.write_bytes(b"xyz")
    mod = target.parse_and_optimize(_blob_ir(str(blob_path)), 1)
    blob_path.unlink()
    # must raise rather than let LLVM's assembler exit the process
    with pytest.raises(target.CodegenError, match="w.bin"):
        target.emit_object(mod)


@pytest.mark.skipif(not _have_cc(), reason="no C compiler")
def test_link_with_extra_c_source(tmp_path):
    src = tmp_path / "helper.c"
    src.write_text("float fusecc_helper(float x) { return x * 2.0f; }\n")
    ir = ("declare float @fusecc_helper(float)\n"
          "define float @twice_plus_one(float %x) {\n"
          "  %y = call float @fusecc_helper(float %x)\n"
          "  %z = fadd float %y, 1.0\n  ret float %z\n}\n")
    obj = target.emit_object(target.parse_and_optimize(ir, 2))
    so = target.link_shared_library(obj, str(tmp_path / "libx.so"), [str(src)])
    lib = ctypes.CDLL(so)
    lib.twice_plus_one.restype = ctypes.c_float
    lib.twice_plus_one.argtypes = [ctypes.c_float]
    assert lib.twice_plus_one(3.0) == 7.0


def test_link_errors(tmp_path, monkeypatch):
    obj = target.emit_object(target.parse_and_optimize(VADD_IR, 2))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(target.CodegenError,
                       match="no C compiler found to link the shared library"):
        target.link_shared_library(obj, str(tmp_path / "x.so"))
    monkeypatch.delenv("CC")
    if not _have_cc():
        pytest.skip("no C compiler")
    with pytest.raises(target.CodegenError) as info:
        target.link_shared_library(b"this is not an object file",
                                   str(tmp_path / "y.so"))
    assert "failed" in str(info.value)
    assert not (tmp_path / "y.so").exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def _x86_64():
    import llvmlite.binding as llvm
    return llvm.get_process_triple().startswith("x86_64")


@pytest.mark.skipif(not _x86_64(), reason="CPU features are checked on x86-64 only")
@pytest.mark.parametrize("cpu, present, absent", [
    ("x86-64", [], ["sse3", "avx", "avx2", "avx512f"]),
    ("x86-64-v3", ["sse4.2", "avx", "avx2", "fma", "bmi2", "f16c", "movbe"], ["avx512f", "amx-tile"]),
    ("x86-64-v4", ["avx2", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"], ["avx512fp16", "amx-tile"]),
])
def test_cpu_requirements_follow_the_target(monkeypatch, cpu, present, absent):
    """The features a module needs are its target's, as LLVM implies them from the CPU name."""
    monkeypatch.setenv("FUSECC_CPU", cpu)
    monkeypatch.delenv("FUSECC_CPU_FEATURES", raising=False)
    requirements = target.cpu_requirements(target.parse_and_optimize(VADD_IR, 2))
    assert requirements.cpu == cpu
    assert set(present) <= set(requirements.features)
    assert not set(absent) & set(requirements.features)
    monkeypatch.setenv("FUSECC_CPU_FEATURES", "+avx512f,-avx2")  # disabling AVX2 disables what builds on it
    assert "avx512f" not in target.cpu_requirements(target.parse_and_optimize(VADD_IR, 2)).features


@pytest.mark.skipif(not _x86_64(), reason="CPU features are checked on x86-64 only")
def test_jit_refuses_code_this_cpu_cannot_run(monkeypatch):
    import llvmlite.binding as llvm
    target._initialize()
    host = llvm.get_host_cpu_features()
    lacking = [name for name in CPUID_FEATURES if not host.get(name, False)]
    if not lacking:
        pytest.skip("this CPU has every feature fusecc checks")
    monkeypatch.delenv("FUSECC_CPU", raising=False)
    monkeypatch.setenv("FUSECC_CPU_FEATURES", f"{host.flatten()},+{lacking[-1]}")
    module = target.parse_and_optimize(VADD_IR, 2)
    with pytest.raises(target.CodegenError, match=f"uses .*{lacking[-1]}.*which this CPU lacks"):
        target.JitLibrary(module)


BAD_TARGETS = r"""
import os, sys
from fusecc.codegen import target
from fusecc.codegen.cpu import TargetError
for cpu, features in [("i386", None), ("skylake-avx", None), (None, "avx2"), (None, "+avx512"), (None, "-64bit"),
                      ("x86-64", "-sse")]:
    for name, value in (("FUSECC_CPU", cpu), ("FUSECC_CPU_FEATURES", features)):
        os.environ.pop(name, None)
        if value is not None:
            os.environ[name] = value
    try:
        target.parse_and_optimize("define void @f() {\n  ret void\n}\n", 2)
    except TargetError as error:
        print(error)
    else:
        print("compiled")
"""


@pytest.mark.skipif(not _x86_64(), reason="the cases name x86 CPUs and features")
def test_bad_cpu_environment_raises_a_catchable_error():
    """A target LLVM would end the process on is refused with one line naming the variable and its value;
    the process survives to print every case."""
    env = {k: v for k, v in os.environ.items() if k not in ("FUSECC_CPU", "FUSECC_CPU_FEATURES")}
    ran = subprocess.run([sys.executable, "-c", BAD_TARGETS], capture_output=True, text=True, env=env, timeout=300)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert len(lines) == 6, ran.stdout
    i386, misspelt, unsigned, unknown, no_64bit, no_sse = lines
    assert "CPU 'i386'" in i386 and "64-bit code requested" in i386 and "FUSECC_CPU" in i386
    assert misspelt.startswith("FUSECC_CPU='skylake-avx' is not a CPU LLVM knows (did you mean skylake-avx512")
    assert "fusecc --list-cpus" in misspelt
    assert unsigned.startswith("FUSECC_CPU_FEATURES='avx2': 'avx2' needs a + or - sign")
    assert unknown.startswith("FUSECC_CPU_FEATURES='+avx512': 'avx512' is not a feature LLVM knows (did you mean")
    assert "features '-64bit'" in no_64bit and "FUSECC_CPU_FEATURES" in no_64bit
    assert "SSE register return with SSE disabled" in no_sse


@pytest.mark.skipif(not _x86_64(), reason="x86 CPU names")
@pytest.mark.parametrize("cpu, lanes", [("x86-64", 4), ("x86-64-v3", 8), ("x86-64-v4", 16)])
def test_vector_width_follows_the_cpu_named(monkeypatch, cpu, lanes):
    """A CPU named without a feature string brings its own features: x86-64-v4 has AVX-512."""
    monkeypatch.setenv("FUSECC_CPU", cpu)
    monkeypatch.delenv("FUSECC_CPU_FEATURES", raising=False)
    assert host_target().vector_width == lanes


def test_cache_sizes_come_from_sysfs(tmp_path):
    from fusecc.codegen.caches import TYPICAL, CacheSizes, read_caches
    for index, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "32K"),
                                                 (2, "Unified", "1024K"), (3, "Unified", "32M")]):
        entry = tmp_path / f"index{index}"
        entry.mkdir()
        (entry / "level").write_text(f"{level}\n")
        (entry / "type").write_text(f"{kind}\n")
        (entry / "size").write_text(f"{size}\n")
    assert read_caches(str(tmp_path)) == CacheSizes(48 << 10, 1 << 20, 32 << 20)
    assert read_caches(str(tmp_path / "absent")) == TYPICAL


@pytest.mark.parametrize("registers, rows, vectors", [(16, 6, 2), (16, 4, 3), (16, 1, 4), (32, 6, 4), (32, 8, 3)])
def test_micro_tile_fits_the_registers(registers, rows, vectors):
    from fusecc.lowering.microkernel import Simd
    simd = Simd(8, registers)
    assert simd.tile_vectors(rows) == vectors
    assert rows * vectors + vectors + 1 <= registers
