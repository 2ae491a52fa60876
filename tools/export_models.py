"""Export models from PyTorch and ``transformers`` to ONNX, as a user would, with random weights.

    python -m fusecc.tools.export_models [--out DIR] [--tiny] [name ...]

Names: mlp_b1, mlp_b32, resnet18, mobilenet_v2, bert4, vit_tiny, gpt2 (default: all). The CNNs are written in
plain torch (torchvision's layer shapes), the transformers are built from a config: nothing is downloaded. The
benchmarks (``bench_models``) read the full-size exports from ``models_dir()``; ``--tiny`` shrinks every model
below 2 MiB, which is how the test fixtures in ``tests/models`` are made::

    python -m fusecc.tools.export_models --tiny --out tests/models

Needs ``pip install torch==2.13.0 transformers`` (the CPU wheel). Every model is exported with the TorchScript
exporter at opset 17, fixed shapes, constants folded. Integer inputs record the range of values they accept in
the model's metadata (``example_feeds`` reads it), so a token id never runs off the embedding table.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import onnx

OPSET = 17
FEED_RANGE_KEY = "fusecc.feed_range."


def models_dir() -> str:
    """Where the full-size exports live: ``$FUSECC_MODELS_DIR``, else the user's cache folder."""
    if os.environ.get("FUSECC_MODELS_DIR"):
        return os.environ["FUSECC_MODELS_DIR"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "fusecc", "models")


def example_feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for every graph input: floats from a normal distribution, integers from the range the
    exporter recorded in the metadata (``[0, 2)`` where none is recorded)."""
    from onnx import helper

    rng = np.random.default_rng(seed)
    ranges = {prop.key[len(FEED_RANGE_KEY):]: prop.value for prop in model.metadata_props
              if prop.key.startswith(FEED_RANGE_KEY)}
    initializers = {init.name for init in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape = [dim.dim_value for dim in tensor.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        if np.issubdtype(dtype, np.integer):
            low, high = (int(part) for part in ranges.get(value.name, "0,2").split(","))
            feeds[value.name] = rng.integers(low, high, shape).astype(dtype)
        else:
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def _export(module, args, path, input_names, output_names, feed_ranges=None) -> None:
    import torch

    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, args, path, opset_version=OPSET, input_names=input_names,
                          output_names=output_names, dynamo=False, do_constant_folding=True)
    model = onnx.load(path)
    for name, (low, high) in (feed_ranges or {}).items():
        model.metadata_props.add(key=FEED_RANGE_KEY + name, value=f"{low},{high}")
    onnx.save(model, path)
    print(f"{os.path.basename(path)}: {os.path.getsize(path) / 2 ** 20:.2f} MiB", flush=True)


def _first_output(module, input_names):
    """Wraps a ``transformers`` model so that the graph has one output, the last hidden state."""
    import torch

    class FirstOutput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module

        def forward(self, *args):
            return self.inner(**dict(zip(input_names, args)), return_dict=False)[0]

    return FirstOutput()


def _mlp_module(sizes):
    import torch.nn as nn

    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def mlp(out: str, tiny: bool, batch: int) -> None:
    """``nn.Linear`` layers with ReLU between them: Gemm with transB=1, as torch exports them."""
    import torch

    sizes = (64, 128, 128, 10) if tiny else (784, 1024, 1024, 10)
    _export(_mlp_module(sizes), (torch.randn(batch, sizes[0]),), f"{out}/mlp_b{batch}.onnx", ["x"], ["y"])


def _randomize_batchnorm(module) -> None:
    """Non-trivial BatchNorm statistics, so that fold-batchnorm has something to fold."""
    import torch

    generator = torch.Generator().manual_seed(1)
    for layer in module.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.running_mean.copy_(torch.randn(layer.num_features, generator=generator) * 0.1)
            layer.running_var.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)


def resnet18(out: str, tiny: bool) -> None:
    """torchvision's ResNet-18 layer by layer: a 7x7 stem, max pooling, eight basic blocks, global pooling."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            return F.relu(y + (x if self.down is None else self.down(x)))

    class ResNet18(nn.Module):
        def __init__(self, width, classes):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, 1))
            blocks, cin = [], width
            for scale, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
                blocks += [BasicBlock(cin, width * scale, stride), BasicBlock(width * scale, width * scale, 1)]
                cin = width * scale
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(cin, classes)

        def forward(self, x):
            x = self.blocks(self.stem(x))
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    module = ResNet18(8, 10) if tiny else ResNet18(64, 1000)
    _randomize_batchnorm(module)
    size = 64 if tiny else 224
    _export(module, (torch.randn(1, 3, size, size),), f"{out}/resnet18.onnx", ["x"], ["logits"])


def mobilenet_v2(out: str, tiny: bool) -> None:
    """torchvision's MobileNetV2: inverted residuals of 1x1 expand, 3x3 depthwise and 1x1 project, ReLU6."""
    import torch
    import torch.nn as nn

    def conv_bn(cin, cout, kernel, stride, groups=1, activation=True):
        layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return layers + [nn.ReLU6()] if activation else layers

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, expand):
            super().__init__()
            hidden = cin * expand
            layers = conv_bn(cin, hidden, 1, 1) if expand != 1 else []
            layers += conv_bn(hidden, hidden, 3, stride, groups=hidden) + conv_bn(hidden, cout, 1, 1, activation=False)
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    # (expansion, channels, repeats, first stride), as in the MobileNetV2 paper
    settings = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))
    width = 0.25 if tiny else 1.0
    channels = lambda c: max(8, int(c * width + 4) // 8 * 8)  # noqa: E731 - torchvision's rounding to 8
    layers, cin = conv_bn(3, channels(32), 3, 2), channels(32)
    for expand, cout, repeats, stride in settings:
        for i in range(repeats):
            layers.append(InvertedResidual(cin, channels(cout), stride if i == 0 else 1, expand))
            cin = channels(cout)
    last = channels(1280) if tiny else 1280
    layers += conv_bn(cin, last, 1, 1)
    module = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(last, 10 if tiny else 1000))
    _randomize_batchnorm(module)
    size = 64 if tiny else 224
    _export(module, (torch.randn(1, 3, size, size),), f"{out}/mobilenet_v2.onnx", ["x"], ["logits"])


def bert4(out: str, tiny: bool) -> None:
    """A 4-layer BERT encoder (BERT-base widths) at sequence 128, with an all-ones attention mask input."""
    import torch
    from transformers import BertConfig, BertModel

    if tiny:
        config = BertConfig(vocab_size=1000, num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                            intermediate_size=256, max_position_embeddings=64, attn_implementation="eager")
        sequence = 16
    else:
        config = BertConfig(num_hidden_layers=4, attn_implementation="eager")
        sequence = 128
    names = ["input_ids", "attention_mask"]
    module = _first_output(BertModel(config, add_pooling_layer=False), names)
    ids = torch.randint(0, config.vocab_size, (1, sequence))
    mask = torch.ones(1, sequence, dtype=torch.int64)
    _export(module, (ids, mask), f"{out}/bert4.onnx", names, ["last_hidden_state"],
            {"input_ids": (0, config.vocab_size), "attention_mask": (1, 2)})


def vit_tiny(out: str, tiny: bool) -> None:
    """ViT-tiny (192 wide, 12 layers, 3 heads) on a 224x224 image: 197 tokens."""
    import torch
    from transformers import ViTConfig, ViTModel

    if tiny:
        config = ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                           image_size=32, patch_size=8, attn_implementation="eager")
    else:
        config = ViTConfig(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768,
                           image_size=224, patch_size=16, attn_implementation="eager")
    module = _first_output(ViTModel(config, add_pooling_layer=False), ["pixel_values"])
    image = torch.randn(1, 3, config.image_size, config.image_size)
    _export(module, (image,), f"{out}/vit_tiny.onnx", ["pixel_values"], ["last_hidden_state"])


def gpt2(out: str, tiny: bool) -> None:
    """GPT-2 small (12 layers) at sequence 64, causal attention, with an all-ones attention mask input."""
    import torch
    from transformers import GPT2Config, GPT2Model

    if tiny:
        config = GPT2Config(vocab_size=1000, n_positions=64, n_embd=64, n_layer=2, n_head=4, use_cache=False,
                            bos_token_id=0, eos_token_id=0, attn_implementation="eager")
        sequence = 16
    else:
        config = GPT2Config(use_cache=False, attn_implementation="eager")
        sequence = 64
    names = ["input_ids", "attention_mask"]
    module = _first_output(GPT2Model(config), names)
    ids = torch.randint(0, config.vocab_size, (1, sequence))
    # with no attention mask, transformers traces a packed-sequence check (aten::diff) that opset 17 lacks
    mask = torch.ones(1, sequence, dtype=torch.int64)
    _export(module, (ids, mask), f"{out}/gpt2.onnx", names, ["last_hidden_state"],
            {"input_ids": (0, config.vocab_size), "attention_mask": (1, 2)})


EXPORTS = {
    "mlp_b1": lambda out, tiny: mlp(out, tiny, 1),
    "mlp_b32": lambda out, tiny: mlp(out, tiny, 32),
    "resnet18": resnet18,
    "mobilenet_v2": mobilenet_v2,
    "bert4": bert4,
    "vit_tiny": vit_tiny,
    "gpt2": gpt2,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="name", help=f"any of {', '.join(EXPORTS)} (default: all)")
    parser.add_argument("--out", default=None, help="output folder (default: models_dir())")
    parser.add_argument("--tiny", action="store_true", help="the same architectures shrunk below 2 MiB each")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in EXPORTS]
    if unknown:
        parser.error(f"unknown model {', '.join(unknown)}; choose from {', '.join(EXPORTS)}")
    try:
        import torch
        import transformers  # noqa: F401 - checked here so that a missing package is one clear line
    except ImportError as error:
        print(f"export_models: {error.name} is not installed; pip install torch==2.13.0 transformers",
              file=sys.stderr)
        return 2
    out = args.out or models_dir()
    os.makedirs(out, exist_ok=True)
    for name in args.names or EXPORTS:
        torch.manual_seed(0)
        EXPORTS[name](out, args.tiny)
    return 0


if __name__ == "__main__":
    sys.exit(main())
