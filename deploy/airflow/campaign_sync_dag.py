"""The nightly campaign-sync load in Airflow: each provider is its own task, run by dlt's Airflow helper.

Deploy: install campaign-sync with its `airflow` extra where Airflow runs (`pip install
'campaign-sync[airflow]'`), copy this file and the project's `.dlt/config.toml` into the dags
folder (dlt's helper reads its configuration from there), and give the workers the settings of
README "What a team sets" as environment variables. The load goes to PostgreSQL: a worker's
local files do not outlive its task, so the cursors live in the destination, where dlt keeps
the pipeline state.

After each provider's load a second task erases the contacts deleted at the provider (see README
"Erasure"), creates the analysis views and logs the load reconciliation (data-quality warnings;
it does not fail the run).
"""

from __future__ import annotations

import logging
from functools import partial

import pendulum

try:  # Airflow 3
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2
    from airflow.decorators import dag, task
from dlt.helpers.airflow_helper import PipelineTasksGroup

from pipelines.providers import PROVIDERS
from pipelines.runner import LOADER_FILE_FORMATS, Target, after_load, nightly_source, pipeline

TARGET = Target(destination="postgres", dataset="campaign_activity")
log = logging.getLogger("campaign_sync")


@task(trigger_rule="all_done")
def check_load(provider_name: str, account: str) -> list[str]:
    """Create the analysis views and log the account's reconciliation warnings; return them."""
    provider = PROVIDERS[provider_name].for_account(account)
    warnings = after_load(pipeline(provider, TARGET), provider)
    for warning in warnings:
        log.warning("%s: %s", provider.label, warning)
    return warnings


@dag(
    dag_id="campaign_sync",
    schedule="0 3 * * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0},
    tags=["campaign-sync", "dlt"],
)
def campaign_sync() -> None:
    """One task group per configured account of each provider: the dlt load, then its check."""
    accounts = [account for known in PROVIDERS.values() for account in known.accounts() or [known]]
    for provider in accounts:
        # the group must exist before the pipeline: it gives dlt a fresh working folder per run
        group = PipelineTasksGroup(provider.pipeline_name, use_data_folder=False, wipe_local_data=True)
        load = pipeline(provider, TARGET)
        # the source is built when the task runs (a callable), so secrets (and whose personal data
        # not to load) are read on the worker
        runs = group.add_run(
            load,
            partial(nightly_source, provider, load),
            decompose="none",
            loader_file_format=LOADER_FILE_FORMATS[TARGET.destination],
        )
        check = check_load.override(task_id=f"check_{provider.pipeline_name.removeprefix('campaign_sync_')}")
        runs[-1] >> check(provider.name, provider.account)


nightly = campaign_sync()
