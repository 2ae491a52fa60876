"""Code generation for a lowered module, the one way every output is made.

:func:`generate` turns the loop-level module into optimised LLVM IR for a ``Target`` and emits one object file
from it. Everything else comes from that object: the JIT loads it (``GeneratedCode.jit``), a shared library links
it with the weights and the C API (``GeneratedCode.write_shared_library``, which ``CompiledModel.save`` calls
without compiling again), and ``fusecc --emit`` writes it, its assembly or its IR.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property

from fusecc.ir.core import Module

from . import aot, target
from .llvm_emit import emit_llvm


@dataclass
class GeneratedCode:
    """A model's code for one target: its optimised LLVM module, what its code needs of a CPU, its weights and
    its model info (see ``driver.model_info``), and the loop-level module it was made from with the offset of
    each ``kernel.weight`` in the weights."""

    module_ref: object
    weights: memoryview
    info: dict
    lowered: Module
    weight_offsets: dict[int, int]

    @property
    def llvm_ir(self) -> str:
        """The optimised LLVM IR."""
        return str(self.module_ref)

    def assembly(self) -> str:
        return target.emit_assembly(self.module_ref)

    @cached_property
    def object(self) -> bytes:
        """The relocatable object of the kernels and ``fusecc_main``, emitted once."""
        return target.emit_object(self.module_ref)

    @cached_property
    def requirements(self):
        """What the code needs of the CPU that runs it (``cpu.CpuRequirements``)."""
        return target.cpu_requirements(self.module_ref)

    def jit(self) -> target.JitLibrary:
        """The object loaded into this process."""
        return target.JitLibrary(self.module_ref, self.object)

    def saver(self):
        """``save(path, name=None)``: write the shared library of this code (and its header) to ``path``; it keeps
        the object, the weights and the info, not the LLVM module."""
        code, weights, info, requirements = self.object, self.weights, self.info, self.requirements
        weights_object = _weights_object_builder(self.module_ref)

        def save(path: str, name: str | None = None) -> None:
            aot.build_shared_library(code, weights_object, requirements, weights, info, path, name)

        return save

    def write_shared_library(self, path: str, name: str | None = None) -> None:
        """The shared library of this code at ``path``, its header beside it (see ``aot``)."""
        self.saver()(path, name)


def _weights_object_builder(module_ref):
    """A function making the object that embeds a weights file, for the target ``module_ref`` was compiled for."""
    key = target.module_target(module_ref)
    return lambda blob_path: target.emit_object(target.optimize_for(
        target.incbin_module_asm(aot.WEIGHTS_SYMBOL, blob_path), key))


def generate(module: Module, info: dict, for_target, opt_level: int, debug: int = 0, exported_kernels: bool = False,
             fault: str | None = None, timed=lambda label: nullcontext()) -> GeneratedCode:
    """Optimise the LLVM IR of the lowered ``module`` for ``for_target`` (a ``fusecc.target.Target``) at
    ``opt_level``. ``debug`` 4 writes the LLVM IR to stderr, 5 the assembly too (see ``driver``);
    ``exported_kernels`` and ``fault`` are ``llvm_emit.emit_llvm``'s; ``timed(step)`` is a context that times
    each step (``llvm-ir``, ``llvm-optimize``)."""
    with timed("llvm-ir"):
        llvm_module, weights = emit_llvm(module, exported_kernels=exported_kernels, fault=fault)
        text = str(llvm_module)
    if debug >= 4:
        sys.stderr.write(text)
    with timed("llvm-optimize"):
        module_ref = target.optimize_for(text, target.target_key(opt_level, for_target.cpu, for_target.features))
    code = GeneratedCode(module_ref, weights.blob(), info, module, weights.offsets)
    if debug >= 5:
        sys.stderr.write(code.assembly())
    return code

