"""`campaign-sync report`: the HTML report of a sandbox load, opened in headless Chromium (Debian's
`chromium` package, never a downloaded browser) to check that its charts really render."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest

from pipelines.report import CHART_CLASS, bounce_section, campaign_labels, device_section, unsubscribe_section

PROVIDER = "emailoctopus"
# the EmailOctopus sandbox has no device data, so of the six sections five have a chart
CHARTS = 5
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)


def chromium() -> str:
    """Debian's Chromium; a missing browser fails the test in CI and skips it elsewhere."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs the Debian package)")
        pytest.skip("chromium is not installed: apt-get install -y chromium")
    return found


def load_and_report(harness, folder: Path) -> Path:
    assert harness.cli("run", PROVIDER) == 0
    out = folder / "report.html"
    assert harness.cli("report", "--out", str(out)) == 0
    return out


def chart_count(html: str) -> int:
    return html.count(f'class="{CHART_CLASS}"')


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_report_charts_render_in_headless_chromium(harness, tmp_path):
    browser = chromium()
    report = load_and_report(harness, tmp_path)
    html = report.read_text()
    assert chart_count(html) == CHARTS
    assert "No device data" in html
    assert not re.search(r"<(script|link)[^>]+(src|href)=", html), "the report must need no network"

    done = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    # plotly marks every plotted div and draws its figure as SVG
    assert len(re.findall(r'class="[^"]*\bjs-plotly-plot\b', dom)) == CHARTS
    assert dom.count('class="main-svg"') >= CHARTS
    bars = dom.count('class="trace bars"')
    assert bars >= 4 + 3  # the funnel's four steps, and one bar trace each for bounces, unsubscribes, links
    assert 'class="scatterlayer mlayer"' in dom  # the opens and clicks over time


@pytest.mark.parametrize("destination", ["postgres"], indirect=True)
def test_report_from_postgres(harness, tmp_path):
    html = load_and_report(harness, tmp_path).read_text()
    assert chart_count(html) == CHARTS
    dataset = harness.sandbox.datasets[PROVIDER]
    assert all(f"{c.name} ({PROVIDER})" in html for c in dataset.sent_campaigns())


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_report_of_nothing_loaded_names_the_settings(harness, tmp_path, capsys):
    assert harness.cli("report", "--out", str(tmp_path / "report.html")) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "nothing loaded" in line and "--duckdb-path" in line
    assert not (tmp_path / "report.html").exists()


def test_campaigns_of_named_accounts_and_of_equal_names_get_labels_of_their_own():
    # the chart draws equal labels as one bar: one account's campaign hid the other's
    funnel = [
        ("emailoctopus", "default", "c1", "Campaign 1"), ("emailoctopus", "acme", "c9", "Campaign 1"),
        ("constant_contact_v3", "default", "a", "News"), ("constant_contact_v3", "default", "b", "News"),
        ("constant_contact_v3", "default", "c", None),
    ]
    assert campaign_labels(funnel) == [
        "Campaign 1 (emailoctopus)", "Campaign 1 (emailoctopus/acme)",
        "News (constant_contact_v3) a", "News (constant_contact_v3) b", "c (constant_contact_v3)",
    ]


def test_a_reason_left_empty_and_a_reason_not_given_are_one_bar_and_deviceless_providers_are_named():
    # EmailOctopus leaves an unsubscribe's reason NULL, Constant Contact v3 empty: both are "no reason given"
    with duckdb.connect() as con:
        con.execute(
            "CREATE TABLE contact_activity_unified AS SELECT * FROM (VALUES "
            "('emailoctopus', 'unsubscribed', NULL, NULL, NULL), "
            "('constant_contact_v3', 'unsubscribed', '', NULL, NULL), "
            "('constant_contact_v3', 'unsubscribed', 'too many', NULL, NULL), "
            "('emailoctopus', 'bounced', NULL, 'hard', NULL), ('constant_contact_v3', 'bounced', '', 'hard', NULL), "
            "('emailoctopus', 'opened', NULL, NULL, NULL), ('constant_contact_v3', 'opened', NULL, NULL, 'mobile')"
            ") AS t(provider, activity_type, reason, bounce_type, device_type)"
        )

        def query(sql, *params):
            return con.execute(sql.format(contact_activity_unified="contact_activity_unified"), params).fetchall()

        unsubscribes = unsubscribe_section(query).figure.data[0]
        assert sorted(zip(unsubscribes.y, unsubscribes.x, strict=True)) == [("no reason given", 2), ("too many", 1)]
        bounces = bounce_section(query).figure.data[0]
        assert list(zip(bounces.y, bounces.x, strict=True)) == [("hard", 2)]
        devices = device_section(query)
        assert devices.figure is not None and "Not in it: emailoctopus," in devices.intro
