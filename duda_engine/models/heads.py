"""Decode heads: encoder feature maps in, class logits at the finest feature resolution out.

Every head takes the list of encoder feature maps (finest first, last = bottleneck) and returns logits
``[B, K, h, w]`` at the size of the map it reads at the finest level (stride 4 for the MLP/DAFormer heads,
the last stage's stride for DeepLabV2); :class:`~duda_engine.models.segmentor.Segmentor` upsamples them
to the input size. ``build_head(kind, ...)`` picks one from the ``HEADS`` registry.

- :class:`SegFormerHead` (all-MLP): each stage projected to ``width`` channels, upsampled to stride 4,
  concatenated, 1x1 fusion conv + BN + ReLU, dropout 0.1, 1x1 classifier.
- :class:`DAFormerHead`: the same projection, then an ASPP-like fusion (1x1 branch and depthwise-
  separable 3x3 branches with dilations 6, 12, 18, no image pooling), a 3x3 bottleneck to ``width``
  channels, dropout 0.1, 1x1 classifier.
- :class:`DeepLabV2Head`: the sum of 3x3 convs with dilations 6, 12, 18, 24 on the last stage, straight
  to the classes.

Initialisation: hidden convs Kaiming-normal (fan-out, ReLU), biases 0, BN weight 1 and bias 0; layers
that emit logits normal with std 0.01 (as mmseg's ``conv_seg``), so an untrained head starts near uniform.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """Conv (no bias) + BatchNorm + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1, groups: int = 1):
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(
                in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, groups=groups, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise-separable 3x3 conv: dilated depthwise 3x3 + BN + ReLU, then pointwise 1x1 + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int):
        super().__init__(
            ConvBNReLU(in_channels, in_channels, kernel_size=3, dilation=dilation, groups=in_channels),
            ConvBNReLU(in_channels, out_channels, kernel_size=1),
        )


class StageProjection(nn.Module):
    """Projects every encoder stage to ``width`` channels (1x1 conv = per-pixel linear), upsamples all of
    them to the first stage's size (bilinear) and concatenates them: ``len(in_channels) * width`` channels."""

    def __init__(self, in_channels: Sequence[int], width: int):
        super().__init__()
        self.projections = nn.ModuleList(nn.Conv2d(c, width, kernel_size=1) for c in in_channels)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.projections):
            raise ValueError(f"expected {len(self.projections)} feature maps, got {len(features)}")
        size = features[0].shape[-2:]
        outs = []
        for feature, projection in zip(features, self.projections, strict=True):
            out = projection(feature)
            if out.shape[-2:] != size:
                out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
            outs.append(out)
        return torch.cat(outs, dim=1)


class SegFormerHead(nn.Module):
    """SegFormer's all-MLP decoder: stage projection, 1x1 fusion + BN + ReLU, dropout, 1x1 classifier."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, width: int = 256, dropout: float = 0.1):
        super().__init__()
        self.project = StageProjection(in_channels, width)
        self.fuse = ConvBNReLU(len(in_channels) * width, width, kernel_size=1)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(width, num_classes, kernel_size=1)
        init_head(self, classifiers=[self.classifier])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.dropout(self.fuse(self.project(features))))


class DAFormerHead(nn.Module):
    """DAFormer's context-aware fusion decoder (Hoyer et al. 2022).

    Stage projection to ``width`` each, then ASPP-like fusion over the concatenation: a 1x1 branch and
    depthwise-separable 3x3 branches at ``dilations[1:]`` (no global pooling), concatenated, a 3x3
    bottleneck conv to ``width`` (BN + ReLU), dropout, 1x1 classifier.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        width: int = 256,
        dilations: Sequence[int] = (1, 6, 12, 18),
        dropout: float = 0.1,
    ):
        super().__init__()
        fused = len(in_channels) * width
        self.project = StageProjection(in_channels, width)
        self.branches = nn.ModuleList(
            ConvBNReLU(fused, width, kernel_size=1) if d == 1 else SeparableConvBNReLU(fused, width, dilation=d)
            for d in dilations
        )
        self.bottleneck = ConvBNReLU(len(dilations) * width, width, kernel_size=3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(width, num_classes, kernel_size=1)
        init_head(self, classifiers=[self.classifier])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.project(features)
        x = torch.cat([branch(x) for branch in self.branches], dim=1)
        return self.classifier(self.dropout(self.bottleneck(x)))


class DeepLabV2Head(nn.Module):
    """DeepLabV2's ASPP classifier: the sum of dilated 3x3 convs on the last feature map, straight to logits."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, dilations: Sequence[int] = (6, 12, 18, 24)):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels[-1], num_classes, kernel_size=3, padding=d, dilation=d) for d in dilations
        )
        init_head(self, classifiers=list(self.branches))

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


def init_head(module: nn.Module, classifiers: Sequence[nn.Conv2d]) -> None:
    """Kaiming-normal hidden convs, zero biases, BN (1, 0); ``classifiers`` (logit layers) normal std 0.01."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for conv in classifiers:
        nn.init.normal_(conv.weight, std=0.01)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)


# ---------------------------------------------------------------------------------------------------------
# Registry: head kind -> builder(in_channels, num_classes, width) -> nn.Module

HeadBuilder = Callable[[Sequence[int], int, int], nn.Module]
HEADS: dict[str, HeadBuilder] = {}


def register_head(kind: str) -> Callable[[HeadBuilder], HeadBuilder]:
    """Decorator: register ``builder`` under ``kind``; a duplicate kind replaces the first, with a warning."""

    def decorator(builder: HeadBuilder) -> HeadBuilder:
        if kind in HEADS:
            warnings.warn(f"head kind {kind!r} registered twice; the later one wins", stacklevel=2)
        HEADS[kind] = builder
        return builder

    return decorator


@register_head("segformer")
def _build_segformer(in_channels: Sequence[int], num_classes: int, width: int) -> nn.Module:
    return SegFormerHead(in_channels, num_classes, width=width)


@register_head("daformer")
def _build_daformer(in_channels: Sequence[int], num_classes: int, width: int) -> nn.Module:
    return DAFormerHead(in_channels, num_classes, width=width)


@register_head("deeplabv2")
def _build_deeplabv2(in_channels: Sequence[int], num_classes: int, width: int) -> nn.Module:
    return DeepLabV2Head(in_channels, num_classes)


def build_head(kind: str, in_channels: Sequence[int], num_classes: int, width: int) -> nn.Module:
    """A fresh, initialised head of ``kind`` for encoder stages of ``in_channels`` channels."""
    if kind not in HEADS:
        raise ValueError(f"unknown head kind {kind!r}; known kinds: {', '.join(sorted(HEADS))}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    return HEADS[kind](list(in_channels), num_classes, width)
