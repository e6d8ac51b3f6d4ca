"""Login throttling (django-axes): after 10 wrong passwords for one username from one address, the
right password is refused too, on the login page and on the API's token endpoint; another username
from the same address still logs in."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

WRONG_TRIES = 30


@pytest.fixture(autouse=True)
def users(django_user_model):
    django_user_model.objects.create_user("ada", password="correct-horse-9")
    django_user_model.objects.create_user("bob", password="battery-staple-9")


def page_login(client: Client, username: str, password: str):
    return client.post("/accounts/login/", {"username": username, "password": password})


def token_login(client: Client, username: str, password: str):
    return client.post("/api/auth/token/", {"username": username, "password": password}, content_type="application/json")


def test_the_login_page_locks_a_username_after_repeated_failures():
    client = Client()
    statuses = [page_login(client, "ada", "wrong-password").status_code for _ in range(WRONG_TRIES)]
    assert statuses[:9] == [200] * 9  # the form again, with its error
    assert set(statuses[10:]) == {429}
    response = page_login(client, "ada", "correct-horse-9")
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert "_auth_user_id" not in client.session
    assert client.get("/").status_code == 302  # still not logged in
    # Another account from the same address is not locked.
    assert page_login(Client(), "bob", "battery-staple-9").status_code == 302


def test_the_token_endpoint_locks_a_username_after_repeated_failures():
    client = Client()
    statuses = [token_login(client, "ada", "wrong-password").status_code for _ in range(WRONG_TRIES)]
    assert statuses[:9] == [400] * 9
    assert set(statuses[10:]) == {429}
    response = token_login(client, "ada", "correct-horse-9")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "locked_out"
    assert "token" not in response.json()
    assert token_login(Client(), "bob", "battery-staple-9").status_code == 200


def test_a_few_failures_then_the_right_password_logs_in():
    client = Client()
    for _ in range(5):
        assert page_login(client, "ada", "wrong-password").status_code == 200
    assert page_login(client, "ada", "correct-horse-9").status_code == 302
    assert token_login(Client(), "ada", "correct-horse-9").status_code == 200


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_a_username_longer_than_the_throttles_column_is_a_failed_login(url):
    """Failed logins are recorded under their username (a varchar(255)): a longer one from the login
    page or the admin's was a 500; it is a failed login, counted towards the lockout like any other."""
    long_name = "a" * 1000
    statuses = [Client().post(url, {"username": long_name, "password": "x"}).status_code for _ in range(WRONG_TRIES)]
    assert statuses[:9] == [200] * 9
    assert set(statuses[10:]) == {429}
    assert page_login(Client(), "ada", "correct-horse-9").status_code == 302
