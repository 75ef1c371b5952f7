"""The commands that only read (`status`, `report`, `plan`, `sql`) create no file, drop or rewrite no
pipeline state and write no table; a run never drops load packages still pending for another target;
the files holding personal data are their owner's only; no telemetry from any folder."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import BOTH_DESTINATIONS
from helpers import expected_activity, loaded_activity

from pipelines.cli import main
from pipelines.providers import PROVIDERS
from pipelines.runner import build_source, pipeline
from sources.canonical import SyncPlan

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PROVIDER = "emailoctopus"
duckdb_only = pytest.mark.parametrize("destination", ["duckdb"], indirect=True)


def files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its content."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def read_only_commands(report: str = "report.html") -> list[list[str]]:
    return [["status"], ["status", "--json"], ["plan", PROVIDER], ["report", "--out", report], ["sql", "SELECT 1"]]


@duckdb_only
def test_read_only_commands_in_an_empty_folder_create_nothing(harness, tmp_path):
    folder, home = tmp_path / "empty", tmp_path / "home"
    folder.mkdir()
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "DLT_DATA_DIR": str(home / ".dlt")}
    for command in read_only_commands():
        done = subprocess.run(
            [str(VENV_BIN / "campaign-sync"), *command], cwd=folder, env=env, capture_output=True, text=True,
            timeout=120,
        )
        assert done.returncode in (0, 2), (command, done.stderr)  # report and sql: nothing loaded
        assert len(done.stderr.strip().splitlines()) <= 1, (command, done.stderr)
        assert list(folder.iterdir()) == [] and list(home.iterdir()) == [], command
    assert "never loaded" in subprocess.run(
        [str(VENV_BIN / "campaign-sync"), "status"], cwd=folder, env=env, capture_output=True, text=True
    ).stdout


@BOTH_DESTINATIONS
def test_read_only_commands_elsewhere_keep_the_run_record_and_a_pending_package(harness, capsys):
    assert harness.cli("run", PROVIDER) == 0
    harness.sandbox.advance(24)
    # a run stopped between its extract and its load: what it read is pending
    target = harness.target()
    load = pipeline(PROVIDERS[PROVIDER], target)
    load.extract(build_source(PROVIDERS[PROVIDER], load, SyncPlan()))
    load.normalize()
    before = files(harness.pipelines_dir)
    other = harness.folder / "other.duckdb"

    # the same pipelines, another destination (the harness' options would come last and win)
    elsewhere = ["--pipelines-dir", str(harness.pipelines_dir), "--duckdb-path", str(other), "--dataset", "elsewhere"]
    for command in read_only_commands(str(harness.folder / "report.html")):
        harness.cli(*command)
        main([*command, *elsewhere])
    assert files(harness.pipelines_dir) == before
    assert not other.exists()

    capsys.readouterr()
    assert harness.cli("status", "--json") == 0
    status = next(p for p in json.loads(capsys.readouterr().out)["providers"] if p["provider"] == PROVIDER)
    assert status["pending_packages"] == load.list_normalized_load_packages() != []
    assert status["last_successful_load"] is not None

    # a run against another target refuses rather than drop the package: that data is not loaded yet
    assert main(["run", PROVIDER, *elsewhere]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pending" in err[0] and "nothing was changed" in err[0], err
    assert files(harness.pipelines_dir) == before
    # and the package loads on the next run against its own destination
    assert harness.cli("run", PROVIDER) == 0
    assert not load.list_normalized_load_packages()


@duckdb_only
def test_read_only_commands_write_no_table(harness):
    assert harness.cli("run", PROVIDER) == 0
    # a dataset loaded before accounts existed: only a run may add the column
    harness.execute("ALTER TABLE campaigns DROP COLUMN account")
    modified = harness.duckdb_path.stat().st_mtime_ns
    for command in read_only_commands(str(harness.folder / "report.html")):
        harness.cli(*command)
    assert harness.duckdb_path.stat().st_mtime_ns == modified
    assert "account" not in {name for (name,) in harness.query(
        f"SELECT column_name FROM information_schema.columns WHERE table_schema = '{harness.dataset}' "
        "AND table_name = 'campaigns'"
    )}


@duckdb_only
def test_status_on_a_duckdb_file_another_process_holds_is_one_line(harness, capsys):
    assert harness.cli("run", PROVIDER) == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(harness.duckdb_path)!r}); "
         "print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        assert harness.cli("status") == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "in use by another process" in err[0] and "unexpected" not in err[0], err
    finally:
        holder.kill()
        holder.wait()


@duckdb_only
def test_while_a_run_reads_from_the_provider_another_process_can_read_the_duckdb_file(harness):
    # a run keeps the file open for its steps that connect to it often (`kept_open`), not while it reads
    assert harness.cli("run", PROVIDER) == 0
    harness.sandbox.advance(hours=24)
    harness.sandbox.latency = 0.3  # the nightly's reads take seconds
    served = sum(harness.sandbox.requests.values())
    nightly = threading.Thread(target=harness.cli, args=("run", PROVIDER, "--quiet"))
    nightly.start()
    try:
        while sum(harness.sandbox.requests.values()) == served and nightly.is_alive():
            time.sleep(0.01)
        reader = subprocess.run(
            [sys.executable, "-c", "import duckdb, sys; print(duckdb.connect(sys.argv[1], read_only=True).execute("
             f"'SELECT count(*) FROM {harness.dataset}.contacts').fetchone()[0])", str(harness.duckdb_path)],
            capture_output=True, text=True, timeout=60,
        )
        reading = nightly.is_alive()
    finally:
        nightly.join()
    assert reading, "the nightly ended before the other process read"
    assert reader.returncode == 0 and int(reader.stdout) == len(harness.sandbox.datasets[PROVIDER].contacts), (
        reader.stderr
    )


@duckdb_only
def test_a_duckdb_file_another_process_takes_while_a_run_reads_ends_it_in_one_line_and_loses_nothing(
    harness, capsys
):
    assert harness.cli("run", PROVIDER) == 0
    harness.sandbox.advance(hours=24)
    harness.sandbox.latency = 0.3  # the nightly's reads take seconds
    served = sum(harness.sandbox.requests.values())
    codes: list[int] = []
    nightly = threading.Thread(target=lambda: codes.append(harness.cli("run", PROVIDER, "--quiet")))
    nightly.start()
    holder = None
    try:
        while sum(harness.sandbox.requests.values()) == served and nightly.is_alive():
            time.sleep(0.01)
        holder = subprocess.Popen(
            [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(harness.duckdb_path)!r}); "
             "print('held', flush=True); time.sleep(60)"],
            stdout=subprocess.PIPE, text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert nightly.is_alive(), "the nightly ended before the other process took the file"
        capsys.readouterr()
    finally:
        nightly.join()
        if holder is not None:
            holder.kill()
            holder.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert codes == [1]
    assert len(err) == 1 and "is in use by another process" in err[0] and "unexpected" not in err[0], err
    harness.sandbox.latency = 0
    assert harness.cli("run", PROVIDER) == 0  # loads what the stopped run read
    dataset = harness.sandbox.datasets[PROVIDER]
    assert loaded_activity(harness) == expected_activity(dataset)


@duckdb_only
def test_the_duckdb_file_the_pipelines_and_the_report_are_their_owners_only(harness):
    previous = os.umask(0o022)
    try:
        assert harness.cli("run", PROVIDER) == 0
        report = harness.folder / "report.html"
        assert harness.cli("report", "--out", str(report)) == 0
    finally:
        os.umask(previous)
    for path in (harness.duckdb_path, report, harness.pipelines_dir / f"campaign_sync_{PROVIDER}" / "state.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(harness.pipelines_dir.stat().st_mode) == 0o700


@duckdb_only
def test_no_telemetry_from_a_folder_outside_the_repository(harness, tmp_path):
    script = (
        "import sys; from pipelines.cli import main; code = main(sys.argv[1:]); "
        "from dlt.common.runtime import anon_tracker; print(code, anon_tracker._ANON_TRACKER_ENDPOINT is not None)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "DLT_DATA_DIR": str(tmp_path / "dlt")}
    env.pop("RUNTIME__DLTHUB_TELEMETRY", None)
    for command in (["status"], harness.argv("run", PROVIDER, "--quiet")):
        done = subprocess.run(
            [sys.executable, "-c", script, *command], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120,
        )
        assert done.stdout.splitlines()[-1] == "0 False", (command, done.stdout, done.stderr)
    env["RUNTIME__DLTHUB_TELEMETRY"] = "true"  # the user may turn it on
    done = subprocess.run([sys.executable, "-c", script, "status"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "0 True", done.stderr
