"""The login throttle shared through Redis (sharedthrottle.py), on a real redis-server: attempts are
counted before their passwords are checked, in one step with the check, for every worker at once;
what was not a wrong password is given back; and memory stands in while Redis does not answer."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from authserver.errors import RateLimitedError
from authserver.infra.guards import Attempt
from authserver.infra.redislink import RedisLink
from authserver.infra.sharedthrottle import SharedThrottle

from helpers import FakeClock

pytestmark = pytest.mark.anyio


@pytest.fixture
async def links(redis_url: str) -> AsyncIterator[list[RedisLink]]:
    """Two links to one Redis: two workers (or machines)."""
    made = [RedisLink(redis_url), RedisLink(redis_url)]
    yield made
    for link in made:
        await link.close()


def throttle(link: RedisLink, per_address: int = 50, per_user_address: int = 10, window: int = 300) -> SharedThrottle:
    return SharedThrottle(link, per_address=per_address, per_user_address=per_user_address, window=window)


async def counted(logins: SharedThrottle, username: str, address: str, now: float) -> Attempt | None:
    try:
        return await logins.attempt(username, address, now)
    except RateLimitedError:
        return None


async def test_a_burst_on_two_workers_counts_exactly_the_limit(links: list[RedisLink], clock: FakeClock) -> None:
    workers = [throttle(link) for link in links]
    burst = [counted(workers[n % 2], "alice", "10.0.0.1", clock()) for n in range(40)]
    attempts = await asyncio.gather(*burst)
    assert sum(attempt is not None for attempt in attempts) == 10
    assert all(attempt.shared for attempt in attempts if attempt is not None)


async def test_an_attempt_not_checked_is_given_back_on_any_worker(links: list[RedisLink], clock: FakeClock) -> None:
    first, second = throttle(links[0], per_user_address=2), throttle(links[1], per_user_address=2)
    unchecked = await first.attempt("alice", "10.0.0.1", clock())
    await second.attempt("alice", "10.0.0.1", clock())
    with pytest.raises(RateLimitedError, match="try again in 5 minutes") as refused:
        await second.attempt("ALICE", "10.0.0.1", clock())  # usernames count case-insensitively
    assert (refused.value.code, refused.value.status) == (42910, 429)
    await first.give_back(unchecked)
    await second.attempt("alice", "10.0.0.1", clock())
    await second.attempt("alice", "10.0.0.2", clock())  # nobody can lock alice out from elsewhere


async def test_successes_never_count_against_the_address_and_clear_the_usernames_failures(
    links: list[RedisLink], clock: FakeClock
) -> None:
    logins = throttle(links[0], per_address=3, per_user_address=2)
    for n in range(10):  # many users behind one NAT
        await logins.succeeded(await logins.attempt(f"user{n}", "10.0.0.1", clock()))
    await logins.attempt("alice", "10.0.0.1", clock())
    await logins.succeeded(await logins.attempt("alice", "10.0.0.1", clock()))
    await logins.attempt("alice", "10.0.0.1", clock())  # alice's failure before her success is forgotten...
    await logins.attempt("bob", "10.0.0.1", clock())
    with pytest.raises(RateLimitedError):  # ...but not the address's: 3 failures from it now
        await logins.attempt("carol", "10.0.0.1", clock())


async def test_failures_older_than_the_window_no_longer_count(links: list[RedisLink], clock: FakeClock) -> None:
    logins = throttle(links[0], per_user_address=1, window=60)
    await logins.attempt("alice", "10.0.0.1", clock())
    with pytest.raises(RateLimitedError, match="try again in 1 minute$"):
        await logins.attempt("alice", "10.0.0.1", clock() + 59)
    await logins.attempt("alice", "10.0.0.1", clock() + 60)


# --- Redis not answering: memory stands in --------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local port that is bound but never listens: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_with_redis_away_attempts_are_counted_in_memory_and_never_fail(
    silent_port: int, clock: FakeClock
) -> None:
    failures: list[str] = []
    link = RedisLink(f"redis://127.0.0.1:{silent_port}/0", clock=clock, on_error=failures.append)
    try:
        logins = throttle(link, per_user_address=2)
        first = await logins.attempt("alice", "10.0.0.1", clock())
        await logins.attempt("alice", "10.0.0.1", clock())
        with pytest.raises(RateLimitedError):
            await logins.attempt("alice", "10.0.0.1", clock())
        assert not first.shared and not link.available and failures == ["limits"]
        await logins.give_back(first)  # given back where it was counted
        await logins.attempt("alice", "10.0.0.1", clock())
    finally:
        await link.close()
