"""The command line: exit codes and one-line messages for bad input, status output."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import main

PROVIDER = "emailoctopus"
ROOT = Path(__file__).resolve().parent.parent


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    return err[0]


def test_missing_key_names_the_setting(harness, capsys):
    harness.monkeypatch.delenv("SOURCES__EMAILOCTOPUS__API_KEY")
    assert harness.cli("run", PROVIDER) == 2
    assert "SOURCES__EMAILOCTOPUS__API_KEY" in error_line(capsys)


def test_no_configured_provider_is_a_configuration_error(harness, capsys):
    harness.monkeypatch.delenv("SOURCES__EMAILOCTOPUS__API_KEY")
    for name in list(harness.sandbox.apps):
        for key in [k for k in os.environ if k.startswith(f"SOURCES__{name.upper()}__")]:
            harness.monkeypatch.delenv(key)
    assert harness.cli("run") == 2
    assert "no provider is configured" in error_line(capsys)


def test_wrong_key_is_a_credentials_error(harness, capsys):
    harness.setenv(SOURCES__EMAILOCTOPUS__API_KEY="not-the-key-123")
    assert harness.cli("run", PROVIDER) == 3
    line = error_line(capsys)
    assert "emailoctopus refused the credentials" in line and "SOURCES__EMAILOCTOPUS__API_KEY" in line
    assert "not-the-key-123" not in line


def test_unknown_provider(harness, capsys):
    assert harness.cli("run", "mailchimp") == 2
    assert "unknown provider 'mailchimp'" in error_line(capsys)


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("yesterday-ish", None, "is not a date"),
        ("2025-02-01", "2025-01-01", "is before --since"),
        ("2999-01-01", None, "is in the future"),
    ],
)
def test_bad_backfill_dates(harness, capsys, since, until, message):
    args = ["backfill", PROVIDER, "--since", since] + (["--until", until] if until else [])
    assert harness.cli(*args) == 2
    assert message in error_line(capsys)
    assert harness.sandbox.requests[PROVIDER] == 0


def test_unreachable_base_url_is_one_line(harness, capsys):
    harness.setenv(SOURCES__EMAILOCTOPUS__BASE_URL="http://127.0.0.1:9/api/1.6", RUNTIME__REQUEST_MAX_ATTEMPTS=1)
    assert harness.cli("run", PROVIDER) == 1
    line = error_line(capsys)
    assert "emailoctopus: cannot reach http://127.0.0.1:9/api/1.6: connection refused" in line
    assert "api_key=***" in line or "api_key" not in line


def test_status_before_and_after_a_load(harness, capsys):
    assert harness.cli("status") == 0
    assert f"{PROVIDER}: never loaded" in capsys.readouterr().out
    assert harness.cli("run", PROVIDER) == 0
    capsys.readouterr()
    assert harness.cli("status") == 0
    out = capsys.readouterr().out
    dataset = harness.sandbox.datasets[PROVIDER]
    assert f"{PROVIDER}: last load" in out
    assert f"contacts: {len(dataset.contacts)} rows" in out


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("SOURCES__EMAILOCTOPUS__REQUESTS_PER_SECOND", "fast", "SOURCES__EMAILOCTOPUS__REQUESTS_PER_SECOND must be"),
        ("SOURCES__EMAILOCTOPUS__START_DATE", "last spring",
         "SOURCES__EMAILOCTOPUS__START_DATE must be a date: YYYY-MM-DD or ISO 8601, not 'last spring'"),
        ("SOURCES__EMAILOCTOPUS__BASE_URL", "ftp://emailoctopus.com/api/1.6", "is not an http(s) URL"),
    ],
)
def test_a_malformed_setting_is_a_configuration_error(harness, capsys, caplog, setting, value, message):
    harness.setenv(**{setting: value})
    assert harness.cli("run", PROVIDER) == 2
    assert message in error_line(capsys)
    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]  # that line only
    assert harness.sandbox.requests[PROVIDER] == 0


def test_a_max_requests_that_is_not_a_number_says_what_it_must_be(harness, capsys):
    with pytest.raises(SystemExit) as exit_code:
        harness.cli("run", PROVIDER, "--max-requests", "abc")
    assert exit_code.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "campaign-sync run: error: argument --max-requests: must be a whole number, at least 1, not 'abc'"
    )


def test_a_duration_is_not_a_backfill_date(harness, capsys):
    assert harness.cli("backfill", PROVIDER, "--since", "P1D") == 2
    assert "is not a date" in error_line(capsys)


def test_a_bare_until_date_includes_that_whole_day(harness):
    dataset = harness.sandbox.datasets[PROVIDER]
    target = dataset.sent_campaigns()[1]
    day = target.send_at.date().isoformat()
    assert harness.cli("backfill", PROVIDER, "--since", day, "--until", day) == 0
    loaded = {r[0] for r in harness.query("SELECT DISTINCT campaign_id FROM contact_activity")}
    assert loaded == {c.id for c in dataset.sent_campaigns() if c.send_at.date().isoformat() == day}
    assert target.id in loaded


def test_config_toml_states_every_source_default_as_the_code_has_it():
    import inspect
    import tomllib
    from pathlib import Path

    from pipelines.providers import PIPELINE_SETTINGS, PROVIDERS

    config = tomllib.loads((Path(__file__).resolve().parent.parent / ".dlt" / "config.toml").read_text())
    for name, provider in PROVIDERS.items():
        function = getattr(provider.source, "__wrapped__", provider.source)
        defaults = {
            key: parameter.default
            for key, parameter in inspect.signature(function).parameters.items()
            if parameter.default is not inspect.Parameter.empty and parameter.default is not None
            and isinstance(parameter.default, str | int | float) and key not in provider.secrets
        }
        assert config["sources"][name] == {**defaults, **PIPELINE_SETTINGS}, name


def test_the_readme_names_every_setting_and_its_default():
    import inspect
    from pathlib import Path

    from pipelines.providers import PIPELINE_SETTINGS, PROVIDERS

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for provider in PROVIDERS.values():
        parameters = inspect.signature(getattr(provider.source, "__wrapped__", provider.source)).parameters
        settings = {key: p.default for key, p in parameters.items() if key != "plan"} | PIPELINE_SETTINGS
        for key, default in settings.items():
            assert key.upper() in readme, (provider.name, key)
            if isinstance(default, str) and default:
                assert default in readme, (provider.name, key, default)


@pytest.mark.parametrize(("dataset", "becomes"), [
    ('x"; DROP SCHEMA public; --', "x_drop_schema_publicxxx"), ("Campaigns", "campaigns"), ("a-b", "a_b"),
])
def test_a_dataset_name_dlt_would_rename_is_refused(harness, capsys, dataset, becomes):
    for command in (["run", "emailoctopus"], ["status"], ["sql", "SELECT 1"]):
        assert main([*command, "--dataset", dataset, "--pipelines-dir", str(harness.pipelines_dir),
                     "--duckdb-path", str(harness.duckdb_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"would be stored as {becomes!r}" in err[0], err
    assert not harness.duckdb_path.exists() and not harness.pipelines_dir.exists()


def test_sandbox_help_lists_only_its_own_options(capsys):
    with pytest.raises(SystemExit):
        main(["sandbox", "--help"])
    out = capsys.readouterr().out
    assert "--port" in out and "--scale" in out
    for other in ("--destination", "--dataset", "--duckdb-path", "--progress", "--pipelines-dir"):
        assert other not in out, other


@pytest.mark.parametrize("command", [
    ("backfill", PROVIDER, "--account", "globex", "--since", "2026-01-01"),
    ("abort-pending", PROVIDER, "--account", "globex"),
    ("run", PROVIDER, "--account", "globex"),
])
def test_an_account_that_is_not_configured_makes_no_pipeline_and_no_file(harness, capsys, command):
    assert harness.cli(*command) in (0, 2)
    assert not harness.pipelines_dir.exists() and not harness.duckdb_path.exists()
    assert sum(harness.sandbox.requests.values()) == 0


def test_a_sandbox_leaves_no_folder_behind_even_when_its_port_is_busy(monkeypatch, tmp_path):
    import socket
    import tempfile

    from sandbox import Sandbox
    from sandbox.server import PortInUse

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    Sandbox(scale="tiny")  # made for its data only
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(PortInUse):
            Sandbox(scale="tiny", port=busy.getsockname()[1]).start()
    with Sandbox(scale="tiny") as sandbox:
        assert Path(sandbox.environment()["SOURCES__CONSTANT_CONTACT_V3__REFRESH_TOKEN_FILE"]).parent.is_dir()
    assert list(tmp_path.iterdir()) == []


def test_the_demo_takes_no_file_or_folder_it_would_empty(tmp_path, capsys):
    # the demo starts afresh in files of its own; given a user's warehouse, it would have deleted it
    warehouse = tmp_path / "campaign_sync.duckdb"
    warehouse.write_bytes(b"a user's warehouse")
    for option in ("--duckdb-path", "--pipelines-dir", "--destination"):
        with pytest.raises(SystemExit) as exit_code:
            main(["demo", option, str(warehouse)])
        assert exit_code.value.code == 2
        assert f"unrecognized arguments: {option}" in capsys.readouterr().err
    assert warehouse.read_bytes() == b"a user's warehouse"


def test_output_cut_off_by_its_reader_is_one_line_not_an_unexpected_error(harness):
    # `campaign-sync sql ... | head`: the reader stops, the next write fails (EPIPE); it said "unexpected error"
    assert harness.cli("run", PROVIDER, "--quiet") == 0
    command = [sys.executable, "-m", "pipelines", *harness.argv("sql", "SELECT * FROM range(100000)")]
    child = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "range"
    child.stdout.close()  # as `head` does once it has its lines
    err = child.stderr.read()
    assert child.wait(timeout=60) == 1
    assert err.splitlines() == ["campaign-sync: output cut off: what read it stopped reading (`| head`, say)"]
