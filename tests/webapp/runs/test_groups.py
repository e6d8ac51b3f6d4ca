"""Launch with baselines: matching runs are reused and only what is missing is trained; the group's
numbers side by side; the auto baseline is found when read, among runs with the same classes."""

from __future__ import annotations

import base64
import json

import pytest
import redis

from tests.webapp.runs.conftest import launch, simulate_results
from webapp.runs import selectors
from webapp.runs.errors import ApplicationError
from webapp.runs.models import ClassIoU, Run, RunGroup

pytestmark = pytest.mark.django_db

OTHER_CLASSES = {"preset": "custom", "names": ["road", "car"], "colours": [[128, 64, 128], [0, 0, 142]],
                 "ignore_index": 255}


def with_other_classes(run: Run) -> Run:
    """The run as if its data had other classes (the toy benchmarks all have Cityscapes' 19), all else equal."""
    run.config = {**run.config, "classes": OTHER_CLASSES}
    run.save(update_fields=["config"])
    return run


def queued_run_ids(client) -> list[int]:
    ids = []
    while (raw := client.lpop("celery")) is not None:
        message = json.loads(raw)
        assert message["headers"]["task"] == "runs.run_adaptation"
        ids.append(json.loads(base64.b64decode(message["body"]))[0][0])
    return ids


def test_a_launch_with_baselines_reuses_a_matching_run_and_trains_only_what_is_missing(
        alice, bob, redis_url, django_capture_on_commit_callbacks):
    client = redis.Redis.from_url(redis_url)
    existing = simulate_results(launch(alice, seed=5))  # the source-only run this launch needs
    simulate_results(launch(alice, seed=6))  # another seed: not a match
    simulate_results(launch(bob, seed=5))  # someone else's: not a match
    client.delete("celery")
    before = set(Run.objects.values_list("pk", flat=True))

    with django_capture_on_commit_callbacks(execute=True):
        lead = launch(alice, method="duda", auxiliary="mit_b1", seed=5, with_baselines=True)

    created = set(Run.objects.values_list("pk", flat=True)) - before
    group = RunGroup.objects.get(lead=lead)
    assert group.source_only_id == existing.pk  # reused, not trained again
    assert created == {lead.pk, group.self_training_id}  # only the missing self-training run and the lead
    assert sorted(queued_run_ids(client)) == sorted(created)
    self_training = group.self_training
    assert self_training.method == "self_training" and self_training.launch_group_id == group.pk
    assert lead.baseline_id == existing.pk and self_training.baseline_id == existing.pk
    assert Run.objects.get(pk=existing.pk).launch_group_id is None  # a reused run keeps its own line
    for key in ("seed", "train", "source", "target", "classes", "optim", "eval"):
        assert self_training.config[key] == lead.config[key] == existing.config[key] or key == "train" and (
            self_training.config[key] == lead.config[key])
    assert self_training.config["model"]["student"] == lead.student == "mit_b0"

    # The same launch again: both baselines exist now (the self-training one is still queued): only the lead is new.
    with django_capture_on_commit_callbacks(execute=True):
        again = launch(alice, method="duda", auxiliary="mit_b1", seed=5, with_baselines=True)
    second = RunGroup.objects.get(lead=again)
    assert (second.source_only_id, second.self_training_id) == (existing.pk, self_training.pk)
    assert queued_run_ids(client) == [again.pk]

    # A self-training launch needs the source-only run alone.
    with django_capture_on_commit_callbacks(execute=True):
        st = launch(alice, method="self_training", seed=5, iterations=8, with_baselines=True, name="plain")
    third = RunGroup.objects.get(lead=st)
    assert third.source_only_id == existing.pk and third.self_training_id == st.pk
    assert [role for role, _ in third.members()] == ["source_only", "self_training"]


def test_differing_classes_or_settings_are_trained_not_reused(alice):
    theirs = with_other_classes(simulate_results(launch(alice)))  # other classes
    longer = simulate_results(launch(alice, iterations=12))  # other schedule
    lead = launch(alice, method="self_training", with_baselines=True)
    group = RunGroup.objects.get(lead=lead)
    assert group.source_only_id not in (theirs.pk, longer.pk)
    assert group.source_only.config["classes"] == lead.config["classes"]
    assert group.source_only.launch_group_id == group.pk


def test_baselines_are_for_adaptation_runs(alice):
    with pytest.raises(ApplicationError) as caught:
        launch(alice, method="source_only", with_baselines=True)
    assert "with_baselines" in caught.value.fields


def test_the_group_api_shows_the_three_numbers_and_the_gains(alice, api, bob_api):
    source = simulate_results(launch(alice))
    lead = launch(alice, method="duda", auxiliary="mit_b1", with_baselines=True)
    group = RunGroup.objects.get(lead=lead)
    simulate_results(Run.objects.get(pk=group.self_training_id), steps=(4, 12))  # final mIoU 12
    simulate_results(Run.objects.get(pk=lead.pk), steps=(4, 16))  # final mIoU 16
    data = api.get(f"/api/runs/{lead.pk}/group/").json()
    assert [row["role"] for row in data["rows"]] == ["source_only", "self_training", "duda"]
    assert [row["run"]["final_miou"] for row in data["rows"]] == [8.0, 12.0, 16.0]
    assert data["gains"] == {"adaptation": 8.0, "over_self_training": 4.0}
    assert data["rows"][0]["run"]["reused"] and not data["rows"][1]["run"]["reused"]
    road = ClassIoU.objects.get(run=lead, step=16, class_name="road").iou
    assert data["rows"][2]["ious"][0] == pytest.approx(road)
    assert data["done"] is True
    assert api.get(f"/api/runs/{group.self_training_id}/group/").json()["lead"] == lead.pk  # members find their group
    assert api.get(f"/api/runs/{source.pk}/group/").status_code == 404  # a reused run is in no group of its own
    assert bob_api.get(f"/api/runs/{lead.pk}/group/").status_code == 404

    # The runs list: the lead carries its baselines, the run its launch created points at the lead.
    listed = {r["id"]: r for r in api.get("/api/runs/").json()["results"]}
    assert [m["id"] for m in listed[lead.pk]["group"]["runs"]] == [source.pk, group.self_training_id]
    assert listed[group.self_training_id]["group"] == {"id": group.pk, "lead": lead.pk, "runs": []}
    assert listed[source.pk]["group"] is None
    page = api.get(f"/runs/{lead.pk}/")
    assert b'id="group-table"' in page.content and b'id="export-button"' in page.content


def test_the_auto_baseline_is_found_when_read_among_runs_with_the_same_classes(alice, api):
    run = launch(alice, method="self_training")  # no source-only run yet
    assert run.baseline_id is None and run.baseline_auto
    with_other_classes(simulate_results(launch(alice)))  # other classes: never its baseline
    assert selectors.baseline_of(run) is None
    later = simulate_results(launch(alice))  # finishes after the launch
    assert selectors.baseline_of(run).pk == later.pk
    assert api.get(f"/api/runs/{run.pk}/").json()["baseline"] == later.pk
    assert api.get(f"/api/runs/{run.pk}/class-iou/").json()["baseline"]["run_id"] == later.pk
    named = launch(alice, method="self_training", baseline=later.pk)
    newest = simulate_results(launch(alice))
    assert selectors.baseline_of(named).pk == later.pk and selectors.baseline_of(run).pk == newest.pk
    with_other_classes(newest)
    assert selectors.baseline_of(run).pk == later.pk
    with pytest.raises(ApplicationError) as caught:  # a named baseline must predict the same classes
        launch(alice, method="self_training", baseline=newest.pk)
    assert "baseline" in caught.value.fields
