"""``CompiledModel`` as an ``onnxruntime.InferenceSession`` user knows it: ``get_inputs()``/``get_outputs()`` give
the names, shapes and type strings ORT gives for the same model, ``run(output_names, feeds)`` returns what ORT's
does, beside ``run(feeds)`` and ``as_dict=True``; bfloat16 feeds as ``ml_dtypes`` arrays or their bits; a loaded
library saved again; ``fusecc.__version__``."""

import importlib.metadata
import os
import tomllib

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

import fusecc
from fusecc.codegen.target import CodegenError, find_c_compiler
from fusecc.runtime.model import InputError

ort = pytest.importorskip("onnxruntime")

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
PYPROJECT = os.path.join(os.path.dirname(__file__), os.pardir, "pyproject.toml")


def two_outputs():
    """A float32 and an int64 output: relu(x @ W) and its argmax."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32), "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["mm"]), helper.make_node("Relu", ["mm"], ["scores"]),
             helper.make_node("ArgMax", ["scores"], ["best"], axis=1, keepdims=0)]
    graph = helper.make_graph(nodes, "two_outputs", [helper.make_tensor_value_info("x", TP.FLOAT, [3, 8])],
                              [helper.make_tensor_value_info("scores", TP.FLOAT, [3, 5]),
                               helper.make_tensor_value_info("best", TP.INT64, [3])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def mixed_types():
    """float16 and bool inputs; float16 and double outputs."""
    nodes = [helper.make_node("Where", ["keep", "h", "zero"], ["kept"]),
             helper.make_node("Cast", ["kept"], ["wide"], to=TP.DOUBLE)]
    graph = helper.make_graph(nodes, "mixed", [helper.make_tensor_value_info("h", TP.FLOAT16, [2, 4]),
                                               helper.make_tensor_value_info("keep", TP.BOOL, [2, 4])],
                              [helper.make_tensor_value_info("kept", TP.FLOAT16, [2, 4]),
                               helper.make_tensor_value_info("wide", TP.DOUBLE, [2, 4])],
                              [numpy_helper.from_array(np.zeros((), np.float16), "zero")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def light(name):
    return onnx.load(os.path.join(LIGHT_DIR, f"light_{name}.onnx"))


#: model name -> the model; the light models compile at -O0 (names, shapes and types do not depend on it)
MODELS = {"two_outputs": (two_outputs, 3), "mixed_types": (mixed_types, 3),
          "light_squeezenet": (lambda: light("squeezenet"), 0), "light_shufflenet": (lambda: light("shufflenet"), 0)}


def random_feeds(session):
    rng = np.random.default_rng(1)
    dtypes = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(bool)": np.bool_}
    return {i.name: (rng.standard_normal(i.shape) > 0 if i.type == "tensor(bool)" else
                     rng.standard_normal(i.shape).astype(dtypes[i.type])) for i in session.get_inputs()}


def signature(args):
    return [(a.name, a.shape, a.type) for a in args]


@pytest.mark.parametrize("name", list(MODELS))
def test_a_compiled_model_answers_as_an_ort_session(name):
    make, opt_level = MODELS[name]
    model = make()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with fusecc.compile(model, opt_level=opt_level) as compiled:
        assert signature(compiled.get_inputs()) == signature(session.get_inputs())
        assert signature(compiled.get_outputs()) == signature(session.get_outputs())
        feeds = random_feeds(session)
        names = [o.name for o in session.get_outputs()]
        for requested in (None, *([n] for n in names), names[::-1]):
            ours, theirs = compiled.run(requested, feeds), session.run(requested, feeds)
            assert [a.dtype for a in ours] == [a.dtype for a in theirs]
            for got, want in zip(ours, theirs, strict=True):
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        everything, as_dict = compiled.run(feeds), compiled.run(feeds, as_dict=True)
        assert list(as_dict) == names
        for array, value in zip(everything, as_dict.values(), strict=True):
            np.testing.assert_array_equal(array, value)
        assert list(compiled.run([names[-1]], feeds, as_dict=True)) == [names[-1]]


def test_unknown_output_name_is_a_one_line_error_naming_the_outputs():
    with fusecc.compile(two_outputs()) as compiled:
        with pytest.raises(ValueError) as error:
            compiled.run(["scores", "no_such_output"], {"x": np.zeros((3, 8), np.float32)})
    assert str(error.value) == ("unknown output 'no_such_output'; the model's outputs are 'scores' float32[3, 5], "
                                "'best' int64[3]")


def test_output_names_must_be_a_list():
    with fusecc.compile(two_outputs()) as compiled:
        x = np.zeros((3, 8), np.float32)
        with pytest.raises(TypeError, match="list of strings, got the string 'best'"):
            compiled.run("best", {"x": x})
        with pytest.raises(TypeError, match="takes a dict of inputs"):
            compiled.run(None, {"x": x}, {"x": x})
        with pytest.raises(InputError, match="takes a dict"):
            compiled.run(None, [x])


# --------------------------------------------------------------------------------------
# bfloat16 feeds
# --------------------------------------------------------------------------------------
def bfloat16_model():
    """y = float32(x) * 2 for a bfloat16 x; z = x (bfloat16, returned as its bits)."""
    nodes = [helper.make_node("Cast", ["x"], ["wide"], to=TP.FLOAT), helper.make_node("Add", ["wide", "wide"], ["y"]),
             helper.make_node("Identity", ["x"], ["z"])]
    graph = helper.make_graph(nodes, "bf16", [helper.make_tensor_value_info("x", TP.BFLOAT16, [2, 3])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, [2, 3]),
                               helper.make_tensor_value_info("z", TP.BFLOAT16, [2, 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


@pytest.mark.parametrize("cached", [False, True], ids=["jit", "cache_hit"])
def test_bfloat16_input_takes_ml_dtypes_arrays_and_bits(cached, request):
    """Through the JIT, and through a library from the compile cache (which keeps the element types in its info)."""
    x = np.array([[1.5, -2.0, 3.25], [0.0, 1000.0, -7.0]], dtype=ml_dtypes.bfloat16)
    if cached:
        try:
            find_c_compiler()
        except CodegenError:
            pytest.skip("the cache holds shared libraries: no C compiler")
        request.getfixturevalue("compile_cache")
        fusecc.compile(bfloat16_model()).close()
    with fusecc.compile(bfloat16_model()) as compiled:
        assert compiled.cache_hit == cached
        assert signature(compiled.get_inputs()) == [("x", [2, 3], "tensor(bfloat16)")]
        assert signature(compiled.get_outputs()) == [("y", [2, 3], "tensor(float)"), ("z", [2, 3], "tensor(bfloat16)")]
        from_type, from_bits = compiled.run({"x": x}), compiled.run({"x": x.view(np.uint16)})
        np.testing.assert_array_equal(from_type[0], x.astype(np.float32) * 2)
        for a, b in zip(from_type, from_bits):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(from_type[1], x.view(np.uint16))
        with pytest.raises(InputError, match=r"expects dtype bfloat16 \(or its bits as uint16\), got float32"):
            compiled.run({"x": x.astype(np.float32)})


# --------------------------------------------------------------------------------------
# a loaded library saved again
# --------------------------------------------------------------------------------------
def test_a_loaded_library_saves_a_copy(tmp_path):
    model = two_outputs()
    fusecc.compile(model).save(str(tmp_path / "first.so"))
    x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(3, 8)
    with fusecc.load(str(tmp_path / "first.so")) as loaded:
        (tmp_path / "first.so").unlink()  # the copy comes from what was loaded, not from the file
        loaded.save(str(tmp_path / "second.so"))
        loaded.save(str(tmp_path / "third.so"), name="first")
        with pytest.raises(ValueError, match="exports the C API first_run, ...; a copy keeps that prefix"):
            loaded.save(str(tmp_path / "fourth.so"), name="fourth")
        expected = loaded.run({"x": x})
    assert (tmp_path / "second.so").read_bytes() == (tmp_path / "third.so").read_bytes()
    with fusecc.load(str(tmp_path / "second.so")) as again:
        for got, want in zip(again.run(None, {"x": x}), expected):
            np.testing.assert_array_equal(got, want)
    assert not (tmp_path / "fourth.so").exists()


# --------------------------------------------------------------------------------------
# version
# --------------------------------------------------------------------------------------
def test_version_is_the_one_pyproject_gives():
    with open(PYPROJECT, "rb") as handle:
        declared = tomllib.load(handle)["project"]["version"]
    assert fusecc.__version__ == importlib.metadata.version("fusecc") == declared


def test_feeds_in_any_memory_give_the_same_answer():
    """A run reads a feed where it is, whether it is writable or not, or a copy of it where it is not
    C-contiguous; each way the answer is ORT's, bit for bit the same."""
    model = two_outputs()
    compiled = fusecc.compile(model, cache=False)
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    read_only = np.frombuffer(x.tobytes(), dtype=np.float32).reshape(3, 8)
    assert not read_only.flags.writeable
    strided = np.asfortranarray(x)
    assert not strided.flags.c_contiguous
    for feed in (x, read_only, strided):
        scores, best = compiled.run({"x": feed})
        np.testing.assert_allclose(scores, expected[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(best, expected[1])
        assert scores.tobytes() == compiled.run({"x": x})[0].tobytes()
