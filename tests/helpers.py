"""What the tests share: reading a pipeline's state, and the EmailOctopus ground truth that several
test modules compare the loaded tables with (tests import helpers from here, never from each other)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from contextlib import closing, contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg2

from sandbox import constant_contact_v2 as cc2
from sandbox.constant_contact_v3 import Account, to_minute
from sandbox.dataset import Dataset
from sandbox.emailoctopus import REPORTS, SNAPSHOTS

EMAILOCTOPUS = "emailoctopus"
WINDOW = timedelta(days=30)


def resources_state(harness: Any, provider: str) -> dict[str, Any]:
    """The dlt resource state of a provider's pipeline, as its local state file holds it."""
    state_file = harness.pipelines_dir / f"campaign_sync_{provider}" / "state.json"
    return json.loads(state_file.read_text())["sources"][provider]["resources"]


def expected_activity(dataset: Dataset) -> Counter:
    """(campaign_id, contact_id, activity_type, occurred_at) of every visible event, with multiplicity."""
    keys: Counter = Counter()
    for campaign in dataset.sent_campaigns():
        for event in dataset.events(campaign):
            if event.type in REPORTS:
                at = None if event.timestamp_missing else event.at.replace(tzinfo=None)
                keys[(campaign.id, event.contact_id, event.type, at)] += 1
    return keys


def expected_v3_activity(acc: Account) -> Counter:
    """Constant Contact v3: (campaign, campaign activity, contact, type, minute) of every visible tracked
    event, with multiplicity."""
    keys: Counter = Counter()
    for campaign in acc.dataset.campaigns:
        for activity in acc.tracked(campaign):
            for event in acc.events(activity):
                minute = to_minute(event.at).replace(tzinfo=None)
                keys[(campaign.id, activity.id, event.contact_id, event.type, minute)] += 1
    return keys


def loaded_activity(harness) -> Counter:
    return harness.activity(EMAILOCTOPUS)


def expected_snapshot(dataset: Dataset) -> Counter:
    return Counter(
        (campaign.id, kind.replace("-", "_"), contact_id)
        for campaign in dataset.sent_campaigns()
        for kind, activity in SNAPSHOTS.items()
        for contact_id in dataset.not_engaged(campaign, activity)
    )


def loaded_snapshot(harness) -> Counter:
    return Counter(harness.query("SELECT campaign_id, kind, contact_id FROM campaign_non_engagement"))


def pages(n: int) -> int:
    return max(1, math.ceil(n / 100))


def nightly_requests(dataset: Dataset, campaign_ids: list[str]) -> int:
    """What a run must cost: campaign and contact listings, plus every report of the given campaigns."""
    total = pages(len(dataset.campaigns)) + pages(len(dataset.lists))
    total += sum(pages(sum(1 for c in dataset.contacts if c.list_id == lst)) for lst in dataset.lists)
    for campaign in dataset.campaigns:
        if campaign.id in campaign_ids:
            total += sum(pages(len(dataset.events(campaign, report))) for report in REPORTS)
            total += sum(pages(len(dataset.not_engaged(campaign, a))) for a in SNAPSHOTS.values())
            total += 1  # summary
    return total


def open_campaigns(dataset: Dataset) -> list[str]:
    now = dataset.clock
    return [c.id for c in dataset.sent_campaigns() if c.send_at + WINDOW > now]


def cursors(harness) -> dict:
    """The EmailOctopus report cursors (of the campaigns a nightly still reads)."""
    return resources_state(harness, EMAILOCTOPUS)["contact_activity"]["cursors"]


def closed_campaigns(harness, resource: str = "contact_activity") -> set[str]:
    """The EmailOctopus campaigns closed by the attribution window: a marker each, no cursors."""
    groups = resources_state(harness, EMAILOCTOPUS)[resource].get("closed", {})
    return {campaign for campaigns in groups.values() for campaign in campaigns}


# ---- what each way of counting must show (tests/test_agreement.py) ----
# the `campaign_engagement` columns and how each counts a campaign's events: all of them, or the contacts
ENGAGEMENT_MEASURES = {
    "sent": ("sent", False), "unique_opens": ("opened", True), "unique_clicks": ("clicked", True),
    "bounces": ("bounced", True), "unsubscribes": ("unsubscribed", True), "complaints": ("complained", True),
    "forwards": ("forwarded", False), "total_opens": ("opened", False), "total_clicks": ("clicked", False),
}


def engagement_counts(events: list[tuple[Any, Any, str]]) -> dict[Any, dict[str, int]]:
    """Per campaign, the `ENGAGEMENT_MEASURES` of its (campaign, contact, activity_type) events."""
    by_campaign: dict[Any, list[tuple[Any, str]]] = {}
    for campaign, contact, activity_type in events:
        by_campaign.setdefault(campaign, []).append((contact, activity_type))
    return {
        campaign: {
            measure: len({c for c, t in rows if t == kind}) if unique else sum(1 for _c, t in rows if t == kind)
            for measure, (kind, unique) in ENGAGEMENT_MEASURES.items()
        }
        for campaign, rows in by_campaign.items()
    }


def emailoctopus_events(dataset: Dataset) -> list[tuple[str, str, str]]:
    """(campaign, contact, type) of every event EmailOctopus's reports give."""
    return [
        (campaign.id, event.contact_id, event.type)
        for campaign in dataset.sent_campaigns() for event in dataset.events(campaign) if event.type in REPORTS
    ]


def constant_contact_v2_events(simulator: Any) -> Counter:
    """(v3 campaign id, contact, type, minute) of every event v2's tracking lists give, with multiplicity."""
    kinds = {kind for kind, _word, _date in cc2.TRACKING.values()}
    return Counter(
        (campaign.id, event.contact_id, event.type, to_minute(event.at).replace(tzinfo=None))
        for campaign in simulator.dataset.sent_campaigns()
        for event in simulator.dataset.events(campaign) if event.type in kinds
    )


def constant_contact_v3_events(account: Account) -> Counter:
    """The same keys for every event v3's tracking reports give (resends included)."""
    return Counter(
        (campaign.id, event.contact_id, event.type, to_minute(event.at).replace(tzinfo=None))
        for campaign in account.dataset.campaigns
        for activity in account.tracked(campaign)
        for event in account.events(activity)
    )


def as_events(keys: Counter) -> list[tuple[Any, Any, str]]:
    """(campaign, contact, type) of each counted key, as many times as it counts."""
    return [(campaign, contact, kind) for (campaign, contact, kind, _minute), n in keys.items() for _ in range(n)]


def campaign_sync_threads(started_before: Collection[threading.Thread] = ()) -> set[str]:
    """The names of this process's threads that are not the sandbox's (its server and request threads), nor
    among `started_before`. A name counts once: the pool numbers its workers by how many it has, so a worker
    started while another is ending may take a name in use."""
    return {
        t.name for t in threading.enumerate()
        if t.name != "sandbox" and "process_request" not in t.name and t not in started_before
    }


@contextmanager
def peak_threads(provider: str) -> Iterator[dict[str, int]]:
    """Sample the threads started while the block runs, with the main thread: the most at once of all of
    them, of those that are not dlt's load workers (`ours`), of `provider`'s pool workers, of the listings'
    threads, and of dlt's load workers (`loader`: a thread per load job running, named `dlt-pool-*`).
    Sampling starts once the pool workers of the runs before have ended (`IDLE_WORKER_SECONDS` after their
    last work: a busy machine may keep them a while past their run), or after 30 s: a worker of an earlier
    test's run may still be in a request the sandbox holds open (a hanging-response fault), until its timeout
    and retries. Threads started before, of this provider or another, are not counted: each run has a pool
    of its own."""
    deadline = time.monotonic() + 30
    while any(name.startswith(f"{provider}-read-") for name in campaign_sync_threads()):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    before = set(threading.enumerate()) - {threading.main_thread()}
    peak = {"all": 0, "ours": 0, "pool": 0, "listings": 0, "loader": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.002):
            names = campaign_sync_threads(before)
            loader = sum(n.startswith("dlt-pool-") for n in names)
            counts = {"all": len(names), "ours": len(names) - loader, "loader": loader,
                      "pool": sum(n.startswith(f"{provider}-read-") for n in names),
                      "listings": sum(n.startswith("listing-") for n in names)}
            for key, count in counts.items():
                peak[key] = max(peak[key], count)

    sampler = threading.Thread(target=sample, name="test-sampler")
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def dataset_lock_key(dataset: str) -> str:
    """The key of the PostgreSQL advisory lock that loads into `dataset` take (`runner.dataset_lock`)."""
    return f"campaign_sync:{dataset}"


@contextmanager
def serving(answer: Callable[[str, str, bytes], tuple[int, dict[str, str], bytes]]) -> Iterator[str]:
    """An HTTP server of the test's own on 127.0.0.1, for a provider's answers no sandbox gives:
    `answer(method, path, body)` is each response's status, headers and body (JSON unless the headers say
    otherwise); its base URL, until the block ends."""

    class Handler(BaseHTTPRequestHandler):
        def respond(self) -> None:
            sent = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, data = answer(self.command, self.path, sent)
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = respond

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def dataset_held(dataset: str, postgres_url: str) -> Iterator[Any]:
    """`dataset`'s advisory lock held by another PostgreSQL session, as another process's load holds it, until
    the block ends; the session's cursor."""
    key = dataset_lock_key(dataset)
    with closing(psycopg2.connect(postgres_url)) as other_worker:
        other_worker.autocommit = True
        with other_worker.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])
            try:
                yield cursor
            finally:
                cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])


def cli_process(harness: Any, *args: str) -> subprocess.Popen[str]:
    """`campaign-sync ARGS` against the harness' destination, started in a process of its own."""
    return subprocess.Popen([sys.executable, "-m", "pipelines", *harness.argv(*args)], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def waits_for_dataset_lock(cursor: Any, dataset: str, process: Any) -> int:
    """How many other sessions wait for `dataset`'s advisory lock (`dataset_lock_key`: asking for it again and
    again, its last query), once one does or `process` (a command started to ask for it) has ended; 0 after
    60 s without."""
    key = dataset_lock_key(dataset)
    for _ in range(600):
        cursor.execute(  # this dataset's lock only (other tests' runs take their own), asked for and not held
            "SELECT count(*) FROM pg_stat_activity a WHERE a.pid <> pg_backend_pid() "
            "AND strpos(a.query, 'pg_try_advisory_lock') > 0 AND strpos(a.query, %s) > 0 AND NOT EXISTS ("
            "SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted)",
            [f"'{key}'"],
        )
        (waiting,) = cursor.fetchone()
        if waiting or process.poll() is not None:
            return int(waiting)
        time.sleep(0.1)
    return 0
