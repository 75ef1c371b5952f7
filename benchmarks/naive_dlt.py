"""The 'naive dlt' baseline: EmailOctopus through dlt's generic `rest_api` source.

Configured as a competent user would from the dlt docs: a JSON-link paginator on `paging.next`,
the API key as a query parameter, campaigns as the parent resource and one child resource per
report and for the summary (`{resources.campaigns.id}`), unsent campaigns filtered out, lists
with their contacts as a child resource, default settings otherwise. These are the endpoints
campaign-sync reads.
Usage: python -m benchmarks.naive_dlt BASE_URL API_KEY DUCKDB_PATH PIPELINES_DIR
"""

from __future__ import annotations

import sys

import dlt
from dlt.sources.rest_api import rest_api_source

REPORTS = ("sent", "opened", "clicked", "bounced", "complained", "unsubscribed", "not-opened", "not-clicked")


def _is_sent(campaign: dict) -> bool:
    return campaign["status"] == "SENT"


def naive_source(base_url: str, api_key: str) -> dlt.sources.DltSource:
    """EmailOctopus campaigns, every report of every sent campaign, lists and contacts, via `rest_api`."""
    reports = [
        {
            "name": f"report_{report.replace('-', '_')}",
            "endpoint": {
                "path": f"campaigns/{{resources.campaigns.id}}/reports/{report}",
                "params": {"limit": 100},
                "data_selector": "data",
            },
            "include_from_parent": ["id"],
        }
        for report in REPORTS
    ]
    summary = {
        "name": "report_summary",
        "endpoint": {"path": "campaigns/{resources.campaigns.id}/reports/summary", "paginator": "single_page"},
        "include_from_parent": ["id"],
    }
    contacts = {
        "name": "contacts",
        "endpoint": {"path": "lists/{resources.lists.id}/contacts", "params": {"limit": 100}, "data_selector": "data"},
        "include_from_parent": ["id"],
    }
    return rest_api_source(
        {
            "client": {
                "base_url": base_url.rstrip("/") + "/",
                "auth": {"type": "api_key", "name": "api_key", "api_key": api_key, "location": "query"},
                "paginator": {"type": "json_link", "next_url_path": "paging.next"},
            },
            "resource_defaults": {"write_disposition": "append"},
            "resources": [
                {
                    "name": "campaigns",
                    "endpoint": {"path": "campaigns", "params": {"limit": 100}, "data_selector": "data"},
                    "processing_steps": [{"filter": _is_sent}],
                },
                *reports,
                summary,
                {"name": "lists", "endpoint": {"path": "lists", "params": {"limit": 100}, "data_selector": "data"}},
                contacts,
            ],
        }
    )


def main() -> None:
    base_url, api_key, duckdb_path, pipelines_dir = sys.argv[1:5]
    pipeline = dlt.pipeline(
        "naive_emailoctopus",
        destination=dlt.destinations.duckdb(duckdb_path),
        dataset_name="naive",
        pipelines_dir=pipelines_dir,
    )
    pipeline.run(naive_source(base_url, api_key))


if __name__ == "__main__":
    main()
