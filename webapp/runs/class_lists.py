"""A run's class list, read from its stored engine config, and the digest that says two runs predict
the same classes in the same order: only such runs are paired class by class (baselines, groups,
compare, the gallery)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def config_palette(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The classes of an engine config (as stored on a run): index, name and RGB colour."""
    classes = (config or {}).get("classes", {})
    if classes.get("preset", "cityscapes") == "custom":
        names, colours = classes.get("names", []), classes.get("colours", [])
    else:
        from duda_engine.data.classes import CITYSCAPES

        names, colours = CITYSCAPES.names, CITYSCAPES.colours
    return [{"index": i, "name": n, "colour": list(c)} for i, (n, c) in enumerate(zip(names, colours, strict=False))]


def class_names(config: dict[str, Any]) -> list[str]:
    return [c["name"] for c in config_palette(config)]


def classes_digest(config: dict[str, Any]) -> str:
    """sha256 of the class names in order: equal for two configs exactly when their class lists are."""
    return hashlib.sha256(json.dumps(class_names(config)).encode()).hexdigest()
