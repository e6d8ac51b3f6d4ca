"""One's own data through the catalogue: dataset.yaml with its classes, the dataset check's verdict and
progress, launches refused with every reason, and datasets paired only with the same class list."""

from __future__ import annotations

import shutil
import time

import pytest

from tests.engine.conftest import write_domain
from tests.engine.test_dataset_check import break_domain
from tests.webapp.runs.conftest import launch
from webapp.runs import catalog
from webapp.runs.class_lists import class_names
from webapp.runs.errors import ApplicationError

pytestmark = pytest.mark.django_db

MANIFEST = ("label: {label}\nimage_dir: '{{split}}/images'\nlabel_dir: '{{split}}/labels'\n"
            "classes:\n  names: [ground, box, disc]\n  colours: [[90, 90, 90], [200, 40, 40], [40, 40, 220]]\n")
THREE = ("ground", "box", "disc")


@pytest.fixture
def root(tmp_path, settings):
    root = tmp_path / "datasets"
    good = root / "yard"
    write_domain(good, "train", 4, seed=1, shift=0)
    write_domain(good, "val", 2, seed=2, shift=0)
    (good / "dataset.yaml").write_text(MANIFEST.format(label="Yard"))
    broken = root / "yard_broken"
    shutil.copytree(good, broken)
    (broken / "dataset.yaml").write_text(MANIFEST.format(label="Yard (broken)"))
    break_domain(broken)
    settings.DATASETS_ROOT = root
    return root


def entry(key: str, wait: float = 30.0):
    return catalog.dataset_by_key(key, wait=wait)


def test_a_custom_dataset_is_listed_with_its_classes_and_runs_on_them(alice, root):
    yard = entry("custom:yard")
    assert yard.ok and yard.label == "Yard" and yard.class_names == THREE
    assert yard.class_list[1] == {"id": 1, "name": "box", "colour": [200, 40, 40]}
    assert yard.counts == {"train": 4, "train_labelled": True, "val": 2, "val_labelled": True}
    assert yard.check["state"] == "done" and yard.check["files"] == 12
    assert "classes" not in yard.config  # the layout fields alone go to the run's source/target
    run = launch(alice, benchmark="", source="custom:yard", target="custom:yard", crop_size=(32, 32))
    assert run.config["classes"] == {"preset": "custom", "names": list(THREE),
                                     "colours": [[90, 90, 90], [200, 40, 40], [40, 40, 220]], "ignore_index": 255}
    assert tuple(class_names(run.config)) == THREE == catalog.dataset_class_names("custom:yard")


def test_a_broken_dataset_is_not_usable_with_every_reason_and_refused(alice, root):
    broken = entry("custom:yard_broken")
    assert not broken.ok and not broken.usable_as_source
    assert len(broken.problems) == 3
    assert broken.reason.startswith("3 problems: ")
    assert broken.counts["train"] == 4 and broken.counts["train_labelled"]  # 3 of them read, 1 without a label
    with pytest.raises(ApplicationError) as caught:
        launch(alice, benchmark="", source="custom:yard_broken", target="custom:yard", crop_size=(32, 32))
    message = caught.value.fields["source"][0]
    assert message.startswith("Yard (broken) is not usable: 3 problems: ")
    for needle in ("cannot decode image", "train/labels/002.png holds values 7", "train/images/003.png has no label"):
        assert needle in message


def test_datasets_with_other_class_lists_are_not_paired(alice, root):
    with pytest.raises(ApplicationError) as caught:
        launch(alice, benchmark="", source="custom:yard", target="toy:real", crop_size=(32, 32))
    assert caught.value.fields["target"] == [
        "toy real has 19 classes (road, sidewalk, building, wall, …) but Yard has 3 classes (ground, box, disc): "
        "a run pairs datasets with the same class list"]


def test_a_wrong_manifest_is_not_usable_naming_the_file_and_fields(root):
    (root / "yard" / "dataset.yaml").write_text(
        "image_dir: images\nlabel_dir: labels\nclasses:\n  names: [a, b, c]\n  colours: [[1, 2, 3]]\n")
    yard = entry("custom:yard")
    assert not yard.ok
    assert yard.reason == (f"{root / 'yard' / 'dataset.yaml'}: classes.colours: classes.names has 3 names but "
                           "classes.colours has 1 colours; give one RGB colour per class, in the same order")


def test_a_large_dataset_shows_its_check_in_progress(root, client, alice):
    big = root / "big"
    write_domain(big, "train", 300, seed=3, shift=0)
    (big / "dataset.yaml").write_text("image_dir: '{split}/images'\nlabel_dir: '{split}/labels'\n"
                                      "classes:\n  names: [ground, box, disc]\n  colours: [[0, 0, 0], [1, 1, 1], [2, 2, 2]]\n")
    first = entry("custom:big", wait=0)
    assert first.check["state"] == "checking" and not first.ok
    assert first.reason.startswith("being checked (")
    client.force_login(alice)
    deadline = time.monotonic() + 120
    while True:
        status = {e["key"]: e for e in client.get("/runs/datasets/status/").json()["datasets"]}["custom:big"]
        if status["check"]["state"] == "done" or time.monotonic() > deadline:
            break
        assert status["choice_label"].startswith("big (3 classes) — not usable: being checked (")
        time.sleep(0.2)
    assert status["ok"] and status["check"]["files"] == 600 and status["choice_label"] == "big (3 classes)"
    assert entry("custom:big", wait=0).ok


def test_a_failed_runs_log_line_is_one_line_naming_the_file():
    from duda_engine.config import ConfigError
    from duda_engine.data.samples import DatasetError
    from workers.tasks import error_line, is_user_error

    assert error_line(ConfigError("train.crop_size", "must be [H, W]")) == "train.crop_size: must be [H, W]"
    assert error_line(DatasetError("cannot decode image /d/a.png:\nthe file is corrupt")) == \
        "cannot decode image /d/a.png: the file is corrupt"
    assert is_user_error(DatasetError("x")) and not is_user_error(RuntimeError("x"))
    assert error_line(RuntimeError("CUDA out of memory")) == "RuntimeError: CUDA out of memory"


def test_compare_pairs_per_class_iou_only_between_runs_with_the_same_classes(alice, root, api):
    from tests.webapp.runs.conftest import simulate_results

    toy = simulate_results(launch(alice))
    yard = launch(alice, benchmark="", source="custom:yard", target="custom:yard", crop_size=(32, 32))
    data = api.get(f"/api/runs/compare/?ids={toy.pk},{yard.pk}").json()
    assert [r["same_classes"] for r in data["runs"]] == [True, False]
    assert len(data["runs"][0]["class_iou"]) == 19 and data["runs"][1]["class_iou"] is None
    assert [c["name"] for c in data["classes"]][:2] == ["road", "sidewalk"]


@pytest.mark.django_db(transaction=True)
def test_data_broken_after_launch_fails_the_run_with_one_line_naming_the_file(alice, root):
    from webapp.runs.models import RunEvent
    from workers.tasks import run_adaptation

    run = launch(alice, benchmark="", source="custom:yard", target="custom:yard", crop_size=(32, 32), iterations=2,
                 num_workers=0, device="cpu", weights="random")
    corrupt = root / "yard" / "train" / "images" / "002.png"
    corrupt.write_bytes(b"no longer an image")
    assert run_adaptation.apply(args=[run.pk]).get() == "failed"
    run.refresh_from_db()
    assert run.error_message == (f"source.root: custom dataset {root / 'yard'}: 1 problem: cannot decode image "
                                 f"{corrupt}: the file is empty, corrupt or not an image")
    errors = list(RunEvent.objects.filter(run=run, level="error").values_list("message", flat=True))
    assert errors == [f"running → failed: {run.error_message}"]
    assert not (run.folder / "traceback.txt").exists() and not (run.folder / "config.json").exists()


def test_an_unexpected_errors_traceback_is_under_the_run_pages_details(alice, client):
    from webapp.runs.models import Run
    from workers.tasks import TRACEBACK_FILE, write_traceback

    run = launch(alice)
    Run.objects.filter(pk=run.pk).update(status="failed", error_message="RuntimeError: CUDA out of memory")
    write_traceback(run.folder, "Traceback (most recent call last):\n  File \"x.py\", line 1\nRuntimeError: CUDA out of memory\n")
    assert (run.folder / TRACEBACK_FILE).exists()
    client.force_login(alice)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert '<details class="spaced-top" id="error-details"><summary>details</summary>' in page
    assert "Traceback (most recent call last):" in page
    assert page.count("RuntimeError: CUDA out of memory") == 2  # the error line, and the last line of the details
