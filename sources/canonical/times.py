"""Timestamps: provider text to aware UTC, and back to the text Constant Contact filters take."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pendulum

log = logging.getLogger("campaign_sync")


def parse_utc(value: Any, quiet: bool = False) -> datetime | None:
    """Parse a provider timestamp (ISO 8601 or another common shape, any offset) into aware UTC.

    A value no parser understands becomes None, with a warning (unless `quiet`: a setting's check
    says it in its own error): the row still loads.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(value)
        except (TypeError, ValueError):  # not the common ISO shape: let pendulum try harder
            try:
                moment = pendulum.parse(str(value), strict=False)
            except (ValueError, TypeError, OverflowError):
                moment = None
            if not isinstance(moment, datetime):  # a bare date or time is not a moment either
                if not quiet:
                    log.warning("unreadable timestamp %r: loaded as NULL", value)
                return None
            parsed = moment
    if parsed.tzinfo is UTC:  # the common case ("...Z"): already as wanted
        return parsed
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def utc_millis(value: datetime) -> str:
    """A timestamp as Constant Contact writes and reads them: UTC with milliseconds (floored)."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
