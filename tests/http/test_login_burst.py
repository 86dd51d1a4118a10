"""The login throttle holds under a burst: a guess is counted before its password is checked, so
concurrent guesses at one account cannot slip past the limit while earlier ones are still being
verified (10 failures per username and address, 50 per address, per 5 minutes by default).

In one process the limit is this process's; with ``serve --workers 2`` it is each worker's unless
Redis shares the counts, and then it holds across every worker. On top of the count, at most 2
logins from one address are in flight at once per process: the rest of a burst is refused (429)
before it is counted. A guess refused before its check (503) is given back.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections import Counter
from pathlib import Path

import httpx
import pytest
from realservers import Redis

from authserver.app import create_app
from authserver.identity.passwords import Passwords
from authserver.infra.guards import ConcurrencyGate

from conftest import SettingsFactory
from helpers import API_KEY, AUTHSERVER, SESSION_SECRET, running_authserver, running_server

BURST = 80
PER_USER_ADDRESS = 10


async def burst(url: str, *, username: str = "alice", count: int = BURST) -> Counter[int]:
    """``count`` wrong passwords for ``username`` at once, from one address; the answers' statuses."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        answers = await asyncio.gather(
            *(client.post("/login", json={"username": username, "password": f"guess-{n}"}) for n in range(count))
        )
    return Counter(answer.status_code for answer in answers)


def add_account(env: dict[str, str], cwd: Path, name: str = "alice") -> None:
    result = subprocess.run(
        [AUTHSERVER, "users", "add", name],
        input="correct horse battery\n",
        text=True,
        env=env,
        cwd=cwd,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def assert_held(statuses: Counter[int], checked_at_most: int) -> None:
    # 401: a password was checked and was wrong. Every other guess is refused before any check:
    # 429 (over the limit) or 503 (too many checks in flight); never a success or a 500.
    assert set(statuses) <= {401, 429, 503}, statuses
    assert statuses[401] <= checked_at_most, f"{statuses[401]} of {BURST} guesses were checked: {statuses}"
    assert statuses[429] > 0


def test_a_burst_of_guesses_at_one_account_is_checked_at_most_up_to_the_limit(
    make_settings: SettingsFactory, fast_passwords: Passwords
) -> None:
    # Slow checks, as real argon2id is: the burst is all in flight before the first one ends.
    slow = Passwords(time_cost=3, memory_cost=65536, parallelism=1)
    app = create_app(make_settings(), passwords=slow)
    with running_server(app) as url:
        statuses = asyncio.run(burst(url))
    assert_held(statuses, PER_USER_ADDRESS)


def test_without_the_in_flight_cap_the_count_alone_holds_a_burst_to_the_limit(make_settings: SettingsFactory) -> None:
    slow = Passwords(time_cost=3, memory_cost=65536, parallelism=1)
    gate = ConcurrencyGate(slots=2, queue=BURST, per_address=BURST)  # every guess admitted and queued
    app = create_app(make_settings(), passwords=slow, login_gate=gate)
    with running_server(app) as url:
        statuses = asyncio.run(burst(url))
    assert statuses == Counter({429: BURST - PER_USER_ADDRESS, 401: PER_USER_ADDRESS})


def test_guesses_refused_before_their_check_are_given_back(
    make_settings: SettingsFactory, fast_passwords: Passwords
) -> None:
    gate = ConcurrencyGate(slots=1, queue=0, per_address=BURST)  # one check at a time, nobody waits: 503
    app = create_app(make_settings(), passwords=fast_passwords, login_gate=gate)
    with running_server(app) as url:
        statuses = asyncio.run(burst(url, count=30))
        sequential = [
            httpx.post(f"{url}/login", json={"username": "alice", "password": "guess"}).status_code
            for _ in range(PER_USER_ADDRESS + 1)
        ]
    assert statuses[503] > 0 and statuses[401] < PER_USER_ADDRESS
    assert sequential == [401] * (PER_USER_ADDRESS - statuses[401]) + [429] * (statuses[401] + 1)


def test_bursts_get_exactly_the_limit_checked_and_then_even_the_right_password_waits(
    make_settings: SettingsFactory, fast_passwords: Passwords, tmp_path: Path
) -> None:
    settings = make_settings()
    add_account(served_env(tmp_path), tmp_path)  # into the database of make_settings (the same tmp_path)
    app = create_app(settings, passwords=fast_passwords)
    checked = 0
    with running_server(app) as url:
        for _ in range(BURST):  # each burst gets at least its first guess checked, until the limit
            checked += asyncio.run(burst(url, count=20))[401]
            if checked >= PER_USER_ADDRESS:
                break
        assert asyncio.run(burst(url, count=20))[401] == 0
        right = httpx.post(f"{url}/login", json={"username": "alice", "password": "correct horse battery"})
    assert checked == PER_USER_ADDRESS
    assert right.status_code == 429


def served_env(workdir: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "ABLY_API_KEY": API_KEY,
        "SESSION_SECRET": SESSION_SECRET,
        "ABLY_REVOCABLE_TOKENS": "false",
        "AUTHSERVER_PORT": "0",
        "DATABASE_URL": f"sqlite:///{workdir}/authserver.db",
        **extra,
    }


@pytest.mark.parametrize("shared", [False, True], ids=["memory", "redis"])
def test_two_workers_hold_the_limit_per_worker_or_shared_through_redis(
    tmp_path: Path, shared: bool, request: pytest.FixtureRequest
) -> None:
    extra: dict[str, str] = {}
    if shared:
        redis: Redis = request.getfixturevalue("redis_server")
        extra["REDIS_URL"] = redis.url
    env = served_env(tmp_path, **extra)
    add_account(env, tmp_path)
    # Shared: the limit itself, across both workers. In memory: each worker's own count.
    limit = PER_USER_ADDRESS if shared else 2 * PER_USER_ADDRESS
    with running_authserver(["serve", "--workers", "2"], env=env, cwd=tmp_path, log=tmp_path / "serve.log") as serve:
        statuses = asyncio.run(burst(serve.url))
        assert_held(statuses, limit)
        checked = statuses[401]
        for _ in range(30):  # more bursts, until the limit is used up (in memory: maybe not on both workers)
            checked += asyncio.run(burst(serve.url, count=20))[401]
            if checked >= limit:
                break
        checked += asyncio.run(burst(serve.url, count=20))[401]  # and one more after
    if shared:
        assert checked == PER_USER_ADDRESS
    else:
        assert checked <= limit
