"""The report reads of a run: which are due, reading them concurrently, and their cursors.

A cursor per (campaign or campaign activity, report) lives in dlt resource state and moves only
after its read's last page, in the state dlt commits with the data. A campaign that no nightly
reads any more (closed by the attribution window) keeps one compact marker instead (`ReportCursors`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import dlt
import pendulum

from sources.canonical.tables import DEFAULT_ACCOUNT, Row, provider_id, stamp
from sources.canonical.times import parse_utc
from sources.erasure import Forgotten
from sources.errors import (
    CampaignSyncError,
    ConfigurationError,
    CredentialsRefused,
    NotFound,
    QuotaExhausted,
    RequestCapReached,
    UnusableValue,
    setting_name,
)
from sources.http import Job, JobDone, ProviderHttp, fetch_concurrently
from sources.redaction import printable


@dataclass(frozen=True)
class ReportRead:
    """One report of one campaign (or campaign activity) to read.

    `pages(since)` yields raw pages; `since` is the earliest time still needed, or None for
    everything (a provider without a date filter ignores it, and says so with `whole`). `to_rows(page)` maps a
    raw page onto canonical rows without `provider` and `campaign_id`, which are added here.
    """

    campaign_id: str
    report: str
    sent_at: datetime | None
    pages: Callable[[datetime | None], Iterable[list[Any]]]
    to_rows: Callable[[list[Any]], list[Row]]
    campaign_activity_id: str | None = None
    whole: bool = False  # `pages` ignores `since`: every read returns the whole report
    # where the provider's own paging of the report stands (EmailOctopus v2's cursor), kept in the read's cursor
    resume: ResumePoint | None = None
    # the clicked link is part of an event's identity (not where one of a provider's APIs does not give it)
    link_in_identity: bool = True

    @property
    def state_key(self) -> str:
        """The key of this read's cursor in resource state."""
        return f"{self.campaign_activity_id or self.campaign_id}:{self.report}"

    @property
    def key_in_campaign(self) -> str:
        """The key of this read among its campaign's reads (in a closed campaign's marker)."""
        return f"{self.campaign_activity_id}:{self.report}" if self.campaign_activity_id else self.report


@dataclass
class ResumePoint:
    """A provider's own place in a report, kept verbatim in the read's cursor (`resume`): `stored` is
    where the last complete read left it (None: none, or a backfill), `reached` where this read leaves
    it, set by the provider's `pages` before they end (None: nothing to keep); `unchanged` when the
    provider knows, without reading it, that a snapshot is the one loaded (it is then kept)."""

    stored: dict[str, Any] | None = None
    reached: dict[str, Any] | None = None
    unchanged: bool = False


@dataclass
class SyncSettings:
    """What one run reads: the attribution window and lookback, or a backfill range."""

    attribution_window: timedelta
    lookback: timedelta
    max_concurrency: int
    start_date: datetime | None = None
    backfill_since: datetime | None = None
    backfill_until: datetime | None = None
    forgotten: Forgotten = field(default_factory=Forgotten)
    loaded_contact_digests: frozenset[str] = frozenset()  # the contacts loaded as they are (`changed_contacts`)
    now: datetime = field(default_factory=lambda: pendulum.now("UTC"))
    account: str = DEFAULT_ACCOUNT
    max_requests: int | None = None

    def setting(self, provider: str, key: str) -> str:
        """The environment variable of this account's setting `key`, for messages."""
        return setting_name(provider, key, None if self.account == DEFAULT_ACCOUNT else self.account)

    @classmethod
    def from_config(
        cls,
        plan: SyncPlan,
        attribution_window_days: int,
        lookback_minutes: int,
        max_concurrency: int,
        start_date: str | None,
    ) -> SyncSettings:
        """Combine a provider's configured settings (checked by the command line's `Provider.configured`)
        with the run's plan."""
        return cls(
            attribution_window=timedelta(days=attribution_window_days),
            lookback=timedelta(minutes=lookback_minutes),
            max_concurrency=max_concurrency,
            start_date=parse_utc(start_date),
            backfill_since=plan.backfill_since,
            backfill_until=plan.backfill_until,
            forgotten=plan.forgotten,
            loaded_contact_digests=plan.loaded_contact_digests,
            account=plan.account,
            max_requests=plan.max_requests,
        )

    @property
    def is_backfill(self) -> bool:
        return self.backfill_since is not None

    @property
    def pass_kind(self) -> str:
        """Which runs continue one another's pass over the due reads: nightlies, or backfills of one range."""
        if self.backfill_since is None:
            return "nightly"
        until = self.backfill_until.isoformat() if self.backfill_until else "now"
        return f"backfill {self.backfill_since.isoformat()} {until}"


@dataclass
class SyncOutcome:
    """What went wrong in a run without stopping it; the command line turns it into an exit code."""

    failures: list[str] = field(default_factory=list)
    http: ProviderHttp | None = None
    reports_due: int = 0  # (campaign, report) reads this run has to make, and has made: for progress
    reports_done: int = 0
    rows_skipped: int = 0  # events read again but left out of the load, as an earlier run loaded them
    snapshot_resets: int = 0  # the rows that delete a snapshot before its new one: passed to the load, not read
    campaigns_with_events: set[str] = field(default_factory=set)  # whose events the run passed to the load
    set_aside: list[str] = field(default_factory=list)  # the items whose values cannot load, named
    reads_ended: int = 0  # report reads that ended well: a run stopped by `--max-requests` with none made no progress
    # the requests each listing (`LISTINGS`) took in this run, once it was read whole; and what they took
    # together in the last backfill that read them whole (kept in the source state), None when unknown
    listings_read: dict[str, int] = field(default_factory=dict)
    listings_cost: int | None = None
    # `--progress`: called in dlt's extract thread as the reads advance (a read that yields no row too)
    on_progress: Callable[[], None] | None = None

    def advanced(self) -> None:
        """The reads advanced: tell `on_progress`."""
        if self.on_progress is not None:
            self.on_progress()

    @property
    def quota(self) -> QuotaExhausted | None:
        """What stopped the run's requests, if anything did: the used-up daily quota, `--max-requests` or an
        interruption (`ProviderHttp.stopped`)."""
        return self.http.stopped() if self.http is not None else None

    @property
    def requests(self) -> int:
        """The HTTP requests the run has sent so far."""
        return self.http.requests_made if self.http is not None else 0

    def record(self, what: str, error: BaseException) -> None:
        """Record a failed read (`what`: the provider and the item) so that the run goes on without it.

        Only the item is lost: its cursor stays, and the next run reads it again. A used-up quota,
        refused credentials and anything that is not a provider error are raised instead.
        """
        if isinstance(error, (QuotaExhausted, CredentialsRefused)) or not isinstance(error, CampaignSyncError):
            raise error
        self.failures.append(f"{what}: {error}")

    def with_ids(self, page: list[Any], key: str, what: str) -> list[dict[str, Any]]:
        """The listed items of `page` whose `key` is an id (`provider_id`, written as text in place);
        any other item is set aside and named (`what`), and the rest goes on."""
        usable = []
        for raw in page:
            try:
                if not isinstance(raw, dict):
                    raise UnusableValue(f"{what} {printable(repr(raw))} is not an object")
                raw[key] = provider_id(raw.get(key), f"{what} {key}")
            except UnusableValue as unusable:
                self.set_aside.append(str(unusable))
                continue
            usable.append(raw)
        return usable

    def mapped(self, page: list[Any], to_rows: Callable[[list[Any]], list[Row]], what: str) -> list[Row]:
        """`to_rows(page)`; where an item's values cannot make a row (`UnusableValue`), that item is set
        aside and named (`what`), and the others are mapped."""
        try:
            return to_rows(page)
        except UnusableValue:
            rows = []
            for raw in page:
                try:
                    rows += to_rows([raw])
                except UnusableValue as unusable:
                    self.set_aside.append(f"{what}: {unusable}")
            return rows

    def notes(self) -> list[str]:
        """What the run's summary says of values that could not load as they came: replaced, or set aside."""
        notes = []
        replaced = self.http.replaced if self.http is not None else Counter[str]()
        if replaced:
            fields = ", ".join(f"{printable(name, 40)} {n}" for name, n in replaced.most_common(5))
            notes.append(
                f"{replaced.total()} value(s) held a NUL or a lone surrogate, which no database stores, and "
                f"load with U+FFFD in its place ({fields})"
            )
        if self.set_aside:
            more = f" (and {len(self.set_aside) - 1} more)" if len(self.set_aside) > 1 else ""
            # the first in order of the text: the listings are read at once, so the first set aside varies
            notes.append(f"{len(self.set_aside)} item(s) set aside, the rest loads: {min(self.set_aside)}{more}")
        return notes

    def error(self) -> CampaignSyncError | None:
        """The error to end the run with, after what was read has been loaded."""
        if isinstance(self.quota, RequestCapReached) and self.reads_ended == 0:
            return self.cap_too_small() or self._cap_before_listings_ended() or self.quota
        if self.quota is not None:
            return self.quota
        if self.failures:
            more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
            return CampaignSyncError(f"{self.failures[0]}{more}; the next run retries them")
        return None

    @property
    def listings_took(self) -> int | None:
        """The requests the listings take: this run's, if it read them whole, else `listings_cost` (or None)."""
        if set(self.listings_read) == set(LISTINGS):
            return sum(self.listings_read.values())
        return self.listings_cost

    def cap_too_small(self) -> ConfigurationError | None:
        """The error of a `--max-requests` cap that the listings use up (`listings_took`), so that runs with
        it cannot progress; None for any other."""
        cap = self.http.max_requests if self.http is not None else None
        took = self.listings_took
        if cap is None or took is None or cap > took:
            return None
        return ConfigurationError(
            f"--max-requests {cap} is used up by the listings ({', '.join(LISTINGS)}) before any report is read, "
            f"so runs with this cap cannot progress; use at least {took + 1}"
        )

    def _cap_before_listings_ended(self) -> ConfigurationError | None:
        """The error of a `--max-requests` run that ended neither a report read nor the listings, whose cost is
        not known."""
        if self.http is None or self.listings_took is not None:
            return None
        return ConfigurationError(
            f"--max-requests {self.http.max_requests} was used up before the listings ({', '.join(LISTINGS)}) "
            f"ended (they had taken {self.http.listing_requests.total()}) and before any report read ended, so "
            "runs with this cap cannot progress; run once without the cap or with a larger one "
            "(`campaign-sync plan` estimates it)"
        )


# the listings every run makes before (and while) it reads the reports of what they list
LISTINGS = ("campaigns", "contacts")


@dataclass
class SyncPlan:
    """What the command line asks of one provider's run: nightly, or a backfill range."""

    backfill_since: datetime | None = None
    backfill_until: datetime | None = None
    account: str = DEFAULT_ACCOUNT  # which of the provider's accounts
    max_requests: int | None = None  # `--max-requests`: the run stops cleanly after so many
    forgotten: Forgotten = field(default_factory=Forgotten)  # whose personal data is not loaded
    loaded_contact_digests: frozenset[str] = frozenset()  # of the contacts loaded (`loaded_contact_digests`)
    # Constant Contact v3: the account's v2 campaigns loaded and not yet looked up in the xrefs
    unmapped_v2_campaigns: list[str] = field(default_factory=list)
    outcome: SyncOutcome = field(default_factory=SyncOutcome)


@dataclass
class ReportCursor:
    """Where one report read stands (JSON values under the read's `state_key` in `ReportCursors`): the
    newest `occurred_at` loaded, when it was last read whole, and for a whole read its size then (`rows`)
    and whether it must be read uncut once (`recheck`); for a not-opened / not-clicked snapshot the
    digest of the one loaded; for a read with a `ResumePoint` the provider's own place in the report
    (`resume`)."""

    campaign_id: str
    report: str
    cursor: datetime | None = None
    read_at: datetime | None = None
    rows: int | None = None
    recheck: bool = False
    digest: str | None = None
    resume: dict[str, Any] | None = None

    @classmethod
    def of(cls, cursors: ReportCursors, read: ReportRead) -> ReportCursor:
        """The read's cursor in `cursors` (a new one if it has none)."""
        kept = cursors.kept(read)
        return cls(
            campaign_id=read.campaign_id,
            report=read.report,
            cursor=parse_utc(kept.get("cursor")),
            read_at=parse_utc(kept.get("read_at")),
            rows=kept.get("rows"),
            recheck=bool(kept.get("recheck")),
            digest=kept.get("digest"),
            resume=kept.get("resume"),
        )

    def save(self, cursors: ReportCursors, read: ReportRead) -> None:
        """Write the cursor back under the read's key (only the fields it uses)."""
        kept: dict[str, Any] = {
            "campaign_id": self.campaign_id,
            "report": self.report,
            "cursor": self.cursor.isoformat() if self.cursor else None,
            "read_at": self.read_at.isoformat() if self.read_at else None,
        }
        if self.rows is not None:
            kept.update(rows=self.rows, recheck=self.recheck)
        if self.digest is not None:
            kept["digest"] = self.digest
        if self.resume is not None:
            kept["resume"] = self.resume
        cursors.state.setdefault("cursors", {})[read.state_key] = kept


class ReportCursors:
    """The cursors of one report resource, in its dlt resource state (`state`).

    `cursors` holds a `ReportCursor` per read of the campaigns a nightly still reads. A campaign that no
    nightly reads any more (each of its reads made whole after its attribution window closed, `close`)
    keeps a marker instead, in `closed`: {last read: {campaign: {read: snapshot digest}}}, its reads
    grouped by when the last of them was made. That time is what every read of the campaign takes as
    its `read_at`, so `is_due` and a resumed pass decide as they did on the cursors; a backfill over
    the campaign's range reads it again from no cursor, as it always did, and keeps the digests so that
    a snapshot the same as the one loaded is not loaded again. A state written before markers (only
    `cursors`) is read as it is, and its closed campaigns become markers as the reads meet them.
    """

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self._groups: dict[str, str] | None = None  # campaign -> its group (last read) in `closed`

    def kept(self, read: ReportRead) -> dict[str, Any]:
        """The JSON values of the read's cursor: its own, else its closed campaign's marker (or none)."""
        own: dict[str, Any] | None = self.state.get("cursors", {}).get(read.state_key)
        if own is not None:
            return own
        group = self._group_of(read.campaign_id)
        if group is None:
            return {}
        digest = self.state["closed"][group][read.campaign_id].get(read.key_in_campaign)
        return {"read_at": group, "digest": digest}

    def close(self, reads: Iterable[ReportRead], window: timedelta, began: datetime) -> None:
        """Keep a marker instead of the cursors of each campaign of `reads` that no nightly reads any more:
        every read of it sent (`sent_at`) was made after its attribution window closed and is not to be
        made again (`recheck`). `began`: when the run's pass began; a campaign some of whose reads a
        resumed pass made, and others not, waits for the next pass (the pass must know which it made)."""
        by_campaign: dict[str, list[ReportRead]] = {}
        for read in reads:
            if read.sent_at is not None:
                by_campaign.setdefault(read.campaign_id, []).append(read)
        own = self.state.get("cursors", {})
        closing: dict[str, tuple[datetime, dict[str, str]]] = {}
        for campaign_id, its_reads in by_campaign.items():
            if not any(read.state_key in own for read in its_reads):
                continue  # closed already, or not read yet
            cursors = [(read, ReportCursor.of(self, read)) for read in its_reads]
            read_at = [cursor.read_at for _read, cursor in cursors if cursor.read_at is not None]
            if len(read_at) < len(cursors) or len({at >= began for at in read_at}) > 1:
                continue
            if any(cursor.recheck or read.sent_at is None or cursor.read_at < read.sent_at + window
                   for read, cursor in cursors if cursor.read_at is not None):
                continue
            digests = {read.key_in_campaign: cursor.digest for read, cursor in cursors if cursor.digest is not None}
            closing[campaign_id] = (max(read_at), digests)
        if not closing:
            return
        for key in [key for key, kept in own.items() if kept.get("campaign_id") in closing]:
            del own[key]
        closed = self.state.setdefault("closed", {})
        for campaign_id, (last_read, digests) in closing.items():
            group = self._group_of(campaign_id)
            if group is not None:
                del closed[group][campaign_id]
                if not closed[group]:
                    del closed[group]
            closed.setdefault(last_read.isoformat(), {})[campaign_id] = digests
        self._groups = None

    def _group_of(self, campaign_id: str) -> str | None:
        if self._groups is None:
            closed = self.state.get("closed", {})
            self._groups = {campaign: group for group, campaigns in closed.items() for campaign in campaigns}
        return self._groups.get(campaign_id)


@dataclass
class ReadPage:
    """A page of canonical rows of one report read."""

    read: ReportRead
    rows: list[Row]


@dataclass
class ReadDone:
    """A report read that ended well: its cursor moved (`cursor`, saved already)."""

    read: ReportRead
    cursor: ReportCursor


def is_due(read: ReportRead, cursor: ReportCursor, settings: SyncSettings) -> bool:
    """Whether `read` is to be made this run, given its cursor (or is still to be made by a nightly run)."""
    sent_at = read.sent_at
    if sent_at is None:
        return False
    if settings.is_backfill:
        until = settings.backfill_until or settings.now
        return settings.backfill_since is not None and settings.backfill_since <= sent_at <= until
    if settings.start_date is not None and sent_at < settings.start_date:
        return False
    # open until one complete read has happened after the attribution window closed
    return cursor.read_at is None or cursor.read_at < sent_at + settings.attribution_window or cursor.recheck


def _since(cursor: ReportCursor, settings: SyncSettings) -> datetime | None:
    if settings.is_backfill:
        return settings.backfill_since
    return cursor.cursor - settings.lookback if cursor.cursor else None


def read_due_reports(
    provider: str, reads: Iterable[ReportRead], settings: SyncSettings, outcome: SyncOutcome
) -> Iterator[ReadPage | ReadDone]:
    """Read the due reports concurrently (in the account's `ReadPool`); yield each page (`ReadPage`)
    and each read that ended (`ReadDone`), as they arrive.

    The cursor of a read (its newest `occurred_at`, and when it was last read whole) is
    advanced only after its last page, in the state that dlt commits with the data. A
    failed read is recorded in `outcome` and keeps its cursor; a used-up quota (or
    `--max-requests`) stops every read, and the next run resumes the pass (`_resumed_pass`);
    refused credentials end the run.
    """
    read_pass = _resumed_pass(dlt.current.source_state(), settings)
    resume_after = parse_utc(read_pass["began"]) if read_pass["began"] != settings.now.isoformat() else None
    if outcome.quota is not None:
        read_pass["finished"] = False
        return
    reads = list(reads)
    began = parse_utc(read_pass["began"])
    assert began is not None
    cursors = ReportCursors(dlt.current.resource_state())
    cursors.close(reads, settings.attribution_window, began)  # (and the closed campaigns of an older state)
    due = [
        (read, cursor) for read in reads
        if is_due(read, cursor := ReportCursor.of(cursors, read), settings)
        and not (resume_after is not None and cursor.read_at is not None and cursor.read_at >= resume_after)
    ]
    for read, cursor in due:
        if read.resume is not None:
            read.resume.stored = None if settings.is_backfill else cursor.resume
    http = outcome.http
    assert http is not None, "canonical_resources gives the outcome its client"
    jobs = [Job(read, _job_pages(read, _since(cursor, settings))) for read, cursor in due]
    progress_of = {read.state_key: _ReadProgress(cursor, settings) for read, cursor in due}
    while jobs:  # at most twice: a read made again passes everything it must
        outcome.reports_due += len(jobs)
        again: list[ReportRead] = []
        for read, page in fetch_concurrently(http.pool, jobs):
            progress = progress_of[read.state_key]
            if isinstance(page, JobDone):
                outcome.reports_done += 1
                outcome.advanced()  # a read that ends passes no row on
                if page.error is None:
                    if progress.needs_recheck():
                        again.append(read)
                    else:
                        outcome.rows_skipped += progress.left_out
                    outcome.reads_ended += 1
                    yield ReadDone(read, _advance(cursors, read, progress, settings.now))
                elif isinstance(page.error, QuotaExhausted):  # `outcome.quota` says so: the reads still
                    read_pass["finished"] = False  # running end without a request; those done are kept
                else:
                    outcome.record(f"{provider} {read.report} of campaign {read.campaign_id}", page.error)
                continue
            what = f"{provider} {read.report} of campaign {read.campaign_id}"
            rows = progress.new_rows(outcome.mapped(page, read.to_rows, what), read.whole)
            settings.forgotten.scrub(rows)
            stamp(rows, provider, settings.account)
            for row in rows:
                row["campaign_id"] = read.campaign_id
            yield ReadPage(read, rows)
        # a whole read whose history up to its cursor changed (an event came late with an older time) is
        # made again in this run, passing what it left out; its cursor says `recheck` until that read ends
        jobs = [Job(read, _job_pages(read, None)) for read in again if outcome.quota is None]
        progress_of = {read.state_key: progress_of[read.state_key].again() for read in again}
    cursors.close(reads, settings.attribution_window, began)  # the campaigns this run closed


# an event timed more than this after the run began is taken for a wrong clock (year 9999, say): it loads,
# but moves no cursor, which would otherwise pass over every event to come
FUTURE_TOLERANCE = timedelta(days=1)


class _ReadProgress:
    """What one read has seen: its newest event, its size, and which events it leaves out of the load.

    A whole read (a report without a date filter, EmailOctopus) passes on only the events newer than
    its cursor, so a night's merge follows what is new, not the history. It is exact: every event up
    to the cursor was loaded by the read that set it, whose size the cursor keeps (`rows`). If the
    events up to the cursor now number differently (one arrived late with an old timestamp, or the
    provider dropped one), the report is read again in the same run (`again`), and that read passes
    the events the first one left out. Events without a timestamp always pass (the merge on
    `activity_id` drops their repeats); identical events share a timestamp, so occurrence numbers
    are as before.
    """

    def __init__(self, cursor: ReportCursor, settings: SyncSettings) -> None:
        self.cursor, self.settings = cursor, settings
        self.loaded_until = cursor.cursor
        self.loaded_rows = cursor.rows
        verified = not settings.is_backfill and not cursor.recheck and self.loaded_rows is not None
        self.cut = self.loaded_until if verified else None
        self.latest_believed = settings.now + FUTURE_TOLERANCE
        self.passed_after: datetime | None = None  # a read made again: the events after it passed already
        self.newest: datetime | None = None
        self.rows = 0
        self.rows_up_to_cursor = 0
        self.left_out = 0

    def again(self) -> _ReadProgress:
        """The progress of the same report read again in this run: it passes the events this one left out."""
        progress = _ReadProgress(replace(self.cursor, recheck=True), self.settings)  # it leaves nothing out
        progress.passed_after = self.cut
        return progress

    def new_rows(self, rows: list[Row], whole: bool) -> list[Row]:
        """Count a page, and return its rows that go on to the load."""
        self.rows += len(rows)
        for row in rows:
            occurred = row.get("occurred_at")
            if occurred is not None and occurred <= self.latest_believed and (
                self.newest is None or occurred > self.newest
            ):
                self.newest = occurred
            if self.loaded_until is not None and (occurred is None or occurred <= self.loaded_until):
                self.rows_up_to_cursor += 1
        if self.passed_after is not None:  # those the first read left out
            until = self.passed_after
            return [row for row in rows if row.get("occurred_at") is not None and row["occurred_at"] <= until]
        if whole and self.cut is not None:
            passed = [row for row in rows if row.get("occurred_at") is None or row["occurred_at"] > self.cut]
            self.left_out += len(rows) - len(passed)
            return passed
        return rows

    def needs_recheck(self) -> bool:
        """Whether this read left events out while the history up to the cursor changed."""
        return self.cut is not None and self.loaded_rows is not None and self.rows_up_to_cursor != self.loaded_rows


def _job_pages(read: ReportRead, since: datetime | None) -> Callable[[], Iterable[list[Any]]]:
    def pages() -> Iterator[list[Any]]:
        try:
            yield from read.pages(since)
        except NotFound:  # a report that is not there (any more) reads as empty
            return

    return pages


def summary_read(campaign: Row, fetch: Callable[[], Any], to_row: Callable[[Any], Row]) -> ReportRead:
    """A campaign's summary counts as a read: one response (`fetch()`, None if there is none), one row."""

    def pages(_since: datetime | None) -> list[list[Any]]:
        summary = fetch()
        return [[summary]] if summary is not None else []

    return ReportRead(
        campaign_id=campaign["campaign_id"],
        report="summary",
        sent_at=campaign.get("sent_at"),
        pages=pages,
        to_rows=lambda page: [to_row(raw) for raw in page],
    )


def _resumed_pass(source_state: dict[str, Any], settings: SyncSettings) -> dict[str, Any]:
    """The pass over the due reports that this run makes: `began` (when), `finished` (so far).

    A pass (`read_pass` in the source state, one for every report resource) is one run's reading of
    the due reports. A run stopped by the daily quota or `--max-requests` leaves it unfinished; the
    next run of the same kind (the nightly, or a backfill of the same range) resumes it: a read
    made since the pass began is not made again, so capped runs add up to one whole pass. Any
    other run begins a new pass.
    """
    now = settings.now.isoformat()
    current: dict[str, Any] | None = source_state.get("read_pass")
    if current is None or current["kind"] != settings.pass_kind or (current["finished"] and current["run"] != now):
        current = source_state["read_pass"] = {"kind": settings.pass_kind, "began": now, "run": now, "finished": True}
    elif current["run"] != now:  # resuming: finished unless this run is stopped too
        current.update(run=now, finished=True)
    return current


def pass_unfinished(settings: SyncSettings) -> None:
    """A run stopped outside its report reads (in a listing) leaves its pass unfinished too: the next run
    resumes it, and does not read again the reports this one read."""
    _resumed_pass(dlt.current.source_state(), settings)["finished"] = False


def _advance(cursors: ReportCursors, read: ReportRead, progress: _ReadProgress, now: datetime) -> ReportCursor:
    """Move a read's cursor after its last page: never back, and for a whole read its size and recheck."""
    cursor = ReportCursor.of(cursors, read)
    if progress.newest is not None and (cursor.cursor is None or progress.newest > cursor.cursor):
        cursor.cursor = progress.newest
    if cursor.read_at is None or now > cursor.read_at:
        cursor.read_at = now
    if read.whole:
        cursor.rows, cursor.recheck = progress.rows, progress.needs_recheck()
    if read.resume is not None:
        cursor.resume = read.resume.reached
    cursor.save(cursors, read)
    return cursor
