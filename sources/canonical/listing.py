"""The cursor of a listing filtered by modification time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sources.canonical.times import parse_utc


class ListingCursor:
    """The cursor of a listing filtered by modification time (v2 `modified_since`, v3 `after_date`
    and `updated_after`), kept in resource state under `listing`.

    A listing starts a lookback before the newest time listed so far, so a strict filter or a
    same-second change misses nothing. The items already listed at their current time (`seen`)
    are not passed on again, so the overlap costs no reads beyond the listing itself. An item
    whose read fails (`failed`) is not seen and holds the cursor, so the next run lists it again.
    """

    def __init__(
        self, resource_state: dict[str, Any], lookback: timedelta, list_all: bool = False, legacy_key: str = ""
    ) -> None:
        state = resource_state.setdefault("listing", {})
        # the cursor as releases before 2026-12 kept it: v2's `modified_since`, v3's `legacy_key`
        if "modified_since" in state:
            state["cursor"] = state.pop("modified_since")
        if legacy_key in resource_state:
            state["cursor"] = parse_utc(resource_state.pop(legacy_key)).isoformat()
        state.setdefault("cursor", None)
        state.setdefault("seen", {})
        self.state = state
        self.lookback = lookback
        self.list_all = list_all
        self.newest = parse_utc(state["cursor"])
        self.complete = True

    def since(self) -> datetime | None:
        """The filter of this run's listing: None (everything) on a first run or when listing all."""
        cursor = parse_utc(self.state["cursor"])
        return None if cursor is None or self.list_all else cursor - self.lookback

    def changed(self, item_id: str, modified: str | None) -> bool:
        """Whether a listed item is to be passed on (not seen at this time before); it counts as seen."""
        modified_at = parse_utc(modified)
        if modified_at is not None and (self.newest is None or modified_at > self.newest):
            self.newest = modified_at
        seen = self.state["seen"]
        new = self.list_all or self.since() is None or seen.get(item_id) != modified
        seen[item_id] = modified
        return new

    def failed(self, item_id: str) -> None:
        """The read of a passed-on item failed: the next run passes it on again."""
        self.state["seen"].pop(item_id, None)
        self.complete = False

    def commit(self) -> None:
        """After a complete listing: move the cursor to the newest time listed, and forget the items
        that the next listing cannot return again."""
        if self.complete and self.newest is not None:
            self.state["cursor"] = self.newest.isoformat()
        cursor = parse_utc(self.state["cursor"])
        if cursor is not None:
            horizon = cursor - self.lookback
            seen = self.state["seen"]
            self.state["seen"] = {key: m for key, m in seen.items() if (parse_utc(m) or horizon) >= horizon}
