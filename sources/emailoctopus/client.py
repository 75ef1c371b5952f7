"""What the EmailOctopus 1.6 API looks like: auth, errors, paging, and the reads it offers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from functools import partial
from typing import Any

import requests

from sources.canonical import CampaignCost, ReportCost, ReportRead, Row, SyncOutcome, SyncSettings, summary_read
from sources.emailoctopus import mapping
from sources.errors import CredentialsRefused, NotFound, ProviderError, setting_name
from sources.http import Job, JobDone, ProviderHttp, fetch_concurrently, segment
from sources.redaction import register_secret, shown

NAME = "emailoctopus"
KEY_SETTING = setting_name(NAME, "api_key")
PAGE_SIZE = 100
_CREDENTIAL_CODES = {"API_KEY_INVALID", "UNAUTHORISED"}
# what is not there: a report whose campaign was deleted or is not sent, or a list deleted since it was listed
_NOT_THERE_CODES = {"CAMPAIGN_NOT_SENT", "CAMPAIGN_NOT_FOUND", "NOT_FOUND"}


def _error_of(response: requests.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error") or {}
        return str(error.get("code", "")), str(error.get("message", ""))
    except (ValueError, AttributeError):
        return "", response.text[:200]


def check(response: requests.Response, key_setting: str = KEY_SETTING) -> None:
    """Raise the error an EmailOctopus response stands for, if it is not a success (`key_setting`: the
    account's API key setting, which a refusal names)."""
    if response.status_code == 200:
        return
    code, message = _error_of(response)
    if code in _CREDENTIAL_CODES or response.status_code == 401:
        raise CredentialsRefused(NAME, key_setting, code or f"HTTP {response.status_code}")
    if code in _NOT_THERE_CODES:
        raise NotFound(code)
    detail = shown(f"{code} {message}".strip())
    raise ProviderError(f"{NAME}: HTTP {response.status_code} {detail} from {shown(response.url)}")


def next_link(body: Any) -> Any:
    """The `paging.next` link, followed verbatim (it carries every parameter); None at the end."""
    paging = body.get("paging") if isinstance(body, dict) else None
    if isinstance(paging, dict) and paging.get("next"):
        return paging["next"]
    return None  # last page: `paging` is [] or has a null `next`


def items(body: Any) -> list[dict[str, Any]]:
    """The rows of a list envelope."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ProviderError(f"{NAME}: a list response without a `data` array")
    return data


def list_ids(list_pages: Iterator[list[dict[str, Any]]], outcome: SyncOutcome) -> list[str]:
    """The ids of the lists on the listing's pages (both APIs list them alike); a list whose id is no id
    is set aside and named."""
    return [raw["id"] for page in list_pages for raw in outcome.with_ids(page, "id", f"{NAME} list")]


def contacts_of_list(page: list[dict[str, Any]], list_id: str, outcome: SyncOutcome) -> list[dict[str, Any]]:
    """The contacts on a page of a list's contacts; a contact whose id is no id is set aside and named."""
    return outcome.with_ids(page, "id", f"{NAME} contact of list {list_id}")


def listed_campaign_costs(campaign_pages: Iterator[list[Row]], events_whole: bool) -> list[CampaignCost]:
    """What reading each listed campaign takes through either API: a sent one's summary, its event
    reports (read whole, or from their cursors), and its snapshots read whole (no listing tells their sizes)."""
    reports = (
        *(ReportCost(kind, PAGE_SIZE, whole=events_whole) for kind in mapping.ACTIVITY_REPORTS.values()),
        *(ReportCost(kind, PAGE_SIZE, whole=True) for kind in mapping.NON_ENGAGEMENT_REPORTS.values()),
    )
    return [
        CampaignCost(row["campaign_id"], row["sent_at"], lookups=0, summaries=1, reports=reports)
        for page in campaign_pages
        for row in page
    ]


class EmailOctopusApi:
    """The EmailOctopus reads, as the canonical resources need them."""

    name = NAME

    def __init__(
        self, api_key: str, base_url: str, requests_per_second: float, settings: SyncSettings, outcome: SyncOutcome
    ) -> None:
        register_secret(api_key)
        self.outcome = outcome
        self.http = ProviderHttp(
            provider=NAME,
            base_url=base_url,
            requests_per_second=requests_per_second,
            max_concurrency=settings.max_concurrency,
            is_throttled=lambda response: response.status_code == 429,
            check=partial(check, key_setting=settings.setting(NAME, "api_key")),
            params={"api_key": api_key},  # the links carry it already
        )

    def _pages(self, path: str) -> Iterator[list[dict[str, Any]]]:
        return self.http.pages(path, {"limit": PAGE_SIZE}, items_of=items, next_of=next_link)

    def _report_pages(self, path: str, _since: datetime | None) -> Iterator[list[dict[str, Any]]]:
        # EmailOctopus has no date filter: a due report is read whole (`ReportRead.whole`)
        return self._pages(path)

    def campaigns(self, state: dict[str, Any]) -> Iterator[list[Row]]:
        """Every campaign, drafts included (no cursor: `state` is not used)."""
        for page in self._pages("campaigns"):
            yield [mapping.campaign_row(raw) for raw in self.outcome.with_ids(page, "id", f"{NAME} campaign")]

    def campaign_costs(self) -> list[CampaignCost]:
        """What reading each campaign takes, from the campaign listing: its reports read whole."""
        return listed_campaign_costs(self.campaigns({}), events_whole=True)

    def remember(self, campaigns: list[Row]) -> None:
        """Nothing to look up: a remembered campaign's reads are planned from its row."""

    def activity_reads(self, campaign: Row) -> list[ReportRead]:
        """One read per event report of the campaign."""
        cid = campaign["campaign_id"]
        return [
            ReportRead(
                campaign_id=cid,
                report=report,
                sent_at=campaign["sent_at"],
                pages=partial(self._report_pages, f"campaigns/{segment(cid)}/reports/{report}"),
                to_rows=partial(mapping.activity_rows, activity_type),
                whole=True,
                link_in_identity=False,  # v2's rows have no link: 1.6's and v2's ids agree without it
            )
            for report, activity_type in mapping.ACTIVITY_REPORTS.items()
        ]

    def non_engagement_reads(self, campaign: Row) -> list[ReportRead]:
        """The not-opened and not-clicked snapshots of the campaign."""
        cid = campaign["campaign_id"]
        return [
            ReportRead(
                campaign_id=cid,
                report=kind,
                sent_at=campaign["sent_at"],
                pages=partial(self._report_pages, f"campaigns/{segment(cid)}/reports/{report}"),
                to_rows=mapping.non_engagement_rows,
            )
            for report, kind in mapping.NON_ENGAGEMENT_REPORTS.items()
        ]

    def summary_reads(self, campaign: Row) -> list[ReportRead]:
        """The summary counts of the campaign."""
        path = f"campaigns/{segment(campaign['campaign_id'])}/reports/summary"
        return [summary_read(campaign, partial(self.http.get, path), mapping.summary_row)]

    def contacts(self, state: dict[str, Any]) -> Iterator[list[Row]]:
        """The contacts of every list, read concurrently across lists (no cursor: `state` is not used).
        A list deleted since it was listed has none; one whose contacts fail is recorded, and read
        whole again next run."""
        lists = list_ids(self._pages("lists"), self.outcome)
        jobs = [Job(list_id, partial(self._pages, f"lists/{segment(list_id)}/contacts")) for list_id in lists]
        for list_id, page in fetch_concurrently(self.http.pool, jobs):
            if isinstance(page, JobDone):
                if page.error is not None and not isinstance(page.error, NotFound):
                    self.outcome.record(f"{NAME} contacts of list {list_id}", page.error)
                continue
            yield [mapping.contact_row(raw, list_id) for raw in contacts_of_list(page, list_id, self.outcome)]
