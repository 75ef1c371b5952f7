"""Analysis views beside the tables, created after each load; the same SQL on DuckDB and PostgreSQL.

Constant Contact's v2 and v3 APIs are two views of the same accounts: `constant_contact_id_xrefs`
maps v2 ids onto v3 ones, and `contact_activity_unified` counts an event that both APIs
delivered once (README "Analysis views"). The engagement views read it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import dlt

from pipelines.dlt_adapter import local_state
from pipelines.reconcile import existing_tables, table_columns
from sources.canonical import CAMPAIGN_XREFS

# the counts of one campaign's events, the same in both ways of counting (`{events}` is the activity
# they are counted from, grouped by `provider, account, campaign_id`). No DISTINCT aggregate: first one
# row per campaign, type and contact (the contact only for the types counted in contacts: a campaign's
# sends and forwards are one row each) with its number of events `n`, then per campaign a count of
# contacts (`count(contact_id)`, which leaves out events without a contact as count(DISTINCT contact_id)
# did) or a sum of `n`, cast to BIGINT (an integer on both destinations, as count(*) is) and 0 when the
# campaign has none. On ten million events (benchmarks/counts.py) DuckDB counts about 6 times faster
# this way than with count(DISTINCT) (0.9 s, was 5.4 s), PostgreSQL 2.4 times slower (19 s, was 8 s)
# once the plan runs the counts once (reconcile's MATERIALIZED, statistics after a load: runner.analyze).
COUNTED_CONTACT = (
    "CASE WHEN activity_type IN ('bounced', 'opened', 'clicked', 'unsubscribed', 'complained') THEN contact_id END"
)
CAMPAIGN_COUNTS = """
    SELECT provider, account, campaign_id,
           coalesce(CAST(sum(n) FILTER (WHERE activity_type = 'sent') AS BIGINT), 0) AS sent,
           count(contact_id) FILTER (WHERE activity_type = 'bounced') AS bounced,
           count(contact_id) FILTER (WHERE activity_type = 'opened') AS unique_opens,
           coalesce(CAST(sum(n) FILTER (WHERE activity_type = 'opened') AS BIGINT), 0) AS total_opens,
           count(contact_id) FILTER (WHERE activity_type = 'clicked') AS unique_clicks,
           coalesce(CAST(sum(n) FILTER (WHERE activity_type = 'clicked') AS BIGINT), 0) AS total_clicks,
           count(contact_id) FILTER (WHERE activity_type = 'unsubscribed') AS unsubscribes,
           count(contact_id) FILTER (WHERE activity_type = 'complained') AS complaints,
           coalesce(CAST(sum(n) FILTER (WHERE activity_type = 'forwarded') AS BIGINT), 0) AS forwards
    FROM (
        SELECT provider, account, campaign_id, activity_type, """ + COUNTED_CONTACT + """ AS contact_id,
               count(*) AS n
        FROM {events}
        GROUP BY provider, account, campaign_id, activity_type, """ + COUNTED_CONTACT + """
    ) per_contact
    GROUP BY provider, account, campaign_id
"""
CAMPAIGN_MEASURES = """
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
"""

# Per campaign as its API knows it, from that API's own events: what the provider's summary and the
# reconciliation compare with. A v2 campaign that continues in v3 names its v3 campaign.
CAMPAIGN_ENGAGEMENT = """
CREATE VIEW {campaign_engagement} AS
WITH activity AS (""" + CAMPAIGN_COUNTS.replace("{events}", "{contact_activity}") + """)
SELECT c.provider, c.account, c.campaign_id, x.v3_id AS v3_campaign_id, c.name, c.subject, c.sent_at,""" + (
    CAMPAIGN_MEASURES
) + """FROM {campaigns} c
LEFT JOIN activity a ON a.provider = c.provider AND a.account = c.account AND a.campaign_id = c.campaign_id
LEFT JOIN {constant_contact_id_xrefs} x
    ON c.provider = 'constant_contact_v2' AND x.kind = 'campaign' AND x.account = c.account AND x.v2_id = c.campaign_id
WHERE c.sent_at IS NOT NULL
"""

# Per real campaign of an account, each event once (`contact_activity_unified`): a Constant Contact
# campaign that both APIs know is one row, under its v3 id (provider `constant_contact_v3`), named
# as v3 names it when the v3 run loaded it, else as v2 does.
CAMPAIGN_ENGAGEMENT_UNIFIED = """
CREATE VIEW {campaign_engagement_unified} AS
WITH mapped AS (  -- the Constant Contact campaigns with a v3 id: the unified activity names them so
    SELECT DISTINCT account, v3_id FROM {constant_contact_id_xrefs} WHERE kind = 'campaign'
), events AS (
    SELECT CASE WHEN u.provider = 'constant_contact_v2' AND m.v3_id IS NOT NULL THEN 'constant_contact_v3'
                ELSE u.provider END AS provider,
           u.account, u.campaign_id, u.contact_id, u.activity_type
    FROM {contact_activity_unified} u
    LEFT JOIN mapped m ON u.provider = 'constant_contact_v2' AND m.account = u.account AND m.v3_id = u.campaign_id
), activity AS (""" + CAMPAIGN_COUNTS.replace("{events}", "events") + """), campaign AS (
    SELECT CASE WHEN x.v3_id IS NOT NULL THEN 'constant_contact_v3' ELSE c.provider END AS provider,
           c.account, coalesce(x.v3_id, c.campaign_id) AS campaign_id, c.name, c.subject, c.sent_at,
           row_number() OVER (
               PARTITION BY CASE WHEN x.v3_id IS NOT NULL THEN 'constant_contact_v3' ELSE c.provider END,
                            c.account, coalesce(x.v3_id, c.campaign_id)
               ORDER BY CASE WHEN c.provider = 'constant_contact_v2' THEN 1 ELSE 0 END
           ) AS pick
    FROM {campaigns} c
    LEFT JOIN {constant_contact_id_xrefs} x
        ON c.provider = 'constant_contact_v2' AND x.kind = 'campaign' AND x.account = c.account
       AND x.v2_id = c.campaign_id
    WHERE c.sent_at IS NOT NULL
)
SELECT c.provider, c.account, c.campaign_id, c.name, c.subject, c.sent_at,""" + CAMPAIGN_MEASURES + """FROM campaign c
LEFT JOIN activity a ON a.provider = c.provider AND a.account = c.account AND a.campaign_id = c.campaign_id
WHERE c.pick = 1
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
    FROM {contact_activity_unified}
    WHERE contact_id IS NOT NULL
    GROUP BY provider, account, contact_id
), contact AS (  -- a v2 contact under its v3 id, as the unified activity names it
    SELECT c.provider, c.account, coalesce(x.v3_id, c.contact_id) AS contact_id, c.email_address, c.status
    FROM {contacts} c
    LEFT JOIN {constant_contact_id_xrefs} x
        ON c.provider = 'constant_contact_v2' AND x.kind = 'contact' AND x.account = c.account
       AND x.v2_id = c.contact_id
)
SELECT a.provider, a.account, a.contact_id, coalesce(c.email_address, a.email_address) AS email_address,
       c.status, a.campaigns_sent, a.opens, a.clicks, a.bounces, a.last_open, a.last_click, a.unsubscribed_at
FROM activity a
LEFT JOIN contact c ON c.provider = a.provider AND c.account = a.account AND c.contact_id = a.contact_id
"""

# v2 contacts bring their v3 UUID (`include_contact_id=true`); campaigns need the xref endpoint
CONTACT_XREF_ROWS = """
SELECT account, 'contact' AS kind, contact_id AS v2_id, v3_contact_id AS v3_id,
       CAST(NULL AS VARCHAR) AS v3_campaign_activity_id
FROM {contacts} WHERE provider = 'constant_contact_v2' AND v3_contact_id IS NOT NULL
"""
CAMPAIGN_XREF_ROWS = """
SELECT x.account, 'campaign' AS kind, x.v2_campaign_id AS v2_id, x.v3_campaign_id AS v3_id,
       {primary_email} AS v3_campaign_activity_id
FROM {constant_contact_campaign_xrefs} x
WHERE x.v3_campaign_id IS NOT NULL
"""
# a campaign's v3 primary-email activity, from the campaign_activities the v3 run loaded
PRIMARY_EMAIL = """(
    SELECT max(p.campaign_activity_id) FROM {campaign_activities} p
    WHERE p.provider = 'constant_contact_v3' AND p.account = x.account AND p.campaign_id = x.v3_campaign_id
      AND p.role = 'primary_email'
)"""
NO_XREFS = """
SELECT CAST(NULL AS VARCHAR) AS account, CAST(NULL AS VARCHAR) AS kind, CAST(NULL AS VARCHAR) AS v2_id,
       CAST(NULL AS VARCHAR) AS v3_id, CAST(NULL AS VARCHAR) AS v3_campaign_activity_id
WHERE 1 = 0
"""

ACTIVITY_COLUMNS = (
    "activity_id, provider, account, campaign_id, campaign_activity_id, contact_id, email_address, activity_type, "
    "occurred_at, url, device_type, bounce_type, reason"
)

# An event both Constant Contact APIs delivered is the same contact (v3 id), campaign (v3 id), type
# and minute (v3's resolution). Within each API such events are numbered by time; the n-th of one
# API and the n-th of the other are one event, kept once (the v3 row): two opens in one minute in
# both APIs stay two. Every other row passes unchanged.
CONTACT_ACTIVITY_UNIFIED = """
CREATE VIEW {contact_activity_unified} AS
WITH mapped AS (
    SELECT a.activity_id, a.provider, a.account,
           coalesce(campaign.v3_id, a.campaign_id) AS campaign_id, a.campaign_activity_id,
           coalesce(contact.v3_id, a.contact_id) AS contact_id, a.email_address, a.activity_type,
           a.occurred_at, a.url, a.device_type, a.bounce_type, a.reason,
           CASE WHEN a.provider LIKE 'constant_contact_%' THEN 'constant_contact' ELSE a.provider END AS family,
           date_trunc('minute', a.occurred_at) AS minute
    FROM {contact_activity} a
    LEFT JOIN {constant_contact_id_xrefs} campaign
        ON a.provider = 'constant_contact_v2' AND campaign.kind = 'campaign' AND campaign.account = a.account
       AND campaign.v2_id = a.campaign_id
    LEFT JOIN {constant_contact_id_xrefs} contact
        ON a.provider = 'constant_contact_v2' AND contact.kind = 'contact' AND contact.account = a.account
       AND contact.v2_id = a.contact_id
), numbered AS (
    SELECT mapped.*, row_number() OVER (
        PARTITION BY family, account, campaign_id, contact_id, activity_type, minute, provider
        ORDER BY occurred_at, activity_id
    ) AS occurrence
    FROM mapped
), copies AS (
    SELECT numbered.*, row_number() OVER (
        PARTITION BY family, account, campaign_id, contact_id, activity_type, minute, occurrence
        ORDER BY CASE WHEN provider = 'constant_contact_v3' THEN 0 ELSE 1 END, provider
    ) AS copy
    FROM numbered
)
SELECT """ + ACTIVITY_COLUMNS + """ FROM copies WHERE copy = 1
"""

PEOPLE = """
CREATE VIEW {people} AS
WITH ids AS (
    SELECT lower(trim(email_address)) AS email_address, provider, account, contact_id
    FROM {contacts} WHERE trim(coalesce(email_address, '')) <> ''
    UNION
    SELECT lower(trim(email_address)), provider, account, contact_id
    FROM {contact_activity} WHERE trim(coalesce(email_address, '')) <> '' AND contact_id IS NOT NULL
)
SELECT email_address,
       count(DISTINCT provider) AS providers,
       count(DISTINCT provider || '/' || account) AS accounts,
       string_agg(DISTINCT provider || '/' || account || '/' || contact_id, ', '
                  ORDER BY provider || '/' || account || '/' || contact_id) AS contact_ids
FROM ids
GROUP BY email_address
"""

# a contact's status as each provider words it: EmailOctopus SUBSCRIBED / UNSUBSCRIBED, v2 ACTIVE /
# OPTOUT, v3 (permission_to_send) implicit, explicit / unsubscribed
PERSON_ENGAGEMENT = """
CREATE VIEW {person_engagement} AS
WITH activity AS (
    SELECT lower(trim(email_address)) AS email_address, provider, account, campaign_id, activity_type,
           occurred_at
    FROM {contact_activity_unified} WHERE trim(coalesce(email_address, '')) <> ''
), engagement AS (
    SELECT email_address,
           count(DISTINCT provider || '/' || account || '/' || campaign_id)
               FILTER (WHERE activity_type = 'sent') AS campaigns_sent,
           count(*) FILTER (WHERE activity_type = 'opened') AS opens,
           count(*) FILTER (WHERE activity_type = 'clicked') AS clicks,
           max(occurred_at) FILTER (WHERE activity_type <> 'sent') AS last_activity
    FROM activity GROUP BY email_address
), standing AS (
    SELECT lower(trim(email_address)) AS email_address, provider || '/' || account AS source,
           CASE WHEN upper(status) IN ('UNSUBSCRIBED', 'OPTOUT') THEN 'unsubscribed'
                WHEN upper(status) IN ('SUBSCRIBED', 'ACTIVE', 'IMPLICIT', 'EXPLICIT') THEN 'subscribed'
           END AS standing
    FROM {contacts} WHERE trim(coalesce(email_address, '')) <> ''
    UNION
    SELECT email_address, provider || '/' || account, 'unsubscribed'
    FROM activity WHERE activity_type = 'unsubscribed'
), statuses AS (
    SELECT email_address,
           string_agg(DISTINCT source, ', ' ORDER BY source) FILTER (WHERE standing = 'unsubscribed')
               AS unsubscribed_in,
           string_agg(DISTINCT source, ', ' ORDER BY source) FILTER (WHERE standing = 'subscribed')
               AS subscribed_in
    FROM standing GROUP BY email_address
)
SELECT p.email_address, p.providers, p.contact_ids,
       coalesce(e.campaigns_sent, 0) AS campaigns_sent, coalesce(e.opens, 0) AS opens,
       coalesce(e.clicks, 0) AS clicks, e.last_activity, s.unsubscribed_in,
       s.subscribed_in
FROM {people} p
LEFT JOIN engagement e ON e.email_address = p.email_address
LEFT JOIN statuses s ON s.email_address = p.email_address
"""

# in the order they are created (each reads the ones before): the SQL and the tables it needs
VIEWS = {
    "contact_activity_unified": (CONTACT_ACTIVITY_UNIFIED, ("contact_activity",)),
    "campaign_engagement": (CAMPAIGN_ENGAGEMENT, ("campaigns", "contact_activity")),
    "campaign_engagement_unified": (CAMPAIGN_ENGAGEMENT_UNIFIED, ("campaigns", "contact_activity")),
    "contact_engagement": (CONTACT_ENGAGEMENT, ("contact_activity", "contacts")),
    "people": (PEOPLE, ("contact_activity", "contacts")),
    "person_engagement": (PERSON_ENGAGEMENT, ("contact_activity", "contacts")),
}
XREFS = "constant_contact_id_xrefs"
# the pipeline's local state key of the digest of the view statements it last ran
VIEWS_DIGEST = "campaign_sync_views"
CAMPAIGN_XREFS_TABLE = CAMPAIGN_XREFS["name"]


def unmapped_v2_campaigns(client: Any, account: str) -> list[str]:
    """The account's v2 campaigns loaded and not looked up in Constant Contact's campaign xrefs yet."""
    tables = existing_tables(client)
    if "campaigns" not in tables:
        return []
    campaigns, xrefs = (client.make_qualified_table_name(name) for name in ("campaigns", CAMPAIGN_XREFS_TABLE))
    sql = f"SELECT campaign_id FROM {campaigns} WHERE provider = %s AND account = %s"
    params = ["constant_contact_v2", account]
    if CAMPAIGN_XREFS_TABLE in tables:
        sql += f" AND campaign_id NOT IN (SELECT v2_campaign_id FROM {xrefs} WHERE account = %s)"
        params.append(account)
    rows = client.execute_sql(f"{sql} ORDER BY campaign_id", *params)
    return [row[0] for row in rows or ()]


def create_views(pipeline: dlt.Pipeline, client: Any) -> list[str]:
    """(Re)create the analysis views whose tables exist, through `client` (a SQL client of the pipeline's
    dataset); return their names. Views that are there as the pipeline last made them (the digest of their
    statements in its local state) are left as they are."""
    columns = table_columns(client, client.dataset_name)  # base tables only
    names = {
        name: client.make_qualified_table_name(name)
        for name in (
            XREFS, *VIEWS, "campaigns", "campaign_activities", "contact_activity", "contacts", CAMPAIGN_XREFS_TABLE
        )
    }
    names["primary_email"] = (
        PRIMARY_EMAIL.format(**names) if "campaign_activities" in columns else "CAST(NULL AS VARCHAR)"
    )
    parts = []
    if "v3_contact_id" in columns.get("contacts", []):
        parts.append(CONTACT_XREF_ROWS)
    if CAMPAIGN_XREFS_TABLE in columns:
        parts.append(CAMPAIGN_XREF_ROWS)
    xrefs = " UNION ALL ".join(parts) or NO_XREFS
    statements = {XREFS: f"CREATE VIEW {names[XREFS]} AS " + xrefs.format(**names)}
    for view, (sql, tables) in VIEWS.items():
        if all(table in columns for table in tables):
            statements[view] = sql.format(**names)
    digest = hashlib.sha256("\n".join(statements.values()).encode()).hexdigest()
    if local_state(pipeline.state).get(VIEWS_DIGEST) == digest and set(statements) <= existing_tables(client):
        return list(statements)
    # dropped first, dependents before what they read: PostgreSQL's CREATE OR REPLACE cannot change columns
    for view in (*reversed(VIEWS), XREFS):
        client.execute_sql(f"DROP VIEW IF EXISTS {names[view]}")
    for statement in statements.values():
        client.execute_sql(statement)
    pipeline.set_local_state_val(VIEWS_DIGEST, digest)
    return list(statements)
