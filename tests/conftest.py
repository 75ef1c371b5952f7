"""Fixtures: a sandbox on a free port, the environment that points campaign-sync at it, and
helpers to run the command line and read the loaded DuckDB tables."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.cli import main
from sandbox import Sandbox

FAST_RETRIES = {
    "RUNTIME__REQUEST_BACKOFF_FACTOR": "0.05",
    "RUNTIME__REQUEST_MAX_RETRY_DELAY": "0.5",
    "RUNTIME__REQUEST_TIMEOUT": "10",
}


@dataclass
class Harness:
    """A sandbox and a DuckDB target in a temporary folder, driven through the command line."""

    sandbox: Sandbox
    folder: Path
    monkeypatch: pytest.MonkeyPatch
    dataset: str = "campaign_activity"

    @property
    def duckdb_path(self) -> Path:
        return self.folder / "campaign_sync.duckdb"

    @property
    def pipelines_dir(self) -> Path:
        return self.folder / "pipelines"

    def cli(self, *args: str) -> int:
        common = ["--duckdb-path", str(self.duckdb_path), "--pipelines-dir", str(self.pipelines_dir)]
        return main([*args, *common])

    def setenv(self, **values: Any) -> None:
        for key, value in values.items():
            self.monkeypatch.setenv(key, str(value))

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.duckdb_path), read_only=True) as con:
            con.execute(f"SET schema '{self.dataset}'")
            return con.execute(sql).fetchall()

    def count(self, table: str, where: str = "true") -> int:
        return self.query(f"SELECT count(*) FROM {table} WHERE {where}")[0][0]


@pytest.fixture
def make_harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Build a harness around a started sandbox; extra kwargs go to `Sandbox`."""
    started: list[Sandbox] = []

    def build(requests_per_second: dict[str, float] | None = None, **sandbox_options: Any) -> Harness:
        sandbox = Sandbox(requests_per_second=requests_per_second or {}, **sandbox_options)
        for name, app in sandbox.apps.items():
            if name not in (requests_per_second or {}):  # unlimited unless a test sets a budget
                app.bucket.rate = 0
        started.append(sandbox.start())
        for key in [k for k in os.environ if k.startswith(("SOURCES__", "DESTINATION__"))]:
            monkeypatch.delenv(key)
        for key, value in {**sandbox.environment(), **FAST_RETRIES}.items():
            monkeypatch.setenv(key, value)
        for name in sandbox.apps:
            monkeypatch.setenv(f"SOURCES__{name.upper()}__REQUESTS_PER_SECOND", "0")
        return Harness(sandbox, tmp_path, monkeypatch)

    yield build
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def harness(make_harness: Any) -> Harness:
    return make_harness()
