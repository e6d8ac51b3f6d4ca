"""Attacks that got past the confinement and the bounds of launch input, kept as tests."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.webapp.runs.conftest import TOY
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def custom_dataset(settings, tmp_path):
    """A dataset of the catalogue under the data root: the server's, read by every user's runs."""
    root = tmp_path / "datasets"
    for sub in ("images", "labels"):
        (root / "mine" / sub).mkdir(parents=True)
        for name in ("a", "b"):
            shape = (256, 256, 3) if sub == "images" else (256, 256)
            Image.fromarray(np.zeros(shape, dtype=np.uint8)).save(root / "mine" / sub / f"{name}.png")
    (root / "mine" / "dataset.yaml").write_text("image_dir: images\nlabel_dir: labels\n")
    settings.DATASETS_ROOT = root
    return "custom:mine"


@pytest.mark.parametrize("side", ["source", "target"])
@pytest.mark.parametrize("shape", ["dotted", "section"])
@pytest.mark.parametrize("kind", ["toy", "gta5"])
def test_a_dataset_kind_override_is_refused(api, alice, custom_dataset, side, shape, kind):
    """The kind says how the engine reads (or, for toy, writes: a generated dataset) the chosen dataset's
    folder: overriding it would have a worker write a toy dataset into the catalogue's folder."""
    section = {"kind": kind, "domain": "real"}
    overrides = {f"{side}.{key}": value for key, value in section.items()} if shape == "dotted" else {side: section}
    launch = {**TOY, "benchmark": "", "source": custom_dataset, "target": custom_dataset, "overrides": overrides}
    response = api.post("/api/runs/", launch, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["fields"] == {"overrides": [f"{side}.kind: set by the server from the chosen dataset "
                                             "(choose one the catalogue lists)"]}
    assert not Run.objects.filter(owner=alice).exists()


def test_other_dataset_overrides_and_nesting_are_accepted(api, custom_dataset):
    overrides = {"source.label_suffix": "", "target.val_split": "val", "target.resize": [256, 256]}
    launch = {**TOY, "benchmark": "", "source": custom_dataset, "target": custom_dataset, "overrides": overrides}
    response = api.post("/api/runs/", launch, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["config"]["target"]["resize"] == [256, 256]
    eight_deep = {"classes": {"names": [[[[[[["x"]]]]]]]}}  # nesting the engine refuses, not the input's bound
    response = api.post("/api/runs/", {**TOY, "overrides": eight_deep}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["overrides"][0].startswith("classes.names[0]: must be a string")


@pytest.mark.parametrize("depth", [9, 500])
def test_deeply_nested_overrides_are_a_400(api, alice, depth):
    """Nested deep enough to pass the JSON parser (500 levels) but not the copy and conversion of the config."""
    body = ('{"benchmark": "toy_gta2real", "method": "source_only", "student": "mit_b0", '
            '"overrides": {"train.crop_size": ' + "[" * depth + "]" * depth + "}}")
    response = api.post("/api/runs/", body, content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["fields"] == {"overrides": ["'train.crop_size': nested deeper than 8 levels"]}
    assert not Run.objects.filter(owner=alice).exists()


def test_duplicate_custom_class_names_are_refused_naming_the_field(api, custom_dataset):
    overrides = {"classes.preset": "custom", "classes.names": ["road", "road"], "classes.colours": [[1, 2, 3], [4, 5, 6]]}
    launch = {**TOY, "benchmark": "", "source": custom_dataset, "target": custom_dataset, "overrides": overrides}
    response = api.post("/api/runs/", launch, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"overrides": ["classes.names: must be unique ('road' repeated)"]}


LAUNCH_JSON = '{"benchmark": "toy_gta2real", "method": "source_only", "student": "mit_b0", "overrides": %s}'


@pytest.mark.parametrize("overrides", ['{"classes.names": ["\\ud800", "b"]}', '{"source.label_suffix": "_x\\udfff"}',
                                       '{"\\ud800": 1}', '{"eval": {"\\ud800": 1}}'])
def test_a_lone_surrogate_in_the_overrides_is_a_400(api, alice, overrides):
    """JSON can spell a lone surrogate (``\\ud800``): no text, so PostgreSQL's jsonb refused to store
    it and the error message with it could not be encoded (500s)."""
    response = api.post("/api/runs/", LAUNCH_JSON % overrides, content_type="application/json")
    assert response.status_code == 400
    (message,) = response.json()["error"]["fields"]["overrides"]
    assert "lone surrogate" in message
    assert not Run.objects.filter(owner=alice).exists()


def test_a_lone_surrogate_in_a_form_override_is_a_400(client, alice):
    client.login(username="alice", password="alice-password")
    launch = {"benchmark": "toy_gta2real", "method": "source_only", "student": "mit_b0", "weights": "auto",
              "overrides": 'source.label_suffix = "_x\\ud800"'}
    response = client.post("/runs/new/", launch)
    assert response.status_code == 400
    assert "lone surrogate" in response.context["form"].errors["overrides"][0]
    assert not Run.objects.filter(owner=alice).exists()


@pytest.mark.parametrize("value", ["١٢", "１２", "12\u0661"])
def test_api_numbers_are_ascii_digits_only(api, alice, value):
    """As the form and the query parameters: Python's ``int`` also reads Arabic-Indic and full-width digits."""
    response = api.post("/api/runs/", {**TOY, "iterations": value}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"iterations": ["A valid integer is required."]}
    response = api.post("/api/runs/", {**TOY, "teachers": [value]}, format="json")
    assert response.json()["error"]["fields"] == {"teachers.0": ["A valid integer is required."]}
    response = api.post("/api/runs/", {**TOY, "lr": f"0.{value}"}, format="json")
    assert response.json()["error"]["fields"] == {"lr": ["A valid number is required."]}
    run = Run.objects.create(owner=alice, name="r", method="source_only", config={}, total_steps=1)
    response = api.get(f"/api/runs/{run.pk}/metrics/", {"since": value})
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"since": ["A valid integer is required."]}
    assert api.post("/api/runs/", {**TOY, "iterations": "12"}, format="json").json()["total_steps"] == 12


def test_a_dataset_folder_whose_key_a_run_cannot_store_is_not_offered(api, alice, settings, tmp_path):
    """A run keeps its dataset keys in 200 characters: a longer ``custom:<folder>`` made every launch on
    it a 500 (an operator's long folder name)."""
    root = tmp_path / "datasets"
    name = "d" * 230
    for sub in ("images", "labels"):
        (root / name / sub).mkdir(parents=True)
        for image in ("a", "b"):
            shape = (256, 256, 3) if sub == "images" else (256, 256)
            Image.fromarray(np.zeros(shape, dtype=np.uint8)).save(root / name / sub / f"{image}.png")
    (root / name / "dataset.yaml").write_text("image_dir: images\nlabel_dir: labels\n")
    settings.DATASETS_ROOT = root
    key = f"custom:{name}"
    response = api.post("/api/runs/", {**TOY, "benchmark": "", "source": key, "target": key}, format="json")
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert set(fields) == {"source", "target"}
    assert "the folder name is longer than 193 characters" in fields["source"][0]
    assert not Run.objects.filter(owner=alice).exists()


def test_a_section_override_changes_only_the_keys_it_names(api):
    """{"target": {...}} merges into the benchmark's target: it cannot swap the dataset for the engine's default."""
    response = api.post("/api/runs/", {**TOY, "overrides": {"target": {"val_split": "val"}, "train": {"log_interval": 2}}},
                        format="json")
    assert response.status_code == 201, response.json()
    config = response.json()["config"]
    assert config["target"]["kind"] == "toy" and config["target"]["domain"] == "real"  # toy_gta2real's target, kept
    assert config["train"]["log_interval"] == 2 and config["train"]["iterations"] == TOY["iterations"]
