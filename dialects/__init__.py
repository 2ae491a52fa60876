"""Dialects: op declarations of the tensor (graph), kernel (fused region), loop, arith and math levels."""

from . import arith, kernel, loop, math, tensor, vector  # noqa: F401  (importing registers the ops)
