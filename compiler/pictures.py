"""Pictures of a fused graph: Graphviz (``--dump-graph``) and ONNX for Netron (``--export-fused``).

Both take the module after the fusion phase. In the Graphviz picture each kernel is a cluster of its ops, coloured
by its pattern (compute, reduction, injective, ...), and each edge carries the shape and type of the tensor it
moves. In the ONNX picture each kernel is one node of the ``fusecc`` domain, named after the kernel, whose op type
is its pattern and whose attributes list its ONNX nodes and its ops; the weights stay initializers, so Netron shows
the graph as the kernels run it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from fusecc.dialects.kernel import FusedOp
from fusecc.dialects.tensor import ConstantOp
from fusecc.ir.core import Module, Operation, ReturnOp
from fusecc.ir.printer import loc_names

#: the fill colour of a kernel's cluster, by pattern
PATTERN_COLOURS = {"compute": "#f4cccc", "reduction": "#fce5cd", "injective": "#d9ead3", "broadcast": "#d0e0e3",
                   "elementwise": "#cfe2f3", "horizontal": "#d9d2e9", "opaque": "#eeeeee"}
#: the ONNX domain of the kernels of an exported fused graph
DOMAIN = "fusecc"


def _quote(text: str) -> str:
    """``text`` as a DOT string, its line breaks kept."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _op_label(op: Operation) -> str:
    nodes = "+".join(loc_names(op.loc))
    return f"{op.name.partition('.')[2]}\n{nodes}" if nodes else op.name.partition(".")[2]


def fused_graph_dot(module: Module) -> str:
    """The fused ``@main`` of ``module`` as a Graphviz digraph: inputs, outputs, each kernel a cluster of its ops,
    edges labelled with the tensor type they carry (constants left out)."""
    main = module.main
    lines = ["digraph fused {", "  rankdir=TB;", '  node [shape=box, style="rounded,filled", fillcolor=white, '
             'fontname="Helvetica", fontsize=10];', '  edge [fontname="Helvetica", fontsize=8];']
    names = {}
    input_names = main.attr("input_names") or [f"input{i}" for i in range(len(main.args))]
    for number, (arg, name) in enumerate(zip(main.args, input_names)):
        names[id(arg)] = f"in{number}"
        lines.append(f"  in{number} [label={_quote(name)}, shape=oval, fillcolor=\"#ffffff\"];")
    counter = 0

    def node_of(op: Operation) -> str:
        nonlocal counter
        counter += 1
        return f"op{counter}"

    edges = []
    for op in main.body.ops:
        if isinstance(op, ConstantOp):
            continue
        if isinstance(op, ReturnOp):
            output_names = main.attr("output_names") or [f"output{i}" for i in range(len(op.operands))]
            for number, (value, name) in enumerate(zip(op.operands, output_names)):
                lines.append(f"  out{number} [label={_quote(name)}, shape=oval, fillcolor=\"#ffffff\"];")
                edges.append((value, f"out{number}"))
            continue
        if isinstance(op, FusedOp):
            pattern = op.attr("pattern") or "elementwise"
            lines.append(f"  subgraph cluster_{op.sym_name} {{")
            lines.append(f"    label={_quote(f'{op.sym_name} ({pattern})')}; style=filled; "
                         f"fillcolor={_quote(PATTERN_COLOURS.get(pattern, '#eeeeee'))}; fontname=\"Helvetica\";")
            outer = dict(zip((id(a) for a in op.body.args), op.operands))
            for member in op.members:
                name = node_of(member)
                names.update((id(r), name) for r in member.results)
                lines.append(f"    {name} [label={_quote(_op_label(member))}];")
                edges.extend((outer.get(id(v), v), name) for v in member.operands)
            lines.append("  }")
            names.update((id(result), names[id(inner)]) for result, inner in zip(op.results, op.body.ops[-1].operands))
            continue
        name = node_of(op)
        names.update((id(r), name) for r in op.results)
        lines.append(f"  {name} [label={_quote(_op_label(op))}];")
        edges.extend((v, name) for v in op.operands)
    for value, target in edges:
        source = names.get(id(value))
        if source is not None:
            lines.append(f"  {source} -> {target} [label={_quote(str(value.type))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_graph_picture(module: Module, path: str) -> None:
    """``path`` (``.dot``, or ``.svg`` drawn by Graphviz's ``dot``) of the fused ``module``."""
    text = fused_graph_dot(module)
    extension = os.path.splitext(path)[1].lower()
    if extension == ".dot":
        with open(path, "w") as out:
            out.write(text)
        return
    if extension != ".svg":
        raise ValueError(f"--dump-graph writes .dot or .svg files, not '{path}'")
    dot = shutil.which("dot")
    if dot is None:
        raise OSError(f"drawing '{path}' needs Graphviz's dot on PATH; write a .dot file instead")
    drawn = subprocess.run([dot, "-Tsvg", "-o", path], input=text, text=True, capture_output=True)
    if drawn.returncode != 0:
        raise OSError(f"dot could not draw '{path}': {drawn.stderr.strip()}")


def fused_graph_onnx(module: Module):
    """The fused ``@main`` of ``module`` as an ONNX model: each kernel a ``fusecc`` node (op type its pattern,
    attributes ``nodes`` and ``ops``), every tensor typed, the weights initializers."""
    import onnx
    from onnx import helper, numpy_helper

    from fusecc.frontend.onnx_import import ONNX_DTYPES
    from fusecc.passes.rewrite import constant_value

    code_of_dtype = {dtype: code for code, dtype in ONNX_DTYPES.items()}
    main = module.main
    names: dict[int, str] = {}

    def value_info(name, t):
        return helper.make_tensor_value_info(name, code_of_dtype[t.dtype], list(t.shape))

    input_names = main.attr("input_names") or [f"input{i}" for i in range(len(main.args))]
    inputs = []
    for arg, name in zip(main.args, input_names):
        names[id(arg)] = name
        inputs.append(value_info(name, arg.type))
    nodes, initializers, infos, outputs = [], [], [], []
    for number, op in enumerate(main.body.ops):
        if isinstance(op, ConstantOp):
            name = f"const{number}"
            names[id(op.results[0])] = name
            array = constant_value(op.results[0])
            if array is not None:
                initializers.append(numpy_helper.from_array(array, name))
            continue
        if isinstance(op, ReturnOp):
            output_names = main.attr("output_names") or [f"output{i}" for i in range(len(op.operands))]
            for value, name in zip(op.operands, output_names):
                nodes.append(helper.make_node("Identity", [names[id(value)]], [name], name=f"output {name}"))
                outputs.append(value_info(name, value.type))
            continue
        results = []
        for index, result in enumerate(op.results):
            names[id(result)] = f"{getattr(op, 'sym_name', None) or op.name}_{number}:{index}"
            results.append(names[id(result)])
            infos.append(value_info(names[id(result)], result.type))
        if isinstance(op, FusedOp):
            nodes.append(helper.make_node(
                op.attr("pattern") or "elementwise", [names[id(v)] for v in op.operands], results, name=op.sym_name,
                domain=DOMAIN, nodes=[n for m in op.members for n in (loc_names(m.loc) or [m.name])],
                ops=[m.name for m in op.members]))
        else:
            nodes.append(helper.make_node(op.name.partition(".")[2], [names[id(v)] for v in op.operands], results,
                                          name=f"{op.name}_{number}", domain=DOMAIN))
    graph = helper.make_graph(nodes, "fused", inputs, outputs, initializers, value_info=infos)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)],
                              producer_name="fusecc")
    onnx.checker.check_model(model)
    return model
