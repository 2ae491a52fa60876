"""The compiler driver: runs the phases on a model and produces a ``CompiledModel`` or files.

``FUSECC_DEBUG`` (an integer) turns on reports, each level adding to the last:

    1  phases with timings, the kernel count and every kernel with its ONNX nodes
    2  fusion decisions, including why ops did not fuse
    3  the IR after each phase (weights elided)
    4  the LLVM IR
    5  the host assembly
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from fusecc.ir.core import Module
from fusecc.ir.printer import loc_names, print_module

from .pipeline import PHASES, phase_pipelines


def debug_level() -> int:
    try:
        return int(os.environ.get("FUSECC_DEBUG", "0") or 0)
    except ValueError:
        return 0


@dataclass
class Options:
    """What a compilation does; shared by the Python API and the CLI."""

    opt_level: int = 3
    fusion: bool | None = None
    input_shapes: dict[str, tuple[int, ...]] | None = None
    instrumentation: object = None
    compile_to: str = "llvm"
    debug: int = field(default_factory=debug_level)

    @property
    def fuse(self) -> bool:
        return self.opt_level > 0 if self.fusion is None else self.fusion


def load_module(source, input_shapes=None) -> Module:
    """An ONNX model (path, bytes or ModelProto) or a ``.fir`` file, as a tensor-level module."""
    if isinstance(source, (str, os.PathLike)) and str(source).endswith(".fir"):
        from fusecc.ir.parser import parse_file
        import fusecc.dialects  # noqa: F401
        module = parse_file(source)
        module.verify()
        return module
    from .frontend.onnx_import import import_model
    return import_model(source, input_shapes=input_shapes)


def run_phases(module: Module, options: Options, log=sys.stderr) -> Module:
    """Run the graph, fusion and loops phases up to ``options.compile_to``."""
    import fusecc.lowering  # noqa: F401  (registers the lowering passes)
    from fusecc.passes import PassManager, parse_pipeline

    pipelines = phase_pipelines(options.fuse, explain=options.debug >= 2)
    for phase in PHASES[1:]:
        if PHASES.index(phase) > PHASES.index(options.compile_to) or phase not in pipelines:
            break
        start = time.perf_counter()
        PassManager(parse_pipeline(pipelines[phase]), options.instrumentation).run(module)
        if options.debug >= 1:
            log.write(f"[fusecc] phase {phase}: {1000 * (time.perf_counter() - start):.1f} ms\n")
        if options.debug >= 3:
            log.write(f"// ----- after phase {phase} -----\n{print_module(module, elide_resources=True)}")
    return module


def model_info(graph: Module) -> dict:
    """Input/output specs of a tensor-level ``@main`` and the kernels of its fused regions."""
    from fusecc.lowering.to_loops import kernel_name

    main = graph.main
    input_names = main.attr("input_names") or [a.name_hint for a in main.args]
    output_names = main.attr("output_names") or [f"output{i}" for i in range(len(main.result_types))]

    def spec(name, t):
        if not t.is_static:
            raise ValueError(f"'{name}' has dynamic shape {t}; fix it with input_shapes={...} (API) or --input-shape NAME=DIMS (CLI)")
        return {"name": name, "shape": list(t.shape), "dtype": str(t.dtype.numpy)}

    kernels = []
    for op in main.body.ops:
        if op.name == "kernel.fused":
            nodes = [n for m in op.members for n in (loc_names(m.loc) or [m.name])]
            kernels.append({"name": kernel_name(op, len(kernels)), "pattern": op.attr("pattern"),
                            "nodes": nodes, "extent": 0})
    return {"inputs": [spec(n, a.type) for n, a in zip(input_names, main.args)],
            "outputs": [spec(n, t) for n, t in zip(output_names, main.result_types)],
            "kernels": kernels}


def lower(module: Module, options: Options, log=sys.stderr) -> tuple[Module, dict]:
    """Graph and fusion phases, model info, then the loops phase."""
    fused_options = Options(**{**options.__dict__, "compile_to": "fusion"})
    run_phases(module, fused_options, log)
    info = model_info(module)
    loops_phase = Options(**{**options.__dict__, "compile_to": "loops"})
    import fusecc.lowering  # noqa: F401
    from fusecc.passes import PassManager, parse_pipeline
    from fusecc.codegen.target import preferred_vector_width
    loops = phase_pipelines(loops_phase.fuse)["loops"].replace(
        "lower-to-loops", f"lower-to-loops{{vector-width={preferred_vector_width()}}}", 1)
    PassManager(parse_pipeline(loops), options.instrumentation).run(module)
    extents = {op.attr("callee"): op.attr("extent") for op in module.main.body.ops if op.name == "kernel.launch"}
    for kernel in info["kernels"]:
        kernel["extent"] = extents.get(kernel["name"], 0)
    info["workspace_size"] = module.main.attr("workspace_size", 0)
    if options.debug >= 1:
        log.write(f"[fusecc] {len(info['kernels'])} kernels\n")
        for kernel in info["kernels"]:
            log.write(f"[fusecc]   {kernel['name']:<40} {kernel['pattern']:<12} {', '.join(kernel['nodes'])}\n")
    if options.debug >= 3:
        log.write(f"// ----- after phase loops -----\n{print_module(module, elide_resources=True)}")
    return module, info


def compile_model(source, options: Options | None = None):
    """Compile ``source`` and JIT it in-process: a ``fusecc.runtime.CompiledModel``."""
    from fusecc.codegen import target
    from fusecc.codegen.aot import build_shared_library
    from fusecc.codegen.llvm_emit import ENTRY, emit_llvm
    from fusecc.runtime.model import from_jit

    options = options or Options()
    start = time.perf_counter()
    module, info = lower(load_module(source, options.input_shapes), options)
    llvm_module, weights = emit_llvm(module)
    text = str(llvm_module)
    if options.debug >= 4:
        sys.stderr.write(text)
    module_ref = target.parse_and_optimize(text, options.opt_level)
    if options.debug >= 5:
        sys.stderr.write(target.emit_assembly(module_ref))
    library = target.JitLibrary(module_ref)
    blob = weights.blob()

    def save(path: str, name: str | None = None) -> None:
        aot_module, aot_weights = emit_llvm(module)
        build_shared_library(aot_module, aot_weights.blob(), info, path, options.opt_level, name)

    if options.debug >= 1:
        sys.stderr.write(f"[fusecc] compiled in {time.perf_counter() - start:.2f} s\n")
    return from_jit(library.address(ENTRY), blob, info, library, save)
