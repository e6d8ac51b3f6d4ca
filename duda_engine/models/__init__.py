"""Segmentation networks: named presets (timm encoder + decode head), building, and pretrained weights.

Public API::

    build_segmentor(name, num_classes, pretrained="") -> Segmentor   (pretrained: a path, "imagenet" or "")
    preset_names() -> list[str];  get_preset(name) -> Preset  (UnknownPresetError for a wrong name)
    load_pretrained_encoder(encoder, path)                    (PretrainedWeightsError for a bad file)
    weights_file_problem(path) -> str | None                  (a file that cannot be weights, from its first bytes)
    imagenet_weights(preset) -> ImagenetWeights | None;  imagenet_weights_file(preset) -> Path
                                    (PretrainedWeightsError: no package for the preset, or not installed)
    count_parameters(module) -> int
"""

from duda_engine.models.heads import DAFormerHead, DeepLabV2Head, SegFormerHead, build_head
from duda_engine.models.imagenet import (
    IMAGENET,
    IMAGENET_WEIGHTS,
    ImagenetWeights,
    imagenet_weights,
    imagenet_weights_file,
    load_imagenet_encoder,
)
from duda_engine.models.presets import (
    IMAGENET_MEAN,
    IMAGENET_NORMALIZATION,
    IMAGENET_STD,
    PRESETS,
    TENSORFLOW_NORMALIZATION,
    Normalization,
    Preset,
    UnknownPresetError,
    get_preset,
    preset_names,
)
from duda_engine.models.segmentor import Segmentor, build_segmentor, create_encoder
from duda_engine.models.weights import (
    LoadReport,
    PretrainedWeightsError,
    count_parameters,
    load_pretrained_encoder,
    weights_file_problem,
)

__all__ = [
    "IMAGENET",
    "IMAGENET_MEAN",
    "IMAGENET_NORMALIZATION",
    "IMAGENET_STD",
    "IMAGENET_WEIGHTS",
    "PRESETS",
    "TENSORFLOW_NORMALIZATION",
    "DAFormerHead",
    "DeepLabV2Head",
    "ImagenetWeights",
    "LoadReport",
    "Normalization",
    "Preset",
    "PretrainedWeightsError",
    "SegFormerHead",
    "Segmentor",
    "UnknownPresetError",
    "build_head",
    "build_segmentor",
    "count_parameters",
    "create_encoder",
    "get_preset",
    "imagenet_weights",
    "imagenet_weights_file",
    "load_imagenet_encoder",
    "load_pretrained_encoder",
    "preset_names",
    "weights_file_problem",
]
