"""What the EmailOctopus API v2 looks like: bearer auth, RFC 7807 errors, cursor paging, and the reads it
offers (docs/providers/emailoctopus-v2.md).

A report is resumed from the `starting_after` cursor that asked for its last page when it was last
read, kept verbatim in the read's cursor (`ResumePoint`), where the report's rows came ordered by
(time, contact). The pages read from there are held back until the summary's count for the report
agrees with the rows before that page plus those read, and the order holds across the resumed page;
otherwise the report is read whole in the same read (docs/providers/emailoctopus-v2.md,
"Incremental"). Every run therefore ends exact, and an ordered report costs about one page a night,
none when the summary counts the rows read before. A not-opened / not-clicked snapshot is read
again only when the summary counts that decide it changed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth

from sources.canonical import (
    CampaignCost,
    ReportRead,
    ResumePoint,
    Row,
    SyncOutcome,
    SyncSettings,
    parse_utc,
    summary_read,
)
from sources.emailoctopus import mapping, mapping_v2
from sources.emailoctopus.client import NAME, PAGE_SIZE, contacts_of_list, items, list_ids, listed_campaign_costs
from sources.errors import CredentialsRefused, NotFound, ProviderError
from sources.http import Job, JobDone, ProviderHttp, after_pages_handed_on, fetch_concurrently, segment
from sources.redaction import redact, register_secret

# docs/providers/emailoctopus-v2.md, "Endpoints": a call per contact status reads every contact
CONTACT_STATUSES = ("subscribed", "unsubscribed", "pending")
# each event report's rows, as the summary counts them (`mapping.summary_row`'s names)
SUMMARY_COUNTS = {
    "sent": "sent", "opened": "opened_total", "clicked": "clicked_total", "bounced": "bounced",
    "complained": "complained", "unsubscribed": "unsubscribed",
}
# the summary counts that decide who is in a snapshot: the recipients, less those who opened (clicked) or bounced
SNAPSHOT_COUNTS = {
    "not-opened": ("sent", "opened_unique", "bounced"), "not-clicked": ("sent", "clicked_unique", "bounced"),
}
# docs/providers/emailoctopus-v2.md, "Authentication": keys made before v2 work only with 1.6
LEGACY_KEY = (
    "a key made before 2024-10-07 (labelled 'legacy') works only with API 1.6: set {} to 1.6, or make a new key"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _problem(response: requests.Response) -> str:
    """The kind and detail of an RFC 7807 error body (docs/providers/emailoctopus-v2.md, "Errors")."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if not isinstance(body, dict):
        return ""
    kind = str(body.get("type") or "").rsplit("#", 1)[-1]
    return f"{kind} {body.get('detail') or body.get('title') or ''}".strip()


def check(response: requests.Response, key_setting: str, version_setting: str) -> None:
    """Raise the error a v2 response stands for, if it is not a success: a refused key names its setting
    (and that a legacy key works only with 1.6), a 404 is `NotFound`."""
    status = response.status_code
    if status == 200:
        return
    problem = redact(_problem(response))
    if status == 401:
        raise CredentialsRefused(NAME, key_setting, f"HTTP 401 {problem}; {LEGACY_KEY.format(version_setting)}")
    if status == 403:
        raise CredentialsRefused(NAME, key_setting, f"HTTP 403 {problem}")
    if status == 404:
        raise NotFound(problem or "not-found")
    raise ProviderError(f"{NAME}: HTTP {status} {problem} from {redact(response.url)}")


def _next(body: Any) -> Any:
    paging = body.get("paging") if isinstance(body, dict) else None
    return paging.get("next") if isinstance(paging, dict) else None


def next_url(body: Any) -> str | None:
    """`paging.next.url`, followed verbatim; None at the end (`next` null or absent; a `next` that leads
    to an empty page ends the read there)."""
    link = _next(body)
    if isinstance(link, dict) and link.get("url"):
        return str(link["url"])
    return None


def next_cursor(body: Any) -> str | None:
    """The `starting_after` of the next page, verbatim: `paging.next.starting_after`, else the one in its URL."""
    link = _next(body)
    if not isinstance(link, dict):
        return None
    if link.get("starting_after"):
        return str(link["starting_after"])
    found = parse_qs(urlsplit(str(link.get("url") or "")).query).get("starting_after")
    return found[0] if found else None


def _order_key(raw: dict[str, Any]) -> list[Any] | None:
    """A report row's place in (time, contact) order: [microseconds since the epoch, contact id]; None
    for a row without either, whose place cannot be told."""
    occurred = parse_utc(raw.get("occurred_at")) if isinstance(raw, dict) else None
    contact = raw.get("contact_id") if isinstance(raw, dict) else None
    if occurred is None or contact is None:
        return None
    return [(occurred - _EPOCH) // timedelta(microseconds=1), str(contact)]


@dataclass
class _Position:
    """How far a walk through a report has come: its rows so far, the page being read (the rows before it,
    the cursor that asked for it, the key of the row before it), the last row's key, and whether the
    keys never went down."""

    rows: int = 0
    rows_before: int = 0
    after: str | None = None
    boundary: list[Any] | None = None
    last: list[Any] | None = None
    ordered: bool = True

    @classmethod
    def resumed(cls, stored: dict[str, Any]) -> _Position:
        """Where the last read's last page began: the walk goes on from there."""
        return cls(rows=int(stored.get("rows_before") or 0), last=stored.get("boundary"))

    def page(self, after: str | None, raws: list[dict[str, Any]]) -> None:
        """Count a page asked for with `after`."""
        self.rows_before, self.after, self.boundary = self.rows, after, self.last
        for raw in raws:
            key = _order_key(raw)
            if key is None or (self.last is not None and key < self.last):
                self.ordered = False
            self.last = key or self.last
            self.rows += 1

    def kept(self) -> dict[str, Any]:
        """What the read's cursor keeps: where the last page began, and whether the report was in order."""
        return {"starting_after": self.after, "rows_before": self.rows_before, "boundary": self.boundary,
                "rows": self.rows, "ordered": self.ordered}


class _Summaries:
    """Each campaign's summary, fetched once a run: its summary row and its reports' counts come from it."""

    def __init__(self, http: ProviderHttp) -> None:
        self.http = http
        self.known: dict[str, Any] = {}
        self.locks: dict[str, threading.Lock] = {}
        self.lock = threading.Lock()

    def get(self, campaign_id: str) -> Any:
        """The summary (None: the campaign has none)."""
        with self.lock:
            lock = self.locks.setdefault(campaign_id, threading.Lock())
        with lock:
            if campaign_id not in self.known:
                try:
                    self.known[campaign_id] = self.http.get(f"campaigns/{segment(campaign_id)}/reports/summary")
                except NotFound:
                    self.known[campaign_id] = None
            return self.known[campaign_id]


def _resumable_read(campaign: Row, report: str, pages: Any, to_rows: Any, **options: Any) -> ReportRead:
    """A read of one report of `campaign` whose `pages(resume, since)` learn where its last read
    ended, and tell where this one ends (`ResumePoint`)."""
    resume = ResumePoint()
    return ReportRead(
        campaign_id=campaign["campaign_id"], report=report, sent_at=campaign["sent_at"],
        pages=partial(pages, resume), to_rows=to_rows, resume=resume, **options,
    )


class EmailOctopusV2Api:
    """The EmailOctopus v2 reads, as the canonical resources need them."""

    name = NAME

    def __init__(
        self, api_key: str, base_url: str, requests_per_second: float, settings: SyncSettings, outcome: SyncOutcome
    ) -> None:
        register_secret(api_key)
        self.settings = settings
        self.outcome = outcome
        self.http = ProviderHttp(
            provider=NAME,
            base_url=base_url,
            requests_per_second=requests_per_second,
            max_concurrency=settings.max_concurrency,
            is_throttled=lambda response: response.status_code == 429,
            check=partial(check, key_setting=settings.setting(NAME, "api_key"),
                          version_setting=settings.setting(NAME, "api_version")),
            auth=BearerTokenAuth(api_key),  # a header: the key is in no URL
        )
        self.summaries = _Summaries(self.http)

    def _walk(self, path: str, params: dict[str, Any]) -> Iterator[tuple[str | None, list[dict[str, Any]]]]:
        """The pages of a listing, each with the `starting_after` that asked for it (None: the first)."""
        after = params.get("starting_after")
        cursors: list[str | None] = []

        def rows_of(body: Any) -> list[dict[str, Any]]:
            cursors.append(next_cursor(body))
            return items(body)

        asked = {"limit": PAGE_SIZE, **{key: value for key, value in params.items() if value is not None}}
        for page in self.http.pages(path, asked, items_of=rows_of, next_of=next_url):
            yield after, page
            after = cursors[-1]

    def _pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[list[dict[str, Any]]]:
        return (page for _after, page in self._walk(path, params or {}))

    def campaigns(self, state: dict[str, Any]) -> Iterator[list[Row]]:
        """Every campaign, drafts included (no cursor: `state` is not used)."""
        for page in self._pages("campaigns"):
            yield [mapping_v2.campaign_row(raw) for raw in self.outcome.with_ids(page, "id", f"{NAME} campaign")]

    def campaign_costs(self) -> list[CampaignCost]:
        """What reading each campaign takes, from the campaign listing: its event reports from their cursors."""
        return listed_campaign_costs(self.campaigns({}), events_whole=False)

    def remember(self, campaigns: list[Row]) -> None:
        """Nothing to look up: a remembered campaign's reads are planned from its row."""

    def activity_reads(self, campaign: Row) -> list[ReportRead]:
        """One read per event report of the campaign, resumed where its order allows."""
        return [
            _resumable_read(
                campaign, report, partial(self._report_pages, campaign["campaign_id"], report),
                partial(mapping_v2.activity_rows, activity_type),
                link_in_identity=False,  # v2's rows have no link: 1.6's and v2's ids agree without it
            )
            for report, activity_type in mapping.ACTIVITY_REPORTS.items()
        ]

    def _counts(self, campaign_id: str, names: tuple[str, ...]) -> list[int] | None:
        """Counts of the campaign's summary (None when it has none, or not all of them)."""
        summary = self.summaries.get(campaign_id)
        if not isinstance(summary, dict):
            return None
        row = mapping.summary_row(summary)
        counts = [row.get(name) for name in names]
        return [int(count) for count in counts if count is not None] if None not in counts else None

    def _report_pages(
        self, campaign_id: str, report: str, resume: ResumePoint, _since: datetime | None
    ) -> Iterator[list[dict[str, Any]]]:
        """A report's pages: none when the summary counts the rows read before, from its stored cursor
        when that holds (`_resumed`), else whole."""
        path = f"campaigns/{segment(campaign_id)}/reports"
        stored = resume.stored
        if stored is not None and stored.get("ordered"):
            if self._counts(campaign_id, (SUMMARY_COUNTS[report],)) == [stored.get("rows")]:
                resume.reached = stored  # nothing new
                return
            resumed = self._resumed(campaign_id, report, stored)
            if resumed is not None:
                position, tail = resumed
                resume.reached = position.kept()
                yield from tail
                return
        position = _Position()
        for after, page in self._walk(path, {"status": report}):
            position.page(after, page)
            yield page
        resume.reached = position.kept()

    def _resumed(
        self, campaign_id: str, report: str, stored: dict[str, Any]
    ) -> tuple[_Position, list[list[dict[str, Any]]]] | None:
        """The pages from the stored cursor on, if they complete what was read before: in order from the
        row before them (the first not the same event as that row), and as many rows in all as the summary
        counts. None when not: the report is to be read whole."""
        position = _Position.resumed(stored)
        tail = []
        params = {"status": report, "starting_after": stored.get("starting_after")}
        try:
            for after, page in self._walk(f"campaigns/{segment(campaign_id)}/reports", params):
                position.page(after, page)
                tail.append(page)
        except NotFound:
            raise
        except ProviderError:  # a cursor the API no longer takes
            return None
        first = next((row for page in tail for row in page), None)
        if not position.ordered or (first is not None and _order_key(first) == stored.get("boundary")):
            return None
        counted = self._counts(campaign_id, (SUMMARY_COUNTS[report],))
        return (position, tail) if counted == [position.rows] else None

    def non_engagement_reads(self, campaign: Row) -> list[ReportRead]:
        """The not-opened and not-clicked snapshots of the campaign, read whole when the counts that
        decide them changed."""
        return [
            _resumable_read(
                campaign, kind, partial(self._snapshot_pages, campaign["campaign_id"], status),
                mapping_v2.non_engagement_rows,
            )
            for status, kind in mapping.NON_ENGAGEMENT_REPORTS.items()
        ]

    def _snapshot_pages(
        self, campaign_id: str, status: str, resume: ResumePoint, _since: datetime | None
    ) -> Iterator[list[dict[str, Any]]]:
        """A snapshot's pages; none when the summary's counts that decide it are those of the one loaded
        (the recipients, and who opened or clicked, and bounced: none of them goes back)."""
        counts = self._counts(campaign_id, SNAPSHOT_COUNTS[status])
        kept = {"counts": counts} if counts is not None else None
        if kept is not None and resume.stored == kept:
            resume.unchanged, resume.reached = True, kept
            return
        yield from self._pages(f"campaigns/{segment(campaign_id)}/reports", {"status": status})
        resume.reached = kept

    def summary_reads(self, campaign: Row) -> list[ReportRead]:
        """The summary counts of the campaign (the same response its reports are checked against)."""
        return [summary_read(campaign, partial(self.summaries.get, campaign["campaign_id"]), mapping.summary_row)]

    def contacts(self, state: dict[str, Any]) -> Iterator[list[Row]]:
        """The contacts of every list, a call per status, each list's changed since its cursor
        (`last_updated_at.gte`, a lookback before the newest time it read; a new list whole). A list
        deleted since it was listed has none; one whose contacts fail is recorded and keeps its cursor."""
        cursors: dict[str, str] = state.setdefault("updated_since", {})
        lists = list_ids(self._pages("lists"), self.outcome)
        jobs = [Job(list_id, partial(self._list_contacts, list_id, cursors.get(list_id))) for list_id in lists]
        newest: dict[str, datetime] = {}
        for list_id, page in fetch_concurrently(self.http.pool, jobs):
            if isinstance(page, JobDone):
                if page.error is None and list_id in newest:
                    after_pages_handed_on(partial(cursors.__setitem__, list_id, newest[list_id].isoformat()))
                elif page.error is not None and not isinstance(page.error, NotFound):
                    self.outcome.record(f"{NAME} contacts of list {list_id}", page.error)
                continue
            rows = [mapping_v2.contact_row(raw, list_id) for raw in contacts_of_list(page, list_id, self.outcome)]
            for row in rows:
                changed = row["updated_at"] or row["created_at"]
                if changed is not None and (list_id not in newest or changed > newest[list_id]):
                    newest[list_id] = changed
            yield rows

    def _list_contacts(self, list_id: str, since: str | None) -> Iterator[list[dict[str, Any]]]:
        changed_since = parse_utc(since)
        params = {"last_updated_at.gte": (changed_since - self.settings.lookback).isoformat()} if changed_since else {}
        for status in CONTACT_STATUSES:
            yield from self._pages(f"lists/{segment(list_id)}/contacts", {"status": status, **params})
