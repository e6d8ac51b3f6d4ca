"""A real Celery worker process (Redis broker, PostgreSQL) runs tiny toy runs launched through the API."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.workers import support
from webapp.runs.models import Checkpoint, ClassIoU, MetricPoint, PredictionSample, Run, RunEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="module")
def worker(django_db_setup, toy_data, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("worker")
    support.purge_queue()
    process = support.start_worker(data_dir, data_dir / "worker.log")
    yield process
    support.stop(process)
    support.wait_until_disconnected()


def wait_status(run_id: int, statuses: tuple[str, ...], timeout: float) -> Run:
    return support.wait_for(lambda: Run.objects.filter(pk=run_id, status__in=statuses).first(), timeout,
                            f"run {run_id} to become {statuses}; events: {list(RunEvent.objects.filter(run_id=run_id).values_list('message', flat=True))}")


def test_a_run_launched_through_the_api_succeeds(worker, api):
    response = api.post("/api/runs/", {**support.TINY, "method": "self_training", "name": "worker e2e"}, format="json")
    assert response.status_code == 201, response.json()
    run = wait_status(response.json()["id"], ("succeeded", "failed"), 180)
    assert run.status == "succeeded", run.error_message
    assert run.step == 8 and run.final_miou is not None and run.best_miou >= run.final_miou
    assert run.worker_host.startswith("cpu@") and run.worker_gpu == "CPU" and run.attempts == 1

    losses = MetricPoint.objects.filter(run=run, name="loss/source").values_list("step", flat=True)
    assert sorted(losses) == list(range(1, 9))  # every point, once
    assert MetricPoint.objects.filter(run=run, name="eval/miou").count() == 2
    assert ClassIoU.objects.filter(run=run).count() == 2 * 19
    roles = set(PredictionSample.objects.filter(run=run).values_list("step", "role"))
    assert roles == {(4, "input"), (4, "ground_truth"), (4, "student"), (4, "teacher"), (8, "student"), (8, "teacher")}
    assert PredictionSample.objects.filter(run=run, step=8, role="teacher").count() == 2
    for sample in PredictionSample.objects.filter(run=run):
        assert (Path(run.output_dir) / sample.path).read_bytes().startswith(b"\x89PNG")

    kinds = sorted(Checkpoint.objects.filter(run=run).values_list("kind", "step"))
    assert kinds == [("full", 4), ("full", 8), ("student", 8)]
    for checkpoint in Checkpoint.objects.filter(run=run):
        data = (Path(run.output_dir) / checkpoint.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == checkpoint.sha256 and len(data) == checkpoint.size
    student = Checkpoint.objects.get(run=run, kind="student")
    download = api.get(f"/api/runs/{run.pk}/checkpoints/student/download/")
    assert hashlib.sha256(b"".join(download.streaming_content)).hexdigest() == student.sha256

    messages = list(RunEvent.objects.filter(run=run).values_list("message", flat=True))
    assert any(m.startswith("queued → running: claimed by cpu@") for m in messages)
    assert any(m.startswith("running → succeeded") for m in messages)

    # The task is idempotent: a redelivered message for the finished run, through the broker to the
    # same worker, changes nothing.
    from workers.tasks import run_adaptation

    before = (MetricPoint.objects.filter(run=run).count(), RunEvent.objects.filter(run=run).count())
    run_adaptation.delay(run.pk)
    support.wait_for(lambda: b"'skipped'" in worker.log_path.read_bytes(), 60, "the worker to skip the duplicate")
    run.refresh_from_db()
    assert run.status == "succeeded" and run.attempts == 1
    assert (MetricPoint.objects.filter(run=run).count(), RunEvent.objects.filter(run=run).count()) == before


def test_cancel_stops_within_a_few_iterations_with_a_checkpoint_and_resume_continues(worker, api):
    payload = {**support.TINY, "method": "source_only", "iterations": 400, "eval_interval": 0, "checkpoint_interval": 0}
    run_id = api.post("/api/runs/", payload, format="json").json()["id"]
    support.wait_for(lambda: Run.objects.filter(pk=run_id, status="running", step__gte=3).exists(), 120, "training to start")
    assert api.post(f"/api/runs/{run_id}/cancel/").json()["cancel_requested"] is True
    at_request = Run.objects.get(pk=run_id).step
    run = wait_status(run_id, ("cancelled", "failed", "succeeded"), 60)
    assert run.status == "cancelled"
    assert run.step - at_request <= 5, (at_request, run.step)  # "within a few iterations"
    last = Checkpoint.objects.get(run=run, kind="full")
    assert last.step == run.step
    assert hashlib.sha256((Path(run.output_dir) / last.path).read_bytes()).hexdigest() == last.sha256

    assert api.post(f"/api/runs/{run_id}/resume/").json()["status"] == "queued"
    support.wait_for(lambda: RunEvent.objects.filter(run_id=run_id, message__startswith="training resuming").exists(), 120,
                     "the resumed run to start")
    assert RunEvent.objects.filter(run_id=run_id, message=f"training resuming at iteration {last.step} of 400").exists()
    api.post(f"/api/runs/{run_id}/cancel/")
    run = wait_status(run_id, ("cancelled", "failed", "succeeded"), 60)
    assert run.status == "cancelled" and run.attempts == 1  # a resume starts a fresh attempt budget
    steps = list(MetricPoint.objects.filter(run=run, name="loss/source").values_list("step", flat=True))
    assert sorted(steps) == list(range(1, run.step + 1))  # no gap across the resume
