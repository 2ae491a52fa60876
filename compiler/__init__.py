"""fusecc: an operator-fusion compiler for ONNX models.

    m = fusecc.compile("model.onnx")       # native code, from the compile cache when it holds it
    outputs = m.run({"x": array})          # or m(array), or m.run(None, {"x": array}) as onnxruntime
    m.save("model.so")                     # shared library + C header
    m = fusecc.load("model.so")

Heavy parts (onnx, llvmlite) are imported on first use, so ``import fusecc`` is quick.
"""

from __future__ import annotations


def _installed_version() -> str:
    """The version pyproject.toml gives, as the installed distribution records it."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("fusecc")
    except PackageNotFoundError:
        return "0+unknown"


def compile(model, *, opt_level: int = 3, fusion: bool | None = None, input_shapes: dict | None = None,
            cache: bool = True, print_ir_after_all: bool = False, print_ir_after: tuple[str, ...] = (),
            print_ir_before: tuple[str, ...] = (), verify_each: bool = True, time_passes: bool = False,
            dump_ir_dir: str | None = None, threads: int | None = None, check: bool | None = None,
            plan: str | None = None):
    """Compile an ONNX model (path, bytes or ``onnx.ModelProto``) or a ``.fir`` file to native code.

    ``fusion=False`` (the default at ``opt_level=0``) gives one kernel per op.
    ``input_shapes`` fixes dynamic input dimensions, e.g. ``{"x": (1, 3, 224, 224)}``.
    ``cache=False`` compiles without the compile cache (see ``fusecc.cache``); a compilation that prints or dumps
    IR or times passes never uses it. The model's ``cache_hit`` tells whether the cache held it.
    The printing options match the CLI's ``--print-ir-*`` flags (output on stderr).
    ``threads`` is how many threads the model's runs use unless a run says otherwise (default: the process's
    physical cores, or ``FUSECC_NUM_THREADS``); its kernels' blocks are planned for that many.
    ``check=True`` (default: ``FUSECC_CHECK=1`` in the environment) gives a model that runs kernel by kernel and
    raises ``fusecc.CheckError`` at the first kernel whose outputs differ from the reference (see ``fusecc.check``).
    ``plan`` is a fusion plan file (``fusecc --save-plan`` writes one) that groups the ops into kernels instead of
    fusion; such a compile does not use the cache.
    """
    from .driver import Options, compile_model
    from .runtime.model import check_threads

    check_threads(threads)

    instrumentation = None  # the pass manager's default: verify after each pass, print nothing
    if print_ir_after_all or print_ir_after or print_ir_before or time_passes or dump_ir_dir or not verify_each:
        from .passes.manager import Instrumentation  # imports every pass, which a cache hit does without
        instrumentation = Instrumentation(verify_each=verify_each, print_after_all=print_ir_after_all,
                                          print_after=set(print_ir_after), print_before=set(print_ir_before),
                                          time_passes=time_passes, dump_dir=dump_ir_dir)
    options = Options(opt_level=opt_level, fusion=fusion, input_shapes=input_shapes,
                      instrumentation=instrumentation, cache=cache, threads=threads, plan=plan)
    if check is not None:
        options.check = check
    compiled = compile_model(model, options)
    compiled.threads = threads
    return compiled


def load(path: str, threads: int | None = None):
    """Load a model library written by ``fusecc ... -o lib.so`` or ``CompiledModel.save``; ``threads`` as for
    :func:`compile`."""
    from fusecc.runtime.model import check_threads, load as load_library
    check_threads(threads)
    loaded = load_library(path)
    loaded.threads = threads
    return loaded


def __getattr__(name):
    if name == "__version__":
        globals()["__version__"] = _installed_version()
        return globals()["__version__"]
    if name == "CompiledModel":
        from fusecc.runtime.model import CompiledModel
        return CompiledModel
    if name == "CheckError":
        from fusecc.check import CheckError
        return CheckError
    raise AttributeError(f"module 'fusecc' has no attribute {name!r}")
