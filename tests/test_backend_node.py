"""ONNX's backend node test cases, run through ``fusecc.backend``.

Every case of ``onnx.backend.test.case.node.collect_testcases`` whose ops are
all in ``supported_ops()`` runs here and is compared with ONNX's expected
outputs (the case's rtol/atol, as ONNX's runner does). A case that fails is
listed with its reason in ``backend_expected_failures.txt``; listed cases are
strict expected failures, so a fix shows up as an XPASS to remove from the list.
Cases listed as crashing run in a fresh interpreter (whether the JIT resolves the
missing symbol depends on the libraries a process has loaded). ``python -m
fusecc.tools.conformance`` prints the tally.
"""

from __future__ import annotations

import os

import pytest

from fusecc.frontend.onnx_import import supported_ops
from fusecc.tools.conformance import is_supported, node_cases, run_case, run_in_subprocess

EXPECTED_FAILURES = os.path.join(os.path.dirname(__file__), "backend_expected_failures.txt")


def read_expected_failures(path: str = EXPECTED_FAILURES) -> dict[str, str]:
    """``case_name  # reason`` lines -> {case name: reason}; blank lines and ``#`` comments are skipped."""
    listed = {}
    with open(path) as file:
        for number, line in enumerate(file, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            name, hash_, reason = text.partition("#")
            name, reason = name.strip(), reason.strip()
            if not hash_ or not reason or " " in name:
                raise ValueError(f"{path}:{number}: expected 'case_name  # reason', got {text!r}")
            if name in listed:
                raise ValueError(f"{path}:{number}: {name} is listed twice")
            listed[name] = reason
    return listed


SUPPORTED = set(supported_ops())
ALL_CASES = node_cases()
CASES = [case for case in ALL_CASES if is_supported(case, SUPPORTED)]
XFAILS = read_expected_failures()


def _param(case):
    reason = XFAILS.get(case.name)
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_node_case(case):
    if "crash" in XFAILS.get(case.name, ""):
        outcome = run_in_subprocess(case)
        assert outcome.passed, outcome.error
    else:
        run_case(case)


def test_expected_failures_are_supported_cases():
    """Every listed case exists and is one this test runs (stale entries are removed)."""
    names = {case.name for case in CASES}
    stale = sorted(set(XFAILS) - names)
    assert stale == [], f"not supported node cases (remove them from {os.path.basename(EXPECTED_FAILURES)})"


def test_at_least_95_percent_pass():
    assert len(SUPPORTED) >= 110
    assert len(CASES) - len(XFAILS) >= 0.95 * len(CASES), (len(CASES), len(XFAILS))


# --------------------------------------------------------------------------------------
# The backend itself
# --------------------------------------------------------------------------------------
def _model(nodes, inputs, outputs, opset=17):
    """inputs and outputs: (name, element type, shape)."""
    from onnx import helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(*i) for i in inputs],
                              [helper.make_tensor_value_info(*o) for o in outputs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_backend_freezes_only_the_inputs_that_must_be_constants():
    import numpy as np
    from onnx import TensorProto, helper

    import fusecc.backend as backend

    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Relu", ["r"], ["y"])]
    model = _model(nodes, [("x", TensorProto.FLOAT, [2, 6]), ("shape", TensorProto.INT64, [2])],
                   [("y", TensorProto.FLOAT, ["a", "b"])])
    rep = backend.prepare(model)
    x = np.arange(-6, 6, dtype=np.float32).reshape(2, 6)
    (y,) = rep.run([x, np.array([3, 4])])
    np.testing.assert_array_equal(y, np.maximum(x, 0).reshape(3, 4))
    assert rep.frozen == ["shape"]
    (y,) = rep.run([-x, np.array([4, 3])])  # another shape value: compiled again
    np.testing.assert_array_equal(y, np.maximum(-x, 0).reshape(4, 3))
    (y,) = rep.run({"x": x, "shape": np.array([3, 4])})
    np.testing.assert_array_equal(y, np.maximum(x, 0).reshape(3, 4))


def test_backend_passes_formats_as_ml_dtypes_arrays():
    import ml_dtypes
    import numpy as np
    from onnx import TensorProto, helper

    import fusecc.backend as backend

    model = _model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT8E5M2)],
                   [("x", TensorProto.BFLOAT16, [4])], [("y", TensorProto.FLOAT8E5M2, [4])], opset=21)
    x = np.array([1.5, -3.0, 1e-9, 70000.0], dtype=ml_dtypes.bfloat16)
    (y,) = backend.prepare(model).run([x])
    assert y.dtype == ml_dtypes.float8_e5m2
    np.testing.assert_array_equal(y.astype(np.float32), np.array([1.5, -3.0, 0.0, 57344.0], np.float32))
