"""The offset to Ably's clock (timesync.py): measured at the midpoint of a request, applied to the
clock issuance reads, and judged against the largest offset the operator accepts."""

from __future__ import annotations

import pytest

from authserver.infra.timesync import ClockOffset

from helpers import FakeClock


def test_until_measured_the_clock_is_this_hosts_and_there_is_no_problem(clock: FakeClock) -> None:
    offset = ClockOffset(clock)
    assert (offset.offset, offset.measured) == (0.0, False)
    assert offset.now() == clock()
    assert offset.problem(0.0) is None


@pytest.mark.parametrize(
    ("sent", "received", "ably_ms", "expected"),
    [
        (1000.0, 1000.2, 1_000_100, 0.0),  # Ably answered at the midpoint of the request: in step
        (1000.0, 1000.2, 1_002_100, 2.0),  # Ably is 2 s ahead
        (1000.0, 1001.0, 997_500, -3.0),  # Ably is 3 s behind; a slow round trip does not matter
        (1000.0, 1000.0, 1_000_000, 0.0),
    ],
)
def test_a_measurement_is_ablys_time_less_the_midpoint_of_the_request(
    clock: FakeClock, sent: float, received: float, ably_ms: int, expected: float
) -> None:
    offset = ClockOffset(clock)
    assert offset.record(sent=sent, received=received, ably_ms=ably_ms) == pytest.approx(expected)
    assert offset.offset == pytest.approx(expected)
    assert offset.measured


def test_the_corrected_clock_follows_this_hosts_clock_plus_the_offset(clock: FakeClock) -> None:
    offset = ClockOffset(clock)
    offset.record(sent=clock(), received=clock(), ably_ms=int(clock() * 1000) + 4_000)
    assert offset.now() == pytest.approx(clock() + 4.0)
    clock.advance(60)
    assert offset.now() == pytest.approx(clock() + 4.0)


def test_the_latest_measurement_replaces_the_one_before(clock: FakeClock) -> None:
    offset = ClockOffset(clock)
    offset.record(sent=100.0, received=100.0, ably_ms=110_000)
    offset.record(sent=200.0, received=200.0, ably_ms=199_000)
    assert offset.offset == pytest.approx(-1.0)
    assert offset.now() == pytest.approx(clock() - 1.0)


@pytest.mark.parametrize("measured", [0.0, 29.9, -29.9, 30.0, -30.0])
def test_an_offset_within_the_limit_is_no_problem(clock: FakeClock, measured: float) -> None:
    offset = ClockOffset(clock)
    offset.record(sent=1000.0, received=1000.0, ably_ms=round((1000.0 + measured) * 1000))
    assert offset.problem(30) is None


@pytest.mark.parametrize(("measured", "shown"), [(45.0, "+45.0 s"), (-31.5, "-31.5 s")])
def test_an_offset_beyond_the_limit_is_a_problem_that_says_how_far_and_what_to_fix(
    clock: FakeClock, measured: float, shown: str
) -> None:
    offset = ClockOffset(clock)
    offset.record(sent=1000.0, received=1000.0, ably_ms=round((1000.0 + measured) * 1000))
    problem = offset.problem(30)
    assert problem is not None
    assert f"this host's clock is {shown} off Ably's (more than 30 s)" in problem
    assert "NTP" in problem


def test_an_offset_set_by_hand_is_no_problem_until_a_measurement_says_so(clock: FakeClock) -> None:
    offset = ClockOffset(clock)
    offset.offset = 3600.0  # e.g. a test pinning the clock: not a measurement
    assert offset.problem(30) is None
    assert offset.now() == clock() + 3600.0
