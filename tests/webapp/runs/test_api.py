"""Every API endpoint: shapes, permissions (another user's run is a 404), errors, downloads."""

from __future__ import annotations

import hashlib

import pytest

from tests.webapp.runs.conftest import TOY, launch, simulate_results
from webapp.runs.models import Checkpoint, Run, RunStatus

pytestmark = pytest.mark.django_db


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


# --- auth -----------------------------------------------------------------------------------


def test_the_api_needs_authentication(client, alice):
    run = launch(alice)
    for url in ("/api/runs/", f"/api/runs/{run.pk}/", "/api/datasets/", f"/api/runs/{run.pk}/checkpoints/student/download/"):
        response = client.get(url)
        assert response.status_code in (401, 403)
        assert response.json()["error"]["code"] == "not_authenticated"


def test_token_auth_and_the_token_endpoint(client, alice, token_api):
    assert token_api.get("/api/runs/").status_code == 200
    response = client.post("/api/auth/token/", {"username": "alice", "password": "alice-password"})
    assert response.status_code == 200 and len(response.json()["token"]) == 40
    bad = client.post("/api/auth/token/", {"username": "alice", "password": "nope"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid"


def test_another_users_run_is_not_found_everywhere(alice, bob_api, staff):
    run = simulate_results(launch(alice))
    sample = run.samples.first()
    urls = [f"/api/runs/{run.pk}/{suffix}" for suffix in (
        "", "metrics/", "class-iou/", "samples/", f"samples/{sample.pk}/image/", "checkpoints/", "events/",
        "checkpoints/student/download/", f"checkpoints/{run.checkpoints.first().pk}/download/",
    )]
    for url in urls:
        response = bob_api.get(url)
        assert response.status_code == 404, url
        assert response.json()["error"]["code"] == "not_found"
    for url in (f"/api/runs/{run.pk}/cancel/", f"/api/runs/{run.pk}/resume/"):
        assert bob_api.post(url).status_code == 404
    assert bob_api.delete(f"/api/runs/{run.pk}/").status_code == 404
    assert bob_api.get("/api/runs/").json()["count"] == 0
    assert bob_api.get(f"/api/runs/compare/?ids={run.pk}").json()["runs"] == []
    from rest_framework.test import APIClient

    admin = APIClient()
    admin.force_authenticate(staff)
    assert admin.get(f"/api/runs/{run.pk}/").status_code == 200  # staff see all


# --- create ---------------------------------------------------------------------------------


def test_create_through_the_api(api, alice):
    response = api.post("/api/runs/", {**TOY, "name": "api run", "crop_size": "64x64", "seed": 5}, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["status"] == "queued" and data["owner"] == "alice" and data["config"]["seed"] == 5
    assert data["config"]["train"]["crop_size"] == [64, 64] and data["page"] == f"/runs/{data['id']}/"
    assert Run.objects.get(pk=data["id"]).owner == alice


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"iterations": "many"}, "iterations"),
        ({"crop_size": "big"}, "crop_size"),
        ({"crop_size": [64, 64, 3]}, "crop_size"),
        ({"method": None}, "method"),
        ({"benchmark": "", "source": "", "target": ""}, "benchmark"),
        ({"overrides": "train.iterations=3"}, "overrides"),
        ({"student": "resnet9000"}, "student"),
        ({"crop_size": [1024, 1024]}, "crop_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_payloads_get_field_errors(api, payload, field):
    response = api.post("/api/runs/", {**TOY, **payload}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and field in error["fields"], error
    assert all(isinstance(m, str) and m for m in error["fields"][field])
    assert not Run.objects.exists()


def test_missing_fields_are_named(api):
    error = api.post("/api/runs/", {}, format="json").json()["error"]
    assert {"method", "student"} <= set(error["fields"])


def test_a_pair_needs_existing_dataset_folders(api, settings, tmp_path):
    settings.DATASETS_ROOT = tmp_path / "nowhere"
    response = api.post("/api/runs/", {**TOY, "benchmark": "", "source": "gta5", "target": "cityscapes"}, format="json")
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert "does not exist" in fields["source"][0] and "does not exist" in fields["target"][0]


# --- list, detail, actions --------------------------------------------------------------------


def test_list_filters_and_detail(api, alice):
    done = simulate_results(launch(alice, name="finished one"))
    queued = launch(alice, name="waiting", method="self_training")
    data = api.get("/api/runs/").json()
    assert data["count"] == 2 and [r["id"] for r in data["results"]] == [queued.pk, done.pk]
    assert [r["id"] for r in api.get("/api/runs/?status=succeeded").json()["results"]] == [done.pk]
    assert [r["id"] for r in api.get("/api/runs/?method=self_training").json()["results"]] == [queued.pk]
    assert [r["id"] for r in api.get("/api/runs/?q=waiting").json()["results"]] == [queued.pk]
    assert [r["id"] for r in api.get(f"/api/runs/?q={done.pk}").json()["results"]] == [done.pk]
    first = api.get("/api/runs/?limit=1").json()
    assert first["next"] and first["count"] == 2 and [r["id"] for r in first["results"]] == [queued.pk]
    second = api.get("/api/runs/?limit=1&offset=1").json()
    assert [r["id"] for r in second["results"]] == [done.pk] and second["next"] is None and second["previous"]
    assert api.get("/api/runs/?offset=5").json()["results"] == []
    detail = api.get(f"/api/runs/{done.pk}/").json()
    assert detail["best_miou"] == 8.0 and detail["progress"] == 1.0 and detail["baseline"] is None
    assert detail["config"]["model"]["student"] == "mit_b0" and detail["worker_host"] == "test@host"
    assert api.get(f"/api/runs/{queued.pk}/").json()["baseline"] == done.pk
    assert api.get("/api/runs/999999/").status_code == 404


def test_cancel_resume_delete(api, alice):
    run = launch(alice)
    assert api.post(f"/api/runs/{run.pk}/cancel/").json()["status"] == "cancelled"
    conflict = api.post(f"/api/runs/{run.pk}/cancel/")
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "conflict"
    assert api.post(f"/api/runs/{run.pk}/resume/").json()["status"] == "queued"
    assert api.post(f"/api/runs/{run.pk}/resume/").json()["status"] == "queued"  # queued: sent to the queue again
    assert api.delete(f"/api/runs/{run.pk}/").status_code == 204
    assert not Run.objects.filter(pk=run.pk).exists()


# --- results ----------------------------------------------------------------------------------


def test_metrics_since_a_step(api, alice):
    run = simulate_results(launch(alice))
    everything = api.get(f"/api/runs/{run.pk}/metrics/").json()
    assert everything["next"] is None and everything["downsampled"] is False
    series = everything["series"]
    assert set(series) == {"loss/source", "eval/miou", "eval/pixel_accuracy"}
    assert series["loss/source"]["step"] == list(range(1, 9)) and not series["loss/source"]["downsampled"]
    later = api.get(f"/api/runs/{run.pk}/metrics/?since=5").json()
    assert later["since"] == 5 and later["last_step"] == 8 and later["series"]["loss/source"]["step"] == [6, 7, 8]
    only = api.get(f"/api/runs/{run.pk}/metrics/?names=eval/miou").json()["series"]
    assert only == {"eval/miou": {"step": [4, 8], "value": [4.0, 8.0], "downsampled": False}}
    assert api.get(f"/api/runs/{run.pk}/metrics/?since=x").status_code == 400
    assert api.get(f"/api/runs/{run.pk}/metrics/?since=8").json()["series"] == {}
    assert api.get(f"/api/runs/{run.pk}/metrics/?width=0").status_code == 400
    assert api.get(f"/api/runs/{run.pk}/metrics/?start=5&end=4").status_code == 400


def test_class_iou_with_the_change_against_source_only(api, alice):
    baseline = simulate_results(launch(alice))
    run = simulate_results(launch(alice, method="self_training"))
    assert run.baseline_id == baseline.pk
    table = api.get(f"/api/runs/{run.pk}/class-iou/").json()
    assert table["steps"] == [4, 8] and len(table["classes"]) == 19
    assert table["classes"][0] == {"index": 0, "name": "road", "colour": [128, 64, 128]}
    assert table["baseline"]["run_id"] == baseline.pk and table["baseline"]["step"] == 8
    latest, base = table["ious"]["8"], table["baseline"]["ious"]
    assert table["delta"][0] == pytest.approx(latest[0] - base[0])
    assert latest[16] is None and table["delta"][16] is None  # "train": absent


def test_samples_index_and_images(api, alice):
    baseline = simulate_results(launch(alice))
    run = simulate_results(launch(alice, method="self_training"))
    index = api.get(f"/api/runs/{run.pk}/samples/").json()
    assert [i["name"] for i in index["images"]] == ["real_val_00000", "real_val_00099"]
    assert [s["step"] for s in index["steps"]] == [4, 8] and index["steps"][1]["miou"] is not None
    assert set(index["steps"][0]["predictions"]["real_val_00000"]) == {"student"}
    assert index["baseline"]["run_id"] == baseline.pk and set(index["baseline"]["predictions"]) == {"real_val_00000", "real_val_00099"}
    for url in (index["images"][0]["input"], index["images"][0]["ground_truth"], index["steps"][0]["predictions"]["real_val_00000"]["student"],
                index["baseline"]["predictions"]["real_val_00000"]):
        response = api.get(url, HTTP_ACCEPT="image/avif,image/webp,*/*")
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
        assert body(response).startswith(b"\x89PNG") and "immutable" in response["Cache-Control"]
    other = simulate_results(launch(alice, method="self_training"))  # (a newer source-only run would be its baseline now)
    foreign = other.samples.first().pk
    assert api.get(f"/api/runs/{run.pk}/samples/{foreign}/image/").status_code == 404  # not this run's


def test_events_checkpoints_datasets_options_baselines_compare(api, alice):
    baseline = simulate_results(launch(alice))
    run = simulate_results(launch(alice, method="self_training"))
    events = api.get(f"/api/runs/{run.pk}/events/").json()
    assert events[0]["message"] == "queued by alice" and events[-1]["message"].startswith("running → succeeded")
    assert len(api.get(f"/api/runs/{run.pk}/events/?limit=2").json()) == 2
    checkpoints = api.get(f"/api/runs/{run.pk}/checkpoints/").json()
    assert sorted((c["kind"], c["step"]) for c in checkpoints) == [("full", 4), ("full", 8), ("student", 8)]
    assert all(len(c["sha256"]) == 64 and c["download"].endswith("/download/") for c in checkpoints)
    datasets = api.get("/api/datasets/").json()
    assert {b["key"] for b in datasets["benchmarks"]} >= {"toy_gta2real", "toy_synthia2real", "toy_real2fog", "toy_real2night"}
    assert {d["key"] for d in datasets["datasets"] if d["toy"]} >= {"toy:synthetic_a", "toy:real", "toy:fog", "toy:night"}
    options = api.get("/api/launch-options/").json()
    assert {"source_only", "self_training", "duda"} <= {m["name"] for m in options["methods"]}
    presets = {p["name"]: p["heavy"] for p in options["presets"]}
    assert presets["mit_b0"] is False and presets["mit_b5"] is True
    found = api.get("/api/baselines/?target=toy:real&student=mit_b0").json()
    assert [r["id"] for r in found] == [baseline.pk]
    compare = api.get(f"/api/runs/compare/?ids={run.pk},{baseline.pk}&names=eval/miou&width=100").json()
    assert [r["id"] for r in compare["runs"]] == [run.pk, baseline.pk]
    assert compare["runs"][0]["metrics"] == {"eval/miou": {"step": [4, 8], "value": [4.0, 8.0], "count": 2,
                                                           "downsampled": False}}  # only the curves asked for
    assert compare["runs"][0]["metric_names"] == ["eval/miou", "eval/pixel_accuracy", "loss/source"]
    assert compare["runs"][0]["class_iou_step"] == 8 and len(compare["runs"][0]["class_iou"]) == 19


def test_real_datasets_are_listed_with_their_status(api, settings, tmp_path):
    root = tmp_path / "datasets"
    (root / "cityscapes" / "leftImg8bit").mkdir(parents=True)
    settings.DATASETS_ROOT = root
    entries = {d["key"]: d for d in api.get("/api/datasets/").json()["datasets"]}
    assert entries["cityscapes"]["ok"] is False and entries["cityscapes"]["reason"]
    assert entries["gta5"]["ok"] is False and "no folder" in entries["gta5"]["reason"]
    assert {"acdc-fog", "acdc-night", "acdc-rain", "acdc-snow", "dark_zurich", "synthia"} <= set(entries)


# --- checkpoint download ---------------------------------------------------------------------


def test_checkpoint_download_streams_with_length_and_etag(api, alice):
    run = simulate_results(launch(alice), checkpoint_bytes=3 * (1 << 20) + 123)
    for kind in ("student", "full"):
        checkpoint = Checkpoint.objects.filter(run=run, kind=kind).order_by("-step").first()
        response = api.get(f"/api/runs/{run.pk}/checkpoints/{kind}/download/")
        assert response.status_code == 200 and response.streaming
        data = body(response)
        assert sha256(data) == checkpoint.sha256 == sha256((run.folder / checkpoint.path).read_bytes())
        assert int(response["Content-Length"]) == len(data) == checkpoint.size
        assert response["ETag"] == f'"{checkpoint.sha256}"' and response["Accept-Ranges"] == "bytes"
        assert f"run{run.pk}-{kind}-step" in response["Content-Disposition"]
    by_id = Checkpoint.objects.filter(run=run, kind="full", step=4).get()
    response = api.get(f"/api/runs/{run.pk}/checkpoints/{by_id.pk}/download/", HTTP_ACCEPT="application/octet-stream")
    assert sha256(body(response)) == by_id.sha256


def test_checkpoint_download_resumes_with_range_requests(api, alice):
    run = simulate_results(launch(alice), checkpoint_bytes=2 * (1 << 20) + 7)
    checkpoint = Checkpoint.objects.get(run=run, kind="full", step=8)
    url = f"/api/runs/{run.pk}/checkpoints/{checkpoint.pk}/download/"
    whole = (run.folder / checkpoint.path).read_bytes()
    size = len(whole)

    first = api.get(url, HTTP_RANGE="bytes=0-999999")
    assert first.status_code == 206 and first["Content-Range"] == f"bytes 0-999999/{size}"
    assert first["Content-Length"] == "1000000"
    rest = api.get(url, HTTP_RANGE="bytes=1000000-", HTTP_IF_RANGE=f'"{checkpoint.sha256}"')
    assert rest.status_code == 206 and rest["Content-Range"] == f"bytes 1000000-{size - 1}/{size}"
    assert sha256(body(first) + body(rest)) == checkpoint.sha256  # a resumed download is whole

    tail = api.get(url, HTTP_RANGE="bytes=-10")
    assert tail.status_code == 206 and body(tail) == whole[-10:]
    past_end = api.get(url, HTTP_RANGE=f"bytes={size}-")
    assert past_end.status_code == 416 and past_end["Content-Range"] == f"bytes */{size}"
    changed = api.get(url, HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE='"another-version"')
    assert changed.status_code == 200 and sha256(body(changed)) == checkpoint.sha256  # If-Range mismatch: whole file
    several = api.get(url, HTTP_RANGE="bytes=0-1,5-6")
    assert several.status_code == 200  # multi-range is not served: the whole file
    cached = api.get(url, HTTP_IF_NONE_MATCH=f'"{checkpoint.sha256}"')
    assert cached.status_code == 304
    head = api.head(url)
    assert head.status_code == 200 and head["Content-Length"] == str(size) and head.content == b""


def test_checkpoint_download_errors(api, alice):
    run = simulate_results(launch(alice))
    assert api.get(f"/api/runs/{run.pk}/checkpoints/latest/download/").status_code == 404
    assert api.get(f"/api/runs/{run.pk}/checkpoints/999999/download/").status_code == 404
    checkpoint = Checkpoint.objects.get(run=run, kind="student")
    (run.folder / checkpoint.path).unlink()
    response = api.get(f"/api/runs/{run.pk}/checkpoints/student/download/")
    assert response.status_code == 404 and response.json()["error"]["message"] == "checkpoint file not found"
    queued = launch(alice)
    assert api.get(f"/api/runs/{queued.pk}/checkpoints/student/download/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_checkpoint_download_under_asgi_is_an_async_stream(alice, client, async_client):
    """Under ASGI the body is an async iterator: Django does not drain it into memory first."""
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import connections

    run = simulate_results(launch(alice), checkpoint_bytes=(1 << 20) * 2 + 5)
    checkpoint = Checkpoint.objects.get(run=run, kind="student")
    client.force_login(alice)
    async_client.cookies = client.cookies

    async def fetch():
        try:
            response = await async_client.get(f"/api/runs/{run.pk}/checkpoints/student/download/", headers={"range": "bytes=100-"})
            assert response.status_code == 206 and response.is_async
            return [chunk async for chunk in response.streaming_content]
        finally:
            await sync_to_async(connections.close_all)()

    chunks = asyncio.run(fetch())
    assert len(chunks) >= 1 and sha256(b"".join(chunks)) == sha256((run.folder / checkpoint.path).read_bytes()[100:])
    assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED


# --- API docs -------------------------------------------------------------------------------


def test_openapi_schema_is_valid_without_warnings(tmp_path):
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert "/api/runs/{run_id}/checkpoints/{checkpoint}/download/" in (tmp_path / "schema.yaml").read_text()


def test_openapi_schema_and_offline_docs(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = schema["paths"]
    for path in ("/api/runs/", "/api/runs/{run_id}/metrics/", "/api/runs/{run_id}/checkpoints/{checkpoint}/download/",
                 "/api/datasets/", "/api/runs/{run_id}/cancel/", "/api/runs/{run_id}/resume/"):
        assert path in paths, path
    docs = api.get("/api/docs/").content.decode()
    assert "swagger-ui" in docs and "cdn" not in docs.lower() and "http://" not in docs.replace("http://testserver", "")
