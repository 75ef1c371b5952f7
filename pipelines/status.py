"""`campaign-sync status`: per provider, the last load, row counts, the time range of the events,
the campaigns inside the attribution window, the cursors (of the campaigns not closed yet) and the load
reconciliation.

What a run knows (rows by table, requests, duration) comes from the record the runner keeps in
the pipeline's local state; everything else from the destination (standard SQL through the
pipeline's sql_client, so DuckDB and PostgreSQL alike) and from the state dlt keeps there.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pipelines.dlt_adapter import local_state
from pipelines.erasure import erasure_count
from pipelines.providers import Provider
from pipelines.reconcile import existing_tables, reconcile
from pipelines.runner import LAST_RUN, LAST_SUCCESS, Target, dataset_client, pipeline_view
from sources.canonical import CANONICAL_TABLES, DEFAULT_ACCOUNT, OWNER_FILTER
from sources.redaction import LINE_CHARACTERS, printable


def attribution_window_days(provider: Provider) -> int:
    """The provider's ATTRIBUTION_WINDOW_DAYS setting (environment or .dlt/config.toml, else its source's default)."""
    return int(provider.configured("attribution_window_days"))


def provider_status(provider: Provider, target: Target, client: Any | None) -> dict[str, Any]:
    """What is known of a provider's loads, as JSON-ready values; `loaded` is False when never loaded.
    `client` is a read-only `dataset_client` (None: no dataset)."""
    state, pending = pipeline_view(provider, target, client)
    source_state = state.get("sources", {}).get(provider.name) or {}
    local = local_state(state)
    last_run = local.get(LAST_RUN)
    failed = last_run if last_run and last_run.get("error") else None
    if not source_state or client is None:
        return {
            "provider": provider.name, "account": provider.account, "loaded": False, "last_run_error": failed,
            "pending_packages": pending, "api_version": provider.api_version,
        }
    activity = source_state.get("resources", {}).get("contact_activity", {})
    cursors = activity.get("cursors", {})
    closed = {campaign for campaigns in activity.get("closed", {}).values() for campaign in campaigns}
    window = attribution_window_days(provider)
    status: dict[str, Any] = {
        "provider": provider.name,
        "account": provider.account,
        "api_version": provider.api_version,
        "loaded": True,
        "pipeline": provider.pipeline_name,
        "last_successful_load": local.get(LAST_SUCCESS),
        "last_run_error": failed,
        "pending_packages": pending,
        "attribution_window_days": window,
        "cursors": [
            {"key": key, **{name: cursor.get(name) for name in ("campaign_id", "report", "cursor", "read_at")}}
            for key, cursor in sorted(cursors.items())
        ],
        "closed_campaigns": len(closed),
    }
    schema_name = state.get("default_schema_name") or provider.name
    status.update(_from_tables(client.sql_client, provider, schema_name, window))
    return status


def _from_tables(client: Any, provider: Provider, schema_name: str, window: int) -> dict[str, Any]:
    tables = existing_tables(client)
    table = client.make_qualified_table_name

    owner = (provider.name, provider.account)

    def rows(sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return list(client.execute_sql(sql, *params) or ())

    found: dict[str, Any] = {"rows": {}, "occurred_at": None, "open_campaigns": [], "last_loaded_at": None}
    if "_dlt_loads" in tables:
        sql = f"SELECT max(inserted_at) FROM {table('_dlt_loads')} WHERE schema_name = %s AND status = 0"
        found["last_loaded_at"] = _iso(rows(sql, schema_name)[0][0])
    for name in CANONICAL_TABLES:
        if name in tables:
            found["rows"][name] = rows(f"SELECT count(*) FROM {table(name)} WHERE {OWNER_FILTER}", *owner)[0][0]
    if "contact_activity" in tables:
        sql = f"SELECT min(occurred_at), max(occurred_at) FROM {table('contact_activity')} WHERE {OWNER_FILTER}"
        oldest, newest = rows(sql, *owner)[0]
        found["occurred_at"] = {"oldest": _iso(oldest), "newest": _iso(newest)}
    if "campaigns" in tables:
        close = timedelta(days=window)
        since = datetime.now(UTC) - close
        sql = (
            f"SELECT campaign_id, name, sent_at, status FROM {table('campaigns')} "
            f"WHERE {OWNER_FILTER} AND sent_at > %s ORDER BY sent_at, campaign_id"
        )
        # with the provider's status: a campaign deleted at the provider (v2 `DELETED`) is not read again
        found["open_campaigns"] = [
            {"campaign_id": cid, "name": name, "sent_at": _iso(sent), "window_closes": _iso(sent + close),
             "status": status}
            for cid, name, sent, status in rows(sql, *owner, since)
        ]
    found["erasures"] = erasure_count(client, *owner)
    found["reconciliation"] = [difference.as_dict() for difference in reconcile(client, *owner)]
    return found


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def print_status(target: Target, providers: list[Provider], as_json: bool = False) -> int:
    """Print the status of every provider, as text or as one JSON document; exit code 0. Reads only:
    no file, table or state is created or changed."""
    with dataset_client(target, read_only=True) as client:
        statuses = [provider_status(provider, target, client) for provider in providers]
    if as_json:
        print(json.dumps({"providers": statuses}, indent=2))
        return 0
    for status in statuses:
        # provider text (campaign names and ids) escaped and shortened, as in every message
        print("\n".join(printable(line, LINE_CHARACTERS) for line in _text(status)))
    return 0


def _text(status: dict[str, Any]) -> list[str]:
    name = status["provider"] if status["account"] == DEFAULT_ACCOUNT else f"{status['provider']}/{status['account']}"
    failed = status["last_run_error"]
    failure = [f"  last run failed {failed['finished_at']}: {failed['error']}"] if failed else []
    if status["pending_packages"]:
        failure.append(
            f"  pending load packages: {', '.join(status['pending_packages'])} (the next run loads them first; "
            f"`campaign-sync abort-pending {name}` drops them and their data is read again)"
        )
    api = [f"  API {status['api_version']} (API_VERSION)"] if status["api_version"] else []
    if not status["loaded"]:
        return [f"{name}: never loaded", *api, *failure]
    last = status["last_successful_load"]
    if last is not None:
        lines = [f"{name}: last load {last['finished_at']} ({last['seconds']:.1f}s, {last['requests']} requests)"]
        loaded = ", ".join(f"{table} {n}" for table, n in sorted(last["rows"].items())) or "nothing new"
        lines.append(f"  rows loaded then: {loaded}")
    else:
        loaded_at = status["last_loaded_at"] or "unknown"
        lines = [f"{name}: last load {loaded_at} (no finished run recorded on this machine)"]
    lines.extend([*api, *failure])
    for table, count in status["rows"].items():
        lines.append(f"  {table}: {count} rows")
    if status["occurred_at"] is not None:
        occurred = status["occurred_at"]
        lines.append(f"  occurred_at: oldest {occurred['oldest']}, newest {occurred['newest']}")
    lines.append(f"  erasures: {status['erasures']} contacts forgotten (their events kept, no personal data)")
    window = status["attribution_window_days"]
    lines.append(f"  campaigns in the attribution window ({window} days): {len(status['open_campaigns'])}")
    for campaign in status["open_campaigns"]:
        lines.append(
            f"    {campaign['campaign_id']} {campaign['name'] or ''}: sent {campaign['sent_at']}, "
            f"window closes {campaign['window_closes']}, status {campaign['status'] or 'unknown'}"
        )
    lines.append(f"  cursors: {len(status['cursors'])} (the newest occurred_at loaded, per campaign and report)")
    by_campaign: dict[str, list[str]] = {}
    for cursor in status["cursors"]:
        campaign = cursor["key"].rsplit(":", 1)[0]
        by_campaign.setdefault(campaign, []).append(f"{cursor['report']} {cursor['cursor'] or '-'}")
    lines.extend(f"    {campaign}: {', '.join(reports)}" for campaign, reports in by_campaign.items())
    lines.append(
        f"  closed campaigns: {status['closed_campaigns']} (past the attribution window: no cursors kept, "
        "only `backfill` reads them again)"
    )
    # what is compared: this API's own events per campaign (campaign_engagement) with its summaries
    counted = "this API's events per campaign (campaign_engagement)"
    if status["reconciliation"]:
        lines.append(
            f"  reconciliation of {counted}: {len(status['reconciliation'])} differences from the provider's summaries"
        )
        lines.extend(f"    warning: {found['message']}" for found in status["reconciliation"])
    else:
        lines.append(f"  reconciliation of {counted}: they agree with the provider's summaries")
    return lines
