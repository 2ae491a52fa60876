"""Lowering rules: for each tensor op class, the scalar it computes at an output index.

A rule is ``rule(e, op, result_index, idx) -> scalar`` where ``e`` is the
``Emitter``, ``idx`` the output index (one index value per result dimension)
and operands are read with ``e.at(operand, index)``. Elementwise rules map
scalars; injective rules remap the index; reductions and compute ops open
reduction loops with ``e.reduce``. Because operands are read through
``e.at``, any producer fused into the same region is computed inline.

Rules are registered with ``@lowers(OpClass)``, one module per family of ops,
in the order of ``dialects/tensor.py``'s sections.
"""

from . import compute, data_movement, elementwise, grid_sample, opaque, reductions, resize  # noqa: F401 (registers)
from .reductions import row_fill
from .registry import Rule, lowers, rule_for

__all__ = ["Rule", "lowers", "row_fill", "rule_for"]
