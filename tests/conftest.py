"""Settings for the whole test session.

The compile cache is off (``FUSECC_CACHE=0``, which the subprocesses tests start inherit): a test sees the
compiler at work rather than what an earlier run left, and the suite never writes the user's cache. Tests of the
cache switch it on in a temporary directory through the ``compile_cache`` fixture.

The thread pool splits every kernel of more than one step (``FUSECC_MIN_CHUNK_WORK=1``), however little its
work, so every test that runs a model runs its kernels in chunks across threads (``runtime/threadpool.c``).
"""

import os

import pytest

os.environ["FUSECC_CACHE"] = "0"
os.environ["FUSECC_MIN_CHUNK_WORK"] = "1"


@pytest.fixture
def compile_cache(tmp_path, monkeypatch):
    """The compile cache switched on, in a directory of this test's own (not created yet); its path."""
    directory = tmp_path / "fusecc-cache"
    monkeypatch.setenv("FUSECC_CACHE", "1")
    monkeypatch.setenv("FUSECC_CACHE_DIR", str(directory))
    monkeypatch.delenv("FUSECC_CACHE_SIZE", raising=False)
    return directory
