"""`campaign-sync plan`: estimates from the listing calls only, compared with the requests the run then makes."""

from __future__ import annotations

import json
from collections import Counter

from helpers import EMAILOCTOPUS, open_campaigns


def _plan(harness, capsys, *args: str) -> dict:
    harness.sandbox.reset_counts()
    capsys.readouterr()
    assert harness.cli("plan", *args, "--json") == 0
    (estimate,) = json.loads(capsys.readouterr().out)
    return estimate


def _served(harness, *command: str) -> Counter:
    harness.sandbox.reset_counts()
    assert harness.cli(*command) == 0
    return Counter(harness.sandbox.paths)


def _count(served: Counter, test) -> int:
    return sum(n for path, n in served.items() if test(path))


def test_constant_contact_v2_nightly_estimate_is_exact(harness, capsys):
    provider = "constant_contact_v2"
    first = _plan(harness, capsys, provider)
    # the plan makes the two campaign listings (live and deleted), nothing else
    assert set(harness.sandbox.paths) == {f"{provider} GET /v2/emailmarketing/campaigns"}
    assert harness.sandbox.requests[provider] == first["listing_requests"] == 2
    assert first["run"] == "tonight's run (the first: all history)"
    assert first["at_least"] is True  # no listing tells the tracking lists' sizes
    simulator = harness.sandbox.apps[provider].simulator
    live = [c for c in simulator.dataset.sent_campaigns() if not simulator.is_deleted(c)]
    assert first["campaigns"] == len(live)
    backfill = _served(harness, "run", provider)
    assert first["requests"] <= sum(backfill.values())

    # after the first load the dataset knows the reports: tonight's cost is exact
    tonight = _plan(harness, capsys, provider)
    assert tonight["at_least"] is False
    assert tonight["daily_quota"] == 10_000
    nightly = _served(harness, "run", provider)
    assert tonight["requests"] == sum(nightly.values())
    assert tonight["summaries"] == _count(nightly, lambda path: path.endswith("/summary"))
    assert tonight["report_pages"] == _count(nightly, lambda path: "/tracking/" in path and "/reports/" not in path)
    assert tonight["quota_days"] == round(tonight["requests"] / 10_000, 2)


def test_emailoctopus_estimates_whole_reports_from_the_loaded_rows(harness, capsys):
    dataset = harness.sandbox.datasets[EMAILOCTOPUS]
    first = _plan(harness, capsys, EMAILOCTOPUS)
    assert harness.sandbox.requests[EMAILOCTOPUS] == first["listing_requests"] == 1  # the campaign listing
    assert first["daily_quota"] is None
    # every report of every sent campaign is read, each at least one page (their sizes are not listed)
    assert first["reports_of_unknown_size"] == first["report_pages"] == 8 * len(dataset.sent_campaigns())
    assert harness.cli("run", EMAILOCTOPUS) == 0

    tonight = _plan(harness, capsys, EMAILOCTOPUS)
    nightly = _served(harness, "run", EMAILOCTOPUS)
    reports = _count(nightly, lambda path: "/reports/" in path and not path.endswith("/summary"))
    assert tonight["campaigns"] == len(open_campaigns(dataset))
    assert tonight["report_pages"] == reports  # the reports read whole are as large as they were loaded
    assert tonight["summaries"] == _count(nightly, lambda path: path.endswith("/summary"))
    assert tonight["reports_of_unknown_size"] == 0
    assert tonight["requests"] <= sum(nightly.values())  # contacts: at least one page


def test_constant_contact_v3_backfill_estimate_from_the_summaries(harness, capsys):
    provider = "constant_contact_v3"
    dataset = harness.sandbox.datasets[provider]
    sent = dataset.sent_campaigns()
    since = min(c.send_at for c in sent).date().isoformat()
    estimate = _plan(harness, capsys, provider, "--since", since)
    listings = {path.split(" ")[-1] for path in harness.sandbox.paths}
    summaries = "/v3/reports/summary_reports/email_campaign_summaries"
    assert listings == {"/v3/emails", summaries, "/oauth2/default/v1/token"}
    assert estimate["campaigns"] == len(sent)
    assert estimate["run"] == f"backfill since {since}"
    assert estimate["at_least"] is True  # resends and repeated opens are not listed
    backfill = _served(harness, "backfill", provider, "--since", since)
    primary_sends = _count(backfill, lambda path: path.endswith("/tracking/sends"))
    assert estimate["requests"] <= sum(backfill.values())
    assert estimate["report_pages"] <= sum(n for path, n in backfill.items() if "/tracking/" in path)
    assert primary_sends >= len(sent)


def test_plan_names_the_missing_setting(harness, capsys):
    harness.monkeypatch.delenv("SOURCES__EMAILOCTOPUS__API_KEY")
    assert harness.cli("plan", EMAILOCTOPUS) == 2
    assert "SOURCES__EMAILOCTOPUS__API_KEY" in capsys.readouterr().err


def test_plan_with_a_refused_key_is_one_line_and_exit_3_as_run(harness, capsys):
    harness.setenv(SOURCES__EMAILOCTOPUS__API_KEY="not-the-key-4711")
    for command in (("run", EMAILOCTOPUS), ("plan", EMAILOCTOPUS)):
        capsys.readouterr()
        assert harness.cli(*command) == 3, command
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "refused the credentials" in err[0] and "unexpected" not in err[0], err
        assert "not-the-key-4711" not in err[0]


def test_plan_text_says_a_share_of_the_quota_and_labels_no_lookup_a_provider_does_not_make(harness, capsys):
    for provider in ("constant_contact_v2", EMAILOCTOPUS):
        capsys.readouterr()
        assert harness.cli("plan", provider) == 0
        out = capsys.readouterr().out
        assert "send history" not in out and "v2 ids" not in out, out
        assert "0 run(s)" not in out and "0.00 days" not in out, out
    harness.cli("plan", "constant_contact_v2")
    assert "% of one day's quota" in capsys.readouterr().out
