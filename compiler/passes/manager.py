"""Passes, the pass registry, pipelines and the pass manager with its debugging hooks.

A pass is a small class with a ``name`` and a docstring saying what it
rewrites; its dataclass fields are its options. A pipeline is written
``"shape-inference,fold-constants,fuse{max-ops=32}"``. The manager verifies
after each pass (by default), prints IR before/after chosen passes, times them,
dumps ``NNN_<pass>.fir`` files, and on a failure inside a pass writes a
reproducer (the input IR and the pipeline) to replay with ``fusecc-opt``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import ClassVar, TextIO

from fusecc.ir.core import IRError, Module
from fusecc.ir.printer import print_module

PASS_REGISTRY: dict[str, type["Pass"]] = {}


#: reproducers of failed passes kept in ``reproducer_directory()``; older ones are removed
KEPT_REPRODUCERS = 16


def reproducer_directory() -> str:
    """Where failed passes leave their reproducers: ``$FUSECC_REPRO_DIR``, else one private directory
    per user under the system's temporary directory."""
    return os.environ.get("FUSECC_REPRO_DIR") or os.path.join(tempfile.gettempdir(),
                                                              f"fusecc-reproducers-{os.getuid()}")


def _keep_newest(directory: str, count: int) -> None:
    names = sorted((name for name in os.listdir(directory) if name.startswith("repro_") and name.endswith(".fir")),
                   reverse=True)
    for name in names[count:]:
        os.unlink(os.path.join(directory, name))


class PassError(IRError):
    """A pass failed; the message names the pass and, when written, the reproducer."""


@dataclass
class Pass:
    """Base class of passes: subclasses set ``name`` and implement ``run``."""

    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            PASS_REGISTRY[cls.name] = cls

    def run(self, module: Module) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        options = [f"{f.name.replace('_', '-')}={_format_option(getattr(self, f.name))}"
                   for f in dataclasses.fields(self) if getattr(self, f.name) != _default(f)]
        return self.name + ("{" + ",".join(options) + "}" if options else "")


def _default(field: dataclasses.Field):
    """A pass option's default value, whether given as a value or a factory."""
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def _format_option(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_option(cls: type[Pass], key: str, text: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    name = key.replace("-", "_")
    if name not in fields:
        known = ", ".join(f.name.replace("_", "-") for f in fields.values()) or "none"
        raise PassError(f"pass '{cls.name}' has no option '{key}' (options: {known})")
    default = _default(fields[name])
    try:
        if isinstance(default, bool):
            if text not in ("true", "false", "1", "0"):
                raise ValueError
            return text in ("true", "1")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, (list, tuple)):
            return [int(v) for v in text.split(",") if v]
    except ValueError:
        raise PassError(f"option '{key}' of pass '{cls.name}' cannot be '{text}'") from None
    return text


def parse_pipeline(text: str, defaults: dict[str, object] | None = None) -> list[Pass]:
    """``"a,b{opt=1,other=x},c"`` -> pass instances. ``defaults`` (by option name) set the options a pass
    declares and the text does not give (a target's vector width, say)."""
    passes = []
    for match in re.finditer(r"\s*([A-Za-z0-9_-]+)\s*(\{([^}]*)\})?\s*(,|$)", text.strip()):
        name, options = match.group(1), match.group(3)
        if not name:
            continue
        cls = PASS_REGISTRY.get(name)
        if cls is None:
            raise PassError(f"unknown pass '{name}'; known passes: {', '.join(sorted(PASS_REGISTRY))}")
        kwargs = {}
        if options:
            for item in re.split(r",(?=[A-Za-z_][A-Za-z0-9_-]*=)", options):
                key, _, value = item.partition("=")
                kwargs[key.strip().replace("-", "_")] = _parse_option(cls, key.strip(), value.strip())
        declared = {f.name for f in dataclasses.fields(cls)}
        for key, value in (defaults or {}).items():
            if key.replace("-", "_") in declared:
                kwargs.setdefault(key.replace("-", "_"), value)
        passes.append(cls(**kwargs))
    if not passes and text.strip():
        raise PassError(f"cannot parse pipeline '{text}'")
    return passes


@dataclass
class Instrumentation:
    """What the pass manager reports around each pass (shared by CLI, API and FUSECC_* variables)."""

    verify_each: bool = True
    print_before: set[str] = field(default_factory=set)
    print_after: set[str] = field(default_factory=set)
    print_after_all: bool = False
    print_after_change: bool = False
    time_passes: bool = False
    dump_dir: str | None = None
    #: whether ``dump_dir`` files hold the weights (so they replay as they are) or elide them (a dump per pass
    #: of a model's weights would be hundreds of megabytes)
    dump_weights: bool = False
    elide_resources: bool = True
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    #: passes run so far under this instrumentation (numbers dump files across pipelines)
    passes_run: int = 0
    #: (step, seconds) of everything timed under this instrumentation, in order: each pass, and the steps the
    #: driver times around them (import, LLVM code generation, linking)
    timings: list[tuple[str, float]] = field(default_factory=list)

    def report_timings(self) -> None:
        """One table of ``timings`` on ``stream`` (``--time-passes``), the share of each in their total."""
        total = sum(t for _, t in self.timings) or 1e-12
        out = self.stream
        out.write("===-------------------------------------------------------------------------===\n")
        out.write("                         ... Compile timing report ...\n")
        out.write("===-------------------------------------------------------------------------===\n")
        out.write(f"  Total Execution Time: {total:.4f} seconds\n\n   ----Wall Time----  ----Name----\n")
        for name, seconds in self.timings:
            out.write(f"   {seconds:.4f} ({100 * seconds / total:5.1f}%)  {name}\n")
        out.write(f"   {total:.4f} (100.0%)  Total\n")


class PassManager:
    def __init__(self, passes: list[Pass], instrumentation: Instrumentation | None = None):
        self.passes = passes
        self.inst = instrumentation or Instrumentation()

    @property
    def pipeline(self) -> str:
        return ",".join(p.describe() for p in self.passes)

    def _print(self, title: str, module: Module) -> None:
        self.inst.stream.write(f"// -----// IR Dump {title} //----- //\n")
        self.inst.stream.write(print_module(module, elide_resources=self.inst.elide_resources))
        self.inst.stream.flush()

    def run(self, module: Module) -> Module:
        inst = self.inst
        if inst.dump_dir:
            os.makedirs(inst.dump_dir, exist_ok=True)
        snapshot, snapshot_index = None, 0
        for number, p in enumerate(self.passes):
            if p.name in inst.print_before:
                self._print(f"Before {p.name}", module)
            if len(module.funcs) == 1 or snapshot is None:
                # graph-level modules are cheap to print; after lowering, replay from the last one
                snapshot, snapshot_index = print_module(module, elide_resources=True), number
            before = None
            if inst.print_after_change:
                before = snapshot if snapshot_index == number else print_module(module, elide_resources=True)
            start = time.perf_counter()
            try:
                p.run(module)
                if inst.verify_each:
                    module.verify()
            except IRError as exc:
                raise PassError(f"pass '{p.name}' failed: {exc}{self._reproducer(snapshot_index, snapshot)}") from exc
            inst.timings.append((p.name, time.perf_counter() - start))
            if inst.print_after_all or p.name in inst.print_after:
                self._print(f"After {p.name}", module)
            elif inst.print_after_change and before != print_module(module, elide_resources=True):
                self._print(f"After {p.name}", module)
            inst.passes_run += 1
            if inst.dump_dir:
                path = os.path.join(inst.dump_dir, f"{inst.passes_run:03d}_{p.name}.fir")
                with open(path, "w") as handle:
                    handle.write(print_module(module, elide_resources=not inst.dump_weights))
        return module

    def _reproducer(self, number: int, before: str) -> str:
        """Write the IR as it stood before pass ``number``, and the pipeline from there that fails."""
        try:
            remaining = ",".join(p.describe() for p in self.passes[number:])
            directory = reproducer_directory()
            os.makedirs(directory, mode=0o700, exist_ok=True)
            path = os.path.join(directory, f"repro_{time.time_ns():020d}_{os.getpid()}.fir")  # names sort by age
            with open(path, "x") as handle:
                handle.write(f"// Reproducer: fusecc-opt {path} --pass-pipeline=\"{remaining}\"\n")
                handle.write(before)
            _keep_newest(directory, KEPT_REPRODUCERS)
            return f"\nreproducer: fusecc-opt {path} --pass-pipeline=\"{remaining}\""
        except OSError:
            return ""
