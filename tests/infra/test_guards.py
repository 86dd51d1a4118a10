"""Flood protection for /login: the failure throttle and the password-hashing gate."""

from __future__ import annotations

import asyncio

import pytest

from authserver.errors import RateLimitedError, UnavailableError
from authserver.infra.guards import ConcurrencyGate, LoginThrottle


def test_throttle_refuses_a_username_from_an_address_after_its_failures() -> None:
    throttle = LoginThrottle(per_address=50, per_user_address=3, window=60)
    for second in range(3):
        throttle.check("alice", "10.0.0.1", float(second))
        throttle.failed("alice", "10.0.0.1", float(second))
    with pytest.raises(RateLimitedError):
        throttle.check("alice", "10.0.0.1", 3.0)
    throttle.check("ALICE", "10.0.0.2", 3.0)  # another address is not locked out with it
    throttle.check("bob", "10.0.0.1", 3.0)


def test_throttle_refuses_an_address_that_fails_for_many_usernames() -> None:
    throttle = LoginThrottle(per_address=5, per_user_address=3, window=60)
    for n in range(5):
        throttle.failed(f"user{n}", "10.0.0.1", 1.0)
    with pytest.raises(RateLimitedError):
        throttle.check("someone-else", "10.0.0.1", 2.0)


def test_throttle_forgets_failures_after_the_window_and_on_success() -> None:
    throttle = LoginThrottle(per_address=50, per_user_address=2, window=60)
    throttle.failed("alice", "a", 0.0)
    throttle.failed("alice", "a", 1.0)
    throttle.check("alice", "a", 61.5)  # both failures are older than the window
    throttle.failed("alice", "a", 70.0)
    throttle.succeeded("alice", "a")
    throttle.failed("alice", "a", 71.0)
    throttle.check("alice", "a", 72.0)


def test_throttle_memory_is_bounded() -> None:
    throttle = LoginThrottle(max_keys=10)
    for n in range(1000):
        throttle.failed(f"user{n}", f"addr{n}", 0.0)
    assert len(throttle._failures) <= 10 + 2


def test_gate_runs_at_most_its_slots_at_once_and_refuses_beyond_its_queue() -> None:
    async def scenario() -> tuple[int, int]:
        gate = ConcurrencyGate(slots=2, queue=2)
        running = peak = 0
        release = asyncio.Event()

        async def work() -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await release.wait()
            running -= 1

        tasks = [asyncio.create_task(gate.run(work)) for _ in range(4)]  # 2 run, 2 wait
        await asyncio.sleep(0.01)
        with pytest.raises(UnavailableError):
            await gate.run(work)
        release.set()
        await asyncio.gather(*tasks)
        await gate.run(work)  # free again afterwards
        return peak, running

    assert asyncio.run(scenario()) == (2, 0)
