"""Pass ``apply-plan``, and the fusion plan file that ``fusecc --save-plan`` writes and ``--plan`` reads.

A plan is JSON: ``{"fusecc_plan": 1, "regions": [{"kernel": ..., "pattern": ..., "ops": [...], "schedule":
{...}}, ...]}``. Each op is named by its op name and ONNX nodes, ``tensor.conv@conv2+bn2``, with ``#1``, ``#2``
... after the second and later ops of one name and nodes, counted in program order at the point where fusion
runs (after the graph phase). ``schedule`` holds the attributes ``plan-contractions`` recorded on the region
(see ``GemmSchedule``), which a plan may change; ``kernel`` and ``pattern`` are for the reader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fusecc.dialects.kernel import FusedOp
from fusecc.dialects.tensor import ConstantOp, TensorOp
from fusecc.ir.core import Module, Operation
from fusecc.ir.printer import loc_names

from .fuse import pattern_of
from .manager import Pass
from .outline import wrap_in_region

PLAN_VERSION = 1


class PlanError(ValueError):
    """A fusion plan that cannot be read or does not fit the graph."""


def op_names(ops: list[Operation]) -> dict[int, str]:
    """The plan's name of each tensor op of ``ops`` (in program order), by ``id``."""
    names, seen = {}, {}
    for op in ops:
        if not isinstance(op, TensorOp) or isinstance(op, ConstantOp):
            continue
        base = f"{op.name}@{'+'.join(loc_names(op.loc))}"
        count = seen.get(base, 0)
        seen[base] = count + 1
        names[id(op)] = base if count == 0 else f"{base}#{count}"
    return names


def fusion_plan(module: Module, names: dict[int, str]) -> dict:
    """The plan of the fused ``module``: each region's ops by ``names`` (:func:`op_names` of the ops before
    fusion), and the schedule recorded on it."""
    from fusecc.lowering.schedules.blocks import GemmSchedule

    regions = []
    for op in module.main.body.ops:
        if isinstance(op, FusedOp):
            regions.append({"kernel": op.sym_name, "pattern": op.attr("pattern"),
                            "ops": [names[id(member)] for member in op.members],
                            "schedule": {key: op.attributes[key] for key in GemmSchedule.ATTRIBUTES
                                         if key in op.attributes}})
    return {"fusecc_plan": PLAN_VERSION, "regions": regions}


def read_plan(path: str) -> list[dict]:
    """The regions of the plan file at ``path``."""
    try:
        with open(path) as handle:
            plan = json.load(handle)
    except (OSError, ValueError) as exc:
        raise PlanError(f"cannot read the fusion plan '{path}': {exc}") from None
    if not isinstance(plan, dict) or plan.get("fusecc_plan") != PLAN_VERSION or \
            not isinstance(plan.get("regions"), list):
        raise PlanError(f"'{path}' is not a fusion plan of version {PLAN_VERSION} (fusecc --save-plan writes one)")
    for number, region in enumerate(plan["regions"]):
        if not isinstance(region, dict) or not isinstance(region.get("ops"), list) or not region["ops"] or \
                not isinstance(region.get("schedule", {}), dict):
            raise PlanError(f"fusion plan '{path}': region #{number} needs a non-empty list 'ops' "
                            "(and 'schedule', if any, an object)")
    return plan["regions"]


@dataclass
class ApplyPlan(Pass):
    """Groups tensor ops into ``kernel.fused`` regions as the fusion plan file ``plan`` says, instead of ``fuse``.

    Each region of the plan takes the ops it names (see this module), which must exist, belong to no other
    region and form a region the graph allows: no op outside it may both use one of its results and feed one
    of its ops. Its pattern follows its ops, as ``fuse``'s does; a schedule in the plan is recorded on the
    region, where ``plan-contractions`` keeps it. Ops that no region names are left for ``outline-kernels``.
    Every error names the region and the op.
    """

    name = "apply-plan"
    plan: str = ""

    def run(self, module: Module) -> None:
        if not self.plan:
            raise PlanError("apply-plan needs plan=FILE")
        regions = read_plan(self.plan)
        block = module.main.body
        names = op_names(block.ops)
        by_name = {names[id(op)]: op for op in block.ops if id(op) in names}
        position = {id(op): number for number, op in enumerate(block.ops)}
        taken: dict[int, str] = {}
        for number, region in enumerate(regions):
            label = region.get("kernel") or f"#{number}"
            ops = []
            for name in region["ops"]:
                op = by_name.get(name)
                if op is None:
                    raise PlanError(f"fusion plan region {label}: the graph has no op {name}")
                if id(op) in taken:
                    raise PlanError(f"fusion plan region {label}: op {name} is already in region {taken[id(op)]}")
                taken[id(op)] = label
                ops.append(op)
            ops.sort(key=lambda op: position[id(op)])
            _check_convex(ops, block.ops, label, names)
            pattern = "horizontal" if region.get("pattern") == "horizontal" else pattern_of(ops)
            fused = wrap_in_region(ops, pattern)
            fused.attributes.update(region.get("schedule", {}))
            position = {id(op): number for number, op in enumerate(block.ops)}


def _check_convex(ops: list[Operation], block_ops: list[Operation], label: str, names: dict[int, str]) -> None:
    """Fail unless no op outside ``ops`` both depends on one of them and feeds one of them (the region would
    have to run before and after it)."""
    inside = {id(op) for op in ops}
    downstream: set[int] = set()
    for op in block_ops:
        if id(op) in inside:
            continue
        if any(id(getattr(v, "op", None)) in inside or id(getattr(v, "op", None)) in downstream for v in op.operands):
            downstream.add(id(op))
    for op in ops:
        for value in op.operands:
            producer = getattr(value, "op", None)
            if id(producer) in downstream:
                between = names.get(id(producer), producer.name)
                raise PlanError(f"fusion plan region {label}: op {names[id(op)]} reads {between}, which itself "
                                "depends on the region; the region cannot run before and after it")
