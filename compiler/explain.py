"""``fusecc explain MODEL``: why each kernel holds the ops it holds, and how it will run.

For each fused region, in launch order: its ONNX nodes; each producer/consumer pair that fused and the rule of the
``fuse`` pass that let it (an epilogue of a compute op, a row reduction, an elementwise op, data movement,
siblings merged); the schedule ``plan-contractions`` chose for its contraction (micro-tile, depth passes, blocks,
packing); its FLOPs and the bytes it moves, and the bytes of intermediates fusion keeps out of memory. Then
each pair that did not fuse, under the region of the consumer, with the reason. ``--node NAME`` keeps the
regions that hold that ONNX node (and the pairs it is in); ``--format=json`` prints the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys

from fusecc.costs import region_cost
from fusecc.dialects.kernel import FusedOp
from fusecc.ir.printer import loc_names


def explain(source, options) -> list[dict]:
    """The regions of ``source`` compiled with ``options`` (see ``driver.Options``), each a dict: ``kernel``,
    ``pattern``, ``nodes``, ``fused`` (pairs with their rule), ``not_fused`` (pairs with the reason),
    ``schedule``, ``flops``, ``bytes`` and ``saved_bytes``."""
    from fusecc.driver import fuse_and_plan
    from fusecc.lowering.schedules.blocks import GemmSchedule
    from fusecc.report import region_summaries

    module, _, decisions = fuse_and_plan(source, options)

    regions = [op for op in module.main.body.ops if isinstance(op, FusedOp)]
    region_of = {id(member): region for region in regions for member in region.members}
    saved = {summary["kernel"]: summary["saved_bytes"] for summary in region_summaries(module)}
    explained = []
    for region in regions:
        cost = region_cost(region)
        ours = [d for d in reversed(decisions) if region_of.get(id(d.consumer)) is region]  # in program order
        fused = [{**_pair(d), "rule": d.rule} for d in ours if d.reason is None]
        not_fused = [{**_pair(d), "reason": d.reason,
                      "producer_kernel": getattr(region_of.get(id(d.producer)), "sym_name", None)}
                     for d in ours if d.reason is not None]
        explained.append({
            "kernel": region.sym_name, "pattern": region.attr("pattern"),
            "nodes": [n for m in region.members for n in (loc_names(m.loc) or [m.name])],
            "fused": fused, "not_fused": not_fused,
            "schedule": {key: region.attributes[key] for key in GemmSchedule.ATTRIBUTES if key in region.attributes},
            "flops": cost.flops, "bytes": cost.bytes, "saved_bytes": saved[region.sym_name]})
    return explained


def _pair(decision) -> dict:
    """The two ops of a fusion decision: each one's ONNX nodes and op name."""
    return {"producer": {"nodes": loc_names(decision.producer.loc), "op": decision.producer.name},
            "consumer": {"nodes": loc_names(decision.consumer.loc), "op": decision.consumer.name}}


def _op(side: dict) -> str:
    return f"{'+'.join(side['nodes']) or '(no node)'} [{side['op']}]"


def about_node(regions: list[dict], node: str) -> list[dict]:
    """The regions that hold ONNX node ``node``, each with only the pairs ``node`` is in."""
    def involves(pair: dict) -> bool:
        return node in pair["producer"]["nodes"] or node in pair["consumer"]["nodes"]

    kept = [{**region, "fused": [p for p in region["fused"] if involves(p)],
             "not_fused": [p for p in region["not_fused"] if involves(p)]}
            for region in regions if node in region["nodes"]]
    if not kept:
        raise ValueError(f"no kernel holds an ONNX node named '{node}'")
    return kept


def _amount(value: float, unit: str) -> str:
    for prefix in ("", "K", "M", "G"):
        if abs(value) < 1000 or prefix == "G":
            return f"{value:.0f} {prefix}{unit}" if not prefix else f"{value:.1f} {prefix}{unit}"
        value /= 1000
    return str(value)


def format_text(regions: list[dict]) -> str:
    lines = []
    for region in regions:
        lines.append(f"{region['kernel']}  ({region['pattern']}; ONNX nodes {', '.join(region['nodes'])})")
        lines.append(f"  {_amount(region['flops'], 'FLOP')}, moves {_amount(region['bytes'], 'B')}, "
                     f"keeps {_amount(region['saved_bytes'], 'B')} of intermediates out of memory")
        if region["schedule"]:
            lines.append("  schedule: " + ", ".join(f"{key} = {value}" for key, value in region["schedule"].items()))
        for pair in region["fused"]:
            lines.append(f"  fused {_op(pair['producer'])} -> {_op(pair['consumer'])}: {pair['rule']}")
        for pair in region["not_fused"]:
            where = f" (it is in {pair['producer_kernel']})" if pair["producer_kernel"] else ""
            lines.append(f"  not fused {_op(pair['producer'])}{where} -> {_op(pair['consumer'])}: {pair['reason']}")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    from fusecc.cli import model_parser
    parser = model_parser(
        "fusecc explain", "For each fused region: its ONNX nodes, the rule that fused each pair, the schedule chosen "
                          "for its contraction, its FLOPs and bytes; and each pair that did not fuse, with the reason.")
    parser.add_argument("--node", metavar="NAME", help="only the regions holding this ONNX node")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``fusecc explain MODEL [options]``; errors print one ``fusecc: error:`` line and return 1."""
    from fusecc.cli import _fail, _known_errors
    from fusecc.driver import Options

    args = build_parser().parse_args(argv)
    try:
        options = Options(fusion=False if args.no_fusion else None, input_shapes=dict(args.input_shape) or None,
                          cache=False)
        regions = explain(args.model, options)
        if args.node is not None:
            regions = about_node(regions, args.node)
    except BrokenPipeError:
        raise  # the reader left: see cli._quiet_when_the_reader_leaves
    except _known_errors() as exc:
        return _fail(str(exc))
    if args.format == "json":
        json.dump(regions, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_text(regions))
    return 0
