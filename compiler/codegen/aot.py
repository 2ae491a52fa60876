"""Ahead-of-time output: a shared library with the weights embedded, and its C header.

The library exports

    int fusecc_run(const void *const *inputs, void *const *outputs);
    int fusecc_run_with_workspace(const void *const *inputs, void *const *outputs, void *workspace);
    int64_t fusecc_workspace_size(void);
    const char *fusecc_model_info(void);   /* JSON: inputs, outputs, kernels */

Weights enter the object file through ``.incbin`` in module-level assembly
(never as a textual LLVM array), so a 100 MB model links in seconds.
"""

from __future__ import annotations

import json
import os
import re
import tempfile

from llvmlite import ir

from . import target
from .llvm_emit import ENTRY, I8, I32, I64, PTR

WEIGHTS_SYMBOL = "fusecc_weights"


def _add_wrappers(module: ir.Module, workspace_size: int, info: dict) -> None:
    entry = module.get_global(ENTRY)
    weights = ir.GlobalVariable(module, ir.ArrayType(I8, 0), name=WEIGHTS_SYMBOL)
    weights.linkage = "external"
    weights.visibility = "hidden"

    text = json.dumps(info).encode() + b"\0"
    info_global = ir.GlobalVariable(module, ir.ArrayType(I8, len(text)), name="fusecc_model_info_json")
    info_global.global_constant = True
    info_global.linkage = "private"
    info_global.initializer = ir.Constant(ir.ArrayType(I8, len(text)), bytearray(text))

    info_fn = ir.Function(module, ir.FunctionType(PTR, []), name="fusecc_model_info")
    ir.IRBuilder(info_fn.append_basic_block()).ret(info_global.bitcast(PTR))

    size_fn = ir.Function(module, ir.FunctionType(I64, []), name="fusecc_workspace_size")
    ir.IRBuilder(size_fn.append_basic_block()).ret(ir.Constant(I64, workspace_size))

    with_ws = ir.Function(module, ir.FunctionType(I32, [PTR, PTR, PTR]), name="fusecc_run_with_workspace")
    b = ir.IRBuilder(with_ws.append_basic_block())
    b.call(entry, [with_ws.args[0], with_ws.args[1], weights.bitcast(PTR), with_ws.args[2]])
    b.ret(ir.Constant(I32, 0))

    malloc = ir.Function(module, ir.FunctionType(PTR, [I64]), name="malloc")
    free = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR]), name="free")
    run = ir.Function(module, ir.FunctionType(I32, [PTR, PTR]), name="fusecc_run")
    b = ir.IRBuilder(run.append_basic_block("entry"))
    workspace = b.call(malloc, [ir.Constant(I64, max(workspace_size, 1))])
    failed = b.icmp_unsigned("==", workspace, ir.Constant(PTR, None))
    with b.if_then(failed, likely=False):
        b.ret(ir.Constant(I32, 1))
    b.call(entry, [run.args[0], run.args[1], weights.bitcast(PTR), workspace])
    b.call(free, [workspace])
    b.ret(ir.Constant(I32, 0))


def build_shared_library(llvm_module: ir.Module, weights_blob: bytes, workspace_size: int, info: dict,
                         out_path: str, opt_level: int) -> None:
    """Compile the model to an object with its weights and link ``out_path`` (plus ``<stem>.h``)."""
    _add_wrappers(llvm_module, workspace_size, info)
    with tempfile.TemporaryDirectory(prefix="fusecc_aot_") as tmp:
        blob_path = os.path.join(tmp, "weights.bin")
        with open(blob_path, "wb") as handle:
            handle.write(weights_blob or b"\0")
        text = str(llvm_module) + "\n" + target.incbin_module_asm(WEIGHTS_SYMBOL, blob_path)
        module_ref = target.parse_and_optimize(text, opt_level)
        obj = target.emit_object(module_ref)
    target.link_shared_library(obj, out_path)
    header_path = os.path.splitext(out_path)[0] + ".h"
    with open(header_path, "w") as handle:
        handle.write(c_header(info, os.path.basename(out_path)))


_C_TYPES = {"float32": "float", "float64": "double", "int8": "int8_t", "int16": "int16_t", "int32": "int32_t",
            "int64": "int64_t", "uint8": "uint8_t", "uint16": "uint16_t", "uint32": "uint32_t",
            "uint64": "uint64_t", "bool": "uint8_t", "float16": "uint16_t"}


def _macro(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def c_header(info: dict, library_name: str) -> str:
    """A C header declaring the entry points and every input and output's name, shape and type."""
    guard = "FUSECC_" + _macro(os.path.splitext(library_name)[0]) + "_H"
    lines = [f"/* {library_name}: a model compiled by fusecc. */", f"#ifndef {guard}", f"#define {guard}", "",
             "#include <stdint.h>", "", "#ifdef __cplusplus", 'extern "C" {', "#endif", ""]
    for kind, specs in (("INPUT", info["inputs"]), ("OUTPUT", info["outputs"])):
        lines.append(f"#define FUSECC_NUM_{kind}S {len(specs)}")
        for i, spec in enumerate(specs):
            count = 1
            for d in spec["shape"]:
                count *= d
            shape = "x".join(str(d) for d in spec["shape"]) or "scalar"
            comment_name = spec["name"].replace("*/", "* /")
            lines += [f"/* {kind.lower()} {i}: \"{comment_name}\" {spec['dtype']}[{shape}] */",
                      f"#define FUSECC_{kind}_{i}_NAME {json.dumps(spec['name'])}",
                      f"#define FUSECC_{kind}_{i}_RANK {len(spec['shape'])}",
                      f"#define FUSECC_{kind}_{i}_SHAPE {{{', '.join(str(d) for d in spec['shape']) or '1'}}}",
                      f"#define FUSECC_{kind}_{i}_ELEMENTS {count}",
                      f"typedef {_C_TYPES[spec['dtype']]} fusecc_{kind.lower()}_{i}_t;"]
        lines.append("")
    lines += ["/* Runs the model: inputs[i] and outputs[i] point to dense row-major arrays as above.",
              "   Returns 0 on success, 1 if the workspace could not be allocated. */",
              "int fusecc_run(const void *const *inputs, void *const *outputs);",
              "/* The same with a caller-provided workspace of fusecc_workspace_size() bytes (64-byte aligned). */",
              "int fusecc_run_with_workspace(const void *const *inputs, void *const *outputs, void *workspace);",
              "int64_t fusecc_workspace_size(void);",
              "/* JSON describing the inputs, outputs and kernels. */",
              "const char *fusecc_model_info(void);", "", "#ifdef __cplusplus", "}", "#endif", "",
              f"#endif /* {guard} */", ""]
    return "\n".join(lines)
