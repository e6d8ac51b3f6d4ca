"""Faults: a worker killed with SIGKILL mid-run; a new worker finds the stale heartbeat, requeues the
run and resumes it from its last checkpoint to success."""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

import pytest
from django.utils import timezone

from tests.workers import support
from webapp.runs.models import Checkpoint, MetricPoint, Run, RunEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_kill_9_then_a_new_worker_resumes_from_the_last_checkpoint(django_db_setup, toy_data, api, tmp_path):
    support.purge_queue()
    first = support.start_worker(tmp_path, tmp_path / "first.log")
    try:
        payload = {**support.TINY, "method": "source_only", "iterations": 16, "eval_interval": 8}
        run_id = api.post("/api/runs/", payload, format="json").json()["id"]
        support.wait_for(lambda: Checkpoint.objects.filter(run_id=run_id, kind="full", step__gte=4).exists(), 240,
                         "the first checkpoint")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        support.stop(first, kill=True)
    killed = Run.objects.get(pk=run_id)
    assert killed.status == "running" and killed.step < 16  # the dead worker left it "running"
    checkpoint_step = Checkpoint.objects.filter(run_id=run_id, kind="full").order_by("-step").first().step

    # A new worker reaps the run once its heartbeat is stale (4 s here) and resumes it.
    support.wait_for(lambda: (timezone.now() - Run.objects.get(pk=run_id).heartbeat_at).total_seconds() > 4.5, 30,
                     "the heartbeat to go stale")
    second = support.start_worker(tmp_path, tmp_path / "second.log")
    try:
        run = support.wait_for(lambda: Run.objects.filter(pk=run_id, status__in=("succeeded", "failed")).first(), 240,
                               "the resumed run to finish")
    finally:
        support.stop(second)
        support.wait_until_disconnected()
    messages = list(RunEvent.objects.filter(run=run).values_list("message", flat=True))
    assert run.status == "succeeded", messages
    assert run.attempts == 2 and run.step == 16
    assert any("stopped answering" in m and "requeued" in m for m in messages), messages
    assert f"resumed from checkpoint_{checkpoint_step:07d}.pt at iteration {checkpoint_step}" in messages
    losses = sorted(MetricPoint.objects.filter(run=run, name="loss/source").values_list("step", flat=True))
    assert losses == list(range(1, 17))  # redone steps were not stored twice, none is missing
    student = Checkpoint.objects.get(run=run, kind="student")
    assert hashlib.sha256((Path(run.output_dir) / student.path).read_bytes()).hexdigest() == student.sha256
