"""The suite talks to the real PostgreSQL and Redis: these fail (not skip) when either is down."""

import asyncio

import pytest
import redis
from channels.layers import get_channel_layer
from django.db import connection


@pytest.mark.django_db
def test_database_is_a_real_postgresql_server():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        (version,) = cursor.fetchone()
    assert version.startswith("PostgreSQL")


def test_redis_answers_and_stores(redis_url):
    client = redis.Redis.from_url(redis_url)
    assert client.ping() is True
    client.set("duda-test-key", "42", ex=10)
    assert client.get("duda-test-key") == b"42"


def test_channel_layer_goes_through_redis():
    layer = get_channel_layer()
    assert type(layer).__module__.startswith("channels_redis")

    async def roundtrip():
        channel = await layer.new_channel()
        await layer.group_add("foundation-test", channel)
        await layer.group_send("foundation-test", {"type": "run.metrics", "step": 7})
        message = await asyncio.wait_for(layer.receive(channel), timeout=5)
        await layer.group_discard("foundation-test", channel)
        return message

    assert asyncio.run(roundtrip()) == {"type": "run.metrics", "step": 7}


@pytest.mark.django_db
def test_home_requires_login(client, django_user_model):
    assert client.get("/").status_code == 302
    django_user_model.objects.create_user("ada", password="correct-horse")
    client.login(username="ada", password="correct-horse")
    assert client.get("/").status_code == 200
