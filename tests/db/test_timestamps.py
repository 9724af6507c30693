"""How rows write their times: RFC 3339 at millisecond precision, and durations that agree with
the timestamps they sit beside."""

from __future__ import annotations

import datetime as dt

from db.base import duration_ms, iso

START = dt.datetime(2026, 1, 1, 12, 0, 0, 999)  # 12:00:00.000999


def test_iso_writes_milliseconds_and_a_four_digit_year():
    assert iso(START) == "2026-01-01T12:00:00.000Z"
    assert iso(dt.datetime(870, 8, 6, 10, 0)) == "0870-08-06T10:00:00.000Z"
    assert iso("2026-01-01 12:00:00.123456") == "2026-01-01T12:00:00.123Z"
    assert iso(None) is None


def test_a_duration_is_what_its_two_timestamps_read():
    end = dt.datetime(2026, 1, 1, 12, 0, 0, 1_001)  # 2 µs later, but across a millisecond
    assert (iso(START), iso(end)) == ("2026-01-01T12:00:00.000Z", "2026-01-01T12:00:00.001Z")
    assert duration_ms(START, end) == 1
    assert duration_ms(START, START + dt.timedelta(hours=1, microseconds=2)) == 3_600_001
    assert duration_ms(dt.datetime(870, 1, 1), dt.datetime(870, 1, 2)) == 86_400_000


def test_no_duration_until_both_ends_are_known_and_never_a_negative_one():
    assert duration_ms(None, START) is None
    assert duration_ms(START, None) is None
    assert duration_ms(START, START - dt.timedelta(seconds=5)) == 0  # a clock stepped back
