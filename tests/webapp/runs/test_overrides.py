"""Overrides: every bad line is reported, each with its line number (the form), or every bad key (the API)."""

from __future__ import annotations

import pytest

from tests.webapp.runs.conftest import TOY
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db

LAUNCH = {"benchmark": "toy_gta2real", "method": "source_only", "student": "mit_b0", "iterations": "8",
          "crop_size": "64x64", "batch_size": "1", "baseline": "auto"}


@pytest.fixture
def page(client, alice):
    client.force_login(alice)
    return client


def form_errors(page, overrides: str) -> list[str]:
    response = page.post("/runs/new/", {**LAUNCH, "overrides": overrides})
    assert response.status_code == 400
    assert not Run.objects.exists()
    return list(response.context["form"].errors["overrides"])


def test_every_line_that_does_not_parse_is_listed(page):
    text = "\n".join([
        "train.log_interval = 4",     # 1: fine
        "no separator here",          # 2
        "# a comment",                # 3: skipped
        "bad key! = 1",               # 4
        " = 3",                       # 5
        "optim.lr = [1,",             # 6
        "train.log_interval = 5",     # 7: set twice
    ])
    errors = form_errors(page, text)
    assert [e.split(":", 1)[0] for e in errors] == ["line 2", "line 4", "line 5", "line 6", "line 7"], errors
    assert "expected key = value" in errors[0] and "is not a dotted config key" in errors[1]
    assert "the key is empty" in errors[2] and "not valid YAML" in errors[3]
    assert "set again (first on line 1)" in errors[4]


def test_every_key_the_engine_refuses_is_listed_with_its_line(page):
    text = "\n".join([
        "train.iterations = -3",          # 1: out of range
        "self_training.mic_weight = 0.5",  # 2: fine
        "train.itrations = 10",            # 3: unknown key
        "optim.lr = fast",                 # 4: wrong type
        "output_dir = /tmp/elsewhere",     # 5: a path the server sets
    ])
    errors = form_errors(page, text)
    by_line = {e.split(":", 1)[0]: e for e in errors}
    assert set(by_line) == {"line 1", "line 3", "line 4", "line 5"}, errors
    assert "train.iterations: must be >= 1" in by_line["line 1"]
    assert "train.itrations: unknown key" in by_line["line 3"]
    assert "optim.lr: must be a number" in by_line["line 4"]
    assert "output_dir: set by the server" in by_line["line 5"]


def test_good_overrides_still_launch(page):
    response = page.post("/runs/new/", {**LAUNCH, "overrides": "train.log_interval = 4\n\n# x\nself_training.mic_weight: 0.5"})
    assert response.status_code == 302
    run = Run.objects.get()
    assert run.config["train"]["log_interval"] == 4 and run.config["self_training"]["mic_weight"] == 0.5


def test_the_api_lists_every_bad_key(api):
    overrides = {"train.iterations": -3, "train.itrations": 10, "optim.lr": "fast", "seed": 1}
    response = api.post("/api/runs/", {**TOY, "overrides": overrides}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert sorted(m.split(":", 1)[0] for m in error["fields"]["overrides"]) == ["optim.lr", "train.iterations",
                                                                                  "train.itrations"], error
    assert error["message"] == "3 bad overrides"
    assert not Run.objects.exists()


def test_one_bad_key_keeps_its_message(api):
    response = api.post("/api/runs/", {**TOY, "overrides": {"seed": 10**30}}, format="json")
    error = response.json()["error"]
    assert error["fields"]["overrides"] == ["seed: must be in 0..2147483647"], error
