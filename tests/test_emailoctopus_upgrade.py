"""An EmailOctopus account loaded by the release before API v2, whose click ids had the clicked link in
them, run by this release: its clicks take the ids this release gives them (in place, once), so a night
that reads them again (a backfill through 1.6, or the first night through v2) doubles nothing; and a read
through v2, whose rows have no link and no bounce type, loses none of those that 1.6 loaded."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import pytest
from conftest import BOTH_DESTINATIONS
from helpers import expected_activity, open_campaigns

from pipelines.runner import dataset_client
from sandbox.emailoctopus import NAME_V2
from sources.emailoctopus.upgrade import upgrade_click_ids

PROVIDER = "emailoctopus"
ACCOUNTS = ("default", "acme")
# the last release before API v2: its EmailOctopus activity ids have the clicked URL in them
BEFORE_V2 = "b01ba19"
REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The release before v2's code (`sources`, `pipelines`), in a folder of its own."""
    folder = tmp_path_factory.mktemp("before_v2")
    archive = subprocess.run(
        ["git", "-C", str(REPOSITORY), "archive", BEFORE_V2, "sources", "pipelines"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def _run_previous_release(harness, folder: Path) -> None:
    environment = {**os.environ, "PYTHONPATH": str(folder)}
    previous = subprocess.run([sys.executable, "-m", "pipelines", *harness.argv("run", PROVIDER)],
                              cwd=folder, env=environment, capture_output=True, text=True)
    assert previous.returncode == 0, previous.stderr


def _use_api(harness, version: str) -> None:
    """Point every account at API `version` of the sandbox (named accounts take the provider's setting)."""
    app = NAME_V2 if version == "2" else PROVIDER
    base_url = harness.sandbox.base_url(app) + ("" if version == "2" else "/api/1.6")
    harness.setenv(SOURCES__EMAILOCTOPUS__API_VERSION=version, SOURCES__EMAILOCTOPUS__BASE_URL=base_url)


def _ids(harness) -> set[tuple[str, str]]:
    return set(harness.query(f"SELECT account, activity_id FROM contact_activity WHERE provider = '{PROVIDER}'"))


def _details(harness, activity_type: str, column: str) -> Counter:
    """The loaded (account, campaign, contact, time, value) of the events of a type that have `column`."""
    return Counter(harness.query(
        f"SELECT account, campaign_id, contact_id, occurred_at, {column} FROM contact_activity "
        f"WHERE provider = '{PROVIDER}' AND activity_type = '{activity_type}' AND {column} IS NOT NULL"
    ))


def _assert_exact(harness) -> None:
    """Every account holds its events as the sandbox serves them now: none doubled, none missing."""
    for account in ACCOUNTS:
        dataset = harness.sandbox.datasets[PROVIDER if account == "default" else f"{PROVIDER}/{account}"]
        loaded = Counter(harness.query(
            "SELECT campaign_id, contact_id, activity_type, occurred_at AT TIME ZONE 'UTC' FROM contact_activity "
            f"WHERE provider = '{PROVIDER}' AND account = '{account}'"
        ))
        assert loaded == expected_activity(dataset), account


def _ids_this_release_gives(harness) -> set[tuple[str, str]]:
    """The ids this release loads for what the sandbox serves now, into a dataset of their own (1.6)."""
    fresh = replace(harness, folder=harness.folder / "fresh", dataset=f"{harness.dataset}_fresh")
    fresh.folder.mkdir()
    _use_api(fresh, "1.6")
    assert fresh.cli("run", PROVIDER) == 0
    ids = _ids(fresh)
    fresh.close()
    return ids


def _clicks_at_one_time(dataset) -> None:
    """Three more clicks by the contact of a click of an open campaign, at its very time: one on another
    link, one on the same link, one without a link (the previous release numbered them by link)."""
    campaign = next(c for c in reversed(dataset.sent_campaigns()) if c.id in open_campaigns(dataset)
                    and any(e.type == "clicked" for e in dataset.events(c)))
    click = next(e for e in dataset.events(campaign) if e.type == "clicked")
    other = next(e.url for c in dataset.sent_campaigns() for e in dataset.events(c)
                 if e.type == "clicked" and e.url != click.url)
    for url in (other, click.url, None):
        campaign.events.append(replace(click, url=url))
    dataset.advance(timedelta(0))  # what is visible is worked out again


def _loaded_by_the_previous_release(harness, folder: Path) -> tuple[Counter, Counter]:
    """Load the accounts with the previous release; its clicked links and bounce types, which it loaded."""
    _clicks_at_one_time(harness.sandbox.datasets[PROVIDER])
    _run_previous_release(harness, folder)
    alike = Counter(harness.query(
        "SELECT campaign_id, contact_id, occurred_at FROM contact_activity WHERE account = 'default' "
        "AND activity_type = 'clicked'"
    ))
    assert max(alike.values()) == 4  # those four
    clicks, bounces = _details(harness, "clicked", "url"), _details(harness, "bounced", "bounce_type")
    assert clicks and bounces and {key[0] for key in clicks} == set(ACCOUNTS)
    return clicks, bounces


@pytest.fixture
def two_accounts(make_harness):
    return make_harness(accounts={PROVIDER: ["acme"], NAME_V2: ["acme"]}, scale="tiny")


def test_a_backfill_through_1_6_of_clicks_the_previous_release_loaded_doubles_none(two_accounts, previous_release):
    harness = two_accounts
    clicks, bounces = _loaded_by_the_previous_release(harness, previous_release)
    ids_before = _ids(harness)
    ids = _ids_this_release_gives(harness)

    assert harness.cli("run", PROVIDER) == 0  # the upgrade, then a night that reads few of them again
    _assert_exact(harness)
    assert _ids(harness) == ids
    # every report read uncut, as after a count that disagrees
    for account in ACCOUNTS:
        assert harness.cli("backfill", PROVIDER, "--account", account, "--since", "2000-01-01") == 0

    _assert_exact(harness)
    assert _ids(harness) == ids
    renamed = ids_before - ids
    assert renamed and len(renamed) <= sum(clicks.values())  # clicks with a link only: the others kept theirs
    assert _details(harness, "clicked", "url") == clicks
    assert _details(harness, "bounced", "bounce_type") == bounces

    assert harness.cli("run", PROVIDER) == 0  # nothing to upgrade any more
    _assert_exact(harness)
    assert _ids(harness) == ids


@BOTH_DESTINATIONS
def test_the_upgrade_gives_each_click_its_new_id_once_then_finds_nothing_to_do(two_accounts, previous_release):
    harness = two_accounts
    clicks, _bounces = _loaded_by_the_previous_release(harness, previous_release)
    ids_before = _ids(harness)
    ids = _ids_this_release_gives(harness)

    with dataset_client(harness.target()) as client:
        upgraded = {account: upgrade_click_ids(client.sql_client, account) for account in ACCOUNTS}
    # every click with a link, and nothing else, took its new id: no two share one
    assert upgraded == {account: sum(n for key, n in clicks.items() if key[0] == account) for account in ACCOUNTS}
    assert _ids(harness) == ids and len(ids_before - ids) == sum(clicks.values())
    assert harness.count("contact_activity") == len(ids)
    assert _details(harness, "clicked", "url") == clicks
    with dataset_client(harness.target()) as client:
        assert [upgrade_click_ids(client.sql_client, account) for account in ACCOUNTS] == [0, 0]


def test_the_first_night_through_v2_after_the_previous_release_doubles_nothing_and_loses_nothing(
    two_accounts, previous_release
):
    harness = two_accounts
    clicks, bounces = _loaded_by_the_previous_release(harness, previous_release)

    harness.sandbox.advance(hours=24)
    _use_api(harness, "2")
    assert harness.cli("run", PROVIDER) == 0
    assert harness.sandbox.requests[NAME_V2] > 0 and harness.sandbox.requests[f"{NAME_V2}/acme"] > 0

    _assert_exact(harness)
    assert _ids(harness) == _ids_this_release_gives(harness)
    # the links and bounce types 1.6 loaded are all there still (v2 brings none for the new events)
    assert not clicks - _details(harness, "clicked", "url")
    assert not bounces - _details(harness, "bounced", "bounce_type")


@BOTH_DESTINATIONS
def test_reads_through_v2_keep_the_links_and_bounce_types_1_6_loaded(two_accounts):
    harness = two_accounts
    assert harness.cli("run", PROVIDER) == 0  # 1.6
    clicks, bounces = _details(harness, "clicked", "url"), _details(harness, "bounced", "bounce_type")
    assert clicks and bounces

    _use_api(harness, "2")
    for arguments in (("run", PROVIDER), ("backfill", PROVIDER, "--since", "2000-01-01")):
        for account in ACCOUNTS:
            assert harness.cli(*arguments, "--account", account) == 0

        _assert_exact(harness)
        assert _details(harness, "clicked", "url") == clicks, arguments
        assert _details(harness, "bounced", "bounce_type") == bounces, arguments
