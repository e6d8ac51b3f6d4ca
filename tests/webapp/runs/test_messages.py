"""One owner for the browser's messages: the services publish each write once it is committed; the
worker's callbacks only call services."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.webapp.runs.conftest import launch
from webapp.runs import live
from webapp.runs.services import records, worker

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    messages: list[tuple[int, str, dict]] = []
    monkeypatch.setattr(live, "publish", lambda run_id, kind, payload: messages.append((run_id, kind, payload)))
    return messages


def test_each_record_sends_one_message_after_commit(alice, sent, django_capture_on_commit_callbacks, tmp_path):
    run = launch(alice, iterations=8)
    claim = worker.run_claim(run_id=run.pk, worker_host="w", worker_gpu="CPU")
    sent.clear()
    with django_capture_on_commit_callbacks(execute=False) as pending:
        records.metrics_record(run_id=run.pk, token=claim.token, points=[(1, "loss/source", 2.0), (2, "loss/source", 1.5)],
                               progress=records.Progress(step=2, total_steps=8, seconds_per_step=0.5))
    assert sent == []  # nothing before the commit
    for callback in pending:
        callback()
    assert sent == [(run.pk, "metrics", {
        "step": 2, "points": [{"step": 1, "name": "loss/source", "value": 2.0}, {"step": 2, "name": "loss/source", "value": 1.5}],
        "progress": {"step": 2, "total_steps": 8, "eta_seconds": 3.0}})]
    run.refresh_from_db()
    assert run.step == 2 and run.seconds_per_step == 0.5

    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        records.evaluation_record(run_id=run.pk, token=claim.token, step=4, miou=40.0, per_class={"road": 40.0},
                                  pixel_accuracy=80.0)
    assert [kind for _, kind, _ in sent] == ["evaluation"]  # its points come with it, not as a second message
    assert sent[0][2]["points"] == [{"step": 4, "name": "eval/miou", "value": 40.0},
                                    {"step": 4, "name": "eval/pixel_accuracy", "value": 80.0}]

    sent.clear()
    path = Path(run.output_dir) / "checkpoints" / "checkpoint_0000004.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    with django_capture_on_commit_callbacks(execute=True):
        checkpoint = records.checkpoint_record(run_id=run.pk, token=claim.token, step=4, path=path, kind="full")
    assert sent == [(run.pk, "checkpoint", {"step": 4, "kind": "full", "id": checkpoint.pk, "size": 7,
                                             "sha256": checkpoint.sha256})]


def test_the_worker_callbacks_publish_nothing_themselves():
    import workers.callbacks

    text = Path(workers.callbacks.__file__).read_text()
    assert "live" not in text.replace("alive", "") and "publish(" not in text
