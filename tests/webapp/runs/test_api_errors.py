"""Every API error, whoever answers it (a view, DRF, Django, a middleware), has one JSON shape:
``{"error": {"code", "message", "fields"}}``; missing credentials are a 401 that names the scheme;
the OpenAPI schema documents those errors and the paginated run list."""

from __future__ import annotations

import json

import pytest
from django.http import HttpResponse
from django.test import RequestFactory
from rest_framework import exceptions
from rest_framework.test import APIClient

from tests.webapp.runs.conftest import TOY, launch, simulate_results
from webapp.runs.errors import api_exception_handler
from webapp.runs.middleware import ApiErrorMiddleware
from webapp.runs.models import Checkpoint, Run

pytestmark = pytest.mark.django_db

TEN_MB = 10 * (1 << 20)


def assert_error(response, status: int, code: str, fields: dict | None = None) -> dict:
    """The response is a JSON error with exactly the three keys of the shape."""
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/json", response["Content-Type"]
    body = json.loads(response.content)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}, body
    error = body["error"]
    assert error["code"] == code and isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["fields"], dict)
    if fields is not None:
        assert error["fields"] == fields, error
    return error


# --- authentication ---------------------------------------------------------------------------


def test_missing_credentials_are_a_401_that_names_the_scheme(client):
    response = client.get("/api/runs/")
    assert_error(response, 401, "not_authenticated", fields={})
    assert response["WWW-Authenticate"] == "Token"
    bad = client.get("/api/runs/", HTTP_AUTHORIZATION="Token 0123456789012345678901234567890123456789")
    assert_error(bad, 401, "authentication_failed", fields={})
    assert bad["WWW-Authenticate"] == "Token"


def test_the_pages_session_with_csrf_still_works(alice):
    """The web pages' fetch calls sign in with the session cookie and send the CSRF token."""
    browser = APIClient(enforce_csrf_checks=True)
    browser.login(username="alice", password="alice-password")
    assert browser.get("/api/runs/").status_code == 200
    refused = browser.post("/api/runs/", TOY, format="json")
    error = assert_error(refused, 403, "permission_denied", fields={})
    assert "CSRF" in error["message"]
    browser.get("/runs/new/")  # the page sets the CSRF cookie, as in a browser
    token = browser.cookies["csrftoken"].value
    created = browser.post("/api/runs/", TOY, format="json", HTTP_X_CSRFTOKEN=token)
    assert created.status_code == 201, created.content[:300]


def test_token_clients_need_no_csrf_token(alice, token_api):
    token_api.handler.enforce_csrf_checks = True
    assert token_api.post("/api/runs/", TOY, format="json").status_code == 201


# --- one shape for every status ---------------------------------------------------------------


def test_400_invalid_input_names_the_fields(api):
    error = assert_error(api.post("/api/runs/", {**TOY, "batch_size": "two"}, format="json"), 400, "invalid")
    assert set(error["fields"]) == {"batch_size"}


def test_400_unparsable_json_has_empty_fields(api):
    assert_error(api.post("/api/runs/", "{", content_type="application/json"), 400, "parse_error", fields={})


@pytest.mark.parametrize("body", ["[" * 100_000, '{"overrides": ' * 5000 + "1" + "}" * 5000])
def test_json_nested_too_deeply_is_a_400(api, body):
    for url in ("/api/runs/", "/api/auth/token/"):
        assert_error(api.post(url, body, content_type="application/json"), 400, "parse_error", fields={})
    assert not Run.objects.exists()


def test_404_for_another_users_run_and_unknown_urls(api, bob):
    other = launch(bob)
    for url in (f"/api/runs/{other.pk}/", "/api/runs/null/", "/api/runs/1/nowhere/", "/api/nowhere/",
                f"/api/runs/{other.pk}/checkpoints/student/download/"):
        assert_error(api.get(url), 404, "not_found", fields={})


def test_404_of_a_download_is_json_whatever_the_client_accepts(api, alice):
    run = launch(alice)
    response = api.get(f"/api/runs/{run.pk}/checkpoints/student/download/", HTTP_ACCEPT="application/octet-stream")
    assert_error(response, 404, "not_found", fields={})


def test_403_for_a_write_without_the_csrf_token_has_fields(alice):
    browser = APIClient(enforce_csrf_checks=True)
    browser.login(username="alice", password="alice-password")
    assert_error(browser.delete("/api/runs/1/"), 403, "permission_denied", fields={})


def test_405_keeps_the_allow_header(api):
    response = api.put("/api/runs/", {}, format="json")
    assert_error(response, 405, "method_not_allowed", fields={})
    assert set(response["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_409_conflict(api, alice):
    run = launch(alice)
    api.post(f"/api/runs/{run.pk}/cancel/")
    assert_error(api.post(f"/api/runs/{run.pk}/cancel/"), 409, "conflict", fields={})


def test_413_for_a_body_over_the_limit_before_it_is_read(api, settings):
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE < TEN_MB
    huge = b'{"name": "' + b"x" * TEN_MB + b'"}'
    error = assert_error(api.post("/api/runs/", huge, content_type="application/json"), 413, "request_too_large", fields={})
    assert str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in error["message"]
    form = api.post("/api/auth/token/", b"username=" + b"a" * TEN_MB, content_type="application/x-www-form-urlencoded")
    assert_error(form, 413, "request_too_large", fields={})
    assert not Run.objects.exists()


def test_415_unsupported_media_type(api):
    response = api.post("/api/runs/", "method: duda", content_type="text/yaml")
    assert_error(response, 415, "unsupported_media_type", fields={})


def test_416_range_not_satisfiable_has_a_body_and_the_size(api, alice):
    run = simulate_results(launch(alice))
    checkpoint = Checkpoint.objects.get(run=run, kind="student")
    response = api.get(f"/api/runs/{run.pk}/checkpoints/{checkpoint.pk}/download/", HTTP_RANGE=f"bytes={checkpoint.size}-")
    assert_error(response, 416, "range_not_satisfiable", fields={})
    assert response["Content-Range"] == f"bytes */{checkpoint.size}"


def test_429_from_drf_and_from_any_other_layer(rf: RequestFactory):
    throttled = api_exception_handler(exceptions.Throttled(wait=30), {})
    assert throttled.status_code == 429 and throttled["Retry-After"] == "30"
    assert throttled.data == {"error": {"code": "throttled", "message": throttled.data["error"]["message"], "fields": {}}}
    locked = HttpResponse("<h1>Too many attempts</h1>", status=429, headers={"Retry-After": "60"})
    response = ApiErrorMiddleware(lambda request: locked)(rf.post("/api/auth/token/"))
    assert_error(response, 429, "throttled", fields={})
    assert response["Retry-After"] == "60"
    page = ApiErrorMiddleware(lambda request: locked)(rf.post("/accounts/login/"))
    assert page is locked  # pages keep their HTML


def test_500_is_json_and_tells_nothing_of_the_failure(api, monkeypatch):
    from webapp.runs import selectors

    def broken(**kwargs):
        raise RuntimeError("secret detail of the failure")

    monkeypatch.setattr(selectors, "run_list", broken)
    api.raise_request_exception = False
    response = api.get("/api/runs/")
    error = assert_error(response, 500, "server_error", fields={})
    assert "secret" not in error["message"]


def test_pages_keep_their_html_errors(client, alice):
    client.force_login(alice)
    response = client.get("/runs/999999/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


# --- the schema says what the endpoints return ------------------------------------------------


def test_schema_documents_the_paginated_list_and_the_error_shape(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    components = schema["components"]["schemas"]

    def resolve(node):
        return components[node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node

    listed = resolve(schema["paths"]["/api/runs/"]["get"]["responses"]["200"]["content"]["application/json"]["schema"])
    assert listed["type"] == "object" and {"count", "results"} <= set(listed["required"])
    assert listed["properties"]["results"]["items"]["$ref"].endswith("/RunOutput")
    error_body = resolve(resolve(components["ErrorOutput"]["properties"]["error"]))
    assert set(error_body["required"]) == {"code", "message", "fields"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "401" in responses, (method, path)
            if "{run_id}" in path:
                assert responses["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOutput")
    create = schema["paths"]["/api/runs/"]["post"]["responses"]
    assert {"201", "400", "401", "403", "413", "415"} <= set(create)
    download = schema["paths"]["/api/runs/{run_id}/checkpoints/{checkpoint}/download/"]["get"]["responses"]
    assert download["416"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOutput")
