"""A failure outside the report reads costs only its item (issue 15): one kind of read at a time
fails persistently in the sandbox; the run loads the rest, exits 1 naming the item, keeps the
item's cursor, and the next healthy run ends exactly where a run without the fault ends."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from conftest import harnesses
from helpers import resources_state

from sandbox import Sandbox
from sandbox.constant_contact_v2 import campaign_id as v2_campaign_id
from sandbox.constant_contact_v3 import stable_id
from sources.canonical import parse_utc

CLOCK = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
# the cases of a provider share its reference run: on one worker
pytestmark = pytest.mark.xdist_group("failure_isolation")


def _sent(sandbox: Sandbox, provider: str, n: int = -1):
    return sandbox.datasets[provider].sent_campaigns()[n]


# (provider, what fails (a path pattern, from the sandbox), what the error names, tables the fault may leave short)
FaultCase = tuple[str, Callable[[Sandbox], tuple[str, str]], tuple[str, ...]]
CASES: dict[str, FaultCase] = {
    "v2 campaign details": (
        "constant_contact_v2",
        lambda sb: (
            f"/emailmarketing/campaigns/{v2_campaign_id(_sent(sb, 'constant_contact_v2'))}$",
            f"details of campaign {v2_campaign_id(_sent(sb, 'constant_contact_v2'))}",
        ),
        ("campaigns", "contact_activity", "campaign_summaries"),
    ),
    "v2 contacts page": (
        "constant_contact_v2", lambda sb: ("/v2/contacts$", "constant_contact_v2 contacts"), ("contacts",)
    ),
    "EmailOctopus contacts of one list": (
        "emailoctopus",
        lambda sb: (
            f"/lists/{sb.datasets['emailoctopus'].lists[1]}/contacts",
            f"contacts of list {sb.datasets['emailoctopus'].lists[1]}",
        ),
        ("contacts",),
    ),
    "EmailOctopus list listing": ("emailoctopus", lambda sb: ("/lists$", "emailoctopus contacts"), ("contacts",)),
    "v3 campaign details": (
        "constant_contact_v3",
        lambda sb: (
            f"/emails/{_sent(sb, 'constant_contact_v3').id}$", f"campaign {_sent(sb, 'constant_contact_v3').id}"
        ),
        ("campaigns", "campaign_activities", "contact_activity", "campaign_non_engagement", "campaign_summaries"),
    ),
    "v3 activity details": (
        "constant_contact_v3",
        lambda sb: (
            f"/emails/activities/{stable_id(_sent(sb, 'constant_contact_v3').id, 'primary_email')}$",
            f"campaign {_sent(sb, 'constant_contact_v3').id}",
        ),
        ("campaigns", "campaign_activities", "contact_activity", "campaign_non_engagement", "campaign_summaries"),
    ),
    "v3 send history": (
        "constant_contact_v3",
        lambda sb: (
            f"/emails/activities/{stable_id(_sent(sb, 'constant_contact_v3').id, 'primary_email')}/send_history",
            f"campaign {_sent(sb, 'constant_contact_v3').id}",
        ),
        ("campaigns", "campaign_activities", "contact_activity", "campaign_non_engagement", "campaign_summaries"),
    ),
    "v3 contacts page": (
        "constant_contact_v3", lambda sb: ("/v3/contacts$", "constant_contact_v3 contacts"), ("contacts",)
    ),
    "v3 custom field names": (
        "constant_contact_v3", lambda sb: ("/contact_custom_fields", "constant_contact_v3 contacts"), ("contacts",)
    ),
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A run without faults of each provider over the CLOCK data, made once and shared by its cases:
    `reference(provider)` is (what it loaded, its listing cursors)."""
    made: dict[str, tuple[dict[str, Counter], dict[str, object]]] = {}
    with harnesses(tmp_path_factory.mktemp("reference"), "duckdb") as build:

        def of(provider: str) -> tuple[dict[str, Counter], dict[str, object]]:
            if provider not in made:
                healthy = build(scale="tiny", clock=CLOCK)
                assert healthy.cli("run", provider) == 0
                made[provider] = healthy.loaded(provider), _listing_cursors(healthy, provider)
            return made[provider]

        yield of


def _listing_cursors(harness, provider: str) -> dict[str, object]:
    resources = resources_state(harness, provider)
    return {name: state.get("listing", {}).get("cursor") for name, state in resources.items() if "listing" in state}


@pytest.mark.parametrize("case", list(CASES))
def test_a_failed_read_costs_only_its_item_and_the_next_run_heals_it(reference, make_harness, capsys, case):
    provider, fault, short_tables = CASES[case]
    expected, healthy_cursors = reference(provider)
    harness = make_harness(scale="tiny", clock=CLOCK)  # the same data as the reference's
    harness.setenv(RUNTIME__REQUEST_MAX_ATTEMPTS=2)
    pattern, named = fault(harness.sandbox)
    harness.sandbox.faults.fail_paths = pattern
    capsys.readouterr()

    assert harness.cli("run", provider) == 1
    err = capsys.readouterr().err
    assert named in err and "the next run retries them" in err, err
    partial = harness.loaded(provider)
    for table, rows in expected.items():
        if table in short_tables:  # only the failed item is missing
            assert partial.get(table, Counter()) < rows, table
        else:
            assert partial.get(table) == rows, table
    # the listing that lost an item stopped at it at the latest (a failed page: it did not move; a first
    # run has none yet), the others moved as in a healthy run: the next run lists the item again
    cursors = _listing_cursors(harness, provider)
    held = "contacts" if short_tables == ("contacts",) else "campaigns"
    assert cursors.keys() == healthy_cursors.keys()
    for name, cursor in healthy_cursors.items():
        if name == held:
            assert cursors[name] is None or parse_utc(cursors[name]) <= parse_utc(cursor), name
        else:
            assert cursors[name] == cursor, name

    harness.sandbox.faults.fail_paths = ""
    assert harness.cli("run", provider) == 0
    assert harness.loaded(provider) == expected


# (provider, what vanishes since it was listed (a path pattern), tables that may lose the item's rows)
VanishCase = tuple[str, Callable[[Sandbox], str], tuple[str, ...]]
VANISHED: dict[str, VanishCase] = {
    "EmailOctopus list": ("emailoctopus", lambda sb: f"/lists/{sb.datasets['emailoctopus'].lists[1]}/contacts", (
        "contacts",
    )),
    "v2 campaign": (
        "constant_contact_v2",
        lambda sb: f"/emailmarketing/campaigns/{v2_campaign_id(_sent(sb, 'constant_contact_v2'))}",
        ("campaigns", "contact_activity", "campaign_summaries"),
    ),
    "v3 campaign": (
        "constant_contact_v3",
        lambda sb: f"/emails/{_sent(sb, 'constant_contact_v3').id}$",
        ("campaigns", "campaign_activities", "contact_activity", "campaign_non_engagement", "campaign_summaries"),
    ),
    "v3 campaign activity": (
        "constant_contact_v3",
        lambda sb: f"/emails/activities/{stable_id(_sent(sb, 'constant_contact_v3').id, 'primary_email')}",
        ("campaigns", "campaign_activities", "contact_activity", "campaign_non_engagement", "campaign_summaries"),
    ),
}


@pytest.mark.parametrize("case", list(VANISHED))
def test_something_deleted_since_it_was_listed_is_gone_never_a_failure(reference, make_harness, capsys, case):
    provider, vanished, short_tables = VANISHED[case]
    expected, _cursors = reference(provider)
    harness = make_harness(scale="tiny", clock=CLOCK)  # the same data as the reference's
    harness.sandbox.faults.gone_paths = vanished(harness.sandbox)
    capsys.readouterr()
    assert harness.cli("run", provider) == 0, capsys.readouterr().err
    loaded = harness.loaded(provider)
    assert loaded["campaigns"].keys() != set() and loaded.keys() == expected.keys()
    for table, rows in expected.items():
        if table in short_tables:
            assert loaded[table] <= rows or table == "campaigns", table
        else:
            assert loaded[table] == rows, table
    assert any(loaded[table] < expected[table] for table in short_tables if table != "campaigns")  # it did vanish
    # a campaign that vanished is still a campaigns row (its listing row, marked as the provider marks it)
    assert sum(loaded["campaigns"].values()) == sum(expected["campaigns"].values())
