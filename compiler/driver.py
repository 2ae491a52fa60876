"""The compiler driver: runs the phases on a model and produces a ``CompiledModel`` or files.

A shared library, and a compiled model, come from the compile cache (``fusecc.cache``) when it holds them:
``fusecc.compile`` then returns a model backed by the cached library. A compilation someone watches (IR printing
or dumping, pass timings, ``FUSECC_DEBUG``) bypasses the cache, as does ``cache=False``.

``FUSECC_DEBUG`` (an integer) turns on reports, each level adding to the last:

    1  phases with timings, the kernel count and every kernel with its ONNX nodes
    2  fusion decisions, including why ops did not fuse
    3  the IR after each phase (weights elided)
    4  the LLVM IR
    5  the host assembly
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from fusecc.dialects.kernel import FusedOp, LaunchOp
from fusecc.ir.core import Module
from fusecc.ir.printer import loc_names, print_module

from .pipeline import PHASES, phase_pipelines
from .progress import advance, showing_progress


#: ``FUSECC_CHECK=1``: models compile in check mode (see ``fusecc.check``)
CHECK_VARIABLE = "FUSECC_CHECK"
#: ``FUSECC_INJECT_FAULT=<kernel or ONNX node name>``: that kernel (or the one holding that node) adds one to the
#: first element of its first output (a fault for tests and for trying out check mode and ``fusecc bisect``); the
#: kernel names are those of ``--fusion-report``
FAULT_VARIABLE = "FUSECC_INJECT_FAULT"


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
    #: whether the compile cache may serve and keep the result
    cache: bool = True
    #: the threads the model's runs use by default, which its kernels' blocks are planned for (None: the thread
    #: pool's default, see ``fusecc.target``)
    threads: int | None = None
    #: run kernel by kernel, each checked against the reference interpreter (``fusecc.check``)
    check: bool = field(default_factory=lambda: os.environ.get(CHECK_VARIABLE, "") not in ("", "0"))
    #: (rtol, atol) of check mode's comparisons (None: ``fusecc.check``'s)
    check_tolerance: tuple[float, float] | None = None
    #: a kernel made to compute a wrong result on purpose, for trying out the debugging tools (test-only)
    inject_fault: str | None = field(default_factory=lambda: os.environ.get(FAULT_VARIABLE) or None)
    #: a fusion plan file (``fusecc --save-plan`` writes one) that groups the ops into kernels instead of ``fuse``
    plan: str | None = None

    @property
    def fuse(self) -> bool:
        return self.opt_level > 0 if self.fusion is None else self.fusion

    @property
    def watched(self) -> bool:
        """Whether someone watches the compilation happen: IR printed or dumped, passes timed, ``FUSECC_DEBUG``."""
        inst = self.instrumentation
        return self.debug > 0 or inst is not None and bool(
            inst.print_before or inst.print_after or inst.print_after_all or inst.print_after_change
            or inst.time_passes or inst.dump_dir)

    @property
    def cached(self) -> bool:
        """Whether the compile cache may serve this compilation: asked for, not watched, no fault injected, no
        fusion plan (whose file may change under one name)."""
        return self.cache and not self.watched and self.inject_fault is None and self.plan is None


@dataclass
class Imported:
    """A model at the tensor level, with the ONNX element types its graph declares for its inputs and outputs
    (``TensorProto`` codes by value name; none for a ``.fir`` file)."""

    module: Module
    declared_types: dict[str, int]


@contextmanager
def timed_step(options: Options, label: str, log=sys.stderr):
    """Times a step of a compile that is not a pass (the import, LLVM's steps, linking): into the
    ``--time-passes`` report, beside the passes, and onto ``log`` at ``FUSECC_DEBUG=1``; the progress bar
    shows it (see ``fusecc.progress``)."""
    advance(label)
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    if options.instrumentation is not None:
        options.instrumentation.timings.append((label, seconds))
    if options.debug >= 1:
        log.write(f"[fusecc] {label}: {1000 * seconds:.1f} ms\n")


def report_timings(options: Options) -> None:
    """The ``--time-passes`` report of a finished compile: every pass and every timed step, in one table."""
    if options.instrumentation is not None and options.instrumentation.time_passes:
        options.instrumentation.report_timings()


def load_timed(source, options: Options) -> Imported:
    """:func:`load_module` with ``options``' input shapes, timed as the step ``import``."""
    with timed_step(options, "import"):
        return load_module(source, options.input_shapes)


def load_module(source, input_shapes=None) -> Imported:
    """An ONNX model (path, bytes or ModelProto) or a ``.fir`` file, as a tensor-level module; ``source`` may be
    a ``cache_key.ModelSource`` of one."""
    from fusecc.cache_key import ModelSource
    if isinstance(source, ModelSource):
        source = source.model
    if isinstance(source, (str, os.PathLike)) and str(source).endswith(".fir"):
        from fusecc.ir.parser import parse_file
        import fusecc.dialects  # noqa: F401
        module = parse_file(source)
        module.verify()
        return Imported(module, {})
    from .frontend.onnx_import import import_model, load_model
    proto = load_model(source)
    declared = {vi.name: vi.type.tensor_type.elem_type for vi in [*proto.graph.input, *proto.graph.output]}
    return Imported(import_model(proto, input_shapes=input_shapes), declared)


def pass_pipelines(options: Options) -> dict[str, str]:
    """Each phase's pass pipeline as ``options`` and the target choose it: the loops phase vectorizes for the
    target's widest registers, shapes its micro-kernels to their number and its blocks to the host's caches
    and ``options.threads``."""
    from fusecc.target import host_target
    return phase_pipelines(options.fuse, explain=options.debug >= 2, target=host_target(options.threads, options.cached),
                           plan=options.plan)


def run_phases(module: Module, options: Options, log=sys.stderr) -> Module:
    """Run the graph, fusion and loops phases up to ``options.compile_to``."""
    import fusecc.lowering  # noqa: F401  (registers the lowering passes)
    from fusecc.passes import PassManager, parse_pipeline

    pipelines = pass_pipelines(options)
    for phase in PHASES[1:]:
        if PHASES.index(phase) > PHASES.index(options.compile_to) or phase not in pipelines:
            break
        advance(f"phase {phase}")
        start = time.perf_counter()
        PassManager(parse_pipeline(pipelines[phase]), options.instrumentation).run(module)
        if options.debug >= 1:
            log.write(f"[fusecc] phase {phase}: {1000 * (time.perf_counter() - start):.1f} ms\n")
        if options.debug >= 3:
            log.write(f"// ----- after phase {phase} -----\n{print_module(module, elide_resources=True)}")
    return module


def fuse_and_plan(source, options: Options) -> tuple[Module, dict[int, str], list]:
    """``source`` through the graph and fusion phases and ``plan-contractions``: the fused module with its
    regions' schedules, the fusion plan's name of each op (``passes.apply_plan.op_names``, taken just before
    ops are grouped) and the decisions of ``fuse`` (``passes.fuse.Decision``; none when a plan or no fusion
    groups them)."""
    import fusecc.lowering  # noqa: F401  (registers the loop passes)
    from fusecc.lowering.plan_contractions import PlanContractions
    from fusecc.passes import PassManager, parse_pipeline
    from fusecc.passes.apply_plan import ApplyPlan, op_names
    from fusecc.passes.fuse import Fuse
    from fusecc.passes.outline import OutlineKernels

    module = load_timed(source, options).module
    pipelines = pass_pipelines(options)
    PassManager(parse_pipeline(pipelines["graph"]), options.instrumentation).run(module)
    fusion = parse_pipeline(pipelines["fusion"])
    grouping = next(i for i, p in enumerate(fusion) if isinstance(p, (Fuse, ApplyPlan, OutlineKernels)))
    PassManager(fusion[:grouping], options.instrumentation).run(module)
    names = op_names(module.main.body.ops)
    PassManager(fusion[grouping:], options.instrumentation).run(module)
    planning = [p for p in parse_pipeline(pipelines["loops"]) if isinstance(p, PlanContractions)]
    PassManager(planning, options.instrumentation).run(module)
    return module, names, [d for p in fusion if isinstance(p, Fuse) for d in p.decisions]


def save_plan(source, options: Options, path: str) -> dict:
    """Write the fusion plan of ``source`` compiled with ``options`` to ``path`` (see ``passes.apply_plan``)."""
    from fusecc.passes.apply_plan import fusion_plan
    from fusecc.runtime.files import write_atomically

    module, names, _ = fuse_and_plan(source, options)
    plan = fusion_plan(module, names)
    write_atomically(path, (json.dumps(plan, indent=1) + "\n").encode())
    return plan


def model_info(graph: Module, declared_types: dict[str, int]) -> dict:
    """Input/output specs of a tensor-level ``@main`` and the kernels of its fused regions. A spec's element type
    is the one the ONNX graph declares (``declared_types``), else the one of its dtype."""
    main = graph.main
    input_names = main.attr("input_names") or [a.name_hint for a in main.args]
    output_names = main.attr("output_names") or [f"output{i}" for i in range(len(main.result_types))]
    kernels = []
    for op in main.body.ops:
        if isinstance(op, FusedOp):
            nodes = [n for m in op.members for n in (loc_names(m.loc) or [m.name])]
            kernels.append({"name": op.sym_name, "pattern": op.attr("pattern"),
                            "nodes": nodes, "extent": 0})
    return {"inputs": [_tensor_spec(n, a.type, declared_types) for n, a in zip(input_names, main.args)],
            "outputs": [_tensor_spec(n, t, declared_types) for n, t in zip(output_names, main.result_types)],
            "kernels": kernels}


def _tensor_spec(name: str, t, declared_types: dict[str, int]) -> dict:
    """The model info of an input or output ``name`` of type ``t`` (a tensor or buffer type): its element type the
    one the ONNX graph declares (``declared_types``), else the one of its dtype."""
    from fusecc.frontend.formats import FORMATS
    from fusecc.frontend.onnx_import import ONNX_DTYPES, dtype_name

    if not t.is_static:
        raise ValueError(f"'{name}' has dynamic shape {t}; fix it with input_shapes={...} (API) or --input-shape NAME=DIMS (CLI)")
    code = declared_types.get(name) or {dtype: code for code, dtype in ONNX_DTYPES.items()}[t.dtype]
    described = {"name": name, "shape": list(t.shape), "dtype": str(t.dtype.numpy),
                 "element_type": dtype_name(code).lower()}
    return {**described, "format": FORMATS[code].numpy_name} if code in FORMATS else described


def is_lowered(module: Module) -> bool:
    """Whether ``module`` is already at the loop level (``fusecc --emit=ir``'s output): ``@main`` launches kernels."""
    return any(isinstance(op, LaunchOp) for op in module.main.body.ops)


def lowered_model_info(module: Module) -> dict:
    """The model info (see :func:`model_info`) of a loop-level module: ``@main``'s buffers, its launches as the
    kernels (their ONNX nodes those of the launch's location) and its workspace."""
    main = module.main
    input_names, output_names = main.attr("input_names"), main.attr("output_names")
    if input_names is None or output_names is None or len(input_names) + len(output_names) != len(main.args):
        raise ValueError("a loop-level @main needs input_names and output_names naming each of its buffers, as "
                         "fusecc --emit=ir writes them")
    specs = [_tensor_spec(name, arg.type, {}) for name, arg in zip(input_names + output_names, main.args)]
    kernels = [{"name": op.attr("callee"), "pattern": "loops", "nodes": loc_names(op.loc), "extent": op.attr("extent")}
               for op in main.body.ops if isinstance(op, LaunchOp)]
    return {"inputs": specs[:len(input_names)], "outputs": specs[len(input_names):], "kernels": kernels,
            "workspace_size": main.attr("workspace_size", 0)}


def lower(imported: Imported, options: Options, log=sys.stderr, after_fusion=None) -> tuple[Module, dict]:
    """Graph and fusion phases, model info, then the loops phase; ``after_fusion(module)``, when given,
    sees the fused regions before they are lowered. A loop-level module (see :func:`is_lowered`) goes
    straight to code generation."""
    module = imported.module
    if is_lowered(module):
        return module, lowered_model_info(module)
    fused_options = Options(**{**options.__dict__, "compile_to": "fusion"})
    run_phases(module, fused_options, log)
    info = model_info(module, imported.declared_types)
    if after_fusion is not None:
        after_fusion(module)
    import fusecc.lowering  # noqa: F401
    from fusecc.passes import PassManager, parse_pipeline
    advance("phase loops")
    start = time.perf_counter()
    PassManager(parse_pipeline(pass_pipelines(options)["loops"]), options.instrumentation).run(module)
    if options.debug >= 1:
        log.write(f"[fusecc] phase loops: {1000 * (time.perf_counter() - start):.1f} ms\n")
    extents = {op.attr("callee"): op.attr("extent") for op in module.main.body.ops if isinstance(op, LaunchOp)}
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
    """Compile ``source`` to a ``fusecc.runtime.CompiledModel``: backed by a shared library through the compile
    cache when it may be used, else JIT-compiled in-process."""
    from fusecc.cache import open_cache
    from fusecc.cache_key import ModelSource
    from fusecc.runtime.model import from_library_bytes

    options = options or Options()
    if options.check:
        from fusecc.check import compile_checked
        return compile_checked(source, options)
    cache = open_cache() if options.cached and _can_link() else None
    model = ModelSource.read(source) if cache is not None else None
    if model is None:
        return compile_jit(source, options)
    library = shared_library(model, options, COMPILED_LIBRARY, None, cache)
    in_memory = model.in_memory()  # what save() compiles, whatever happens to the file

    def save(path: str, name: str | None = None) -> None:
        write_library(in_memory, options, path, name, open_cache() if options.cached else None)

    return from_library_bytes(library.data, COMPILED_LIBRARY, save, library.cache_hit)


def _can_link() -> bool:
    """Whether there is a C compiler to link shared libraries with (the JIT needs none)."""
    from fusecc.codegen.target import CodegenError, find_c_compiler
    try:
        find_c_compiler()
    except CodegenError:
        return False
    return True


def generate_code(imported: Imported, options: Options, after_fusion=None, exported_kernels: bool = False,
                  jobs: int | None = None):
    """Compile a model to native code for the target ``options`` choose (a ``codegen.generate.GeneratedCode``);
    ``after_fusion`` is :func:`lower`'s, ``exported_kernels`` ``codegen.generate``'s; ``jobs`` processes
    compile its code at once (default: ``codegen.parts.compile_jobs()``)."""
    from fusecc.codegen.generate import generate
    from fusecc.codegen.parts import compile_jobs
    from fusecc.target import host_target

    module, info = lower(imported, options, after_fusion=after_fusion)
    fault = options.inject_fault
    if fault is not None:
        holding = [kernel["name"] for kernel in info["kernels"] if fault == kernel["name"] or fault in kernel["nodes"]]
        if not holding:
            raise ValueError(f"{FAULT_VARIABLE}={fault} names no kernel or ONNX node of the model; its kernels are "
                             + ", ".join(kernel["name"] for kernel in info["kernels"]))
        fault = holding[0]
    return generate(module, info, host_target(options.threads, options.cached), options.opt_level, options.debug,
                    exported_kernels, fault, timed=lambda label: timed_step(options, label),
                    jobs=compile_jobs() if jobs is None else jobs)


def compile_jit(source, options: Options):
    """Compile ``source`` and JIT it in-process; saving it links the object the JIT loaded."""
    from fusecc.codegen.llvm_emit import ENTRY
    from fusecc.runtime.model import from_jit

    start = time.perf_counter()
    with showing_progress(quiet=options.watched):
        code = generate_code(load_timed(source, options), options)
        with timed_step(options, "llvm-object"):
            code.objects
        with timed_step(options, "jit-load"):
            library = code.jit()
    if options.debug >= 1:
        sys.stderr.write(f"[fusecc] compiled in {time.perf_counter() - start:.2f} s\n")
    report_timings(options)
    return from_jit(library.address(ENTRY), code.weights, code.info, library, code.saver())


#: the file name of the library behind a model ``fusecc.compile`` returns from the compile cache
COMPILED_LIBRARY = "model.so"


@dataclass(frozen=True)
class Library:
    """A model's shared library: its bytes, its C header's, its model info, and whether the compile cache held it."""

    data: bytes | memoryview
    header: bytes | memoryview
    info: dict
    cache_hit: bool


def header_path(library_path: str) -> str:
    """Where the C header of a library goes: beside it, ``model.so`` -> ``model.h``."""
    return os.path.splitext(library_path)[0] + ".h"


def build_library(source, options: Options, file_name: str, name: str | None) -> Library:
    """Compile ``source`` (as for :func:`load_module`) to a shared library called ``file_name``, whose C API
    ``name`` prefixes (see ``codegen.aot.api_prefix``)."""
    with showing_progress(quiet=options.watched), tempfile.TemporaryDirectory(prefix="fusecc_") as directory:
        code = generate_code(load_timed(source, options), options)
        with timed_step(options, "llvm-object"):
            code.objects
        path = os.path.join(directory, file_name)
        with timed_step(options, "link"):
            code.write_shared_library(path, name)
        with open(path, "rb") as library, open(header_path(path), "rb") as header:
            built = Library(library.read(), header.read(), code.info, cache_hit=False)
    report_timings(options)
    return built


def shared_library(source, options: Options, file_name: str, name: str | None, cache) -> Library:
    """:func:`build_library`, served by ``cache`` (a ``cache.CompileCache``, or None) when it holds the library,
    and stored there when it does not."""
    from fusecc.cache_key import ModelSource, cache_key
    from fusecc.codegen.aot import api_prefix

    model = ModelSource.read(source) if cache is not None else None
    if model is None:
        return build_library(source, options, file_name, name)
    key = cache_key(model.content, opt_level=options.opt_level, input_shapes=options.input_shapes,
                    pipelines=pass_pipelines(options), library=file_name, prefix=api_prefix(name, file_name))
    parts = cache.get(key)
    if parts is not None:
        return Library(parts["library"], parts["header"], json.loads(bytes(parts["info"])), cache_hit=True)
    library = build_library(model, options, file_name, name)
    if model.unchanged():
        cache.put(key, {"library": library.data, "header": library.header, "info": json.dumps(library.info).encode()})
    return library


def write_library(source, options: Options, path: str, name: str | None, cache) -> Library:
    """Write the shared library of ``source`` to ``path`` and its header beside it (see :func:`shared_library`)."""
    from fusecc.runtime.files import write_atomically

    library = shared_library(source, options, os.path.basename(path), name, cache)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomically(path, library.data, mode=0o777)
    write_atomically(header_path(path), library.header)
    return library
