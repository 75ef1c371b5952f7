"""The EmailOctopus (API 1.6) dlt source."""

from __future__ import annotations

from collections.abc import Sequence

import dlt
from dlt.extract.resource import DltResource

from sources.canonical import SyncPlan, SyncSettings, canonical_resources
from sources.emailoctopus.client import EmailOctopusApi

BASE_URL = "https://emailoctopus.com/api/1.6"


@dlt.source(name="emailoctopus", section="emailoctopus", max_table_nesting=1)
def emailoctopus_source(
    api_key: str = dlt.secrets.value,
    base_url: str = BASE_URL,
    attribution_window_days: int = 30,
    lookback_minutes: int = 60,
    requests_per_second: float = 10,
    max_concurrency: int = 8,
    start_date: str | None = None,
    plan: SyncPlan | None = None,
) -> Sequence[DltResource]:
    """Campaigns, their activity reports and summaries, and list contacts from EmailOctopus."""
    plan = plan or SyncPlan()
    settings = SyncSettings.from_config(plan, attribution_window_days, lookback_minutes, max_concurrency, start_date)
    api = EmailOctopusApi(api_key, base_url, requests_per_second, settings, plan.outcome)
    return canonical_resources(api, settings, plan.outcome)
