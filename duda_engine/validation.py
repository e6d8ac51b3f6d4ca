"""Validation against the world: presets, weight files, dataset folders, crop sizes, devices.

``validate_config`` is the one gate the CLI, the web form and the API call before a run starts:
every problem comes back as a ``ConfigError`` naming the field, never as a traceback from a worker.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from duda_engine.config import ClassesConfig, ConfigError, ExperimentConfig, check_values
from duda_engine.data.classes import CITYSCAPES, ClassSpec
from duda_engine.data.dataset_check import (
    LABELS_NONE,
    LABELS_REQUIRED,
    LAYOUT_PROBLEM,
    DatasetCheckError,
    Progress,
    check_dataset,
    scan_dataset,
)
from duda_engine.data.decoding import image_size
from duda_engine.data.layouts import find_samples
from duda_engine.data.samples import DatasetError
from duda_engine.models import (
    IMAGENET,
    PretrainedWeightsError,
    UnknownPresetError,
    get_preset,
    imagenet_weights_file,
    weights_file_problem,
)


def class_spec(config: ExperimentConfig) -> ClassSpec:
    return class_spec_of(config.classes)


def class_spec_of(c: ClassesConfig) -> ClassSpec:
    if c.preset == "cityscapes":
        return ClassSpec(CITYSCAPES.names, CITYSCAPES.colours, c.ignore_index)
    return ClassSpec(tuple(c.names), tuple(tuple(rgb) for rgb in c.colours), c.ignore_index)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("train.device", f"{name} asked for, but no CUDA device is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError("train.device", f"{name!r} is not a device") from None


def _check_preset(field: str, name: str) -> None:
    try:
        get_preset(name)
    except UnknownPresetError as error:
        raise ConfigError(field, str(error)) from None


def _check_file(field: str, path: str, what: str) -> None:
    if path and not Path(path).expanduser().is_file():
        raise ConfigError(field, f"{what} {path} does not exist")


def _check_weights(field: str, path: str) -> None:
    if path in ("", IMAGENET):  # none, or a weights source the engine provides by name (checked above)
        return
    _check_file(field, path, "weights file")
    problem = weights_file_problem(Path(path).expanduser())
    if problem:
        raise ConfigError(field, f"{path} {problem}")


def _image_size_of(config_name: str, config: ExperimentConfig) -> tuple[int, int]:
    """(W, H) of the first training image after resize-to-fit, for the crop check."""
    d = getattr(config, config_name)
    if d.kind == "toy":
        from duda_engine.toy.domains import TOY_SIZES  # generated data: its size is known without generating it

        return TOY_SIZES[d.toy_size]
    samples = find_samples(d, d.train_split, labelled=False)
    width, height = image_size(samples[0].image)
    if d.resize:
        scale = min(d.resize[0] / width, d.resize[1] / height)
        width, height = round(width * scale), round(height * scale)
    return width, height


def validate_config(config: ExperimentConfig) -> None:
    """Everything that can be checked before training starts; raises ``ConfigError``."""
    check_values(config)
    m = config.model
    _check_preset("model.student", m.student)
    if config.method == "duda":
        _check_preset("model.auxiliary", m.auxiliary)
    for network in ("student", "auxiliary") if config.method == "duda" else ("student",):
        if getattr(m, f"{network}_pretrained") == IMAGENET:  # the preset has a weights package, and it is installed
            try:
                imagenet_weights_file(get_preset(getattr(m, network)))
            except PretrainedWeightsError as error:
                raise ConfigError(f"model.{network}_pretrained", str(error)) from None
    _check_weights("model.student_pretrained", m.student_pretrained)
    _check_weights("model.auxiliary_pretrained", m.auxiliary_pretrained)
    for i, path in enumerate(config.duda.frozen_teachers if config.method == "duda" else []):
        _check_file(f"duda.frozen_teachers[{i}]", path, "teacher checkpoint")
    resolve_device(config.train.device)

    classes = class_spec(config)
    if config.method in ("self_training", "duda") and config.self_training.fdist_weight > 0:
        for name in config.self_training.fdist_classes:
            if name not in classes.names:
                raise ConfigError("self_training.fdist_classes",
                                  f"{name!r} is not a class of this run (classes: {', '.join(classes.names)})")
    needs_source = config.method != "oracle"
    checks = [("target", config.target.val_split, True)]
    if needs_source:
        checks.insert(0, ("source", config.source.train_split, True))
    if config.method in ("self_training", "duda"):
        checks.append(("target", config.target.train_split, False))
    if config.method == "oracle":
        checks.append(("target", config.target.train_split, True))
    for name, split, labelled in checks:
        d = getattr(config, name)
        if d.kind == "toy":
            continue  # bundled: always present, generated on first use
        try:
            check_dataset(d, classes, split, labelled=labelled)
        except DatasetError as error:
            raise ConfigError(f"{name}.root", str(error)) from None

    crop_h, crop_w = config.train.crop_size
    largest = config.train.scale_range[1]
    for name in ("source", "target") if needs_source else ("target",):
        width, height = _image_size_of(name, config)
        if crop_h > height * largest or crop_w > width * largest:
            raise ConfigError(
                "train.crop_size",
                f"{crop_h}x{crop_w} (HxW) cannot be cut from the {name} images ({height}x{width} after resizing, "
                f"at most x{largest:g} by scale_range)",
            )


def data_checks(config: ExperimentConfig) -> list[tuple[str, list[tuple[str, str]]]]:
    """What a run reads of each dataset it trains or evaluates on: ``[(side, [(split, labels), ...])]``
    (``labels`` as in ``scan_dataset``); the bundled toy domains are left out (generated here)."""
    wanted: dict[str, list[tuple[str, str]]] = {}
    if config.method != "oracle":
        wanted.setdefault("source", []).append((config.source.train_split, LABELS_REQUIRED))
    target = wanted.setdefault("target", [])
    target.append((config.target.val_split, LABELS_REQUIRED))
    if config.method in ("self_training", "duda"):
        target.append((config.target.train_split, LABELS_NONE))
    if config.method == "oracle":
        target.append((config.target.train_split, LABELS_REQUIRED))
    checks = []
    for side, splits in wanted.items():
        if getattr(config, side).kind == "toy":
            continue
        unique = list(dict.fromkeys(splits))
        if side == "target" and config.source == config.target and "source" in wanted:
            unique = [s for s in unique if s not in wanted["source"]]  # the same folder and split: read once
        if unique:
            checks.append((side, unique))
    return checks


def check_data(config: ExperimentConfig, progress: Callable[[str], Progress | None] | None = None, *,
               files_only: bool = False) -> None:
    """Read every image and label the run uses once (``scan_dataset``, cached); ``DatasetCheckError``
    listing every problem. ``progress(side)`` gives the progress callback of one dataset's check;
    ``files_only``: raise only for problems with files (not for a missing folder or split alone)."""
    classes = class_spec(config)
    for side, splits in data_checks(config):
        dataset = getattr(config, side)
        report = scan_dataset(dataset, classes, splits, progress=progress(side) if progress else None)
        if not report.ok and not (files_only and set(report.counts) <= {LAYOUT_PROBLEM}):
            raise DatasetCheckError(f"{side}.root: {dataset.kind} dataset {dataset.root}", report)
