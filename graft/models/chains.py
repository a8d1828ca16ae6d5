"""Real DNNs as chains of blocks: the partition units a client and the server split at.

Every model is built from its torchvision definition (``weights=None``: nothing is ever
downloaded) and cut into a :class:`BlockChain` whose blocks *share* the reference model's
submodules, so the chain and the reference compute the same function with the same weights.

Block boundaries per model:

* ``tiny`` (3x32x32, 10 classes, ours): ``stem``, ``down1``, ``down2``, ``res``, ``down3``,
  ``head`` (global average pool + flatten + fc). About 3 MFLOP; the model fast tests use.
* ``vgg16`` (3x224x224): one block per conv + ReLU (13), with each max pool folded into the
  conv block it follows; then two head blocks: ``fc6`` (avgpool + flatten + Linear + ReLU +
  Dropout) and ``fc7_fc8`` (the rest of the classifier). 15 blocks.
* ``resnet50`` (3x224x224): ``stem`` (conv1, bn1, relu, maxpool), the 16 bottlenecks, ``head``
  (avgpool + flatten + fc). 18 blocks.
* ``mobilenet_v2`` (3x224x224): ``stem`` (features[0]), the 17 inverted residuals,
  ``conv_last`` (features[18]), ``head`` (pool + flatten + classifier). 20 blocks.
* ``inception_v3`` (3x299x299, no aux logits, no input transform): ``stem1`` (Conv2d_1a..
  maxpool1), ``stem2`` (Conv2d_3b..maxpool2), the 11 ``Mixed_*`` blocks, ``head`` (avgpool +
  dropout + flatten + fc). 14 blocks.
* ``vit_b_16`` (3x224x224): ``embed`` (conv_proj, reshape, class token, position embedding,
  dropout), the 12 encoder layers, ``head`` (final LayerNorm, class-token select, heads).
  14 blocks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import torch
import torchvision
from torch import nn

from graft.errors import GraftInputError, UnknownNameError

log = logging.getLogger(__name__)

MODEL_NAMES: tuple[str, ...] = (
    "tiny",
    "vgg16",
    "resnet50",
    "mobilenet_v2",
    "inception_v3",
    "vit_b_16",
)

_INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "tiny": (3, 32, 32),
    "vgg16": (3, 224, 224),
    "resnet50": (3, 224, 224),
    "mobilenet_v2": (3, 224, 224),
    "inception_v3": (3, 299, 299),
    "vit_b_16": (3, 224, 224),
}


def _check_name(name: str) -> None:
    if name not in MODEL_NAMES:
        raise UnknownNameError("model", name, MODEL_NAMES)


def input_shape(name: str) -> tuple[int, ...]:
    """The per-sample input shape (C, H, W) of model ``name``."""
    _check_name(name)
    return _INPUT_SHAPES[name]


# ----------------------------------------------------------------------------- tiny


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class TinyResidual(nn.Module):
    """A ResNet basic block without downsampling: relu(x + bn(conv(relu(bn(conv(x))))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + x)


class TinyNet(nn.Module):
    """A small CNN for fast tests: 3x32x32 -> 10 classes in six blocks, about 3 MFLOP."""

    BLOCKS: tuple[str, ...] = ("stem", "down1", "down2", "res", "down3", "head")

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = _conv_bn_relu(3, 8)
        self.down1 = _conv_bn_relu(8, 16, stride=2)
        self.down2 = _conv_bn_relu(16, 24, stride=2)
        self.res = TinyResidual(24)
        self.down3 = _conv_bn_relu(24, 48, stride=2)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(48, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.BLOCKS:
            x = getattr(self, name)(x)
        return x


# ----------------------------------------------------------------------------- ViT pieces


class VitEmbed(nn.Module):
    """ViT block 0: patch projection, class token, position embedding and dropout.

    Holds the reference model's ``conv_proj``, ``class_token``, ``encoder.pos_embedding`` and
    ``encoder.dropout`` (shared, not copied).
    """

    def __init__(self, vit: torchvision.models.VisionTransformer) -> None:
        super().__init__()
        self.hidden_dim = vit.hidden_dim
        self.conv_proj = vit.conv_proj
        self.class_token = vit.class_token
        self.pos_embedding = vit.encoder.pos_embedding
        self.dropout = vit.encoder.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x = self.conv_proj(x)
        x = x.reshape(n, self.hidden_dim, -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        return self.dropout(x + self.pos_embedding)


class VitHead(nn.Module):
    """ViT last block: the encoder's final LayerNorm, class-token select and the heads."""

    def __init__(self, vit: torchvision.models.VisionTransformer) -> None:
        super().__init__()
        self.ln = vit.encoder.ln
        self.heads = vit.heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.ln(x)[:, 0])


# ----------------------------------------------------------------------------- chain


Blocks = list[tuple[str, nn.Module]]


class BlockChain(nn.Module):
    """A model as ``L`` blocks; ``run(x, start, end)`` executes blocks ``[start, end)``."""

    def __init__(self, name: str, blocks: Blocks) -> None:
        super().__init__()
        self.name = name
        self.block_names: list[str] = [n for n, _ in blocks]
        self.blocks = nn.ModuleList([m for _, m in blocks])

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def run(self, x: torch.Tensor, start: int, end: int) -> torch.Tensor:
        if not 0 <= start <= end <= len(self.blocks):
            raise GraftInputError(
                f"block range [{start}, {end}) is not within [0, {len(self.blocks)}] "
                f"for model {self.name!r}"
            )
        for block in self.blocks[start:end]:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x, 0, len(self.blocks))


def _seq(*modules: nn.Module) -> nn.Sequential:
    return nn.Sequential(*modules)


def _tiny_blocks(m: TinyNet) -> Blocks:
    return [(name, getattr(m, name)) for name in TinyNet.BLOCKS]


def _vgg16_blocks(m: torchvision.models.VGG) -> Blocks:
    blocks: Blocks = []
    stage, conv = 1, 1
    layers = list(m.features)
    i = 0
    while i < len(layers):
        group = [layers[i], layers[i + 1]]  # Conv2d, ReLU
        i += 2
        if i < len(layers) and isinstance(layers[i], nn.MaxPool2d):
            group.append(layers[i])
            i += 1
            blocks.append((f"conv{stage}_{conv}", _seq(*group)))
            stage, conv = stage + 1, 1
        else:
            blocks.append((f"conv{stage}_{conv}", _seq(*group)))
            conv += 1
    cls = list(m.classifier)
    blocks.append(("fc6", _seq(m.avgpool, nn.Flatten(1), *cls[:3])))
    blocks.append(("fc7_fc8", _seq(*cls[3:])))
    return blocks


def _resnet50_blocks(m: torchvision.models.ResNet) -> Blocks:
    blocks: Blocks = [("stem", _seq(m.conv1, m.bn1, m.relu, m.maxpool))]
    for li in range(1, 5):
        layer = getattr(m, f"layer{li}")
        blocks += [(f"layer{li}.{j}", b) for j, b in enumerate(layer)]
    blocks.append(("head", _seq(m.avgpool, nn.Flatten(1), m.fc)))
    return blocks


def _mobilenet_v2_blocks(m: torchvision.models.MobileNetV2) -> Blocks:
    feats = list(m.features)
    blocks: Blocks = [("stem", feats[0])]
    blocks += [(f"ir{i}", f) for i, f in enumerate(feats[1:-1], start=1)]
    blocks.append(("conv_last", feats[-1]))
    blocks.append(("head", _seq(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(1), m.classifier)))
    return blocks


_INCEPTION_MIXED = ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")


def _inception_v3_blocks(m: torchvision.models.Inception3) -> Blocks:
    blocks: Blocks = [
        ("stem1", _seq(m.Conv2d_1a_3x3, m.Conv2d_2a_3x3, m.Conv2d_2b_3x3, m.maxpool1)),
        ("stem2", _seq(m.Conv2d_3b_1x1, m.Conv2d_4a_3x3, m.maxpool2)),
    ]
    blocks += [(f"Mixed_{k}", getattr(m, f"Mixed_{k}")) for k in _INCEPTION_MIXED]
    blocks.append(("head", _seq(m.avgpool, m.dropout, nn.Flatten(1), m.fc)))
    return blocks


def _vit_b_16_blocks(m: torchvision.models.VisionTransformer) -> Blocks:
    blocks: Blocks = [("embed", VitEmbed(m))]
    blocks += [(f"encoder_layer_{i}", layer) for i, layer in enumerate(m.encoder.layers)]
    blocks.append(("head", VitHead(m)))
    return blocks


_CONSTRUCTORS: dict[str, Callable[[], nn.Module]] = {
    "tiny": lambda: TinyNet(num_classes=10),
    "vgg16": lambda: torchvision.models.vgg16(weights=None),
    "resnet50": lambda: torchvision.models.resnet50(weights=None),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(weights=None),
    "inception_v3": lambda: torchvision.models.inception_v3(
        weights=None, aux_logits=False, transform_input=False, init_weights=True
    ),
    "vit_b_16": lambda: torchvision.models.vit_b_16(weights=None),
}

_SPLITTERS: dict[str, Callable[[nn.Module], Blocks]] = {
    "tiny": _tiny_blocks,
    "vgg16": _vgg16_blocks,
    "resnet50": _resnet50_blocks,
    "mobilenet_v2": _mobilenet_v2_blocks,
    "inception_v3": _inception_v3_blocks,
    "vit_b_16": _vit_b_16_blocks,
}


def _load_state_dict(model: nn.Module, path: str) -> None:
    if not os.path.isfile(path):
        raise GraftInputError(f"state_dict file not found: {path}", field="state_dict_path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for unreadable files
        raise GraftInputError(
            f"cannot read state_dict {path}: {exc}", field="state_dict_path"
        ) from exc
    if not isinstance(state, dict):
        raise GraftInputError(f"{path} does not hold a state_dict", field="state_dict_path")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise GraftInputError(
            f"state_dict {path} does not fit the model: {exc}", field="state_dict_path"
        ) from exc


def build_reference(name: str, *, seed: int = 0, state_dict_path: str | None = None) -> nn.Module:
    """The reference (torchvision) model ``name`` in eval mode.

    Weights are random under ``torch.manual_seed(seed)`` (the global RNG state is restored
    afterwards) or, if ``state_dict_path`` is given, loaded from a torchvision-format
    state_dict file. Nothing is downloaded.
    """
    _check_name(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _CONSTRUCTORS[name]()
    if state_dict_path is not None:
        _load_state_dict(model, state_dict_path)
        log.info("loaded %s weights from %s", name, state_dict_path)
    return model.eval()


def chain_from_reference(name: str, model: nn.Module) -> BlockChain:
    """Cut a reference model into its block chain; the blocks share its submodules."""
    _check_name(name)
    return BlockChain(name, _SPLITTERS[name](model)).eval()


def build_chain(name: str, *, seed: int = 0, state_dict_path: str | None = None) -> BlockChain:
    """The block chain of model ``name`` (see :func:`build_reference` for the weights)."""
    model = build_reference(name, seed=seed, state_dict_path=state_dict_path)
    return chain_from_reference(name, model)
