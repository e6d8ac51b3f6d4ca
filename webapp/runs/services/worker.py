"""The worker's side of a run: claim it (with a fencing token), beat its heartbeat, report progress,
and end it (succeeded, cancelled, requeued or failed). Every write checks the claim (``claims``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from webapp.runs.models import FINISHED_STATUSES, Run, RunEvent, RunStatus
from webapp.runs.services.claims import HeartbeatState, held_run
from webapp.runs.services.lifecycle import run_enqueue, run_transition
from webapp.runs.services.limits import stale_after_s


@dataclass
class Claim:
    run: Run
    token: str


def run_claim(*, run_id: int, worker_host: str, worker_gpu: str) -> Claim | None:
    """Take a run for this worker, atomically; ``None`` leaves the message alone.

    A queued run is claimed. A running run whose heartbeat is stale (its worker died and the message
    came back) is requeued, then claimed. A running run with a fresh heartbeat (a duplicate message:
    the reaper or a resume sent a queued run again) and a finished or deleted run are left alone. A
    queued run with a pending cancel is cancelled.
    """
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status in FINISHED_STATUSES:
            return None
        if run.status == RunStatus.RUNNING:
            age = run.heartbeat_age()
            if age is not None and age.total_seconds() < stale_after_s():
                return None
            run_transition(run_id=run_id, to=RunStatus.QUEUED, message="its worker stopped answering; taken over",
                           level=RunEvent.Level.WARNING)
        if run.cancel_requested:
            run_transition(run_id=run_id, to=RunStatus.CANCELLED, message="cancelled before it started")
            return None
        token = uuid.uuid4().hex
        run = run_transition(
            run_id=run_id, to=RunStatus.RUNNING, message=f"claimed by {worker_host} ({worker_gpu})",
            claim_token=token, worker_host=worker_host[:200], worker_gpu=worker_gpu[:200], attempts=run.attempts + 1,
            error_message="",
        )
    return Claim(run=run, token=token)


def run_heartbeat(*, run_id: int, token: str) -> HeartbeatState:
    """Beat the heartbeat of a run this worker holds; tells whether it still does and if cancel was asked."""
    updated = Run.objects.filter(pk=run_id, status=RunStatus.RUNNING, claim_token=token).exclude(claim_token="").update(
        heartbeat_at=timezone.now())
    if not updated:
        return HeartbeatState(owner=False, cancel_requested=False)
    cancel = Run.objects.filter(pk=run_id).values_list("cancel_requested", flat=True).first()
    return HeartbeatState(owner=True, cancel_requested=bool(cancel))


def run_progress(*, run_id: int, token: str, step: int, seconds_per_step: float | None) -> None:
    with transaction.atomic():
        held_run(run_id=run_id, token=token)
        progress_store(run_id=run_id, step=step, seconds_per_step=seconds_per_step)


def progress_store(*, run_id: int, step: int, seconds_per_step: float | None) -> None:
    """The run's step and speed; the caller holds the run (``held_run``) in its transaction."""
    changes: dict[str, Any] = {"step": step}
    if seconds_per_step is not None:
        changes["seconds_per_step"] = seconds_per_step
    Run.objects.filter(pk=run_id, total_steps__gte=step).update(**changes)


def run_finish(*, run_id: int, token: str, steps: int, final_miou: float | None, best_miou: float | None,
               cancelled: bool, requeue: bool = False, reason: str = "") -> Run:
    """End a run this worker holds: succeeded, cancelled (with its last checkpoint) or requeued."""
    with transaction.atomic():
        run = held_run(run_id=run_id, token=token)
        changes: dict[str, Any] = {"step": min(steps, run.total_steps)}
        if best_miou is not None and best_miou >= 0:
            changes["best_miou"] = best_miou
        if requeue:
            run = run_transition(run_id=run_id, to=RunStatus.QUEUED, message=reason or f"requeued at iteration {steps}",
                                 **changes)
            transaction.on_commit(lambda: run_enqueue(run_id))
            return run
        if cancelled:
            return run_transition(run_id=run_id, to=RunStatus.CANCELLED,
                                  message=f"stopped at iteration {steps} with a checkpoint", **changes)
        if final_miou is not None:
            changes["final_miou"] = final_miou
        return run_transition(run_id=run_id, to=RunStatus.SUCCEEDED,
                              message=f"finished {steps} iterations" + (f", target mIoU {final_miou:.2f}" if final_miou is not None else ""),
                              **changes)


def run_fail(*, run_id: int, token: str, message: str) -> Run:
    """End a run this worker holds as failed, with the error."""
    with transaction.atomic():
        held_run(run_id=run_id, token=token)
        return run_transition(run_id=run_id, to=RunStatus.FAILED, message=message, level=RunEvent.Level.ERROR,
                              error_message=message[:10000])
