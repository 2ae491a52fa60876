"""Benchmark contractions: fusecc vs ONNX Runtime, on as many threads each (one by default), medians.

    python -m fusecc.tools.bench_contractions [--repeat 50] [--cases sgemm,layouts,shapes,models,convs] [--threads 1]

Groups of cases:

* ``sgemm``: square SGEMM of two run-time matrices, 1024^3 and 2048^3;
* ``layouts``: Gemm 512^3 of two run-time matrices in each of the NN, NT, TN and TT layouts;
* ``shapes``: M x K x N products of a run-time activation and a constant weight, in the shapes real
  models have (batch-1 GEMV, BERT, ViT, GPT-2, an MLP), a batched attention product, and float16;
* ``models``: ``nn.Linear`` MLPs (Gemm with transB=1) at batch 32 and 1, a BERT projection into
  heads (MatMul, bias, Reshape, Transpose), the same MLP in float16;
* ``convs``: Conv+Relu in ResNet-50's shapes, its pointwise (1x1) and 3x3 convs at each plane size.

Prints median latencies, fusecc/ORT (below 1 means fusecc is faster) and fusecc's GFLOP/s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from . import models
from .bench_fusion import _ort_session, engine_medians


def _inputs(model, rng) -> dict:
    from onnx import helper
    feeds = {}
    for value in model.graph.input:
        shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        feeds[value.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def bench(name: str, model, repeat: int, threads: int = 1) -> dict:
    import fusecc

    feeds = _inputs(model, np.random.default_rng(0))
    start = time.perf_counter()
    compiled = fusecc.compile(model, cache=False, threads=threads)  # the compile time of a cold compile
    compile_seconds = time.perf_counter() - start
    session = _ort_session(model, threads)
    ours, theirs = compiled.run(feeds)[0], session.run(None, feeds)[0]
    # rounding errors grow with the sums' magnitude: the absolute tolerance follows the largest result
    tolerance = 1e-2 if ours.dtype == np.float16 else 1e-4
    scale = max(1.0, float(np.abs(theirs.astype(np.float32)).max()))
    np.testing.assert_allclose(ours.astype(np.float32), theirs.astype(np.float32), rtol=tolerance,
                               atol=tolerance * scale, err_msg=name)
    engines = {"fusecc": lambda: compiled.run(feeds), "ort": lambda: session.run(None, feeds)}
    return {"name": name, "kernels": len(compiled.kernels), "compile": compile_seconds,
            **engine_medians(engines, repeat, threads)}


#: M x K x N of activation @ constant weight, as in batch-1 inference, BERT-base, ViT-tiny, GPT-2 and an MLP
SHAPES = ((1, 768, 768), (8, 768, 3072), (128, 768, 768), (128, 3072, 768), (197, 192, 576), (64, 768, 2304),
          (32, 784, 1024))


#: input channels, output channels, plane size and kernel size of ResNet-50's stride-1 convs
CONVS = ((64, 64, 56, 1), (64, 256, 56, 1), (256, 64, 56, 1), (64, 64, 56, 3), (512, 128, 28, 1), (128, 512, 28, 1),
         (128, 128, 28, 3), (1024, 256, 14, 1), (256, 1024, 14, 1), (256, 256, 14, 3), (2048, 512, 7, 1),
         (512, 2048, 7, 1), (512, 512, 7, 3))


def cases(groups: set[str]) -> list[tuple[str, object, float]]:
    """(name, model, floating-point operations per run) of the groups asked for."""
    found = []
    if "sgemm" in groups:
        for size in (1024, 2048):
            found.append((f"SGEMM {size}^3", models.matmul(size, size, size), 2.0 * size ** 3))
    if "layouts" in groups:
        for trans_a, trans_b in ((0, 0), (0, 1), (1, 0), (1, 1)):
            layout = "NT"[trans_a] + "NT"[trans_b]
            found.append((f"Gemm 512^3 {layout}", models.gemm(512, 512, 512, trans_a, trans_b), 2.0 * 512 ** 3))
    if "shapes" in groups:
        for m, k, n in SHAPES:
            found.append((f"{m}x{k}x{n} @ weight", models.matmul(m, k, n, weight=True), 2.0 * m * k * n))
        found.append(("batched 12x128x64 @ 12x64x128", models.batched_matmul(12, 128, 64, 128), 2.0 * 12 * 128 * 64 * 128))
        found.append(("float16 128x512x512 @ weight", models.matmul(128, 512, 512, weight=True, dtype=np.float16),
                      2.0 * 128 * 512 * 512))
    if "convs" in groups:
        for cin, cout, size, kernel in CONVS:
            found.append((f"conv {kernel}x{kernel} {cin}->{cout} {size}x{size}",
                          models.conv_relu(cin, cout, size, kernel), 2.0 * cin * cout * kernel * kernel * size * size))
    if "models" in groups:
        found += [("nn.Linear MLP 784-1024-1024-10, batch 32", models.linear_mlp(32), models.mlp_flops(32)),
                  ("nn.Linear MLP 784-1024-1024-10, batch 1", models.linear_mlp(1), models.mlp_flops(1)),
                  ("BERT projection into 12 heads, 128x768", models.projection_into_heads(), 2.0 * 128 * 768 * 768),
                  ("nn.Linear MLP float16, batch 32", models.linear_mlp(32, dtype=np.float16), models.mlp_flops(32))]
    return found


GROUPS = ("sgemm", "layouts", "shapes", "models", "convs")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--cases", default=",".join(GROUPS), help=f"groups of cases, from {', '.join(GROUPS)}")
    parser.add_argument("--threads", type=int, default=1, help="threads of each engine")
    args = parser.parse_args(argv)
    groups = set(args.cases.split(","))
    unknown = groups - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups {sorted(unknown)}; choose from {', '.join(GROUPS)}")
    header = (f"{'case':<42} {'kernels':>7} {'compile s':>9} {'fusecc ms':>10} {'ORT ms':>8} {'fusecc/ORT':>10} "
              f"{'GFLOP/s':>8}")
    print(header)
    print("-" * len(header))
    for name, model, flops in cases(groups):
        r = bench(name, model, args.repeat, args.threads)
        print(f"{name:<42} {r['kernels']:>7} {r['compile']:>9.2f} {1e3 * r['fusecc']:>10.3f} {1e3 * r['ort']:>8.3f} "
              f"{r['fusecc'] / r['ort']:>9.2f}x {flops / r['fusecc'] / 1e9:>8.1f}")


if __name__ == "__main__":
    main()
