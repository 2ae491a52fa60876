"""Tests for fusecc.codegen.target (LLVM target, pipeline, JIT, AOT linking)."""

import ctypes
import importlib.util
import math
import os
import subprocess
import sys

import numpy as np
import pytest

try:
    from fusecc.codegen import target
except ImportError:  # package not installed yet: load the file by path
    _path = os.path.join(os.path.dirname(__file__), os.pardir, "compiler",
                         "codegen", "target.py")
    _spec = importlib.util.spec_from_file_location(
        "fusecc_codegen_target", os.path.abspath(_path))
    target = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = target
    _spec.loader.exec_module(target)


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
