"""A custom dataset's ``dataset.yaml``: its layout (the dataset fields) and its classes, in one file.

::

    label: Orchard rows            # shown in the web app (default: the folder's name)
    image_dir: images
    label_dir: labels
    classes:
      names: [soil, trunk, leaves]
      colours: [[120, 90, 60], [90, 50, 20], [40, 160, 60]]
      ignore_index: 255            # optional (default 255)

Every other key is a ``DatasetConfig`` field (``list_file``, ``label_suffix``, ``train_split``,
``val_split``, ``resize``, ``ignore_unknown_labels``); the folder holding the file is the dataset's
root. Without ``classes`` the dataset uses the Cityscapes classes. ``load_manifest`` validates it with
the run config's own checks: an error names the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from duda_engine.config import ClassesConfig, DatasetConfig, check_classes
from duda_engine.config_fields import ConfigError, build_dataclass
from duda_engine.data.classes import CITYSCAPES
from duda_engine.data.samples import DatasetError

MANIFEST_NAME = "dataset.yaml"
MANIFEST_ONLY = ("label", "classes")  # the keys that are not dataset fields
DECIDED_BY_LOCATION = ("root",)  # the folder holding the file


@dataclass(frozen=True)
class DatasetManifest:
    """A custom dataset as its ``dataset.yaml`` describes it."""

    label: str
    dataset: DatasetConfig  # kind "custom", root = the folder holding the file
    classes: ClassesConfig  # preset "custom" with the file's classes, or "cityscapes" when it gives none

    def class_list(self) -> list[dict[str, Any]]:
        """``[{"id", "name", "colour"}]`` of the dataset's classes, for listings."""
        return class_list(self.classes)


def class_list(classes: ClassesConfig) -> list[dict[str, Any]]:
    """``[{"id", "name", "colour"}]`` of a run's or a dataset's classes."""
    if classes.preset == "cityscapes":
        names, colours = CITYSCAPES.names, CITYSCAPES.colours
    else:
        names, colours = classes.names, classes.colours
    return [{"id": i, "name": name, "colour": list(colour)} for i, (name, colour) in
            enumerate(zip(names, colours, strict=True))]


def parse_manifest(data: Any, folder: Path, where: str = MANIFEST_NAME) -> DatasetManifest:
    """A manifest from the file's parsed YAML; ``DatasetError`` naming ``where`` and the field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DatasetError(f"{where}: must be a mapping of dataset fields")
    for key in DECIDED_BY_LOCATION:
        if key in data:
            raise DatasetError(f"{where}: {key}: the dataset's folder is the one holding {MANIFEST_NAME}; remove {key}")
    if data.get("kind", "custom") != "custom":
        raise DatasetError(f"{where}: kind: a dataset.yaml describes a custom dataset (kind: custom), not {data['kind']!r}")
    label = data.get("label", folder.name)
    if not isinstance(label, str) or not label.strip():
        raise DatasetError(f"{where}: label: must be a non-empty string")
    fields = {k: v for k, v in data.items() if k not in MANIFEST_ONLY and k != "kind"}
    try:
        dataset = build_dataclass(DatasetConfig, {**fields, "kind": "custom", "root": str(folder)})
        raw_classes = data.get("classes")
        if raw_classes is None:
            classes = ClassesConfig()
        else:
            if not isinstance(raw_classes, dict):
                raise ConfigError("classes", "must be a mapping with names, colours and (optionally) ignore_index")
            if "preset" in raw_classes:
                raise ConfigError("classes.preset", "a dataset's classes are its own: give names and colours")
            classes = build_dataclass(ClassesConfig, {"preset": "custom", **raw_classes}, "classes")
        check_classes(classes)
    except ConfigError as error:
        message = error.message
        if message.startswith("unknown key") and "." not in error.field:
            known = sorted({*DatasetConfig.__dataclass_fields__, *MANIFEST_ONLY} - {"kind", *DECIDED_BY_LOCATION})
            message = f"unknown key (known: {', '.join(known)})"
        raise DatasetError(f"{where}: {error.field}: {message}" if error.field else f"{where}: {message}") from None
    if not dataset.list_file and not (dataset.image_dir and dataset.label_dir):
        raise DatasetError(f"{where}: image_dir: a custom dataset needs image_dir and label_dir, or a list_file")
    return DatasetManifest(label.strip(), dataset, classes)


def load_manifest(folder: Path | str) -> DatasetManifest:
    """Read ``<folder>/dataset.yaml``; ``DatasetError`` naming the file (and the field) when it is wrong."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise DatasetError(f"{path}: cannot be read: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise DatasetError(f"{path}: not valid YAML: {error}") from None
    return parse_manifest(data, folder, str(path))
