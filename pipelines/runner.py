"""Pipeline assembly: one dlt pipeline per provider, loading into one dataset."""

from __future__ import annotations

import fcntl
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import dlt
import pendulum
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigValueCannotBeCoercedException,
    LookupTraces,
)
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.providers import Provider
from pipelines.reconcile import reconcile
from pipelines.views import create_views
from sources.canonical import SyncOutcome, SyncPlan
from sources.errors import CampaignSyncError, ConfigurationError
from sources.redaction import redact

log = logging.getLogger("campaign_sync")

# the run record kept in the pipeline's local state (never synced to the destination; no secrets)
LAST_RUN = "campaign_sync_last_run"
LAST_SUCCESS = "campaign_sync_last_success"
# how often `--progress` writes a log line when stderr is not a terminal
PROGRESS_LOG_SECONDS = 10.0


DUCKDB_MEMORY_LIMIT = "192MB"
# PostgreSQL loads through COPY from CSV files rather than INSERT statements
LOADER_FILE_FORMATS = {"duckdb": "parquet", "postgres": "csv"}


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
    warnings: list[str] = field(default_factory=list)


def destination(target: Target) -> Any:
    """The dlt destination for `target` (PostgreSQL reads DESTINATION__POSTGRES__CREDENTIALS)."""
    if target.destination == "duckdb":
        path = Path(target.duckdb_path).resolve()
        if path.stem == target.dataset:  # DuckDB would not tell the file's catalog from the schema
            raise ConfigurationError(f"--duckdb-path {path.name} and --dataset {target.dataset} need different names")
        credentials = DuckDbCredentials(str(path))
        # DuckDB spills to disk beyond this limit, and without insertion order its merges need less,
        # so a big backfill's load keeps the process small (measured: `make bench`, scenario d)
        credentials.global_config = {"memory_limit": DUCKDB_MEMORY_LIMIT, "preserve_insertion_order": False}
        return dlt.destinations.duckdb(credentials=credentials)
    if target.destination == "postgres":
        # no unique indexes (as on DuckDB): a run killed after a load job committed but before dlt
        # marked it done replays that job, and a unique `_dlt_id` index would then fail every rerun
        return dlt.destinations.postgres(create_indexes=False)
    raise ConfigurationError(f"unknown destination {target.destination!r}: use duckdb or postgres")


def pipeline(provider: Provider, target: Target) -> dlt.Pipeline:
    """The provider's dlt pipeline, named `campaign_sync_<provider>`."""
    return dlt.pipeline(
        pipeline_name=provider.pipeline_name,
        destination=destination(target),
        dataset_name=target.dataset,
        pipelines_dir=target.pipelines_dir,
        progress=progress_collector(target.progress),
    )


def progress_collector(enabled: bool) -> Any:
    """dlt's progress display for `--progress`: bars on a terminal, a periodic log line otherwise."""
    if not enabled:
        return None
    if sys.stderr.isatty():
        return dlt.progress.tqdm()
    return dlt.progress.log(log_period=PROGRESS_LOG_SECONDS, logger=log, dump_system_stats=False)


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
        with run_lock(load):
            try:
                _load(load, source, provider, target, plan, result)
            finally:
                result.seconds = time.monotonic() - started
                _remember(load, result)
    except CampaignSyncError as error:
        result.error = error
    result.seconds = time.monotonic() - started
    return result


def _load(
    load: dlt.Pipeline, source: Any, provider: Provider, target: Target, plan: SyncPlan, result: LoadResult
) -> None:
    """Run the pipeline; what it loaded, cost and met goes into `result`."""
    if target.progress:
        _count_requests(source, load, plan.outcome)
    try:
        load.run(source, loader_file_format=LOADER_FILE_FORMATS[target.destination])
    except PipelineStepFailed as failure:
        result.error = _unwrap(failure, provider)
        return
    finally:
        result.requests = plan.outcome.requests
    result.rows = extracted_rows(load)
    result.error = plan.outcome.error()
    warnings = after_load(load, provider)
    if result.error is None:  # an incomplete run differs from the summaries anyway, and its error says so
        result.warnings = warnings


def extracted_rows(load: dlt.Pipeline) -> dict[str, int]:
    """Rows by table as the last run extracted them (nested tables not included).

    Not dlt's normalize counts: its CSV writer (our PostgreSQL format) counts cells, not rows
    (dlt issue 4461).
    """
    trace = load.last_trace
    info = trace.last_extract_info if trace is not None else None
    rows: dict[str, int] = {}
    for metrics in (info.metrics.values() if info is not None else ()):
        for step in metrics:
            for table, written in step["table_metrics"].items():
                if not table.startswith("_dlt"):
                    rows[table] = rows.get(table, 0) + written.items_count
    return rows


@contextmanager
def run_lock(load: dlt.Pipeline) -> Iterator[None]:
    """One run of a pipeline at a time: a second one refuses, and touches neither its state nor its data."""
    path = Path(load.pipelines_dir) / f"{load.pipeline_name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CampaignSyncError(
                f"another campaign-sync run of {load.pipeline_name} is in progress ({path} is locked); "
                "this one did nothing"
            ) from None
        yield


def after_load(load: dlt.Pipeline, provider: Provider) -> list[str]:
    """What follows every load (command line or Airflow): the analysis views, then the reconciliation warnings."""
    create_views(load)
    with load.sql_client() as client:
        return [found.message for found in reconcile(client, provider.name)]


def _count_requests(source: Any, load: dlt.Pipeline, outcome: SyncOutcome) -> None:
    """Show the run's HTTP requests (and so their rate) and its reports read of those due in dlt's progress."""
    counted = {"requests": 0, "reports": 0}

    def tick(item: Any) -> Any:
        for name, now in (("requests", outcome.requests), ("reports", outcome.reports_done)):
            if now > counted[name]:
                total = outcome.reports_due if name == "reports" else None
                load.collector.update(name, inc=now - counted[name], total=total)
                counted[name] = now
        return item

    for resource in source.resources.values():
        resource.add_map(tick)


def _remember(load: dlt.Pipeline, result: LoadResult) -> None:
    """Keep what the run knows (when, rows by table, requests, duration, error) in the pipeline's local state."""
    record = {
        "finished_at": pendulum.now("UTC").isoformat(),
        "seconds": round(result.seconds, 3),
        "requests": result.requests,
        "rows": result.rows,
        "error": redact(str(result.error)) if result.error is not None else None,
    }
    load.set_local_state_val(LAST_RUN, record)
    if result.error is None:
        load.set_local_state_val(LAST_SUCCESS, record)


def _build_source(provider: Provider, plan: SyncPlan) -> Any:
    try:
        return provider.source(plan=plan)
    except ConfigFieldMissingException as missing:
        raise _missing_setting(missing, provider) from None
    except ConfigValueCannotBeCoercedException as wrong:
        setting = provider.setting(wrong.field_name)
        raise ConfigurationError(f"{provider.name}: {setting} must be a {wrong.hint.__name__}") from None


def _missing_setting(missing: ConfigFieldMissingException, provider: Provider) -> ConfigurationError:
    """Name the environment variables of the missing settings (nested ones, what they lack)."""
    names = []
    for field_name, traces in missing.traces.items():
        nested = [trace for trace in traces if isinstance(trace, LookupTraces)]
        if not nested:
            names.append(provider.setting(field_name))
            continue
        lacking = sorted({name for trace in nested for name in trace.traces})
        tried = [t for trace in nested for found in trace.traces.values() for t in found if t.sections]
        setting = "__".join(tried[0].sections).upper() if tried else field_name
        names.append(f"{setting} (it lacks {', '.join(lacking)})")
    return ConfigurationError(f"missing setting {', '.join(names)}")


def _unwrap(failure: BaseException, provider: Provider) -> CampaignSyncError:
    """The error behind a failed dlt step: ours as it is, a missing setting named, else the root cause."""
    seen: BaseException | None = failure
    root = failure
    while seen is not None:
        if isinstance(seen, CampaignSyncError):
            return seen
        if isinstance(seen, ConfigFieldMissingException):
            return _missing_setting(seen, provider)
        root = seen
        seen = seen.__cause__ or seen.__context__
    lines = [line for line in str(root).splitlines() if line.strip()]
    detail = lines[0] if lines else ""
    return CampaignSyncError(redact(f"{type(root).__name__}: {detail}"))


def report_results(results: list[LoadResult], quiet: bool) -> int:
    """Print one line per provider (errors to stderr); return the exit code of the first error."""
    exit_code = 0
    for result in results:
        if result.error is not None:
            message = redact(str(result.error))
            named = message if message.startswith(result.provider) else f"{result.provider}: {message}"
            print(f"campaign-sync: {named}", file=sys.stderr)
            exit_code = exit_code or result.error.exit_code
        if not quiet and (result.rows or result.error is None):
            counts = ", ".join(f"{table} {n}" for table, n in sorted(result.rows.items())) or "nothing new"
            print(f"{result.provider}: {counts} ({result.requests} requests, {result.seconds:.1f}s)")
        if not quiet:
            for warning in result.warnings:
                print(f"{result.provider}: warning: {warning}")
    return exit_code
