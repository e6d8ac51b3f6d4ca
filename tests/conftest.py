"""Shared fixtures. The suite runs against the real PostgreSQL and Redis named by DATABASE_URL and
REDIS_URL (scripts/test.sh sets them); tests that need them fail, never skip, when they are down."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# Dataset check verdicts of the suite's datasets go to a folder of the run's own (processes inherit it).
os.environ.setdefault("DUDA_CHECK_CACHE_DIR", tempfile.mkdtemp(prefix="duda-checks-"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embedded_env(tmp_path: Path) -> dict[str, str]:
    """Environment of a process on embedded defaults with its own data folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY")}
    env["DUDA_DATA_DIR"] = str(tmp_path / "var")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_for_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"server exited early with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    assert url, "REDIS_URL must name the test Redis (scripts/test.sh sets it)"
    return url
