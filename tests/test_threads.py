"""The threads a run starts follow its settings, not its data: an account's requests are made in one
pool of `MAX_CONCURRENCY` workers and a thread per listing read ahead, at 40 campaigns as at 300."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from helpers import expected_activity, loaded_activity

PROVIDER = "emailoctopus"
MAX_CONCURRENCY = 4
DUCKDB_ONLY = pytest.mark.parametrize("destination", ["duckdb"], indirect=True)  # threads are the source's


def campaign_sync_threads() -> list[str]:
    """The names of this process's threads that are not the sandbox's (its server and request threads)."""
    return [t.name for t in threading.enumerate() if t.name != "sandbox" and "process_request" not in t.name]


def wait_for_idle_workers_to_end() -> None:
    """Until the pool workers of the runs before have ended (`IDLE_WORKER_SECONDS` after their last work)."""
    deadline = time.monotonic() + 30
    while any(name.startswith(f"{PROVIDER}-read-") for name in campaign_sync_threads()):
        assert time.monotonic() < deadline, campaign_sync_threads()
        time.sleep(0.05)


@contextmanager
def peak_threads() -> Iterator[dict[str, int]]:
    """Sample the threads while the block runs: the most at once, all of them and the reading ones (after the
    pool workers of the runs before have ended: a busy machine may keep them a while past their run)."""
    wait_for_idle_workers_to_end()
    peak = {"all": 0, "pool": 0, "listings": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.002):
            names = campaign_sync_threads()
            counts = {"all": len(names), "pool": sum(n.startswith(f"{PROVIDER}-read-") for n in names),
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


@DUCKDB_ONLY
def test_threads_follow_max_concurrency_not_the_number_of_campaigns(make_harness):
    peaks = {}
    for campaigns in (40, 300):
        harness = make_harness(scale=(campaigns, 60))
        harness.setenv(**{f"SOURCES__{PROVIDER.upper()}__MAX_CONCURRENCY": MAX_CONCURRENCY})
        with peak_threads() as first:
            assert harness.cli("run", PROVIDER) == 0
        harness.sandbox.advance(hours=24)
        with peak_threads() as nightly:
            assert harness.cli("run", PROVIDER) == 0
        assert loaded_activity(harness) == expected_activity(harness.sandbox.datasets[PROVIDER])
        peaks[campaigns] = (first, nightly)
        harness.sandbox.stop()

    for first, nightly in peaks.values():
        # the reports are read at the concurrency the settings allow, and no more
        assert first["pool"] == MAX_CONCURRENCY
        assert nightly["pool"] <= MAX_CONCURRENCY
        assert first["listings"] <= 2 and nightly["listings"] <= 2  # campaigns and contacts
        assert first["all"] <= 40 and nightly["all"] <= 40
    # dlt's own threads come and go with its steps; ours are the same at 300 campaigns as at 40
    assert peaks[300][0]["pool"] + peaks[300][0]["listings"] <= MAX_CONCURRENCY + 2


@DUCKDB_ONLY
def test_a_listings_requests_are_counted_whichever_worker_reads_them(make_harness):
    # one worker reads the second list's contacts after the first's: it reads them in the listing's context
    harness = make_harness(scale=(6, 300))
    harness.setenv(**{f"SOURCES__{PROVIDER.upper()}__MAX_CONCURRENCY": 1})
    since = (harness.sandbox.datasets[PROVIDER].clock.date().replace(year=2000)).isoformat()
    assert harness.cli("backfill", PROVIDER, "--since", since) == 0
    served = harness.sandbox.paths
    contacts = sum(n for path, n in served.items() if path.startswith(f"{PROVIDER} GET /api/1.6/lists"))
    campaigns = sum(n for path, n in served.items() if path == f"{PROVIDER} GET /api/1.6/campaigns")
    state_file = harness.pipelines_dir / f"campaign_sync_{PROVIDER}" / "state.json"
    kept = json.loads(state_file.read_text())["sources"][PROVIDER]["listing_requests"]
    assert len(harness.sandbox.datasets[PROVIDER].lists) == 2 and contacts >= 3  # the lists, then each list's
    assert kept == {"campaigns": campaigns, "contacts": contacts}
