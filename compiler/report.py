"""The fusion report: each fused region, its ONNX nodes, its pattern and the memory traffic it saves."""

from __future__ import annotations

from fusecc.dialects.kernel import FusedOp
from fusecc.ir.core import Module
from fusecc.ir.printer import loc_names


def region_summaries(module: Module) -> list[dict]:
    """One entry per ``kernel.fused`` in ``@main``, in launch order."""
    summaries = []
    for op in module.main.body.ops:
        if not isinstance(op, FusedOp):
            continue
        yielded = {id(v) for v in op.body.ops[-1].operands}
        internal = [r for member in op.members for r in member.results if id(r) not in yielded]
        saved = sum(2 * r.type.nbytes for r in internal if r.type.is_static)
        summaries.append({"kernel": op.sym_name, "pattern": op.attr("pattern"),
                          "nodes": [n for m in op.members for n in (loc_names(m.loc) or [m.name])], "saved_bytes": saved})
    return summaries


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def fusion_report(module: Module, onnx_nodes: int) -> str:
    """Text listing every region, ending with ``N kernels from M ONNX nodes``."""
    lines = []
    summaries = region_summaries(module)
    total = 0
    for s in summaries:
        total += s["saved_bytes"]
        lines.append(f"{s['kernel']:<44} {s['pattern']:<12} saves {_bytes(s['saved_bytes']):>10}  "
                     + ", ".join(s["nodes"]))
    lines.append(f"intermediate traffic saved: {_bytes(total)}")
    lines.append(f"{len(summaries)} kernels from {onnx_nodes} ONNX nodes")
    return "\n".join(lines)
