"""The nightly campaign-sync load in Airflow: one mapped task per configured (provider, account).

Deploy: install campaign-sync with its `airflow` extra where Airflow runs (`pip install
'campaign-sync[airflow]'`), copy this file and the project's `.dlt/config.toml` into the dags
folder, and give the workers the settings of README "What a team sets" (several accounts: README
"Accounts") as environment variables.

When the DAG runs, `configured_accounts` reads which accounts are configured, and `load_account`
is mapped over them (Airflow's dynamic task mapping), so a Celery or Kubernetes executor spreads
the accounts over its workers. An account that follows another's run (Constant Contact v3 after
the same account's v2, `runner.FOLLOWS`: it maps the v2 campaigns loaded that night) is loaded
by `load_following_account` once every `load_account` task has ended, whatever their outcome.

The load goes to PostgreSQL, where dlt keeps each account's
pipeline state (its cursors): a task starts from an empty working folder, so any worker can run
any account. Loads into the dataset take turns (a PostgreSQL advisory lock); their reading runs
side by side. A task runs what `campaign-sync run --account A PROVIDER` runs: the load, the erasure
of contacts deleted at the provider, the analysis views and the reconciliation (its warnings are
logged; they do not fail the task). A failed account fails its own task only.

Constant Contact limits the application, not the account: the accounts of one application share
its budget within a worker process. Spread over several workers they do not; keep them to one
worker at a time with an Airflow pool of one slot if their nightly comes near the limits
(`campaign-sync plan` says how many requests it takes).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import replace
from typing import Any

import pendulum

try:  # Airflow 3
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2
    from airflow.decorators import dag, task

from pipelines.providers import PROVIDERS
from pipelines.runner import FOLLOWS, Target, run_provider
from sources.redaction import redact

TARGET = Target(destination="postgres", dataset="campaign_activity")
# Inside an Airflow task dlt looks each setting up among Airflow's Variables too, one `Variable.get` per setting
# and place it looks (on Airflow 3 a request to the API server each: most of a small account's task time),
# unless told to read only its `dlt_secrets_toml` Variable, once. campaign-sync's settings come from the
# workers' environment; a worker that sets this itself keeps its own value.
os.environ.setdefault("PROVIDERS__AIRFLOW_SECRETS__ONLY_TOML_FRAGMENTS", "true")
log = logging.getLogger("campaign_sync")


@task
def configured_accounts(following: bool) -> list[dict[str, str]]:
    """The configured accounts whose run follows another's (`FOLLOWS`), or all the others, read on
    the worker when the DAG runs."""
    return [
        {"provider_name": account.name, "account": account.account}
        for provider in PROVIDERS.values()
        for account in provider.accounts()
        if (account.name in FOLLOWS) == following
    ]


@task(map_index_template="{{ task.op_kwargs['provider_name'] }}/{{ task.op_kwargs['account'] }}")
def load_account(provider_name: str, account: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load one account (the nightly run); fail the task on its error. Returns rows read and requests."""
    provider = PROVIDERS[provider_name].for_account(account)
    dataset = (params or {}).get("dataset") or TARGET.dataset
    with tempfile.TemporaryDirectory(prefix="campaign-sync-") as working_folder:
        result = run_provider(provider, replace(TARGET, dataset=dataset, pipelines_dir=working_folder))
    for warning in result.warnings:
        log.warning("%s: %s", provider.label, warning)
    if result.error is not None:
        raise RuntimeError(redact(str(result.error)))
    log.info("%s: %s rows read in %s requests", provider.label, sum(result.rows.values()), result.requests)
    return {"rows": result.rows, "requests": result.requests}


@dag(
    dag_id="campaign_sync",
    schedule="0 3 * * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0},
    params={"dataset": TARGET.dataset},
    tags=["campaign-sync", "dlt"],
)
def campaign_sync() -> None:
    """The configured accounts, then one load task per account; the following accounts' after them."""
    leading = load_account.expand_kwargs(configured_accounts(following=False))
    following = load_account.override(task_id="load_following_account", trigger_rule="all_done").expand_kwargs(
        configured_accounts.override(task_id="configured_following_accounts")(following=True)
    )
    leading >> following


nightly = campaign_sync()
