"""The canonical dlt resources of a provider: campaigns, their reports, and contacts."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from itertools import zip_longest
from typing import Any, Protocol

import dlt
import pyarrow as pa
from dlt.sources import DltResource

from sources.canonical.arrow import ArrowBatch, to_arrow, with_activity_ids
from sources.canonical.plan import CampaignCost
from sources.canonical.reads import (
    LISTINGS,
    ReadDone,
    ReadPage,
    ReportCursor,
    ReportCursors,
    ReportRead,
    SyncOutcome,
    SyncSettings,
    is_due,
    pass_unfinished,
    read_due_reports,
)
from sources.canonical.tables import (
    CAMPAIGN_NON_ENGAGEMENT,
    CAMPAIGN_SUMMARIES,
    CAMPAIGNS,
    CONTACT_ACTIVITY,
    CONTACT_DIGEST,
    CONTACT_DIGEST_VERSION,
    CONTACTS,
    OWNER_FILTER,
    SNAPSHOT_RESET,
    Row,
    stamp,
)
from sources.canonical.times import parse_utc
from sources.errors import CampaignSyncError, QuotaExhausted
from sources.http import ProviderHttp, ReadAhead


class ProviderApi(Protocol):
    """What a provider package offers the canonical resources."""

    name: str
    http: ProviderHttp

    def campaigns(self, state: dict[str, Any]) -> Iterator[list[Row]]:
        """Canonical `campaigns` rows, a page at a time (`state`: the campaigns resource's, for its cursor)."""

    def contacts(self, state: dict[str, Any]) -> Iterator[list[Row]]:
        """Canonical `contacts` rows, a page at a time (`state`: the contacts resource's, for its cursor)."""

    def activity_reads(self, campaign: Row) -> list[ReportRead]:
        """The event reports of a sent campaign."""

    def non_engagement_reads(self, campaign: Row) -> list[ReportRead]:
        """The not-opened / not-clicked snapshots of a sent campaign (report = kind)."""

    def summary_reads(self, campaign: Row) -> list[ReportRead]:
        """The summary counts of a sent campaign."""

    def campaign_costs(self) -> list[CampaignCost]:
        """What reading each sent campaign takes, from listing calls only (`campaign-sync plan`)."""

    def remember(self, campaigns: list[Row]) -> None:
        """Make what planning the reads of remembered (sent, not listed this run) campaigns needs.

        Planning (`*_reads`) makes no request: a provider that must look something up for a
        remembered campaign does it here, in the campaigns resource, before the reads are planned.
        """


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


def _forget_read_campaigns(api: ProviderApi, campaigns: list[Row], settings: SyncSettings) -> None:
    """Forget the remembered campaigns of `campaigns` that are `REMEMBER_AFTER_WINDOW` past their attribution
    window and have none of their reads due (a stopped run may have left some unread).

    Asked when the listing ends (for what earlier runs read) and when each report resource has read a
    page of campaigns (for what this run read: the last of the three forgets them), so that a first run
    does not keep every old campaign it has just read whole."""
    recent = dlt.current.resource_state(str(CAMPAIGNS["name"])).get("recent", {})
    horizon = settings.now - settings.attribution_window - REMEMBER_AFTER_WINDOW
    for campaign in campaigns:
        if (
            campaign["campaign_id"] in recent
            and (campaign.get("sent_at") or horizon) < horizon
            and not _reads_pending(api, campaign, settings)
        ):
            del recent[campaign["campaign_id"]]


def _reads_pending(api: ProviderApi, campaign: Row, settings: SyncSettings) -> bool:
    """Whether a nightly run still has a report of `campaign` to read (per the report resources' cursors)."""
    nightly = replace(settings, backfill_since=None, backfill_until=None)
    groups = (
        (CONTACT_ACTIVITY, api.activity_reads),
        (CAMPAIGN_NON_ENGAGEMENT, api.non_engagement_reads),
        (CAMPAIGN_SUMMARIES, api.summary_reads),
    )
    for table, reads_of in groups:
        cursors = ReportCursors(dlt.current.resource_state(table["name"]))  # that report resource's
        if any(is_due(read, ReportCursor.of(cursors, read), nightly) for read in reads_of(campaign)):
            return True
    return False


def snapshot_digest(rows: Iterable[Row]) -> str:
    """A digest of a not-opened / not-clicked snapshot's contacts and addresses, in any order."""
    entries = sorted(f"{row['contact_id']}\x1f{row.get('email_address') or ''}" for row in rows)
    return hashlib.blake2b("\x1e".join(entries).encode(), digest_size=16).hexdigest()


def contact_digest(row: Row) -> str:
    """A digest of a canonical `contacts` row as it is loaded, before it has its `CONTACT_DIGEST` (key, stamp
    and every field, nested ones included): the same digest, the same row."""
    text = json.dumps([CONTACT_DIGEST_VERSION, row], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def changed_contacts(page: list[Row], loaded: Collection[str]) -> list[Row]:
    """The rows of a page of contacts (scrubbed and stamped) that the destination does not hold as they are
    (`loaded`: the digests it holds), each with its `CONTACT_DIGEST`, which is loaded with it."""
    changed = []
    for row in page:
        digest = contact_digest(row)
        if digest not in loaded:
            row[CONTACT_DIGEST] = digest
            changed.append(row)
    return changed


def loaded_contact_digests(client: Any, provider: str, account: str) -> frozenset[str]:
    """The `CONTACT_DIGEST`s of the account's contacts in the destination (`client`: a SQL client of the
    dataset the run loads; none before the first load). Read from the destination, not kept in dlt state:
    whatever changed the table (a load, an erasure, a table dropped or restored) is what the digests say;
    an erasure empties them."""
    if not client.execute_sql(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "AND column_name = %s",
        client.dataset_name, CONTACTS["name"], CONTACT_DIGEST,
    ):
        return frozenset()
    rows = client.execute_sql(
        f"SELECT {CONTACT_DIGEST} FROM {client.make_qualified_table_name(CONTACTS['name'])} "
        f"WHERE {OWNER_FILTER} AND {CONTACT_DIGEST} IS NOT NULL",
        provider, account,
    )
    return frozenset(row[0] for row in rows or [])


# where a backfill keeps the requests each of its listings took when it read them whole (source state)
LISTING_REQUESTS = "listing_requests"


def longest_first(reads_of_campaigns: Iterable[list[ReportRead]]) -> list[ReportRead]:
    """The reads of a page of campaigns, every campaign's first report, then every one's second, and so on.

    Each provider lists a campaign's sends first, its longest report (a page is read only after the one
    before it): started first, the long reads end with the short ones instead of after them, alone.
    """
    by_position = zip_longest(*reads_of_campaigns)
    return [read for position in by_position for read in position if read is not None]


def backfill_listings_cost(source_state: dict[str, Any]) -> int | None:
    """The requests a backfill's listings took together, as the last backfill that read them whole kept
    them (None before one did): the least `--max-requests` of a backfill that reads a report is one more."""
    kept = source_state.get(LISTING_REQUESTS, {})
    return sum(kept[listing] for listing in LISTINGS) if set(LISTINGS) <= set(kept) else None


def read_listing(
    reader: ReadAhead[list[Row]], outcome: SyncOutcome, settings: SyncSettings | None = None
) -> Iterator[list[Row]]:
    """Pass on a listing's pages, read ahead in a thread of its own (`reader`), until it ends, fails or
    the daily quota runs out.

    A failure is recorded in `outcome` (as `reader.name`) and costs only the rest of this listing:
    the other resources go on, what was read loads, and the listing's cursor stays.

    One of `LISTINGS` (`reader.listing`, with the run's `settings`): stopped (the quota, `--max-requests`),
    it leaves the run's pass over the reports unfinished; read whole without a failure, it counts its
    requests in `outcome.listings_read`, and a backfill keeps them (`backfill_listings_cost`).
    """
    listing = reader.listing
    failures, whole = len(outcome.failures), False
    try:
        if outcome.quota is None:  # not begun once the quota is used up
            for page in reader:
                outcome.advanced()  # the request of a page that brings no row is shown too
                yield page
            outcome.advanced()  # and the listing's last, which may bring no page
            whole = len(outcome.failures) == failures
    except QuotaExhausted:  # `outcome.quota` says so
        pass
    except CampaignSyncError as error:
        outcome.record(reader.name, error)
    if listing is None or settings is None or outcome.http is None:
        return
    if whole:
        took = outcome.listings_read[listing] = outcome.http.listing_requests[listing]
        if settings.is_backfill:
            dlt.current.source_state().setdefault(LISTING_REQUESTS, {})[listing] = took
    if outcome.quota is not None:
        pass_unfinished(settings)


def canonical_resources(api: ProviderApi, settings: SyncSettings, outcome: SyncOutcome) -> list[DltResource]:
    """The canonical dlt resources of a provider: campaigns, their reports, and contacts.

    They are plain generators, which dlt advances in its extract thread; that thread makes no
    request. The listings are read ahead, each in a thread of its own (`ReadAhead`), and a
    transformer reads its page of campaigns' reports in the account's `ReadPool`
    (`read_due_reports`), waiting for the next page when it is not read yet. Every request passes
    the provider's one limiter and in-flight cap (sources/http.py).
    """
    outcome.http = api.http
    api.http.cap_requests(settings.max_requests)

    started: list[ReadAhead[list[Row]]] = []

    def contacts_listing() -> ReadAhead[list[Row]]:
        """The contacts listing, begun by the campaigns resource: dlt advances a resource only after the
        one before has handed on a page, and the report reads would wait for the contacts' first page."""
        if not started:
            contacts_state = dlt.current.resource_state("contacts")  # named: called from either resource
            started.append(ReadAhead(api.contacts(contacts_state), f"{api.name} contacts", "contacts"))
        return started[0]

    @dlt.resource(**CAMPAIGNS)
    def campaigns() -> Iterator[list[Row]]:
        # A provider may list only the campaigns changed since the last run; the sent ones whose
        # reports may still be due are remembered here and passed on to the reports again.
        state = dlt.current.resource_state()
        recent: dict[str, Row] = state.setdefault("recent", {})
        listed: set[str] = set()
        contacts_listing().start()
        for page in read_listing(
            ReadAhead(api.campaigns(state), f"{api.name} campaign listing", "campaigns"), outcome, settings
        ):
            stamp(page, api.name, settings.account)
            for row in page:
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
        api.remember([_from_state(row) for campaign_id, row in recent.items() if campaign_id not in listed])
        _forget_read_campaigns(api, [_from_state(row) for row in recent.values()], settings)
        unlisted = [_from_state(row) for campaign_id, row in recent.items() if campaign_id not in listed]
        if unlisted:
            yield unlisted

    @dlt.transformer(data_from=campaigns, **CONTACT_ACTIVITY)
    def contact_activity(campaign_page: list[Row]) -> Iterator[pa.Table]:
        reads = longest_first(api.activity_reads(campaign) for campaign in campaign_page)
        occurrences: dict[str, Counter[str]] = {}
        batch = ArrowBatch()  # handed on when full; dlt then gives the turn to the other resources
        for event in read_due_reports(api.name, reads, settings, outcome):
            read = event.read
            if isinstance(event, ReadDone):
                occurrences.pop(read.state_key, None)  # held for one report only
            elif event.rows:
                outcome.campaigns_with_events.add(read.campaign_id)
                counts = occurrences.setdefault(read.state_key, Counter())
                page = to_arrow(event.rows, CONTACT_ACTIVITY)
                if (full := batch.add(with_activity_ids(page, read, api.name, settings.account, counts))) is not None:
                    yield full
        if (rest := batch.take()) is not None:
            yield rest
        _forget_read_campaigns(api, campaign_page, settings)

    @dlt.transformer(data_from=campaigns, **CAMPAIGN_NON_ENGAGEMENT)
    def campaign_non_engagement(campaign_page: list[Row]) -> Iterator[pa.Table]:
        reads = longest_first(api.non_engagement_reads(campaign) for campaign in campaign_page)
        cursors = ReportCursors(dlt.current.resource_state())
        # per read: its contacts' addresses (one per contact, the last a page gives), not its rows, which
        # take several times the memory, and the reads of many large snapshots run at once
        snapshots: dict[str, dict[str, str | None]] = {}
        for event in read_due_reports(api.name, reads, settings, outcome):
            read = event.read
            if isinstance(event, ReadPage):
                addresses = snapshots.setdefault(read.state_key, {})
                addresses.update((row["contact_id"], row.get("email_address")) for row in event.rows
                                 if row.get("contact_id"))
                continue
            addresses = snapshots.pop(read.state_key, {})
            if read.resume is not None and read.resume.unchanged:  # the provider knows it is the one loaded
                continue
            snapshot: list[Row] = [{"contact_id": cid, "email_address": email} for cid, email in addresses.items()]
            # a snapshot the same as the one loaded is not replaced (its rows keep their `as_of`)
            digest = snapshot_digest(snapshot)
            if event.cursor.digest == digest:
                continue
            event.cursor.digest = digest
            event.cursor.save(cursors, read)
            # the whole snapshot, after a marker that deletes the previous one, handed on at once (dlt then
            # gives the turn to the other resources: `contact_activity`)
            reset = {
                "provider": api.name, "account": settings.account, "campaign_id": read.campaign_id,
                "kind": read.report, "contact_id": "",
            }
            for row in snapshot:
                row.update(provider=api.name, account=settings.account, campaign_id=read.campaign_id,
                           kind=read.report, as_of=settings.now)
            outcome.snapshot_resets += 1
            yield to_arrow([{**reset, SNAPSHOT_RESET: True}, *snapshot], CAMPAIGN_NON_ENGAGEMENT)
        _forget_read_campaigns(api, campaign_page, settings)

    @dlt.transformer(data_from=campaigns, **CAMPAIGN_SUMMARIES)
    def campaign_summaries(campaign_page: list[Row]) -> Iterator[list[Row]]:
        reads = longest_first(api.summary_reads(campaign) for campaign in campaign_page)
        for event in read_due_reports(api.name, reads, settings, outcome):
            if isinstance(event, ReadPage):
                for row in event.rows:
                    row["as_of"] = settings.now
                yield event.rows
        _forget_read_campaigns(api, campaign_page, settings)

    @dlt.resource(**CONTACTS)
    def contacts() -> Iterator[list[Row]]:
        # a contact loaded as it is listed now is not passed on again (most providers list them all each run)
        for page in read_listing(contacts_listing(), outcome, settings):
            settings.forgotten.scrub(page)
            stamp(page, api.name, settings.account)
            changed = changed_contacts(page, settings.loaded_contact_digests)
            if changed:
                yield changed

    @dlt.resource(selected=False)
    def campaign_costs() -> Iterator[list[CampaignCost]]:
        """What reading each sent campaign takes, for `campaign-sync plan`: never loaded."""
        yield api.campaign_costs()

    return [campaigns, contact_activity, campaign_non_engagement, campaign_summaries, contacts, campaign_costs]
