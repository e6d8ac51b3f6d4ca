"""Exports on a real Celery worker: a tiny toy run's student becomes float and int8 ONNX whose float
outputs match PyTorch and whose target mIoU is re-measured and stored; the model card holds the
database's numbers; the files download with their sha256; another user's run is not found."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from rest_framework.test import APIClient

from tests.workers import support
from webapp.runs.models import Checkpoint, Export, Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="module")
def worker(django_db_setup, toy_data, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("worker")
    support.purge_queue()
    mp = pytest.MonkeyPatch()
    mp.setenv("DUDA_EXPORT_SPEED_RUNS", "2")  # the worker process reads these: a quick speed figure, small calibration
    mp.setenv("DUDA_EXPORT_CALIBRATION_IMAGES", "4")
    process = support.start_worker(data_dir, data_dir / "worker.log")
    mp.undo()
    yield process
    support.stop(process)
    support.wait_until_disconnected()


def wait_for_run(run_id: int) -> Run:
    run = support.wait_for(lambda: Run.objects.filter(pk=run_id, status__in=("succeeded", "failed")).first(), 240,
                           f"run {run_id} to finish")
    assert run.status == "succeeded", run.error_message
    return run


def test_the_export_task_packages_a_toy_run_and_stores_what_it_measured(worker, api, django_user_model):
    run_id = api.post("/api/runs/", {**support.TINY, "method": "source_only", "name": "to ship"}, format="json").json()["id"]
    run = wait_for_run(run_id)

    created = api.post(f"/api/runs/{run.pk}/exports/")
    assert created.status_code == 201, created.json()
    assert api.post(f"/api/runs/{run.pk}/exports/").json()["id"] == created.json()["id"]  # no second export while one is active
    export_id = created.json()["id"]
    export = support.wait_for(lambda: Export.objects.filter(pk=export_id, status__in=("succeeded", "failed")).first(), 400,
                              "the export")
    assert export.status == "succeeded", export.error_message
    files = {f.kind: f for f in export.files.all()}
    assert set(files) == {"float", "int8", "torch_export", "card_md", "card_json"}
    for f in files.values():
        path = run.resolve(f.path)
        assert path.parent == run.folder / "exports" / str(export.pk)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == f.sha256 and path.stat().st_size == f.size
    assert not [p for p in (run.folder / "exports").iterdir() if p.name.startswith(".")]  # no temporary folder left

    # The float file computes what the PyTorch student computes; the int8 file mostly agrees with it.
    from duda_engine.ship.runtime import OnnxSegmentor, exported_miou
    from duda_engine.student import load_student

    student, _, _ = load_student(run.resolve(Checkpoint.objects.get(run=run, kind="student").path))
    onnx = OnnxSegmentor(run.resolve(files["float"].path))
    images = torch.rand(2, 3, export.input_height, export.input_width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = student(images)
    actual = onnx(images)
    assert float((expected - actual).abs().max()) < 1e-3
    assert float((expected.argmax(1) == actual.argmax(1)).float().mean()) > 0.999
    assert export.float_max_abs_diff < 1e-3 and export.float_argmax_agreement > 0.999
    assert export.int8_argmax_agreement >= 0.9
    with open(run.resolve(files["torch_export"].path), "rb") as handle:  # the torch.export program too
        program = torch.export.load(handle).module()
    with torch.no_grad():
        assert float((program(images) - expected).abs().max()) < 1e-3

    # The stored mIoU is the target validation mIoU of each file, as the engine's evaluation measures it.
    from duda_engine.config_loading import config_from_dict

    config = config_from_dict(run.config)
    for kind, stored in (("float", export.float_miou), ("int8", export.int8_miou)):
        assert stored is not None and stored == pytest.approx(exported_miou(run.resolve(files[kind].path), config).miou)
    assert export.float_miou == pytest.approx(run.final_miou, abs=0.5)  # the float file is the student

    # Speed at the training crop and at 1024x512, for both files.
    sizes = sorted({(s["kind"], s["height"], s["width"]) for s in export.speed})
    assert sizes == [("float", 64, 64), ("float", 512, 1024), ("int8", 64, 64), ("int8", 512, 1024)]
    assert all(s["images_per_second"] > 0 and s["latency_p50_ms"] <= s["latency_p95_ms"] for s in export.speed)

    # The model card holds the database's numbers.
    card = json.loads(run.resolve(files["card_json"].path).read_text())
    assert card == export.card
    by_kind = {f["kind"]: f for f in card["files"]}
    assert by_kind["float"]["target_miou"] == export.float_miou and by_kind["int8"]["target_miou"] == export.int8_miou
    assert by_kind["float"]["sha256"] == files["float"].sha256 and by_kind["int8"]["sha256"] == files["int8"].sha256
    assert by_kind["float"]["size_bytes"] == files["float"].size and by_kind["int8"]["size_bytes"] == files["int8"].size
    assert by_kind["int8"]["argmax_agreement_with_float"] == export.int8_argmax_agreement
    assert by_kind["float"]["per_class"] == export.per_class["float"]
    for kind in ("float", "int8"):
        stored = sorted((s["height"], s["width"], s["images_per_second"]) for s in export.speed if s["kind"] == kind)
        assert sorted((s["height"], s["width"], s["images_per_second"]) for s in by_kind[kind]["speed"]) == stored
    markdown = run.resolve(files["card_md"].path).read_text()
    assert files["float"].sha256 in markdown and f"{export.float_miou:.2f}" in markdown

    # The API shows the same, and the files download with their sha256 as ETag and resume with Range.
    shown = api.get(f"/api/runs/{run.pk}/exports/{export.pk}/").json()
    assert shown["status"] == "succeeded" and shown["int8_miou"] == export.int8_miou
    download = api.get(shown["files"][[f["kind"] for f in shown["files"]].index("float")]["download"])
    body = b"".join(download.streaming_content)
    assert download["ETag"] == f'"{files["float"].sha256}"' and hashlib.sha256(body).hexdigest() == files["float"].sha256
    tail = api.get(f"/api/runs/{run.pk}/exports/{export.pk}/files/int8/", HTTP_RANGE="bytes=100-")
    assert tail.status_code == 206 and b"".join(tail.streaming_content) == run.resolve(files["int8"].path).read_bytes()[100:]

    # Another user's run: not found, for creating, reading and downloading alike.
    other = APIClient()
    other.force_login(django_user_model.objects.create_user("mallory", password="mallory-password"))
    for response in (other.post(f"/api/runs/{run.pk}/exports/"), other.get(f"/api/runs/{run.pk}/exports/"),
                     other.get(f"/api/runs/{run.pk}/exports/{export.pk}/"),
                     other.get(f"/api/runs/{run.pk}/exports/{export.pk}/files/float/")):
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert Export.objects.filter(run=run).count() == 1
    assert np.isfinite(export.float_miou)
