"""EmailOctopus end to end: sandbox over HTTP -> dlt -> a real DuckDB file."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from conftest import BOTH_DESTINATIONS, DESTINATIONS, first_run_shared
from helpers import (
    closed_campaigns,
    cursors,
    expected_activity,
    expected_snapshot,
    loaded_activity,
    loaded_snapshot,
    nightly_requests,
    open_campaigns,
)

from sandbox.emailoctopus import REPORTS

PROVIDER = "emailoctopus"
WINDOW = timedelta(days=30)
# the tests that read the first night share its load, on one worker
FIRST_NIGHT = pytest.mark.xdist_group("emailoctopus_first_night")


@pytest.fixture(scope="module", params=DESTINATIONS)
def first_night(request, tmp_path_factory):
    """One first run of the default sandbox per destination, which the tests that only read it share."""
    yield from first_run_shared(tmp_path_factory.mktemp("first_night"), request.param, PROVIDER)


@FIRST_NIGHT
def test_first_run_loads_exactly_the_ground_truth(first_night):
    harness = first_night
    dataset = harness.sandbox.datasets[PROVIDER]

    expected = expected_activity(dataset)
    assert loaded_activity(harness) == expected
    assert harness.count("contact_activity") == sum(expected.values())
    # events without a timestamp are kept, and two identical events stay two rows
    assert harness.count("contact_activity", "occurred_at IS NULL") == sum(
        n for key, n in expected.items() if key[3] is None
    )
    assert any(n > 1 for key, n in expected.items() if key[3] is not None)
    assert harness.count("contact_activity", "activity_id IS NULL") == 0

    assert {r[0] for r in harness.query("SELECT campaign_id FROM campaigns")} == {c.id for c in dataset.campaigns}
    drafts = harness.query("SELECT count(*) FROM campaigns WHERE sent_at IS NULL")[0][0]
    assert drafts == sum(1 for c in dataset.campaigns if not dataset.is_sent(c))
    assert harness.count("contacts") == len(dataset.contacts)
    deleted = sum(1 for c in dataset.contacts if c.deleted)
    assert harness.count("contacts", "deleted AND email_address IS NULL") == deleted
    assert loaded_snapshot(harness) == expected_snapshot(dataset)

    summaries = dict(harness.query("SELECT campaign_id, sent FROM campaign_summaries"))
    assert summaries == {c.id: len(dataset.events(c, "sent")) for c in dataset.sent_campaigns()}
    # every report was read in pages of 100, and nothing else was requested
    assert harness.sandbox.requests[PROVIDER] == nightly_requests(dataset, [c.id for c in dataset.sent_campaigns()])


@FIRST_NIGHT
def test_custom_fields_become_columns_and_tags_a_child_table(first_night):
    harness = first_night
    dataset = harness.sandbox.datasets[PROVIDER]
    with_city = {c.id: c.fields["City"] for c in dataset.contacts if "City" in c.fields and not c.deleted}
    loaded = dict(harness.query("SELECT contact_id, custom_fields__city FROM contacts WHERE custom_fields__city > ''"))
    assert loaded == with_city
    tags = harness.query(
        "SELECT c.contact_id, t.value FROM contacts c JOIN contacts__tags t ON t._dlt_parent_id = c._dlt_id"
    )
    assert Counter(tags) == Counter((c.id, tag) for c in dataset.contacts if not c.deleted for tag in c.tags)


@FIRST_NIGHT
def test_cursors_are_kept_per_campaign_and_report(first_night):
    harness = first_night
    dataset = harness.sandbox.datasets[PROVIDER]
    state = cursors(harness)
    campaign = dataset.sent_campaigns()[-1]
    newest_open = max(e.at for e in dataset.events(campaign, "opened") if not e.timestamp_missing)
    assert state[f"{campaign.id}:opened"]["cursor"] == newest_open.isoformat()
    still_open = open_campaigns(dataset)
    assert set(state) == {f"{c}:{r}" for c in still_open for r in REPORTS}
    # a campaign read after its attribution window closed keeps a marker instead (tests/test_state_size.py)
    assert closed_campaigns(harness) == {c.id for c in dataset.sent_campaigns()} - set(still_open)


@BOTH_DESTINATIONS
def test_a_quiet_rerun_adds_nothing_and_the_next_night_brings_exactly_the_news(harness):
    """A rerun without news reads only open campaigns and adds nothing; a day later the new events and the
    newly sent campaign arrive, and the not-opened snapshot is replaced whole."""
    dataset = harness.sandbox.datasets[PROVIDER]
    assert harness.cli("run", PROVIDER) == 0
    before = harness.count("contact_activity")
    first = loaded_activity(harness)
    snapshot_before = loaded_snapshot(harness)
    unsent = {c.id for c in dataset.campaigns if not dataset.is_sent(c)}
    harness.sandbox.reset_counts()

    # the rerun without news: nothing added, only the open campaigns' reports read
    assert harness.cli("run", PROVIDER) == 0

    assert harness.count("contact_activity") == before
    still_open = open_campaigns(dataset)
    closed = [c.id for c in dataset.sent_campaigns() if c.id not in still_open]
    assert still_open and closed
    assert harness.sandbox.requests[PROVIDER] == nightly_requests(dataset, still_open)
    read_paths = " ".join(harness.sandbox.paths)
    assert not any(campaign_id in read_paths for campaign_id in closed)

    # a day later: exactly the new events, and the newly sent campaign's
    harness.sandbox.advance(hours=24)
    assert harness.cli("run", PROVIDER) == 0

    expected = expected_activity(dataset)
    assert loaded_activity(harness) == expected
    assert sum(expected.values()) > sum(first.values())
    newly_sent = {c.id for c in dataset.sent_campaigns()} & unsent
    assert len(newly_sent) == 1
    assert harness.count("contact_activity", f"campaign_id = '{newly_sent.pop()}'") > 0

    # the not-opened snapshot is replaced whole
    after = loaded_snapshot(harness)
    assert after == expected_snapshot(dataset)
    gone = {row for row in snapshot_before - after if row[1] == "not_opened"}
    assert gone, "somebody opened during the day, so the snapshot shrank"
    for campaign_id, _kind, contact_id in gone:
        assert harness.count(
            "contact_activity",
            f"campaign_id = '{campaign_id}' AND contact_id = '{contact_id}' AND activity_type = 'opened'",
        ) > 0
    assert harness.count("campaign_non_engagement", "_snapshot_reset IS NOT NULL") == 0


def test_backfill_loads_closed_history_without_duplicates_or_moving_cursors_back(harness):
    dataset = harness.sandbox.datasets[PROVIDER]
    start = dataset.clock - WINDOW
    harness.setenv(SOURCES__EMAILOCTOPUS__START_DATE=start.isoformat())
    assert harness.cli("run", PROVIDER) == 0
    old = [c for c in dataset.sent_campaigns() if c.send_at < start]
    assert old
    assert harness.count("contact_activity", "campaign_id IN ({})".format(",".join(f"'{c.id}'" for c in old))) == 0
    before = cursors(harness)

    since = (dataset.clock - timedelta(days=120)).date().isoformat()
    assert harness.cli("backfill", PROVIDER, "--since", since) == 0
    assert harness.cli("backfill", PROVIDER, "--since", since) == 0  # idempotent
    assert harness.cli("run", PROVIDER) == 0

    assert loaded_activity(harness) == expected_activity(dataset)
    after = cursors(harness)
    for key, cursor in before.items():
        assert after[key]["cursor"] == cursor["cursor"]  # None for a report that is still empty
        assert after[key]["read_at"] >= cursor["read_at"]


def test_a_run_says_it_read_as_many_snapshot_rows_as_it_loaded(harness, capsys):
    # each snapshot goes to the load after a row that deletes the one it replaces: that row is not read
    assert harness.cli("run", PROVIDER) == 0
    rows = sum(expected_snapshot(harness.sandbox.datasets[PROVIDER]).values())
    assert f"campaign_non_engagement {rows} read, +{rows} rows" in capsys.readouterr().out


def test_backfill_until_limits_the_campaigns(harness):
    dataset = harness.sandbox.datasets[PROVIDER]
    sent = dataset.sent_campaigns()
    target = sent[1]
    since = (target.send_at - timedelta(minutes=1)).isoformat()
    until = (target.send_at + timedelta(minutes=1)).isoformat()
    assert harness.cli("backfill", PROVIDER, "--since", since, "--until", until) == 0
    assert {r[0] for r in harness.query("SELECT DISTINCT campaign_id FROM contact_activity")} == {target.id}


@pytest.mark.parametrize(
    "variants",
    [
        {"eo_last_page": "empty", "eo_paging": "cursor"},
        {"eo_last_page": "null", "eo_summary": "flat", "eo_click_url": "no", "eo_bounce_type": "no"},
    ],
    ids=["empty-last-page+cursor-paging", "null-next+flat-summary+bare-rows"],
)
def test_every_unsure_api_variant_loads_the_same_truth(make_harness, variants):
    harness = make_harness(variants=variants)
    dataset = harness.sandbox.datasets[PROVIDER]
    assert harness.cli("run", PROVIDER) == 0
    assert loaded_activity(harness) == expected_activity(dataset)
    assert loaded_snapshot(harness) == expected_snapshot(dataset)
    sent = {c.id: c for c in dataset.sent_campaigns()}
    summaries = harness.query("SELECT campaign_id, bounced, opened_unique FROM campaign_summaries")
    for campaign_id, bounced, opened_unique in summaries:
        events = dataset.events(sent[campaign_id])
        assert bounced == sum(1 for e in events if e.type == "bounced")
        assert opened_unique == len({e.contact_id for e in events if e.type == "opened"})
    clicks_with_url = harness.count("contact_activity", "activity_type = 'clicked' AND url IS NOT NULL")
    assert (clicks_with_url > 0) == (variants.get("eo_click_url", "yes") == "yes")


def test_throttling_is_retried_and_loses_nothing(make_harness):
    harness = make_harness(requests_per_second={PROVIDER: 20})
    harness.setenv(SOURCES__EMAILOCTOPUS__REQUESTS_PER_SECOND=200)  # we overrun the sandbox on purpose
    assert harness.cli("run", PROVIDER) == 0
    assert harness.sandbox.throttled[PROVIDER] > 0
    assert loaded_activity(harness) == expected_activity(harness.sandbox.datasets[PROVIDER])


def test_within_budget_the_sandbox_never_throttles(make_harness):
    harness = make_harness(requests_per_second={PROVIDER: 40})
    harness.setenv(SOURCES__EMAILOCTOPUS__REQUESTS_PER_SECOND=38)
    assert harness.cli("run", PROVIDER) == 0
    assert harness.sandbox.throttled[PROVIDER] == 0
    assert harness.sandbox.requests[PROVIDER] > 40
