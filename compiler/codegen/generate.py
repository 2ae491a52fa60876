"""Code generation for a lowered module, the one way every output is made.

:func:`generate` turns the loop-level module into optimised LLVM IR for a ``Target`` and emits object files
from it: one, or with ``jobs`` above one and code enough, one per part compiled at once (``parts``). Everything
else comes from those objects: the JIT loads them (``GeneratedCode.jit``), a shared library links them with the
weights and the C API (``GeneratedCode.write_shared_library``, which ``CompiledModel.save`` calls without
compiling again), and ``fusecc --emit`` writes the one object of a single part, its assembly or its IR.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property

from fusecc.ir.core import Module

from . import aot, target
from .llvm_emit import ENTRY, emit_llvm
from .parts import PartCompile, split_module


@dataclass
class GeneratedCode:
    """A model's code for one target: its optimised LLVM module (the first part's, when other parts compile in
    ``other_parts``), what its code needs of a CPU, its weights and its model info (see ``driver.model_info``),
    and the loop-level module it was made from with the offset of each ``kernel.weight`` in the weights."""

    module_ref: object
    weights: memoryview
    info: dict
    lowered: Module
    weight_offsets: dict[int, int]
    other_parts: tuple[PartCompile, ...] = ()

    @property
    def llvm_ir(self) -> str:
        """The optimised LLVM IR (of the first part)."""
        return str(self.module_ref)

    def assembly(self) -> str:
        return target.emit_assembly(self.module_ref)

    @cached_property
    def object(self) -> bytes:
        """The relocatable object of ``fusecc_main`` and the kernels of its part, emitted once."""
        return target.emit_object(self.module_ref)

    @cached_property
    def objects(self) -> tuple[bytes, ...]:
        """Every part's object, the first part's first (waiting for the others)."""
        return (self.object, *(part.object() for part in self.other_parts))

    @cached_property
    def requirements(self):
        """What the code needs of the CPU that runs it (``cpu.CpuRequirements``)."""
        return target.cpu_requirements(self.module_ref)

    def jit(self) -> target.JitLibrary:
        """The object loaded into this process."""
        defined = frozenset().union(*(part.part.defines for part in self.other_parts))
        return target.JitLibrary(self.module_ref, self.objects[0], self.objects[1:], defined)

    def saver(self):
        """``save(path, name=None)``: write the shared library of this code (and its header) to ``path``; it keeps
        the object, the weights and the info, not the LLVM module."""
        code, weights, info, requirements = self.objects, self.weights, self.info, self.requirements
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
             fault: str | None = None, timed=lambda label: nullcontext(), jobs: int = 1) -> GeneratedCode:
    """Optimise the LLVM IR of the lowered ``module`` for ``for_target`` (a ``fusecc.target.Target``) at
    ``opt_level``, in up to ``jobs`` parts at once (see ``parts``; one for exported kernels, which a caller
    launches by name). ``debug`` 4 writes the LLVM IR to stderr, 5 the assembly too (see ``driver``);
    ``exported_kernels`` and ``fault`` are ``llvm_emit.emit_llvm``'s; ``timed(step)`` is a context that times
    each step (``llvm-ir``, ``llvm-optimize``)."""
    with timed("llvm-ir"):
        llvm_module, weights = emit_llvm(module, exported_kernels=exported_kernels, fault=fault)
        parts = split_module(llvm_module, ENTRY, 1 if exported_kernels else jobs)
    if debug >= 4:
        sys.stderr.write("\n".join(part.text for part in parts))
    key = target.target_key(opt_level, for_target.cpu, for_target.features)
    with timed("llvm-optimize"):
        others = tuple(PartCompile(part, key) for part in parts[1:])
        module_ref = target.optimize_for(parts[0].text, key)
    code = GeneratedCode(module_ref, weights.blob(), info, module, weights.offsets, others)
    if debug >= 5:
        sys.stderr.write(code.assembly())
    return code

