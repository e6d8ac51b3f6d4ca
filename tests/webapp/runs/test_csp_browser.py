"""Every page works under the Content-Security-Policy (no inline script or style): Chromium reports no
violation on the login page, home, runs list, launch form, run detail (with its websocket), gallery,
compare view, API docs and admin, and each page's script did its work."""

from __future__ import annotations

import pytest
from django.db import connections

from tests.browser import chromium
from tests.webapp.runs.conftest import launch, simulate_results
from tests.workers import support
from webapp.runs.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def fast_hashing():
    """The server process checks the password: keep Django's real hasher here."""


@pytest.fixture
def server(django_db_setup, tmp_path):
    with support.serving_stack(tmp_path, worker=False) as url:
        yield url


def test_every_page_runs_under_the_policy(server, django_user_model, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # ORM checks between Playwright's sync calls
    user = django_user_model.objects.create_user("csp", password="csp-password-1", is_staff=True, is_superuser=True)
    first = simulate_results(launch(user, name="first"))
    second = simulate_results(launch(user, name="second"))
    url = server
    violations: list[str] = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        # (Waits are functions, "() => ...": Playwright evaluates a bare expression with eval(), which the policy refuses.)
        page.on("console", lambda m: violations.append(f"{page.url}: {m.text}") if "Content Security Policy" in m.text else None)
        page.add_init_script("document.addEventListener('securitypolicyviolation', "
                             "e => console.error(`Content Security Policy: ${e.violatedDirective} ${e.blockedURI}`))")
        page.goto(url + "/accounts/login/")
        page.fill("input[name=username]", "csp")
        page.fill("input[name=password]", "csp-password-1")
        page.click("button[type=submit]")
        page.wait_for_url(url + "/")

        page.goto(url + "/runs/")
        page.wait_for_selector(f"tr[data-run='{first.pk}'] .progress span")
        assert page.eval_on_selector(f"tr[data-run='{first.pk}'] .progress span", "e => e.style.width") == "100%"
        page.goto(url + "/runs/new/")
        page.wait_for_function("() => document.querySelector('select[name=benchmark]').options.length > 0")

        page.goto(f"{url}/runs/{first.pk}/")
        page.wait_for_function("() => window.__duda && window.__duda.socket.connects >= 1")
        page.wait_for_selector("#class-iou tbody tr:nth-child(19) .swatch")
        assert page.eval_on_selector("#class-iou tbody tr .swatch", "e => e.style.background").startswith("rgb(")
        assert page.eval_on_selector("#progress-bar", "e => getComputedStyle(e).width") != "0px"
        page.once("dialog", lambda dialog: dialog.dismiss())  # the delete button asks first; dismissed, nothing happens
        page.click("#delete")
        assert page.url == f"{url}/runs/{first.pk}/"

        page.goto(f"{url}/runs/{first.pk}/gallery/")
        page.wait_for_function("() => Number(document.body.dataset.galleryRendered || 0) >= 1")
        assert page.eval_on_selector(".inline-label", "e => getComputedStyle(e).display") == "flex"
        page.goto(f"{url}/runs/compare/?ids={first.pk},{second.pk}")
        page.wait_for_selector("#class-table tbody tr:nth-child(19)")
        page.goto(url + "/api/docs/")
        page.wait_for_selector("#swagger-ui .info .title")
        page.goto(url + "/admin/")
        page.wait_for_selector("#site-name")
        page.wait_for_timeout(300)  # late reports
    connections.close_all()
    assert violations == []
    assert Run.objects.filter(pk=first.pk).exists()  # the dismissed confirmation deleted nothing
