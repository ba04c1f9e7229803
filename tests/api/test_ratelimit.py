"""Rate limits over a real server: per IP, per conversation token, new conversations; in-process
and in the real Redis (shared by two app instances)."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from copines.api.ratelimit import MemoryLimiter, Rule
from copines.privacy import hash_ip, load_keys, reopen_token
from copines.store import create_store

LIMITED = {"rate_per_minute": 3, "rate_per_day_ip": 100, "rate_new_conversations_per_hour": 50}


async def _ip_key(settings) -> bytes:
    async with create_store(settings) as store:
        return (await load_keys(store, settings)).ip


async def _link_key(settings) -> bytes:
    async with create_store(settings) as store:
        return (await load_keys(store, settings)).link


def send(url: str, message: str = "Bonjour, une question ?", turn: dict | None = None, ip=None):
    body: dict = {"message": message}
    headers = {}
    if turn:
        body["conversation_id"] = turn["conversation_id"]
        headers["X-Conversation-Token"] = turn["token"]
    if ip:
        headers["X-Forwarded-For"] = ip
    return httpx.post(f"{url}/api/chat", json=body, headers=headers, timeout=30)


def assert_limited(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    wait = int(response.headers["Retry-After"])
    assert 0 < wait <= 86400
    assert response.json()["detail"]
    return wait


def test_the_ip_limit_survives_a_new_conversation(serve, api_settings):
    with serve(api_settings(**LIMITED)) as server:
        turn = send(server.url).json()
        assert send(server.url, turn=turn).status_code == 200
        assert send(server.url, turn=turn).status_code == 200
        wait = assert_limited(send(server.url, turn=turn))
        assert wait <= 60
        assert "minute" in send(server.url, turn=turn).json()["detail"]
        # A fresh conversation (a new token) does not reset the IP's count.
        assert_limited(send(server.url))
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'copines_rate_limited_total{rule="ip_minute"}' in metrics


def test_new_conversations_per_hour(serve, api_settings):
    settings = api_settings(
        rate_per_minute=50, rate_per_day_ip=100, rate_new_conversations_per_hour=2
    )
    with serve(settings) as server:
        first = send(server.url).json()
        assert send(server.url).status_code == 200
        refused = send(server.url)
        wait = assert_limited(refused)
        assert 60 < wait <= 3600
        assert "nouvelles conversations" in refused.json()["detail"]
        # An existing conversation carries on.
        assert send(server.url, turn=first).status_code == 200


def test_the_daily_ip_limit(serve, api_settings):
    settings = api_settings(rate_per_minute=50, rate_per_day_ip=2)
    with serve(settings) as server:
        turn = send(server.url).json()
        assert send(server.url, turn=turn).status_code == 200
        refused = send(server.url, turn=turn)
        assert assert_limited(refused) > 3600
        assert "aujourd'hui" in refused.json()["detail"]


def test_the_token_limit_holds_across_addresses(serve, api_settings):
    # Behind a trusted proxy each visitor has her address; one token still counts once.
    settings = api_settings(trust_forwarded_for=True, **LIMITED)
    with serve(settings) as server:
        turn = send(server.url, ip="203.0.113.1").json()
        assert send(server.url, turn=turn, ip="203.0.113.2").status_code == 200
        assert send(server.url, turn=turn, ip="203.0.113.3").status_code == 200
        assert_limited(send(server.url, turn=turn, ip="203.0.113.4"))
        # Another visitor (another address, no token) is not affected.
        assert send(server.url, ip="203.0.113.5").status_code == 200


def test_reply_links_share_the_conversation_limit_with_her_token(serve, api_settings):
    # Each reply's link is another credential of the same conversation: none brings a fresh
    # budget, whatever the address it comes from.
    settings = api_settings(trust_forwarded_for=True, **LIMITED)
    with serve(settings) as server:
        turn = send(server.url, ip="203.0.113.1").json()
        key = asyncio.run(_link_key(settings))
        cid = turn["conversation_id"]
        links = [
            {"conversation_id": cid, "token": reopen_token(key, cid, days=30, now=time.time() - i)}
            for i in range(3)
        ]
        assert send(server.url, turn=links[0], ip="203.0.113.2").status_code == 200
        assert send(server.url, turn=links[1], ip="203.0.113.3").status_code == 200
        assert_limited(send(server.url, turn=links[2], ip="203.0.113.4"))
        assert_limited(send(server.url, turn=turn, ip="203.0.113.5"))
        # A wrong credential is still a 404 (and counted against its address only).
        wrong = {"conversation_id": cid, "token": "x" * 40}
        assert send(server.url, turn=wrong, ip="203.0.113.6").status_code == 404


async def test_refused_hits_are_not_counted():
    now = [0.0]
    limiter = MemoryLimiter(clock=lambda: now[0])
    minute = Rule("m", "k", 2, 60)
    day = Rule("d", "d", 3, 86400)
    assert await limiter.acquire([minute, day]) is None
    assert await limiter.acquire([minute, day]) is None
    refusal = await limiter.acquire([minute, day])
    assert refusal is not None and refusal.rule.name == "m" and refusal.retry_after == 60
    now[0] = 61.0  # the minute window ends; the refusals did not eat the daily budget
    assert await limiter.acquire([minute, day]) is None
    refusal = await limiter.acquire([minute, day])
    assert refusal is not None and refusal.rule.name == "d"


@pytest.fixture
def redis_prefix():
    """A key prefix of its own in the real Redis, removed afterwards."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    prefix = f"copines-test:{uuid.uuid4().hex}:"
    yield prefix
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_redis_limits_are_shared_by_two_app_instances(serve, api_settings, redis_prefix):
    settings = api_settings(
        redis_url="redis://127.0.0.1:6379/0", rate_limit_prefix=redis_prefix, **LIMITED
    )
    with serve(settings) as one, serve(settings) as two:
        turn = send(one.url).json()
        assert send(two.url, turn=turn).status_code == 200
        assert send(one.url, turn=turn).status_code == 200
        # Three messages from this address across both instances: both refuse the fourth.
        assert_limited(send(two.url, turn=turn))
        assert_limited(send(one.url))
        ready = httpx.get(f"{one.url}/readyz").json()
        assert ready["checks"]["redis"] is True

    import redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        keys = [k.decode() for k in client.scan_iter(match=redis_prefix + "*")]
        assert any(k.endswith(":m") for k in keys)
        assert all(0 < client.pttl(k) <= 86_400_000 for k in keys)
        # The address is kept only as its keyed hash, never in clear.
        assert not any("127.0.0.1" in k for k in keys), keys
        assert any(hash_ip(asyncio.run(_ip_key(settings)), "127.0.0.1") in k for k in keys), keys
    finally:
        client.close()


def test_an_unreachable_redis_does_not_take_the_chat_down(serve, api_settings):
    settings = api_settings(redis_url="redis://127.0.0.1:1/0", **LIMITED)
    with serve(settings) as server:
        turn = send(server.url)
        assert turn.status_code == 200, turn.text
        # The limits still hold, counted in the process.
        assert send(server.url, turn=turn.json()).status_code == 200
        assert send(server.url, turn=turn.json()).status_code == 200
        assert_limited(send(server.url, turn=turn.json()))
        assert httpx.get(f"{server.url}/readyz").json()["checks"]["redis"] is False
