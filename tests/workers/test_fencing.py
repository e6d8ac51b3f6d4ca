"""Fencing: a worker that lost its run (it froze, the run was requeued and another worker claimed it)
writes nothing more to it: no rows, no log line, no status, no further checkpoint file."""

from __future__ import annotations

import hashlib
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from tests.workers import support
from webapp.runs.models import Checkpoint, ClassIoU, MetricPoint, Run, RunEvent
from webapp.runs.services import claims, reaper, worker
from workers.callbacks import CLAIM_CHECK_S, RunCallbacks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def events(run_id: int) -> list[str]:
    return list(RunEvent.objects.filter(run_id=run_id).values_list("message", flat=True))


def test_the_engine_stops_before_its_next_checkpoint_once_another_claim_holds_the_run(
        django_db_setup, toy_data, api, tmp_path, settings):
    from duda_engine.config_loading import config_from_dict
    from duda_engine.train import train

    settings.RUN_STALE_AFTER_S = 4
    payload = {**support.TINY, "method": "source_only", "iterations": 8, "eval_interval": 4, "checkpoint_interval": 4}
    run_id = api.post("/api/runs/", payload, format="json").json()["id"]
    support.purge_queue()  # no worker: this process trains the run as the worker that will freeze
    frozen = worker.run_claim(run_id=run_id, worker_host="frozen@host", worker_gpu="CPU")
    takeover = {}

    class FreezesAfterIteration2(RunCallbacks):
        def on_metrics(self, step: int, values: dict[str, float]) -> None:
            super().on_metrics(step, values)
            if step == 2:  # the worker freezes; the reaper requeues its run and another worker claims it
                Run.objects.filter(pk=run_id).update(heartbeat_at=timezone.now() - timedelta(seconds=5))
                assert reaper.run_reap_stale() == [(run_id, "requeued")]
                takeover["claim"] = worker.run_claim(run_id=run_id, worker_host="alive@host", worker_gpu="CPU")
                time.sleep(CLAIM_CHECK_S)  # it wakes up after its next look at the claim is due

    with pytest.raises(claims.ClaimLost):
        train(config_from_dict(frozen.run.config), FreezesAfterIteration2(run_id, frozen.token), resume=True)
    support.purge_queue()

    run = Run.objects.get(pk=run_id)
    assert (run.status, run.claim_token, run.worker_host) == ("running", takeover["claim"].token, "alive@host")
    assert not list(run.folder.glob("checkpoints/*.pt"))  # stopped before iteration 4's checkpoint
    assert set(MetricPoint.objects.filter(run=run).values_list("step", flat=True)) <= {1, 2}
    assert not ClassIoU.objects.filter(run=run).exists() and not Checkpoint.objects.filter(run=run).exists()
    assert not any("cancelled at iteration" in m or "stopped at iteration" in m for m in events(run_id))


def test_a_frozen_worker_that_wakes_writes_nothing_into_the_run_another_worker_holds(
        django_db_setup, toy_data, api, tmp_path, settings):
    settings.RUN_STALE_AFTER_S = 4
    support.purge_queue()
    frozen = support.start_worker(tmp_path, tmp_path / "frozen.log")
    alive = None
    try:
        payload = {**support.TINY, "method": "source_only", "iterations": 40, "eval_interval": 8, "checkpoint_interval": 8}
        run_id = api.post("/api/runs/", payload, format="json").json()["id"]
        support.wait_for(lambda: Checkpoint.objects.filter(run_id=run_id, kind="full").exists(), 240, "the first checkpoint")
        frozen.send_signal(signal.SIGSTOP)
        first_token = Run.objects.get(pk=run_id).claim_token
        support.wait_for(lambda: reaper.run_reap_stale() == [(run_id, "requeued")], 30, "the heartbeat to go stale",
                         interval=0.5)
        alive = support.start_worker(tmp_path, tmp_path / "alive.log")
        support.wait_for(lambda: Run.objects.filter(pk=run_id, status="running").exclude(claim_token=first_token)
                         .filter(step__gt=8).exists(), 120, "the other worker to train the run")
        frozen.send_signal(signal.SIGCONT)
        support.wait_for(lambda: b"'lost'" in frozen.log_path.read_bytes(), 60, "the woken worker to give the run up")
        run = support.wait_for(lambda: Run.objects.filter(pk=run_id, status__in=("succeeded", "failed")).first(), 240,
                               "the run to finish")
    finally:
        frozen.send_signal(signal.SIGCONT)
        for process in (frozen, alive):
            if process is not None:
                support.stop(process)
        support.purge_queue()
        support.wait_until_disconnected()

    messages = events(run_id)
    assert run.status == "succeeded" and run.attempts == 2 and run.step == 40, messages
    assert not any("cancelled at iteration" in m or "stopped at iteration" in m for m in messages), messages
    assert b"no longer holds it" in frozen.log_path.read_bytes()
    losses = sorted(MetricPoint.objects.filter(run=run, name="loss/source").values_list("step", flat=True))
    assert losses == list(range(1, 41))
    for checkpoint in Checkpoint.objects.filter(run=run):  # no file was replaced after it was registered
        assert hashlib.sha256((Path(run.output_dir) / checkpoint.path).read_bytes()).hexdigest() == checkpoint.sha256
