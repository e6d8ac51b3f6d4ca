"""Layout and run-page behaviour in Debian's Chromium, measured on element boxes: the gallery's cards
are as tall as their images (a placeholder column included) and a second run side by side is shown
at its own evaluation steps; at 420 px the tables scroll inside their cards; the launch form's
selects show their whole text and the checkbox sits beside its label; the "queued" notice leaves
once the run starts; no page asks for a favicon that is not there.

A real daphne server on the test database; the runs' results are written in this process through
the services a worker uses (no worker: these tests are about the pages)."""

from __future__ import annotations

import pytest
from django.db import connections

from tests.browser import chromium, screenshot_path
from tests.webapp.runs.conftest import launch, simulate_results
from tests.workers import support
from webapp.runs.models import Run
from webapp.runs.services import worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PASSWORD = "eve-password-1"
NARROW = {"width": 420, "height": 900}
WIDE = {"width": 1440, "height": 1000}


@pytest.fixture(autouse=True)
def fast_hashing():
    """The server process checks the password: keep Django's real hasher here."""


@pytest.fixture
def server(django_db_setup, tmp_path, runs_dir):
    assert runs_dir == tmp_path / "runs"  # the server's DUDA_DATA_DIR/runs: it reads what this process writes
    with support.serving_stack(tmp_path, worker=False) as url:
        yield url
    connections.close_all()


@pytest.fixture
def eve(django_user_model):
    return django_user_model.objects.create_user("eve", password=PASSWORD)


def logged_in(browser, url, viewport):
    page = browser.new_page(viewport=viewport)
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.goto(url + "/runs/")
    page.fill("input[name=username]", "eve")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    page.missing = missing  # type: ignore[attr-defined]
    return page


def overflowing(page, selector: str) -> list[dict]:
    """Elements under ``selector`` whose right edge passes their card's (or the viewport's)."""
    return page.evaluate("""(selector) => {
      const out = [];
      for (const card of document.querySelectorAll(selector)) {
        const box = card.getBoundingClientRect();
        for (const child of card.querySelectorAll('*')) {
          if (child.closest('.table-scroll') && !child.classList.contains('table-scroll')) continue;  // scrolls inside
          const r = child.getBoundingClientRect();
          if (r.width && r.right > box.right + 1) out.push({tag: child.tagName, cls: child.className, right: r.right, card: box.right});
        }
      }
      if (document.documentElement.scrollWidth > window.innerWidth + 1) out.push({page: document.documentElement.scrollWidth});
      return out;
    }""", selector)


def test_gallery_cards_and_a_second_run(server, eve, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    second = simulate_results(launch(eve, name="second", method="source_only"), steps=(2, 6))
    first = simulate_results(launch(eve, name="first", method="self_training", baseline=""), steps=(4, 8))
    assert first.baseline_id is None  # the source-only column is a placeholder
    with chromium() as browser:
        for viewport, tag in ((WIDE, "wide"), (NARROW, "420")):
            page = logged_in(browser, server, viewport)
            page.goto(f"{server}/runs/{first.pk}/gallery/?compare={second.pk}")
            page.wait_for_function("() => Number(document.body.dataset.galleryRendered || 0) >= 1")
            page.wait_for_function("() => document.querySelectorAll('.sample[data-index=\"0\"] .panel').length === 5")
            boxes = page.evaluate("""() => [...document.querySelectorAll('.sample .panel')].map((p) => {
              const canvas = p.querySelector('canvas');
              return {role: canvas.dataset.role, missing: p.classList.contains('missing'),
                      panel: p.getBoundingClientRect().height, canvas: canvas.getBoundingClientRect().height,
                      width: canvas.getBoundingClientRect().width};
            })""")
            assert any(b["missing"] and b["role"] == "source" for b in boxes)
            for b in boxes:  # 16 x 32 images: each card is its image's height (plus 2 px of border)
                assert abs(b["canvas"] - b["width"] / 2) <= 1, b
                assert b["panel"] <= b["canvas"] + 3, (tag, b)
            page.screenshot(path=screenshot_path(f"edges-gallery-{tag}"), full_page=True)
            assert overflowing(page, ".sample") == []

            # The slider walks the first run's evaluations only; the second run shows its latest at or before each.
            assert page.get_attribute("#step", "max") == "1"
            second_panel = ".sample[data-index=\"0\"] .panel.run-b canvas[data-role=student]"
            first_panel = ".sample[data-index=\"0\"] canvas[data-role=student]"
            for index, (at_first, at_second) in enumerate([(4, 2), (8, 6)]):
                page.eval_on_selector("#step", f"e => {{ e.value = '{index}'; e.dispatchEvent(new Event('input')); }}")
                page.wait_for_function(f"() => document.querySelector('{first_panel}').dataset.step === '{at_first}'")
                assert page.get_attribute(second_panel, "data-step") == str(at_second)
                captions = page.eval_on_selector_all(".sample[data-index=\"0\"] .panel .caption .where", "cs => cs.map(c => c.textContent)")
                assert f"step {at_first}" in captions and f"step {at_second}" in captions, captions
                label = page.inner_text("#step-label")
                assert label.startswith(f"step {at_first}") and f"#{second.pk} at step {at_second}" in label, label
            assert page.missing == [], page.missing  # type: ignore[attr-defined]
            page.close()
    connections.close_all()


def test_the_run_page_and_lists_at_420_px(server, eve, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    run = simulate_results(launch(eve, name="a run with a rather long name to wrap"), steps=(4, 8))
    with chromium() as browser:
        page = logged_in(browser, server, NARROW)
        page.goto(f"{server}/runs/{run.pk}/")
        page.wait_for_selector("#checkpoints a[data-kind=student]")
        page.wait_for_selector("#class-iou tbody tr:nth-child(19)")
        assert overflowing(page, ".card") == []
        scroller = page.evaluate("""() => { const s = document.querySelector('#checkpoints').closest('.table-scroll');
            return s && {scroll: s.scrollWidth, client: s.clientWidth, overflow: getComputedStyle(s).overflowX}; }""")
        assert scroller and scroller["overflow"] == "auto", scroller
        page.screenshot(path=screenshot_path("edges-run-page-420"), full_page=True)

        page.goto(f"{server}/runs/")
        page.wait_for_selector(f"tr[data-run='{run.pk}']")
        assert overflowing(page, ".card") == []
        page.screenshot(path=screenshot_path("edges-runs-list-420"), full_page=True)

        page.goto(f"{server}/runs/new/")
        page.wait_for_selector("#launch")
        assert overflowing(page, ".card") == []
        page.screenshot(path=screenshot_path("edges-launch-420"), full_page=True)
        assert page.missing == [], page.missing  # type: ignore[attr-defined]
    connections.close_all()


CUT_SELECTS = """() => {
  // Every option's text, in the select's font, against the room the closed select gives its text.
  const ctx = document.createElement('canvas').getContext('2d');
  const out = [];
  for (const select of document.querySelectorAll('#launch select:not([multiple])')) {
    const style = getComputedStyle(select);
    if (select.offsetParent === null) continue;  // hidden for this method
    ctx.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
    const room = select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 20;  // the arrow
    for (const option of select.options) {
      const width = ctx.measureText(option.text).width;
      if (width > room) out.push({name: select.name, text: option.text, width, room});
    }
  }
  return out;
}"""


def test_the_launch_form(server, eve, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    launch(eve, name="a finished one")  # a teacher candidate is not needed: the checkbox shows for DUDA
    with chromium() as browser:
        for viewport, tag in ((WIDE, "wide"), (NARROW, "420")):
            page = logged_in(browser, server, viewport)
            page.goto(f"{server}/runs/new/")
            page.select_option("select[name=method]", "duda")
            assert page.evaluate(CUT_SELECTS) == [], tag
            flag = page.evaluate("""() => {
              const field = document.querySelector('[data-field=precompute_teachers]');
              const box = field.querySelector('input[type=checkbox]').getBoundingClientRect();
              const label = field.querySelector('label').getBoundingClientRect();
              return {gap: label.left - box.right, dy: Math.abs((label.top + label.bottom) / 2 - (box.top + box.bottom) / 2),
                      visible: field.offsetParent !== null};
            }""")
            if flag["visible"]:
                assert 0 <= flag["gap"] <= 12 and flag["dy"] <= 4, flag
            page.screenshot(path=screenshot_path(f"edges-launch-form-{tag}"), full_page=True)
            assert overflowing(page, ".card") == []
            assert page.missing == [], page.missing  # type: ignore[attr-defined]
            page.close()
    connections.close_all()


def test_the_queued_notice_leaves_once_the_run_starts(server, eve, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with chromium() as browser:
        page = logged_in(browser, server, WIDE)
        page.goto(f"{server}/runs/new/")
        page.select_option("select[name=benchmark]", "toy_gta2real")
        page.select_option("select[name=method]", "source_only")
        page.fill("input[name=iterations]", "8")
        page.fill("input[name=crop_size]", "64x64")
        page.click("#submit")
        page.wait_for_url(server + "/runs/*/")
        run_id = int(page.url.rstrip("/").split("/")[-1])
        notice = page.locator(".messages li", has_text=f"Run #{run_id} queued.")
        assert notice.count() == 1 and notice.is_visible()
        page.wait_for_timeout(1500)  # the socket is up: the status message comes live
        claim = worker.run_claim(run_id=run_id, worker_host="test@host", worker_gpu="CPU")
        assert claim is not None and Run.objects.get(pk=run_id).status == "running"
        page.wait_for_selector("#status.running", timeout=15_000)
        page.wait_for_selector(".messages", state="detached", timeout=5_000)
        page.reload()
        page.wait_for_selector("#status.running")
        assert page.locator(".messages li").count() == 0  # later visits: never again
        # ORM calls made while Playwright's loop runs get their own connection (asgiref's Local is
        # per context): close it here, or the test database cannot be dropped at the end.
        connections.close_all()
