"""An event that EmailOctopus 1.6 reports late, with a time older than the report's cursor, is loaded by the
run that first reads it: the nightly's cut (events up to the cursor left out as loaded) is kept only while
the count behind the cursor is the one the cursor recorded."""

from __future__ import annotations

from datetime import timedelta

from helpers import cursors, expected_activity, loaded_activity, open_campaigns, pages

from sandbox.emailoctopus import add_late_event

PROVIDER = "emailoctopus"


def report_requests(harness, campaign_id: str, report: str) -> int:
    """The requests the sandbox served for one report of one campaign (all its pages)."""
    return harness.sandbox.paths[f"{PROVIDER} GET /api/1.6/campaigns/{campaign_id}/reports/{report}"]


def test_an_open_reported_on_day_2_three_days_back_is_loaded_by_day_2s_run(make_harness, capsys):
    harness = make_harness(scale=(12, 600))
    dataset = harness.sandbox.datasets[PROVIDER]
    assert harness.cli("run", PROVIDER) == 0
    newest_open = {c.id: max(e.at for e in dataset.events(c, "opened")) for c in dataset.sent_campaigns()
                   if dataset.events(c, "opened")}  # each opened report's cursor

    harness.sandbox.advance(hours=24)  # day 2: news, and an open recorded late, dated three days back
    at = dataset.clock - timedelta(days=3)
    campaign = next(c for c in dataset.sent_campaigns()
                    if c.id in open_campaigns(dataset) and c.send_at < at <= newest_open.get(c.id, at))
    late = add_late_event(dataset, campaign, "opened", at)
    harness.sandbox.reset_counts()
    capsys.readouterr()
    assert harness.cli("run", PROVIDER) == 0

    loaded = loaded_activity(harness)
    assert loaded[(campaign.id, late.contact_id, "opened", at.replace(tzinfo=None))] >= 1
    assert loaded == expected_activity(dataset)
    assert harness.count("contact_activity") == sum(expected_activity(dataset).values())
    opened = cursors(harness)[f"{campaign.id}:opened"]
    assert opened["recheck"] is False and opened["rows"] == len(dataset.events(campaign, "opened"))
    # the report whose history changed was read twice (the second time passing what the first left out),
    # every other report of the campaign once
    size = pages(len(dataset.events(campaign, "opened")))
    assert report_requests(harness, campaign.id, "opened") == 2 * size
    assert report_requests(harness, campaign.id, "clicked") == pages(len(dataset.events(campaign, "clicked")))
    # the events read again and left out as loaded are those of the other reads, not the late report's
    out = capsys.readouterr().out
    assert "events already loaded left out" in out

    # the next run has nothing to add and reads that report once
    before = harness.count("contact_activity")
    harness.sandbox.reset_counts()
    assert harness.cli("run", PROVIDER) == 0
    assert harness.count("contact_activity") == before
    assert report_requests(harness, campaign.id, "opened") == size
    assert loaded_activity(harness) == expected_activity(dataset)
