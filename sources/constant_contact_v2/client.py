"""What the Constant Contact v2 API looks like: auth, errors, limits, paging, and the reads it offers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from functools import partial
from typing import Any

import requests
from dlt.sources.helpers.rest_client.auth import APIKeyAuth, BearerTokenAuth

from sources.canonical import (
    CampaignCost,
    ListingCursor,
    ReportCost,
    ReportRead,
    Row,
    SyncOutcome,
    SyncSettings,
    parse_utc,
    summary_read,
    utc_millis,
)
from sources.constant_contact_v2 import mapping
from sources.errors import CredentialsRefused, NotFound, ProviderError, QuotaExhausted, setting_name
from sources.http import (
    BothAuth,
    Job,
    JobDone,
    ProviderHttp,
    error_entries,
    fetch_concurrently,
    segment,
    shared_budget,
)
from sources.redaction import register_secret, shown

NAME = "constant_contact_v2"
KEY_SETTING = setting_name(NAME, "api_key")
TOKEN_SETTING = setting_name(NAME, "access_token")
CAMPAIGNS = "emailmarketing/campaigns"
CAMPAIGN_PAGE_SIZE = 50
TRACKING_PAGE_SIZE = 500
CONTACT_PAGE_SIZE = 500
# 10,000 a day per API key (docs/providers/constant-contact-v2.md § Limits)
DAILY_QUOTA = 10_000
OVER_QPS = "mashery.not.authorized.over.qps"
OVER_DAILY = "mashery.not.authorized.over.ratelimit"
# the campaign listing passes: every live campaign, then the deleted ones (listed only on request)
DELETED = "DELETED"
LISTING_STATUSES = ("ALL", DELETED)


def is_throttled(response: requests.Response) -> bool:
    """The per-second limit's responses (403 over.qps, or 429): the run slows down and sends them again."""
    if response.status_code == 429:
        return not _is_daily_limit(response)
    return response.status_code == 403 and any(key == OVER_QPS for key, _ in error_entries(response))


def _is_daily_limit(response: requests.Response) -> bool:
    return any(key == OVER_DAILY for key, _ in error_entries(response))


def _refused_setting(errors: list[tuple[str, str]], key_setting: str, token_setting: str) -> str:
    text = " ".join(f"{key} {message}" for key, message in errors).lower()
    if "token" in text:
        return token_setting
    if "key" in text or "developer" in text:
        return key_setting
    return f"{key_setting} and {token_setting}"


def check(response: requests.Response, key_setting: str = KEY_SETTING, token_setting: str = TOKEN_SETTING) -> None:
    """Raise the error a v2 response stands for, if it is not a success (a refusal names the account's
    settings, `key_setting` and `token_setting`)."""
    if response.status_code == 200:
        return
    errors = error_entries(response)
    detail = shown("; ".join(f"{key} {message}".strip() for key, message in errors))
    if response.status_code in (403, 429) and _is_daily_limit(response):
        raise QuotaExhausted(f"the daily request quota is used up ({detail}); rerun after midnight UTC")
    over_qps = response.status_code == 429 or any(key == OVER_QPS for key, _ in errors)
    if response.status_code == 401 or (response.status_code == 403 and not over_qps):
        refused = _refused_setting(errors, key_setting, token_setting)
        raise CredentialsRefused(NAME, refused, detail or f"HTTP {response.status_code}")
    if response.status_code == 404 and any(key for key, _ in errors):  # the API's own 404, not a proxy's
        raise NotFound(f"{NAME}: {detail} from {shown(response.url)}")
    raise ProviderError(f"{NAME}: HTTP {response.status_code} {detail} from {shown(response.url)}")


def next_link(body: Any) -> Any:
    """`meta.pagination.next_link`, followed verbatim with only `api_key` added; None at the end."""
    meta = body.get("meta") if isinstance(body, dict) else None
    pagination = meta.get("pagination") if isinstance(meta, dict) else None
    link = pagination.get("next_link") if isinstance(pagination, dict) else None
    return link or None


def items(body: Any) -> list[dict[str, Any]]:
    """The rows of a list envelope."""
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list):
        raise ProviderError(f"{NAME}: a list response without a `results` array")
    return results


class ConstantContactV2Api:
    """The Constant Contact v2 reads, as the canonical resources need them."""

    name = NAME

    def __init__(
        self,
        api_key: str,
        access_token: str,
        base_url: str,
        requests_per_second: float,
        settings: SyncSettings,
        outcome: SyncOutcome,
    ) -> None:
        register_secret(api_key)
        register_secret(access_token)
        self.settings = settings
        self.outcome = outcome
        self.http = ProviderHttp(
            provider=NAME,
            base_url=base_url,
            requests_per_second=requests_per_second,
            max_concurrency=settings.max_concurrency,
            is_throttled=is_throttled,
            check=partial(check, key_setting=settings.setting(NAME, "api_key"),
                          token_setting=settings.setting(NAME, "access_token")),
            daily_quota=DAILY_QUOTA,
            # the limits are the application's (its API key): every account of it shares one budget
            budget=shared_budget(NAME, base_url, api_key),
            # on every request, the followed links too
            auth=BothAuth(APIKeyAuth(name="api_key", api_key=api_key, location="query"), BearerTokenAuth(access_token)),
        )

    # ---- campaigns ----
    def campaigns(self, state: dict[str, Any]) -> Iterator[list[Row]]:
        """The campaigns changed since the last run (all of them on a first run or a backfill).

        Two listings, live and deleted, from the listing cursor (`modified_since`); the details
        are read only for the live campaigns changed since they were last listed. A campaign
        whose details cannot be read is left out and recorded; it is read again next run.
        """
        listing = ListingCursor(state, self.settings.lookback, self.settings.is_backfill)
        for status, page in self._listing(listing.since()):
                # a deletion shows in the status, whether or not it changes `modified_date`
                changed = [
                    raw for raw in page
                    if listing.changed(mapping.campaign_id(raw["id"]), raw.get("modified_date"), raw.get("status"))
                ]
                if changed and status == DELETED:  # its details cannot be read (404): the listing row
                    yield [mapping.campaign_row(raw) for raw in changed]
                elif changed:
                    rows = [mapping.campaign_row(raw) for raw in self._details(changed, listing)]
                    if rows:
                        yield rows
                listing.handled()
        listing.commit()

    def _listing(self, since: datetime | None) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """The pages of both campaign listings (live, then deleted), changed since `since` (None: all)."""
        for status in LISTING_STATUSES:
            params: dict[str, Any] = {"status": status, "limit": CAMPAIGN_PAGE_SIZE}
            if since is not None:
                params["modified_since"] = utc_millis(since)
            for page in self.http.pages(CAMPAIGNS, params, items_of=items, next_of=next_link):
                yield status, self.outcome.with_ids(page, "id", f"{NAME} campaign")

    def _details(self, listed: list[dict[str, Any]], listing: ListingCursor) -> list[dict[str, Any]]:
        """Each listed campaign's details (read concurrently), in listing order. A campaign deleted
        since it was listed (its details request gets 404) is its listing row, marked DELETED; one whose
        details fail is left out, and recorded."""
        ids = [mapping.campaign_id(raw["id"]) for raw in listed]
        modified = {cid: raw.get("modified_date") for cid, raw in zip(ids, listed, strict=True)}
        jobs = [Job(cid, partial(self._one_campaign, cid)) for cid in ids]
        details: dict[str, dict[str, Any]] = {}
        for cid, page in fetch_concurrently(self.http.pool, jobs):
            if isinstance(page, JobDone):
                if page.error is not None:
                    self.outcome.record(f"{NAME} details of campaign {cid}", page.error)
                    listing.failed(cid, modified[cid])
                continue
            details[cid] = page
        return [{**raw, **details[cid]} for cid, raw in zip(ids, listed, strict=True) if cid in details]

    def _one_campaign(self, campaign_id: str) -> list[dict[str, Any]]:
        try:
            return [self.http.get(f"{CAMPAIGNS}/{segment(campaign_id)}")]
        except NotFound:
            return [{"status": DELETED}]

    def campaign_costs(self) -> list[CampaignCost]:
        """What reading each live campaign takes, from the campaign listing: its details, and a sent
        one's summary and tracking lists (no listing tells their sizes). The listing has no send
        time: a sent campaign's last change (`modified_date`, at or after its send) stands in for it."""
        reports = tuple(
            ReportCost(activity_type, TRACKING_PAGE_SIZE) for activity_type in mapping.ACTIVITY_REPORTS.values()
        )
        costs = []
        for status, page in self._listing(None):  # a run lists both; a deleted campaign is not read
            for raw in page:
                sent = raw.get("status") == "SENT"
                costs.append(CampaignCost(
                    mapping.campaign_id(raw["id"]), parse_utc(raw.get("modified_date")) if sent else None,
                    lookups=int(status != DELETED), summaries=int(sent), reports=reports if sent else (),
                ))
        return costs

    # ---- reports ----
    def _tracking_pages(self, path: str, since: datetime | None) -> Iterator[list[dict[str, Any]]]:
        params: dict[str, Any] = {"limit": TRACKING_PAGE_SIZE}
        if since is not None:
            params["created_since"] = utc_millis(since)
        yield from self.http.pages(path, params, items_of=items, next_of=next_link)

    def remember(self, campaigns: list[Row]) -> None:
        """Nothing to look up: a remembered campaign's reads are planned from its row."""

    def activity_reads(self, campaign: Row) -> list[ReportRead]:
        """One read per tracking list of the campaign, each from its own `created_since` cursor
        (none for a deleted campaign: its tracking lists cannot be read)."""
        if campaign.get("status") == DELETED:
            return []
        cid = campaign["campaign_id"]
        links = mapping.link_urls(campaign)
        return [
            ReportRead(
                campaign_id=cid,
                report=report,
                sent_at=campaign["sent_at"],
                pages=partial(self._tracking_pages, f"{CAMPAIGNS}/{segment(cid)}/tracking/{report}"),
                to_rows=partial(mapping.activity_rows, report, links),
            )
            for report in mapping.ACTIVITY_REPORTS
        ]

    def non_engagement_reads(self, campaign: Row) -> list[ReportRead]:
        """None: v2 has no not-opened or not-clicked report."""
        return []

    def summary_reads(self, campaign: Row) -> list[ReportRead]:
        """The tracking summary report of the campaign (none for a deleted one)."""
        if campaign.get("status") == DELETED:
            return []
        path = f"{CAMPAIGNS}/{segment(campaign['campaign_id'])}/tracking/reports/summary"
        return [summary_read(campaign, partial(self.http.get, path), mapping.summary_row)]

    def contacts(self, state: dict[str, Any]) -> Iterator[list[Row]]:
        """The contacts changed since the last run (every status, removed and opted-out ones
        included), each with its v3 id, from the listing cursor (`modified_since`)."""
        # a backfill lists them all: what changed without a new `modified_date` is read then
        listing = ListingCursor(state, self.settings.lookback, self.settings.is_backfill)
        params: dict[str, Any] = {"status": "ALL", "limit": CONTACT_PAGE_SIZE, "include_contact_id": "true"}
        since = listing.since()
        if since is not None:
            params["modified_since"] = utc_millis(since)
        for page in self.http.pages("contacts", params, items_of=items, next_of=next_link):
            changed = [
                raw for raw in self.outcome.with_ids(page, "id", f"{NAME} contact")
                if listing.changed(raw["id"], raw.get("modified_date"), raw.get("status"))
            ]
            if changed:
                yield [mapping.contact_row(raw) for raw in changed]
            listing.handled()
        listing.commit()
