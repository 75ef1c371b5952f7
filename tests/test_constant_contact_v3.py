"""Constant Contact v3 end to end: sandbox over HTTP -> dlt -> a real DuckDB file."""

from __future__ import annotations

import base64
import json
import math
import stat
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import requests
from conftest import BOTH_DESTINATIONS
from helpers import expected_v3_activity, resources_state, serving

from sandbox.constant_contact_v3 import (
    API,
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN_PATH,
    Account,
    Activity,
    Simulator,
    to_minute,
)
from sandbox.dataset import Campaign, Dataset, Event
from sandbox.server import Faults
from sources.constant_contact_v3.client import check
from sources.errors import ProviderError
from sources.oauth import RefreshingAccessToken, RefreshTokenFile
from sources.redaction import register_secret

PROVIDER = "constant_contact_v3"
WINDOW = timedelta(days=30)
LOOKBACK = timedelta(minutes=60)
EVENT_REPORTS = ("sends", "opens", "clicks", "forwards", "optouts", "bounces")
REPORT_TYPES = dict(
    zip(EVENT_REPORTS, ("sent", "opened", "clicked", "forwarded", "unsubscribed", "bounced"), strict=True)
)
# what does not depend on the destination (OAuth, limits, request counts) runs on DuckDB only
DUCKDB_ONLY = pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
SETTING = f"SOURCES__{PROVIDER.upper()}__"


@pytest.fixture
def make_v3(make_harness):
    """A harness whose rotated refresh token goes to a file in the harness' folder."""

    def build(**options):
        harness = make_harness(**options)
        harness.setenv(**{f"{SETTING}REFRESH_TOKEN_FILE": token_file(harness)})
        return harness

    return build


@pytest.fixture
def harness(make_v3):
    return make_v3()


def simulator(harness) -> Simulator:
    return harness.sandbox.apps[PROVIDER].simulator


def account(harness) -> Account:
    return simulator(harness).account


def token_file(harness):
    return harness.folder / "cc3" / "refresh_token.json"


def loaded_activity(harness) -> Counter:
    return Counter(harness.query(
        "SELECT campaign_id, campaign_activity_id, contact_id, activity_type, occurred_at AT TIME ZONE 'UTC' "
        f"FROM contact_activity WHERE provider = '{PROVIDER}'"
    ))


def expected_snapshot(acc: Account) -> Counter:
    return Counter(
        (c.id, contact_id) for c in acc.dataset.campaigns if acc.sent_at(c) for contact_id in acc.not_opened(c)
    )


def loaded_snapshot(harness) -> Counter:
    return Counter(harness.query(
        f"SELECT campaign_id, contact_id FROM campaign_non_engagement WHERE provider = '{PROVIDER}'"
    ))


def state(harness) -> dict:
    return resources_state(harness, PROVIDER)


def pages(n: int, size: int = 500) -> int:
    return max(1, math.ceil(n / size))


def api_requests(harness) -> int:
    """Requests served by the v3 API, the token endpoint's left out."""
    return harness.sandbox.requests[PROVIDER] - harness.sandbox.paths[f"{PROVIDER} POST {TOKEN_PATH}"]


def lookups(sim: Simulator, activity) -> int:
    """A tracked activity's details, plus its send history unless it is plainly unsent."""
    return 1 + (sim.activity_status(activity) not in ("DRAFT", "SCHEDULED"))


def report_reads(acc: Account, campaign, page_rows: int = 500) -> int:
    """Every page of every report of a sent campaign, read whole."""
    total = 0
    for activity in acc.tracked(campaign):
        if acc.is_sent(activity):
            total += sum(pages(len(acc.events(activity, REPORT_TYPES[r])), page_rows) for r in EVENT_REPORTS)
    total += _not_opened_reads(acc, campaign, page_rows)
    return total


def _not_opened_reads(acc: Account, campaign, page_rows: int) -> int:
    primary, *resends = acc.tracked(campaign)
    total = pages(len(acc.did_not_open(primary)), page_rows)
    for resend in resends:
        if acc.is_sent(resend):
            total += pages(len(acc.events(resend, "sent")), page_rows) + pages(len(acc.did_not_open(resend)), page_rows)
    return total


def first_run_requests(harness) -> int:
    sim, acc = simulator(harness), account(harness)
    campaigns = acc.dataset.campaigns
    total = pages(len(campaigns))  # the listing
    for campaign in campaigns:
        total += 1 + sum(lookups(sim, a) for a in acc.tracked(campaign))  # details, activities, send history
        if acc.sent_at(campaign):
            total += report_reads(acc, campaign)
    total += 1  # the summaries of every campaign, in one listing
    total += 3  # contacts, custom field names, tag names
    return total


def open_campaigns(acc: Account) -> list:
    return [c for c in acc.dataset.campaigns if acc.sent_at(c) and acc.sent_at(c) + WINDOW > acc.dataset.clock]


@BOTH_DESTINATIONS
def test_first_run_loads_exactly_the_ground_truth(harness):
    acc = account(harness)
    assert harness.cli("run", PROVIDER) == 0

    expected = expected_v3_activity(acc)
    assert loaded_activity(harness) == expected
    assert harness.count("contact_activity", "activity_id IS NULL") == 0
    # two opens of one contact within one minute are both there
    assert any(n > 1 for key, n in expected.items() if key[3] == "opened")
    # resends are tracked with their own activity id; permalinks are not
    resend_ids = {a.id for c in acc.dataset.campaigns for a in acc.tracked(c) if a.role == "resend" and acc.is_sent(a)}
    assert resend_ids and {key[1] for key in expected} >= resend_ids
    permalinks = {a.id for c in acc.dataset.campaigns for a in acc.activities(c) if a.role == "permalink"}
    assert not any(pid in path for path in harness.sandbox.paths for pid in permalinks)

    # details of each report: url and url_id, device, opt-out reason, bounce code and type
    clicked = harness.query("SELECT url, url_id, device_type FROM contact_activity WHERE activity_type = 'clicked'")
    assert clicked and all(url.startswith("https://") and url_id and device for url, url_id, device in clicked)
    assert harness.count("contact_activity", "activity_type = 'opened' AND device_type IS NULL") == 0
    bounces = harness.query("SELECT bounce_code, bounce_type FROM contact_activity WHERE activity_type = 'bounced'")
    assert bounces and all(code in "BDFSVXZ" and kind in ("hard", "soft", "other") for code, kind in bounces)
    reasons = {r[0] for r in harness.query("SELECT reason FROM contact_activity WHERE activity_type = 'unsubscribed'")}
    assert "Too many emails" in reasons or "Not relevant" in reasons

    campaigns = dict(harness.query("SELECT campaign_id, status FROM campaigns"))
    assert campaigns == {c.id: acc.status(c) for c in acc.dataset.campaigns}
    assert "Removed" in campaigns.values()  # removed campaigns are listed, and kept
    sent = dict(harness.query(
        "SELECT campaign_id, sent_at AT TIME ZONE 'UTC' FROM campaigns WHERE sent_at IS NOT NULL"
    ))
    assert sent == {c.id: acc.sent_at(c).replace(tzinfo=None) for c in acc.dataset.campaigns if acc.sent_at(c)}
    activities = set(harness.query("SELECT campaign_id, campaign_activity_id, role FROM campaign_activities"))
    assert activities == {(c.id, a.id, a.role) for c in acc.dataset.campaigns for a in acc.activities(c)}
    subjects = dict(harness.query(
        "SELECT campaign_activity_id, subject FROM campaign_activities WHERE role <> 'permalink'"
    ))
    assert subjects == {a.id: a.subject for c in acc.dataset.campaigns for a in acc.tracked(c)}

    assert loaded_snapshot(harness) == expected_snapshot(acc)
    summaries = {row[0]: row[1:] for row in harness.query(
        "SELECT campaign_id, sent, opened_unique, complained, not_opened FROM campaign_summaries")}
    assert summaries == {
        c.id: tuple(acc.summary(c)[k] for k in ("sends", "opens", "abuse", "not_opened"))
        for c in acc.dataset.campaigns if acc.sent_at(c)
    }  # the sandbox writes the counts as strings
    assert harness.count("contacts") == len(acc.dataset.contacts)
    # a deleted contact is forgotten (README "Erasure"): its custom fields are not kept
    with_city = {c.id: c.fields["City"] for c in acc.dataset.contacts if "City" in c.fields and not c.deleted}
    cities = harness.query("SELECT contact_id, custom_fields__city FROM contacts WHERE custom_fields__city IS NOT NULL")
    assert dict(cities) == with_city

    assert api_requests(harness) == first_run_requests(harness)
    assert simulator(harness).oauth.refreshes == 1


@DUCKDB_ONLY
def test_each_response_is_decoded_once(harness, monkeypatch):
    # the client decodes a body once (orjson); `Response.json` is requests' second, slower decode, which
    # dlt's RESTClient calls to guess where a page's data is unless it is told
    decoded_again = Counter()
    json_of = requests.Response.json

    def counted(response: requests.Response, **kwargs: object) -> object:
        decoded_again[response.status_code] += 1
        return json_of(response, **kwargs)

    monkeypatch.setattr(requests.Response, "json", counted)
    assert harness.cli("run", PROVIDER) == 0
    assert api_requests(harness) == first_run_requests(harness)
    assert decoded_again == Counter()


def test_nightly_run_without_news_costs_one_request_per_open_report_and_rereads_keep_ids(harness):
    sim, acc = simulator(harness), account(harness)
    assert harness.cli("run", PROVIDER) == 0
    ids = {r[0] for r in harness.query("SELECT activity_id FROM contact_activity")}
    remembered = state(harness)["campaigns"]["recent"]
    harness.sandbox.reset_counts()

    assert harness.cli("run", PROVIDER) == 0

    assert {r[0] for r in harness.query("SELECT activity_id FROM contact_activity")} == ids
    still_open = open_campaigns(acc)
    closed = [c for c in acc.dataset.campaigns if acc.sent_at(c) and c not in still_open]
    assert still_open and closed
    pending = [c for c in acc.dataset.campaigns if acc.status(c) == "Scheduled"]
    resends = [a for c in acc.dataset.campaigns if c.id in remembered for a in acc.tracked(c) if a.role == "resend"]
    resend_lookups = sum(lookups(sim, a) for a in resends)
    open_reports = sum(report_reads(acc, c) for c in still_open)
    # listing, scheduled campaigns checked again, resends looked up, the open reports, summaries, contacts
    assert api_requests(harness) == 1 + len(pending) + resend_lookups + open_reports + 1 + 1
    # six event reports per sent activity, the not-opened snapshot, and a sent resend's sends and non-openers
    sent_activities = {c.id: sum(acc.is_sent(a) for a in acc.tracked(c)) for c in still_open}
    assert open_reports == sum(6 * n + 1 + 2 * (n - 1) for n in sent_activities.values())
    tracking = [path for path in harness.sandbox.paths if "/tracking/" in path]
    assert not any(a.id in path for path in tracking for c in closed for a in acc.tracked(c))

    cursors = state(harness)["contact_activity"]["cursors"]
    primary = acc.tracked(still_open[-1])[0]
    newest_open = max(to_minute(e.at) for e in acc.events(primary, "opened"))
    assert cursors[f"{primary.id}:opens"]["cursor"] == newest_open.isoformat()
    assert set(cursors) == {
        f"{a.id}:{r}" for c in still_open for a in acc.tracked(c) if acc.is_sent(a) for r in EVENT_REPORTS
    }
    # a campaign read after its attribution window closed keeps a marker instead (tests/test_state_size.py)
    markers = state(harness)["contact_activity"]["closed"]
    assert {campaign for group in markers.values() for campaign in group} == {c.id for c in closed}

    # two opens of one contact within one minute stay two rows, with the same ids however often read
    doubles = harness.query(
        "SELECT contact_id, occurred_at, count(*) AS n FROM contact_activity WHERE activity_type = 'opened' "
        "GROUP BY contact_id, occurred_at HAVING count(*) > 1"
    )
    assert doubles
    since = (acc.dataset.clock - timedelta(days=120)).date().isoformat()
    assert harness.cli("backfill", PROVIDER, "--since", since) == 0  # every report read whole again
    assert {r[0] for r in harness.query("SELECT activity_id FROM contact_activity")} == ids
    assert loaded_activity(harness) == expected_v3_activity(acc)


def tracking_pages(rows_newest_first: list[datetime], since: datetime | None, page_rows: int) -> int:
    """The pages a read takes: until a page ends with a row older than `since`."""
    if since is None:
        return pages(len(rows_newest_first), page_rows)
    read = 0
    for start in range(0, max(len(rows_newest_first), 1), page_rows):
        read += 1
        chunk = rows_newest_first[start:start + page_rows]
        if chunk and chunk[-1] < since:
            break
    return read


def expected_tracking_requests(acc: Account, cursors: dict, page_rows: int) -> int:
    """Each due report, paged newest first back to its cursor minus the lookback; snapshots whole."""
    total = 0
    for campaign in open_campaigns(acc):
        for activity in acc.tracked(campaign):
            if not acc.is_sent(activity):
                continue
            for report in EVENT_REPORTS:
                cursor = cursors.get(f"{activity.id}:{report}", {}).get("cursor")
                since = datetime.fromisoformat(cursor) - LOOKBACK if cursor else None
                minutes = sorted((to_minute(e.at) for e in acc.events(activity, REPORT_TYPES[report])), reverse=True)
                total += tracking_pages(minutes, since, page_rows)
        total += _not_opened_reads(acc, campaign, page_rows)
    return total


@BOTH_DESTINATIONS
def test_advancing_time_brings_exactly_the_news_paging_back_only_to_the_cursor(make_v3, caplog, capfd):
    """New events, a removal, a scheduled send and a resend; and no token in any log, state or table."""
    harness = make_v3(variants={"cc3_page_rows": "10"})  # small pages, so that stopping early shows
    acc = account(harness)
    caplog.set_level("DEBUG")
    assert harness.cli("run", PROVIDER, "--debug") == 0
    first = loaded_activity(harness)
    cursors = state(harness)["contact_activity"]["cursors"]
    scheduled = [c for c in acc.dataset.campaigns if acc.status(c) == "Scheduled"]
    unsent_resends = [a for c in acc.dataset.campaigns for a in acc.tracked(c)
                      if a.role == "resend" and acc.sent_at(c) and not acc.is_sent(a)]
    done = {c.id for c in acc.dataset.campaigns if acc.status(c) == "Done"}

    harness.sandbox.advance(hours=24)
    harness.sandbox.reset_counts()
    assert harness.cli("run", PROVIDER, "--debug") == 0

    expected = expected_v3_activity(acc)
    assert loaded_activity(harness) == expected
    assert sum(expected.values()) > sum(first.values())
    assert loaded_snapshot(harness) == expected_snapshot(acc)
    statuses = dict(harness.query("SELECT campaign_id, status FROM campaigns"))
    assert statuses == {c.id: acc.status(c) for c in acc.dataset.campaigns}
    removed_now = [cid for cid in done if statuses[cid] == "Removed"]
    assert len(removed_now) == 1  # found by after_date; its activity is kept
    kept = harness.query(f"SELECT subject, sent_at FROM campaigns WHERE campaign_id = '{removed_now[0]}'")
    assert kept[0][0] is not None and kept[0][1] is not None  # and what was known of it
    assert harness.count("contact_activity", f"campaign_id = '{removed_now[0]}'") == sum(
        n for key, n in expected.items() if key[0] == removed_now[0])
    # the scheduled campaign went out (a send does not change updated_at), and so did a resend
    assert scheduled and all(harness.count("contact_activity", f"campaign_id = '{c.id}'") > 0 for c in scheduled)
    assert unsent_resends and all(acc.is_sent(a) for a in unsent_resends)
    for resend in unsent_resends:
        assert harness.count("contact_activity", f"campaign_activity_id = '{resend.id}'") > 0
    status = dict(harness.query("SELECT campaign_activity_id, status FROM campaign_activities"))
    assert all(status[a.id] == "DONE" for a in unsent_resends)

    tracking = sum(n for path, n in harness.sandbox.paths.items() if "/tracking/" in path)
    assert tracking == expected_tracking_requests(acc, cursors, 10)
    assert tracking < sum(report_reads(acc, c, 10) for c in open_campaigns(acc))

    out, err = capfd.readouterr()
    oauth = simulator(harness).oauth
    secrets = {CLIENT_ID, CLIENT_SECRET, *oauth.presented, *oauth.valid_refresh_tokens, *oauth.access_tokens}
    secrets.add(base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode())
    assert len(oauth.access_tokens) == 2 and len(oauth.presented) == 2
    assert "GET" in caplog.text and "token" in caplog.text  # urllib3 did log the requests
    for secret in secrets:
        assert secret not in caplog.text + out + err
    for path in harness.pipelines_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(secret.encode() in content for secret in secrets), path
    tables = [r[0] for r in harness.query(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{harness.dataset}'"
    )]
    assert "campaign_activities" in tables and "_dlt_pipeline_state" in tables
    for table in tables:
        dump = json.dumps(harness.query(f"SELECT * FROM {table}"), default=str)
        assert not any(secret in dump for secret in secrets), table

    # `status` lists the campaigns in the attribution window, each with its status as the table holds it
    assert harness.cli("status", "--json") == 0
    statuses_json = json.loads(capfd.readouterr().out)["providers"]
    listed = next(status for status in statuses_json if status["provider"] == PROVIDER)["open_campaigns"]
    assert listed and {c["campaign_id"]: c["status"] for c in listed} == {
        cid: status for cid, status in statuses.items() if cid in {c["campaign_id"] for c in listed}
    }


@DUCKDB_ONLY
def test_an_event_from_a_wrong_clock_loads_but_moves_no_cursor_and_the_news_after_it_load(harness, monkeypatch):
    # v3 reads each report since its cursor: an open dated 9999 (a provider's wrong clock) set the cursor there,
    # and no later run read another open of that report (tests/test_hostile_input.py has EmailOctopus' case)
    acc = account(harness)
    tomorrow = (acc.dataset.clock, acc.dataset.clock + timedelta(hours=24))

    def opens_tomorrow(campaign: Campaign, activity: Activity) -> bool:  # a resend's are its recipients'
        resend = set(acc.resend_recipients(campaign))
        return bool(acc.events(activity)) and any(
            e.type == "opened" and tomorrow[0] < e.at <= tomorrow[1]
            and (e.contact_id in resend) == (activity.role == "resend") for e in campaign.events
        )

    # a report with news tomorrow gets the wrong clock's open today
    campaign, activity = next((c, a) for c in open_campaigns(acc) for a in acc.tracked(c) if opens_tomorrow(c, a))
    resend = set(acc.resend_recipients(campaign))
    contact = next(c for c in campaign.recipients if (c in resend) == (activity.role == "resend"))
    wrong = Event(campaign.id, contact, "opened", datetime(9999, 12, 30, tzinfo=UTC))
    visible = Dataset.events

    def events(dataset: Dataset, shown: Campaign, activity_type: str | None = None) -> list[Event]:
        found = visible(dataset, shown, activity_type)
        return [*found, wrong] if shown is campaign and activity_type in (None, "opened") else found

    monkeypatch.setattr(Dataset, "events", events)
    assert wrong in acc.events(activity, "opened")
    assert harness.cli("run", PROVIDER) == 0
    cursor = state(harness)["contact_activity"]["cursors"][f"{activity.id}:opens"]["cursor"]
    assert cursor == to_minute(max(e.at for e in acc.events(activity, "opened") if e is not wrong)).isoformat()
    harness.sandbox.advance(hours=24)
    assert harness.cli("run", PROVIDER) == 0
    assert loaded_activity(harness) == expected_v3_activity(acc)


@pytest.mark.parametrize("expires_in", [b"NaN", b"Infinity", b"0", b"-5", b'"soon"', b"null"])
def test_a_token_lifetime_that_is_no_lifetime_is_taken_for_an_hour(tmp_path, expires_in):
    # NaN (or none left) refreshed, and so rotated, the token before every request: one refresh a call
    served: list[str] = []

    def token_endpoint(_method: str, path: str, _sent: bytes) -> tuple[int, dict[str, str], bytes]:
        served.append(path)
        n = len(served)
        return 200, {}, b'{"access_token": "access-%d", "refresh_token": "rotated-%d", "expires_in": %s}' % (
            n, n, expires_in)

    for known in ("access-1", "rotated-1", "access-2", "rotated-2"):  # tokens are secrets: masked in the data
        register_secret(known)  # read, never in the token endpoint's own answer
    with serving(token_endpoint) as url:
        names = {"client_id": "CLIENT_ID", "client_secret": "CLIENT_SECRET", "refresh_token": "REFRESH_TOKEN"}
        tokens = RefreshingAccessToken(
            PROVIDER, "client-1", "secret-1", "refresh-0", f"{url}/token",
            RefreshTokenFile(tmp_path / "token.json", "refresh-0", "REFRESH_TOKEN"), names,
        )
        assert [tokens.get() for _ in range(3)] == ["access-1"] * 3
        assert tokens.get(stale="access-1") == "access-2"  # a token the API refused is renewed at once
    assert len(served) == 2 and json.loads((tmp_path / "token.json").read_text())["refresh_token"] == "rotated-2"


@DUCKDB_ONLY
def test_rotated_refresh_token_is_persisted_and_used_by_the_next_run(harness, capsys):
    oauth = simulator(harness).oauth
    configured = oauth.initial_refresh_token
    assert harness.cli("run", PROVIDER) == 0
    path = token_file(harness)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first_content = path.read_text()
    first = json.loads(first_content)["refresh_token"]
    assert first != configured and first in oauth.valid_refresh_tokens
    assert configured not in oauth.valid_refresh_tokens  # rotated: the configured one is dead

    assert harness.cli("run", PROVIDER) == 0  # would be invalid_grant had it used the configured token
    assert oauth.presented == [configured, first]
    second = json.loads(path.read_text())["refresh_token"]
    assert second != first and oauth.valid_refresh_tokens == {second}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert oauth.throttled == 0  # never more than one token request a second

    # the persisted token lost: the configured one was used already
    path.unlink()
    capsys.readouterr()
    assert harness.cli("run", PROVIDER) == 3
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("campaign-sync:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert "invalid_grant" in errors[0] and f"{SETTING}REFRESH_TOKEN" in errors[0] and "authoriz" in errors[0]

    # authorizing again and configuring the new token works, even beside an older rotation's file
    path.write_text(first_content)
    harness.setenv(**{f"{SETTING}REFRESH_TOKEN": oauth.authorize()})
    assert harness.cli("run", PROVIDER) == 0
    assert json.loads(path.read_text())["refresh_token"] in oauth.valid_refresh_tokens


@DUCKDB_ONLY
def test_throttling_and_refused_access_tokens_are_retried_and_lose_nothing(make_v3):
    # access tokens die after 30 requests (a 401 the client cannot foresee), and the provider throttles
    # short bursts (seeded) although we stay under its 30/s: there is throttling however fast we are
    harness = make_v3(requests_per_second={PROVIDER: 30}, variants={"cc3_token_requests": "30"},
                      faults=Faults(burst_rate=0.03, burst_length=2))
    harness.setenv(**{f"{SETTING}REQUESTS_PER_SECOND": 25})
    oauth = simulator(harness).oauth
    assert harness.cli("run", PROVIDER) == 0
    assert harness.sandbox.throttled[PROVIDER] > 0
    assert loaded_activity(harness) == expected_v3_activity(account(harness))
    assert oauth.refreshes >= math.ceil(first_run_requests(harness) / 30)
    assert oauth.throttled == 0  # the token endpoint's 1 request a second held
    assert json.loads(token_file(harness).read_text())["refresh_token"] in oauth.valid_refresh_tokens


@DUCKDB_ONLY
def test_quota_exhaustion_exits_4_keeps_what_loaded_and_resumes_after_midnight(make_v3, capsys):
    harness = make_v3(variants={"cc3_daily_quota": "60"})
    sim, acc = simulator(harness), account(harness)
    assert harness.cli("run", PROVIDER) == 4
    assert "quota" in capsys.readouterr().err
    assert sim.used[acc.dataset.clock.date()] == 60 < first_run_requests(harness)
    assert api_requests(harness) <= 60 + 2 * 8  # the responses in flight when the quota ran out, no more
    loaded = harness.count("contact_activity")
    assert 0 < loaded < sum(expected_v3_activity(acc).values())
    assert state(harness)["contact_activity"]["cursors"]  # the reads that completed kept their cursors

    # before midnight a run stops at its first response, without hammering: at most the first request of
    # each of the two listings (campaigns, contacts), which dlt may start before either has its response
    harness.sandbox.reset_counts()
    assert harness.cli("run", PROVIDER) == 4
    assert api_requests(harness) <= 2
    assert harness.count("contact_activity") == loaded

    # the quota resets at 00:00 UTC (of the sandbox's clock); each day's run resumes the pass where the last
    # stopped: the reads it finished are not made again (reads cut off by the quota are), so the pass ends
    def after_midnight() -> int:
        clock = acc.dataset.clock
        midnight = clock.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        harness.sandbox.advance(hours=(midnight - clock).total_seconds() / 3600 + 0.01)
        return harness.cli("run", PROVIDER)

    for _day in range(3):
        code = after_midnight()
        assert harness.count("contact_activity") > loaded, "every day's run loads more"
        loaded = harness.count("contact_activity")
        if code != 4:
            break
    assert code == 0
    # the reads of the first day hold what had come by then; the next night's pass brings the rest
    assert after_midnight() == 0
    assert loaded_activity(harness) == expected_v3_activity(acc)
    assert loaded_snapshot(harness) == expected_snapshot(acc)
    assert harness.count("campaigns") == len(acc.dataset.campaigns)


@DUCKDB_ONLY
@pytest.mark.parametrize("shape", ["array", "object"])
def test_sandbox_oauth_limits_and_error_shapes(make_v3, shape):
    harness = make_v3(variants={"cc3_errors": shape})
    sim = simulator(harness)
    base = harness.sandbox.base_url(PROVIDER)
    basic = (CLIENT_ID, CLIENT_SECRET)
    # form body and query string are both accepted; a reused refresh token is refused
    first = requests.post(base + TOKEN_PATH, auth=basic,
                          data={"grant_type": "refresh_token", "refresh_token": sim.oauth.initial_refresh_token})
    assert first.status_code == 200
    too_soon = requests.post(base + TOKEN_PATH, auth=basic,
                             params={"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]})
    assert too_soon.status_code == 429  # 1 request a second
    sim.oauth.bucket.tokens = 1
    reused = requests.post(base + TOKEN_PATH, auth=basic,
                           params={"grant_type": "refresh_token", "refresh_token": sim.oauth.initial_refresh_token})
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"

    bearer = {"Authorization": f"Bearer {first.json()['access_token']}"}
    unsent = next(a for c in sim.account.dataset.campaigns for a in sim.account.tracked(c)
                  if a.role == "resend" and not sim.account.is_sent(a))
    empty = requests.get(f"{base}{API}/reports/email_reports/{unsent.id}/tracking/opens", headers=bearer)
    assert empty.status_code == 200 and empty.json()["tracking_activities"] == []

    bad = requests.get(f"{base}{API}/emails", params={"limit": 501}, headers=bearer)
    assert isinstance(bad.json(), list if shape == "array" else dict)
    with pytest.raises(ProviderError, match=r"query\.param\.invalid"):
        check(bad)
    refused = requests.get(f"{base}{API}/emails", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401 and refused.json()["error_key"] == "unauthorized"
