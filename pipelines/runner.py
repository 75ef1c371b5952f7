"""Pipeline assembly: one dlt pipeline per provider, loading into one dataset."""

from __future__ import annotations

import fcntl
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dlt
import duckdb
import pendulum

from pipelines.dlt_adapter import (
    CannotRestorePipelineException,
    DestinationException,
    DestinationUndefinedEntity,
    DuckDbCredentials,
    ExtractInfo,
    PipelineStepFailed,
    TLoaderFileFormat,
    archive_completed_packages,
    completed_packages,
    delete_extracted_package,
    destination_state,
    local_state,
    newer_state,
    pipelines_dir,
)
from pipelines.erasure import forget_after_load, forgotten
from pipelines.providers import Provider
from pipelines.reconcile import existing_tables, reconcile, summary_counts, table_columns
from pipelines.views import create_views, unmapped_v2_campaigns
from sources.canonical import (
    CAMPAIGN_NON_ENGAGEMENT,
    CANONICAL_HINTS,
    CANONICAL_TABLES,
    DEFAULT_ACCOUNT,
    OWNER_FILTER,
    SyncOutcome,
    SyncPlan,
)
from sources.canonical.resources import backfill_listings_cost, loaded_contact_digests
from sources.dlt_adapter import ConfigFieldMissingException, ConfigValueCannotBeCoercedException, missing_fields
from sources.emailoctopus.upgrade import click_ids_stale, upgrade_click_ids
from sources.errors import CampaignSyncError, ConfigurationError, Interrupted
from sources.http import STOP_AT_ONCE
from sources.redaction import LINE_CHARACTERS, printable, redact

log = logging.getLogger("campaign_sync")

# the run record kept in the pipeline's local state (never synced to the destination; no secrets)
LAST_RUN = "campaign_sync_last_run"
LAST_SUCCESS = "campaign_sync_last_success"
# how often `--progress` writes a log line when stderr is not a terminal
PROGRESS_LOG_SECONDS = 10.0


# DuckDB's memory limit (setting `destination.duckdb.memory_limit`, DESTINATION__DUCKDB__MEMORY_LIMIT):
# beyond it DuckDB spills to a temp folder beside the database file instead of failing
DUCKDB_MEMORY_LIMIT = "512MB"
# the local state key that says which destination and dataset a pipeline's local state belongs to
LOADS_INTO = "campaign_sync_loads_into"
# the table that says, per provider account, that a load was made and what follows it has not ended since
# (`owe_after_load`); kept in the dataset, so every machine and folder that runs the account sees it
AFTER_LOAD_OWED = "after_load_owed"
# PostgreSQL loads through COPY from CSV files rather than INSERT statements
LOADER_FILE_FORMATS: dict[str, TLoaderFileFormat] = {"duckdb": "parquet", "postgres": "csv"}


DEFAULT_DUCKDB_PATH = "campaign_sync.duckdb"
# `campaign-sync demo` loads into files of its own, made afresh each time
DEMO_DUCKDB = "campaign_sync_demo.duckdb"
DEMO_PIPELINES = ".campaign_sync_demo"
# how many accounts `run` loads at once: their requests are bounded by their providers' budgets, the
# number only bounds the threads and the memory of the extracts in progress
ACCOUNTS_AT_ONCE = 8
# a provider whose run of an account follows another provider's run of the same account: Constant
# Contact v3 looks up the cross-references of the v2 campaigns loaded (`build_source`), so a night
# that loads both APIs maps that night's v2 campaigns, and counts their events once, in the same run
FOLLOWS = {"constant_contact_v3": "constant_contact_v2"}


@dataclass
class Target:
    """Where and how to load: the common command-line options."""

    destination: str = "duckdb"
    dataset: str = "campaign_activity"
    duckdb_path: str = DEFAULT_DUCKDB_PATH
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
    new_rows: dict[str, int] = field(default_factory=dict)  # by table: how many more rows it holds now
    rows_read_again: int = 0  # events read again and left out, as an earlier run loaded them
    extract_seconds: float = 0.0  # of `seconds`: the reading (extract step)


def destination(target: Target, read_only: bool = False) -> Any:
    """The dlt destination for `target` (PostgreSQL reads DESTINATION__POSTGRES__CREDENTIALS); `read_only`
    opens a DuckDB file read-only."""
    if target.destination == "duckdb":
        path = Path(target.duckdb_path).resolve()
        if path.stem == target.dataset:  # DuckDB would not tell the file's catalog from the schema
            raise ConfigurationError(f"--duckdb-path {path.name} and --dataset {target.dataset} need different names")
        credentials = DuckDbCredentials(str(path), read_only=read_only)
        # past the limit DuckDB spills to its temp folder, and without insertion order its merges need
        # less, so the process stays small at any account size (`make bench`, scenarios d and e). The
        # folder is DuckDB's default, `<file>.tmp`, and is not set here: dlt sets these settings on each
        # connection it opens, and while a run keeps the file open (`kept_open`) DuckDB refuses to set
        # the temp folder again once a spill has used it
        credentials.global_config = {"memory_limit": duckdb_memory_limit(), "preserve_insertion_order": False}
        return dlt.destinations.duckdb(credentials=credentials)
    if target.destination == "postgres":
        # no unique indexes (as on DuckDB): a run killed after a load job committed but before dlt
        # marked it done replays that job, and a unique `_dlt_id` index would then fail every rerun
        return dlt.destinations.postgres(create_indexes=False)
    raise ConfigurationError(f"unknown destination {target.destination!r}: use duckdb or postgres")


def duckdb_memory_limit() -> str:
    """The `destination.duckdb.memory_limit` setting (e.g. `1GB`), default DUCKDB_MEMORY_LIMIT."""
    value: Any = dlt.config.get("destination.duckdb.memory_limit")
    return str(value) if value else DUCKDB_MEMORY_LIMIT


def pipeline(provider: Provider, target: Target) -> dlt.Pipeline:
    """The provider's dlt pipeline, named `campaign_sync_<provider>`, with local state for `target`,
    for the commands that change a pipeline (`run`, `backfill`, `abort-pending`).

    The local state (cursors, pending packages) belongs to one destination and dataset. When the
    target changes, it is dropped, and dlt restores the target's own state from its tables (or
    starts afresh, so a new destination gets the whole history); while it holds load packages not
    loaded yet (data read and not loaded), it is kept and the command refused.
    """
    # a loaded package's files are a copy of personal data (see README "Erasure"): dlt deletes
    # them once loaded, unless `load.delete_completed_jobs` is configured otherwise
    if dlt.config.get("load.delete_completed_jobs") is None:
        dlt.config["load.delete_completed_jobs"] = True
    loads_into = _loads_into(target)
    attached = _attached(provider, target)  # read before dlt.pipeline() records the new target in it
    known = local_state(attached.state).get(LOADS_INTO) if attached is not None else None
    if attached is not None and known not in (None, loads_into) and _pending(attached):
        raise ConfigurationError(
            f"{provider.label}: pipeline {provider.pipeline_name} has load packages pending for {known}; "
            "run it against that destination first to load them (or `abort-pending` there to drop them); "
            "nothing was changed"
        )
    load = dlt.pipeline(
        pipeline_name=provider.pipeline_name,
        destination=destination(target),
        dataset_name=target.dataset,
        pipelines_dir=pipelines_dir(target.pipelines_dir),
        progress=progress_collector(target.progress),
    )
    if known is not None and known != loads_into:
        log.info("%s: local state belongs to %s; now loading into %s", provider.pipeline_name, known, loads_into)
        load = load.drop()
    load.set_local_state_val(LOADS_INTO, loads_into)
    return load


def pipeline_view(provider: Provider, target: Target, client: Any | None) -> tuple[dict[str, Any], list[str]]:
    """The provider's pipeline state and pending load packages, for the commands that only read: nothing
    is created or changed. The state is the newer of the destination's (through `client`, a read-only
    `dataset_client`; None: no dataset) and the local one; local state that belongs to another target
    (another destination, file or dataset) is not this target's."""
    local: dict[str, Any] | None = None
    pending: list[str] = []
    attached = _attached(provider, target)
    if attached is not None and local_state(attached.state).get(LOADS_INTO) == _loads_into(target):
        local, pending = dict(attached.state), _pending(attached)
    stored = destination_state(provider.pipeline_name, client) if client is not None else None
    return newer_state(local, stored), pending


def _attached(provider: Provider, target: Target) -> dlt.Pipeline | None:
    """The provider's pipeline as its local state has it (nothing written), None when there is none."""
    folder = Path(pipelines_dir(target.pipelines_dir))
    if not (folder / provider.pipeline_name).is_dir():  # dlt.attach would create a missing folder
        return None
    try:
        return dlt.attach(provider.pipeline_name, pipelines_dir=str(folder))
    except CannotRestorePipelineException:
        return None


def _pending(load: dlt.Pipeline) -> list[str]:
    """The pipeline's load packages not loaded yet (extracted or normalized, not completed by a run that was
    killed before dlt archived them: `tidy_killed_packages`)."""
    pending = {*load.list_extracted_load_packages(), *load.list_normalized_load_packages()}
    return sorted(pending - set(completed_packages(load)))


def _loads_into(target: Target) -> str:
    """Names the destination and dataset: a DuckDB file, or a PostgreSQL server and database (no password)."""
    if target.destination == "duckdb":
        return f"duckdb:{Path(target.duckdb_path).resolve()}/{target.dataset}"
    credentials: Any = dlt.secrets.get("destination.postgres.credentials")
    if isinstance(credentials, dict):
        where = "{username}@{host}:{port}/{database}".format_map({"port": 5432, **credentials})
    else:
        parts = urlsplit(str(credentials or ""))
        where = f"{parts.username}@{parts.hostname}:{parts.port or 5432}{parts.path}"
    return f"postgres:{where}/{target.dataset}"


def progress_collector(enabled: bool) -> Any:
    """dlt's progress display for `--progress`: bars on a terminal, a periodic log line otherwise."""
    if not enabled:
        return None
    if sys.stderr.isatty():
        return "tqdm"
    # `dlt.progress.log` is dlt's public name for its log collector; its module names it without `__all__`
    return dlt.progress.log(  # type: ignore[attr-defined]
        log_period=PROGRESS_LOG_SECONDS, logger=log, dump_system_stats=False
    )


def run_provider(
    provider: Provider,
    target: Target,
    backfill_since: datetime | None = None,
    backfill_until: datetime | None = None,
    max_requests: int | None = None,
) -> LoadResult:
    """Extract and load one provider's account; errors are returned in the result, not raised.

    The caller holds the pipeline's lock (`run_locks`).
    """
    started = time.monotonic()
    result = LoadResult(provider.label)
    plan = SyncPlan(
        backfill_since=backfill_since, backfill_until=backfill_until, account=provider.account,
        max_requests=max_requests,
    )
    try:
        load = pipeline(provider, target)
        source = build_source(provider, load, plan)
        try:
            _load(load, source, provider, target, plan, result)
        except CampaignSyncError as error:  # kept in the run's record
            result.error = error
        except (DestinationException, PipelineStepFailed) as failure:  # outside the load: this account's error
            reason = _unwrap(failure, provider)  # an interruption or a setting is said as it is
            plain = type(reason) is CampaignSyncError
            result.error = CampaignSyncError(f"{provider.label}: the destination failed: {reason}") if plain else reason
        except KeyboardInterrupt:  # a second Ctrl-C outside dlt's steps: kept as the interruption it is, not a load
            result.error = Interrupted()
            raise
        finally:
            result.seconds = time.monotonic() - started
            _remember(load, result)
    except CampaignSyncError as error:
        result.error = error
    result.seconds = time.monotonic() - started
    return result


def run_accounts(accounts: list[Provider], target: Target, max_requests: int | None = None) -> list[LoadResult]:
    """Run several accounts at once (up to ACCOUNTS_AT_ONCE), each in its own thread; results in their order.

    Their requests meet in the budgets they share (a Constant Contact application's), their loads
    take turns (`dataset_lock`). An account that follows another (`FOLLOWS`) starts once that one's
    run has ended. The caller holds their pipelines' locks (`run_locks`).
    """
    if len(accounts) <= 1:
        return [run_provider(account, target, max_requests=max_requests) for account in accounts]
    ended = {(account.name, account.account): threading.Event() for account in accounts}

    def run(account: Provider) -> LoadResult:
        try:
            leader = ended.get((FOLLOWS.get(account.name, ""), account.account))
            while leader is not None and not leader.wait(WAIT_POLL_SECONDS):
                stop_if_asked()
            stop_if_asked()
            return run_provider(account, target, max_requests=max_requests)
        finally:
            ended[(account.name, account.account)].set()

    # followers are queued last: a pool takes its queue in order, so a follower waits only on a
    # run that has a thread already
    order = sorted(range(len(accounts)), key=lambda index: accounts[index].name in FOLLOWS)
    with ThreadPoolExecutor(min(len(accounts), ACCOUNTS_AT_ONCE), thread_name_prefix="account") as pool:
        futures = {index: pool.submit(run, accounts[index]) for index in order}
        try:
            return [futures[index].result() for index in range(len(accounts))]
        except KeyboardInterrupt:  # the second signal: the accounts not started never start
            pool.shutdown(cancel_futures=True)
            raise


def _load(
    load: dlt.Pipeline, source: Any, provider: Provider, target: Target, plan: SyncPlan, result: LoadResult
) -> None:
    """Run the pipeline; what it loaded, cost and met goes into `result`.

    Load packages an earlier run left pending are loaded first (dlt's `run` would load them and
    stop). A package that cannot load stays pending, and the error names the way out.
    """
    if target.progress:
        _count_requests(source, load, plan.outcome)
    with kept_open(target):  # the steps before the reading connect to the dataset several times
        loaded = tidy_killed_packages(load)  # loaded by a killed run: looked at again like the packages left
        load.sync_destination()  # what dlt's `run` does first: the destination's state, when it is newer
        # a backfill's listings take what the last one's took: a smaller cap is refused
        if plan.backfill_since is not None:
            plan.outcome.listings_cost = backfill_listings_cost(load.state.get("sources", {}).get(source.name) or {})
            result.error = plan.outcome.cap_too_small()
            if result.error is not None:
                return
        try:  # whether packages an earlier run read were loaded, or what followed a load did not end: then
            # after_load looks at everything
            earlier = _load_packages_left(load, provider, target, loaded)
        except CampaignSyncError as error:  # in `result`, which this run's record keeps (`_remember`)
            result.error = error
            return
        upgrade_loaded_ids(load, provider, target)
    try:
        reading = time.monotonic()
        extracted = load.extract(source, loader_file_format=LOADER_FILE_FORMATS[target.destination])
        result.extract_seconds = time.monotonic() - reading
        read = extracted_rows(extracted)
        if plan.outcome.snapshot_resets:  # the rows that delete the snapshots replaced: passed on, not read
            read[CAMPAIGN_NON_ENGAGEMENT["name"]] -= plan.outcome.snapshot_resets
        load.normalize()
        with dataset_lock(target, load.sql_client):
            # counted in the tables this load can change (it leaves the others as they are: `+0 rows`)
            before, reported = _loaded_now(load, provider, read)
            # owed with this run's package: rows that a kill in its load leaves twice are the next run's to drop
            with load.sql_client() as client:
                owe_after_load(client, provider, load.list_normalized_load_packages())
            load.load()
            try:
                with load.sql_client() as client:
                    warnings = after_load(load, client, provider, None if earlier else plan, reported)
                    after = table_rows(client, provider, read)
                    after_load_ended(client, provider)
            except DestinationException as failure:  # the database out of memory, or the connection lost
                result.error = CampaignSyncError(
                    f"{provider.label}: the load ended, but what follows it (erasure, views, reconciliation) "
                    f"failed: {_unwrap(failure, provider)}; the next run makes it again, for everyone"
                )
                return
    except PipelineStepFailed as failure:
        if failure.step == "load":
            result.error = _load_failed(failure, provider, "the load failed")
        else:
            result.error = _unwrap(failure, provider)
        return
    finally:
        result.requests = plan.outcome.requests
        result.warnings = plan.outcome.notes()  # values replaced or set aside, whatever else happened
    result.rows = read
    result.new_rows = {table: n - before.get(table, 0) for table, n in after.items()}
    result.rows_read_again = plan.outcome.rows_skipped
    result.error = plan.outcome.error()
    if result.error is None:  # an incomplete run differs from the summaries anyway, and its error says so
        result.warnings += warnings


def _load_packages_left(load: dlt.Pipeline, provider: Provider, target: Target, loaded: list[str]) -> bool:
    """Load the packages an earlier run read and left (normalizing them first), and drop the rows that they,
    and the packages a killed run loaded (`loaded`), put twice; whether there were any. A package that
    cannot load stays pending, and its error names the way out."""
    try:
        if load.list_extracted_load_packages():
            load.normalize()
        left = load.list_normalized_load_packages()
        with load.sql_client() as client:
            owed = owed_after_load(client, provider)
        if not left and not loaded and owed is None:
            return False
        # the lock is taken only to write: another process' load does not hold up the reads
        with dataset_lock(target, load.sql_client):
            replayed = sorted({*left, *loaded, *(owed or ())})
            with load.sql_client() as client:
                owe_after_load(client, provider, replayed)  # until this run's after_load ends
            if left:
                load.load()
            if replayed:
                with load.sql_client() as client:
                    drop_replayed_rows(client, target.destination == "postgres", replayed)
    except PipelineStepFailed as failure:
        raise _load_failed(failure, provider, "a load package left by an earlier run could not load") from None
    return True


def owed_after_load(client: Any, provider: Provider) -> list[str] | None:
    """Whether what follows a load of the account is owed (`owe_after_load`): the ids of the load packages
    whose replayed rows are still to be dropped (`drop_replayed_rows`), or None when nothing is owed."""
    if AFTER_LOAD_OWED not in existing_tables(client):
        return None
    rows = client.execute_sql(
        f"SELECT load_ids FROM {client.make_qualified_table_name(AFTER_LOAD_OWED)} WHERE {OWNER_FILTER}",
        provider.name, provider.account,
    )
    return sorted({load_id for (load_ids,) in rows or () for load_id in json.loads(load_ids)}) if rows else None


def owe_after_load(client: Any, provider: Provider, load_ids: Collection[str] = ()) -> None:
    """Say, before a load, that what follows it is owed until `after_load_ended`: a run that fails or is killed
    in between leaves it owed, and the next run makes it for everyone (`_load_packages_left`), wherever it runs.
    `load_ids`: load packages that a killed run may have loaded in part, whose replayed rows are to be dropped."""
    if not client.has_dataset():
        client.create_dataset()
    table = client.make_qualified_table_name(AFTER_LOAD_OWED)
    client.execute_sql(
        f"CREATE TABLE IF NOT EXISTS {table} (provider VARCHAR NOT NULL, account VARCHAR NOT NULL, "
        "load_ids VARCHAR NOT NULL, since TIMESTAMP WITH TIME ZONE NOT NULL)"
    )
    with client.begin_transaction():
        kept = owed_after_load(client, provider) or []
        client.execute_sql(f"DELETE FROM {table} WHERE {OWNER_FILTER}", provider.name, provider.account)
        client.execute_sql(
            f"INSERT INTO {table} (provider, account, load_ids, since) VALUES (%s, %s, %s, %s)",
            provider.name, provider.account, json.dumps(sorted({*kept, *load_ids})), pendulum.now("UTC"),
        )


def after_load_ended(client: Any, provider: Provider) -> None:
    """What follows the account's loads has ended: nothing is owed any more (`owe_after_load`)."""
    table = client.make_qualified_table_name(AFTER_LOAD_OWED)
    client.execute_sql(f"DELETE FROM {table} WHERE {OWNER_FILTER}", provider.name, provider.account)


# one pipeline at a time writes into a dataset: dlt stages every pipeline's merges in the same
# `<dataset>_staging` tables and empties them as a load starts, so two loads at once could lose
# each other's staged rows (and two view or erasure passes would collide)
_dataset_locks: dict[str, threading.Lock] = {}
_dataset_locks_guard = threading.Lock()
# how often an account's run that waits (for the dataset another process or account holds, for the account it
# follows) looks again: it asks, rather than waits in the server or on a lock, so that a signal is heard
WAIT_POLL_SECONDS = 0.2


@contextmanager
def dataset_lock(target: Target, connect: Callable[[], Any]) -> Iterator[None]:
    """Hold the target's dataset for one pipeline's writes (its load, erasure and views), or `forget`'s.

    Threads of this process wait for each other; on PostgreSQL an advisory lock on the dataset's
    name, taken through a client of `connect()` (a pipeline's `sql_client`), makes other processes
    wait too (Airflow workers running accounts side by side). A DuckDB file stays open meanwhile (`kept_open`).
    """
    with _dataset_locks_guard:
        local = _dataset_locks.setdefault(_loads_into(target), threading.Lock())
    while not local.acquire(timeout=WAIT_POLL_SECONDS):  # another account of this run writes
        stop_if_asked()
    try:
        stop_if_asked()  # what this account would load stays pending
        if target.destination != "postgres":
            with kept_open(target):
                yield
            return
        with connect() as client:
            key = f"campaign_sync:{target.dataset}"
            while not client.execute_sql("SELECT pg_try_advisory_lock(hashtext(%s))", key)[0][0]:
                STOP_AT_ONCE.wait(WAIT_POLL_SECONDS)
                stop_if_asked()
            try:
                yield
            finally:
                client.execute_sql("SELECT pg_advisory_unlock(hashtext(%s))", key)
    finally:
        local.release()


def stop_if_asked() -> None:
    """Stop at once (`KeyboardInterrupt`) once a second signal came: each account of a run runs in a thread of
    its own, where the main thread's KeyboardInterrupt never comes, so each looks before it waits or writes."""
    if STOP_AT_ONCE.is_set():
        raise KeyboardInterrupt


@contextmanager
def kept_open(target: Target) -> Iterator[None]:
    """Keep the target's DuckDB file open in this process for a few steps that each connect to it (dlt opens
    it for each load job and each client). While one connection to a file is open, DuckDB's `connect` to the
    same file in the same process shares its database instead of opening the file again (about 20 ms each).
    Not held while a run reads from the providers: another process may open the file in between."""
    if target.destination != "duckdb":
        yield
        return
    try:
        connection = duckdb.connect(str(Path(target.duckdb_path).resolve()))  # as dlt connects: the same configuration
    except duckdb.IOException as failure:
        if LOCKED_BY_ANOTHER_PROCESS not in str(failure):
            raise
        raise CampaignSyncError(
            f"cannot open the duckdb destination: {_destination_reason(failure)} (anything this run read "
            "stays pending: the next run loads it)"
        ) from None
    try:
        yield
    finally:
        connection.close()


# what DuckDB says when another process holds the file
LOCKED_BY_ANOTHER_PROCESS = "Could not set lock on file"
_LOCKED_FILE = re.compile(rf'{LOCKED_BY_ANOTHER_PROCESS} "(.+?)": ')


def _destination_reason(failure: BaseException) -> str:
    """A destination failure in one line; a DuckDB file that another process holds (a run, or a program
    reading it) is said so."""
    reason = first_line(failure)
    held = _LOCKED_FILE.search(reason)
    if held is None:
        return reason
    return (f"{held[1]} is in use by another process (a run in progress, or a program reading it?); "
            "try again when it ends")


def tidy_killed_packages(load: dlt.Pipeline) -> list[str]:
    """Finish what a killed run left half done in dlt's package folders; returns the load ids of the
    packages it finds loaded.

    dlt's normalize commits a package by renaming it into the load folder and then deletes the
    extracted copy; a process killed between the two leaves both, and every later normalize
    fails to rename onto the committed package. The committed one is complete (the rename is
    atomic), so the extracted copy is the one to go. A package loaded and recorded, but not yet
    moved among the loaded ones, is moved there (`archive_completed_packages`).
    """
    done = set(load.list_extracted_load_packages()) & set(load.list_normalized_load_packages())
    for load_id in sorted(done):
        log.warning("%s: package %s was normalized by a run that was killed; dropping its extracted copy",
                    load.pipeline_name, load_id)
        delete_extracted_package(load, load_id)
    loaded = archive_completed_packages(load)
    for load_id in loaded:
        log.warning("%s: package %s was loaded by a run that was killed before dlt archived it; archived",
                    load.pipeline_name, load_id)
    return loaded


def _load_failed(failure: PipelineStepFailed, provider: Provider, what: str) -> CampaignSyncError:
    """A load that failed: the pipeline, the reason, and what happens to the package."""
    reason = _unwrap(failure, provider)
    return CampaignSyncError(
        f"{provider.label}: {what} (pipeline {provider.pipeline_name}): {reason}; the package stays pending and "
        f"the next run retries it; if it can never load, `campaign-sync abort-pending {provider.arguments}` drops it "
        "and the next run reads its data again"
    )


def table_rows(client: Any, provider: Provider, among: Collection[str] = CANONICAL_TABLES) -> dict[str, int]:
    """The provider's rows in each canonical table of the destination (of `among`; none before the first load)."""
    tables = existing_tables(client)
    return {
        table: int((client.execute_sql(
            f"SELECT count(*) FROM {client.make_qualified_table_name(table)} WHERE {OWNER_FILTER}",
            provider.name, provider.account,
        ) or [[0]])[0][0])
        for table in CANONICAL_TABLES
        if table in tables and table in among
    }


def _loaded_now(
    load: dlt.Pipeline, provider: Provider, among: Collection[str]
) -> tuple[dict[str, int], dict[str, tuple[Any, ...]]]:
    """Before a load: the provider's rows in the tables of `among` (`table_rows`) and the summary counts of
    its campaigns (nothing before the first load)."""
    try:
        with load.sql_client() as client:
            return table_rows(client, provider, among), summary_counts(client, provider.name, provider.account)
    except DestinationUndefinedEntity:  # no dataset yet
        return {}, {}


def extracted_rows(extracted: ExtractInfo) -> dict[str, int]:
    """Rows by table as the run extracted them (nested tables not included).

    Not dlt's normalize counts: its CSV writer (our PostgreSQL format) counts cells, not rows
    (dlt issue 4461).
    """
    rows: dict[str, int] = {}
    for metrics in extracted.metrics.values():
        for step in metrics:
            for table, written in step["table_metrics"].items():
                if not table.startswith("_dlt"):
                    rows[table] = rows.get(table, 0) + written.items_count
    return rows


@contextmanager
def dataset_client(target: Target, read_only: bool = False) -> Iterator[Any]:
    """A connected job client of the target's dataset (its `sql_client` runs SQL), of no pipeline: for
    what spans every provider (`forget`) and, `read_only`, for the commands that only read (`status`,
    `report`, `plan`): DuckDB opens the file read-only and PostgreSQL's session is read-only; a DuckDB
    file that is not there is not created (None instead).
    """
    if read_only and target.destination == "duckdb" and not Path(target.duckdb_path).is_file():
        yield None
        return
    try:
        dataset = dlt.dataset(destination(target, read_only), target.dataset, dlt.Schema(target.dataset))
        client: Any = dataset.destination_client
        client.sql_client.open_connection()
    except ConfigFieldMissingException as missing:
        raise missing_setting(missing) from None
    except DestinationException as failure:  # down, refusing us, or a DuckDB file another process holds
        reason = _destination_reason(failure)
        raise CampaignSyncError(f"cannot open the {target.destination} destination: {reason}") from None
    try:
        if read_only and target.destination == "postgres":
            client.sql_client.execute_sql("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        yield client
    finally:
        client.sql_client.close_connection()


@contextmanager
def run_locks(providers: list[Provider], target: Target) -> Iterator[None]:
    """One run of a pipeline at a time: all the pipelines of a command are locked before anything
    runs, and if one is taken the command refuses at once, touching no state or data."""
    folder = Path(pipelines_dir(target.pipelines_dir))
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as held:
        for provider in providers:
            path = folder / f"{provider.pipeline_name}.lock"
            handle = held.enter_context(open(path, "w"))
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CampaignSyncError(
                    f"another campaign-sync run of {provider.pipeline_name} is in progress ({path} is locked); "
                    "this one did nothing"
                ) from None
        yield


def abort_pending(provider: Provider, target: Target) -> int:
    """Drop the provider's pending load packages and put its local state back where it was before
    them (dlt's `abort_packages`), so the next run reads their data again. Returns how many."""
    load = pipeline(provider, target)
    tidy_killed_packages(load)  # a package loaded already is not dropped (its id is owed since its load began)
    pending = len(load.list_extracted_load_packages()) + len(load.list_normalized_load_packages())
    if pending:
        try:
            load.abort_packages()
        except PipelineStepFailed as failure:
            raise _unwrap(failure, provider) from None
    return pending


def after_load(
    load: dlt.Pipeline, client: Any, provider: Provider, plan: SyncPlan | None, reported: dict[str, tuple[Any, ...]]
) -> list[str]:
    """What follows every load (command line or Airflow): the contacts deleted at the provider are
    forgotten (unless FORGET_DELETED_CONTACTS is false), the tables analyzed (PostgreSQL), the analysis views,
    then the reconciliation warnings, through `client` (a SQL client of the pipeline's dataset).

    They look at what the load changed: the people forgotten since the run's reads began (`plan.forgotten`
    left the others out), and the campaigns whose events the run passed on (`plan.outcome`) or whose summary
    counts differ from `reported` (those loaded before); with no `plan` (the run loaded packages an earlier
    run read), at everyone and every campaign.
    """
    forget_after_load(
        client, provider.name, provider.account, provider.forgets_deleted_contacts(),
        None if plan is None else plan.forgotten,
    )
    if load.destination.destination_type == "dlt.destinations.postgres":
        analyze(client)
    create_views(load, client)
    campaigns = None
    if plan is not None:
        changed = {cid for cid, counts in summary_counts(client, provider.name, provider.account).items()
                   if reported.get(cid) != counts}
        campaigns = plan.outcome.campaigns_with_events | changed
    return [found.message for found in reconcile(client, provider.name, provider.account, campaigns)]


def drop_replayed_rows(client: Any, postgres: bool, load_ids: Collection[str]) -> None:
    """Delete the second copies of rows that these load packages (left by a killed run, loaded now) put
    into the canonical tables twice.

    dlt runs again a load job that a killed run had committed but not yet marked done, so the job's rows
    reach the staging table twice. dlt 1.31's merge keeps one staged row per primary key of a table that
    has one and no nested tables (read from its merge SQL); into the others (`contacts`, whose tags are
    nested; `campaign_non_engagement`, merged on its merge key) it inserts both copies. A copy is the same
    row: the same `_dlt_id` where the table has one, and every column the same where it has not.
    """
    tables = table_columns(client, client.dataset_name)
    row = "ctid" if postgres else "rowid"
    for hints in CANONICAL_HINTS:
        table = hints["name"]
        columns = tables.get(table)
        nested = any(name.startswith(f"{table}__") for name in tables)
        if columns is None or ("primary_key" in hints and not nested):
            continue
        name = client.make_qualified_table_name(table)
        same = ", ".join(client.escape_column_name(column) for column in (
            ["_dlt_id"] if "_dlt_id" in columns else columns
        ))
        parameters = list(load_ids) if "_dlt_load_id" in columns else []
        scope = f"WHERE _dlt_load_id IN ({', '.join(['%s'] * len(parameters))})" if parameters else ""
        copies = client.execute_sql(
            f"DELETE FROM {name} WHERE {row} IN (SELECT {row} FROM (SELECT {row}, row_number() OVER "
            f"(PARTITION BY {same}) AS copy FROM {name} {scope}) AS numbered WHERE copy > 1) RETURNING 1",
            *parameters,
        )
        if copies:
            log.warning("%s: %d rows loaded twice by a load package a killed run left were removed", table, len(copies))


def analyze(client: Any) -> None:
    """ANALYZE the canonical tables (PostgreSQL), which the load may have changed: statistics for the
    reconciliation that follows and for the views. Without them (autovacuum comes a minute or more
    later) PostgreSQL takes a freshly loaded table for a few rows and may plan the per-campaign counts
    inside a nested loop, once per campaign. ANALYZE reads a sample (30,000 rows at the default
    statistics target): 0.24 s for a contact_activity of 10M events (benchmarks/counts.py)."""
    tables = existing_tables(client)
    for table in CANONICAL_TABLES:
        if table in tables:
            client.execute_sql(f"ANALYZE {client.make_qualified_table_name(table)}")


def _count_requests(source: Any, load: dlt.Pipeline, outcome: SyncOutcome) -> None:
    """Show the run's HTTP requests (and so their rate) and its reports read of those due in dlt's progress:
    told as items pass each resource, and as each report read advances (`SyncOutcome.on_progress`). The
    reports due grow as pages of campaigns are planned: the total grows with them (`inc_total`)."""
    counted = {"requests": 0, "reports": 0, "due": 0}

    def tick(item: Any = None) -> Any:
        if outcome.requests > counted["requests"]:
            load.collector.update("requests", inc=outcome.requests - counted["requests"])
            counted["requests"] = outcome.requests
        done, due = outcome.reports_done, outcome.reports_due
        if done > counted["reports"] or due > counted["due"]:
            if counted["due"] == 0:  # the first update makes the counter, with its total
                load.collector.update("reports", inc=done - counted["reports"], total=due)
            else:
                load.collector.update("reports", inc=done - counted["reports"], inc_total=due - counted["due"])
            counted["reports"], counted["due"] = done, due
        return item

    outcome.on_progress = tick
    for resource in source.resources.values():
        resource.add_map(tick)


def _remember(load: dlt.Pipeline, result: LoadResult) -> None:
    """Keep what the run knows (when, rows by table, requests, duration, error) in the pipeline's local state."""
    record = {
        "finished_at": pendulum.now("UTC").isoformat(),
        "seconds": round(result.seconds, 3),
        "extract_seconds": round(result.extract_seconds, 3),
        "requests": result.requests,
        "rows": result.rows,
        "error": redact(str(result.error)) if result.error is not None else None,
    }
    load.set_local_state_val(LAST_RUN, record)
    if result.error is None:
        load.set_local_state_val(LAST_SUCCESS, record)


def build_source(provider: Provider, load: Any, plan: SyncPlan) -> Any:
    """The provider's source for `plan`, which learns from the dataset whose personal data not to load
    and which contacts are loaded as the provider lists them (`load`: the pipeline, or what has its
    `sql_client()`: `plan` reads the dataset read-only)."""
    try:
        with load.sql_client() as client:
            migrate_to_accounts(client)
            plan.forgotten = forgotten(client, provider.name, provider.account)
            plan.loaded_contact_digests = loaded_contact_digests(client, provider.name, provider.account)
            if provider.name == "constant_contact_v3":
                plan.unmapped_v2_campaigns = unmapped_v2_campaigns(client, provider.account)
    except ConfigFieldMissingException as missing:
        raise missing_setting(missing) from None
    except DestinationUndefinedEntity:  # a dataset not created yet: nobody forgotten
        pass
    except CampaignSyncError:
        raise
    except Exception as failure:  # the destination is down or refuses us (dlt's errors, or the driver's own)
        reason = _destination_reason(failure)
        raise CampaignSyncError(f"{provider.pipeline_name}: cannot read the destination: {reason}") from None
    try:
        return provider.source(plan=plan, **provider.source_arguments())
    except ConfigFieldMissingException as missing:
        raise missing_setting(missing, provider) from None
    except ConfigValueCannotBeCoercedException as wrong:
        setting = provider.setting(wrong.field_name)
        raise ConfigurationError(f"{provider.label}: {setting} must be a {wrong.hint.__name__}") from None


def accountless_tables(client: Any) -> list[tuple[str, str]]:
    """(schema, table) of the canonical tables, and their staging copies, that a dataset loaded before
    accounts existed has without an `account` column."""
    return [
        (schema, table)
        for schema in (client.dataset_name, f"{client.dataset_name}_staging")
        for table, columns in table_columns(client, schema).items()
        if table in CANONICAL_TABLES and "account" not in columns
    ]


def migrate_to_accounts(client: Any) -> None:
    """Give a dataset loaded before accounts existed its `account` column (`default`), before dlt loads.

    Every canonical table, and its staging copy, gets the column filled with `default`: the
    default account's keys and `activity_id`s are those it always had, so the next merge meets
    its rows again; nothing is reloaded or doubled.
    """
    for schema, table in accountless_tables(client):
        name = f'"{schema}"."{table}"'
        # both steps may meet a run of another account that did them first
        client.execute_sql(f"ALTER TABLE {name} ADD COLUMN IF NOT EXISTS account VARCHAR")
        client.execute_sql(f"UPDATE {name} SET account = %s WHERE account IS NULL", DEFAULT_ACCOUNT)
        log.info("%s.%s: account column added (%s)", schema, table, DEFAULT_ACCOUNT)


def upgrade_loaded_ids(load: dlt.Pipeline, provider: Provider, target: Target) -> None:
    """Give the account's rows an earlier release loaded the ids this one computes, where they changed
    (EmailOctopus clicks: `upgrade_click_ids`): after the packages an earlier run left pending, which that
    release may have made, and before this run reads, so its rows meet the loaded ones."""
    if provider.name != "emailoctopus":
        return
    with load.sql_client() as client:  # most nights: nothing to upgrade, and no wait for the dataset
        if not click_ids_stale(client, provider.account):
            return
    with dataset_lock(target, load.sql_client), load.sql_client() as client:
        upgrade_click_ids(client, provider.account)


def missing_setting(missing: ConfigFieldMissingException, provider: Provider | None = None) -> ConfigurationError:
    """Name the environment variables of the missing settings (nested ones, what they lack)."""
    names = []
    for absent in missing_fields(missing):
        if absent.lacking is None and provider is not None:
            names.append(provider.setting(absent.name))
        elif absent.lacking is None:  # a setting outside the sources (the destination's): named by where dlt looked
            names.append("__".join([*absent.sections, absent.name]).upper())
        else:
            setting = "__".join(absent.lacking_sections).upper() if absent.lacking_sections else absent.name
            names.append(f"{setting} (it lacks {', '.join(absent.lacking)})")
    hint = ""
    if any(name.startswith("DESTINATION__POSTGRES__CREDENTIALS") for name in names):
        hint = "; give the whole URL postgresql://user:password@host:5432/database (dlt needs a password in it)"
    return ConfigurationError(f"missing setting {', '.join(names)}{hint}")


def first_line(failure: BaseException) -> str:
    """A failure's first line, redacted (its type's name when it says nothing): for a one-line error."""
    return (redact(str(failure)).strip().splitlines() or [type(failure).__name__])[0]


def _unwrap(failure: BaseException, provider: Provider) -> CampaignSyncError:
    """The error behind a failed dlt step: ours as it is, a missing setting named, an interruption, else
    the root cause."""
    seen: BaseException | None = failure
    root = failure
    while seen is not None:
        if isinstance(seen, CampaignSyncError):
            return seen
        if isinstance(seen, ConfigFieldMissingException):
            return missing_setting(seen, provider)
        if isinstance(seen, KeyboardInterrupt):
            return Interrupted()
        root = seen
        seen = seen.__cause__ or seen.__context__
    lines = [line for line in str(root).splitlines() if line.strip()]
    detail = lines[0] if lines else ""
    if "Out of Memory Error" in detail:  # DuckDB's, past a memory limit too small to spill within
        detail += " (DuckDB's memory limit: DESTINATION__DUCKDB__MEMORY_LIMIT)"
    return CampaignSyncError(redact(f"{type(root).__name__}: {detail}"))


def report_results(results: list[LoadResult], quiet: bool) -> int:
    """Print one line per provider (errors to stderr); return the exit code of the first error.

    Per table: the rows the run read and passed to the load, and how many more rows the table
    holds after it (a re-read row merges into the one it replaces: `+0`). An interrupted run's
    providers print what they loaded; the command line says once that it was interrupted.
    """
    exit_code = 0
    for result in results:
        interrupted = isinstance(result.error, Interrupted)
        if result.error is not None and not interrupted:
            message = printable(redact(str(result.error)), LINE_CHARACTERS)
            named = message if message.startswith(result.provider) else f"{result.provider}: {message}"
            print(f"campaign-sync: {named}", file=sys.stderr)
        if result.error is not None:
            exit_code = exit_code or result.error.exit_code
        if not quiet and (result.rows or result.error is None or interrupted):
            counts = ", ".join(
                f"{table} {n} read, {result.new_rows.get(table, 0):+d} rows" for table, n in sorted(result.rows.items())
            )
            skipped = f"; {result.rows_read_again} events already loaded left out" if result.rows_read_again else ""
            nothing = "nothing read before the interruption" if interrupted else "nothing new"
            print(
                f"{result.provider}: {counts or nothing}{skipped} "
                f"({result.requests} requests, {result.seconds:.1f}s)"
            )
        if not quiet:
            for warning in result.warnings:
                print(f"{result.provider}: warning: {printable(warning, LINE_CHARACTERS)}")
    return exit_code
