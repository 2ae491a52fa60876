"""Benchmark whole models: fusecc vs ONNX Runtime, on as many threads each, medians.

    python -m fusecc.tools.bench_models [--repeat 20] [--models resnet50,bert4,mlp_b32] [--threads 1,2]

Models are the ONNX light models (random inputs; their weights are constant) and the PyTorch and
``transformers`` exports of ``export_models`` (random weights), read from ``export_models.models_dir()``;
``python -m fusecc.tools.export_models`` writes them there.

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

from fusecc.tools.export_models import EXPORTS, example_feeds, models_dir

LIGHT_MODELS = ("squeezenet", "resnet50", "inception_v1", "inception_v2", "densenet121", "shufflenet",
                "bvlc_alexnet", "zfnet512", "vgg19")
DEFAULT_MODELS = ("squeezenet", "resnet50", "inception_v1", "inception_v2", "densenet121", "mlp_b1", "mlp_b32",
                  "resnet18", "mobilenet_v2", "bert4", "vit_tiny")


def light_model_path(name: str) -> str:
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", f"light_{name}.onnx")


def model_path(name: str) -> str:
    """A light model's path in the ``onnx`` package, else an export's in ``models_dir()``."""
    if name in LIGHT_MODELS:
        return light_model_path(name)
    if name not in EXPORTS:
        choices = ", ".join(LIGHT_MODELS + tuple(EXPORTS))
        raise SystemExit(f"bench_models: unknown model {name!r}; choose from {choices}")
    path = os.path.join(models_dir(), f"{name}.onnx")
    if not os.path.exists(path):
        raise SystemExit(f"bench_models: {path} does not exist; export it with "
                         f"python -m fusecc.tools.export_models {name} (needs torch==2.13.0 and transformers)")
    return path


def bench(name: str, repeat: int, thread_counts: list[int]) -> list[dict]:
    """One row per thread count: kernels, compile time (a cold compile), median seconds of fusecc and ORT."""
    import fusecc
    from fusecc.tools.bench_fusion import _ort_session, engine_medians

    path = model_path(name)  # checked by main() before any model runs
    start = time.perf_counter()
    compiled = fusecc.compile(path, cache=False)
    compile_seconds = time.perf_counter() - start
    model = onnx.load(path)
    feeds = example_feeds(model)
    rows = []
    for threads in thread_counts:
        session = _ort_session(model, threads)
        for got, expected in zip(compiled.run(feeds, threads=threads), session.run(None, feeds)):
            scale = max(1.0, float(np.abs(expected).max()))
            np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5 * scale, err_msg=name)
        medians = engine_medians({"fusecc": lambda: compiled.run(feeds, threads=threads),
                                  "ort": lambda: session.run(None, feeds)}, repeat, threads)
        rows.append({"name": name, "threads": threads, "kernels": len(compiled.kernels), "compile": compile_seconds,
                     **medians})
        del session
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--threads", default="1", help="thread counts of each engine, e.g. 1,2 (default 1)")
    args = parser.parse_args(argv)
    try:
        thread_counts = [int(part) for part in args.threads.split(",")]
    except ValueError:
        parser.error(f"--threads takes thread counts separated by commas, e.g. 1,2; got {args.threads!r}")
    if any(count < 1 for count in thread_counts):
        parser.error("--threads: each count must be 1 or more")
    names = [name.strip() for name in args.models.split(",")]
    for name in names:
        model_path(name)
    header = (f"{'model':<14} {'threads':>7} {'kernels':>7} {'compile s':>9} {'fusecc ms':>10} {'ORT ms':>8} "
              f"{'fusecc/ORT':>10} {'speedup':>8}")
    print(header)
    print("-" * len(header))
    for name in names:
        rows = bench(name, args.repeat, thread_counts)
        for r in rows:
            speedup = rows[0]["fusecc"] / r["fusecc"]
            print(f"{r['name']:<14} {r['threads']:>7} {r['kernels']:>7} {r['compile']:>9.2f} "
                  f"{1e3 * r['fusecc']:>10.2f} {1e3 * r['ort']:>8.2f} {r['fusecc'] / r['ort']:>9.2f}x "
                  f"{speedup:>7.2f}x", flush=True)


if __name__ == "__main__":
    main()
