"""Start-up checks of the environment: one clear message naming the variable, never a traceback."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

import dj_database_url


class StartupError(Exception):
    """The environment cannot work; ``variable`` names the setting to fix."""

    def __init__(self, variable: str, message: str):
        self.variable = variable
        super().__init__(f"{variable}: {message}")


def parse_database_url(value: str) -> dict:
    """Django DATABASES entry from ``DATABASE_URL``; only PostgreSQL (and sqlite) are accepted."""
    parsed = urlparse(value)
    if parsed.scheme not in ("postgres", "postgresql", "pgsql", "sqlite"):
        raise StartupError(
            "DATABASE_URL",
            f"expected postgres://user:password@host:port/name, got scheme {parsed.scheme or '(none)'!r}",
        )
    if parsed.scheme != "sqlite" and not (parsed.hostname and parsed.path.strip("/")):
        raise StartupError("DATABASE_URL", "needs a host and a database name: postgres://user:password@host:port/name")
    try:
        # conn_max_age=0: under ASGI each request runs in its own thread, so kept connections would pile up.
        return dj_database_url.parse(value, conn_max_age=0)
    except ValueError as error:
        raise StartupError("DATABASE_URL", f"cannot be parsed: {error}") from None


def parse_redis_url(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise StartupError("REDIS_URL", f"expected redis://host:port/db, got {value!r}")
    try:
        parsed.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise StartupError("REDIS_URL", f"has an invalid port: {value!r}") from None
    return value


def _tcp_reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_services(database: dict, redis_url: str | None) -> None:
    """Fail fast when the configured PostgreSQL or Redis cannot be reached."""
    if database.get("ENGINE", "").endswith("postgresql"):
        host, port = database.get("HOST") or "localhost", int(database.get("PORT") or 5432)
        if not _tcp_reachable(host, port):
            raise StartupError("DATABASE_URL", f"no PostgreSQL server answers at {host}:{port}")
    if redis_url:
        import redis

        try:
            redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2).ping()
        except redis.RedisError as error:
            parsed = urlparse(redis_url)
            raise StartupError("REDIS_URL", f"no Redis server answers at {parsed.hostname}:{parsed.port or 6379} ({error})") from None
