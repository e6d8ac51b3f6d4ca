"""End to end in Debian's Chromium: log in, launch from the form (an error first), watch the curve
grow live (through a dropped socket), open the gallery, hide a class, move the step slider, and
download the checkpoint. A real daphne server and a real Celery worker, on Redis and PostgreSQL."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connections
from rest_framework.test import APIClient

from tests.browser import chromium, screenshot_path
from tests.workers import support
from webapp.runs.models import Checkpoint, Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def fast_hashing():
    """The server process checks the password: keep Django's real hasher here."""


@pytest.fixture
def stack(django_db_setup, tmp_path):
    support.ensure_toy_data()
    with support.serving_stack(tmp_path) as url:
        yield url


ROAD = (128, 64, 128)
COUNT_COLOUR = """([selector, rgb]) => {
  const canvas = document.querySelector(selector);
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i] === rgb[0] && data[i + 1] === rgb[1] && data[i + 2] === rgb[2]) n++;
  return n;
}"""


def test_launch_watch_gallery_download(stack, django_user_model, monkeypatch, tmp_path):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # ORM checks between Playwright's sync calls
    url = stack
    user = django_user_model.objects.create_user("eve", password="eve-password-1")
    api = APIClient()
    api.force_login(user)
    baseline = api.post("/api/runs/", {**support.TINY, "method": "source_only", "name": "baseline", "iterations": 4},
                        format="json").json()
    support.wait_for(lambda: Run.objects.filter(pk=baseline["id"], status="succeeded").exists(), 240, "the baseline run")

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
        page.goto(url + "/runs/")
        page.fill("input[name=username]", "eve")
        page.fill("input[name=password]", "eve-password-1")
        page.click("button[type=submit]")
        page.wait_for_url(url + "/runs/")
        page.wait_for_selector(f"tr[data-run='{baseline['id']}']")

        # The launch form: an impossible crop is refused next to its field, then fixed.
        page.click("text=Launch a run")
        page.wait_for_url(url + "/runs/new/")
        page.select_option("select[name=benchmark]", "toy_gta2real")
        page.select_option("select[name=method]", "self_training")
        page.select_option("select[name=student]", "mit_b0")
        page.fill("input[name=name]", "browser run")
        page.fill("input[name=iterations]", "16")
        page.fill("input[name=crop_size]", "1024x1024")
        page.fill("input[name=batch_size]", "1")
        page.click("details.advanced summary")
        for name, value in (("eval_interval", "8"), ("checkpoint_interval", "8"), ("log_interval", "1"),
                            ("num_samples", "2"), ("max_val_images", "4"), ("num_workers", "0"), ("device", "cpu")):
            page.fill(f"input[name={name}]", value)
        page.fill("textarea[name=overrides]", "self_training.rare_class_sampling = false")
        page.wait_for_function(f"() => document.querySelector('select[name=baseline]').options[0].text.includes('#{baseline['id']}')")
        page.click("#submit")
        error = page.locator("#crop_size-errors")
        error.wait_for()
        assert "cannot be cut" in error.inner_text()
        assert page.locator("[data-field=crop_size].has-error").count() == 1
        page.screenshot(path=screenshot_path("runs-launch-form-error"), full_page=True)
        page.fill("input[name=crop_size]", "64x64")
        page.click("#submit")
        page.wait_for_url(url + "/runs/*/")
        run_id = int(page.url.rstrip("/").split("/")[-1])
        assert Run.objects.get(pk=run_id).baseline_id == baseline["id"]

        # The curve grows live; a dropped socket is backfilled from REST.
        page.wait_for_function("() => window.__duda && window.__duda.lossChart.pointCount >= 3", timeout=240_000)
        early = page.evaluate("window.__duda.lossChart.pointCount")
        page.screenshot(path=screenshot_path("runs-detail-live"), full_page=True)
        page.evaluate("window.__duda.socket.drop()")
        page.wait_for_function(f"() => window.__duda.lossChart.pointCount > {min(early + 3, 15)}", timeout=240_000)
        assert page.evaluate("window.__duda.socket.connects") >= 2
        page.wait_for_selector("#status.succeeded", timeout=240_000)
        page.wait_for_function("() => window.__duda.store.count('loss/source') === 16", timeout=30_000)
        assert page.evaluate("window.__duda.store.gaps('loss/source', 1)") == []
        assert page.evaluate("window.__duda.store.count('eval/miou')") == 2
        page.wait_for_selector("#class-iou tbody tr:nth-child(19)")
        page.wait_for_selector("#checkpoints a[data-kind=student]")
        log = page.inner_text("#log")  # losses and evaluations beside the lifecycle events
        assert "iteration 16/16 · loss " in log and "evaluation at iteration 8: target mIoU" in log, log
        assert page.locator(".messages li").count() == 0  # "Run #N queued." left when it started
        page.screenshot(path=screenshot_path("runs-detail-done"), full_page=True)

        # Download the adapted student.
        with page.expect_download() as download_info:
            page.click("#checkpoints a[data-kind=student]")
        saved = tmp_path / "student.pt"
        download_info.value.save_as(saved)
        student = Checkpoint.objects.get(run_id=run_id, kind="student")
        assert hashlib.sha256(saved.read_bytes()).hexdigest() == student.sha256

        # The gallery: input | truth | source-only | student | teacher.
        page.click("#gallery-link")
        page.wait_for_url(f"{url}/runs/{run_id}/gallery/")
        page.wait_for_function("() => Number(document.body.dataset.galleryRendered || 0) >= 1")
        roles = page.eval_on_selector_all(".sample[data-index=\"0\"] canvas", "cs => cs.map(c => c.dataset.role)")
        assert roles == ["input", "ground_truth", "source", "student", "teacher"]
        page.screenshot(path=screenshot_path("runs-gallery"), full_page=True)

        # Hide a class: at full opacity the road colour disappears from the ground-truth panel.
        page.eval_on_selector("#opacity", "e => { e.value = '1'; e.dispatchEvent(new Event('input')); }")
        page.wait_for_timeout(300)
        truth = ".sample[data-index=\"0\"] canvas[data-role=ground_truth]"
        before = page.evaluate(COUNT_COLOUR, [truth, list(ROAD)])
        assert before > 0
        page.click(".legend button[data-class='0']")
        page.wait_for_function(f"() => ({COUNT_COLOUR})(['{truth}', [128, 64, 128]]) === 0")
        assert page.locator(".legend button[data-class='0'].off").count() == 1
        page.screenshot(path=screenshot_path("runs-gallery-road-hidden"), full_page=True)

        # The step slider replays earlier evaluations.
        student_panel = ".sample[data-index=\"0\"] canvas[data-role=student]"
        assert page.get_attribute(student_panel, "data-step") == "16"
        page.eval_on_selector("#step", "e => { e.value = '0'; e.dispatchEvent(new Event('input')); }")
        page.wait_for_function(f"() => document.querySelector('{student_panel}').dataset.step === '8'")
        assert page.inner_text("#step-label").startswith("step 8")
        page.click(".legend button[data-class='0']")  # road back
        page.screenshot(path=screenshot_path("runs-gallery-step-8"), full_page=True)
        page.click(student_panel)  # enlarged, following the controls
        page.wait_for_selector("#zoom:not([hidden])")
        assert "step 8" in page.inner_text("#zoom-caption")
        page.screenshot(path=screenshot_path("runs-gallery-zoom"))
        page.keyboard.press("Escape")
        page.wait_for_selector("#zoom", state="hidden")

        # Side by side with the baseline run, and the other pages.
        page.select_option("#compare-run", str(baseline["id"]))
        page.wait_for_function("() => document.querySelectorAll('.sample[data-index=\"0\"] canvas').length === 6")
        page.screenshot(path=screenshot_path("runs-gallery-two-runs"), full_page=True)
        page.goto(f"{url}/runs/compare/?ids={run_id},{baseline['id']}")
        page.wait_for_selector("#class-table tbody tr:nth-child(19)")
        page.screenshot(path=screenshot_path("runs-compare"), full_page=True)
        page.goto(url + "/runs/")
        page.wait_for_selector(f"tr[data-run='{run_id}'] .badge.succeeded")
        page.screenshot(path=screenshot_path("runs-list"), full_page=True)
        # ORM calls made while Playwright's loop runs get their own connection (asgiref's Local is
        # per context): close it here, or the test database cannot be dropped at the end.
        connections.close_all()
