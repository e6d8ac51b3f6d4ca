"""No run is stranded: a run launched while the broker is down runs once it is back, and a dead
worker's run is requeued on time while every training worker is busy (the reaper has its own queue)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.workers import support
from webapp.runs.models import Run, RunEvent
from webapp.runs.services import reaper
from webapp.runs.services.worker import run_claim

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def events(run_id: int) -> list[str]:
    return list(RunEvent.objects.filter(run_id=run_id).values_list("message", flat=True))


def test_a_run_launched_while_the_broker_is_down_runs_once_it_is_back(django_db_setup, toy_data, api, tmp_path, settings):
    support.purge_queue()
    with support.broker_unreachable():
        response = api.post("/api/runs/", {**support.TINY, "method": "source_only", "name": "broker down"}, format="json")
    assert response.status_code == 201, response.json()
    run_id = response.json()["id"]
    assert RunEvent.objects.filter(run_id=run_id, level="error", message__contains="could not").exists(), events(run_id)
    assert support.queue_length() == 0

    worker = support.start_worker(tmp_path, tmp_path / "worker.log")
    try:
        time.sleep(2)
        assert Run.objects.get(pk=run_id).status == "queued"  # nothing reached the worker: it has no message
        settings.RUN_REQUEUE_AFTER_S = 1
        assert reaper.run_reap_stale() == [(run_id, "resent")]  # the reaper's pass, the broker back
        assert api.post(f"/api/runs/{run_id}/resume/").json()["status"] == "queued"  # and a duplicate message
        run = support.wait_for(lambda: Run.objects.filter(pk=run_id, status__in=("succeeded", "failed")).first(), 180,
                               "the run to finish")
        support.wait_for(lambda: b"'skipped'" in worker.log_path.read_bytes(), 60, "the worker to skip the duplicate")
    finally:
        support.stop(worker)
        support.purge_queue()
        support.wait_until_disconnected()
    assert run.status == "succeeded", events(run_id)
    assert run.attempts == 1 and run.step == 8
    assert sum("claimed by" in m for m in events(run_id)) == 1  # one claim, the other message a no-op


def test_a_dead_workers_run_is_requeued_while_every_training_worker_is_busy(django_db_setup, toy_data, api, tmp_path):
    support.purge_queue()
    worker = support.start_worker(tmp_path, tmp_path / "worker.log")
    maintenance = None
    try:
        long = {**support.TINY, "method": "source_only", "name": "busy", "iterations": 100000, "eval_interval": 0,
                "checkpoint_interval": 0}
        busy_id = api.post("/api/runs/", long, format="json").json()["id"]
        support.wait_for(lambda: Run.objects.filter(pk=busy_id, status="running", step__gt=0).exists(), 120,
                         "the only training worker to be busy")
        maintenance = support.start_maintenance(tmp_path, tmp_path / "maintenance.log")

        dead_id = api.post("/api/runs/", {**support.TINY, "method": "source_only", "name": "dead"}, format="json").json()["id"]
        assert run_claim(run_id=dead_id, worker_host="dead@host", worker_gpu="GPU 1") is not None
        Run.objects.filter(pk=dead_id).update(heartbeat_at=timezone.now() - timedelta(seconds=5))  # stale: 4 s here
        dead_at = time.monotonic()
        support.wait_for(lambda: Run.objects.filter(pk=dead_id, status="queued").exists(), 60,
                         "the maintenance worker to requeue the dead worker's run")
        waited = time.monotonic() - dead_at
        print(f"dead worker -> requeued with every training worker busy: {waited:.1f} s")
        assert waited < 15  # the reaper runs every 2 s here: it does not wait behind the training run
        assert any("dead@host stopped answering" in m and "requeued" in m for m in events(dead_id)), events(dead_id)
        busy = Run.objects.get(pk=busy_id)
        assert busy.status == "running" and busy.attempts == 1  # the training worker was busy all along
        assert b"Task runs.reap_stale_runs[" in maintenance.log_path.read_bytes()
        assert b"Task runs.reap_stale_runs[" not in worker.log_path.read_bytes()  # training workers never get it
        api.post(f"/api/runs/{busy_id}/cancel/")
    finally:
        if maintenance is not None:
            support.stop(maintenance)
        support.stop(worker)
        support.purge_queue()
        support.wait_until_disconnected()
