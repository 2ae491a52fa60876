"""The installed dependencies are the ones the suite was last run against (``constraints.txt``).

A dependency's new release can change results (ml_dtypes 0.7 changed what out-of-range float to int4
conversions give), so a version the suite has not passed with fails here, by name, rather than
somewhere deep in the suite.
"""

from __future__ import annotations

import importlib.metadata
import os
import re

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

CONSTRAINTS = os.path.join(os.path.dirname(__file__), os.pardir, "constraints.txt")


def read_constraints(path: str = CONSTRAINTS) -> dict[str, tuple[Version, SpecifierSet]]:
    """``name==version  # tested: SPEC`` lines -> {name: (pinned version, versions also tested)}."""
    pins = {}
    with open(path) as file:
        for number, line in enumerate(file, 1):
            text, _, comment = line.partition("#")
            if not text.strip():
                continue
            match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)==(\S+)\s*", text)
            if match is None:
                raise ValueError(f"{path}:{number}: expected 'name==version', got {line.strip()!r}")
            tested = re.fullmatch(r"\s*tested:\s*(\S+)\s*", comment)
            pinned = Version(match[2])
            pins[canonicalize_name(match[1])] = (pinned, SpecifierSet(tested[1] if tested else f"=={pinned}"))
    return pins


def fusecc_dependencies() -> list[str]:
    """The packages fusecc and its test extra require (from the installed package's metadata)."""
    names = []
    for text in importlib.metadata.requires("fusecc") or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": "test"}):
            names.append(canonicalize_name(requirement.name))
    return names


def test_constraints_pin_every_dependency():
    missing = sorted(set(fusecc_dependencies()) - set(read_constraints()))
    assert missing == [], f"constraints.txt pins no version of {missing}"


def test_dependencies_are_installed_at_tested_versions():
    pins = read_constraints()
    untested = []
    for name in fusecc_dependencies():
        installed = Version(importlib.metadata.version(name))
        pinned, tested = pins[name]
        if installed not in tested:
            untested.append(f"{name} {installed} (the suite was last run with {pinned}, tested: {tested})")
    assert untested == [], (
        "installed at versions the suite has not passed with: " + "; ".join(untested) +
        ". Install with `pip install -c constraints.txt -e '.[test]'`, or run the suite against these "
        "versions and record them in constraints.txt.")


def test_a_version_outside_the_tested_range_is_named(tmp_path):
    path = tmp_path / "constraints.txt"
    path.write_text("# comment\nnumpy==2.4.6\nml_dtypes==0.7.0  # tested: >=0.5.4,<=0.7.0\n")
    pins = read_constraints(str(path))
    assert Version("0.5.4") in pins["ml-dtypes"][1] and Version("0.8.0") not in pins["ml-dtypes"][1]
    assert Version("2.4.6") in pins["numpy"][1] and Version("2.4.7") not in pins["numpy"][1]
