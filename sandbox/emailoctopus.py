"""The simulated EmailOctopus 1.6 API (docs/providers/emailoctopus-1.6.md).

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
import re
from datetime import timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from sandbox.dataset import Campaign, Contact, Dataset, Event
from sandbox.server import DEFAULT_ACCOUNT, ProviderApp, SandboxError, json_response, simulates

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


def contact_object(contact: Contact, variants: dict[str, str]) -> dict[str, Any]:
    if contact.deleted:  # docs/providers/emailoctopus-1.6.md § Contact object: every field but `id` null
        return {
            "id": contact.id, "email_address": None, "fields": None, "tags": None,
            "status": None, "created_at": None, "last_updated_at": None, "deleted": True,
        }
    fields = dict(contact.fields)
    if variants.get("eo_new_contact_field") == "yes" and contact.number % 3 == 0:
        fields["Loyalty"] = "gold"
    if variants.get("eo_score_type") == "text" and "Score" in fields:
        fields["Score"] = f"score-{fields['Score']}"
    body: dict[str, Any] = {
        "id": contact.id,
        "email_address": contact.email,
        "fields": fields,
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
        """An error answer whose status the variant `eo_error_status` picks for the code."""
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

    def summary(campaign: Campaign) -> dict[str, Any]:
        # docs/providers/emailoctopus-1.6.md § Endpoints, summary: `sent, bounced {soft, hard}, opened {total, unique},
        # clicked {total, unique}, complained, unsubscribed`; nested or flat is unsure (variant `eo_summary`)
        events = dataset.events(campaign)

        def count(kind: str, unique: bool = False) -> int:
            matching = [e for e in events if e.type == kind]
            return len({e.contact_id for e in matching}) if unique else len(matching)

        bounces = [e for e in events if e.type == "bounced"]
        hard = sum(1 for e in bounces if e.bounce_code in ("B", "D", "F"))
        nested = {
            "id": campaign.id,
            "sent": count("sent"),
            "bounced": {"soft": len(bounces) - hard, "hard": hard},
            "opened": {"total": count("opened"), "unique": count("opened", True)},
            "clicked": {"total": count("clicked"), "unique": count("clicked", True)},
            "complained": count("complained"),
            "unsubscribed": count("unsubscribed"),
        }
        if variants.get("eo_summary", "nested") == "flat":
            return {
                "id": campaign.id, "sent": nested["sent"], "bounced_soft": len(bounces) - hard, "bounced_hard": hard,
                "opened_total": count("opened"), "opened_unique": count("opened", True),
                "clicked_total": count("clicked"), "clicked_unique": count("clicked", True),
                "complained": nested["complained"], "unsubscribed": nested["unsubscribed"],
            }
        return nested

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
                return json_response(summary(campaign))
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

