"""The Constant Contact (API v2) dlt source."""

from __future__ import annotations

from collections.abc import Sequence

import dlt
from dlt.sources import DltResource

from sources.canonical import SyncPlan, SyncSettings, canonical_resources
from sources.constant_contact_v2.client import ConstantContactV2Api

BASE_URL = "https://api.constantcontact.com/v2"


@dlt.source(name="constant_contact_v2", section="constant_contact_v2", max_table_nesting=1)
def constant_contact_v2_source(
    api_key: str = dlt.secrets.value,
    access_token: str = dlt.secrets.value,
    base_url: str = BASE_URL,
    attribution_window_days: int = 30,
    lookback_minutes: int = 60,
    requests_per_second: float = 4,
    max_concurrency: int = 8,
    start_date: str | None = None,
    plan: SyncPlan | None = None,
) -> Sequence[DltResource]:
    """Campaigns (deleted ones marked), their tracking lists and summaries, and contacts from Constant Contact v2."""
    plan = plan or SyncPlan()
    settings = SyncSettings.from_config(plan, attribution_window_days, lookback_minutes, max_concurrency, start_date)
    api = ConstantContactV2Api(api_key, access_token, base_url, requests_per_second, settings, plan.outcome)
    return canonical_resources(api, settings, plan.outcome)
