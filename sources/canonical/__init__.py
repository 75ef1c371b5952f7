"""The canonical activity model that every provider loads into, and the resources that load it.

A provider implements `ProviderApi`: it lists campaigns and contacts as canonical rows and
describes, for each campaign, the reports to read (`ReportRead`). Everything else lives
here once: which reports are due (attribution window, start date, backfill range), reading
them concurrently, the cursors per (campaign or campaign activity, report) in dlt resource
state, deterministic `activity_id`s, and the whole-snapshot replacement of non-engagement.
"""

from sources.canonical.arrow import to_arrow, with_activity_ids
from sources.canonical.listing import ListingCursor
from sources.canonical.plan import (
    CampaignCost,
    LoadedRows,
    ReportCost,
    RequestEstimate,
    backfill_estimate,
    nightly_estimate,
)
from sources.canonical.reads import (
    ReportRead,
    ResumePoint,
    SyncOutcome,
    SyncPlan,
    SyncSettings,
    read_due_reports,
    summary_read,
)
from sources.canonical.resources import ProviderApi, canonical_resources, read_listing, snapshot_digest
from sources.canonical.tables import (
    ACTIVITY_TYPES,
    BOUNCE_TYPES,
    CAMPAIGN_ACTIVITIES,
    CAMPAIGN_NON_ENGAGEMENT,
    CAMPAIGN_SUMMARIES,
    CAMPAIGN_XREFS,
    CAMPAIGNS,
    CANONICAL_HINTS,
    CANONICAL_TABLES,
    CONTACT_ACTIVITY,
    CONTACTS,
    DEFAULT_ACCOUNT,
    NON_ENGAGEMENT_KINDS,
    OWNER,
    OWNER_FILTER,
    Row,
    TableHints,
    optional_id,
    provider_id,
    stamp,
)
from sources.canonical.times import parse_utc, utc_millis

__all__ = [
    "ACTIVITY_TYPES",
    "BOUNCE_TYPES",
    "CAMPAIGNS",
    "CAMPAIGN_ACTIVITIES",
    "CAMPAIGN_NON_ENGAGEMENT",
    "CAMPAIGN_SUMMARIES",
    "CAMPAIGN_XREFS",
    "CANONICAL_HINTS",
    "CANONICAL_TABLES",
    "CONTACTS",
    "CONTACT_ACTIVITY",
    "DEFAULT_ACCOUNT",
    "NON_ENGAGEMENT_KINDS",
    "OWNER",
    "OWNER_FILTER",
    "CampaignCost",
    "ListingCursor",
    "LoadedRows",
    "ProviderApi",
    "ReportCost",
    "ReportRead",
    "RequestEstimate",
    "ResumePoint",
    "Row",
    "SyncOutcome",
    "SyncPlan",
    "SyncSettings",
    "TableHints",
    "backfill_estimate",
    "canonical_resources",
    "nightly_estimate",
    "optional_id",
    "parse_utc",
    "provider_id",
    "read_due_reports",
    "read_listing",
    "snapshot_digest",
    "stamp",
    "summary_read",
    "to_arrow",
    "utc_millis",
    "with_activity_ids",
]
