"""EmailOctopus through its API v2: sandbox over HTTP -> dlt -> DuckDB and PostgreSQL, the same account,
tables and ids as through 1.6, and nightly reads that follow what is new."""

from __future__ import annotations

from helpers import expected_activity, expected_snapshot, loaded_activity, loaded_snapshot

from sandbox.emailoctopus import NAME_V2

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
