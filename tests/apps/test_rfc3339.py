"""rfc3339: the one form of a time clients see, checked against the straightforward definition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from syncline.apps.times import rfc3339


def by_definition(moment: datetime) -> str:
    """UTC, seconds, a fraction without trailing zeros (none when whole), +00:00."""
    utc = moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    text = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
    text += f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "+00:00"


@given(
    st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30)),
    st.one_of(st.none(), st.integers(-14 * 60, 14 * 60)),
)
def test_rfc3339_is_the_definition(naive: datetime, offset_minutes: int | None) -> None:
    # None: a naive time (taken as UTC); else an aware one at that offset (0 is UTC itself).
    moment = naive
    if offset_minutes is not None:
        zone = UTC if offset_minutes == 0 else timezone(timedelta(minutes=offset_minutes))
        moment = naive.replace(tzinfo=zone)
    assert rfc3339(moment) == by_definition(moment)


def test_rfc3339_examples() -> None:
    paris = timezone(timedelta(hours=1))
    assert rfc3339(datetime(2026, 11, 23, 20, 4, 4, 120000, tzinfo=paris)) == (
        "2026-11-23T19:04:04.12+00:00"
    )
    assert rfc3339(datetime(2026, 11, 23, 19, 4, 4, tzinfo=UTC)) == "2026-11-23T19:04:04+00:00"
    assert rfc3339(datetime(2026, 11, 23, 19, 4, 4, 1)) == "2026-11-23T19:04:04.000001+00:00"
