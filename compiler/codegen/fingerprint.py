"""What the code generator contributes to a compile-cache key: the llvmlite and LLVM versions, and the target as
``target`` chooses it (``FUSECC_CPU`` and ``FUSECC_CPU_FEATURES`` included, and checked as for a compilation)."""

from __future__ import annotations

import llvmlite
from llvmlite import binding

from . import target


def codegen_fingerprint(opt_level: int) -> dict:
    """Versions, triple, CPU name and feature string of code compiled now at ``opt_level``."""
    return {"llvmlite": llvmlite.__version__, "llvm": ".".join(map(str, binding.llvm_version_info)),
            "triple": target.host_target_machine(opt_level).triple, "cpu": target.host_cpu_name(),
            "features": target.host_cpu_features()}
