"""Timestamps as Kubernetes writes them: RFC 3339, UTC, second precision (``2026-01-15T12:00:00Z``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

RFC3339_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def now() -> datetime:
    """The current moment, aware, at second precision (what a stored timestamp can hold)."""
    return datetime.now(tz=UTC).replace(microsecond=0)


def rfc3339(moment: datetime) -> str:
    """A moment in the stored form; a naive datetime is taken as UTC."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime(RFC3339_FORMAT)


def utc_now() -> str:
    """Now, in the stored form."""
    return rfc3339(now())


def parse_time(value: Any) -> datetime | None:
    """A stored timestamp (or a datetime) as an aware datetime; None for None or an empty string."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
