"""Fixtures: a sandbox on a free port, the environment that points campaign-sync at it, and
helpers to run the command line and read the loaded tables.

A test that uses `harness` / `make_harness` runs on a DuckDB file. Where the behaviour depends on
the destination's SQL (merges, views, erasure, reconciliation, schema changes, the local work after a
load), a test runs on PostgreSQL too (127.0.0.1:5432, database `test`, a schema of its own per
test): `@BOTH_DESTINATIONS`. When the server is down the PostgreSQL half fails,
unless CAMPAIGN_SYNC_SKIP_POSTGRES=1 says to skip it.

Tests that only read what one load left share it: a module-scoped fixture builds its harness with
`harnesses(folder, destination)` and loads once (see tests/test_sql_safety.py).
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pytest

from pipelines.cli import main
from pipelines.runner import Target
from sandbox import Sandbox
from sandbox.server import SIMULATED_PROVIDERS

FAST_RETRIES = {
    "RUNTIME__REQUEST_BACKOFF_FACTOR": "0.05",
    "RUNTIME__REQUEST_MAX_RETRY_DELAY": "0.5",
    "RUNTIME__REQUEST_TIMEOUT": "10",
}


# per canonical table: the columns that `Harness.loaded` compares
LOADED_IDENTITY = {
    "campaigns": "campaign_id, status, subject, sent_at",
    "campaign_activities": "campaign_activity_id, campaign_id, role, status",
    "contact_activity": "activity_id, campaign_id, contact_id, activity_type",
    "campaign_non_engagement": "campaign_id, kind, contact_id",
    "contacts": "contact_id, email_address, status",
    "campaign_summaries": "campaign_id, sent, opened_unique, clicked_unique",
}


POSTGRES_URL = "postgresql://postgres:postgres@127.0.0.1:5432/test"  # trust auth: any password
DESTINATIONS = ("duckdb", "postgres")
# a test whose behaviour depends on the destination's SQL runs on both; the others on DuckDB only
BOTH_DESTINATIONS = pytest.mark.parametrize("destination", DESTINATIONS, indirect=True)


@dataclass
class Harness:
    """A sandbox and a destination (DuckDB file or PostgreSQL schema), driven through the command line."""

    sandbox: Sandbox
    folder: Path
    monkeypatch: pytest.MonkeyPatch
    destination: str = "duckdb"
    dataset: str = "campaign_activity"
    # the connection `query` keeps until the next command or change (opening a DuckDB file takes ~20 ms)
    reader: Any = field(default=None, init=False, repr=False)  # a copy (`dataclasses.replace`) has its own

    @property
    def duckdb_path(self) -> Path:
        return self.folder / "campaign_sync.duckdb"

    @property
    def pipelines_dir(self) -> Path:
        return self.folder / "pipelines"

    def argv(self, *args: str) -> list[str]:
        """`campaign-sync ARGS` aimed at this harness' destination and pipelines folder (the command may need
        the DuckDB file: `query`'s connection is closed)."""
        self.close()
        common = ["--pipelines-dir", str(self.pipelines_dir), "--dataset", self.dataset]
        common += ["--destination", self.destination, "--duckdb-path", str(self.duckdb_path)]
        return [*args, *common]

    def target(self) -> Target:
        """This harness' destination and pipelines folder, for a test that calls the runner itself (which may
        need the DuckDB file: `query`'s connection is closed)."""
        self.close()
        return Target(self.destination, self.dataset, str(self.duckdb_path), str(self.pipelines_dir))

    def cli(self, *args: str) -> int:
        """Run `campaign-sync ARGS` in-process against this harness' destination; return the exit code."""
        if args and args[0] == "sandbox":
            return main(list(args))
        return main(self.argv(*args))

    def setenv(self, **values: Any) -> None:
        for key, value in values.items():
            self.monkeypatch.setenv(key, str(value))

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run SQL (unqualified table names resolve in the dataset) and return all rows, through a read-only
        connection kept until the next command (`argv`), change (`execute`) or the end of the test (`close`)."""
        if self.reader is None and self.destination == "postgres":
            self.reader = psycopg2.connect(POSTGRES_URL)
            self.reader.set_session(readonly=True, autocommit=True)  # no transaction left open between queries
        elif self.reader is None:
            self.reader = duckdb.connect(str(self.duckdb_path), read_only=True)
        if self.destination == "postgres":
            with self.reader.cursor() as cur:
                cur.execute(f"SET search_path TO {self.dataset}")
                cur.execute(sql)
                return [tuple(row) for row in cur.fetchall()]
        self.reader.execute(f"SET schema '{self.dataset}'")
        return self.reader.execute(sql).fetchall()

    def close(self) -> None:
        """Close the connection `query` keeps."""
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def execute(self, sql: str) -> None:
        """Run a statement that changes the loaded tables (to simulate damage or drift)."""
        self.close()
        if self.destination == "postgres":
            with psycopg2.connect(POSTGRES_URL) as con, con.cursor() as cur:
                cur.execute(f"SET search_path TO {self.dataset}")
                cur.execute(sql)
            return
        with duckdb.connect(str(self.duckdb_path)) as con:
            con.execute(f"SET schema '{self.dataset}'")
            con.execute(sql)

    def activity(self, provider: str) -> Counter:
        """The loaded events of a provider as (campaign_id, contact_id, activity_type, occurred_at UTC) counts."""
        return Counter(self.query(
            "SELECT campaign_id, contact_id, activity_type, occurred_at AT TIME ZONE 'UTC' FROM contact_activity "
            f"WHERE provider = '{provider}'"
        ))

    def count(self, table: str, where: str = "true") -> int:
        return self.query(f"SELECT count(*) FROM {table} WHERE {where}")[0][0]

    def loaded(self, provider: str) -> dict[str, Counter]:
        """What a provider's tables hold, by identity and the columns a partial load would get wrong."""
        present = {name for (name,) in self.query(
            f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{self.dataset}'"
        )}
        return {
            table: Counter(self.query(f"SELECT {columns} FROM {table} WHERE provider = '{provider}'"))
            for table, columns in LOADED_IDENTITY.items()
            if table in present
        }


# the tests that take longest (most of it waiting on the sandbox's rate limits or on their own child
# processes), started first: `make test`'s workers then share what is left instead of one of them
# running a long test alone at the end
LONGEST_FIRST = (
    "test_readme.py::test_the_readme_runs_as_written",
    "test_reliability.py::test_killed_anywhere",
    "test_reliability.py::test_no_credential_anywhere",
    "test_agreement.py::",
    "test_failure_isolation.py::",  # 13 tests on one worker (they share their reference runs)
    "test_airflow_dag.py::",
    "test_nightly.py::test_a_real_sized_account",
    "test_state_size.py::test_at_400_closed_campaigns",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the `LONGEST_FIRST` tests first (in that order), the others as collected."""
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("/")[-1]
        return next((n for n, prefix in enumerate(LONGEST_FIRST) if path.startswith(prefix)), len(LONGEST_FIRST))

    items.sort(key=rank)


def _postgres_available() -> bool:
    try:
        psycopg2.connect(POSTGRES_URL, connect_timeout=3).close()
        return True
    except psycopg2.OperationalError:
        return False


def require_destination(destination: str) -> None:
    """Fail (or skip, with CAMPAIGN_SYNC_SKIP_POSTGRES=1) a PostgreSQL test when the server is down."""
    if destination == "postgres" and not _postgres_available():
        if os.environ.get("CAMPAIGN_SYNC_SKIP_POSTGRES") == "1":
            pytest.skip("PostgreSQL is down and CAMPAIGN_SYNC_SKIP_POSTGRES=1")
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL} (set CAMPAIGN_SYNC_SKIP_POSTGRES=1 to skip)")


@pytest.fixture
def destination(request: pytest.FixtureRequest) -> Iterator[str]:
    """The destination a test runs on: DuckDB, unless the test parametrizes it (`BOTH_DESTINATIONS`)."""
    chosen = getattr(request, "param", "duckdb")
    require_destination(chosen)
    yield chosen


def drop_schemas(datasets: list[str]) -> None:
    """Drop PostgreSQL datasets and their staging schemas."""
    with psycopg2.connect(POSTGRES_URL) as con, con.cursor() as cur:
        for dataset in datasets:
            pattern = dataset + "\\_%"  # and its staging schema
            query = "SELECT nspname FROM pg_namespace WHERE nspname = %s OR nspname LIKE %s"
            cur.execute(query, [dataset, pattern])
            for (schema,) in cur.fetchall():
                cur.execute(f'DROP SCHEMA "{schema}" CASCADE')


@contextmanager
def harnesses(
    folder: Path, destination: str, monkeypatch: pytest.MonkeyPatch | None = None
) -> Iterator[Callable[..., Harness]]:
    """Build harnesses around started sandboxes (extra kwargs go to `Sandbox`) in `folder`; on leaving,
    stop the sandboxes, drop their PostgreSQL schemas and undo the environment they set."""
    require_destination(destination)
    patch = monkeypatch or pytest.MonkeyPatch()
    started: list[Sandbox] = []
    datasets: list[str] = []
    built: list[Harness] = []

    def build(requests_per_second: dict[str, float] | None = None, **sandbox_options: Any) -> Harness:
        sandbox = Sandbox(requests_per_second=requests_per_second or {}, **sandbox_options)
        for name, app in sandbox.apps.items():
            if name.split("/")[0] not in (requests_per_second or {}):  # unlimited unless a test sets a budget
                app.bucket.rate = 0
        started.append(sandbox.start())
        for key in [k for k in os.environ if k.startswith(("SOURCES__", "DESTINATION__"))]:
            patch.delenv(key)
        for key, value in {**sandbox.environment(), **FAST_RETRIES}.items():
            patch.setenv(key, value)
        for name in SIMULATED_PROVIDERS:  # named accounts take the provider's setting
            patch.setenv(f"SOURCES__{name.upper()}__REQUESTS_PER_SECOND", "0")
        patch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
        dataset = f"cs_{uuid.uuid4().hex[:12]}" if destination == "postgres" else "campaign_activity"
        datasets.append(dataset)
        harness_folder = folder / f"harness{len(started)}"
        harness_folder.mkdir()
        built.append(Harness(sandbox, harness_folder, patch, destination, dataset))
        return built[-1]

    try:
        yield build
    finally:
        for harness in built:
            harness.close()
        for sandbox in started:
            sandbox.stop()
        if destination == "postgres":
            drop_schemas(datasets)
        if monkeypatch is None:
            patch.undo()


def first_run_shared(folder: Path, destination: str, provider: str) -> Iterator[Harness]:
    """One first run of a provider on the default sandbox, for a module-scoped fixture whose tests only
    read what it loaded (`yield from` it; stopped and dropped after the module)."""
    with harnesses(folder, destination) as build:
        harness = build()
        assert harness.cli("run", provider) == 0
        yield harness


@pytest.fixture
def make_harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, destination: str) -> Iterator[Any]:
    """Build a harness around a started sandbox; extra kwargs go to `Sandbox`."""
    with harnesses(tmp_path, destination, monkeypatch) as build:
        yield build


@pytest.fixture
def harness(make_harness: Any) -> Harness:
    return make_harness()
