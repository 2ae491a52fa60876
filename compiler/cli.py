"""Command-line tools: ``fusecc`` (compile a model) and ``fusecc-opt`` (run passes on a .fir file).

Errors print one ``fusecc: error: ...`` message and exit with status 1, warnings one ``fusecc: warning: ...``
line; set ``FUSECC_DEBUG=1`` or more for reports (see ``fusecc.driver``). A shared library comes from the
compile cache when it holds it (``--no-cache`` to compile anyway; see ``fusecc.cache``).

Subcommands come first: ``fusecc profile MODEL ...`` times each kernel of a model (``fusecc.profile``);
``fusecc bisect MODEL ...`` finds the smallest group of ops that computes a wrong answer (``fusecc.bisect``);
``fusecc explain MODEL ...`` shows why each kernel holds its ops and how it will run (``fusecc.explain``).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import warnings

_EMIT_BY_SUFFIX = {".so": "so", ".o": "obj", ".ll": "llvm", ".s": "asm", ".fir": "ir"}
#: what ``--compile-to`` may stop at past the loops phase: the optimised LLVM IR, the assembly, the object
_CODE_STAGES = ("llvm", "asm", "obj")


def at_least(minimum: int):
    """An argparse type: a whole number of ``minimum`` or more."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {minimum} or more, got {value}")
        return value

    return parse


def _add_pass_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("debugging passes")
    group.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass")
    group.add_argument("--print-ir-after", action="append", default=[], metavar="PASS",
                       help="print the IR after PASS (repeatable)")
    group.add_argument("--print-ir-before", action="append", default=[], metavar="PASS",
                       help="print the IR before PASS (repeatable)")
    group.add_argument("--print-ir-after-change", action="store_true",
                       help="print the IR after each pass that changed it")
    group.add_argument("--verify-each", dest="verify_each", action="store_true", default=True,
                       help="verify the IR after each pass (default)")
    group.add_argument("--no-verify-each", dest="verify_each", action="store_false")
    group.add_argument("--time-passes", action="store_true", help="report the time of each pass")
    group.add_argument("--dump-ir-dir", metavar="DIR",
                       help="write the IR after each pass to DIR/NNN_<pass>.fir, its weights elided")
    group.add_argument("--dump-weights", action="store_true",
                       help="with --dump-ir-dir: keep the weights in the files (so they replay as they are)")


def _instrumentation(args):
    import fusecc.lowering  # noqa: F401  (registers the loop passes)
    from fusecc.passes.manager import PASS_REGISTRY, Instrumentation, PassError
    for flag, names in (("--print-ir-before", args.print_ir_before), ("--print-ir-after", args.print_ir_after)):
        unknown = sorted(set(names) - set(PASS_REGISTRY))
        if unknown:
            raise PassError(f"{flag} names no pass: {', '.join(unknown)}; passes: {', '.join(sorted(PASS_REGISTRY))}")
    return Instrumentation(verify_each=args.verify_each, print_before=set(args.print_ir_before),
                           print_after=set(args.print_ir_after), print_after_all=args.print_ir_after_all,
                           print_after_change=args.print_ir_after_change, time_passes=args.time_passes,
                           dump_dir=args.dump_ir_dir, dump_weights=args.dump_weights)


def model_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The parser of a subcommand that compiles a model (``fusecc profile``, ``bisect``, ``explain``): the
    model, ``--input-shape`` and ``--no-fusion``, to which the subcommand adds its own options."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("model", help="an .onnx model or a tensor-level .fir file")
    parser.add_argument("--input-shape", action="append", type=_parse_shape, default=[], metavar="NAME=DIMS",
                        help="fix an input's shape, e.g. x=1x3x224x224 (repeatable)")
    parser.add_argument("--no-fusion", action="store_true", help="one kernel per op")
    return parser


def _parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, dims = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=1x3x224x224, got '{text}'")
    try:
        return name, tuple(int(d) for d in dims.split("x") if d)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad dimensions in '{text}'") from None


def _known_errors():
    from fusecc.codegen.target import CodegenError
    from fusecc.frontend.onnx_import import FrontendError
    from fusecc.ir.core import IRError
    from fusecc.runtime.model import InputError
    return (CodegenError, FrontendError, IRError, InputError, OSError, ValueError)


def _fail(message: str, tool: str = "fusecc") -> int:
    located = re.match(r"\S+:\d+:\d+: error: ", message) is not None
    sys.stderr.write(("" if located else f"{tool}: error: ") + message + "\n")
    return 1


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(f"fusecc: warning: {message}\n")


class _VersionAction(argparse.Action):
    """``--version``: prints ``fusecc <version>`` and exits (the version is looked up only then)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print fusecc's version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        import fusecc
        sys.stdout.write(f"fusecc {fusecc.__version__}\n")
        parser.exit()


#: ``fusecc NAME ...`` runs ``fusecc.NAME.main(...)``
SUBCOMMANDS = {"profile": "run a model and time each kernel against the machine's peak",
               "bisect": "find the smallest group of ops that computes a wrong answer and write a reproducer",
               "explain": "show why each kernel holds its ops, how it will run, and why pairs did not fuse"}


def _quiet_when_the_reader_leaves(entry):
    """``entry``, ending with status 1 and no traceback when its output's reader goes away
    (``fusecc model.onnx --emit=llvm | head``), as Unix tools do."""
    @functools.wraps(entry)
    def run(argv: list[str] | None = None) -> int:
        try:
            return entry(argv)
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush writes nowhere
            return 1
    return run


@_quiet_when_the_reader_leaves
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib
        return importlib.import_module(f"fusecc.{argv[0]}").main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="fusecc", description="Compile an ONNX model to native code.",
        epilog="subcommands: " + "; ".join(f"'fusecc {name} MODEL' to {what} (fusecc {name} --help)"
                                           for name, what in SUBCOMMANDS.items()))
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("model", nargs="?", help="an .onnx model or a tensor-level .fir file")
    parser.add_argument("-o", "--output", help="output file (.so, .o, .ll, .s or .fir); default: IR on stdout")
    parser.add_argument("--emit", choices=["ir", "llvm", "asm", "obj", "so"],
                        help="what to write (default: from the output's suffix)")
    for level in range(4):
        parser.add_argument(f"-O{level}", dest="opt_level", action="store_const", const=level,
                            help="optimisation level (default -O3; -O0 also disables fusion)" if level == 0 else None)
    parser.add_argument("--no-fusion", action="store_true", help="one kernel per op")
    parser.add_argument("--compile-to", choices=["import", "graph", "fusion", "loops", *_CODE_STAGES],
                        help="stop after this phase and print its IR; llvm, asm and obj are --emit's")
    parser.add_argument("--input-shape", action="append", type=_parse_shape, default=[], metavar="NAME=DIMS",
                        help="fix an input's shape, e.g. x=1x3x224x224 (repeatable)")
    parser.add_argument("--name", help="prefix of a shared library's C API and header macros, a C identifier "
                        "(default: from the output file name, model.so -> model_run, MODEL_INPUT_0_NAME, ...)")
    parser.add_argument("--list-ops", action="store_true", help="list the supported ONNX ops and exit")
    parser.add_argument("--list-cpus", action="store_true",
                        help="list the CPU and feature names FUSECC_CPU and FUSECC_CPU_FEATURES accept, and exit")
    parser.add_argument("--fusion-report", action="store_true",
                        help="print each fused region and the kernel count, then exit")
    parser.add_argument("--dump-graph", metavar="FILE.dot|FILE.svg",
                        help="draw the fused graph (kernels as clusters coloured by pattern, edges labelled with "
                             "their tensors) for Graphviz, then exit")
    parser.add_argument("--save-plan", metavar="FILE.json",
                        help="write the fusion plan (each kernel's ops and schedule) to edit and pass to --plan, "
                             "then exit")
    parser.add_argument("--plan", metavar="FILE.json",
                        help="group the ops into kernels as this fusion plan says, instead of fusing them")
    parser.add_argument("--export-fused", metavar="FILE.onnx",
                        help="write the fused graph as ONNX, each kernel a node of the 'fusecc' domain (for "
                             "Netron), then exit")
    parser.add_argument("--elide-weights", action="store_true", help="with --emit=ir: leave weights out")
    parser.add_argument("--no-cache", action="store_true",
                        help="compile the shared library even if the compile cache holds it, and keep it out")
    parser.add_argument("--threads", type=at_least(1), metavar="N",
                        help="plan the kernels' blocks for N threads (default: the physical cores this process may "
                             "use); a library's caller sets the threads of its runs (model_set_num_threads)")
    _add_pass_flags(parser)
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return _run(parser, args)
        except BrokenPipeError:
            raise  # the reader left: see _quiet_when_the_reader_leaves
        except _known_errors() as exc:
            return _fail(str(exc))
        except KeyboardInterrupt:
            return 130


def _run(parser, args) -> int:
    if args.list_ops:
        from fusecc.frontend.onnx_import import supported_ops
        ops = supported_ops()
        print("\n".join(ops))
        print(f"# {len(ops)} ONNX op types", file=sys.stderr)
        return 0
    if args.list_cpus:
        from fusecc.codegen.cpu import ask_llvm
        names = ask_llvm("", "")
        print("# CPUs (FUSECC_CPU; 'host' is this machine's)", *names.cpus,
              "# features (FUSECC_CPU_FEATURES=+name,-name,...)", *names.features, sep="\n")
        return 0
    if not args.model:
        parser.error("a model is required (or --list-ops, --list-cpus)")
    from fusecc.driver import Options, generate_code, load_timed, report_timings, run_phases, timed_step
    from fusecc.ir.printer import print_module
    from fusecc.progress import showing_progress

    opt_level = 3 if args.opt_level is None else args.opt_level
    options = Options(opt_level=opt_level, fusion=False if args.no_fusion else None,
                      input_shapes=dict(args.input_shape) or None, instrumentation=_instrumentation(args),
                      cache=not args.no_cache, plan=args.plan, threads=args.threads)
    if args.save_plan:
        from fusecc.driver import save_plan
        plan = save_plan(args.model, options, args.save_plan)
        print(f"wrote {args.save_plan} ({len(plan['regions'])} kernels)", file=sys.stderr)
        return 0
    if args.compile_to in _CODE_STAGES:
        if args.emit not in (None, args.compile_to):
            return _fail(f"--compile-to={args.compile_to} and --emit={args.emit} ask for different outputs")
        args.emit, args.compile_to = args.compile_to, None
    emit = args.emit or (_EMIT_BY_SUFFIX.get(os.path.splitext(args.output)[1]) if args.output else "ir")
    if emit is None:
        return _fail(f"cannot tell what to emit from '{args.output}'; pass --emit")
    fused_only = args.fusion_report or args.dump_graph or args.export_fused
    if emit == "so" and not (fused_only or args.compile_to):
        return _write_library(args, options)
    if emit == "obj" and not args.output and not fused_only and not args.compile_to:
        return _fail("--emit=obj needs -o FILE")
    with showing_progress(quiet=options.watched):
        imported = load_timed(args.model, options)
        module = imported.module
        if fused_only:
            run_phases(module, Options(**{**options.__dict__, "compile_to": "fusion"}))
            output = _fused_outputs(args, module)
        elif args.compile_to or emit == "ir":
            options.compile_to = args.compile_to or "loops"
            if options.compile_to != "import":
                run_phases(module, options)
            output = print_module(module, elide_resources=args.elide_weights)
        else:
            code = generate_code(imported, options, jobs=1)  # what --emit writes is one module's
            if emit == "obj":
                with timed_step(options, "llvm-object"):
                    output = code.object
            elif emit == "asm":
                with timed_step(options, "llvm-assembly"):
                    output = code.assembly()
            else:
                output = code.llvm_ir
    report_timings(options)
    if isinstance(output, bytes):
        with open(args.output, "wb") as handle:
            handle.write(output)
    elif fused_only:
        sys.stdout.write(output)
    else:
        _write(args.output, output)
    return 0


def _fused_outputs(args, module) -> str:
    """Write the pictures of the fused ``module`` that ``args`` ask for; the fusion report, if asked for."""
    from fusecc.pictures import fused_graph_onnx, write_graph_picture
    from fusecc.report import fusion_report

    if args.dump_graph:
        write_graph_picture(module, args.dump_graph)
    if args.export_fused:
        import onnx
        onnx.save(fused_graph_onnx(module), args.export_fused)
    return fusion_report(module, _onnx_node_count(args.model)) + "\n" if args.fusion_report else ""


def _write_library(args, options) -> int:
    """``-o model.so``: the shared library and its header, from the compile cache when it holds them."""
    from fusecc.cache import open_cache
    from fusecc.driver import header_path, write_library

    output = args.output or "model.so"
    library = write_library(args.model, options, output, args.name, open_cache() if options.cached else None)
    origin = ", from the compile cache" if library.cache_hit else ""
    print(f"wrote {output} and {header_path(output)} ({len(library.info['kernels'])} kernels{origin})",
          file=sys.stderr)
    return 0


def _onnx_node_count(path: str) -> int:
    """Nodes in the ONNX graph (tensor-level ops for a .fir input)."""
    if path.endswith(".fir"):
        from fusecc.dialects.tensor import TensorOp
        from fusecc.driver import load_module
        return sum(1 for op in load_module(path).module.main.body.ops if isinstance(op, TensorOp))
    import onnx
    return len(onnx.load(path, load_external_data=False).graph.node)


def _write(path: str | None, text: str) -> None:
    if path:
        with open(path, "w") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)


@_quiet_when_the_reader_leaves
def opt_main(argv: list[str] | None = None) -> int:
    """``fusecc-opt in.fir --pass-pipeline=...``: parse, run passes, print."""
    parser = argparse.ArgumentParser(prog="fusecc-opt", description="Run fusecc passes on a .fir file.")
    parser.add_argument("input", nargs="?", help="a .fir file, or - for standard input")
    parser.add_argument("-p", "--pass-pipeline", default="", help="comma-separated passes, e.g. 'fuse,dce'")
    parser.add_argument("-o", "--output", help="write the result here instead of stdout")
    parser.add_argument("--split-input-file", action="store_true",
                        help="treat '// -----' lines as separators between independent inputs")
    parser.add_argument("--elide-weights", action="store_true", help="leave resource blobs out of the output")
    parser.add_argument("--list-passes", action="store_true", help="list the registered passes and exit")
    parser.add_argument("--target", metavar="CPU",
                        help="give the passes that shape kernels (vector width and registers, caches, threads) this "
                             "CPU's values: 'host' or a name LLVM knows (fusecc --list-cpus); without it they keep "
                             "their defaults, and options in the pipeline always win")
    _add_pass_flags(parser)
    args = parser.parse_args(argv)
    try:
        import fusecc.dialects  # noqa: F401
        import fusecc.lowering  # noqa: F401
        from fusecc.ir.parser import parse_module
        from fusecc.ir.printer import print_module
        from fusecc.passes import PASS_REGISTRY, PassManager, parse_pipeline

        if args.list_passes:
            for name in sorted(PASS_REGISTRY):
                doc = (PASS_REGISTRY[name].__doc__ or "").strip().splitlines()
                print(f"{name:<20} {doc[0] if doc else ''}")
            return 0
        if args.input is None:
            parser.error("an input file is required (or --list-passes)")
        pipeline = args.pass_pipeline
        if args.target:
            from fusecc.target import named_target
            pipeline = named_target(args.target).configure(pipeline)
        text = sys.stdin.read() if args.input == "-" else open(args.input).read()
        chunks = _split(text) if args.split_input_file else [(0, text)]
        outputs = []
        instrumentation = _instrumentation(args)
        for line_offset, chunk in chunks:
            module = parse_module("\n" * line_offset + chunk, args.input)
            module.verify()
            PassManager(parse_pipeline(pipeline), instrumentation).run(module)
            outputs.append(print_module(module, elide_resources=args.elide_weights))
        if instrumentation.time_passes:
            instrumentation.report_timings()
        _write(args.output, "// -----\n".join(outputs))
        return 0
    except BrokenPipeError:
        raise  # the reader left: see _quiet_when_the_reader_leaves
    except _known_errors() as exc:
        return _fail(str(exc), "fusecc-opt")


def _split(text: str) -> list[tuple[int, str]]:
    """Pieces between ``// -----`` lines, each with the line number it starts at (for diagnostics)."""
    pieces, current, start = [], [], 0
    for number, line in enumerate(text.splitlines(keepends=True)):
        if line.strip() == "// -----":
            pieces.append((start, "".join(current)))
            current, start = [], number + 1
        else:
            current.append(line)
    pieces.append((start, "".join(current)))
    return pieces


if __name__ == "__main__":
    sys.exit(main())
