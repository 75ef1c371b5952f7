"""Erasure (issue 19): a contact deleted at the provider, or a person who asks us, is forgotten in
every table and view (staging included), for good; their events stay, so counts do not change."""

from __future__ import annotations

import json
import signal
from datetime import timedelta

import pytest
from conftest import BOTH_DESTINATIONS, POSTGRES_URL
from helpers import cli_process, dataset_held, waits_for_dataset_lock

from pipelines import erasure
from pipelines.cli import main
from pipelines.dlt_adapter import DestinationException

PROVIDERS = ("emailoctopus", "constant_contact_v2", "constant_contact_v3")
ERASURE_KEY = "test-erasure-key-5c1d9e"


def found_anywhere(harness, text: str) -> list[str]:
    """The tables and views of the dataset and its staging dataset whose rows contain `text` (any case)."""
    schemas = (harness.dataset, f"{harness.dataset}_staging")
    names = harness.query(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN "
        f"('{schemas[0]}', '{schemas[1]}')"
    )
    assert len(names) > 10  # the scan sees the dataset
    hits = []
    for schema, table in names:
        dump = json.dumps(harness.query(f'SELECT * FROM "{schema}"."{table}"'), default=str).lower()
        if text.lower() in dump:
            hits.append(f"{schema}.{table}")
    return hits


def recipient_of_closed_campaign(harness, provider: str):
    """A contact who received the oldest sent campaign (closed: its reports are never read again)."""
    dataset = harness.sandbox.datasets[provider]
    campaign = dataset.sent_campaigns()[0]
    contact_id = next(e.contact_id for e in dataset.events(campaign) if e.type == "opened")
    return dataset, dataset.contact(contact_id)


def counts(harness, provider: str) -> tuple:
    """Rows per table, and the events themselves (ids, campaigns, contacts, types): what erasure must not change."""
    loaded = harness.loaded(provider)
    return {table: sum(rows.values()) for table, rows in loaded.items()}, loaded["contact_activity"]


def reconciliation(harness, provider: str, capsys) -> list:
    capsys.readouterr()
    assert harness.cli("status", "--json") == 0
    statuses = json.loads(capsys.readouterr().out)["providers"]
    return next(status for status in statuses if status["provider"] == provider)["reconciliation"]


# each provider flags a deletion its own way (mapping) and on DuckDB; the erasure's SQL, the same for every
# provider, on PostgreSQL too with EmailOctopus (and with every provider in the forget tests below)
@pytest.mark.parametrize(("provider", "destination"), [
    ("emailoctopus", "duckdb"), ("emailoctopus", "postgres"),
    ("constant_contact_v2", "duckdb"), ("constant_contact_v3", "duckdb"),
], indirect=["destination"])
def test_a_contact_deleted_at_the_provider_is_forgotten_everywhere_and_stays_forgotten(make_harness, provider, capsys):
    harness = make_harness(scale="small")
    dataset, contact = recipient_of_closed_campaign(harness, provider)
    assert harness.cli("run", provider) == 0
    assert found_anywhere(harness, contact.email)
    before = counts(harness, provider)
    reconciled = reconciliation(harness, provider, capsys)

    contact.deleted, contact.updated_at = True, dataset.clock  # deleted at the provider
    assert harness.cli("run", provider) == 0

    assert found_anywhere(harness, contact.email) == []
    assert counts(harness, provider) == before
    assert reconciliation(harness, provider, capsys) == reconciled
    assert list(harness.pipelines_dir.rglob("completed_jobs/*")) == []  # no loaded copy left on disk
    erasures = harness.query("SELECT provider, account, contact_id, reason FROM erasures")

    def loaded_id(deleted) -> str:
        return str(deleted.number) if provider == "constant_contact_v2" else deleted.id

    contact_id = loaded_id(contact)
    # every contact deleted at the provider, once each: this one, and those deleted before the first run
    assert sorted(erasures) == sorted(
        (provider, "default", loaded_id(c), "deleted at provider") for c in dataset.contacts if c.deleted
    )
    assert harness.count("contact_activity", f"contact_id = '{contact_id}'") > 0  # the events stay

    # a backfill over the whole history reads the closed campaign again: the address does not come back
    since = (dataset.clock - timedelta(days=120)).date().isoformat()
    assert harness.cli("backfill", provider, "--since", since) == 0
    assert found_anywhere(harness, contact.email) == []
    assert counts(harness, provider) == before


@BOTH_DESTINATIONS
def test_forget_deleted_contacts_false_keeps_them(make_harness):
    harness = make_harness(scale="tiny")
    _, contact = recipient_of_closed_campaign(harness, "emailoctopus")
    harness.setenv(SOURCES__EMAILOCTOPUS__FORGET_DELETED_CONTACTS="false")
    assert harness.cli("run", "emailoctopus") == 0
    contact.deleted = True
    assert harness.cli("run", "emailoctopus") == 0
    assert harness.count("contact_activity", f"email_address = '{contact.email}'") > 0
    assert harness.query(
        "SELECT table_name FROM information_schema.tables "
        f"WHERE table_name = 'erasures' AND table_schema = '{harness.dataset}'"
    ) == []


@BOTH_DESTINATIONS
def test_forget_a_person_in_every_provider_now_and_in_later_loads(make_harness, capsys):
    harness = make_harness(scale="tiny")
    for provider in PROVIDERS:
        assert harness.cli("run", provider) == 0
    # the same person in every provider (the sandbox's providers share the data set's addresses)
    _, contact = recipient_of_closed_campaign(harness, "emailoctopus")
    address = contact.email
    assert {row[0] for row in harness.query(
        f"SELECT DISTINCT provider FROM contact_activity WHERE email_address = '{address}'"
    )} >= {"emailoctopus"}
    before = {provider: counts(harness, provider) for provider in PROVIDERS}

    assert harness.cli("forget", "--email", f"  {address.upper()} ") == 2  # the key is a required secret
    assert "CAMPAIGN_SYNC__ERASURE_KEY" in capsys.readouterr().err
    harness.setenv(CAMPAIGN_SYNC__ERASURE_KEY=ERASURE_KEY)
    assert harness.cli("forget", "--email", f"  {address.upper()} ") == 0

    assert found_anywhere(harness, address) == []
    requests = harness.query("SELECT address_hash FROM erasure_requests")
    assert len(requests) == 1 and address not in requests[0][0]
    by_request = harness.query("SELECT provider, contact_id FROM erasures WHERE reason = 'request' ORDER BY 1")
    same_person = {p: next(c for c in harness.sandbox.datasets[p].contacts if c.email == address) for p in PROVIDERS}
    assert by_request == sorted(
        (p, str(c.number) if p == "constant_contact_v2" else c.id) for p, c in same_person.items()
    )
    for provider in PROVIDERS:
        assert counts(harness, provider) == before[provider]

    # later loads and backfills drop the person's fields, even where the provider still has them
    since = (harness.sandbox.datasets["emailoctopus"].clock - timedelta(days=120)).date().isoformat()
    for provider in PROVIDERS:
        assert harness.cli("backfill", provider, "--since", since) == 0
        assert harness.cli("run", provider) == 0
    assert found_anywhere(harness, address) == []
    for provider in PROVIDERS:
        assert counts(harness, provider) == before[provider]
    # a run without the key cannot honour the requests on record: it refuses, naming the setting
    harness.monkeypatch.delenv("CAMPAIGN_SYNC__ERASURE_KEY")
    assert harness.cli("run", "emailoctopus") == 2


@BOTH_DESTINATIONS
def test_a_deleted_contact_is_erased_a_hidden_deletion_by_a_backfill_and_a_restored_contact_loads_again(
    make_harness,
):
    harness = make_harness(scale="tiny")
    provider = "constant_contact_v3"
    dataset, contact = recipient_of_closed_campaign(harness, provider)
    contact.deleted, contact.updated_at = True, dataset.clock
    assert harness.cli("run", provider) == 0
    assert found_anywhere(harness, contact.email) == []
    # data that comes back after the erasure (a load package read before it): tests/test_local_work.py

    # a deletion the contacts listing does not show (its time unchanged) is found by a backfill
    other = next(c for c in dataset.contacts if not c.deleted and c.id != contact.id)
    other.deleted = True
    assert harness.cli("run", provider) == 0
    assert found_anywhere(harness, other.email)
    since = (dataset.clock - timedelta(days=120)).date().isoformat()
    assert harness.cli("backfill", provider, "--since", since) == 0
    assert found_anywhere(harness, other.email) == []

    # restored at the provider: the contact loads with its data again, and is no longer forgotten
    contact.deleted, contact.updated_at = False, dataset.clock + timedelta(minutes=1)
    harness.sandbox.advance(hours=1)
    assert harness.cli("run", provider) == 0
    assert harness.query(f"SELECT email_address, deleted FROM contacts WHERE contact_id = '{contact.id}'") == [
        (contact.email, False)
    ]


@BOTH_DESTINATIONS
@pytest.mark.parametrize("folders", ["one folder", "a new folder each run"])
def test_what_follows_a_load_that_failed_is_made_by_the_next_run_for_everyone(
    make_harness, monkeypatch, capsys, tmp_path, folders
):
    # the erasure after a load looks at the people forgotten since the run's reads began: those forgotten
    # before were erased then. A run whose erasure failed after its load (here: as DuckDB out of memory
    # failed, seen at a 16MB limit) recorded the deleted contact but erased nothing; the runs after it took
    # the contact as erased, and its address stayed in the tables for good. What is owed is kept in the
    # dataset, so it holds where each run has a new pipelines folder (as the Airflow DAG's tasks have)
    harness = make_harness(scale="tiny")
    provider = "constant_contact_v3"
    dataset, contact = recipient_of_closed_campaign(harness, provider)
    runs = iter(range(3))

    def run() -> int:
        argv = harness.argv("run", provider)
        if folders != "one folder":
            argv += ["--pipelines-dir", str(tmp_path / f"pipelines-{next(runs)}")]
        return main(argv)

    assert run() == 0
    assert found_anywhere(harness, contact.email)
    before = counts(harness, provider)

    def out_of_memory(*_args, **_kwargs):
        raise DestinationException("Out of Memory Error: could not allocate block of size 256.0 KiB")

    contact.deleted, contact.updated_at = True, dataset.clock  # deleted at the provider
    with monkeypatch.context() as fault:
        fault.setattr(erasure, "_erase_forgotten", out_of_memory)
        capsys.readouterr()
        assert run() == 1
    error = capsys.readouterr().err
    assert "the load ended, but what follows it (erasure, views, reconciliation) failed" in error, error
    assert "Out of Memory Error" in error and "the next run makes it again" in error
    assert "unexpected error" not in error
    assert harness.query(f"SELECT count(*) FROM erasures WHERE contact_id = '{contact.id}'") == [(1,)]
    assert found_anywhere(harness, contact.email)  # recorded, not erased
    # owed since before the load, with the run's package: rows a kill in the load put twice are dropped next
    (newest_load,) = harness.query("SELECT max(load_id) FROM _dlt_loads")[0]
    assert harness.query("SELECT provider, account, load_ids FROM after_load_owed") == [
        (provider, "default", f'["{newest_load}"]')
    ]

    assert run() == 0
    assert found_anywhere(harness, contact.email) == []
    assert counts(harness, provider) == before
    assert harness.count("after_load_owed") == 0  # the run after it looks at what it loads


@BOTH_DESTINATIONS
def test_a_forget_that_fails_forgets_nothing_and_says_to_run_it_again(harness, monkeypatch, capsys):
    # `forget` records the request, then erases: a request recorded is taken as done by every later run,
    # so one whose erasure failed (a lost connection) left the address in the tables for good
    harness.setenv(CAMPAIGN_SYNC__ERASURE_KEY=ERASURE_KEY)
    provider = "emailoctopus"
    _dataset, contact = recipient_of_closed_campaign(harness, provider)
    assert harness.cli("run", provider) == 0
    before = counts(harness, provider)

    def connection_lost(*_args, **_kwargs):
        raise DestinationException("server closed the connection unexpectedly")

    with monkeypatch.context() as fault:
        fault.setattr(erasure, "_erase_forgotten", connection_lost)
        capsys.readouterr()
        assert harness.cli("forget", "--email", contact.email) == 1
    error = capsys.readouterr().err
    assert error == (
        "campaign-sync: forget failed: server closed the connection unexpectedly; nothing was forgotten: "
        "run it again\n"
    ), error
    assert harness.count("erasure_requests") == harness.count("erasures") - sum(
        c.deleted for c in harness.sandbox.datasets[provider].contacts
    ) == 0  # none recorded: the run before it erased only the contacts deleted at the provider
    assert found_anywhere(harness, contact.email)

    assert harness.cli("forget", "--email", contact.email) == 0
    assert found_anywhere(harness, contact.email) == []
    assert harness.cli("run", provider) == 0
    assert found_anywhere(harness, contact.email) == []
    assert counts(harness, provider) == before


@pytest.mark.parametrize("destination", ["postgres"], indirect=True)
def test_forget_waits_while_another_process_loads_into_the_dataset(harness):
    # forget's one transaction held row locks on the staging tables that another process' load empties
    # (TRUNCATE): that load, holding the dataset, waited on forget. forget takes the dataset's lock first
    harness.setenv(CAMPAIGN_SYNC__ERASURE_KEY=ERASURE_KEY)
    _dataset, contact = recipient_of_closed_campaign(harness, "emailoctopus")
    assert harness.cli("run", "emailoctopus") == 0
    with dataset_held(harness.dataset, POSTGRES_URL) as cursor:
        # Ctrl-C while it waits stops it at once (it waited in the server, deaf to signals, for the other)
        forget = cli_process(harness, "forget", "--email", contact.email)
        try:
            assert waits_for_dataset_lock(cursor, harness.dataset, forget) == 1, forget.communicate()
            forget.send_signal(signal.SIGINT)
            _out, err = forget.communicate(timeout=10)
        finally:
            forget.kill()
        assert forget.returncode == 130 and err.splitlines() == [
            "campaign-sync: interrupted; an erasure stopped before its end is undone in full: run it again"
        ], err
        forget = cli_process(harness, "forget", "--email", contact.email)
        assert waits_for_dataset_lock(cursor, harness.dataset, forget) == 1, forget.communicate()
        assert found_anywhere(harness, contact.email)  # nothing erased while the other holds the dataset
    _out, err = forget.communicate(timeout=120)
    assert forget.returncode == 0, err
    assert found_anywhere(harness, contact.email) == []


@BOTH_DESTINATIONS
@pytest.mark.parametrize("wrong", ["not-an-email", "", "  ", "two words@example.org"])
def test_forget_refuses_what_is_not_an_address_and_touches_nothing(harness, capsys, wrong):
    harness.setenv(CAMPAIGN_SYNC__ERASURE_KEY=ERASURE_KEY)
    assert harness.cli("forget", "--email", "someone@example.org", "--email", wrong) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not an email address" in err[0], err
    assert not harness.duckdb_path.exists() or harness.destination == "postgres"
    if harness.destination == "postgres":
        assert harness.query(
            f"SELECT count(*) FROM information_schema.schemata WHERE schema_name = '{harness.dataset}'"
        ) == [(0,)]


@BOTH_DESTINATIONS
def test_forget_an_address_no_contact_has_says_so(harness, capsys):
    assert harness.cli("run", "emailoctopus") == 0
    harness.setenv(CAMPAIGN_SYNC__ERASURE_KEY=ERASURE_KEY)
    capsys.readouterr()
    assert harness.cli("forget", "--email", "nobody-here@example.org") == 0
    out = capsys.readouterr().out
    assert "forgot 1 address(es): no loaded contact has it;" in out and "no provider yet" not in out
    assert harness.count("erasure_requests") == 1
    assert not (harness.pipelines_dir / "campaign_sync").exists()  # forget makes no pipeline of its own


@BOTH_DESTINATIONS
def test_another_erasure_key_than_the_requests_were_made_with_is_refused(harness, capsys):
    harness.setenv(CAMPAIGN_SYNC__ERASURE_KEY=ERASURE_KEY)
    assert harness.cli("run", "emailoctopus") == 0
    address = harness.sandbox.datasets["emailoctopus"].contacts[0].email
    assert harness.cli("forget", "--email", address) == 0
    harness.setenv(CAMPAIGN_SYNC__ERASURE_KEY="another-key-entirely-93b1")
    capsys.readouterr()
    for command in (("run", "emailoctopus"), ("forget", "--email", "someone-else@example.org")):
        assert harness.cli(*command) == 2, command
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "CAMPAIGN_SYNC__ERASURE_KEY is not the key" in err[0], (command, err)
    assert harness.count("erasure_requests") == 1
    harness.setenv(CAMPAIGN_SYNC__ERASURE_KEY=ERASURE_KEY)  # the right key again: runs go on
    assert harness.cli("run", "emailoctopus") == 0
    assert found_anywhere(harness, address) == []
