"""Exports: a succeeded run's student packaged for shipping by a worker (``workers.exports``).

The user asks (``export_create``); a worker claims the export, packages the student with the engine
(``duda_engine.ship.package``) into a temporary folder that it renames into place, and records the
result (``export_record``) or the error (``export_fail``). The web process only writes rows and sends
the task by name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from webapp.runs import selectors
from webapp.runs.errors import ApplicationError
from webapp.runs.models import CheckpointKind, Export, ExportFile, ExportStatus, Run, RunStatus

log = logging.getLogger(__name__)


def export_transition(*, export_id: int, to: str, **changes: Any) -> Export | None:
    """Move an export to status ``to`` under a row lock if ``models.EXPORT_TRANSITIONS`` allows it
    (None otherwise: a duplicate message, or an export already ended); ``changes`` are saved with it."""
    with transaction.atomic():
        export = Export.objects.select_for_update().filter(pk=export_id).first()
        if export is None or not export.can_transition(to):
            return None
        now = timezone.now()
        changes["started_at" if to == ExportStatus.RUNNING else "finished_at"] = now
        Export.objects.filter(pk=export_id).update(status=to, **changes)
        export.refresh_from_db()
    return export


def export_enqueue(export_id: int) -> bool:
    """Send the export's task message by name (the web app does not import the task's code)."""
    from webapp.celery_app import EXPORT_RUN, TRAINING_QUEUE, app

    try:
        app.send_task(EXPORT_RUN, args=[export_id], queue=TRAINING_QUEUE, ignore_result=True)
        return True
    except Exception as error:  # noqa: BLE001 - the broker is down: say so on the export
        log.exception("could not enqueue export %s", export_id)
        export_transition(export_id=export_id, to=ExportStatus.FAILED,
                          error_message=f"could not send the export to the queue ({error}); ask again")
        return False


def export_create(*, user, run_id) -> tuple[Export, bool]:
    """Ask a worker to package the run's latest student checkpoint: ``(export, created)``; an export
    already queued or running is returned (``created`` false) instead of a second one. Another user's run is not found (404); a run without a
    student checkpoint is a conflict (409)."""
    run = selectors.run_get(user=user, run_id=run_id)
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.status != RunStatus.SUCCEEDED:
            raise ApplicationError.conflict(f"a {run.status} run cannot be exported: wait until it has succeeded")
        try:
            student = selectors.checkpoint_get(run=run, checkpoint=CheckpointKind.STUDENT)
        except ApplicationError:
            raise ApplicationError.conflict("the run has no student checkpoint to export") from None
        active = run.exports.filter(status__in=[ExportStatus.QUEUED, ExportStatus.RUNNING]).first()
        if active is not None and timezone.now() - active.created_at > timedelta(seconds=settings.EXPORT_TIMEOUT_S):
            export_transition(export_id=active.pk, to=ExportStatus.FAILED,
                              error_message=f"no result after {settings.EXPORT_TIMEOUT_S} s: its worker stopped or "
                                            f"its message was lost; asked again")
        elif active is not None:
            return active, False
        export = Export.objects.create(run=run, checkpoint_step=student.step)
        export_id = export.pk
        transaction.on_commit(lambda: export_enqueue(export_id))
    return export, True


@dataclass
class ExportJob:
    export: Export
    run: Run
    checkpoint_path: str
    baselines: dict[str, dict[str, Any]]


def export_claim(*, export_id: int, worker_host: str) -> ExportJob | None:
    """Take a queued export for this worker (None: gone, or already taken: a duplicate message)."""
    export = export_transition(export_id=export_id, to=ExportStatus.RUNNING, worker_host=worker_host[:200])
    if export is None:
        return None
    run = export.run
    student = selectors.checkpoint_get(run=run, checkpoint=CheckpointKind.STUDENT)
    return ExportJob(export=export, run=run, checkpoint_path=str(run.resolve(student.path)),
                     baselines=selectors.export_baselines(run))


@dataclass
class ExportedFile:
    kind: str
    name: str
    path: str  # relative to the run folder
    size: int
    sha256: str


def export_record(*, export_id: int, files: list[ExportedFile], float_file: dict[str, Any],
                  int8_file: dict[str, Any] | None, accuracy: dict[str, dict[str, Any]], speed: list[dict[str, Any]],
                  card: dict[str, Any]) -> Export:
    """Store a packaged export's files and numbers, and mark it succeeded."""
    with transaction.atomic():
        ExportFile.objects.filter(export_id=export_id).delete()
        ExportFile.objects.bulk_create([ExportFile(export_id=export_id, kind=f.kind, name=f.name, path=f.path,
                                                   size=f.size, sha256=f.sha256) for f in files])
        export = export_transition(
            export_id=export_id, to=ExportStatus.SUCCEEDED,
            input_height=float_file["height"], input_width=float_file["width"],
            float_max_abs_diff=float_file["max_abs_diff"], float_argmax_agreement=float_file["argmax_agreement"],
            int8_argmax_agreement=int8_file["argmax_agreement"] if int8_file else None,
            float_miou=accuracy.get("float", {}).get("miou"), int8_miou=accuracy.get("int8", {}).get("miou"),
            per_class={kind: a["per_class"] for kind, a in accuracy.items()}, speed=speed, card=card, error_message="",
        )
        if export is None:
            raise ApplicationError.conflict(f"export {export_id} is no longer running")
    return export


def export_fail(*, export_id: int, message: str) -> None:
    export_transition(export_id=export_id, to=ExportStatus.FAILED, error_message=message[:10000])
