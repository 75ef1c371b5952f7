"""One Constant Contact account through both APIs (issue 18), on real DuckDB and PostgreSQL.

The sandbox serves the same account to v2 and v3, as Constant Contact does. The v3 run asks
`emails/campaign_id_xrefs` once for each v2 campaign loaded and not mapped yet (50 ids a call),
and `contact_activity_unified` counts an event both APIs delivered once.
"""

from __future__ import annotations

import json
from collections import Counter

from conftest import BOTH_DESTINATIONS

from sandbox import constant_contact_v2 as cc2
from sandbox.constant_contact_v3 import to_minute

# what these tests check depends on the destination's SQL: they run on DuckDB and PostgreSQL
pytestmark = BOTH_DESTINATIONS

V2, V3 = "constant_contact_v2", "constant_contact_v3"
XREF_CALLS = f"{V3} GET /v3/emails/campaign_id_xrefs"


def v2_truth(harness) -> Counter:
    """(v3 campaign, v3 contact, type, minute) of each event v2 delivers now (a campaign deleted before
    it was read is not listed with its events), with multiplicity."""
    v2 = harness.sandbox.apps[V2].simulator
    kinds = {kind for kind, _word, _date in cc2.TRACKING.values()}
    return Counter(
        (campaign.id, event.contact_id, event.type, to_minute(event.at).replace(tzinfo=None))
        for campaign in v2.dataset.sent_campaigns() if not v2.is_deleted(campaign)
        for event in v2.dataset.events(campaign) if event.type in kinds
    )


def v3_truth(harness) -> Counter:
    """The same keys for each event v3 delivers now (resends included)."""
    account = harness.sandbox.apps[V3].simulator.account
    return Counter(
        (campaign.id, event.contact_id, event.type, to_minute(event.at).replace(tzinfo=None))
        for campaign in account.dataset.campaigns
        for activity in account.tracked(campaign)
        for event in account.events(activity)
    )


def unified(harness) -> Counter:
    """The account's Constant Contact events as `contact_activity_unified` counts them."""
    return Counter(harness.query(
        "SELECT campaign_id, contact_id, activity_type, date_trunc('minute', occurred_at AT TIME ZONE 'UTC') "
        f"FROM contact_activity_unified WHERE provider IN ('{V2}', '{V3}')"
    ))


def _planned_lookups(harness, capsys) -> int:
    capsys.readouterr()
    assert harness.cli("plan", V3, "--json") == 0
    (estimate,) = json.loads(capsys.readouterr().out)
    return estimate["lookups"]


def test_both_apis_loaded_count_each_event_once_and_campaigns_are_looked_up_once(harness, capsys):
    dataset = harness.sandbox.datasets[V2]
    assert harness.sandbox.datasets[V3] is dataset  # one account
    lookups_before_v2 = _planned_lookups(harness, capsys)
    assert harness.cli("run", V2) == 0
    assert _planned_lookups(harness, capsys) == lookups_before_v2 + 1  # the plan counts the one xref call
    assert harness.cli("run", V3) == 0

    v2_campaigns = [row[0] for row in harness.query(f"SELECT campaign_id FROM campaigns WHERE provider = '{V2}'")]
    assert harness.sandbox.paths[XREF_CALLS] == -(-len(v2_campaigns) // 50) == 1
    v3_of = {cc2.campaign_id(campaign): campaign.id for campaign in dataset.campaigns}
    account = harness.sandbox.apps[V3].simulator.account
    primary_of = {campaign.id: next(a.id for a in account.activities(campaign) if a.role == "primary_email")
                  for campaign in dataset.campaigns}
    xrefs = "SELECT v2_id, v3_id, v3_campaign_activity_id FROM constant_contact_id_xrefs WHERE kind = 'campaign'"
    assert set(harness.query(xrefs)) == {
        (v2_id, v3_of[v2_id], primary_of[v3_of[v2_id]]) for v2_id in v2_campaigns
    }
    v2_rows, v3_rows = (harness.count("contact_activity", f"provider = '{p}'") for p in (V2, V3))
    assert unified(harness) == v2_truth(harness) | v3_truth(harness)  # the larger count of each event
    assert sum(unified(harness).values()) < v2_rows + v3_rows

    harness.sandbox.reset_counts()
    assert harness.cli("run", V3) == 0
    assert harness.sandbox.paths[XREF_CALLS] == 0  # every v2 campaign is mapped: not asked again


def test_v2_history_then_v3_from_a_later_day_join_without_gaps_or_doubles(harness):
    assert harness.cli("run", V2) == 0
    history = v2_truth(harness)
    harness.sandbox.advance(hours=24)  # v2 is switched off; v3 is configured a day later
    assert harness.cli("run", V3) == 0

    new = v3_truth(harness)
    assert unified(harness) == history | new
    assert +(new - history)  # the day's news came through v3 only
    assert sum(unified(harness).values()) < sum(history.values()) + sum(new.values())  # the overlap once
