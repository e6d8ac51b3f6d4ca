"""Finished runs as extra, frozen teachers of a DUDA run: chosen at launch, checked, kept while needed."""

from __future__ import annotations

import copy

import pytest

from tests.webapp.runs.conftest import launch, simulate_results
from webapp.runs import selectors
from webapp.runs.errors import ApplicationError
from webapp.runs.models import Run, RunStatus
from webapp.runs.services import lifecycle

pytestmark = pytest.mark.django_db

DUDA = {"method": "duda", "auxiliary": "mit_b1"}


def test_a_duda_launch_takes_finished_runs_as_frozen_teachers(alice):
    first = simulate_results(launch(alice, student="mit_b1"))
    second = simulate_results(launch(alice, method="self_training"))
    run = launch(alice, **DUDA, teachers=[first.pk, second.pk, first.pk], precompute_teachers=True)
    duda = run.config["duda"]
    assert duda["frozen_teachers"] == [str(first.folder / "student.pt"), str(second.folder / "student.pt")]
    assert duda["frozen_teachers_precompute"] is True
    assert launch(alice, **DUDA).config["duda"]["frozen_teachers"] == []


def other_classes(config: dict) -> dict:
    config = copy.deepcopy(config)
    config["classes"] = {"preset": "custom", "names": ["ground", "box"], "colours": [[0, 0, 0], [9, 9, 9]]}
    for side in ("source", "target"):
        config[side] = {"kind": "custom", "root": "/nowhere", "image_dir": "images", "label_dir": "labels"}
    return config


def test_teachers_that_cannot_teach_are_refused_with_the_field(alice, bob):
    unfinished = launch(alice)
    theirs = simulate_results(launch(bob))
    foreign = simulate_results(launch(alice))
    Run.objects.filter(pk=foreign.pk).update(config=other_classes(foreign.config))
    finished = simulate_results(launch(alice))
    cases = [
        ({**DUDA, "teachers": [unfinished.pk]}, f"run {unfinished.pk} is not a succeeded run of yours with a student checkpoint"),
        ({**DUDA, "teachers": [theirs.pk]}, f"run {theirs.pk} is not a succeeded run of yours with a student checkpoint"),
        ({**DUDA, "teachers": [foreign.pk]}, f"run {foreign.pk} predicts 2 other classes (ground, box, …), not this run's 19"),
        ({"method": "self_training", "teachers": [finished.pk]}, "extra teachers are for DUDA runs"),
    ]
    for fields, message in cases:
        with pytest.raises(ApplicationError) as caught:
            launch(alice, **fields)
        assert caught.value.fields == {"teachers": [message]}
    oracle = simulate_results(launch(alice, method="oracle"))
    with pytest.raises(ApplicationError) as caught:
        launch(alice, **DUDA, teachers=[oracle.pk])  # it learnt the target's labels
    assert caught.value.fields == {"teachers": [f"run {oracle.pk} is not a succeeded run of yours with a student checkpoint"]}
    # Not around the check: a file path given as a raw config override, by key or as a whole section.
    for overrides in ({"duda.frozen_teachers": [str(theirs.folder / "student.pt")]},
                      {"duda": {"teachers": ["ema"], "frozen_teachers": [str(theirs.folder / "student.pt")]}}):
        with pytest.raises(ApplicationError) as caught:
            launch(alice, **DUDA, overrides=overrides)
        assert caught.value.fields == {"overrides": ["duda.frozen_teachers: choose frozen teachers with the teachers field"]}


def test_a_teacher_is_kept_while_a_run_that_learns_from_it_can_still_run(alice, django_capture_on_commit_callbacks):
    teacher = simulate_results(launch(alice))
    student = launch(alice, **DUDA, teachers=[teacher.pk])
    for status in (RunStatus.QUEUED, RunStatus.FAILED):  # a failed run can be resumed: it still needs the file
        Run.objects.filter(pk=student.pk).update(status=status)
        with pytest.raises(ApplicationError) as caught:
            lifecycle.run_delete(user=alice, run_id=teacher.pk)
        assert caught.value.status_code == 409 and f"#{student.pk}" in caught.value.message
    Run.objects.filter(pk=student.pk).update(status=RunStatus.SUCCEEDED)
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.run_delete(user=alice, run_id=teacher.pk)
    assert not teacher.folder.exists()


def test_the_api_and_the_form_offer_the_same_choice(alice, api, client):
    teacher = simulate_results(launch(alice, student="mit_b1"))
    response = api.post("/api/runs/", {"benchmark": "toy_gta2real", **DUDA, "student": "mit_b0", "iterations": 8,
                                       "teachers": [teacher.pk], "precompute_teachers": True}, format="json")
    assert response.status_code == 201, response.content
    config = Run.objects.get(pk=response.json()["id"]).config
    assert config["duda"]["frozen_teachers"] == [str(teacher.folder / "student.pt")]

    client.login(username="alice", password="alice-password")
    page = client.get("/runs/new/").content.decode()
    assert f'<option value="{teacher.pk}">#{teacher.pk} {teacher.name} — source_only, mit_b1, 8.0 mIoU</option>' in page
    response = client.post("/runs/new/", {"benchmark": "toy_gta2real", **DUDA, "student": "mit_b0", "iterations": 8,
                                          "teachers": [str(teacher.pk)], "precompute_teachers": "on", "baseline": ""})
    assert response.status_code == 302
    assert Run.objects.order_by("-pk").first().config["duda"]["frozen_teachers_precompute"] is True


def test_the_run_page_links_its_teachers(alice, client):
    teacher = simulate_results(launch(alice, student="mit_b1"))
    run = launch(alice, **DUDA, teachers=[teacher.pk], precompute_teachers=True)
    client.login(username="alice", password="alice-password")
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert f'<a href="/runs/{teacher.pk}/">#{teacher.pk} {teacher.name}</a> <span class="muted">(precomputed)</span>' in page


def test_the_teacher_relation_is_a_database_relation(alice):
    teacher = simulate_results(launch(alice, student="mit_b1"))
    run = launch(alice, **DUDA, teachers=[teacher.pk])
    assert list(run.teachers.all()) == [teacher] and list(teacher.taught_runs.all()) == [run]
    Run.objects.filter(pk=run.pk).update(config={**run.config, "duda": {**run.config["duda"], "frozen_teachers": []}})
    assert [other.pk for other in selectors.runs_taught_by(teacher)] == [run.pk]  # the relation, not the JSON


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_the_relation_from_the_configs(alice):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    teacher = simulate_results(launch(alice, student="mit_b1"))
    run = launch(alice, **DUDA, teachers=[teacher.pk])
    plain = launch(alice)
    executor = MigrationExecutor(connection)
    executor.migrate([("runs", "0001_initial")])
    executor.loader.build_graph()
    state = executor.migrate([("runs", "0002_run_teachers")])
    try:
        runs = state.apps.get_model("runs", "Run")  # the model as 0002 left it (later migrations add columns)
        assert [t.pk for t in runs.objects.get(pk=run.pk).teachers.all()] == [teacher.pk]
        assert not runs.objects.get(pk=plain.pk).teachers.exists() and not runs.objects.get(pk=teacher.pk).teachers.exists()
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes("runs"))  # back to the latest schema for the next tests
