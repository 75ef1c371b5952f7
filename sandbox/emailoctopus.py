"""The simulated EmailOctopus APIs: 1.6 (docs/providers/emailoctopus-1.6.md) and, over the same data set,
v2 (docs/providers/emailoctopus-v2.md; `app_v2`, with its own variants).

Variants (Sandbox(variants=...)) for what the real API leaves unsure:
- `eo_last_page`: `mixed` (default: `[]` on reports, `{"next": null}` elsewhere), `empty`, `null`;
- `eo_paging`: `page` (default, `page=N`) or `cursor` (`starting_after=<opaque token>`);
- `eo_summary`: `nested` (default) or `flat` counts;
- `eo_click_url`: `yes` (default) or `no` URL field on clicked rows;
- `eo_bounce_type`: `yes` (default) or `no` type field on bounced rows;
- `eo_retry_after`: `yes` (default) or `no` Retry-After header on 429;
- `eo_error_status`: `mapped` (default: 400 INVALID_PARAMETERS, 401 API_KEY_INVALID, 403
  CAMPAIGN_NOT_SENT, 404 CAMPAIGN_NOT_FOUND and NOT_FOUND) or `shuffled` (403 API_KEY_INVALID,
  400 CAMPAIGN_NOT_SENT and CAMPAIGN_NOT_FOUND, 404 NOT_FOUND, 400 INVALID_PARAMETERS).

Schema drift switches, flipped by tests between two runs:
- `eo_new_contact_field=yes`: every third contact gains the custom field `Loyalty`;
- `eo_new_report_field=yes`: opened rows gain a field `ip_country` (`number`: as the number 49);
- `eo_score_type=text`: the custom field `Score` arrives as text instead of a number.

Bad data switches (`bad_data(contact_number, activity_type)` says which rows are hit):
- `eo_bad_data=yes`: some event rows have a null contact, a timestamp in another offset or an
  unreadable one, an unknown nested field, or an email address with a byte that is not UTF-8;
- `eo_paging_loop=yes`: the last page of a report links back to its first page.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from sandbox.dataset import Campaign, Contact, Dataset, Event
from sandbox.server import DEFAULT_ACCOUNT, ProviderApp, SandboxError, TokenBucket, json_response, simulates

NAME = "emailoctopus"
PREFIX = "/emailoctopus"
API = "/api/1.6"
# `api_key` in the query of every call (docs/providers/emailoctopus-1.6.md § Authentication)
API_KEY = "eo-sandbox-4f1c9a7e2b"
REQUESTS_PER_SECOND = 10.0  # docs/providers/emailoctopus-1.6.md § Limits: none documented for 1.6 (v2: about 10/s)
MAX_LIMIT = 100  # docs/providers/emailoctopus-1.6.md § Paging: `limit` 1..100, default 100
# docs/providers/emailoctopus-1.6.md § Errors: the HTTP status of each code is unsure (variant `eo_error_status`)
ERROR_STATUSES = {
    "mapped": {"INVALID_PARAMETERS": 400, "API_KEY_INVALID": 401, "CAMPAIGN_NOT_SENT": 403,
               "CAMPAIGN_NOT_FOUND": 404, "NOT_FOUND": 404},
    "shuffled": {"INVALID_PARAMETERS": 400, "API_KEY_INVALID": 403, "CAMPAIGN_NOT_SENT": 400,
                 "CAMPAIGN_NOT_FOUND": 400, "NOT_FOUND": 404},
}
REPORTS = ("sent", "opened", "clicked", "bounced", "complained", "unsubscribed")
SNAPSHOTS = {"not-opened": "opened", "not-clicked": "clicked"}


BAD_BYTE_MARK = "<not-utf-8>"


def bad_data(contact_number: int, activity_type: str) -> str | None:
    """Which flaw `eo_bad_data` gives the events of a contact, if any."""
    if activity_type != "opened":
        return None
    for modulus, flaw in ((7, "null_contact"), (11, "other_offset"), (13, "unreadable_time"),
                          (5, "unknown_field"), (17, "bad_byte")):
        if contact_number % modulus == 0:
            return flaw
    return None


def account_key(account: str) -> str:
    """The API key of one of the sandbox's accounts (each EmailOctopus account has its own)."""
    return API_KEY if account == DEFAULT_ACCOUNT else f"{API_KEY}-{account}"


def error(status: int, code: str, message: str) -> SandboxError:
    # docs/providers/emailoctopus-1.6.md § Errors: non-200 with body {"error": {"code": "...", "message": "..."}}
    return SandboxError(status, {"error": {"code": code, "message": message}})


def iso(value: Any) -> str | None:
    # docs/providers/emailoctopus-1.6.md § Incremental: ISO 8601 with offset, to the second (the data set has
    # no microseconds)
    return value.isoformat() if value is not None else None


def contact_fields(contact: Contact, variants: dict[str, str]) -> dict[str, Any]:
    """A contact's custom fields, as the schema drift switches have them."""
    fields = dict(contact.fields)
    if variants.get("eo_new_contact_field") == "yes" and contact.number % 3 == 0:
        fields["Loyalty"] = "gold"
    if variants.get("eo_score_type") == "text" and "Score" in fields:
        fields["Score"] = f"score-{fields['Score']}"
    return fields


def summary(dataset: Dataset, campaign: Campaign, flat: bool) -> dict[str, Any]:
    """A campaign's summary counts, nested or `flat`."""
    # docs/providers/emailoctopus-1.6.md § Endpoints, summary: `sent, bounced {soft, hard}, opened {total, unique},
    # clicked {total, unique}, complained, unsubscribed`; nested or flat is unsure (variant `eo_summary`);
    # docs/providers/emailoctopus-v2.md § Endpoints: v2 nests them
    events = dataset.events(campaign)

    def count(kind: str, unique: bool = False) -> int:
        matching = [e for e in events if e.type == kind]
        return len({e.contact_id for e in matching}) if unique else len(matching)

    bounces = [e for e in events if e.type == "bounced"]
    hard = sum(1 for e in bounces if e.bounce_code in ("B", "D", "F"))
    if flat:
        return {
            "id": campaign.id, "sent": count("sent"), "bounced_soft": len(bounces) - hard, "bounced_hard": hard,
            "opened_total": count("opened"), "opened_unique": count("opened", True),
            "clicked_total": count("clicked"), "clicked_unique": count("clicked", True),
            "complained": count("complained"), "unsubscribed": count("unsubscribed"),
        }
    return {
        "id": campaign.id,
        "sent": count("sent"),
        "bounced": {"soft": len(bounces) - hard, "hard": hard},
        "opened": {"total": count("opened"), "unique": count("opened", True)},
        "clicked": {"total": count("clicked"), "unique": count("clicked", True)},
        "complained": count("complained"),
        "unsubscribed": count("unsubscribed"),
    }


def contact_object(contact: Contact, variants: dict[str, str]) -> dict[str, Any]:
    if contact.deleted:  # docs/providers/emailoctopus-1.6.md § Contact object: every field but `id` null
        return {
            "id": contact.id, "email_address": None, "fields": None, "tags": None,
            "status": None, "created_at": None, "last_updated_at": None, "deleted": True,
        }
    body: dict[str, Any] = {
        "id": contact.id,
        "email_address": contact.email,
        "fields": contact_fields(contact, variants),
        "tags": list(contact.tags),
        "status": contact.status,
        "created_at": iso(contact.created_at),
        "deleted": False,
    }
    # `last_updated_at` may be missing (docs/providers/emailoctopus-1.6.md § Contact object)
    if contact.updated_at is not None:
        body["last_updated_at"] = iso(contact.updated_at)
    return body


@simulates(NAME, REQUESTS_PER_SECOND, seed_offset=0)
def app(dataset: Dataset, variants: dict[str, str], requests_per_second: float, account: str) -> ProviderApp:
    """The EmailOctopus API of one account, over `dataset`."""
    key = account_key(account)

    def settings(base_url: str) -> dict[str, str]:
        if account != DEFAULT_ACCOUNT:
            return {f"SOURCES__EMAILOCTOPUS__ACCOUNTS__{account.upper()}__API_KEY": key}
        return {"SOURCES__EMAILOCTOPUS__API_KEY": key, "SOURCES__EMAILOCTOPUS__BASE_URL": base_url + API}

    statuses = ERROR_STATUSES[variants.get("eo_error_status", "mapped")]

    def fail(code: str, message: str) -> SandboxError:
        """An error response whose status the variant `eo_error_status` picks for the code."""
        return error(statuses[code], code, message)

    def campaign_object(campaign: Campaign) -> dict[str, Any]:
        # docs/providers/emailoctopus-1.6.md § Endpoints, campaigns: `id, status, name, subject, to, from,
        # content, created_at, sent_at`
        sent = dataset.is_sent(campaign)
        return {
            "id": campaign.id,
            "status": "SENT" if sent else "DRAFT",
            "name": campaign.name,
            "subject": campaign.subject,
            "to": [campaign.list_id],
            "from": {"name": campaign.from_name, "email_address": campaign.from_email},
            "content": {"html": f"<p>{campaign.subject}</p>", "plain_text": campaign.subject},
            "created_at": iso(campaign.created_at),
            # `sent_at` is null until sent (docs/providers/emailoctopus-1.6.md § Endpoints)
            "sent_at": iso(campaign.send_at) if sent else None,
        }

    def event_row(event: Event) -> dict[str, Any]:
        contact = dataset.contact(event.contact_id)
        row: dict[str, Any] = {
            "contact": contact_object(contact, variants),
            # docs/providers/emailoctopus-1.6.md § Incremental: old events may lack `occurred_at`
            "occurred_at": None if event.timestamp_missing else iso(event.at),
        }
        if variants.get("eo_bad_data") == "yes":
            flaw = bad_data(contact.number, event.type)
            if flaw == "null_contact":
                row["contact"] = None
            elif flaw == "other_offset" and row["occurred_at"]:
                row["occurred_at"] = event.at.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
            elif flaw == "unreadable_time":
                row["occurred_at"] = "sometime yesterday"
            elif flaw == "unknown_field":
                row["mystery"] = {"level": 2, "tags": ["x"]}
            elif flaw == "bad_byte":
                row["contact"]["email_address"] = BAD_BYTE_MARK + "@example.org"
        # docs/providers/emailoctopus-1.6.md § Open questions: a URL field on clicked rows (variant `eo_click_url`)
        if event.type == "clicked" and variants.get("eo_click_url", "yes") == "yes":
            row["url"] = event.url
        if event.type == "opened" and variants.get("eo_new_report_field") in ("yes", "number"):
            row["ip_country"] = "DE" if variants["eo_new_report_field"] == "yes" else 49
        # docs/providers/emailoctopus-1.6.md § Open questions: a bounce type (HARD/SOFT) on bounced rows
        # (variant `eo_bounce_type`)
        if event.type == "bounced" and variants.get("eo_bounce_type", "yes") == "yes":
            row["type"] = "HARD" if event.bounce_code in ("B", "D", "F") else "SOFT"
        return row

    def snapshot_row(contact_id: str) -> dict[str, Any]:
        # docs/providers/emailoctopus-1.6.md § Endpoints, snapshots: rows `{contact}`, no timestamp
        return {"contact": contact_object(dataset.contact(contact_id), variants)}

    def list_object(numbered: tuple[int, str]) -> dict[str, Any]:
        number, list_id = numbered
        # docs/providers/emailoctopus-1.6.md § Endpoints, lists: `id, name, double_opt_in, fields, counts, created_at`
        return {"id": list_id, "name": f"List {number + 1}", "double_opt_in": False, "fields": [], "counts": {},
                "created_at": lists_created_at}

    # when the lists were made: a day before their first contact (stable whatever the clock)
    lists_created_at = iso(min((c.created_at for c in dataset.contacts), default=dataset.clock) - timedelta(days=1))

    def page(request: Request, path: str, items: list[Any], render: Any, is_report: bool) -> Response:
        try:
            limit = int(request.args.get("limit", MAX_LIMIT))
        except ValueError:
            raise fail("INVALID_PARAMETERS", "limit must be a number") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise fail("INVALID_PARAMETERS", f"limit must be between 1 and {MAX_LIMIT}")
        # docs/providers/emailoctopus-1.6.md § Paging: unsure whether `next` pages by `page=N` or a `starting_after`
        # cursor (variant `eo_paging`)
        if variants.get("eo_paging", "page") == "cursor":
            after = request.args.get("starting_after")
            start = int(base64.urlsafe_b64decode(after)) if after else 0
        else:
            start = (int(request.args.get("page", 1)) - 1) * limit
        chunk = [render(item) for item in items[start:start + limit]]
        more = start + limit < len(items)
        last_page = variants.get("eo_last_page", "mixed")
        if more:
            params = {"api_key": request.args.get("api_key"), "limit": limit}
            if variants.get("eo_paging", "page") == "cursor":
                params["starting_after"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
            else:
                params["page"] = start // limit + 2
            # docs/providers/emailoctopus-1.6.md § Paging: `paging.next` is host-relative and carries the `api_key`
            paging: Any = {"next": f"{PREFIX}{API}{path}?{urlencode(params)}", "previous": None}
        elif is_report and variants.get("eo_paging_loop") == "yes":
            first = {"api_key": request.args.get("api_key"), "limit": limit, "page": 1}
            paging = {"next": f"{PREFIX}{API}{path}?{urlencode(first)}", "previous": None}
        # docs/providers/emailoctopus-1.6.md § Paging: on the last page `paging` is `[]` or has a null `next`
        # (variant `eo_last_page`)
        elif last_page == "empty" or (last_page == "mixed" and is_report):
            paging = []
        else:
            paging = {"next": None, "previous": None}
        # the list envelope (docs/providers/emailoctopus-1.6.md § Endpoints)
        response = json_response({"data": chunk, "paging": paging})
        if variants.get("eo_bad_data") == "yes":
            response.set_data(response.get_data().replace(BAD_BYTE_MARK.encode(), b"caf\xe9"))
        return response

    def campaign_by_id(campaign_id: str) -> Campaign:
        for campaign in dataset.campaigns:
            if campaign.id == campaign_id:
                return campaign
        # docs/providers/emailoctopus-1.6.md § Errors: a report code
        raise fail("CAMPAIGN_NOT_FOUND", "The campaign could not be found.")

    def handle(request: Request, path: str) -> Response:
        if request.args.get("api_key") != key:  # API_KEY_INVALID (docs/providers/emailoctopus-1.6.md § Errors)
            raise fail("API_KEY_INVALID", "Your API key is invalid.")
        path = path.removeprefix(API)
        if path == "/campaigns":
            return page(request, path, dataset.campaigns, campaign_object, False)
        if match := re.fullmatch(r"/campaigns/([^/]+)", path):
            return json_response(campaign_object(campaign_by_id(match[1])))
        if match := re.fullmatch(r"/campaigns/([^/]+)/reports/([a-z-]+)", path):
            campaign, report = campaign_by_id(match[1]), match[2]
            # reports of sent campaigns only (docs/providers/emailoctopus-1.6.md § Endpoints)
            if not dataset.is_sent(campaign):
                raise fail("CAMPAIGN_NOT_SENT", "The campaign has not been sent yet.")
            if report == "summary":
                return json_response(summary(dataset, campaign, variants.get("eo_summary") == "flat"))
            if report in REPORTS:
                return page(request, path, dataset.events(campaign, report), event_row, True)
            if report in SNAPSHOTS:
                contact_ids = dataset.not_engaged(campaign, SNAPSHOTS[report])
                return page(request, path, contact_ids, snapshot_row, True)
        if path == "/lists":
            return page(request, path, list(enumerate(dataset.lists)), list_object, False)
        if match := re.fullmatch(r"/lists/([^/]+)/contacts", path):
            members = [c for c in dataset.contacts if c.list_id == match[1]]
            return page(request, path, members, lambda contact: contact_object(contact, variants), False)
        raise not_found()

    def throttled() -> SandboxError:
        # docs/providers/emailoctopus-1.6.md § Limits: 429, with or without `Retry-After` (variant `eo_retry_after`)
        headers = {"Retry-After": "1"} if variants.get("eo_retry_after", "yes") == "yes" else {}
        return SandboxError(429, {"error": {"code": "TOO_MANY_REQUESTS", "message": "Slow down."}}, headers)

    def not_found() -> SandboxError:
        return fail("NOT_FOUND", "The requested resource could not be found.")

    return ProviderApp(PREFIX, dataset, handle, throttled, requests_per_second, settings, not_found=not_found,
                       owns=lambda request: request.args.get("api_key") == key)



# ---- API v2 (docs/providers/emailoctopus-v2.md), over the same data set as 1.6 ----

NAME_V2 = "emailoctopus_v2"
PREFIX_V2 = "/emailoctopus-v2"  # the real host has no version in the path: https://api.emailoctopus.com
# docs/providers/emailoctopus-v2.md § Limits: a token bucket of 100, refilled at 10 a second
V2_REFILL_PER_SECOND = 10.0
V2_BUCKET = 100
PROBLEM_TYPE = "https://emailoctopus.com/api-documentation/v2#"  # docs/providers/emailoctopus-v2.md § Errors
CONTACT_STATUSES = ("subscribed", "unsubscribed", "pending")
V2_REPORTS = (*REPORTS, *SNAPSHOTS)


def problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> SandboxError:
    """An RFC 7807 error response (docs/providers/emailoctopus-v2.md § Errors)."""
    return SandboxError(status, {"type": PROBLEM_TYPE + kind, "title": title, "detail": detail, "status": status,
                                 **extra})


def _token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _untoken(token: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def add_late_event(dataset: Dataset, campaign: Campaign, activity_type: str, at: datetime) -> Event:
    """An event that arrives now with an older time `at`: both APIs serve it from now on."""
    event = Event(campaign.id, campaign.recipients[0], activity_type, at)
    campaign.events.append(event)
    dataset.advance(timedelta(0))  # what is visible is worked out again
    return event


@simulates(NAME_V2, V2_REFILL_PER_SECOND, seed_offset=3, data_of=NAME)
def app_v2(dataset: Dataset, variants: dict[str, str], requests_per_second: float, account: str) -> ProviderApp:
    """The EmailOctopus API v2 of one account, over the data set its 1.6 API serves (the same ids).

    Variants for what the real API leaves unsure (docs/providers/emailoctopus-v2.md § Open questions):
    - `eo2_report_order`: `ordered` (default: report rows by time, then contact; the cursor names the
      last row's place) or `unordered` (a fixed shuffle that new events fall into anywhere; the cursor is
      an offset);
    - `eo2_last_page`: `null` (default: `next` null), `absent` (no `next`) or `empty` (a `next` that leads
      to an empty page);
    - `eo2_retry_header`: `x-ratelimit` (default: `X-RateLimit-Retry-After`), `retry-after` or `none` on 429.
    And `eo_legacy_key=yes`: the account's key is a legacy one, which v2 refuses (401) and 1.6 takes;
    `eo_api=2`: `Sandbox.environment()` points campaign-sync at v2 (API_VERSION 2 and this BASE_URL).
    """
    key = account_key(account)
    legacy = variants.get("eo_legacy_key") == "yes"
    ordered_reports: dict[tuple[str, str], tuple[list[Any], list[Event], list[tuple[int, str]]]] = {}

    def through_v2(base_url: str) -> dict[str, str]:
        return {"SOURCES__EMAILOCTOPUS__API_VERSION": "2", "SOURCES__EMAILOCTOPUS__BASE_URL": base_url}

    def settings(base_url: str) -> dict[str, str]:
        if variants.get("eo_api") != "2" or account != DEFAULT_ACCOUNT:
            return {}  # named accounts take the provider's API_VERSION and BASE_URL
        return through_v2(base_url)

    def campaign_object(campaign: Campaign) -> dict[str, Any]:
        # docs/providers/emailoctopus-v2.md § Endpoints, campaigns: 1.6's fields, the status in lower case
        sent = dataset.is_sent(campaign)
        return {
            "id": campaign.id, "status": "sent" if sent else "draft", "name": campaign.name,
            "subject": campaign.subject, "to": [campaign.list_id],
            "from": {"name": campaign.from_name, "email_address": campaign.from_email},
            "content": {"html": f"<p>{campaign.subject}</p>", "plain_text": campaign.subject},
            "created_at": iso(campaign.created_at), "sent_at": iso(campaign.send_at) if sent else None,
        }

    def contact_v2(contact: Contact) -> dict[str, Any]:
        # docs/providers/emailoctopus-v2.md § Endpoints, a list's contacts (a deleted one is not listed)
        return {
            "id": contact.id, "email_address": contact.email, "fields": contact_fields(contact, variants),
            "tags": list(contact.tags), "status": contact.status.lower(), "created_at": iso(contact.created_at),
            "last_updated_at": iso(contact.updated_at),
        }

    def report_row(event: Event) -> dict[str, Any]:
        # docs/providers/emailoctopus-v2.md § Endpoints, a contact report: the contact's id and address only
        contact = dataset.contact(event.contact_id)
        return {"contact_id": contact.id, "contact_email_address": None if contact.deleted else contact.email,
                "occurred_at": None if event.timestamp_missing else iso(event.at)}

    def snapshot_row(contact_id: str) -> dict[str, Any]:
        contact = dataset.contact(contact_id)
        return {"contact_id": contact.id, "contact_email_address": None if contact.deleted else contact.email,
                "occurred_at": None}

    def report_events(campaign: Campaign, report: str) -> tuple[list[Event], list[tuple[int, str]] | None]:
        """A report's events in the variant's order, and their (time, contact) places where ordered."""
        visible = dataset.events(campaign, report)
        order = variants.get("eo2_report_order", "ordered")
        known = ordered_reports.get((campaign.id, report))
        if known is None or known[0] is not visible:
            if order == "ordered":
                events = sorted(visible, key=lambda e: (e.at, e.contact_id))
            else:
                events = sorted(visible, key=lambda e: hashlib.blake2b(
                    f"{e.contact_id}{e.type}{e.at.isoformat()}".encode(), digest_size=8).digest())
            places = [(int(e.at.timestamp() * 1000), e.contact_id) for e in events]
            known = ordered_reports[(campaign.id, report)] = (visible, events, places)
        return known[1], known[2] if order == "ordered" else None

    def page(request: Request, path: str, items: list[Any], render: Any,
             places: list[tuple[int, str]] | None = None) -> Response:
        """One page of a list (docs/providers/emailoctopus-v2.md § Paging). The cursor is opaque: an offset,
        or where `places` are given [milliseconds, contact id, n]: after the n-th row of that place."""
        try:
            limit = int(request.args.get("limit", MAX_LIMIT))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIMIT:
            raise problem(400, "bad-request", "Bad Request", "The request is invalid.",
                          errors=[{"parameter": "limit", "detail": f"must be between 1 and {MAX_LIMIT}"}])
        after = request.args.get("starting_after")
        try:
            if not after:
                start = 0
            elif places is None:
                start = int(_untoken(after))
            else:
                ms, contact_id, nth = _untoken(after)
                start = bisect.bisect_left(places, (ms, contact_id)) + nth
        except (ValueError, TypeError):
            raise problem(400, "bad-request", "Bad Request", "The request is invalid.",
                          errors=[{"parameter": "starting_after", "detail": "is not a valid cursor"}]) from None
        chunk = items[start:start + limit]
        end = start + len(chunk)
        more = end < len(items)
        last_page = variants.get("eo2_last_page", "null")
        paging: dict[str, Any] = {}
        if more or (last_page == "empty" and chunk):
            if places is None:
                cursor = _token(end)
            else:
                place = places[end - 1]
                cursor = _token([*place, end - bisect.bisect_left(places, place)])
            params = {**{k: v for k, v in request.args.items() if k != "starting_after"}, "limit": limit,
                      "starting_after": cursor}
            url = f"{request.host_url.rstrip('/')}{PREFIX_V2}{path}?{urlencode(params)}"
            paging["next"] = {"url": url, "starting_after": cursor}
        elif last_page != "absent":
            paging["next"] = None
        return json_response({"data": [render(item) for item in chunk], "paging": paging})

    def campaign_by_id(campaign_id: str) -> Campaign:
        for campaign in dataset.campaigns:
            if campaign.id == campaign_id:
                return campaign
        raise problem(404, "not-found", "Not Found", "The campaign could not be found.")

    def handle(request: Request, path: str) -> Response:
        # docs/providers/emailoctopus-v2.md § Authentication: `Authorization: Bearer <key>`; a legacy key is refused
        if request.headers.get("Authorization") != f"Bearer {key}" or legacy:
            raise problem(401, "unauthorized", "Unauthorized", "Invalid key.")
        response = route(request, path)
        response.headers["X-RateLimiting-Remaining"] = str(int(provider_app.bucket.tokens))
        return response

    def route(request: Request, path: str) -> Response:
        if path == "/campaigns":
            return page(request, path, dataset.campaigns, campaign_object)
        if match := re.fullmatch(r"/campaigns/([^/]+)", path):
            return json_response(campaign_object(campaign_by_id(match[1])))
        if match := re.fullmatch(r"/campaigns/([^/]+)/reports(/summary)?", path):
            campaign = campaign_by_id(match[1])
            if not dataset.is_sent(campaign):
                raise problem(404, "not-found", "Not Found", "The campaign has not been sent.")
            if match[2]:
                return json_response(summary(dataset, campaign, flat=False))
            report = request.args.get("status")
            if report in REPORTS:
                events, places = report_events(campaign, report)
                return page(request, path, events, report_row, places)
            if report in SNAPSHOTS:
                return page(request, path, dataset.not_engaged(campaign, SNAPSHOTS[report]), snapshot_row)
            raise problem(400, "bad-request", "Bad Request", "The request is invalid.",
                          errors=[{"parameter": "status", "detail": f"must be one of {', '.join(V2_REPORTS)}"}])
        if path == "/lists":
            return page(request, path, [{"id": list_id, "name": f"List {n + 1}"} for n, list_id in
                                        enumerate(dataset.lists)], lambda item: item)
        if match := re.fullmatch(r"/lists/([^/]+)/contacts", path):
            if match[1] not in dataset.lists:
                raise problem(404, "not-found", "Not Found", "The list could not be found.")
            status = request.args.get("status", "subscribed")
            since = request.args.get("last_updated_at.gte")
            changed_since = datetime.fromisoformat(since) if since else None
            members = [
                c for c in dataset.contacts
                if c.list_id == match[1] and not c.deleted and c.status.lower() == status
                and (changed_since is None or (c.updated_at or c.created_at) >= changed_since)
            ]
            return page(request, path, members, contact_v2)
        raise problem(404, "not-found", "Not Found", "The requested resource could not be found.")

    def throttled() -> SandboxError:
        # docs/providers/emailoctopus-v2.md § Limits: 429 with the retry headers (variant `eo2_retry_header`)
        header = {"x-ratelimit": "X-RateLimit-Retry-After", "retry-after": "Retry-After"}.get(
            variants.get("eo2_retry_header", "x-ratelimit"))
        headers = {"X-RateLimiting-Remaining": "0", **({header: "1"} if header else {})}
        return SandboxError(429, {"type": PROBLEM_TYPE + "too-many-requests", "title": "Too Many Requests",
                                  "detail": "Rate limit exceeded.", "status": 429}, headers)

    provider_app = ProviderApp(
        PREFIX_V2, dataset, handle, throttled, requests_per_second, settings,
        not_found=lambda: problem(404, "not-found", "Not Found", "The requested resource could not be found."),
        owns=lambda request: request.headers.get("Authorization") == f"Bearer {key}",
        offered=("EmailOctopus through its API v2", through_v2),
    )
    provider_app.bucket = TokenBucket(requests_per_second, capacity=V2_BUCKET)
    return provider_app
