"""The canonical activity model that every provider loads into, and the resources that load it.

A provider implements `ProviderApi`: it lists campaigns and contacts as canonical rows and
describes, for each campaign, the reports to read (`ReportRead`). Everything else lives
here once: which reports are due (attribution window, start date, backfill range), reading
them concurrently, the cursors per (campaign or campaign activity, report) in dlt resource
state, deterministic `activity_id`s, and the whole-snapshot replacement of non-engagement.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any, Protocol

import dlt
import pendulum
import pyarrow as pa
import pyarrow.compute as pc
from dlt.extract.resource import DltResource

from sources.erasure import Forgotten
from sources.errors import CampaignSyncError, ConfigurationError, CredentialsRefused, NotFound, QuotaExhausted
from sources.http import Job, JobDone, ProviderHttp, fetch_concurrently

ACTIVITY_TYPES = ("sent", "opened", "clicked", "bounced", "unsubscribed", "complained", "forwarded")
NON_ENGAGEMENT_KINDS = ("not_opened", "not_clicked")
# Constant Contact's bounce codes (v2 and v3 alike) -> canonical bounce_type
BOUNCE_TYPES = {"B": "hard", "D": "hard", "Z": "hard", "F": "soft", "S": "soft", "V": "soft", "X": "other"}
SNAPSHOT_RESET = "_snapshot_reset"

Row = dict[str, Any]
log = logging.getLogger("campaign_sync")

def _columns(text: tuple[str, ...] = (), timestamp: tuple[str, ...] = (), bigint: tuple[str, ...] = ()) -> dict:
    typed = [(text, "text"), (timestamp, "timestamp"), (bigint, "bigint")]
    return {name: {"data_type": data_type} for names, data_type in typed for name in names}


CAMPAIGNS = {
    "name": "campaigns",
    "write_disposition": "merge",
    "primary_key": ("provider", "campaign_id"),
    "columns": {
        **_columns(
            text=("provider", "campaign_id", "name", "subject", "status", "from_name", "from_email"),
            timestamp=("created_at", "sent_at", "updated_at"),
        ),
        "list_ids": {"data_type": "json"},
    },
}
CAMPAIGN_ACTIVITIES = {
    "name": "campaign_activities",
    "write_disposition": "merge",
    "primary_key": ("provider", "campaign_activity_id"),
    "columns": _columns(text=("provider", "campaign_activity_id", "campaign_id", "role", "status", "subject")),
}
CONTACT_ACTIVITY = {
    "name": "contact_activity",
    "write_disposition": "merge",
    "primary_key": "activity_id",
    "columns": _columns(
        text=(
            "activity_id", "provider", "campaign_id", "campaign_activity_id", "contact_id", "email_address",
            "activity_type", "url", "device_type", "bounce_type", "reason",
        ),
        timestamp=("occurred_at",),
    ),
}
CAMPAIGN_NON_ENGAGEMENT = {
    "name": "campaign_non_engagement",
    # Unique on (provider, campaign_id, kind, contact_id), which the snapshot read guarantees; only
    # the merge key is declared: with a primary key too, dlt deletes on `pk OR merge key`, a join
    # DuckDB cannot hash (dlt issue 2752) whose cost is the product of the two tables.
    "write_disposition": {"disposition": "merge", "strategy": "delete-insert"},
    "merge_key": ("provider", "campaign_id", "kind"),
    "columns": {
        **_columns(text=("provider", "campaign_id", "kind", "contact_id", "email_address"), timestamp=("as_of",)),
        # a marker row that deletes a campaign's previous snapshot; never stored itself
        SNAPSHOT_RESET: {"data_type": "bool", "hard_delete": True},
    },
}
CONTACTS = {
    "name": "contacts",
    "write_disposition": "merge",
    "primary_key": ("provider", "contact_id"),
    "columns": {
        **_columns(text=("provider", "contact_id", "email_address", "status"), timestamp=("created_at", "updated_at")),
        "deleted": {"data_type": "bool"},  # deleted at the provider (EmailOctopus, v3) or REMOVED (v2)
    },
}
SUMMARY_COUNTS = (
    "sent", "delivered", "opened_unique", "opened_total", "clicked_unique", "clicked_total",
    "bounced", "unsubscribed", "complained", "forwarded", "not_opened",
)
CAMPAIGN_SUMMARIES = {
    "name": "campaign_summaries",
    "write_disposition": "merge",
    "primary_key": ("provider", "campaign_id"),
    "columns": _columns(text=("provider", "campaign_id"), timestamp=("as_of",), bigint=SUMMARY_COUNTS),
}
CANONICAL_TABLES = tuple(
    table["name"]
    for table in (
        CAMPAIGNS, CAMPAIGN_ACTIVITIES, CONTACT_ACTIVITY, CAMPAIGN_NON_ENGAGEMENT, CONTACTS, CAMPAIGN_SUMMARIES
    )
)


def parse_utc(value: Any) -> datetime | None:
    """Parse a provider timestamp (ISO 8601 or another common shape, any offset) into aware UTC.

    A value no parser understands becomes None, with a warning: the row still loads.
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
                parsed = pendulum.parse(str(value), strict=False)
            except (ValueError, TypeError, OverflowError):
                log.warning("unreadable timestamp %r: loaded as NULL", value)
                return None
            if not isinstance(parsed, datetime):  # a bare date or time is not a moment
                log.warning("unreadable timestamp %r: loaded as NULL", value)
                return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def to_arrow(rows: list[Row], table: dict[str, Any]) -> pa.Table:
    """A page of canonical rows as an Arrow table, so dlt loads it without its per-row path.

    Canonical columns get their declared types. Any other field a provider sends is kept as a
    text column (JSON text when nested), so a field that changes type between runs never fails
    a load; a field with no value in this page is left out.
    """
    declared = table["columns"]
    keys = {*_names(table.get("primary_key")), *_names(table.get("merge_key"))}
    arrays, fields = [], []
    for name in dict.fromkeys(chain.from_iterable(rows)):
        values = [row.get(name) for row in rows]
        data_type = declared.get(name, {}).get("data_type")
        if data_type is None and values.count(None) == len(values):
            continue
        array = _ARRAY_BUILDERS.get(data_type, _text_array)(values)
        arrays.append(array)
        fields.append(pa.field(name, array.type, nullable=name not in keys))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _text_array(values: list[Any]) -> pa.Array:
    """Text; an id that arrives as a number, or a nested value (as JSON), is still text."""
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array([_as_text(value) for value in values], type=pa.string())


def _timestamp_array(values: list[Any]) -> pa.Array:
    """UTC timestamps from datetimes, or from ISO 8601 text with an offset (Arrow parses a whole
    column at once); anything else value by value through `parse_utc`."""
    try:
        return pa.array(values, type=_TIMESTAMP)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    try:
        return pa.array(values, type=pa.string()).cast(_TIMESTAMP)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array([parse_utc(value) for value in values], type=_TIMESTAMP)


_TIMESTAMP = pa.timestamp("us", tz="UTC")
_ARRAY_BUILDERS: dict[str | None, Callable[[list[Any]], pa.Array]] = {
    "text": _text_array,
    "timestamp": _timestamp_array,
    "bigint": lambda values: pa.array(values, type=pa.int64()),
    "bool": lambda values: pa.array(values, type=pa.bool_()),
}


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _names(key: str | tuple[str, ...] | None) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else tuple(key or ())


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

    @property
    def state_key(self) -> str:
        """The key of this read's cursor in resource state."""
        return f"{self.campaign_activity_id or self.campaign_id}:{self.report}"


class ProviderApi(Protocol):
    """What a provider package offers the canonical resources."""

    name: str
    http: ProviderHttp

    def campaigns(self) -> Iterator[list[Row]]:
        """Canonical `campaigns` rows, a page at a time."""

    def contacts(self) -> Iterator[list[Row]]:
        """Canonical `contacts` rows, a page at a time."""

    def activity_reads(self, campaign: Row) -> list[ReportRead]:
        """The event reports of a sent campaign."""

    def non_engagement_reads(self, campaign: Row) -> list[ReportRead]:
        """The not-opened / not-clicked snapshots of a sent campaign (report = kind)."""

    def summary_reads(self, campaign: Row) -> list[ReportRead]:
        """The summary counts of a sent campaign."""


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
    now: datetime = field(default_factory=lambda: pendulum.now("UTC"))

    @classmethod
    def from_config(
        cls,
        plan: SyncPlan,
        attribution_window_days: int,
        lookback_minutes: int,
        max_concurrency: int,
        start_date: str | None,
    ) -> SyncSettings:
        """Combine a provider's configured settings with the run's plan."""
        if start_date and parse_utc(start_date) is None:
            raise ConfigurationError(f"START_DATE {start_date!r} is not a date: use YYYY-MM-DD or ISO 8601")
        return cls(
            attribution_window=timedelta(days=attribution_window_days),
            lookback=timedelta(minutes=lookback_minutes),
            max_concurrency=max_concurrency,
            start_date=parse_utc(start_date),
            backfill_since=plan.backfill_since,
            backfill_until=plan.backfill_until,
            forgotten=plan.forgotten,
        )

    @property
    def is_backfill(self) -> bool:
        return self.backfill_since is not None


@dataclass
class SyncOutcome:
    """What went wrong in a run without stopping it; the command line turns it into an exit code."""

    failures: list[str] = field(default_factory=list)
    http: ProviderHttp | None = None
    reports_due: int = 0  # (campaign, report) reads this run has to make, and has made: for progress
    reports_done: int = 0
    rows_skipped: int = 0  # events read again but left out of the load, as an earlier run loaded them

    @property
    def quota(self) -> QuotaExhausted | None:
        """The used-up daily quota that stopped the run's requests, if it ran out (kept by `ProviderHttp`)."""
        return self.http.quota_exhausted if self.http is not None else None

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

    def error(self) -> CampaignSyncError | None:
        """The error to end the run with, after what was read has been loaded."""
        if self.quota is not None:
            return self.quota
        if self.failures:
            more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
            return CampaignSyncError(f"{self.failures[0]}{more}; the next run retries them")
        return None


@dataclass
class SyncPlan:
    """What the command line asks of one provider's run: nightly, or a backfill range."""

    backfill_since: datetime | None = None
    backfill_until: datetime | None = None
    forgotten: Forgotten = field(default_factory=Forgotten)  # whose personal data is not loaded
    outcome: SyncOutcome = field(default_factory=SyncOutcome)


def utc_millis(value: datetime) -> str:
    """A timestamp as Constant Contact writes and reads them: UTC with milliseconds (floored)."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


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


COMPLETE = object()
# rows per Arrow table handed to dlt: dlt's cost per item is fixed, so fewer, larger items
ARROW_BATCH_ROWS = 5_000
# how long past its attribution window a sent campaign is still offered to the report reads,
# so that the read after the window closes happens even when a run is missed or fails
REMEMBER_AFTER_WINDOW = timedelta(days=7)


def _to_state(row: Row) -> Row:
    return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in row.items()}


def _from_state(row: Row) -> Row:
    timestamps = CAMPAIGNS["columns"]
    return {
        key: parse_utc(value) if timestamps.get(key, {}).get("data_type") == "timestamp" else value
        for key, value in row.items()
    }


def _is_due(read: ReportRead, cursor: dict[str, Any], settings: SyncSettings) -> bool:
    sent_at = read.sent_at
    if sent_at is None:
        return False
    if settings.is_backfill:
        until = settings.backfill_until or settings.now
        return settings.backfill_since <= sent_at <= until
    if settings.start_date is not None and sent_at < settings.start_date:
        return False
    read_at = cursor.get("read_at")
    # open until one complete read has happened after the attribution window closed
    return read_at is None or parse_utc(read_at) < sent_at + settings.attribution_window or bool(cursor.get("recheck"))


def _reads_pending(api: ProviderApi, campaign: Row, settings: SyncSettings) -> bool:
    """Whether a nightly run still has a report of `campaign` to read (per the report resources' cursors)."""
    resources = dlt.current.source_state().get("resources", {})
    nightly = replace(settings, backfill_since=None, backfill_until=None)
    groups = (
        (CONTACT_ACTIVITY, api.activity_reads),
        (CAMPAIGN_NON_ENGAGEMENT, api.non_engagement_reads),
        (CAMPAIGN_SUMMARIES, api.summary_reads),
    )
    for table, reads_of in groups:
        cursors = resources.get(table["name"], {}).get("cursors", {})
        if any(_is_due(read, cursors.get(read.state_key, {}), nightly) for read in reads_of(campaign)):
            return True
    return False


def _since(cursor: dict[str, Any], settings: SyncSettings) -> datetime | None:
    if settings.is_backfill:
        return settings.backfill_since
    newest = cursor.get("cursor")
    return parse_utc(newest) - settings.lookback if newest else None


def read_due_reports(
    api: ProviderApi, reads: Iterable[ReportRead], settings: SyncSettings, outcome: SyncOutcome
) -> Iterator[tuple[ReportRead, Any]]:
    """Read the due reports concurrently; yield `(read, rows)` pages and `(read, COMPLETE)`.

    The cursor of a read (its newest `occurred_at`, and when it was last read whole) is
    advanced only after its last page, in the state that dlt commits with the data. A
    failed read is recorded in `outcome` and keeps its cursor; a used-up quota stops every
    read; refused credentials end the run.
    """
    if outcome.quota is not None:
        return
    cursors = dlt.current.resource_state().setdefault("cursors", {})
    due = [read for read in reads if _is_due(read, cursors.get(read.state_key, {}), settings)]
    jobs = [Job(read, _job_pages(read, _since(cursors.get(read.state_key, {}), settings))) for read in due]
    outcome.reports_due += len(jobs)
    tallies = {read.state_key: _ReadTally(cursors.get(read.state_key, {}), settings) for read in due}
    for read, page in fetch_concurrently(jobs, settings.max_concurrency):
        tally = tallies[read.state_key]
        if isinstance(page, JobDone):
            outcome.reports_done += 1
            if page.error is None:
                _advance(cursors, read, tally, settings.now)
                yield read, COMPLETE
            elif isinstance(page.error, QuotaExhausted):  # `outcome.quota` says so; no read can go on
                return
            else:
                outcome.record(f"{api.name} {read.report} of campaign {read.campaign_id}", page.error)
            continue
        read_rows = read.to_rows(page)
        rows = tally.new_rows(read_rows, read.whole)
        outcome.rows_skipped += len(read_rows) - len(rows)
        settings.forgotten.scrub(rows)
        for row in rows:
            row["provider"] = api.name
            row["campaign_id"] = read.campaign_id
        yield read, rows


class _ReadTally:
    """What one read has seen: its newest event, its size, and which events it leaves out of the load.

    A whole read (a report without a date filter, EmailOctopus) passes on only the events newer than
    its cursor, so a night's merge follows what is new, not the history. It is exact: every event up
    to the cursor was loaded by the read that set it, whose size the cursor keeps (`rows`). If the
    events up to the cursor now number differently (one arrived late with an old timestamp, or the
    provider dropped one), the cursor asks for one read that leaves nothing out (`recheck`), which
    the next run makes. Events without a timestamp always pass (the merge on `activity_id` drops
    their repeats); identical events share a timestamp, so occurrence numbers are as before.
    """

    def __init__(self, cursor: dict[str, Any], settings: SyncSettings) -> None:
        newest = cursor.get("cursor")
        self.loaded_until = parse_utc(newest) if newest else None
        self.loaded_rows: int | None = cursor.get("rows")
        verified = not settings.is_backfill and not cursor.get("recheck") and self.loaded_rows is not None
        self.cut = self.loaded_until if verified else None
        self.newest: datetime | None = None
        self.rows = 0
        self.rows_up_to_cursor = 0

    def new_rows(self, rows: list[Row], whole: bool) -> list[Row]:
        """Count a page, and return its rows that go on to the load."""
        self.rows += len(rows)
        for row in rows:
            occurred = row.get("occurred_at")
            if occurred is not None and (self.newest is None or occurred > self.newest):
                self.newest = occurred
            if self.loaded_until is not None and (occurred is None or occurred <= self.loaded_until):
                self.rows_up_to_cursor += 1
        if whole and self.cut is not None:
            return [row for row in rows if row.get("occurred_at") is None or row["occurred_at"] > self.cut]
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
    """A campaign's summary counts as a read: one answer (`fetch()`, None if there is none), one row."""

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


def _advance(cursors: dict[str, Any], read: ReportRead, tally: _ReadTally, now: datetime) -> None:
    new = {"campaign_id": read.campaign_id, "report": read.report, "cursor": None}
    cursor = cursors.setdefault(read.state_key, new)
    old = cursor["cursor"]
    if tally.newest is not None and (old is None or tally.newest > parse_utc(old)):
        cursor["cursor"] = tally.newest.isoformat()
    old_read_at = cursor.get("read_at")
    if old_read_at is None or now > parse_utc(old_read_at):
        cursor["read_at"] = now.isoformat()
    if read.whole:
        cursor["rows"] = tally.rows
        cursor["recheck"] = tally.needs_recheck()


def snapshot_digest(rows: Iterable[Row]) -> str:
    """A digest of a not-opened / not-clicked snapshot's contacts and addresses, in any order."""
    entries = sorted(f"{row['contact_id']}\x1f{row.get('email_address') or ''}" for row in rows)
    return hashlib.blake2b("\x1e".join(entries).encode(), digest_size=16).hexdigest()


def isolated(pages: Iterator[list[Row]], outcome: SyncOutcome, what: str) -> Iterator[list[Row]]:
    """Pass a listing's pages on until it ends, fails or the daily quota runs out.

    A failure is recorded in `outcome` (as `what`) and costs only the rest of this listing:
    the other resources go on, what was read loads, and the listing's cursor stays.
    """
    if outcome.quota is not None:
        return
    try:
        yield from pages
    except QuotaExhausted:  # `outcome.quota` says so
        return
    except CampaignSyncError as error:
        outcome.record(what, error)


def with_activity_ids(page: pa.Table, read: ReportRead, provider: str, occurrences: Counter[str]) -> pa.Table:
    """Give each event of a page its deterministic `activity_id`: a hash of its identity fields
    and its occurrence number, so that identical events are told apart and a reread finds the
    same ids. The identity is built column-wise; only the hashing goes row by row."""
    rows = page.num_rows
    page = page.drop_columns([name for name in ("activity_id", "campaign_activity_id") if name in page.column_names])

    def column(name: str) -> pa.ChunkedArray | pa.Array:
        return page[name] if name in page.column_names else pa.nulls(rows, pa.string())

    identities = pc.binary_join_element_wise(
        column("activity_type"),
        column("contact_id"),
        pc.cast(pc.cast(column("occurred_at"), pa.int64()), pa.string()),  # microseconds since the epoch
        # the provider's link id where it has one: a URL looked up for it may change
        pc.coalesce(column("url_id"), column("link_id"), column("url")),
        "\x1f",
        null_handling="replace",
    )
    prefix = f"{provider}\x1f{read.campaign_id}\x1f{read.campaign_activity_id or ''}\x1f"
    ids = []
    for identity in identities.to_pylist():
        occurrences[identity] += 1
        key = f"{prefix}{identity}\x1f{occurrences[identity]}".encode()
        ids.append(hashlib.blake2b(key, digest_size=16).hexdigest())
    page = page.append_column(pa.field("activity_id", pa.string(), nullable=False), pa.array(ids, pa.string()))
    return page.append_column("campaign_activity_id", pa.array([read.campaign_activity_id] * rows, pa.string()))


def canonical_resources(api: ProviderApi, settings: SyncSettings, outcome: SyncOutcome) -> list[DltResource]:
    """The canonical dlt resources of a provider: campaigns, their reports, and contacts.

    The report transformers and contacts are parallelized: dlt advances them in worker threads,
    so their requests overlap, all under the provider's one limiter and in-flight cap.
    """
    outcome.http = api.http

    @dlt.resource(**CAMPAIGNS)
    def campaigns() -> Iterator[list[Row]]:
        # A provider may list only the campaigns changed since the last run; the sent ones whose
        # reports may still be due are remembered here and passed on to the reports again.
        recent: dict[str, Row] = dlt.current.resource_state().setdefault("recent", {})
        listed: set[str] = set()
        for page in isolated(api.campaigns(), outcome, f"{api.name} campaign listing"):
            for row in page:
                row["provider"] = api.name
                listed.add(row["campaign_id"])
                # a campaign deleted at the provider may come as its bare listing row: it keeps
                # what was known of it (sent_at, subject, ...) and takes the new status
                known = recent.get(row["campaign_id"])
                for key, value in (_from_state(known) if known else {}).items():
                    if row.get(key) is None:
                        row[key] = value
                if row.get("sent_at") is not None:
                    recent[row["campaign_id"]] = _to_state(row)
            yield page
        horizon = settings.now - settings.attribution_window - REMEMBER_AFTER_WINDOW
        # forgotten only once none of its reads is due (a stopped run may have left some unread)
        for campaign_id in [
            cid for cid, row in recent.items()
            if parse_utc(row["sent_at"]) < horizon and not _reads_pending(api, _from_state(row), settings)
        ]:
            del recent[campaign_id]
        unlisted = [_from_state(row) for campaign_id, row in recent.items() if campaign_id not in listed]
        if unlisted:
            yield unlisted

    @dlt.transformer(data_from=campaigns, parallelized=True, **CONTACT_ACTIVITY)
    def contact_activity(campaign_page: list[Row]) -> Iterator[list[Row]]:
        reads = [read for campaign in campaign_page for read in api.activity_reads(campaign)]
        occurrences: dict[str, Counter[str]] = {}
        batch: list[pa.Table] = []
        for read, rows in read_due_reports(api, reads, settings, outcome):
            if rows is COMPLETE:
                occurrences.pop(read.state_key, None)  # held for one report only
                continue
            if not rows:
                continue
            counts = occurrences.setdefault(read.state_key, Counter())
            batch.append(with_activity_ids(to_arrow(rows, CONTACT_ACTIVITY), read, api.name, counts))
            if sum(page.num_rows for page in batch) >= ARROW_BATCH_ROWS:
                yield pa.concat_tables(batch, promote_options="default")
                batch = []
        if batch:
            yield pa.concat_tables(batch, promote_options="default")

    @dlt.transformer(data_from=campaigns, parallelized=True, **CAMPAIGN_NON_ENGAGEMENT)
    def campaign_non_engagement(campaign_page: list[Row]) -> Iterator[list[Row]]:
        reads = [read for campaign in campaign_page for read in api.non_engagement_reads(campaign)]
        cursors = dlt.current.resource_state().setdefault("cursors", {})
        snapshots: dict[str, list[Row]] = {}
        batch: list[Row] = []
        for read, rows in read_due_reports(api, reads, settings, outcome):
            if rows is not COMPLETE:
                snapshots.setdefault(read.state_key, []).extend(rows)
                continue
            # one row per contact, even where a page repeats one
            by_contact = {row["contact_id"]: row for row in snapshots.pop(read.state_key, []) if row.get("contact_id")}
            # a snapshot the same as the one loaded is not replaced (its rows keep their `as_of`)
            digest = snapshot_digest(by_contact.values())
            if cursors[read.state_key].get("digest") == digest:
                continue
            cursors[read.state_key]["digest"] = digest
            # the whole snapshot, after a marker that deletes the previous one
            reset = {"provider": api.name, "campaign_id": read.campaign_id, "kind": read.report, "contact_id": ""}
            snapshot = list(by_contact.values())
            for row in snapshot:
                row["kind"] = read.report
                row["as_of"] = settings.now
            batch += [{**reset, SNAPSHOT_RESET: True}, *snapshot]
            if len(batch) >= ARROW_BATCH_ROWS:
                yield to_arrow(batch, CAMPAIGN_NON_ENGAGEMENT)
                batch = []
        if batch:
            yield to_arrow(batch, CAMPAIGN_NON_ENGAGEMENT)

    @dlt.transformer(data_from=campaigns, parallelized=True, **CAMPAIGN_SUMMARIES)
    def campaign_summaries(campaign_page: list[Row]) -> Iterator[list[Row]]:
        reads = [read for campaign in campaign_page for read in api.summary_reads(campaign)]
        for _read, rows in read_due_reports(api, reads, settings, outcome):
            if rows is not COMPLETE:
                for row in rows:
                    row["as_of"] = settings.now
                yield rows

    @dlt.resource(parallelized=True, **CONTACTS)
    def contacts() -> Iterator[list[Row]]:
        for page in isolated(api.contacts(), outcome, f"{api.name} contacts"):
            settings.forgotten.scrub(page)
            for row in page:
                row["provider"] = api.name
            yield page

    return [campaigns, contact_activity, campaign_non_engagement, campaign_summaries, contacts]
