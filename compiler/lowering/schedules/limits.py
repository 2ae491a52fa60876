"""Sizes that both fusion and lowering go by: a fused region's cost depends on how it will be scheduled."""

#: output columns per micro-kernel tile: a matmul's A element is read once per tile
COLUMN_TILE = 64
#: rows up to this many elements are computed once into a stack buffer (see lowering.emitter)
ROW_CACHE_LIMIT = 16384
#: largest block buffer, in elements (it lives on the kernel's stack)
BLOCK_LIMIT = 1 << 16
#: largest block written in place into the region's output, in elements: a block holds the rows that
#: share one pass over B, so a wide B (a vocabulary of 50257) is not streamed once per few rows
IN_PLACE_LIMIT = 1 << 22
