"""The simulated Constant Contact v2 API (docs/providers/constant-contact-v2.md).

It renders the shared data set the v2 way: numeric-string ids (`campaign_id` a JSON number
in some rows), UTC dates with milliseconds, newest rows first, `{"meta": {"pagination":
{"next_link"}}, "results"}` envelopes whose opaque `next` token ends in `=`, and arrays of
`{error_key, error_message}` for errors. Two sent campaigns are deleted (for v2 only): one
before the sandbox starts, one six hours after, so an incremental run meets a deletion. As
documented (docs/providers/constant-contact-v2.md § Deleted campaigns), a deleted campaign is listed only
with `status=DELETED`, and its details, summary and tracking lists return 404.

Limits: the per-second one is the shared token bucket (response: 403
`mashery.not.authorized.over.qps`); the daily quota (`simulator.daily_quota`, per day of
the sandbox clock) returns 403 `mashery.not.authorized.over.ratelimit`.

Variants (Sandbox(variants=...)) for what the real API leaves unsure:
- `cc2_link_uri`: `yes` (default) or `no` `link_uri` field on click rows;
- `cc2_throttle`: `403` (default) or `429` as the over-limit status, per second and daily alike;
- `cc2_tracking_order`: `newest` (default: newest first, as the fixtures show) or `oldest` first,
  the order of a campaign's tracking lists;
- `cc2_page_rows`: at most this many rows per page whatever the `limit` (default: the limit).

Fault: `cc2_throttle_every` = N responds to every Nth call with the per-second over-limit response
(counted in `simulator.throttled`), a burst that does not depend on timing.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import zlib
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.dataset import LINKS, Campaign, Contact, Dataset, Event
from sandbox.server import DEFAULT_ACCOUNT, ProviderApp, SandboxError, json_response, simulates

NAME = "constant_contact_v2"
PREFIX = "/constant_contact_v2"
API = "/v2"
API_KEY = "cc2-sandbox-key-8d3e61f0a9c4"
ACCESS_TOKEN = "cc2-sandbox-token-5b7c2e94d1f8"
REQUESTS_PER_SECOND = 4.0  # docs/providers/constant-contact-v2.md § Limits: 4 requests/second and 10,000/day per key
DAILY_QUOTA = 10_000
CAMPAIGN_LIMIT = 50  # docs/providers/constant-contact-v2.md § Endpoints, campaigns: `limit` max 50
TRACKING_LIMIT = 500  # docs/providers/constant-contact-v2.md § Endpoints: a tracking list's `limit` 1..500, default 500
# docs/providers/constant-contact-v2.md § Endpoints, contacts: `limit` 1..500, default 50
CONTACT_LIMIT, CONTACT_DEFAULT_LIMIT = 500, 50
# data set status -> the v2 contact status (a deleted contact is REMOVED)
CONTACT_STATUSES = {"SUBSCRIBED": "ACTIVE", "UNSUBSCRIBED": "OPTOUT", "PENDING": "UNCONFIRMED"}
# the data set's custom fields that v2 has as standard contact fields
STANDARD_FIELDS = {"FirstName": "first_name", "LastName": "last_name"}
CAMPAIGN_ID_BASE = 1_100_394_165_000
LINK_ID_BASE = 1_100_567_310_000
# tracking list -> (dataset event type, v2 activity_type, date field): docs/providers/constant-contact-v2.md § Endpoints
TRACKING = {
    "sends": ("sent", "EMAIL_SEND", "send_date"),
    "opens": ("opened", "EMAIL_OPEN", "open_date"),
    "clicks": ("clicked", "EMAIL_CLICK", "click_date"),
    "forwards": ("forwarded", "EMAIL_FORWARD", "forward_date"),
    "unsubscribes": ("unsubscribed", "EMAIL_UNSUBSCRIBE", "unsubscribe_date"),
    "bounces": ("bounced", "EMAIL_BOUNCE", "bounce_date"),
}
# docs/providers/constant-contact-v2.md § Endpoints, bounce rows: `bounce_code (B, D, F, S, V, X, Z)`
BOUNCE_DESCRIPTIONS = {
    "B": "Non-existent address", "D": "Undeliverable", "F": "Mailbox full", "S": "Suspended",
    "V": "Vacation or auto-reply", "X": "Other", "Z": "Blocked",
}
# docs/providers/constant-contact-v2.md § Endpoints, unsubscribe rows: `unsubscribe_source`
UNSUBSCRIBE_SOURCES = ("ACTION_BY_CONTACT", "ACTION_BY_CONTACT", "ACTION_BY_CUSTOMER", "ACTION_BY_OWNER")
# the parameters a call with `next` must not repeat (docs/providers/constant-contact-v2.md § Paging)
PAGING_PARAMS = ("limit", "status", "modified_since", "created_since", "include_contact_id")
# docs/providers/constant-contact-v2.md § Limits: the over-limit error_keys, per second and daily
OVER_QPS, OVER_DAILY = "mashery.not.authorized.over.qps", "mashery.not.authorized.over.ratelimit"
# docs/providers/constant-contact-v2.md § Endpoints: the campaign and contact listings' `status`
STATUSES = ("ALL", "DRAFT", "RUNNING", "SENT", "SCHEDULED", "DELETED")
CONTACT_FILTERS = ("ALL", "ACTIVE", "UNCONFIRMED", "OPTOUT", "REMOVED")


def access_token(account: str) -> str:
    """The access token of one of the sandbox's accounts; the API key is the application's, shared by all."""
    return ACCESS_TOKEN if account == DEFAULT_ACCOUNT else f"{ACCESS_TOKEN}-{account}"


def settings_of(account: str) -> Callable[[str], dict[str, str]]:
    """The environment that points campaign-sync at one account of this simulator."""

    def settings(base_url: str) -> dict[str, str]:
        if account != DEFAULT_ACCOUNT:
            section = f"SOURCES__CONSTANT_CONTACT_V2__ACCOUNTS__{account.upper()}"
            return {f"{section}__API_KEY": API_KEY, f"{section}__ACCESS_TOKEN": access_token(account)}
        return {
            "SOURCES__CONSTANT_CONTACT_V2__API_KEY": API_KEY,
            "SOURCES__CONSTANT_CONTACT_V2__ACCESS_TOKEN": ACCESS_TOKEN,
            "SOURCES__CONSTANT_CONTACT_V2__BASE_URL": base_url + API,
        }

    return settings


def error(status: int, key: str, message: str) -> SandboxError:
    """A v2 error: an array of `{error_key, error_message}` (docs/providers/constant-contact-v2.md § Errors)."""
    return SandboxError(status, [{"error_key": key, "error_message": message}])


def v2_date(value: datetime) -> str:
    """ISO 8601 UTC with milliseconds, as v2 writes dates (docs/providers/constant-contact-v2.md § Ids and dates)."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def campaign_id(campaign: Campaign) -> str:
    """The stable numeric-string v2 id of a campaign (docs/providers/constant-contact-v2.md § Ids and dates)."""
    return str(CAMPAIGN_ID_BASE + campaign.number)


def contact_id(contact: Contact) -> str:
    """The numeric-string v2 id of a data set contact."""
    return str(contact.number)


def link_id(url: str) -> str:
    """The v2 `url_uid` of one of the data set's links."""
    return str(LINK_ID_BASE + LINKS.index(url))


def event_time(event: Event) -> datetime:
    """When v2 says an event happened: its time plus stable milliseconds (equal events stay equal)."""
    identity = f"{event.campaign_id}|{event.contact_id}|{event.type}|{event.at.isoformat()}"
    return event.at + timedelta(milliseconds=zlib.crc32(identity.encode()) % 1000)


def encode_token(state: dict[str, Any]) -> str:
    """An opaque `next` token, padded so that it always ends in `=` (docs/providers/constant-contact-v2.md § Paging)."""
    raw = json.dumps(state, separators=(",", ":")).encode()
    raw += b" " * ((1 - len(raw)) % 3)
    return base64.urlsafe_b64encode(raw).decode()


def decode_token(token: str) -> dict[str, Any]:
    try:
        state = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError):
        raise error(400, "query.param.invalid", "The next parameter is not valid.") from None
    if not isinstance(state, dict):
        raise error(400, "query.param.invalid", "The next parameter is not valid.")
    return state


class Simulator:
    """The v2 API over one data set; tests read and set its counters and quota."""

    def __init__(self, dataset: Dataset, variants: dict[str, str], account: str = DEFAULT_ACCOUNT) -> None:
        self.dataset, self.variants = dataset, variants
        self.access_token = access_token(account)
        self.daily_quota: int | None = DAILY_QUOTA
        self.used: Counter[date] = Counter()
        # (path, parameters) of the latest calls, api_key left out
        self.calls: deque[tuple[str, dict[str, str]]] = deque(maxlen=100_000)
        self.page_rows = int(variants.get("cc2_page_rows", 0)) or None
        self.throttle_every = int(variants.get("cc2_throttle_every", 0))
        self.throttled_calls = 0
        self._served = 0
        self._lock = threading.Lock()
        self.by_id = {campaign_id(c): c for c in dataset.campaigns}
        sent = dataset.sent_campaigns()
        self.deleted_at: dict[str, datetime] = {}
        if len(sent) >= 3:
            self.deleted_at[sent[1].id] = dataset.clock - timedelta(days=1)
            self.deleted_at[sent[-1].id] = dataset.clock + timedelta(hours=6)

    # ---- ground truth helpers ----
    def is_deleted(self, campaign: Campaign) -> bool:
        """Whether the campaign is deleted at the current clock."""
        deleted = self.deleted_at.get(campaign.id)
        return deleted is not None and deleted <= self.dataset.clock

    def status(self, campaign: Campaign) -> str:
        """The v2 status of a campaign now."""
        if self.is_deleted(campaign):
            return "DELETED"
        if self.dataset.is_sent(campaign):
            return "SENT"
        return "SCHEDULED" if campaign.send_at is not None else "DRAFT"

    def modified(self, campaign: Campaign) -> datetime:
        """When the campaign last changed: created, sent, deleted."""
        moments = [campaign.created_at]
        if self.dataset.is_sent(campaign) and campaign.send_at is not None:
            moments.append(campaign.send_at)
        if self.is_deleted(campaign):
            moments.append(self.deleted_at[campaign.id])
        return max(moments)

    # ---- rendering ----
    def listing_row(self, campaign: Campaign) -> dict[str, Any]:
        return {
            "id": campaign_id(campaign),
            "name": campaign.name,
            "status": self.status(campaign),
            "modified_date": v2_date(self.modified(campaign)),
        }  # docs/providers/constant-contact-v2.md § Endpoints, campaigns: `id, name, status, modified_date`

    def summary(self, campaign: Campaign) -> dict[str, int]:
        events = self.dataset.events(campaign)

        def count(kind: str, unique: bool = False) -> int:
            matching = [e for e in events if e.type == kind]
            return len({e.contact_id for e in matching}) if unique else len(matching)

        # docs/providers/constant-contact-v2.md § Endpoints, summary: `sends, opens, clicks, forwards,
        # unsubscribes, bounces, spam_count`
        return {
            "sends": count("sent"), "opens": count("opened", True), "clicks": count("clicked", True),
            "forwards": count("forwarded"), "unsubscribes": count("unsubscribed"), "bounces": count("bounced"),
            "spam_count": count("complained"),
        }

    def details(self, campaign: Campaign) -> dict[str, Any]:
        # docs/providers/constant-contact-v2.md § Endpoints, one campaign: `subject, from_name, from_email,
        # created_date, last_run_date, tracking_summary, click_through_details[{url, url_uid, click_count}],
        # sent_to_contact_lists`
        clicks = self.dataset.events(campaign, "clicked")
        body: dict[str, Any] = {
            **self.listing_row(campaign),
            "subject": campaign.subject,
            "from_name": campaign.from_name,
            "from_email": campaign.from_email,
            "reply_to_email": campaign.from_email,
            "created_date": v2_date(campaign.created_at),
            "email_content": f"<html><body><p>{campaign.subject}</p></body></html>",
            "text_content": campaign.subject,
            "email_content_format": "HTML",
            "permalink_url": f"https://myemail.constantcontact.com/{campaign_id(campaign)}.html",
            "sent_to_contact_lists": [{"id": str(self.dataset.lists.index(campaign.list_id) + 1)}],
            "click_through_details": [
                {"url": url, "url_uid": link_id(url), "click_count": sum(1 for e in clicks if e.url == url)}
                for url in LINKS
            ],
        }
        if self.dataset.is_sent(campaign) and campaign.send_at is not None:
            body["last_run_date"] = v2_date(campaign.send_at)
            body["tracking_summary"] = self.summary(campaign)
        return body

    def tracking_row(self, campaign: Campaign, event: Event, report: str) -> dict[str, Any]:
        _type, word, date_field = TRACKING[report]
        contact = self.dataset.contact(event.contact_id)
        cid = campaign_id(campaign)
        row: dict[str, Any] = {
            "activity_type": word,
            # docs/providers/constant-contact-v2.md § Ids and dates: `campaign_id` sometimes arrives as a JSON number
            "campaign_id": int(cid) if contact.number % 3 == 0 else cid,
            "contact_id": contact_id(contact),
            "email_address": contact.email,
            date_field: v2_date(event_time(event)),
        }
        if report == "clicks":
            row["link_id"] = link_id(event.url or "")
            # docs/providers/constant-contact-v2.md § Open questions: `link_uri` on click rows (variant `cc2_link_uri`)
            if self.variants.get("cc2_link_uri", "yes") == "yes":
                row["link_uri"] = event.url
        if report == "unsubscribes":
            row["unsubscribe_source"] = UNSUBSCRIBE_SOURCES[contact.number % len(UNSUBSCRIBE_SOURCES)]
            if event.reason is not None:
                row["unsubscribe_reason"] = event.reason
        if report == "bounces":
            code = event.bounce_code or "X"
            row["bounce_code"] = code
            row["bounce_description"] = BOUNCE_DESCRIPTIONS[code]
            row["bounce_message"] = f"550 5.1.1 <{contact.email}>: {BOUNCE_DESCRIPTIONS[code]}"
        return row

    def tracking(self, campaign: Campaign, report: str, since: datetime | None) -> list[dict[str, Any]]:
        """A tracking list: events on or after `since`, newest first (or oldest first: `cc2_tracking_order`)."""
        kind = TRACKING[report][0]
        # docs/providers/constant-contact-v2.md § Incremental: `created_since` is "on or after"
        events = [e for e in self.dataset.events(campaign, kind) if since is None or event_time(e) >= since]
        # docs/providers/constant-contact-v2.md § Open questions: the order is unsure (the examples show newest first)
        newest_first = self.variants.get("cc2_tracking_order", "newest") == "newest"
        events.sort(key=lambda e: (event_time(e), self.dataset.contact(e.contact_id).number), reverse=newest_first)
        return [self.tracking_row(campaign, e, report) for e in events]

    # ---- requests ----
    def query(self, request: Request, path: str, max_limit: int, default_limit: int | None = None) -> dict[str, Any]:
        """The effective parameters of a list call: its own, or those its `next` token carries."""
        token = request.args.get("next")
        if token is not None:  # with `next`, no other parameter (docs/providers/constant-contact-v2.md § Paging)
            mixed = [name for name in PAGING_PARAMS if name in request.args]
            if mixed:
                raise error(400, "query.param.invalid", f"next cannot be combined with {', '.join(mixed)}.")
            state = decode_token(token)
            if state.get("path") != path:
                raise error(400, "query.param.invalid", "The next parameter belongs to another list.")
            return state
        try:
            limit = int(request.args.get("limit", default_limit or max_limit))
        except ValueError:
            raise error(400, "query.param.invalid", "The limit parameter must be a number.") from None
        if not 1 <= limit <= max_limit:
            raise error(400, "query.param.invalid", f"The limit parameter must be between 1 and {max_limit}.")
        state = {"path": path, "offset": 0, "limit": limit}
        for name in ("status", "modified_since", "created_since", "include_contact_id"):
            if name in request.args:
                state[name] = request.args[name]
        return state

    def page(self, rows: list[dict[str, Any]], state: dict[str, Any]) -> Response:
        """One page of `rows` from the state's offset, with a `next_link` while more remain."""
        size = min(state["limit"], self.page_rows or state["limit"])
        start = state["offset"]
        # docs/providers/constant-contact-v2.md § Paging: `{"meta": {"pagination": {"next_link"}}, "results"}`;
        # no `next_link` on the last page; the link is host-relative and carries no `api_key`
        body: dict[str, Any] = {"meta": {"pagination": {}}, "results": rows[start:start + size]}
        if start + size < len(rows):
            token = encode_token({**state, "offset": start + size})
            body["meta"]["pagination"]["next_link"] = f"{PREFIX}{API}{state['path']}?next={token}"
        return json_response(body)

    def campaign(self, cid: str) -> Campaign:
        campaign = self.by_id.get(cid)
        if campaign is None:
            raise error(404, "http.status.not_found", f"Campaign {cid} was not found.")
        return campaign

    def handle(self, request: Request, path: str) -> Response:
        """Respond to one v2 call (the sandbox prefix stripped)."""
        # docs/providers/constant-contact-v2.md § Authentication: a request whose Accept header is not JSON gets 406
        if request.headers.get("Accept") and not request.accept_mimetypes.accept_json:
            raise error(406, "http.status.not_acceptable", "The Accept header must allow application/json.")
        # docs/providers/constant-contact-v2.md § Authentication: `api_key` in the query and a Bearer access token
        if request.args.get("api_key") != API_KEY:
            raise error(401, "http.status.unauthorized", "Unauthorized: the api_key is not valid.")
        if request.headers.get("Authorization") != f"Bearer {self.access_token}":
            raise error(401, "http.status.unauthorized", "Unauthorized: the access token is not valid.")
        with self._lock:
            self._served += 1
            if self.throttle_every and self._served % self.throttle_every == 0:
                self.throttled_calls += 1
                raise self.throttled()
            day = self.dataset.clock.date()
            if self.daily_quota is not None and self.used[day] >= self.daily_quota:
                # docs/providers/constant-contact-v2.md § Limits: 403 `...over.ratelimit` (daily); unsure: 429
                raise error(self.over_limit_status(), OVER_DAILY, "Account Over Rate Limit")
            self.used[day] += 1
            self.calls.append((path, {k: v for k, v in request.args.items() if k != "api_key"}))
        return self.route(request, path.removeprefix(API))

    def route(self, request: Request, path: str) -> Response:
        if path == "/emailmarketing/campaigns":
            state = self.query(request, path, CAMPAIGN_LIMIT)
            return self.page(self.campaign_list(state), state)
        if match := re.fullmatch(r"/emailmarketing/campaigns/(\d+)", path):
            return json_response(self.details(self.live(match[1])))
        if match := re.fullmatch(r"/emailmarketing/campaigns/(\d+)/tracking/reports/summary", path):
            campaign = self.sent(match[1])
            return json_response(self.summary(campaign))
        # docs/providers/constant-contact-v2.md § Endpoints: also `clicks/{linkId}`, linkId = url_uid
        if match := re.fullmatch(r"/emailmarketing/campaigns/(\d+)/tracking/(\w+)(?:/(\d+))?", path):
            campaign, report, link = self.sent(match[1]), match[2], match[3]
            if report not in TRACKING or (link is not None and report != "clicks"):
                raise error(404, "http.status.not_found", f"No tracking list {report}.")
            state = self.query(request, path, TRACKING_LIMIT)
            rows = self.tracking(campaign, report, _since(state.get("created_since"), "created_since"))
            if link is not None:
                rows = [row for row in rows if row["link_id"] == link]
            return self.page(rows, state)
        if path == "/contacts":
            state = self.query(request, path, CONTACT_LIMIT, CONTACT_DEFAULT_LIMIT)
            return self.page(self.contact_list(state), state)
        if match := re.fullmatch(r"/contacts/(\d+)/tracking(?:/(\w+))?", path):
            return self.contact_tracking(request, path, match[1], match[2])
        raise error(404, "http.status.not_found", "The requested resource was not found.")

    def live(self, cid: str) -> Campaign:
        """A campaign that is not deleted. docs/providers/constant-contact-v2.md § Deleted campaigns: "details
        of a deleted campaign cannot be retrieved", GET of a deleted campaign returns 404, and its
        tracking lists cannot be read either."""
        campaign = self.campaign(cid)
        if self.is_deleted(campaign):
            raise error(404, "http.status.not_found", f"Campaign {cid} was not found.")
        return campaign

    def sent(self, cid: str) -> Campaign:
        campaign = self.live(cid)
        # tracking of sent campaigns only (docs/providers/constant-contact-v2.md § Endpoints)
        if not self.dataset.is_sent(campaign):
            message = "Tracking information is only available for SENT email campaigns."
            raise error(404, "http.status.not_found", message)
        return campaign

    def campaign_list(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        status = state.get("status", "ALL").upper()
        if status not in STATUSES:
            raise error(400, "query.param.invalid", f"The status parameter must be one of {', '.join(STATUSES)}.")
        since = _since(state.get("modified_since"), "modified_since")
        # docs/providers/constant-contact-v2.md § Deleted campaigns: listed only with `status=DELETED`
        campaigns = [
            c for c in self.dataset.campaigns
            if (status == "DELETED") == self.is_deleted(c)
            and status in ("ALL", "DELETED", self.status(c))
            and (since is None or self.modified(c) >= since)
        ]
        campaigns.sort(key=lambda c: (self.modified(c), c.number), reverse=True)
        return [self.listing_row(c) for c in campaigns]

    def contact_status(self, contact: Contact) -> str:
        """The v2 status of a data set contact."""
        return "REMOVED" if contact.deleted else CONTACT_STATUSES[contact.status]

    def contact_object(self, contact: Contact, with_v3_id: bool) -> dict[str, Any]:
        """A v2 contact (docs/providers/constant-contact-v2.md § Endpoints, contacts): numeric id, the v3 UUID
        as `contact_id` only when asked for (`include_contact_id=true`), one email address,
        `lists[{id, status}]` and `custom_fields[{name: CustomFieldN, label, value}]`."""
        status = self.contact_status(contact)
        created, modified = v2_date(contact.created_at), v2_date(contact.updated_at or contact.created_at)
        custom = [(name, value) for name, value in contact.fields.items() if name not in STANDARD_FIELDS]
        body: dict[str, Any] = {
            "id": contact_id(contact),
            "status": status,
            "first_name": contact.fields.get("FirstName"),
            "last_name": contact.fields.get("LastName"),
            "company_name": "",
            "job_title": "",
            "email_addresses": [{
                "id": f"{contact.number}-1",
                "email_address": contact.email,
                "status": status,
                "confirm_status": "CONFIRMED" if status != "UNCONFIRMED" else "UNCONFIRMED",
                "opt_in_source": "ACTION_BY_OWNER",
                "opt_in_date": created,
                **({"opt_out_date": modified} if status == "OPTOUT" else {}),
            }],
            "lists": [{"id": str(self.dataset.lists.index(contact.list_id) + 1), "status": status}],
            "custom_fields": [
                {"name": f"CustomField{n}", "label": name, "value": str(value)}
                for n, (name, value) in enumerate(custom, start=1)
            ],
            "created_date": created,
            "modified_date": modified,
            "source": "Site Owner",
        }
        if with_v3_id:
            body["contact_id"] = contact.id
        return body

    def contact_list(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        """`GET contacts`: every status by default (`status=ALL`), `modified_since` on or after, in id order
        (the order is not documented)."""
        status = state.get("status", "ALL").upper()
        if status not in CONTACT_FILTERS:
            allowed = ", ".join(CONTACT_FILTERS)
            raise error(400, "query.param.invalid", f"The status parameter must be one of {allowed}.")
        since = _since(state.get("modified_since"), "modified_since")
        with_v3_id = str(state.get("include_contact_id", "")).lower() == "true"
        return [
            self.contact_object(c, with_v3_id) for c in self.dataset.contacts
            if status in ("ALL", self.contact_status(c))
            and (since is None or (c.updated_at or c.created_at) >= since)
        ]

    def contact_tracking(self, request: Request, path: str, number: str, report: str | None) -> Response:
        """Every tracking row of one contact, across sent campaigns, newest first
        (docs/providers/constant-contact-v2.md § Endpoints, one contact's tracking)."""
        if report is not None and report not in TRACKING:
            raise error(404, "http.status.not_found", f"No tracking list {report}.")
        contact = next((c for c in self.dataset.contacts if str(c.number) == number), None)
        if contact is None:
            raise error(404, "http.status.not_found", f"Contact {number} was not found.")
        state = self.query(request, path, TRACKING_LIMIT)
        since = _since(state.get("created_since"), "created_since")
        found = [
            (event_time(row_event), self.tracking_row(campaign, row_event, name))
            for campaign in self.dataset.sent_campaigns()
            for name in ([report] if report else TRACKING)
            for row_event in self.dataset.events(campaign, TRACKING[name][0])
            if row_event.contact_id == contact.id and (since is None or event_time(row_event) >= since)
        ]
        found.sort(key=lambda pair: pair[0], reverse=True)
        return self.page([row for _at, row in found], state)

    def over_limit_status(self) -> int:
        """403, or 429 (unsure: variant `cc2_throttle`; docs/providers/constant-contact-v2.md § Limits)."""
        return 429 if self.variants.get("cc2_throttle", "403") == "429" else 403

    def share_application(self, application: Simulator) -> None:
        """This account's daily quota is its API key's (docs/providers/constant-contact-v2.md § Limits)."""
        self.used, self._lock = application.used, application._lock

    def throttled(self) -> SandboxError:
        """The per-second over-limit response, `...over.qps` (docs/providers/constant-contact-v2.md § Limits)."""
        return error(self.over_limit_status(), OVER_QPS, "Account Over Queries Per Second Limit")


def _since(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise error(400, "query.param.invalid", f"The {name} parameter must be an ISO 8601 date.") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# docs/providers/constant-contact-v2.md § Limits: the API key's (the application's) limits, shared by its accounts
@simulates(NAME, REQUESTS_PER_SECOND, seed_offset=1, shared_limit=True)
def app(dataset: Dataset, variants: dict[str, str], requests_per_second: float, account: str) -> ProviderApp:
    """The Constant Contact v2 API of one account (its access token), over `dataset`."""
    simulator = Simulator(dataset, variants, account)
    handle: Callable[[Request, str], Response] = simulator.handle
    return ProviderApp(PREFIX, dataset, handle, simulator.throttled, requests_per_second, settings_of(account),
                       simulator,
                       not_found=lambda: error(404, "http.status.not_found", "The requested resource was not found."),
                       owns=lambda request: request.headers.get("Authorization") == f"Bearer {simulator.access_token}")
