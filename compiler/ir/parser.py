"""Parses the textual ``.fir`` format (grammar in ``grammar.lark``) into a Module.

Errors name ``file:line:column``, quote the offending line and say what was
expected. Every parsed op remembers its position so that a later verifier
error points back into the file.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from .attributes import DenseAttr
from .core import OP_REGISTRY, Block, FuncOp, IRError, Module, Operation, Region, SourcePos, Value
from .types import DType, MemRefType, ScalarType, TensorType, VectorType

_SHAPE_DTYPE = re.compile(r"((?:(?:[0-9]+|\?)x)*)([a-z0-9]+)")
_GRAMMAR = Path(__file__).with_name("grammar.lark")

_FRIENDLY = {
    "VALUE": "an SSA value (%name)", "OPNAME": "an op name (dialect.op)", "SYMBOL": "@name",
    "SHAPE_DTYPE": "a shape and dtype (2x3xf32)", "DTYPE": "a dtype", "STRING": "a string",
    "SIGNED_INT": "an integer", "SIGNED_FLOAT": "a float", "ATTR_NAME": "an attribute name",
    "LPAR": "'('", "RPAR": "')'", "LBRACE": "'{'", "RBRACE": "'}'", "LSQB": "'['", "RSQB": "']'",
    "COMMA": "','", "COLON": "':'", "EQUAL": "'='", "MORETHAN": "'>'", "LESSTHAN": "'<'",
    "FUNC": "'func'", "$END": "end of input", "CIRCUMFLEX": "'^'", "__ANON_0": "'->'",
}


class ParseError(IRError):
    """A syntax or semantic error at a position in a ``.fir`` text."""


@lru_cache(maxsize=1)
def _lark():
    from lark import Lark
    return Lark(_GRAMMAR.read_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True)


def parse_module(text: str, filename: str = "<string>") -> Module:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

    try:
        tree = _lark().parse(text)
    except UnexpectedInput as exc:
        line, column = getattr(exc, "line", 0) or 0, getattr(exc, "column", 0) or 0
        if isinstance(exc, UnexpectedToken):
            got = "end of input" if exc.token.type == "$END" else f"'{exc.token}'"
            expected = exc.expected
        elif isinstance(exc, UnexpectedCharacters):
            got = f"character '{text[exc.pos_in_stream]}'" if exc.pos_in_stream < len(text) else "end of input"
            expected = exc.allowed or set()
        elif isinstance(exc, UnexpectedEOF):
            got, expected = "end of input", exc.expected
            line = text.count("\n") + 1
        else:
            got, expected = "input", set()
        wanted = sorted({_FRIENDLY.get(name, name) for name in expected})
        message = f"unexpected {got}" + (f"; expected {', '.join(wanted)}" if wanted else "")
        raise ParseError(_at(text, filename, line, column, message)) from None
    return _Builder(text, filename).module(tree)


def parse_file(path: str | Path) -> Module:
    path = Path(path)
    return parse_module(path.read_text(), str(path))


def _at(text: str, filename: str, line: int, column: int, message: str) -> str:
    lines = text.splitlines()
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    caret = " " * max(column - 1, 0) + "^"
    return f"{filename}:{line}:{column}: error: {message}\n  {source}\n  {caret}"


class _Builder:
    """Turns the lark tree into IR, resolving SSA names scope by scope."""

    def __init__(self, text: str, filename: str):
        self.text = text
        self.filename = filename
        self.scopes: list[dict[str, Value]] = []
        self.resources: dict[str, np.ndarray | None] = {}
        self.dense_uses: list[tuple[DenseAttr, object]] = []
        self.resource_attrs: dict[str, DenseAttr] = {}

    def error(self, node, message: str) -> ParseError:
        meta = getattr(node, "meta", None)
        line = getattr(node, "line", None) or (meta.line if meta is not None and not meta.empty else 0)
        column = getattr(node, "column", None) or (meta.column if meta is not None and not meta.empty else 0)
        return ParseError(_at(self.text, self.filename, line, column, message))

    # --- structure --------------------------------------------------------------
    def module(self, tree) -> Module:
        funcs = [c for c in tree.children if c is not None and c.data == "func"]
        resources = [c for c in tree.children if c is not None and c.data == "resources"]
        if resources:
            self.read_resources(resources[0])
        module = Module([self.func(f) for f in funcs])
        for attr, node in self.dense_uses:
            if attr.resource not in self.resources:
                raise self.error(node, f"resource '{attr.resource}' is not defined in the resources section")
            data = self.resources[attr.resource]
            if data is not None:
                expected = attr.type.nbytes
                if len(data) != expected:
                    raise self.error(node, f"resource '{attr.resource}' holds {len(data)} bytes, "
                                           f"{attr.type} needs {expected}")
                attr.data = np.frombuffer(data, dtype=attr.type.dtype.numpy).reshape(attr.type.shape)
        return module

    def read_resources(self, node) -> None:
        for entry in node.children:
            if entry is None:
                continue
            name_tok, blob = entry.children
            if blob.type == "ELIDED":
                self.resources[str(name_tok)] = None
                continue
            hex_text = json.loads(str(blob))
            if not hex_text.startswith("0x"):
                raise self.error(blob, "a resource blob must be a hex string starting with 0x")
            try:
                self.resources[str(name_tok)] = bytes.fromhex(hex_text[2:])
            except ValueError:
                raise self.error(blob, "malformed hex in resource blob") from None

    def func(self, node) -> FuncOp:
        sym, *rest = node.children
        args, result_types, attrs, loc, ops = [], [], {}, None, []
        for child in rest:
            if child is None:
                continue
            kind = getattr(child, "data", None)
            if kind == "arg":
                args.append(child)
            elif kind == "func_attrs":
                attrs = self.attr_dict(child.children[0])
            elif kind in ("loc", "fused_loc"):
                loc = self.loc(child)
            elif kind == "op":
                ops.append(child)
            else:
                result_types.append(self.type(child))
        func = FuncOp(str(sym)[1:], [self.type(a.children[1]) for a in args], result_types,
                      [str(a.children[0])[1:] for a in args], attrs, loc)
        func.source = self.pos(node)
        self.scopes = [{}]
        for arg_node, arg in zip(args, func.args):
            self.define(arg_node.children[0], arg)
        for op_node in ops:
            func.body.append(self.op(op_node))
        self.scopes = []
        return func

    def pos(self, node) -> SourcePos:
        return SourcePos(self.filename, node.meta.line, node.meta.column)

    def define(self, token, value: Value) -> None:
        name = str(token)[1:]
        if any(name in scope for scope in self.scopes):
            raise self.error(token, f"redefinition of SSA value %{name}")
        value.name_hint = name
        self.scopes[-1][name] = value

    def lookup(self, token) -> Value:
        name = str(token)[1:]
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        raise self.error(token, f"use of undefined value %{name}")

    def op(self, node) -> Operation:
        children = [c for c in node.children if c is not None]
        results = []
        while children and getattr(children[0], "type", None) == "VALUE":
            results.append(children.pop(0))
        name_tok = children.pop(0)
        operands = []
        while children and getattr(children[0], "type", None) == "VALUE":
            operands.append(self.lookup(children.pop(0)))
        attrs, regions, types, loc = {}, [], [], None
        for child in children:
            kind = getattr(child, "data", None)
            if kind == "attr_dict":
                attrs = self.attr_dict(child)
            elif kind == "regions":
                regions = [self.region(r) for r in child.children]
            elif kind in ("loc", "fused_loc"):
                loc = self.loc(child)
            else:
                types.append(self.type(child))
        name = str(name_tok)
        cls = OP_REGISTRY.get(name)
        if cls is None:
            raise self.error(name_tok, f"unknown operation '{name}'")
        if len(types) != len(results):
            raise self.error(name_tok, f"'{name}' defines {len(results)} values but lists {len(types)} result types")
        op = cls.create(operands, types, attrs, regions, loc)
        op.source = self.pos(node)
        for token, result in zip(results, op.results):
            self.define(token, result)
        return op

    def region(self, node) -> Region:
        block = Block()
        self.scopes.append({})
        for child in node.children:
            if child is None:
                continue
            if child.data == "block_args":
                for arg_node in (a for a in child.children if a is not None):
                    self.define(arg_node.children[0], block.add_arg(self.type(arg_node.children[1])))
            else:
                block.append(self.op(child))
        self.scopes.pop()
        return Region([block])

    @staticmethod
    def loc(node):
        names = [json.loads(str(c)) for c in node.children]
        return names if node.data == "fused_loc" else names[0]

    # --- attributes and types ---------------------------------------------------
    def attr_dict(self, node) -> dict:
        attrs = {}
        for entry in node.children:
            if entry is None:
                continue
            key, value = entry.children
            if str(key) in attrs:
                raise self.error(key, f"attribute '{key}' is given twice")
            attrs[str(key)] = self.attr(value)
        return attrs

    def attr(self, node):
        kind = node.data if hasattr(node, "data") else None
        if kind == "int":
            return int(node.children[0])
        if kind == "float":
            return float(node.children[0])
        if kind == "string":
            return json.loads(str(node.children[0]))
        if kind in ("true", "false"):
            return kind == "true"
        if kind in ("inf", "neg_inf", "nan"):
            return {"inf": math.inf, "neg_inf": -math.inf, "nan": math.nan}[kind]
        if kind == "list":
            return [self.attr(c) for c in node.children if c is not None]
        if kind == "type_attr":
            parsed = self.type(node.children[0])
            return parsed.dtype if isinstance(parsed, ScalarType) else parsed
        if kind == "dense":
            return self.dense(node)
        if kind == "dense_resource":
            name, ttype = str(node.children[0]), self.type(node.children[1])
            shared = self.resource_attrs.get(name)
            if shared is not None:
                if shared.type != ttype:
                    raise self.error(node, f"resource '{name}' is used as {shared.type} and as {ttype}")
                return shared
            attr = DenseAttr(None, ttype, name)
            self.resource_attrs[name] = attr
            self.dense_uses.append((attr, node))
            return attr
        raise self.error(node, f"unsupported attribute form '{kind}'")

    def dense(self, node) -> DenseAttr:
        value_node, type_node = node.children
        ttype = self.type(type_node)
        if not ttype.is_static:
            raise self.error(type_node, "a dense constant needs a static shape")
        value = self.attr(value_node)
        flat = value if isinstance(value, list) else [value]
        if any(isinstance(v, list) for v in flat):
            raise self.error(value_node, "dense values are written as one flat list")
        count = ttype.num_elements
        if len(flat) == 1:
            flat = flat * count
        if len(flat) != count:
            raise self.error(value_node, f"dense literal has {len(flat)} values but {ttype} needs {count}")
        if not ttype.dtype.is_float and any(isinstance(v, float) for v in flat):
            raise self.error(value_node, f"dense values of {ttype.dtype} must be integers")
        try:
            data = np.array(flat, dtype=ttype.dtype.numpy).reshape(ttype.shape)
        except (OverflowError, ValueError) as exc:
            raise self.error(value_node, f"dense values do not fit {ttype.dtype}: {exc}") from None
        return DenseAttr(data, ttype)

    def type(self, node):
        kind = node.data
        if kind == "scalar_type":
            return ScalarType(DType(str(node.children[0])))
        match = _SHAPE_DTYPE.fullmatch(str(node.children[0]))
        dims, dtype = match.group(1).split("x")[:-1], match.group(2)
        shape = tuple(None if d == "?" else int(d) for d in dims)
        cls = {"tensor_type": TensorType, "memref_type": MemRefType, "vector_type": VectorType}[kind]
        return cls(shape, DType(dtype))
