"""`campaign-sync demo`: the sandbox, a load of every provider into DuckDB, and what arrived."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from pipelines.providers import PROVIDERS
from pipelines.runner import DEMO_DUCKDB, DEMO_PIPELINES, Target, pipeline, report_results, run_provider
from sandbox import Sandbox

# per API, as each provider counts its own campaigns: the sums of `campaign_engagement`
ENGAGEMENT_SQL = """
SELECT provider, count(*) AS campaigns, sum(sent), sum(delivered), sum(unique_opens), sum(unique_clicks),
       sum(bounces), sum(unsubscribes)
FROM {table} GROUP BY provider ORDER BY provider
"""


def run_demo(args: argparse.Namespace) -> int:
    """Load the sandbox's data of every provider into a fresh demo DuckDB file (its own, `DEMO_DUCKDB`, with
    its pipelines in `DEMO_PIPELINES`: what an earlier demo left is dropped) and summarise it."""
    target = Target(destination="duckdb", duckdb_path=DEMO_DUCKDB, pipelines_dir=DEMO_PIPELINES, progress=args.progress)
    Path(DEMO_DUCKDB).unlink(missing_ok=True)
    shutil.rmtree(DEMO_PIPELINES, ignore_errors=True)
    with Sandbox() as sandbox:
        os.environ.update(sandbox.environment())
        print(f"sandbox on {sandbox.url}; loading into {target.duckdb_path}")
        results = [run_provider(provider, target) for provider in PROVIDERS.values()]
    exit_code = report_results(results, quiet=False)
    with pipeline(next(iter(PROVIDERS.values())), target).sql_client() as client:
        table = client.make_qualified_table_name("campaign_engagement")
        rows = [tuple(row) for row in client.execute_sql(ENGAGEMENT_SQL.format(table=table)) or ()]
    print("\n" + "\n".join(engagement_lines(rows)))
    query = "SELECT * FROM contact_activity LIMIT 10"
    print(f"\nquery it: campaign-sync sql --duckdb-path {target.duckdb_path} \"{query}\"")
    return exit_code


def engagement_lines(rows: list[tuple[Any, ...]]) -> list[str]:
    """The demo's summary of `ENGAGEMENT_SQL`'s rows: a title that says what is counted, then a line per API."""
    header = (
        ("campaigns", 10), ("sent", 8), ("delivered", 11), ("open rate", 11), ("click rate", 12), ("bounces", 9),
        ("unsubs", 8),
    )
    lines = [
        "engagement by provider (campaign_engagement: each API's sent campaigns and its own events;",
        "rates of delivered; campaign_engagement_unified counts an event both Constant Contact APIs gave once):",
        f"  {'provider':<22}" + "".join(f"{title:>{width}}" for title, width in header),
    ]
    for provider, campaigns, sent, delivered, opens, clicks, bounces, unsubscribes in rows:
        open_rate = f"{opens / delivered:.1%}" if delivered else "-"
        click_rate = f"{clicks / delivered:.1%}" if delivered else "-"
        lines.append(
            f"  {provider:<22}{campaigns:>10}{sent:>8}{delivered:>11}{open_rate:>11}{click_rate:>12}{bounces:>9}"
            f"{unsubscribes:>8}"
        )
    return lines
