"""A NUL character in a query string is a 400 everywhere, the admin's filters and search included."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.org", "a-long-password-1")
    client.force_login(user)
    return client


@pytest.mark.parametrize("url", ["/admin/runs/run/?status=%00", "/admin/runs/run/?q=%00", "/admin/auth/user/?q=a%00b",
                                 "/admin/runs/run/?%00=1", "/runs/?q=%00"])
def test_a_nul_in_the_query_string_is_a_400_page(staff_client, url):
    response = staff_client.get(url)
    assert response.status_code == 400 and b"NUL" in response.content


def test_a_nul_in_an_api_query_is_a_400_in_the_api_shape(staff_client):
    response = staff_client.get("/api/runs/?q=%00")
    assert response.status_code == 400 and response["Content-Type"].startswith("application/json")
    assert set(response.json()["error"]) == {"code", "message", "fields"}


def test_the_admin_still_filters_without_nul(staff_client):
    assert staff_client.get("/admin/runs/run/?q=abc").status_code == 200
