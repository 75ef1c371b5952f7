"""One set of numbers (issue 26): in a world of every provider, two accounts each, and one Constant
Contact account read through both its APIs, every figure a user reads agrees with the others and
with the sandbox's truth, after the first night, a rerun with no news and a later night, with the
sandbox's transient faults off and on.

- `campaign_engagement` (per campaign as its API knows it) equals that API's raw rows and the
  sandbox's own summary; a v2 campaign names its v3 campaign.
- `campaign_engagement_unified` (per real campaign) equals the sandbox's events counted once.
- the report's and the demo's summaries equal the views they say they show; `status` finds no
  difference; the rerun adds no row to any table.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from helpers import (
    ENGAGEMENT_MEASURES,
    as_events,
    constant_contact_v2_events,
    constant_contact_v3_events,
    emailoctopus_events,
    engagement_counts,
)

from pipelines.demo import ENGAGEMENT_SQL, engagement_lines
from sandbox import Faults
from sandbox import constant_contact_v2 as cc2
from sandbox import emailoctopus as eo

EO, V2, V3 = "emailoctopus", "constant_contact_v2", "constant_contact_v3"
ACCOUNTS = ("default", "acme")
MEASURES = ", ".join(ENGAGEMENT_MEASURES)
ZERO = dict.fromkeys(ENGAGEMENT_MEASURES, 0)
# transient faults that the retries absorb: a run with them must end as exact as one without
FAULTS = Faults(error_rate=0.04, burst_rate=0.02, truncate_rate=0.02, reset_rate=0.02, html_rate=0.02)


def _key(provider: str, account: str) -> str:
    return provider if account == "default" else f"{provider}/{account}"


def _view(harness: Any, view: str) -> dict[tuple[str, str, str], dict[str, int]]:
    rows = harness.query(f"SELECT provider, account, campaign_id, {MEASURES} FROM {view}")
    return {tuple(row[:3]): dict(zip(ENGAGEMENT_MEASURES, map(int, row[3:]), strict=True)) for row in rows}


def _deleted_v2_campaigns(harness: Any) -> set[tuple[str, str, str]]:
    """The v2 campaigns deleted at the provider: v2 cannot read them any more (404), so what was
    loaded of them is what v2 gave before (docs/providers/constant-contact-v2.md § Deleted campaigns)."""
    deleted = set()
    for account in ACCOUNTS:
        v2 = harness.sandbox.apps[_key(V2, account)].simulator
        deleted |= {(V2, account, cc2.campaign_id(c)) for c in v2.dataset.campaigns if v2.is_deleted(c)}
    return deleted


def _per_api_truth(harness: Any) -> dict[tuple[str, str, str], dict[str, int]]:
    """Each API's events per campaign, under that API's campaign id."""
    truth = {}
    for account in ACCOUNTS:
        eo_counts = engagement_counts(emailoctopus_events(harness.sandbox.datasets[_key(EO, account)]))
        v2 = harness.sandbox.apps[_key(V2, account)].simulator
        v2_id = {campaign.id: cc2.campaign_id(campaign) for campaign in v2.dataset.campaigns}
        v2_counts = engagement_counts(
            [(v2_id[c], contact, kind) for c, contact, kind in as_events(constant_contact_v2_events(v2))]
        )
        v3 = harness.sandbox.apps[_key(V3, account)].simulator.account
        v3_counts = engagement_counts(as_events(constant_contact_v3_events(v3)))
        for provider, counts in ((EO, eo_counts), (V2, v2_counts), (V3, v3_counts)):
            truth.update({(provider, account, campaign): measures for campaign, measures in counts.items()})
    return truth


def _unified_truth(harness: Any) -> dict[tuple[str, str, str], dict[str, int]]:
    """Every real campaign's events counted once: an event both Constant Contact APIs give is one."""
    truth = {}
    for account in ACCOUNTS:
        eo_counts = engagement_counts(emailoctopus_events(harness.sandbox.datasets[_key(EO, account)]))
        truth.update({(EO, account, campaign): measures for campaign, measures in eo_counts.items()})
        v2 = constant_contact_v2_events(harness.sandbox.apps[_key(V2, account)].simulator)
        v3 = constant_contact_v3_events(harness.sandbox.apps[_key(V3, account)].simulator.account)
        once = engagement_counts(as_events(v2 | v3))  # the larger count of each event
        truth.update({(V3, account, campaign): measures for campaign, measures in once.items()})
    return truth


def _sandbox_summaries(harness: Any) -> dict[tuple[str, str, str], dict[str, int]]:
    """What each API's own summary says of sends, unique opens and unique clicks."""
    said = {}
    for account in ACCOUNTS:
        dataset = harness.sandbox.datasets[_key(EO, account)]
        for campaign in dataset.sent_campaigns():
            summary = eo.summary(dataset, campaign, flat=True)
            said[(EO, account, campaign.id)] = {
                "sent": summary["sent"], "unique_opens": summary["opened_unique"],
                "unique_clicks": summary["clicked_unique"],
            }
        v2 = harness.sandbox.apps[_key(V2, account)].simulator
        for campaign in v2.dataset.sent_campaigns():
            summary = v2.summary(campaign)
            said[(V2, account, cc2.campaign_id(campaign))] = {
                "sent": summary["sends"], "unique_opens": summary["opens"], "unique_clicks": summary["clicks"],
            }
        v3 = harness.sandbox.apps[_key(V3, account)].simulator.account
        for campaign in v3.dataset.sent_campaigns():
            summary = v3.summary(campaign)
            said[(V3, account, campaign.id)] = {
                "sent": summary["sends"], "unique_opens": summary["opens"], "unique_clicks": summary["clicks"],
            }
    return said


def _report_summary(harness: Any, tmp_path: Any, capsys: Any) -> dict[str, tuple[int, int, str, str]]:
    """The report's table: per provider and account, campaigns, delivered, open rate and click rate."""
    out = tmp_path / "report.html"
    assert harness.cli("report", "--out", str(out)) == 0
    capsys.readouterr()
    page = out.read_text()
    assert "campaign_engagement_unified" in page  # it says which counting it shows
    cells = r"<tr><td>([^<]+)</td><td>(\d+)</td><td>(\d+)</td><td>([^<]+)</td><td>([^<]+)</td></tr>"
    return {provider: (int(n), int(delivered), opens, clicks)
            for provider, n, delivered, opens, clicks in re.findall(cells, page)}


def _rate(count: int, base: int) -> str:
    return f"{count / base:.1%}" if base else "-"


def _assert_every_figure_agrees(harness: Any, tmp_path: Any, capsys: Any) -> None:
    per_api, unified = _view(harness, "campaign_engagement"), _view(harness, "campaign_engagement_unified")
    truth, said = _per_api_truth(harness), _sandbox_summaries(harness)

    # campaign_engagement: each API's own raw rows, the sandbox's events and its summary
    rows = harness.query("SELECT provider, account, campaign_id, contact_id, activity_type FROM contact_activity")
    by_api: dict[tuple[str, str], list] = {}
    for provider, account, campaign, contact, kind in rows:
        by_api.setdefault((provider, account), []).append((campaign, contact, kind))
    raw = {
        (provider, account, campaign): measures
        for (provider, account), events in by_api.items()
        for campaign, measures in engagement_counts(events).items()
    }
    assert set(per_api) >= {key for key, measures in raw.items() if key[0] != V2 or measures["sent"]}
    deleted = _deleted_v2_campaigns(harness)
    for key, measures in per_api.items():
        assert measures == raw.get(key, ZERO), key
        if key in deleted:
            continue
        assert measures == truth.get(key, ZERO), key
        if key in said:
            assert {m: measures[m] for m in said[key]} == said[key], key
    # every v2 campaign with loaded sends shows them, and names the v3 campaign it continues as
    v3_of = {
        (V2, account, cc2.campaign_id(campaign)): campaign.id
        for account in ACCOUNTS for campaign in harness.sandbox.datasets[_key(V2, account)].campaigns
    }
    mapped = harness.query(
        f"SELECT account, campaign_id, v3_campaign_id FROM campaign_engagement WHERE provider = '{V2}'"
    )
    assert mapped and all(v3 == v3_of[(V2, account, v2)] for account, v2, v3 in mapped)

    # campaign_engagement_unified: every real campaign once, each event once
    once = _unified_truth(harness)
    assert not [key for key in unified if key[0] == V2]  # every v2 campaign is mapped: one row, under v3
    for key, measures in unified.items():
        assert measures == once.get(key, ZERO), key
    assert {key for key, measures in once.items() if any(measures.values())} <= set(unified)

    # the report shows the unified counting, a row per provider and account; the demo the per-API one: each
    # equals its view
    report = _report_summary(harness, tmp_path, capsys)
    expected_report: dict[str, list[int]] = {}
    for (provider, account, _campaign), m in unified.items():
        totals = expected_report.setdefault(_key(provider, account), [0, 0, 0, 0])
        for index, value in enumerate((1, m["sent"] - m["bounces"], m["unique_opens"], m["unique_clicks"])):
            totals[index] += value
    assert report == {
        provider: (n, delivered, _rate(opens, delivered), _rate(clicks, delivered))
        for provider, (n, delivered, opens, clicks) in expected_report.items()
    }
    demo = engagement_lines(harness.query(ENGAGEMENT_SQL.format(table="campaign_engagement")))
    assert "campaign_engagement" in demo[0]
    shown = {line.split()[0]: line.split()[1:] for line in demo[3:]}
    for provider in (EO, V2, V3):
        mine = [m for (p, _a, _c), m in per_api.items() if p == provider]
        sent = sum(m["sent"] for m in mine)
        delivered = sent - sum(m["bounces"] for m in mine)
        opens = sum(m["unique_opens"] for m in mine)
        assert shown[provider][:4] == [str(len(mine)), str(sent), str(delivered), _rate(opens, delivered)], provider

    # status: every account's reconciliation of its own events with its summaries finds nothing
    assert harness.cli("status", "--json") == 0
    statuses = json.loads(capsys.readouterr().out)["providers"]
    assert len(statuses) == len(ACCOUNTS) * 3
    assert [status["reconciliation"] for status in statuses] == [[]] * len(statuses)


def _table_rows(harness: Any) -> dict[str, int]:
    tables = harness.query(
        "SELECT table_name FROM information_schema.tables "
        f"WHERE table_schema = '{harness.dataset}' AND table_type = 'BASE TABLE' AND table_name NOT LIKE '_dlt%'"
    )
    return {table: harness.count(table) for (table,) in tables}


# the views and figures on both destinations: on PostgreSQL without faults, on DuckDB with the transient faults,
# which the retries absorb before anything reaches a destination (so DuckDB's run reads what a run without
# them reads, and checks the same figures: a third run, DuckDB without faults, would find nothing more)
@pytest.mark.parametrize(("destination", "faults"), [("postgres", None), ("duckdb", FAULTS)],
                         ids=["postgres-no-faults", "duckdb-faults"], indirect=["destination"])
def test_every_figure_agrees_across_providers_accounts_and_both_constant_contact_apis(
    make_harness, tmp_path, capsys, faults
):
    harness = make_harness(scale="tiny", accounts={p: ["acme"] for p in (EO, V2, V3)}, faults=faults)

    assert harness.cli("run") == 0  # the first night: every account side by side
    out = capsys.readouterr().out
    assert "warning" not in out
    assert harness.count("constant_contact_campaign_xrefs") == len(
        harness.query(f"SELECT 1 FROM campaigns WHERE provider = '{V2}'")
    )  # mapped on the first night, in the same run that loaded the v2 campaigns
    _assert_every_figure_agrees(harness, tmp_path, capsys)

    before = _table_rows(harness)
    assert harness.cli("run") == 0  # no news: no row anywhere
    out = capsys.readouterr().out
    assert _table_rows(harness) == before
    assert re.findall(r"[+-]\d+ rows", out) and set(re.findall(r"[+-]\d+ rows", out)) == {"+0 rows"}
    assert "warning" not in out
    _assert_every_figure_agrees(harness, tmp_path, capsys)

    harness.sandbox.advance(hours=24)  # a later night brings news to every account
    assert harness.cli("run") == 0
    assert "warning" not in capsys.readouterr().out
    assert _table_rows(harness)["contact_activity"] > before["contact_activity"]
    _assert_every_figure_agrees(harness, tmp_path, capsys)
