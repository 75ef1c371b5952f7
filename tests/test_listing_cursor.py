"""The listing cursor's decisions (v2 and v3 campaign and contact listings), without HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sources.canonical import ListingCursor

LOOKBACK = timedelta(minutes=60)
T0 = "2026-11-20T06:00:00.000Z"
T1 = "2026-11-20T07:30:00.000Z"
T2 = "2026-11-20T09:00:00.000Z"


def test_first_listing_passes_everything_then_the_overlap_passes_only_what_changed():
    state: dict = {}
    first = ListingCursor(state, LOOKBACK)
    assert first.since() is None
    assert [first.changed(i, m) for i, m in (("a", T0), ("b", T1))] == [True, True]
    first.commit()
    assert state["listing"] == {"cursor": "2026-11-20T07:30:00+00:00", "seen": {"b": T1}}  # "a" is past the overlap

    second = ListingCursor(state, LOOKBACK)
    assert second.since() == datetime(2026, 11, 20, 6, 30, tzinfo=UTC)
    # "b" again at the same time: skipped; "c" changed in the same second as the cursor: passed on
    assert [second.changed("b", T1), second.changed("c", T1), second.changed("b", "2026-11-20T08:00:00.000Z")] == [
        False, True, True
    ]
    second.commit()
    assert state["listing"]["cursor"] == "2026-11-20T08:00:00+00:00"


def test_a_status_change_without_a_new_time_is_passed_on():
    state: dict = {"listing": {"cursor": "2026-11-20T07:30:00+00:00", "seen": {"a": f"{T1}|Scheduled"}}}
    listing = ListingCursor(state, LOOKBACK)
    assert not listing.changed("a", T1, "Scheduled")
    assert listing.changed("a", T1, "Done")


def test_items_count_as_seen_only_once_their_page_went_through():
    state: dict = {"listing": {"cursor": "2026-11-20T07:30:00+00:00", "seen": {}}}
    listing = ListingCursor(state, LOOKBACK)
    assert listing.changed("a", T2) and listing.changed("b", T2)
    assert state["listing"]["seen"] == {}  # a run that stops here (quota, a crash) lists them again
    listing.handled()
    assert state["listing"]["seen"] == {"a": T2, "b": T2}


def test_a_failed_item_is_listed_again_from_its_own_time():
    state: dict = {"listing": {"cursor": "2026-11-20T07:30:00+00:00", "seen": {}}}
    listing = ListingCursor(state, LOOKBACK)
    assert listing.changed("a", T2) and listing.changed("b", "2026-11-20T08:00:00.000Z")
    listing.failed("b", "2026-11-20T08:00:00.000Z")
    listing.commit()
    assert state["listing"]["cursor"] == "2026-11-20T08:00:00+00:00"  # not 09:00: the next listing returns "b"
    again = ListingCursor(state, LOOKBACK)
    assert [again.changed("a", T2), again.changed("b", "2026-11-20T08:00:00.000Z")] == [False, True]


def test_a_first_run_failure_does_not_make_every_later_run_read_everything():
    state: dict = {}
    first = ListingCursor(state, LOOKBACK)
    assert first.changed("a", T2) and first.changed("b", None)
    first.failed("b", None)  # no time to start from: the cursor stays unset
    first.commit()
    assert state["listing"]["cursor"] is None
    second = ListingCursor(state, LOOKBACK)
    assert second.since() is None
    assert [second.changed("a", T2), second.changed("b", None)] == [False, True]  # "a" is not read again


def test_a_backfill_lists_everything_and_never_moves_the_cursor_back():
    state: dict = {"listing": {"cursor": "2026-11-20T07:30:00+00:00", "seen": {"a": T0}}}
    backfill = ListingCursor(state, LOOKBACK, list_all=True)
    assert backfill.since() is None and backfill.changed("a", T0)
    backfill.commit()
    assert state["listing"]["cursor"] == "2026-11-20T07:30:00+00:00"


def test_cursors_kept_by_earlier_releases_carry_over():
    v2 = {"listing": {"modified_since": "2026-11-20T07:30:00+00:00", "seen": {"a": T1}}}
    assert not ListingCursor(v2, LOOKBACK).changed("a", T1)
    v3 = {"after_date": T1}
    assert ListingCursor(v3, LOOKBACK, legacy_key="after_date").since() == datetime(2026, 11, 20, 6, 30, tzinfo=UTC)
    assert "after_date" not in v3
