"""``fusecc bisect MODEL``: the smallest group of ops whose compiled code computes a wrong answer, and a reproducer.

First the model runs in check mode (see ``fusecc.check``), which names the first kernel whose outputs differ
from the reference interpreter's on the inputs that kernel read. Where ONNX Runtime is installed and the model is
ONNX, it runs the model too, to say which of the two its value at that element agrees with (the tensor of the
ONNX node that computes the kernel's output). Then that kernel's fused region is cut down:
a run of its ops (in the region's order) is compiled on its own, as a model whose inputs are the values the
run reads (computed by the reference interpreter from the kernel's actual inputs) and whose outputs are the
values it hands on, and its outputs are compared with the reference. The run shrinks from its end, then from
its start, while it still fails; what is left is the smallest failing group. Its directory holds:

* ``group.fir``: the group as a tensor-level module (weights included);
* ``inputs.npz`` and ``expected.npz``: its inputs and the reference's outputs, by name;
* ``replay.sh``: the ``fusecc-opt`` command that lowers it through fusecc's pipeline, and the ``fusecc bisect``
  command that runs and checks it again.

A group that fails in the model but passes when compiled on its own points at the fused kernel as a whole (its
schedule, its neighbours' buffers): the reproducer is then the whole region.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from dataclasses import dataclass, field, replace

import numpy as np

from fusecc.check import ATOL, RTOL, CheckError, first_mismatch
from fusecc.ir.core import FuncOp, Module, Operation, ReturnOp
from fusecc.ir.printer import loc_names, print_module
from fusecc.ir.rewriter import Rewriter
from fusecc.passes.rewrite import constant_value, make_constant


@dataclass
class Mismatch:
    """The first element of a group's output ``output`` (by name) over tolerance: its ``index`` and both values."""

    output: str
    index: tuple
    got: float
    expected: float

    def describe(self) -> str:
        return f"output {self.output} element {list(self.index)} is {self.got!r}, the reference {self.expected!r}"


@dataclass
class Bisection:
    """What ``bisect`` found: the ``kernel`` check mode named (with its ONNX ``nodes`` and ``error``), the smallest
    failing group's ONNX nodes and op count, its ``mismatch``, whether it fails on its own (``isolated``) and the
    reproducer directory."""

    kernel: str
    nodes: list[str]
    error: str
    group_nodes: list[str]
    group_ops: int
    region_ops: int
    mismatch: Mismatch | None
    isolated: bool
    directory: str
    tried: list[tuple[int, int, bool]] = field(default_factory=list)
    #: what ONNX Runtime computes at the wrong element, when it can tell (see :func:`_ort_verdict`)
    ort: str | None = None

    def describe(self) -> str:
        lines = [f"first kernel over tolerance: {self.kernel} (ONNX nodes {', '.join(self.nodes)})",
                 f"  {self.error}"] + ([f"  {self.ort}"] if self.ort else [])
        if self.isolated:
            lines.append(f"smallest failing group: {self.group_ops} of the region's {self.region_ops} ops "
                         f"(ONNX nodes {', '.join(self.group_nodes)})")
            lines.append(f"  compiled on its own, {self.mismatch.describe()}")
        else:
            lines.append("the region computes the right answer when compiled on its own: the fault is in the kernel "
                         "as compiled in the model; the reproducer holds the whole region")
        lines.append(f"reproducer: {self.directory} (see replay.sh)")
        return "\n".join(lines) + "\n"


def bisect(source, options, feeds: dict[str, np.ndarray], directory: str, seed: int = 0) -> Bisection | None:
    """Run ``source`` (compiled with ``options``, see ``driver.Options``) in check mode on ``feeds`` (inputs they
    lack random from ``seed``, see ``profile.random_inputs``); None when every kernel matches the reference,
    else the :class:`Bisection` with its reproducer written to ``directory``."""
    from fusecc.driver import compile_model
    from fusecc.profile import random_inputs

    checked = compile_model(source, replace(options, check=True, cache=False))
    feeds = {**random_inputs([s for s in checked.inputs if s.name not in feeds], seed), **feeds}
    try:
        checked.run(feeds)
    except CheckError as error:
        found = _shrink(error, options, directory)
        found.ort = _ort_verdict(source, feeds, error)
        return found
    finally:
        checked.close()
    return None


def _ort_verdict(source, feeds: dict[str, np.ndarray], error: CheckError) -> str | None:
    """What ONNX Runtime computes at the element check mode found wrong, and whether that agrees with the
    kernel or the reference: the kernel's output is the tensor of the ONNX node named last in the location of
    the op that computes it. None without ONNX Runtime, for a model that is not ONNX, or where that tensor is
    not the kernel's output as it is (another shape, a node the graph phase made)."""
    if isinstance(source, (str, os.PathLike)) and str(source).endswith(".fir"):
        return None
    try:
        import onnxruntime
    except ImportError:
        return None
    from onnx import helper

    from fusecc.frontend.onnx_import import load_model
    model = load_model(source)
    producer = getattr(error.region.body.ops[-1].operands[error.output], "op", None)
    names = loc_names(getattr(producer, "loc", None))
    node = next((n for n in model.graph.node if names and n.name == names[-1]), None)
    if node is None:
        return None
    tensor = node.output[0]
    extended = type(model)()
    extended.CopyFrom(model)
    if tensor not in {o.name for o in extended.graph.output}:
        extended.graph.output.append(helper.make_empty_tensor_value_info(tensor))
    try:
        session = onnxruntime.InferenceSession(extended.SerializeToString(), providers=["CPUExecutionProvider"])
        value = session.run([tensor], feeds)[0]
    except Exception as exc:  # ONNX Runtime cannot run the model: say so, the rest of the report stands
        return f"ONNX Runtime could not run the model: {str(exc).splitlines()[0]}"
    if tuple(value.shape) != tuple(error.region.results[error.output].type.shape):
        return None
    theirs = value[error.index].item()
    sides = [who for who, ours in (("the kernel", error.got), ("the reference", error.expected))
             if np.isclose(theirs, ours, rtol=RTOL, atol=ATOL, equal_nan=True)]
    verdict = f"agrees with {' and '.join(sides)}" if sides else "agrees with neither"
    return f"ONNX Runtime computes {theirs!r} there (node {node.name}, tensor {tensor}): {verdict}"


def _shrink(error: CheckError, options, directory: str) -> Bisection:
    region = error.region
    members = list(region.members)
    values = _reference_values(region, error.inputs)
    tried = []

    def fails(first: int, stop: int) -> Mismatch | None:
        with tempfile.TemporaryDirectory() as scratch:
            found = _run_group(_Group(region, members[first:stop], values), options, scratch)
        tried.append((first, stop, found is not None))
        return found

    whole = fails(0, len(members))
    first, stop = 0, len(members)
    if whole is not None:
        stop = next(end for end in range(1, len(members) + 1) if end == len(members) or fails(0, end))
        first = next(start for start in range(stop - 1, -1, -1) if start == 0 or fails(start, stop))
    group = _Group(region, members[first:stop], values)
    os.makedirs(directory, exist_ok=True)
    mismatch = _run_group(group, options, directory) if whole is not None else None
    _write_replay(directory, options, group.nodes())
    return Bisection(error.kernel, error.nodes, str(error), group.nodes(), stop - first, len(members), mismatch,
                     whole is not None, directory, tried)


def _reference_values(region, inputs: list[np.ndarray]) -> dict[int, np.ndarray]:
    """Every value of ``region`` (its arguments and each op's results) as the reference computes it from
    ``inputs``, by ``id``."""
    values = {id(arg): np.asarray(array) for arg, array in zip(region.body.args, inputs)}
    for op in region.body.ops[:-1]:  # the members and the region's own constants, before kernel.yield
        for result, array in zip(op.results, op.reference(*[values[id(v)] for v in op.operands])):
            values[id(result)] = np.asarray(array)
    return values


@dataclass
class _Group:
    """A run of a region's ops (``ops``), with every value of the region as the reference computes it."""

    region: Operation
    ops: list[Operation]
    values: dict[int, np.ndarray]

    def nodes(self) -> list[str]:
        return list(dict.fromkeys(name for op in self.ops for name in (loc_names(op.loc) or [op.name])))

    def module(self) -> tuple[Module, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The group as a module of its own, its inputs and its expected outputs, by name. What the group reads
        from outside becomes an input, or a constant where it is one (in the region or as its operand); what it
        hands on (to the rest of the region or out of it) becomes an output."""
        inside = {id(result) for op in self.ops for result in op.results}
        outer = dict(zip((id(arg) for arg in self.region.body.args), self.region.operands))
        reads = list({id(v): v for op in self.ops for v in op.operands if id(v) not in inside}.values())
        constants = {id(v): constant_value(outer.get(id(v), v)) for v in reads}
        arguments = [v for v in reads if constants.get(id(v)) is None]
        handed_on = [result for op in self.ops for result in op.results
                     if any(id(use) not in {id(o) for o in self.ops} for use in result.users)]
        input_names = [f"in{i}" for i in range(len(arguments))]
        output_names = [f"out{i}" for i in range(len(handed_on))]
        func = FuncOp("main", [v.type for v in arguments], [v.type for v in handed_on], input_names,
                      {"input_names": input_names, "output_names": output_names})
        mapping = {id(v): arg for v, arg in zip(arguments, func.args)}
        rewriter = Rewriter.at_end(func.body)
        taken: set[str] = set()
        for value in reads:
            if constants.get(id(value)) is not None:
                mapping[id(value)] = make_constant(rewriter, constants[id(value)], "weight", taken)
        for op in self.ops:
            clone = rewriter.create(type(op), [mapping[id(v)] for v in op.operands], [r.type for r in op.results],
                                    dict(op.attributes), loc=op.loc)
            mapping.update({id(r): c for r, c in zip(op.results, clone.results)})
        func.body.append(ReturnOp.create([mapping[id(v)] for v in handed_on], []))
        inputs = {name: self.values[id(v)] for name, v in zip(input_names, arguments)}
        expected = {name: self.values[id(v)] for name, v in zip(output_names, handed_on)}
        return Module([func]), inputs, expected


def _run_group(group: _Group, options, directory: str) -> Mismatch | None:
    """Write ``group`` to ``directory`` (``group.fir``, ``inputs.npz``, ``expected.npz``), compile and run it, and
    return its first output element over tolerance (``options.check_tolerance``), if any. A fault injected by
    ONNX node name (``FUSECC_INJECT_FAULT``) follows the node into the group."""
    from fusecc.driver import compile_model

    module, inputs, expected = group.module()
    module.verify()
    path = os.path.join(directory, "group.fir")
    with open(path, "w") as out:
        out.write(print_module(module))
    np.savez(os.path.join(directory, "inputs.npz"), **inputs)
    np.savez(os.path.join(directory, "expected.npz"), **expected)
    fault = options.inject_fault if options.inject_fault in group.nodes() else None
    model = compile_model(path, replace(options, check=False, cache=False, inject_fault=fault))
    try:
        outputs = model.run(inputs)
    finally:
        model.close()
    for name, got in zip(expected, outputs):
        wrong = first_mismatch(got, expected[name], *(options.check_tolerance or (RTOL, ATOL)))
        if wrong is not None:
            return Mismatch(name, *wrong)
    return None


def _write_replay(directory: str, options, nodes: list[str]) -> None:
    """``replay.sh``: the group lowered by ``fusecc-opt`` and bisected again, with the fault injected by ONNX node
    name, if any, that the group holds."""
    from fusecc.driver import pass_pipelines

    pipelines = pass_pipelines(options)
    pipeline = ",".join(pipelines[phase] for phase in ("graph", "fusion", "loops"))
    fault = f"FUSECC_INJECT_FAULT={shlex.quote(options.inject_fault)} " if options.inject_fault in nodes else ""
    with open(os.path.join(directory, "replay.sh"), "w") as out:
        out.write("#!/bin/sh\n# the group lowered through fusecc's passes, as the model's compile ran them\n"
                  f"fusecc-opt group.fir -p {shlex.quote(pipeline)}\n"
                  "# the group compiled, run on its inputs and checked against the reference\n"
                  f"{fault}fusecc bisect group.fir --inputs inputs.npz --out replayed\n")
    os.chmod(os.path.join(directory, "replay.sh"), 0o755)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from fusecc.cli import model_parser
    parser = model_parser(
        "fusecc bisect", "Find the first kernel whose outputs differ from the reference interpreter's, then the "
                         "smallest group of its ops that still computes a wrong answer compiled on its own, and "
                         "write a reproducer directory. Exits 1 when it finds one, 0 when every kernel matches.")
    parser.add_argument("--inputs", metavar="FILE.npz",
                        help="input arrays by name; inputs it lacks, and all without it, are random from --seed")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    parser.add_argument("--rtol", type=float, default=RTOL, help=f"relative tolerance (default {RTOL:g})")
    parser.add_argument("--atol", type=float, default=ATOL, help=f"absolute tolerance (default {ATOL:g})")
    parser.add_argument("--out", default="fusecc-bisect", metavar="DIR",
                        help="the reproducer directory (default fusecc-bisect)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``fusecc bisect MODEL [options]``; errors print one ``fusecc: error:`` line and return 2."""
    from fusecc.cli import _fail, _known_errors
    from fusecc.driver import Options
    from fusecc.profile import _load_inputs

    args = build_parser().parse_args(argv)
    try:
        feeds = _load_inputs(args.inputs) if args.inputs else {}
        shapes = {name: tuple(array.shape) for name, array in feeds.items()}
        shapes.update(dict(args.input_shape))
        options = Options(fusion=False if args.no_fusion else None, input_shapes=shapes or None, cache=False,
                          check_tolerance=(args.rtol, args.atol))
        found = bisect(args.model, options, feeds, args.out, args.seed)
    except BrokenPipeError:
        raise  # the reader left: see cli._quiet_when_the_reader_leaves
    except _known_errors() as exc:
        _fail(str(exc))
        return 2
    if found is None:
        sys.stdout.write("every kernel matches the reference\n")
        return 0
    sys.stdout.write(found.describe())
    return 1
