"""One's own data, end to end in Debian's Chromium: a custom 3-class dataset whose dataset.yaml holds its
classes is listed with them, a run on it trains, and its run page and gallery show the three classes in
their colours; a broken twin (a corrupt image, a label with an unknown value, a missing label) is listed
"not usable" with all three reasons, and a launch on it is refused with them (form and API). A real
daphne server and a real Celery worker, on Redis and PostgreSQL."""

from __future__ import annotations

import shutil

import pytest
from django.db import connections
from rest_framework.test import APIClient

from tests.browser import chromium, screenshot_path
from tests.engine.conftest import write_domain
from tests.engine.test_dataset_check import break_domain
from tests.workers import support
from webapp.runs.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

NAMES = ["soil", "trunk", "leaves"]
COLOURS = [[120, 90, 60], [200, 40, 40], [40, 160, 60]]
MANIFEST = (
    "label: {label}\n"
    "image_dir: '{{split}}/images'\n"
    "label_dir: '{{split}}/labels'\n"
    "classes:\n"
    f"  names: [{', '.join(NAMES)}]\n"
    f"  colours: [{', '.join(str(c) for c in COLOURS)}]\n"
)


@pytest.fixture(autouse=True)
def fast_hashing():
    """The server process checks the password: keep Django's real hasher here."""


@pytest.fixture
def datasets_root(tmp_path, monkeypatch, settings):
    root = tmp_path / "datasets"
    good = root / "orchard"
    write_domain(good, "train", 8, seed=1, shift=0)
    write_domain(good, "val", 4, seed=2, shift=0)
    (good / "dataset.yaml").write_text(MANIFEST.format(label="Orchard"))
    broken = root / "orchard_broken"
    shutil.copytree(good, broken)
    (broken / "dataset.yaml").write_text(MANIFEST.format(label="Orchard (broken)"))
    files = break_domain(broken)
    monkeypatch.setenv("DUDA_DATASETS_ROOT", str(root))  # the server and the worker inherit it
    settings.DATASETS_ROOT = root
    return root, files


@pytest.fixture
def stack(django_db_setup, tmp_path, datasets_root):
    with support.serving_stack(tmp_path) as url:
        yield url


RUN = {"source": "custom:orchard", "target": "custom:orchard", "method": "source_only", "student": "mit_b0",
       "iterations": 4, "crop_size": [32, 32], "batch_size": 1, "num_workers": 0, "eval_interval": 2,
       "checkpoint_interval": 2, "log_interval": 1, "num_samples": 2, "device": "cpu", "weights": "random"}
SWATCH_COLOURS = "els => els.map(e => getComputedStyle(e).backgroundColor)"


def rgb(colour: list[int]) -> str:
    return f"rgb({colour[0]}, {colour[1]}, {colour[2]})"


def test_own_dataset_listed_trained_and_its_broken_twin_refused(stack, datasets_root, django_user_model, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # ORM checks between Playwright's sync calls
    url = stack
    _, broken_files = datasets_root
    django_user_model.objects.create_user("ada", password="ada-password-1")

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(url + "/runs/new/")
        page.fill("input[name=username]", "ada")
        page.fill("input[name=password]", "ada-password-1")
        page.click("button[type=submit]")
        page.wait_for_url(url + "/runs/new/")

        # Listed with its classes and colours; the twin "not usable" with its three problems.
        good = page.locator("tr[data-key='custom:orchard']")
        bad = page.locator("tr[data-key='custom:orchard_broken']")
        page.wait_for_selector("tr[data-key='custom:orchard'][data-state=ok]", timeout=60_000)
        page.wait_for_selector("tr[data-key='custom:orchard_broken'][data-state=bad]", timeout=60_000)
        assert good.locator(".class-list li").all_inner_texts() == NAMES
        assert good.locator(".class-list .swatch").evaluate_all(SWATCH_COLOURS) == [rgb(c) for c in COLOURS]
        assert good.locator("td.status").inner_text() == "valid"
        assert bad.locator("td.status .bad").inner_text() == "not usable"
        problems = bad.locator(".problems li").all_inner_texts()
        assert len(problems) == 3
        assert bad.locator("td.count-train").inner_text() == "8"  # labelled, one label missing (a problem above)
        assert any(f"cannot decode image {broken_files['corrupt']}" in p for p in problems)
        assert any(f"label {broken_files['unknown']} holds values 7" in p for p in problems)
        assert any(f"image {broken_files['unlabelled']} has no label" in p for p in problems)
        assert "Orchard (3 classes)" in page.locator("select[name=source] option[value='custom:orchard']").inner_text()
        page.locator("#dataset-status").scroll_into_view_if_needed()
        page.screenshot(path=screenshot_path("own-data-datasets"), full_page=True)

        # Launch on the broken twin: refused with the three reasons, nothing queued.
        page.select_option("select[name=benchmark]", "")
        page.select_option("select[name=source]", "custom:orchard_broken")
        page.select_option("select[name=target]", "custom:orchard")
        page.select_option("select[name=method]", "source_only")
        page.fill("input[name=iterations]", "4")
        page.fill("input[name=crop_size]", "32x32")
        page.click("#submit")
        error = page.locator("#source-errors")
        error.wait_for()
        refused = error.inner_text()
        assert "Orchard (broken) is not usable: 3 problems" in refused
        for needle in ("cannot decode image", "holds values 7", "has no label"):
            assert needle in refused
        assert Run.objects.count() == 0
        page.screenshot(path=screenshot_path("own-data-launch-refused"), full_page=True)

        # The API refuses it the same way.
        api = APIClient()
        api.force_login(django_user_model.objects.get(username="ada"))
        response = api.post("/api/runs/", {**RUN, "source": "custom:orchard_broken"}, format="json")
        assert response.status_code == 400
        source_errors = " ".join(response.json()["error"]["fields"]["source"])
        for needle in ("cannot decode image", "holds values 7", "has no label"):
            assert needle in source_errors

        # A run on the good one trains with its three classes.
        created = api.post("/api/runs/", RUN, format="json")
        assert created.status_code == 201, created.json()
        run_id = created.json()["id"]
        assert Run.objects.get(pk=run_id).config["classes"] == {"preset": "custom", "names": NAMES, "colours": COLOURS,
                                                                 "ignore_index": 255}
        page.goto(f"{url}/runs/{run_id}/")
        page.wait_for_selector("#status.succeeded", timeout=300_000)
        page.wait_for_selector("#class-iou tbody tr:nth-child(3)")
        rows = page.locator("#class-iou tbody tr")
        assert rows.count() == 3
        assert [t.strip() for t in page.locator("#class-iou tbody tr td:first-child").all_inner_texts()] == NAMES
        assert page.locator("#class-iou tbody .swatch").evaluate_all(SWATCH_COLOURS) == [rgb(c) for c in COLOURS]
        page.screenshot(path=screenshot_path("own-data-run"), full_page=True)

        page.goto(f"{url}/runs/{run_id}/gallery/")
        page.wait_for_function("() => Number(document.body.dataset.galleryRendered || 0) >= 1", timeout=60_000)
        chips = page.locator(".legend button")
        assert chips.count() == 3
        assert [t.strip() for t in chips.evaluate_all("bs => bs.map(b => b.childNodes[1].textContent)")] == NAMES
        assert page.locator(".legend .swatch").evaluate_all(SWATCH_COLOURS) == [rgb(c) for c in COLOURS]
        page.screenshot(path=screenshot_path("own-data-gallery"), full_page=True)
        connections.close_all()
