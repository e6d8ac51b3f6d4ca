"""A NUL character in an admin query string is a 400 (the app's own pages and API name the parameter:
tests/webapp/runs/test_inputs.py)."""

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
                                 "/admin/runs/run/?%00=1"])
def test_a_nul_in_the_query_string_is_a_400_page(staff_client, url):
    response = staff_client.get(url)
    assert response.status_code == 400 and b"NUL" in response.content


def test_the_admin_still_filters_without_nul(staff_client):
    assert staff_client.get("/admin/runs/run/?q=abc").status_code == 200
