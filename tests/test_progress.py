"""The progress bar of a long compile: on a terminal only, redrawn in place, cleared at the end."""

import io
import time

import fusecc
from fusecc import progress
from fusecc.progress import advance, showing_progress
from fusecc.tools import models


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_compile_on_a_terminal_shows_its_steps_and_clears_the_line():
    terminal = Terminal()
    with showing_progress(stream=terminal, after=0):
        for step in ("import", "phase graph", "llvm-optimize"):
            advance(step)
            time.sleep(3 * progress.REDRAW_SECONDS)
    text = terminal.getvalue()
    assert "fusecc: [" in text and "] import " in text and "] llvm-optimize " in text
    assert text.endswith("\r\x1b[K")
    assert "\n" not in text  # one line, redrawn in place


def test_nothing_shows_off_a_terminal_when_quiet_before_the_delay_or_twice():
    for stream, quiet, after in ((io.StringIO(), False, 0), (Terminal(), True, 0), (Terminal(), False, 60)):
        with showing_progress(quiet=quiet, stream=stream, after=after):
            advance("import")
            time.sleep(3 * progress.REDRAW_SECONDS)
        assert stream.getvalue() == ""
    outer, inner = Terminal(), Terminal()
    with showing_progress(stream=outer, after=0), showing_progress(stream=inner, after=0):
        advance("import")
        time.sleep(3 * progress.REDRAW_SECONDS)
    assert outer.getvalue() and not inner.getvalue()


def test_fusecc_compile_on_a_terminal_shows_progress(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setattr(progress, "AFTER_SECONDS", 0)
    monkeypatch.delenv("FUSECC_DEBUG", raising=False)
    fusecc.compile(models.mlp(batch=2, sizes=(32, 48, 8)), cache=False)
    text = terminal.getvalue()
    assert "fusecc: [" in text and text.endswith("\r\x1b[K"), text
