"""Rate limits (ratelimits.py): the rate notation, moving-window counters in this process's memory,
the /auth limits on them, and the fall-back to memory when Redis does not answer (the login
throttle: test_sharedthrottle.py). Counting across instances on a real Redis is in test_redis.py."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from limits import RateLimitItemPerMinute

from authserver.errors import RateLimitedError
from authserver.infra.ratelimits import AuthLimits, Limiter, parse_rate
from authserver.infra.redislink import RedisLink

from helpers import FakeClock

pytestmark = pytest.mark.anyio


# --- parse_rate -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "amount", "seconds"),
    [("120/minute", 120, 60), ("1000/hour", 1000, 3600), ("10 per 5 minutes", 10, 300), ("3/second", 3, 1)],
)
def test_a_rate_is_read_in_the_limits_notation(text: str, amount: int, seconds: int) -> None:
    rate = parse_rate(text)
    assert (rate.amount, rate.get_expiry()) == (amount, seconds)


@pytest.mark.parametrize("text", ["", "fast", "120", "120/fortnight", "-1/minute"])
def test_anything_else_is_refused_naming_the_value_and_an_example(text: str) -> None:
    with pytest.raises(ValueError, match="is not a rate such as 120/minute") as refused:
        parse_rate(text)
    assert repr(text) in str(refused.value)


# --- Limiter in memory ----------------------------------------------------------------------------


async def test_hits_are_allowed_up_to_the_limit_then_refused() -> None:
    limiter = Limiter(None)
    rate = RateLimitItemPerMinute(3)
    assert [await limiter.hit(rate, "k") for _ in range(5)] == [True, True, True, False, False]


async def test_test_asks_without_counting() -> None:
    limiter = Limiter(None)
    rate = RateLimitItemPerMinute(1)
    assert all([await limiter.test(rate, "k") for _ in range(5)])
    assert await limiter.hit(rate, "k")
    assert not await limiter.test(rate, "k")


async def test_each_key_counts_on_its_own() -> None:
    limiter = Limiter(None)
    rate = RateLimitItemPerMinute(1)
    assert await limiter.hit(rate, "auth-id", "alice")
    assert not await limiter.hit(rate, "auth-id", "alice")
    assert await limiter.hit(rate, "auth-id", "bob")
    assert await limiter.hit(rate, "auth-addr", "alice")


async def test_clear_forgets_one_keys_hits() -> None:
    limiter = Limiter(None)
    rate = RateLimitItemPerMinute(1)
    await limiter.hit(rate, "a")
    await limiter.hit(rate, "b")
    await limiter.clear(rate, "a")
    assert await limiter.test(rate, "a")
    assert not await limiter.test(rate, "b")


# --- AuthLimits: /auth per identity and per address -----------------------------------------------


async def test_auth_is_limited_per_client_id_naming_the_limit() -> None:
    limits = AuthLimits(Limiter(None), per_identity=parse_rate("2/minute"), per_address=None)
    await limits.check("alice", "10.0.0.1")
    await limits.check("alice", "10.0.0.2")
    with pytest.raises(RateLimitedError) as refused:
        await limits.check("alice", "10.0.0.3")
    assert refused.value.message == "too many token requests for this clientId (limit 2 per 1 minute)"
    assert refused.value.code == 42910
    await limits.check("bob", "10.0.0.1")


async def test_auth_is_limited_per_address_naming_the_limit() -> None:
    limits = AuthLimits(Limiter(None), per_identity=None, per_address=parse_rate("2/hour"))
    await limits.check("alice", "10.0.0.1")
    await limits.check("bob", "10.0.0.1")
    with pytest.raises(RateLimitedError) as refused:
        await limits.check("carol", "10.0.0.1")
    assert refused.value.message == "too many token requests from this address (limit 2 per 1 hour)"
    await limits.check("carol", "10.0.0.2")


async def test_without_limits_auth_is_never_refused() -> None:
    limits = AuthLimits(Limiter(None), per_identity=None, per_address=None)
    for _ in range(50):
        await limits.check("alice", "10.0.0.1")


# --- Redis not answering: memory stands in --------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local port that is bound but never listens: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
async def absent_redis(silent_port: int, clock: FakeClock) -> AsyncIterator[RedisLink]:
    link = RedisLink(f"redis://127.0.0.1:{silent_port}/0", timeout=0.5, retry_after=1.0, clock=clock)
    yield link
    await link.close()


async def test_with_redis_away_hits_are_counted_in_memory_and_never_fail(absent_redis: RedisLink) -> None:
    failures: list[str] = []
    absent_redis.on_error = failures.append
    limiter = Limiter(absent_redis)
    rate = RateLimitItemPerMinute(2)
    assert [await limiter.hit(rate, "k") for _ in range(3)] == [True, True, False]
    assert not absent_redis.available
    assert failures[0] == "limits"


async def test_with_redis_away_it_is_asked_again_only_after_retry_after(
    absent_redis: RedisLink, clock: FakeClock
) -> None:
    failures: list[str] = []
    absent_redis.on_error = failures.append
    limiter = Limiter(absent_redis)
    rate = RateLimitItemPerMinute(100)
    await limiter.hit(rate, "k")
    for _ in range(5):
        await limiter.hit(rate, "k")
    assert failures == ["limits"]  # memory answered without waiting for Redis again
    clock.advance(1.0)
    assert await limiter.test(rate, "k")
    assert failures == ["limits", "limits"]
