"""EmailOctopus through its API v2: sandbox over HTTP -> dlt -> DuckDB and PostgreSQL, the same account,
tables and ids as through 1.6, and nightly reads that follow what is new."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from helpers import cursors, expected_activity, expected_snapshot, loaded_activity, loaded_snapshot, open_campaigns

from sandbox.emailoctopus import NAME_V2, add_late_event

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


def test_first_run_through_v2_loads_the_ground_truth_with_the_key_in_a_header(make_harness):
    harness = make_harness(variants=V2)
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


def test_rerun_adds_nothing_and_a_later_night_is_exact(make_harness):
    harness = make_harness(variants=V2)
    assert harness.cli("run", PROVIDER) == 0
    rows = harness.count("contact_activity")

    assert harness.cli("run", PROVIDER) == 0
    assert harness.count("contact_activity") == rows
    assert_exact(harness)

    harness.sandbox.advance(hours=24)
    assert harness.cli("run", PROVIDER) == 0
    assert harness.count("contact_activity") > rows
    assert_exact(harness)
    # each report's cursor keeps where its last page began, verbatim, and whether the report was in order:
    # not where a row has no time (the oldest campaign's)
    dataset = harness.sandbox.datasets[PROVIDER]
    kept = {key: c["resume"] for key, c in cursors(harness).items()}
    untimed = {f"{e.campaign_id}:{e.type}" for c in dataset.sent_campaigns() for e in dataset.events(c)
               if e.timestamp_missing}
    assert untimed and {key for key, resume in kept.items() if not resume["ordered"]} == untimed


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


def test_plan_and_status_say_which_api_the_account_uses(make_harness, capsys):
    harness = make_harness(variants=V2)
    assert harness.cli("run", PROVIDER) == 0
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
