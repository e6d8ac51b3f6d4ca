"""The segmentation network every method trains: normalise → timm encoder → decode head → upsample.

``build_segmentor("mit_b0", num_classes=19, pretrained="")`` makes one from a preset
(:mod:`duda_engine.models.presets`). Images go in as float ``[B, 3, H, W]`` in ``[0, 1]``; the preset's
input normalisation (ImageNet mean/std, or 0.5/0.5 for the EfficientNet-Lite presets) is the model's first
step, so data pipelines, teachers, ``predict`` and exported models all take the same raw images. Logits come out ``[B, K, H, W]`` at the input size (bilinear, ``align_corners=False``).
"""

from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from duda_engine.models.heads import build_head
from duda_engine.models.imagenet import IMAGENET, load_imagenet_encoder
from duda_engine.models.presets import Preset, get_preset
from duda_engine.models.weights import load_pretrained_encoder


class Segmentor(nn.Module):
    """An encoder-decoder segmentation network built from a preset.

    Attributes: ``preset`` (its name), ``num_classes``, ``encoder`` (timm, ``features_only``),
    ``decoder`` (the head), and the non-persistent ``mean``/``std`` buffers used to normalise inputs
    (the preset's :class:`~duda_engine.models.presets.Normalization`).
    """

    def __init__(self, preset: str, encoder: nn.Module, decoder: nn.Module, num_classes: int):
        super().__init__()
        self.preset = preset
        self.num_classes = num_classes
        self.encoder = encoder
        self.decoder = decoder
        normalization = get_preset(preset).normalization
        self.register_buffer("mean", torch.tensor(normalization.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(normalization.std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` images in ``[0, 1]`` → images normalised as the preset's encoder expects."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {list(images.shape)}")
        return (images - self.mean) / self.std

    def extract_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's feature maps for raw ``[0, 1]`` images, finest first, last = bottleneck."""
        return list(self.encoder(self.normalize(images)))

    def forward_with_features(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits at the input size, and the encoder feature maps (for a feature-distance loss)."""
        features = self.extract_features(images)
        logits = self.decoder(features)
        logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return logits, features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K, H, W]`` for raw ``[B, 3, H, W]`` images in ``[0, 1]``."""
        return self.forward_with_features(images)[0]

    def param_groups(self, lr: float, head_lr_mult: float) -> list[dict[str, Any]]:
        """AdamW parameter groups: trainable encoder parameters at ``lr``, decoder at ``lr * head_lr_mult``.

        Each group also carries a ``"name"`` (``"encoder"``/``"decoder"``) for logging.
        """
        return [
            {"name": "encoder", "params": [p for p in self.encoder.parameters() if p.requires_grad], "lr": lr},
            {
                "name": "decoder",
                "params": [p for p in self.decoder.parameters() if p.requires_grad],
                "lr": lr * head_lr_mult,
            },
        ]


def create_encoder(preset: Preset) -> nn.Module:
    """The preset's timm encoder with random weights (``features_only``; never downloads anything)."""
    kwargs: dict[str, Any] = {"features_only": True, "pretrained": False, "out_indices": preset.out_indices}
    if preset.output_stride is not None:
        kwargs["output_stride"] = preset.output_stride
    if preset.drop_path_rate:
        kwargs["drop_path_rate"] = preset.drop_path_rate
    return timm.create_model(preset.encoder, **kwargs)


def build_segmentor(name: str, num_classes: int, pretrained: str = "") -> Segmentor:
    """A fresh :class:`Segmentor` for preset ``name``.

    ``pretrained`` is a local ImageNet weights file for the encoder, ``"imagenet"`` for the weights of the
    preset's installed weights package (:mod:`duda_engine.models.imagenet`), or "" for random init. A
    wrong name raises :class:`~duda_engine.models.presets.UnknownPresetError`; a bad file, a missing
    package or a preset without such a package :class:`~duda_engine.models.weights.PretrainedWeightsError`.
    """
    preset = get_preset(name)
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    encoder = create_encoder(preset)
    if pretrained == IMAGENET:
        load_imagenet_encoder(encoder, preset)
    elif pretrained:
        load_pretrained_encoder(encoder, pretrained)
    channels = encoder.feature_info.channels()
    decoder = build_head(preset.head, channels, num_classes, preset.head_width)
    return Segmentor(preset.name, encoder, decoder, num_classes)
