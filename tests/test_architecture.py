"""Where facts about ops live: on the op classes, never in name strings scattered through passes and lowering."""

import ast
import pathlib

import pytest

from fusecc.dialects import tensor
from fusecc.lowering.rules import lowers, rule_for

COMPILER = pathlib.Path(tensor.__file__).resolve().parents[1] / "compiler"
SOURCES = sorted(COMPILER.rglob("*.py"))


#: dialects whose every op is a class of its own (arith and math ops are built by name in the Emitter)
CLASS_DIALECTS = ("tensor.", "kernel.", "loop.", "vector.", "func.")


def _name_tests(tree: ast.AST):
    """String literals naming a tensor op, and comparisons of a ``name`` with the name of an op that
    has a class of its own."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("tensor."):
            yield node.lineno, repr(node.value)
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute) and node.left.attr == "name" \
                and any(isinstance(c, ast.Constant) and str(c.value).startswith(CLASS_DIALECTS)
                        for c in node.comparators):
            yield node.lineno, ast.unparse(node)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(COMPILER)))
def test_the_compiler_names_no_op_by_string(path):
    found = [f"{path.name}:{line}: {text}" for line, text in _name_tests(ast.parse(path.read_text()))]
    assert not found, "use the op class (isinstance, a class attribute or a trait) instead of its name:\n" + \
        "\n".join(found)


def test_the_name_check_finds_a_name_test():
    source = 'if op.name == "loop.for" or p.name in passes:\n    x = "tensor.gemm"\n'
    assert [line for line, _ in _name_tests(ast.parse(source))] == [1, 2]


def _concrete_tensor_ops():
    return [cls for cls in vars(tensor).values() if isinstance(cls, type) and issubclass(cls, tensor.TensorOp)
            and str(vars(cls).get("name", "")).startswith("tensor.")]


def test_every_tensor_op_has_a_lowering_rule():
    folded_before_lowering = {tensor.ShapeOp}  # fold-constants replaces it with its (static) shape
    missing = [cls.__name__ for cls in _concrete_tensor_ops() if rule_for(cls.create([], [])) is None
               and cls not in folded_before_lowering]
    assert not missing


def test_an_op_class_takes_one_lowering_rule():
    with pytest.raises(ValueError, match="tensor.relu has two lowering rules"):
        lowers(tensor.ReluOp)(lambda e, op, result_index, idx: None)
