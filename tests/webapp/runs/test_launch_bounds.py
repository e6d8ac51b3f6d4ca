"""What cannot run is refused at launch with a 400 naming the field, never a 500 or a queued run that
fails later: the engine's ranges, finite floats and one-line strings, through the real API."""

from __future__ import annotations

import json

import pytest

from tests.webapp.runs.conftest import TOY
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("payload", "field", "text"),
    [
        ({"iterations": 2**31}, "iterations", "must be in 1..10000000"),
        ({"iterations": 10_000_001}, "iterations", "must be in 1..10000000"),
        ({"seed": 1e30}, "seed", ""),
        ({"seed": 2**31}, "seed", "must be in 0..2147483647"),
        ({"batch_size": 10**9}, "batch_size", "must be in 1..256"),
        ({"num_workers": 10**6}, "num_workers", "must be in 0..64"),
        ({"eval_interval": 2**40}, "eval_interval", "must be in 0..10000000"),
        ({"lr": 5.0}, "lr", "must be in (0, 1]"),
        ({"overrides": {"seed": 10**30}}, "overrides", "seed: must be in 0..2147483647"),
        ({"overrides": {"train": {"iterations": 2**40}}}, "overrides", "train.iterations: must be in 1..10000000"),
        ({"overrides": {"train.device": "cpu\x00"}}, "overrides", "train.device: must not contain control characters"),
        ({"overrides": {"duda.teachers": ["ema\x00"]}}, "overrides", "duda.teachers[0]: must not contain control"),
        ({"overrides": {"eval.class_subset": "\x1b[2J"}}, "overrides", "eval.class_subset: must not contain control"),
        ({"overrides": {"target.val_split": "../../etc"}}, "overrides", "target.val_split: must be a folder name"),
    ],
)
def test_what_cannot_run_is_a_400_naming_the_field(api, runs_dir, payload, field, text):
    response = api.post("/api/runs/", {**TOY, **payload}, format="json")
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["message"] and field in error["fields"], error
    assert text in " ".join(error["fields"][field])
    assert not Run.objects.exists() and not runs_dir.exists()


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ('"overrides": {"optim.lr": 1e999}', "optim.lr: must be a finite number, got inf"),
        ('"overrides": {"optim": {"lr": -1e999}}', "optim.lr: must be a finite number, got -inf"),
        ('"overrides": {"duda.kd_weight": 1' + "0" * 400 + "}", "duda.kd_weight: must be a finite number"),
    ],
)
def test_a_non_finite_override_is_a_400(api, runs_dir, body, text):
    raw = json.dumps(TOY)[:-1] + ", " + body + "}"
    response = api.post("/api/runs/", raw, content_type="application/json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["fields"]["overrides"][0].startswith(text), error
    assert not Run.objects.exists() and not runs_dir.exists()


def test_a_non_finite_learning_rate_field_is_a_400(api):
    raw = json.dumps(TOY)[:-1] + ', "lr": 1e999}'
    response = api.post("/api/runs/", raw, content_type="application/json")
    assert response.status_code == 400 and "lr" in response.json()["error"]["fields"]
    assert not Run.objects.exists()


def test_the_largest_run_that_fits_is_accepted(api):
    response = api.post("/api/runs/", {**TOY, "iterations": 10_000_000, "seed": 2**31 - 1, "batch_size": 256,
                                       "num_workers": 64}, format="json")
    assert response.status_code == 201, response.json()
    run = Run.objects.get()
    assert (run.total_steps, run.config["seed"], run.config["train"]["batch_size"]) == (10_000_000, 2**31 - 1, 256)
