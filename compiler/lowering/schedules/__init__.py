"""How a compute op's loops are scheduled: a block of rows at a time on the GEMM micro-kernel
(``blocks``), a row at a time with the reduction outside a contiguous loop (``rows``) or in vector
registers (``window_rows``); ``limits`` holds the sizes fusion's cost model shares with them."""
