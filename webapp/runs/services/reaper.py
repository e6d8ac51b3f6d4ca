"""The reaper: runs whose worker died, runs whose message never reached a worker."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from webapp.runs.models import Run, RunEvent, RunStatus
from webapp.runs.services.lifecycle import run_enqueue, run_transition
from webapp.runs.services.limits import max_attempts, requeue_after_s, stale_after_s

log = logging.getLogger(__name__)


def run_reap_stale(*, now=None) -> list[tuple[int, str]]:
    """One pass of the reaper: requeue (or, after ``RUN_MAX_ATTEMPTS`` claims, fail) every running run
    with a stale heartbeat, and send every run left queued for ``RUN_REQUEUE_AFTER_S`` again.

    The broker would only redeliver a dead worker's message after its visibility timeout, and a queued
    run's message may never have reached the broker (it was down) or been lost with it; so a fresh
    message is sent, and the task's claim ignores whichever copy comes second.
    """
    now = now or timezone.now()
    actions = _requeue_stale_running(now) + _resend_queued(now)
    for run_id, action in actions:
        log.warning("reaper: run %s %s", run_id, action)
    return actions


def _requeue_stale_running(now) -> list[tuple[int, str]]:
    cutoff = now - timedelta(seconds=stale_after_s())
    stale = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    actions: list[tuple[int, str]] = []
    for run_id in Run.objects.filter(stale, status=RunStatus.RUNNING).values_list("pk", flat=True):
        try:
            with transaction.atomic():
                run = Run.objects.select_for_update(skip_locked=True).filter(pk=run_id, status=RunStatus.RUNNING).first()
                if run is None:
                    continue
                age = run.heartbeat_age(now)
                if age is not None and age.total_seconds() < stale_after_s():
                    continue
                seen = f"{age.total_seconds():.0f} s ago" if age is not None else "never"
                where = run.worker_host or "its worker"
                if run.attempts >= max_attempts():
                    message = (f"{where} stopped answering (last heartbeat {seen}); "
                               f"gave up after {run.attempts} attempts")
                    run_transition(run_id=run_id, to=RunStatus.FAILED, message=message, level=RunEvent.Level.ERROR,
                                   error_message=message)
                    actions.append((run_id, "failed"))
                else:
                    run_transition(run_id=run_id, to=RunStatus.QUEUED, level=RunEvent.Level.WARNING,
                                   message=f"{where} stopped answering (last heartbeat {seen}); requeued to resume "
                                           f"from its latest checkpoint (attempt {run.attempts + 1} of {max_attempts()})")
                    transaction.on_commit(lambda rid=run_id: run_enqueue(rid))
                    actions.append((run_id, "requeued"))
        except IntegrityError:
            log.exception("could not reap run %s", run_id)
    return actions


def _resend_queued(now) -> list[tuple[int, str]]:
    """Send runs queued (or last sent) more than ``RUN_REQUEUE_AFTER_S`` ago to the queue again.

    A run waiting behind busy workers gets one duplicate message per period; each is a no-op once the
    run is claimed. ``updated_at`` is the period's clock: the conditional update lets one reaper
    pass, and no concurrent one, send it.
    """
    cutoff = now - timedelta(seconds=requeue_after_s())
    actions: list[tuple[int, str]] = []
    for run_id in Run.objects.filter(status=RunStatus.QUEUED, updated_at__lt=cutoff).values_list("pk", flat=True):
        with transaction.atomic():
            if not Run.objects.filter(pk=run_id, status=RunStatus.QUEUED, updated_at__lt=cutoff).update(updated_at=now):
                continue
            transaction.on_commit(lambda rid=run_id: run_enqueue(rid, say_on_failure=False))
        actions.append((run_id, "resent"))
    return actions
