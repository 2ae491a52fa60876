"""The ``.fir`` test corpus in ``tests/fir``, run the way lit runs MLIR's tests, plus the text round trip.

``test_run_lines``: each ``// RUN:`` line of a file is a shell pipeline; ``%s``
is the file's path (``%S`` its directory, ``%%`` a literal ``%``). It runs under
bash with ``pipefail`` (lit's default), so a crash of ``fusecc-opt`` fails the
test even when ``filecheck`` would accept the output. Every line must exit 0.

Expected failures: a file named ``xfail_<name>.fir`` documents a known compiler
bug (its comments say where and how to fix it). The runner asserts that at
least one of its RUN lines still fails, so a fix shows up as an unexpected pass:
then drop the ``xfail_`` prefix.

``test_round_trip``: every ``// -----`` chunk of every file is parsed and
printed twice; the two prints must be identical. Chunks of ``roundtrip*.fir``
files are written in the printer's exact format, so for them
``print(parse(chunk)) == chunk`` byte for byte, once the chunk's leading
comment (and blank) lines are set aside. The other files' inputs are written
in that format too (STYLE: "every .fir test also checks print(parse(x)) == x"),
up to the blank lines that end a chunk; a chunk whose input is deliberately
not in printed form (say, to test what the parser accepts) opts out with a
``// ROUNDTRIP: NOT-EXACT`` line, one meant to be rejected with
``// ROUNDTRIP: SKIP``. A chunk with a ``// ROUNDTRIP: XFAIL`` line is a known
round-trip bug and must still fail.

Tools come from the directory of the running interpreter first (the console
scripts of this environment), then ``PATH``, then ``python -m``-style
fallbacks. Files run in parallel unless pytest-xdist already spreads the tests.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import fusecc.dialects  # noqa: F401  (registers the ops the parser builds)
from fusecc.ir import parse_module, print_module
from fusecc.ir.attributes import DenseAttr
from fusecc.ir.printer import format_dense

FIR_DIR = Path(__file__).parent / "fir"
FIR_FILES = sorted(FIR_DIR.glob("*.fir"))
SEPARATOR = "// -----"
RUN_TIMEOUT = 120

_PY = shlex.quote(sys.executable)
#: tool -> command used when the tool is not installed next to the interpreter or on PATH
_FALLBACKS = {
    "fusecc-opt": f"{_PY} -c 'import sys; from fusecc.cli import opt_main; sys.exit(opt_main())'",
    "fusecc": f"{_PY} -c 'import sys; from fusecc.cli import main; sys.exit(main())'",
    "filecheck": f"{_PY} -m filecheck",
}
#: lit's ``not``: succeed exactly when the command fails
_NOT = f"{_PY} -c 'import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]) == 0)'"


def _search_path() -> str:
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def _tool(name: str) -> str:
    found = shutil.which(name, path=_search_path())
    return shlex.quote(found) if found else _FALLBACKS[name]


def is_xfail(path: Path) -> bool:
    return path.name.startswith("xfail_")


# --------------------------------------------------------------------------------------
# RUN lines
# --------------------------------------------------------------------------------------
def run_lines(path: Path) -> list[str]:
    """The file's RUN commands; a line ending in a backslash continues on the next RUN line."""
    commands, pending = [], ""
    for line in path.read_text().splitlines():
        match = re.match(r"\s*//\s*RUN:(.*)$", line)
        if not match:
            continue
        text = match.group(1).strip()
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        commands.append(pending + text)
        pending = ""
    if pending:
        commands.append(pending)
    return commands


def substitute(command: str, path: Path) -> str:
    """Expand lit's ``%s``/``%S``/``%%`` and the tools' names into a bash command."""
    command = re.sub(r"%[sS%]", lambda m: {"%s": shlex.quote(str(path)), "%S": shlex.quote(str(path.parent)),
                                           "%%": "%"}[m.group(0)], command)
    for name in _FALLBACKS:
        command = re.sub(rf"(?<![\w./-]){re.escape(name)}(?![\w.-])", lambda _: _tool(name), command)
    return re.sub(r"(^|[|;&]\s*)not\s+", lambda m: m.group(1) + _NOT + " ", command)


@dataclass
class RunResult:
    command: str
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        def tail(text: str, limit: int = 6000) -> str:
            return text if len(text) <= limit else "...\n" + text[-limit:]
        return (f"$ {self.command}\nexit status {self.returncode}\n"
                f"--- stderr ---\n{tail(self.stderr)}\n--- stdout ---\n{tail(self.stdout, 2000)}")


def run_file(path: Path, tmpdir: Path) -> list[RunResult]:
    """Run every RUN line of ``path`` in order (all of them, even after a failure)."""
    env = dict(os.environ, PATH=_search_path(), TMPDIR=str(tmpdir))  # reproducers land in tmpdir
    results = []
    for command in run_lines(path):
        expanded = substitute(command, path)
        try:
            done = subprocess.run(["bash", "-c", "set -o pipefail\n" + expanded], cwd=path.parent, env=env,
                                  capture_output=True, text=True, timeout=RUN_TIMEOUT)
            results.append(RunResult(command, done.returncode, done.stdout, done.stderr))
        except subprocess.TimeoutExpired as exc:
            results.append(RunResult(command, -1, str(exc.stdout or ""), f"timed out after {RUN_TIMEOUT} s"))
    return results


@pytest.fixture(scope="session")
def fir_results(request, tmp_path_factory):
    """``get(path)`` -> the file's RunResults; without xdist, all selected files start at once."""
    tmpdir = tmp_path_factory.mktemp("fir")
    pool = ThreadPoolExecutor(max_workers=max(os.cpu_count() or 2, 2))
    futures = {}

    def submit(path: Path):
        if path not in futures:
            futures[path] = pool.submit(run_file, path, tmpdir)
        return futures[path]

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        for item in request.session.items:
            callspec = getattr(item, "callspec", None)
            if item.originalname == "test_run_lines" and callspec is not None:
                submit(callspec.params["path"])
    yield lambda path: submit(path).result()
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("path", FIR_FILES, ids=lambda p: p.name)
def test_run_lines(path: Path, fir_results):
    results = fir_results(path)
    assert results, f"{path.name} has no '// RUN:' line"
    failed = [r for r in results if r.returncode != 0]
    if is_xfail(path):
        assert failed, (f"XPASS: every RUN line of {path.name} now succeeds, so the bug it documents looks "
                        f"fixed; rename it without the xfail_ prefix.\n"
                        + "\n".join(r.describe() for r in results))
    else:
        assert not failed, "\n\n".join(r.describe() for r in failed)


def test_corpus_layout():
    """Every file starts with a RUN line feeding filecheck; every pass has a file."""
    assert FIR_FILES, f"no .fir files in {FIR_DIR}"
    for path in FIR_FILES:
        first = path.read_text().splitlines()[0]
        assert first.startswith("// RUN: "), f"{path.name} must start with a RUN line, not {first!r}"
        assert all("filecheck" in command and "%s" in command for command in run_lines(path)), path.name
    names = {p.name for p in FIR_FILES}
    for required in ("shape_inference", "fold_constants", "fold_batchnorm", "cse", "dce", "decompose",
                     "outline_kernels", "fuse", "lower_to_loops", "plan_buffers", "roundtrip"):
        assert f"{required}.fir" in names, f"missing tests/fir/{required}.fir"


# --------------------------------------------------------------------------------------
# Round trip
# --------------------------------------------------------------------------------------
def split_chunks(text: str) -> list[str]:
    """The pieces between ``// -----`` lines (as ``fusecc-opt --split-input-file`` splits them)."""
    chunks, current = [], []
    for line in text.splitlines(keepends=True):
        if line.strip() == SEPARATOR:
            chunks.append("".join(current))
            current = []
        else:
            current.append(line)
    chunks.append("".join(current))
    return chunks


def strip_leading_comments(chunk: str) -> str:
    lines = chunk.splitlines(keepends=True)
    while lines and (lines[0].lstrip().startswith("//") or not lines[0].strip()):
        lines.pop(0)
    return "".join(lines)


def _chunk_params():
    params = []
    for path in FIR_FILES:
        for index, chunk in enumerate(split_chunks(path.read_text())):
            if strip_leading_comments(chunk).strip():
                params.append(pytest.param(path, index, chunk, id=f"{path.name}:{index}"))
    return params


def _marked(chunk: str, marker: str) -> bool:
    return any(line.strip().startswith(f"// ROUNDTRIP: {marker}") for line in chunk.splitlines())


def round_trip(path: Path, index: int, chunk: str) -> None:
    name = f"{path.name} (chunk {index})"
    first = print_module(parse_module(chunk, name))
    second = print_module(parse_module(first, f"{name}, printed once"))
    assert second == first, f"{name}: printing is not stable:\n--- print(parse(x))\n{first}\n--- twice\n{second}"
    body = strip_leading_comments(chunk)
    if not path.name.startswith("roundtrip"):
        if _marked(chunk, "NOT-EXACT"):
            return
        body = body.rstrip("\n") + "\n"
    assert first == body, (f"{name} is not in the printer's format (write it as printed, or mark the chunk "
                           f"'// ROUNDTRIP: NOT-EXACT'):\n--- file\n{body}\n--- printed\n{first}")


@pytest.mark.parametrize(("path", "index", "chunk"), _chunk_params())
def test_round_trip(path: Path, index: int, chunk: str):
    if _marked(chunk, "SKIP"):
        pytest.skip("the chunk is not meant to parse")
    expected_to_fail = _marked(chunk, "XFAIL")
    if not expected_to_fail:
        round_trip(path, index, chunk)
        return
    try:
        round_trip(path, index, chunk)
    except Exception as exc:  # noqa: BLE001  (any failure is the documented bug)
        pytest.xfail(f"known round-trip bug: {exc}")
    pytest.fail(f"XPASS: {path.name} chunk {index} now round-trips; remove its '// ROUNDTRIP: XFAIL' line")


@pytest.mark.parametrize(("dtype", "count"), [("float16", None), ("float32", 4000), ("float64", 4000)])
def test_dense_floats_round_trip_bit_exactly(dtype, count):
    """Printed floats are the shortest text that reads back to the same bits (every f16, samples of f32/f64)."""
    bits = {"float16": np.uint16, "float32": np.uint32, "float64": np.uint64}[dtype]
    if count is None:
        raw = np.arange(1 << 16, dtype=np.uint32).astype(bits)
    else:
        raw = np.random.default_rng(0).integers(0, np.iinfo(bits).max, count, dtype=np.uint64, endpoint=True)
        raw = raw.astype(bits)
    values = raw.view(dtype)
    values = values[~np.isnan(values)]  # NaN prints as nan, whatever its payload and sign
    text = f"func @f() -> () attributes {{v = {format_dense(DenseAttr(values))}}} {{\n  func.return()\n}}\n"
    back = parse_module(text).funcs[0].attributes["v"].value
    wrong = np.nonzero(back.view(bits) != values.view(bits))[0]
    assert wrong.size == 0, f"{wrong.size} {dtype} values change, e.g. {values[wrong[:5]]} -> {back[wrong[:5]]}"
