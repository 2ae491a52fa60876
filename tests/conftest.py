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


@pytest.fixture(scope="session")
def block(tmp_path_factory):
    """A residual block saved as ONNX, its path: conv1+bn1 -> relu1 -> conv2+bn2 -> residual add -> relu2, 16
    channels of 14x14, which compiles to fused_pad_0, fused_conv_relu_pad_1 and fused_conv_add_relu_2."""
    import onnx

    from fusecc.tools import models
    path = tmp_path_factory.mktemp("block") / "block.onnx"
    onnx.save(models.resnet_block(channels=16, size=14), str(path))
    return str(path)
