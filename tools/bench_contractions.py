"""Benchmark contractions in the layouts exporters write: fusecc vs ONNX Runtime, one thread, interleaved, medians.

    python -m fusecc.tools.bench_contractions [--repeat 50]

Cases: ``nn.Linear`` MLPs (Gemm with transB=1) at batch 32 and 1, a BERT projection into heads
(MatMul, bias, Reshape, Transpose), the same MLP in float16. Prints median latencies and fusecc/ORT
(below 1 means fusecc is faster), and for float16 the largest error of each against float64.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from . import models
from .bench_fusion import _ort_session, interleaved_medians


def _inputs(model, rng) -> dict:
    from onnx import helper
    feeds = {}
    for value in model.graph.input:
        shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        feeds[value.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def bench(name: str, model, repeat: int) -> dict:
    import fusecc

    feeds = _inputs(model, np.random.default_rng(0))
    start = time.perf_counter()
    compiled = fusecc.compile(model, cache=False)  # the compile time of a cold compile
    compile_seconds = time.perf_counter() - start
    session = _ort_session(model)
    ours, theirs = compiled.run(feeds)[0], session.run(None, feeds)[0]
    tolerance = 1e-2 if ours.dtype == np.float16 else 1e-4
    np.testing.assert_allclose(ours.astype(np.float32), theirs.astype(np.float32), rtol=tolerance, atol=tolerance,
                               err_msg=name)
    engines = {"fusecc": lambda: compiled.run(feeds), "ort": lambda: session.run(None, feeds)}
    return {"name": name, "kernels": len(compiled.kernels), "compile": compile_seconds,
            **interleaved_medians(engines, repeat)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args(argv)
    cases = [("nn.Linear MLP 784-1024-1024-10, batch 32", models.linear_mlp(32)),
             ("nn.Linear MLP 784-1024-1024-10, batch 1", models.linear_mlp(1)),
             ("BERT projection into 12 heads, 128x768", models.projection_into_heads()),
             ("nn.Linear MLP float16, batch 32", models.linear_mlp(32, dtype=np.float16))]
    header = f"{'case':<42} {'kernels':>7} {'compile s':>9} {'fusecc ms':>10} {'ORT ms':>8} {'fusecc/ORT':>10}"
    print(header)
    print("-" * len(header))
    for name, model in cases:
        r = bench(name, model, args.repeat)
        print(f"{name:<42} {r['kernels']:>7} {r['compile']:>9.2f} {1e3 * r['fusecc']:>10.3f} {1e3 * r['ort']:>8.3f} "
              f"{r['fusecc'] / r['ort']:>9.2f}x")


if __name__ == "__main__":
    main()
