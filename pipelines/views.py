"""Analysis views beside the tables, created after each load; the same SQL on DuckDB and PostgreSQL."""

from __future__ import annotations

from typing import Any

import dlt

CAMPAIGN_ENGAGEMENT = """
CREATE VIEW {campaign_engagement} AS
WITH activity AS (
    SELECT provider, account, campaign_id,
           count(*) FILTER (WHERE activity_type = 'sent') AS sent,
           count(DISTINCT contact_id) FILTER (WHERE activity_type = 'bounced') AS bounced,
           count(DISTINCT contact_id) FILTER (WHERE activity_type = 'opened') AS unique_opens,
           count(*) FILTER (WHERE activity_type = 'opened') AS total_opens,
           count(DISTINCT contact_id) FILTER (WHERE activity_type = 'clicked') AS unique_clicks,
           count(*) FILTER (WHERE activity_type = 'clicked') AS total_clicks,
           count(DISTINCT contact_id) FILTER (WHERE activity_type = 'unsubscribed') AS unsubscribes,
           count(DISTINCT contact_id) FILTER (WHERE activity_type = 'complained') AS complaints,
           count(*) FILTER (WHERE activity_type = 'forwarded') AS forwards
    FROM {contact_activity}
    GROUP BY provider, account, campaign_id
)
SELECT c.provider, c.account, c.campaign_id, c.name, c.subject, c.sent_at,
       coalesce(a.sent, 0) AS sent,
       coalesce(a.sent, 0) - coalesce(a.bounced, 0) AS delivered,
       coalesce(a.unique_opens, 0) AS unique_opens,
       coalesce(a.total_opens, 0) AS total_opens,
       coalesce(a.unique_clicks, 0) AS unique_clicks,
       coalesce(a.total_clicks, 0) AS total_clicks,
       coalesce(a.bounced, 0) AS bounces,
       coalesce(a.unsubscribes, 0) AS unsubscribes,
       coalesce(a.complaints, 0) AS complaints,
       coalesce(a.forwards, 0) AS forwards,
       round(1.0 * a.unique_opens / nullif(a.sent - a.bounced, 0), 4) AS open_rate,
       round(1.0 * a.unique_clicks / nullif(a.sent - a.bounced, 0), 4) AS click_rate,
       round(1.0 * a.unique_clicks / nullif(a.unique_opens, 0), 4) AS click_to_open_rate,
       round(1.0 * a.bounced / nullif(a.sent, 0), 4) AS bounce_rate
FROM {campaigns} c
LEFT JOIN activity a ON a.provider = c.provider AND a.account = c.account AND a.campaign_id = c.campaign_id
WHERE c.sent_at IS NOT NULL
"""

CONTACT_ENGAGEMENT = """
CREATE VIEW {contact_engagement} AS
WITH activity AS (
    SELECT provider, account, contact_id,
           max(email_address) AS email_address,
           count(DISTINCT campaign_id) FILTER (WHERE activity_type = 'sent') AS campaigns_sent,
           count(*) FILTER (WHERE activity_type = 'opened') AS opens,
           count(*) FILTER (WHERE activity_type = 'clicked') AS clicks,
           count(*) FILTER (WHERE activity_type = 'bounced') AS bounces,
           max(occurred_at) FILTER (WHERE activity_type = 'opened') AS last_open,
           max(occurred_at) FILTER (WHERE activity_type = 'clicked') AS last_click,
           max(occurred_at) FILTER (WHERE activity_type = 'unsubscribed') AS unsubscribed_at
    FROM {contact_activity}
    WHERE contact_id IS NOT NULL
    GROUP BY provider, account, contact_id
)
SELECT a.provider, a.account, a.contact_id, coalesce(c.email_address, a.email_address) AS email_address,
       c.status, a.campaigns_sent, a.opens, a.clicks, a.bounces, a.last_open, a.last_click, a.unsubscribed_at
FROM activity a
LEFT JOIN {contacts} c ON c.provider = a.provider AND c.account = a.account AND c.contact_id = a.contact_id
"""

VIEWS = {
    "campaign_engagement": (CAMPAIGN_ENGAGEMENT, ("campaigns", "contact_activity")),
    "contact_engagement": (CONTACT_ENGAGEMENT, ("contact_activity", "contacts")),
}


def create_views(pipeline: dlt.Pipeline) -> list[str]:
    """(Re)create the analysis views whose tables exist; return their names."""
    created = []
    with pipeline.sql_client() as client:
        existing = _existing_tables(client)
        for view, (sql, tables) in VIEWS.items():
            if not all(table in existing for table in tables):
                continue
            names = {name: client.make_qualified_table_name(name) for name in (view, *tables)}
            # dropped first: PostgreSQL's CREATE OR REPLACE cannot change a view's columns
            client.execute_sql(f"DROP VIEW IF EXISTS {names[view]}")
            client.execute_sql(sql.format(**names))
            created.append(view)
    return created


def _existing_tables(client: Any) -> set[str]:
    rows = client.execute_sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", client.dataset_name
    )
    return {row[0] for row in rows}
