"""The simulated Constant Contact v3 API (docs/providers/constant-contact-v3.md).

It renders the shared data set the v3 way:
- UUID ids; campaigns (`GET emails`, newest `updated_at` first, `after_date`/`before_date`)
  made of campaign activities (`primary_email`, `permalink`, and for every third sent campaign
  a `resend` to non-openers 36 hours after the send; the data set's opens, clicks, forwards
  and opt-outs of its recipients from then on belong to the resend);
- tracking reports newest first, `created_time` to the minute, `limit` 1..500, paged by
  `_links.next.href`; an activity that is not sent returns an empty list;
- two campaigns are removed (`Removed`): one before the sandbox starts, one six hours after,
  so an incremental run meets a removal. A removal changes `updated_at`; a send does not.
- contacts: deleted ones only with `status=all`, subresources (`custom_fields`, `list_memberships`,
  `taggings`) only when `include` names them;
- OAuth2 with rotating refresh tokens (a reused one gets `invalid_grant`), Basic client
  auth and the parameters in a form body or the query string, and 1 request a second.

Limits: the per-second one is the shared token bucket (429 `{"error_key": "throttled"}`);
the daily quota (`simulator.daily_quota`, per day of the sandbox clock) returns 429
`{"error_key": "quota_exceeded"}`. 401 and 429 are single objects; other errors are arrays.

Variants (Sandbox(variants=...)) for what the real API leaves unsure, and for tests:
- `cc3_errors`: `array` (default) or `object`: the shape of 400/404 errors;
- `cc3_counts`: `str` (default) or `int`: how the summary counts are written;
- `cc3_last_page`: `absent` (default: `"_links": {}`) or `null` (`"_links": {"next": null}`) on the last page;
- `cc3_page_rows`: at most this many rows per page whatever the `limit` (default: the limit);
- `cc3_daily_quota`: requests a day (default 10,000);
- `cc3_token_requests`: an access token dies after this many API requests (default: never,
  until `expires_in`), so a client meets a 401 it could not foresee.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache, partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from sandbox import constant_contact_v2 as cc2
from sandbox.dataset import CUSTOM_FIELDS, LINKS, Campaign, Contact, Dataset, Event
from sandbox.server import DEFAULT_ACCOUNT, ProviderApp, SandboxError, TokenBucket, json_response, simulates

NAME = "constant_contact_v3"
PREFIX = "/constant_contact_v3"
API = "/v3"
TOKEN_PATH = "/oauth2/default/v1/token"  # docs/providers/constant-contact-v3.md § OAuth
CLIENT_ID = "cc3-sandbox-client-2b9e4d71"
CLIENT_SECRET = "cc3-sandbox-secret-f08a6c35e1d7"
# docs/providers/constant-contact-v3.md § Limits: 4 requests/second and 10,000/day per application
REQUESTS_PER_SECOND = 4.0
DAILY_QUOTA = 10_000
# docs/providers/constant-contact-v3.md § OAuth: the token endpoint allows 1 request/second, and access
# tokens live about 24 hours (`expires_in`)
TOKEN_REQUESTS_PER_SECOND = 1.0
ACCESS_TOKEN_SECONDS = 86_400
# docs/providers/constant-contact-v3.md § Endpoints: `limit` 1..500 (tracking default 500, `emails`, `contacts` 50)
MAX_LIMIT = 500
RESEND_AFTER = timedelta(hours=36)
# campaign index in the data set -> when it is removed, relative to the sandbox's first clock
REMOVALS = {0: timedelta(days=-1), 1: timedelta(hours=6)}
# docs/providers/constant-contact-v3.md § Campaigns and campaign activities: only these have tracking
TRACKED_ROLES = ("primary_email", "resend")
# tracking report -> (data set event type, v3 tracking_activity_type);
# docs/providers/constant-contact-v3.md § Tracking reports
TRACKING = {
    "sends": ("sent", "em_sends"),
    "opens": ("opened", "em_opens"),
    "clicks": ("clicked", "em_clicks"),
    "forwards": ("forwarded", "em_forwards"),
    "optouts": ("unsubscribed", "em_optouts"),
    "bounces": ("bounced", "em_bounces"),
}
# docs/providers/constant-contact-v3.md § Contacts: the subresources `include` (csv) asks for
SUBRESOURCES = ("custom_fields", "list_memberships", "taggings")
PERMISSIONS = {"SUBSCRIBED": "explicit", "UNSUBSCRIBED": "unsubscribed", "PENDING": "pending_confirmation"}
STANDARD_FIELDS = {"FirstName": "first_name", "LastName": "last_name"}
NAMESPACE = uuid.UUID("7b3e2a56-0c1d-4f8e-9a65-3c2b1d0e4f5a")


def v3_time(value: datetime) -> str:
    """ISO 8601 UTC with milliseconds, as v3 writes timestamps."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def to_minute(value: datetime) -> datetime:
    """A tracking `created_time`: v3 keeps minutes only (docs/providers/constant-contact-v3.md § Incremental)."""
    return value.replace(second=0, microsecond=0)


@lru_cache(maxsize=1 << 16)
def tracking_time(value: datetime) -> str:
    """The `created_time` text of an event at `value` (many events share a minute: rendered once)."""
    return v3_time(to_minute(value))


def stable_id(*parts: object) -> str:
    """A UUID that always comes out the same for the same parts."""
    return str(uuid.uuid5(NAMESPACE, "|".join(str(part) for part in parts)))


def error(status: int, key: str, message: str, single: bool = False) -> SandboxError:
    """A v3 error response: `[{error_key, error_message}]`, or one object (401, 429, variant).

    docs/providers/constant-contact-v3.md § Errors: documented as an array, but 401 and 429 come as a single object.
    """
    body = {"error_key": key, "error_message": message}
    return SandboxError(status, body if single else [body])


def _encode_cursor(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode()


def _decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        state = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError):
        state = None
    if not isinstance(state, dict):
        raise error(400, "query.param.invalid", "The cursor parameter is not valid.")
    return state


def _timestamp(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise error(400, "query.param.invalid", f"The {name} parameter must be an ISO 8601 date-time.") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Activity:
    """One campaign activity: `send_at` is when it is (or will be) sent, None for never."""

    id: str
    campaign: Campaign
    role: str
    send_at: datetime | None
    subject: str


def send_time(activity: Activity) -> datetime:
    """When an activity that is sent (or scheduled) is sent."""
    if activity.send_at is None:
        raise ValueError(f"activity {activity.id} is never sent")
    return activity.send_at


class Account:
    """The v3 view of a data set: activities, resends, removals; the ground truth of tests."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.start = dataset.clock
        self._activities = {c.id: self._make_activities(i, c) for i, c in enumerate(dataset.campaigns)}
        self._removed = {dataset.campaigns[i].id: self.start + delta for i, delta in REMOVALS.items()
                         if i < len(dataset.campaigns) - 2}
        self._resend_recipients: dict[str, list[str]] = {}

    @staticmethod
    def _make_activities(index: int, campaign: Campaign) -> list[Activity]:
        activities = [
            Activity(stable_id(campaign.id, "primary_email"), campaign, "primary_email", campaign.send_at,
                     campaign.subject),
            Activity(stable_id(campaign.id, "permalink"), campaign, "permalink", None, campaign.subject),
        ]
        if campaign.send_at is not None and index % 3 == 2:
            activities.append(Activity(stable_id(campaign.id, "resend"), campaign, "resend",
                                       campaign.send_at + RESEND_AFTER, f"{campaign.subject} (in case you missed it)"))
        return activities

    # ---- campaigns ----
    def activities(self, campaign: Campaign) -> list[Activity]:
        """Every activity of the campaign, tracked or not."""
        return self._activities[campaign.id]

    def tracked(self, campaign: Campaign) -> list[Activity]:
        """The activities with tracking reports: the primary email and any resend."""
        return [a for a in self.activities(campaign) if a.role in TRACKED_ROLES]

    def activity(self, activity_id: str) -> Activity | None:
        for activities in self._activities.values():
            for activity in activities:
                if activity.id == activity_id:
                    return activity
        return None

    def campaign(self, campaign_id: str) -> Campaign | None:
        return next((c for c in self.dataset.campaigns if c.id == campaign_id), None)

    def is_sent(self, activity: Activity) -> bool:
        return activity.send_at is not None and activity.send_at <= self.dataset.clock

    def removed_at(self, campaign: Campaign) -> datetime | None:
        """When the campaign was removed, if it has been by now."""
        removed = self._removed.get(campaign.id)
        return removed if removed is not None and removed <= self.dataset.clock else None

    def status(self, campaign: Campaign) -> str:
        """The campaign's `current_status` now (docs/providers/constant-contact-v3.md § Endpoints)."""
        if self.removed_at(campaign) is not None:
            return "Removed"
        if campaign.send_at is None:
            return "Draft"
        return "Done" if campaign.send_at <= self.dataset.clock else "Scheduled"

    def updated_at(self, campaign: Campaign) -> datetime:
        """Edits (creating it, removing it) change `updated_at`; sending does not."""
        return self.removed_at(campaign) or campaign.created_at

    def sent_at(self, campaign: Campaign) -> datetime | None:
        """When the campaign's primary email went out, if it has."""
        primary = self.tracked(campaign)[0]
        return primary.send_at if self.is_sent(primary) else None

    # ---- tracking ----
    def resend_recipients(self, campaign: Campaign) -> list[str]:
        """Who a resend goes to: recipients who had not opened, bounced or opted out by then."""
        if campaign.id not in self._resend_recipients:
            resend = next((a for a in self.activities(campaign) if a.role == "resend"), None)
            recipients: list[str] = []
            if resend is not None:
                done = {e.contact_id for e in campaign.events
                        if e.type in ("opened", "bounced", "unsubscribed", "complained") and e.at < send_time(resend)}
                recipients = [c for c in campaign.recipients if c not in done]
            self._resend_recipients[campaign.id] = recipients
        return self._resend_recipients[campaign.id]

    def events(self, activity: Activity, activity_type: str | None = None) -> list[Event]:
        """The visible events of one activity (complaints have no v3 tracking report)."""
        if activity.role not in TRACKED_ROLES or not self.is_sent(activity):
            return []
        campaign = activity.campaign
        resend = set(self.resend_recipients(campaign))
        found: list[Event] = []
        if activity.role == "resend":
            found = [Event(campaign.id, contact_id, "sent", send_time(activity) + timedelta(seconds=n // 50))
                     for n, contact_id in enumerate(self.resend_recipients(campaign))]
            found = [e for e in found if e.at <= self.dataset.clock]
        for event in self.dataset.events(campaign):
            if event.type == "complained":
                continue
            belongs_to_resend = event.type != "sent" and event.contact_id in resend
            if belongs_to_resend == (activity.role == "resend"):
                found.append(event)
        return [e for e in found if activity_type is None or e.type == activity_type]

    def did_not_open(self, activity: Activity) -> list[str]:
        """The `didnotopens` snapshot of one activity: sent, not bounced, not opened
        (docs/providers/constant-contact-v3.md § Tracking reports)."""
        if activity.role not in TRACKED_ROLES or not self.is_sent(activity):
            return []
        events = self.events(activity)
        sent = [e.contact_id for e in events if e.type == "sent"]
        engaged = {e.contact_id for e in events if e.type in ("opened", "bounced")}
        return [c for c in dict.fromkeys(sent) if c not in engaged]

    def not_opened(self, campaign: Campaign) -> list[str]:
        """Who did not open the campaign at all, over every activity: the canonical snapshot."""
        return self.dataset.not_engaged(campaign, "opened")

    def summary(self, campaign: Campaign) -> dict[str, int]:
        """The campaign's counts over every tracked activity."""
        events = [e for a in self.tracked(campaign) for e in self.events(a)]

        def unique(kind: str) -> int:
            return len({e.contact_id for e in events if e.type == kind})

        return {
            "sends": sum(1 for e in events if e.type == "sent"),
            "opens": unique("opened"),
            "clicks": unique("clicked"),
            "forwards": unique("forwarded"),
            "optouts": unique("unsubscribed"),
            "abuse": sum(1 for e in self.dataset.events(campaign, "complained")),
            "bounces": sum(1 for e in events if e.type == "bounced"),
            "not_opened": len(self.not_opened(campaign)),
        }


class OAuthServer:
    """The token endpoint: Basic client auth, rotating refresh tokens, 1 request a second."""

    def __init__(self, variants: dict[str, str]) -> None:
        self.initial_refresh_token = self._new("cc3-rt")  # new for every sandbox, never reused
        self.valid_refresh_tokens = {self.initial_refresh_token}
        self.access_tokens: dict[str, tuple[float, int | None]] = {}  # token -> (expiry, requests left)
        self.refreshes = 0
        self.presented: list[str] = []  # the refresh tokens presented, in order
        self.bucket = TokenBucket(TOKEN_REQUESTS_PER_SECOND)
        self.throttled = 0
        self.token_requests = int(variants["cc3_token_requests"]) if "cc3_token_requests" in variants else None
        self.lock = threading.Lock()

    @staticmethod
    def _new(prefix: str) -> str:
        return f"{prefix}-{secrets.token_urlsafe(24)}"

    def authorize(self) -> str:
        """A new refresh token, as the authorization-code flow would give the user."""
        token = self._new("cc3-rt")
        with self.lock:
            self.valid_refresh_tokens.add(token)
        return token

    def revoke_access_tokens(self) -> None:
        """Every access token issued so far is refused from now on."""
        with self.lock:
            self.access_tokens.clear()

    def token(self, request: Request) -> Response:
        if request.method != "POST":  # docs/providers/constant-contact-v3.md § OAuth
            raise SandboxError(405, {"error": "invalid_request", "error_description": "Use POST."})
        if not self.bucket.take():  # 1 request/second (docs/providers/constant-contact-v3.md § OAuth)
            with self.lock:
                self.throttled += 1
            raise SandboxError(429, {"error": "too_many_requests", "error_description": "1 request per second."},
                               {"Retry-After": "1"})
        # docs/providers/constant-contact-v3.md § OAuth: `Authorization: Basic base64(client_id:client_secret)`
        auth = request.authorization
        if auth is None or auth.type != "basic" or (auth.username, auth.password) != (CLIENT_ID, CLIENT_SECRET):
            raise SandboxError(401, {"error": "invalid_client", "error_description": "Client authentication failed."})
        # docs/providers/constant-contact-v3.md § OAuth: a form body, or the query string as in the official examples
        params = request.form if request.form else request.args
        if params.get("grant_type") != "refresh_token":
            raise SandboxError(400, {"error": "unsupported_grant_type", "error_description": "Use refresh_token."})
        presented = params.get("refresh_token", "")
        with self.lock:
            self.presented.append(presented)
            # docs/providers/constant-contact-v3.md § OAuth: a reused or expired refresh token gets `invalid_grant`
            if presented not in self.valid_refresh_tokens:
                raise SandboxError(400, {"error": "invalid_grant",
                                         "error_description": "The refresh token is invalid or expired."})
            # docs/providers/constant-contact-v3.md § OAuth: refresh tokens rotate, the old one dies
            self.valid_refresh_tokens.discard(presented)
            refresh_token, access_token = self._new("cc3-rt"), self._new("cc3-at")
            self.valid_refresh_tokens.add(refresh_token)
            self.access_tokens[access_token] = (time.monotonic() + ACCESS_TOKEN_SECONDS, self.token_requests)
            self.refreshes += 1
        return json_response({
            "token_type": "Bearer", "expires_in": ACCESS_TOKEN_SECONDS, "access_token": access_token,
            "scope": "account_read contact_data campaign_data offline_access", "refresh_token": refresh_token,
        })

    def check(self, request: Request) -> None:
        """Accept a live Bearer token, or return 401, one object (docs/providers/constant-contact-v3.md § Errors)."""
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        with self.lock:
            expiry, left = self.access_tokens.get(token, (0.0, None))
            alive = time.monotonic() < expiry and (left is None or left > 0)
            if alive and left is not None:
                self.access_tokens[token] = (expiry, left - 1)
        if not alive:
            raise error(401, "unauthorized", "Unauthorized", single=True)


class Simulator:
    """The v3 API over one data set; tests read and set its quota, tokens and ground truth."""

    def __init__(self, dataset: Dataset, variants: dict[str, str], account: str = DEFAULT_ACCOUNT) -> None:
        self.dataset, self.variants, self.account_name = dataset, variants, account
        self.account = Account(dataset)
        self.oauth = OAuthServer(variants)
        self.daily_quota = int(variants.get("cc3_daily_quota", DAILY_QUOTA))
        self.used: Counter[date] = Counter()
        self.page_rows = int(variants.get("cc3_page_rows", 0)) or None
        self.single_errors = variants.get("cc3_errors", "array") == "object"
        self.lock = threading.Lock()
        # tracking reports in page order, by (activity, report, filters), as of the data set's `changes`
        self.ordered: dict[tuple[Any, ...], list[Event]] = {}
        self.ordered_at: int | None = None
        self._token_folder: Path | None = None

    @property
    def token_file(self) -> Path:
        """Where the rotated refresh token goes: a folder of this sandbox's own (two sandboxes never
        overwrite each other's token), made when the settings are first asked for."""
        if self._token_folder is None:
            self._token_folder = Path(tempfile.mkdtemp(prefix="campaign-sync-sandbox-"))
        return self._token_folder / f"{NAME}.refresh_token"

    def close(self) -> None:
        """Remove the folder of the rotated refresh token (the sandbox stops)."""
        if self._token_folder is not None:
            shutil.rmtree(self._token_folder, ignore_errors=True)

    def settings(self, base_url: str) -> dict[str, str]:
        """The environment that points campaign-sync at this simulator.

        The rotated refresh token goes to a file of the sandbox's own, so that trying the
        sandbox never replaces a real account's token in the default file.
        """
        prefix = f"SOURCES__{NAME.upper()}__"
        if self.account_name != DEFAULT_ACCOUNT:  # the application's client, the account's own authorization
            named = f"{prefix}ACCOUNTS__{self.account_name.upper()}__"
            return {f"{named}CLIENT_ID": CLIENT_ID, f"{named}CLIENT_SECRET": CLIENT_SECRET,
                    f"{named}REFRESH_TOKEN": self.oauth.initial_refresh_token}
        return {
            f"{prefix}CLIENT_ID": CLIENT_ID,
            f"{prefix}CLIENT_SECRET": CLIENT_SECRET,
            f"{prefix}REFRESH_TOKEN": self.oauth.initial_refresh_token,
            f"{prefix}BASE_URL": base_url + API,
            f"{prefix}TOKEN_URL": base_url + TOKEN_PATH,
            f"{prefix}REFRESH_TOKEN_FILE": str(self.token_file),
        }

    def share_application(self, application: Simulator) -> None:
        """This account's limits are its application's (docs/providers/constant-contact-v3.md § Limits): the daily quota
        and the token endpoint's rate."""
        self.used, self.lock, self.oauth.bucket = application.used, application.lock, application.oauth.bucket

    def owns(self, request: Request) -> bool:
        """Whether the request carries one of this account's tokens (an access token, or a refresh token)."""
        header = request.headers.get("Authorization", "")
        presented = (request.form if request.form else request.args).get("refresh_token")
        oauth = self.oauth
        with oauth.lock:
            return header.removeprefix("Bearer ") in oauth.access_tokens or presented in oauth.valid_refresh_tokens

    def error(self, status: int, key: str, message: str) -> SandboxError:
        return error(status, key, message, single=self.single_errors)

    def throttled(self) -> SandboxError:
        """The per-second over-limit response: a single object, not an array, no rate-limit headers.

        docs/providers/constant-contact-v3.md § Limits: HTTP 429 `{"error_key": "throttled", ...}`.
        """
        return error(429, "throttled", "Too many requests: 4 a second at most.", single=True)

    def _spend(self) -> None:
        with self.lock:
            day = self.dataset.clock.date()
            # docs/providers/constant-contact-v3.md § Limits: 429 `quota_exceeded`; the day starts at 00:00 UTC
            if self.used[day] >= self.daily_quota:
                raise error(429, "quota_exceeded", "The daily request quota is used up; it resets at 00:00 UTC.",
                            single=True)
            self.used[day] += 1

    # ---- serving ----
    def handle(self, request: Request, path: str) -> Response:
        if path == TOKEN_PATH:
            return self.oauth.token(request)
        if not path.startswith(API + "/"):
            raise self.error(404, "not_found", "No such resource.")
        self.oauth.check(request)
        self._spend()
        path = path.removeprefix(API)
        args: dict[str, Any] = {k: request.args.getlist(k) for k in request.args}
        if "cursor" in args:
            args = _decode_cursor(args["cursor"][0])
        if path == "/emails":
            return self.campaigns(path, args)
        if path == "/emails/campaign_id_xrefs":  # docs/providers/constant-contact-v3.md § Cross-references
            campaigns = {cc2.campaign_id(campaign): campaign.id for campaign in self.dataset.campaigns}
            return _xrefs(_csv(args, "v2_email_campaign_ids"), campaigns, "v2_email_campaign_id", "campaign_id")
        if path == "/contacts/contact_id_xrefs":  # docs/providers/constant-contact-v3.md § Cross-references
            contacts = {cc2.contact_id(contact): contact.id for contact in self.dataset.contacts}
            return _xrefs(_csv(args, "sequence_ids"), contacts, "sequence_id", "contact_id")
        if match := re.fullmatch(r"/emails/activities/([^/]+)", path):
            return json_response(self.activity_object(self._activity(match[1])))
        if match := re.fullmatch(r"/emails/activities/([^/]+)/send_history", path):
            activity = self._activity(match[1])
            return json_response(self.send_history(activity))
        if match := re.fullmatch(r"/emails/([^/]+)", path):
            campaign = self.account.campaign(match[1])
            if campaign is None:
                raise self.error(404, "not_found", "The campaign could not be found.")
            return json_response(self.campaign_object(campaign, details=True))
        if match := re.fullmatch(r"/reports/email_reports/([^/]+)/tracking/([a-z_]+)", path):
            return self.tracking(path, args, self._activity(match[1]), match[2])
        if path == "/reports/summary_reports/email_campaign_summaries":
            return self.summaries(path, args)
        if path == "/contacts":
            return self.contacts(path, args)
        if path == "/contact_custom_fields":  # docs/providers/constant-contact-v3.md § Contacts
            rows = [{"custom_field_id": stable_id("field", name), "name": name.lower(), "label": name,
                     "type": "string"} for name in _custom_fields()]
            return self.page(path, args, "custom_fields", rows, default_limit=50, max_limit=100)
        if path == "/contact_tags":  # docs/providers/constant-contact-v3.md § Contacts
            rows = [{"tag_id": stable_id("tag", tag), "name": tag} for tag in sorted(_tags(self.dataset))]
            return self.page(path, args, "tags", rows, default_limit=50, max_limit=500)
        raise self.error(404, "not_found", "No such resource.")

    def page(self, path: str, args: dict[str, Any], key: str, rows: list[Any], default_limit: int,
             max_limit: int = MAX_LIMIT, extra: dict[str, Any] | None = None,
             render: Callable[[Any], Any] | None = None) -> Response:
        """One page of `rows` under `key`, with a `_links.next.href` that carries every parameter.

        `render` turns a row into its JSON object; only the rows of the page are rendered.
        """
        try:
            limit = int(args.get("limit", [default_limit])[0])
        except ValueError:
            raise self.error(400, "query.param.invalid", "The limit parameter must be a number.") from None
        if not 1 <= limit <= max_limit:
            raise self.error(400, "query.param.invalid", f"The limit parameter must be between 1 and {max_limit}.")
        start = int(args.get("_offset", [0])[0])
        size = min(limit, self.page_rows or limit)
        chunk = rows[start:start + size]
        body: dict[str, Any] = {key: [render(row) for row in chunk] if render else chunk, **(extra or {})}
        # docs/providers/constant-contact-v3.md § Paging: `"_links": {"next": {"href": ...}}`, host-relative
        if start + size < len(rows):
            cursor = _encode_cursor({**args, "_offset": [start + size]})
            body["_links"] = {"next": {"href": f"{PREFIX}{API}{path}?{urlencode({'cursor': cursor})}"}}
        # docs/providers/constant-contact-v3.md § Paging: an absent or null `next` is the last page (`cc3_last_page`)
        elif self.variants.get("cc3_last_page", "absent") == "null":
            body["_links"] = {"next": None}
        else:
            body["_links"] = {}
        return json_response(body)

    def _activity(self, activity_id: str) -> Activity:
        activity = self.account.activity(activity_id)
        if activity is None:
            raise self.error(404, "not_found", "The campaign activity could not be found.")
        return activity

    def campaign_object(self, campaign: Campaign, details: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "campaign_id": campaign.id,
            "name": campaign.name,
            "current_status": self.account.status(campaign),
            "type": "NEWSLETTER",
            "type_code": 10,
            "created_at": v3_time(campaign.created_at),
            "updated_at": v3_time(self.account.updated_at(campaign)),
        }
        # docs/providers/constant-contact-v3.md § Campaigns and campaign activities: `campaign_activities`
        if details:
            body["campaign_activities"] = [
                {"campaign_activity_id": a.id, "role": a.role} for a in self.account.activities(campaign)
            ]
        return body

    def activity_status(self, activity: Activity) -> str:
        """`current_status`, upper case: DRAFT ... DONE, REMOVED (docs/providers/constant-contact-v3.md § Endpoints)."""
        if self.account.removed_at(activity.campaign) is not None:
            return "REMOVED"
        if activity.send_at is None:
            return "DRAFT"
        return "DONE" if self.account.is_sent(activity) else "SCHEDULED"

    def activity_object(self, activity: Activity) -> dict[str, Any]:
        campaign = activity.campaign
        return {
            "campaign_activity_id": activity.id,
            "campaign_id": campaign.id,
            "role": activity.role,
            "contact_list_ids": [campaign.list_id],
            "current_status": self.activity_status(activity),
            "format_type": 5,
            "from_email": campaign.from_email,
            "from_name": campaign.from_name,
            "reply_to_email": campaign.from_email,
            "subject": activity.subject,
            "preheader": f"Issue {campaign.number}",
            "html_content": f"<html><body><p>{activity.subject}</p>[[trackingImage]]</body></html>",
            "permalink_url": f"https://myemail.constantcontact.com/{activity.id}.html",
        }

    def send_history(self, activity: Activity) -> list[dict[str, Any]]:
        """A JSON array of `{send_id, contact_list_ids, segment_ids, count, run_date, send_status (COMPLETED,
        ERRORED), reason_code}`; `run_date` gives sent-at
        (docs/providers/constant-contact-v3.md § Campaigns and campaign activities)."""
        if not self.account.is_sent(activity):
            return []
        recipients = len(self.account.events(activity, "sent"))
        return [{"send_id": 1, "contact_list_ids": [activity.campaign.list_id], "segment_ids": [],
                 "count": recipients, "run_date": v3_time(send_time(activity)), "send_status": "COMPLETED",
                 "reason_code": 0}]

    def campaigns(self, path: str, args: dict[str, Any]) -> Response:
        after = _timestamp(args.get("after_date", [None])[0], "after_date")
        before = _timestamp(args.get("before_date", [None])[0], "before_date")
        found = []
        for campaign in self.dataset.campaigns:
            updated = self.account.updated_at(campaign)
            if campaign.created_at > self.dataset.clock:
                continue
            if (after is None or updated > after) and (before is None or updated < before):
                found.append((updated, campaign.number, campaign))
        # docs/providers/constant-contact-v3.md § Endpoints: newest `updated_at` first; removed ones included
        found.sort(key=lambda row: (row[0], row[1]), reverse=True)
        rows = [campaign for _, _, campaign in found]
        return self.page(path, args, "campaigns", rows, default_limit=50, render=self.campaign_object)

    def tracking_row(self, activity: Activity, tracking_type: str, event: Event) -> dict[str, Any]:
        # docs/providers/constant-contact-v3.md § Tracking reports: `contact_id, campaign_activity_id,
        # tracking_activity_type, email_address, first_name, last_name, created_time, deleted_at (a date)`
        contact = self.dataset.contact(event.contact_id)
        row: dict[str, Any] = {
            "contact_id": contact.id,
            "campaign_activity_id": activity.id,
            "tracking_activity_type": tracking_type,
            "email_address": contact.email,
            "first_name": contact.fields.get("FirstName"),
            "last_name": contact.fields.get("LastName"),
            "created_time": tracking_time(event.at),
        }
        if contact.deleted:
            row["deleted_at"] = (self.account.start - timedelta(days=3)).date().isoformat()
        if event.type in ("opened", "clicked"):  # docs/providers/constant-contact-v3.md § Tracking reports
            row["device_type"] = event.device
        if event.type == "clicked":  # `url_id, link_url`
            row["url_id"] = str(LINKS.index(event.url) + 1)
            row["link_url"] = event.url
        if event.type == "unsubscribed":  # `opt_out_reason`
            row["opt_out_reason"] = event.reason or ""
        if event.type == "bounced":  # `bounce_code, current_email_address`
            row["bounce_code"] = event.bounce_code
            row["current_email_address"] = contact.email
        return row

    def tracking(self, path: str, args: dict[str, Any], activity: Activity, report: str) -> Response:
        # docs/providers/constant-contact-v3.md § Tracking reports: a never-sent activity returns 200 with an empty list
        sent = self.account.is_sent(activity) and activity.role in TRACKED_ROLES
        if report == "didnotopens":  # `created_time` is the send time
            at = to_minute(send_time(activity)) if sent else None
            return self.page(path, args, "tracking_activities", self.account.did_not_open(activity),
                             default_limit=MAX_LIMIT, render=partial(self._contact_row, activity, "em_didnotopens", at))
        if report == "unique_opens":  # the last open of each contact
            last: dict[str, Event] = {}
            for event in self.account.events(activity, "opened"):
                if event.contact_id not in last or event.at >= last[event.contact_id].at:
                    last[event.contact_id] = event
            return self.page(path, args, "tracking_activities", _newest_first(list(last.values())),
                             default_limit=MAX_LIMIT, render=partial(self.tracking_row, activity, "em_unique_opens"))
        if report not in TRACKING:
            raise self.error(404, "not_found", f"No tracking report {report}.")
        event_type, tracking_type = TRACKING[report]
        filters = (tuple(args.get("url_id", ())), tuple(args.get("bounce_code", ())))
        if self.ordered_at != self.dataset.changes:  # time moved on, or an event came: the orderings are stale
            self.ordered, self.ordered_at = {}, self.dataset.changes
        ordered = self.ordered.get((activity.id, report, filters))
        if ordered is None:  # a report is ordered once, not again for each of its pages
            events = self.account.events(activity, event_type)
            if report == "clicks" and args.get("url_id"):
                events = [e for e in events if str(LINKS.index(e.url) + 1) in args["url_id"]]
            if report == "bounces" and args.get("bounce_code"):
                events = [e for e in events if e.bounce_code in args["bounce_code"]]
            ordered = self.ordered[(activity.id, report, filters)] = _newest_first(events)
        return self.page(path, args, "tracking_activities", ordered, default_limit=MAX_LIMIT,
                         render=partial(self.tracking_row, activity, tracking_type))

    def _contact_row(self, activity: Activity, kind: str, at: datetime | None, contact_id: str) -> dict[str, Any]:
        contact = self.dataset.contact(contact_id)
        return {
            "contact_id": contact.id, "campaign_activity_id": activity.id, "tracking_activity_type": kind,
            "email_address": contact.email, "first_name": contact.fields.get("FirstName"),
            "last_name": contact.fields.get("LastName"), "created_time": v3_time(at) if at else None,
        }

    def summaries(self, path: str, args: dict[str, Any]) -> Response:
        rows = []
        for campaign in self.dataset.campaigns:
            sent = [send_time(a) for a in self.account.tracked(campaign) if self.account.is_sent(a)]
            if not sent:
                continue
            counts: dict[str, Any] = self.account.summary(campaign)
            # docs/providers/constant-contact-v3.md § Open questions: counts as strings (variant `cc3_counts`)
            if self.variants.get("cc3_counts", "str") == "str":
                counts = {key: str(value) for key, value in counts.items()}
            rows.append((max(sent), {"campaign_id": campaign.id, "campaign_type": "NEWSLETTER",
                                     "last_sent_date": v3_time(max(sent)), "unique_counts": counts}))
        rows.sort(key=lambda row: row[0], reverse=True)
        return self.page(path, args, "bulk_email_campaign_summaries", [row for _, row in rows], default_limit=50,
                         extra={"aggregate_percents": {"open": 0.0, "click": 0.0}})

    def contact_object(self, contact: Contact, include: frozenset[str] = frozenset(SUBRESOURCES)) -> dict[str, Any]:
        """A contact (docs/providers/constant-contact-v3.md § Contacts): `contact_id, email_address{...}, first_name,
        last_name, create_source, created_at, updated_at, deleted_at`, and the subresources that `include` names."""
        updated = contact.updated_at or contact.created_at
        body: dict[str, Any] = {
            "contact_id": contact.id,
            "email_address": {
                "address": contact.email,
                "permission_to_send": PERMISSIONS[contact.status],
                "created_at": v3_time(contact.created_at),
                "updated_at": v3_time(updated),
                "opt_in_source": "Contact",
            },
            "create_source": "Account",
            "created_at": v3_time(contact.created_at),
            "updated_at": v3_time(updated),
            "custom_fields": [{"custom_field_id": stable_id("field", name), "value": str(value)}
                              for name, value in contact.fields.items() if name not in STANDARD_FIELDS],
            "list_memberships": [contact.list_id],
            "taggings": [stable_id("tag", tag) for tag in contact.tags],
        }
        for subresource in SUBRESOURCES:
            if subresource not in include:
                del body[subresource]
        for name, standard in STANDARD_FIELDS.items():
            if name in contact.fields:
                body[standard] = contact.fields[name]
        if contact.deleted:  # `deleted_at`: deleted ones only, a date
            body["deleted_at"] = (self.account.start - timedelta(days=3)).date().isoformat()
        return body

    def contacts(self, path: str, args: dict[str, Any]) -> Response:
        after = _timestamp(args.get("updated_after", [None])[0], "updated_after")
        # docs/providers/constant-contact-v3.md § Contacts: deleted ones only with `status=all`
        status = args.get("status", ["active"])[0]
        # docs/providers/constant-contact-v3.md § Contacts: `include` (csv) asks for the subresources
        include = frozenset(name.strip() for value in args.get("include", []) for name in value.split(","))
        rows = [c for c in self.dataset.contacts
                if (status == "all" or not c.deleted) and (after is None or (c.updated_at or c.created_at) > after)]
        return self.page(path, args, "contacts", rows, default_limit=50,
                         render=partial(self._contact, include))

    def _contact(self, include: frozenset[str], contact: Contact) -> dict[str, Any]:
        return self.contact_object(contact, include)


def _newest_first(events: list[Event]) -> list[Event]:
    """Tracking order: newest minute first, the data set's order within a minute (stable across reads)."""
    order = {id(event): n for n, event in enumerate(events)}
    return sorted(events, key=lambda e: (-(int(e.at.timestamp()) // 60), order[id(e)]))


def _xrefs(asked: list[str], v3_of: dict[str, str], v2_key: str, v3_key: str) -> Response:
    """An xref endpoint's response: `xrefs[{v2_key, v3_key}]` for the asked v2 ids it knows, in order."""
    return json_response({"xrefs": [{v2_key: v2_id, v3_key: v3_of[v2_id]} for v2_id in asked if v2_id in v3_of]})


def _csv(args: dict[str, Any], name: str) -> list[str]:
    """The ids of a comma-separated parameter, in order."""
    return [part for value in args.get(name, []) for part in value.split(",") if part]


def _custom_fields() -> list[str]:
    return [name for name in CUSTOM_FIELDS if name not in STANDARD_FIELDS]


def _tags(dataset: Dataset) -> set[str]:
    return {tag for contact in dataset.contacts for tag in contact.tags}


# docs/providers/constant-contact-v3.md § Limits: the application's (client id's) limits, shared by its accounts
@simulates(NAME, REQUESTS_PER_SECOND, seed_offset=2, shared_limit=True, data_of="constant_contact_v2")
def app(dataset: Dataset, variants: dict[str, str], requests_per_second: float, account: str) -> ProviderApp:
    """The Constant Contact v3 API of one account (its own authorization of the application), over `dataset`."""
    simulator = Simulator(dataset, variants, account)
    handle: Callable[[Request, str], Response] = simulator.handle
    return ProviderApp(PREFIX, dataset, handle, simulator.throttled, requests_per_second, simulator.settings,
                       simulator, not_found=lambda: simulator.error(404, "not_found", "No such resource."),
                       owns=simulator.owns, rotates_credentials=TOKEN_PATH)

