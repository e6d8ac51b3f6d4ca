"""How the engine reports: the CLI implements these with a progress bar and files, the web worker with
database rows and channel messages. Every method has a do-nothing default."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from duda_engine.data.classes import ClassSpec
from duda_engine.evaluate import EvalResult


@dataclass
class PredictionSample:
    """One target validation image, its ground truth and each network's prediction.

    ``image`` is the input (``H x W x 3`` uint8 RGB). ``class_ids`` maps a role (``ground_truth``,
    ``student``, ``teacher``) to an ``H x W`` class-id map (see ``evaluate.class_id_map``): ids
    ``0..K-1``, and the class list's ignore value where a pixel has no class.
    """

    name: str
    image: np.ndarray
    class_ids: dict[str, np.ndarray] = field(default_factory=dict)


class Callbacks:
    def on_start(self, total_steps: int, start_step: int) -> None:
        """Training begins (``start_step > 0`` when resumed)."""

    def on_metrics(self, step: int, values: dict[str, float]) -> None:
        """Averaged losses and schedule values over the last logging interval."""

    def on_evaluation(self, step: int, result: EvalResult) -> None:
        """Target mIoU and per-class IoU of the student at ``step``."""

    def on_samples(self, step: int, samples: list[PredictionSample], classes: ClassSpec) -> None:
        """Predictions (class-id maps) of a few fixed target images at ``step``, with the class list
        (names, colours, ignore value) the ids index."""

    def on_checkpoint(self, step: int, path: Path, kind: str) -> None:
        """A checkpoint was written atomically: kind ``full`` (training state) or ``student``."""

    def on_status(self, message: str) -> None:
        """A human-readable line for the log (data generation, resume, end)."""

    def should_stop(self) -> bool:
        """Cooperative cancel: checked once per iteration."""
        return False


class CallbackList(Callbacks):
    """Fans every event out to several callbacks; stops when any of them asks to."""

    def __init__(self, *callbacks: Callbacks):
        self.callbacks = [c for c in callbacks if c is not None]

    def on_start(self, total_steps, start_step):
        for c in self.callbacks:
            c.on_start(total_steps, start_step)

    def on_metrics(self, step, values):
        for c in self.callbacks:
            c.on_metrics(step, values)

    def on_evaluation(self, step, result):
        for c in self.callbacks:
            c.on_evaluation(step, result)

    def on_samples(self, step, samples, classes):
        for c in self.callbacks:
            c.on_samples(step, samples, classes)

    def on_checkpoint(self, step, path, kind):
        for c in self.callbacks:
            c.on_checkpoint(step, path, kind)

    def on_status(self, message):
        for c in self.callbacks:
            c.on_status(message)

    def should_stop(self):
        return any(c.should_stop() for c in self.callbacks)
