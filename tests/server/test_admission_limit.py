"""The admission limit of one process (:class:`authserver.server.guard.AdmissionLimit`): how many
requests it lets queue for the event loop, adapted to how long they wait there.

Times are passed in (seconds on one monotonic clock): these read as the rules themselves.
"""

from __future__ import annotations

import pytest

from authserver.server.guard import CUT, MIN_LIMIT, START_LIMIT, AdmissionLimit

TARGET = 0.005  # seconds a ready request may wait


def test_it_starts_at_the_start_limit_and_a_fixed_limit_never_moves() -> None:
    assert AdmissionLimit(512, TARGET).value == START_LIMIT
    fixed = AdmissionLimit(100, 0.0)  # no queue-delay target: the ceiling, always
    assert fixed.value == 100
    fixed.observe(1.0, now=1.0)
    assert fixed.value == 100


def test_no_ceiling_is_no_limit_whatever_the_delays() -> None:
    off = AdmissionLimit(0, TARGET)  # AUTHSERVER_MAX_IN_FLIGHT=0: admission control off
    for i in range(10):
        off.observe(1.0, now=float(i))
    assert off.value == float("inf")


def test_a_ceiling_under_the_start_and_floor_is_the_limit() -> None:
    one = AdmissionLimit(1, TARGET)
    assert one.value == 1
    one.observe(0.0, now=0.0)
    one.observe(1.0, now=1.0)
    assert one.value == 1


def test_requests_that_start_within_the_target_raise_it_about_one_per_limits_worth() -> None:
    limit = AdmissionLimit(512, TARGET)
    for i in range(START_LIMIT):
        limit.observe(0.001, now=i * 0.001)
    assert START_LIMIT + 0.9 < limit.value < START_LIMIT + 1.0


def test_from_the_ceiling_a_storm_cuts_it_down_within_ten_windows() -> None:
    limit = AdmissionLimit(512, TARGET)
    for i in range(300_000):  # a calm process: every handler starts at once
        limit.observe(0.0, now=i * 0.001)
    assert limit.value == 512
    for turn in range(10):  # then every turn of the loop too slow: one cut each
        limit.observe(0.040, now=400.0 + turn * 0.050)
    assert limit.value == pytest.approx(512 * CUT**10) and limit.value < 60


def test_it_grows_no_higher_than_the_ceiling() -> None:
    limit = AdmissionLimit(40, TARGET)
    for i in range(10_000):
        limit.observe(0.0, now=i * 0.001)
    assert limit.value == 40


def test_a_request_that_waited_longer_cuts_it_once_per_window() -> None:
    limit = AdmissionLimit(512, TARGET)
    limit.observe(0.050, now=10.0)  # ready at 9.95
    assert limit.value == pytest.approx(START_LIMIT * CUT)
    # the rest of the same slow turn of the loop (ready before that cut): one signal, not one cut each
    for k in range(100):
        limit.observe(0.050 + k * 0.0001, now=10.0 + k * 0.0001)
    assert limit.value == pytest.approx(START_LIMIT * CUT)
    # a request that became ready after the cut and still waited too long: the next window, one more cut
    limit.observe(0.020, now=10.030)  # ready at 10.010
    assert limit.value == pytest.approx(START_LIMIT * CUT * CUT)


def test_it_is_never_cut_below_the_floor() -> None:
    limit = AdmissionLimit(512, TARGET)
    for i in range(100):
        limit.observe(1.0, now=i * 2.0)
    assert limit.value == MIN_LIMIT


def test_after_a_storm_it_grows_back() -> None:
    limit = AdmissionLimit(512, TARGET)
    for i in range(100):
        limit.observe(1.0, now=i * 2.0)
    for i in range(2_000):
        limit.observe(0.0, now=300 + i * 0.001)
    assert limit.value > START_LIMIT
