"""Methods by name: each one builds its networks and optimisers and does one training iteration.

``METHODS`` is the one list of methods: a name and the class that implements it, imported only when a
run builds it (so that the config can name the methods without importing torch). Every class follows
the ``Method`` protocol.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch
    from torch import nn

    from duda_engine.config import ExperimentConfig
    from duda_engine.data.classes import ClassSpec
    from duda_engine.data.pipeline import TrainingData
    from duda_engine.methods.common import Batch

METHODS: dict[str, str] = {  # name -> "module:class", in the order the web form lists them
    "source_only": "duda_engine.methods.source_only:SourceOnly",
    "self_training": "duda_engine.methods.self_training:SelfTraining",
    "duda": "duda_engine.methods.duda:Duda",
    "oracle": "duda_engine.methods.source_only:Oracle",
}


class Stateful(Protocol):
    """A network, optimiser or schedule: anything a checkpoint saves and restores."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> object: ...


class Method(Protocol):
    """What the training loop asks of a method: built from ``(config, classes, device)``."""

    uses_target: bool  # whether ``train_step`` takes a target batch (else it gets None)
    student: nn.Module  # the network that is evaluated and deployed
    teacher: nn.Module | None  # shown beside the student in prediction samples (None: no teacher)

    def train_step(self, source: Batch, target: Batch | None, step: int) -> dict[str, torch.Tensor]:
        """One iteration: forward, backward and optimiser steps; returns the losses to log (detached)."""
        ...

    def checkpoint_parts(self) -> dict[str, Stateful | None]:
        """Networks, optimisers and schedules by name: what a checkpoint holds to continue exactly
        (None: a part this run does not have)."""
        ...

    def state_dict(self) -> dict:
        return {name: part.state_dict() for name, part in self.checkpoint_parts().items() if part is not None}

    def load_state_dict(self, state: dict) -> None:
        for name, part in self.checkpoint_parts().items():
            if part is not None:
                part.load_state_dict(state[name])

    def prepare(self, data: TrainingData, output_dir: Path, wait: bool = False,
                status: Callable[[str], None] = lambda _: None) -> None:
        """Work before the first iteration (most methods: none). ``wait``: another process (data-parallel
        rank 0) does the work that writes files; ``status`` reports what is being done."""
        return None


def build_method(config: ExperimentConfig, classes: ClassSpec, device: torch.device) -> Method:
    if config.method not in METHODS:
        raise ValueError(f"unknown method {config.method!r} (known: {', '.join(sorted(METHODS))})")
    module, _, name = METHODS[config.method].partition(":")
    return getattr(importlib.import_module(module), name)(config, classes, device)
