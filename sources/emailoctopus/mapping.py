"""How EmailOctopus 1.6 rows map onto the canonical tables."""

from __future__ import annotations

from typing import Any

from sources.canonical import Row, optional_id, parse_utc

# report path -> canonical activity_type
ACTIVITY_REPORTS = {
    "sent": "sent",
    "opened": "opened",
    "clicked": "clicked",
    "bounced": "bounced",
    "complained": "complained",
    "unsubscribed": "unsubscribed",
}
# report path -> canonical non-engagement kind
NON_ENGAGEMENT_REPORTS = {"not-opened": "not_opened", "not-clicked": "not_clicked"}

# the message bodies are not activity; every other unknown campaign field is kept
_CAMPAIGN_DROPPED = {"content"}
_URL_FIELDS = ("url", "link", "link_url")
_BOUNCE_TYPE_FIELDS = ("type", "bounce_type")


def campaign_row(raw: dict[str, Any]) -> Row:
    """A canonical `campaigns` row from an EmailOctopus campaign."""
    extra = {k: v for k, v in raw.items() if k not in _CAMPAIGN_DROPPED}
    sender = extra.pop("from", None)
    sender = sender if isinstance(sender, dict) else {}
    row = {
        "campaign_id": str(extra.pop("id")),
        "from_name": sender.get("name"),
        "from_email": sender.get("email_address"),
        "list_ids": extra.pop("to", None),
        "created_at": parse_utc(extra.pop("created_at", None)),
        "sent_at": parse_utc(extra.pop("sent_at", None)),
        "updated_at": None,
    }
    return {**extra, **row}


def activity_rows(activity_type: str, page: list[dict[str, Any]]) -> list[Row]:
    """Canonical `contact_activity` rows (without ids) from a report page."""
    rows = []
    for raw in page:  # each row is the provider's (copied), its fields with a canonical column replaced by it
        row = dict(raw)
        contact = _object(row.pop("contact", None))
        occurred_at = row.pop("occurred_at", None)
        url = _pop_first(row, _URL_FIELDS)
        bounce_type = _pop_first(row, _BOUNCE_TYPE_FIELDS)
        row["activity_type"] = activity_type
        row["contact_id"] = optional_id(contact.get("id"), "contact id")
        row["email_address"] = contact.get("email_address")
        row["occurred_at"] = parse_utc(occurred_at)
        if url is not None:
            row["url"] = url
        if bounce_type is not None:
            row["bounce_type"] = str(bounce_type).lower()
        rows.append(row)
    return rows


def non_engagement_rows(page: list[dict[str, Any]]) -> list[Row]:
    """Canonical `campaign_non_engagement` rows (without kind) from a snapshot page."""
    rows = []
    for raw in page:
        contact = _object(raw.get("contact"))
        contact_id = optional_id(contact.get("id"), "contact id")
        rows.append({"contact_id": contact_id, "email_address": contact.get("email_address")})
    return rows


def summary_row(raw: dict[str, Any]) -> Row:
    """A canonical `campaign_summaries` row from a summary report, nested or flat."""
    counts = _flatten(raw)
    bounced = counts.get("bounced")
    if bounced is None and ("bounced_soft" in counts or "bounced_hard" in counts):
        bounced = counts.get("bounced_soft", 0) + counts.get("bounced_hard", 0)
    sent = counts.get("sent")
    return {
        "sent": sent,
        "delivered": sent - bounced if sent is not None and bounced is not None else None,
        "opened_unique": counts.get("opened_unique"),
        "opened_total": counts.get("opened_total"),
        "clicked_unique": counts.get("clicked_unique"),
        "clicked_total": counts.get("clicked_total"),
        "bounced": bounced,
        "bounced_soft": counts.get("bounced_soft"),
        "bounced_hard": counts.get("bounced_hard"),
        "unsubscribed": counts.get("unsubscribed"),
        "complained": counts.get("complained"),
        "forwarded": None,
        "not_opened": None,
    }


def contact_row(raw: dict[str, Any], list_id: str) -> Row:
    """A canonical `contacts` row; custom fields become `custom_fields__<name>` columns."""
    extra = dict(raw)
    row = {
        "contact_id": str(extra.pop("id")),
        "list_id": list_id,
        "created_at": parse_utc(extra.pop("created_at", None)),
        "updated_at": parse_utc(extra.pop("last_updated_at", None)),
        # deleted only when the provider says so plainly: a deletion erases the contact's personal data for good
        "deleted": extra.pop("deleted", False) in (True, "true", "TRUE", "True"),
    }
    if extra.get("tags") is None:  # a deleted contact: no tags, rather than an untyped null
        extra.pop("tags", None)
    custom_fields = extra.pop("fields", None)
    if custom_fields:
        row["custom_fields"] = custom_fields
    return {**extra, **row}


def _object(value: Any) -> dict[str, Any]:
    """A nested object, or an empty one where there is none (null, or not an object)."""
    return value if isinstance(value, dict) else {}


def _pop_first(row: Row, names: tuple[str, ...]) -> Any:
    found = None
    for name in names:
        value = row.pop(name, None)
        if found is None:
            found = value
    return found


def _flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, int]:
    flat: dict[str, int] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}_"))
        elif isinstance(value, (int, float, str)) and str(value).lstrip("-").isdigit():
            flat[f"{prefix}{key}"] = int(value)
    return flat
