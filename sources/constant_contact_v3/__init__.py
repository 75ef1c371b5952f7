"""The Constant Contact (API v3) dlt source."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import dlt
from dlt.sources import DltResource

from sources.canonical import (
    CAMPAIGN_ACTIVITIES,
    CAMPAIGN_XREFS,
    DEFAULT_ACCOUNT,
    Row,
    SyncPlan,
    SyncSettings,
    canonical_resources,
    read_listing,
    stamp,
)
from sources.constant_contact_v3.client import ConstantContactV3Api
from sources.http import ReadAhead

BASE_URL = "https://api.cc.email/v3"
TOKEN_URL = "https://authz.constantcontact.com/oauth2/default/v1/token"
REFRESH_TOKEN_FILE = "~/.campaign-sync/constant_contact_v3.refresh_token"


@dlt.source(name="constant_contact_v3", section="constant_contact_v3", max_table_nesting=1)
def constant_contact_v3_source(
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    refresh_token: str = dlt.secrets.value,
    base_url: str = BASE_URL,
    token_url: str = TOKEN_URL,
    refresh_token_file: str = REFRESH_TOKEN_FILE,
    attribution_window_days: int = 30,
    lookback_minutes: int = 60,
    requests_per_second: float = 4,
    max_concurrency: int = 8,
    start_date: str | None = None,
    plan: SyncPlan | None = None,
) -> Sequence[DltResource]:
    """Campaigns and their activities, every tracking report, summaries, and contacts from Constant Contact v3."""
    plan = plan or SyncPlan()
    settings = SyncSettings.from_config(plan, attribution_window_days, lookback_minutes, max_concurrency, start_date)
    api = ConstantContactV3Api(
        client_id=client_id,
        client_secret=client_secret,
        refresh_token=refresh_token,
        base_url=base_url,
        token_url=token_url,
        # each account rotates its own refresh token: a named account's is kept beside the default one's
        refresh_token_file=refresh_token_file if settings.account == DEFAULT_ACCOUNT
        else f"{refresh_token_file}.{settings.account}",
        requests_per_second=requests_per_second,
        max_concurrency=max_concurrency,
        settings=settings,
        outcome=plan.outcome,
    )
    resources = canonical_resources(api, settings, plan.outcome)
    campaigns = next(resource for resource in resources if resource.name == "campaigns")
    campaigns.apply_hints(columns={"campaign_activities": {"data_type": "json"}})

    @dlt.transformer(data_from=campaigns, **CAMPAIGN_ACTIVITIES)
    def campaign_activities(campaign_page: list[Row]) -> Iterator[list[Row]]:
        rows = [row for campaign in campaign_page for row in api.campaign_activity_rows(campaign)]
        stamp(rows, api.name, settings.account)
        if rows:
            yield rows

    @dlt.resource(**CAMPAIGN_XREFS)
    def campaign_xrefs() -> Iterator[list[Row]]:
        """The v3 campaigns of the account's v2 campaigns loaded and not looked up yet: each is asked once."""
        xrefs = ReadAhead(api.campaign_xrefs(plan.unmapped_v2_campaigns), f"{api.name} campaign cross-references")
        for rows in read_listing(xrefs, plan.outcome):
            stamp(rows, api.name, settings.account)
            yield rows

    return [*resources, campaign_activities, campaign_xrefs]
