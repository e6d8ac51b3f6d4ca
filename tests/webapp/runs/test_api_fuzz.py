"""Targeted fuzz of ``POST /api/runs/``: every field of the launch input and every engine config key
as an override gets wrong types, huge and non-finite numbers, control characters, non-ASCII digits,
very long strings and nested containers. Each answer is a 201 or a 400 in the API's error shape,
never a server error."""

from __future__ import annotations

import dataclasses
import json

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from duda_engine.config import ExperimentConfig
from tests.webapp.runs.conftest import TOY
from webapp.runs.api.serializers import RunCreateInput

pytestmark = pytest.mark.django_db


class Raw(str):
    """A JSON token written into the body as is (``1e999`` parses as an infinite float)."""


MUTATIONS = [
    None, True, -1, 0, 2**31, 2**63, 10**400, 1.5, 1e308, -1e308,
    Raw("1e999"), Raw("-1e999"), Raw("NaN"), Raw("Infinity"),
    "nan", "inf", "1e999", "12", "\x00", "a\x00b", "²", "١٢", "x" * 100_000, "../../etc/passwd",
    [], [1, 2], [[[[]]]], ["\x00"], {}, {"a": {"b": [1, {"c": None}]}},
]  # fmt: skip
# For each of the ~100 config keys, a shorter list: one of each kind of bad value.
OVERRIDE_MUTATIONS = [None, True, 2**31, 10**400, Raw("1e999"), "NaN", "\x00", "²", "x" * 100_000, [[[[]]]],
                      {"a": {"b": 1}}]
OVERRIDE_KEYS = ["", " ", ".", "a..b", "\x00", "train.\x00", "²", "x" * 10_000, "train", "train.iterations.deeper",
                 "train.no_such_key", "[0]"]


def config_keys(config=None, prefix: str = "") -> list[str]:
    """Every leaf of the engine config as a dotted key (``train.iterations``)."""
    config = config if config is not None else ExperimentConfig()
    keys = []
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if dataclasses.is_dataclass(value):
            keys += config_keys(value, f"{prefix}{item.name}.")
        else:
            keys.append(f"{prefix}{item.name}")
    return keys


def encode(payload: dict, raw: dict[str, Raw]) -> str:
    text = json.dumps(payload)
    for placeholder, token in raw.items():
        text = text.replace(json.dumps(placeholder), token)
    return text


def body_with(path: tuple[str, ...], value) -> str:
    """TOY with the value at ``path`` (a field, or ("overrides", key)), as JSON text."""
    payload = json.loads(json.dumps(TOY))
    raw = {}
    if isinstance(value, Raw):
        raw = {"\u2063raw\u2063": value}
        value = "\u2063raw\u2063"
    node = payload
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return encode(payload, raw)


def problems_of(client: APIClient, body: str) -> list[str]:
    """What is wrong with the answer to one launch (nothing for a 201 or a well-formed 400)."""
    with transaction.atomic():  # every launch is undone, and a failed query cannot spoil the next one
        response = client.post("/api/runs/", body, content_type="application/json")
        transaction.set_rollback(True)
    if response.status_code == 201:
        return []
    if response.status_code != 400:
        return [f"{response.status_code}"]
    if not response.get("Content-Type", "").startswith("application/json"):
        return [f"400 with {response.get('Content-Type')}"]
    error = response.json().get("error", {})
    if not (error.get("code") and error.get("message") and isinstance(error.get("fields"), dict)):
        return [f"400 not in the error shape: {response.content[:200]!r}"]
    return []


@pytest.fixture
def client(alice):
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(alice)
    return client


def fuzz(client, path: tuple[str, ...], mutations: list) -> list[str]:
    failures = []
    for value in mutations:
        for problem in problems_of(client, body_with(path, value)):
            failures.append(f"{'.'.join(path)} = {str(value)[:40]!r}: {problem}")
    return failures


@pytest.mark.parametrize("field", sorted(RunCreateInput().fields))
def test_every_launch_field_mutated_is_never_a_server_error(client, field):
    assert fuzz(client, (field,), MUTATIONS) == []


@pytest.mark.parametrize("key", config_keys())
def test_every_config_key_overridden_with_bad_values_is_never_a_server_error(client, key):
    assert fuzz(client, ("overrides", key), OVERRIDE_MUTATIONS) == []


def test_bad_override_keys_are_never_a_server_error(client):
    failures = []
    for key in OVERRIDE_KEYS:
        for value in (1, "\x00", {"a": 1}):
            failures += [f"{key[:20]!r} = {value!r}: {p}" for p in problems_of(client, body_with(("overrides", key), value))]
    assert failures == []


def test_bodies_that_are_not_a_launch_are_never_a_server_error(client):
    for body in ("", "null", "[]", "1", '"x"', "{", "[" * 10_000, '{"overrides": ' * 2000, "\x00", "1e999"):
        response = client.post("/api/runs/", body, content_type="application/json")
        assert response.status_code == 400, (body[:20], response.status_code)
        assert response.json()["error"]["code"] in ("invalid", "parse_error")


@pytest.mark.parametrize("username", ["x" * 151, "x" * 300, "\x00", "²", 2**31, None, [], {"a": 1}, Raw("1e999")])
def test_the_token_endpoint_with_bad_credentials_is_never_a_server_error(username):
    anonymous = APIClient(raise_request_exception=False)
    body = encode({"username": "\u2063raw\u2063" if isinstance(username, Raw) else username, "password": "x"},
                  {"\u2063raw\u2063": username} if isinstance(username, Raw) else {})
    with transaction.atomic():
        response = anonymous.post("/api/auth/token/", body, content_type="application/json")
        transaction.set_rollback(True)
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["code"] in ("invalid", "parse_error")
