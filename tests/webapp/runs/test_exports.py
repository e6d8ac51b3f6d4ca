"""Asking for an export: only a succeeded run's student, one export at a time, sent to a worker after
commit; another user's run is not found. (``tests/workers/test_export.py`` runs the export itself.)"""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
import redis

from tests.webapp.runs.conftest import launch, simulate_results
from webapp.runs.models import Export, ExportStatus

pytestmark = pytest.mark.django_db


def test_an_export_is_sent_to_a_worker_after_commit(alice, api, redis_url, django_capture_on_commit_callbacks):
    client = redis.Redis.from_url(redis_url)
    client.delete("celery")
    run = simulate_results(launch(alice))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post(f"/api/runs/{run.pk}/exports/")
    assert response.status_code == 201 and response.json()["status"] == "queued"
    assert response.json()["checkpoint_step"] == 8 and response.json()["files"] == []
    assert client.llen("celery") == 0
    callbacks[0]()
    message = json.loads(client.lpop("celery"))
    assert message["headers"]["task"] == "runs.export_run"
    assert json.loads(base64.b64decode(message["body"]))[0] == [response.json()["id"]]

    again = api.post(f"/api/runs/{run.pk}/exports/")  # one at a time: the active one is answered
    assert again.status_code == 200 and again.json()["id"] == response.json()["id"]
    assert api.get(f"/api/runs/{run.pk}/exports/{again.json()['id']}/files/float/").status_code == 404  # not made yet

    # An export that never came back (its worker died) is failed when asked for again, and a new one made.
    Export.objects.filter(pk=response.json()["id"]).update(created_at=Export.objects.get().created_at - timedelta(hours=3))
    fresh = api.post(f"/api/runs/{run.pk}/exports/")
    assert fresh.status_code == 201 and fresh.json()["id"] != response.json()["id"]
    assert Export.objects.get(pk=response.json()["id"]).status == ExportStatus.FAILED


def test_only_a_succeeded_run_with_a_student_is_exported(alice, api):
    queued = launch(alice)
    response = api.post(f"/api/runs/{queued.pk}/exports/")
    assert response.status_code == 409 and "succeeded" in response.json()["error"]["message"]
    unfinished = simulate_results(launch(alice), finish=False)
    assert api.post(f"/api/runs/{unfinished.pk}/exports/").status_code == 409
    assert not Export.objects.exists()


def test_another_users_run_is_not_found(alice, bob, api, bob_api):
    run = simulate_results(launch(alice))
    export_id = api.post(f"/api/runs/{run.pk}/exports/").json()["id"]
    for response in (bob_api.post(f"/api/runs/{run.pk}/exports/"), bob_api.get(f"/api/runs/{run.pk}/exports/"),
                     bob_api.get(f"/api/runs/{run.pk}/exports/{export_id}/"),
                     bob_api.get(f"/api/runs/{run.pk}/exports/{export_id}/files/float/")):
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    theirs = simulate_results(launch(bob))  # an export id of another run, under this run's path
    assert bob_api.get(f"/api/runs/{theirs.pk}/exports/{export_id}/").status_code == 404
    assert Export.objects.count() == 1
