"""Flood protection for /login: the failure throttle and the password-hashing gate."""

from __future__ import annotations

import asyncio

import pytest

from authserver.errors import RateLimitedError, UnavailableError
from authserver.infra.guards import ConcurrencyGate, LoginThrottle


def test_throttle_refuses_a_username_from_an_address_after_its_failures() -> None:
    throttle = LoginThrottle(per_address=50, per_user_address=3, window=60)
    for second in range(3):
        throttle.attempt("alice", "10.0.0.1", float(second))  # each a wrong password: left counted
    with pytest.raises(RateLimitedError):
        throttle.attempt("alice", "10.0.0.1", 3.0)
    throttle.attempt("ALICE", "10.0.0.2", 3.0)  # another address is not locked out with it
    throttle.attempt("bob", "10.0.0.1", 3.0)


def test_throttle_refuses_an_address_that_fails_for_many_usernames() -> None:
    throttle = LoginThrottle(per_address=5, per_user_address=3, window=60)
    for n in range(5):
        throttle.attempt(f"user{n}", "10.0.0.1", 1.0)
    with pytest.raises(RateLimitedError):
        throttle.attempt("someone-else", "10.0.0.1", 2.0)


def test_throttle_counts_attempts_still_being_checked_so_a_burst_cannot_pass_the_limit() -> None:
    throttle = LoginThrottle(per_address=50, per_user_address=10, window=60)
    in_flight = [throttle.attempt("alice", "10.0.0.1", 1.0) for _ in range(10)]  # none has an outcome yet
    with pytest.raises(RateLimitedError):
        throttle.attempt("alice", "10.0.0.1", 1.0)
    throttle.give_back(in_flight[0])  # that one was never checked (a 503, say)
    throttle.attempt("alice", "10.0.0.1", 1.0)


def test_a_success_is_given_back_so_it_never_counts_against_the_address() -> None:
    """Many users behind one NAT log in all day: only failures count against their address."""
    throttle = LoginThrottle(per_address=3, per_user_address=2, window=60)
    for n in range(10):
        throttle.succeeded(throttle.attempt(f"user{n}", "10.0.0.1", float(n)))
    for n in range(3):
        throttle.attempt(f"guess{n}", "10.0.0.1", 20.0)
    with pytest.raises(RateLimitedError):
        throttle.attempt("user0", "10.0.0.1", 21.0)


def test_throttle_forgets_failures_after_the_window_and_on_success() -> None:
    throttle = LoginThrottle(per_address=50, per_user_address=2, window=60)
    throttle.attempt("alice", "a", 0.0)
    throttle.attempt("alice", "a", 1.0)
    throttle.attempt("alice", "a", 61.5)  # both failures are older than the window
    throttle.succeeded(throttle.attempt("alice", "a", 70.0))  # the right password: alice's failures are forgotten
    throttle.attempt("alice", "a", 71.0)
    throttle.attempt("alice", "a", 72.0)
    with pytest.raises(RateLimitedError):
        throttle.attempt("alice", "a", 73.0)


def test_throttle_memory_is_bounded() -> None:
    throttle = LoginThrottle(max_keys=10)
    for n in range(1000):
        throttle.attempt(f"user{n}", f"addr{n}", 0.0)
    assert len(throttle._attempts) <= 10 + 2


def test_the_gate_admits_a_few_logins_at_once_from_one_address() -> None:
    gate = ConcurrencyGate(slots=4, queue=4, per_address=2)
    with gate.admit("10.0.0.1"), gate.admit("10.0.0.1"):
        with pytest.raises(RateLimitedError, match="too many logins at once from this address"):
            with gate.admit("10.0.0.1"):
                pass
        with gate.admit("10.0.0.2"):  # another address is not held up
            pass
    with gate.admit("10.0.0.1"):  # free again once they end
        pass


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
