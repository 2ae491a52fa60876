"""A model's LLVM module cut into parts that processes of their own optimise and compile at once.

LLVM optimisation and code generation take most of a large model's compile time (DenseNet-121: 11 of 18 s), and
llvmlite runs one LLVM call at a time per process, so threads would only take turns. :func:`split_module` cuts
the module into parts of about equal size: the first holds the entry and its globals, the others kernels. A
kernel another part calls is defined there as a hidden external function and declared where it is called; the
linker (the JIT's, or the shared library's) joins the parts' objects. While this process compiles the first
part, a :class:`PartCompile` child (``python -m fusecc.codegen.parts IR OBJECT KEY``) compiles each other one
for the same target; a child that cannot start or fails leaves its part to this process, which then reports
any error as a serial compile would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from llvmlite import ir

from . import target

#: the least LLVM IR, in characters, that pays for a process of its own: about half a second of LLVM's time,
#: against about 0.15 s to start a child
MIN_PART_CHARS = 200_000
#: what a kernel's name is followed by in the name of its body, a function only the kernel calls and LLVM inlines
#: into it (``llvm_emit._emit_kernel``): the two stay in one part
BODY_SUFFIX = ".body"
#: the environment variable that sets how many processes compile a model's code (default: the CPUs this
#: process may run on)
JOBS_VARIABLE = "FUSECC_COMPILE_JOBS"


def compile_jobs() -> int:
    """How many processes may compile a model's code: ``FUSECC_COMPILE_JOBS``, else the CPUs of this process's
    affinity mask."""
    text = os.environ.get(JOBS_VARIABLE, "").strip()
    if text:
        try:
            jobs = int(text)
        except ValueError:
            jobs = 0
        if jobs < 1:
            raise ValueError(f"{JOBS_VARIABLE} must be a whole number of 1 or more, got '{text}'")
        return jobs
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass
class Part:
    """One part's LLVM IR, and the kernels it defines that the entry's part calls."""

    text: str
    defines: frozenset[str]


def split_module(module: ir.Module, entry: str, jobs: int) -> list[Part]:
    """``module`` as at most ``jobs`` parts of at least ``MIN_PART_CHARS`` each (one part, the module itself,
    when it is smaller): the first holds ``entry``, every global variable and the kernels that balance it,
    the others the rest of the kernels, largest first into the smallest part. Every part carries every
    declaration and metadata node (those it does not use are dropped by LLVM)."""
    defined = {value.name: value for value in module.globals.values()
               if isinstance(value, ir.Function) and value.blocks and value.name != entry}
    # a kernel's body (``name.body``, inlined into ``name``) stays in its kernel's part, internal to it
    bodies = {name[:-len(BODY_SUFFIX)]: fn for name, fn in defined.items() if name.endswith(BODY_SUFFIX)}
    kernels = [fn for name, fn in defined.items() if not name.endswith(BODY_SUFFIX)]

    def with_body(kernel: ir.Function) -> list[ir.Function]:
        return [kernel, bodies[kernel.name]] if kernel.name in bodies else [kernel]

    sizes = {fn.name: sum(len(str(f)) for f in with_body(fn)) for fn in kernels}
    total = sum(sizes.values()) + len(str(module.get_global(entry)))
    count = max(1, min(jobs, total // MIN_PART_CHARS, len(kernels) + 1))
    if count == 1:
        return [Part(str(module), frozenset())]
    loads = [len(str(module.get_global(entry)))] + [0] * (count - 1)
    placed: list[list[ir.Function]] = [[] for _ in range(count)]
    for fn in sorted(kernels, key=lambda f: -sizes[f.name]):
        smallest = loads.index(min(loads))
        placed[smallest].append(fn)
        loads[smallest] += sizes[fn.name]
    header = [f'; ModuleID = "{module.name}"', f'target triple = "{module.triple}"',
              f'target datalayout = "{module.data_layout}"', ""]
    header += [it.get_declaration() for it in module.get_identified_types().values()]
    declarations = [str(value) for value in module.globals.values()
                    if isinstance(value, ir.Function) and not value.blocks]
    metadata = module._get_metadata_lines()
    moved = {fn.name for part in placed[1:] for fn in part}
    first = header + declarations + [_declaration(module.get_global(name)) for name in sorted(moved)]
    kept = {entry} | {f.name for fn in placed[0] for f in with_body(fn)}
    first += [str(value) for value in module.globals.values()
              if not isinstance(value, ir.Function) or value.name in kept]
    parts = [Part("\n".join(first + metadata), frozenset())]
    for part in placed[1:]:
        body = [_hidden(f) if f is fn else str(f) for fn in part for f in with_body(fn)]  # bodies stay internal
        parts.append(Part("\n".join(header + declarations + body + metadata), frozenset(fn.name for fn in part)))
    return parts


def _declaration(fn: ir.Function) -> str:
    kind = fn.function_type
    return f'declare {kind.return_type} @"{fn.name}"({", ".join(str(arg) for arg in kind.args)})'


def _hidden(fn: ir.Function) -> str:
    """``fn``'s definition, callable from another part but not from outside the model's code."""
    text = str(fn)
    return text.replace(f"define {fn.linkage} ", "define hidden ", 1) if fn.linkage else \
        text.replace("define ", "define hidden ", 1)


class PartCompile:
    """A part compiling in a child process; :meth:`object` waits for it (or compiles it here, if the child
    could not)."""

    def __init__(self, part: Part, key: tuple):
        self.part, self.key = part, key
        self.directory = tempfile.TemporaryDirectory(prefix="fusecc_part_")
        self.ir_path = os.path.join(self.directory.name, "part.ll")
        self.object_path = os.path.join(self.directory.name, "part.o")
        with open(self.ir_path, "w") as handle:
            handle.write(part.text)
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        try:
            self.child = subprocess.Popen(
                [sys.executable, "-m", "fusecc.codegen.parts", self.ir_path, self.object_path, json.dumps(key)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)
        except OSError:
            self.child = None

    def object(self) -> bytes:
        try:
            if self.child is not None:
                self.child.communicate()
                if self.child.returncode == 0:
                    with open(self.object_path, "rb") as handle:
                        return handle.read()
            return target.emit_object(target.optimize_for(self.part.text, self.key))
        finally:
            self.directory.cleanup()


def compile_object(ir_path: str, object_path: str, key: tuple) -> None:
    """Optimise the LLVM IR in ``ir_path`` for the target ``key`` and write its object to ``object_path``."""
    with open(ir_path) as handle:
        text = handle.read()
    code = target.emit_object(target.optimize_for(text, key))
    with open(object_path + ".tmp", "wb") as handle:
        handle.write(code)
    os.replace(object_path + ".tmp", object_path)


if __name__ == "__main__":
    ir_file, object_file, target_key = sys.argv[1:4]
    try:
        compile_object(ir_file, object_file, tuple(json.loads(target_key)))
    except target.CodegenError as exc:
        sys.stderr.write(f"{exc}\n")
        sys.exit(1)
