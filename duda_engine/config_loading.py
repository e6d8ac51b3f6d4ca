"""Loading a run's config: plain data (a run row, a checkpoint's copy) or a YAML/JSON file with dotted
overrides -> ``ExperimentConfig``, with unknown keys and wrong types rejected (``config_fields``), the
retired switches of settled experiments accepted at the value the engine kept, and every value checked
(``config.check_values``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from duda_engine.config import ExperimentConfig, check_values
from duda_engine.config_fields import ConfigError, build_dataclass

# Switches of settled experiments, removed from the config, with the value whose behaviour the engine
# kept. A stored config (a checkpoint's, a run's row) that holds one at that value loads as before;
# another value is refused: the engine no longer has that behaviour.
RETIRED = {"duda.handover": False, "duda.kd_teacher_view": "clean", "duda.inconsistency_normalise": "classes",
           "duda.inconsistency_on_kd": False, "duda.inconsistency_during_pre_adaptation": False,
           "self_training.classmix_on_device": False}


def without_retired(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the retired switches that hold their kept value (a copy; ``data`` is not changed)."""
    data = dict(data)
    for dotted, kept in RETIRED.items():
        section, key = dotted.split(".")
        if isinstance(data.get(section), dict) and key in data[section]:
            if data[section][key] != kept:
                raise ConfigError(dotted, f"was removed; only its value {kept!r} remains (the engine's behaviour)")
            data[section] = {k: v for k, v in data[section].items() if k != key}
    return data


def config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Build a config from plain data; raises ConfigError naming the first wrong field."""
    if not isinstance(data, dict):
        raise ConfigError("", "a config must be a mapping at the top level")
    config = build_dataclass(ExperimentConfig, without_retired(data))
    check_values(config)
    return config


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read a YAML or JSON config file; ``overrides`` maps dotted keys to values."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("", f"config file {path} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError("", f"config file {path} is not valid {path.suffix[1:].upper()}: {error}") from None
    data = data or {}
    for dotted, value in (overrides or {}).items():
        apply_override(data, dotted, value)
    return config_from_dict(with_dataset_manifests(data))


LAYOUT_FIELDS = ("image_dir", "label_dir", "list_file")


def with_dataset_manifests(data: dict[str, Any]) -> dict[str, Any]:
    """A custom ``source``/``target`` named by its folder alone (``kind: custom`` and ``root``, no layout
    fields) takes its layout and classes from the folder's ``dataset.yaml``; the config's own keys win
    over the file's, and a ``classes`` section that differs from the file's is refused."""
    from dataclasses import asdict, fields
    from pathlib import Path

    from duda_engine.config import DatasetConfig
    from duda_engine.data.manifest import MANIFEST_NAME, load_manifest
    from duda_engine.data.samples import DatasetError

    if not isinstance(data, dict):
        return data
    data = dict(data)
    for side in ("source", "target"):
        dataset = data.get(side)
        if not isinstance(dataset, dict) or dataset.get("kind") != "custom" or not isinstance(dataset.get("root"), str):
            continue
        folder = Path(dataset["root"]).expanduser()
        if any(dataset.get(name) for name in LAYOUT_FIELDS) or not (folder / MANIFEST_NAME).is_file():
            continue
        try:
            manifest = load_manifest(folder)
        except DatasetError as error:
            raise ConfigError(f"{side}.root", str(error)) from None
        defaults = DatasetConfig()
        described = {f.name: getattr(manifest.dataset, f.name) for f in fields(DatasetConfig)
                     if getattr(manifest.dataset, f.name) != getattr(defaults, f.name) and f.name != "root"}
        data[side] = {**described, **dataset}
        if manifest.classes.preset == "custom":
            theirs = asdict(manifest.classes)
            if "classes" not in data:
                data["classes"] = theirs
            elif {**theirs, **data["classes"]} != theirs:
                raise ConfigError("classes", f"differ from the classes of {folder / MANIFEST_NAME} "
                                             f"({', '.join(manifest.classes.names)}); leave classes out to use them")
    return data


def apply_override(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data["a"]["b"] = value`` for ``dotted == "a.b"``, creating mappings on the way."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(dotted, "cannot override inside a non-mapping value")
    node[keys[-1]] = value
