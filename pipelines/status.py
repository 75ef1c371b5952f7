"""`campaign-sync status`: per provider, the last load, row counts, cursors and open campaigns."""

from __future__ import annotations

import contextlib
from typing import Any

from pipelines.providers import Provider
from pipelines.runner import Target, pipeline

TABLES = ("campaigns", "contact_activity", "campaign_non_engagement", "contacts", "campaign_summaries")


def provider_status(provider: Provider, target: Target) -> dict[str, Any]:
    """What is known of a provider's loads: state from the pipeline, counts from the tables."""
    load = pipeline(provider, target)
    with contextlib.suppress(Exception):  # nothing loaded yet, or the destination is not there
        load.sync_destination()
    source_state = load.state.get("sources", {}).get(provider.name)
    if not source_state:
        return {"provider": provider.name, "loaded": False}
    cursors = source_state.get("resources", {}).get("contact_activity", {}).get("cursors", {})
    trace = load.last_trace
    status: dict[str, Any] = {
        "provider": provider.name,
        "loaded": True,
        "last_load": trace.finished_at.isoformat() if trace is not None and trace.finished_at else None,
        "cursors": {key: value.get("cursor") for key, value in sorted(cursors.items())},
        "rows": {},
    }
    with load.sql_client() as client:
        for table in TABLES:
            name = client.make_qualified_table_name(table)
            try:
                rows = client.execute_sql(f"SELECT count(*) FROM {name} WHERE provider = %s", provider.name)
            except Exception:  # the table does not exist yet
                continue
            status["rows"][table] = rows[0][0]
    return status


def print_status(target: Target, providers: list[Provider]) -> int:
    """Print the status of every provider; exit code 0."""
    for provider in providers:
        status = provider_status(provider, target)
        if not status["loaded"]:
            print(f"{provider.name}: never loaded")
            continue
        print(f"{provider.name}: last load {status['last_load'] or 'unknown'}")
        for table, count in status["rows"].items():
            print(f"  {table}: {count} rows")
        print(f"  cursors: {len(status['cursors'])} (campaign:report)")
        for key, cursor in status["cursors"].items():
            print(f"    {key}: {cursor or '-'}")
    return 0
