"""How Constant Contact v3 rows map onto the canonical tables."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sources.canonical import BOUNCE_TYPES, Row, optional_id, parse_utc

# tracking report -> canonical activity_type
ACTIVITY_REPORTS = {
    "sends": "sent",
    "opens": "opened",
    "clicks": "clicked",
    "forwards": "forwarded",
    "optouts": "unsubscribed",
    "bounces": "bounced",
}
# the `tracking_activity_type` words the reports use
TRACKING_WORDS = {"em_sends", "em_opens", "em_clicks", "em_forwards", "em_optouts", "em_bounces", "em_didnotopens"}
# summary `unique_counts` -> canonical counts
SUMMARY_COUNTS = {
    "sends": "sent",
    "opens": "opened_unique",
    "clicks": "clicked_unique",
    "forwards": "forwarded",
    "optouts": "unsubscribed",
    "abuse": "complained",
    "bounces": "bounced",
    "not_opened": "not_opened",
}
# the counts of unique contacts that size a report of every event (one contact may open twice)
UNIQUE_COUNTS = {"opened_unique", "clicked_unique"}
# a campaign activity's fields that canonical columns already say, and its message body (not activity)
_ACTIVITY_DROPPED = {"html_content", "campaign_activity_id", "campaign_id", "role", "current_status"}


def campaign_row(raw: dict[str, Any], primary: dict[str, Any] | None, sent_at: datetime | None) -> Row:
    """A canonical `campaigns` row from a listed campaign (with its details) and its primary email.

    The campaign's `campaign_activities` (ids and roles) stay on the row, as JSON: the reports
    of a campaign offered again from memory are read by them without looking it up again.
    """
    extra = dict(raw)
    primary = primary or {}
    row = {
        "campaign_id": str(extra.pop("campaign_id")),
        "name": extra.pop("name", None),
        "status": extra.pop("current_status", None),
        "created_at": parse_utc(extra.pop("created_at", None)),
        "updated_at": parse_utc(extra.pop("updated_at", None)),
        "sent_at": sent_at,
        "subject": primary.get("subject"),
        "from_name": primary.get("from_name"),
        "from_email": primary.get("from_email"),
        "list_ids": primary.get("contact_list_ids"),
    }
    activities = extra.pop("campaign_activities", None)
    if activities is not None:  # JSON: which activities a campaign remembered from state has
        row["campaign_activities"] = [
            {"campaign_activity_id": a.get("campaign_activity_id"), "role": a.get("role")} for a in activities
        ]
    return {**extra, **row}


def campaign_activity_row(
    campaign_id: str, activity_id: str, role: str, details: dict[str, Any] | None, sent_at: datetime | None
) -> Row:
    """A `campaign_activities` row; an untracked activity (permalink) has no details."""
    details = details or {}
    extra = {key: value for key, value in details.items() if key not in _ACTIVITY_DROPPED}
    row = {
        "campaign_activity_id": activity_id,
        "campaign_id": campaign_id,
        "role": role,
        "status": details.get("current_status"),
        "subject": extra.pop("subject", None),
        "sent_at": sent_at,
    }
    return {**extra, **row}


def first_send(history: Any) -> datetime | None:
    """When an activity was first sent, from its send history (None: never)."""
    runs = history if isinstance(history, list) else (history or {}).get("send_history") or []
    dates = [
        parse_utc(run.get("run_date"))
        for run in runs
        if isinstance(run, dict) and str(run.get("send_status", "COMPLETED")).upper() not in ("ERRORED", "FAILED")
    ]
    known = [date for date in dates if date is not None]
    return min(known) if known else None


def activity_rows(activity_type: str, page: list[dict[str, Any]]) -> list[Row]:
    """Canonical `contact_activity` rows (without ids) from a tracking report page.

    Each row is the provider's own (copied), its fields with a canonical column replaced by that
    column, after the fields it keeps: one copy a row, as this runs for every event.
    """
    rows = []
    for raw in page:
        row = dict(raw)
        word = row.pop("tracking_activity_type", None)
        row.pop("campaign_activity_id", None)
        contact_id = row.pop("contact_id", None)
        email_address = row.pop("email_address", None)
        created_time = row.pop("created_time", None)
        url = row.pop("link_url", None)
        reason = row.pop("opt_out_reason", None)
        row["activity_type"] = activity_type
        row["contact_id"] = optional_id(contact_id, "contact_id")
        row["email_address"] = email_address
        row["occurred_at"] = parse_utc(created_time)
        if word is not None and word not in TRACKING_WORDS:  # the report decides the type; the word is kept
            row["provider_activity_type"] = str(word)
        if url is not None:
            row["url"] = url
        if reason is not None:
            row["reason"] = reason
        code = row.get("bounce_code")
        if code is not None:
            row["bounce_type"] = BOUNCE_TYPES.get(str(code).upper(), "other")
        rows.append(row)
    return rows


def non_engagement_rows(page: list[dict[str, Any]]) -> list[Row]:
    """Canonical `campaign_non_engagement` rows (without kind) from `didnotopens` rows."""
    return [
        {"contact_id": optional_id(raw.get("contact_id"), "contact_id"), "email_address": raw.get("email_address")}
        for raw in page
    ]


def summary_row(raw: dict[str, Any]) -> Row:
    """A canonical `campaign_summaries` row; counts may be strings, unknown counts are kept."""
    extra = {key: value for key, value in raw.items() if key != "campaign_id"}
    counts = {key: _count(value) for key, value in (extra.pop("unique_counts", None) or {}).items()}
    row: Row = {canonical: counts.pop(key, None) for key, canonical in SUMMARY_COUNTS.items()}
    sent, bounced = row["sent"], row["bounced"]
    row.update({
        "delivered": sent - bounced if sent is not None and bounced is not None else None,
        "opened_total": None,
        "clicked_total": None,
        "last_sent_date": parse_utc(extra.pop("last_sent_date", None)),
    })
    row.update({f"unique_{key}": value for key, value in counts.items()})
    return {**extra, **row}


def contact_row(raw: dict[str, Any], field_names: dict[str, str], tag_names: dict[str, str]) -> Row:
    """A canonical `contacts` row; custom fields become `custom_fields__<name>` columns, tags names."""
    extra = dict(raw)
    email = extra.pop("email_address", None)
    email = dict(email) if isinstance(email, dict) else {"address": email}
    row: Row = {
        "contact_id": str(extra.pop("contact_id")),
        "email_address": email.pop("address", None),
        "status": email.pop("permission_to_send", None),
        "created_at": parse_utc(extra.pop("created_at", None)),
        "updated_at": parse_utc(extra.pop("updated_at", None)),
        "deleted": extra.get("deleted_at") is not None,
    }
    if email:
        row["email"] = email  # opt-in and opt-out details: `email__<field>` columns
    custom_fields = [item for item in _listed(extra.pop("custom_fields", None)) if isinstance(item, dict)]
    if custom_fields:
        row["custom_fields"] = {
            field_names.get(str(item.get("custom_field_id")), str(item.get("custom_field_id"))): item.get("value")
            for item in custom_fields
        }
    taggings = _listed(extra.pop("taggings", None))
    if taggings:
        row["tags"] = [tag_names.get(str(tag_id), str(tag_id)) for tag_id in taggings]
    return {**extra, **row}


def _listed(value: Any) -> list[Any]:
    """A list the provider sends, or none where it sends something else."""
    return value if isinstance(value, list) else []


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def campaign_xref_rows(asked: list[str], body: Any) -> list[Row]:
    """`constant_contact_campaign_xrefs` rows for the v2 campaign ids `asked` in one
    `emails/campaign_id_xrefs` call; an id the response does not map gets no v3 id (asked once)."""
    xrefs = body.get("xrefs") if isinstance(body, dict) else None
    found = {str(xref.get("v2_email_campaign_id")): xref.get("campaign_id") for xref in xrefs or []}
    return [{"v2_campaign_id": v2_id, "v3_campaign_id": found.get(v2_id)} for v2_id in asked]
