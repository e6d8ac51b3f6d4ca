"""The deployable student alone: a few MB, loadable without the large networks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from duda_engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from duda_engine.config import ExperimentConfig
from duda_engine.config_loading import config_from_dict
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


# The networks a full training checkpoint holds, by method: name -> (its key in the method's state,
# the config field naming its preset). The teachers are EMA copies of the network they follow; in
# ``duda.teachers`` DUDA's "teacher" is called ``ema`` and its "student_teacher" ``student_ema``.
NETWORKS_BY_METHOD: dict[str, dict[str, tuple[str, str]]] = {
    "source_only": {"student": ("student", "student")},
    "oracle": {"student": ("student", "student")},
    "self_training": {"student": ("student", "student"), "teacher": ("teacher", "student")},
    "duda": {
        "student": ("student", "student"),
        "auxiliary": ("auxiliary", "auxiliary"),
        "teacher": ("ema", "auxiliary"),
        "student_teacher": ("student_ema", "student"),
    },
}
NETWORK_NAMES = tuple(dict.fromkeys(name for networks in NETWORKS_BY_METHOD.values() for name in networks))


def load_student(
    path: str | Path, device: torch.device | str = "cpu", network: str = "student"
) -> tuple[Segmentor, ClassSpec, dict[str, Any]]:
    """The student network (eval mode), its classes and the checkpoint's metadata.

    Accepts a student file or a full training checkpoint. From a full checkpoint, ``network`` may also
    name another network the run trained: ``teacher`` (the EMA teacher: of the student in self-training,
    of the auxiliary in DUDA), ``auxiliary`` (DUDA's large student) or ``student_teacher`` (DUDA's EMA of
    the small student, when the run kept one). A network the file does not hold is a CheckpointError.
    """
    state = load_checkpoint(path)
    if state["format"] == STUDENT_FORMAT:
        if network != "student":
            raise CheckpointError(f"{path} is a student file: it holds no {network!r}; pass the run's full checkpoint")
        names, colours = state["classes"]["names"], state["classes"]["colours"]
        classes = ClassSpec(tuple(names), tuple(tuple(c) for c in colours), state["classes"]["ignore_index"])
        preset, weights = state["preset"], state["state_dict"]
    elif state["format"].startswith("duda-train"):
        config = config_from_dict(state["config"])
        held = {name: place for name, place in NETWORKS_BY_METHOD.get(config.method, {}).items()
                if place[0] in state["method"]}
        if network not in held:
            raise CheckpointError(f"{path} ({config.method}) holds no {network!r} network; it holds: {', '.join(held) or 'none'}")
        key, preset_field = held[network]
        classes, preset, weights = class_spec(config), getattr(config.model, preset_field), state["method"][key]
    else:
        raise CheckpointError(f"{path} has unknown format {state['format']!r}")
    model = build_segmentor(preset, classes.num_classes)
    model.load_state_dict(weights)
    model.to(device).eval()
    meta = {k: v for k, v in state.items() if k not in ("state_dict", "method", "rng")} | {"network": network, "preset": preset}
    return model, classes, meta
