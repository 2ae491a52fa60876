"""Lowering from fused tensor regions to the loop dialect; importing registers the passes."""

from . import expand_math, fuse_loops, interleave_loops, plan_buffers, plan_contractions, to_loops  # noqa: F401
