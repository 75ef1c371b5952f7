"""`campaign-sync report`: a self-contained HTML engagement report with charts, from the loaded tables.

The charts are plotly figures; plotly.js is inlined once, so the file opens without a network.
Every query is standard SQL through the dlt pipeline's sql_client (DuckDB and PostgreSQL alike).
"""

from __future__ import annotations

import html
import os
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from pipelines.providers import account_label
from pipelines.reconcile import existing_tables
from pipelines.runner import Target, dataset_client
from sources.errors import ConfigurationError

# the funnel shows the most recently sent campaigns, the link chart the most clicked links
MAX_CAMPAIGNS = 30
MAX_LINKS = 15
CHART_CLASS = "campaign-sync-chart"

Query = Callable[..., list[tuple[Any, ...]]]


@dataclass
class Section:
    """One part of the report: a title, a line of explanation, and a chart (or why there is none)."""

    title: str
    intro: str
    figure: go.Figure | None
    empty: str = "No data loaded for this yet."


def write_report(target: Target, out: str | Path) -> Path:
    """Query the loaded tables of `target` and write the HTML report to `out`; return its path."""
    with dataset_client(target, read_only=True) as dataset:
        tables = existing_tables(dataset.sql_client) if dataset is not None else set()
        if not {"campaign_engagement_unified", "contact_activity_unified"} <= tables:
            raise ConfigurationError(
                f"nothing loaded in dataset {target.dataset!r} of the {target.destination} destination "
                "(check --destination, --dataset and --duckdb-path, or run `campaign-sync run` first)"
            )
        client = dataset.sql_client

        def query(sql: str, *params: Any) -> list[tuple[Any, ...]]:
            names = {name: client.make_qualified_table_name(name) for name in tables}
            return [tuple(row) for row in client.execute_sql(sql.format(**names), *params) or ()]

        funnel = query(FUNNEL_SQL)
        sections = [
            funnel_section(funnel[-MAX_CAMPAIGNS:]),
            timeline_section(query, funnel),
            device_section(query),
            bounce_section(query),
            unsubscribe_section(query),
            links_section(query),
        ]
    path = Path(out)
    # it holds personal data: readable by its owner only (0600), as the DuckDB file
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as file:
        file.write(render(sections, summary_rows(funnel), target.dataset))
    return path.resolve()


# the report counts each event once: a Constant Contact campaign both APIs know is one campaign
FUNNEL_SQL = """
SELECT provider, account, campaign_id, name, sent_at, sent, delivered, unique_opens, unique_clicks
FROM {campaign_engagement_unified} ORDER BY sent_at, provider, account, campaign_id
"""


def campaign_labels(funnel: list[tuple[Any, ...]]) -> list[str]:
    """A label per funnel row: the campaign's name and its provider (and named account); the campaign id
    is added where two would read the same (the chart draws equal labels as one bar)."""
    labels = [f"{name or cid} ({account_label(provider, account)})" for provider, account, cid, name, *_ in funnel]
    repeated = {label for label, count in Counter(labels).items() if count > 1}
    return [f"{label} {row[2]}" if label in repeated else label for label, row in zip(labels, funnel, strict=True)]


def funnel_section(funnel: list[tuple[Any, ...]]) -> Section:
    """Sent, delivered, opened (unique) and clicked (unique) per campaign, oldest first."""
    steps = ("sent", "delivered", "opened", "clicked")
    figure = None
    if funnel:
        labels = campaign_labels(funnel)
        figure = go.Figure(
            [go.Bar(name=step, x=labels, y=[row[5 + i] for row in funnel]) for i, step in enumerate(steps)],
            layout={"barmode": "group", "yaxis": {"title": "emails / contacts"}},
        )
    intro = (
        f"Per campaign (the {MAX_CAMPAIGNS} most recently sent): the emails sent (a Constant Contact resend counts "
        "again, as Constant Contact counts it), delivered (sent less the contacts who bounced), and the contacts "
        "who opened and who clicked."
    )
    return Section("Engagement funnel per campaign", intro, figure)


# by account and campaign id: a v2 event of a campaign both APIs know carries the v3 campaign id
TIMELINE_SQL = """
SELECT account, campaign_id, activity_type, date_trunc('hour', occurred_at) AS hour, count(*)
FROM {contact_activity_unified}
WHERE activity_type IN ('opened', 'clicked') AND occurred_at IS NOT NULL
GROUP BY account, campaign_id, activity_type, date_trunc('hour', occurred_at)
"""


# how long after its send a campaign's opens and clicks are drawn: one point an hour (a time years off, a
# provider's wrong clock, would make millions)
TIMELINE_HOURS = 24 * 90


def timeline_section(query: Query, funnel: list[tuple[Any, ...]]) -> Section:
    """Opens and clicks of every campaign by the hour since its send hour (0: the hour it was sent)."""
    sent_hour = {
        (account, cid): sent.replace(minute=0, second=0, microsecond=0)
        for _provider, account, cid, _name, sent, *_ in funnel
        if sent is not None
    }
    counts: dict[str, dict[int, int]] = {"opened": defaultdict(int), "clicked": defaultdict(int)}
    for account, cid, activity_type, hour, n in query(TIMELINE_SQL):
        sent = sent_hour.get((account, cid))
        since_send = int((hour - sent).total_seconds()) // 3600 if sent is not None else -1
        if 0 <= since_send < TIMELINE_HOURS:
            counts[activity_type][since_send] += n
    figure = None
    if any(counts.values()):
        hours = range(max(max(by_hour, default=0) for by_hour in counts.values()) + 1)
        figure = go.Figure(
            [
                go.Scatter(name=activity_type, x=[h / 24 for h in hours], y=[by_hour.get(h, 0) for h in hours])
                for activity_type, by_hour in counts.items()
            ],
            layout={"xaxis": {"title": "days since send"}, "yaxis": {"title": "events per hour"}},
        )
    return Section("Opens and clicks over time since send",
                   f"All campaigns together, per hour after sending, for {TIMELINE_HOURS // 24} days.", figure)


def _bar_section(title: str, intro: str, rows: list[tuple[Any, ...]], empty: str, axis: str = "events") -> Section:
    """A horizontal bar chart of (label, count) rows, largest at the top."""
    figure = None
    if rows:
        rows = sorted(rows, key=lambda row: row[1])
        figure = go.Figure(
            go.Bar(x=[row[1] for row in rows], y=[row[0] for row in rows], orientation="h"),
            layout={"xaxis": {"title": axis}, "yaxis": {"automargin": True}},
        )
    return Section(title, intro, figure, empty)


DEVICE_SQL = """
SELECT device_type, activity_type, count(*) FROM {contact_activity_unified}
WHERE activity_type IN ('opened', 'clicked') AND device_type IS NOT NULL
GROUP BY device_type, activity_type ORDER BY device_type
"""


# the providers whose opens and clicks come without a device: the chart leaves them out and says so
DEVICELESS_SQL = """
SELECT provider FROM {contact_activity_unified} WHERE activity_type IN ('opened', 'clicked')
GROUP BY provider HAVING count(device_type) = 0 ORDER BY provider
"""


def device_section(query: Query) -> Section:
    """Opens and clicks by the device the provider reports."""
    rows = query(DEVICE_SQL)
    intro = "Opens and clicks by device."
    deviceless = [provider for (provider,) in query(DEVICELESS_SQL)]
    if rows and deviceless:
        intro += f" Not in it: {', '.join(deviceless)}, which do not report the device of an open or click."
    figure = None
    if rows:
        devices = sorted({device for device, _type, _n in rows})
        by_type = {(device, activity_type): n for device, activity_type, n in rows}
        figure = go.Figure(
            [go.Bar(name=t, x=devices, y=[by_type.get((d, t), 0) for d in devices]) for t in ("opened", "clicked")],
            layout={"barmode": "group", "yaxis": {"title": "events"}},
        )
    empty = "No device data: the loaded providers do not report the device of an open or click."
    return Section("Device mix", intro, figure, empty)


BOUNCE_SQL = """
SELECT nullif(bounce_type, ''), nullif(reason, ''), count(*) FROM {contact_activity_unified}
WHERE activity_type = 'bounced' GROUP BY nullif(bounce_type, ''), nullif(reason, '')
"""


def bounce_section(query: Query) -> Section:
    """Bounces by type (hard, soft) and reason, as far as the provider reports them."""
    rows = [
        (": ".join(part for part in (kind or "type unknown", reason) if part), n)
        for kind, reason, n in query(BOUNCE_SQL)
    ]
    return _bar_section("Bounce reasons", "Bounces by type and reason.", rows, "No bounces loaded.", "bounces")


UNSUBSCRIBE_SQL = """
SELECT nullif(reason, ''), count(*) FROM {contact_activity_unified}
WHERE activity_type = 'unsubscribed' GROUP BY nullif(reason, '')
"""


def unsubscribe_section(query: Query) -> Section:
    """Unsubscribes by the reason given."""
    rows = [(reason or "no reason given", n) for reason, n in query(UNSUBSCRIBE_SQL)]
    empty = "No unsubscribes loaded."
    return _bar_section("Unsubscribe reasons", "Unsubscribes by the reason given.", rows, empty, "unsubscribes")


LINKS_SQL = """
SELECT url, count(*) AS clicks FROM {contact_activity_unified}
WHERE activity_type = 'clicked' AND url IS NOT NULL
GROUP BY url ORDER BY clicks DESC, url LIMIT %s
"""


def links_section(query: Query) -> Section:
    """The most clicked links."""
    rows = query(LINKS_SQL, MAX_LINKS)
    intro = f"The {MAX_LINKS} most clicked links, all campaigns."
    return _bar_section("Top links", intro, rows, "No clicked links loaded.", "clicks")


def summary_rows(funnel: list[tuple[Any, ...]]) -> list[tuple[str, int, int, int, int]]:
    """Per provider and account (`account_label`): campaigns, delivered, unique opens and unique clicks."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for provider, account, _cid, _name, _sent_at, _sent, delivered, opens, clicks in funnel:
        for index, value in enumerate((1, delivered, opens, clicks)):
            totals[account_label(provider, account)][index] += value
    return [(provider, campaigns, delivered, opens, clicks)
            for provider, (campaigns, delivered, opens, clicks) in sorted(totals.items())]


def render(sections: list[Section], summary: list[tuple[str, int, int, int, int]], dataset: str) -> str:
    """The whole HTML document: plotly.js inlined once, then the summary and one block per section."""
    rows = "".join(
        f"<tr><td>{html.escape(provider)}</td><td>{campaigns}</td><td>{delivered}</td>"
        f"<td>{_rate(opens, delivered)}</td><td>{_rate(clicks, delivered)}</td></tr>"
        for provider, campaigns, delivered, opens, clicks in summary
    )
    blocks = []
    for index, section in enumerate(sections):
        if section.figure is None:
            body = f'<p class="empty">{html.escape(section.empty)}</p>'
        else:
            section.figure.update_layout(
                margin={"t": 40}, height=440, legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"}
            )
            section.figure.update_xaxes(automargin=True)
            body = section.figure.to_html(
                full_html=False, include_plotlyjs=False, div_id=f"chart-{index}", config={"displaylogo": False}
            )
            body = f'<div class="{CHART_CLASS}">{body}</div>'
        blocks.append(f"<section><h2>{html.escape(section.title)}</h2><p>{html.escape(section.intro)}</p>{body}</section>")
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>campaign-sync engagement report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .3rem .8rem; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} .empty {{ color: #777; font-style: italic; }}
</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>Engagement report</h1>
<p>Dataset <code>{html.escape(dataset)}</code>, generated {generated}. Rates are of delivered emails.
Each event is counted once (<code>campaign_engagement_unified</code>, <code>contact_activity_unified</code>):
a Constant Contact campaign that both its APIs deliver is one campaign, under its v3 id.</p>
<table><tr><th>provider/account</th><th>campaigns</th><th>delivered</th><th>open rate</th><th>click rate</th></tr>
{rows}</table>
{"".join(blocks)}
</body></html>
"""


def _rate(count: int, base: int) -> str:
    return f"{count / base:.1%}" if base else "-"
