"""Methods by name: each one builds its networks and optimisers and does one training iteration."""

from __future__ import annotations

from collections.abc import Callable

import torch

from duda_engine.config import ExperimentConfig
from duda_engine.data.classes import ClassSpec

METHODS: dict[str, Callable] = {}


def register_method(name: str):
    def decorator(factory):
        if name in METHODS:
            raise ValueError(f"method {name!r} registered twice")
        METHODS[name] = factory
        return factory

    return decorator


def build_method(config: ExperimentConfig, classes: ClassSpec, device: torch.device):
    if config.method not in METHODS:
        raise ValueError(f"unknown method {config.method!r} (known: {', '.join(sorted(METHODS))})")
    return METHODS[config.method](config, classes, device)


def _register_builtin() -> None:
    from duda_engine.methods.duda import Duda
    from duda_engine.methods.self_training import SelfTraining
    from duda_engine.methods.source_only import Oracle, SourceOnly

    register_method("source_only")(SourceOnly)
    register_method("oracle")(Oracle)
    register_method("self_training")(SelfTraining)
    register_method("duda")(Duda)


_register_builtin()
