"""EmailOctopus through its API v2: sandbox over HTTP -> dlt -> DuckDB and PostgreSQL, the same account,
tables and ids as through 1.6, and nightly reads that follow what is new."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import requests
from conftest import BOTH_DESTINATIONS
from helpers import cursors, expected_activity, expected_snapshot, loaded_activity, loaded_snapshot, open_campaigns

from sandbox import Sandbox
from sandbox.emailoctopus import API_KEY, NAME_V2, PROBLEM_TYPE, add_late_event

PROVIDER = "emailoctopus"
V2 = {"eo_api": "2"}


def use_api(harness, version: str) -> None:
    """Point the account at API `version` of the sandbox (as a user switches API_VERSION)."""
    app = NAME_V2 if version == "2" else PROVIDER
    base_url = harness.sandbox.base_url(app) + ("" if version == "2" else "/api/1.6")
    harness.setenv(SOURCES__EMAILOCTOPUS__API_VERSION=version, SOURCES__EMAILOCTOPUS__BASE_URL=base_url)


def contacts_of(dataset) -> set:
    """(contact_id, email_address, status) of the contacts v2 lists: every one not deleted."""
    return {(c.id, c.email, c.status) for c in dataset.contacts if not c.deleted}


def assert_exact(harness) -> None:
    """The loaded tables hold the account as the sandbox serves it now."""
    dataset = harness.sandbox.datasets[PROVIDER]
    expected = expected_activity(dataset)
    assert loaded_activity(harness) == expected
    assert harness.count("contact_activity") == sum(expected.values())
    assert loaded_snapshot(harness) == expected_snapshot(dataset)
    assert {r[0] for r in harness.query("SELECT campaign_id FROM campaigns")} == {c.id for c in dataset.campaigns}
    summaries = dict(harness.query("SELECT campaign_id, sent FROM campaign_summaries"))
    assert summaries == {c.id: len(dataset.events(c, "sent")) for c in dataset.sent_campaigns()}


def test_v2_first_run_quiet_rerun_and_later_night_are_exact_and_plan_and_status_name_the_api(make_harness, capsys):
    """The first run through v2 loads the ground truth with the key in a header; a rerun adds nothing; a later
    night is exact and reads the contacts changed since the last, and no others; `plan` and `status` say
    which API the account uses."""
    harness = make_harness(variants=V2)
    # every campaign inside the window, so that each report keeps its cursor (a closed campaign keeps a marker)
    harness.setenv(SOURCES__EMAILOCTOPUS__ATTRIBUTION_WINDOW_DAYS=90)
    dataset = harness.sandbox.datasets[PROVIDER]
    assert harness.cli("run", PROVIDER) == 0

    assert_exact(harness)
    assert harness.sandbox.requests[PROVIDER] == 0 and harness.sandbox.requests[NAME_V2] > 0
    loaded = set(harness.query("SELECT contact_id, email_address, status FROM contacts"))
    assert loaded == contacts_of(dataset)
    assert {r[0] for r in harness.query("SELECT DISTINCT status FROM campaigns")} == {"SENT", "DRAFT"}
    # a call per contact status per list (each fits one page)
    contact_calls = [p for p in harness.sandbox.paths if "/contacts" in p]
    assert sum(harness.sandbox.paths[p] for p in contact_calls) == 3 * len(dataset.lists)
    rows = harness.count("contact_activity")

    assert harness.cli("run", PROVIDER) == 0
    assert harness.count("contact_activity") == rows
    assert_exact(harness)

    # a later night, with a contact changed since the last: it is read, and no other
    harness.sandbox.advance(hours=24)
    changed = next(c for c in dataset.contacts if not c.deleted and c.status == "SUBSCRIBED")
    changed.status, changed.updated_at = "UNSUBSCRIBED", dataset.clock
    harness.sandbox.reset_counts()
    assert harness.cli("run", PROVIDER) == 0
    assert harness.count("contact_activity") > rows
    assert_exact(harness)
    assert harness.query(f"SELECT status FROM contacts WHERE contact_id = '{changed.id}'") == [("UNSUBSCRIBED",)]
    assert set(harness.query("SELECT contact_id, email_address, status FROM contacts")) == contacts_of(dataset)
    contact_calls = sum(n for path, n in harness.sandbox.paths.items() if "/contacts" in path)
    assert contact_calls == 3 * len(dataset.lists)
    # each report's cursor keeps where its last page began, verbatim, and whether the report was in order:
    # not where a row has no time (the oldest campaign's)
    kept = {key: c["resume"] for key, c in cursors(harness).items()}
    untimed = {f"{e.campaign_id}:{e.type}" for c in dataset.sent_campaigns() for e in dataset.events(c)
               if e.timestamp_missing}
    assert untimed and {key for key, resume in kept.items() if not resume["ordered"]} == untimed

    # plan and status say which API the account uses
    capsys.readouterr()
    assert harness.cli("plan", PROVIDER, "--json") == 0
    (estimate,) = json.loads(capsys.readouterr().out)
    assert estimate["api_version"] == "2"
    assert harness.cli("status", "--json") == 0
    statuses = json.loads(capsys.readouterr().out)["providers"]
    assert [s["api_version"] for s in statuses if s["provider"] == PROVIDER] == ["2"]
    assert harness.cli("status") == 0
    assert "  API 2 (API_VERSION)" in capsys.readouterr().out

    use_api(harness, "1.6")
    assert harness.cli("plan", PROVIDER) == 0
    assert f"{PROVIDER} (API 1.6): tonight's run" in capsys.readouterr().out


@BOTH_DESTINATIONS
def test_switching_from_1_6_to_v2_and_back_doubles_nothing_and_loses_nothing(make_harness):
    harness = make_harness()
    assert harness.cli("run", PROVIDER) == 0  # 1.6
    ids = {r[0] for r in harness.query("SELECT activity_id FROM contact_activity")}

    harness.sandbox.advance(hours=24)
    use_api(harness, "2")
    assert harness.cli("run", PROVIDER) == 0
    assert harness.sandbox.requests[NAME_V2] > 0
    assert_exact(harness)
    # the events 1.6 loaded kept their ids: v2 found the same ones
    assert ids <= {r[0] for r in harness.query("SELECT activity_id FROM contact_activity")}

    harness.sandbox.advance(hours=24)
    use_api(harness, "1.6")
    assert harness.cli("run", PROVIDER) == 0
    assert_exact(harness)


def test_a_nightly_through_v2_reads_at_most_60_percent_of_what_1_6_reads(make_harness):
    clock = datetime.now(UTC).replace(microsecond=0)
    requests = {}
    for version in ("1.6", "2"):
        harness = make_harness(variants=V2 if version == "2" else {}, scale=(6, 1200), clock=clock)
        assert harness.cli("run", PROVIDER) == 0
        harness.sandbox.advance(hours=24)
        harness.sandbox.reset_counts()
        assert harness.cli("run", PROVIDER) == 0
        assert_exact(harness)
        requests[version] = harness.sandbox.requests[NAME_V2 if version == "2" else PROVIDER]
    assert requests["2"] <= 0.6 * requests["1.6"], requests


@pytest.mark.parametrize("order", ["ordered", "unordered"])
def test_a_late_event_with_an_older_time_is_loaded_that_night(make_harness, order):
    harness = make_harness(variants={**V2, "eo2_report_order": order}, scale=(6, 600))
    dataset = harness.sandbox.datasets[PROVIDER]
    assert harness.cli("run", PROVIDER) == 0

    harness.sandbox.advance(hours=24)
    campaign = next(c for c in dataset.sent_campaigns() if c.id in open_campaigns(dataset)
                    and len(dataset.events(c, "opened")) > 150)
    # a minute after sending: on the report's first page, before the page the nightly resumes from
    late = add_late_event(dataset, campaign, "opened", campaign.send_at + timedelta(minutes=1))
    assert harness.cli("run", PROVIDER) == 0

    assert_exact(harness)
    at = late.at.replace(tzinfo=None)
    assert harness.activity(PROVIDER)[(campaign.id, late.contact_id, "opened", at)] >= 1
    kept = cursors(harness)[f"{campaign.id}:opened"]["resume"]
    assert kept["ordered"] == (order == "ordered") and kept["starting_after"] and kept["rows_before"] >= 100
    assert kept["rows"] == len(dataset.events(campaign, "opened"))


def test_a_key_v2_refuses_exits_3_naming_the_setting_and_the_legacy_case(make_harness, capfd):
    harness = make_harness(variants={**V2, "eo_legacy_key": "yes"})
    assert harness.cli("run", PROVIDER) == 3
    err = capfd.readouterr().err
    assert "SOURCES__EMAILOCTOPUS__API_KEY" in err and "legacy" in err and "SOURCES__EMAILOCTOPUS__API_VERSION" in err
    assert "eo-sandbox" not in err

    use_api(harness, "1.6")  # the same key through 1.6
    assert harness.cli("run", PROVIDER) == 0


# ---- the sandbox's v2 against docs/providers/emailoctopus-v2.md ----


def v2_get(sandbox, path: str, key: str = API_KEY, **params) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.get(sandbox.base_url(NAME_V2) + path, params=params, headers=headers, timeout=10)


def v2_all(sandbox, path: str, **params) -> tuple[list, list]:
    """Every row of a v2 list, following `paging.next.url` verbatim; and each page's `paging`."""
    rows, pagings = [], []
    response = v2_get(sandbox, path, **params)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        rows += body["data"]
        pagings.append(body["paging"])
        link = (body["paging"].get("next") or {}).get("url")
        if not link:
            return rows, pagings
        response = requests.get(link, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)


@pytest.mark.parametrize("last_page", ["null", "absent", "empty"])
def test_the_sandbox_v2_serves_1_6s_data_as_v2_documents_it(last_page):
    with Sandbox(scale=(6, 400), variants={"eo2_last_page": last_page}) as sandbox:
        sandbox.apps[NAME_V2].bucket.rate = 0
        dataset = sandbox.datasets[PROVIDER]
        assert sandbox.datasets[NAME_V2] is dataset  # one data set, the same ids
        # bearer key only; RFC 7807 errors
        for refused in (v2_get(sandbox, "/campaigns", key=""), v2_get(sandbox, "/campaigns", key="", api_key=API_KEY)):
            assert refused.status_code == 401
            assert refused.json() == {"type": PROBLEM_TYPE + "unauthorized", "title": "Unauthorized",
                                      "detail": "Invalid key.", "status": 401}
        bad = v2_get(sandbox, "/campaigns", limit=101)
        assert bad.status_code == 400 and bad.json()["errors"][0]["parameter"] == "limit"
        assert v2_get(sandbox, "/campaigns/nope").json()["type"] == PROBLEM_TYPE + "not-found"

        campaigns, pagings = v2_all(sandbox, "/campaigns", limit=4)
        assert [c["id"] for c in campaigns] == [c.id for c in dataset.campaigns]
        assert {c["status"] for c in campaigns} == {"sent", "draft"}
        last = {"null": {"next": None}, "absent": {}, "empty": {"next": None}}[last_page]
        assert pagings[-1] == last
        assert len(pagings) == math.ceil(len(campaigns) / 4) + (last_page == "empty")  # and then an empty page
        assert all(p["next"]["starting_after"] in p["next"]["url"] for p in pagings[:-1])

        campaign = max(dataset.sent_campaigns(), key=lambda c: len(dataset.events(c, "opened")))
        rows, _ = v2_all(sandbox, f"/campaigns/{campaign.id}/reports", status="opened")
        assert {tuple(row) for row in rows} == {("contact_id", "contact_email_address", "occurred_at")}
        assert len(rows) == len(dataset.events(campaign, "opened")) > 100
        places = [(row["occurred_at"], row["contact_id"]) for row in rows]
        assert places == sorted(places)  # ordered by time, then contact (the default variant)
        summary = v2_get(sandbox, f"/campaigns/{campaign.id}/reports/summary").json()
        assert summary["opened"]["total"] == len(rows)
        assert v2_get(sandbox, f"/campaigns/{campaign.id}/reports").status_code == 400  # status is required
        not_opened, _ = v2_all(sandbox, f"/campaigns/{campaign.id}/reports", status="not-opened")
        assert {row["contact_id"] for row in not_opened} == set(dataset.not_engaged(campaign, "opened"))

        list_id = dataset.lists[0]
        by_status = {status: v2_all(sandbox, f"/lists/{list_id}/contacts", status=status)[0]
                     for status in ("subscribed", "unsubscribed", "pending")}
        members = [c for c in dataset.contacts if c.list_id == list_id and not c.deleted]
        assert {s: {c["id"] for c in rows} for s, rows in by_status.items()} == {
            s: {c.id for c in members if c.status.lower() == s} for s in by_status}
        assert v2_all(sandbox, f"/lists/{list_id}/contacts")[0] == by_status["subscribed"]  # the default
        since = max(c.updated_at or c.created_at for c in members)
        changed, _ = v2_all(sandbox, f"/lists/{list_id}/contacts", status="subscribed",
                            **{"last_updated_at.gte": since.isoformat()})
        assert {c["id"] for c in changed} <= {c.id for c in members if (c.updated_at or c.created_at) >= since}


@pytest.mark.parametrize("header", ["x-ratelimit", "retry-after", "none"])
def test_the_sandbox_v2_bucket_holds_100_and_names_its_retry(header):
    with Sandbox(variants={"eo2_retry_header": header}, requests_per_second={NAME_V2: 0.1}) as sandbox:
        sandbox.apps[NAME_V2].bucket.rate = 1e-6  # no request comes back into the bucket, however slow the machine
        responses = [v2_get(sandbox, "/lists") for _ in range(101)]
        assert [a.status_code for a in responses[:100]] == [200] * 100 and responses[100].status_code == 429
        assert int(responses[0].headers["X-RateLimiting-Remaining"]) >= 98
        over = responses[100]
        assert over.json()["type"] == PROBLEM_TYPE + "too-many-requests"
        named = {"x-ratelimit": "X-RateLimit-Retry-After", "retry-after": "Retry-After"}.get(header)
        assert ("X-RateLimit-Retry-After" in over.headers, "Retry-After" in over.headers) == (
            named == "X-RateLimit-Retry-After", named == "Retry-After")


def test_a_legacy_key_works_through_1_6_only():
    with Sandbox(variants={"eo_legacy_key": "yes"}) as sandbox:
        assert v2_get(sandbox, "/lists").status_code == 401
        legacy = requests.get(sandbox.base_url(PROVIDER) + "/api/1.6/lists", params={"api_key": API_KEY}, timeout=10)
        assert legacy.status_code == 200


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
@pytest.mark.parametrize("variants", [
    {"eo2_last_page": "absent", "eo2_retry_header": "x-ratelimit"},
    {"eo2_last_page": "empty", "eo2_retry_header": "retry-after"},
], ids=["absent-next+x-ratelimit", "empty-last-page+retry-after"])
def test_every_unsure_v2_variant_loads_the_same_truth_throttled_or_not(make_harness, variants):
    harness = make_harness(variants={**V2, **variants}, requests_per_second={NAME_V2: 20})
    harness.setenv(SOURCES__EMAILOCTOPUS__REQUESTS_PER_SECOND=200)  # we overrun the bucket on purpose
    harness.sandbox.apps[NAME_V2].bucket.capacity = 10  # a small bucket: the run outpaces it, however it starts
    assert harness.cli("run", PROVIDER) == 0
    assert harness.sandbox.throttled[NAME_V2] > 0
    assert_exact(harness)


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_a_named_account_through_v2_and_a_backfill_then_a_nightly(make_harness):
    harness = make_harness(variants=V2, accounts={PROVIDER: ["acme"], NAME_V2: ["acme"]})
    acme = harness.sandbox.datasets[f"{PROVIDER}/acme"]
    since = (acme.clock - timedelta(days=120)).date().isoformat()
    assert harness.cli("backfill", PROVIDER, "--account", "acme", "--since", since) == 0
    assert harness.cli("backfill", PROVIDER, "--account", "acme", "--since", since) == 0  # idempotent
    harness.sandbox.advance(hours=24)
    assert harness.cli("run", PROVIDER) == 0  # both accounts

    assert harness.sandbox.requests[f"{NAME_V2}/acme"] > 0 and harness.sandbox.requests[f"{PROVIDER}/acme"] == 0
    for account, dataset in (("acme", acme), ("default", harness.sandbox.datasets[PROVIDER])):
        loaded = Counter(harness.query(
            "SELECT campaign_id, contact_id, activity_type, occurred_at AT TIME ZONE 'UTC' FROM contact_activity "
            f"WHERE account = '{account}'"
        ))
        assert loaded == expected_activity(dataset), account
