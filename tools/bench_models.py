"""Benchmark the ONNX light models: fusecc vs ONNX Runtime, on as many threads each, medians.

    python -m fusecc.tools.bench_models [--repeat 20] [--models resnet50,inception_v1] [--threads 1,2]

Each model is compiled once and run at every thread count asked for, ORT with as many intra-op threads. On one
thread the two take turns run by run; on several, block by block (``bench_fusion.engine_medians``).

Prints per model: kernels, compile time, median latencies and fusecc/ORT
(below 1 means fusecc is faster).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import onnx

MODELS = ("squeezenet", "resnet50", "inception_v1", "inception_v2", "densenet121", "shufflenet", "bvlc_alexnet",
          "zfnet512", "vgg19")


def light_model_path(name: str) -> str:
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", f"light_{name}.onnx")


def bench(name: str, repeat: int, thread_counts: list[int]) -> list[dict]:
    """One row per thread count: kernels, compile time (a cold compile), median seconds of fusecc and ORT."""
    import fusecc
    from fusecc.tools.bench_fusion import _ort_session, engine_medians

    path = light_model_path(name)
    start = time.perf_counter()
    compiled = fusecc.compile(path, cache=False)
    compile_seconds = time.perf_counter() - start
    spec = compiled.inputs[0]
    feeds = {spec.name: np.random.default_rng(0).standard_normal(spec.shape).astype(spec.dtype)}
    rows = []
    for threads in thread_counts:
        session = _ort_session(onnx.load(path), threads)
        expected = session.run(None, feeds)[0]
        got = compiled.run(feeds, threads=threads)[0]
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5, err_msg=name)
        medians = engine_medians({"fusecc": lambda: compiled.run(feeds, threads=threads),
                                  "ort": lambda: session.run(None, feeds)}, repeat, threads)
        rows.append({"name": name, "threads": threads, "kernels": len(compiled.kernels), "compile": compile_seconds,
                     **medians})
        del session
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--models", default=",".join(MODELS[:5]))
    parser.add_argument("--threads", default="1", help="thread counts of each engine, e.g. 1,2 (default 1)")
    args = parser.parse_args(argv)
    try:
        thread_counts = [int(part) for part in args.threads.split(",")]
    except ValueError:
        parser.error(f"--threads takes thread counts separated by commas, e.g. 1,2; got {args.threads!r}")
    if any(count < 1 for count in thread_counts):
        parser.error("--threads: each count must be 1 or more")
    header = (f"{'model':<14} {'threads':>7} {'kernels':>7} {'compile s':>9} {'fusecc ms':>10} {'ORT ms':>8} "
              f"{'fusecc/ORT':>10} {'speedup':>8}")
    print(header)
    print("-" * len(header))
    for name in args.models.split(","):
        rows = bench(name.strip(), args.repeat, thread_counts)
        for r in rows:
            speedup = rows[0]["fusecc"] / r["fusecc"]
            print(f"{r['name']:<14} {r['threads']:>7} {r['kernels']:>7} {r['compile']:>9.2f} "
                  f"{1e3 * r['fusecc']:>10.2f} {1e3 * r['ort']:>8.2f} {r['fusecc'] / r['ort']:>9.2f}x "
                  f"{speedup:>7.2f}x", flush=True)


if __name__ == "__main__":
    main()
