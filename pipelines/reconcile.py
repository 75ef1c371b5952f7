"""Load reconciliation: the loaded counts per campaign against the provider's own summary counts.

The loaded counts are those of the `campaign_engagement` view (pipelines/views.py), the one
place that says how `contact_activity` counts sends, unique opens and clicks, bounces and
unsubscribes.

A difference is a data-quality signal (events a report did not return, rows deleted by hand, a
provider whose summary counts differently), never a failure: it is printed after a run and
shown by `campaign-sync status`, and the exit code stays what the load made it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dlt.destinations.sql_client import SqlClientBase

# a difference is reported when it is larger than both of these
MIN_DIFFERENCE = 1
MIN_SHARE = 0.02

# (label, campaign_summaries column, campaign_engagement column) of what is compared
MEASURES = (
    ("sent", "sent", "sent"),
    ("unique opens", "opened_unique", "unique_opens"),
    ("unique clicks", "clicked_unique", "unique_clicks"),
    ("bounces", "bounced", "bounces"),
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


def reconcile(client: SqlClientBase[Any], provider: str, account: str) -> list[Discrepancy]:
    """Compare, per campaign with a summary, the loaded counts (the `campaign_engagement` view) with the provider's."""
    if not {"campaign_summaries", "campaign_engagement"} <= existing_tables(client):
        return []
    table = client.make_qualified_table_name
    columns = ", ".join(f"s.{reported}, coalesce(e.{loaded}, 0)" for _label, reported, loaded in MEASURES)
    sql = f"""
        SELECT s.campaign_id, e.name, {columns}
        FROM {table("campaign_summaries")} s
        LEFT JOIN {table("campaign_engagement")} e
            ON e.provider = s.provider AND e.account = s.account AND e.campaign_id = s.campaign_id
        WHERE s.provider = %s AND s.account = %s
        ORDER BY s.campaign_id
    """
    found = []
    for campaign_id, name, *counts in client.execute_sql(sql, provider, account) or ():
        for index, (label, _reported, _loaded) in enumerate(MEASURES):
            reported, loaded = counts[2 * index], counts[2 * index + 1]
            if reported is not None and is_significant(int(loaded), int(reported)):
                found.append(Discrepancy(provider, campaign_id, name, label, int(loaded), int(reported)))
    return found
