"""First contact: every command with its defaults, switching destinations, incomplete settings,
overlapping runs, throttling, and what a stopped sandbox leaves behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg2
import pytest
import yaml
from conftest import BOTH_DESTINATIONS, POSTGRES_URL
from helpers import expected_activity, loaded_activity

from pipelines.cli import main
from pipelines.providers import PROVIDERS
from pipelines.runner import run_locks
from sandbox import Sandbox

PROVIDER = "emailoctopus"
ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CAMPAIGN_SYNC = str(Path(sys.executable).parent / "campaign-sync")  # the installed entry point


def test_every_command_works_with_its_defaults_in_an_empty_folder(harness, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()
    monkeypatch.chdir(folder)
    pipelines = ["--pipelines-dir", str(folder / "pipelines")]
    assert main(["run", PROVIDER, *pipelines]) == 0
    assert (folder / "campaign_sync.duckdb").exists()
    assert main(["status", *pipelines]) == 0
    assert main(["status", "--json", *pipelines]) == 0
    assert main(["report", *pipelines]) == 0 and (folder / "report.html").exists()
    day = harness.sandbox.datasets[PROVIDER].sent_campaigns()[0].send_at.date().isoformat()
    assert main(["backfill", PROVIDER, "--since", day, *pipelines]) == 0
    capsys.readouterr()
    assert main(["sql", "SELECT count(*) AS events FROM contact_activity", "--format", "json"]) == 0
    events = json.loads(capsys.readouterr().out)[0]["events"]
    assert events == sum(expected_activity(harness.sandbox.datasets[PROVIDER]).values())


@BOTH_DESTINATIONS
def test_sql_prints_a_table_csv_and_json_and_names_a_missing_table(harness, capsys):
    assert harness.cli("run", PROVIDER) == 0
    capsys.readouterr()
    query = "SELECT activity_type, count(*) AS n FROM contact_activity GROUP BY 1 ORDER BY 1"
    expected = sorted(
        (kind, sum(n for (_, _, k, _), n in loaded_activity(harness).items() if k == kind))
        for kind in {k for (_, _, k, _) in loaded_activity(harness)}
    )
    assert harness.cli("sql", query, "--format", "json") == 0
    assert [(row["activity_type"], row["n"]) for row in json.loads(capsys.readouterr().out)] == expected
    assert harness.cli("sql", query, "--format", "csv") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "activity_type,n" and lines[1:] == [f"{kind},{n}" for kind, n in expected]
    assert harness.cli("sql", query) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["activity_type", "n"] and table[-1] == f"({len(expected)} rows)"
    assert harness.cli("sql", "SELECT * FROM no_such_table") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_table" in err[0], err


def test_a_new_destination_gets_the_whole_history(harness, capsys):
    dataset = harness.sandbox.datasets[PROVIDER]
    assert harness.cli("run", PROVIDER) == 0
    # the same pipelines, now into the other warehouse: it must get everything, not only tonight's news
    first = (harness.destination, harness.dataset)
    other = ("postgres", f"cs_{uuid.uuid4().hex[:12]}") if first[0] == "duckdb" else ("duckdb", "campaign_activity")
    try:
        harness.destination, harness.dataset = other
        assert harness.cli("run", PROVIDER) == 0
        assert loaded_activity(harness) == expected_activity(dataset)
        assert harness.count("contacts") == len(dataset.contacts)
        # and back a day later: the first warehouse's own cursors come from its tables; nothing doubles
        harness.sandbox.advance(24)
        harness.destination, harness.dataset = first
        assert harness.cli("run", PROVIDER) == 0
        assert loaded_activity(harness) == expected_activity(dataset)
    finally:
        if other[0] == "postgres":
            with psycopg2.connect(POSTGRES_URL) as con, con.cursor() as cur:
                cur.execute(f'DROP SCHEMA IF EXISTS "{other[1]}" CASCADE')
                cur.execute(f'DROP SCHEMA IF EXISTS "{other[1]}_staging" CASCADE')


def test_a_provider_with_incomplete_secrets_is_named_and_the_others_load(harness, capsys):
    harness.monkeypatch.delenv("SOURCES__CONSTANT_CONTACT_V3__REFRESH_TOKEN")
    assert harness.cli("run") == 2
    err = capsys.readouterr().err
    assert "constant_contact_v3: missing setting SOURCES__CONSTANT_CONTACT_V3__REFRESH_TOKEN" in err
    assert {row[0] for row in harness.query("SELECT DISTINCT provider FROM contact_activity")} == {
        "emailoctopus", "constant_contact_v2",
    }


def test_a_second_run_while_one_runs_is_refused_at_once_and_touches_nothing(harness, capsys):
    target = harness.target()
    with run_locks([PROVIDERS["constant_contact_v3"]], target):  # a run of one provider is in progress
        assert harness.cli("run") == 1
    assert "constant_contact_v3 is in progress" in capsys.readouterr().err
    assert sum(harness.sandbox.requests.values()) == 0
    assert not harness.duckdb_path.exists()


@pytest.mark.parametrize("retry_after", ["yes", "no"])
@pytest.mark.parametrize("configured_rate", ["0", "40"])
def test_a_throttled_run_slows_down_and_completes(make_harness, retry_after, configured_rate):
    harness = make_harness(requests_per_second={PROVIDER: 15}, variants={"eo_retry_after": retry_after})
    harness.setenv(SOURCES__EMAILOCTOPUS__REQUESTS_PER_SECOND=configured_rate, RUNTIME__REQUEST_MAX_ATTEMPTS=2)
    assert harness.cli("run", PROVIDER) == 0
    assert harness.sandbox.throttled[PROVIDER] > 0  # the provider's limit was below the configured rate
    assert loaded_activity(harness) == expected_activity(harness.sandbox.datasets[PROVIDER])


def test_a_postgres_url_without_password_is_one_line_naming_the_setting(harness, capsys):
    harness.setenv(DESTINATION__POSTGRES__CREDENTIALS="postgresql://postgres@127.0.0.1:5432/test")
    assert main(["status", "--destination", "postgres", "--pipelines-dir", str(harness.pipelines_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "DESTINATION__POSTGRES__CREDENTIALS" in err[0], err


def test_the_secrets_example_works_as_it_is_shown(tmp_path):
    folder = tmp_path / "project"
    (folder / ".dlt").mkdir(parents=True)
    example = (ROOT / ".dlt" / "secrets.toml.example").read_text()
    uncommented = example.replace("# [destination", "[destination").replace("# credentials", "credentials")
    (folder / ".dlt" / "secrets.toml").write_text(uncommented)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    done = subprocess.run(
        [CAMPAIGN_SYNC, "status", "--destination", "postgres", "--dataset", f"cs_{uuid.uuid4().hex[:12]}"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "emailoctopus: never loaded" in done.stdout


def test_the_hosted_nightly_workflow_has_every_secret_the_readme_lists_but_constant_contact_v3s():
    # v3 keeps its rotated refresh token in a file, which a hosted runner loses with its job (README
    # "Scheduling"); without the erasure key, every night after a `forget` would stop with exit 2
    section = README.split("## What a team sets", 1)[1].split("\n## ", 1)[0]
    listed = {name for row in re.findall(r"^\| (`[^|]+)\|", section, flags=re.MULTILINE)
              for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}
    assert {"CAMPAIGN_SYNC__ERASURE_KEY", "SOURCES__EMAILOCTOPUS__API_KEY"} <= listed
    needed = {name for name in listed if "CONSTANT_CONTACT_V3" not in name and name != "CAMPAIGN_SYNC__SQL_CREDENTIALS"}
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "nightly.yml").read_text())
    env = workflow["jobs"]["load"]["env"]
    assert set(env) == needed
    assert all(value == f"${{{{ secrets.{name} }}}}" for name, value in env.items())


def test_a_stopped_sandbox_leaves_no_files(tmp_path):
    sandbox = Sandbox(scale="tiny").start()
    token_folder = Path(sandbox.environment()["SOURCES__CONSTANT_CONTACT_V3__REFRESH_TOKEN_FILE"]).parent
    assert token_folder.exists()
    sandbox.stop()
    assert not token_folder.exists()


def test_the_command_line_sandbox_prints_a_shell_script_and_stops_cleanly_on_sigterm():
    counted = Sandbox(scale="tiny")
    settings = len(counted.environment())
    eo_v2 = counted.base_url("emailoctopus_v2").removeprefix(counted.url)
    counted.stop()  # it made a folder for its refresh token: removed, as a stopped sandbox's is
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "sandbox", "--port", "0", "--scale", "tiny"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    lines: list[str] = []
    try:
        while len([line for line in lines if line.startswith("export SOURCES__")]) < settings and (
            line := process.stdout.readline()
        ):
            lines.append(line)
        lines.append(process.stdout.readline())  # how to reach EmailOctopus through its API v2
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0
    assert all(line.startswith(("# ", "export ")) for line in lines), lines
    exports = [line for line in lines if line.startswith("export SOURCES__")]
    assert len(exports) == settings, lines
    # the runs of a shell pointed at it keep their pipelines in the folder it started in
    assert f"export DLT_DATA_DIR={ROOT / '.dlt-sandbox'}\n" in lines, lines
    serving = re.match(r"# sandbox serving on (http://127\.0\.0\.1:\d+) ", lines[0])
    assert serving is not None, lines
    assert lines[-1] == ("# EmailOctopus through its API v2 instead: export SOURCES__EMAILOCTOPUS__API_VERSION=2 "
                         f"SOURCES__EMAILOCTOPUS__BASE_URL={serving[1]}{eo_v2}\n"), lines
    token = next(line for line in exports if "REFRESH_TOKEN_FILE" in line).split("=", 1)[1].strip().strip("'")
    assert not Path(token).parent.exists()  # removed when the sandbox stopped
