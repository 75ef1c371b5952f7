"""What the Constant Contact v3 API looks like: OAuth, errors, paging, and the reads it offers.

A campaign is made of campaign activities; only the `primary_email` and `resend` ones have
tracking reports. Campaigns are listed by `updated_at` (`after_date` from the last run);
a listed campaign's activities, their details and send history are looked up once and shared
by every report read, and stay on the campaign row (`campaign_activities`), so that a campaign
offered again from memory needs no lookup but its resends'. Tracking reports have no date
filter and come newest first, so a read pages only until its rows are older than the cursor
minus the lookback.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import requests

from sources.canonical import (
    CampaignCost,
    ListingCursor,
    ReportCost,
    ReportRead,
    Row,
    SyncOutcome,
    SyncSettings,
    parse_utc,
    provider_id,
    summary_read,
    utc_millis,
)
from sources.constant_contact_v3 import mapping
from sources.errors import CredentialsRefused, NotFound, ProviderError, QuotaExhausted, UnusableValue, setting_name
from sources.http import (
    Job,
    JobDone,
    ProviderHttp,
    after_pages_handed_on,
    error_entries,
    fetch_concurrently,
    segment,
    shared_budget,
)
from sources.oauth import RefreshingAccessToken, RefreshingBearerAuth, RefreshTokenFile
from sources.redaction import printable, shown

NAME = "constant_contact_v3"
SECRET_KEYS = ("client_id", "client_secret", "refresh_token")
SECRET_SETTINGS = {key: setting_name(NAME, key) for key in SECRET_KEYS}
PAGE_SIZE = 500
TRACKED_ROLES = ("primary_email", "resend")
# statuses of a campaign that is about to be sent: checked again every run until it is
PENDING_STATUSES = ("Scheduled", "Executing")
# activity statuses that have no send history yet
UNSENT_ACTIVITY_STATUSES = ("DRAFT", "SCHEDULED")
# 10,000 a day per application, shared by every connected account (docs/providers/constant-contact-v3.md § Limits)
DAILY_QUOTA = 10_000
# how many ids a call takes is not documented; 50 (docs/providers/constant-contact-v3.md § Open questions)
XREF_BATCH = 50
QUOTA_EXCEEDED = "quota_exceeded"


def is_throttled(response: requests.Response) -> bool:
    """The per-second 429 (`throttled`) slows the run down; the daily one (`quota_exceeded`) stops it."""
    return response.status_code == 429 and not _is_quota(response)


def _is_quota(response: requests.Response) -> bool:
    return response.status_code == 429 and any(key == QUOTA_EXCEEDED for key, _ in error_entries(response))


def check(response: requests.Response, client_setting: str = SECRET_SETTINGS["client_id"]) -> None:
    """Raise the error a v3 response stands for, if it is not a success (a refusal names the account's
    `client_setting`)."""
    if response.status_code == 200:
        return
    if response.status_code == 401:
        setting = f"{client_setting} (the app's scopes)"
        raise CredentialsRefused(NAME, setting, "the API refused the access token")
    if _is_quota(response):
        raise QuotaExhausted(
            f"{NAME}: the daily request quota is used up (quota_exceeded); what was read is loaded, "
            "and a run after 00:00 UTC resumes from there"
        )
    errors = error_entries(response)
    if response.status_code == 404 and any(key for key, _ in errors):  # the API's own 404, not a proxy's
        raise NotFound(f"{NAME}: not found: {shown(response.url)}")
    detail = shown("; ".join(f"{key} {message}".strip() for key, message in errors))
    raise ProviderError(f"{NAME}: HTTP {response.status_code} {detail} from {shown(response.url)}")


def next_link(body: Any) -> Any:
    """The `_links.next.href` link, followed verbatim (it carries every parameter); None at the end."""
    links = body.get("_links") if isinstance(body, dict) else None
    following = links.get("next") if isinstance(links, dict) else None
    href = following.get("href") if isinstance(following, dict) else None
    return href or None


def items(key: str, body: Any) -> list[dict[str, Any]]:
    """The rows of a list response, under `key` (a response without it is an empty list)."""
    rows = body.get(key) if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(rows, list | None):
        raise ProviderError(f"{NAME}: a list response without a `{key}` array")
    return rows or []


@dataclass
class ActivityInfo:
    """A campaign activity as this run knows it: `details` when they were read this run."""

    id: str
    role: str
    sent_at: datetime | None = None
    details: dict[str, Any] | None = None

    @property
    def tracked(self) -> bool:
        return self.role in TRACKED_ROLES


@dataclass
class CampaignInfo:
    """A campaign's activities, looked up once per run; `listed` when it was listed (changed) this run."""

    campaign_id: str
    activities: list[ActivityInfo] = field(default_factory=list)
    listed: bool = False

    @property
    def primary(self) -> ActivityInfo | None:
        return next((a for a in self.activities if a.role == "primary_email"), None)

    @property
    def tracked(self) -> list[ActivityInfo]:
        return [a for a in self.activities if a.tracked]


def _older(row: dict[str, Any], since: datetime) -> bool:
    created = parse_utc(row.get("created_time"))
    return created is not None and created < since


class ConstantContactV3Api:
    """The Constant Contact v3 reads, as the canonical resources need them."""

    name = NAME

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        base_url: str,
        token_url: str,
        refresh_token_file: str,
        requests_per_second: float,
        max_concurrency: int,
        settings: SyncSettings,
        outcome: SyncOutcome,
    ) -> None:
        self.settings = settings
        self.outcome = outcome
        secret_settings = {key: settings.setting(NAME, key) for key in SECRET_KEYS}  # the account's, for messages
        token_file = RefreshTokenFile(refresh_token_file, refresh_token, secret_settings["refresh_token"])
        self.tokens = RefreshingAccessToken(
            NAME, client_id, client_secret, refresh_token, token_url, token_file, secret_settings
        )
        self.http = ProviderHttp(
            provider=NAME,
            base_url=base_url,
            requests_per_second=requests_per_second,
            max_concurrency=max_concurrency,
            is_throttled=is_throttled,
            check=partial(check, client_setting=secret_settings["client_id"]),
            daily_quota=DAILY_QUOTA,
            # the limits are the application's (its client id): every account of it shares one budget
            budget=shared_budget(NAME, base_url, client_id),
            auth=RefreshingBearerAuth(self.tokens),
        )
        self._campaigns: dict[str, CampaignInfo] = {}  # this run's
        self._campaigns_lock = threading.Lock()
        self._summaries: dict[str, dict[str, Any]] | None = None
        self._summaries_error: Exception | None = None
        self._summaries_lock = threading.Lock()
        self._contact_names: tuple[dict[str, str], dict[str, str]] | None = None
        self._gone: set[str] = set()

    def _pages(self, path: str, key: str, params: dict[str, Any] | None = None) -> Iterator[list[dict[str, Any]]]:
        return self.http.pages(path, {"limit": PAGE_SIZE, **(params or {})}, partial(items, key), next_link)

    # ---- campaigns ----
    def campaigns(self, state: dict[str, Any]) -> Iterator[list[Row]]:
        """The campaigns changed since the last run (all of them in a backfill), and scheduled ones sent since.

        The listing cursor (`after_date` on `updated_at`) and the scheduled campaigns to check
        again live in the campaigns resource's state. A campaign whose lookups fail is left out
        and recorded; the cursor then stays, and the next run reads it again.
        """
        listing = ListingCursor(state, self.settings.lookback, self.settings.is_backfill, legacy_key="after_date")
        since = listing.since()
        pending: dict[str, str] = dict(state.get("pending", {}))
        enriched: set[str] = set()
        for page in self._pages("emails", "campaigns", {"after_date": utc_millis(since)} if since else None):
            # a send shows in the status, not in `updated_at`
            changed = [
                raw for raw in self.outcome.with_ids(page, "campaign_id", f"{NAME} campaign")
                if listing.changed(raw["campaign_id"], raw.get("updated_at"), raw.get("current_status"))
            ]
            enriched.update(raw["campaign_id"] for raw in changed)
            rows = self._enrich(changed, listing)
            pending.update({row["campaign_id"]: row["status"] for row in rows})
            if rows:
                yield rows
            listing.handled()
        # the scheduled campaigns not looked up above are checked again, listed or not
        again = [{"campaign_id": cid, "current_status": s} for cid, s in pending.items() if cid not in enriched]
        if again:  # a campaign that fails here stays pending, with its old status
            rows = self._enrich(again, None, only_if_changed=True)
            pending.update({row["campaign_id"]: row["status"] for row in rows})
            if rows:
                yield rows
        still_pending = {
            cid: status for cid, status in pending.items() if status in PENDING_STATUSES and cid not in self._gone
        }
        after_pages_handed_on(partial(state.__setitem__, "pending", still_pending))
        listing.commit()

    def _enrich(
        self, listed: list[dict[str, Any]], listing: ListingCursor | None, only_if_changed: bool = False
    ) -> list[Row]:
        """Canonical rows of listed campaigns, each with its activities looked up (concurrently)."""
        jobs = [Job(raw["campaign_id"], partial(self._campaign_pages, raw, only_if_changed)) for raw in listed]
        updated = {raw["campaign_id"]: raw.get("updated_at") for raw in listed}
        rows = []
        for campaign_id, result in fetch_concurrently(self.http.pool, jobs):
            if isinstance(result, JobDone):
                if result.error is not None:
                    self.outcome.record(f"{NAME} campaign {campaign_id}", result.error)
                    if listing is not None:
                        listing.failed(campaign_id, updated[campaign_id])
                continue
            rows.append(result)
        return rows

    def _campaign_pages(self, raw: dict[str, Any], only_if_changed: bool) -> list[Row]:
        campaign_id = raw["campaign_id"]
        try:
            detail = self.http.get(f"emails/{segment(campaign_id)}")
        except NotFound:
            if only_if_changed:
                self._gone.add(campaign_id)  # gone while scheduled: nothing more to learn
                return []
            # a removed campaign that no longer has details: what the listing says
            return [mapping.campaign_row(raw, None, None)]
        if only_if_changed and detail.get("current_status") == raw.get("current_status"):
            return []
        info = CampaignInfo(campaign_id, listed=True)
        for reference in detail.get("campaign_activities") or []:
            if not isinstance(reference, dict):
                raise UnusableValue(f"campaign {campaign_id}'s activity {printable(repr(reference))} is not an object")
            activity_id = provider_id(reference.get("campaign_activity_id"), f"campaign {campaign_id}'s activity id")
            activity = ActivityInfo(activity_id, str(reference.get("role")))
            if activity.tracked:
                self._read_activity(activity)
            info.activities.append(activity)
        with self._campaigns_lock:
            self._campaigns[campaign_id] = info
        primary = info.primary
        if primary is None:
            return [mapping.campaign_row({**raw, **detail}, None, None)]
        return [mapping.campaign_row({**raw, **detail}, primary.details, primary.sent_at)]

    def _read_activity(self, activity: ActivityInfo) -> None:
        """The activity's details and, unless it is plainly unsent, its send time."""
        try:
            activity.details = self.http.get(f"emails/activities/{segment(activity.id)}")
            if str(activity.details.get("current_status", "")).upper() in UNSENT_ACTIVITY_STATUSES:
                return
            history = self.http.get(f"emails/activities/{segment(activity.id)}/send_history")
        except NotFound:  # the activity is gone since its campaign was read
            return
        activity.sent_at = mapping.first_send(history)

    def campaign_costs(self) -> list[CampaignCost]:
        """What reading each campaign takes, from the campaign listing and the bulk summaries: its
        details and its primary email's (and a sent one's send history), and a sent one's primary
        email reports, sized by the summary's unique counts (a lower bound for opens and clicks).
        Resends are not listed: they are not counted (`partial`)."""
        summaries = {cid: mapping.summary_row(raw) for cid, raw in self._all_summaries().items()}
        costs = []
        for page in self._pages("emails", "campaigns"):
            for raw in self.outcome.with_ids(page, "campaign_id", f"{NAME} campaign"):
                summary = summaries.get(raw["campaign_id"]) or {}
                sent_at = summary.get("last_sent_date")
                if sent_at is None:
                    costs.append(CampaignCost(raw["campaign_id"], None, lookups=2, summaries=0, reports=()))
                    continue
                reports = []
                for report, activity_type in mapping.ACTIVITY_REPORTS.items():
                    count = mapping.SUMMARY_COUNTS[report]
                    at_least = count in mapping.UNIQUE_COUNTS
                    reports.append(ReportCost(activity_type, PAGE_SIZE, summary[count], at_least=at_least))
                reports.append(ReportCost("not_opened", PAGE_SIZE, summary["not_opened"], whole=True))
                costs.append(CampaignCost(
                    raw["campaign_id"], sent_at, lookups=3, summaries=0, reports=tuple(reports), partial=True
                ))
        return costs

    def remember(self, campaigns: list[Row]) -> None:
        """Look up the resends of remembered (sent, not listed) campaigns: they may have been sent since.

        A remembered campaign carries the `campaign_activities` of its last listing, and its send
        time is the primary email's. The lookups run concurrently, once a run; a used-up quota or a
        failure is recorded, never raised here: the resend's reads wait for a run that knows its
        send time, and what was read still loads.
        """
        infos = [self._remembered(campaign) for campaign in campaigns if campaign.get("sent_at") is not None]
        resends = [
            (info.campaign_id, activity)
            for info in infos
            for activity in info.activities
            if activity.tracked and activity.sent_at is None
        ]
        jobs = [Job((cid, activity), partial(self._look_up, activity)) for cid, activity in resends]
        for (campaign_id, activity), result in fetch_concurrently(self.http.pool, jobs):
            failed = result.error if isinstance(result, JobDone) else None
            if failed is not None and not isinstance(failed, QuotaExhausted):  # a used-up quota: `outcome.quota`
                self.outcome.record(f"{NAME} activity {activity.id} of campaign {campaign_id}", failed)
        with self._campaigns_lock:
            for info in infos:
                self._campaigns.setdefault(info.campaign_id, info)

    def _remembered(self, campaign: Row) -> CampaignInfo:
        info = CampaignInfo(campaign["campaign_id"])
        for reference in campaign.get("campaign_activities") or []:
            activity = ActivityInfo(str(reference.get("campaign_activity_id")), str(reference.get("role")))
            if activity.role == "primary_email":
                activity.sent_at = campaign["sent_at"]
            info.activities.append(activity)
        return info

    def _look_up(self, activity: ActivityInfo) -> list[None]:
        if self.outcome.quota is None:
            self._read_activity(activity)
        return []

    def _campaign(self, campaign: Row) -> CampaignInfo | None:
        """The activities of a sent campaign, as this run listed or remembered it (no request is made here)."""
        with self._campaigns_lock:
            known = self._campaigns.get(campaign["campaign_id"])
        if known is not None:
            return known
        return None if campaign.get("sent_at") is None else self._remembered(campaign)

    def campaign_activity_rows(self, campaign: Row) -> list[Row]:
        """`campaign_activities` rows of the activities whose details were read this run."""
        info = self._campaign(campaign)
        if info is None:
            return []
        return [
            mapping.campaign_activity_row(info.campaign_id, activity.id, activity.role, activity.details,
                                          activity.sent_at)
            for activity in info.activities
            if activity.details is not None or (info.listed and not activity.tracked)
        ]

    # ---- reports ----
    def activity_reads(self, campaign: Row) -> list[ReportRead]:
        """One read per tracking report of each tracked activity of the campaign."""
        info = self._campaign(campaign)
        if info is None:
            return []
        return [
            ReportRead(
                campaign_id=info.campaign_id,
                report=report,
                sent_at=activity.sent_at,
                pages=partial(self._tracking_pages, activity.id, report),
                to_rows=partial(mapping.activity_rows, activity_type),
                campaign_activity_id=activity.id,
            )
            for activity in info.tracked
            for report, activity_type in mapping.ACTIVITY_REPORTS.items()
        ]

    def _tracking_pages(self, activity_id: str, report: str, since: datetime | None) -> Iterator[list[dict[str, Any]]]:
        """A tracking report, newest first: paged until its rows are older than `since`."""
        path = f"reports/email_reports/{segment(activity_id)}/tracking/{report}"
        try:
            for page in self._pages(path, "tracking_activities"):
                if since is None or not page or not _older(page[-1], since):  # its oldest row is new enough
                    yield page
                    continue
                yield [row for row in page if not _older(row, since)]
                return
        except NotFound:
            return

    def non_engagement_reads(self, campaign: Row) -> list[ReportRead]:
        """The campaign's not-opened snapshot, over its primary email and any resends."""
        info = self._campaign(campaign)
        if info is None or info.primary is None:
            return []
        return [
            ReportRead(
                campaign_id=info.campaign_id,
                report="not_opened",
                sent_at=info.primary.sent_at,
                pages=partial(self._not_opened_pages, info),
                to_rows=mapping.non_engagement_rows,
            )
        ]

    def _not_opened_pages(self, info: CampaignInfo, _since: datetime | None) -> Iterator[list[dict[str, Any]]]:
        """Who opened none of the campaign's activities.

        A resend goes to the primary email's non-openers; whoever opened the resend is no
        longer a non-opener of the campaign, though still one of the primary email.
        """
        assert info.primary is not None
        not_opened = self._whole(info.primary.id, "didnotopens")
        for resend in info.tracked:
            if resend.role != "resend" or resend.sent_at is None:
                continue
            sent = {row.get("contact_id") for row in self._whole(resend.id, "sends")}
            still = {row.get("contact_id") for row in self._whole(resend.id, "didnotopens")}
            opened_resend = sent - still
            not_opened = [row for row in not_opened if row.get("contact_id") not in opened_resend]
        yield not_opened

    def _whole(self, activity_id: str, report: str) -> list[dict[str, Any]]:
        return [row for page in self._tracking_pages(activity_id, report, None) for row in page]

    def summary_reads(self, campaign: Row) -> list[ReportRead]:
        """The campaign's summary counts, from the one bulk summaries listing of the run."""
        campaign_id = campaign["campaign_id"]
        return [summary_read(campaign, lambda: self._all_summaries().get(campaign_id), mapping.summary_row)]

    def _all_summaries(self) -> dict[str, dict[str, Any]]:
        with self._summaries_lock:  # one listing for every campaign of the run
            if self._summaries_error is not None:
                raise self._summaries_error
            if self._summaries is None:
                try:
                    path = "reports/summary_reports/email_campaign_summaries"
                    pages = self._pages(path, "bulk_email_campaign_summaries")
                    self._summaries = {str(raw.get("campaign_id")): raw for page in pages for raw in page}
                except Exception as error:
                    self._summaries_error = error
                    raise
            return self._summaries

    # ---- v2 cross-references ----
    def campaign_xrefs(self, v2_campaign_ids: list[str]) -> Iterator[list[Row]]:
        """The v3 campaign of each v2 campaign id, XREF_BATCH ids a call (`emails/campaign_id_xrefs`)."""
        for start in range(0, len(v2_campaign_ids), XREF_BATCH):
            asked = v2_campaign_ids[start:start + XREF_BATCH]
            body = self.http.get("emails/campaign_id_xrefs", {"v2_email_campaign_ids": ",".join(asked)})
            yield mapping.campaign_xref_rows(asked, body)

    # ---- contacts ----
    def contacts(self, state: dict[str, Any]) -> Iterator[list[Row]]:
        """Contacts updated since the last run (deleted ones included), custom fields and tags by name."""
        # a backfill lists them all: a deletion that did not change `updated_at` is read then
        backfill = self.settings.is_backfill
        listing = ListingCursor(state, self.settings.lookback, backfill, legacy_key="updated_after")
        params = {"status": "all", "include": "custom_fields,list_memberships,taggings"}
        since = listing.since()
        if since is not None:
            params["updated_after"] = utc_millis(since)
        for page in self._pages("contacts", "contacts", params):
            # a deletion shows in `deleted_at`, whether or not it changes `updated_at`
            changed = [
                raw for raw in self.outcome.with_ids(page, "contact_id", f"{NAME} contact")
                if listing.changed(str(raw["contact_id"]), raw.get("updated_at"), raw.get("deleted_at"))
            ]
            if changed:
                field_names, tag_names = self._names()
                yield [mapping.contact_row(raw, field_names, tag_names) for raw in changed]
            listing.handled()
        listing.commit()

    def _names(self) -> tuple[dict[str, str], dict[str, str]]:
        if self._contact_names is None:
            fields = {
                str(raw.get("custom_field_id")): str(raw.get("name") or raw.get("label"))
                for page in self.http.pages("contact_custom_fields", {"limit": 100}, partial(items, "custom_fields"),
                                            next_link)
                for raw in page
            }
            tags = {str(raw.get("tag_id")): str(raw.get("name")) for page in self._pages("contact_tags", "tags")
                    for raw in page}
            self._contact_names = fields, tags
        return self._contact_names
