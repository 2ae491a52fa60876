"""Quick start: build a small MLP, compile it (JIT and shared library), check it against ONNX Runtime.

    python -m fusecc.tools.quickstart [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx

import fusecc
from fusecc.tools import models


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="where to write mlp.onnx, mlp.so and mlp.h")
    args = parser.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="fusecc_quickstart_")
    os.makedirs(out, exist_ok=True)
    model_path = os.path.join(out, "mlp.onnx")
    onnx.save(models.mlp(), model_path)
    print(f"model: {model_path} (MLP 784-1024-1024-10, batch 32)")

    library = os.path.join(out, "mlp.so")
    subprocess.run([sys.executable, "-m", "fusecc.cli", model_path, "-o", library], check=True)
    jit = fusecc.compile(model_path)
    aot = fusecc.load(library)
    x = np.random.default_rng(0).standard_normal((32, 784)).astype(np.float32)
    (y_jit,), (y_aot,) = jit.run({"x": x}), aot.run({"x": x})
    print(f"kernels: {len(jit.kernels)} ({', '.join(k.name for k in jit.kernels)})")
    try:
        import onnxruntime
        expected = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        print(f"max |JIT - ORT| = {np.abs(y_jit - expected).max():.2e}, "
              f"max |.so - ORT| = {np.abs(y_aot - expected).max():.2e}")
    except ImportError:
        print(f"max |JIT - .so| = {np.abs(y_jit - y_aot).max():.2e} (install onnxruntime to compare with it)")
    print(f"shared library: {library}, header: {os.path.splitext(library)[0]}.h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
