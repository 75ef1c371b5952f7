"""Nightly loads at a real account's size, load failures that leave a package pending, and the way out.

The account is the size of the one that wedged (issue 13): about 1,800 contacts in each of two
lists, 10 sent campaigns, more than 62,000 events. Every run uses the settings a user gets.
"""

from __future__ import annotations

import json
from datetime import timedelta

from conftest import BOTH_DESTINATIONS
from helpers import cursors, expected_activity, expected_snapshot, loaded_activity, loaded_snapshot

from sandbox.dataset import Event

PROVIDER = "emailoctopus"
REAL_SIZE = (12, 7_400)  # campaigns, contacts


def assert_exact(harness) -> None:
    dataset = harness.sandbox.datasets[PROVIDER]
    expected = expected_activity(dataset)
    assert loaded_activity(harness) == expected
    assert harness.count("contact_activity") == sum(expected.values())
    assert loaded_snapshot(harness) == expected_snapshot(dataset)
    assert harness.count("campaign_non_engagement") == len(expected_snapshot(dataset))
    assert harness.count("contacts") == len(dataset.contacts)


@BOTH_DESTINATIONS
def test_a_real_sized_account_backfills_reruns_and_runs_nightly_exactly(make_harness, capsys):
    harness = make_harness(scale=REAL_SIZE)
    dataset = harness.sandbox.datasets[PROVIDER]
    assert sum(len(dataset.events(c)) for c in dataset.sent_campaigns()) > 62_000

    assert harness.cli("run", PROVIDER) == 0
    assert_exact(harness)
    capsys.readouterr()

    # the first nightly, with no news: nothing wedges, and no event already loaded is merged again
    assert harness.cli("run", PROVIDER) == 0
    out = capsys.readouterr().out
    assert "contact_activity" not in out  # no event reached the load
    assert "events already loaded left out" in out
    assert_exact(harness)

    # a day later: only the new events reach the load
    before = harness.count("contact_activity")
    harness.sandbox.advance(24)
    assert harness.cli("run", PROVIDER) == 0
    out = capsys.readouterr().out
    new = harness.count("contact_activity") - before
    assert new > 0
    assert f"contact_activity {new} read, +{new} rows" in out
    assert_exact(harness)


def test_an_event_that_arrives_late_with_an_old_timestamp_is_loaded_by_the_run_that_reads_it(harness):
    dataset = harness.sandbox.datasets[PROVIDER]
    assert harness.cli("run", PROVIDER) == 0
    campaign = dataset.sent_campaigns()[-1]
    opened = [e for e in dataset.events(campaign) if e.type == "opened"]
    # the provider shows an open it recorded late, dated before the report's cursor
    late = Event(campaign.id, opened[0].contact_id, "opened", opened[0].at - timedelta(seconds=1))
    campaign.events.append(late)
    dataset.advance(timedelta(0))  # forget what the sandbox remembers of visible events

    assert harness.cli("run", PROVIDER) == 0  # sees the report's history changed: reads it again at once
    assert cursors(harness)[f"{campaign.id}:opened"]["recheck"] is False
    assert loaded_activity(harness) == expected_activity(dataset)


def break_contact_activity(harness) -> None:
    """Make every merge into contact_activity fail: the table hides behind a view nothing can delete from."""
    harness.execute("ALTER TABLE contact_activity RENAME TO contact_activity_hidden")
    # a UNION view is not updatable on PostgreSQL either
    harness.execute(
        "CREATE VIEW contact_activity AS SELECT * FROM contact_activity_hidden "
        "UNION ALL SELECT * FROM contact_activity_hidden WHERE false"
    )


def repair_contact_activity(harness) -> None:
    harness.execute("DROP VIEW contact_activity")
    harness.execute("ALTER TABLE contact_activity_hidden RENAME TO contact_activity")


@BOTH_DESTINATIONS
def test_a_load_that_fails_stays_pending_is_shown_and_the_next_run_loads_it(harness, capsys):
    assert harness.cli("run", PROVIDER) == 0
    break_contact_activity(harness)
    harness.sandbox.advance(24)
    capsys.readouterr()

    assert harness.cli("run", PROVIDER) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # and no traceback
    assert "pipeline campaign_sync_emailoctopus" in err[0] and "abort-pending emailoctopus" in err[0]

    assert harness.cli("status", "--json") == 0
    status = next(p for p in json.loads(capsys.readouterr().out)["providers"] if p["provider"] == PROVIDER)
    assert len(status["pending_packages"]) == 1
    assert "the load failed" in status["last_run_error"]["error"]

    assert harness.cli("run", PROVIDER) == 1  # still broken: the package stays, nothing new is read
    assert "left by an earlier run" in capsys.readouterr().err

    repair_contact_activity(harness)
    assert harness.cli("run", PROVIDER) == 0
    assert_exact(harness)
    capsys.readouterr()
    assert harness.cli("status", "--json") == 0
    status = next(p for p in json.loads(capsys.readouterr().out)["providers"] if p["provider"] == PROVIDER)
    assert status["pending_packages"] == []


@BOTH_DESTINATIONS
def test_abort_pending_drops_a_package_that_cannot_load_and_its_data_is_read_again(harness, capsys):
    assert harness.cli("run", PROVIDER) == 0
    loaded_cursors = cursors(harness)
    break_contact_activity(harness)
    harness.sandbox.advance(24)
    assert harness.cli("run", PROVIDER) == 1

    assert harness.cli("abort-pending", PROVIDER) == 0
    assert "1 pending load package(s) dropped" in capsys.readouterr().out
    assert cursors(harness) == loaded_cursors  # back where the last load left them

    repair_contact_activity(harness)
    assert harness.cli("run", PROVIDER) == 0
    assert_exact(harness)
