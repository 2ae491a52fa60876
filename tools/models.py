"""Small ONNX models built in code, used by the README quick start, benchmarks and tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _model(nodes, inputs, outputs, initializers, opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "fusecc_example", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def layernorm_gelu_softmax(rows: int = 64, width: int = 4096, seed: int = 0) -> onnx.ModelProto:
    """LayerNorm -> GELU (tanh form, written out in primitive ops) -> scale + bias -> Softmax."""
    rng = np.random.default_rng(seed)
    init = [numpy_helper.from_array(rng.standard_normal(width).astype(np.float32), "ln_scale"),
            numpy_helper.from_array(rng.standard_normal(width).astype(np.float32), "ln_bias"),
            numpy_helper.from_array(rng.standard_normal(width).astype(np.float32), "scale"),
            numpy_helper.from_array(rng.standard_normal(width).astype(np.float32), "bias")]
    for name, value in (("half", 0.5), ("one", 1.0), ("three", 3.0), ("c", 0.044715), ("k", 0.7978845608)):
        init.append(numpy_helper.from_array(np.array(value, dtype=np.float32), name))
    nodes = [
        helper.make_node("LayerNormalization", ["x", "ln_scale", "ln_bias"], ["ln"], name="layernorm", axis=-1),
        helper.make_node("Pow", ["ln", "three"], ["cube"], name="gelu_cube"),
        helper.make_node("Mul", ["cube", "c"], ["cube_c"], name="gelu_mul_c"),
        helper.make_node("Add", ["ln", "cube_c"], ["inner"], name="gelu_add"),
        helper.make_node("Mul", ["inner", "k"], ["inner_k"], name="gelu_mul_k"),
        helper.make_node("Tanh", ["inner_k"], ["t"], name="gelu_tanh"),
        helper.make_node("Add", ["t", "one"], ["t1"], name="gelu_add_one"),
        helper.make_node("Mul", ["ln", "t1"], ["xt"], name="gelu_mul_x"),
        helper.make_node("Mul", ["xt", "half"], ["gelu"], name="gelu_half"),
        helper.make_node("Mul", ["gelu", "scale"], ["scaled"], name="scale"),
        helper.make_node("Add", ["scaled", "bias"], ["biased"], name="bias"),
        helper.make_node("Softmax", ["biased"], ["y"], name="softmax", axis=-1),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, width])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, width])], init)


def conv_relu(in_channels: int, out_channels: int, size: int, kernel: int, seed: int = 0) -> onnx.ModelProto:
    """Conv (``kernel`` x ``kernel``, stride 1, padded to keep the size) with a bias, then Relu."""
    rng = np.random.default_rng(seed)
    fan_in = in_channels * kernel * kernel
    init = [numpy_helper.from_array((rng.standard_normal((out_channels, in_channels, kernel, kernel))
                                     * np.sqrt(2 / fan_in)).astype(np.float32), "w"),
            numpy_helper.from_array((rng.standard_normal(out_channels) * 0.1).astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[kernel // 2] * 4),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, in_channels, size, size])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, out_channels, size, size])], init)


def resnet_block(channels: int = 64, size: int = 56, seed: int = 0) -> onnx.ModelProto:
    """conv-bn-relu-conv-bn-add(identity)-relu, 3x3 convs, random weights and BatchNorm statistics."""
    rng = np.random.default_rng(seed)
    init, nodes = [], []
    prev = "x"
    for i in (1, 2):
        fan_in = channels * 9
        init.append(numpy_helper.from_array(
            (rng.standard_normal((channels, channels, 3, 3)) * np.sqrt(2 / fan_in)).astype(np.float32), f"w{i}"))
        for name, value in (("gamma", rng.uniform(0.5, 1.5, channels)), ("beta", rng.standard_normal(channels) * 0.1),
                            ("mean", rng.standard_normal(channels) * 0.1), ("var", rng.uniform(0.5, 1.5, channels))):
            init.append(numpy_helper.from_array(value.astype(np.float32), f"{name}{i}"))
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("BatchNormalization", [f"c{i}", f"gamma{i}", f"beta{i}", f"mean{i}",
                                                             f"var{i}"], [f"b{i}"], name=f"bn{i}"))
        if i == 1:
            nodes.append(helper.make_node("Relu", ["b1"], ["r1"], name="relu1"))
            prev = "r1"
    nodes.append(helper.make_node("Add", ["b2", "x"], ["sum"], name="residual"))
    nodes.append(helper.make_node("Relu", ["sum"], ["y"], name="relu2"))
    shape = [1, channels, size, size]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], init)


def mlp(batch: int = 32, sizes=(784, 1024, 1024, 10), seed: int = 0) -> onnx.ModelProto:
    """MatMul + Add + Relu layers, random weights."""
    rng = np.random.default_rng(seed)
    init, nodes, prev = [], [], "x"
    for i in range(len(sizes) - 1):
        w = rng.standard_normal((sizes[i], sizes[i + 1])) / np.sqrt(sizes[i])
        init += [numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
                 numpy_helper.from_array((rng.standard_normal(sizes[i + 1]) * 0.1).astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"], name=f"fc{i}"),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"bias{i}")]
        prev = f"a{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"], name=f"relu{i}"))
            prev = f"r{i}"
    nodes.append(helper.make_node("Identity", [prev], ["logits"], name="out"))
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, sizes[0]])],
                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, sizes[-1]])], init)


def depthwise_silu_se(channels: int = 32, size: int = 28, reduced: int = 8, seed: int = 0) -> onnx.ModelProto:
    """Depthwise 3x3 conv -> SiLU (x * sigmoid(x)) -> squeeze-excite (GlobalAveragePool, 1x1 convs, Sigmoid, Mul)."""
    rng = np.random.default_rng(seed)
    init = [
        numpy_helper.from_array((rng.standard_normal((channels, 1, 3, 3)) / 3).astype(np.float32), "dw"),
        numpy_helper.from_array((rng.standard_normal(channels) * 0.1).astype(np.float32), "dw_b"),
        numpy_helper.from_array((rng.standard_normal((reduced, channels, 1, 1)) / np.sqrt(channels)).astype(np.float32),
                                "se1"),
        numpy_helper.from_array((rng.standard_normal(reduced) * 0.1).astype(np.float32), "se1_b"),
        numpy_helper.from_array((rng.standard_normal((channels, reduced, 1, 1)) / np.sqrt(reduced)).astype(np.float32),
                                "se2"),
        numpy_helper.from_array((rng.standard_normal(channels) * 0.1).astype(np.float32), "se2_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "dw", "dw_b"], ["d"], name="depthwise", group=channels, pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["d"], ["d_sig"], name="silu_sigmoid"),
        helper.make_node("Mul", ["d", "d_sig"], ["s"], name="silu_mul"),
        helper.make_node("GlobalAveragePool", ["s"], ["pooled"], name="se_pool"),
        helper.make_node("Conv", ["pooled", "se1", "se1_b"], ["z"], name="se_reduce"),
        helper.make_node("Relu", ["z"], ["z_relu"], name="se_relu"),
        helper.make_node("Conv", ["z_relu", "se2", "se2_b"], ["e"], name="se_expand"),
        helper.make_node("Sigmoid", ["e"], ["gate"], name="se_gate"),
        helper.make_node("Mul", ["s", "gate"], ["y"], name="se_scale"),
    ]
    shape = [1, channels, size, size]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], init)


def linear_mlp(batch: int = 32, sizes=(784, 1024, 1024, 10), dtype=np.float32, seed: int = 0) -> onnx.ModelProto:
    """``torch.nn.Linear`` layers as ``torch.onnx.export`` writes them: Gemm with transB=1 (weights stored
    out_features x in_features) and ReLU between them."""
    rng = np.random.default_rng(seed)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    init, nodes, prev = [], [], "x"
    for i in range(len(sizes) - 1):
        w = rng.standard_normal((sizes[i + 1], sizes[i])) / np.sqrt(sizes[i])
        init += [numpy_helper.from_array(w.astype(dtype), f"weight{i}"),
                 numpy_helper.from_array((rng.standard_normal(sizes[i + 1]) * 0.1).astype(dtype), f"bias{i}")]
        nodes.append(helper.make_node("Gemm", [prev, f"weight{i}", f"bias{i}"], [f"h{i}"], name=f"linear{i}", transB=1))
        prev = f"h{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"], name=f"relu{i}"))
            prev = f"r{i}"
    return _model(nodes, [helper.make_tensor_value_info("x", elem, [batch, sizes[0]])],
                  [helper.make_tensor_value_info(prev, elem, [batch, sizes[-1]])], init)


def mlp_flops(batch: int, sizes=(784, 1024, 1024, 10)) -> float:
    """Multiply-adds of ``linear_mlp(batch, sizes)``, counted as two operations each."""
    return 2.0 * batch * sum(a * b for a, b in zip(sizes, sizes[1:]))


def matmul(m: int, k: int, n: int, weight: bool = False, dtype=np.float32, seed: int = 0) -> onnx.ModelProto:
    """``a[m, k] @ b[k, n]``: b a second input, or with ``weight`` a constant (a layer's weight)."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inputs = [helper.make_tensor_value_info("a", elem, [m, k])]
    init = []
    if weight:
        w = np.random.default_rng(seed).standard_normal((k, n)) / np.sqrt(k)
        init.append(numpy_helper.from_array(w.astype(dtype), "b"))
    else:
        inputs.append(helper.make_tensor_value_info("b", elem, [k, n]))
    return _model([helper.make_node("MatMul", ["a", "b"], ["y"], name="matmul")], inputs,
                  [helper.make_tensor_value_info("y", elem, [m, n])], init)


def gemm(m: int, k: int, n: int, trans_a: int, trans_b: int) -> onnx.ModelProto:
    """Gemm of two run-time matrices stored as ``transA``/``transB`` say."""
    inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, [k, m] if trans_a else [m, k]),
              helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, k] if trans_b else [k, n])]
    return _model([helper.make_node("Gemm", ["a", "b"], ["y"], name="gemm", transA=trans_a, transB=trans_b)], inputs,
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], [])


def batched_matmul(batch: int, m: int, k: int, n: int) -> onnx.ModelProto:
    """``a[batch, m, k] @ b[batch, k, n]``: attention's products per head."""
    inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, [batch, m, k]),
              helper.make_tensor_value_info("b", TensorProto.FLOAT, [batch, k, n])]
    return _model([helper.make_node("MatMul", ["a", "b"], ["y"], name="matmul")], inputs,
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, m, n])], [])


def projection_into_heads(sequence: int = 128, hidden: int = 768, heads: int = 12, seed: int = 0) -> onnx.ModelProto:
    """A BERT attention projection as exported: MatMul, bias Add, Reshape to heads, Transpose."""
    rng = np.random.default_rng(seed)
    init = [numpy_helper.from_array((rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(np.float32), "w"),
            numpy_helper.from_array((rng.standard_normal(hidden) * 0.1).astype(np.float32), "b"),
            numpy_helper.from_array(np.array([1, sequence, heads, hidden // heads], np.int64), "heads_shape")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="query"),
             helper.make_node("Add", ["m", "b"], ["q"], name="query_bias"),
             helper.make_node("Reshape", ["q", "heads_shape"], ["split"], name="split_heads"),
             helper.make_node("Transpose", ["split"], ["y"], name="heads_first", perm=[0, 2, 1, 3])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, sequence, hidden])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, heads, sequence, hidden // heads])], init)


def sequence_linear(sequence: int = 64, hidden: int = 768, width: int = 3072, seed: int = 0) -> onnx.ModelProto:
    """A linear layer over a sequence as GPT-2's exports give it: Reshape to rows, Gemm with bias, Reshape back."""
    rng = np.random.default_rng(seed)
    init = [numpy_helper.from_array((rng.standard_normal((hidden, width)) / np.sqrt(hidden)).astype(np.float32), "w"),
            numpy_helper.from_array((rng.standard_normal(width) * 0.1).astype(np.float32), "b"),
            numpy_helper.from_array(np.array([-1, hidden], np.int64), "rows_shape"),
            numpy_helper.from_array(np.array([1, sequence, width], np.int64), "sequence_shape")]
    nodes = [helper.make_node("Reshape", ["x", "rows_shape"], ["rows"], name="to_rows"),
             helper.make_node("Gemm", ["rows", "w", "b"], ["g"], name="linear"),
             helper.make_node("Reshape", ["g", "sequence_shape"], ["y"], name="to_sequence")]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, sequence, hidden])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, sequence, width])], init)


def projection_out_of_heads(sequence: int = 128, hidden: int = 768, heads: int = 12, seed: int = 0) -> onnx.ModelProto:
    """Attention's output projection as exported: heads Transposed back and Reshaped to rows, MatMul, bias Add."""
    rng = np.random.default_rng(seed)
    init = [numpy_helper.from_array((rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(np.float32), "w"),
            numpy_helper.from_array((rng.standard_normal(hidden) * 0.1).astype(np.float32), "b"),
            numpy_helper.from_array(np.array([1, sequence, hidden], np.int64), "merged_shape")]
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="sequence_first", perm=[0, 2, 1, 3]),
             helper.make_node("Reshape", ["t", "merged_shape"], ["merged"], name="merge_heads"),
             helper.make_node("MatMul", ["merged", "w"], ["m"], name="output"),
             helper.make_node("Add", ["m", "b"], ["y"], name="output_bias")]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, heads, sequence, hidden // heads])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, sequence, hidden])], init)
