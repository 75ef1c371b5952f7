"""The canonical tables every provider loads into: their names, keys, write dispositions and column types."""

from __future__ import annotations

import json
from typing import Any, Required, TypedDict

from sources.dlt_adapter import TColumnNames, TColumnSchema, TTableSchemaColumns, TWriteDisposition
from sources.errors import UnusableValue
from sources.redaction import printable

ACTIVITY_TYPES = ("sent", "opened", "clicked", "bounced", "unsubscribed", "complained", "forwarded")
NON_ENGAGEMENT_KINDS = ("not_opened", "not_clicked")
# Constant Contact's bounce codes (v2 and v3 alike) -> canonical bounce_type
BOUNCE_TYPES = {"B": "hard", "D": "hard", "Z": "hard", "F": "soft", "S": "soft", "V": "soft", "X": "other"}
SNAPSHOT_RESET = "_snapshot_reset"
# the account of a provider's top-level settings; named accounts are tables under `accounts`
DEFAULT_ACCOUNT = "default"
# the columns every canonical table has, first in its key: whose data a row is
OWNER = ("provider", "account")
# SQL: the rows of one provider's account (two parameters)
OWNER_FILTER = "provider = %s AND account = %s"

Row = dict[str, Any]


def provider_id(value: Any, what: str = "id") -> str:
    """A provider's id as text: text as it is, a whole number written out. Anything else (an object, a
    list, a boolean, a fraction, empty text) is no id: `UnusableValue` names it (`what`)."""
    if isinstance(value, str) and value not in ("", ".", ".."):  # those would not stay one path segment
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    raise UnusableValue(f"{what} {printable(json.dumps(value, default=str))} is not an id")


def optional_id(value: Any, what: str = "id") -> str | None:
    """`provider_id`, or None where there is none."""
    return None if value is None else provider_id(value, what)


def stamp(rows: list[Row], provider: str, account: str) -> None:
    """Mark rows with the provider and account they come from: every canonical table has both."""
    for row in rows:
        row["provider"] = provider
        row["account"] = account


class TableHints(TypedDict, total=False):
    """A canonical table's dlt resource hints: the keyword arguments of `dlt.resource`."""

    name: Required[str]
    write_disposition: TWriteDisposition
    primary_key: TColumnNames
    merge_key: TColumnNames
    columns: TTableSchemaColumns


def _columns(
    text: tuple[str, ...] = (), timestamp: tuple[str, ...] = (), bigint: tuple[str, ...] = ()
) -> TTableSchemaColumns:
    typed: list[tuple[tuple[str, ...], Any]] = [(text, "text"), (timestamp, "timestamp"), (bigint, "bigint")]
    columns: TTableSchemaColumns = {}
    for names, data_type in typed:
        columns.update({name: TColumnSchema(data_type=data_type) for name in names})
    return columns


CAMPAIGNS: TableHints = {
    "name": "campaigns",
    "write_disposition": "merge",
    "primary_key": [*OWNER, "campaign_id"],
    "columns": {
        **_columns(
            text=(*OWNER, "campaign_id", "name", "subject", "status", "from_name", "from_email"),
            timestamp=("created_at", "sent_at", "updated_at"),
        ),
        "list_ids": {"data_type": "json"},
    },
}
CAMPAIGN_ACTIVITIES: TableHints = {
    "name": "campaign_activities",
    "write_disposition": "merge",
    "primary_key": [*OWNER, "campaign_activity_id"],
    "columns": _columns(text=(*OWNER, "campaign_activity_id", "campaign_id", "role", "status", "subject")),
}
CONTACT_ACTIVITY: TableHints = {
    "name": "contact_activity",
    "write_disposition": "merge",
    "primary_key": "activity_id",
    "columns": _columns(
        text=(
            "activity_id", *OWNER, "campaign_id", "campaign_activity_id", "contact_id", "email_address",
            "activity_type", "url", "device_type", "bounce_type", "reason",
        ),
        timestamp=("occurred_at",),
    ),
}
CAMPAIGN_NON_ENGAGEMENT: TableHints = {
    "name": "campaign_non_engagement",
    # Unique on (provider, account, campaign_id, kind, contact_id), which the snapshot read guarantees; only
    # the merge key is declared: with a primary key too, dlt deletes on `pk OR merge key`, a join
    # DuckDB cannot hash (dlt issue 2752) whose cost is the product of the two tables.
    "write_disposition": "merge",  # dlt's default merge strategy, delete-insert
    "merge_key": [*OWNER, "campaign_id", "kind"],
    "columns": {
        **_columns(text=(*OWNER, "campaign_id", "kind", "contact_id", "email_address"), timestamp=("as_of",)),
        # a marker row that deletes a campaign's previous snapshot; never stored itself
        SNAPSHOT_RESET: {"data_type": "bool", "hard_delete": True},
    },
}
# a contacts row's digest of itself as loaded (`resources.contact_digest`): a run passes on only the contacts
# whose digest the table does not hold. Not kept after an erasure (it is not in KEPT_AFTER_ERASURE): the
# erased row is loaded again, as the run scrubs it, the next time it is listed
CONTACT_DIGEST = "row_digest"
# changed when what a digest covers changes, so that every contact loads again once
CONTACT_DIGEST_VERSION = 1
CONTACTS: TableHints = {
    "name": "contacts",
    "write_disposition": "merge",
    "primary_key": [*OWNER, "contact_id"],
    "columns": {
        **_columns(
            text=(*OWNER, "contact_id", "email_address", "status", CONTACT_DIGEST),
            timestamp=("created_at", "updated_at"),
        ),
        "deleted": {"data_type": "bool"},  # deleted at the provider (EmailOctopus, v3) or REMOVED (v2)
    },
}
SUMMARY_COUNTS = (
    "sent", "delivered", "opened_unique", "opened_total", "clicked_unique", "clicked_total",
    "bounced", "unsubscribed", "complained", "forwarded", "not_opened",
)
CAMPAIGN_SUMMARIES: TableHints = {
    "name": "campaign_summaries",
    "write_disposition": "merge",
    "primary_key": [*OWNER, "campaign_id"],
    "columns": _columns(text=(*OWNER, "campaign_id"), timestamp=("as_of",), bigint=SUMMARY_COUNTS),
}
# Constant Contact: the v3 campaign of each v2 campaign of the account (none: Constant Contact maps it to none)
CAMPAIGN_XREFS: TableHints = {
    "name": "constant_contact_campaign_xrefs",
    "write_disposition": "merge",
    "primary_key": [*OWNER, "v2_campaign_id"],
    "columns": _columns(text=(*OWNER, "v2_campaign_id", "v3_campaign_id")),
}
CANONICAL_HINTS = (
    CAMPAIGNS, CAMPAIGN_ACTIVITIES, CONTACT_ACTIVITY, CAMPAIGN_NON_ENGAGEMENT, CONTACTS, CAMPAIGN_SUMMARIES,
    CAMPAIGN_XREFS,
)
CANONICAL_TABLES = tuple(table["name"] for table in CANONICAL_HINTS)
