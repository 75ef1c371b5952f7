"""The sandbox follows the provider notes (docs/providers/): each documented behaviour it simulates, over real HTTP.

The shape tests talk to a started `Sandbox` with `requests`; the end-to-end tests run the real
pipeline (`harness.cli("run", ...)`, on DuckDB and PostgreSQL) under both variants of each UNSURE
point that no other test file runs end to end.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import uuid
from collections import Counter
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from sandbox import Faults, Sandbox
from sandbox import constant_contact_v2 as cc2
from sandbox import constant_contact_v3 as cc3
from sandbox import emailoctopus as eo
from sandbox.dataset import LINKS
from sources.constant_contact_v3.client import check as cc3_check
from sources.errors import NotFound

EO, V2, V3 = eo.NAME, cc2.NAME, cc3.NAME
SCALE = (6, 240)  # more contacts than one default page of every provider
V2_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
EO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$")
ERROR_KEYS = {"error_key", "error_message"}
# docs/providers/constant-contact-v2.md § Endpoints: CustomField1..CustomField15
CUSTOM_FIELD = re.compile(r"CustomField([1-9]|1[0-5])")


def started(**options) -> Sandbox:
    """A started sandbox with no per-second limit (a test sets one when it wants the over-limit response)."""
    sandbox = Sandbox(scale=options.pop("scale", SCALE), **options)
    for app in sandbox.apps.values():
        app.bucket.rate = 0
    return sandbox.start()


@pytest.fixture(scope="module")
def sandbox():
    running = started()
    yield running
    running.stop()


# ---- HTTP ----

def test_a_connection_serves_request_after_request_and_a_response_broken_off_drops_it():
    """HTTP/1.1 keep-alive, as the providers' servers speak it; a reset fault cuts the body and the connection."""
    sandbox = started(faults=Faults())
    try:
        connection = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=10)
        path = f"{eo.API}/campaigns?api_key={eo.API_KEY}"
        sockets = []
        for _ in range(3):
            connection.request("GET", sandbox.base_url(EO).removeprefix(sandbox.url) + path)
            response = connection.getresponse()
            assert response.status == 200 and json.loads(response.read())["data"]
            sockets.append(connection.sock)  # None once the server closes the connection
        assert sockets[0] is not None and sockets == [sockets[0]] * 3
        sandbox.faults.reset_rate = 1.0
        connection.request("GET", sandbox.base_url(EO).removeprefix(sandbox.url) + path)
        response = connection.getresponse()
        with pytest.raises(http.client.IncompleteRead):
            response.read()
        assert connection.sock is None or connection.sock.recv(1) == b""  # closed by the sandbox
        connection.close()
        assert sandbox.requests[EO] == 4
    finally:
        sandbox.stop()


# ---- EmailOctopus (docs/providers/emailoctopus-1.6.md) ----

def eo_get(sb: Sandbox, path: str, key: str = eo.API_KEY, **params) -> requests.Response:
    return requests.get(sb.base_url(EO) + eo.API + path, params={"api_key": key, **params}, timeout=10)


def eo_all(sb: Sandbox, path: str, **params) -> tuple[list, list]:
    """Every row of an EmailOctopus list, following `paging.next` verbatim; and each page's `paging`."""
    response = eo_get(sb, path, **params)
    rows, pagings = [], []
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"data", "paging"}
        rows += body["data"]
        pagings.append(body["paging"])
        following = body["paging"].get("next") if isinstance(body["paging"], dict) else None
        if not following:
            return rows, pagings
        assert following.startswith(f"{eo.PREFIX}{eo.API}{path}?")  # host-relative
        response = requests.get(sb.url + following, timeout=10)  # verbatim: it carries the api_key


EO_DEFAULTS = {"paging": "page", "last_list": {"next": None, "previous": None}, "last_report": [],
               "statuses": (401, 404, 403, 404), "retry_after": "1", "summary": "nested", "url": True, "type": True}
EO_CASES = {
    "defaults": ({}, EO_DEFAULTS),
    "empty-last-page": ({"eo_last_page": "empty"}, {**EO_DEFAULTS, "last_list": []}),
    "every-other-variant": (
        {"eo_last_page": "null", "eo_paging": "cursor", "eo_summary": "flat", "eo_click_url": "no",
         "eo_bounce_type": "no", "eo_retry_after": "no", "eo_error_status": "shuffled"},
        {"paging": "cursor", "last_list": {"next": None, "previous": None},
         "last_report": {"next": None, "previous": None}, "statuses": (403, 400, 400, 404), "retry_after": None,
         "summary": "flat", "url": False, "type": False},
    ),
}


@pytest.mark.parametrize("case", list(EO_CASES))
def test_emailoctopus_envelopes_paging_errors_and_report_shapes_under_each_variant(case):
    variants, want = EO_CASES[case]
    sb = started(variants=variants)
    try:
        dataset = sb.datasets[EO]
        # envelope, `limit`, and `paging.next`: host-relative, with the api_key, by page or cursor
        first = eo_get(sb, "/campaigns", limit=2).json()
        query = parse_qs(urlsplit(first["paging"]["next"]).query)
        assert query["api_key"] == [eo.API_KEY] and query["limit"] == ["2"]
        assert ("page" in query, "starting_after" in query) == (want["paging"] == "page", want["paging"] == "cursor")
        campaigns, pagings = eo_all(sb, "/campaigns", limit=2)
        assert [c["id"] for c in campaigns] == [c.id for c in dataset.campaigns] and len(pagings) == 3
        assert pagings[-1] == want["last_list"]
        assert len(eo_get(sb, "/campaigns").json()["data"]) == len(dataset.campaigns)  # default limit 100
        for bad_limit in (0, 101):
            refused = eo_get(sb, "/campaigns", limit=bad_limit)
            assert refused.status_code == 400
            assert set(refused.json()) == {"error"} and set(refused.json()["error"]) == {"code", "message"}
            assert refused.json()["error"]["code"] == "INVALID_PARAMETERS"

        # error codes, with the status the variant gives each (docs/providers/emailoctopus-1.6.md § Errors)
        draft = next(c for c in dataset.campaigns if c.send_at is None)
        for (path, key, code), status in zip(
            [("/campaigns", "wrong-key", "API_KEY_INVALID"), ("/campaigns/nope", eo.API_KEY, "CAMPAIGN_NOT_FOUND"),
             (f"/campaigns/{draft.id}/reports/opened", eo.API_KEY, "CAMPAIGN_NOT_SENT"),
             ("/nothing", eo.API_KEY, "NOT_FOUND")],
            want["statuses"], strict=True,
        ):
            response = eo_get(sb, path, key=key)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), path

        # the report rows, the last-page shape of reports, and the summary counts
        campaign = max(dataset.sent_campaigns(), key=lambda c: len(dataset.events(c, "bounced")))
        assert dataset.events(campaign, "bounced") and dataset.events(campaign, "clicked")
        base = f"/campaigns/{campaign.id}/reports"
        for report in eo.REPORTS:
            rows, pagings = eo_all(sb, f"{base}/{report}", limit=7)
            assert len(rows) == len(dataset.events(campaign, report))
            assert pagings[-1] == want["last_report"]
            extra = {"clicked": {"url"} if want["url"] else set(), "bounced": {"type"} if want["type"] else set()}
            assert all(set(row) == {"contact", "occurred_at", *extra.get(report, ())} for row in rows), report
            assert all(row["occurred_at"] is None or EO_TIME.match(row["occurred_at"]) for row in rows)
        clicked, _ = eo_all(sb, f"{base}/clicked")
        assert not want["url"] or Counter(r["url"] for r in clicked) == Counter(
            e.url for e in dataset.events(campaign, "clicked"))
        bounced, _ = eo_all(sb, f"{base}/bounced")
        assert not want["type"] or {r["type"] for r in bounced} <= {"HARD", "SOFT"}
        for report, activity in eo.SNAPSHOTS.items():
            rows, _ = eo_all(sb, f"{base}/{report}")
            assert all(set(row) == {"contact"} for row in rows)  # no timestamp: a snapshot
            assert [r["contact"]["id"] for r in rows] == dataset.not_engaged(campaign, activity)

        summary = eo_get(sb, f"{base}/summary").json()
        events = dataset.events(campaign)
        hard = sum(1 for e in events if e.type == "bounced" and e.bounce_code in "BDF")
        bounces = sum(1 for e in events if e.type == "bounced")
        opened = [e.contact_id for e in events if e.type == "opened"]
        if want["summary"] == "nested":
            assert set(summary) == {"id", "sent", "bounced", "opened", "clicked", "complained", "unsubscribed"}
            assert summary["bounced"] == {"soft": bounces - hard, "hard": hard}
            assert summary["opened"] == {"total": len(opened), "unique": len(set(opened))}
        else:
            assert summary["bounced_soft"] == bounces - hard and summary["bounced_hard"] == hard
            assert (summary["opened_total"], summary["opened_unique"]) == (len(opened), len(set(opened)))
            assert not any(isinstance(value, dict) for value in summary.values())
        assert summary["sent"] == len(dataset.events(campaign, "sent"))

        # over the limit: 429, with or without Retry-After
        sb.apps[EO].bucket.rate = 0.001
        over = eo_get(sb, "/campaigns")
        assert over.status_code == 429 and set(over.json()["error"]) == {"code", "message"}
        assert over.headers.get("Retry-After") == want["retry_after"]
    finally:
        sb.stop()


def test_emailoctopus_campaign_list_and_contact_objects(sandbox):
    dataset = sandbox.datasets[EO]
    campaigns, _ = eo_all(sandbox, "/campaigns")
    for raw, campaign in zip(campaigns, dataset.campaigns, strict=True):
        assert set(raw) == {"id", "status", "name", "subject", "to", "from", "content", "created_at", "sent_at"}
        assert set(raw["from"]) == {"name", "email_address"} and set(raw["content"]) == {"html", "plain_text"}
        sent = dataset.is_sent(campaign)
        assert raw["status"] == ("SENT" if sent else "DRAFT")
        assert raw["sent_at"] == (campaign.send_at.isoformat() if sent else None)  # null until sent

    lists, _ = eo_all(sandbox, "/lists")
    assert [raw["id"] for raw in lists] == dataset.lists
    assert all(set(raw) == {"id", "name", "double_opt_in", "fields", "counts", "created_at"} for raw in lists)
    deleted = missing_update = 0
    for list_id in dataset.lists:
        first = eo_get(sandbox, f"/lists/{list_id}/contacts").json()
        assert len(first["data"]) == 100  # the default limit
        rows, pagings = eo_all(sandbox, f"/lists/{list_id}/contacts")
        members = [c for c in dataset.contacts if c.list_id == list_id]
        assert [row["id"] for row in rows] == [c.id for c in members] and len(pagings) == 2
        for row, contact in zip(rows, members, strict=True):
            uuid.UUID(row["id"])
            if contact.deleted:  # every field but the id is null
                deleted += 1
                assert row == {"id": contact.id, "email_address": None, "fields": None, "tags": None, "status": None,
                               "created_at": None, "last_updated_at": None, "deleted": True}
                continue
            missing_update += "last_updated_at" not in row
            assert row["deleted"] is False and row["status"] in ("SUBSCRIBED", "UNSUBSCRIBED", "PENDING")
            assert (row["email_address"], row["fields"], row["tags"]) == (contact.email, contact.fields, contact.tags)
            assert EO_TIME.match(row["created_at"])
            assert set(row) - {"last_updated_at"} == {"id", "email_address", "fields", "tags", "status",
                                                       "created_at", "deleted"}
    assert deleted == sum(c.deleted for c in dataset.contacts) > 0
    assert missing_update == sum(c.updated_at is None and not c.deleted for c in dataset.contacts) > 0


# ---- Constant Contact v2 (docs/providers/constant-contact-v2.md) ----

def v2_get(sb: Sandbox, path: str, **params) -> requests.Response:
    url = sb.base_url(V2) + cc2.API + path if not path.startswith(cc2.PREFIX) else sb.url + path
    headers = {"Authorization": f"Bearer {cc2.ACCESS_TOKEN}", "Accept": "application/json"}
    return requests.get(url, params={"api_key": cc2.API_KEY, **params}, headers=headers, timeout=10)


def v2_all(sb: Sandbox, path: str, **params) -> tuple[list, int]:
    """Every row of a v2 list, following `next_link` (plus the api_key); and the number of pages."""
    response, rows, pages = v2_get(sb, path, **params), [], 0
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        rows, pages = rows + body["results"], pages + 1
        link = body["meta"]["pagination"].get("next_link")
        if not link:
            return rows, pages
        assert link.startswith(f"{cc2.PREFIX}{cc2.API}{path}?next=") and "api_key" not in link
        response = v2_get(sb, link)


def assert_v2_error(response: requests.Response, status: int, key: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, list) and all(set(entry) == ERROR_KEYS for entry in body)
    assert key is None or body[0]["error_key"] == key


def test_constant_contact_v2_contacts(sandbox):
    sim: cc2.Simulator = sandbox.apps[V2].simulator
    contacts = sim.dataset.contacts
    first = v2_get(sandbox, "/contacts").json()
    assert len(first["results"]) == 50 and first["meta"]["pagination"]["next_link"]  # default limit 50
    for bad_limit in (0, 501):
        assert_v2_error(v2_get(sandbox, "/contacts", limit=bad_limit), 400)
    rows, pages = v2_all(sandbox, "/contacts", limit=500)
    assert pages == 1 and [row["id"] for row in rows] == [str(c.number) for c in contacts]
    assert not any("contact_id" in row for row in rows)  # the v3 id only on request
    with_ids, pages = v2_all(sandbox, "/contacts", include_contact_id="true", limit=100)
    assert pages == 3 and [row["contact_id"] for row in with_ids] == [c.id for c in contacts]

    for row, contact in zip(rows, contacts, strict=True):
        assert set(row) == {"id", "status", "first_name", "last_name", "company_name", "job_title",
                            "email_addresses", "lists", "custom_fields", "created_date", "modified_date", "source"}
        assert row["status"] == sim.contact_status(contact) and row["id"].isdigit()
        (email,) = row["email_addresses"]
        assert {"id", "email_address", "status", "confirm_status", "opt_in_source", "opt_in_date"} <= set(email)
        assert ("opt_out_date" in email) == (row["status"] == "OPTOUT")
        assert email["email_address"] == contact.email
        assert all(set(entry) == {"id", "status"} for entry in row["lists"])
        for field in row["custom_fields"]:
            assert set(field) == {"name", "label", "value"} and CUSTOM_FIELD.fullmatch(field["name"])
        assert V2_DATE.match(row["created_date"]) and V2_DATE.match(row["modified_date"])
    # every status by default (ALL); each filter gives exactly its own
    assert Counter(row["status"] for row in rows) == Counter(sim.contact_status(c) for c in contacts)
    for status in cc2.CONTACT_FILTERS[1:]:
        filtered, _ = v2_all(sandbox, "/contacts", status=status, limit=500)
        assert [r["id"] for r in filtered] == [str(c.number) for c in contacts if sim.contact_status(c) == status]
    assert sum(c.deleted for c in contacts) == sum(row["status"] == "REMOVED" for row in rows) > 0
    # modified_since is "on or after"
    since = sorted(c.updated_at or c.created_at for c in contacts)[len(contacts) // 2]
    later, _ = v2_all(sandbox, "/contacts", modified_since=cc2.v2_date(since), limit=500)
    assert len(later) == sum((c.updated_at or c.created_at) >= since for c in contacts)


def test_constant_contact_v2_campaign_details_tracking_and_deleted_campaigns(sandbox):
    sim: cc2.Simulator = sandbox.apps[V2].simulator
    dataset = sim.dataset
    base = "/emailmarketing/campaigns"
    # a deleted campaign: details, summary and every tracking list response 404 (documented)
    deleted = next(c for c in dataset.campaigns if sim.is_deleted(c))
    cid = cc2.campaign_id(deleted)
    assert_v2_error(v2_get(sandbox, f"{base}/{cid}"), 404, "http.status.not_found")
    assert_v2_error(v2_get(sandbox, f"{base}/{cid}/tracking/reports/summary"), 404)
    for report in cc2.TRACKING:
        assert_v2_error(v2_get(sandbox, f"{base}/{cid}/tracking/{report}"), 404)
    assert_v2_error(v2_get(sandbox, f"{base}/{cid}/tracking/clicks/{cc2.link_id(LINKS[0])}"), 404)
    listed = [r["id"] for r in v2_all(sandbox, base, status="DELETED")[0]]
    assert listed == [cid]
    # a campaign not sent: details without a run date, tracking 404 ("only available for SENT" campaigns)
    unsent = next(c for c in dataset.campaigns if not dataset.is_sent(c))
    details = v2_get(sandbox, f"{base}/{cc2.campaign_id(unsent)}").json()
    assert "last_run_date" not in details and "tracking_summary" not in details
    assert_v2_error(v2_get(sandbox, f"{base}/{cc2.campaign_id(unsent)}/tracking/sends"), 404)

    campaign = next(c for c in dataset.sent_campaigns() if not sim.is_deleted(c) and dataset.events(c, "clicked"))
    cid = cc2.campaign_id(campaign)
    details = v2_get(sandbox, f"{base}/{cid}").json()
    assert {"id", "name", "status", "modified_date", "subject", "from_name", "from_email", "created_date",
            "last_run_date", "tracking_summary", "click_through_details", "sent_to_contact_lists"} <= set(details)
    assert details["last_run_date"] == cc2.v2_date(campaign.send_at) and details["status"] == "SENT"
    summary = details["tracking_summary"]
    assert set(summary) == {"sends", "opens", "clicks", "forwards", "unsubscribes", "bounces", "spam_count"}
    assert v2_get(sandbox, f"{base}/{cid}/tracking/reports/summary").json() == summary
    assert summary["sends"] == len(dataset.events(campaign, "sent"))
    for link in details["click_through_details"]:
        assert set(link) == {"url", "url_uid", "click_count"}
        rows, _ = v2_all(sandbox, f"{base}/{cid}/tracking/clicks/{link['url_uid']}")  # linkId = url_uid
        assert len(rows) == link["click_count"] and all(row["link_id"] == link["url_uid"] for row in rows)
    for report, (kind, word, date_field) in cc2.TRACKING.items():
        rows, _ = v2_all(sandbox, f"{base}/{cid}/tracking/{report}")
        assert len(rows) == len(dataset.events(campaign, kind))
        assert all(row["activity_type"] == word and V2_DATE.match(row[date_field]) for row in rows)
        assert all(str(row["campaign_id"]) == cid for row in rows)
    unsubscribes = v2_all(sandbox, f"{base}/{cid}/tracking/unsubscribes")[0]
    assert all(row["unsubscribe_source"] in ("ACTION_BY_CUSTOMER", "ACTION_BY_OWNER", "ACTION_BY_CONTACT")
               for row in unsubscribes)
    bounced = next(c for c in dataset.sent_campaigns() if not sim.is_deleted(c) and dataset.events(c, "bounced"))
    bounces = v2_all(sandbox, f"{base}/{cc2.campaign_id(bounced)}/tracking/bounces")[0]
    assert bounces and all(row["bounce_code"] in "BDFSVXZ" and row["bounce_description"] and row["bounce_message"]
                           for row in bounces)


@pytest.mark.parametrize("status", ["403", "429"])
@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_constant_contact_v2_over_limit_responses_and_tracking_order(status, order):
    sb = started(scale="tiny", variants={"cc2_throttle": status, "cc2_tracking_order": order})
    try:
        sim: cc2.Simulator = sb.apps[V2].simulator
        campaign = next(c for c in sim.dataset.sent_campaigns() if not sim.is_deleted(c))
        sends = f"/emailmarketing/campaigns/{cc2.campaign_id(campaign)}/tracking/sends"
        dates = [row["send_date"] for row in v2_all(sb, sends, limit=3)[0]]
        assert len(dates) > 3 and dates == sorted(dates, reverse=order == "newest")
        sim.daily_quota = 0  # the daily limit, and the per-second one: 403, or 429 (UNSURE)
        assert_v2_error(v2_get(sb, sends), int(status), cc2.OVER_DAILY)
        sim.daily_quota = None
        sb.apps[V2].bucket.rate = 0.001
        assert_v2_error(v2_get(sb, sends), int(status), cc2.OVER_QPS)
    finally:
        sb.stop()


# ---- Constant Contact v3 (docs/providers/constant-contact-v3.md) ----

def v3_token(sb: Sandbox) -> str:
    oauth = sb.apps[V3].simulator.oauth
    oauth.bucket.tokens = 1  # the token endpoint's 1 request a second: never the reason a test waits
    response = requests.post(sb.base_url(V3) + cc3.TOKEN_PATH, auth=(cc3.CLIENT_ID, cc3.CLIENT_SECRET),
                           data={"grant_type": "refresh_token", "refresh_token": oauth.authorize()}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def v3_get(sb: Sandbox, token: str, path: str, **params) -> requests.Response:
    url = sb.url + path if path.startswith(cc3.PREFIX) else sb.base_url(V3) + cc3.API + path
    return requests.get(url, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def v3_all(sb: Sandbox, token: str, path: str, key: str, **params) -> tuple[list, list]:
    """Every row of a v3 list, following `_links.next.href`; and each page's `_links`."""
    response, rows, links = v3_get(sb, token, path, **params), [], []
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        rows += body[key]
        links.append(body["_links"])
        following = (body["_links"].get("next") or {}).get("href")
        if not following:
            return rows, links
        assert following.startswith(f"{cc3.PREFIX}{cc3.API}{path}?cursor=")  # host-relative
        response = v3_get(sb, token, following)


def test_constant_contact_v3_token_endpoint():
    sb = started(scale="tiny")
    try:
        oauth = sb.apps[V3].simulator.oauth
        url = sb.base_url(V3) + cc3.TOKEN_PATH
        grant = {"grant_type": "refresh_token", "refresh_token": oauth.initial_refresh_token}
        assert requests.post(url, params=grant, timeout=10).json()["error"] == "invalid_client"  # no Basic auth
        oauth.bucket.tokens = 1
        wrong_grant = requests.post(url, auth=(cc3.CLIENT_ID, cc3.CLIENT_SECRET), timeout=10,
                                    params={**grant, "grant_type": "password"})
        assert wrong_grant.status_code == 400 and wrong_grant.json()["error"] == "unsupported_grant_type"
        assert requests.get(url, timeout=10).status_code == 405  # POST only
        presented = oauth.initial_refresh_token
        for where in ("params", "data", "params"):  # the query string, a form body: each rotates the token
            oauth.bucket.tokens = 1
            response = requests.post(url, auth=(cc3.CLIENT_ID, cc3.CLIENT_SECRET), timeout=10,
                                   **{where: {"grant_type": "refresh_token", "refresh_token": presented}})
            body = response.json()
            assert response.status_code == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 86_400
            assert body["refresh_token"] != presented and oauth.valid_refresh_tokens == {body["refresh_token"]}
            oauth.bucket.tokens = 1
            dead = requests.post(url, auth=(cc3.CLIENT_ID, cc3.CLIENT_SECRET), timeout=10,
                                 data={"grant_type": "refresh_token", "refresh_token": presented})
            assert dead.status_code == 400 and set(dead.json()) == {"error", "error_description"}
            assert dead.json()["error"] == "invalid_grant"
            presented = body["refresh_token"]
            assert v3_get(sb, body["access_token"], "/emails").status_code == 200
        assert oauth.refreshes == 3
    finally:
        sb.stop()


def test_constant_contact_v3_contacts(sandbox):
    token = v3_token(sandbox)
    contacts = sandbox.datasets[V3].contacts
    live = [c for c in contacts if not c.deleted]
    first = v3_get(sandbox, token, "/contacts").json()
    assert len(first["contacts"]) == 50 and first["_links"]["next"]["href"]  # default limit 50
    assert v3_get(sandbox, token, "/contacts", limit=501).status_code == 400
    # by default: no deleted contact, no subresource
    rows, links = v3_all(sandbox, token, "/contacts", "contacts", limit=100)
    assert [row["contact_id"] for row in rows] == [c.id for c in live] and len(links) == math.ceil(len(live) / 100)
    assert links[-1] == {}  # an absent `next`: the last page
    assert not any({"deleted_at", "custom_fields", "list_memberships", "taggings"} & set(row) for row in rows)
    # status=all includes the deleted ones, with `deleted_at` a date; `include` asks for the subresources
    include = "custom_fields,list_memberships,taggings"
    rows, _ = v3_all(sandbox, token, "/contacts", "contacts", status="all", include=include, limit=500)
    assert [row["contact_id"] for row in rows] == [c.id for c in contacts] and len(live) < len(contacts)
    for row, contact in zip(rows, contacts, strict=True):
        assert {"contact_id", "email_address", "create_source", "created_at", "updated_at", "custom_fields",
                "list_memberships", "taggings"} <= set(row)
        assert {"address", "permission_to_send", "opt_in_source"} <= set(row["email_address"])
        assert row["email_address"]["address"] == contact.email
        assert ("deleted_at" in row) == contact.deleted
        assert not contact.deleted or re.fullmatch(r"\d{4}-\d{2}-\d{2}", row["deleted_at"])
        assert all(set(field) == {"custom_field_id", "value"} for field in row["custom_fields"])
        assert row["list_memberships"] == [contact.list_id] and len(row["taggings"]) == len(contact.tags)
    tagged, _ = v3_all(sandbox, token, "/contacts", "contacts", include="taggings", limit=500)
    assert all("taggings" in row and "custom_fields" not in row and "list_memberships" not in row for row in tagged)


def test_constant_contact_v2_and_v3_serve_one_account_joined_by_the_xref_endpoints(sandbox):
    token = v3_token(sandbox)
    assert sandbox.datasets[V3] is sandbox.datasets[V2]
    v2_campaigns, _ = v2_all(sandbox, "/emailmarketing/campaigns", limit=50)
    v3_campaigns, _ = v3_all(sandbox, token, "/emails", "campaigns", limit=50)
    v3_names = {row["campaign_id"]: row["name"] for row in v3_campaigns}
    asked = [row["id"] for row in v2_campaigns] + ["999"]  # an id it does not know: left out
    body = v3_get(sandbox, token, "/emails/campaign_id_xrefs", v2_email_campaign_ids=",".join(asked)).json()
    xrefs = {xref["v2_email_campaign_id"]: xref["campaign_id"] for xref in body["xrefs"]}
    assert len(xrefs) == len(v2_campaigns) > 0
    assert all(v3_names[xrefs[row["id"]]] == row["name"] for row in v2_campaigns)
    v2_contacts, _ = v2_all(sandbox, "/contacts", include_contact_id="true", limit=500)
    ids = ",".join(row["id"] for row in v2_contacts[:20])
    body = v3_get(sandbox, token, "/contacts/contact_id_xrefs", sequence_ids=ids).json()
    assert [(x["sequence_id"], x["contact_id"]) for x in body["xrefs"]] == [
        (row["id"], row["contact_id"]) for row in v2_contacts[:20]
    ]


def test_constant_contact_v3_campaigns_activities_send_history_and_snapshots(sandbox):
    token = v3_token(sandbox)
    sim: cc3.Simulator = sandbox.apps[V3].simulator
    acc = sim.account
    listed, _ = v3_all(sandbox, token, "/emails", "campaigns")
    assert len(listed) == len(acc.dataset.campaigns)
    assert [row["updated_at"] for row in listed] == sorted((row["updated_at"] for row in listed), reverse=True)
    statuses = {row["campaign_id"]: row["current_status"] for row in listed}
    removed = [c for c in acc.dataset.campaigns if statuses[c.id] == "Removed"]
    assert removed == [c for c in acc.dataset.campaigns if acc.removed_at(c)] and len(removed) == 1
    details = v3_get(sandbox, token, f"/emails/{removed[0].id}").json()
    roles = {a["role"] for a in details["campaign_activities"]}
    assert {"primary_email", "permalink"} <= roles <= {"primary_email", "permalink", "resend"}
    for activity in details["campaign_activities"]:
        raw = v3_get(sandbox, token, f"/emails/activities/{activity['campaign_activity_id']}").json()
        assert raw["current_status"] == "REMOVED"  # activities write their status in UPPERCASE

    # send history: a JSON array whose run_date is when the activity was sent; [] before it is
    for campaign in acc.dataset.campaigns:
        for activity in acc.tracked(campaign):
            history = v3_get(sandbox, token, f"/emails/activities/{activity.id}/send_history").json()
            assert isinstance(history, list)
            if not acc.is_sent(activity):
                assert history == []
                continue
            (run,) = history
            assert set(run) == {"send_id", "contact_list_ids", "segment_ids", "count", "run_date", "send_status",
                                "reason_code"}
            assert run["run_date"] == cc3.v3_time(activity.send_at) and run["send_status"] == "COMPLETED"
            assert run["count"] == len(acc.events(activity, "sent"))

    # did not open: a snapshot whose created_time is the time sent
    primary = acc.tracked(acc.dataset.sent_campaigns()[-1])[0]
    rows, _ = v3_all(sandbox, token, f"/reports/email_reports/{primary.id}/tracking/didnotopens",
                     "tracking_activities")
    assert [row["contact_id"] for row in rows] == acc.did_not_open(primary) and rows
    assert {row["created_time"] for row in rows} == {cc3.v3_time(cc3.to_minute(primary.send_at))}
    assert {row["tracking_activity_type"] for row in rows} == {"em_didnotopens"}


def test_constant_contact_v3_serves_an_event_that_arrives_late_from_then_on():
    # an event that arrives late, with an older time (`add_late_event`; the clock does not move), is in the
    # report from then on: the report's order is worked out again, not kept from before it came
    sandbox = started(providers=[V3])
    try:
        token = v3_token(sandbox)
        acc = sandbox.apps[V3].simulator.account
        campaign = next(c for c in acc.dataset.sent_campaigns() if len(acc.tracked(c)) == 1)
        (activity,) = acc.tracked(campaign)
        path = f"/reports/email_reports/{activity.id}/tracking/opens"
        before, _ = v3_all(sandbox, token, path, "tracking_activities")
        late = eo.add_late_event(acc.dataset, campaign, "opened", activity.send_at + timedelta(minutes=1))
        after, _ = v3_all(sandbox, token, path, "tracking_activities")
    finally:
        sandbox.stop()
    assert Counter(row["contact_id"] for row in after) - Counter(row["contact_id"] for row in before) == {
        late.contact_id: 1
    }
    assert len(after) == len(before) + 1


V3_CASES = {
    "documented": {"cc3_errors": "array", "cc3_counts": "str", "cc3_last_page": "absent"},
    "alternatives": {"cc3_errors": "object", "cc3_counts": "int", "cc3_last_page": "null"},
}


@pytest.mark.parametrize("case", list(V3_CASES))
def test_constant_contact_v3_errors_limits_counts_and_last_page_under_each_variant(case):
    variants = V3_CASES[case]
    sb = started(scale="tiny", variants=variants)
    try:
        sim: cc3.Simulator = sb.apps[V3].simulator
        token = v3_token(sb)
        # a 404 (like a 400) is an array, or one object: the client reads both as "not found"
        missing = v3_get(sb, token, "/emails/activities/nope")
        assert missing.status_code == 404
        assert isinstance(missing.json(), list if variants["cc3_errors"] == "array" else dict)
        with pytest.raises(NotFound):
            cc3_check(missing)
        # counts as strings, or numbers
        summaries, links = v3_all(sb, token, "/reports/summary_reports/email_campaign_summaries",
                                  "bulk_email_campaign_summaries", limit=2)
        assert links[-1] == ({} if variants["cc3_last_page"] == "absent" else {"next": None})
        assert len(summaries) == sum(1 for c in sim.dataset.campaigns if sim.account.sent_at(c)) > 2
        kind = str if variants["cc3_counts"] == "str" else int
        for row in summaries:
            counts = row["unique_counts"]
            assert set(counts) == {"sends", "opens", "clicks", "forwards", "optouts", "abuse", "bounces", "not_opened"}
            assert all(type(value) is kind for value in counts.values())
            campaign = sim.account.campaign(row["campaign_id"])
            assert {k: int(v) for k, v in counts.items()} == sim.account.summary(campaign)
        # over the limits: 429 and a single object, per second (`throttled`) and per day (`quota_exceeded`)
        sb.apps[V3].bucket.rate = 0.001
        throttled = v3_get(sb, token, "/emails")
        assert throttled.status_code == 429 and throttled.json()["error_key"] == "throttled"
        assert not [h for h in throttled.headers if "ratelimit" in h.lower() or h.lower() == "retry-after"]
        sb.apps[V3].bucket.rate = 0
        sim.daily_quota = 0
        quota = v3_get(sb, token, "/emails")
        assert quota.status_code == 429 and quota.json()["error_key"] == "quota_exceeded"
        refused = v3_get(sb, "not-a-token", "/emails")
        assert refused.status_code == 401 and isinstance(refused.json(), dict)
    finally:
        sb.stop()


# ---- end to end: the pipeline under both variants of each UNSURE point ----

def eo_expected(dataset) -> Counter:
    return Counter(
        (c.id, e.contact_id, e.type, None if e.timestamp_missing else e.at.replace(tzinfo=None))
        for c in dataset.sent_campaigns() for e in dataset.events(c) if e.type in eo.REPORTS
    )


@pytest.mark.parametrize("error_status", ["mapped", "shuffled"])
def test_emailoctopus_pipeline_under_both_error_status_mappings(make_harness, capfd, error_status):
    harness = make_harness(scale="tiny", variants={"eo_error_status": error_status})
    dataset = harness.sandbox.datasets[EO]
    assert harness.cli("run", EO) == 0
    assert harness.activity(EO) == eo_expected(dataset)
    assert harness.count("contacts", f"provider = '{EO}'") == len(dataset.contacts)
    # a refused key is a credentials error (exit 3) whatever status API_KEY_INVALID comes with
    harness.setenv(SOURCES__EMAILOCTOPUS__API_KEY="not-the-key-123")
    capfd.readouterr()
    assert harness.cli("run", EO) == 3
    assert "SOURCES__EMAILOCTOPUS__API_KEY" in capfd.readouterr().err


def v2_expected(sim: cc2.Simulator, read_until: dict) -> Counter:
    """What v2 lists of each campaign: a deleted one's events only up to its last read before the deletion."""
    keys: Counter = Counter()
    kinds = {kind for kind, _word, _date in cc2.TRACKING.values()}
    for campaign in sim.dataset.sent_campaigns():
        until = read_until.get(campaign.id) if sim.is_deleted(campaign) else sim.dataset.clock
        for event in sim.dataset.events(campaign) if until is not None else ():
            if event.type in kinds and event.at <= until:
                at = cc2.event_time(event).replace(tzinfo=None)
                contact = sim.dataset.contact(event.contact_id)
                keys[(cc2.campaign_id(campaign), cc2.contact_id(contact), event.type, at)] += 1
    return keys


@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_constant_contact_v2_pipeline_whatever_the_tracking_order(make_harness, order):
    harness = make_harness(scale="tiny", variants={"cc2_tracking_order": order, "cc2_page_rows": "4"})
    sim: cc2.Simulator = harness.sandbox.apps[V2].simulator
    assert harness.cli("run", V2) == 0
    first = harness.activity(V2)
    assert first == v2_expected(sim, {})
    live = {c.id for c in sim.dataset.campaigns if not sim.is_deleted(c)}
    first_clock = sim.dataset.clock
    harness.sandbox.advance(hours=24)  # news in the middle of lists that page oldest or newest first
    assert harness.cli("run", V2) == 0
    deleted_since = {cid: first_clock for cid in live if sim.is_deleted(next(c for c in sim.dataset.campaigns
                                                                             if c.id == cid))}
    assert len(deleted_since) == 1
    expected = v2_expected(sim, deleted_since)
    assert harness.activity(V2) == expected and sum(expected.values()) > sum(first.values())


@pytest.mark.parametrize("status", ["403", "429"])
def test_constant_contact_v2_pipeline_stops_on_the_daily_quota_whatever_its_status(make_harness, capfd, status):
    harness = make_harness(scale="tiny", variants={"cc2_throttle": status})
    sim: cc2.Simulator = harness.sandbox.apps[V2].simulator
    sim.daily_quota = 12
    assert harness.cli("run", V2) == 4
    assert "quota" in capfd.readouterr().err
    partial = harness.activity(V2)
    assert not partial - v2_expected(sim, {}) and sum(partial.values()) < sum(v2_expected(sim, {}).values())
    sim.used.clear()  # midnight at the provider, and a quota that this run cannot use up
    sim.daily_quota = cc2.DAILY_QUOTA
    assert harness.cli("run", V2) == 0
    assert harness.activity(V2) == v2_expected(sim, {})


@pytest.mark.parametrize("case", list(V3_CASES))
def test_constant_contact_v3_pipeline_under_each_variant(make_harness, case):
    harness = make_harness(scale="tiny", variants={**V3_CASES[case], "cc3_page_rows": "6"})
    acc: cc3.Account = harness.sandbox.apps[V3].simulator.account
    assert harness.cli("run", V3) == 0
    expected = Counter(
        (c.id, a.id, e.contact_id, e.type, cc3.to_minute(e.at).replace(tzinfo=None))
        for c in acc.dataset.campaigns for a in acc.tracked(c) for e in acc.events(a)
    )
    loaded = Counter(harness.query(
        "SELECT campaign_id, campaign_activity_id, contact_id, activity_type, occurred_at AT TIME ZONE 'UTC' "
        f"FROM contact_activity WHERE provider = '{V3}'"
    ))
    assert loaded == expected
    summaries = {row[0]: row[1:] for row in harness.query(
        f"SELECT campaign_id, sent, opened_unique, bounced, not_opened FROM campaign_summaries WHERE provider = '{V3}'"
    )}
    assert summaries == {
        c.id: tuple(acc.summary(c)[k] for k in ("sends", "opens", "bounces", "not_opened"))
        for c in acc.dataset.campaigns if acc.sent_at(c)
    }
    assert harness.count("contacts", f"provider = '{V3}'") == len(acc.dataset.contacts)
    assert harness.count("campaigns", f"provider = '{V3}'") == len(acc.dataset.campaigns)
