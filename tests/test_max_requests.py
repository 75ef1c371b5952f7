"""`--max-requests N`: a run stops cleanly after N requests, loads what it read, and the next run resumes
its pass over the reports, so capped runs add up to one whole run."""

from __future__ import annotations

from collections import Counter

from helpers import (
    expected_activity,
    expected_snapshot,
    loaded_activity,
    loaded_snapshot,
    nightly_requests,
    open_campaigns,
    pages,
)

from sandbox.emailoctopus import REPORTS, SNAPSHOTS

PROVIDER = "emailoctopus"


def _capped_until_done(harness, cap: int, *command: str) -> tuple[int, Counter]:
    """Run `command --max-requests cap` until it exits 0; return the number of runs and the paths served."""
    served: Counter = Counter()
    for runs in range(1, 60):
        harness.sandbox.reset_counts()
        code = harness.cli(*command, "--max-requests", str(cap))
        assert harness.sandbox.requests[PROVIDER] <= cap
        served.update(harness.sandbox.paths)
        if code == 0:
            return runs, served
        assert code == 4, code
    raise AssertionError("capped runs never finished")


def _one_pass(dataset) -> int:
    """The report requests of one whole pass over every sent campaign (summaries aside)."""
    sent = dataset.sent_campaigns()
    reports = sum(pages(len(dataset.events(c, report))) for c in sent for report in REPORTS)
    return reports + sum(pages(len(dataset.not_engaged(c, activity))) for c in sent for activity in SNAPSHOTS.values())


def _report_requests(served: Counter) -> int:
    return sum(n for path, n in served.items() if "/reports/" in path and not path.endswith("/summary"))


def test_capped_runs_add_up_to_one_whole_run(make_harness, capsys):
    harness = make_harness()
    dataset = harness.sandbox.datasets[PROVIDER]
    sent = dataset.sent_campaigns()
    listings = nightly_requests(dataset, [])  # campaigns, lists and contacts: every run lists them again
    one_pass = _one_pass(dataset)
    cap = listings + one_pass // 3  # three or four runs, each stopped inside the pass

    runs, served = _capped_until_done(harness, cap, "run", PROVIDER)
    assert "stopped after --max-requests" in capsys.readouterr().err
    assert runs >= 3
    assert loaded_activity(harness) == expected_activity(dataset)
    assert loaded_snapshot(harness) == expected_snapshot(dataset)
    assert harness.count("campaign_summaries") == len(sent)
    # each report read once, but for the one read a stopped run cut short (at most 2 pages here)
    most_pages = max(pages(len(dataset.events(c, report))) for c in sent for report in REPORTS)
    assert most_pages <= 2
    assert one_pass <= _report_requests(served) <= one_pass + (runs - 1) * (most_pages - 1)

    # the pass is finished: the next night is a whole (uncapped) one again
    harness.sandbox.reset_counts()
    assert harness.cli("run", PROVIDER) == 0
    assert harness.sandbox.requests[PROVIDER] == nightly_requests(dataset, open_campaigns(dataset))


def test_a_capped_backfill_resumes_its_range(harness):
    dataset = harness.sandbox.datasets[PROVIDER]
    sent = dataset.sent_campaigns()
    since = min(c.send_at for c in sent).date().isoformat()
    cap = nightly_requests(dataset, []) + _one_pass(dataset) // 3  # three or four runs
    runs, served = _capped_until_done(harness, cap, "backfill", PROVIDER, "--since", since)
    assert runs >= 3
    assert loaded_activity(harness) == expected_activity(dataset)
    assert harness.count("campaign_summaries") == len(sent)
    assert _one_pass(dataset) <= _report_requests(served) <= _one_pass(dataset) + runs - 1


def _last_error(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_a_cap_the_listings_use_up_is_refused_naming_the_smallest_that_progresses(make_harness, capsys):
    harness = make_harness(scale=(3, 40))  # one sent campaign, and each of its reports is one page
    dataset = harness.sandbox.datasets[PROVIDER]
    (campaign,) = dataset.sent_campaigns()
    backfill = ("backfill", PROVIDER, "--since", campaign.send_at.date().isoformat())
    listings = nightly_requests(dataset, [])  # campaigns, lists and contacts: every run lists them again
    assert listings == 4

    # before a backfill read its listings whole, what they take is not known: a cap that ended neither
    # them nor a report read says what they had taken
    harness.sandbox.reset_counts()
    assert harness.cli(*backfill, "--max-requests", "1") == 2
    assert harness.sandbox.requests[PROVIDER] == 1
    assert _last_error(capsys) == (
        f"campaign-sync: {PROVIDER}: --max-requests 1 was used up before the listings (campaigns, contacts) ended "
        "(they had taken 1) and before any report read ended, so runs with this cap cannot progress; run once "
        "without the cap or with a larger one (`campaign-sync plan` estimates it)"
    )

    # one request more than the listings: every run reads a report (exit 4), and the runs add up to the
    # whole backfill, whose last run read the listings whole
    runs, served = _capped_until_done(harness, listings + 1, *backfill)
    assert runs >= 3
    assert _report_requests(served) == _one_pass(dataset)  # each report read once
    assert loaded_activity(harness) == expected_activity(dataset)
    assert loaded_snapshot(harness) == expected_snapshot(dataset)
    assert harness.count("campaign_summaries") == 1
    assert harness.count("contacts") == len(dataset.contacts)

    # now a backfill's cap that its listings use up is refused before any request, naming the smallest
    # that progresses; that one does
    for cap in (1, listings):
        harness.sandbox.reset_counts()
        assert harness.cli(*backfill, "--max-requests", str(cap)) == 2
        assert harness.sandbox.requests[PROVIDER] == 0
        assert _last_error(capsys) == (
            f"campaign-sync: {PROVIDER}: --max-requests {cap} is used up by the listings (campaigns, contacts) "
            f"before any report is read, so runs with this cap cannot progress; use at least {listings + 1}"
        )
    harness.sandbox.reset_counts()
    assert harness.cli(*backfill, "--max-requests", str(listings + 1)) == 4
    assert harness.sandbox.requests[PROVIDER] == listings + 1
    assert sum(n for path, n in harness.sandbox.paths.items() if "/reports/" in path) >= 1  # read a report
