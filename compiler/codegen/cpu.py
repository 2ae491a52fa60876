"""The CPU that code is compiled for: names checked before LLVM sees them, and features the code needs.

LLVM ends the process, with nothing to catch, on a target it cannot compile for: an unknown or 32-bit
CPU name, ``-64bit``, a feature without its ``+``/``-`` sign, ``-sse``. :func:`check_target` therefore
asks a child process: it has LLVM list its CPUs and features (``-mcpu=help``) and compiles a small
module for the target; a name LLVM does not know, or a child that dies, becomes a :class:`TargetError`
naming the environment variable and its value.

:data:`CPUID_FEATURES` lists the x86 features beyond baseline x86-64 that LLVM may select instructions
for, each with the ``cpuid`` bit that reports it and the register state the operating system must save
for it (XCR0). :func:`required_features` finds which of them a target has, by LLVM's own rule (see
there); a shared library checks those with ``cpuid`` when it loads, and the JIT against the host's.
Features outside the table are not checked.
"""

from __future__ import annotations

import difflib
import functools
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Mapping

#: XCR0 bits: SSE and AVX (YMM) state; AVX-512 opmask and ZMM state; AMX tile configuration and data
_AVX_STATE = 0x6
_AVX512_STATE = 0xE6
_AMX_STATE = 0x60000
EAX, EBX, ECX, EDX = range(4)

#: the environment variables that override the target (read by ``target``)
CPU_VARIABLE = "FUSECC_CPU"
FEATURES_VARIABLE = "FUSECC_CPU_FEATURES"


@dataclass(frozen=True)
class CpuidBit:
    """Where ``cpuid`` reports a feature, and the XCR0 bits the OS must have enabled for it."""

    leaf: int
    subleaf: int
    register: int
    bit: int
    os_state: int = 0


#: LLVM feature name -> where cpuid reports it (Intel SDM vol. 2A, CPUID; AMD APM vol. 3, appendix E)
CPUID_FEATURES: dict[str, CpuidBit] = {
    "sse3": CpuidBit(1, 0, ECX, 0), "pclmul": CpuidBit(1, 0, ECX, 1), "ssse3": CpuidBit(1, 0, ECX, 9),
    "fma": CpuidBit(1, 0, ECX, 12, _AVX_STATE), "cx16": CpuidBit(1, 0, ECX, 13),
    "sse4.1": CpuidBit(1, 0, ECX, 19), "sse4.2": CpuidBit(1, 0, ECX, 20), "movbe": CpuidBit(1, 0, ECX, 22),
    "popcnt": CpuidBit(1, 0, ECX, 23), "aes": CpuidBit(1, 0, ECX, 25), "xsave": CpuidBit(1, 0, ECX, 26),
    "avx": CpuidBit(1, 0, ECX, 28, _AVX_STATE), "f16c": CpuidBit(1, 0, ECX, 29, _AVX_STATE),
    "rdrnd": CpuidBit(1, 0, ECX, 30),
    "fsgsbase": CpuidBit(7, 0, EBX, 0), "bmi": CpuidBit(7, 0, EBX, 3), "avx2": CpuidBit(7, 0, EBX, 5, _AVX_STATE),
    "bmi2": CpuidBit(7, 0, EBX, 8), "avx512f": CpuidBit(7, 0, EBX, 16, _AVX512_STATE),
    "avx512dq": CpuidBit(7, 0, EBX, 17, _AVX512_STATE), "rdseed": CpuidBit(7, 0, EBX, 18),
    "adx": CpuidBit(7, 0, EBX, 19), "avx512ifma": CpuidBit(7, 0, EBX, 21, _AVX512_STATE),
    "clflushopt": CpuidBit(7, 0, EBX, 23), "clwb": CpuidBit(7, 0, EBX, 24),
    "avx512cd": CpuidBit(7, 0, EBX, 28, _AVX512_STATE), "sha": CpuidBit(7, 0, EBX, 29),
    "avx512bw": CpuidBit(7, 0, EBX, 30, _AVX512_STATE), "avx512vl": CpuidBit(7, 0, EBX, 31, _AVX512_STATE),
    "avx512vbmi": CpuidBit(7, 0, ECX, 1, _AVX512_STATE), "avx512vbmi2": CpuidBit(7, 0, ECX, 6, _AVX512_STATE),
    "gfni": CpuidBit(7, 0, ECX, 8), "vaes": CpuidBit(7, 0, ECX, 9, _AVX_STATE),
    "vpclmulqdq": CpuidBit(7, 0, ECX, 10, _AVX_STATE), "avx512vnni": CpuidBit(7, 0, ECX, 11, _AVX512_STATE),
    "avx512bitalg": CpuidBit(7, 0, ECX, 12, _AVX512_STATE),
    "avx512vpopcntdq": CpuidBit(7, 0, ECX, 14, _AVX512_STATE), "rdpid": CpuidBit(7, 0, ECX, 22),
    "avx512vp2intersect": CpuidBit(7, 0, EDX, 8, _AVX512_STATE), "amx-bf16": CpuidBit(7, 0, EDX, 22, _AMX_STATE),
    "avx512fp16": CpuidBit(7, 0, EDX, 23, _AVX512_STATE), "amx-tile": CpuidBit(7, 0, EDX, 24, _AMX_STATE),
    "amx-int8": CpuidBit(7, 0, EDX, 25, _AMX_STATE),
    "avxvnni": CpuidBit(7, 1, EAX, 4, _AVX_STATE), "avx512bf16": CpuidBit(7, 1, EAX, 5, _AVX512_STATE),
    "sahf": CpuidBit(0x80000001, 0, ECX, 0), "lzcnt": CpuidBit(0x80000001, 0, ECX, 5),
    "sse4a": CpuidBit(0x80000001, 0, ECX, 6), "prfchw": CpuidBit(0x80000001, 0, ECX, 8),
    "xop": CpuidBit(0x80000001, 0, ECX, 11, _AVX_STATE), "fma4": CpuidBit(0x80000001, 0, ECX, 16, _AVX_STATE),
    "tbm": CpuidBit(0x80000001, 0, ECX, 21),
}


class TargetError(ValueError):
    """``FUSECC_CPU`` or ``FUSECC_CPU_FEATURES`` names a target LLVM cannot compile for."""


@dataclass(frozen=True)
class CpuRequirements:
    """What code compiled for ``cpu`` asks of the CPU that runs it: the :data:`CPUID_FEATURES` it may use."""

    cpu: str
    features: tuple[str, ...]

    def missing(self, available: Mapping[str, bool]) -> list[str]:
        """The required features ``available`` (LLVM's host feature map) does not have."""
        return [name for name in self.features if not available.get(name, False)]


# ---------------------------------------------------------------------------
# which features a target has
# ---------------------------------------------------------------------------

def _probe_ir() -> str:
    """For each feature i, ``@has_feature_i`` (compiled for the target) calls ``@needs_feature_i``
    (compiled for baseline x86-64 plus the feature), which stores to a volatile global so the call stays."""
    parts = ["@sink = global i32 0"]
    for i, name in enumerate(CPUID_FEATURES):
        parts.append(f'define internal void @needs_feature_{i}() "target-cpu"="x86-64" "target-features"="+{name}" {{\n'
                     f"  store volatile i32 {i}, ptr @sink\n  ret void\n}}\n"
                     f"define void @has_feature_{i}() {{\n  call void @needs_feature_{i}()\n  ret void\n}}")
    return "\n".join(parts) + "\n"


def required_features(optimize: Callable[[str], object]) -> tuple[str, ...]:
    """The :data:`CPUID_FEATURES` a target has, given ``optimize`` (IR text -> ModuleRef optimised at -O2
    for that target).

    LLVM inlines a call only when the callee's target features are a subset of the caller's
    (``X86TTIImpl::areInlineCompatible``), so ``@has_feature_i`` ends up without its call exactly when
    the target has feature i and everything it implies.
    """
    module = optimize(_probe_ir())
    try:
        return tuple(name for i, name in enumerate(CPUID_FEATURES)
                     if " call " not in str(module.get_function(f"has_feature_{i}")))
    finally:
        module.close()


# ---------------------------------------------------------------------------
# checking a target before LLVM sees it
# ---------------------------------------------------------------------------

#: run by a child process: LLVM's CPU and feature lists on stderr, then a trial compile for the target if one
#: is named
_ASK_LLVM = r"""
import sys
import llvmlite.binding as llvm
llvm.initialize_native_target()
llvm.initialize_native_asmprinter()
target = llvm.Target.from_triple(llvm.get_process_triple())
target.create_target_machine(cpu="help")
sys.stderr.write("\n--- trial ---\n")
sys.stderr.flush()
cpu, features, ir = sys.argv[1:]
if not cpu:
    sys.exit()
machine = target.create_target_machine(cpu=cpu, features=features, opt=2, reloc="pic")
module = llvm.parse_assembly(ir)
module.triple = machine.triple
machine.emit_object(module)
print("compiled")
"""

#: a float returned in a register, double arithmetic and a wide vector: what a model's code holds
_TRIAL_IR = """
define float @scalar(float %x, double %y) {
  %t = fptrunc double %y to float
  %r = fadd float %x, %t
  ret float %r
}
define void @vector(ptr %p) {
  %v = load <16 x float>, ptr %p
  %w = fmul <16 x float> %v, %v
  store <16 x float> %w, ptr %p
  ret void
}
"""


@dataclass(frozen=True)
class LlvmAnswer:
    """What the child process reported: LLVM's CPU and feature names, and the trial compile's error (None
    when it compiled, or when no target was named)."""

    cpus: tuple[str, ...]
    features: tuple[str, ...]
    error: str | None


def _names_in(section: str) -> tuple[str, ...]:
    return tuple(re.findall(r"^  (\S+)\s+- ", section, re.M))


@functools.lru_cache(maxsize=None)
def ask_llvm(cpu: str, features: str) -> LlvmAnswer:
    """LLVM's CPU and feature lists, and whether it compiles for ``cpu`` with ``features`` (when ``cpu`` is
    not empty), from a child process."""
    child = subprocess.run([sys.executable, "-c", _ASK_LLVM, cpu, features, _TRIAL_IR],
                           capture_output=True, text=True, errors="replace", timeout=300)
    lists, _, trial = child.stderr.partition("\n--- trial ---\n")
    cpus, _, feature_list = lists.partition("Available features for this target:")
    error = None
    if cpu and (child.returncode != 0 or child.stdout.strip() != "compiled"):
        lines = [line.strip() for line in trial.splitlines() if line.strip()]
        error = lines[-1] if lines else f"the compiler process exited with status {child.returncode}"
    return LlvmAnswer(_names_in(cpus), _names_in(feature_list), error)


def _suggestion(name: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, choices, n=3)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _feature_problem(features: str, known: tuple[str, ...]) -> str | None:
    for token in features.split(","):
        name = token[1:]
        if not token.startswith(("+", "-")):
            return f"{token!r} needs a + or - sign, e.g. +{token}"
        if name not in known:
            return f"{name!r} is not a feature LLVM knows{_suggestion(name, known)}"
    return None


def check_target(cpu: str, features: str, cpu_source: str = CPU_VARIABLE) -> None:
    """Raise :class:`TargetError` unless LLVM knows ``cpu`` and every ``+name``/``-name`` of ``features``
    (comma-separated, no spaces) and compiles for them. ``cpu_source`` names where the CPU name came from (an
    environment variable or an option)."""
    answer = ask_llvm(cpu, features)
    listing = "; `fusecc --list-cpus` lists the CPUs and features LLVM knows"
    if cpu not in answer.cpus:
        raise TargetError(f"{cpu_source}={cpu!r} is not a CPU LLVM knows{_suggestion(cpu, answer.cpus)}{listing}"
                          " ('host' means this machine's)")
    problem = _feature_problem(features, answer.features) if features else None
    if problem:
        raise TargetError(f"{FEATURES_VARIABLE}={features!r}: {problem}{listing}")
    if answer.error:
        raise TargetError(f"LLVM cannot compile for CPU {cpu!r} with features {features!r} "
                          f"({cpu_source}, {FEATURES_VARIABLE}): {answer.error}")
