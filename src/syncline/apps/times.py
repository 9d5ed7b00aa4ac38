"""One form for every time a client sees: RFC 3339 in UTC as PostgreSQL's to_jsonb() writes
it, which is how rows reach the channels (e.g. ``2026-11-23T19:04:04.12+00:00``): REST
answers and channel publications agree to the character."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import PlainSerializer, WithJsonSchema


def rfc3339(moment: datetime) -> str:
    """`moment` in UTC, seconds, a fraction without trailing zeros (none when whole), +00:00."""
    utc = moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    # isoformat() is C and already nearly this form (a page of history serializes 50 to 150
    # of these; strftime took a third of the CPU of such a request): YYYY-MM-DDTHH:MM:SS,
    # then .ffffff when there is a fraction, then +00:00.
    text = utc.isoformat()
    if not utc.microsecond:
        return text
    return f"{text[:19]}.{text[20:26].rstrip('0')}+00:00"


# A datetime field of a response model: serialized in the one form above.
Time = Annotated[
    datetime,
    PlainSerializer(rfc3339, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]
