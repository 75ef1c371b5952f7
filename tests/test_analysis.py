"""Schema evolution and the analysis views, on DuckDB and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from conftest import BOTH_DESTINATIONS

# what these tests check depends on the destination's SQL: they run on DuckDB and PostgreSQL
pytestmark = BOTH_DESTINATIONS

PROVIDER = "emailoctopus"


def columns(harness, table: str) -> set[str]:
    rows = harness.query(
        "SELECT column_name FROM information_schema.columns "
        f"WHERE table_schema = '{harness.dataset}' AND table_name = '{table}'"
    )
    return {row[0] for row in rows}


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


def test_a_report_field_that_changes_type_does_not_fail_the_load(harness):
    harness.sandbox.variants["eo_new_report_field"] = "number"
    assert harness.cli("run", PROVIDER) == 0
    harness.sandbox.variants["eo_new_report_field"] = "yes"
    harness.sandbox.advance(hours=24)

    assert harness.cli("run", PROVIDER) == 0

    values = dict(harness.query("SELECT ip_country, count(*) FROM contact_activity GROUP BY ip_country"))
    assert values.get("49", 0) > 0 and values.get("DE", 0) > 0  # kept as text, both values


def test_campaign_engagement_matches_the_providers_summary(harness):
    assert harness.cli("run", PROVIDER) == 0
    engagement = harness.query(
        "SELECT e.campaign_id, e.sent, e.bounces, e.unique_opens, e.unique_clicks, e.unsubscribes, e.complaints, "
        "s.sent, s.bounced, s.opened_unique, s.clicked_unique, s.unsubscribed, s.complained, e.delivered, s.delivered "
        "FROM campaign_engagement e JOIN campaign_summaries s USING (provider, campaign_id)"
    )
    dataset = harness.sandbox.datasets[PROVIDER]
    assert len(engagement) == len(dataset.sent_campaigns())
    for row in engagement:
        ours, theirs = row[1:7], row[7:13]
        assert ours == theirs, row[0]
        assert row[13] == row[14]
    rates = harness.query("SELECT min(open_rate), max(open_rate) FROM campaign_engagement")[0]
    assert 0 < rates[0] <= rates[1] < 1


def test_contact_engagement_has_last_open_and_counts(harness):
    assert harness.cli("run", PROVIDER) == 0
    dataset = harness.sandbox.datasets[PROVIDER]
    opens: Counter = Counter()
    for campaign in dataset.sent_campaigns():
        for event in dataset.events(campaign, "opened"):
            opens[event.contact_id] += 1
    loaded = dict(harness.query("SELECT contact_id, opens FROM contact_engagement WHERE opens > 0"))
    assert loaded == dict(opens)
    statuses = harness.query("SELECT count(*) FROM contact_engagement WHERE status IS NULL AND email_address IS NULL")
    assert statuses[0][0] == 0


def readme_queries() -> list[str]:
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = text.split("Six queries that run as written on both warehouses", 1)[1].split("```sql", 1)[1]
    block = block.split("```", 1)[0]
    return [query.strip() for query in block.split(";") if "SELECT" in query]


def test_the_readme_queries_run_on_both_warehouses(harness):
    for provider in (PROVIDER, "constant_contact_v2"):  # query 6 compares providers
        assert harness.cli("run", provider) == 0
    queries = readme_queries()
    assert len(queries) == 6
    for query in queries:
        rows = harness.query(query.replace("campaign_activity.", f"{harness.dataset}."))
        assert rows, query
