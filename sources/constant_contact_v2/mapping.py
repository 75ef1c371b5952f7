"""How Constant Contact v2 rows map onto the canonical tables."""

from __future__ import annotations

from typing import Any

from sources.canonical import BOUNCE_TYPES, Row, optional_id, parse_utc

# tracking list (path) -> canonical activity_type, for rows that lack `activity_type`
ACTIVITY_REPORTS = {
    "sends": "sent",
    "opens": "opened",
    "clicks": "clicked",
    "forwards": "forwarded",
    "unsubscribes": "unsubscribed",
    "bounces": "bounced",
}
# the v2 `activity_type` words
ACTIVITY_TYPES = {
    "EMAIL_SEND": "sent",
    "EMAIL_OPEN": "opened",
    "EMAIL_CLICK": "clicked",
    "EMAIL_FORWARD": "forwarded",
    "EMAIL_UNSUBSCRIBE": "unsubscribed",
    "EMAIL_BOUNCE": "bounced",
}
_DATE_FIELDS = ("send_date", "open_date", "click_date", "forward_date", "unsubscribe_date", "bounce_date")
# v2 bounce codes: B non-existent address, D undeliverable, Z blocked; F mailbox full,
# the message bodies are not activity; every other unknown campaign field is kept
_CAMPAIGN_DROPPED = {"email_content", "text_content", "style_sheet"}


def campaign_id(value: Any) -> str:
    """A v2 campaign id as a string (it sometimes arrives as a JSON number)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def campaign_row(raw: dict[str, Any]) -> Row:
    """A canonical `campaigns` row from a v2 campaign (its details, or a bare listing row)."""
    extra = {k: v for k, v in raw.items() if k not in _CAMPAIGN_DROPPED}
    lists = extra.pop("sent_to_contact_lists", None)
    row: Row = {
        "campaign_id": campaign_id(extra.pop("id")),
        "created_at": parse_utc(extra.pop("created_date", None)),
        "sent_at": parse_utc(extra.pop("last_run_date", None)),
        "updated_at": parse_utc(extra.pop("modified_date", None)),
    }
    if lists is not None:
        row["list_ids"] = [str(item.get("id")) if isinstance(item, dict) else str(item) for item in lists]
    return {**extra, **row}


def link_urls(campaign: Row) -> dict[str, str]:
    """`link_id` (`url_uid`) -> URL, from a campaign's `click_through_details`."""
    details = campaign.get("click_through_details") or []
    return {str(d["url_uid"]): d["url"] for d in details if isinstance(d, dict) and d.get("url_uid") and d.get("url")}


def activity_rows(report: str, links: dict[str, str], page: list[dict[str, Any]]) -> list[Row]:
    """Canonical `contact_activity` rows (without ids) from a tracking list page.

    Clicks get `url` from `link_uri` when the row has it, else from the campaign's links;
    unsubscribes get `reason`; bounces a `bounce_type` from their code. Fields without a
    canonical column are kept as they are.
    """
    rows = []
    for raw in page:  # each row is the provider's (copied), its fields with a canonical column replaced by it
        row: Row = dict(raw)
        row.pop("campaign_id", None)  # the read's own id, always a string, is set instead
        word = row.pop("activity_type", None)
        contact = row.pop("contact_id", None)
        occurred = next((row.pop(name) for name in _DATE_FIELDS if name in row), None)
        email_address = row.pop("email_address", None)
        url = None
        if "link_id" in row:
            row["link_id"] = None if row["link_id"] is None else str(row["link_id"])
            url = row.pop("link_uri", None) or links.get(str(row["link_id"]))
        unsubscribed = "unsubscribe_reason" in row
        reason = row.pop("unsubscribe_reason", None)
        row["activity_type"] = ACTIVITY_TYPES.get(str(word), ACTIVITY_REPORTS[report])
        row["contact_id"] = optional_id(contact, "contact_id")
        row["email_address"] = email_address
        row["occurred_at"] = parse_utc(occurred)
        if word is not None and str(word) not in ACTIVITY_TYPES:  # the list decides the type; the word is kept
            row["provider_activity_type"] = str(word)
        if url is not None:
            row["url"] = url
        if unsubscribed:
            row["reason"] = reason
        if row.get("bounce_code") is not None:
            row["bounce_type"] = BOUNCE_TYPES.get(str(row["bounce_code"]).upper(), "other")
        rows.append(row)
    return rows


def summary_row(raw: dict[str, Any]) -> Row:
    """A canonical `campaign_summaries` row from the v2 summary report (unique counts)."""
    counts = {k: int(v) for k, v in raw.items() if isinstance(v, (int, float, str)) and str(v).isdigit()}
    known = {"sends", "opens", "clicks", "forwards", "unsubscribes", "bounces", "spam_count"}
    sent, bounced = counts.get("sends"), counts.get("bounces")
    row = {
        "sent": sent,
        "delivered": sent - bounced if sent is not None and bounced is not None else None,
        "opened_unique": counts.get("opens"),
        "opened_total": None,
        "clicked_unique": counts.get("clicks"),
        "clicked_total": None,
        "bounced": bounced,
        "unsubscribed": counts.get("unsubscribes"),
        "complained": counts.get("spam_count"),
        "forwarded": counts.get("forwards"),
        "not_opened": None,
    }
    extra = {k: v for k, v in raw.items() if k not in known and k not in ("campaign_id", "id")}
    return {**extra, **row}


def contact_row(raw: dict[str, Any]) -> Row:
    """A canonical `contacts` row from a v2 contact.

    The numeric v2 id is `contact_id`, the v3 UUID (`include_contact_id=true`) `v3_contact_id`;
    the first email address gives `email_address` and its details `email__<field>` columns; custom
    fields (`CustomField1..15`) become `custom_fields__<label, or name>` columns. `status` is the
    contact's (ACTIVE, UNCONFIRMED, OPTOUT, REMOVED).
    """
    extra = dict(raw)
    addresses = extra.pop("email_addresses", None) or []
    email = dict(addresses[0]) if addresses and isinstance(addresses[0], dict) else {}
    row: Row = {
        "contact_id": str(extra.pop("id")),
        "v3_contact_id": extra.pop("contact_id", None),
        "email_address": email.pop("email_address", None),
        "status": extra.pop("status", None),
        "created_at": parse_utc(extra.pop("created_date", None)),
        "updated_at": parse_utc(extra.pop("modified_date", None)),
    }
    row["deleted"] = row["status"] == "REMOVED"
    email.pop("id", None)
    if email:
        row["email"] = email
    if len(addresses) > 1:
        row["other_email_addresses"] = [item.get("email_address") for item in addresses[1:] if isinstance(item, dict)]
    custom_fields = [item for item in extra.pop("custom_fields", None) or [] if isinstance(item, dict)]
    if custom_fields:
        row["custom_fields"] = {str(item.get("label") or item.get("name")): item.get("value") for item in custom_fields}
    return {**extra, **row}
