"""Pages: login required, another user's run is a 404, the launch form shows errors next to fields."""

from __future__ import annotations

import pytest

from tests.webapp.runs.conftest import launch, simulate_results
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def page(client, alice):
    client.force_login(alice)
    return client


def test_pages_need_login(client, alice):
    run = launch(alice)
    for url in ("/runs/", "/runs/new/", f"/runs/{run.pk}/", f"/runs/{run.pk}/gallery/", "/runs/compare/?ids=1"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url


def test_pages_render(page, alice):
    baseline = simulate_results(launch(alice))
    run = simulate_results(launch(alice, method="self_training", name="adapted"))
    assert b"Launch a run" in page.get("/").content
    assert page.get("/runs/").status_code == 200
    detail = page.get(f"/runs/{run.pk}/").content.decode()
    assert "adapted" in detail and f"#{baseline.pk} " in detail and "Prediction gallery" in detail
    gallery = page.get(f"/runs/{run.pk}/gallery/?compare={baseline.pk}").content.decode()
    assert 'id="legend"' in gallery and f'value="{baseline.pk}" selected' in gallery
    assert page.get(f"/runs/compare/?ids={run.pk},{baseline.pk}").status_code == 200
    assert "/static/vendor/uplot/uPlot.iife.min.js" in detail and "/static/js/gallery.js" in gallery


def test_another_users_pages_are_not_found(page, bob):
    run = launch(bob)
    assert page.get(f"/runs/{run.pk}/").status_code == 404
    assert page.get(f"/runs/{run.pk}/gallery/").status_code == 404
    assert page.post(f"/runs/{run.pk}/cancel/").status_code == 404
    assert Run.objects.get(pk=run.pk).status == "queued"


def test_the_launch_form_launches(page):
    response = page.post("/runs/new/", {"benchmark": "toy_gta2real", "method": "source_only", "student": "mit_b0",
                                        "iterations": "8", "crop_size": "64x64", "batch_size": "1", "baseline": "auto"})
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert run.config["train"]["crop_size"] == [64, 64] and run.total_steps == 8


@pytest.mark.parametrize(
    ("data", "field", "text"),
    [
        ({"crop_size": "1024x2048"}, "crop_size", "cannot be cut"),
        ({"crop_size": "huge"}, "crop_size", "HxW"),
        ({"iterations": "lots"}, "iterations", "Enter a whole number"),
        ({"iterations": "0"}, "iterations", "must be &gt;= 1"),
        ({"student": "mit_b9"}, "student", "Select a valid choice"),
        ({"overrides": "self_training.nothing = 1"}, "overrides", "unknown key"),
        ({"overrides": "just words"}, "overrides", "expected key = value"),
        ({"benchmark": "", "source": "", "target": ""}, "benchmark", "choose a benchmark"),
    ],
)
def test_form_errors_are_shown_next_to_their_field(page, data, field, text):
    payload = {"benchmark": "toy_gta2real", "method": "source_only", "student": "mit_b0", "iterations": "8",
               "crop_size": "64x64", "batch_size": "1", "baseline": "auto", **data}
    response = page.post("/runs/new/", payload)
    assert response.status_code == 400
    html = response.content.decode()
    start = html.index(f'data-field="{field}"')
    block = html[start:html.index("</div>\n", html.index(f'id="{field}-errors"', start))]
    assert "has-error" in html[start - 40:start + 40] and text in block, block
    assert not Run.objects.exists()


def test_page_actions(page, alice):
    run = launch(alice)
    response = page.post(f"/runs/{run.pk}/cancel/")
    assert response.status_code == 302 and Run.objects.get(pk=run.pk).status == "cancelled"
    page.post(f"/runs/{run.pk}/resume/")
    assert Run.objects.get(pk=run.pk).status == "queued"
    page.post(f"/runs/{run.pk}/delete/")
    assert not Run.objects.filter(pk=run.pk).exists()
