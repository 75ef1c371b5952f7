"""Request estimates (`campaign-sync plan`): what a backfill or tonight's run will cost, from the listings.

A provider describes each listed campaign's reads (`CampaignCost`) from its listing calls
only: the lookups it makes once (details, send history), the summary requests it makes every
run, and each report with the rows a listing says it holds, when one does. `backfill_estimate`
and `nightly_estimate` turn those into requests, as a run of that kind makes them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class ReportCost:
    """One report of a campaign: its rows as a listing tells them (None: no listing does)."""

    kind: str  # the canonical activity_type or non-engagement kind it loads: its loaded rows size it too
    page_size: int
    rows: int | None = None
    whole: bool = False  # read whole every run (no date filter), not only its new rows
    at_least: bool = False  # `rows` is a lower bound (unique counts of a report with one row per event)

    def pages(self, loaded: LoadedRows | None, whole: bool) -> int:
        """Requests a read takes: one per page (one for an empty report). A whole read's size is the
        larger of the listed and the loaded one; a read from the cursor gets the loaded rows within
        the lookback behind it again, and what is new."""
        known = loaded or LoadedRows(0, 0)
        rows = max(self.rows or 0, known.rows) if whole else known.recent
        return max(1, math.ceil(rows / self.page_size))


@dataclass(frozen=True)
class LoadedRows:
    """What the dataset holds of a (campaign, kind): its rows, and those within the lookback of the newest."""

    rows: int
    recent: int


@dataclass(frozen=True)
class CampaignCost:
    """What reading one listed campaign takes; `sent_at` (None: not sent) may be a listing's stand-in."""

    campaign_id: str
    sent_at: datetime | None
    lookups: int  # one-response requests made when the campaign is new or changed (details, send history)
    summaries: int  # requests for its summary counts, every run while it is open
    reports: tuple[ReportCost, ...]
    partial: bool = False  # it may have reads no listing shows (v3 resends): not counted


@dataclass
class RequestEstimate:
    """The requests of one run, by kind; `lower_bound` when some report's size is not known."""

    listing: int = 0
    campaigns: int = 0
    lookups: int = 0
    summaries: int = 0
    report_pages: int = 0
    unknown_reports: int = 0
    lower_bound: bool = False

    @property
    def requests(self) -> int:
        # contacts: at least one page (no listing tells their number)
        return self.listing + self.lookups + self.summaries + self.report_pages + 1

    def add(
        self, cost: CampaignCost, from_cursors: bool, loaded: bool, loaded_rows: Mapping[tuple[str, str], LoadedRows]
    ) -> None:
        """Count the reports of a campaign the run reads: whole, or `from_cursors` their new rows.

        `loaded_rows` holds what the dataset has of each (campaign, kind) of a `loaded` campaign
        (none: an empty report): a report read whole is at least as large as it was.
        """
        self.campaigns += 1
        self.summaries += cost.summaries
        self.lower_bound = self.lower_bound or cost.partial
        for report in cost.reports:
            whole = report.whole or not from_cursors
            rows = loaded_rows.get((cost.campaign_id, report.kind), LoadedRows(0, 0) if loaded else None)
            self.report_pages += report.pages(rows, whole)
            if whole and report.rows is None and rows is None:
                self.unknown_reports += 1
            if whole and (report.at_least or report.rows is None):
                self.lower_bound = True


def backfill_estimate(
    costs: Iterable[CampaignCost],
    listing_requests: int,
    since: datetime | None,
    until: datetime | None,
    loaded: Mapping[str, datetime | None],
    loaded_rows: Mapping[tuple[str, str], LoadedRows],
) -> RequestEstimate:
    """The requests of a backfill of the campaigns sent in [since, until) (a first run: since START_DATE).

    Every listed campaign is looked up; those sent in the range are read whole. `loaded` and
    `loaded_rows` are what the dataset holds (see `nightly_estimate`).
    """
    result = RequestEstimate(listing=listing_requests)
    for cost in costs:
        result.lookups += cost.lookups
        sent_at = cost.sent_at
        if sent_at is not None and (since is None or sent_at >= since) and (until is None or sent_at < until):
            result.add(cost, False, cost.campaign_id in loaded, loaded_rows)
    return result


def nightly_estimate(
    costs: Iterable[CampaignCost],
    listing_requests: int,
    loaded: Mapping[str, datetime | None],
    loaded_rows: Mapping[tuple[str, str], LoadedRows],
    now: datetime,
    attribution_window: timedelta,
) -> RequestEstimate:
    """The requests of tonight's run after earlier loads.

    `loaded` maps the campaigns in the dataset to their loaded send time. A new campaign is
    looked up; one sent inside the attribution window is read: whole when new, else from its
    cursors (the rows within the lookback again, and the new ones; or the whole report where the
    provider has no date filter).
    """
    result = RequestEstimate(listing=listing_requests)
    for cost in costs:
        if cost.campaign_id not in loaded:
            result.lookups += cost.lookups
        sent_at = loaded.get(cost.campaign_id) or cost.sent_at
        if sent_at is not None and sent_at >= now - attribution_window:
            result.add(cost, cost.campaign_id in loaded, cost.campaign_id in loaded, loaded_rows)
    return result
