"""`campaign-sync sql "QUERY"`: ad hoc SQL against the configured destination and dataset.

The same settings as `run` say where the data is (the DuckDB file, or PostgreSQL through
DESTINATION__POSTGRES__CREDENTIALS); unqualified table names resolve in the dataset.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dlt
import duckdb
import psycopg2
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.destinations.impl.postgres.configuration import PostgresCredentials

from pipelines.runner import Target
from sources.errors import CampaignSyncError, ConfigurationError
from sources.redaction import redact

CREDENTIALS_SETTING = "DESTINATION__POSTGRES__CREDENTIALS"


def run_query(target: Target, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run `query` in the target's dataset; return the column names and the rows."""
    with _cursor(target) as cursor:
        try:
            cursor.execute(query)
        except (duckdb.Error, psycopg2.Error) as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CampaignSyncError(f"sql: {redact(message)}") from None
        if cursor.description is None:  # a statement without a result
            return [], []
        return [column[0] for column in cursor.description], [tuple(row) for row in cursor.fetchall()]


def print_query(target: Target, query: str, output: str = "table") -> int:
    """Run `query` and print its result as an aligned table, CSV or JSON; exit code 0."""
    columns, rows = run_query(target, query)
    if output == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_text(value) for value in row] for row in rows])
    elif output == "json":
        print(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=str, indent=2))
    else:
        print(_table(columns, rows))
    return 0


@contextmanager
def _cursor(target: Target) -> Iterator[Any]:
    if target.destination == "duckdb":
        path = Path(target.duckdb_path)
        if not path.exists():
            raise ConfigurationError(f"sql: no DuckDB file at {path} (check --duckdb-path, or load it first)")
        try:
            connection = duckdb.connect(str(path), read_only=True)
        except duckdb.Error as error:
            raise CampaignSyncError(f"sql: cannot open {path}: {str(error).splitlines()[0]}") from None
        with connection:
            if not connection.execute(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = ?", [target.dataset]
            ).fetchall():
                raise ConfigurationError(f"sql: {path} has no dataset {target.dataset!r} (check --dataset)")
            connection.execute(f"SET schema '{target.dataset}'")
            yield connection
        return
    try:
        credentials = dlt.secrets.get("destination.postgres.credentials", PostgresCredentials)
    except ConfigFieldMissingException:
        credentials = None
    if credentials is None:
        raise ConfigurationError(f"missing setting {CREDENTIALS_SETTING} (postgresql://user:password@host:5432/db)")
    try:
        connection = psycopg2.connect(credentials.to_native_representation(), connect_timeout=10)
    except psycopg2.Error as error:
        raise CampaignSyncError(f"sql: cannot connect to PostgreSQL: {redact(str(error).strip())}") from None
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('search_path', %s, false)", [target.dataset])
            yield cursor
    finally:
        connection.close()


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    cells = [columns, *[[_text(value) for value in row] for row in rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)
