"""The generic IR: SSA values, operations, blocks, regions, functions, modules.

Every dialect op is a subclass of ``Operation`` that declares its ``name`` once;
subclasses register themselves so the parser can build them by name. An
operation owns its results, refers to its operands (use lists are kept so values
can be replaced everywhere), carries attributes, and may hold regions of blocks
of operations (a fused region is an op holding the ops it fuses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Iterator

from .types import Type


class IRError(Exception):
    """An error about a specific place in the IR."""


class VerifyError(IRError):
    """Raised by ``Operation.verify`` naming the op and where it comes from."""

    def __init__(self, op: "Operation | None", message: str):
        self.op = op
        where = op.describe() if op is not None else "module"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class SourcePos:
    """Where an op was parsed from; used in diagnostics, never printed."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class Value:
    """An SSA value: an op result or a block argument."""

    __slots__ = ("type", "name_hint", "uses")

    def __init__(self, type: Type, name_hint: str | None = None):
        self.type = type
        self.name_hint = name_hint
        self.uses: list[tuple[Operation, int]] = []

    @property
    def owner(self) -> "Operation | Block":
        raise NotImplementedError

    def replace_all_uses_with(self, other: "Value") -> None:
        for op, index in list(self.uses):
            op.set_operand(index, other)

    @property
    def users(self) -> list["Operation"]:
        seen, ordered = set(), []
        for op, _ in self.uses:
            if id(op) not in seen:
                seen.add(id(op))
                ordered.append(op)
        return ordered


class OpResult(Value):
    __slots__ = ("op", "index")

    def __init__(self, type: Type, op: "Operation", index: int):
        super().__init__(type)
        self.op = op
        self.index = index

    @property
    def owner(self) -> "Operation":
        return self.op


class BlockArgument(Value):
    __slots__ = ("block", "index")

    def __init__(self, type: Type, block: "Block", index: int, name_hint: str | None = None):
        super().__init__(type, name_hint)
        self.block = block
        self.index = index

    @property
    def owner(self) -> "Block":
        return self.block


OP_REGISTRY: dict[str, type["Operation"]] = {}


class Operation:
    """Base of every op. Subclasses set ``name`` and override ``verify_``."""

    name: ClassVar[str] = ""
    #: number of operands, or None for any number
    num_operands: ClassVar[int | None] = None
    num_results: ClassVar[int | None] = 1
    num_regions: ClassVar[int] = 0
    #: whether the op does more than compute its results (writes memory, calls, terminates)
    side_effects: ClassVar[bool] = False
    #: its result depends on more than its operands and attributes (a new buffer, or a read of memory
    #: that may have changed), so two of them are never merged
    fresh_each_time: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            OP_REGISTRY[cls.name] = cls

    def __init__(self, operands=(), result_types=(), attributes=None, regions=(),
                 loc: str | list[str] | None = None):
        self.operands: list[Value] = []
        for value in operands:
            self._append_operand(value)
        self.results = [OpResult(t, self, i) for i, t in enumerate(result_types)]
        self.attributes: dict[str, object] = dict(attributes or {})
        self.regions: list[Region] = []
        for region in regions:
            self.add_region(region)
        self.parent: Block | None = None
        self.loc = loc
        self.source: SourcePos | None = None

    @classmethod
    def create(cls, operands=(), result_types=(), attributes=None, regions=(), loc=None):
        """Build an op of this class from its generic parts (used by the parser)."""
        op = cls.__new__(cls)
        Operation.__init__(op, operands, result_types, attributes, regions, loc)
        return op

    # --- operands and results -------------------------------------------------
    def _append_operand(self, value: Value) -> None:
        if not isinstance(value, Value):
            raise TypeError(f"operand of {self.name} must be a Value, got {type(value).__name__}")
        value.uses.append((self, len(self.operands)))
        self.operands.append(value)

    def set_operand(self, index: int, value: Value) -> None:
        old = self.operands[index]
        old.uses.remove((self, index))
        value.uses.append((self, index))
        self.operands[index] = value

    def drop_operands(self) -> None:
        for index, value in enumerate(self.operands):
            value.uses.remove((self, index))
        self.operands = []

    @property
    def result(self) -> OpResult:
        if len(self.results) != 1:
            raise IRError(f"{self.name} has {len(self.results)} results, not one")
        return self.results[0]

    def add_region(self, region: "Region") -> "Region":
        region.parent = self
        self.regions.append(region)
        return region

    def attr(self, key: str, default=None):
        return self.attributes.get(key, default)

    # --- structure ------------------------------------------------------------
    def walk(self) -> Iterator["Operation"]:
        """This op and every op nested in its regions, pre-order."""
        yield self
        for region in self.regions:
            for block in region.blocks:
                for op in list(block.ops):
                    yield from op.walk()

    def erase(self) -> None:
        """Remove this op from its block; its results must be unused."""
        for result in self.results:
            if result.uses:
                raise IRError(f"cannot erase {self.describe()}: result still used")
        for nested in list(self.walk())[1:]:
            nested.drop_operands()
        self.drop_operands()
        if self.parent is not None:
            self.parent.ops.remove(self)
            self.parent = None

    def describe(self) -> str:
        where = []
        if self.loc:
            from .printer import format_loc
            where.append(format_loc(self.loc))
        if self.source is not None:
            where.append(str(self.source))
        return f"'{self.name}' op" + (f" at {', '.join(where)}" if where else "")

    # --- verification ---------------------------------------------------------
    def verify(self) -> None:
        """Check arity, then the op's own rules (``verify_``)."""
        if self.num_operands is not None and len(self.operands) != self.num_operands:
            raise VerifyError(self, f"expected {self.num_operands} operands, got {len(self.operands)}")
        if self.num_results is not None and len(self.results) != self.num_results:
            raise VerifyError(self, f"expected {self.num_results} results, got {len(self.results)}")
        if len(self.regions) != self.num_regions:
            raise VerifyError(self, f"expected {self.num_regions} regions, got {len(self.regions)}")
        self.verify_()

    def verify_(self) -> None:
        """Op-specific checks; raise ``VerifyError(self, ...)``."""

    def error(self, message: str) -> VerifyError:
        return VerifyError(self, message)

    def __repr__(self) -> str:
        return f"<{self.name} {self.loc or ''}>"


class Block:
    """A list of operations with typed arguments."""

    def __init__(self, arg_types=(), arg_names=None):
        names = list(arg_names or [None] * len(arg_types))
        self.args = [BlockArgument(t, self, i, n) for i, (t, n) in enumerate(zip(arg_types, names))]
        self.ops: list[Operation] = []
        self.parent: Region | None = None

    def append(self, op: Operation) -> Operation:
        op.parent = self
        self.ops.append(op)
        return op

    def insert_before(self, anchor: Operation, op: Operation) -> Operation:
        op.parent = self
        self.ops.insert(self.ops.index(anchor), op)
        return op

    def add_arg(self, type: Type, name: str | None = None) -> BlockArgument:
        arg = BlockArgument(type, self, len(self.args), name)
        self.args.append(arg)
        return arg


class Region:
    """An op's nested code: one or more blocks (the dialects here use one)."""

    def __init__(self, blocks=()):
        self.blocks: list[Block] = []
        self.parent: Operation | None = None
        for block in blocks:
            self.add_block(block)

    def add_block(self, block: Block) -> Block:
        block.parent = self
        self.blocks.append(block)
        return block

    @property
    def block(self) -> Block:
        return self.blocks[0]


class FuncOp(Operation):
    """A function: named, with a signature and one body region.

    Graph functions take and return tensors; kernel functions produced by
    lowering take buffers and return nothing.
    """

    name = "func.func"
    num_operands = 0
    num_results = 0
    num_regions = 1

    def __init__(self, sym_name: str, arg_types=(), result_types=(), arg_names=None,
                 attributes=None, loc=None):
        super().__init__((), (), attributes, [Region([Block(arg_types, arg_names)])], loc)
        self.sym_name = sym_name
        self.result_types = list(result_types)

    @property
    def body(self) -> Block:
        return self.regions[0].block

    @property
    def args(self) -> list[BlockArgument]:
        return self.body.args

    @property
    def return_op(self) -> Operation:
        return self.body.ops[-1]

    def verify_(self) -> None:
        if not self.body.ops or not isinstance(self.body.ops[-1], ReturnOp):
            raise VerifyError(self, f"function @{self.sym_name} must end with func.return")
        returned = [v.type for v in self.return_op.operands]
        if returned != self.result_types:
            raise VerifyError(self.return_op, f"returns {', '.join(map(str, returned))} but @{self.sym_name} "
                                              f"declares {', '.join(map(str, self.result_types))}")


class ReturnOp(Operation):
    """Ends a function, returning its operands."""

    name = "func.return"
    num_results = 0
    side_effects = True


class Module:
    """A list of functions; ``main`` is the model's graph."""

    def __init__(self, funcs=()):
        self.funcs: list[FuncOp] = list(funcs)

    def get(self, sym_name: str) -> FuncOp:
        for func in self.funcs:
            if func.sym_name == sym_name:
                return func
        raise IRError(f"the module has no function @{sym_name}")

    @property
    def main(self) -> FuncOp:
        return self.get("main")

    def walk(self) -> Iterator[Operation]:
        for func in self.funcs:
            yield from func.walk()

    def verify(self) -> None:
        from .verifier import verify_module
        verify_module(self)
