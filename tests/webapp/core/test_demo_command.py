"""The README's demo command serves the app on embedded defaults; a browser can log in."""

import re
import subprocess
import time

from tests.browser import chromium, screenshot_path
from tests.conftest import PYTHON, REPO_ROOT, embedded_env, free_port, wait_for_http


def read_until(process: subprocess.Popen, pattern: str, timeout: float) -> re.Match:
    deadline, seen = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen += line
        match = re.search(pattern, seen)
        if match:
            return match
    raise AssertionError(f"demo did not print {pattern!r}; got:\n{seen}")


def test_demo_serves_and_a_user_logs_in(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [PYTHON, "manage.py", "demo", "--port", str(port)],
        cwd=REPO_ROOT,
        env=embedded_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        started = time.monotonic()
        match = read_until(process, r"running at (http://127\.0\.0\.1:\d+/)\n\s+log in as 'demo' with password '(\S+)'", 60)
        url, password = match.group(1), match.group(2)
        wait_for_http(url + "health/", timeout=60, process=process)
        assert time.monotonic() - started < 60
        assert (tmp_path / "var" / "db.sqlite3").exists()

        with chromium() as browser:
            page = browser.new_page()
            page.goto(url)
            assert "/accounts/login/" in page.url
            page.fill("input[name=username]", "demo")
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_url(url)
            assert page.locator("h1").first.inner_text() == "DUDA Studio"
            page.screenshot(path=screenshot_path("demo-home"))
    finally:
        process.terminate()
        process.wait(timeout=20)
