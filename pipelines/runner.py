"""Pipeline assembly: one dlt pipeline per provider, loading into one dataset."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.providers import Provider
from sources.canonical import SyncPlan
from sources.errors import CampaignSyncError, ConfigurationError
from sources.redaction import redact

log = logging.getLogger("campaign_sync")


@dataclass
class Target:
    """Where and how to load: the common command-line options."""

    destination: str = "duckdb"
    dataset: str = "campaign_activity"
    duckdb_path: str = "campaign_sync.duckdb"
    pipelines_dir: str | None = None
    progress: bool = False


@dataclass
class LoadResult:
    """What one provider's run loaded and cost."""

    provider: str
    rows: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    seconds: float = 0.0
    error: CampaignSyncError | None = None


def destination(target: Target) -> Any:
    """The dlt destination for `target` (PostgreSQL reads DESTINATION__POSTGRES__CREDENTIALS)."""
    if target.destination == "duckdb":
        return dlt.destinations.duckdb(credentials=str(Path(target.duckdb_path).resolve()))
    if target.destination == "postgres":
        return dlt.destinations.postgres()
    raise ConfigurationError(f"unknown destination {target.destination!r}: use duckdb or postgres")


def pipeline(provider: Provider, target: Target) -> dlt.Pipeline:
    """The provider's dlt pipeline, named `campaign_sync_<provider>`."""
    return dlt.pipeline(
        pipeline_name=provider.pipeline_name,
        destination=destination(target),
        dataset_name=target.dataset,
        pipelines_dir=target.pipelines_dir,
        progress="log" if target.progress else None,
    )


def run_provider(
    provider: Provider,
    target: Target,
    backfill_since: datetime | None = None,
    backfill_until: datetime | None = None,
) -> LoadResult:
    """Extract and load one provider; errors are returned in the result, not raised."""
    started = time.monotonic()
    result = LoadResult(provider.name)
    plan = SyncPlan(backfill_since=backfill_since, backfill_until=backfill_until)
    try:
        source = _build_source(provider, plan)
        load = pipeline(provider, target)
        try:
            load.run(source)
        finally:
            result.requests = plan.outcome.requests
        trace = load.last_trace
        if trace is not None and trace.last_normalize_info is not None:
            counts = trace.last_normalize_info.row_counts
            result.rows = {t: n for t, n in counts.items() if not t.startswith("_dlt")}
        result.error = plan.outcome.error()
    except CampaignSyncError as error:
        result.error = error
    except PipelineStepFailed as failure:
        result.error = _unwrap(failure)
    result.seconds = time.monotonic() - started
    return result


def _build_source(provider: Provider, plan: SyncPlan) -> Any:
    try:
        return provider.source(plan=plan)
    except ConfigFieldMissingException as missing:
        names = ", ".join(provider.setting(name) for name in missing.fields)
        raise ConfigurationError(f"{provider.name}: missing setting {names}") from None


def _unwrap(failure: BaseException) -> CampaignSyncError:
    seen = failure
    while seen is not None:
        if isinstance(seen, CampaignSyncError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return CampaignSyncError(redact(f"{type(failure).__name__}: {failure}").splitlines()[0])


def report_results(results: list[LoadResult], quiet: bool) -> int:
    """Print one line per provider (errors to stderr); return the exit code of the first error."""
    exit_code = 0
    for result in results:
        if result.error is not None:
            print(f"campaign-sync: {result.provider}: {redact(str(result.error))}", file=sys.stderr)
            exit_code = exit_code or result.error.exit_code
        if not quiet and (result.rows or result.error is None):
            counts = ", ".join(f"{table} {n}" for table, n in sorted(result.rows.items())) or "nothing new"
            print(f"{result.provider}: {counts} ({result.requests} requests, {result.seconds:.1f}s)")
    return exit_code
