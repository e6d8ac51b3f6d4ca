"""A run's results as a worker reports them: metric points, evaluations (per-class IoU), prediction
samples (class-id PNG files) and checkpoints (files with their sha256). Each write checks the claim (``claims``)
and, after it commits, tells the run's page (``live.publish``): these functions and ``lifecycle`` send
every message the browser gets, each about rows already in the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from django.db import transaction

from webapp.runs import curves, live
from webapp.runs.models import Checkpoint, CheckpointKind, ClassIoU, PredictionSample, Run, SampleRole
from webapp.runs.services.claims import check_held, held_run
from webapp.runs.services.worker import progress_store

if TYPE_CHECKING:  # the web process does not import the engine (torch) to serve pages
    from duda_engine import callbacks as engine
    from duda_engine.data.classes import ClassSpec


def _points_message(points: list[tuple[int, str, float]]) -> list[dict[str, Any]]:
    return [{"step": step, "name": name, "value": value} for step, name, value in points]


@dataclass
class Progress:
    """Where the training is, with its smoothed speed (wall-clock seconds per iteration)."""

    step: int
    total_steps: int
    seconds_per_step: float | None

    def as_message(self) -> dict[str, Any]:
        eta = (self.total_steps - self.step) * self.seconds_per_step if self.seconds_per_step else None
        return {"step": self.step, "total_steps": self.total_steps, "eta_seconds": eta}


def metrics_record(*, run_id: int, token: str, points: list[tuple[int, str, float]],
                   progress: Progress | None = None) -> int:
    """Store metric points in one batch (a point already stored (run, step, name) is kept as it is),
    with ``progress`` the run's step and speed; after commit, one "metrics" message with them."""
    with transaction.atomic():
        held_run(run_id=run_id, token=token)
        count = curves.store_points(run_id, points)
        if progress is not None:
            progress_store(run_id=run_id, step=progress.step, seconds_per_step=progress.seconds_per_step)
        if points:
            message = {"step": max(p[0] for p in points), "points": _points_message(points),
                       "progress": progress.as_message() if progress is not None else None}
            transaction.on_commit(lambda: live.publish(run_id, "metrics", message))
    return count


def evaluation_record(*, run_id: int, token: str, step: int, miou: float, per_class: dict[str, float],
                      pixel_accuracy: float) -> None:
    """Per-class IoU rows of one evaluation, its points (``eval/miou``, ``eval/pixel_accuracy``) and the
    run's best mIoU; after commit, one "evaluation" message with all of them."""
    rows = [
        ClassIoU(run_id=run_id, step=step, class_index=index, class_name=name[:64],
                 iou=float(value) if value is not None and np.isfinite(value) else None)
        for index, (name, value) in enumerate(per_class.items())
    ]
    with transaction.atomic():
        run = held_run(run_id=run_id, token=token)
        ClassIoU.objects.bulk_create(rows, ignore_conflicts=True)
        points = [(step, "eval/miou", miou), (step, "eval/pixel_accuracy", pixel_accuracy)]
        curves.store_points(run_id, points)
        if np.isfinite(miou) and (run.best_miou is None or miou > run.best_miou):
            run.best_miou = float(miou)
            run.save(update_fields=["best_miou", "updated_at"])
        message = {"step": step, "miou": miou, "per_class": per_class, "pixel_accuracy": pixel_accuracy,
                   "points": _points_message(points)}
        transaction.on_commit(lambda: live.publish(run_id, "evaluation", message))


def _class_id_png(class_ids: np.ndarray, classes: ClassSpec) -> Any:
    """A class-id map as a palette PNG: each pixel value is the class id (``UNLABELLED_ID`` where the map
    holds no class), the palette is the classes' colours, so the file is both the ids and a viewable image."""
    from PIL import Image

    known = (class_ids >= 0) & (class_ids < classes.num_classes)
    pixels = np.where(known, class_ids, PredictionSample.UNLABELLED_ID).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(pixels))
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: classes.num_classes] = np.array(classes.colours, dtype=np.uint8)
    image.putpalette(palette.flatten().tolist())  # an 8-bit grey image becomes a palette image
    return image


def samples_record(*, run_id: int, token: str, step: int, samples: list[engine.PredictionSample],
                   classes: ClassSpec) -> int:
    """Write the PNGs of one evaluation's samples into the run folder and add their rows: the input as
    an RGB image, the ground truth and each prediction as a class-id palette PNG (``_class_id_png``).

    Input and ground truth are written once (the first evaluation); predictions every time.
    """
    from PIL import Image

    check_held(run_id=run_id, token=token)
    run = Run.objects.get(pk=run_id)
    have_static = set(
        PredictionSample.objects.filter(run_id=run_id, role__in=[SampleRole.INPUT, SampleRole.GROUND_TRUTH])
        .values_list("image_name", "role")
    )
    folder = Path(run.output_dir) / "samples"
    rows = []
    for sample in samples:
        stem = Path(sample.name).stem.replace("/", "_")[:150]
        pictures = {SampleRole.INPUT: Image.fromarray(np.ascontiguousarray(sample.image))}
        pictures |= {role: _class_id_png(ids, classes) for role, ids in sample.class_ids.items()
                     if role in SampleRole.values}
        for role, image in pictures.items():
            static = role in (SampleRole.INPUT, SampleRole.GROUND_TRUTH)
            if static and (stem, role) in have_static:
                continue
            relative = f"samples/{role}/{stem}.png" if static else f"samples/step_{step:07d}/{stem}_{role}.png"
            path = Path(run.output_dir) / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            image.save(tmp, format="PNG", optimize=False, compress_level=6)
            tmp.replace(path)
            rows.append(PredictionSample(run_id=run_id, step=step, image_name=stem, role=role, path=relative,
                                         width=image.width, height=image.height))
    folder.mkdir(parents=True, exist_ok=True)
    with transaction.atomic():
        held_run(run_id=run_id, token=token)
        PredictionSample.objects.bulk_create(rows, ignore_conflicts=True)
        count = len(rows)
        transaction.on_commit(lambda: live.publish(run_id, "samples", {"step": step, "count": count}))
    return count


def checkpoint_record(*, run_id: int, token: str, step: int, path: Path, kind: str) -> Checkpoint:
    """Register a checkpoint file with its size and sha256; forget full checkpoints the engine pruned."""
    from duda_engine.checkpoint import sha256_file

    check_held(run_id=run_id, token=token)
    run = Run.objects.get(pk=run_id)
    path = Path(path)
    folder = Path(run.output_dir).resolve()
    try:
        relative = str(path.resolve().relative_to(folder))
    except ValueError:
        relative = str(path)
    digest, size = sha256_file(path), path.stat().st_size
    with transaction.atomic():
        held_run(run_id=run_id, token=token)
        checkpoint, _ = Checkpoint.objects.update_or_create(
            run_id=run_id, kind=kind, step=step, defaults={"path": relative, "size": size, "sha256": digest}
        )
        if kind == CheckpointKind.FULL:
            for old in Checkpoint.objects.filter(run_id=run_id, kind=CheckpointKind.FULL).exclude(pk=checkpoint.pk):
                if not (folder / old.path).is_file():
                    old.delete()
        if kind == CheckpointKind.STUDENT:
            Checkpoint.objects.filter(run_id=run_id, kind=CheckpointKind.STUDENT).exclude(pk=checkpoint.pk).delete()
        message = {"step": step, "kind": kind, "id": checkpoint.pk, "size": checkpoint.size, "sha256": checkpoint.sha256}
        transaction.on_commit(lambda: live.publish(run_id, "checkpoint", message))
    return checkpoint
