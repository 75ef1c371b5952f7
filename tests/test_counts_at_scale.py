"""The per-campaign counts (views.CAMPAIGN_COUNTS) without DISTINCT aggregates give what the
count(DISTINCT contact_id) form gave, on DuckDB and PostgreSQL; a load on PostgreSQL leaves its tables
analyzed, so that the reconciliation after it is planned with statistics.

benchmarks/counts.py times both forms on ten million events; here the activity is small, with repeated
sends, opens, clicks, bounces and unsubscribes of a contact, events without a contact_id, two
accounts, a campaign with no sends and one whose events all lack a contact.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pytest
from conftest import BOTH_DESTINATIONS, POSTGRES_URL

from benchmarks.counts import DISTINCT_COUNTS  # the form CAMPAIGN_COUNTS replaced
from pipelines import views
from pipelines.reconcile import reconcile

PROVIDER, ACCOUNT = "emailoctopus", "main"
# 6,000 events: (campaign, type, contact) come round again every 3,150, so some contacts have two of a kind
ACTIVITY = """
CREATE TABLE {schema}.contact_activity AS
SELECT 'a' || CAST(i AS VARCHAR) AS activity_id, '{provider}' AS provider,
       CASE WHEN i % 11 = 0 THEN 'other' ELSE '{account}' END AS account,
       'campaign-' || CAST(i % 7 AS VARCHAR) AS campaign_id,
       CASE WHEN i % 13 = 0 THEN NULL ELSE 'contact-' || CAST(i % 50 AS VARCHAR) END AS contact_id,
       CASE i % 9 WHEN 0 THEN 'sent' WHEN 1 THEN 'sent' WHEN 2 THEN 'opened' WHEN 3 THEN 'opened'
                  WHEN 4 THEN 'clicked' WHEN 5 THEN 'bounced' WHEN 6 THEN 'unsubscribed'
                  WHEN 7 THEN 'complained' ELSE 'forwarded' END AS activity_type
FROM generate_series(1, 6000) AS s(i)
"""
# campaigns the generated activity lacks: no `sent` rows at all, and events none of which has a contact
EDGE_ROWS = """
INSERT INTO {schema}.contact_activity (activity_id, provider, account, campaign_id, contact_id, activity_type)
SELECT activity_id, '{provider}', '{account}', campaign_id, contact_id, activity_type FROM (VALUES
    ('e1', 'no-sends', 'a', 'opened'), ('e2', 'no-sends', 'a', 'opened'), ('e3', 'no-sends', NULL, 'opened'),
    ('e4', 'no-sends', 'b', 'clicked'), ('e5', 'no-contact', NULL, 'sent'), ('e6', 'no-contact', NULL, 'bounced'),
    ('e7', 'no-contact', NULL, 'bounced'), ('e8', 'no-contact', NULL, 'forwarded')
) AS edge(activity_id, campaign_id, contact_id, activity_type)
"""
CAMPAIGNS = """
CREATE TABLE {schema}.campaigns AS
SELECT DISTINCT provider, account, campaign_id, 'Campaign ' || campaign_id AS name,
       CAST('2026-01-01 00:00:00' AS TIMESTAMP WITH TIME ZONE) AS sent_at
FROM {schema}.contact_activity WHERE campaign_id LIKE 'campaign-%'
"""
# the provider's summaries: what the DISTINCT form counts
SUMMARIES = """
CREATE TABLE {schema}.campaign_summaries AS
SELECT provider, account, campaign_id, sent, unique_opens AS opened_unique, unique_clicks AS clicked_unique, bounced,
       unsubscribes AS unsubscribed
FROM ({counts}) d WHERE campaign_id LIKE 'campaign-%'
"""
COLUMNS = ("sent", "bounced", "unique_opens", "total_opens", "unique_clicks", "total_clicks", "unsubscribes",
           "complaints", "forwards")


class Client:
    """What reconcile() uses of a dlt sql client, over a DB-API connection."""

    def __init__(self, connection: Any, schema: str, qmark: bool) -> None:
        self.connection, self.dataset_name, self.qmark = connection, schema, qmark

    def make_qualified_table_name(self, name: str) -> str:
        return f"{self.dataset_name}.{name}"

    def execute_sql(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        cursor = self.connection.cursor()
        cursor.execute(sql.replace("%s", "?") if self.qmark else sql, params)
        return list(cursor.fetchall())


@pytest.fixture
def activity(destination: str, tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """A cursor on a synthetic `contact_activity` (with `campaigns`, `campaign_summaries`) and its schema."""
    schema = f"counts_{uuid.uuid4().hex[:10]}"
    if destination == "postgres":
        connection: Any = psycopg2.connect(POSTGRES_URL)
        connection.autocommit = True
        cursor = connection.cursor()
    else:
        connection = duckdb.connect(str(tmp_path / "counts.duckdb"))
        cursor = connection
    try:
        names = {"schema": schema, "provider": PROVIDER, "account": ACCOUNT}
        cursor.execute(f"CREATE SCHEMA {schema}")
        for sql in (ACTIVITY, EDGE_ROWS, CAMPAIGNS):
            cursor.execute(sql.format(**names))
        cursor.execute(SUMMARIES.format(counts=DISTINCT_COUNTS.replace("{events}", f"{schema}.contact_activity"),
                                        **names))
        yield cursor, schema
    finally:
        if destination == "postgres":
            cursor.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        connection.close()


def rows(cursor: Any, sql: str) -> list[tuple[Any, ...]]:
    cursor.execute(sql)
    return [tuple(row) for row in cursor.fetchall()]


@BOTH_DESTINATIONS
def test_counts_without_distinct_are_the_distinct_counts(activity, destination):
    cursor, schema = activity
    table = f"{schema}.contact_activity"
    new, old = (form.replace("{events}", table) for form in (views.CAMPAIGN_COUNTS, DISTINCT_COUNTS))

    assert rows(cursor, f"SELECT count(*) FROM ({new} EXCEPT ALL {old}) d") == [(0,)]
    assert rows(cursor, f"SELECT count(*) FROM ({old} EXCEPT ALL {new}) d") == [(0,)]
    counts = {row[2]: dict(zip(COLUMNS, row[3:], strict=True)) for row in rows(cursor, new)}
    assert len(counts) == 7 + 2
    assert counts["no-sends"] == {**dict.fromkeys(COLUMNS, 0), "unique_opens": 1, "total_opens": 3,
                                  "unique_clicks": 1, "total_clicks": 1}
    assert counts["no-contact"] == {**dict.fromkeys(COLUMNS, 0), "sent": 1, "forwards": 1}
    # the generated campaigns have contacts with several opens, and bounces without a contact
    assert any(c["total_opens"] > c["unique_opens"] > 0 for c in counts.values())
    no_contact = rows(cursor, f"SELECT count(*) FROM {table} WHERE contact_id IS NULL AND activity_type = 'bounced'")
    assert no_contact[0][0] > 2
    # integers on both destinations, as count(*) is (not numeric / HUGEINT from sum)
    if destination == "postgres":
        cursor.execute(f"SELECT * FROM ({new}) f LIMIT 0")
        assert [column.type_code for column in cursor.description][3:] == [20] * len(COLUMNS)  # int8
    else:
        assert [row[1] for row in rows(cursor, f"DESCRIBE {new}")][3:] == ["BIGINT"] * len(COLUMNS)


@BOTH_DESTINATIONS
def test_reconcile_compares_the_same_counts_as_before(activity, destination):
    cursor, schema = activity
    connection = cursor.connection if destination == "postgres" else cursor
    client = Client(connection, schema, qmark=destination == "duckdb")
    table = f"{schema}.campaign_summaries"
    # the summaries are what the DISTINCT form counts: one campaign's unique opens made 100 more
    off = rows(cursor, f"SELECT min(campaign_id) FROM {table} WHERE account = '{ACCOUNT}'")[0][0]
    cursor.execute(f"UPDATE {table} SET opened_unique = opened_unique + 100 WHERE campaign_id = '{off}'")

    found = reconcile(client, PROVIDER, ACCOUNT)

    assert [(d.campaign_id, d.measure) for d in found] == [(off, "unique opens")]
    assert found[0].reported == found[0].loaded + 100


@pytest.mark.parametrize("destination", ["postgres"], indirect=True)
def test_a_load_on_postgres_leaves_its_tables_analyzed(harness):
    assert harness.cli("run", "emailoctopus") == 0

    analyzed = dict(harness.query(
        "SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables "
        f"WHERE schemaname = '{harness.dataset}' AND relname IN ('contact_activity', 'campaigns', 'campaign_summaries')"
    ))
    assert analyzed == {"contact_activity": True, "campaigns": True, "campaign_summaries": True}
    assert harness.count("pg_stats", f"schemaname = '{harness.dataset}' AND tablename = 'contact_activity'") > 0
