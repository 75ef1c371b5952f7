"""The reconciliation's per-campaign counts (`views.CAMPAIGN_COUNTS`) on a large synthetic `contact_activity`.

    .venv/bin/python -m benchmarks.counts --rows 10000000 --destination postgres --cte both \
        --analyze --no-analyze-run --check --timeout 300s

Builds, with SQL only (generate_series), a `contact_activity` of an email account's shape in a scratch
PostgreSQL schema or a scratch DuckDB file: 60 campaigns of one account (and 3 of a second account),
193,000 contacts, one `sent` per contact and campaign, `opened` / `clicked` with repeats, `bounced`,
`unsubscribed`, `complained`, `forwarded`, about 1% of rows without a contact_id; then times the
counting query of `reconcile.reconcile()` over the whole account (campaigns=None, as `status` and a run
after an earlier run's packages do) with

- `new`: the CAMPAIGN_COUNTS of pipelines/views.py,
- `old`: DISTINCT_COUNTS below, the count(DISTINCT contact_id) form it replaced,

each with reconcile's counts CTE MATERIALIZED (as now) and/or inlined (`--cte inline`: as before).
PostgreSQL: EXPLAIN (ANALYZE, TIMING OFF, BUFFERS), with no statistics on the table (autovacuum off on
it, as right after a load), then after ANALYZE (`--analyze --no-analyze-run`); the plan's aggregate,
sort and join nodes are printed (`--plans`: the whole plans). DuckDB: the reconcile() call.
`--check`: both forms give the same rows (EXCEPT ALL both ways) and column types. The scratch schema /
file is dropped unless --keep (then --reuse it).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg2

from pipelines import views
from pipelines.reconcile import reconcile

POSTGRES_URL = "postgresql://postgres:postgres@127.0.0.1:5432/test"
PROVIDER, ACCOUNT = "emailoctopus", "main"
CAMPAIGNS, OTHER_CAMPAIGNS, CONTACTS = 60, 3, 193_000
ROWS_PER_SEND = 1.6025  # the rows each send brings with the rules in EVENTS (sent 1, opened .429, clicked .135, ...)

# the count(DISTINCT ...) form of views.CAMPAIGN_COUNTS, which it replaced (PostgreSQL sorts each group's
# rows for every DISTINCT aggregate)
DISTINCT_COUNTS = """
    SELECT provider, account, campaign_id,
           count(*) FILTER (WHERE activity_type = 'sent') AS sent,
           count(DISTINCT contact_id) FILTER (WHERE activity_type = 'bounced') AS bounced,
           count(DISTINCT contact_id) FILTER (WHERE activity_type = 'opened') AS unique_opens,
           count(*) FILTER (WHERE activity_type = 'opened') AS total_opens,
           count(DISTINCT contact_id) FILTER (WHERE activity_type = 'clicked') AS unique_clicks,
           count(*) FILTER (WHERE activity_type = 'clicked') AS total_clicks,
           count(DISTINCT contact_id) FILTER (WHERE activity_type = 'unsubscribed') AS unsubscribes,
           count(DISTINCT contact_id) FILTER (WHERE activity_type = 'complained') AS complaints,
           count(*) FILTER (WHERE activity_type = 'forwarded') AS forwards
    FROM {events}
    GROUP BY provider, account, campaign_id
"""

# (activity_type, a send has the event when lo <= h < hi, a 2nd one when k % m2 = 0, a 3rd when k % m3 = 0)
EVENTS = """(VALUES
    ('sent', 0, 1000, 0, 0), ('opened', 0, 300, 3, 7), ('clicked', 0, 90, 2, 0), ('bounced', 980, 1000, 5, 0),
    ('unsubscribed', 300, 306, 4, 0), ('complained', 306, 307, 0, 0), ('forwarded', 0, 3, 1, 0)
) AS kinds(activity_type, lo, hi, m2, m3)"""
ACTIVITY = """
CREATE TABLE {schema}.contact_activity {options} AS
WITH sends AS (
    SELECT c, k, CASE WHEN c <= {campaigns} THEN '{account}' ELSE 'other' END AS account,
           ((k - 1) + c * 3203) % {contacts} + 1 AS person, (k * 7919 + c * 104729) % 1000 AS h
    FROM generate_series(1, {all_campaigns}) AS cs(c), generate_series(1, {sends}) AS ks(k)
)
SELECT md5(CAST(c AS VARCHAR) || '-' || CAST(k AS VARCHAR) || activity_type || CAST(r AS VARCHAR)) AS activity_id,
       '{provider}' AS provider, account, md5('campaign ' || CAST(c AS VARCHAR)) AS campaign_id,
       CAST(NULL AS VARCHAR) AS campaign_activity_id,
       CASE WHEN k % 101 = 0 THEN NULL ELSE md5('contact ' || CAST(person AS VARCHAR)) END AS contact_id,
       'person' || CAST(person AS VARCHAR) || '@example.com' AS email_address, activity_type,
       CAST(TIMESTAMP '2026-01-01 00:00:00' + c * INTERVAL '1 day' + (k + r * 3600) * INTERVAL '1 second'
            AS TIMESTAMP WITH TIME ZONE) AS occurred_at,
       CASE WHEN activity_type = 'clicked' THEN 'https://example.com/p/' || CAST(k % 7 AS VARCHAR) END AS url,
       CAST(NULL AS VARCHAR) AS device_type,
       CASE WHEN activity_type = 'bounced' THEN CASE WHEN k % 3 = 0 THEN 'hard' ELSE 'soft' END END AS bounce_type,
       CAST(NULL AS VARCHAR) AS reason, '1765000000.123456' AS _dlt_load_id,
       substr(md5(CAST(c AS VARCHAR) || activity_type || CAST(k AS VARCHAR) || CAST(r AS VARCHAR)), 1, 14) AS _dlt_id
FROM sends
JOIN {events} ON h >= lo AND h < hi
JOIN generate_series(1, 3) AS rs(r)
    ON r = 1 OR (r = 2 AND k % nullif(m2, 0) = 0) OR (r = 3 AND k % nullif(m3, 0) = 0)
"""
CAMPAIGNS_TABLE = """
CREATE TABLE {schema}.campaigns AS
SELECT '{provider}' AS provider, CASE WHEN c <= {campaigns} THEN '{account}' ELSE 'other' END AS account,
       md5('campaign ' || CAST(c AS VARCHAR)) AS campaign_id, 'Campaign ' || CAST(c AS VARCHAR) AS name,
       'Subject' AS subject, CAST(TIMESTAMP '2026-01-01 00:00:00' + c * INTERVAL '1 day' AS TIMESTAMP WITH TIME ZONE)
           AS sent_at
FROM generate_series(1, {all_campaigns}) AS cs(c)
"""
SUMMARIES_TABLE = """
CREATE TABLE {schema}.campaign_summaries AS
SELECT provider, account, campaign_id, 0 AS sent, 0 AS opened_unique, 0 AS clicked_unique, 0 AS bounced,
       0 AS unsubscribed
FROM {schema}.campaigns
"""


class Client:
    """What reconcile() uses of a dlt sql client, over a DB-API connection; remembers the statements run."""

    def __init__(self, connection: Any, schema: str, qmark: bool) -> None:
        self.connection, self.dataset_name, self.qmark, self.statements = connection, schema, qmark, []
        self.inline = False  # run reconcile's counts as a plain (inlined) CTE, as before it said MATERIALIZED

    def make_qualified_table_name(self, name: str) -> str:
        return f"{self.dataset_name}.{name}"

    def execute_sql(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if self.inline:
            sql = sql.replace("WITH counts AS MATERIALIZED (", "WITH counts AS (")
        self.statements.append((sql, params))
        cursor = self.connection.cursor()
        cursor.execute(sql.replace("%s", "?") if self.qmark else sql, params)
        return list(cursor.fetchall())


@contextlib.contextmanager
def counts_form(form: str) -> Iterator[None]:
    """views.CAMPAIGN_COUNTS as `form` says while inside (reconcile reads it when it runs)."""
    current = views.CAMPAIGN_COUNTS
    views.CAMPAIGN_COUNTS = current if form == "new" else DISTINCT_COUNTS
    try:
        yield
    finally:
        views.CAMPAIGN_COUNTS = current


def sends_for(rows: int) -> int:
    return round(rows / (CAMPAIGNS + OTHER_CAMPAIGNS) / ROWS_PER_SEND)


def build(cursor: Any, schema: str, rows: int, postgres: bool) -> None:
    names = {
        "schema": schema, "provider": PROVIDER, "account": ACCOUNT, "campaigns": CAMPAIGNS, "contacts": CONTACTS,
        "all_campaigns": CAMPAIGNS + OTHER_CAMPAIGNS, "sends": sends_for(rows), "events": EVENTS,
        # no statistics until --analyze: autovacuum would analyze the table a minute after the load
        "options": "WITH (autovacuum_enabled = false)" if postgres else "",
    }
    cursor.execute(f"CREATE SCHEMA {schema}")
    for sql in (ACTIVITY, CAMPAIGNS_TABLE, SUMMARIES_TABLE):
        cursor.execute(sql.format(**names))


def shape(cursor: Any, schema: str) -> str:
    cursor.execute(
        "SELECT count(*), count(DISTINCT contact_id), count(DISTINCT campaign_id), count(*) - count(contact_id) "
        f"FROM {schema}.contact_activity"
    )
    rows, contacts, campaigns, no_contact = cursor.fetchone()
    cursor.execute(f"SELECT activity_type, count(*) FROM {schema}.contact_activity GROUP BY 1 ORDER BY 2 DESC")
    kinds = ", ".join(f"{kind} {n}" for kind, n in cursor.fetchall())
    return (f"{rows} rows, {contacts} contacts, {campaigns} campaigns, {no_contact} without contact_id: {kinds}")


def same_results(cursor: Any, schema: str, postgres: bool) -> tuple[int, int, list[str]]:
    """Rows of the old form not in the new and the reverse (EXCEPT ALL), and the column types if they differ."""
    table = f"{schema}.contact_activity"
    old, new = (form.replace("{events}", table) for form in (DISTINCT_COUNTS, views.CAMPAIGN_COUNTS))
    missing = []
    for first, second in ((old, new), (new, old)):
        cursor.execute(f"SELECT count(*) FROM ({first} EXCEPT ALL {second}) d")
        missing.append(cursor.fetchone()[0])
    types = []
    for form in (old, new):
        if postgres:
            cursor.execute(f"SELECT * FROM ({form}) f LIMIT 0")
            types.append([f"{column.name} {column.type_code}" for column in cursor.description])
        else:
            cursor.execute(f"DESCRIBE {form}")
            types.append([f"{name} {kind}" for name, kind, *_ in cursor.fetchall()])
    assert types[0] == types[1], types
    return missing[0], missing[1], types[1]


def plan_kind(plan: str) -> str:
    """The aggregate and sort nodes of a plan (PostgreSQL: in order, with their sort methods and spills;
    DuckDB: its operators and how many of each)."""
    if "╭─" in plan:  # DuckDB
        operators: dict[str, int] = {}
        for name in re.findall(r"╭─ ([A-Za-z_ ]+?) ─", plan):
            if name not in ("Projection", "Summary"):
                operators[name] = operators.get(name, 0) + 1
        return ", ".join(f"{name} x{n}" for name, n in operators.items())
    kinds = []
    for line in plan.splitlines():
        text = line.strip().removeprefix("->").strip()
        if re.match(r"(Partial |Finalize )?(GroupAggregate|HashAggregate|MixedAggregate)|Gather|Sort  |Sort Method|"
                    r"Batches|Parallel Seq Scan on contact_activity|Nested Loop|Merge .*Join|Hash .*Join|CTE Scan|"
                    r"Materialize", text):
            loops = re.search(r"loops=(\d+)", text)
            kinds.append(text.split("  (")[0] + (f" (loops={loops[1]})" if loops and loops[1] != "1" else ""))
    return "; ".join(kinds)


def measure(client: Client, cursor: Any, form: str, postgres: bool) -> tuple[float, str, str]:
    """Time reconcile()'s counting query with `form` (PostgreSQL: EXPLAIN ANALYZE, which runs it; DuckDB: the
    reconcile() call, then EXPLAIN ANALYZE for the plan)."""
    with counts_form(form):
        client.statements.clear()
        if postgres:  # the statement only: it may run for long, and EXPLAIN ANALYZE runs it
            client.execute_sql = lambda sql, *params: (  # type: ignore[method-assign]
                Client.execute_sql(client, sql, *params) if "WITH counts AS" not in sql
                else client.statements.append((sql, params)) or []
            )
        started = time.perf_counter()
        found = reconcile(client, PROVIDER, ACCOUNT)  # type: ignore[arg-type]
        wall = time.perf_counter() - started
        vars(client).pop("execute_sql", None)
    sql, params = next((s, p) for s, p in client.statements if "WITH counts AS" in s)
    if client.inline:
        sql = sql.replace("WITH counts AS MATERIALIZED (", "WITH counts AS (")
    if postgres:
        try:
            cursor.execute("EXPLAIN (ANALYZE, TIMING OFF, BUFFERS) " + sql, params)
        except psycopg2.errors.QueryCanceled:
            cursor.execute("SHOW statement_timeout")
            timeout = cursor.fetchone()[0]
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            return math.inf, plan, f"cancelled after statement_timeout {timeout}"
        plan = "\n".join(row[0] for row in cursor.fetchall())
        return float(plan.rsplit("Execution Time: ", 1)[1].split()[0]) / 1000, plan, ""
    cursor.execute("EXPLAIN ANALYZE " + sql.replace("%s", "?"), params)
    return wall, cursor.fetchall()[0][1], f"{len(found)} discrepancies"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--destination", choices=("postgres", "duckdb"), default="postgres")
    parser.add_argument("--form", choices=("old", "new", "both"), default="both")
    parser.add_argument("--analyze", action="store_true", help="ANALYZE the tables first (PostgreSQL)")
    parser.add_argument("--no-analyze-run", action="store_true", help="also time the forms before the ANALYZE")
    parser.add_argument("--cte", choices=("materialized", "inline", "both"), default="materialized",
                        help="reconcile's counts CTE as it is now (MATERIALIZED) or inlined, as before")
    parser.add_argument("--timeout", default="0", help="PostgreSQL statement_timeout of each timing (0: none)")
    parser.add_argument("--check", action="store_true", help="compare the two forms' rows and types")
    parser.add_argument("--schema", default="counts_bench", help="the scratch schema (PostgreSQL)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch schema / file (then --reuse it)")
    parser.add_argument("--reuse", action="store_true", help="use the scratch schema / file a --keep run left")
    parser.add_argument("--plans", action="store_true", help="print the whole plans")
    args = parser.parse_args()
    postgres = args.destination == "postgres"
    folder = Path(tempfile.gettempdir()) / "campaign_sync_counts"
    if postgres:
        connection: Any = psycopg2.connect(POSTGRES_URL)
        connection.autocommit = True
        cursor = connection.cursor()
        cursor.execute("SHOW work_mem")
        print(f"PostgreSQL work_mem {cursor.fetchone()[0]}")
    else:
        folder.mkdir(exist_ok=True)
        connection = duckdb.connect(str(folder / "counts.duckdb"))
        cursor = connection
    client = Client(connection, args.schema, qmark=not postgres)
    try:
        if not args.reuse:
            started = time.perf_counter()
            build(cursor, args.schema, args.rows, postgres)
            print(f"built in {time.perf_counter() - started:.1f} s")
        print(shape(cursor, args.schema))  # also reads every page once (hint bits) before the timings
        if postgres:
            cursor.execute(f"SET statement_timeout = '{args.timeout}'")
        forms = ("old", "new") if args.form == "both" else (args.form,)
        ctes = ("materialized", "inline") if args.cte == "both" else (args.cte,)
        runs = [False, True] if args.no_analyze_run and args.analyze else [args.analyze]
        for analyzed in runs:
            if analyzed and postgres:
                for table in ("contact_activity", "campaigns", "campaign_summaries"):  # what after_load does
                    started = time.perf_counter()
                    cursor.execute(f"ANALYZE {args.schema}.{table}")
                    print(f"ANALYZE {table}: {time.perf_counter() - started:.2f} s")
            statistics = 0
            if postgres:
                cursor.execute(
                    "SELECT count(*) FROM pg_stats WHERE schemaname = %s AND tablename = 'contact_activity'",
                    (args.schema,),
                )
                statistics = cursor.fetchone()[0]
                print(f"columns with statistics: {statistics}")
            for form in forms:
                for cte in ctes:
                    client.inline = cte == "inline"
                    seconds, plan, note = measure(client, cursor, form, postgres)
                    label = ("with statistics" if statistics else "no statistics") if postgres else ""
                    print(f"{args.destination} {form} counts, {cte} CTE{label and ', '}{label}: {seconds:.2f} s {note}",
                          flush=True)
                    print(f"  plan: {plan_kind(plan)}", flush=True)
                    if args.plans:
                        print(plan)
        if args.check:
            old_only, new_only, types = same_results(cursor, args.schema, postgres)
            print(f"old EXCEPT ALL new: {old_only} rows; new EXCEPT ALL old: {new_only} rows; types {types}")
    finally:
        if not args.keep:
            if postgres:
                cursor.execute(f"DROP SCHEMA IF EXISTS {args.schema} CASCADE")
            else:
                connection.close()
                (folder / "counts.duckdb").unlink(missing_ok=True)
                folder.rmdir()
        connection.close()


if __name__ == "__main__":
    main()
