"""``/favicon.ico`` (asked for by browsers on their own) leads to a real icon, and every page links it."""

from __future__ import annotations

import io

import pytest
from PIL import Image

pytestmark = pytest.mark.django_db


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_favicon_ico_is_an_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302 and response["Location"] == "/static/img/favicon.ico"
    icon = client.get(response["Location"])
    assert icon.status_code == 200
    image = Image.open(io.BytesIO(body(icon)))
    assert image.format == "ICO" and {(16, 16), (32, 32)} <= set(image.info["sizes"])


@pytest.mark.parametrize("url", ["/accounts/login/", "/runs/", "/runs/new/"])
def test_every_page_links_the_icon(client, django_user_model, url):
    client.force_login(django_user_model.objects.create_user("ann", password="ann-password"))
    page = client.get(url)
    assert page.status_code == 200
    assert '<link rel="icon" href="/static/img/favicon.ico"' in page.content.decode()
