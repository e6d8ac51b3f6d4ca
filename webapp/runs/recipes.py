"""The training recipes of real datasets (``configs/real/*.yaml``): the base config of a launch on a
source/target pair of datasets.

A pair whose dataset kinds match a recipe's (GTA5 → Cityscapes, SYNTHIA → Cityscapes, Cityscapes →
ACDC, Cityscapes → Dark Zurich) starts from that recipe; any other pair from the engine's defaults,
each dataset with the settings its kind has in the recipes (its resize size, its splits). The launch's
fields and overrides then change what they name. The dataset itself (its kind, its folder under the
data root, an ACDC condition) is always the catalogue's entry, never the recipe's paths; the recipe's
run name, output folder and weights files are not used (the launch's ``weights`` field decides).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

from webapp.runs.catalog import DatasetEntry, launch_defaults

NOT_TAKEN = ("name", "output_dir")  # the recipe's own run name and folder
NOT_TAKEN_MODEL = ("student_pretrained", "auxiliary_pretrained")  # files on the recipe author's machine
DATASET_IDENTITY = ("kind", "root", "condition")  # what the catalogue's entry says, not the recipe


def recipes_dir() -> Path:
    return Path(settings.BASE_DIR) / "configs" / "real"


def recipes() -> list[dict[str, Any]]:
    """Every recipe (a mapping with a source and a target dataset), in file name order."""
    found = []
    for path in sorted(recipes_dir().glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and isinstance(data.get("source"), dict) and isinstance(data.get("target"), dict):
            found.append(data)
    return found


def recipe_for(source_kind: str, target_kind: str) -> dict[str, Any] | None:
    """The recipe for a pair of dataset kinds, without its run name, folder and weights files."""
    for recipe in recipes():
        if (recipe["source"].get("kind"), recipe["target"].get("kind")) == (source_kind, target_kind):
            base = {key: copy.deepcopy(value) for key, value in recipe.items() if key not in NOT_TAKEN}
            if isinstance(base.get("model"), dict):
                base["model"] = {k: v for k, v in base["model"].items() if k not in NOT_TAKEN_MODEL}
            return base
    return None


def dataset_settings(kind: str, side: str) -> dict[str, Any]:
    """The settings a dataset kind has in the recipes (resize, splits), from a recipe that uses it on
    ``side`` if one does, else on the other side; none for a kind no recipe uses."""
    other = "target" if side == "source" else "source"
    for role in (side, other):
        for recipe in recipes():
            if recipe[role].get("kind") == kind:
                return {k: copy.deepcopy(v) for k, v in recipe[role].items() if k not in DATASET_IDENTITY}
    return {}


def pair_base_config(source: DatasetEntry, target: DatasetEntry) -> dict[str, Any]:
    """The base config of a launch on ``source`` → ``target``: their recipe, or the engine's defaults."""
    config = recipe_for(source.kind, target.kind) or {}
    for side, entry in (("source", source), ("target", target)):
        settings_here = {k: v for k, v in (config.get(side) or {}).items() if k not in DATASET_IDENTITY}
        config[side] = {**dataset_settings(entry.kind, side), **settings_here, **entry.config}
    if target.classes:  # a custom dataset's own classes (a launch pairs only datasets whose lists agree)
        config["classes"] = dict(target.classes)
    if source.kind == "synthia":  # SYNTHIA labels 16 of the 19 classes
        eval_section = config.setdefault("eval", {})
        eval_section.setdefault("class_subset", "synthia16")
    return config


def pair_defaults() -> list[dict[str, Any]]:
    """The values the launch form shows for each recipe's pair of dataset kinds."""
    kinds = [(recipe["source"].get("kind"), recipe["target"].get("kind")) for recipe in recipes()]
    return [{"source_kind": source, "target_kind": target, "defaults": launch_defaults(recipe_for(source, target))}
            for source, target in kinds]
