"""The compilation pipeline as a list of named phases, each a pipeline of passes.

    import   ONNX -> tensor dialect (frontend)
    graph    shape inference, folding, BatchNorm folding, CSE, DCE; contractions and convs laid out for the
             micro-kernels
    fusion   group ops into kernel.fused regions (or one region per op)
    loops    regions -> loop-dialect kernels, buffers planned
    llvm     loop dialect -> LLVM IR -> native code

``--compile-to=PHASE`` stops after a phase; each phase is testable alone.
"""

from __future__ import annotations

PHASES = ("import", "graph", "fusion", "loops", "llvm")

GRAPH_PIPELINE = ("shape-inference,fold-constants,fold-batchnorm,decompose,fold-constants,contraction-layout,cse,"
                  "dce,space-to-depth-convs,pad-conv-inputs")
UNFUSED_PIPELINE = "outline-kernels"
LOOPS_PIPELINE = "plan-contractions,lower-to-loops,fuse-loops,plan-buffers,expand-math,cse,dce,interleave-loops"


def fusion_pipeline(fusion: bool, explain: bool = False) -> str:
    """Fusion groups ops into regions (after multi-op patterns become single ops); whatever stays alone
    gets a region of its own."""
    if not fusion:
        return UNFUSED_PIPELINE
    return "recognize-gelu,dce," + ("fuse{explain=true}" if explain else "fuse") + "," + UNFUSED_PIPELINE


def phase_pipelines(fusion: bool, explain: bool = False, vector_width: int | None = None,
                    vector_registers: int | None = None, l1_bytes: int | None = None,
                    l2_bytes: int | None = None) -> dict[str, str]:
    """The phases' pipelines. The target's vector width (float32 lanes), vector registers and level-1 and
    level-2 data caches, when given, shape the loops phase's micro-kernels (else its passes keep their
    defaults)."""
    def options(**values) -> str:
        given = [f"{name.replace('_', '-')}={value}" for name, value in values.items() if value is not None]
        return f"{{{','.join(given)}}}" if given else ""

    plan = options(vector_width=vector_width, vector_registers=vector_registers, l1_bytes=l1_bytes,
                   l2_bytes=l2_bytes)
    lower = options(vector_width=vector_width, vector_registers=vector_registers)
    loops = LOOPS_PIPELINE.replace("plan-contractions", "plan-contractions" + plan, 1) \
        .replace("lower-to-loops", "lower-to-loops" + lower, 1)
    return {"graph": GRAPH_PIPELINE, "fusion": fusion_pipeline(fusion, explain), "loops": loops}
