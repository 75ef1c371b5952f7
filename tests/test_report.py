"""`campaign-sync report`: the HTML report of a sandbox load, opened in headless Chromium (Debian's
`chromium` package, never a downloaded browser) to check that its charts really render."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pipelines.report import CHART_CLASS

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
