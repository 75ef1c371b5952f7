"""A broken or hostile provider never wedges a run: values no database stores, ids that are no ids,
ids that would leave the API's path, endless paging, huge waits and terminal-steering text, each
served by a small EmailOctopus of the test's own on 127.0.0.1, through the command line, on DuckDB
and PostgreSQL."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import BOTH_DESTINATIONS
from helpers import resources_state, serving

from sources import http

PROVIDER = "emailoctopus"
API = "/api/1.6"
SENT = "2026-11-02T10:00:00+00:00"
# an answer: status, headers, and the JSON body (any value) or the body's own bytes
Answer = tuple[int, dict[str, str], Any]


@dataclass
class FakeOctopus:
    """An EmailOctopus 1.6 whose answers the test writes: `routes[path]` answers a GET of `API + path`
    (a function of the query, or a fixed body); anything else is the API's own 404. Every request's
    raw path is kept in `seen`."""

    routes: dict[str, Callable[[dict[str, list[str]]], Answer] | Any] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)

    def listing(self, path: str, rows: list[Any]) -> None:
        """`path` answers one page holding `rows`."""
        self.routes[path] = {"data": rows, "paging": {"next": None, "previous": None}}

    def answer(self, raw_path: str) -> Answer:
        self.seen.append(raw_path)
        parts = urlsplit(raw_path)
        route = self.routes.get(parts.path.removeprefix(API)) if parts.path.startswith(API) else None
        if route is None:
            return 404, {}, {"error": {"code": "NOT_FOUND", "message": "Not found."}}
        return route(parse_qs(parts.query)) if callable(route) else (200, {}, route)


@pytest.fixture
def fake(make_harness) -> Iterator[tuple[Any, FakeOctopus]]:
    """A harness (destination, pipelines folder) whose EmailOctopus is a `FakeOctopus`."""
    harness = make_harness(scale="tiny")
    octopus = FakeOctopus()

    def answer(_method: str, path: str, _sent: bytes) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = octopus.answer(path)
        return status, headers, body if isinstance(body, bytes) else json.dumps(body).encode()  # \u escapes kept

    with serving(answer) as url:
        harness.setenv(SOURCES__EMAILOCTOPUS__BASE_URL=f"{url}{API}")
        yield harness, octopus


def campaign(campaign_id: Any, name: str = "Spring sale") -> dict[str, Any]:
    return {
        "id": campaign_id, "status": "SENT", "name": name, "subject": "Hello", "to": ["L1"],
        "from": {"name": "Shop", "email_address": "shop@example.org"}, "created_at": SENT, "sent_at": SENT,
    }


def contact(contact_id: Any, email: str) -> dict[str, Any]:
    return {"id": contact_id, "email_address": email, "fields": {}, "tags": [], "status": "SUBSCRIBED",
            "created_at": SENT, "last_updated_at": SENT}


def opened(contact_id: Any, email: str, minute: int) -> dict[str, Any]:
    return {"contact": contact(contact_id, email), "occurred_at": f"2026-11-02T11:{minute:02d}:00+00:00"}


@BOTH_DESTINATIONS
def test_a_nul_a_lone_surrogate_and_an_object_id_load_everything_else_and_are_named(fake, capsys):
    harness, octopus = fake
    octopus.listing("/campaigns", [campaign("c1", "Spring\ud800 sale"), campaign("c2"), campaign({"x": 1})])
    octopus.listing("/lists", [{"id": "L1", "name": "List"}])
    octopus.listing("/lists/L1/contacts", [
        contact("k1", "a\u0000b@x.org"), contact(["k2"], "list@x.org"), contact("k3", "\udfff@x.org"),
        contact("k4", "d@x.org"),
    ])
    octopus.listing("/campaigns/c1/reports/opened", [
        opened("k1", "a\u0000b@x.org", 1), opened({"y": 2}, "object@x.org", 2), opened("k4", "d@x.org", 3),
    ])
    assert harness.cli("run", PROVIDER) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert (f"{PROVIDER}: warning: 4 value(s) held a NUL or a lone surrogate, which no database stores, and "
            "load with U+FFFD in its place (email_address 3, name 1)") in out, out
    assert (f"{PROVIDER}: warning: 3 item(s) set aside, the rest loads: {PROVIDER} campaign id {{\"x\": 1}} is not an "
            "id (and 2 more)") in out, out
    assert harness.cli("run", PROVIDER) == 0, capsys.readouterr().err  # and every later run (listings only)
    assert f"{PROVIDER}: warning: 2 item(s) set aside" in capsys.readouterr().out

    assert sorted(harness.query("SELECT campaign_id, name FROM campaigns")) == [
        ("c1", "Spring\ufffd sale"), ("c2", "Spring sale")
    ]
    assert sorted(harness.query("SELECT contact_id, email_address FROM contacts")) == [
        ("k1", "a\ufffdb@x.org"), ("k3", "\ufffd@x.org"), ("k4", "d@x.org")
    ]
    assert sorted(harness.query("SELECT contact_id, email_address FROM contact_activity")) == [
        ("k1", "a\ufffdb@x.org"), ("k4", "d@x.org")
    ]


@BOTH_DESTINATIONS
def test_times_that_name_no_moment_load_as_null_a_wrong_clock_moves_no_cursor_and_false_deletes_no_one(fake, capsys):
    # each stopped or broke a run: a time out of range ended the provider's run (OverflowError), `now` or
    # `12:00` read as the time of the run (a new event every run), a year-9999 time set the cursor there (the
    # reports read since a cursor never read another event), and "deleted": "false" erased the contact
    harness, octopus = fake
    harness.setenv(SOURCES__EMAILOCTOPUS__ATTRIBUTION_WINDOW_DAYS=3650)  # the report is read again each run
    octopus.listing("/campaigns", [campaign("c1")])
    octopus.listing("/lists", [{"id": "L1", "name": "List"}])
    octopus.listing("/lists/L1/contacts", [{**contact("k1", "a@x.org"), "deleted": "false"}, contact("k2", "b@x.org")])
    newest_believed = "2026-11-02T11:05:00+00:00"
    octopus.listing("/campaigns/c1/reports/opened", [
        {**opened("k1", "a@x.org", 1)},
        *({**opened("k2", "b@x.org", 0), "occurred_at": time} for time in (
            "now", "12:00", 3.5, "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00",
            "9999-12-30T00:00:00+00:00", newest_believed,
        )),
    ])
    for _ in range(2):  # the same rows each run: the same ids, nothing new
        assert harness.cli("run", PROVIDER) == 0, capsys.readouterr().err
        assert harness.query("SELECT count(*), count(DISTINCT activity_id), count(occurred_at) "
                             "FROM contact_activity") == [(8, 8, 3)]
    second = capsys.readouterr().out.splitlines()[-1]
    assert "contact_activity 8 read, +0 rows" in second, second
    assert harness.count("erasures") == 0
    assert sorted(harness.query("SELECT contact_id, email_address, deleted FROM contacts")) == [
        ("k1", "a@x.org", False), ("k2", "b@x.org", False)
    ]
    assert harness.count("contact_activity", "email_address = 'a@x.org'") == 1
    cursor = resources_state(harness, PROVIDER)["contact_activity"]["cursors"]["c1:opened"]["cursor"]
    assert cursor == newest_believed
    # the report draws opens by the hour since send: up to year 9999 that was 70 million points (GBs)
    assert harness.cli("report", "--out", str(harness.folder / "report.html")) == 0


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_through_api_v2_ids_that_are_no_ids_are_set_aside_and_named_too(fake, capsys):
    # v2 lists in the same shapes (docs/providers/emailoctopus-v2.md): an id that is an object, a list or
    # missing is set aside as 1.6 sets it aside, not loaded as the text of a dict nor a crash
    harness, octopus = fake
    harness.setenv(SOURCES__EMAILOCTOPUS__API_VERSION="2")
    no_id = {key: value for key, value in campaign("c3").items() if key != "id"}
    octopus.listing("/campaigns", [campaign("c1"), campaign({"x": 1}), no_id])
    octopus.listing("/lists", [{"id": "L1", "name": "List"}, {"id": ["L2"], "name": "Not a list"}])
    octopus.listing("/lists/L1/contacts", [contact("k1", "a@x.org"), contact({"k": 2}, "b@x.org")])
    assert harness.cli("run", PROVIDER) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"{PROVIDER}: warning: 6 item(s) set aside, the rest loads: {PROVIDER} campaign id null is not an id" in out
    # (the campaign without an id, the one whose id is an object, the list's, and the contact's in each of
    # the three calls a list's contacts take, one per status: the fake answers each alike)
    assert harness.query("SELECT campaign_id FROM campaigns") == [("c1",)]
    assert harness.query("SELECT DISTINCT contact_id FROM contacts") == [("k1",)]
    assert not [path for path in octopus.seen if "L2" in path]


def test_ids_go_into_paths_as_one_segment_and_no_request_leaves_the_api(fake, capsys):
    harness, octopus = fake
    octopus.listing("/campaigns", [campaign("../../../../steal?"), campaign(".."), campaign("c2")])
    octopus.listing("/lists", [{"id": "L/../../x#", "name": "List"}])
    assert harness.cli("run", PROVIDER) == 0, capsys.readouterr().err
    assert "campaign id \"..\" is not an id" in capsys.readouterr().out
    assert all(urlsplit(path).path.startswith(f"{API}/") for path in octopus.seen), octopus.seen
    paths = {urlsplit(path).path for path in octopus.seen}
    assert f"{API}/campaigns/..%2F..%2F..%2F..%2Fsteal%3F/reports/summary" in paths
    assert f"{API}/lists/L%2F..%2F..%2Fx%23/contacts" in paths
    assert {row[0] for row in harness.query("SELECT campaign_id FROM campaigns")} == {"../../../../steal?", "c2"}


@BOTH_DESTINATIONS
def test_a_provider_that_echoes_the_key_in_its_data_puts_it_in_no_table_and_no_state(fake, capsys):
    # the review's fake put `?api_key=KEY` in a campaign's link and a click's URL: the key reached the tables,
    # the remembered campaigns in the pipeline state and dlt's stored state
    harness, octopus = fake
    key = os.environ["SOURCES__EMAILOCTOPUS__API_KEY"]
    link = f"https://emailoctopus.com/api/1.6/campaigns/c1?api_key={key}"
    octopus.listing("/campaigns", [{**campaign("c1"), "self_link": link}])
    octopus.listing("/lists", [{"id": "L1", "name": "List"}])
    octopus.listing("/lists/L1/contacts", [{**contact("k1", "a@x.org"), "fields": {"Note": f"key {key}"}}])
    second = f"{API}/campaigns/c1/reports/clicked?page=2&api_key={key}"  # the next link carries the key: kept

    def clicked(query: dict[str, list[str]]) -> Answer:
        page = int(query.get("page", ["1"])[0])
        body = json.dumps({
            "data": [{**opened("k1", "a@x.org", page), "url": f"{link}&page={page}"}],
            "paging": {"next": second if page == 1 else None, "previous": None},
        })
        # page 2 writes the key's first letter as a JSON escape, as an encoder may
        return 200, {}, (body if page == 1 else body.replace(f"={key}&", f"=\\u{ord(key[0]):04x}{key[1:]}&")).encode()

    octopus.routes["/campaigns/c1/reports/clicked"] = clicked
    # the erasure key is a secret of the logs, never sent to a provider: text of the data that holds it stays
    harness.setenv(CAMPAIGN_SYNC__ERASURE_KEY="emailoctopus.com")
    assert harness.cli("forget", "--email", "gone@x.org") == 0
    assert harness.cli("run", PROVIDER) == 0, capsys.readouterr().err
    assert second in octopus.seen  # followed as it came
    assert sorted(harness.query("SELECT url FROM contact_activity")) == [
        (f"https://emailoctopus.com/api/1.6/campaigns/c1?api_key=***&page={page}",) for page in (1, 2)
    ]
    tables = [row[0] for row in harness.query(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{harness.dataset}'"
    )]
    assert {"campaigns", "contacts", "contact_activity", "_dlt_pipeline_state"} <= set(tables)
    for table in tables:
        assert key not in json.dumps(harness.query(f"SELECT * FROM {table}"), default=str), table
    stored = [zlib.decompress(base64.b64decode(state)) for (state,) in harness.query(  # as dlt keeps it
        "SELECT state FROM _dlt_pipeline_state")]
    assert stored and all(b'"recent"' in state and key.encode() not in state for state in stored)
    files = [path for path in harness.pipelines_dir.rglob("*") if path.is_file()]
    assert any(path.name == "state.json" for path in files)
    assert not [path for path in files if key.encode() in (
        gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes())]


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_endless_paging_ends_the_read_with_a_clear_line(fake, capsys, monkeypatch):
    harness, octopus = fake
    octopus.listing("/campaigns", [campaign("c1")])
    octopus.listing("/lists", [{"id": "L1", "name": "List"}])

    def same_page_forever(query: dict[str, list[str]]) -> Answer:  # `page=N+1` on every page
        page = int(query.get("page", ["1"])[0])
        return 200, {}, {"data": [opened("k1", "a@x.org", 1)], "paging": {"next": f"{API}/campaigns/c1/reports/"
                                                                             f"opened?page={page + 1}"}}

    def new_rows_forever(query: dict[str, list[str]]) -> Answer:
        page = int(query.get("page", ["1"])[0])
        rows = [contact(f"k{page}", f"k{page}@x.org")]
        return 200, {}, {"data": rows, "paging": {"next": f"{API}/lists/L1/contacts?page={page + 1}"}}

    octopus.routes["/campaigns/c1/reports/opened"] = same_page_forever
    octopus.routes["/lists/L1/contacts"] = new_rows_forever
    monkeypatch.setattr(http, "MAX_PAGES", 30)  # the generous cap, made small for the test
    started = time.monotonic()
    assert harness.cli("run", PROVIDER) == 1
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert (f"campaign-sync: {PROVIDER} opened of campaign c1: {PROVIDER}: the paging of campaigns/c1/reports/opened "
            "repeats page 1; this read ends, and the next run reads it again") in err, err
    assert "(and 1 more); the next run retries them" in err, err
    assert sum("/lists/L1/contacts" in path for path in octopus.seen) == 30
    assert harness.count("campaigns") == 1 and harness.count("contacts") == 30


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_a_huge_retry_after_ends_the_read_and_a_long_one_is_logged(fake, capsys, caplog):
    harness, octopus = fake
    octopus.listing("/campaigns", [campaign("c1")])
    octopus.listing("/lists", [{"id": "L1", "name": "List"}])
    octopus.routes["/campaigns/c1/reports/opened"] = lambda _query: (
        429, {"Retry-After": "100000"}, {"error": {"code": "TOO_MANY_REQUESTS", "message": "Slow down."}}
    )
    waited = []

    def once_then_contacts(_query: dict[str, list[str]]) -> Answer:
        waited.append(time.monotonic())
        if len(waited) == 1:
            return 429, {"Retry-After": "6"}, {"error": {"code": "TOO_MANY_REQUESTS", "message": "Slow down."}}
        return 200, {}, {"data": [contact("k1", "a@x.org")], "paging": {"next": None}}

    octopus.routes["/lists/L1/contacts"] = once_then_contacts
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="campaign_sync"):
        assert harness.cli("run", PROVIDER, "--progress") == 1
    assert time.monotonic() - started < 20
    err = capsys.readouterr().err
    assert f"{PROVIDER}: waiting 6s, as the provider asks (Retry-After)" in caplog.messages
    assert (f"campaign-sync: {PROVIDER} opened of campaign c1: {PROVIDER}: the provider asks to wait 100000s "
            "(Retry-After), more than 300s") in err, err
    assert waited[1] - waited[0] >= 6
    assert harness.count("contacts") == 1


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_provider_text_in_messages_is_short_and_escaped(fake, capsys):
    harness, octopus = fake
    octopus.listing("/campaigns", [])
    octopus.listing("/lists", [{"id": "L1\u202e", "name": "List"}])
    message = "\u202egnp.exe\u0000" + "x" * 10_000_000
    octopus.routes["/lists/L1\u202e/contacts"] = lambda _query: (
        400, {}, {"error": {"code": "INVALID_PARAMETERS\u001b[2J", "message": message}}
    )
    octopus.routes["/lists/L1%E2%80%AE/contacts"] = octopus.routes["/lists/L1\u202e/contacts"]
    assert harness.cli("run", PROVIDER) == 1
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert len(output) < 5_000, len(output)
    for raw in ("\u202e", "\u0000", "\u001b"):
        assert raw not in output
    assert "INVALID_PARAMETERS\\u001b[2J \\u202egnp.exe\\u0000xxx" in captured.err, captured.err
    assert " characters) from http://127.0.0.1:" in captured.err


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_a_next_link_that_is_not_a_link_ends_the_read(fake, capsys):
    harness, octopus = fake
    octopus.routes["/campaigns"] = {"data": [campaign("c1")], "paging": {"next": {"href": "/elsewhere"}}}
    octopus.listing("/lists", [{"id": "L1", "name": "List"}])
    octopus.listing("/lists/L1/contacts", [contact("k1", "a@x.org")])
    assert harness.cli("run", PROVIDER) == 1
    err = capsys.readouterr().err
    assert (f"campaign-sync: {PROVIDER} campaign listing: {PROVIDER}: a next page link that is not a link: "
            "{'href': '/elsewhere'}") in err, err
    assert not any("elsewhere" in path or "href" in path for path in octopus.seen), octopus.seen
    assert harness.count("contacts") == 1  # the rest loads


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_status_shows_provider_text_short_and_escaped(fake, capsys):
    harness, octopus = fake
    octopus.listing("/campaigns", [campaign("c1", "\u202egnp.exe\u001b[2J" + "n" * 100_000)])
    octopus.listing("/lists", [])
    harness.setenv(SOURCES__EMAILOCTOPUS__ATTRIBUTION_WINDOW_DAYS=100_000)  # the campaign is still open
    assert harness.cli("run", PROVIDER) in (0, 1)  # its reports are not served: only its row matters here
    capsys.readouterr()
    assert harness.cli("status") == 0
    out = capsys.readouterr().out
    assert "c1 \\u202egnp.exe\\u001b[2Jnnn" in out, out[:2000]
    assert "\u202e" not in out and "\u001b" not in out
    assert len(out) < 20_000, len(out)
