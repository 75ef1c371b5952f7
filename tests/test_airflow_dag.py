"""The Airflow DAG in deploy/airflow imports and runs each provider as its own task (only where
Airflow is installed: the optional `airflow` extra; CI does not install it)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.providers import PROVIDERS

DAG_FILE = Path(__file__).parent.parent / "deploy" / "airflow" / "campaign_sync_dag.py"
# imported in a child process: Airflow's config and dlt's helper change the process' environment
LIST_TASKS = """
import json, runpy, sys
dag = runpy.run_path(sys.argv[1])["nightly"]
print(json.dumps({"dag_id": dag.dag_id, "tasks": {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks}}))
"""


@pytest.mark.skipif(importlib.util.find_spec("airflow") is None, reason="Airflow is not installed (extra `airflow`)")
def test_dag_runs_each_provider_as_its_own_task(tmp_path):
    environment = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run(
        [sys.executable, "-c", LIST_TASKS, str(DAG_FILE)],
        capture_output=True, text=True, env=environment, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    dag = json.loads(done.stdout.strip().splitlines()[-1])
    assert dag["dag_id"] == "campaign_sync"
    for provider in PROVIDERS.values():
        load = f"{provider.pipeline_name}.{provider.pipeline_name}"
        assert dag["tasks"][load] == [f"check_{provider.name}"]
