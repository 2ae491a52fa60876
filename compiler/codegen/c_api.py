"""The C API of a model's shared library: the header a C program includes and the C source behind it.

For a prefix P (``model`` for ``model.so`` unless chosen) the library exports exactly

    int P_run(const void *const *inputs, void *const *outputs);
    int P_run_with_workspace(const void *const *inputs, void *const *outputs, void *workspace);
    int64_t P_workspace_size(void);
    const char *P_model_info(void);
    const char *P_last_error(void);
    int P_run_with_threads(const void *const *inputs, void *const *outputs, int threads);
    void P_set_num_threads(int threads);
    int P_num_threads(void);
    void P_set_parallel_for(P_parallel_for_fn parallel_for, void *host);

and the header defines the status codes (``P_OK``, ``P_ERROR_...``), the workspace size and, for every
buffer, ``P_INPUT_<i>_NAME/_RANK/_SHAPE/_ELEMENTS/_BYTES`` and its element type, under the include guard
``P_FUSECC_H``. The source includes the header, so each count and size is written once.

Every run is checked before the model's code touches memory: NULL ``inputs`` or ``outputs``, a NULL
element, or a NULL workspace the model needs return ``P_ERROR_NULL_ARGUMENT``. When the library loads, a
constructor compares the CPU (``cpuid``, and XCR0 for the register state the OS saves) with the features
the code was compiled for; if one is missing, every run returns ``P_ERROR_UNSUPPORTED_CPU``. The source is
compiled for the architecture's baseline (``target.baseline_c_flags``), so these checks run on any CPU.
``P_last_error()`` says why the calling thread's last run failed (thread-local; "" after a success).

Runs split their kernels across the library's own thread pool (``runtime/threadpool.c``, compiled in with its
symbols hidden); the header documents the threading functions.
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from dataclasses import dataclass
from string import Template

import numpy as np

from .cpu import CPUID_FEATURES, CpuRequirements
from .target import CodegenError

INT64_MAX = 2 ** 63 - 1

#: the status codes of P_run and P_run_with_workspace: (macro suffix, value, meaning)
STATUS_CODES = (
    ("OK", 0, "success"),
    ("ERROR_NULL_ARGUMENT", 1, "inputs, outputs, one of their elements, or a workspace the model needs is NULL"),
    ("ERROR_OUT_OF_MEMORY", 2, "the workspace could not be allocated"),
    ("ERROR_UNSUPPORTED_CPU", 3, "this CPU lacks a feature the code was compiled for"),
    ("ERROR_OVERLAPPING_ARGUMENTS", 4, "an output shares memory with an input, another output or the workspace"),
)

#: the name under which the source includes the header (a copy beside it, whatever the header's file name)
_INCLUDED_HEADER = "model_api.h"

_C_TYPES = {"float32": "float", "float64": "double", "int8": "int8_t", "int16": "int16_t", "int32": "int32_t",
            "int64": "int64_t", "uint8": "uint8_t", "uint16": "uint16_t", "uint32": "uint32_t",
            "uint64": "uint64_t", "bool": "uint8_t", "float16": "uint16_t"}


@dataclass(frozen=True)
class Buffer:
    """An input or output as the C API passes it: a dense row-major array."""

    kind: str
    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.elements * np.dtype(self.dtype).itemsize

    def describe(self) -> str:
        return f"{self.kind} {self.index} ({self.name!r}, {self.dtype}{list(self.shape)})"


def buffers(info: dict) -> list[Buffer]:
    """The inputs, then the outputs, of a model's info; a size that does not fit in int64 raises CodegenError."""
    result = [Buffer(kind, index, spec["name"], spec["dtype"], tuple(spec["shape"]))
              for kind in ("input", "output") for index, spec in enumerate(info[kind + "s"])]
    for buffer in result:
        negative = [d for d in buffer.shape if d < 0]
        if negative:
            raise CodegenError(f"{buffer.describe()} has a negative dimension {negative[0]}")
        if buffer.nbytes > INT64_MAX:
            raise CodegenError(f"{buffer.describe()} holds {buffer.nbytes} bytes, more than an int64 can count")
    if not 0 <= info["workspace_size"] <= INT64_MAX:
        raise CodegenError(f"the workspace of {info['workspace_size']} bytes does not fit in an int64")
    return result


def c_string(text: str) -> str:
    """``text`` as a C string literal of its UTF-8 bytes: printable ASCII as it is (``"``, ``\\`` and ``?``
    escaped), other bytes in octal."""
    return '"' + "".join(("\\" + chr(b) if chr(b) in '"\\?' else chr(b)) if 0x20 <= b < 0x7F else f"\\{b:03o}"
                         for b in text.encode()) + '"'


def _comment(text: str) -> str:
    """``text`` made safe inside a C comment."""
    return text.replace("*/", "* /")


_HEADER = Template("""\
/* ${header}: the C API of ${library}, a model compiled by fusecc for CPU ${cpu}.

   Link with:  cc prog.c -L<dir> -l:${library} -Wl,-rpath,<dir>
${needs_sentence}
   Every function may be called from several threads at once. */
#ifndef ${P}_FUSECC_H
#define ${P}_FUSECC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What ${p}_run and ${p}_run_with_workspace return; ${p}_last_error() says more. */
${status_codes}

/* Inputs and outputs: dense row-major arrays; _BYTES is the byte size of each. No output may share
   memory with an input, another output or the workspace (a run refuses such arguments). */
${buffers}
/* Bytes of scratch memory a run needs. */
#define ${P}_WORKSPACE_BYTES ${workspace}

/* Runs the model. inputs[i] points to ${P}_INPUT_<i>_BYTES readable bytes for i < ${P}_NUM_INPUTS,
   outputs[i] to ${P}_OUTPUT_<i>_BYTES writable bytes for i < ${P}_NUM_OUTPUTS; allocates and frees
   the workspace. Returns ${P}_OK or one of the error codes above. */
int ${p}_run(const void *const *inputs, void *const *outputs);

/* The same with a caller-provided workspace of ${P}_WORKSPACE_BYTES bytes (64-byte aligned; NULL is
   allowed when that is 0). Runs that share a workspace must not overlap in time. */
int ${p}_run_with_workspace(const void *const *inputs, void *const *outputs, void *workspace);

/* ${P}_WORKSPACE_BYTES. */
int64_t ${p}_workspace_size(void);

/* JSON: the inputs and outputs (name, shape, dtype), the kernels and the workspace size. */
const char *${p}_model_info(void);

/* Why the calling thread's last run failed, or "" if it succeeded.
   Thread-local; valid until that thread's next run. */
const char *${p}_last_error(void);

/* Threads. A run splits each kernel large enough to pay for it across threads: by default as many as
   the physical cores this process may run on (its CPU affinity, capped by a cgroup CPU quota), or
   FUSECC_NUM_THREADS when that is set. Workers spin for about 0.1 ms after a kernel, then sleep. A run
   that finds the library's threads busy with another run uses only its calling thread.
   Kernels keep their blocks (of a GEMM's rows, of A and B copied for the micro-kernel) on the stack of
   the thread that runs them: a thread that calls a run, or runs its tasks for a host's parallel-for
   below, needs up to 1 MiB of stack free for a float32 model, 2 MiB for float64 (the library's own threads
   have 8 MiB). */

/* ${p}_run with `threads` threads (0: the default). */
int ${p}_run_with_threads(const void *const *inputs, void *const *outputs, int threads);

/* Sets the default number of threads of later runs (threads < 1: back to the default above). */
void ${p}_set_num_threads(int threads);

/* The default number of threads of a run. */
int ${p}_num_threads(void);

/* A host's own parallel-for: calls task(context, i) once for every i in [0, count), on any of its
   threads, and returns when all calls have returned. */
typedef void (*${p}_task_fn)(void *context, int64_t index);
typedef void (*${p}_parallel_for_fn)(void *host, ${p}_task_fn task, void *context, int64_t count);

/* Later runs split kernels through parallel_for(host, ...) instead of the library's threads (NULL:
   back to them). Call it before runs start, not during one. */
void ${p}_set_parallel_for(${p}_parallel_for_fn parallel_for, void *host);

#ifdef __cplusplus
}
#endif

#endif /* ${P}_FUSECC_H */
""")

_SOURCE = Template("""\
/* The C API of ${library} (declared in ${header}): the checks around ${entry}, the model's code. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "${included_header}"
#include "threadpool.h"

/* Defined by the model's object. Declared hidden here, they are hidden in the library: the linker keeps
   the most restrictive visibility a symbol is given. */
__attribute__((visibility("hidden"))) extern const unsigned char ${weights}[];
__attribute__((visibility("hidden")))
void ${entry}(const void *const *inputs, void *const *outputs, const void *weights, void *workspace,
              const fusecc_threading *threading);

/* How runs use threads: the default count, or the host's parallel-for (${p}_set_parallel_for). */
static fusecc_threading run_threading;

static const char model_info[] = ${info};

/* A CPU feature the code was compiled for: where cpuid reports it, and the XCR0 bits (register state
   the OS saves) it needs. */
struct cpu_feature {
    const char *name;
    unsigned leaf, subleaf, reg, bit;
    uint64_t os_state;
};

static const struct cpu_feature required_features[] = {
${features}    {NULL, 0, 0, 0, 0, 0}
};

static const char needs[] = ${needs};

/* Empty, or why this CPU cannot run the code; written once, when the library loads. */
static char cpu_error[sizeof needs + ${names_size} + 32];

static _Thread_local const char *last_error = "";
static _Thread_local char argument_error[
    sizeof "${p}_run_with_workspace: outputs[-2147483648] shares memory with outputs[-2147483648]"];

/* Bytes of each input and output (one more element, so that no array is empty). */
static const int64_t input_bytes[] = {${input_bytes}0};
static const int64_t output_bytes[] = {${output_bytes}0};

#if defined(__x86_64__)
#include <cpuid.h>

/* XCR0 (0 if the OS does not enable XSAVE). */
static uint64_t os_saved_state(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 27)))
        return 0;
    __asm__("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (uint64_t)edx << 32 | eax;
}

static int cpu_has(const struct cpu_feature *feature, uint64_t os_state) {
    unsigned regs[4];
    if (!__get_cpuid_count(feature->leaf, feature->subleaf, &regs[0], &regs[1], &regs[2], &regs[3]))
        return 0;
    return (regs[feature->reg] >> feature->bit & 1u) && (os_state & feature->os_state) == feature->os_state;
}

__attribute__((constructor)) static void check_cpu(void) {
    uint64_t os_state = os_saved_state();
    const struct cpu_feature *feature;
    for (feature = required_features; feature->name != NULL; feature++) {
        if (cpu_has(feature, os_state))
            continue;
        if (cpu_error[0] == '\\0') {
            snprintf(cpu_error, sizeof cpu_error, "%s; this CPU lacks %s", needs, feature->name);
        } else {
            strncat(cpu_error, ", ", sizeof cpu_error - strlen(cpu_error) - 1);
            strncat(cpu_error, feature->name, sizeof cpu_error - strlen(cpu_error) - 1);
        }
    }
}
#endif

static int fail(int status, const char *message) {
    last_error = message;
    return status;
}

static int null_argument(const char *function, const char *what, int index) {
    if (index < 0)
        snprintf(argument_error, sizeof argument_error, "%s: %s is NULL", function, what);
    else
        snprintf(argument_error, sizeof argument_error, "%s: %s[%d] is NULL", function, what, index);
    return fail(${P}_ERROR_NULL_ARGUMENT, argument_error);
}

static int check_array(const char *function, const char *what, const void *const *pointers, int count) {
    int i;
    if (count > 0 && pointers == NULL)
        return null_argument(function, what, -1);
    for (i = 0; i < count; i++)
        if (pointers[i] == NULL)
            return null_argument(function, what, i);
    return ${P}_OK;
}

static int overlap(const void *a, int64_t a_bytes, const void *b, int64_t b_bytes) {
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return a_bytes > 0 && b_bytes > 0 && x < y + (uintptr_t)b_bytes && y < x + (uintptr_t)a_bytes;
}

static int overlapping(const char *function, int output, const char *what, int index) {
    if (index < 0)
        snprintf(argument_error, sizeof argument_error, "%s: outputs[%d] shares memory with the %s", function,
                 output, what);
    else
        snprintf(argument_error, sizeof argument_error, "%s: outputs[%d] shares memory with %s[%d]", function,
                 output, what, index);
    return fail(${P}_ERROR_OVERLAPPING_ARGUMENTS, argument_error);
}

/* The model's code reads its inputs while it writes its outputs, each kernel assuming that no buffer it
   writes shares memory with another it reads or writes. */
static int check_disjoint(const char *function, const void *const *inputs, void *const *outputs,
                          const void *workspace) {
    int i, j;
    for (i = 0; i < ${P}_NUM_OUTPUTS; i++) {
        for (j = 0; j < ${P}_NUM_INPUTS; j++)
            if (overlap(outputs[i], output_bytes[i], inputs[j], input_bytes[j]))
                return overlapping(function, i, "inputs", j);
        for (j = 0; j < i; j++)
            if (overlap(outputs[i], output_bytes[i], outputs[j], output_bytes[j]))
                return overlapping(function, i, "outputs", j);
        if (workspace != NULL && overlap(outputs[i], output_bytes[i], workspace, ${P}_WORKSPACE_BYTES))
            return overlapping(function, i, "workspace", -1);
    }
    return ${P}_OK;
}

/* The checks every run makes before the model's code runs (with the caller's workspace, if any). */
static int check_run(const char *function, const void *const *inputs, void *const *outputs,
                     const void *workspace) {
    int status;
    if (cpu_error[0] != '\\0')
        return fail(${P}_ERROR_UNSUPPORTED_CPU, cpu_error);
    status = check_array(function, "inputs", inputs, ${P}_NUM_INPUTS);
    if (status == ${P}_OK)
        status = check_array(function, "outputs", (const void *const *)outputs, ${P}_NUM_OUTPUTS);
    if (status == ${P}_OK)
        status = check_disjoint(function, inputs, outputs, workspace);
    if (status == ${P}_OK)
        last_error = "";
    return status;
}

int ${p}_run_with_workspace(const void *const *inputs, void *const *outputs, void *workspace) {
    int status = check_run("${p}_run_with_workspace", inputs, outputs, workspace);
    if (status != ${P}_OK)
        return status;
    if (workspace == NULL && ${P}_WORKSPACE_BYTES > 0)
        return null_argument("${p}_run_with_workspace", "workspace", -1);
    ${entry}(inputs, outputs, ${weights}, workspace, &run_threading);
    return ${P}_OK;
}

static int run_allocating(const char *function, const void *const *inputs, void *const *outputs,
                          const fusecc_threading *threading) {
    void *workspace = NULL;
    int status = check_run(function, inputs, outputs, NULL);
    if (status != ${P}_OK)
        return status;
    if (${P}_WORKSPACE_BYTES > 0) {
        workspace = aligned_alloc(64, ((size_t)${P}_WORKSPACE_BYTES + 63) / 64 * 64);
        if (workspace == NULL)
            return fail(${P}_ERROR_OUT_OF_MEMORY, "${p}_run: cannot allocate its ${workspace}-byte workspace");
    }
    ${entry}(inputs, outputs, ${weights}, workspace, threading);
    free(workspace);
    return ${P}_OK;
}

int ${p}_run(const void *const *inputs, void *const *outputs) {
    return run_allocating("${p}_run", inputs, outputs, &run_threading);
}

int ${p}_run_with_threads(const void *const *inputs, void *const *outputs, int threads) {
    fusecc_threading threading = run_threading;
    threading.threads = threads > 0 ? threads : 0;
    return run_allocating("${p}_run_with_threads", inputs, outputs, &threading);
}

void ${p}_set_num_threads(int threads) {
    fusecc_set_default_threads(threads);
}

int ${p}_num_threads(void) {
    return fusecc_default_threads();
}

void ${p}_set_parallel_for(${p}_parallel_for_fn parallel_for, void *host) {
    run_threading.parallel_for = (fusecc_host_parallel_for)parallel_for;
    run_threading.host = host;
}

int64_t ${p}_workspace_size(void) {
    return ${P}_WORKSPACE_BYTES;
}

const char *${p}_model_info(void) {
    return model_info;
}

const char *${p}_last_error(void) {
    return last_error;
}
""")


@dataclass(frozen=True)
class CApi:
    """The C API of one library: ``prefix`` names it; ``library`` and ``header`` are the two file names."""

    prefix: str
    library: str
    header: str
    info: dict
    requirements: CpuRequirements

    def _names(self) -> dict:
        """What both templates say: the prefix as functions and as macros spell it, file names (made safe for
        comments), the CPU, what it needs, the workspace size."""
        features = self.requirements.features
        needs = f"the CPU features {', '.join(features)}" if features else "no CPU feature beyond the baseline"
        return {"p": self.prefix, "P": self.prefix.upper(), "library": _comment(self.library),
                "header": _comment(self.header), "cpu": _comment(self.requirements.cpu), "needs": needs,
                "workspace": self.info["workspace_size"]}

    def header_text(self) -> str:
        """The header: status codes, buffer macros and the five functions, each documented."""
        names = self._names()
        status_codes = "\n".join(f"#define {names['P']}_{suffix} {value}  /* {meaning} */"
                                 for suffix, value, meaning in STATUS_CODES)
        needs_sentence = textwrap.fill(f"The code needs {names['needs']}; the library checks this CPU when it loads.",
                                       100, initial_indent="   ", subsequent_indent="   ")
        return _HEADER.substitute(names, needs_sentence=needs_sentence, status_codes=status_codes,
                                  buffers=self._buffer_macros(names["P"]))

    def _buffer_macros(self, macro: str) -> str:
        lines = []
        all_buffers = buffers(self.info)
        for kind in ("INPUT", "OUTPUT"):
            kind_buffers = [b for b in all_buffers if b.kind == kind.lower()]
            lines.append(f"#define {macro}_NUM_{kind}S {len(kind_buffers)}")
            for buffer in kind_buffers:
                i, shape = buffer.index, buffer.shape
                dims = "x".join(map(str, shape)) or "scalar"
                lines += [f"/* {buffer.kind} {i}: \"{_comment(buffer.name)}\" {buffer.dtype}[{dims}], "
                          f"{buffer.elements} elements, {buffer.nbytes} bytes */",
                          f"#define {macro}_{kind}_{i}_NAME {c_string(buffer.name)}",
                          f"#define {macro}_{kind}_{i}_RANK {len(shape)}",
                          f"#define {macro}_{kind}_{i}_SHAPE {{{', '.join(map(str, shape)) or '1'}}}",
                          f"#define {macro}_{kind}_{i}_ELEMENTS {buffer.elements}",
                          f"#define {macro}_{kind}_{i}_BYTES {buffer.nbytes}",
                          f"typedef {_C_TYPES[buffer.dtype]} {self.prefix}_{kind.lower()}_{i}_t;"]
            lines.append("")
        return "\n".join(lines)

    def source_text(self, entry: str, weights: str) -> str:
        """The C source of the five functions, around ``entry`` and the ``weights`` symbol of the model's object;
        it includes the header as ``model_api.h`` (see :meth:`write_source`)."""
        names = self._names()
        features = "".join(f"    {{{c_string(name)}, {bit.leaf:#x}, {bit.subleaf}, {bit.register}, {bit.bit}, "
                           f"{bit.os_state:#x}}},\n"
                           for name, bit in ((n, CPUID_FEATURES[n]) for n in self.requirements.features))
        needs = f"{self.library} needs {names['needs']} (compiled for CPU {self.requirements.cpu})"
        sizes = {kind: "".join(f"{b.nbytes}, " for b in buffers(self.info) if b.kind == kind)
                 for kind in ("input", "output")}
        return _SOURCE.substitute(names, entry=entry, weights=weights, features=features,
                                  input_bytes=sizes["input"], output_bytes=sizes["output"],
                                  included_header=_INCLUDED_HEADER, info=c_string(json.dumps(self.info)),
                                  needs=c_string(needs),
                                  names_size=sum(len(name) + 2 for name in self.requirements.features))

    def write_source(self, directory: str, entry: str, weights: str) -> str:
        """Write the source and the header it includes into ``directory``; return the source's path."""
        with open(os.path.join(directory, _INCLUDED_HEADER), "w") as handle:
            handle.write(self.header_text())
        path = os.path.join(directory, "model_api.c")
        with open(path, "w") as handle:
            handle.write(self.source_text(entry, weights))
        return path
