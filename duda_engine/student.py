"""The deployable student alone: a few MB, loadable without the large networks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from duda_engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from duda_engine.config import ExperimentConfig, config_from_dict
from duda_engine.data.classes import ClassSpec
from duda_engine.models import Segmentor, build_segmentor
from duda_engine.validation import class_spec

STUDENT_FORMAT = "duda-student-v1"


def save_student(
    model: Segmentor, classes: ClassSpec, config: ExperimentConfig, step: int, miou: float | None, path: Path
) -> None:
    state = {
        "format": STUDENT_FORMAT,
        "preset": model.preset,
        "classes": {"names": list(classes.names), "colours": [list(c) for c in classes.colours], "ignore_index": classes.ignore_index},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "step": step,
        "target_miou": miou,
        "config": config.to_dict(),
    }
    save_checkpoint(state, path)


def load_student(path: str | Path, device: torch.device | str = "cpu") -> tuple[Segmentor, ClassSpec, dict[str, Any]]:
    """The student network (eval mode), its classes and the checkpoint's metadata.

    Accepts a student file or a full training checkpoint (its ``student`` network is taken).
    """
    state = load_checkpoint(path)
    if state["format"] == STUDENT_FORMAT:
        names, colours = state["classes"]["names"], state["classes"]["colours"]
        classes = ClassSpec(tuple(names), tuple(tuple(c) for c in colours), state["classes"]["ignore_index"])
        preset, weights = state["preset"], state["state_dict"]
    elif state["format"].startswith("duda-train"):
        config = config_from_dict(state["config"])
        classes, preset, weights = class_spec(config), config.model.student, state["method"]["student"]
    else:
        raise CheckpointError(f"{path} has unknown format {state['format']!r}")
    model = build_segmentor(preset, classes.num_classes)
    model.load_state_dict(weights)
    model.to(device).eval()
    meta = {k: v for k, v in state.items() if k not in ("state_dict", "method", "rng")}
    return model, classes, meta
