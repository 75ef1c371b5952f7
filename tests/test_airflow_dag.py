"""The Airflow DAG in deploy/airflow maps one load task over the configured accounts.

Airflow runs in an environment of its own, `.venv-airflow` (`make install-airflow`, which CI runs),
as on Airflow workers: installed beside the test suite, its import would change how every other
test's output is captured. Without that environment this test is skipped (never in CI).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from helpers import expected_activity

REPOSITORY = Path(__file__).resolve().parent.parent
DAG_FOLDER = REPOSITORY / "deploy" / "airflow"
AIRFLOW_PYTHON = REPOSITORY / ".venv-airflow" / "bin" / "python"
PROVIDER = "emailoctopus"
ACCOUNTS = ["default", "acme", "globex"]


@pytest.mark.skipif(not AIRFLOW_PYTHON.exists() and not os.environ.get("CI"),
                    reason="no .venv-airflow: `make install-airflow` makes it")
@pytest.mark.parametrize("destination", ["postgres"], indirect=True)
def test_dag_maps_one_load_task_per_configured_account(make_harness, tmp_path):
    """`airflow dags test` runs the DAG as a scheduler would: the mapped task expands to one task
    instance per configured account, and each loads its account exactly; Constant Contact v3's
    account is loaded after v2's, so it maps the v2 campaigns of the same night."""
    harness = make_harness(scale="tiny", accounts={PROVIDER: ACCOUNTS[1:]})
    # five accounts configured: EmailOctopus' default, acme and globex, Constant Contact v2's and v3's default
    home = tmp_path / "airflow"
    environment = {
        **os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    airflow = [str(AIRFLOW_PYTHON), "-m", "airflow"]
    for command in (["db", "migrate"], ["dags", "reserialize"],
                    ["dags", "test", "campaign_sync", "-c", f'{{"dataset": "{harness.dataset}"}}']):
        done = subprocess.run([*airflow, *command], capture_output=True, text=True, env=environment, timeout=300)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])

    with sqlite3.connect(home / "airflow.db") as airflow_db:
        instances = airflow_db.execute(
            "SELECT task_id, map_index, rendered_map_index, state FROM task_instance ORDER BY task_id, map_index"
        ).fetchall()
    assert instances == [
        ("configured_accounts", -1, None, "success"),
        ("configured_following_accounts", -1, None, "success"),
        *[("load_account", index, f"{PROVIDER}/{account}", "success") for index, account in enumerate(ACCOUNTS)],
        ("load_account", len(ACCOUNTS), "constant_contact_v2/default", "success"),
        ("load_following_account", 0, "constant_contact_v3/default", "success"),
    ]
    v2_campaigns = harness.count("campaigns", "provider = 'constant_contact_v2'")
    assert v2_campaigns and harness.count("constant_contact_campaign_xrefs") == v2_campaigns
    for account in ACCOUNTS:  # each mapped task loaded its own account, exactly, from an empty working folder
        key = PROVIDER if account == "default" else f"{PROVIDER}/{account}"
        truth = expected_activity(harness.sandbox.datasets[key])
        loaded = harness.query(
            "SELECT campaign_id, contact_id, activity_type, occurred_at AT TIME ZONE 'UTC' FROM contact_activity "
            f"WHERE provider = '{PROVIDER}' AND account = '{account}'"
        )
        assert sorted(loaded, key=str) == sorted(truth.elements(), key=str), account
