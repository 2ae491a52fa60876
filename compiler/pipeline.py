"""The compilation pipeline as a list of named phases, each a pipeline of passes.

    import   ONNX -> tensor dialect (frontend)
    graph    shape inference, folding, BatchNorm folding, CSE, DCE; contractions and convs laid out for the
             micro-kernels (convs in blocked channels)
    fusion   group ops into kernel.fused regions (or one region per op)
    loops    regions -> loop-dialect kernels, buffers planned
    llvm     loop dialect -> LLVM IR -> native code

``--compile-to=PHASE`` stops after a phase; each phase is testable alone.
"""

from __future__ import annotations

PHASES = ("import", "graph", "fusion", "loops", "llvm")

GRAPH_PIPELINE = ("shape-inference,fold-constants,fold-batchnorm,decompose,fold-constants,contraction-layout,"
                  "blocked-convs,cse,dce,space-to-depth-convs,pad-conv-inputs")
UNFUSED_PIPELINE = "outline-kernels"
LOOPS_PIPELINE = "plan-contractions,lower-to-loops,fuse-loops,plan-buffers,expand-math,cse,dce,interleave-loops"


def fusion_pipeline(fusion: bool, explain: bool = False, plan: str | None = None) -> str:
    """Fusion groups ops into regions (after multi-op patterns become single ops), or a fusion ``plan`` file
    does (``apply-plan``); whatever stays alone gets a region of its own."""
    if plan is not None:
        if any(c in plan for c in "{},"):
            raise ValueError(f"a fusion plan's path may not hold '{{', '}}' or ',': '{plan}'")
        return f"recognize-gelu,dce,apply-plan{{plan={plan}}}," + UNFUSED_PIPELINE
    if not fusion:
        return UNFUSED_PIPELINE
    return "recognize-gelu,dce," + ("fuse{explain=true}" if explain else "fuse") + "," + UNFUSED_PIPELINE


def phase_pipelines(fusion: bool, explain: bool = False, target=None, plan: str | None = None) -> dict[str, str]:
    """The phases' pipelines. A ``Target`` (``fusecc.target``), when given, sets the options of the passes that
    shape kernels for it (vector width and registers, caches, threads); else those passes keep their defaults."""
    pipelines = {"graph": GRAPH_PIPELINE, "fusion": fusion_pipeline(fusion, explain, plan), "loops": LOOPS_PIPELINE}
    if target is not None:
        pipelines = {phase: target.configure(pipeline) for phase, pipeline in pipelines.items()}
    return pipelines
