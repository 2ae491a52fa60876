"""The table of lowering rules, keyed by op class."""

from __future__ import annotations

from typing import Callable

from fusecc.ir.core import Operation, Value

from ..emitter import Emitter

#: ``rule(e, op, result_index, idx) -> scalar``: the element of result ``result_index`` at output index ``idx``
Rule = Callable[[Emitter, Operation, int, list[Value]], Value]

_RULES: dict[type, Rule] = {}


def lowers(*op_classes: type):
    """Register the decorated function as the lowering rule of each of ``op_classes``."""
    def register(fn: Rule) -> Rule:
        for op_class in op_classes:
            if op_class in _RULES:
                raise ValueError(f"{op_class.name} has two lowering rules")
            _RULES[op_class] = fn
        return fn
    return register


def rule_for(op: Operation) -> Rule | None:
    """The lowering rule of ``op``'s class, or None when it has none."""
    return _RULES.get(type(op))
