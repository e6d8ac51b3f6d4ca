"""Fixtures for tests that run real Celery worker processes against Redis and the test database."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.workers import support


@pytest.fixture(scope="session")
def toy_data():
    support.ensure_toy_data()


@pytest.fixture(scope="session", autouse=True)
def close_thread_connections(django_db_setup):
    """Before the test database is dropped: close connections that threads of this process opened
    (Django's ASGI handler runs each request in its own thread) and that wait for the collector."""
    yield
    import gc

    from django.db import connections

    gc.collect()
    connections.close_all()


@pytest.fixture(autouse=True)
def runs_dir(settings, tmp_path):
    settings.RUNS_DIR = tmp_path / "runs"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings.RUNS_DIR


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("walter", password="walter-password")


@pytest.fixture
def api(user):
    client = APIClient()
    client.force_login(user)
    return client
