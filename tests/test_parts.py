"""A model's code compiled in parts by several processes at once (``codegen.parts``) runs as when compiled whole.

Parts are cut only from code larger than ``MIN_PART_CHARS``; the tests lower that bound so that a small model
is cut into three parts, two of them compiled by child processes.
"""

import re
import sys

import numpy as np
import pytest

import fusecc
from fusecc.codegen import parts
from fusecc.codegen.target import find_c_compiler, CodegenError
from fusecc.driver import Options, generate_code, load_timed
from fusecc.tools import models

try:
    find_c_compiler()
    HAVE_CC = True
except CodegenError:
    HAVE_CC = False


@pytest.fixture
def small_parts(monkeypatch):
    monkeypatch.setattr(parts, "MIN_PART_CHARS", 2000)


def model_and_feeds():
    model = models.resnet_block(channels=16, size=14)
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
             for i in model.graph.input}
    return model, feeds


def _defined(text):
    """The functions ``text`` defines, other than kernels' bodies (which are inlined into their kernels)."""
    return {name for name in re.findall(r'^define [^@]*@"?([^"(]+)"?\(', text, re.M)
            if not name.endswith(parts.BODY_SUFFIX)}


def test_each_kernel_is_defined_in_one_part_and_declared_where_the_entry_calls_it(small_parts):
    model, _ = model_and_feeds()
    options = Options(cache=False)
    code = generate_code(load_timed(model, options), options, jobs=3)
    split = [part.part for part in code.other_parts]
    assert len(split) == 2
    whole = generate_code(load_timed(model, options), options, jobs=1)
    assert whole.other_parts == ()
    kernels = _defined(str(whole.module_ref)) - {"fusecc_main"}
    first = _defined(str(code.module_ref)) - {"fusecc_main"}
    others = [_defined(part.text) for part in split]
    assert [part.defines for part in split] == [frozenset(names) for names in others]
    assert all(names for names in others) and sorted(first | set().union(*others)) == sorted(kernels)
    assert len(first) + sum(len(names) for names in others) == len(kernels)
    for names, part in zip(others, split):
        bodies = set(re.findall(r'^define internal void @"([^"]+)\.body"\(', part.text, re.M))
        assert bodies == names  # each kernel's body in the kernel's part, internal to it
        for name in names:
            assert f'define hidden void @"{name}"' in "".join(part.text for part in split)
            assert re.search(f'^declare [^@]*@"?{name}"?\\(', str(code.module_ref), re.M)
    code.objects  # the children finish


def test_code_compiled_in_parts_gives_the_bits_of_code_compiled_whole(small_parts, monkeypatch, tmp_path):
    model, feeds = model_and_feeds()
    monkeypatch.setenv(parts.JOBS_VARIABLE, "1")
    whole = fusecc.compile(model, cache=False).run(feeds)
    monkeypatch.setenv(parts.JOBS_VARIABLE, "3")
    compiled = fusecc.compile(model, cache=False)
    for got, want in zip(compiled.run(feeds), whole):
        assert got.tobytes() == want.tobytes()
    if HAVE_CC:
        compiled.save(str(tmp_path / "model.so"))
        for got, want in zip(fusecc.load(str(tmp_path / "model.so")).run(feeds), whole):
            assert got.tobytes() == want.tobytes()


def test_a_part_whose_process_cannot_start_is_compiled_here(small_parts, monkeypatch):
    model, feeds = model_and_feeds()
    monkeypatch.setenv(parts.JOBS_VARIABLE, "1")
    whole = fusecc.compile(model, cache=False).run(feeds)
    monkeypatch.setenv(parts.JOBS_VARIABLE, "3")
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    for got, want in zip(fusecc.compile(model, cache=False).run(feeds), whole):
        assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_job_count_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv(parts.JOBS_VARIABLE, value)
    with pytest.raises(ValueError, match=f"{parts.JOBS_VARIABLE} must be a whole number of 1 or more, got '{value}'"):
        parts.compile_jobs()
