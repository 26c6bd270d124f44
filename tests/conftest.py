"""Session-wide fixtures: a real Redis for the store tests, Hypothesis profiles.

Redis comes from ``TARGETING_TEST_REDIS`` (set by ``scripts/test``), else from a
redis-server started here, else the test is skipped — except under ``CI``, where a
missing Redis fails loudly instead of silently skipping half the suite.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
import redis
from hypothesis import HealthCheck, settings
from redis_server import RedisServer, ping, redis_binary

settings.register_profile("dev", max_examples=50)
settings.register_profile("ci", max_examples=300, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def _no_redis(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: refusing to skip the Redis tests)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("TARGETING_TEST_REDIS")
    if url:
        if not ping(url):
            pytest.fail(f"TARGETING_TEST_REDIS={url} is not reachable", pytrace=False)
        yield url
        return
    if redis_binary() is None:
        _no_redis("redis-server not installed and TARGETING_TEST_REDIS not set")
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture
def fresh_redis(redis_url: str) -> str:
    """``redis_url`` with its database emptied before the test."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_url


@pytest.fixture
def redis_server_factory() -> Iterator[Callable[..., RedisServer]]:
    """Start private redis-servers (``factory(*extra_args)``); all are stopped after the test."""
    if redis_binary() is None:
        _no_redis("redis-server not installed")
    servers: list[RedisServer] = []

    def start(*args: str) -> RedisServer:
        server = RedisServer(*args)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.cleanup()
