"""Schema evolution and the analysis views, on DuckDB and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import BOTH_DESTINATIONS, DESTINATIONS, harnesses

PROVIDER = "emailoctopus"
# the tests that read the views share one load, on one worker
SHARED_LOAD = pytest.mark.xdist_group("analysis")


@pytest.fixture(scope="module", params=DESTINATIONS)
def loaded(request, tmp_path_factory):
    """EmailOctopus and Constant Contact v2 loaded once per destination, for the tests that only read the views."""
    with harnesses(tmp_path_factory.mktemp("analysis"), request.param) as build:
        harness = build()
        for provider in (PROVIDER, "constant_contact_v2"):  # the README's query 6 compares providers
            assert harness.cli("run", provider) == 0
        yield harness


def columns(harness, table: str) -> set[str]:
    rows = harness.query(
        "SELECT column_name FROM information_schema.columns "
        f"WHERE table_schema = '{harness.dataset}' AND table_name = '{table}'"
    )
    return {row[0] for row in rows}


@BOTH_DESTINATIONS
def test_new_contact_field_becomes_a_column_with_nulls_elsewhere(harness):
    assert harness.cli("run", PROVIDER) == 0
    assert "custom_fields__loyalty" not in columns(harness, "contacts")
    harness.sandbox.variants["eo_new_contact_field"] = "yes"

    assert harness.cli("run", PROVIDER) == 0

    dataset = harness.sandbox.datasets[PROVIDER]
    gold = {c.id for c in dataset.contacts if c.number % 3 == 0 and not c.deleted}
    loaded = {r[0] for r in harness.query("SELECT contact_id FROM contacts WHERE custom_fields__loyalty = 'gold'")}
    assert loaded == gold
    assert harness.count("contacts", "custom_fields__loyalty IS NULL") == len(dataset.contacts) - len(gold)


@BOTH_DESTINATIONS
def test_new_report_field_is_kept_and_old_rows_get_null(harness):
    assert harness.cli("run", PROVIDER) == 0
    opens_before = harness.count("contact_activity", "activity_type = 'opened'")
    harness.sandbox.variants["eo_new_report_field"] = "yes"
    harness.sandbox.advance(hours=24)

    assert harness.cli("run", PROVIDER) == 0

    assert "ip_country" in columns(harness, "contact_activity")
    with_country = harness.count("contact_activity", "ip_country = 'DE'")
    assert with_country > 0
    assert harness.count("contact_activity", "ip_country IS NOT NULL AND activity_type <> 'opened'") == 0
    # closed campaigns were not re-read: their opens keep NULL
    assert harness.count("contact_activity", "activity_type = 'opened' AND ip_country IS NULL") > 0
    assert harness.count("contact_activity", "activity_type = 'opened'") >= opens_before


@BOTH_DESTINATIONS
def test_a_field_that_changes_type_keeps_its_values(harness):
    assert harness.cli("run", PROVIDER) == 0
    scores = "SELECT contact_id, custom_fields__score FROM contacts WHERE custom_fields__score > 0"
    numbers = dict(harness.query(scores))
    harness.sandbox.variants["eo_score_type"] = "text"

    assert harness.cli("run", PROVIDER) == 0

    assert "custom_fields__score__v_text" in columns(harness, "contacts")
    texts = dict(harness.query(
        "SELECT contact_id, custom_fields__score__v_text FROM contacts WHERE custom_fields__score__v_text > ''"
    ))
    assert texts == {contact_id: f"score-{score}" for contact_id, score in numbers.items()}


@BOTH_DESTINATIONS
def test_a_report_field_that_changes_type_does_not_fail_the_load(harness):
    harness.sandbox.variants["eo_new_report_field"] = "number"
    assert harness.cli("run", PROVIDER) == 0
    harness.sandbox.variants["eo_new_report_field"] = "yes"
    harness.sandbox.advance(hours=24)

    assert harness.cli("run", PROVIDER) == 0

    values = dict(harness.query("SELECT ip_country, count(*) FROM contact_activity GROUP BY ip_country"))
    assert values.get("49", 0) > 0 and values.get("DE", 0) > 0  # kept as text, both values


@SHARED_LOAD
def test_campaign_engagement_matches_the_providers_summary(loaded):
    harness = loaded
    engagement = harness.query(
        "SELECT e.campaign_id, e.sent, e.bounces, e.unique_opens, e.unique_clicks, e.unsubscribes, e.complaints, "
        "s.sent, s.bounced, s.opened_unique, s.clicked_unique, s.unsubscribed, s.complained, e.delivered, s.delivered "
        "FROM campaign_engagement e JOIN campaign_summaries s USING (provider, campaign_id) "
        f"WHERE provider = '{PROVIDER}'"
    )
    dataset = harness.sandbox.datasets[PROVIDER]
    assert len(engagement) == len(dataset.sent_campaigns())
    for row in engagement:
        ours, theirs = row[1:7], row[7:13]
        assert ours == theirs, row[0]
        assert row[13] == row[14]
    rates = harness.query(
        f"SELECT min(open_rate), max(open_rate) FROM campaign_engagement WHERE provider = '{PROVIDER}'"
    )[0]
    assert 0 < rates[0] <= rates[1] < 1


@SHARED_LOAD
def test_contact_engagement_has_last_open_and_counts(loaded):
    harness = loaded
    dataset = harness.sandbox.datasets[PROVIDER]
    opens: Counter = Counter()
    for campaign in dataset.sent_campaigns():
        for event in dataset.events(campaign, "opened"):
            opens[event.contact_id] += 1
    opened = dict(harness.query(
        f"SELECT contact_id, opens FROM contact_engagement WHERE provider = '{PROVIDER}' AND opens > 0"
    ))
    assert opened == dict(opens)
    statuses = harness.query("SELECT count(*) FROM contact_engagement WHERE status IS NULL AND email_address IS NULL")
    assert statuses[0][0] == 0


def readme_queries() -> list[str]:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = text.split("Six queries that run as written on both warehouses", 1)[1].split("```sql", 1)[1]
    block = block.split("```", 1)[0]
    return [query.strip() for query in block.split(";") if "SELECT" in query]


@SHARED_LOAD
def test_the_readme_queries_run_on_both_warehouses(loaded):
    harness = loaded
    queries = readme_queries()
    assert len(queries) == 6
    for query in queries:
        rows = harness.query(query.replace("campaign_activity.", f"{harness.dataset}."))
        assert rows, query
