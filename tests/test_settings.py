"""Settings are read, typed and checked the same way for every account, from the environment or TOML:
a value that is not of its type or out of its range is one line naming the setting, exit 2, no request."""

from __future__ import annotations

import pytest

PROVIDER = "emailoctopus"
ACME = "SOURCES__EMAILOCTOPUS__ACCOUNTS__ACME__"


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_a_named_accounts_numeric_settings_from_the_environment_are_typed(make_harness, capsys):
    harness = make_harness(accounts={PROVIDER: ["acme"]})
    harness.setenv(**{
        f"{ACME}REQUESTS_PER_SECOND": "30", f"{ACME}MAX_CONCURRENCY": "4",
        f"{ACME}ATTRIBUTION_WINDOW_DAYS": "30", f"{ACME}LOOKBACK_MINUTES": "10",
        f"{ACME}FORGET_DELETED_CONTACTS": "false",
    })
    assert harness.cli("run", PROVIDER, "--account", "acme") == 0, capsys.readouterr().err
    dataset = harness.sandbox.datasets[f"{PROVIDER}/acme"]
    assert harness.count("contacts", "account = 'acme'") == len(dataset.contacts)


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
@pytest.mark.parametrize(
    ("setting", "value", "must_be"),
    [
        ("SOURCES__EMAILOCTOPUS__REQUESTS_PER_SECOND", "-5", "must be a number, 0 or more"),
        ("SOURCES__EMAILOCTOPUS__REQUESTS_PER_SECOND", "nan", "must be a number, 0 or more"),
        ("SOURCES__EMAILOCTOPUS__REQUESTS_PER_SECOND", "inf", "must be a number, 0 or more"),
        ("SOURCES__EMAILOCTOPUS__MAX_CONCURRENCY", "100000", "must be a whole number from 1 to 64"),
        ("SOURCES__EMAILOCTOPUS__MAX_CONCURRENCY", "0", "must be a whole number from 1 to 64"),
        ("SOURCES__EMAILOCTOPUS__MAX_CONCURRENCY", "-3", "must be a whole number from 1 to 64"),
        ("SOURCES__EMAILOCTOPUS__ATTRIBUTION_WINDOW_DAYS", "-5", "must be a whole number of days, 0 or more"),
        ("SOURCES__EMAILOCTOPUS__LOOKBACK_MINUTES", "-100", "must be a whole number of minutes, 0 or more"),
        ("SOURCES__EMAILOCTOPUS__FORGET_DELETED_CONTACTS", "maybe", "must be true or false"),
        (f"{ACME}REQUESTS_PER_SECOND", "-1", "must be a number, 0 or more"),
        (f"{ACME}MAX_CONCURRENCY", "lots", "must be a whole number"),
        (f"{ACME}FORGET_DELETED_CONTACTS", "maybe", "must be true or false"),
        ("RUNTIME__REQUEST_MAX_ATTEMPTS", "abc", "must be a whole number"),
    ],
)
def test_a_setting_out_of_its_range_is_named(make_harness, capsys, setting, value, must_be):
    harness = make_harness(accounts={PROVIDER: ["acme"]} if "ACME" in setting else {})
    harness.setenv(**{setting: value})
    assert harness.cli("run", PROVIDER) == 2
    line = error_line(capsys)
    assert line.startswith("campaign-sync: ") and f"{setting} {must_be}" in line and "not '" in line, line
    assert "unexpected" not in line
    assert harness.sandbox.requests[f"{PROVIDER}/acme" if "ACME" in setting else PROVIDER] == 0


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_a_long_account_name_is_refused_plainly_and_the_other_accounts_run(harness, capsys):
    # a name that breaks the rule ends that account's run, as any setting that breaks its rule does
    harness.setenv(**{f"SOURCES__EMAILOCTOPUS__ACCOUNTS__{'A' * 200}__API_KEY": "k" * 20})
    assert harness.cli("run", PROVIDER) == 2
    line = error_line(capsys)
    assert "account name" in line and "up to 40" in line, line
    assert len(line) < 300
    assert harness.count("contacts") == len(harness.sandbox.datasets[PROVIDER].contacts)  # the default account's
    assert harness.cli("status") == 2  # every other account's status, and that line
    shown = capsys.readouterr()
    assert shown.err.strip().splitlines() == [line]
    assert f"{PROVIDER}: last load" in shown.out
