"""A web user names data only by what the server offers. Every path-valued engine field (the engine's
own marking, so a new one is tested the day it is added) is refused as a launch override, whatever it
points at, except the weights fields, which take a weights source the catalogue lists."""

from __future__ import annotations

import pytest
import torch

from duda_engine.config import config_leaves, path_fields
from tests.webapp.runs.conftest import TOY, launch, simulate_results
from webapp.runs import catalog
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db

WEIGHTS_FIELDS = {"model.student_pretrained", "model.auxiliary_pretrained"}
# Every string field of the config that is not a path, by name: a new string field fails
# test_every_string_field_is_classified until it is marked as a path or listed here.
NOT_PATHS = {
    "name", "method",
    "classes.preset", "classes.names",
    *(f"{side}.{key}" for side in ("source", "target")
      for key in ("kind", "domain", "toy_size", "condition", "train_split", "val_split", "label_suffix")),
    "model.student", "model.auxiliary",
    "train.device", "train.compile_mode",
    "self_training.fdist_classes",
    "duda.ramp_shape", "duda.teachers", "duda.fusion",
    "eval.mode", "eval.class_subset",
}  # fmt: skip
TARGETS = ("another user's file", "/etc/passwd", "a .. path", "a symlink out of the weights folder")


@pytest.fixture
def bobs_student(bob):
    return simulate_results(launch(bob)).folder / "student.pt"


@pytest.fixture
def weights_dir(settings, tmp_path, bobs_student):
    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save({"patch_embed1.proj.weight": torch.zeros(1)}, folder / "segformer_b0_imagenet.pth")
    (folder / "escape.pth").symlink_to(bobs_student)
    settings.WEIGHTS_DIR = folder
    return folder


def value_for(target: str, bobs_student, runs_dir) -> str:
    return {
        "another user's file": str(bobs_student),
        "/etc/passwd": "/etc/passwd",
        # From the weights folder (a sibling of the runs folder here) to bob's student, and from anywhere to /etc.
        "a .. path": f"../{runs_dir.name}/{bobs_student.parent.name}/student.pt",
        "a symlink out of the weights folder": "escape.pth",
    }[target]


def shaped(field: str, path: str):
    return [path] if field == "duda.frozen_teachers" else path


def nested(field: str, value) -> dict:
    """The override as a whole section: {"model": {"student_pretrained": value}}."""
    *sections, key = field.split(".")
    tree = {key: value}
    for section in reversed(sections):
        tree = {section: tree}
    return tree


def runs_on_disk(runs_dir) -> set[str]:
    return {p.name for p in runs_dir.iterdir()} if runs_dir.exists() else set()


def test_every_string_field_is_classified():
    strings = {leaf.name for leaf in config_leaves() if leaf.scalar is str}
    assert set(path_fields()).isdisjoint(NOT_PATHS)
    assert strings == set(path_fields()) | NOT_PATHS


def test_the_marked_path_fields():
    assert set(path_fields()) == {
        "output_dir", "model.student_pretrained", "model.auxiliary_pretrained", "duda.frozen_teachers",
        *(f"{side}.{key}" for side in ("source", "target") for key in ("root", "image_dir", "label_dir", "list_file")),
    }  # fmt: skip


@pytest.mark.parametrize("shape", ["dotted", "section"])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("field", path_fields())
def test_a_path_override_is_refused(api, alice, runs_dir, weights_dir, bobs_student, field, target, shape):
    value = shaped(field, value_for(target, bobs_student, runs_dir))
    overrides = {field: value} if shape == "dotted" else nested(field, value)
    if shape == "section" and field.startswith(("source.", "target.")):
        overrides[field.split(".")[0]]["kind"] = "custom"  # a whole dataset section, not the catalogue's
    before = runs_on_disk(runs_dir)
    response = api.post("/api/runs/", {**TOY, "method": "duda", "overrides": overrides}, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "invalid" and list(error["fields"]) == ["overrides"], error
    (message,) = error["fields"]["overrides"]
    assert message.startswith(f"{field}: ")
    assert str(bobs_student) not in message and "passwd" not in message
    assert not Run.objects.filter(owner=alice).exists()
    assert runs_on_disk(runs_dir) == before


@pytest.mark.parametrize("field", path_fields())
def test_existence_probes_learn_nothing(api, weights_dir, field):
    answers = []
    for probe in ("/etc/shadow", "/etc/nonexistent", "/root/.ssh/id_rsa"):
        response = api.post("/api/runs/", {**TOY, "overrides": {field: shaped(field, probe)}}, format="json")
        answers.append((response.status_code, response.json()))
    assert answers[0][0] == 400 and answers[0] == answers[1] == answers[2]


@pytest.mark.parametrize("field", sorted(WEIGHTS_FIELDS))
def test_a_weights_file_of_the_weights_folder_is_accepted(api, weights_dir, field):
    assert catalog.weights_sources() == ["imagenet", "segformer_b0_imagenet.pth"]  # not the symlink out
    response = api.post("/api/runs/", {**TOY, "overrides": {field: "segformer_b0_imagenet.pth"}}, format="json")
    assert response.status_code == 201, response.json()
    section, key = field.split(".")
    stored = response.json()["config"][section][key]
    assert stored == str(weights_dir.resolve() / "segformer_b0_imagenet.pth")
    presets_with_imagenet_weights = {"method": "duda", "student": "lite0", "auxiliary": "lite2"}
    for source in ("imagenet", ""):
        response = api.post("/api/runs/", {**TOY, **presets_with_imagenet_weights, "overrides": {field: source}},
                            format="json")
        assert response.status_code == 201, response.json()
        assert response.json()["config"][section][key] == source


def test_a_custom_dataset_may_not_lead_out_of_its_folder(api, settings, tmp_path, bobs_student):
    import numpy as np
    from PIL import Image

    root = tmp_path / "datasets"
    for name in ("mine", "escape", "linked"):
        for sub in ("images", "labels"):
            (root / name / sub).mkdir(parents=True)
            Image.fromarray(np.zeros((64, 64, 3) if sub == "images" else (64, 64), dtype=np.uint8)).save(
                root / name / sub / "a.png"
            )
    (root / "mine" / "dataset.yaml").write_text("image_dir: images\nlabel_dir: labels\n")
    (root / "escape" / "dataset.yaml").write_text("image_dir: ../mine/images\nlabel_dir: labels\n")
    (root / "linked" / "outside").symlink_to(bobs_student.parent)
    (root / "linked" / "dataset.yaml").write_text("image_dir: images\nlabel_dir: labels\nlist_file: outside/list.txt\n")
    settings.DATASETS_ROOT = root
    entries = {entry.key: entry for entry in catalog.real_datasets() if entry.kind == "custom"}
    assert entries["custom:mine"].ok
    assert not entries["custom:escape"].ok and "image_dir '../mine/images' leads out" in entries["custom:escape"].reason
    assert not entries["custom:linked"].ok and "list_file 'outside/list.txt' leads out" in entries["custom:linked"].reason
    for source in ("custom:escape", "custom:linked"):
        response = api.post("/api/runs/", {**TOY, "benchmark": "", "source": source, "target": "custom:mine"},
                            format="json")
        assert response.status_code == 400 and "leads out" in response.json()["error"]["fields"]["source"][0]
    assert not Run.objects.filter(source_dataset__startswith="custom:").exists()
