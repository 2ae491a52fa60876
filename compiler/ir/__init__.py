"""The IR core: values, operations, blocks, regions, types, attributes, text format."""

from .attributes import DenseAttr
from .core import (OP_REGISTRY, Block, BlockArgument, FuncOp, IRError, Module, Operation, OpResult,
                   Region, ReturnOp, SourcePos, Value, VerifyError)
from .parser import ParseError, parse_file, parse_module
from .printer import print_module, print_op
from .rewriter import Rewriter
from .types import DType, MemRefType, ScalarType, ShapedType, TensorType, Type, VectorType

__all__ = [
    "OP_REGISTRY", "Block", "BlockArgument", "DType", "DenseAttr", "FuncOp", "IRError", "MemRefType",
    "Module", "Operation", "OpResult", "ParseError", "Region", "ReturnOp", "Rewriter", "ScalarType", "ShapedType",
    "SourcePos", "TensorType", "Type", "Value", "VectorType", "VerifyError", "parse_file",
    "parse_module", "print_module", "print_op",
]
