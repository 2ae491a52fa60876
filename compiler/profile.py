"""``fusecc profile MODEL``: where a model's time goes, kernel by kernel.

The model is compiled with an instrumented entry (``emit_llvm(profile=True)``): native code reads the
monotonic clock before the first kernel and after every kernel launch and copy, so the kernels' times are
measured where they run, and they add up to the native part of a run. Each run goes through
``CompiledModel.run`` as any caller's would; what the clock readings leave of its wall time is the Python
call (input checks, the allocation of outputs and workspace), reported as "other".

Each kernel gets its time (the mean over the middle half of the runs, see :class:`Profile`), its share of the
end-to-end time, the FLOPs and bytes of its fused region (:func:`region_costs`) and what it achieved against the
machine's peak (:func:`machine_peak`): GFLOP/s against the peak FLOP rate when its arithmetic intensity (FLOPs
per byte) lies above the ridge point peak FLOP/s / peak bytes/s, else GB/s against the peak bandwidth (the
roofline model).

The profiling build bypasses the compile cache and is never saved: it is a JIT build of its own.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import json
import math
import sys
import time
import zipfile
from dataclasses import dataclass, field

import numpy as np

from fusecc.costs import RegionCost, region_cost
from fusecc.dialects.kernel import CopyOp, FusedOp, LaunchOp


def region_costs(module) -> dict[str, RegionCost]:
    """The cost of each ``kernel.fused`` region of a fusion-level module, by the name its kernel gets."""
    return {op.sym_name: region_cost(op) for op in module.main.body.ops if isinstance(op, FusedOp)}


# --------------------------------------------------------------------------------------
# The instrumented build
# --------------------------------------------------------------------------------------
@dataclass
class InstrumentedModel:
    """A JIT-compiled model whose entry records clock readings in ``times``, one more than its timed ``steps``:
    each the name of the kernel launched, or None for a copy (of ``copy_bytes`` in all, read and written)."""

    model: object
    steps: list[str | None]
    times: ctypes.Array
    costs: dict[str, RegionCost]
    copy_bytes: int

    def readings(self) -> np.ndarray:
        """The clock readings of the last run, in nanoseconds."""
        return np.ctypeslib.as_array(self.times).copy()

    def close(self) -> None:
        self.model.close()


def _not_saved(path: str, name: str | None = None) -> None:
    raise ValueError("a profiling build is not saved; compile the model with `fusecc MODEL -o lib.so`")


def compile_instrumented(source, options) -> InstrumentedModel:
    """Compile ``source`` (a path or ``onnx.ModelProto``) for the JIT with a timed entry, as
    ``driver.compile_jit`` does, reading each fused region's FLOPs between the fusion and loops phases."""
    from fusecc.codegen import target
    from fusecc.codegen.llvm_emit import ENTRY, PROFILE_TIMES, emit_llvm, timed_steps
    from fusecc.driver import load_module, lower
    from fusecc.runtime.model import from_jit

    costs = {}
    module, info = lower(load_module(source, options.input_shapes), options,
                         after_fusion=lambda fused: costs.update(region_costs(fused)))
    main = module.main
    steps = [op.attr("callee") if isinstance(op, LaunchOp) else None for op in timed_steps(main)]
    copy_bytes = sum(2 * op.operands[0].type.nbytes for op in timed_steps(main) if isinstance(op, CopyOp))

    llvm_module, weights = emit_llvm(module, profile=True)
    library = target.JitLibrary(target.parse_and_optimize(str(llvm_module), options.opt_level))
    model = from_jit(library.address(ENTRY), weights.blob(), info, library, _not_saved)
    times = (ctypes.c_int64 * (len(steps) + 1)).from_address(library.address(PROFILE_TIMES))
    return InstrumentedModel(model, steps, times, costs, copy_bytes)


# --------------------------------------------------------------------------------------
# The machine's peak
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Peak:
    """What one core of this machine reaches: GFLOP/s of f32 fused multiply-adds, GB/s of a large copy."""

    gflops: float
    gbps: float

    @property
    def ridge(self) -> float:
        """FLOPs per byte above which a kernel is bound by arithmetic rather than memory."""
        return self.gflops / self.gbps

    def to_json(self) -> dict:
        return {"gflops": self.gflops, "gbps": self.gbps, "ridge_flops_per_byte": self.ridge}


#: independent multiply-add chains of the FLOP probe: enough to fill two FMA pipes of 4-5 cycles' latency
_CHAINS = 12
#: iterations of one probe run: some 0.5 ms, short enough that the best of many runs was not preempted
_PROBE_ITERATIONS = 1 << 18
#: bytes of each array of the bandwidth probe: far beyond the last-level cache
_COPY_BYTES = 64 << 20


def _fma_probe(lanes: int, chains: int, iterations: int):
    """A loop-level module whose kernel runs ``iterations`` times ``chains`` independent vector FMAs
    (``acc = acc * 0.999 + 0.001``, which stays near 1), then writes the accumulators to ``@main``'s output."""
    from fusecc.dialects import arith, kernel, loop, vector
    from fusecc.ir.core import Block, FuncOp, Module, Region, ReturnOp
    from fusecc.ir.types import DType, MemRefType, ScalarType, VectorType

    f32, index = ScalarType(DType.F32), ScalarType(DType.INDEX)
    vec, slot, out = VectorType((lanes,), DType.F32), MemRefType((lanes,), DType.F32), \
        MemRefType((lanes * chains,), DType.F32)

    def add(block, cls, operands=(), result=None, regions=(), **attributes):
        op = block.append(cls.create(operands, [result] if result else [], attributes, regions))
        return op.results[0] if result else op

    probe = FuncOp("fma_peak", [out, index, index], [], ["out0", "begin", "end"], {"extent": iterations})
    body = probe.body
    y, begin, end = probe.args
    zero = add(body, arith.ConstantOp, result=index, value=0)
    scale = add(body, vector.BroadcastOp, [add(body, arith.ConstantOp, result=f32, value=0.999)], vec)
    shift = add(body, vector.BroadcastOp, [add(body, arith.ConstantOp, result=f32, value=0.001)], vec)
    accumulators = [add(body, loop.AllocaOp, result=slot) for _ in range(chains)]
    for accumulator in accumulators:
        add(body, vector.StoreOp, [shift, accumulator, zero])
    step = Block([index])
    for accumulator in accumulators:
        x = add(step, vector.LoadOp, [accumulator, zero], vec)
        add(step, vector.StoreOp, [add(step, vector.FMAOp, [x, scale, shift], vec), accumulator, zero])
    add(body, loop.ForOp, [begin, end], regions=[Region([step])])
    for number, accumulator in enumerate(accumulators):
        at = add(body, arith.ConstantOp, result=index, value=number * lanes)
        add(body, vector.StoreOp, [add(body, vector.LoadOp, [accumulator, zero], vec), y, at])
    add(body, ReturnOp)

    main = FuncOp("main", [out], [], ["y"], {"input_names": [], "output_names": ["y"], "workspace_size": 0})
    add(main.body, kernel.LaunchOp, [main.args[0]], callee="fma_peak", extent=iterations)
    add(main.body, ReturnOp)
    module = Module([main, probe])
    module.verify()
    return module


def _best_seconds(fn, repeats: int) -> float:
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@functools.lru_cache(maxsize=None)
def machine_peak() -> Peak:
    """One core's peak, measured once per process (in some 0.3 s): f32 FMAs in registers, at the target's vector
    width, compiled by fusecc's own code generator; and a copy of 64 MiB (read and write counted). Each is the
    best of several runs, so another process busy on the machine lowers it only if it holds every core."""
    from fusecc.codegen import target
    from fusecc.codegen.llvm_emit import ENTRY, emit_llvm
    from fusecc.runtime.model import from_jit
    from fusecc.target import host_target

    lanes = host_target().vector_width
    llvm_module, _ = emit_llvm(_fma_probe(lanes, _CHAINS, _PROBE_ITERATIONS))
    library = target.JitLibrary(target.parse_and_optimize(str(llvm_module), 3))
    info = {"inputs": [], "outputs": [{"name": "y", "shape": [lanes * _CHAINS], "dtype": "float32",
                                       "element_type": "float"}], "kernels": [], "workspace_size": 0}
    with from_jit(library.address(ENTRY), b"", info, library, _not_saved) as probe:
        seconds = _best_seconds(lambda: probe.run({}), 40)
    gflops = 2 * lanes * _CHAINS * _PROBE_ITERATIONS / seconds / 1e9

    source = np.ones(_COPY_BYTES // 4, dtype=np.float32)
    destination = np.empty_like(source)
    seconds = _best_seconds(lambda: np.copyto(destination, source), 5)
    return Peak(gflops, 2 * _COPY_BYTES / seconds / 1e9)


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------
@dataclass
class KernelProfile:
    """A kernel's figures: ``time_ns`` over the middle runs (see :class:`Profile`), ``median_ns`` over all."""

    index: int
    name: str
    pattern: str
    nodes: tuple[str, ...]
    time_ns: float
    median_ns: float
    flops: int
    bytes: int
    share: float = 0.0

    def gflops(self) -> float:
        return self.flops / self.time_ns if self.time_ns else 0.0

    def gbps(self) -> float:
        return self.bytes / self.time_ns if self.time_ns else 0.0

    def bound(self, peak: Peak) -> str:
        """``compute`` when its FLOPs per byte reach the ridge point, else ``memory``."""
        return "compute" if self.bytes == 0 or self.flops / self.bytes >= peak.ridge else "memory"

    def of_peak(self, peak: Peak) -> float:
        """The fraction of the peak of the resource that bounds it."""
        return self.gflops() / peak.gflops if self.bound(peak) == "compute" else self.gbps() / peak.gbps

    def to_json(self, peak: Peak) -> dict:
        return {"index": self.index, "name": self.name, "pattern": self.pattern, "nodes": list(self.nodes),
                "time_ns": self.time_ns, "median_ns": self.median_ns, "share": self.share, "flops": self.flops,
                "bytes": self.bytes,
                "gflops": self.gflops(), "gbps": self.gbps(), "bound": self.bound(peak),
                "of_peak": self.of_peak(peak)}


@dataclass
class Profile:
    """A model's profile. Times are means over the ``middle_runs`` whose end-to-end time lies between its
    quartiles: robust to a run another process interrupted, as a median is, and unlike medians they add up
    (end to end = kernels + copies + other); ``end_to_end_median_ns`` is the plain median of all runs."""

    model: str
    runs: int
    warmup: int
    inputs: str
    peak: Peak
    middle_runs: int
    end_to_end_ns: float
    end_to_end_median_ns: float
    copies_ns: float
    #: the entry's buffer copies (an output that is an input, ...) and the bytes they read and write
    copies: int = 0
    copy_bytes: int = 0
    kernels: list[KernelProfile] = field(default_factory=list)
    #: threads of each run (``peak`` is that many cores' FLOP rate)
    threads: int = 1

    @property
    def kernels_ns(self) -> float:
        return sum(k.time_ns for k in self.kernels)

    @property
    def other_ns(self) -> float:
        """What the end-to-end time holds besides kernels and copies: the Python call around the native entry."""
        return self.end_to_end_ns - self.kernels_ns - self.copies_ns

    def sorted(self, order: str) -> list[KernelProfile]:
        if order == "time":
            return sorted(self.kernels, key=lambda k: (-k.time_ns, k.index))
        if order == "name":
            return sorted(self.kernels, key=lambda k: k.name)
        return list(self.kernels)

    def to_json(self, order: str = "time", top: int | None = None) -> dict:
        return {"model": self.model, "runs": self.runs, "warmup": self.warmup, "middle_runs": self.middle_runs,
                "inputs": self.inputs, "threads": self.threads, "peak": self.peak.to_json(), "end_to_end_ns": self.end_to_end_ns,
                "end_to_end_median_ns": self.end_to_end_median_ns, "kernels_ns": self.kernels_ns,
                "copies_ns": self.copies_ns, "copies": self.copies, "copy_bytes": self.copy_bytes,
                "other_ns": self.other_ns, "kernel_count": len(self.kernels),
                "kernels": [k.to_json(self.peak) for k in self.sorted(order)[:top]]}


@dataclass
class Timings:
    """Nanoseconds of each run: end to end (``CompiledModel.run``), the copies, and each kernel by name."""

    end_to_end: np.ndarray
    copies: np.ndarray
    kernels: dict[str, np.ndarray]

    def middle_runs(self) -> np.ndarray:
        """The runs whose end-to-end time lies between its quartiles (all of them when fewer than 4)."""
        order = np.argsort(self.end_to_end, kind="stable")
        quarter = len(order) // 4
        return order[quarter:len(order) - quarter]


def measure(instrumented: InstrumentedModel, feeds: dict, runs: int, warmup: int, threads: int = 1) -> Timings:
    """Run the model ``warmup`` times, then ``runs`` times on ``threads`` threads, timing each run and its steps."""
    model = instrumented.model
    for _ in range(warmup):
        model.run(feeds, threads=threads)
    total = np.empty(runs)
    per_step = np.empty((runs, len(instrumented.steps)))
    for run in range(runs):
        start = time.perf_counter_ns()
        model.run(feeds, threads=threads)
        total[run] = time.perf_counter_ns() - start
        per_step[run] = np.diff(instrumented.readings())
    kernels: dict[str, np.ndarray] = {}
    copies = np.zeros(runs)
    for index, kernel in enumerate(instrumented.steps):
        if kernel is None:
            copies += per_step[:, index]
        else:
            kernels[kernel] = kernels.get(kernel, 0) + per_step[:, index]
    return Timings(total, copies, kernels)


def random_inputs(specs, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for ``specs`` (``TensorSpec``): standard normal floats, integers and booleans 0 or 1 (valid as
    indices along any axis), from a generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        if spec.format is not None:
            import ml_dtypes
            dtype = np.dtype(getattr(ml_dtypes, spec.format))
            is_float = "float" in spec.format
        else:
            dtype = np.dtype(spec.dtype)
            is_float = dtype.kind in "fc"
        values = rng.standard_normal(spec.shape) if is_float else rng.integers(0, 2, spec.shape)
        feeds[spec.name] = np.asarray(values).astype(dtype)
    return feeds


def profile_model(source, options, runs: int = 20, warmup: int = 3, feeds: dict | None = None,
                  seed: int = 0, threads: int = 1) -> Profile:
    """Compile ``source`` instrumented, run it on ``threads`` threads and gather the :class:`Profile` (against
    ``threads`` times one core's peak FLOP rate). ``feeds`` maps input names to arrays; inputs it does not name
    get random values (:func:`random_inputs`)."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"--runs must be 1 or more and --warmup 0 or more, got {runs} and {warmup}")
    instrumented = compile_instrumented(source, options)
    try:
        model = instrumented.model
        given = dict(feeds or {})
        random = random_inputs([s for s in model.inputs if s.name not in given], seed)
        described = f"random (seed {seed})" if not given else \
            "given" if not random else f"given, random (seed {seed}) for {', '.join(random)}"
        core = machine_peak()
        peak = Peak(core.gflops * threads, core.gbps)
        timings = measure(instrumented, {**given, **random}, runs, warmup, threads)
        middle = timings.middle_runs()
        end_to_end = float(timings.end_to_end[middle].mean())
        name = source if isinstance(source, str) else getattr(getattr(source, "graph", None), "name", "model")
        result = Profile(str(name), runs, warmup, described, peak, len(middle), end_to_end,
                         float(np.median(timings.end_to_end)), float(timings.copies[middle].mean()),
                         instrumented.steps.count(None), instrumented.copy_bytes, threads=threads)
        never = np.zeros(runs)
        for index, kernel in enumerate(model.kernels):
            times = timings.kernels.get(kernel.name, never)
            cost = instrumented.costs.get(kernel.name, RegionCost(0, 0))
            time_ns = float(times[middle].mean())
            result.kernels.append(KernelProfile(index, kernel.name, kernel.pattern, kernel.nodes, time_ns,
                                                float(np.median(times)), cost.flops, cost.bytes,
                                                share=time_ns / end_to_end))
        return result
    finally:
        instrumented.close()


# --------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------
def _si(value: float) -> str:
    """``value`` with three significant digits and an SI prefix: 1.23G, 456M, 12.3k, 7."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{prefix}"
    return f"{value:.3g}"


def _count_of(number: int, noun: str, plural: str | None = None) -> str:
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.3f} ms"


def _nodes(nodes, width: int = 60) -> str:
    text = ", ".join(nodes)
    if len(text) <= width:
        return text
    shown = []
    for node in nodes:
        if len(", ".join(shown + [node])) > width - 12:
            break
        shown.append(node)
    return ", ".join(shown) + f", ... ({len(nodes)} nodes)"


def format_table(result: Profile, order: str = "time", top: int | None = None) -> str:
    peak = result.peak
    e2e = result.end_to_end_ns

    def share(ns):
        return f"{100 * ns / e2e:5.1f}%" if e2e else "    -"

    lines = [f"fusecc profile: {result.model}: {_count_of(len(result.kernels), 'kernel')}, "
             f"{_count_of(result.runs, 'run')} after {_count_of(result.warmup, 'warm-up run')}, "
             f"inputs {result.inputs}",
             f"peak of {'one core' if result.threads == 1 else f'{result.threads} cores'}: "
             f"{peak.gflops:.1f} GFLOP/s (f32 FMA), {peak.gbps:.1f} GB/s (copy); "
             f"ridge {peak.ridge:.1f} FLOP/byte",
             f"times: means of the {_count_of(result.middle_runs, 'run')} between the quartiles of the end-to-end time",
             "",
             f"end-to-end  {_ms(e2e):>12}         (median of all runs {_ms(result.end_to_end_median_ns)})",
             f"kernels     {_ms(result.kernels_ns):>12} {share(result.kernels_ns)}",
             f"copies      {_ms(result.copies_ns):>12} {share(result.copies_ns)}  "
             f"({_count_of(result.copies, 'copy', 'copies')}, {_si(result.copy_bytes)} bytes)",
             f"other       {_ms(result.other_ns):>12} {share(result.other_ns)}  "
             "(the call from Python: input checks, output and workspace allocation)",
             ""]
    rows = result.sorted(order)
    shown = rows[:top]
    name_width = max([len("kernel")] + [len(k.name) for k in shown])
    lines.append(f"{'#':>4}  {'kernel':<{name_width}}  {'time (us)':>10}  {'share':>6}  {'FLOP':>6}  {'bytes':>6}"
                 f"  {'GFLOP/s':>8}  {'GB/s':>7}  {'of peak':>10}  nodes")
    for k in shown:
        bound = "flop" if k.bound(peak) == "compute" else "mem"
        lines.append(f"{k.index:>4}  {k.name:<{name_width}}  {k.time_ns / 1e3:>10.1f}  {share(k.time_ns):>6}  "
                     f"{_si(k.flops):>6}  {_si(k.bytes):>6}  {k.gflops():>8.2f}  {k.gbps():>7.2f}  "
                     f"{f'{100 * k.of_peak(peak):.0f}% {bound}':>10}  {_nodes(k.nodes)}")
    if len(shown) < len(rows):
        rest = sum(k.time_ns for k in rows[len(shown):])
        lines.append(f"      ... {_count_of(len(rows) - len(shown), 'more kernel')}, {_ms(rest)} "
                     f"({share(rest).strip()})")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from fusecc.cli import at_least, model_parser
    parser = model_parser(
        "fusecc profile", "Run a model and report, for each kernel, its median time, share of the run, FLOPs, bytes "
                          "moved and achieved GFLOP/s or GB/s against this machine's peak (of one core, or of "
                          "--threads cores).")
    parser.add_argument("--runs", type=at_least(1), default=20, metavar="N", help="timed runs (default 20)")
    parser.add_argument("--warmup", type=at_least(0), default=3, metavar="N", help="untimed runs first (default 3)")
    parser.add_argument("--inputs", metavar="FILE.npz",
                        help="input arrays by name (their shapes fix dynamic ones); inputs it lacks, and all "
                             "without it, are random from a fixed seed")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    parser.add_argument("--top", type=at_least(1), metavar="K", help="show the first K kernels only")
    parser.add_argument("--sort", choices=["time", "name", "order"], default="time",
                        help="kernel order: slowest first (default), by name, or as they run")
    parser.add_argument("--threads", type=at_least(1), default=1, metavar="N",
                        help="threads of each run (default 1); the peak FLOP rate is N cores'")
    parser.add_argument("--json", action="store_true", help="print the profile as JSON")
    return parser


def _load_inputs(path: str) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file by name."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, AttributeError) as exc:
        raise OSError(f"cannot read inputs '{path}': {exc or type(exc).__name__} (expected an .npz file of "
                      "arrays by input name, as numpy.savez writes)") from None


def main(argv: list[str] | None = None) -> int:
    """``fusecc profile MODEL [options]``; errors print one ``fusecc: error:`` line and return 1."""
    import warnings

    from fusecc.cli import _fail, _known_errors, _show_warning
    from fusecc.driver import Options

    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            feeds = _load_inputs(args.inputs) if args.inputs else {}
            shapes = {name: tuple(array.shape) for name, array in feeds.items()}
            shapes.update(dict(args.input_shape))
            options = Options(fusion=False if args.no_fusion else None, input_shapes=shapes or None, cache=False,
                              threads=args.threads)
            result = profile_model(args.model, options, args.runs, args.warmup, feeds, args.seed, args.threads)
        except BrokenPipeError:
            raise  # the reader left: see _quiet_when_the_reader_leaves
        except _known_errors() as exc:
            return _fail(str(exc))
        except KeyboardInterrupt:
            return 130
    if args.json:
        json.dump(result.to_json(args.sort, args.top), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_table(result, args.sort, args.top))
    return 0
