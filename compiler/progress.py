"""A progress bar for compiles that take a while, on a terminal only.

A compile passes through its steps in order (the import, the graph, fusion and loops phases, LLVM's steps, the
link or the JIT load). :func:`showing_progress` starts a display for the compile it encloses; :func:`advance`
(called where each step begins) moves it on. Once the compile has run for ``AFTER_SECONDS``, a thread redraws one
line on the terminal several times a second, ``fusecc: [#####.....] llvm-optimize 3.1 s``, and the line is
cleared when the compile ends. Output that is not a terminal (a pipe, a log file, a test) gets nothing, nor does a
compile that prints its own reports (``FUSECC_DEBUG``).
"""

from __future__ import annotations

import contextvars
import sys
import threading
import time
from contextlib import contextmanager

#: the steps of a compile, in order (the bar is full at the last one, and at any step not listed: the JIT load,
#: the assembly of ``--emit=asm``)
STEPS = ("import", "phase graph", "phase fusion", "phase loops", "llvm-ir", "llvm-optimize", "llvm-object",
         "link")
#: how long a compile runs before its progress shows
AFTER_SECONDS = 1.0
#: seconds between redraws
REDRAW_SECONDS = 0.1
WIDTH = 20

_current: contextvars.ContextVar["Progress | None"] = contextvars.ContextVar("fusecc_progress", default=None)


class Progress:
    """The display of one compile on ``stream``: the current step and the time since the start."""

    def __init__(self, stream, after: float):
        self.stream, self.after = stream, after
        self.start = time.monotonic()
        self.step = ""
        self.done = threading.Event()
        self.drawn = False
        self.thread = threading.Thread(target=self._redraw, name="fusecc-progress", daemon=True)
        self.thread.start()

    def advance(self, step: str) -> None:
        self.step = step

    def _line(self) -> str:
        position = STEPS.index(self.step) + 1 if self.step in STEPS else len(STEPS) if self.step else 0
        filled = WIDTH * position // len(STEPS)
        return f"fusecc: [{'#' * filled}{'.' * (WIDTH - filled)}] {self.step} {time.monotonic() - self.start:.1f} s"

    def _redraw(self) -> None:
        if self.done.wait(self.after):
            return
        while not self.done.is_set():
            self.stream.write("\r\x1b[K" + self._line())
            self.stream.flush()
            self.drawn = True
            self.done.wait(REDRAW_SECONDS)

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


@contextmanager
def showing_progress(quiet: bool = False, stream=None, after: float | None = None):
    """Show the progress of the compile inside the block on ``stream`` (stderr) if it is a terminal, after
    ``after`` seconds (``AFTER_SECONDS``), unless ``quiet`` or a compile around this one shows it already."""
    stream = stream if stream is not None else sys.stderr
    after = AFTER_SECONDS if after is None else after
    if quiet or _current.get() is not None or not getattr(stream, "isatty", lambda: False)():
        yield
        return
    progress = Progress(stream, after)
    token = _current.set(progress)
    try:
        yield
    finally:
        _current.reset(token)
        progress.close()


def advance(step: str) -> None:
    """The compile being shown has begun ``step``."""
    progress = _current.get()
    if progress is not None:
        progress.advance(step)
