"""ONNX's backend node test cases, run through ``fusecc.backend``.

Every case of ``onnx.backend.test.case.node.collect_testcases`` whose ops are
all in ``supported_ops()`` runs here and is compared with ONNX's expected
outputs (the case's rtol/atol, as ONNX's runner does). A case that fails is
listed with its reason in ``backend_expected_failures.txt``; listed cases are
strict expected failures, so a fix shows up as an XPASS to remove from the list.
Cases listed as crashing run in a forked process. ``python -m
fusecc.tools.conformance`` prints the tally.
"""

from __future__ import annotations

import os

import pytest

from fusecc.frontend.onnx_import import supported_ops
from fusecc.tools.conformance import is_supported, node_cases, run_case, run_isolated

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
        (outcome,) = run_isolated([case])
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
