"""The named segmentation networks DUDA Studio can train: one table, one registry.

A *preset* is a timm encoder plus one of the decode heads of :mod:`duda_engine.models.heads`. Every
preset lives in ``_PRESET_TABLE`` below; ``register_preset`` fills the ``PRESETS`` registry from it (and
can add more at import time elsewhere). Names are what configs, the CLI and the web form use.

``heavy`` marks the networks meant as DUDA's large auxiliary student / EMA teacher: an encoder of about
40 M parameters or more. Light presets are the deployable students. ``mit_b3`` and ``mit_b4`` are heavy
(45 M and 62 M encoder parameters, more than ResNet-101's 42.5 M) and therefore get the DAFormer head,
like ``mit_b5``; they are the cheaper auxiliaries for smaller GPUs. ``resnet50`` (23.5 M) is light.
``lite2`` is the exception: EfficientNet-Lite2 (4.4 M encoder parameters) with the DAFormer head is the
largest network whose ImageNet weights install with pip (:mod:`duda_engine.models.imagenet`), so it is
the teacher for the ``lite0``/``lite1``/``mobilenetv2`` students when everything starts from ImageNet.

Each preset carries the input normalisation its encoder's ImageNet weights were trained with;
:class:`~duda_engine.models.segmentor.Segmentor` applies it, so training, evaluation, prediction and
exported models all take raw ``[0, 1]`` images.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

HEAD_KINDS = ("daformer", "segformer", "deeplabv2")


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Normalization:
    """An encoder's input normalisation: ``(image - mean) / std`` per RGB channel, images in ``[0, 1]``."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


IMAGENET_NORMALIZATION = Normalization(IMAGENET_MEAN, IMAGENET_STD)  # torchvision's and timm's default
TENSORFLOW_NORMALIZATION = Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # inputs in [-1, 1]: TF's EfficientNet-Lite


class UnknownPresetError(ValueError):
    """A preset name that is not in the registry; the message lists the known names."""

    def __init__(self, name: str, known: list[str]):
        self.name = name
        self.known = known
        super().__init__(f"unknown model preset {name!r}; known presets: {', '.join(known)}")


@dataclass(frozen=True)
class Preset:
    """One named network: which timm encoder, which head, and how big it is."""

    name: str  # the name configs use ("mit_b0")
    encoder: str  # timm model name, created with features_only=True
    head: str  # one of HEAD_KINDS
    head_width: int  # channels of the head's per-stage projection and fusion (0: no hidden layer)
    heavy: bool  # a large auxiliary/teacher network rather than a deployable student
    out_indices: tuple[int, ...]  # encoder feature stages fed to the head (the last one is the bottleneck)
    output_stride: int | None = None  # timm output_stride (dilated last stages); None = the encoder's own (32)
    drop_path_rate: float = 0.0  # stochastic depth in the encoder while training
    description: str = ""  # one line for people choosing a preset
    normalization: Normalization = IMAGENET_NORMALIZATION  # what the encoder's ImageNet weights expect

    def __post_init__(self) -> None:
        if self.head not in HEAD_KINDS:
            raise ValueError(f"preset {self.name!r}: head must be one of {HEAD_KINDS}, not {self.head!r}")


_MIT = (0, 1, 2, 3)  # pvt_v2 stages at strides 4, 8, 16, 32
_CNN = (1, 2, 3, 4)  # resnet / mobilenet / efficientnet stages at strides 4, 8, 16, 32 (8, 8, 8 with output_stride 8)
_TF = TENSORFLOW_NORMALIZATION

# The preset table: every preset DUDA Studio knows, in one place.
# pvt_v2 is timm's MiT equivalent (same widths and depths); drop_path 0.1 as in SegFormer/DAFormer.
_PRESET_TABLE: tuple[Preset, ...] = (
    # heavy: auxiliary students and teachers
    Preset("mit_b5", "pvt_v2_b5", "daformer", 256, True, _MIT, None, 0.1, "MiT-B5 + DAFormer head (DAFormer/HRDA/MIC)"),
    Preset("mit_b4", "pvt_v2_b4", "daformer", 256, True, _MIT, None, 0.1, "MiT-B4 + DAFormer head"),
    Preset("mit_b3", "pvt_v2_b3", "daformer", 256, True, _MIT, None, 0.1, "MiT-B3 + DAFormer head"),
    Preset("resnet101", "resnet101", "deeplabv2", 0, True, _CNN, 8, 0.0, "ResNet-101 + DeepLabV2 ASPP"),
    # tf_ variants: the ImageNet weights were trained with TensorFlow's "same" padding.
    Preset("lite2", "tf_efficientnet_lite2", "daformer", 256, True, _CNN, None, 0.0,
           "EfficientNet-Lite2 + DAFormer head (the teacher with installable ImageNet weights)", _TF),
    # light: deployable students
    Preset("mit_b0", "pvt_v2_b0", "segformer", 256, False, _MIT, None, 0.1, "MiT-B0 + SegFormer MLP head"),
    Preset("mit_b1", "pvt_v2_b1", "segformer", 256, False, _MIT, None, 0.1, "MiT-B1 + SegFormer MLP head"),
    Preset("mit_b2", "pvt_v2_b2", "segformer", 768, False, _MIT, None, 0.1, "MiT-B2 + SegFormer MLP head"),
    Preset("resnet18", "resnet18", "deeplabv2", 0, False, _CNN, 8, 0.0, "ResNet-18 + DeepLabV2 ASPP"),
    Preset("resnet50", "resnet50", "deeplabv2", 0, False, _CNN, 8, 0.0, "ResNet-50 + DeepLabV2 ASPP"),
    # MobileNetV3 gets the SegFormer MLP head, like the MiT students: one head family for every
    # transformer/mobile student (same feature interface for distillation, one code path to test).
    # Width 128 rather than 256 so that the stride-4 fusion (about 1 GMAC at 512x512) does not dwarf
    # the 3 M-parameter encoder; an LR-ASPP head would be lighter still but is a different design.
    Preset("mobilenetv3", "mobilenetv3_large_100", "segformer", 128, False, _CNN, None, 0.0,
           "MobileNetV3-Large + SegFormer MLP head (width 128)"),
    # The students with installable ImageNet weights: the same head as MobileNetV3.
    Preset("lite0", "tf_efficientnet_lite0", "segformer", 128, False, _CNN, None, 0.0,
           "EfficientNet-Lite0 + SegFormer MLP head (width 128)", _TF),
    Preset("lite1", "tf_efficientnet_lite1", "segformer", 128, False, _CNN, None, 0.0,
           "EfficientNet-Lite1 + SegFormer MLP head (width 128)", _TF),
    Preset("mobilenetv2", "mobilenetv2_100", "segformer", 128, False, _CNN, None, 0.0,
           "MobileNetV2 + SegFormer MLP head (width 128)"),
)  # fmt: skip

PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    """Add ``preset`` to the registry; a second preset of the same name replaces the first, with a warning."""
    if preset.name in PRESETS:
        warnings.warn(f"model preset {preset.name!r} registered twice; the later one wins", stacklevel=2)
    PRESETS[preset.name] = preset
    return preset


for _preset in _PRESET_TABLE:
    register_preset(_preset)


def preset_names() -> list[str]:
    """All registered preset names, sorted."""
    return sorted(PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name``; raises :class:`UnknownPresetError` (listing the known names) otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownPresetError(name, preset_names()) from None
