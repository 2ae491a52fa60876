"""Host target, optimisation pipeline, machine-code emission and JIT for fusecc.

This module (together with its sibling ``codegen`` modules) is the only part of
fusecc that talks to ``llvmlite.binding``.  It turns LLVM IR *text* produced by
the lowering stage into optimised machine code, either

* in memory, through :class:`JitLibrary` (one MCJIT execution engine per
  compiled model), or
* ahead of time, through :func:`emit_object` + :func:`link_shared_library`
  (an ELF shared library built with the system C compiler).

LLVM is initialised lazily on first use (:func:`_initialize`), so importing
this module is cheap; ``llvmlite.binding`` itself is only imported then.

Target selection
----------------
:func:`host_target_machine` targets the CPU of the running process (name and
feature string as reported by LLVM).  Two environment variables override it,
in the spirit of numba's ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES``:

``FUSECC_CPU``
    LLVM CPU name (e.g. ``x86-64-v3``, ``skylake-avx512``; ``host`` means the
    detected host CPU).  When it names a CPU other than the host and
    ``FUSECC_CPU_FEATURES`` is unset, the CPU's default feature set is used
    (so ``FUSECC_CPU=x86-64-v3`` produces a portable AVX2 library).
``FUSECC_CPU_FEATURES``
    LLVM feature string such as ``+avx2,+fma,-avx512f``.

Either variable is checked (``cpu.check_target``) before LLVM sees it, since
LLVM ends the process on a target it cannot compile for; a bad value raises
``cpu.TargetError``.  :func:`cpu_requirements` tells which CPU features code
compiled for the target needs; :class:`JitLibrary` refuses code this CPU
cannot run.

All machines use ``reloc='pic'`` and the small code model, which is what an
object destined for ``cc -shared`` needs.  MCJIT takes ownership of the target
machine it is given, so each :class:`JitLibrary` gets its *own* machine with
the same CPU/features/opt level (``jit=True`` and the JIT-default code model,
as numba does), never the cached one.

Embedding large constant data
-----------------------------
:func:`incbin_module_asm` returns ``module asm`` lines that pull a binary file
(e.g. model weights) into the object through the assembler's ``.incbin``
directive, so megabytes of weights never pass through textual IR.
``llvmlite.ir.Module`` has no module-asm API: append the lines to the IR text
before calling :func:`parse_and_optimize`.  The IR side references the blob
through the declarations returned by :func:`incbin_ir_declarations`.
"""

from __future__ import annotations

import ctypes.util
import functools
import math
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import uuid
from typing import Iterable

from . import cpu
from .cpu import CPU_VARIABLE, FEATURES_VARIABLE

__all__ = [
    "CodegenError",
    "host_target_machine",
    "host_cpu_name",
    "host_cpu_features",
    "cpu_requirements",
    "parse_and_optimize",
    "emit_assembly",
    "emit_object",
    "JitLibrary",
    "link_shared_library",
    "baseline_c_flags",
    "find_c_compiler",
    "incbin_module_asm",
    "incbin_ir_declarations",
]


class CodegenError(Exception):
    """Raised for any failure while turning LLVM IR into machine code."""


# ---------------------------------------------------------------------------
# lazy LLVM initialisation
# ---------------------------------------------------------------------------

_llvm_mod = None                  # llvmlite.binding, once initialised
_init_lock = threading.Lock()
# LLVM's global context is not thread safe: every operation that parses,
# optimises, emits or JITs goes through this lock.
_LLVM_LOCK = threading.RLock()

_tm_cache: dict = {}              # (opt_level, cpu, features) -> TargetMachine


def _initialize():
    """Initialise the native LLVM target once; return ``llvmlite.binding``.

    Also makes libm and libc symbols (expf, erff, tanhf, powf, malloc, free,
    ...) resolvable by MCJIT even in a process that did not load them.
    """
    global _llvm_mod
    if _llvm_mod is not None:
        return _llvm_mod
    with _init_lock:
        if _llvm_mod is not None:
            return _llvm_mod
        import llvmlite.binding as llvm

        # llvm.initialize() is deprecated and raises in llvmlite >= 0.45.
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        llvm.initialize_native_asmparser()   # needed for `module asm`
        # libgcc_s provides the soft-float helpers (e.g. __truncdfhf2 for f64 -> f16) LLVM may call
        for name in ("m", "c", "gcc_s"):
            lib = ctypes.util.find_library(name)
            if lib:
                try:
                    llvm.load_library_permanently(lib)
                except RuntimeError:
                    pass  # the symbols are usually in the process already
        _llvm_mod = llvm
        return llvm


# ---------------------------------------------------------------------------
# target machine
# ---------------------------------------------------------------------------

def _check_opt_level(opt_level) -> int:
    if isinstance(opt_level, bool) or not isinstance(opt_level, int) \
            or not 0 <= opt_level <= 3:
        raise ValueError(f"opt_level must be an int in 0..3, got {opt_level!r}")
    return opt_level


def _cpu_from_environment() -> str | None:
    """``FUSECC_CPU`` unless it is unset, empty or ``host``."""
    name = os.environ.get(CPU_VARIABLE, "").strip()
    return None if name in ("", "host") else name


def _features_from_environment() -> str | None:
    """``FUSECC_CPU_FEATURES`` without spaces around its items, or None if unset."""
    env = os.environ.get(FEATURES_VARIABLE)
    return None if env is None else ",".join(item.strip() for item in env.split(",") if item.strip())


def host_cpu_name() -> str:
    """CPU name used for code generation (``FUSECC_CPU`` or the host CPU)."""
    return _cpu_from_environment() or _initialize().get_host_cpu_name()


def host_cpu_features() -> str:
    """Feature string used for code generation.

    ``FUSECC_CPU_FEATURES`` if set; else the host's features when targeting the
    host CPU, or ``""`` (the CPU's defaults) when ``FUSECC_CPU`` names another
    CPU.
    """
    llvm = _initialize()
    env = _features_from_environment()
    if env is not None:
        return env
    if _cpu_from_environment() not in (None, llvm.get_host_cpu_name()):
        return ""
    try:
        return llvm.get_host_cpu_features().flatten()
    except RuntimeError:
        return ""


def _create_target_machine(opt_level: int, cpu: str, features: str, *,
                           jit: bool):
    llvm = _initialize()
    triple = llvm.get_process_triple()
    try:
        target = llvm.Target.from_triple(triple)
        # AOT: small code model + PIC (what `cc -shared` needs).
        # JIT: MCJIT's default (large on 64-bit) so that code and data
        # sections allocated far apart in memory can still reach each other.
        return target.create_target_machine(
            cpu=cpu, features=features, opt=opt_level, reloc="pic",
            codemodel="jitdefault" if jit else "default", jit=jit)
    except RuntimeError as exc:
        raise CodegenError(
            f"cannot create an LLVM target machine for triple {triple!r}, "
            f"cpu {cpu!r}, features {features!r}: {exc}") from exc


def _target_key(opt_level: int) -> tuple:
    """``(opt_level, cpu, features)`` for the target the environment chooses, checked if it overrides the host."""
    key = target_key(opt_level, host_cpu_name(), host_cpu_features())
    if _cpu_from_environment() is not None or _features_from_environment() is not None:
        cpu.check_target(*key[1:])
    return key


def target_key(opt_level: int, cpu_name: str, features: str) -> tuple:
    """The key :func:`optimize_for` takes: ``(opt_level, cpu, features)``, the level checked."""
    return (_check_opt_level(opt_level), cpu_name, features)


def check_environment_target() -> None:
    """Raise ``cpu.TargetError`` if ``FUSECC_CPU`` or ``FUSECC_CPU_FEATURES`` names a target LLVM cannot
    compile for."""
    _target_key(3)


def host_target_machine(opt_level: int = 3):
    """The (cached) ``llvmlite.binding.TargetMachine`` for the host.

    One machine per ``(opt_level, cpu, features)``; the environment variables
    ``FUSECC_CPU`` and ``FUSECC_CPU_FEATURES`` are read on every call.  Do not
    hand the returned machine to an MCJIT engine (MCJIT takes ownership).
    """
    return _tm_for_key(_target_key(opt_level))


def _tm_for_key(key: tuple):
    with _LLVM_LOCK:
        tm = _tm_cache.get(key)
        if tm is None:
            tm = _create_target_machine(*key, jit=False)
            _tm_cache[key] = tm
        return tm


# ---------------------------------------------------------------------------
# parse + optimise
# ---------------------------------------------------------------------------

# `module asm "...\09.incbin \22<path>\22"`: the paths must exist at emission
# time, otherwise LLVM's assembler error handler *exits the process*.
_MODULE_ASM_RE = re.compile(r'^[ \t]*module[ \t]+asm[ \t]+"([^"\n]*)"', re.M)
_INCBIN_RE = re.compile(r'\.incbin\s+"((?:[^"\\]|\\.)*)"')


def _unescape_ir_string(s: str) -> bytes:
    """Decode an LLVM IR string literal body (``\\XX`` and ``\\\\``)."""
    raw = s.encode("utf-8", "surrogateescape")
    return re.sub(rb"\\([0-9A-Fa-f]{2}|\\)",
                  lambda m: b"\\" if m.group(1) == b"\\"
                  else bytes([int(m.group(1), 16)]), raw)


def _unescape_gas_string(b: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(b):
        c = b[i]
        if c == 0x5C and i + 1 < len(b):
            m = re.match(rb"[0-7]{1,3}", b[i + 1:i + 4])
            if m:
                out.append(int(m.group(0), 8) & 0xFF)
                i += 1 + len(m.group(0))
                continue
            nxt = b[i + 1]
            out.append({ord("n"): 10, ord("t"): 9, ord("r"): 13}.get(nxt, nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return bytes(out)


def _incbin_paths(llvm_ir_text: str) -> list:
    if ".incbin" not in llvm_ir_text:
        return []
    paths = []
    for m in _MODULE_ASM_RE.finditer(llvm_ir_text):
        line = _unescape_ir_string(m.group(1))
        for inc in _INCBIN_RE.finditer(line.decode("utf-8", "surrogateescape")):
            raw = _unescape_gas_string(
                inc.group(1).encode("utf-8", "surrogateescape"))
            paths.append(os.fsdecode(raw))
    return paths


def _check_incbin_files(module_ref) -> None:
    for path in getattr(module_ref, "_fusecc_incbin_paths", ()):
        if not os.path.isfile(path):
            raise CodegenError(
                f".incbin file {path!r} referenced by module asm does not "
                "exist (it is read when machine code is emitted)")


def parse_and_optimize(llvm_ir_text: str, opt_level: int = 3):
    """Parse, verify and optimise textual LLVM IR for the host target.

    Runs the new-pass-manager default ``O<opt_level>`` pipeline
    (``buildPerModuleDefaultPipeline``); loop and SLP vectorisation are on for
    O2/O3 and off for O0/O1.  The module's triple and data layout are set from
    :func:`host_target_machine`.  Returns the ``llvmlite.binding.ModuleRef``.
    Parse and verifier failures raise :class:`CodegenError` with LLVM's text.
    """
    return optimize_for(llvm_ir_text, _target_key(opt_level))


def optimize_for(llvm_ir_text: str, key: tuple):
    """:func:`parse_and_optimize` for the target ``key`` (see :func:`target_key`)."""
    llvm = _initialize()
    tm = _tm_for_key(key)
    incbins = _incbin_paths(llvm_ir_text)
    with _LLVM_LOCK:
        try:
            mod = llvm.parse_assembly(llvm_ir_text)
        except RuntimeError as exc:
            raise CodegenError(str(exc)) from exc
        try:
            mod.verify()
        except RuntimeError as exc:
            mod.close()
            raise CodegenError(f"LLVM IR verification failed:\n{exc}") from exc
        mod.triple = tm.triple
        mod.data_layout = str(tm.target_data)
        _run_default_pipeline(llvm, mod, tm, key[0])

    # Remember how the module was optimised so that emission / JIT use the
    # same target (plain attributes on the Python wrapper object).
    mod._fusecc_target = key
    mod._fusecc_incbin_paths = tuple(incbins)
    return mod


def _run_default_pipeline(llvm, mod, tm, opt_level: int) -> None:
    """The ``O<opt_level>`` pipeline over ``mod``, on a pass manager built for this module alone.

    llvmlite 0.50: create_pipeline_tuning_options(speed_level) only; the
    pipeline level is taken from pto.speed_level.  A ModulePassManager is
    single-use (a second run() aborts the process) and PassBuilder keeps
    analysis state, so both are built afresh per module.  Each PassBuilder
    keeps about 4 KiB that llvmlite never frees (its pass instrumentation
    callbacks).  ``ModulePassManager.close()`` never deletes the manager
    (``ObjectRef._dispose``, a no-op, shadows ``NewPassManager._dispose`` in
    its method resolution order), which would keep every pass and the state it
    built over the module (~150 KiB at -O3); ``NewPassManager._dispose``
    deletes it.
    """
    from llvmlite.binding.newpassmanagers import NewPassManager

    pto = llvm.create_pipeline_tuning_options(opt_level)
    vectorize = opt_level >= 2
    pto.loop_vectorization = vectorize   # LLVM's default is True
    pto.slp_vectorization = vectorize    # LLVM's default is False
    pb = llvm.create_pass_builder(tm, pto)
    mpm = pb.getModulePassManager()
    try:
        mpm.run(mod, pb)
    finally:
        NewPassManager._dispose(mpm)
        mpm.detach()
        pb.close()
        pto.close()


def module_target(module_ref) -> tuple:
    """The target key a module was optimised for (the environment's at -O3 if not by :func:`optimize_for`)."""
    return getattr(module_ref, "_fusecc_target", None) or _target_key(3)


def _module_tm(module_ref):
    return _tm_for_key(module_target(module_ref))


def cpu_requirements(module_ref) -> cpu.CpuRequirements:
    """What the code of a module from :func:`parse_and_optimize` needs of the CPU that runs it."""
    _, name, features = module_target(module_ref)
    return cpu.CpuRequirements(name, required_features(name, features))


@functools.lru_cache(maxsize=None)
def required_features(name: str, features: str) -> tuple[str, ...]:
    """The CPU features code compiled for CPU ``name`` with ``features`` may use (``cpu.required_features``;
    x86-64 only: none elsewhere)."""
    if not _initialize().get_process_triple().startswith("x86_64"):
        return ()
    return cpu.required_features(lambda text: optimize_for(text, (2, name, features)))


def _check_module_usable(module_ref) -> None:
    if module_ref.closed or getattr(module_ref, "_owned", False):
        raise CodegenError(
            "LLVM module is closed or owned by a JIT engine; emit code "
            "before handing it to JitLibrary")


def emit_assembly(module_ref) -> str:
    """Target assembly text for a module from :func:`parse_and_optimize`."""
    _check_module_usable(module_ref)
    _check_incbin_files(module_ref)
    tm = _module_tm(module_ref)
    with _LLVM_LOCK:
        try:
            return tm.emit_assembly(module_ref)
        except RuntimeError as exc:
            raise CodegenError(f"LLVM assembly emission failed: {exc}") from exc


def emit_object(module_ref) -> bytes:
    """Relocatable (PIC) object file bytes for a module."""
    _check_module_usable(module_ref)
    _check_incbin_files(module_ref)
    tm = _module_tm(module_ref)
    with _LLVM_LOCK:
        try:
            return tm.emit_object(module_ref)
        except RuntimeError as exc:
            raise CodegenError(f"LLVM object emission failed: {exc}") from exc


# ---------------------------------------------------------------------------
# JIT
# ---------------------------------------------------------------------------

_ASM_LABEL_RE = re.compile(r'^[ \t]*module[ \t]+asm[ \t]+"[ \t]*'
                           r'([A-Za-z_.$][A-Za-z0-9_.$]*):', re.M)


def _check_runs_here(requirements: cpu.CpuRequirements) -> None:
    """Raise :class:`CodegenError` if this CPU lacks a feature the code needs (unless LLVM cannot tell)."""
    try:
        host = _initialize().get_host_cpu_features()
    except RuntimeError:
        return
    missing = requirements.missing(host)
    if missing:
        raise CodegenError(
            f"code compiled for CPU {requirements.cpu!r} uses {', '.join(missing)}, which this CPU lacks, and the "
            f"JIT runs it here: unset {CPU_VARIABLE} and {FEATURES_VARIABLE}, or build a shared library "
            "(`fusecc MODEL -o lib.so`) for the machine that has them")


class JitLibrary:
    """In-memory machine code for one LLVM module, on its own MCJIT engine.

    ``JitLibrary(module_ref)`` takes ownership of ``module_ref`` (it can no
    longer be emitted or reused), compiles and finalises it.
    ``JitLibrary(module_ref, object_bytes)`` loads ``object_bytes``, the
    module's object from :func:`emit_object`, instead: nothing is compiled
    again, and ``module_ref`` stays the caller's; ``other_objects`` are the
    objects of the code's other parts (see ``parts``), which define the
    functions named in ``defined_elsewhere`` that it declares.  MCJIT never
    frees code it has finalised while the engine lives, so every compiled
    model gets its own engine, and the code is released when this object is
    garbage-collected or :meth:`close` is called.  Callers must keep the
    ``JitLibrary`` alive for as long as they call through addresses it
    returned.

    Functions the IR declares (``expf``, ``erff``, ``tanhf``, ``powf``,
    ``malloc``, ``free``, ...) are resolved against the process, libm and
    libc; a declaration that cannot be resolved raises :class:`CodegenError`
    instead of producing a call to address 0.  Code for a CPU feature this
    CPU lacks raises :class:`CodegenError` too, instead of a SIGILL later.
    """

    def __init__(self, module_ref, object_bytes: bytes | None = None, other_objects: tuple[bytes, ...] = (),
                 defined_elsewhere: frozenset[str] = frozenset()):
        llvm = _initialize()
        _check_module_usable(module_ref)
        _check_incbin_files(module_ref)
        _check_runs_here(cpu_requirements(module_ref))
        from .pool import PARALLEL_FOR, load_for_jit
        if any(fn.name == PARALLEL_FOR and fn.is_declaration for fn in module_ref.functions):
            load_for_jit()
        key = module_target(module_ref)
        # Fresh machine: the engine owns (and eventually deletes) it.
        tm = _create_target_machine(*key, jit=True)
        with _LLVM_LOCK:
            engine_module = module_ref if object_bytes is None else llvm.parse_assembly("")
            if engine_module.triple != tm.triple or not engine_module.data_layout:
                engine_module.triple = tm.triple
                engine_module.data_layout = str(tm.target_data)
            try:
                engine = llvm.create_mcjit_compiler(engine_module, tm)
                for data in (object_bytes, *other_objects) if object_bytes is not None else ():
                    engine.add_object_file(llvm.ObjectFileRef.from_data(data))
            except RuntimeError as exc:
                raise CodegenError(f"cannot create MCJIT engine: {exc}") from exc
            # Engine creation made the process' symbols searchable; check
            # before finalising, as MCJIT would silently bind them to 0.
            missing = [name for name in self._unresolved(llvm, module_ref) if name not in defined_elsewhere]
            if missing:
                engine.close()
                raise CodegenError(
                    "JIT cannot resolve external function(s) declared by the "
                    f"IR: {', '.join(sorted(missing))}")
            engine.finalize_object()
            engine.run_static_constructors()
        self._engine = engine
        self._tm = tm                  # owned by the engine; kept for reference
        self._module = engine_module   # owned by the engine
        engine_module._owned = True
        self._addresses: dict = {}

    @staticmethod
    def _unresolved(llvm, module_ref) -> list:
        missing = []
        for fn in module_ref.functions:
            if not fn.is_declaration:
                continue
            name = fn.name
            if name.startswith("llvm.") or llvm.address_of_symbol(name):
                continue
            missing.append(name)
        if missing:  # symbols defined by module-level inline asm are fine
            labels = set(_ASM_LABEL_RE.findall(str(module_ref)))
            missing = [n for n in missing if n not in labels]
        return missing

    def address(self, symbol: str) -> int:
        """Address of a function or global defined by the module."""
        addr = self._addresses.get(symbol)
        if addr is not None:
            return addr
        if self._engine is None:
            raise CodegenError(f"JitLibrary is closed (looking up {symbol!r})")
        with _LLVM_LOCK:
            addr = self._engine.get_function_address(symbol)
            if not addr:
                addr = self._engine.get_global_value_address(symbol)
        if not addr:
            raise CodegenError(f"symbol {symbol!r} not found in JIT library")
        self._addresses[symbol] = addr
        return addr

    def close(self) -> None:
        """Free the engine and its code now (addresses become invalid)."""
        engine, self._engine = self._engine, None
        self._addresses.clear()
        self._module = None
        self._tm = None
        if engine is not None:
            with _LLVM_LOCK:
                engine.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------
# linking a shared library
# ---------------------------------------------------------------------------

_NO_CC_MSG = ("no C compiler found to link the shared library: "
              "set CC or install gcc/clang")


def find_c_compiler() -> list:
    """The C compiler command as an argv prefix: ``$CC``, else cc/gcc/clang."""
    env = os.environ.get("CC", "").strip()
    if env:
        argv = shlex.split(env)
        exe = shutil.which(argv[0])
        if exe is None:
            raise CodegenError(f"{_NO_CC_MSG} (CC={env!r} is not an "
                               "executable program)")
        return [exe] + argv[1:]
    for name in ("cc", "gcc", "clang"):
        exe = shutil.which(name)
        if exe is not None:
            return [exe]
    raise CodegenError(_NO_CC_MSG)


def baseline_c_flags() -> list[str]:
    """C compiler flags for code that runs before anyone knows the CPU's features: the architecture's
    baseline instruction set, whatever ``$CC`` asks for."""
    return ["-march=x86-64", "-mtune=generic"] if _initialize().get_process_triple().startswith("x86_64") else []


def link_shared_library(object_bytes: bytes, out_path: str,
                        extra_sources: Iterable[str] = (), c_flags: Iterable[str] = ()) -> str:
    """Link an object (from :func:`emit_object`) into a shared library.

    Runs ``$CC -shared -fPIC -O2 [c_flags...] -o out_path obj.o [extra_sources...] -lm``
    (``extra_sources``: C files or objects compiled/linked alongside).  The
    library is written next to ``out_path`` and renamed into place, so a
    process that already mapped an older version is not disturbed.  Returns
    the absolute output path.
    """
    cc = find_c_compiler()
    out_path = os.path.abspath(os.fspath(out_path))
    out_dir = os.path.dirname(out_path)
    os.makedirs(out_dir, exist_ok=True)
    extra = [os.path.abspath(os.fspath(s)) for s in extra_sources]
    tmp_out = os.path.join(
        out_dir, f".{os.path.basename(out_path)}.{uuid.uuid4().hex[:12]}.tmp")
    with tempfile.TemporaryDirectory(prefix="fusecc_link_") as tmp:
        obj = os.path.join(tmp, "module.o")
        with open(obj, "wb") as f:
            f.write(object_bytes)
        cmd = cc + ["-shared", "-fPIC", "-O2", *c_flags, "-o", tmp_out, obj,
                    *extra, "-lm"]
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  errors="replace", timeout=900)
        except OSError as exc:
            raise CodegenError(f"{_NO_CC_MSG} ({cmd[0]}: {exc})") from exc
        except subprocess.TimeoutExpired as exc:
            raise CodegenError(f"linking timed out: {' '.join(cmd)}") from exc
        if proc.returncode != 0:
            try:
                os.unlink(tmp_out)
            except OSError:
                pass
            raise CodegenError(
                f"linking {out_path} failed (exit {proc.returncode}): "
                f"{' '.join(cmd)}\n{proc.stderr.strip() or proc.stdout.strip()}")
    os.replace(tmp_out, out_path)
    return out_path


# ---------------------------------------------------------------------------
# embedding binary blobs with .incbin
# ---------------------------------------------------------------------------

_SYMBOL_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SECTION_RE = re.compile(r"\.[A-Za-z0-9_.]+\Z")


def _gas_string(data: bytes) -> bytes:
    """Quote bytes as a GNU assembler string literal (without the quotes)."""
    out = bytearray()
    for b in data:
        if b in (0x22, 0x5C) or b < 0x20 or b >= 0x7F:
            out += b"\\%03o" % b
        else:
            out.append(b)
    return bytes(out)


def _ir_string(data: bytes) -> str:
    """Escape bytes for an LLVM IR string literal (without the quotes)."""
    return "".join(chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C)
                   else "\\%02X" % b for b in data)


def incbin_module_asm(symbol: str, path: str,
                      section: str = ".rodata.fusecc_weights",
                      align: int = 64) -> str:
    """``module asm`` lines embedding the bytes of ``path`` as ``symbol``.

    Defines, in read-only section ``section`` aligned to ``align`` bytes:

    * ``symbol``: hidden global (addressable from the IR, not exported
      from the shared library, so several models never clash) labelling the
      first byte of the file (``.incbin``), with ELF ``.size`` = file size;
    * ``symbol + "_end"``: hidden global right after the last byte.

    The file is read when machine code is emitted (:func:`emit_object`,
    :func:`emit_assembly`, :class:`JitLibrary`), not now; it must still exist
    then and its size is the one returned by ``os.path.getsize`` now (the
    distance ``_end - symbol`` is always exact).  Append the returned text
    (one ``module asm`` line per directive, newline-terminated) to the IR
    text, together with :func:`incbin_ir_declarations`.  ELF targets only.
    """
    if not _SYMBOL_RE.match(symbol):
        raise ValueError(f"invalid symbol name {symbol!r}")
    if not _SECTION_RE.match(section):
        raise ValueError(f"invalid section name {section!r}")
    if not isinstance(align, int) or align < 1 or align & (align - 1):
        raise ValueError(f"align must be a power of two, got {align!r}")
    llvm = _initialize()
    fmt = llvm.get_object_format()
    if fmt != "ELF":
        raise CodegenError(f".incbin embedding supports ELF only, not {fmt}")
    apath = os.path.abspath(os.fspath(path))
    if not os.path.isfile(apath):
        raise CodegenError(f"cannot embed {path!r}: no such file")
    size = os.path.getsize(apath)
    end = f"{symbol}_end"
    quoted = _gas_string(os.fsencode(apath)).decode("ascii")
    directives = [
        f'\t.pushsection {section},"a",@progbits',
        f"\t.p2align {int(math.log2(align))}",
        f"\t.globl {symbol}",
        f"\t.hidden {symbol}",
        f"\t.type {symbol},@object",
        f"\t.size {symbol}, {size}",
        f"{symbol}:",
        f'\t.incbin "{quoted}"',
        f"\t.globl {end}",
        f"\t.hidden {end}",
        f"{end}:",
        "\t.popsection",
    ]
    return "".join(f'module asm "{_ir_string(d.encode("ascii"))}"\n'
                   for d in directives)


def incbin_ir_declarations(symbol: str, align: int = 64) -> str:
    """IR declarations matching :func:`incbin_module_asm` for ``symbol``.

    ``@symbol`` and ``@symbol_end`` as ``external hidden global [0 x i8]``
    (hidden: referenced PC-relatively, no GOT entry).
    """
    if not _SYMBOL_RE.match(symbol):
        raise ValueError(f"invalid symbol name {symbol!r}")
    return (f"@{symbol} = external hidden global [0 x i8], align {align}\n"
            f"@{symbol}_end = external hidden global [0 x i8]\n")
