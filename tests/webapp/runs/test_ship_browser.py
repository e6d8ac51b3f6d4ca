"""End to end in Debian's Chromium: launch a DUDA run with its baselines on a bundled benchmark (tiny),
see the group's three target mIoU numbers, export the student, and download the ONNX file whose sha256
the page and the API give. A real daphne server and a real Celery worker, on Redis and PostgreSQL."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connections
from rest_framework.test import APIClient

from tests.browser import chromium, screenshot_path
from tests.workers import support
from webapp.runs.models import Run, RunGroup

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def fast_hashing():
    """The server process checks the password: keep Django's real hasher here."""


@pytest.fixture
def stack(django_db_setup, tmp_path, monkeypatch):
    support.ensure_toy_data()
    monkeypatch.setenv("DUDA_EXPORT_SPEED_RUNS", "2")  # the worker reads these: a quick speed figure
    monkeypatch.setenv("DUDA_EXPORT_CALIBRATION_IMAGES", "4")
    with support.serving_stack(tmp_path) as url:
        yield url


def shot(page, tmp_path, name: str) -> None:
    """A full-page screenshot in the test's folder and in the repository's test-output/screenshots."""
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    page.screenshot(path=screenshot_path(name), full_page=True)


def test_launch_with_baselines_see_the_group_export_and_download(stack, django_user_model, monkeypatch, tmp_path):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # ORM checks between Playwright's sync calls
    url = stack
    user = django_user_model.objects.create_user("sam", password="sam-password-1")
    api = APIClient()
    api.force_login(user)

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
        page.goto(url + "/runs/new/")
        page.fill("input[name=username]", "sam")
        page.fill("input[name=password]", "sam-password-1")
        page.click("button[type=submit]")
        page.wait_for_url(url + "/runs/new/")
        page.select_option("select[name=benchmark]", "toy_gta2real")
        page.select_option("select[name=method]", "duda")
        page.select_option("select[name=student]", "mit_b0")
        page.select_option("select[name=auxiliary]", "mit_b1")
        page.fill("input[name=name]", "shipped")
        page.fill("input[name=iterations]", "8")
        page.fill("input[name=crop_size]", "64x64")
        page.fill("input[name=batch_size]", "1")
        page.check("input[name=with_baselines]")
        page.click("details.advanced summary")
        for name, value in (("eval_interval", "4"), ("checkpoint_interval", "8"), ("log_interval", "1"),
                            ("num_samples", "2"), ("max_val_images", "4"), ("num_workers", "0"), ("device", "cpu")):
            page.fill(f"input[name={name}]", value)
        page.fill("textarea[name=overrides]", "self_training.rare_class_sampling = false")
        page.click("#submit")
        page.wait_for_url(url + "/runs/*/")
        lead_id = int(page.url.rstrip("/").split("/")[-1])
        group = RunGroup.objects.get(lead_id=lead_id)
        assert Run.objects.filter(owner=user).count() == 3  # nothing to reuse: all three are trained
        assert Run.objects.get(pk=lead_id).baseline_id == group.source_only_id

        # The group: source-only -> self-training -> DUDA, once all three have finished.
        page.wait_for_selector("#group[data-done='1']", timeout=600_000)
        runs = {role: api.get(f"/api/runs/{run_id}/").json()
                for role, run_id in (("source_only", group.source_only_id), ("self_training", group.self_training_id),
                                     ("duda", lead_id))}
        assert all(r["status"] == "succeeded" for r in runs.values()), {k: r["error_message"] for k, r in runs.items()}
        for role, run in runs.items():
            assert page.inner_text(f".group-miou td[data-role={role}]") == f"{run['final_miou']:.2f}"
        gain = runs["duda"]["final_miou"] - runs["source_only"]["final_miou"]
        assert page.inner_text("#gain-adaptation") == f"{'+' if gain >= 0 else ''}{gain:.2f}"
        assert page.locator("#group-table tbody tr").count() == 1 + 19
        shot(page, tmp_path, "ship-group")

        # Export: a worker packages the student; the page shows float vs int8 and the model card.
        page.wait_for_selector("#export-button:not([disabled])")
        page.click("#export-button")
        page.wait_for_selector("#export-files a[data-kind=float]", timeout=600_000)
        export = api.get(f"/api/runs/{lead_id}/exports/").json()[0]
        assert export["status"] == "succeeded", export["error_message"]
        assert page.inner_text("#export-files td[data-miou=float]") == f"{export['float_miou']:.2f}"
        assert page.inner_text("#export-files td[data-miou=int8]") == f"{export['int8_miou']:.2f}"
        page.wait_for_function("() => document.getElementById('export-card-text').textContent.includes('# Model card')")
        page.click("#export-card summary")
        shot(page, tmp_path, "ship-export")

        float_file = next(f for f in export["files"] if f["kind"] == "float")
        assert page.get_attribute("#export-files tr[data-kind=float] td.sha", "title") == float_file["sha256"]
        with page.expect_download() as download_info:
            page.click("#export-files a[data-kind=float]")
        saved = tmp_path / "student.onnx"
        download_info.value.save_as(saved)
        assert hashlib.sha256(saved.read_bytes()).hexdigest() == float_file["sha256"]
        assert download_info.value.suggested_filename == float_file["name"]

        # The runs list: the group is one line that expands to its baselines.
        page.goto(url + "/runs/")
        page.wait_for_selector(f"tr[data-run='{lead_id}'] button.group-toggle")
        assert page.locator(f"tr[data-run='{group.self_training_id}']").count() == 0  # folded under the lead
        page.click(f"tr[data-run='{lead_id}'] button.group-toggle")
        page.wait_for_selector(f"tr.group-member[data-run='{group.self_training_id}']")
        assert page.locator("tr.group-member").count() == 2
        shot(page, tmp_path, "ship-runs-list")
        connections.close_all()
