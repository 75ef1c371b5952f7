"""An account's requests are made in one pool of `MAX_CONCURRENCY` workers and a thread per listing read
ahead: a listing's requests are counted whichever worker reads them. (The threads of a run at 50 and at 400
campaigns: tests/test_state_size.py, which runs those accounts.)"""

from __future__ import annotations

import json

import pytest

PROVIDER = "emailoctopus"
DUCKDB_ONLY = pytest.mark.parametrize("destination", ["duckdb"], indirect=True)  # threads are the source's


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
