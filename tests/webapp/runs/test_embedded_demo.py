"""Embedded mode end to end: ``manage.py demo`` (SQLite, filesystem queue, in-process worker,
in-memory channel layer) trains a toy run launched from the browser, with live curves."""

from __future__ import annotations

import subprocess

import pytest

from tests.browser import chromium, screenshot_path
from tests.conftest import PYTHON, REPO_ROOT, embedded_env, free_port, wait_for_http
from tests.webapp.core.test_demo_command import read_until
from tests.workers.support import ensure_toy_data

pytestmark = pytest.mark.slow


def test_demo_trains_a_toy_run_launched_in_the_browser(tmp_path):
    ensure_toy_data()
    port = free_port()
    process = subprocess.Popen(
        [PYTHON, "manage.py", "demo", "--port", str(port)],
        cwd=REPO_ROOT, env=embedded_env(tmp_path) | {"DUDA_HEARTBEAT_INTERVAL_S": "1", "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        match = read_until(process, r"running at (http://127\.0\.0\.1:\d+/)\n\s+log in as 'demo' with password '(\S+)'", 90)
        url, password = match.group(1).rstrip("/"), match.group(2)
        wait_for_http(url + "/health/", timeout=60, process=process)
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(url + "/runs/new/")
            page.fill("input[name=username]", "demo")
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_url(url + "/runs/new/")
            page.select_option("select[name=method]", "source_only")
            page.fill("input[name=iterations]", "8")
            page.fill("input[name=crop_size]", "64x64")
            page.fill("input[name=batch_size]", "1")
            page.click("details.advanced summary")
            for name, value in (("eval_interval", "4"), ("checkpoint_interval", "4"), ("log_interval", "1"),
                                ("num_samples", "2"), ("max_val_images", "4"), ("num_workers", "0"), ("device", "cpu")):
                page.fill(f"input[name={name}]", value)
            page.click("#submit")
            page.wait_for_url(url + "/runs/*/")
            page.wait_for_selector("#status.succeeded", timeout=240_000)
            page.wait_for_function("() => window.__duda.store.count('loss/source') === 8")
            assert page.evaluate("window.__duda.socket.received") > 0  # live, through the in-memory layer
            page.screenshot(path=screenshot_path("embedded-run-detail"), full_page=True)
            page.click("#gallery-link")
            page.wait_for_function("() => Number(document.body.dataset.galleryRendered || 0) >= 1")
            assert page.locator(".sample").count() == 2
            page.screenshot(path=screenshot_path("embedded-gallery"), full_page=True)
    finally:
        process.terminate()
        process.wait(timeout=30)
