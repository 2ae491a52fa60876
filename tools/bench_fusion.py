"""Benchmark: fused vs unfused fusecc vs ONNX Runtime, one thread, interleaved runs, medians.

    python -m fusecc.tools.bench_fusion [--repeat 50]

Prints one table: per model the median latency of each engine and the ratios
fused/unfused and fused/ORT (below 1 means fusecc fused is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from fusecc.tools import models


def _ort_session(model, threads: int = 1):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def bench(name: str, model, feeds: dict, repeat: int) -> dict:
    import fusecc

    fused = fusecc.compile(model, threads=1)
    unfused = fusecc.compile(model, fusion=False, threads=1)
    session = _ort_session(model)
    engines = {"fused": lambda: fused.run(feeds), "unfused": lambda: unfused.run(feeds),
               "ort": lambda: session.run(None, feeds)}
    reference = session.run(None, feeds)[0]
    for label in ("fused", "unfused"):
        got = engines[label]()[0]
        np.testing.assert_allclose(got, reference, rtol=1e-3, atol=1e-5, err_msg=f"{name}: {label} vs ORT")
    return {"name": name, "kernels": (len(fused.kernels), len(unfused.kernels)), **interleaved_medians(engines, repeat)}


def interleaved_medians(engines: dict, repeat: int) -> dict:
    """{label: median seconds of ``run()``}: after three warm-up rounds, ``repeat`` rounds that run each engine
    in turn, so every engine sees the same machine. Each timed run follows an untimed one of the same engine:
    right after another engine's run, the caches hold that engine's data (a fusecc kernel ran up to 30% slower
    right after an ONNX Runtime run than right after a run of its own), which would charge one engine for the
    other's memory."""
    times = {label: [] for label in engines}
    for _ in range(3):
        for run in engines.values():
            run()
    for _ in range(repeat):
        for label, run in engines.items():
            run()
            start = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(values) for label, values in times.items()}


#: the idle time before each block of runs of one engine, the least time a block takes, and its fewest runs,
#: when engines run on several threads
IDLE_SECONDS = 0.05
BLOCK_SECONDS = 0.2
BLOCK_RUNS = 5


def engine_medians(engines: dict, repeat: int, threads: int = 1) -> dict:
    """{label: median seconds of ``run()``} over at least ``repeat`` runs of each engine. On one thread the
    engines take turns run by run (:func:`interleaved_medians`). On several, an engine's idle workers spin for a
    while after its run and would take the cores of the next engine's run: each engine then runs in blocks,
    after ``IDLE_SECONDS`` of sleep, one untimed run (caches and clocks are cold after the pause) and then as
    many timed ones as fill ``BLOCK_SECONDS`` (at least ``BLOCK_RUNS``), the engines taking turns block by
    block."""
    if threads == 1:
        return interleaved_medians(engines, repeat)
    times = {label: [] for label in engines}
    estimates = {}
    for label, run in engines.items():
        start = time.perf_counter()
        run()
        estimates[label] = max(time.perf_counter() - start, 1e-6)
    while min(len(values) for values in times.values()) < repeat:
        for label, run in engines.items():
            time.sleep(IDLE_SECONDS)
            run()
            for _ in range(max(BLOCK_RUNS, int(BLOCK_SECONDS / estimates[label]))):
                start = time.perf_counter()
                run()
                times[label].append(time.perf_counter() - start)
    return {label: statistics.median(values) for label, values in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    cases = [
        ("layernorm-gelu(tanh)-scale-bias-softmax 64x4096", models.layernorm_gelu_softmax(),
         {"x": rng.standard_normal((64, 4096)).astype(np.float32)}),
        ("resnet block 1x64x56x56", models.resnet_block(), {"x": rng.standard_normal((1, 64, 56, 56)).astype(np.float32)}),
    ]
    rows = [bench(name, model, feeds, args.repeat) for name, model, feeds in cases]
    header = f"{'model':<50} {'kernels f/u':>11} {'fused ms':>9} {'unfused ms':>10} {'ORT ms':>8} " \
             f"{'unfused/fused':>13} {'fused/ORT':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['name']:<50} {r['kernels'][0]:>5}/{r['kernels'][1]:<5} {1e3 * r['fused']:>9.3f} "
              f"{1e3 * r['unfused']:>10.3f} {1e3 * r['ort']:>8.3f} {r['unfused'] / r['fused']:>12.2f}x "
              f"{r['fused'] / r['ort']:>8.2f}x")


if __name__ == "__main__":
    main()
