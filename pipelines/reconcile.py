"""Load reconciliation: the loaded counts per campaign against the provider's own summary counts.

The loaded counts are those of the `campaign_engagement` view (pipelines/views.py): counted by
its `CAMPAIGN_COUNTS`, the one place that says how `contact_activity` counts sends, unique opens
and clicks, bounces and unsubscribes, over the events of the campaigns compared only (a run
compares the campaigns its load changed, `status` every one).

A difference is a data-quality signal (events a report did not return, rows deleted by hand, a
provider whose summary counts differently), never a failure: it is printed after a run and
shown by `campaign-sync status`, and the exit code stays what the load made it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any

from pipelines.dlt_adapter import SqlClientBase

# a difference is reported when it is larger than both of these
MIN_DIFFERENCE = 1
MIN_SHARE = 0.02

# (label, campaign_summaries column, views.CAMPAIGN_COUNTS column) of what is compared
MEASURES = (
    ("sent", "sent", "sent"),
    ("unique opens", "opened_unique", "unique_opens"),
    ("unique clicks", "clicked_unique", "unique_clicks"),
    ("bounces", "bounced", "bounced"),
    ("unsubscribes", "unsubscribed", "unsubscribes"),
)


@dataclass(frozen=True)
class Discrepancy:
    """One count of one campaign that differs between the loaded events and the provider's summary."""

    provider: str
    campaign_id: str
    campaign_name: str | None
    measure: str
    loaded: int
    reported: int

    @property
    def message(self) -> str:
        """One line naming the campaign, the measure and both counts."""
        name = f" ({self.campaign_name})" if self.campaign_name else ""
        share = f"{(self.loaded - self.reported) / self.reported:+.1%}" if self.reported else "n/a"
        return (
            f"campaign {self.campaign_id}{name}: {self.measure} loaded {self.loaded}, "
            f"provider reports {self.reported} ({share})"
        )

    def as_dict(self) -> dict[str, Any]:
        """The discrepancy as plain JSON-ready values, with its message."""
        return {**asdict(self), "message": self.message}


def existing_tables(client: SqlClientBase[Any]) -> set[str]:
    """The tables present in the client's dataset (standard `information_schema`)."""
    rows = client.execute_sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", client.dataset_name
    )
    return {row[0] for row in rows or ()}


def table_columns(client: Any, schema: str) -> dict[str, list[str]]:
    """The base tables (not views) of a schema, with their columns."""
    rows = client.execute_sql(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c "
        "JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
        "WHERE c.table_schema = %s AND t.table_type = 'BASE TABLE' ORDER BY c.table_name, c.ordinal_position",
        schema,
    )
    tables: dict[str, list[str]] = {}
    for table, column in rows or []:
        tables.setdefault(table, []).append(column)
    return tables


def is_significant(loaded: int, reported: int) -> bool:
    """Whether a difference is above the threshold: more than MIN_DIFFERENCE and more than MIN_SHARE."""
    difference = abs(loaded - reported)
    return difference > MIN_DIFFERENCE and difference > MIN_SHARE * max(reported, 1)


def summary_counts(client: SqlClientBase[Any], provider: str, account: str) -> dict[str, tuple[Any, ...]]:
    """The compared summary counts of each campaign of `provider`'s `account`, as loaded now."""
    if "campaign_summaries" not in existing_tables(client):
        return {}
    columns = ", ".join(reported for _label, reported, _loaded in MEASURES)
    rows = client.execute_sql(
        f"SELECT campaign_id, {columns} FROM {client.make_qualified_table_name('campaign_summaries')} "
        "WHERE provider = %s AND account = %s",
        provider, account,
    )
    return {campaign_id: tuple(counts) for campaign_id, *counts in rows or ()}


def reconcile(
    client: SqlClientBase[Any], provider: str, account: str, campaigns: Collection[str] | None = None
) -> list[Discrepancy]:
    """Compare, per campaign with a summary (of `campaigns`; None: all), the loaded counts (as the
    `campaign_engagement` view counts them) with the provider's."""
    from pipelines.views import CAMPAIGN_COUNTS  # views reads this module's table helpers

    if not {"campaign_summaries", "campaigns", "contact_activity"} <= existing_tables(client):
        return []
    if campaigns is not None and not campaigns:
        return []
    table = client.make_qualified_table_name
    among, chosen = "", sorted(campaigns or ())
    if campaigns is not None:
        among = f" AND campaign_id IN ({', '.join(['%s'] * len(chosen))})"
    events = f"{table('contact_activity')} WHERE provider = %s AND account = %s{among}"
    columns = ", ".join(f"s.{reported}, coalesce(a.{loaded}, 0)" for _label, reported, loaded in MEASURES)
    # the campaign_engagement view's rows: the sent campaigns, with their events' counts, counted once
    # (MATERIALIZED): PostgreSQL, taking a table without statistics for a few rows, joined them in a
    # nested loop that counted all the events again for every campaign (over 5 minutes at 10M events)
    sql = f"""
        WITH counts AS MATERIALIZED ({CAMPAIGN_COUNTS.replace("{events}", events)})
        SELECT s.campaign_id, c.name, {columns}
        FROM {table("campaign_summaries")} s
        LEFT JOIN {table("campaigns")} c
            ON c.provider = s.provider AND c.account = s.account AND c.campaign_id = s.campaign_id
           AND c.sent_at IS NOT NULL
        LEFT JOIN counts a ON a.provider = c.provider AND a.account = c.account AND a.campaign_id = c.campaign_id
        WHERE s.provider = %s AND s.account = %s{among.replace("campaign_id", "s.campaign_id")}
        ORDER BY s.campaign_id
    """
    found = []
    params = [provider, account, *chosen]
    for campaign_id, name, *counts in client.execute_sql(sql, *params, *params) or ():
        for index, (label, _reported, _loaded) in enumerate(MEASURES):
            reported, loaded = counts[2 * index], counts[2 * index + 1]
            if reported is not None and is_significant(int(loaded), int(reported)):
                found.append(Discrepancy(provider, campaign_id, name, label, int(loaded), int(reported)))
    return found
