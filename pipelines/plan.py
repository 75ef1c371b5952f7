"""`campaign-sync plan`: the requests a backfill (or tonight's run) will make, and the days of quota they are.

Only the provider's listing calls are made (its campaigns, and where it has them its bulk
summaries); what the dataset already holds decides what tonight's run reads again.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pendulum

from pipelines.dlt_adapter import DestinationUndefinedEntity, ResourceExtractionError, source_state
from pipelines.providers import Provider
from pipelines.reconcile import existing_tables
from pipelines.runner import Target, _unwrap, accountless_tables, build_source, dataset_client, pipeline_view
from sources.canonical import (
    OWNER_FILTER,
    CampaignCost,
    LoadedRows,
    RequestEstimate,
    SyncPlan,
    backfill_estimate,
    nightly_estimate,
)
from sources.canonical.times import parse_utc
from sources.constant_contact_v3.client import XREF_BATCH
from sources.errors import ConfigurationError


def plan_provider(
    provider: Provider, target: Target, since: datetime | None = None, until: datetime | None = None
) -> dict[str, Any]:
    """The estimate for one account, as JSON-ready values: a backfill of [since, until), or tonight's run.
    Reads only: no file, table or state is created or changed."""
    with dataset_client(target, read_only=True) as client:
        if client is not None and accountless_tables(client.sql_client):  # `run` upgrades it: plan only reads
            raise ConfigurationError(
                f"dataset {target.dataset!r} was loaded by a release before accounts: the next "
                f"`campaign-sync run` upgrades it in place; plan it after that"
            )
        state, _pending = pipeline_view(provider, target, client)
        first_run = not state.get("sources", {}).get(provider.name)
        loaded, loaded_rows = ({}, {}) if first_run or client is None else _loaded(client.sql_client, provider)
        plan = SyncPlan(account=provider.account)
        # the source reads the pipeline's state as a run would; a copy, so nothing of it is kept
        with source_state(copy.deepcopy(state)):
            source = build_source(provider, _ReadOnly(client), plan)
            try:
                costs: list[CampaignCost] = list(source.resources["campaign_costs"])  # dlt passes them one by one
            except ResourceExtractionError as failure:  # the provider's own error, as `run` reports it
                raise _unwrap(failure, provider) from None
    http = plan.outcome.http
    assert http is not None  # the source's resources were built
    listing = http.requests_made
    if since is not None:
        estimate = backfill_estimate(costs, listing, since, until, loaded, loaded_rows)
        run = f"backfill since {since.date().isoformat()}" + (f" until {until.date().isoformat()}" if until else "")
    elif first_run:
        start_date = parse_utc(provider.configured("start_date"))
        estimate = backfill_estimate(costs, listing, start_date, None, loaded, loaded_rows)
        run = "tonight's run (the first: every campaign since START_DATE)" if start_date else (
            "tonight's run (the first: all history)"
        )
    else:
        window = timedelta(days=int(provider.configured("attribution_window_days")))
        estimate = nightly_estimate(costs, listing, loaded, loaded_rows, pendulum.now("UTC"), window)
        run = "tonight's run"
    # v3 asks which v3 campaign each v2 campaign of the dataset is, once (see `build_source`)
    estimate.lookups += math.ceil(len(plan.unmapped_v2_campaigns) / XREF_BATCH)
    return _as_dict(provider, run, estimate, http.requests_per_second, http.daily_quota)


class _ReadOnly:
    """A read-only `dataset_client` where `build_source` takes a pipeline: its `sql_client()`."""

    def __init__(self, client: Any | None) -> None:
        self.client = client

    @contextmanager
    def sql_client(self) -> Iterator[Any]:
        if self.client is None:
            raise DestinationUndefinedEntity("no dataset yet")
        yield self.client.sql_client


def _loaded(client: Any, provider: Provider) -> tuple[dict[str, datetime | None], dict[tuple[str, str], LoadedRows]]:
    """The account's campaigns in the dataset with their send times, and its rows per (campaign, kind)."""
    tables = existing_tables(client)

    def rows(sql: str) -> list[tuple[Any, ...]]:
        return list(client.execute_sql(sql, provider.name, provider.account) or ())

    def table(name: str) -> str:
        return str(client.make_qualified_table_name(name))

    campaigns: dict[str, datetime | None] = {}
    if "campaigns" in tables:
        sql = f"SELECT campaign_id, sent_at FROM {table('campaigns')} WHERE {OWNER_FILTER}"
        campaigns = {str(cid): sent for cid, sent in rows(sql)}
    sizes: dict[tuple[str, str], LoadedRows] = {}
    if "contact_activity" in tables:
        lookback = int(provider.configured("lookback_minutes"))
        sql = (
            "SELECT campaign_id, activity_type, count(*), "
            f"sum(CASE WHEN occurred_at >= newest - INTERVAL '{lookback} minutes' THEN 1 ELSE 0 END) "
            "FROM (SELECT campaign_id, activity_type, occurred_at, "
            "max(occurred_at) OVER (PARTITION BY campaign_id, activity_type) AS newest "
            f"FROM {table('contact_activity')} WHERE {OWNER_FILTER}) AS events GROUP BY 1, 2"
        )
        sizes |= {(str(c), str(k)): LoadedRows(int(n), int(recent or 0)) for c, k, n, recent in rows(sql)}
    if "campaign_non_engagement" in tables:
        sql = (
            f"SELECT campaign_id, kind, count(*) FROM {table('campaign_non_engagement')} "
            f"WHERE {OWNER_FILTER} GROUP BY 1, 2"
        )
        sizes |= {(str(c), str(k)): LoadedRows(int(n), int(n)) for c, k, n in rows(sql)}
    return campaigns, sizes


def _as_dict(
    provider: Provider, run: str, estimate: RequestEstimate, requests_per_second: float, daily_quota: int | None
) -> dict[str, Any]:
    requests = estimate.requests
    return {
        "provider": provider.name,
        "account": provider.account,
        "api_version": provider.api_version,
        "run": run,
        "requests": requests,
        "at_least": estimate.lower_bound,
        "campaigns": estimate.campaigns,
        "listing_requests": estimate.listing,
        "lookups": estimate.lookups,
        "summaries": estimate.summaries,
        "report_pages": estimate.report_pages,
        "reports_of_unknown_size": estimate.unknown_reports,
        "daily_quota": daily_quota,
        "quota_days": round(requests / daily_quota, 2) if daily_quota else None,
        "requests_per_second": requests_per_second,
        "hours_at_budget": round(requests / requests_per_second / 3600, 2) if requests_per_second else None,
    }


def print_plan(plans: list[dict[str, Any]], as_json: bool = False) -> int:
    """Print each account's estimate (text, or one JSON document); return the exit code."""
    if as_json:
        print(json.dumps(plans, indent=2))
        return 0
    for plan in plans:
        print("\n".join(_text(plan)))
    return 0


def _text(plan: dict[str, Any]) -> list[str]:
    label = plan["provider"] if plan["account"] == "default" else f"{plan['provider']}/{plan['account']}"
    about = "at least" if plan["at_least"] else "about"
    api = f" (API {plan['api_version']})" if plan["api_version"] else ""
    lines = [
        f"{label}{api}: {plan['run']}: {about} {plan['requests']:,} requests",
        f"  campaigns read: {plan['campaigns']:,}",
        f"  listings: {plan['listing_requests']:,} requests (made by this plan); contacts: at least 1",
        f"  lookups (one request per item its listing does not detail): {plan['lookups']:,}; "
        f"summaries: {plan['summaries']:,}",
        f"  report pages: {plan['report_pages']:,}",
    ]
    if plan["reports_of_unknown_size"]:
        lines.append(
            f"  {plan['reports_of_unknown_size']:,} reports read whole have no listed size: one page each is counted"
        )
    if plan["daily_quota"]:
        share = plan["requests"] / plan["daily_quota"]
        runs = math.ceil(share)
        days = f"{share:.1%} of one day's quota" if runs <= 1 else f"{share:,.2f} days ({runs} runs of a day's quota)"
        lines.append(
            f"  daily quota: {plan['daily_quota']:,} requests, shared by every account of the application: {days}"
        )
    else:
        lines.append("  daily quota: none documented")
    if plan["hours_at_budget"] is not None:
        lines.append(f"  at {plan['requests_per_second']:g} requests a second: {plan['hours_at_budget']:,.2f} hours")
    return lines
