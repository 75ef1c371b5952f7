"""Constant Contact v2 end to end: sandbox over HTTP -> dlt -> a real database."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import datetime, timedelta

import pytest
import requests
from conftest import BOTH_DESTINATIONS
from helpers import resources_state

from sandbox import Sandbox
from sandbox.constant_contact_v2 import (
    ACCESS_TOKEN,
    API_KEY,
    TRACKING,
    Simulator,
    campaign_id,
    contact_id,
    event_time,
    v2_date,
)
from sources.canonical import parse_utc

PROVIDER = "constant_contact_v2"
WINDOW = timedelta(days=30)
LOOKBACK = timedelta(minutes=60)
KINDS = {kind: report for report, (kind, _word, _date) in TRACKING.items()}


def simulator(harness) -> Simulator:
    return harness.sandbox.apps[PROVIDER].simulator


def expected_activity(sim: Simulator, read_before_deletion: dict[str, datetime] | None = None) -> Counter:
    """(campaign_id, contact_id, activity_type, occurred_at) of every event v2 lists, with multiplicity.

    A deleted campaign's tracking lists cannot be read (docs/providers/constant-contact-v2.md § Deleted
    campaigns): of its events, only those up to the last read before its deletion (`read_before_deletion`:
    campaign id -> clock).
    """
    keys: Counter = Counter()
    for campaign in sim.dataset.sent_campaigns():
        read_at = (read_before_deletion or {}).get(campaign.id) if sim.is_deleted(campaign) else sim.dataset.clock
        if read_at is None:
            continue
        for event in sim.dataset.events(campaign):
            if event.type in KINDS and event.at <= read_at:  # v2 has no list of complaints
                at = event_time(event).replace(tzinfo=None)
                keys[(campaign_id(campaign), contact_id(sim.dataset.contact(event.contact_id)), event.type, at)] += 1
    return keys


def loaded_activity(harness) -> Counter:
    return harness.activity(PROVIDER)


def open_campaigns(sim: Simulator) -> list:
    return [c for c in sim.dataset.sent_campaigns() if c.send_at + WINDOW > sim.dataset.clock]


def first_run_requests(sim: Simulator, page_rows: int = 500) -> int:
    """Both campaign listings, the details of every campaign not deleted, the tracking list pages
    and summary of every sent one (a deleted campaign has none that can be read), and the contacts."""
    live = [c for c in sim.dataset.campaigns if not sim.is_deleted(c)]
    total = max(1, math.ceil(len(live) / min(page_rows, 50))) + 1 + len(live)
    total += max(1, math.ceil(len(sim.dataset.contacts) / page_rows))
    for campaign in [c for c in live if sim.dataset.is_sent(c)]:
        for report in TRACKING:
            total += max(1, math.ceil(len(sim.tracking(campaign, report, None)) / page_rows))
        total += 1  # summary
    return total


def state(harness) -> dict:
    return resources_state(harness, PROVIDER)


@BOTH_DESTINATIONS
def test_first_run_then_a_rerun_without_news_and_a_changed_contact(harness):
    sim = simulator(harness)
    dataset = sim.dataset
    assert harness.cli("run", PROVIDER) == 0

    expected = expected_activity(sim)
    assert loaded_activity(harness) == expected
    assert harness.count("contact_activity") == sum(expected.values())
    assert any(n > 1 for n in expected.values())  # identical events stay two rows
    assert harness.sandbox.requests[PROVIDER] == first_run_requests(sim)

    # campaigns: all of them, deleted ones marked, ids as strings, v2 dates
    loaded = {row[0]: row[1:] for row in harness.query("SELECT campaign_id, status, sent_at, subject FROM campaigns")}
    assert {cid: row[0] for cid, row in loaded.items()} == {campaign_id(c): sim.status(c) for c in dataset.campaigns}
    assert "DELETED" in {row[0] for row in loaded.values()}
    for campaign in dataset.campaigns:
        sent_at = loaded[campaign_id(campaign)][1]
        # a campaign deleted before it was ever read is known only from its listing row: no send date
        assert (sent_at is not None) == (dataset.is_sent(campaign) and not sim.is_deleted(campaign))
        assert sent_at is None or parse_utc(sent_at) == campaign.send_at
    # campaign_id arrived as a JSON number in some rows: never a second (variant) column
    columns = harness.query(
        f"SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = '{harness.dataset}'"
    )
    assert ("contact_activity", "campaign_id") in columns
    assert not [column for column in columns if column[1].startswith("campaign_id__v_")]

    # every tracking field is kept: link ids and URLs, unsubscribe source and reason, bounce details
    assert harness.count("contact_activity", "activity_type = 'clicked' AND (url IS NULL OR link_id IS NULL)") == 0
    assert harness.count("contact_activity", "activity_type = 'unsubscribed' AND unsubscribe_source IS NULL") == 0
    reasons = {e.reason for c in dataset.sent_campaigns() for e in dataset.events(c, "unsubscribed")} - {None}
    assert {r[0] for r in harness.query("SELECT DISTINCT reason FROM contact_activity")} - {None} == reasons
    bounces = harness.query(
        "SELECT bounce_code, bounce_type, bounce_description, bounce_message FROM contact_activity "
        "WHERE activity_type = 'bounced'"
    )
    assert bounces and all(all(value is not None for value in row) for row in bounces)

    summaries = {r[0]: r[1:] for r in harness.query(
        "SELECT campaign_id, sent, opened_unique, clicked_unique, forwarded, unsubscribed, bounced, complained "
        "FROM campaign_summaries"
    )}
    readable = [c for c in dataset.sent_campaigns() if not sim.is_deleted(c)]  # a deleted one has no summary
    assert summaries == {campaign_id(c): tuple(sim.summary(c).values()) for c in readable}

    # cursors: the newest event of each (open campaign, tracking list); a campaign read after its
    # attribution window closed keeps a marker instead (tests/test_state_size.py)
    cursors = state(harness)["contact_activity"]["cursors"]
    reading = [c for c in readable if c in open_campaigns(sim)]
    assert set(cursors) == {f"{campaign_id(c)}:{r}" for c in reading for r in TRACKING}
    closed = {cid for group in state(harness)["contact_activity"]["closed"].values() for cid in group}
    assert closed == {campaign_id(c) for c in readable if c not in reading}
    for campaign in reading:
        for kind, report in KINDS.items():
            times = [event_time(e) for e in dataset.events(campaign, kind)]
            cursor = cursors[f"{campaign_id(campaign)}:{report}"]["cursor"]
            assert (parse_utc(cursor) if cursor else None) == (max(times) if times else None)

    # contacts: every status, with their v3 ids; a REMOVED contact is forgotten (README "Erasure"): only its
    # ids and status stay
    loaded_contacts = {row[0]: row[1:] for row in harness.query(
        "SELECT contact_id, v3_contact_id, email_address, status, custom_fields__city FROM contacts "
        f"WHERE provider = '{PROVIDER}'"
    )}
    assert loaded_contacts == {
        str(c.number): (c.id, None, "REMOVED", None) if c.deleted else (c.id, c.email, sim.contact_status(c),
                                                                        c.fields.get("City"))
        for c in dataset.contacts
    }
    assert {"REMOVED", "OPTOUT", "UNCONFIRMED", "ACTIVE"} <= {s for _v3, _email, s, _city in loaded_contacts.values()}
    contact_calls = [params for path, params in sim.calls if path == "/v2/contacts"]
    assert contact_calls == [{"status": "ALL", "limit": "500", "include_contact_id": "true"}]
    contacts_listing = state(harness)["contacts"]["listing"]
    newest = max(c.updated_at or c.created_at for c in dataset.contacts)
    assert parse_utc(contacts_listing["cursor"]) == newest

    # a rerun with no news: one request per open report (plus the two campaign listings and the
    # contacts listing), no new row
    listing = state(harness)["campaigns"]["listing"]
    before = harness.count("contact_activity")
    harness.sandbox.reset_counts()
    sim.calls.clear()

    assert harness.cli("run", PROVIDER) == 0

    assert harness.count("contact_activity") == before
    still_open = open_campaigns(sim)
    closed = [campaign_id(c) for c in dataset.sent_campaigns() if c not in still_open]
    assert still_open and closed
    assert harness.sandbox.requests[PROVIDER] == 3 + 7 * len(still_open)
    calls = {path.removeprefix("/v2/emailmarketing/campaigns"): params for path, params in sim.calls}
    modified_since = v2_date(parse_utc(listing["cursor"]) - LOOKBACK)
    assert [call for call in sim.calls if call[0] == "/v2/emailmarketing/campaigns"] == [
        ("/v2/emailmarketing/campaigns", {"status": status, "limit": "50", "modified_since": modified_since})
        for status in ("ALL", "DELETED")
    ]
    for campaign in still_open:
        cid = campaign_id(campaign)
        assert f"/{cid}/tracking/reports/summary" in calls
        for report in TRACKING:
            cursor = cursors[f"{cid}:{report}"]["cursor"]
            params = calls[f"/{cid}/tracking/{report}"]
            # created_since = the (campaign, report) cursor minus the lookback; none for a still-empty list
            expected_params = {"limit": "500"}
            if cursor is not None:
                expected_params["created_since"] = v2_date(parse_utc(cursor) - LOOKBACK)
            assert params == expected_params, (cid, report)
    assert not any(cid in path for cid in closed for path, _params in sim.calls)
    # the quiet night's contacts: one request, from the cursor minus the lookback, and no row
    contact_calls = [params for path, params in sim.calls if path == "/v2/contacts"]
    assert contact_calls == [{"status": "ALL", "limit": "500", "include_contact_id": "true",
                              "modified_since": v2_date(newest - LOOKBACK)}]

    # a contact changed (opted out) at the provider is loaded again with its new status
    changed = next(c for c in dataset.contacts if c.status == "SUBSCRIBED" and not c.deleted)
    changed.status, changed.updated_at = "UNSUBSCRIBED", dataset.clock
    assert harness.cli("run", PROVIDER) == 0
    assert harness.query(f"SELECT status FROM contacts WHERE contact_id = '{changed.number}'") == [("OPTOUT",)]
    assert harness.count("contacts", f"provider = '{PROVIDER}'") == len(dataset.contacts)


@BOTH_DESTINATIONS
def test_advancing_time_brings_exactly_the_news_and_marks_a_deletion(harness, capsys):
    sim = simulator(harness)
    dataset = sim.dataset
    assert harness.cli("run", PROVIDER) == 0
    first = loaded_activity(harness)
    unsent = {campaign_id(c) for c in dataset.campaigns if not dataset.is_sent(c)}
    live_before = {campaign_id(c) for c in dataset.campaigns if not sim.is_deleted(c)}

    first_clock = dataset.clock
    harness.sandbox.advance(hours=24)
    sim.calls.clear()
    assert harness.cli("run", PROVIDER) == 0

    deleted_since = {
        c.id: first_clock for c in dataset.campaigns if sim.is_deleted(c) and campaign_id(c) in live_before
    }
    expected = expected_activity(sim, deleted_since)
    assert loaded_activity(harness) == expected
    assert sum(expected.values()) > sum(first.values())
    newly_sent = {campaign_id(c) for c in dataset.sent_campaigns()} & unsent
    assert len(newly_sent) == 1
    assert harness.count("contact_activity", f"campaign_id = '{newly_sent.pop()}'") > 0
    # the campaign deleted since the first run is marked, keeps what was known of it, and its activity
    deleted = [campaign_id(c) for c in dataset.campaigns if sim.is_deleted(c)]
    just_deleted = [cid for cid in deleted if cid in live_before]
    assert len(just_deleted) == 1
    statuses = dict(harness.query("SELECT campaign_id, status FROM campaigns"))
    assert {cid for cid, status in statuses.items() if status == "DELETED"} == set(deleted)
    assert harness.count("contact_activity", f"campaign_id = '{just_deleted[0]}'") > 0
    kept = harness.query(f"SELECT subject, sent_at FROM campaigns WHERE campaign_id = '{just_deleted[0]}'")
    assert kept[0][0] is not None and kept[0][1] is not None
    # details were read again only for what changed and can be read: the newly sent campaign; the
    # deleted one's details, summary and tracking lists are not asked for (they respond 404)
    detail_reads = {path.rsplit("/", 1)[1] for path, _ in sim.calls if path.count("/") == 4}
    assert detail_reads == {campaign_id(c) for c in dataset.sent_campaigns()} & unsent
    assert not [path for path, _ in sim.calls if just_deleted[0] in path]
    # `status` lists the campaigns in the window with their status: the deleted one is not read again
    capsys.readouterr()
    assert harness.cli("status", "--json") == 0
    statuses_json = json.loads(capsys.readouterr().out)["providers"]
    listed = next(status for status in statuses_json if status["provider"] == PROVIDER)["open_campaigns"]
    assert {c["campaign_id"]: c["status"] for c in listed} == {
        cid: status for cid, status in statuses.items() if cid in {c["campaign_id"] for c in listed}
    }
    assert "DELETED" in {c["status"] for c in listed}


def test_paging_follows_next_links_and_links_resolve_without_link_uri(make_harness):
    harness = make_harness(variants={"cc2_page_rows": "7", "cc2_link_uri": "no"})
    sim = simulator(harness)
    assert harness.cli("run", PROVIDER) == 0

    assert loaded_activity(harness) == expected_activity(sim)
    assert harness.sandbox.requests[PROVIDER] == first_run_requests(sim, page_rows=7)
    followed = [params for _path, params in sim.calls if "next" in params]
    assert len(followed) > 50
    # the next call sends the opaque token (ending in "=") alone
    assert all(set(params) == {"next"} and params["next"].endswith("=") for params in followed)
    clicked = harness.query("SELECT url FROM contact_activity WHERE activity_type = 'clicked'")
    clicks = Counter(row[0] for row in clicked)
    readable = [c for c in sim.dataset.sent_campaigns() if not sim.is_deleted(c)]
    assert clicks == Counter(event.url for campaign in readable for event in sim.dataset.events(campaign, "clicked"))


def test_daily_quota_stops_with_exit_4_keeps_what_loaded_and_resumes(harness, capfd):
    sim = simulator(harness)
    sim.daily_quota = 40
    assert harness.cli("run", PROVIDER) == 4
    assert "quota" in capfd.readouterr().err
    partial = loaded_activity(harness)
    assert 0 < sum(partial.values()) < sum(expected_activity(sim).values())
    assert not partial - expected_activity(sim)
    assert harness.count("campaigns") == len(sim.dataset.campaigns)
    still_open = {campaign_id(c) for c in open_campaigns(sim)}
    activity = state(harness)["contact_activity"]
    done = [key for key, cursor in activity["cursors"].items()
            if key.split(":")[0] not in still_open and cursor.get("read_at")]
    closed = [cid for group in activity.get("closed", {}).values() for cid in group]  # all its lists read
    done += [f"{cid}:{report}" for cid in closed for report in TRACKING]
    assert done, "some closed campaign's lists were read whole before the quota ran out"

    sim.used.clear()  # midnight at the provider: a new day's quota
    sim.calls.clear()
    assert harness.cli("run", PROVIDER) == 0
    assert loaded_activity(harness) == expected_activity(sim)
    # the later run resumed: what was read whole before the stop was not read again
    read_again = {path for path, _params in sim.calls}
    for key in done:
        cid, report = key.split(":")
        assert f"/v2/emailmarketing/campaigns/{cid}/tracking/{report}" not in read_again


@pytest.mark.parametrize("status", ["403", "429"])
def test_per_second_throttling_is_retried_and_loses_nothing(make_harness, status):
    # every third call gets the over-limit response: a burst that does not depend on timing
    harness = make_harness(variants={"cc2_throttle": status, "cc2_throttle_every": "3"}, scale="tiny")
    sim = simulator(harness)
    assert harness.cli("run", PROVIDER) == 0
    assert sim.throttled_calls == harness.sandbox.requests[PROVIDER] // 3 > 5
    assert loaded_activity(harness) == expected_activity(sim)


def test_refused_key_or_token_exits_3_naming_the_setting(make_harness, capfd):
    harness = make_harness(scale="tiny")
    harness.setenv(SOURCES__CONSTANT_CONTACT_V2__API_KEY="wrong-key-1234")
    assert harness.cli("run", PROVIDER) == 3
    assert "SOURCES__CONSTANT_CONTACT_V2__API_KEY" in capfd.readouterr().err

    harness.setenv(SOURCES__CONSTANT_CONTACT_V2__API_KEY=API_KEY)
    harness.setenv(SOURCES__CONSTANT_CONTACT_V2__ACCESS_TOKEN="wrong-1234")
    assert harness.cli("run", PROVIDER) == 3
    assert "SOURCES__CONSTANT_CONTACT_V2__ACCESS_TOKEN" in capfd.readouterr().err


# ---- the simulator itself, over HTTP (no pipeline) ----

@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(scale="tiny") as running:
        running.apps[PROVIDER].bucket.rate = 0
        yield running


def call(sandbox, path, key=API_KEY, token=ACCESS_TOKEN, accept="application/json", **params):
    url = sandbox.base_url(PROVIDER) + path if path.startswith("/v2") else sandbox.url + path
    headers = {"Authorization": f"Bearer {token}", "Accept": accept}
    return requests.get(url, params={"api_key": key, **params}, headers=headers, timeout=10)


def test_sandbox_answers_like_v2(sandbox):
    sim: Simulator = sandbox.apps[PROVIDER].simulator
    campaign = sim.dataset.sent_campaigns()[0]
    sends = f"/v2/emailmarketing/campaigns/{campaign_id(campaign)}/tracking/sends"

    for response, status in [
        (call(sandbox, sends, key="nope"), 401),
        (call(sandbox, sends, token="nope"), 401),
        (call(sandbox, sends, accept="text/xml"), 406),
        (call(sandbox, sends, limit=501), 400),
        (call(sandbox, "/v2/emailmarketing/campaigns", limit=51), 400),
        (call(sandbox, "/v2/emailmarketing/campaigns/999"), 404),
    ]:
        assert response.status_code == status
        assert set(response.json()[0]) == {"error_key", "error_message"}  # an array of errors

    first = call(sandbox, sends, limit=10).json()
    rows = first["results"]
    assert len(rows) == 10 and {type(r["campaign_id"]) for r in rows} == {str, int}
    dates = [r["send_date"] for r in rows]
    assert dates == sorted(dates, reverse=True) and all(d.endswith("Z") and len(d) == 24 for d in dates)
    link = first["meta"]["pagination"]["next_link"]
    assert link.startswith("/constant_contact_v2/v2/") and link.endswith("=")
    token = link.split("next=", 1)[1]
    assert call(sandbox, link, next=None).status_code == 200  # the link verbatim, plus api_key
    assert call(sandbox, sends, next=token, limit=10).status_code == 400  # `next` goes alone

    # created_since is "on or after"
    since = rows[4]["send_date"]
    later = call(sandbox, sends, created_since=since).json()["results"]
    assert later and min(r["send_date"] for r in later) == since
    assert len(later) == sum(1 for r in call(sandbox, sends).json()["results"] if r["send_date"] >= since)

    # deleted campaigns are listed only on request
    listed = call(sandbox, "/v2/emailmarketing/campaigns").json()["results"]
    deleted = call(sandbox, "/v2/emailmarketing/campaigns", status="DELETED").json()["results"]
    assert deleted and {r["status"] for r in deleted} == {"DELETED"}
    assert not {r["id"] for r in deleted} & {r["id"] for r in listed}

    # the per-contact tracking list, and the daily quota
    contact = rows[0]["contact_id"]
    assert all(r["contact_id"] == contact for r in call(sandbox, f"/v2/contacts/{contact}/tracking").json()["results"])
    sim.daily_quota = 0
    try:
        over = call(sandbox, sends)
        assert over.status_code == 403
        assert over.json()[0]["error_key"] == "mashery.not.authorized.over.ratelimit"
    finally:
        sim.daily_quota = 10_000
    # the per-second limit, with an empty bucket
    sandbox.apps[PROVIDER].bucket.rate = 0.001
    try:
        over = call(sandbox, sends)
        assert over.status_code == 403
        assert over.json()[0]["error_key"] == "mashery.not.authorized.over.qps"
    finally:
        sandbox.apps[PROVIDER].bucket.rate = 0
