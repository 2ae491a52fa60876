"""The random-graph fuzzer (``fusecc.tools.fuzz``): its regression cases, a bounded run, and the fuzzer itself.

* every case in ``tests/fuzz_cases/`` (a failure the fuzzer found, minimised) runs through the
  reference interpreter, fusecc unfused and fused, and must match ONNX Runtime; a case whose
  sidecar names an ``open_bug`` is a strict xfail (fixing the bug makes it XPASS: then drop the
  field), ``known_bug`` says which bug a case was found for;
* a bounded run with a fixed seed must find no mismatch, internal error, crash or hang, other
  than the failures of open-bug cases;
* the generators build graphs the ONNX checker and ONNX Runtime accept, the minimiser shrinks a
  failing graph to the node that fails, outputs are compared as the fuzzer documents, and a
  worker that aborts or hangs is reported as such while the run goes on.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from fusecc.tools import fuzz

CASES_DIR = Path(__file__).parent / "fuzz_cases"
CASES = fuzz.load_cases(str(CASES_DIR))
OPEN_BUGS = {case.path for case in CASES if case.sidecar.get("open_bug")}
#: graphs of the bounded run: about 40 s on 2 cores under CI, longer locally
BOUNDED_RUN = 120 if os.environ.get("CI") else 250
BOUNDED_SEED = 20261202


@pytest.fixture(scope="module")
def worker():
    with fuzz.Worker(timeout=120) as running:
        yield running


# --------------------------------------------------------------------------------------
# Regression cases
# --------------------------------------------------------------------------------------
def test_there_are_regression_cases():
    assert len(CASES) >= 3


def regression_param(case: fuzz.RegressionCase):
    bug = case.sidecar.get("open_bug")
    marks = [pytest.mark.xfail(reason=bug, strict=True)] if bug else []
    return pytest.param(case, id=Path(case.path).stem, marks=marks)


@pytest.mark.parametrize("case", [regression_param(c) for c in CASES])
def test_regression_case(case, worker):
    outcome = fuzz.evaluate(case.model, case.input_seed, worker)
    bug = case.sidecar.get("known_bug", "")
    graph = "\n  ".join(case.sidecar["graph"])
    assert outcome.kind == "match", f"{outcome.describe()}\n{bug}\ngraph:\n  {graph}"


@pytest.mark.parametrize("case", CASES, ids=[Path(c.path).stem for c in CASES])
def test_regression_case_is_small_and_described(case):
    assert os.path.getsize(case.path) < 100 * 1024
    assert case.sidecar["outcome"] in fuzz.FAILURES
    assert case.sidecar["graph"] == fuzz.describe_graph(case.model)
    onnx.checker.check_model(case.model, full_check=True)


# --------------------------------------------------------------------------------------
# A bounded run
# --------------------------------------------------------------------------------------
def test_bounded_fuzz_run_finds_no_new_failure():
    report = fuzz.fuzz(BOUNDED_SEED, count=BOUNDED_RUN, cases_dir=str(CASES_DIR), minimize_failures=False)
    assert report.tried == BOUNDED_RUN
    new = [f for f in report.failures if f.get("duplicate_of") not in OPEN_BUGS]
    assert not new, report.text()
    assert report.counts["invalid"] == 0, report.text()
    # refusals are fine, but a run of them would check nothing
    assert report.counts["match"] >= 0.9 * BOUNDED_RUN, report.text()


# --------------------------------------------------------------------------------------
# The generators
# --------------------------------------------------------------------------------------
def assert_valid(model: onnx.ModelProto) -> None:
    onnx.checker.check_model(model, full_check=True)
    fuzz.onnxruntime_session(model)


def test_generated_graphs_pass_the_checker_and_onnxruntime():
    ops, themes = set(), set()
    for index in range(150):
        case = fuzz.generate(7, index)
        assert_valid(case.model)
        ops |= {node.op_type for node in case.model.graph.node}
        themes.add(case.theme)
    assert themes == set(fuzz.THEMES)
    assert len(ops) >= 60


def single_generator_graph(op: str, seed: int, opset: int) -> onnx.ModelProto | None:
    """A graph made by the generator of ``op`` alone, or None when it gave up."""
    dtype = "i64" if op in fuzz.INTEGER and op not in fuzz.ELEMENTWISE else "f32"
    g = fuzz.GraphBuilder(np.random.default_rng(seed), opset, dtype, long_axis=0.2)
    for _ in range(3):
        fuzz.try_generator(g, op)
    return g.model() if g.nodes else None


@pytest.mark.parametrize("op", sorted(fuzz.GENERATORS))
def test_every_generator_builds_valid_graphs(op):
    opsets = sorted(set(fuzz.OPSETS))
    built = 0
    for seed in range(6):
        # the newest opset every other time: some ops only exist there (GroupNormalization-21)
        model = single_generator_graph(op, seed, opsets[-1] if seed % 2 else opsets[seed % len(opsets)])
        if model is not None:
            assert_valid(model)
            built += 1
    assert built >= 3, f"the {op} generator gave up {6 - built} times out of 6"


def test_generated_values_stay_within_their_bounds():
    """The bounds the generators track are what keeps Log, Div and Exp in their domains."""
    checked = 0
    for index in range(60):
        g = fuzz.GraphBuilder(np.random.default_rng([3, index]), 18, "f32", long_axis=0.0)
        for op in ("Exp", "Log", "Div", "Softmax", "MatMul", "LayerNormalization", "ReduceSum", "Pow"):
            fuzz.try_generator(g, op)
        model = g.model()
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        values = {v.name: v for v in g.pool}
        produced = [name for node in model.graph.node for name in node.output]
        del probe.graph.output[:]
        probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in produced)
        results = fuzz.onnxruntime_session(probe).run(None, fuzz.sample_feeds(model, index))
        for name, array in zip(produced, results):
            if name not in values:  # a Constant node's operand
                continue
            value = values[name]
            rounding = 1e-5 * max(1.0, value.bound)  # the bounds are exact in float64, the values float32
            assert np.all(np.isfinite(array)), name
            assert value.lo - rounding <= array.min() and array.max() <= value.hi + rounding, name
            checked += 1
    assert checked > 300


# --------------------------------------------------------------------------------------
# The minimiser
# --------------------------------------------------------------------------------------
def generated_graph(predicate, min_nodes: int) -> onnx.ModelProto:
    """The first graph of seed 11 with ``min_nodes`` nodes or more for which ``predicate`` holds."""
    for index in range(1000):
        model = fuzz.generate(11, index).model
        if len(model.graph.node) >= min_nodes and predicate(model):
            return model
    raise AssertionError(f"no generated graph of seed 11 with {min_nodes} nodes satisfies {predicate.__name__}")


def has_softmax(model: onnx.ModelProto) -> bool:
    return any(node.op_type == "Softmax" for node in model.graph.node)


def reduces_a_softmax(model: onnx.ModelProto) -> bool:
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    return any(n.op_type.startswith("Reduce") and producer.get(n.input[0]) == "Softmax" for n in model.graph.node)


def test_minimizer_shrinks_to_the_node_that_fails():
    model = generated_graph(has_softmax, min_nodes=6)
    minimal = fuzz.minimize(model, has_softmax, budget_seconds=60)
    assert [node.op_type for node in minimal.graph.node] == ["Softmax"]
    (name, shape, _), = fuzz.graph_inputs(minimal)
    assert minimal.graph.node[0].input[0] == name
    assert np.prod(shape) == 1, "every dim shrinks to 1: the predicate does not need them"
    assert len(minimal.graph.node[0].attribute) == 0, "the axis attribute is not needed either"
    assert_valid(minimal)


def test_minimizer_keeps_what_the_failure_needs():
    model = generated_graph(reduces_a_softmax, min_nodes=5)
    minimal = fuzz.minimize(model, reduces_a_softmax, budget_seconds=60)
    softmax, reduction = minimal.graph.node
    assert softmax.op_type == "Softmax" and reduction.op_type.startswith("Reduce")
    assert reduction.input[0] == softmax.output[0]
    assert_valid(minimal)


def test_minimizer_returns_the_graph_when_nothing_smaller_fails():
    model = generated_graph(has_softmax, min_nodes=3)
    assert fuzz.minimize(model, lambda m: m is model, budget_seconds=30).graph.node == model.graph.node


# --------------------------------------------------------------------------------------
# Comparing outputs
# --------------------------------------------------------------------------------------
def test_compare_uses_relative_and_scaled_absolute_tolerances():
    want = np.array([1.0, 100.0, 0.0], np.float32)
    assert fuzz.compare(want * (1 + 5e-5), want, 1.0) is None
    assert fuzz.compare(want * (1 + 5e-4), want, 1.0) is not None
    assert fuzz.compare(want + np.float32(5e-4), want, 100.0) is None
    assert fuzz.compare(want + np.float32(5e-4), want, 1.0) is not None
    half = want.astype(np.float16)
    assert fuzz.compare(half * np.float16(1.004), half, 1.0) is None
    assert fuzz.compare(half * np.float16(1.1), half, 1.0) is not None


def test_scale_grows_through_a_normalisation_of_nearly_equal_values():
    """A group of nearly equal values normalised: an error in them grows by 1/sqrt(variance + eps)."""
    from onnx import helper
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=2, epsilon=1e-4)
    graph = helper.make_graph([node], "g", [], [helper.make_empty_tensor_value_info("y")])
    model = helper.make_model(graph)
    flat = np.array([[[1.0], [1.0], [-3.0], [5.0]]], np.float32)  # group 0 equal, group 1 spread 4
    values = {"x": flat, "s": np.full(4, 2.0, np.float32), "b": np.zeros(4, np.float32),
              "y": np.zeros((1, 4, 1), np.float32)}
    assert fuzz.ancestor_scale(model, "y", values) == pytest.approx(5.0 * 2.0 / np.sqrt(1e-4), rel=1e-6)
    values["x"] = np.array([[[0.0], [2.0], [-3.0], [5.0]]], np.float32)  # both groups spread
    assert fuzz.ancestor_scale(model, "y", values) == pytest.approx(5.0 * 2.0 / np.sqrt(1.0 + 1e-4), rel=1e-6)


def test_compare_requires_nans_in_the_same_places_and_exact_integers():
    want = np.array([np.nan, 1.0, np.inf], np.float32)
    assert fuzz.compare(want.copy(), want, 1.0) is None
    assert "differ" in fuzz.compare(np.array([0.0, 1.0, np.inf], np.float32), want, 1.0)
    assert "differ" in fuzz.compare(np.array([np.nan, np.nan, np.inf], np.float32), want, 1.0)
    assert fuzz.compare(np.array([3, 4]), np.array([3, 4]), 1e9) is None
    assert fuzz.compare(np.array([3, 5]), np.array([3, 4]), 1e9) is not None
    assert "shape" in fuzz.compare(np.zeros((2, 1), np.float32), np.zeros(2, np.float32), 1.0)
    assert "dtype" in fuzz.compare(np.zeros(2, np.float64), np.zeros(2, np.float32), 1.0)


# --------------------------------------------------------------------------------------
# Crashes and hangs
# --------------------------------------------------------------------------------------
def test_a_worker_crash_is_reported_and_the_run_goes_on():
    report = fuzz.fuzz(5, count=3, faults={1: "abort"}, minimize_failures=False)
    assert report.counts["crash"] == 1, report.text()
    assert report.counts["match"] + report.counts["clear-error"] == 2, report.text()
    (failure,) = report.failures
    assert failure["index"] == 1
    assert failure["outcome"].startswith("crash (fused): worker died with SIGABRT")


def test_a_hang_is_reported_and_the_worker_replaced():
    model = fuzz.generate(5, 0).model
    with fuzz.Worker(timeout=120) as worker:
        assert fuzz.evaluate(model, 1, worker).kind == "match"
        worker.timeout = 3.0
        hang = fuzz.evaluate(model, 1, worker, fault="hang")
        assert (hang.kind, hang.variants) == ("hang", ("fused",))
        worker.timeout = 120
        assert fuzz.evaluate(model, 1, worker).kind == "match"


def test_written_case_loads_back(tmp_path):
    original = generated_graph(has_softmax, min_nodes=3)
    model = fuzz.minimize(original, has_softmax, budget_seconds=30)
    outcome = fuzz.Outcome("mismatch", ("fused",), "", "fused: output #0: 1 of 1 elements differ")
    path = fuzz.write_case(str(tmp_path), model, 1234, outcome, "seed 11")
    assert Path(path).name == "mismatch-fused-softmax.onnx"
    (case,) = fuzz.load_cases(str(tmp_path))
    assert case.input_seed == 1234 and case.sidecar["variants"] == ["fused"]
    assert case.model.graph == model.graph
    (found,) = fuzz.known_failures(str(tmp_path))
    assert found.matches(original, outcome)
    assert not found.matches(original, fuzz.Outcome("crash", ("fused",), "fused"))
