"""Timestamps: provider text to aware UTC, and back to the text Constant Contact filters take."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import pendulum

log = logging.getLogger("campaign_sync")


def parse_utc(value: Any, quiet: bool = False) -> datetime | None:
    """Parse a provider timestamp (ISO 8601 or another common shape, any offset) into aware UTC.

    A value no parser understands becomes None, with a warning (unless `quiet`: a setting's check
    says it in its own error): the row still loads. So does one that names no day of its own (`now`,
    `12:00`, a number: read again, it would be another time) or no moment UTC can hold (year 1 or 9999
    at an offset that leaves the calendar).
    """
    if value is None or value == "":
        return None
    parsed: datetime | None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(value)
        except (TypeError, ValueError):  # not the common ISO shape: let pendulum try harder
            parsed = _lenient(value)
    try:
        if parsed is not None and parsed.tzinfo is not UTC:  # "...Z", the common case, is as wanted already
            parsed = (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        parsed = None
    if parsed is None and not quiet:
        log.warning("unreadable timestamp %r: loaded as NULL", value)
    return parsed


# a timestamp names its day: a four-digit year in it (`now`, `12:00` or `3.5` would be read as today)
_HAS_YEAR = re.compile(r"(?<!\d)\d{4}(?!\d)")


def _lenient(value: Any) -> datetime | None:
    """A moment pendulum reads in a shape other than ISO 8601's, if the text names its day."""
    if not isinstance(value, str) or not _HAS_YEAR.search(value):
        return None
    try:
        moment = pendulum.parse(value, strict=False)
    except (ValueError, TypeError, OverflowError):
        return None
    return moment if isinstance(moment, datetime) else None  # a bare date or time is not a moment either


def utc_millis(value: datetime) -> str:
    """A timestamp as Constant Contact writes and reads them: UTC with milliseconds (floored)."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
