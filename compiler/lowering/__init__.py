"""Lowering from fused tensor regions to the loop dialect; importing registers the passes."""

from . import expand_math, plan_buffers, to_loops  # noqa: F401
