"""Production settings come from the environment the README lists: ``check --deploy`` is clean, plain
HTTP is redirected, HSTS is sent, the session and CSRF cookies are Secure, and every page carries a
Content-Security-Policy without 'unsafe-inline'. ``DUDA_INSECURE_HTTP=1`` serves plain HTTP instead."""

from __future__ import annotations

import json
import os
import secrets
import subprocess

import pytest

from tests.conftest import PYTHON, REPO_ROOT
from tests.workers import support

HOST = "duda.example.org"


def production_env(**extra: str) -> dict[str, str]:
    """The variables the README lists for production, nothing else of ours (DEBUG off by default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DUDA_", "DATABASE_", "REDIS_"))}
    env.update({
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "DATABASE_URL": support.test_database_url(),
        "REDIS_URL": os.environ["REDIS_URL"],
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),  # 64 random characters
        "DJANGO_ALLOWED_HOSTS": HOST,
        **extra,
    })
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "manage.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


# Requests made by the Django test client inside a process started with the given environment.
PROBE = """
import json
from django.test import Client
client = Client(HTTP_HOST="%(host)s")
plain = client.get("/accounts/login/")
health = client.get("/health/")
page = client.get("/accounts/login/", secure=True)
login = client.post("/accounts/login/", {"username": "ada", "password": "correct-horse-9"}, secure=not %(plain)s)
def cookie(response, name):
    morsel = response.cookies.get(name)
    return None if morsel is None else {"secure": bool(morsel["secure"]), "httponly": bool(morsel["httponly"])}
print(json.dumps({
    "plain_status": plain.status_code, "plain_location": plain.get("Location"), "health_status": health.status_code,
    "hsts": page.get("Strict-Transport-Security"), "csp": page.get("Content-Security-Policy"),
    "login_status": login.status_code, "login_location": login.get("Location"),
    "csrf_cookie": cookie(page if not %(plain)s else plain, "csrftoken"), "session_cookie": cookie(login, "sessionid"),
}))
"""


def probe(env: dict[str, str], plain: bool) -> dict:
    result = manage(env, "shell", "-c", PROBE % {"host": HOST, "plain": plain})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_check_deploy_is_clean_with_the_documented_variables():
    result = manage(production_env(), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stderr + result.stdout


@pytest.mark.django_db(transaction=True)
def test_production_is_https_only(django_user_model):
    django_user_model.objects.create_user("ada", password="correct-horse-9")
    seen = probe(production_env(), plain=False)
    assert seen["plain_status"] == 301 and seen["plain_location"] == f"https://{HOST}/accounts/login/"
    assert seen["health_status"] == 200  # probes inside the network speak plain HTTP
    assert seen["hsts"] == "max-age=31536000; includeSubDomains; preload"
    assert seen["login_status"] == 302 and seen["login_location"] == "/"
    assert seen["session_cookie"] == {"secure": True, "httponly": True}
    assert seen["csrf_cookie"]["secure"] is True
    directives = dict(d.strip().split(" ", 1) for d in seen["csp"].split(";"))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["default-src"] == "'self'" and directives["object-src"] == "'none'"


@pytest.mark.django_db(transaction=True)
def test_insecure_http_switch_serves_plain_http(django_user_model):
    django_user_model.objects.create_user("ada", password="correct-horse-9")
    seen = probe(production_env(DUDA_INSECURE_HTTP="1"), plain=True)
    assert seen["plain_status"] == 200
    assert seen["hsts"] is None
    assert seen["login_status"] == 302 and seen["login_location"] == "/"
    assert seen["session_cookie"] == {"secure": False, "httponly": True}
    assert seen["csrf_cookie"]["secure"] is False
    assert "'unsafe-inline'" not in seen["csp"]


def test_behind_a_proxy_x_forwarded_proto_counts_as_https():
    env = production_env(DUDA_BEHIND_HTTPS_PROXY="1")
    code = (f"from django.test import Client; r = Client(HTTP_HOST='{HOST}').get('/accounts/login/', "
            "HTTP_X_FORWARDED_PROTO='https'); print(r.status_code, r.get('Strict-Transport-Security'))")
    result = manage(env, "shell", "-c", code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "200 max-age=31536000; includeSubDomains; preload"


def test_a_bad_switch_is_one_clear_message():
    result = manage(production_env(DUDA_INSECURE_HTTP="yes"), "check")
    assert result.returncode != 0
    assert "DUDA_INSECURE_HTTP: must be 0 or 1" in result.stderr
    assert "Traceback" not in result.stderr
