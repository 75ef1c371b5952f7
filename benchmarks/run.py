"""`make bench` / `make bench-quick`: request-rate, nightly-cost, CPU and memory figures.

Each scenario starts the sandbox in a process of its own (so that it does not share our GIL),
runs campaign-sync as a child process (`python -m pipelines ...`), and measures wall time,
requests served (the sandbox's own counter), 429s, rows loaded and the child's peak RSS
(its own VmHWM).
The naive baseline, `benchmarks/naive_dlt.py` (dlt's generic rest_api source on the same
endpoints), runs in the same way, in turn with ours. Raw DuckDB (the same report pages written
as JSON lines and read by `read_json`, timed with and without fetching the pages first) runs
inside this process.
Results go to stdout as a table and to benchmarks/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import dlt
import duckdb
import psycopg2
import requests

from pipelines.runner import LAST_RUN
from sandbox import Sandbox
from sandbox.dataset import Dataset
from sandbox.server import SIMULATED_PROVIDERS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
EO = "emailoctopus"
V2 = "constant_contact_v2"
V3 = "constant_contact_v3"
RAW_FETCH_CONCURRENCY = 8
V3_REPORTS = ("sends", "opens", "clicks", "forwards", "optouts", "bounces")
EO_REPORTS = ("sent", "opened", "clicked", "bounced", "complained", "unsubscribed")
EO_SNAPSHOTS = {"not-opened": "opened", "not-clicked": "clicked"}
POSTGRES_URL = "postgresql://postgres:postgres@127.0.0.1:5432/test"


@dataclass
class Settings:
    """What one `make bench` (or `bench-quick`) run measures."""

    runs: int
    backfill_scale: tuple[int, int]
    cpu_scale: tuple[int, int]
    memory_scale: tuple[int, int] | None  # (d)/(e): about 52 EmailOctopus activity rows a contact
    latency: float = 0.1
    budget: float = 50.0
    saturation_latency: float = 0.15
    saturation_budget: float = 20.0
    accounts: int = 10  # (f): the accounts of one Constant Contact application in one run
    apis_scale: tuple[int, int] = (30, 2_000)  # (g): one EmailOctopus account through API 1.6 and v2


FULL = Settings(runs=3, backfill_scale=(20, 1_000), cpu_scale=(60, 4_000), memory_scale=(60, 193_000))
QUICK = Settings(runs=1, backfill_scale=(6, 200), cpu_scale=(8, 1_000), memory_scale=None, latency=0.05,
                 accounts=4, apis_scale=(12, 1_200))


def _serve(options: dict[str, Any], ready: Any) -> None:
    """Serve a sandbox until `SandboxProcess.stop` terminates the process: SIGTERM leaves the `with`, whose
    stop removes what the sandbox keeps on disk (its v3 refresh token's folder)."""
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    with Sandbox(**options) as sandbox:
        ready.set()
        sandbox.wait()


class SandboxProcess:
    """The sandbox in a child process; its ground truth regenerated here from the same seed and clock.

    `providers` limits both to those providers' data sets (`Sandbox`'s own option)."""

    def __init__(
        self, scale: tuple[int, int], latency: float = 0.0, budget: float = 0.0,
        accounts: dict[str, list[str]] | None = None, providers: list[str] | None = None,
    ) -> None:
        self.clock = datetime.now(UTC).replace(microsecond=0)
        self.port = _free_port()
        rates = {name: budget for name in SIMULATED_PROVIDERS}
        options = {"seed": 7, "scale": scale, "port": self.port, "latency": latency,
                   "requests_per_second": rates, "clock": self.clock, "accounts": accounts, "providers": providers}
        ready = multiprocessing.Event()
        started = time.perf_counter()
        self.process = multiprocessing.Process(target=_serve, args=(options, ready), daemon=True)
        self.process.start()
        while not ready.wait(1):  # a 10M-event data set takes minutes to make on a busy machine
            if not self.process.is_alive():
                raise RuntimeError(f"the sandbox process ended ({self.process.exitcode}) before serving")
        self.startup_seconds = time.perf_counter() - started
        self.truth = Sandbox(seed=7, scale=scale, port=self.port, clock=self.clock, accounts=accounts,
                             providers=providers)
        self.url = f"http://127.0.0.1:{self.port}"
        self.users: list[Ours] = []  # what ran against it: dropped when it stops

    def peak_rss_mb(self) -> float:
        """The sandbox process' peak RSS so far (its own VmHWM)."""
        found = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{self.process.pid}/status").read_text())
        return int(found.group(1)) / 1024 if found else 0.0

    def cpu_seconds(self) -> float:
        """CPU time (user and system) the sandbox process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stats(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/_sandbox/stats", timeout=10).json()

    def environment(self) -> dict[str, str]:
        """The settings that point campaign-sync at the served sandbox (its v3 refresh token is its own)."""
        return requests.get(f"{self.url}/_sandbox/environment", timeout=10).json()

    def control(self, action: str, **params: Any) -> None:
        requests.post(f"{self.url}/_sandbox/{action}", params=params, timeout=10).raise_for_status()

    def advance(self, hours: float) -> None:
        self.control("advance", hours=hours)
        self.truth.advance(hours)

    def stop(self) -> None:
        """Stop serving, and drop what each `Ours` of this sandbox loaded and left."""
        self.process.terminate()
        self.process.join(10)
        for ours in self.users:
            ours.drop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _child(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run a Python module as a child process; its wall time, CPU time and peak RSS.

    The peak is the child's own high-water mark (`VmHWM`), read from /proc while it runs.
    `wait4`'s `ru_maxrss` would not do: it also counts this process' pages (the sandbox's
    ground truth, hundreds of MB) that the child held between fork and exec.
    """
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_kb = 0

    def watch() -> None:
        nonlocal peak_kb
        while True:
            try:
                found = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{child.pid}/status").read_text())
            except OSError:  # reaped
                return
            if found is None:  # exiting: its memory is gone
                return
            peak_kb = max(peak_kb, int(found.group(1)))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _pid, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    watcher.join()
    out, err = child.stdout.read(), child.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {err[-2000:] or out[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": peak_kb / 1024, "stdout": out}


class Ours:
    """campaign-sync as its users run it: a fresh DuckDB file or PostgreSQL dataset, and pipelines folder."""

    def __init__(
        self, sandbox: SandboxProcess, budget: float, concurrency: int = 8, destination: str = "duckdb"
    ) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="bench-"))
        self.sandbox = sandbox
        sandbox.users.append(self)
        self.destination = destination
        self.dataset = f"bench_{os.getpid()}_{int(time.time())}" if destination == "postgres" else "campaign_activity"
        self.env = {**os.environ, **sandbox.environment(), "RUNTIME__LOG_LEVEL": "WARNING",
                    "DESTINATION__POSTGRES__CREDENTIALS": POSTGRES_URL}
        for name in SIMULATED_PROVIDERS:
            self.env[f"SOURCES__{name.upper()}__REQUESTS_PER_SECOND"] = str(budget)
            self.env[f"SOURCES__{name.upper()}__MAX_CONCURRENCY"] = str(concurrency)
            self.env[f"SOURCES__{name.upper()}__REFRESH_TOKEN_FILE"] = str(self.folder / f"{name}.token")

    def arguments(self, *command: str) -> list[str]:
        """`python -m` arguments of a campaign-sync command aimed at this destination."""
        return ["pipelines", *command, "--quiet", "--duckdb-path", str(self.folder / "ours.duckdb"),
                "--pipelines-dir", str(self.folder / "pipelines"), "--destination", self.destination,
                "--dataset", self.dataset]

    def run(self, *command: str) -> dict[str, Any]:
        before, serving_before = self.sandbox.stats(), self.sandbox.cpu_seconds()
        result = _child(self.arguments(*command), self.env)
        after, result["sandbox_cpu_seconds"] = self.sandbox.stats(), self.sandbox.cpu_seconds() - serving_before
        provider = command[1]
        result["requests"] = after["requests"].get(provider, 0) - before["requests"].get(provider, 0)
        result["throttled"] = after["throttled"].get(provider, 0) - before["throttled"].get(provider, 0)
        load = dlt.attach(f"campaign_sync_{provider}", pipelines_dir=str(self.folder / "pipelines"))
        last_run: dict[str, Any] = load.get_local_state_val(LAST_RUN)
        result["extract_seconds"] = last_run["extract_seconds"]
        result["merged_rows"] = last_run["rows"].get("contact_activity", 0)
        result["activity_rows"] = self.query(
            "SELECT count(*) FROM {dataset}.contact_activity WHERE provider = %s", provider
        )
        return result

    def query(self, sql: str, *params: Any) -> Any:
        """The first value of a query's first row, from this run's destination."""
        sql = sql.format(dataset=self.dataset)
        if self.destination == "postgres":
            with psycopg2.connect(POSTGRES_URL) as con, con.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchone()[0]
        with duckdb.connect(str(self.folder / "ours.duckdb"), read_only=True) as con:
            return con.execute(sql.replace("%s", "?"), list(params)).fetchone()[0]

    def drop(self) -> None:
        """Remove what the runs loaded and left: the PostgreSQL dataset, and the temp folder (the DuckDB file,
        the pipelines)."""
        if self.destination == "postgres":
            with psycopg2.connect(POSTGRES_URL) as con, con.cursor() as cur:
                for schema in (self.dataset, f"{self.dataset}_staging"):
                    cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        shutil.rmtree(self.folder, ignore_errors=True)


def minimum_requests(truth: Dataset, campaign_ids: set[str]) -> int:
    """The requests EmailOctopus' incremental model cannot do without: listings plus open reports."""
    def pages(n: int) -> int:
        return max(1, math.ceil(n / 100))

    total = pages(len(truth.campaigns)) + pages(len(truth.lists))
    total += sum(pages(sum(1 for c in truth.contacts if c.list_id == lst)) for lst in truth.lists)
    for campaign in truth.campaigns:
        if campaign.id in campaign_ids:
            total += sum(pages(len(truth.events(campaign, r))) for r in EO_REPORTS)
            total += sum(pages(len(truth.not_engaged(campaign, a))) for a in EO_SNAPSHOTS.values()) + 1
    return total


def scenario_backfill(settings: Settings, latency: float, budget: float, with_naive: bool) -> dict[str, Any]:
    """(a) A first full load: wall time and achieved request rate against the budget."""
    figures: list[dict[str, Any]] = []
    naives: list[dict[str, Any]] = []
    for _ in range(settings.runs):  # ours and the baseline in turn, so that the machine's noise hits both
        sandbox = SandboxProcess(settings.backfill_scale, latency=latency, budget=budget)
        try:
            since = (sandbox.clock - timedelta(days=365)).date().isoformat()
            figures.append(Ours(sandbox, budget).run("backfill", EO, "--since", since))
        finally:
            sandbox.stop()
        if with_naive:
            naives.append(naive_dlt_backfill(settings, latency, budget))
    ours = _median(figures, "seconds")
    row = {
        "latency_ms": latency * 1000, "budget_rps": budget,
        "ours_seconds": ours["seconds"], "ours_requests": ours["requests"], "ours_429": ours["throttled"],
        "ours_rate_rps": ours["requests"] / ours["extract_seconds"],
        "ours_rate_of_budget": ours["requests"] / ours["extract_seconds"] / budget,
        "runs": [f["seconds"] for f in figures],
    }
    if with_naive:
        naive = _median(naives, "seconds")
        row.update(naive_seconds=naive["seconds"], naive_requests=naive["requests"],
                   speedup_vs_naive=naive["seconds"] / ours["seconds"], naive_runs=[f["seconds"] for f in naives])
    return row


def naive_dlt_backfill(settings: Settings, latency: float, budget: float) -> dict[str, Any]:
    """The same backfill through dlt's generic `rest_api` source (`benchmarks/naive_dlt.py`)."""
    sandbox = SandboxProcess(settings.backfill_scale, latency=latency, budget=budget)
    try:
        before = sandbox.stats()["requests"].get(EO, 0)
        folder = Path(tempfile.mkdtemp(prefix="bench-naive-"))
        env = sandbox.environment()
        naive = _child(["benchmarks.naive_dlt", env["SOURCES__EMAILOCTOPUS__BASE_URL"],
                        env["SOURCES__EMAILOCTOPUS__API_KEY"], str(folder / "baseline.duckdb"),
                        str(folder / "pipelines")], dict(os.environ))
        naive["requests"] = sandbox.stats()["requests"].get(EO, 0) - before
    finally:
        sandbox.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return naive


def scenario_nightly(settings: Settings) -> dict[str, Any]:
    """(b) A nightly run after one simulated day: requests made against the minimum needed."""
    sandbox = SandboxProcess(settings.backfill_scale)
    try:
        ours = Ours(sandbox, budget=0)
        ours.run("run", EO)
        sandbox.advance(24)
        nightly = ours.run("run", EO)
        window = timedelta(days=30)
        open_ids = {c.id for c in sandbox.truth.datasets[EO].sent_campaigns()
                    if c.send_at + window > sandbox.truth.datasets[EO].clock - timedelta(hours=24)}
        needed = minimum_requests(sandbox.truth.datasets[EO], open_ids)
        full = minimum_requests(sandbox.truth.datasets[EO], {c.id for c in sandbox.truth.datasets[EO].campaigns})
    finally:
        sandbox.stop()
    return {"ours_requests": nightly["requests"], "minimum_requests": needed,
            "ours_over_minimum": nightly["requests"] / needed,
            "naive_requests_full_reread": full, "ours_seconds": nightly["seconds"]}


def scenario_accounts(settings: Settings) -> dict[str, Any]:
    """(f) The accounts of one Constant Contact (v2) application in one run, against one account alone:
    wall time, and the request rate they reach together against the application's one budget."""
    latency, budget = settings.saturation_latency, settings.saturation_budget
    figures = {}
    for count in (1, settings.accounts):
        named = [f"client{index}" for index in range(1, count)]
        sandbox = SandboxProcess(settings.backfill_scale, latency=latency, budget=budget, accounts={V2: named})
        try:
            ours = Ours(sandbox, budget)
            run = _child(ours.arguments("run", V2), ours.env)
            stats = sandbox.stats()
            served = [window for name, window in stats["served_during"].items() if name.split("/")[0] == V2]
            requests_made = sum(n for name, n in stats["requests"].items() if name.split("/")[0] == V2)
            reading = max(last for _, last in served) - min(first for first, _ in served)
            figures[count] = {
                "seconds": run["seconds"], "requests": requests_made, "rate_rps": requests_made / reading,
                "throttled": sum(n for name, n in stats["throttled"].items() if name.split("/")[0] == V2),
                "default_rows": ours.query(
                    "SELECT count(*) FROM {dataset}.contact_activity WHERE provider = %s AND account = 'default'", V2
                ),
                "accounts_loaded": ours.query(
                    "SELECT count(DISTINCT account) FROM {dataset}.contact_activity WHERE provider = %s", V2
                ),
            }
        finally:
            sandbox.stop()
    one, many = figures[1], figures[settings.accounts]
    return {
        "accounts": settings.accounts, "latency_ms": latency * 1000, "budget_rps": budget,
        "one_seconds": one["seconds"], "one_requests": one["requests"], "one_rate_rps": one["rate_rps"],
        "many_seconds": many["seconds"], "many_requests": many["requests"], "many_rate_rps": many["rate_rps"],
        "many_rate_of_budget": many["rate_rps"] / budget, "many_429": many["throttled"],
        "many_over_one_seconds": many["seconds"] / one["seconds"],
        # the default account is the same in both runs: loading it beside the others changes nothing
        "exact": one["default_rows"] == many["default_rows"] and many["accounts_loaded"] == settings.accounts,
    }


def scenario_emailoctopus_apis(settings: Settings) -> dict[str, Any]:
    """(g) The nightly of one EmailOctopus account after one day, through API 1.6 and through v2 (each
    loaded the day before through the same API): requests and wall time at the documented 10 a second."""
    sandbox = SandboxProcess(settings.apis_scale, latency=settings.latency)
    nightly_rate = 10.0  # docs/providers/emailoctopus-v2.md § Limits (1.6 documents none)
    try:
        through = {"1.6": Ours(sandbox, budget=0), "2": Ours(sandbox, budget=0)}
        through["2"].env.update(SOURCES__EMAILOCTOPUS__API_VERSION="2",
                                SOURCES__EMAILOCTOPUS__BASE_URL=f"{sandbox.url}/emailoctopus-v2")
        for ours in through.values():
            ours.run("run", EO)
        sandbox.advance(24)
        figures = {}
        for version, ours in through.items():
            ours.env["SOURCES__EMAILOCTOPUS__REQUESTS_PER_SECOND"] = str(nightly_rate)
            before = sandbox.stats()["requests"]
            nightly = ours.run("run", EO)
            after = sandbox.stats()["requests"]
            served = sum(after.get(name, 0) - before.get(name, 0) for name in (EO, f"{EO}_v2"))
            figures[version] = {"requests": served, "seconds": nightly["seconds"],
                                "exact": nightly["activity_rows"] == eo_truth_rows(sandbox.truth.datasets[EO])}
    finally:
        sandbox.stop()
    old, new = figures["1.6"], figures["2"]
    return {
        "scale": settings.apis_scale, "latency_ms": settings.latency * 1000, "rate_rps": nightly_rate,
        "v1_6_requests": old["requests"], "v1_6_seconds": old["seconds"],
        "v2_requests": new["requests"], "v2_seconds": new["seconds"],
        "v2_share_of_requests": new["requests"] / old["requests"], "exact": old["exact"] and new["exact"],
    }


def scenario_cpu(settings: Settings) -> dict[str, Any]:
    """(c) CPU: activity rows a second (Constant Contact v3, 500 rows a page, zero latency, no budget), against
    raw DuckDB (`raw_duckdb_round`). Ours and the raw baseline take turns, a run of each per round, each from
    a fresh sandbox: a shared machine's speed drifts by tens of percent within minutes, and runs made side by
    side share it. Each figure is the median over the rounds, and so is each ratio."""
    rounds = []
    for _ in range(settings.runs):
        sandbox = SandboxProcess(settings.cpu_scale)
        try:
            since = (sandbox.clock - timedelta(days=365)).date().isoformat()
            ours = Ours(sandbox, budget=0).run("backfill", V3, "--since", since)
        finally:
            sandbox.stop()
        raw = raw_duckdb_round(settings)
        rows_per_second = ours["activity_rows"] / ours["seconds"]
        rounds.append({
            "activity_rows": ours["activity_rows"], "ours_rows_per_second": rows_per_second,
            "ours_requests": ours["requests"], "ours_sandbox_cpu_seconds": ours["sandbox_cpu_seconds"],
            "ours_of_raw": rows_per_second / raw["load_rows_per_second"],
            "ours_of_raw_fetched": rows_per_second / raw["end_to_end_rows_per_second"], "raw_duckdb": raw,
        })
    raw_rounds = [r["raw_duckdb"] for r in rounds]
    return {"provider": V3, "fetch_concurrency": RAW_FETCH_CONCURRENCY,
            **{key: statistics.median(r[key] for r in rounds) for key in (
                "activity_rows", "ours_rows_per_second", "ours_requests", "ours_sandbox_cpu_seconds", "ours_of_raw",
                "ours_of_raw_fetched")},
            **{f"raw_{key}": statistics.median(r[key] for r in raw_rounds) for key in (
                "fetch_seconds", "sandbox_serving_cpu_seconds", "load_rows_per_second", "end_to_end_rows_per_second")},
            "rounds": rounds}


def v3_report_pages(
    sandbox: SandboxProcess, concurrency: int = RAW_FETCH_CONCURRENCY
) -> tuple[list[list[dict[str, Any]]], float, float]:
    """Every tracking page of every sent campaign activity, 500 rows a page, fetched with plain
    `requests` (`concurrency` reports at a time, each report's pages in order); the seconds that
    took, and the CPU seconds the sandbox spent serving them. The token request is not timed."""
    env = sandbox.environment()
    prefix = f"SOURCES__{V3.upper()}__"
    token = requests.post(
        env[f"{prefix}TOKEN_URL"],
        data={"grant_type": "refresh_token", "refresh_token": env[f"{prefix}REFRESH_TOKEN"]},
        auth=(env[f"{prefix}CLIENT_ID"], env[f"{prefix}CLIENT_SECRET"]),
        timeout=30,
    ).json()["access_token"]
    sessions = threading.local()

    def get(url: str, params: dict[str, Any] | None = None) -> Any:
        if not hasattr(sessions, "session"):
            sessions.session = requests.Session()
            sessions.session.headers["Authorization"] = f"Bearer {token}"
        response = sessions.session.get(url, params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def read_all(url: str | None, items: str) -> list[list[dict[str, Any]]]:
        pages, params = [], {"limit": 500}
        while url:
            body = get(url, params)
            pages.append(body[items])
            following = (body.get("_links") or {}).get("next") or {}
            url, params = (sandbox.url + following["href"] if following.get("href") else None), None
        return pages

    base = env[f"{prefix}BASE_URL"]
    serving_before = sandbox.cpu_seconds()
    started = time.perf_counter()
    reports = [
        f"{base}/reports/email_reports/{activity['campaign_activity_id']}/tracking/{report}"
        for page in read_all(f"{base}/emails", "campaigns")
        for campaign in page
        for activity in get(f"{base}/emails/{campaign['campaign_id']}").get("campaign_activities", [])
        if activity["role"] in ("primary_email", "resend")
        for report in V3_REPORTS
    ]
    with ThreadPoolExecutor(concurrency) as pool:
        read_report = partial(read_all, items="tracking_activities")
        pages = [page for report_pages in pool.map(read_report, reports) for page in report_pages]
    return pages, time.perf_counter() - started, sandbox.cpu_seconds() - serving_before


def raw_duckdb_round(settings: Settings) -> dict[str, float]:
    """DuckDB reading the same report pages from JSON lines itself, the pages fetched from a fresh sandbox
    first: rows a second for that load alone (pages in hand), and end to end (the fetch, then the load).

    It runs inside this process: no interpreter start or imports are timed, unlike ours."""
    sandbox = SandboxProcess(settings.cpu_scale)
    try:
        pages, fetch_seconds, serving = v3_report_pages(sandbox)
    finally:
        sandbox.stop()
    rows = sum(len(page) for page in pages)
    folder = Path(tempfile.mkdtemp(prefix="bench-raw-"))
    try:
        started = time.perf_counter()
        with open(folder / "pages.jsonl", "w") as out:
            for page in pages:
                for row in page:
                    out.write(json.dumps(row))
                    out.write("\n")
        with duckdb.connect(str(folder / "raw.duckdb")) as con:
            con.execute(f"CREATE TABLE activity AS SELECT * FROM read_json('{folder / 'pages.jsonl'}')")
        load_seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(folder)
    return {"rows": rows, "fetch_seconds": fetch_seconds, "load_seconds": load_seconds,
            "sandbox_serving_cpu_seconds": serving, "load_rows_per_second": rows / load_seconds,
            "end_to_end_rows_per_second": rows / (fetch_seconds + load_seconds)}


def scenario_memory(settings: Settings, destination: str) -> dict[str, Any]:
    """(d) and (e): an EmailOctopus account of `memory_scale` (ten million activity rows in `make bench`),
    as a user runs it: a backfill, a rerun with no news, and a nightly after a simulated day (about 1.5%
    new events), each checked against the sandbox's truth; then the same nightly's data merged whole (a
    backfill of the attribution window: what every nightly cost before whole reads left loaded events out).
    Only EmailOctopus' data set is made, in the sandbox and here (each takes gigabytes at this scale)."""
    assert settings.memory_scale is not None
    started = time.perf_counter()
    sandbox = SandboxProcess(settings.memory_scale, providers=[EO])
    sandbox_seconds = time.perf_counter() - started
    ours = Ours(sandbox, budget=0, destination=destination)
    steps: dict[str, Any] = {}
    try:
        since = (sandbox.clock - timedelta(days=365)).date().isoformat()
        window = (sandbox.clock + timedelta(hours=24) - timedelta(days=30)).date().isoformat()
        truth_before = eo_truth_rows(sandbox.truth.datasets[EO])
        steps["backfill"] = ours.run("backfill", EO, "--since", since)
        steps["rerun"] = ours.run("run", EO)
        sandbox.advance(24)  # about 1.5% new events, whatever the number of contacts
        steps["nightly"] = ours.run("run", EO)
        steps["full_remerge"] = ours.run("backfill", EO, "--since", window)
        truth = eo_truth_rows(sandbox.truth.datasets[EO])
        sandbox_peak_rss_mb = sandbox.peak_rss_mb()
    finally:
        sandbox.stop()
    for name, step in steps.items():
        step["exact"] = step["activity_rows"] == (truth_before if name in ("backfill", "rerun") else truth)
        step["local_seconds"] = step["seconds"] - step["extract_seconds"]  # all but the reading
    before = truth_before
    return {
        "destination": destination,
        "scale": settings.memory_scale,
        "sandbox_start_seconds": sandbox.startup_seconds, "sandbox_and_truth_seconds": sandbox_seconds,
        "sandbox_peak_rss_mb": sandbox_peak_rss_mb,
        "activity_rows": steps["backfill"]["activity_rows"],
        "new_rows": truth - before,
        "new_share": (truth - before) / before,
        "exact": all(step["exact"] for step in steps.values()),
        **{f"{name}_{key}": step[key] for name, step in steps.items()
           for key in ("seconds", "local_seconds", "peak_rss_mb", "merged_rows", "activity_rows", "exact")},
    }


def eo_truth_rows(dataset: Dataset) -> int:
    """The EmailOctopus events the sandbox shows now: what contact_activity must hold."""
    return sum(len(dataset.events(c, report)) for c in dataset.sent_campaigns() for report in EO_REPORTS)


def _median(figures: list[dict[str, Any]], key: str) -> dict[str, Any]:
    ordered = sorted(figures, key=lambda f: f[key])
    return ordered[len(ordered) // 2]


SCENARIOS = "abcdfg"  # (e) is the nightly step of (d)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small scales, one run each, no memory scenario")
    parser.add_argument("--only", default=SCENARIOS, metavar="LETTERS",
                        help=f"run only these scenarios (of {SCENARIOS!r}; d includes e), e.g. --only c")
    parser.add_argument("--destination", choices=("duckdb", "postgres"), action="append",
                        help="(d)/(e) on this destination only (repeatable; default: both)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"the JSON results (default: {RESULTS})")
    options = parser.parse_args()
    settings = QUICK if options.quick else FULL
    chosen = set(options.only)
    if not chosen <= set(SCENARIOS):
        parser.error(f"--only takes letters of {SCENARIOS!r}")
    started = time.perf_counter()
    results: dict[str, Any] = {}
    runs: list[tuple[str, str, Any]] = [
        ("a", "a_backfill", lambda: scenario_backfill(settings, settings.latency, settings.budget, with_naive=True)),
        ("a", "a_saturation", lambda: scenario_backfill(
            settings, settings.saturation_latency, settings.saturation_budget, with_naive=False
        )),
        ("b", "b_nightly", lambda: scenario_nightly(settings)),
        ("c", "c_cpu", lambda: scenario_cpu(settings)),
        ("f", "f_accounts", lambda: scenario_accounts(settings)),
        ("g", "g_emailoctopus_apis", lambda: scenario_emailoctopus_apis(settings)),
    ]
    if settings.memory_scale is not None:
        for destination in options.destination or ("duckdb", "postgres"):
            key = "d_memory" if destination == "duckdb" else "d_memory_postgres"
            runs.append(("d", key, partial(scenario_memory, settings, destination)))
    for letter, key, scenario in runs:
        if letter not in chosen:
            continue
        results[key] = scenario()
        results["machine"] = {
            "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "dlt": dlt.__version__, "duckdb": duckdb.__version__, "mode": "quick" if settings is QUICK else "full",
            "seconds": time.perf_counter() - started, "at": datetime.now(UTC).isoformat(),
        }
        options.output.parent.mkdir(parents=True, exist_ok=True)  # after each scenario: a long run that
        options.output.write_text(json.dumps(results, indent=2, default=str))  # stops keeps what it measured
    print(render(results))


def render(results: dict[str, Any]) -> str:
    """The results (the scenarios that ran) as a Markdown table."""
    lines = ["| scenario | ours | baseline | ratio |", "|---|---|---|---|"]
    if "a_backfill" in results:
        a, s = results["a_backfill"], results["a_saturation"]
        lines += [
            f"| (a) backfill, {a['latency_ms']:.0f} ms latency, budget {a['budget_rps']:.0f}/s | "
            f"{a['ours_seconds']:.1f} s, {a['ours_requests']} requests at {a['ours_rate_rps']:.1f}/s "
            f"({a['ours_rate_of_budget']:.0%} of budget), {a['ours_429']} x 429 | naive dlt "
            f"{a['naive_seconds']:.1f} s, "
            f"{a['naive_requests']} requests | {a['speedup_vs_naive']:.1f}x faster |",
            f"| (a) saturation, {s['latency_ms']:.0f} ms latency, budget {s['budget_rps']:.0f}/s | "
            f"{s['ours_requests']} requests at {s['ours_rate_rps']:.1f}/s, {s['ours_429']} x 429 | budget "
            f"{s['budget_rps']:.0f}/s | {s['ours_rate_of_budget']:.0%} of budget |",
        ]
    if "b_nightly" in results:
        b = results["b_nightly"]
        lines.append(
            f"| (b) nightly after one day | {b['ours_requests']} requests | minimum {b['minimum_requests']}; "
            f"full re-read {b['naive_requests_full_reread']} | {b['ours_over_minimum']:.2f}x minimum |"
        )
    if "c_cpu" in results:
        c = results["c_cpu"]
        lines += [
            f"| (c) CPU, {c['provider']}, {c['activity_rows']:.0f} activity rows | {c['ours_rows_per_second']:,.0f} "
            f"rows/s | raw DuckDB read_json of the pages in hand {c['raw_load_rows_per_second']:,.0f} rows/s | "
            f"{c['ours_of_raw']:.0%} of raw |",
            f"| (c) the same, end to end | {c['ours_rows_per_second']:,.0f} rows/s ({c['ours_requests']:.0f} "
            f"requests; the sandbox's CPU {c['ours_sandbox_cpu_seconds']:.1f} s) | raw DuckDB with the pages fetched "
            f"first (plain requests, {c['fetch_concurrency']} at a time: {c['raw_fetch_seconds']:.1f} s; the "
            f"sandbox's CPU {c['raw_sandbox_serving_cpu_seconds']:.1f} s) {c['raw_end_to_end_rows_per_second']:,.0f} "
            f"rows/s | {c['ours_of_raw_fetched']:.0%} of raw |",
        ]
    if "f_accounts" in results:
        f = results["f_accounts"]
        lines.append(
            f"| (f) {f['accounts']} Constant Contact v2 accounts of one application in one run, {f['latency_ms']:.0f} "
            f"ms latency, budget {f['budget_rps']:.0f}/s | {f['many_seconds']:.1f} s, {f['many_requests']} requests "
            f"at {f['many_rate_rps']:.1f}/s ({f['many_rate_of_budget']:.0%} of budget), {f['many_429']} x 429"
            f"{'' if f['exact'] else ', NOT EXACT'} | one account {f['one_seconds']:.1f} s, {f['one_requests']} "
            f"requests at {f['one_rate_rps']:.1f}/s | {f['many_over_one_seconds']:.1f}x one account's time |"
        )
    if "g_emailoctopus_apis" in results:
        g = results["g_emailoctopus_apis"]
        campaigns, contacts = g["scale"]
        lines.append(
            f"| (g) EmailOctopus nightly after one day, API v2 against 1.6 ({campaigns} campaigns, {contacts:,} "
            f"contacts, {g['latency_ms']:.0f} ms latency, {g['rate_rps']:.0f}/s){'' if g['exact'] else ', NOT EXACT'}"
            f" | v2: {g['v2_requests']} requests, {g['v2_seconds']:.1f} s | 1.6: {g['v1_6_requests']} requests, "
            f"{g['v1_6_seconds']:.1f} s | {g['v2_share_of_requests']:.0%} of 1.6's requests |"
        )
    for key in ("d_memory", "d_memory_postgres"):
        if key not in results:
            continue
        d = results[key]
        where = d["destination"]

        def exact(step: str, d: dict[str, Any] = d) -> str:
            return "exact" if d[f"{step}_exact"] else "NOT EXACT"

        lines += [
            f"| (d) {where}: backfill of {d['activity_rows']:,} activity rows ({exact('backfill')}) | peak RSS "
            f"{d['backfill_peak_rss_mb']:.0f} MB in {d['backfill_seconds']:.0f} s | limit 1,000 MB | "
            f"{d['backfill_peak_rss_mb'] / 1000:.0%} of limit |",
            f"| (d) {where}: rerun with no news ({exact('rerun')}) | {d['rerun_merged_rows']:,} events merged, "
            f"peak RSS {d['rerun_peak_rss_mb']:.0f} MB in {d['rerun_seconds']:.0f} s (local work "
            f"{d['rerun_local_seconds']:.0f} s) | limit 1,000 MB | {d['rerun_peak_rss_mb'] / 1000:.0%} of limit |",
            f"| (e) {where}: nightly with {d['new_rows']:,} new events ({d['new_share']:.1%}, {exact('nightly')}) | "
            f"{d['nightly_merged_rows']:,} events merged, peak RSS {d['nightly_peak_rss_mb']:.0f} MB in "
            f"{d['nightly_seconds']:.0f} s (local work {d['nightly_local_seconds']:.0f} s) | full re-merge "
            f"{d['full_remerge_merged_rows']:,} events, {d['full_remerge_peak_rss_mb']:.0f} MB in "
            f"{d['full_remerge_seconds']:.0f} s ({exact('full_remerge')}) | "
            f"{d['full_remerge_seconds'] / d['nightly_seconds']:.1f}x faster |",
        ]
    return "\n".join(lines)

if __name__ == "__main__":
    main()
