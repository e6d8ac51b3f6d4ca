"""A run's status: ``run_transition``, the one function that changes it, and the user's actions built
on it (cancel, resume, delete), the run's log lines, and sending a run to the queue.

``run_transition`` enforces ``models.TRANSITIONS`` under a row lock. Messages to the browser are sent
only after the transaction commits (check, do, notify).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from webapp.runs import live, selectors
from webapp.runs.errors import ApplicationError
from webapp.runs.models import Run, RunEvent, RunStatus
from webapp.runs.services.claims import held_run
from webapp.runs.services.limits import requeue_after_s

log = logging.getLogger(__name__)


def run_enqueue(run_id: int, *, say_on_failure: bool = True) -> bool:
    """Send the run's task message, by the task's name (the web app does not import the task's code).
    When the broker is down the run stays queued and the reaper sends it again (``run_reap_stale``);
    the task ignores any duplicate."""
    from webapp.celery_app import RUN_ADAPTATION, TRAINING_QUEUE, app

    try:
        app.send_task(RUN_ADAPTATION, args=[run_id], queue=TRAINING_QUEUE, ignore_result=True)
        return True
    except Exception as error:  # noqa: BLE001 - the broker is down: say so on the run
        log.exception("could not enqueue run %s", run_id)
        if say_on_failure:
            run_event_add(run_id=run_id, level=RunEvent.Level.ERROR,
                          message=f"could not send the run to the queue ({error}); it is sent again every "
                                  f"{requeue_after_s():.0f} s until a worker takes it")
        return False


def _status_payload(run: Run) -> dict[str, Any]:
    return {
        "status": run.status,
        "step": run.step,
        "total_steps": run.total_steps,
        "cancel_requested": run.cancel_requested,
        "error_message": run.error_message,
        "best_miou": run.best_miou,
        "final_miou": run.final_miou,
        "worker_host": run.worker_host,
        "worker_gpu": run.worker_gpu,
        "attempts": run.attempts,
    }


def run_transition(*, run_id: int, to: str, message: str = "", level: str = RunEvent.Level.INFO, **changes: Any) -> Run:
    """Move a run to status ``to`` if ``models.TRANSITIONS`` allows it (ApplicationError 409 otherwise).

    ``changes`` are other fields saved in the same transaction. Timestamps, the claim token and the
    cancel flag follow the status; a log line is written; the browser is told after commit.
    """
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            raise ApplicationError.not_found()
        if not run.can_transition(to):
            raise ApplicationError.conflict(f"a {run.status} run cannot become {to}")
        previous = run.status
        now = timezone.now()
        run.status = to
        if to == RunStatus.RUNNING:
            run.started_at = run.started_at or now
            run.finished_at = None
            run.heartbeat_at = now
        elif to == RunStatus.QUEUED:
            run.finished_at = None
            run.heartbeat_at = None
            run.claim_token = ""
        else:  # finished
            run.finished_at = now
            run.claim_token = ""
            run.cancel_requested = False
        for key, value in changes.items():
            setattr(run, key, value)
        run.save()
        event = RunEvent.objects.create(run=run, level=level, message=f"{previous} → {to}" + (f": {message}" if message else ""))
        payload = _status_payload(run)
        line = {"step": run.step, "time": event.created_at.isoformat(), "level": level, "message": event.message}

        def notify() -> None:
            live.publish(run_id, "status", payload)
            live.publish(run_id, "log", line)

        transaction.on_commit(notify)
    return run


def run_cancel(*, user, run_id: int) -> Run:
    """Cancel: a queued run at once; a running one stops within a few iterations with a checkpoint."""
    run = selectors.run_get(user=user, run_id=run_id)
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.status == RunStatus.QUEUED:
            return run_transition(run_id=run.pk, to=RunStatus.CANCELLED, message=f"cancelled by {user.get_username()} before it started")
        if run.status != RunStatus.RUNNING:
            raise ApplicationError.conflict(f"the run has already {'finished' if run.status == 'succeeded' else run.status}")
        if not run.cancel_requested:
            run.cancel_requested = True
            run.save(update_fields=["cancel_requested", "updated_at"])
            RunEvent.objects.create(run=run, message=f"cancel requested by {user.get_username()}")
            payload = _status_payload(run)
            transaction.on_commit(lambda: live.publish(run.pk, "status", payload))
    return run


def run_resume(*, user, run_id: int) -> Run:
    """Queue a failed or cancelled run again (its worker resumes from the latest checkpoint), or send a
    queued run to the queue again (its message may have been lost; a worker ignores the second copy)."""
    run = selectors.run_get(user=user, run_id=run_id)
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if run.status == RunStatus.QUEUED:
            run.save(update_fields=["updated_at"])  # the reaper's clock for queued runs starts again
            RunEvent.objects.create(run=run, message=f"sent to the queue again by {user.get_username()}")
        elif run.can_resume:
            run = run_transition(
                run_id=run.pk, to=RunStatus.QUEUED, message=f"resumed by {user.get_username()}",
                error_message="", attempts=0, cancel_requested=False,
            )
        else:
            raise ApplicationError.conflict(f"a {run.status} run cannot be resumed")
        run_pk = run.pk
        transaction.on_commit(lambda: run_enqueue(run_pk))
    return run


def run_delete(*, user, run_id: int) -> None:
    """Delete a run that is not running, with its rows and its folder (checkpoints, samples)."""
    run = selectors.run_get(user=user, run_id=run_id)
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run.pk)
        if not run.can_delete:
            raise ApplicationError.conflict("the run is running: cancel it first")
        taught = selectors.runs_taught_by(run)
        if taught:
            names = ", ".join(f"#{other.pk}" for other in taught)
            raise ApplicationError.conflict(
                f"run {names} learns from this run's student as a frozen teacher: let it finish or delete it first"
            )
        folder = Path(run.output_dir) if run.output_dir else None
        run_pk = run.pk
        run.delete()
        if folder is not None and folder.name == str(run_pk):
            transaction.on_commit(lambda: shutil.rmtree(folder, ignore_errors=True))


def run_event_add(*, run_id: int, message: str, level: str = RunEvent.Level.INFO, token: str | None = None) -> None:
    """Add a line to a run's log. ``token``: a worker's line, written only while its claim holds the
    run (``ClaimLost`` otherwise); ``None``: the server's own line."""
    with transaction.atomic():
        if token is not None:
            held_run(run_id=run_id, token=token)
        event = RunEvent.objects.create(run_id=run_id, message=message[:4000], level=level)
        step = Run.objects.filter(pk=run_id).values_list("step", flat=True).first()
    live.publish(run_id, "log", {"step": step, "time": event.created_at.isoformat(), "level": level, "message": event.message})
