"""The cursor of a listing filtered by modification time."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sources.canonical.times import parse_utc
from sources.http import after_pages_handed_on


class ListingCursor:
    """The cursor of a listing filtered by modification time (v2 `modified_since`, v3 `after_date`
    and `updated_after`), kept in resource state under `listing`.

    A listing starts a lookback before the newest time listed so far, so a strict filter or a
    same-second change misses nothing. The items already listed at their current version (`seen`:
    their modified time, and what else the caller says changes them) are not passed on again, so
    the overlap costs no reads beyond the listing itself. A passed-on item counts as seen only once
    its page went through (`handled`); one whose read fails (`failed`) does not, and the cursor
    stops at it, so the next run lists it again.
    """

    def __init__(
        self, resource_state: dict[str, Any], lookback: timedelta, list_all: bool = False, legacy_key: str = ""
    ) -> None:
        state = resource_state.setdefault("listing", {})
        # the cursor as releases before 2026-12 kept it: v2's `modified_since`, v3's `legacy_key`
        if "modified_since" in state:
            state["cursor"] = state.pop("modified_since")
        legacy = parse_utc(resource_state.pop(legacy_key, None))
        if legacy is not None:
            state["cursor"] = legacy.isoformat()
        state.setdefault("cursor", None)
        state.setdefault("seen", {})
        self.state = state
        self.lookback = lookback
        self.list_all = list_all
        self.newest = parse_utc(state["cursor"])
        self._passed: dict[str, str | None] = {}  # passed on, page not through yet: id -> version
        self._failed_at: list[datetime | None] = []

    def since(self) -> datetime | None:
        """The filter of this run's listing: None (everything) on a first run or when listing all."""
        cursor = parse_utc(self.state["cursor"])
        return None if cursor is None or self.list_all else cursor - self.lookback

    def changed(self, item_id: str, modified: str | None, also: Any = None) -> bool:
        """Whether a listed item is to be passed on: not seen before at this modified time (and `also`,
        e.g. a status that changes without the time). An item without a time is always passed on."""
        modified_at = parse_utc(modified)
        if modified_at is not None and (self.newest is None or modified_at > self.newest):
            self.newest = modified_at
        # the version kept in `seen`: the time first, so that `commit` can tell its age
        version = None if modified_at is None else modified if also is None else f"{modified}|{also}"
        if not self.list_all and version is not None and self.state["seen"].get(item_id) == version:
            return False
        self._passed[item_id] = version
        return True

    def failed(self, item_id: str, modified: str | None) -> None:
        """The read of a passed-on item failed: it is not seen, and the cursor stops at it."""
        self._passed.pop(item_id, None)
        self._failed_at.append(parse_utc(modified))

    def handled(self) -> None:
        """The items passed on so far went through (their page was handed on): they count as seen,
        in the state once that page is handed on to dlt (`after_pages_handed_on`)."""
        passed = {item_id: v for item_id, v in self._passed.items() if v is not None}
        self._passed.clear()
        after_pages_handed_on(partial(self.state["seen"].update, passed))

    def commit(self) -> None:
        """After the whole listing, once its pages are handed on to dlt: move the cursor to the newest
        time listed, or to the earliest failed item (where the next listing must start), and forget
        the items that the next listing cannot return again. A failed item without a time keeps the
        cursor where it was."""
        self.handled()
        after_pages_handed_on(partial(self._commit, self.newest, list(self._failed_at)))

    def _commit(self, newest: datetime | None, failed_at: list[datetime | None]) -> None:
        if not failed_at and newest is not None:
            self.state["cursor"] = newest.isoformat()
        elif failed_at and None not in failed_at:
            earliest = min(at for at in failed_at if at is not None)
            self.state["cursor"] = earliest.isoformat()
        cursor = parse_utc(self.state["cursor"])
        if cursor is not None:
            horizon = cursor - self.lookback
            self.state["seen"] = {
                item_id: version for item_id, version in self.state["seen"].items()
                if (at := parse_utc(str(version).split("|", 1)[0])) is not None and at >= horizon
            }
