"""Every contraction runs on a vectorizable path: a sweep of shapes and layouts, lowered and run.

A contraction that falls off the micro-kernel and the row schedules is lowered
to a dot product per output element: no register blocking, a horizontal sum
per element, and B walked with a stride when it is not contiguous along K, so
it runs several to a hundred times slower. The sweep fails on any such loop,
and checks each case's numbers against ONNX Runtime.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto as TP  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402

import fusecc  # noqa: E402
import fusecc.lowering  # noqa: E402,F401  (registers the loop passes)
from fusecc.frontend.onnx_import import import_model  # noqa: E402
from fusecc.ir.core import Value  # noqa: E402
from fusecc.passes import PassManager, parse_pipeline  # noqa: E402
from fusecc.pipeline import GRAPH_PIPELINE, fusion_pipeline  # noqa: E402

def _loaded(value: Value) -> bool:
    return getattr(value, "op", None) is not None and value.op.name == "loop.load"


def scalar_dot_products(kernel) -> list[str]:
    """Innermost loops of ``kernel`` that multiply two loaded elements and add the product into a
    one-element accumulator: a dot product computed for one output element."""
    found = []
    for loop in kernel.walk():
        if loop.name != "loop.for" or any(op.name == "loop.for" for op in loop.body.ops):
            continue
        accumulates = any(op.name == "loop.store" and op.operands[1].type.shape == (1,)
                          and getattr(op.operands[0], "op", None) is not None and op.operands[0].op.name == "arith.addf"
                          for op in loop.body.ops)
        multiplies = any(op.name == "arith.mulf" and op.operands[0] is not op.operands[1]
                         and all(_loaded(v) for v in op.operands) for op in loop.body.ops)
        if accumulates and multiplies:
            found.append(f"{kernel.sym_name}: a dot product per output element")
    return found


def _model(nodes, inputs, initializers=(), dtype=TP.FLOAT):
    graph = helper.make_graph(
        nodes, "contraction", [helper.make_tensor_value_info(name, dtype, shape) for name, shape in inputs.items()],
        [helper.make_tensor_value_info(nodes[-1].output[0], dtype, None)], list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _weight(name, shape, rng, dtype=np.float32):
    return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(dtype), name)


def _cases():
    rng = np.random.default_rng(0)
    cases = {}
    for m, k, n in [(1, 64, 48), (5, 64, 48), (32, 96, 80), (197, 64, 37)]:
        cases[f"MatMul-{m}x{k}x{n}-weight"] = _model([helper.make_node("MatMul", ["a", "w"], ["y"])], {"a": [m, k]},
                                                     [_weight("w", (k, n), rng)])
        cases[f"MatMul-{m}x{k}x{n}-inputs"] = _model([helper.make_node("MatMul", ["a", "b"], ["y"])],
                                                     {"a": [m, k], "b": [k, n]})
        for trans_a, trans_b in itertools.product((0, 1), (0, 1)):
            cases[f"Gemm-{m}x{k}x{n}-transA{trans_a}-transB{trans_b}"] = _model(
                [helper.make_node("Gemm", ["a", "w", "c"], ["y"], transA=trans_a, transB=trans_b, alpha=0.5)],
                {"a": [k, m] if trans_a else [m, k]}, [_weight("w", (n, k) if trans_b else (k, n), rng),
                                                      _weight("c", (n,), rng)])
        cases[f"Gemm-{m}x{k}x{n}-transB-computed-B"] = _model(
            [helper.make_node("Gemm", ["a", "b"], ["y"], transB=1)], {"a": [m, k], "b": [n, k]})
    for a, b in [((2, 3, 12, 16), (3, 16, 20)), ((2, 1, 12, 16), (1, 4, 16, 20)), ((1, 12, 16), (2, 16, 20)),
                 ((16,), (16, 20)), ((2, 16), (3, 16, 20))]:
        cases[f"MatMul-broadcast-{'x'.join(map(str, a))}@{'x'.join(map(str, b))}"] = _model(
            [helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": list(a), "b": list(b)})
    # computed B wider than a tile: copied a tile's sliver at a time, over several depth passes, and (300
    # rows) in blocks of rows bounded by the level-2 cache, the last one shorter
    for a, b in [((300, 600), (600, 40)), ((3, 30, 300), (3, 300, 37))]:
        cases[f"MatMul-copied-B-tiles-{'x'.join(map(str, a))}@{'x'.join(map(str, b))}"] = _model(
            [helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": list(a), "b": list(b)})
    cases["MatMul-2d@1d-weight"] = _model([helper.make_node("MatMul", ["w", "v"], ["y"])], {"v": [16]},
                                          [_weight("w", (12, 16), rng)])
    # A copied a depth pass at a time across its rows, into micro-panels with a shorter last one (130 rows)
    cases["Gemm-130x900x40-transA-computed-B-depth-passes"] = _model(
        [helper.make_node("Gemm", ["a", "b"], ["y"], transA=1)], {"a": [900, 130], "b": [900, 40]})
    cases["MatMul-transposed-input-B"] = _model(
        [helper.make_node("Transpose", ["b"], ["bt"], perm=[0, 2, 1]), helper.make_node("MatMul", ["a", "bt"], ["y"])],
        {"a": [2, 12, 16], "b": [2, 20, 16]})
    cases["Softmax-prologue-MatMul"] = _model(
        [helper.make_node("Softmax", ["a"], ["s"], axis=-1), helper.make_node("MatMul", ["s", "b"], ["y"])],
        {"a": [2, 12, 16], "b": [2, 16, 20]})
    cases["Gemm-LayerNormalization-epilogue"] = _model(
        [helper.make_node("Gemm", ["x", "w"], ["g"]),
         helper.make_node("LayerNormalization", ["g", "s", "c"], ["y"], axis=-1)],
        {"x": [12, 32]}, [_weight("w", (32, 48), rng), _weight("s", (48,), rng), _weight("c", (48,), rng)])
    cases["MatMul-197-rows-LayerNormalization-epilogue"] = _model(
        [helper.make_node("MatMul", ["x", "w"], ["m"]),
         helper.make_node("LayerNormalization", ["m", "s", "c"], ["y"], axis=-1)],
        {"x": [1, 197, 32]}, [_weight("w", (32, 48), rng), _weight("s", (48,), rng), _weight("c", (48,), rng)])
    cases["MatMul-wide-B-in-place"] = _model([helper.make_node("MatMul", ["a", "w"], ["y"])], {"a": [13, 16]},
                                             [_weight("w", (16, 6000), rng)])
    cases["Gemm-wide-B-Relu-in-place"] = _model(
        [helper.make_node("Gemm", ["a", "w", "c"], ["g"], transB=1), helper.make_node("Relu", ["g"], ["y"])],
        {"a": [13, 16]}, [_weight("w", (6000, 16), rng), _weight("c", (6000,), rng)])
    cases["MatMul-Softmax-epilogue"] = _model(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Softmax", ["m"], ["y"], axis=-1)],
        {"x": [2, 12, 32]}, [_weight("w", (32, 48), rng)])
    cases["Reshape-Gemm-Reshape"] = _model(
        [helper.make_node("Reshape", ["x", "s2"], ["x2"]), helper.make_node("Gemm", ["x2", "w", "c"], ["g"], transB=1),
         helper.make_node("Reshape", ["g", "s3"], ["y"])], {"x": [1, 12, 32]},
        [_weight("w", (48, 32), rng), _weight("c", (48,), rng), numpy_helper.from_array(np.array([12, 32]), "s2"),
         numpy_helper.from_array(np.array([1, 12, 48]), "s3")])
    cases["MatMul-Add-Reshape-Transpose-into-heads"] = _model(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "c"], ["a"]),
         helper.make_node("Reshape", ["a", "s"], ["r"]), helper.make_node("Transpose", ["r"], ["y"], perm=[0, 2, 1, 3])],
        {"x": [1, 12, 32]}, [_weight("w", (32, 48), rng), _weight("c", (48,), rng),
                             numpy_helper.from_array(np.array([1, 12, 4, 12]), "s")])
    for name, attrs, x, w in [("3x3", {}, (1, 8, 14, 14), (16, 8, 3, 3)),
                              ("3x3-pads", {"pads": [1, 1, 1, 1]}, (1, 8, 14, 14), (16, 8, 3, 3)),
                              ("3x3-strides2", {"strides": [2, 2], "pads": [1, 1, 1, 1]}, (1, 8, 14, 14), (16, 8, 3, 3)),
                              ("dilations2", {"dilations": [2, 2]}, (1, 8, 14, 14), (16, 8, 3, 3)),
                              ("group2", {"group": 2}, (1, 8, 14, 14), (16, 4, 3, 3)),
                              ("depthwise", {"group": 8, "pads": [1, 1, 1, 1]}, (1, 8, 14, 14), (8, 1, 3, 3)),
                              ("1x1", {}, (2, 8, 14, 14), (16, 8, 1, 1)),
                              ("1x1-strides2", {"strides": [2, 2]}, (1, 8, 14, 14), (16, 8, 1, 1)),
                              ("7x7-strides2", {"strides": [2, 2], "pads": [3, 3, 3, 3]}, (1, 3, 32, 32), (16, 3, 7, 7)),
                              ("1d", {"pads": [1, 1]}, (1, 8, 30), (16, 8, 3))]:
        cases[f"Conv-{name}"] = _model([helper.make_node("Conv", ["x", "w"], ["y"], **attrs)], {"x": list(x)},
                                       [_weight("w", w, rng)])
    # pointwise convs computed in place with their epilogues (bias, residual add, ReLU; clip), one image
    # and two
    cases["Conv-1x1-Add-Relu-in-place"] = _model(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"]), helper.make_node("Add", ["c", "x"], ["a"]),
         helper.make_node("Relu", ["a"], ["y"])], {"x": [1, 96, 28, 28]}, [_weight("w", (96, 96, 1, 1), rng),
                                                                           _weight("b", (96,), rng)])
    cases["Conv-1x1-Clip-in-place-two-images"] = _model(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Clip", ["c", "lo", "hi"], ["y"])],
        {"x": [2, 32, 14, 14]}, [_weight("w", (48, 32, 1, 1), rng), numpy_helper.from_array(np.float32(-0.5), "lo"),
                                 numpy_helper.from_array(np.float32(0.5), "hi")])
    # convs in blocked channels (16 a block, a multiple of every vector width), where they compute enough per
    # element reordered into and out of the blocked layout: a 3x3 conv whose ReLU writes the next conv's
    # padded input (a block buffer), then a 3x3 conv at stride 2 (depth passes over 128 channels) plus a
    # strided 1x1 projection of the input (a residual add computed in place), over two images (pixels left
    # over past the micro-tiles); and a plane of 400 pixels computed in place a chunk at a time
    cases["Conv-blocked-chain-projection-two-images"] = _model(
        [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c1"], ["r1"]),
         helper.make_node("Conv", ["r1", "w2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
         helper.make_node("Conv", ["x", "w3"], ["c3"], strides=[2, 2]), helper.make_node("Add", ["c2", "c3"], ["a"]),
         helper.make_node("Relu", ["a"], ["y"])], {"x": [2, 32, 9, 9]},
        [_weight("w1", (128, 32, 3, 3), rng), _weight("b1", (128,), rng), _weight("w2", (128, 128, 3, 3), rng),
         _weight("w3", (128, 32, 1, 1), rng)])
    cases["Conv-blocked-wide-plane-Relu"] = _model(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        {"x": [1, 176, 20, 20]}, [_weight("w", (176, 176, 3, 3), rng), _weight("b", (176,), rng)])
    # four layers of a dense block: each concat's inputs are also read by the next layer's BatchNorm, and each
    # concat is an input of the next, so the inner ones are nested slices of one buffer; only the first and
    # the last, which the reorders into and out of the blocked layout join, remain kernels
    layers = [(layer, 32 * layer + 32, "x" if layer == 1 else f"k{layer - 1}") for layer in (1, 2, 3, 4)]
    cases["Conv-blocked-dense-block-concat-in-place"] = _model(
        [node for layer, _, given in layers for node in (
            helper.make_node("BatchNormalization", [given, f"s{layer}", f"m{layer}", f"m{layer}", f"s{layer}"],
                             [f"n{layer}"]),
            helper.make_node("Relu", [f"n{layer}"], [f"r{layer}"]),
            helper.make_node("Conv", [f"r{layer}", f"w{layer}"], [f"p{layer}"]),
            helper.make_node("Relu", [f"p{layer}"], [f"q{layer}"]),
            helper.make_node("Conv", [f"q{layer}", f"v{layer}"], [f"g{layer}"], pads=[1, 1, 1, 1]),
            helper.make_node("Concat", [given, f"g{layer}"], [f"k{layer}"], axis=1))],
        {"x": [1, 64, 6, 6]},
        [numpy_helper.from_array((0.5 + rng.random(channels)).astype(np.float32), f"{kind}{layer}")
         for layer, channels, _ in layers for kind in "sm"]
        + [_weight(f"w{layer}", (256, channels, 1, 1), rng) for layer, channels, _ in layers]
        + [_weight(f"v{layer}", (32, 256, 3, 3), rng) for layer, _, _ in layers])
    # convs with poolings between them, all in the blocked layout (the reorders only on the way in and out):
    # a max pool at stride 2 with padding and ceil_mode (a last window past the input), a dilated one, an
    # average pool counting only the taps inside the input and one counting the padding too
    cases["Conv-blocked-pools-between"] = _model(
        [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
         helper.make_node("MaxPool", ["r1"], ["m1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 0, 0],
                          ceil_mode=1),
         helper.make_node("Conv", ["m1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
         helper.make_node("MaxPool", ["c2"], ["m2"], kernel_shape=[2, 2], dilations=[2, 1]),
         helper.make_node("AveragePool", ["m2"], ["a1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
         helper.make_node("Conv", ["a1", "w3"], ["c3"], pads=[1, 1, 1, 1]),
         helper.make_node("AveragePool", ["c3"], ["y"], kernel_shape=[2, 3], strides=[1, 2], pads=[1, 1, 0, 1],
                          count_include_pad=1)],
        {"x": [1, 64, 11, 11]},
        [_weight("w1", (128, 64, 3, 3), rng), _weight("w2", (128, 128, 3, 3), rng),
         _weight("w3", (128, 128, 3, 3), rng)])
    # depthwise convs between pointwise ones (an inverted residual) stay in the blocked layout, their input
    # padded by the kernel before them: at stride 1 with a bias and ReLU6, at stride 2 dilated, and 5x5
    for label, window in [("3x3", {"pads": [1, 1, 1, 1]}), ("strided-dilated", {"strides": [2, 2], "dilations": [2, 1],
                                                                           "pads": [2, 1, 1, 0]}),
                          ("5x5", {"pads": [2, 2, 2, 2]})]:
        k = 5 if label == "5x5" else 3
        cases[f"Conv-blocked-depthwise-{label}"] = _model(
            [helper.make_node("Conv", ["x", "w1"], ["c1"]), helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], group=1024, kernel_shape=[k, k], **window),
             helper.make_node("Clip", ["c2", "lo", "hi"], ["r2"]), helper.make_node("Conv", ["r2", "w3"], ["y"])],
            {"x": [1, 64, 6, 6]},
            [_weight("w1", (1024, 64, 1, 1), rng), _weight("w2", (1024, 1, k, k), rng), _weight("b2", (1024,), rng),
             _weight("w3", (64, 1024, 1, 1), rng), numpy_helper.from_array(np.array(0, np.float32), "lo"),
             numpy_helper.from_array(np.array(6, np.float32), "hi")])
    # a network that enters its blocked convs through a small plane: blocked from its first conv, it would
    # reorder its 64x64 input, more than its convs pay for; its convs on 32x32 planes, entered after a
    # stride-2 depthwise conv, run blocked (reordering 32 channels of 32x32 in, 256 pooled values out)
    cases["Conv-blocked-late-stage"] = _model(
        [helper.make_node("Conv", ["x", "w1"], ["c1"]), helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"]),
         helper.make_node("Conv", ["r1", "w2"], ["c2"], group=32, kernel_shape=[3, 3], strides=[2, 2],
                          pads=[1, 1, 1, 1]),
         helper.make_node("Clip", ["c2", "lo", "hi"], ["r2"]), helper.make_node("Conv", ["r2", "w3"], ["c3"]),
         helper.make_node("Clip", ["c3", "lo", "hi"], ["r3"]), helper.make_node("Conv", ["r3", "w4"], ["c4"]),
         helper.make_node("AveragePool", ["c4"], ["y"], kernel_shape=[32, 32])],
        {"x": [1, 64, 64, 64]},
        [_weight("w1", (32, 64, 1, 1), rng), _weight("w2", (32, 1, 3, 3), rng), _weight("w3", (256, 32, 1, 1), rng),
         _weight("w4", (256, 256, 1, 1), rng), numpy_helper.from_array(np.array(0, np.float32), "lo"),
         numpy_helper.from_array(np.array(6, np.float32), "hi")])
    # a first conv of an image's 3 channels, at stride 2, reads them as blocks of one channel and gives the
    # next convs their blocked input
    cases["Conv-blocked-first-conv-3-channels"] = _model(
        [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c1"], ["r1"]),
         helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c2"], ["r2"]),
         helper.make_node("Conv", ["r2", "w3"], ["y"], pads=[1, 1, 1, 1])],
        {"x": [1, 3, 31, 32]},
        [_weight("w1", (64, 3, 3, 3), rng), _weight("b1", (64,), rng), _weight("w2", (64, 64, 3, 3), rng),
         _weight("w3", (64, 64, 3, 3), rng)])
    return cases


CASES = _cases()


def _lowered(model):
    module = import_model(model)
    PassManager(parse_pipeline(f"{GRAPH_PIPELINE},{fusion_pipeline(True)},lower-to-loops")).run(module)
    return module


@pytest.mark.parametrize("name", sorted(CASES))
def test_contraction_is_vectorizable_and_right(name):
    model = CASES[name]
    module = _lowered(model)
    assert [found for kernel in module.funcs[1:] for found in scalar_dot_products(kernel)] == []
    if name.startswith("Conv-blocked"):
        assert any("conv_blocked" in kernel.sym_name for kernel in module.funcs[1:])
    if name == "Conv-blocked-first-conv-3-channels":
        first = next(k for k in module.funcs[1:] if "conv_blocked" in k.sym_name)
        assert str(first.args[0].type) == "memref<1x3x33x34x1xf32>"  # the padded image, channels in blocks of one
    if name == "Conv-blocked-pools-between" or name.startswith("Conv-blocked-depthwise"):
        assert len([k for k in module.funcs[1:] if "transpose" in k.sym_name]) == 2
    if name.startswith("Conv-blocked-depthwise"):
        assert any(k.sym_name.startswith("fused_depthwise_conv_blocked") for k in module.funcs[1:])
    if name == "Conv-blocked-late-stage":
        blocked = [k.sym_name for k in module.funcs[1:] if "conv_blocked" in k.sym_name]
        assert len(blocked) == 2 and not any("depthwise" in name for name in blocked)
    if name.endswith("concat-in-place"):
        assert [k.sym_name for k in module.funcs[1:] if "concat" in k.sym_name and "transpose" not in k.sym_name] == []
    rng = np.random.default_rng(1)
    feeds = {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
             for i in model.graph.input}
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    # summed in another order, a result's rounding error follows the magnitude of the largest results
    scale = max(1.0, float(np.abs(expected[0]).max()))
    np.testing.assert_allclose(fusecc.compile(model).run(feeds)[0], expected[0], rtol=1e-4, atol=1e-5 * scale)


def test_an_epilogue_applied_in_place_keeps_nan():
    """A ReLU or clip reads a conv's output back from where the micro-kernel wrote it and stores over it: a
    NaN must come out as NaN (numpy's maximum and minimum propagate it), as must every other value."""
    model = CASES["Conv-1x1-Add-Relu-in-place"]
    x = np.random.default_rng(2).standard_normal((1, 96, 28, 28)).astype(np.float32)
    x[0, 5, 3, 4] = np.nan  # every output channel of pixel (3, 4) sums it; channel 5's residual adds it again
    y = fusecc.compile(model).run({"x": x})[0]
    assert np.isnan(y[0, :, 3, 4]).all()
    rest = np.ones(y.shape, bool)
    rest[0, :, 3, 4] = False
    assert not np.isnan(y[rest]).any()
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(y[rest], expected[0][rest], rtol=1e-4, atol=1e-4)


FLOAT16_CASES = {
    "MatMul-128x512x64-weight": ([helper.make_node("MatMul", ["a", "w"], ["y"])], {"a": [128, 512]}, {"w": (512, 64)}),
    "MatMul-2x37x64x48-inputs": ([helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": [2, 37, 64], "b": [2, 64, 48]},
                                 {}),
    "Gemm-transB-bias": ([helper.make_node("Gemm", ["a", "w", "c"], ["y"], transB=1)], {"a": [16, 96]},
                         {"w": (40, 96), "c": (40,)}),
    "Conv-3x3-pads": ([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], {"x": [1, 8, 12, 12]},
                      {"w": (16, 8, 3, 3)}),
}


@pytest.mark.parametrize("name", sorted(FLOAT16_CASES))
def test_float16_contraction_sums_in_float32(name):
    """A float16 contraction runs on the float32 kernels and is rounded once: within half a float16 unit
    of the exact result (plus float32's rounding of the sum), as ONNX Runtime is."""
    nodes, inputs, weights = FLOAT16_CASES[name]
    rng = np.random.default_rng(2)
    arrays = {n: rng.standard_normal(shape).astype(np.float16) for n, shape in weights.items()}
    model = _model(nodes, inputs, [numpy_helper.from_array(a, n) for n, a in arrays.items()], dtype=TP.FLOAT16)
    assert [found for kernel in _lowered(model).funcs[1:] for found in scalar_dot_products(kernel)] == []
    feeds = {n: rng.standard_normal(shape).astype(np.float16) for n, shape in inputs.items()}
    from onnx.reference import ReferenceEvaluator
    exact = ReferenceEvaluator(_float64_copy(model)).run(None, {n: v.astype(np.float64) for n, v in feeds.items()})[0]
    got = fusecc.compile(model).run(feeds)[0]
    assert got.dtype == np.float16
    error = np.abs(got.astype(np.float64) - exact)
    assert (error <= 2.0 ** -11 * np.abs(exact) + 1e-3).all(), float(error.max())


def _float64_copy(model):
    """The model with its float16 inputs, outputs and weights as float64 (the exact reference)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for value in list(copy.graph.input) + list(copy.graph.output):
        value.type.tensor_type.elem_type = TP.DOUBLE
    for index, tensor in enumerate(copy.graph.initializer):
        copy.graph.initializer[index].CopyFrom(
            numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float64), tensor.name))
    return copy


def test_matrix_vector_product_of_computed_matrix_reads_each_row_once_contiguously():
    """y = A v with A computed: one dot product per output is the memory-bound optimum (each row of A is
    read once), as long as the loop walks A's row and v contiguously."""
    model = _model([helper.make_node("MatMul", ["a", "v"], ["y"])], {"a": [12, 16], "v": [16]})
    (kernel,) = _lowered(model).funcs[1:]
    assert scalar_dot_products(kernel) == ["fused_matmul_0: a dot product per output element"]
    (loop,) = [op for op in kernel.walk() if op.name == "loop.for" and not any(o.name == "loop.for" for o in op.body.ops)]
    iv = loop.body.args[0]
    for load in (op for op in loop.body.ops if op.name == "loop.load" and op.operands[0].type.shape != (1,)):
        index = load.operands[1]
        assert index is iv or (index.op.name == "arith.addi" and iv in index.op.operands), load
    feeds = {"a": np.arange(192, dtype=np.float32).reshape(12, 16) / 100, "v": np.linspace(-1, 1, 16, dtype=np.float32)}
    np.testing.assert_allclose(fusecc.compile(model).run(feeds)[0], feeds["a"] @ feeds["v"], rtol=1e-5)


def test_the_detector_finds_a_dot_product_per_element():
    """A Gemm reading B transposed, lowered without contraction-layout, is one dot product per output."""
    model = _model([helper.make_node("Gemm", ["a", "b"], ["y"], transB=1)], {"a": [8, 32], "b": [24, 32]})
    module = import_model(model)
    PassManager(parse_pipeline("fuse,outline-kernels,lower-to-loops")).run(module)
    assert scalar_dot_products(module.funcs[1]) == ["fused_gemm_0: a dot product per output element"]


@pytest.mark.parametrize("count, micro, limit_rows, rows", [
    (197, 6, 1 << 16, 197),  # all fit: one block, its 5 rows past the micro-tiles in the same pass over B
    (197, 6, 96, 66),        # three blocks of 66, 66 and 65, not 96, 96 and 5
    (128, 6, 85, 66),        # two of 66 and 62
    (120, 6, 50, 30),        # micro divides the rows: the most whole micro-tiles that divide them and fit
    (5, 6, 10, 5),           # fewer rows than a micro-tile
])
def test_blocks_of_rows_are_even(count, micro, limit_rows, rows):
    from fusecc.lowering.microkernel import pick_block
    assert pick_block(count, micro, 192, limit_rows * 192) == rows
