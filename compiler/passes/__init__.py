"""Passes over the IR; importing this package registers every pass by name."""

from . import (apply_plan, blocked_convs, contraction_layout, cse, dce, decompose, fold_batchnorm,  # noqa: F401
               fold_constants, fuse, outline, pad_conv_inputs, recognize_gelu, shape_inference, space_to_depth_convs)
from .manager import PASS_REGISTRY, Instrumentation, Pass, PassError, PassManager, parse_pipeline

__all__ = ["PASS_REGISTRY", "Instrumentation", "Pass", "PassError", "PassManager", "parse_pipeline"]
