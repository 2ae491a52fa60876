"""An ``onnx.backend`` implementation, so ONNX's own test runner and node test cases drive fusecc.

    import fusecc.backend as backend
    rep = backend.prepare(model)          # compiles lazily, once per set of input shapes
    outputs = rep.run([x])                # or backend.run_model(model, [x]) / run_node(node, [x])

fusecc compiles shape-determining inputs (a Reshape's shape, reduction axes,
Slice bounds, TopK's k, ...) into the code, so it needs them as constants. When
a model takes one of those as a graph input (ONNX's node tests do), the
importer raises ``NeedsConstantInput`` naming it; the backend then *freezes*
exactly those inputs to the values fed (they become initializers of a copy of
the model) and compiles again. Compiled models are cached by the shapes and
dtypes of the other inputs and the values of the frozen ones. No other input is
ever frozen: everything else is computed by the compiled code.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.backend.base import Backend, BackendRep, namedtupledict


class FuseccRep(BackendRep):
    """A prepared model: compiled on the first run for the shapes given, then reused."""

    def __init__(self, model: onnx.ModelProto, **options):
        self.model = model
        self.options = options
        initializers = {i.name for i in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in initializers]
        self.output_names = [o.name for o in model.graph.output]
        #: graph inputs the importer needs as constants, learned from ``NeedsConstantInput``
        self.frozen: list[str] = []
        self._compiled: dict[tuple, object] = {}

    def _feeds(self, inputs) -> dict[str, np.ndarray]:
        """The inputs by name; arrays of bfloat16, float8, int4, ... (ml_dtypes) as the integers holding
        their bits, which is how fusecc stores them (see ``fusecc.frontend.formats``)."""
        from fusecc.frontend.formats import to_storage

        if isinstance(inputs, dict):
            return {k: to_storage(np.asarray(v)) for k, v in inputs.items()}
        if isinstance(inputs, np.ndarray) or np.isscalar(inputs):
            inputs = [inputs]
        return {name: to_storage(np.asarray(value)) for name, value in zip(self.input_names, inputs)}

    def _key(self, feeds: dict[str, np.ndarray]) -> tuple:
        key = []
        for name in self.input_names:
            if name not in feeds:
                continue
            array = feeds[name]
            value = array.tobytes() if name in self.frozen else None
            key.append((name, array.shape, array.dtype.str, value))
        return tuple(key)

    def _frozen_model(self, feeds: dict[str, np.ndarray]) -> onnx.ModelProto:
        """A copy of the model whose frozen inputs are initializers holding the fed values."""
        if not self.frozen:
            return self.model
        from fusecc.frontend.formats import from_storage

        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        types = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
        for name in self.frozen:
            if name not in feeds:
                raise ValueError(f"input '{name}' must be fed: fusecc needs its value to compile the model")
            value = from_storage(feeds[name], types.get(name, 0))
            model.graph.initializer.append(numpy_helper.from_array(value, name))
        return model

    def _compile(self, feeds: dict[str, np.ndarray]):
        import fusecc
        from fusecc.frontend.onnx_import import NeedsConstantInput

        while True:
            key = self._key(feeds)
            compiled = self._compiled.get(key)
            if compiled is not None:
                return compiled
            shapes = {name: tuple(array.shape) for name, array in feeds.items() if name not in self.frozen}
            try:
                compiled = fusecc.compile(self._frozen_model(feeds), input_shapes=shapes, **self.options)
            except NeedsConstantInput as error:
                if error.input_name in self.frozen or error.input_name not in self.input_names:
                    raise
                self.frozen.append(error.input_name)
                continue
            self._compiled[key] = compiled
            return compiled

    def run(self, inputs, **kwargs):
        feeds = self._feeds(inputs)
        compiled = self._compile(feeds)
        from fusecc.frontend.formats import from_storage

        outputs = compiled.run({name: array for name, array in feeds.items() if name not in self.frozen})
        outputs = [from_storage(array, output.type.tensor_type.elem_type)
                   for array, output in zip(outputs, self.model.graph.output)]
        return namedtupledict("Outputs", self.output_names)(*outputs)


class FuseccBackend(Backend):
    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> FuseccRep:
        super().prepare(model, device, **kwargs)
        if not cls.supports_device(device):
            raise RuntimeError(f"fusecc runs on CPU, not {device}")
        return FuseccRep(model, **kwargs)

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs, device: str = "CPU", outputs_info=None, **kwargs):
        """Wrap one node in a model whose inputs have the given arrays' types, and run it."""
        arrays = [np.asarray(x) for x in inputs]
        names = [n for n in node.input if n][:len(arrays)]
        graph_inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                        for name, a in zip(names, arrays)]
        graph_outputs = [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None)
                         for name in node.output if name]
        opset = kwargs.pop("opset_version", None) or onnx.defs.onnx_opset_version()
        model = helper.make_model(helper.make_graph([node], "run_node", graph_inputs, graph_outputs),
                                  opset_imports=[helper.make_opsetid(node.domain or "", opset)])
        return cls.prepare(model, device, **kwargs).run(arrays)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper().startswith("CPU")


prepare = FuseccBackend.prepare
run_model = FuseccBackend.run_model
run_node = FuseccBackend.run_node
supports_device = FuseccBackend.supports_device
