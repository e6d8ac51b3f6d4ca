"""Services: launch validated by the engine, the status table, cancel/resume/delete, the reaper."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from tests.webapp.runs.conftest import launch, simulate_results
from webapp.runs.errors import ApplicationError
from webapp.runs.models import (
    TRANSITIONS,
    Checkpoint,
    ClassIoU,
    MetricPoint,
    PredictionSample,
    Run,
    RunEvent,
    RunStatus,
)
from webapp.runs.services import claims, lifecycle, limits, reaper, records, worker

pytestmark = pytest.mark.django_db


def test_create_saves_the_engine_config_and_enqueues_after_commit(alice, runs_dir, django_capture_on_commit_callbacks, redis_url):
    client = redis.Redis.from_url(redis_url)
    client.delete("celery")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = launch(alice, name="first", seed=3, iterations=12)
    assert len(callbacks) == 1 and client.llen("celery") == 0  # nothing is sent before the commit
    assert run.status == RunStatus.QUEUED and run.total_steps == 12
    assert run.config["train"]["iterations"] == 12 and run.config["seed"] == 3 and run.config["name"] == "first"
    assert run.config["source"] == {**run.config["source"], "kind": "toy", "domain": "synthetic_a"}
    assert run.config["output_dir"] == str(runs_dir / str(run.pk)) == run.output_dir
    assert (run.source_dataset, run.target_dataset, run.benchmark) == ("toy:synthetic_a", "toy:real", "toy_gta2real")
    assert (runs_dir / str(run.pk)).is_dir()
    callbacks[0]()  # the commit: one message for the task, carrying the run id
    message = json.loads(client.lpop("celery"))
    assert message["headers"]["task"] == "runs.run_adaptation"
    assert json.loads(base64.b64decode(message["body"]))[0] == [run.pk]


def test_the_engine_validates_the_launch(alice):
    from duda_engine.config_loading import config_from_dict
    from duda_engine.validation import validate_config

    run = launch(alice, method="self_training", crop_size=[96, 128])
    validate_config(config_from_dict(run.config))  # what was saved is exactly what the engine accepts


@pytest.mark.parametrize(
    ("fields", "field", "text"),
    [
        ({"student": "mit_b9"}, "student", "unknown model preset 'mit_b9'"),
        ({"crop_size": [512, 1024]}, "crop_size", "cannot be cut"),
        ({"crop_size": [50, 64]}, "crop_size", "multiple of 32"),
        ({"iterations": 0}, "iterations", "must be >= 1"),
        ({"method": "dance"}, "method", "unknown method"),
        ({"method": "duda", "auxiliary": "big_one"}, "auxiliary", "unknown model preset"),
        ({"benchmark": "toy_nowhere"}, "benchmark", "unknown benchmark"),
        ({"overrides": {"train.colour": 1}}, "overrides", "unknown key"),
        ({"overrides": {"self_training.pseudo_threshold": 3}}, "overrides", "must be in [0, 1]"),
        ({"lr": -1.0}, "lr", "must be > 0"),
    ],
)
def test_bad_launches_are_refused_with_the_field(alice, fields, field, text):
    with pytest.raises(ApplicationError) as caught:
        launch(alice, **fields)
    assert caught.value.status_code == 400
    assert field in caught.value.fields, caught.value.fields
    assert text in " ".join(caught.value.fields[field])
    assert not Run.objects.exists()


def test_a_missing_dataset_folder_is_refused(alice, settings, tmp_path):
    settings.DATASETS_ROOT = tmp_path / "datasets"
    (tmp_path / "datasets" / "cityscapes").mkdir(parents=True)  # present but empty
    with pytest.raises(ApplicationError) as caught:
        launch(alice, benchmark="", source="gta5", target="cityscapes")
    assert "no folder" in caught.value.fields["source"][0] and "not usable" in caught.value.fields["target"][0]


def test_a_real_pair_is_validated_by_the_engine(alice, settings, tmp_path):
    """A custom dataset whose images exist but whose label folder is missing: the engine says which."""
    import numpy as np
    from PIL import Image

    root = tmp_path / "datasets"
    for name in ("mine", "theirs"):
        images = root / name / "images" / "train"
        images.mkdir(parents=True)
        Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(images / "a.png")
        (root / name / "dataset.yaml").write_text("image_dir: images\nlabel_dir: labels\nlabel: " + name + "\n")
    labels = root / "mine" / "labels" / "train"
    labels.mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(labels / "a.png")
    settings.DATASETS_ROOT = root
    with pytest.raises(ApplicationError) as caught:
        launch(alice, benchmark="", source="custom:theirs", target="custom:mine")
    assert "source" in caught.value.fields and "theirs" in caught.value.fields["source"][0]


def test_transition_table_is_enforced(alice):
    run = launch(alice)
    for status in RunStatus.values:
        if status not in TRANSITIONS[RunStatus.QUEUED] and status != RunStatus.QUEUED:
            with pytest.raises(ApplicationError) as caught:
                lifecycle.run_transition(run_id=run.pk, to=status)
            assert caught.value.status_code == 409
    lifecycle.run_transition(run_id=run.pk, to=RunStatus.RUNNING)
    with pytest.raises(ApplicationError):
        lifecycle.run_transition(run_id=run.pk, to=RunStatus.RUNNING)
    lifecycle.run_transition(run_id=run.pk, to=RunStatus.SUCCEEDED)
    for status in RunStatus.values:
        with pytest.raises(ApplicationError):
            lifecycle.run_transition(run_id=run.pk, to=status)  # succeeded is final
    run.refresh_from_db()
    assert run.started_at and run.finished_at and run.status == RunStatus.SUCCEEDED
    assert [e.message for e in RunEvent.objects.filter(run=run)][-2:] == ["queued → running", "running → succeeded"]


def test_only_run_transition_changes_the_status():
    """No other module assigns Run.status (the one function rule)."""
    import re
    from pathlib import Path

    import webapp.runs as app
    import workers

    offenders = []
    for package in (app, workers):
        for path in Path(package.__path__[0]).rglob("*.py"):
            text = path.read_text()
            for match in re.finditer(r"\.status\s*=[^=]|update\([^)]*status=", text):
                offenders.append(f"{path.name}: {text[max(0, match.start() - 40):match.end() + 20]!r}")
    # services/exports.py changes an export's status (its own table, through ``export_transition``), never a run's
    assert [o for o in offenders if not o.startswith(("lifecycle.py", "exports.py: '    Export.objects.filter("))] == []
    lifecycle_text = (Path(app.__path__[0]) / "services" / "lifecycle.py").read_text()
    assert lifecycle_text.count("run.status = ") == 1  # inside run_transition


def test_cancel_a_queued_run_is_immediate_and_a_running_one_sets_the_flag(alice):
    queued = launch(alice)
    assert lifecycle.run_cancel(user=alice, run_id=queued.pk).status == RunStatus.CANCELLED
    running = launch(alice)
    claim = worker.run_claim(run_id=running.pk, worker_host="w", worker_gpu="CPU")
    run = lifecycle.run_cancel(user=alice, run_id=running.pk)
    assert run.status == RunStatus.RUNNING and run.cancel_requested
    assert worker.run_heartbeat(run_id=run.pk, token=claim.token).cancel_requested
    worker.run_finish(run_id=run.pk, token=claim.token, steps=3, final_miou=None, best_miou=None, cancelled=True)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and not run.cancel_requested and run.step == 3
    with pytest.raises(ApplicationError) as caught:
        lifecycle.run_cancel(user=alice, run_id=run.pk)
    assert caught.value.status_code == 409


def test_resume_requeues_failed_and_cancelled_runs_and_sends_a_queued_one_again(alice, django_capture_on_commit_callbacks,
                                                                                  redis_url):
    client = redis.Redis.from_url(redis_url)
    client.delete("celery")
    run = launch(alice)
    client.delete("celery")  # as if the broker had lost the launch's message
    with django_capture_on_commit_callbacks(execute=True):
        again = lifecycle.run_resume(user=alice, run_id=run.pk)  # queued: sent again, not a 409
    assert again.status == RunStatus.QUEUED and client.llen("celery") == 1
    assert RunEvent.objects.filter(run=run).last().message == "sent to the queue again by alice"
    claim = worker.run_claim(run_id=run.pk, worker_host="w", worker_gpu="CPU")
    with pytest.raises(ApplicationError) as caught:
        lifecycle.run_resume(user=alice, run_id=run.pk)  # running
    assert caught.value.status_code == 409
    worker.run_fail(run_id=run.pk, token=claim.token, message="RuntimeError: out of memory")
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.error_message == "RuntimeError: out of memory"
    with django_capture_on_commit_callbacks() as callbacks:
        resumed = lifecycle.run_resume(user=alice, run_id=run.pk)
    assert resumed.status == RunStatus.QUEUED and resumed.error_message == "" and resumed.attempts == 0
    assert any("_enqueue" in repr(c) or "lambda" in repr(c) for c in callbacks)


def test_delete_removes_rows_and_files_but_not_a_running_run(alice, django_capture_on_commit_callbacks):
    run = simulate_results(launch(alice))
    folder = run.folder
    assert folder.is_dir() and MetricPoint.objects.filter(run=run).exists()
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.run_delete(user=alice, run_id=run.pk)
    assert not folder.exists()
    assert not Run.objects.filter(pk=run.pk).exists()
    for model in (MetricPoint, ClassIoU, Checkpoint, PredictionSample, RunEvent):
        assert not model.objects.filter(run_id=run.pk).exists()
    running = launch(alice)
    worker.run_claim(run_id=running.pk, worker_host="w", worker_gpu="CPU")
    with pytest.raises(ApplicationError) as caught:
        lifecycle.run_delete(user=alice, run_id=running.pk)
    assert caught.value.status_code == 409


def test_users_cannot_touch_each_others_runs(alice, bob, staff):
    run = launch(alice)
    for action in (lifecycle.run_cancel, lifecycle.run_resume, lifecycle.run_delete):
        with pytest.raises(ApplicationError) as caught:
            action(user=bob, run_id=run.pk)
        assert caught.value.status_code == 404
    assert lifecycle.run_cancel(user=staff, run_id=run.pk).status == RunStatus.CANCELLED


def test_claim_is_idempotent(alice):
    run = launch(alice)
    first = worker.run_claim(run_id=run.pk, worker_host="a", worker_gpu="CPU")
    assert first is not None and first.run.attempts == 1
    assert worker.run_claim(run_id=run.pk, worker_host="b", worker_gpu="CPU") is None  # duplicate: fresh heartbeat
    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=limits.stale_after_s() + 5))
    second = worker.run_claim(run_id=run.pk, worker_host="b", worker_gpu="CPU")  # redelivered after a death
    assert second is not None and second.run.attempts == 2 and second.token != first.token
    assert not worker.run_heartbeat(run_id=run.pk, token=first.token).owner  # the old worker learns it lost
    worker.run_finish(run_id=run.pk, token=second.token, steps=8, final_miou=1.0, best_miou=1.0, cancelled=False)
    assert worker.run_claim(run_id=run.pk, worker_host="c", worker_gpu="CPU") is None  # finished: left alone
    assert worker.run_claim(run_id=10**9, worker_host="c", worker_gpu="CPU") is None  # deleted: left alone


def test_reaper_requeues_then_fails_runs_whose_worker_died(alice, settings, django_capture_on_commit_callbacks):
    settings.RUN_MAX_ATTEMPTS = 2
    run = launch(alice)
    fresh = launch(alice)
    worker.run_claim(run_id=fresh.pk, worker_host="alive", worker_gpu="CPU")
    old = timezone.now() - timedelta(seconds=settings.RUN_STALE_AFTER_S + 1)
    worker.run_claim(run_id=run.pk, worker_host="dead@host", worker_gpu="CPU")
    Run.objects.filter(pk=run.pk).update(heartbeat_at=old)
    with django_capture_on_commit_callbacks() as callbacks:
        assert reaper.run_reap_stale() == [(run.pk, "requeued")]
    assert len(callbacks) >= 2  # status message and a fresh task message
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    assert "dead@host stopped answering" in RunEvent.objects.filter(run=run).last().message
    worker.run_claim(run_id=run.pk, worker_host="dead@host", worker_gpu="CPU")
    Run.objects.filter(pk=run.pk).update(heartbeat_at=old)
    assert reaper.run_reap_stale() == [(run.pk, "failed")]
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "gave up after 2 attempts" in run.error_message
    fresh.refresh_from_db()
    assert fresh.status == RunStatus.RUNNING  # a live worker's run is never touched


def test_results_are_stored_once(alice):
    run = simulate_results(launch(alice), finish=False)
    records.metrics_record(run_id=run.pk, token=run.claim_token, points=[(1, "loss/source", 9.0), (2, "loss/source", 9.0)])
    assert MetricPoint.objects.filter(run=run, name="loss/source").count() == 8
    assert run.best_miou == 8.0
    assert MetricPoint.objects.get(run=run, name="loss/source", step=1).value == pytest.approx(2.9)
    assert ClassIoU.objects.filter(run=run).count() == 2 * 19
    assert ClassIoU.objects.get(run=run, step=4, class_name="train").iou is None  # NaN: absent class
    roles = sorted(set(PredictionSample.objects.filter(run=run).values_list("step", "role")))
    assert roles == [(4, "ground_truth"), (4, "input"), (4, "student"), (8, "student")]  # input/truth once
    kinds = sorted(Checkpoint.objects.filter(run=run).values_list("kind", "step"))
    assert kinds == [("full", 4), ("full", 8)]


def test_prediction_pngs_hold_class_ids(alice):
    import numpy as np
    from PIL import Image

    run = simulate_results(launch(alice), steps=(4,))
    sample = PredictionSample.objects.get(run=run, role="student", image_name="real_val_00000")
    truth = PredictionSample.objects.get(run=run, role="ground_truth", image_name="real_val_00000")
    with Image.open(run.folder / sample.path) as png, Image.open(run.folder / truth.path) as gt:
        assert png.mode == "P" and png.size == (32, 16)
        assert np.array_equal((np.array(gt).astype(int) + 4) % 19, np.array(png))


def test_checkpoint_rows_follow_the_engines_pruning(alice):
    from pathlib import Path

    run = simulate_results(launch(alice, iterations=12), steps=(4, 8), finish=False)
    Path(run.folder / "checkpoints" / "checkpoint_0000004.pt").unlink()  # the engine keeps the newest two
    path = run.folder / "checkpoints" / "checkpoint_0000012.pt"
    path.write_bytes(b"x" * 1000)
    records.checkpoint_record(run_id=run.pk, token=run.claim_token, step=12, path=path, kind="full")
    assert sorted(Checkpoint.objects.filter(run=run).values_list("step", flat=True)) == [8, 12]


def test_a_stale_folder_is_moved_aside_not_resumed(alice, runs_dir):
    first = launch(alice)
    next_id = first.pk + 1
    (runs_dir / str(next_id) / "checkpoints").mkdir(parents=True)
    (runs_dir / str(next_id) / "checkpoints" / "checkpoint_0000004.pt").write_bytes(b"old")
    second = launch(alice)
    assert second.pk == next_id
    assert not any((runs_dir / str(next_id)).iterdir())
    assert list((runs_dir / ".orphaned").iterdir())


def test_baseline_defaults_to_the_latest_matching_source_only_run(alice, bob):
    older = simulate_results(launch(alice))
    newer = simulate_results(launch(alice))
    simulate_results(launch(alice, student="mobilenetv3"))  # another student: not a baseline
    simulate_results(launch(bob))  # someone else's: not offered
    run = launch(alice, method="self_training")
    assert run.baseline_id == newer.pk
    assert launch(alice, method="self_training", baseline=older.pk).baseline_id == older.pk
    assert launch(alice, method="self_training", baseline=None).baseline_id is None
    with pytest.raises(ApplicationError) as caught:
        launch(alice, method="self_training", baseline=run.pk)  # not a source-only run
    assert "baseline" in caught.value.fields


def test_a_run_launched_while_the_broker_is_down_is_sent_again_by_the_reaper(
        alice, settings, redis_url, django_capture_on_commit_callbacks):
    from tests.workers.support import broker_unreachable

    client = redis.Redis.from_url(redis_url)
    client.delete("celery")
    with broker_unreachable(), django_capture_on_commit_callbacks(execute=True):
        run = launch(alice)
    assert client.llen("celery") == 0
    error = RunEvent.objects.get(run=run, level="error")
    assert error.message.startswith("could not send the run to the queue (")
    assert error.message.endswith(f"it is sent again every {settings.RUN_REQUEUE_AFTER_S:.0f} s until a worker takes it")
    assert reaper.run_reap_stale() == []  # not before RUN_REQUEUE_AFTER_S
    later = timezone.now() + timedelta(seconds=settings.RUN_REQUEUE_AFTER_S + 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert reaper.run_reap_stale(now=later) == [(run.pk, "resent")]
        assert reaper.run_reap_stale(now=later) == []  # once per period, however many reapers
    message = json.loads(client.lpop("celery"))
    assert json.loads(base64.b64decode(message["body"]))[0] == [run.pk]
    assert client.llen("celery") == 0
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and run.attempts == 0


@pytest.mark.django_db(transaction=True)
def test_two_messages_for_one_queued_run_make_one_claim(alice, redis_url):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    run = launch(alice)
    ready = threading.Barrier(2)

    def claim(host: str):
        ready.wait()
        try:
            return worker.run_claim(run_id=run.pk, worker_host=host, worker_gpu="CPU")
        finally:
            connection.close()

    with ThreadPoolExecutor(2) as pool:
        taken = list(pool.map(claim, ["first@host", "second@host"]))
    redis.Redis.from_url(redis_url).delete("celery")
    assert sum(c is not None for c in taken) == 1
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.attempts == 1
    assert RunEvent.objects.filter(run=run, message__contains="claimed by").count() == 1


def test_the_writes_of_a_claim_that_lost_the_run_are_refused(alice, settings):
    import numpy as np

    from duda_engine.data.classes import CITYSCAPES
    from tests.webapp.runs.conftest import sample

    run = launch(alice, iterations=12)
    frozen = worker.run_claim(run_id=run.pk, worker_host="frozen@host", worker_gpu="CPU")
    records.metrics_record(run_id=run.pk, token=frozen.token, points=[(1, "loss/source", 2.0)])  # held: stored
    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=settings.RUN_STALE_AFTER_S + 1))
    assert reaper.run_reap_stale() == [(run.pk, "requeued")]
    alive = worker.run_claim(run_id=run.pk, worker_host="alive@host", worker_gpu="CPU")
    events = list(RunEvent.objects.filter(run=run).values_list("message", flat=True))
    path = run.folder / "checkpoints" / "checkpoint_0000004.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"a stray checkpoint")
    image = sample("real_val_00000", np.zeros((16, 32, 3), dtype=np.uint8), student=np.zeros((16, 32), dtype=np.uint8))
    refused = {
        "metrics": lambda: records.metrics_record(run_id=run.pk, token=frozen.token, points=[(2, "loss/source", 2.0)]),
        "evaluation": lambda: records.evaluation_record(run_id=run.pk, token=frozen.token, step=4, miou=50.0,
                                                         per_class={"road": 50.0}, pixel_accuracy=90.0),
        "samples": lambda: records.samples_record(run_id=run.pk, token=frozen.token, step=4,
                                                   samples=[image], classes=CITYSCAPES),
        "checkpoint": lambda: records.checkpoint_record(run_id=run.pk, token=frozen.token, step=4, path=path, kind="full"),
        "log line": lambda: lifecycle.run_event_add(run_id=run.pk, token=frozen.token, message="cancelled at iteration 4"),
        "progress": lambda: worker.run_progress(run_id=run.pk, token=frozen.token, step=4, seconds_per_step=1.0),
        "cancelled": lambda: worker.run_finish(run_id=run.pk, token=frozen.token, steps=4, final_miou=None,
                                                 best_miou=50.0, cancelled=True),
        "failed": lambda: worker.run_fail(run_id=run.pk, token=frozen.token, message="RuntimeError: boom"),
    }
    for name, write in refused.items():
        with pytest.raises(claims.ClaimLost):
            write()
        assert not claims.run_claim_state(run_id=run.pk, token=frozen.token).owner, name

    run.refresh_from_db()
    assert (run.status, run.claim_token, run.step, run.best_miou) == (RunStatus.RUNNING, alive.token, 0, None)
    assert list(MetricPoint.objects.filter(run=run).values_list("step", flat=True)) == [1]
    assert not ClassIoU.objects.filter(run=run).exists() and not Checkpoint.objects.filter(run=run).exists()
    assert not PredictionSample.objects.filter(run=run).exists() and not (run.folder / "samples").exists()
    assert list(RunEvent.objects.filter(run=run).values_list("message", flat=True)) == events

    records.metrics_record(run_id=run.pk, token=alive.token, points=[(2, "loss/source", 2.0)])  # the holder writes
    worker.run_finish(run_id=run.pk, token=alive.token, steps=12, final_miou=1.0, best_miou=1.0, cancelled=False)
    with pytest.raises(claims.ClaimLost):  # a finished run takes no more writes, not even from its last holder
        records.metrics_record(run_id=run.pk, token=alive.token, points=[(3, "loss/source", 2.0)])
    assert sorted(MetricPoint.objects.filter(run=run).values_list("step", flat=True)) == [1, 2]
