"""The local work after a load follows what the load changed: the reconciliation compares the campaigns
whose events or summaries it changed (`status` compares every one), the views are made again only when
their statements change, and the erasure looks only for the people forgotten since the run's reads
began, unless the run loaded a package an earlier run read (then for everyone)."""

from __future__ import annotations

import json
import re

from conftest import BOTH_DESTINATIONS
from helpers import open_campaigns

# what these tests check depends on the destination's SQL: they run on DuckDB and PostgreSQL
pytestmark = BOTH_DESTINATIONS

PROVIDER = "emailoctopus"
ERASURE_KEY = "test-erasure-key-local-work"


def view_id(harness, view: str) -> int:
    """The catalog id of a view: a view made again gets a new one."""
    if harness.destination == "postgres":
        sql = ("SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
               f"WHERE n.nspname = '{harness.dataset}' AND c.relname = '{view}'")
    else:
        sql = f"SELECT view_oid FROM duckdb_views() WHERE schema_name = '{harness.dataset}' AND view_name = '{view}'"
    [(found,)] = harness.query(sql)
    return int(found)


def warnings_of(out: str) -> list[str]:
    return [line for line in out.splitlines() if ": warning: " in line]


def test_a_run_compares_the_campaigns_its_load_changed_and_leaves_the_views_alone(harness, capsys):
    dataset = harness.sandbox.datasets[PROVIDER]
    assert harness.cli("run", PROVIDER) == 0
    views = {view: view_id(harness, view) for view in ("campaign_engagement", "contact_activity_unified")}
    # rows lost by hand: three sends of the newest campaign (open), three of the oldest (closed)
    newest, oldest = dataset.sent_campaigns()[-1], dataset.sent_campaigns()[0]
    assert newest.id in open_campaigns(dataset) and oldest.id not in open_campaigns(dataset)
    for campaign in (newest, oldest):
        harness.execute(
            f"DELETE FROM contact_activity WHERE campaign_id = '{campaign.id}' AND activity_type = 'sent' "
            f"AND contact_id IN (SELECT contact_id FROM contact_activity WHERE campaign_id = '{campaign.id}' "
            "AND activity_type = 'sent' ORDER BY contact_id LIMIT 3)"
        )
    capsys.readouterr()

    # a rerun with no news changes no campaign: nothing to compare, the views stay as they are
    assert harness.cli("run", PROVIDER) == 0
    assert warnings_of(capsys.readouterr().out) == []
    assert {view: view_id(harness, view) for view in views} == views
    # status compares every campaign
    assert harness.cli("status", "--json") == 0
    status = next(p for p in json.loads(capsys.readouterr().out)["providers"] if p["provider"] == PROVIDER)
    differences = {(d["campaign_id"], d["measure"], d["reported"] - d["loaded"]) for d in status["reconciliation"]}
    assert differences == {(newest.id, "sent", 3), (oldest.id, "sent", 3)}

    # a night with news for the newest campaign compares it (its lost sends are not read again), not the oldest
    harness.sandbox.advance(hours=24)
    assert harness.cli("run", PROVIDER) == 0
    sent = len(dataset.events(newest, "sent"))
    assert warnings_of(capsys.readouterr().out) == [
        f"{PROVIDER}: warning: campaign {newest.id} ({newest.name}): sent loaded {sent - 3}, provider reports {sent} "
        f"({-3 / sent:+.1%})"
    ]
    assert {view: view_id(harness, view) for view in views} == views


def break_staging(harness, table: str) -> None:
    """Make every load of `table` fail at its first step, into the staging table (the rows stay in the
    package's files): the staging table hides behind a view nothing can be written into."""
    staging = f'"{harness.dataset}_staging"'
    harness.execute(f"ALTER TABLE {staging}.{table} RENAME TO {table}_hidden")
    harness.execute(f"CREATE VIEW {staging}.{table} AS SELECT * FROM {staging}.{table}_hidden "
                    f"UNION ALL SELECT * FROM {staging}.{table}_hidden WHERE false")


def repair_staging(harness, table: str) -> None:
    staging = f'"{harness.dataset}_staging"'
    harness.execute(f"DROP VIEW {staging}.{table}")
    harness.execute(f"ALTER TABLE {staging}.{table}_hidden RENAME TO {table}")


def holding(harness, address: str) -> list[str]:
    """The tables of the dataset and its staging dataset with a row that holds `address`."""
    schemas = (harness.dataset, f"{harness.dataset}_staging")
    tables = harness.query(
        "SELECT c.table_schema, c.table_name FROM information_schema.columns c JOIN information_schema.tables t "
        "ON t.table_schema = c.table_schema AND t.table_name = c.table_name WHERE t.table_type = 'BASE TABLE' "
        f"AND c.column_name = 'email_address' AND c.table_schema IN ('{schemas[0]}', '{schemas[1]}')"
    )
    return sorted(f"{schema}.{table}" for schema, table in tables if harness.query(
        f"SELECT count(*) FROM \"{schema}\".\"{table}\" WHERE lower(email_address) = '{address.lower()}'"
    )[0][0])


def test_a_package_read_before_an_erasure_is_erased_when_a_later_run_loads_it(harness, capsys):
    harness.setenv(CAMPAIGN_SYNC__ERASURE_KEY=ERASURE_KEY)
    dataset = harness.sandbox.datasets[PROVIDER]
    assert harness.cli("run", PROVIDER) == 0
    day_1 = dataset.clock
    harness.sandbox.advance(hours=24)
    # someone with an event of day 2, which the failing load's package holds with their address
    event = next(e for c in dataset.sent_campaigns() for e in dataset.events(c, "opened") if e.at > day_1)
    person = dataset.contact(event.contact_id)
    break_staging(harness, "contact_activity")
    assert harness.cli("run", PROVIDER) == 1  # its package stays pending
    assert harness.cli("forget", "--email", person.email) == 0
    assert holding(harness, person.email) == []
    repair_staging(harness, "contact_activity")
    capsys.readouterr()

    # the package loads their day-2 events with the address again (the reads that follow leave those out
    # as loaded); the run's erasure looks at everyone, so it is gone again
    assert harness.cli("run", PROVIDER) == 0
    assert harness.query(f"SELECT count(*) FROM contact_activity WHERE contact_id = '{person.id}' "
                         f"AND occurred_at > '{day_1.isoformat()}'")[0][0] > 0
    assert holding(harness, person.email) == []


def contacts_passed_on(out: str) -> int:
    """The contacts a run passed on to dlt, as its line says (none: no `contacts N read`)."""
    found = re.search(rf"^{PROVIDER}: .*\bcontacts (\d+) read", out, re.MULTILINE)
    return int(found.group(1)) if found else 0


def test_a_run_passes_on_only_the_contacts_not_loaded_as_they_are_listed(harness, capsys):
    """EmailOctopus lists every contact every run: those the table holds as they are listed (their digest)
    are not normalized and merged again, a changed one is, and the table stays what a full load gives."""
    dataset = harness.sandbox.datasets[PROVIDER]
    assert harness.cli("run", PROVIDER) == 0
    assert contacts_passed_on(capsys.readouterr().out) == len(dataset.contacts)
    # the contacts deleted at the provider were erased after that load (their digests too): the next run
    # loads them once more, as it scrubs them, and nothing of theirs comes back
    deleted = [c for c in dataset.contacts if c.deleted]
    assert deleted
    assert harness.cli("run", PROVIDER) == 0
    assert contacts_passed_on(capsys.readouterr().out) == len(deleted)
    assert harness.count("contacts", "deleted AND (email_address IS NOT NULL OR row_digest IS NULL)") == 0

    # a rerun with no news passes on no contact: no row is merged again
    loaded = harness.query("SELECT contact_id, _dlt_load_id, row_digest FROM contacts ORDER BY contact_id")
    assert len(loaded) == len(dataset.contacts)
    assert harness.cli("run", PROVIDER) == 0
    assert contacts_passed_on(capsys.readouterr().out) == 0
    assert harness.query("SELECT contact_id, _dlt_load_id, row_digest FROM contacts ORDER BY contact_id") == loaded

    # changed at the provider (a tag, a custom field; a status): exactly those two are passed on and merged
    tagged, unsubscribed = [c for c in dataset.contacts if not c.deleted and c.status == "SUBSCRIBED"][:2]
    tagged.tags = [*tagged.tags, "vip"]
    tagged.fields = {**tagged.fields, "City": "Reykjavik"}
    unsubscribed.status = "UNSUBSCRIBED"
    assert harness.cli("run", PROVIDER) == 0
    assert contacts_passed_on(capsys.readouterr().out) == 2
    after = harness.query("SELECT contact_id, _dlt_load_id, row_digest FROM contacts ORDER BY contact_id")
    assert {row[0] for row in set(after) - set(loaded)} == {tagged.id, unsubscribed.id}
    assert harness.query(f"SELECT custom_fields__city FROM contacts WHERE contact_id = '{tagged.id}'") == [
        ("Reykjavik",)
    ]
    assert sorted(row[0] for row in harness.query(
        "SELECT t.value FROM contacts c JOIN contacts__tags t ON t._dlt_parent_id = c._dlt_id "
        f"WHERE c.contact_id = '{tagged.id}'"
    )) == sorted(tagged.tags)
    statuses = dict(harness.query("SELECT contact_id, status FROM contacts WHERE NOT deleted"))
    assert statuses == {c.id: c.status for c in dataset.contacts if not c.deleted}
