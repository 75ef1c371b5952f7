"""SIGINT (Ctrl-C) and SIGTERM (a scheduler's stop) end a run of several providers cleanly: every
provider's reads stop within a second or two, what was read loads and is printed, the command exits
130 with one line, `status` says the run was interrupted, and the next run ends exact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path

import dlt
import psycopg2
import pytest
from conftest import BOTH_DESTINATIONS, POSTGRES_URL
from helpers import expected_activity, expected_snapshot, loaded_activity

from sources.errors import INTERRUPTED

ROOT = Path(__file__).resolve().parent.parent
PROVIDERS = ("emailoctopus", "constant_contact_v2", "constant_contact_v3")
LINE = f"campaign-sync: {INTERRUPTED}"


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_stops_its_reads_at_once_loads_what_it_read_and_the_next_run_is_exact(
    make_harness, capsys, stop
):
    harness = make_harness(scale="tiny")
    for provider in PROVIDERS:  # slow enough that every provider is still reading when the signal comes
        harness.setenv(**{f"SOURCES__{provider.upper()}__REQUESTS_PER_SECOND": "5"})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "pipelines", *harness.argv("run")]
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    # EmailOctopus and v2 are reading (v3 waits for v2's campaigns to look up their v3 ids)
    while min(harness.sandbox.requests[p] for p in PROVIDERS[:2]) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert child.poll() is None, child.communicate()
    child.send_signal(stop)
    signalled = time.monotonic()
    # the reads stop once the run has the signal (a loaded machine may take a moment to give it): the
    # requests served settle, 2 s without one, within 10 s; reads that went on (5 a second each) never would
    served, quiet_since = sum(harness.sandbox.requests.values()), time.monotonic()
    paths_at_signal = Counter(harness.sandbox.paths)
    while time.monotonic() - quiet_since < 2.0:
        # what was served after the signal, by path, says which read went on
        assert time.monotonic() - signalled < 10, (
            f"requests went on 10 s after the signal: {Counter(harness.sandbox.paths) - paths_at_signal}"
        )
        time.sleep(0.05)
        if sum(harness.sandbox.requests.values()) != served:
            served, quiet_since = sum(harness.sandbox.requests.values()), time.monotonic()
    out, err = child.communicate(timeout=60)
    assert sum(harness.sandbox.requests.values()) == served, "a request was sent after the reads had stopped"
    assert time.monotonic() - signalled < 30
    assert child.returncode == 130, err
    assert err.strip().splitlines() == [LINE]
    for provider in PROVIDERS:  # what each provider loaded
        assert any(line.startswith(f"{provider}: ") and "requests" in line for line in out.splitlines()), out
    assert "nothing new" not in out  # each was interrupted: one that had read nothing yet says so

    assert harness.cli("status") == 0
    status = capsys.readouterr().out
    assert status.count("interrupted") == len(PROVIDERS), status

    for provider in PROVIDERS:
        harness.setenv(**{f"SOURCES__{provider.upper()}__REQUESTS_PER_SECOND": "0"})
    assert harness.cli("run") == 0, capsys.readouterr().err
    dataset = harness.sandbox.datasets["emailoctopus"]
    assert loaded_activity(harness) == expected_activity(dataset)
    assert Counter(harness.query(
        "SELECT campaign_id, kind, contact_id FROM campaign_non_engagement WHERE provider = 'emailoctopus'"
    )) == expected_snapshot(dataset)
    for provider in PROVIDERS:
        contacts = len(harness.sandbox.datasets[provider].contacts)
        assert harness.count("contacts", f"provider = '{provider}'") == contacts, provider
    assert harness.query("SELECT count(*) - count(DISTINCT activity_id) FROM contact_activity")[0][0] == 0


def test_a_second_ctrl_c_outside_dlts_steps_is_kept_as_an_interruption_and_the_next_run_is_exact(
    harness, monkeypatch, capsys
):
    # a second Ctrl-C raises KeyboardInterrupt wherever the run is; here while it syncs its state with the
    # destination (dlt's `sync_destination`, before the reads): `status` must not take the run for a load
    provider = "emailoctopus"
    assert harness.cli("run", provider) == 0
    capsys.readouterr()
    assert harness.cli("status", "--json") == 0
    loaded = json.loads(capsys.readouterr().out)["providers"][0]["last_successful_load"]
    harness.sandbox.advance(24)

    def second_ctrl_c(self):
        raise KeyboardInterrupt

    with monkeypatch.context() as fault:
        fault.setattr(dlt.Pipeline, "sync_destination", second_ctrl_c)
        assert harness.cli("run", provider) == 130
    assert capsys.readouterr().err.strip().splitlines() == [LINE]
    assert harness.cli("status", "--json") == 0
    status = json.loads(capsys.readouterr().out)["providers"][0]
    assert status["last_successful_load"] == loaded  # the first run's
    assert status["last_run_error"]["error"] == INTERRUPTED

    assert harness.cli("run", provider) == 0
    dataset = harness.sandbox.datasets[provider]
    assert loaded_activity(harness) == expected_activity(dataset)
    assert Counter(harness.query(
        "SELECT campaign_id, kind, contact_id FROM campaign_non_engagement WHERE provider = 'emailoctopus'"
    )) == expected_snapshot(dataset)


@contextmanager
def child_killed(child: subprocess.Popen) -> Iterator[None]:
    """Kill `child` when the block ends, if it still runs: a failed check leaves no endless query behind."""
    try:
        yield
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def open_files(pid: int) -> set[str]:
    """The paths of the files a process has open now (those it closes meanwhile left out)."""
    paths = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with suppress(OSError):
            paths.add(os.readlink(fd))
    return paths


@BOTH_DESTINATIONS
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_long_sql_query_stops_at_a_signal_and_is_cancelled_in_the_database(harness, stop):
    # a signal reaches Python only between its steps: while the database ran the query, Ctrl-C did nothing
    # (DuckDB) and SIGTERM ended the process as 143, not 130
    assert harness.cli("run", "emailoctopus", "--quiet") == 0
    marker = f"-- {harness.dataset} {stop.name}"  # names this test's query among the server's
    endless = "SELECT count(*) FROM range(100000000000) a(i), range(10) b(j) WHERE i * j = -1"
    query = f"{endless if harness.destination == 'duckdb' else 'SELECT pg_sleep(300)'} {marker}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-m", "pipelines", *harness.argv("sql", query)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with closing(psycopg2.connect(POSTGRES_URL)) as server, server.cursor() as cursor, child_killed(child):
        server.autocommit = True

        def running() -> bool:
            if harness.destination == "duckdb":  # it runs once the file is open
                return str(harness.duckdb_path) in open_files(child.pid)
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND state = 'active'",
                           [f"%{marker}"])
            return cursor.fetchone()[0] == 1

        deadline = time.monotonic() + 60
        while child.poll() is None and not running() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert child.poll() is None, child.communicate()
        child.send_signal(stop)
        _out, err = child.communicate(timeout=30)  # the query alone runs for minutes
        assert child.returncode == 130, err
        assert err.strip().splitlines() == ["campaign-sync: interrupted"]  # (it loads nothing)
        if harness.destination == "postgres":  # cancelled, not left running on the server
            assert not running()
