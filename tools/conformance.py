"""ONNX conformance: ONNX's backend node test cases run through ``fusecc.backend``.

    python -m fusecc.tools.conformance            # the tally
    python -m fusecc.tools.conformance --failures # and every failing case with its error
    python -m fusecc.tools.conformance -k resize  # only cases whose name matches a regex

A case counts for fusecc when every op of its model is one fusecc converts
(``fusecc --list-ops``); it passes when every output matches ONNX's expected
data within the case's rtol/atol (ONNX's own runner's comparison). Each case
runs in a forked process, so a crash fails that case only. The output:

    node cases: PASS passing / SUPPORTED for supported ops / ALL in the suite (PCT%)
    op types:   OPS supported / SUITE in the suite (COVERED of them supported)

``tests/test_backend_node.py`` runs the same cases under pytest, against the
expected failures listed in ``tests/backend_expected_failures.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import warnings
from dataclasses import dataclass

DEFAULT_DOMAINS = ("", "ai.onnx")


def node_cases() -> list:
    """ONNX's node test cases (``onnx.backend.test.case.node.collect_testcases``), in ONNX's order."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), _quiet_numpy():
        warnings.simplefilter("ignore")
        return collect_testcases(None)


class _quiet_numpy:
    """Some case generators overflow on purpose; keep their numpy warnings quiet."""

    def __enter__(self):
        import numpy as np
        self._saved = np.seterr(all="ignore")

    def __exit__(self, *exc):
        import numpy as np
        np.seterr(**self._saved)


def case_ops(case) -> set[tuple[str, str]]:
    """(domain, op type) of every node of the case's model ('' for the default domain)."""
    return {("" if node.domain in DEFAULT_DOMAINS else node.domain, node.op_type) for node in case.model.graph.node}


def is_supported(case, supported: set[str] | None = None) -> bool:
    """Whether fusecc converts every op of the case's model."""
    if supported is None:
        from fusecc.frontend.onnx_import import supported_ops
        supported = set(supported_ops())
    return all(domain == "" and op in supported for domain, op in case_ops(case))


def run_case(case) -> None:
    """Run the case through ``fusecc.backend`` and compare; raises on any difference or error."""
    import onnx
    from onnx import numpy_helper
    from onnx.backend.test.runner import Runner

    import fusecc.backend as backend

    def array(value):
        return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else value

    rep = backend.prepare(case.model)
    for inputs, expected in case.data_sets:
        feeds = [array(x) for x in inputs]
        outputs = rep.run(feeds)
        expected = [array(y) for y in expected]
        for index, undefined in undefined_elements(case.model, feeds).items():
            expected[index] = _with_elements_of(expected[index], outputs[index], undefined)
        Runner.assert_similar_outputs(expected, outputs, case.rtol, case.atol)


def undefined_elements(model, feeds: list) -> dict:
    """{output index: mask} of the output elements ONNX leaves undefined, for a one-node Cast model.

    ONNX's Cast defines a float cast to an integer type only within the type's
    range. Outside it the node tests' expected data is whatever the installed
    ``ml_dtypes`` computes, which changed between releases (0.5 wraps to the low
    bits, 0.7 gives 0), so those elements are not compared; fusecc's own rule
    (truncate toward zero, keep the low bits) is tested in ``tests/test_ops.py``.
    """
    import numpy as np
    import onnx

    from fusecc.frontend.formats import FORMATS, value_table

    nodes = model.graph.node
    if len(nodes) != 1 or nodes[0].op_type not in ("Cast", "CastLike") or len(feeds) < 1:
        return {}
    source = np.asarray(feeds[0])
    if source.dtype.kind != "f":
        return {}
    node = nodes[0]
    if node.op_type == "Cast":
        target = next(a.i for a in node.attribute if a.name == "to")
    else:
        target = model.graph.input[1].type.tensor_type.elem_type
    if target in FORMATS:
        if FORMATS[target].kind != "int":
            return {}
        table = value_table(FORMATS[target])
        low, high = int(table.min()), int(table.max())
    else:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(target)
        if dtype.kind not in "iu":
            return {}
        low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
    with np.errstate(invalid="ignore"):
        truncated = np.trunc(source.astype(np.float64))
        return {0: ~((truncated >= low) & (truncated <= high))}


def _with_elements_of(expected, actual, mask):
    """``expected`` with the masked elements taken from ``actual`` (compared bit for bit through their storage)."""
    import numpy as np

    from fusecc.frontend.formats import to_storage

    merged = np.where(mask, to_storage(np.asarray(actual)), to_storage(np.asarray(expected)))
    return merged.view(expected.dtype) if merged.dtype != expected.dtype else merged


@dataclass
class Outcome:
    name: str
    passed: bool
    error: str = ""


def describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {' '.join(text.split())[:1000]}" if text else type(error).__name__


def _warm_up() -> None:
    """Compile a tiny model once, so forked children start with fusecc and LLVM imported and initialized."""
    import numpy as np
    from onnx import TensorProto, helper

    import fusecc

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "warm_up",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    fusecc.compile(helper.make_model(graph)).run({"x": np.zeros(2, np.float32)})


def run_isolated(cases: list, jobs: int = 1, progress=None) -> list[Outcome]:
    """Run each case in a forked child (at most ``jobs`` at a time); a crash fails its case only."""
    _warm_up()
    pending = list(reversed(cases))
    running: dict[int, tuple[object, int]] = {}
    outcomes: dict[str, Outcome] = {}
    while pending or running:
        while pending and len(running) < jobs:
            case = pending.pop()
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: run one case, report, exit without cleanup
                os.close(read_fd)
                _silence_child()
                try:
                    with _quiet_numpy():
                        run_case(case)
                    message = {"passed": True}
                except BaseException as error:  # noqa: BLE001 - every failure is reported
                    message = {"passed": False, "error": describe(error)}
                os.write(write_fd, json.dumps(message).encode())
                os._exit(0)
            os.close(write_fd)
            running[pid] = (case, read_fd)
        pid, status = os.wait()
        case, read_fd = running.pop(pid)
        data = b""
        while chunk := os.read(read_fd, 65536):
            data += chunk
        os.close(read_fd)
        if data:
            message = json.loads(data)
            outcome = Outcome(case.name, message["passed"], message.get("error", ""))
        else:
            signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            outcome = Outcome(case.name, False, f"crashed (signal {signal})" if signal else f"exit status {status}")
        outcomes[case.name] = outcome
        if progress:
            progress(outcome)
    return [outcomes[case.name] for case in cases]


def run_in_subprocess(case, timeout: float = 300) -> Outcome:
    """Run the case in a fresh interpreter: for cases whose outcome may depend on what the process has
    loaded (a crash on an unresolved runtime symbol can turn into a pass once a library providing it
    is loaded, as other tests may do)."""
    import pickle
    import subprocess
    import tempfile

    import onnx
    from onnx import numpy_helper

    def array(value):
        return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else value

    data = [([array(x) for x in inputs], [array(y) for y in expected]) for inputs, expected in case.data_sets]
    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as file:
        pickle.dump((case.name, case.model.SerializeToString(), data, case.rtol, case.atol), file)
    try:
        result = subprocess.run([sys.executable, "-m", "fusecc.tools.conformance", "--run-case-file", file.name],
                                capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Outcome(case.name, False, f"timed out after {timeout} s")
    finally:
        os.unlink(file.name)
    if result.returncode == 0:
        return Outcome(case.name, True)
    if result.returncode < 0:
        return Outcome(case.name, False, f"crashed (signal {-result.returncode})")
    lines = result.stderr.strip().splitlines()
    return Outcome(case.name, False, lines[-1] if lines else f"exit status {result.returncode}")


def _run_case_file(path: str) -> int:
    import pickle
    from types import SimpleNamespace

    import onnx

    with open(path, "rb") as file:
        name, model, data, rtol, atol = pickle.load(file)
    run_case(SimpleNamespace(name=name, model=onnx.ModelProto.FromString(model), data_sets=data,
                             rtol=rtol, atol=atol))
    return 0


def _silence_child() -> None:
    """A crashing child must not write into its parent's streams (under pytest-xdist, its channel)."""
    import faulthandler

    faulthandler.disable()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", dest="pattern", help="only cases whose name matches this regex")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="cases run at once")
    parser.add_argument("--failures", action="store_true", help="list every failing case with its error")
    parser.add_argument("--run-case-file", help=argparse.SUPPRESS)  # see run_in_subprocess
    args = parser.parse_args(argv)
    if args.run_case_file:
        return _run_case_file(args.run_case_file)

    from fusecc.frontend.onnx_import import supported_ops

    supported = set(supported_ops())
    cases = node_cases()
    suite_ops = set().union(*(case_ops(case) for case in cases))
    if args.pattern:
        cases = [case for case in cases if re.search(args.pattern, case.name)]
    candidates = [case for case in cases if is_supported(case, supported)]
    outcomes = run_isolated(candidates, max(args.jobs, 1))
    passed = sum(outcome.passed for outcome in outcomes)
    if args.failures:
        for outcome in outcomes:
            if not outcome.passed:
                print(f"{outcome.name}: {outcome.error}")
    covered = {op for domain, op in suite_ops if domain == "" and op in supported}
    share = 100.0 * passed / len(candidates) if candidates else 0.0
    print(f"node cases: {passed} passing / {len(candidates)} for supported ops / {len(cases)} in the suite "
          f"({share:.1f}%)")
    print(f"op types:   {len(supported)} supported / {len(suite_ops)} in the suite ({len(covered)} of them supported)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
