"""Prints a module in the textual ``.fir`` format that ``parser`` reads back.

``print(parse(text)) == text`` for any text this printer wrote. The one
generic op syntax is

    %r = dialect.op(%a, %b) {key = value} ({ ^(%i: index): ... }) : type loc("node")

Large constants print as ``dense_resource<name>``; their bytes go to a trailing
``{-# resources: ... #-}`` section, or are elided (``elide_resources=True``,
the default for debugging dumps) so that weights never flood a dump.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

from .attributes import DenseAttr
from .core import Block, FuncOp, Module, Operation, Value
from .types import DType, Type

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*|[0-9]+")


def print_module(module: Module, elide_resources: bool = False) -> str:
    printer = Printer()
    text = "\n".join(printer.func(f) for f in module.funcs)
    if printer.resources:
        text += "\n" + printer.resource_section(elide_resources)
    return text


def print_op(op: Operation) -> str:
    """One op on its own (as in diagnostics); operands named by their hints."""
    printer = Printer()
    printer.names = _Namer([])
    return printer.op(op, 0)


class _Namer:
    """Assigns each SSA value of a function a unique printed name."""

    def __init__(self, values: list[Value]):
        self.names: dict[int, str] = {}
        self.taken: set[str] = set()
        for value in values:
            hint = value.name_hint
            if hint and _NAME_RE.fullmatch(hint) and hint not in self.taken:
                self.names[id(value)] = hint
                self.taken.add(hint)
        self.counter = 0

    def __call__(self, value: Value) -> str:
        name = self.names.get(id(value))
        if name is None:
            while str(self.counter) in self.taken:
                self.counter += 1
            name = str(self.counter)
            self.taken.add(name)
            self.names[id(value)] = name
        return "%" + name


def _function_values(func: FuncOp) -> list[Value]:
    values: list[Value] = []

    def block(b: Block):
        values.extend(b.args)
        for op in b.ops:
            values.extend(op.results)
            for region in op.regions:
                for nested in region.blocks:
                    block(nested)

    block(func.body)
    return values


def format_loc(loc: str | list[str]) -> str:
    """``loc("node")``, or ``loc(fused["a", "b"])`` for an op standing for several source nodes."""
    if isinstance(loc, list):
        return "loc(fused[" + ", ".join(json.dumps(name) for name in loc) + "])"
    return f"loc({json.dumps(loc)})"


def loc_names(loc: str | list[str] | None) -> list[str]:
    """The source node names behind a location."""
    if loc is None:
        return []
    return list(loc) if isinstance(loc, list) else [loc]


def format_float(value: float, dtype: DType = DType.F64) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if dtype is DType.F32:
        text = str(np.float32(value))
    elif dtype is DType.F16:
        text = str(np.float16(value))
    else:
        text = repr(float(value))
    if not any(c in text for c in ".en"):
        text += ".0"
    return text


def format_attr(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return format_float(float(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, DType):
        return str(value)
    if isinstance(value, Type):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_attr(v) for v in value) + "]"
    if isinstance(value, DenseAttr):
        return format_dense(value)
    raise TypeError(f"cannot print attribute value of type {type(value).__name__}")


def _format_element(value, dtype: DType) -> str:
    if dtype is DType.I1:
        return "true" if value else "false"
    if dtype.is_float:
        return format_float(float(value), dtype)
    return str(int(value))


def format_dense(attr: DenseAttr) -> str:
    if attr.resource is not None:
        return f"dense_resource<{attr.resource}> : {attr.type}"
    flat = attr.value.ravel()
    dtype = attr.type.dtype
    if flat.size >= 1 and flat.tobytes() == flat[:1].tobytes() * flat.size:
        body = _format_element(flat[0], dtype)
    else:
        body = "[" + ", ".join(_format_element(v, dtype) for v in flat) + "]"
    return f"dense<{body}> : {attr.type}"


class Printer:
    def __init__(self):
        self.names: _Namer | None = None
        self.resources: dict[str, DenseAttr] = {}

    def value(self, value: Value) -> str:
        return self.names(value)

    def attrs(self, attributes: dict) -> str:
        if not attributes:
            return ""
        for value in attributes.values():
            self._collect_resources(value)
        return "{" + ", ".join(f"{k} = {format_attr(v)}" for k, v in attributes.items()) + "}"

    def _collect_resources(self, value) -> None:
        if isinstance(value, DenseAttr) and value.resource is not None:
            known = self.resources.setdefault(value.resource, value)
            if known is not value and known != value:
                raise ValueError(f"two different constants share the resource name '{value.resource}'")
        elif isinstance(value, (list, tuple)):
            for item in value:
                self._collect_resources(item)

    def func(self, func: FuncOp) -> str:
        self.names = _Namer(_function_values(func))
        args = ", ".join(f"{self.value(a)}: {a.type}" for a in func.args)
        results = ", ".join(str(t) for t in func.result_types)
        header = f"func @{func.sym_name}({args}) -> ({results})"
        if func.attributes:
            header += " attributes " + self.attrs(func.attributes)
        if func.loc:
            header += " " + format_loc(func.loc)
        lines = [header + " {"]
        lines.extend(self.op(op, 1) for op in func.body.ops)
        lines.append("}")
        return "\n".join(lines) + "\n"

    def op(self, op: Operation, depth: int) -> str:
        pad = "  " * depth
        text = pad
        if op.results:
            text += ", ".join(self.value(r) for r in op.results) + " = "
        text += f"{op.name}(" + ", ".join(self.value(v) for v in op.operands) + ")"
        if op.attributes:
            text += " " + self.attrs(op.attributes)
        if op.regions:
            text += " (" + ", ".join(self.region(r.block, depth) for r in op.regions) + ")"
        if op.results:
            text += " : " + ", ".join(str(r.type) for r in op.results)
        if op.loc:
            text += " " + format_loc(op.loc)
        return text

    def region(self, block: Block, depth: int) -> str:
        lines = ["{"]
        if block.args:
            lines.append("  " * depth + "^(" + ", ".join(f"{self.value(a)}: {a.type}" for a in block.args) + "):")
        lines.extend(self.op(op, depth + 1) for op in block.ops)
        lines.append("  " * depth + "}")
        return "\n".join(lines)

    def resource_section(self, elide: bool) -> str:
        lines = ["{-# resources: {"]
        entries = []
        for name, attr in self.resources.items():
            if elide or attr.data is None:
                entries.append(f"  {name}: __elided__")
            else:
                entries.append(f'  {name}: "0x{attr.data.tobytes().hex()}"')
        lines.append(",\n".join(entries))
        lines.append("} #-}")
        return "\n".join(lines) + "\n"
