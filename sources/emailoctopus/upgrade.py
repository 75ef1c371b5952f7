"""What an EmailOctopus account loaded through API 1.6 keeps under this release: its clicks' ids, given
in place the ids this release computes (`upgrade_click_ids`), and, through v2, its links and bounce
types (`keep_loaded_details`).

Releases before API v2 had the clicked link in a click's `activity_id`; since, EmailOctopus ids leave
it out (`ReportRead.link_in_identity`), so that 1.6 and v2, which has no link, find the same ids. A click
those releases loaded, read again under its new id, would be loaded twice. And v2's report rows have
neither the link of a click nor the type of a bounce: merged over the row 1.6 loaded, one would erase them.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc

from sources.canonical import CONTACT_ACTIVITY, OWNER_FILTER, ReportRead, SyncOutcome, to_arrow, with_activity_ids
from sources.emailoctopus.client import NAME

log = logging.getLogger("campaign_sync")

# (old id, new id) pairs per UPDATE statement
_BATCH = 500
_CLICKS = f"{OWNER_FILTER} AND activity_type = 'clicked'"
_COLUMNS = "activity_id, campaign_id, campaign_activity_id, contact_id, occurred_at, url"
# what 1.6 gives of an event and v2 does not: the link of a click, the type of a bounce
_DETAILS = ("url", "bounce_type")


def click_ids_stale(client: Any, account: str) -> bool:
    """Whether the account's loaded clicks still hold ids an earlier release computed (with the link):
    one click with a link, and the clicks of its (contact, time), tell (`upgrade_click_ids`)."""
    table = client.make_qualified_table_name(CONTACT_ACTIVITY["name"])
    if "url" not in _loaded_columns(client):  # no click with a link loaded: nothing to change
        return False
    one = client.execute_sql(f"SELECT {_COLUMNS} FROM {table} WHERE {_CLICKS} AND url IS NOT NULL LIMIT 1",
                             NAME, account)
    if not one:
        return False
    _id, campaign_id, campaign_activity_id, contact_id, occurred_at, _url = one[0]
    alike = client.execute_sql(
        f"SELECT {_COLUMNS} FROM {table} WHERE {_CLICKS} AND campaign_id = %s AND campaign_activity_id IS NOT "
        "DISTINCT FROM %s AND contact_id IS NOT DISTINCT FROM %s AND occurred_at IS NOT DISTINCT FROM %s",
        NAME, account, campaign_id, campaign_activity_id, contact_id, occurred_at,
    )
    return bool(_renamed(alike, account))


def upgrade_click_ids(client: Any, account: str) -> int:
    """Give the account's loaded clicks that have a link the ids this release computes for them; returns
    how many changed. `client`: a dlt sql client of the dataset, before a load of the account.

    The new id is `with_activity_ids`' without the link: of the click's (contact, time) in its campaign,
    with an occurrence number among that campaign's clicks of the same (contact, time). Those clicks are
    interchangeable: a click whose id is one of their new ids keeps it, the others take the ones left, in
    the order of their links. All of them change in one transaction, so a dataset holds old ids only until
    its first run of this release: one click with a link tells whether there is anything to do (a run
    that finds it upgraded reads one click and its like, no more).
    """
    if not click_ids_stale(client, account):
        return 0
    table = client.make_qualified_table_name(CONTACT_ACTIVITY["name"])
    renamed = _renamed(client.execute_sql(f"SELECT {_COLUMNS} FROM {table} WHERE {_CLICKS}", NAME, account), account)
    with client.begin_transaction():
        for start in range(0, len(renamed), _BATCH):
            batch = renamed[start:start + _BATCH]
            values = ", ".join(["(%s, %s)"] * len(batch))
            client.execute_sql(
                f"UPDATE {table} AS loaded SET activity_id = renamed.new_id FROM (VALUES {values}) AS "
                "renamed(old_id, new_id) WHERE loaded.activity_id = renamed.old_id AND loaded.provider = %s "
                "AND loaded.account = %s",
                *(value for pair in batch for value in pair), NAME, account,
            )
    log.info("%s (%s): %d loaded click(s) given ids without their link", NAME, account, len(renamed))
    return len(renamed)


def _renamed(rows: list[tuple[Any, ...]], account: str) -> list[tuple[str, str]]:
    """(old id, new id) of the clicks in `rows` (`_COLUMNS`) whose id is not one this release computes."""
    campaigns: dict[tuple[str, str | None], list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        campaigns[(row[1], row[2])].append(row)
    renamed = []
    for (campaign_id, campaign_activity_id), clicks in campaigns.items():
        new_ids = _new_ids(clicks, account, campaign_id, campaign_activity_id)
        alike: dict[tuple[str | None, datetime | None], list[tuple[tuple[Any, ...], str]]] = defaultdict(list)
        for click, new_id in zip(clicks, new_ids, strict=True):
            alike[(click[3], click[4])].append((click, new_id))
        for group in alike.values():
            ids = {new_id for _click, new_id in group}
            held = {click[0] for click, _new_id in group}
            free = sorted(ids - held)
            stale = sorted((click for click, _new_id in group if click[0] not in ids and click[5] is not None),
                           key=lambda click: (click[5], click[0]))
            renamed += [(click[0], new_id) for click, new_id in zip(stale, free, strict=False)]
    return renamed


def _new_ids(
    clicks: list[tuple[Any, ...]], account: str, campaign_id: str, campaign_activity_id: str | None
) -> list[str]:
    """The ids `with_activity_ids` gives these clicks of one campaign, read in this order."""
    read = ReportRead(
        campaign_id=campaign_id, report="clicked", sent_at=None, pages=lambda _since: (), to_rows=lambda _page: [],
        campaign_activity_id=campaign_activity_id, link_in_identity=False,
    )
    page = to_arrow(
        [{"activity_type": "clicked", "contact_id": click[3], "occurred_at": click[4]} for click in clicks],
        CONTACT_ACTIVITY,
    )
    return list(with_activity_ids(page, read, NAME, account, Counter())["activity_id"].to_pylist())


def keep_loaded_details(outcome: SyncOutcome, account: str) -> Callable[[Any], Any]:
    """A map of the `contact_activity` tables read through v2 that leaves out each event loaded already
    with a link or a bounce type (by 1.6), which v2's row, without them, would replace: the loaded row is
    the same event with more of it. Each campaign's ids loaded so are looked up in the pipeline's dataset
    once, as its first events come; the events left out count as read again (`outcome.rows_skipped`)."""
    loaded: dict[str, set[str]] = {}

    def leave_out_loaded(table: Any) -> Any:
        if not isinstance(table, pa.Table) or not table.num_rows:
            return table
        campaigns = set(pc.unique(table["campaign_id"]).to_pylist())
        if campaigns - loaded.keys():
            loaded.update(_loaded_with_details(sorted(campaigns - loaded.keys()), account))
        known = set().union(*(loaded[campaign] for campaign in campaigns))
        if not known:
            return table
        kept = table.filter(pc.invert(pc.is_in(table["activity_id"], value_set=pa.array(known, pa.string()))))
        outcome.rows_skipped += table.num_rows - kept.num_rows
        return kept

    return leave_out_loaded


def _loaded_with_details(campaigns: list[str], account: str) -> dict[str, set[str]]:
    """By campaign: the ids of the account's events loaded with a link or a bounce type."""
    found: dict[str, set[str]] = {campaign: set() for campaign in campaigns}
    with dlt.current.pipeline().sql_client() as client:
        details = [column for column in _DETAILS if column in _loaded_columns(client)]
        if not details:
            return found
        table = client.make_qualified_table_name(CONTACT_ACTIVITY["name"])
        having = " OR ".join(f"{column} IS NOT NULL" for column in details)
        rows = client.execute_sql(
            f"SELECT campaign_id, activity_id FROM {table} WHERE {OWNER_FILTER} AND campaign_id IN "
            f"({', '.join(['%s'] * len(campaigns))}) AND ({having})",
            NAME, account, *campaigns,
        )
    for campaign_id, activity_id in rows or ():
        found[campaign_id].add(activity_id)
    return found


def _loaded_columns(client: Any) -> set[str]:
    """The columns of the dataset's `contact_activity` (none before its first load)."""
    rows = client.execute_sql(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
        client.dataset_name, CONTACT_ACTIVITY["name"],
    )
    return {row[0] for row in rows or ()}
