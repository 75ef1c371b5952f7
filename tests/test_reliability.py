"""Faults, crashes, concurrent runs and bad input: nothing lost, nothing doubled, nothing leaked."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from conftest import BOTH_DESTINATIONS, harnesses
from helpers import cursors, expected_activity, expected_snapshot, loaded_activity, loaded_snapshot

from pipelines import runner
from pipelines.cli import main
from pipelines.dlt_adapter import DestinationException
from pipelines.providers import PROVIDERS
from sandbox import Faults
from sandbox.emailoctopus import API_KEY, REPORTS, bad_data
from sources.canonical import SyncPlan
from sources.redaction import register_secret

PROVIDER = "emailoctopus"
ROOT = Path(__file__).resolve().parent.parent


def test_transient_faults_of_every_kind_lose_nothing(make_harness):
    faults = Faults(error_rate=0.10, burst_rate=0.02, reset_rate=0.03, truncate_rate=0.03, hang_rate=0.02,
                    hang_seconds=2.0, html_rate=0.02, empty_rate=0.02)
    harness = make_harness(faults=faults)
    # about 3 requests in 10 fail once; a dozen attempts make a request that fails them all vanishingly rare
    harness.setenv(RUNTIME__REQUEST_TIMEOUT=1, RUNTIME__REQUEST_MAX_ATTEMPTS=12)

    assert harness.cli("run", PROVIDER) == 0

    dataset = harness.sandbox.datasets[PROVIDER]
    assert loaded_activity(harness) == expected_activity(dataset)
    assert loaded_snapshot(harness) == expected_snapshot(dataset)
    assert harness.count("contacts") == len(dataset.contacts)
    served = harness.sandbox.faults_served
    assert set(served) == {"error", "burst", "reset", "truncate", "hang", "html", "empty"}, served


def test_a_persistent_fault_fails_the_run_keeps_its_cursor_and_the_next_run_fills_the_gap(harness, capsys):
    dataset = harness.sandbox.datasets[PROVIDER]
    broken = dataset.sent_campaigns()[-1]
    harness.sandbox.faults.fail_paths = f"/campaigns/{broken.id}/reports/opened"
    harness.setenv(RUNTIME__REQUEST_MAX_ATTEMPTS=2)

    assert harness.cli("run", PROVIDER) == 1
    err = capsys.readouterr().err
    assert f"opened of campaign {broken.id}" in err and "retries them" in err
    assert f"{broken.id}:opened" not in cursors(harness)
    assert f"{broken.id}:sent" in cursors(harness)  # the healthy reads did advance
    assert harness.count("contact_activity", f"campaign_id = '{broken.id}' AND activity_type = 'opened'") == 0

    harness.sandbox.faults.fail_paths = ""
    assert harness.cli("run", PROVIDER) == 0
    assert loaded_activity(harness) == expected_activity(dataset)


# A process that imports the command line once, then forks a child per line it reads (the `campaign-sync`
# arguments, as JSON) to run them: it prints the child's pid, then its exit status once it ended. A killed
# child has run `main` as `python -m pipelines` does, without paying for the interpreter and the imports
# each time (most of a killed run's CPU).
FORK_SERVER = """
import json, os, sys
from pipelines.cli import main
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
        os._exit(main(json.loads(line)))
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


def _running(pid: int) -> bool:
    """Whether process `pid` runs (its parent reaps it at once: an ended one is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@BOTH_DESTINATIONS
def test_killed_anywhere_a_rerun_ends_in_exactly_the_ground_truth(make_harness):
    harness = make_harness(scale="tiny")
    # dlt writes a load job's SQL file in the temp folder before it moves it into the package: a kill between
    # the two leaves the file there, so the runs get a temp folder of the test's own
    temp = harness.folder / "tmp"
    temp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(temp)}
    arguments = json.dumps(harness.argv("run", PROVIDER))
    server = subprocess.Popen([sys.executable, "-c", FORK_SERVER], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert server.stdin is not None and server.stdout is not None

    def start() -> int:
        server.stdin.write(arguments + "\n")
        server.stdin.flush()
        return int(server.stdout.readline())

    def ended() -> int:
        return int(server.stdout.readline())

    try:
        started = time.monotonic()
        start()
        assert ended() == 0
        full_run = time.monotonic() - started
        # start over, then kill at 20 seeded points spread over a whole run (extract, normalize, load)
        if harness.destination == "postgres":
            harness.execute(f"DROP SCHEMA {harness.dataset} CASCADE")
        else:
            harness.duckdb_path.unlink()
        shutil.rmtree(harness.pipelines_dir)
        # the points are fractions of the last whole run: once a run ends before its kill, the next ones have
        # less to do, and a loaded machine may have timed the first one slow
        schedule = random.Random(20261125)
        killed = 0
        for _ in range(20):
            started = time.monotonic()
            child = start()
            kill_at = started + schedule.uniform(0.1 / full_run, 1.0) * full_run
            while _running(child) and time.monotonic() < kill_at:
                time.sleep(0.01)
            if _running(child):
                os.kill(child, signal.SIGKILL)
                killed += 1
                ended()
            else:
                ended()
                full_run = time.monotonic() - started
    finally:
        server.stdin.close()
        server.wait(timeout=60)
    assert killed >= 10, "most kills must land inside a run"
    rerun = subprocess.run([sys.executable, "-m", "pipelines", *harness.argv("run", PROVIDER)], env=env,
                           capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr

    dataset = harness.sandbox.datasets[PROVIDER]
    assert loaded_activity(harness) == expected_activity(dataset)
    assert loaded_snapshot(harness) == expected_snapshot(dataset)
    assert harness.count("contacts") == len(dataset.contacts)
    assert harness.query("SELECT count(*) - count(DISTINCT activity_id) FROM contact_activity")[0][0] == 0


def test_a_run_killed_between_normalize_commit_and_cleanup_is_healed_by_the_next(harness, tmp_path):
    # dlt's normalize renames the normalized package into the load folder, then deletes the
    # extracted copy; a SIGKILL between the two leaves both (seen in the kill test above)
    assert harness.cli("run", PROVIDER) == 0
    harness.sandbox.advance(hours=24)  # tonight's events go into the package the kill leaves twice
    target = harness.target()
    provider = PROVIDERS[PROVIDER]
    load = runner.pipeline(provider, target)
    load.extract(runner.build_source(provider, load, SyncPlan()))
    (load_id,) = load.list_extracted_load_packages()
    extracted = Path(load.working_dir, "normalize", "extracted", load_id)
    shutil.copytree(extracted, tmp_path / "kept")
    load.normalize()
    shutil.copytree(tmp_path / "kept", extracted)
    assert load.list_normalized_load_packages() == [load_id] == load.list_extracted_load_packages()

    assert harness.cli("run", PROVIDER) == 0

    dataset = harness.sandbox.datasets[PROVIDER]
    assert loaded_activity(harness) == expected_activity(dataset)
    assert loaded_snapshot(harness) == expected_snapshot(dataset)
    assert harness.query("SELECT count(*) - count(DISTINCT activity_id) FROM contact_activity")[0][0] == 0
    assert not load.list_extracted_load_packages() and not load.list_normalized_load_packages()


@pytest.mark.parametrize("abort_first", [False, True], ids=["run", "abort-pending, then run"])
def test_a_run_killed_after_dlt_completed_its_package_before_archiving_it_is_healed_by_the_next(
    harness, capsys, abort_first
):
    # dlt completes a package by recording the load, writing a marker into the package, then moving it
    # among the loaded; a SIGKILL between the marker and the move (seen in the kill test above) left a
    # package every later load refused as completed already. `abort-pending` archives it too (it is not
    # pending); a run owes the rows its package may put twice from before its load (`runner.owe_after_load`)
    assert harness.cli("run", PROVIDER) == 0
    harness.sandbox.advance(hours=24)  # tonight's events are in the package the kill leaves
    target = harness.target()
    provider = PROVIDERS[PROVIDER]
    load = runner.pipeline(provider, target)
    load.extract(runner.build_source(provider, load, SyncPlan()))
    load.normalize()
    earlier = set(load.list_completed_load_packages())
    load.load()
    (load_id,) = set(load.list_completed_load_packages()) - earlier
    Path(load.working_dir, "load", "loaded", load_id).rename(Path(load.working_dir, "load", "normalized", load_id))
    assert load.list_normalized_load_packages() == [load_id]
    capsys.readouterr()
    assert harness.cli("status", "--json") == 0  # reads only: the package is loaded, not pending
    statuses = json.loads(capsys.readouterr().out)["providers"]
    assert [s["pending_packages"] for s in statuses if s["provider"] == PROVIDER] == [[]]
    assert load.list_normalized_load_packages() == [load_id]
    if abort_first:  # with a package pending beside it (read, not loaded), which abort-pending drops
        load.extract(runner.build_source(provider, load, SyncPlan()))
        (pending,) = set(load.list_extracted_load_packages())
        capsys.readouterr()
        assert harness.cli("abort-pending", PROVIDER) == 0
        assert "emailoctopus: 1 pending load package(s) dropped" in capsys.readouterr().out
        assert pending not in load.list_extracted_load_packages()

    assert harness.cli("run", PROVIDER) == 0
    assert harness.cli("run", PROVIDER) == 0

    dataset = harness.sandbox.datasets[PROVIDER]
    assert loaded_activity(harness) == expected_activity(dataset)
    assert loaded_snapshot(harness) == expected_snapshot(dataset)
    assert not load.list_normalized_load_packages()
    assert load_id in load.list_completed_load_packages()
    assert harness.count("after_load_owed") == 0


@BOTH_DESTINATIONS
@pytest.mark.parametrize("drop_fails_once", [False, True], ids=["", "the drop failing once"])
def test_load_jobs_run_twice_load_each_row_once(harness, tmp_path, monkeypatch, capsys, drop_fails_once):
    # a run killed after a load job committed, before dlt marked it done, leaves the job to run again; here
    # every job of a package does, into the staging tables that still hold their first copies (dlt set the
    # package's tables up once). dlt's merge keeps one copy of each staged row, except in a table with nested
    # tables (contacts, their tags); the run drops the second copies there, and only there: another
    # provider's rows in the same tables (Constant Contact v3's, loaded first) are left as they are. If the
    # drop fails after the package loaded (a database error), the next run drops them: the package is gone
    # by then, its id kept as owed (`runner.owe_after_load`)
    assert harness.cli("run", "constant_contact_v3") == 0
    target = harness.target()
    provider = PROVIDERS[PROVIDER]
    load = runner.pipeline(provider, target)
    load.extract(runner.build_source(provider, load, SyncPlan()))
    load.normalize()
    (load_id,) = load.list_normalized_load_packages()
    package = Path(load.working_dir, "load", "normalized", load_id)
    shutil.copytree(package, tmp_path / "kept")
    load.load()
    tables = [name for (name,) in harness.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
        "AND table_type = 'BASE TABLE' ORDER BY 1"
    ) if not name.startswith(("_dlt", "erasure"))]  # the erasures are the run's own: EmailOctopus' deleted contacts
    loaded = {table: harness.count(table) for table in tables}
    by_provider = "SELECT provider, count(*) FROM {} GROUP BY 1 ORDER BY 1"
    owned = {table: harness.query(by_provider.format(table)) for table in ("contacts", "campaign_non_engagement")}
    assert loaded["contacts__tags"] > 0 and all(len(counts) == 2 for counts in owned.values()), owned
    shutil.rmtree(Path(load.working_dir, "load", "loaded", load_id))
    shutil.copytree(tmp_path / "kept", package)
    (package / "schema_updates.json").rename(package / "applied_schema_updates.json")  # set up already

    if drop_fails_once:
        def fails(*_args):
            raise DestinationException("could not receive data from server: Connection reset by peer")

        with monkeypatch.context() as fault:
            fault.setattr(runner, "drop_replayed_rows", fails)
            capsys.readouterr()
            assert harness.cli("run", PROVIDER) == 1
        error = capsys.readouterr().err
        assert "emailoctopus: the destination failed: DestinationException: could not receive data" in error
        assert harness.query("SELECT count(*) - count(DISTINCT _dlt_id) FROM contacts")[0][0] > 0  # not dropped yet
    assert harness.cli("run", PROVIDER) == 0  # loads the package again, then finds nothing new

    dataset = harness.sandbox.datasets[PROVIDER]
    assert {table: harness.count(table) for table in tables} == loaded
    assert {table: harness.query(by_provider.format(table)) for table in owned} == owned
    assert harness.count("contacts", f"provider = '{PROVIDER}'") == len(dataset.contacts)
    assert harness.query("SELECT count(*) - count(DISTINCT _dlt_id) FROM contacts")[0][0] == 0
    assert loaded_activity(harness) == expected_activity(dataset)
    assert harness.count("after_load_owed") == 0


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_a_duckdb_load_past_its_memory_limit_spills_and_the_runs_after_it_load_too(make_harness, capsys):
    # past DESTINATION__DUCKDB__MEMORY_LIMIT DuckDB spills to `<file>.tmp` (README): at 24MB this world's loads
    # spill (at 20-28MB they did; 40MB does not), as a ten-million-event account's do at the default 512MB. A
    # run keeps the file open (`kept_open`), and DuckDB refused a temp folder set again after a spill had
    # used it: dlt sets its settings on each connection, so the load's next connection failed, night after night
    harness = make_harness(scale=(12, 1500))
    harness.setenv(DESTINATION__DUCKDB__MEMORY_LIMIT="24MB")
    dataset = harness.sandbox.datasets[PROVIDER]
    assert harness.cli("run", PROVIDER) == 0, capsys.readouterr().err
    assert loaded_activity(harness) == expected_activity(dataset)
    harness.sandbox.advance(24)
    assert harness.cli("run", PROVIDER) == 0, capsys.readouterr().err
    assert loaded_activity(harness) == expected_activity(dataset)
    assert loaded_snapshot(harness) == expected_snapshot(dataset)


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_a_duckdb_memory_limit_too_small_to_spill_within_fails_in_one_line_and_the_next_run_heals(
    make_harness, capsys
):
    # at 16MB this world's load, or the erasure after it, ran out of memory (both seen): either way one line
    # names the setting, and the next run at the default limit ends exact (what follows a load that failed
    # after it is made by the next run for everyone: tests/test_erasure.py)
    harness = make_harness(scale=(12, 1500))
    dataset = harness.sandbox.datasets[PROVIDER]
    harness.setenv(DESTINATION__DUCKDB__MEMORY_LIMIT="16MB")
    capsys.readouterr()
    assert harness.cli("run", PROVIDER) == 1
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1, error
    assert "Out of Memory Error" in error and "(DuckDB's memory limit: DESTINATION__DUCKDB__MEMORY_LIMIT)" in error
    assert "the next run" in error and "unexpected error" not in error

    harness.monkeypatch.delenv("DESTINATION__DUCKDB__MEMORY_LIMIT")
    assert harness.cli("run", PROVIDER) == 0, capsys.readouterr().err
    assert loaded_activity(harness) == expected_activity(dataset)
    assert loaded_snapshot(harness) == expected_snapshot(dataset)


def test_a_second_concurrent_run_refuses_and_corrupts_nothing(make_harness, capsys):
    harness = make_harness(latency=0.05)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "pipelines", *harness.argv("run", PROVIDER)]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = harness.pipelines_dir / f"campaign_sync_{PROVIDER}.lock"
    deadline = time.monotonic() + 30
    while harness.sandbox.requests[PROVIDER] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock.exists()

    assert harness.cli("run", PROVIDER) == 1
    assert "another campaign-sync run of campaign_sync_emailoctopus is in progress" in capsys.readouterr().err

    assert first.wait(120) == 0, first.stderr.read()
    assert loaded_activity(harness) == expected_activity(harness.sandbox.datasets[PROVIDER])
    assert harness.cli("run", PROVIDER) == 0  # the lock was released


ORDER_CLOCK = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def one_nightly(tmp_path_factory):
    """The ORDER_CLOCK data loaded by one nightly run: what any order of backfills and runs must end in."""
    with harnesses(tmp_path_factory.mktemp("one_nightly"), "duckdb") as build:
        reference = build(clock=ORDER_CLOCK)
        assert reference.cli("run", PROVIDER) == 0
        yield reference


@pytest.mark.xdist_group("reliability_order")
@pytest.mark.parametrize("order", ["backfill-then-run", "run-then-backfill", "overlapping-backfills"])
def test_the_same_history_in_any_order_ends_in_identical_tables(one_nightly, make_harness, order):
    clock = ORDER_CLOCK
    harness = make_harness(clock=clock)
    sent = harness.sandbox.datasets[PROVIDER].sent_campaigns()
    year_ago = (clock - timedelta(days=365)).date().isoformat()
    steps = {
        "backfill-then-run": [("backfill", PROVIDER, "--since", year_ago), ("run", PROVIDER)],
        "run-then-backfill": [("run", PROVIDER), ("backfill", PROVIDER, "--since", year_ago)],
        "overlapping-backfills": [
            ("backfill", PROVIDER, "--since", year_ago, "--until", sent[3].send_at.isoformat()),
            ("backfill", PROVIDER, "--since", sent[1].send_at.isoformat()),
            ("run", PROVIDER),
        ],
    }[order]
    for step in steps:
        assert harness.cli(*step) == 0
    reference = one_nightly  # the same data, loaded by one nightly run

    table = "SELECT activity_id, campaign_id, contact_id, activity_type, occurred_at FROM contact_activity"
    assert set(harness.query(table)) == set(reference.query(table))
    assert harness.count("contact_activity") == reference.count("contact_activity")
    assert loaded_activity(harness) == expected_activity(harness.sandbox.datasets[PROVIDER])


@BOTH_DESTINATIONS
def test_bad_rows_load_with_what_is_known(make_harness):
    harness = make_harness(variants={"eo_bad_data": "yes"})
    dataset = harness.sandbox.datasets[PROVIDER]
    assert harness.cli("run", PROVIDER) == 0

    expected = Counter()
    for campaign in dataset.sent_campaigns():
        for event in dataset.events(campaign):
            if event.type not in REPORTS:
                continue
            flaw = bad_data(dataset.contact(event.contact_id).number, event.type)
            contact_id = None if flaw == "null_contact" else event.contact_id
            unknown_time = event.timestamp_missing or flaw == "unreadable_time"
            at = None if unknown_time else event.at.replace(tzinfo=None)  # other offsets: the same instant
            expected[(campaign.id, contact_id, event.type, at)] += 1
    assert loaded_activity(harness) == expected
    assert harness.count("contact_activity", "mystery IS NOT NULL") > 0  # nested: one JSON column
    # the byte that is not UTF-8 arrives as U+FFFD; the rest of the address is kept
    hit = {k for k in expected if k[1] and bad_data(dataset.contact(k[1]).number, k[2]) == "bad_byte"}
    assert hit
    assert harness.count("contact_activity", "email_address = 'caf\ufffd@example.org'") == sum(expected[k] for k in hit)


def test_a_paging_loop_is_stopped_with_a_clear_error(make_harness, capsys):
    harness = make_harness(variants={"eo_paging_loop": "yes"})
    assert harness.cli("run", PROVIDER) == 1
    err = capsys.readouterr().err
    assert "paging loops back to" in err
    assert "api_key=***" in err and API_KEY not in err
    assert harness.sandbox.requests[PROVIDER] < 400  # it stopped, it did not spin


@pytest.mark.parametrize(
    ("base_url", "message", "exit_code"),
    [
        ("emailoctopus.com/api/1.6", "is not an http(s) URL", 2),
        ("http://127.0.0.1:9/api/1.6", "emailoctopus: cannot reach http://127.0.0.1:9/api/1.6: connection refused", 1),
        ("{sandbox}/_not_an_api", "HTTP 404", 1),
    ],
    ids=["malformed", "unreachable", "not-an-api"],
)
def test_a_bad_base_url_is_one_clear_line(harness, capsys, base_url, message, exit_code):
    harness.setenv(SOURCES__EMAILOCTOPUS__BASE_URL=base_url.format(sandbox=harness.sandbox.url),
                   RUNTIME__REQUEST_MAX_ATTEMPTS=1)
    code = harness.cli("run", PROVIDER)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == exit_code and len(err) == 1, err
    assert message in err[0] and API_KEY not in err[0]


def test_an_unreachable_postgres_is_one_clear_line(harness, capsys):
    harness.setenv(DESTINATION__POSTGRES__CREDENTIALS="postgresql://postgres:x@127.0.0.1:9/test")
    assert main(["run", PROVIDER, "--destination", "postgres", "--pipelines-dir", str(harness.pipelines_dir)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "connection" in err[0].lower(), err


def test_a_locked_or_unwritable_duckdb_file_is_one_clear_line(harness, capsys, tmp_path):
    path = tmp_path / "locked.duckdb"
    duckdb.connect(str(path)).close()
    # a writer (another run), then a reader (a BI tool, `campaign-sync sql`): dlt's own message said the latter
    for read_only in (False, True):
        holder = subprocess.Popen([sys.executable, "-c", f"import duckdb,time; c=duckdb.connect('{path}', "
                                   f"read_only={read_only}); print('ready', flush=True); time.sleep(60)"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            holder.stdout.readline()
            assert main(["run", PROVIDER, "--duckdb-path", str(path), "--pipelines-dir", str(tmp_path / "p")]) == 1
            err = capsys.readouterr().err.strip().splitlines()
            assert err == [f"campaign-sync: {PROVIDER}: campaign_sync_{PROVIDER}: cannot read the destination: {path} "
                           "is in use by another process (a run in progress, or a program reading it?); try again "
                           "when it ends"], err
        finally:
            holder.kill()
            holder.wait()
    # a DuckDB path that cannot be written (its folder is a file: even root cannot create it)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    code = main(["run", PROVIDER, "--duckdb-path", str(blocker / "x.duckdb"), "--pipelines-dir", str(tmp_path / "q")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "x.duckdb" in err[0], err


def test_no_credential_anywhere_with_every_provider_at_debug_and_faults_on(make_harness, caplog, capfd):
    harness = make_harness(faults=Faults(error_rate=0.05, reset_rate=0.02, truncate_rate=0.02, burst_rate=0.02))
    harness.setenv(RUNTIME__REQUEST_MAX_ATTEMPTS=12)  # so that no request fails every attempt by chance
    caplog.set_level("DEBUG")
    for provider in PROVIDERS:
        assert harness.cli("run", provider, "--debug") == 0, provider
    # EmailOctopus through its API v2 too: the key goes in a header there
    harness.setenv(SOURCES__EMAILOCTOPUS__API_VERSION="2",
                   SOURCES__EMAILOCTOPUS__BASE_URL=harness.sandbox.base_url("emailoctopus_v2"))
    harness.sandbox.advance(hours=24)
    assert harness.cli("run", "emailoctopus", "--debug") == 0
    assert harness.sandbox.requests["emailoctopus_v2"] > 0
    out, err = capfd.readouterr()

    oauth = harness.sandbox.apps["constant_contact_v3"].simulator.oauth
    configured = [value for key, value in harness.sandbox.environment().items()
                  if key.endswith(("API_KEY", "ACCESS_TOKEN", "CLIENT_SECRET", "REFRESH_TOKEN"))]
    secrets = {*configured, *oauth.presented, *oauth.valid_refresh_tokens, *oauth.access_tokens}
    assert len(secrets) >= 6 and oauth.refreshes >= 1
    assert "GET" in caplog.text and sum(harness.sandbox.faults_served.values()) > 0
    logs = caplog.text + out + err
    files = [path for path in harness.pipelines_dir.rglob("*") if path.is_file()]
    assert any("load" in path.parts for path in files) and any(path.name == "trace.pickle" for path in files)
    tables = [r[0] for r in harness.query(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{harness.dataset}'"
    )]
    dumps = [json.dumps(harness.query(f"SELECT * FROM {table}"), default=str) for table in tables]
    for secret in secrets:
        assert secret not in logs
        for path in files:
            assert secret.encode() not in path.read_bytes(), path
        for table, dump in zip(tables, dumps, strict=True):
            assert secret not in dump, table
    token_file = Path(harness.sandbox.environment()["SOURCES__CONSTANT_CONTACT_V3__REFRESH_TOKEN_FILE"])
    assert token_file.stat().st_mode & 0o777 == 0o600


def test_a_logged_traceback_is_masked_too(caplog):
    """A library that logs an exception with its traceback: the key in the exception's message
    (a URL) is masked in the traceback's text as well as in the message."""
    secret = "tb-secret-5f2a9c"
    register_secret(secret)
    caplog.set_level("WARNING")
    try:
        raise ConnectionError(f"GET https://example.invalid/campaigns?key={secret} failed")
    except ConnectionError:
        logging.getLogger("urllib3.connectionpool").warning("retrying %s", f"/campaigns?key={secret}", exc_info=True)
    assert "Traceback" in caplog.text
    assert "ConnectionError: GET https://example.invalid/campaigns?key=*** failed" in caplog.text
    assert secret not in caplog.text


def test_an_unknown_activity_word_keeps_the_row_typed_by_its_report():
    from sources.constant_contact_v2 import mapping as v2
    from sources.constant_contact_v3 import mapping as v3

    [old] = v2.activity_rows("opens", {}, [{"activity_type": "EMAIL_GLANCE", "contact_id": 7,
                                             "open_date": "2025-01-14T08:55:23.000Z"}])
    assert (old["activity_type"], old["provider_activity_type"], old["contact_id"]) == ("opened", "EMAIL_GLANCE", "7")
    [new] = v3.activity_rows("opened", [{"tracking_activity_type": "em_glances", "contact_id": "c1",
                                          "created_time": "2025-01-14T08:55:00.000Z"}])
    assert (new["activity_type"], new["provider_activity_type"]) == ("opened", "em_glances")
    assert new["occurred_at"].isoformat() == "2025-01-14T08:55:00+00:00"
