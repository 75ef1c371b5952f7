"""How EmailOctopus API v2 rows map onto the canonical tables: as 1.6's (`mapping`), from v2's shapes.

v2 writes statuses in lower case and report rows carry the contact's id and address only
(docs/providers/emailoctopus-v2.md, "Endpoints"); the rows loaded are those 1.6 loads for the same
account, statuses upper case as 1.6 writes them.
"""

from __future__ import annotations

from typing import Any

from sources.canonical import Row, optional_id, parse_utc
from sources.emailoctopus import mapping


def campaign_row(raw: dict[str, Any]) -> Row:
    """A canonical `campaigns` row from a v2 campaign."""
    return _upper_status(mapping.campaign_row(raw))


def contact_row(raw: dict[str, Any], list_id: str) -> Row:
    """A canonical `contacts` row from a v2 contact (v2 lists no deleted contact)."""
    return _upper_status(mapping.contact_row(raw, list_id))


def activity_rows(activity_type: str, page: list[dict[str, Any]]) -> list[Row]:
    """Canonical `contact_activity` rows (without ids) from a v2 report page."""
    rows = []
    for raw in page:  # each row is the provider's (copied), its fields with a canonical column replaced by it
        row = dict(raw)
        contact_id = row.pop("contact_id", None)
        email_address = row.pop("contact_email_address", None)
        occurred_at = row.pop("occurred_at", None)
        row["activity_type"] = activity_type
        row["contact_id"] = optional_id(contact_id, "contact_id")
        row["email_address"] = email_address
        row["occurred_at"] = parse_utc(occurred_at)
        rows.append(row)
    return rows


def non_engagement_rows(page: list[dict[str, Any]]) -> list[Row]:
    """Canonical `campaign_non_engagement` rows (without kind) from a v2 not-opened / not-clicked page
    (an `occurred_at` on such a row, which the schema allows, is not an event time: not kept)."""
    return [{"contact_id": optional_id(raw.get("contact_id"), "contact_id"),
             "email_address": raw.get("contact_email_address")} for raw in page]


def _upper_status(row: Row) -> Row:
    if isinstance(row.get("status"), str):
        row["status"] = row["status"].upper()
    return row
