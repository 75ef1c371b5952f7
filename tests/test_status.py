"""`campaign-sync status` (text and --json), load reconciliation, progress output, and dlt's own
pipeline commands on a pipeline the command line loaded: sandbox over HTTP, DuckDB and PostgreSQL."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BOTH_DESTINATIONS
from helpers import open_campaigns

from sandbox.emailoctopus import API_KEY, REPORTS

PROVIDER = "emailoctopus"
# what does not depend on the destination's SQL runs on DuckDB only
duckdb_only = pytest.mark.parametrize("destination", ["duckdb"], indirect=True)


def status_json(harness, capsys) -> dict:
    capsys.readouterr()
    assert harness.cli("status", "--json") == 0
    statuses = json.loads(capsys.readouterr().out)["providers"]
    return next(status for status in statuses if status["provider"] == PROVIDER)


@duckdb_only
def test_status_through_failed_and_successful_runs(harness, capsys):
    assert harness.cli("status") == 0
    assert f"{PROVIDER}: never loaded" in capsys.readouterr().out
    assert status_json(harness, capsys) == {
        "provider": PROVIDER, "account": "default", "loaded": False, "last_run_error": None, "pending_packages": [],
        "api_version": "1.6",
    }

    harness.setenv(SOURCES__EMAILOCTOPUS__API_KEY="not-the-key-123")
    assert harness.cli("run", PROVIDER) == 3
    status = status_json(harness, capsys)
    assert not status["loaded"] and "refused the credentials" in status["last_run_error"]["error"]

    harness.setenv(SOURCES__EMAILOCTOPUS__API_KEY=API_KEY)
    assert harness.cli("run", PROVIDER) == 0
    status = status_json(harness, capsys)
    assert status["loaded"] and status["last_run_error"] is None
    first = status["last_successful_load"]

    harness.setenv(SOURCES__EMAILOCTOPUS__API_KEY="not-the-key-123")
    assert harness.cli("run", PROVIDER) == 3
    status = status_json(harness, capsys)
    assert status["last_successful_load"] == first
    assert "refused the credentials" in status["last_run_error"]["error"]
    assert "not-the-key-123" not in json.dumps(status)
    assert harness.cli("status") == 0
    out = capsys.readouterr().out
    assert f"{PROVIDER}: last load {first['finished_at']}" in out and "  last run failed " in out


@BOTH_DESTINATIONS
def test_status_after_a_load_and_the_reconciliation_of_rows_missing_from_a_campaign(harness, capsys):
    dataset = harness.sandbox.datasets[PROVIDER]
    assert harness.cli("run", PROVIDER) == 0
    assert "warning" not in capsys.readouterr().out  # the sandbox agrees with itself

    status = status_json(harness, capsys)
    last = status["last_successful_load"]
    assert last["requests"] == harness.sandbox.requests[PROVIDER] > 0
    assert last["seconds"] > 0 and last["finished_at"] and last["error"] is None
    assert {"campaigns", "contact_activity", "contacts", "campaign_summaries"} <= set(last["rows"])
    assert status["rows"]["contacts"] == len(dataset.contacts)
    assert status["rows"]["contact_activity"] == harness.count("contact_activity") > 0
    assert status["last_run_error"] is None and status["last_loaded_at"]

    events = [e for c in dataset.sent_campaigns() for e in dataset.events(c) if e.type in REPORTS]
    stamped = [e.at for e in events if not e.timestamp_missing]
    assert status["occurred_at"] == {"oldest": min(stamped).isoformat(), "newest": max(stamped).isoformat()}

    assert [c["campaign_id"] for c in status["open_campaigns"]] == open_campaigns(dataset)
    assert status["attribution_window_days"] == 30
    # the campaigns closed by the attribution window keep a marker, not cursors
    assert {c["key"] for c in status["cursors"]} == {f"{c}:{r}" for c in open_campaigns(dataset) for r in REPORTS}
    assert status["closed_campaigns"] == len(dataset.sent_campaigns()) - len(open_campaigns(dataset)) > 0
    campaign = dataset.sent_campaigns()[-1]
    cursor = next(c for c in status["cursors"] if c["key"] == f"{campaign.id}:opened")
    assert cursor["cursor"] == max(e.at for e in dataset.events(campaign, "opened")).isoformat()
    assert status["reconciliation"] == []
    assert status["erasures"] == sum(c.deleted for c in dataset.contacts)  # deleted before the first run

    assert harness.cli("status") == 0
    out = capsys.readouterr().out
    assert f"{PROVIDER}: last load {last['finished_at']}" in out
    assert f", {last['requests']} requests)" in out
    assert f"campaigns in the attribution window (30 days): {len(status['open_campaigns'])}" in out
    assert f"    {campaign.id}: " in out
    newest = status["open_campaigns"][-1]
    loaded_status = f"SELECT status FROM campaigns WHERE campaign_id = '{newest['campaign_id']}'"
    assert newest["status"] == harness.query(loaded_status)[0][0]
    assert f"window closes {newest['window_closes']}, status {newest['status']}\n" in out
    assert f"  closed campaigns: {status['closed_campaigns']} (past the attribution window" in out
    assert "reconciliation of this API's events per campaign (campaign_engagement): they agree" in out

    # rows lost from a campaign: the reconciliation warns. A closed campaign is not re-read, so what is lost
    # stays lost until a backfill
    closed = [c for c in dataset.sent_campaigns() if c.id not in open_campaigns(dataset)]
    lost_from = max(closed, key=lambda c: len(dataset.events(c, "opened")))
    harness.execute(
        "DELETE FROM contact_activity WHERE activity_id IN (SELECT activity_id FROM contact_activity "
        f"WHERE campaign_id = '{lost_from.id}' AND activity_type = 'opened' ORDER BY contact_id LIMIT 5)"
    )
    status = status_json(harness, capsys)
    [difference] = status["reconciliation"]
    assert difference["campaign_id"] == lost_from.id and difference["measure"] == "unique opens"
    openers = {e.contact_id for e in dataset.events(lost_from, "opened")}
    assert difference["loaded"] < difference["reported"] == len(openers)
    assert harness.cli("status") == 0
    out = capsys.readouterr().out
    assert f"warning: campaign {lost_from.id} ({lost_from.name}): unique opens loaded" in out
    # a run compares the campaigns its load changed (tests/test_local_work.py): this one is status's to show
    assert harness.cli("run", PROVIDER) == 0
    assert "warning" not in capsys.readouterr().out

    harness.setenv(SOURCES__EMAILOCTOPUS__ATTRIBUTION_WINDOW_DAYS=365)
    status = status_json(harness, capsys)
    assert status["attribution_window_days"] == 365
    assert len(status["open_campaigns"]) == len(dataset.sent_campaigns())


@duckdb_only
def test_progress_logs_counters_and_quiet_prints_nothing(harness, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="campaign_sync"):
        assert harness.cli("run", PROVIDER, "--progress") == 0
    progress = "\n".join(r.getMessage() for r in caplog.records if r.name == "campaign_sync")
    assert "Extract emailoctopus" in progress and "Load emailoctopus" in progress
    assert f"requests: {harness.sandbox.requests[PROVIDER]}" in progress
    assert "contact_activity: " in progress
    # the reads done of those due: the total grows as campaigns are planned (it kept its first value: 26/3)
    done, due = re.findall(r"reports: (\d+)/(\d+) \(", progress)[-1]
    assert done == due and int(due) >= len(harness.sandbox.datasets[PROVIDER].sent_campaigns())
    capsys.readouterr()
    caplog.clear()

    # a nightly whose last reads bring nothing new: the counters still end where the run did (they ended at
    # the last row that passed a resource)
    harness.sandbox.reset_counts()
    with caplog.at_level(logging.INFO, logger="campaign_sync"):
        assert harness.cli("run", PROVIDER, "--progress") == 0
    progress = "\n".join(r.getMessage() for r in caplog.records if r.name == "campaign_sync")
    assert re.findall(r"requests: (\d+)", progress)[-1] == str(harness.sandbox.requests[PROVIDER])
    done, due = re.findall(r"reports: (\d+)/(\d+) \(", progress)[-1]
    assert done == due
    capsys.readouterr()
    caplog.clear()

    harness.sandbox.advance(hours=24)
    with caplog.at_level(logging.INFO, logger="campaign_sync"):
        assert harness.cli("run", PROVIDER, "--quiet") == 0
    assert capsys.readouterr().out == ""
    assert not [r for r in caplog.records if r.name == "campaign_sync"]


@duckdb_only
def test_dlt_pipeline_commands_work_on_our_pipeline(harness):
    assert harness.cli("run", PROVIDER) == 0
    dlt_cli = Path(sys.executable).parent / "dlt"
    environment = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"}
    for command in ("info", "trace"):
        done = subprocess.run(
            [dlt_cli, "pipeline", "--pipelines-dir", str(harness.pipelines_dir), f"campaign_sync_{PROVIDER}", command],
            capture_output=True,
            text=True,
            env=environment,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert harness.dataset in done.stdout or "contact_activity" in done.stdout, done.stdout

