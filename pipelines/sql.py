"""`campaign-sync sql "QUERY"`: one read-only statement against the configured destination and dataset.

The same settings as `run` say where the data is (the DuckDB file, or PostgreSQL through
DESTINATION__POSTGRES__CREDENTIALS, or a read-only role's CAMPAIGN_SYNC__SQL_CREDENTIALS);
unqualified table names resolve in the dataset.

What it runs: one statement of a reading kind (READ_STATEMENTS), refused otherwise before it
runs (exit 2). DuckDB opens the file read-only, with no access to other files or the network
and no extension installed or loaded; PostgreSQL runs it in a read-only transaction (exit 1
when the database refuses it). On PostgreSQL the statement runs as the configured role: what
that role may call (a superuser's `pg_read_file`) is reachable, hence the read-only role's URL.
"""

from __future__ import annotations

import csv
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import dlt
import duckdb
import psycopg2

from pipelines.dlt_adapter import PostgresCredentials
from pipelines.runner import Target, first_line
from sources.dlt_adapter import ConfigFieldMissingException
from sources.errors import CampaignSyncError, ConfigurationError
from sources.redaction import redact

CREDENTIALS_SETTING = "DESTINATION__POSTGRES__CREDENTIALS"
READ_ONLY_CREDENTIALS_SETTING = "CAMPAIGN_SYNC__SQL_CREDENTIALS"
# the first word of a statement `sql` runs
READ_STATEMENTS = ("select", "with", "values", "table", "from", "explain", "show", "describe", "summarize")
# DuckDB, for `sql`: no file but the database, no network, no extension installed or loaded
DUCKDB_SANDBOX: dict[str, Any] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


def run_query(target: Target, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run `query`, one read-only statement, in the target's dataset; return the column names and the rows."""
    read_statement(query)
    with _cursor(target) as cursor:
        try:
            return _interruptible_query(cursor, query)
        except (duckdb.Error, psycopg2.Error) as error:
            raise CampaignSyncError(f"sql: {first_line(error)}") from None


def _interruptible_query(cursor: Any, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run `query` in a thread of its own while this one waits: a signal (Ctrl-C, SIGTERM) reaches Python only
    between its steps, never while the database's code runs a query, so the wait is what sees it, and it
    cancels the query (DuckDB's `interrupt`, PostgreSQL's cancel request) before it stops."""
    done: dict[str, Any] = {}
    finished = threading.Event()  # waited on, not the thread: a `join` that a signal interrupts loses the thread

    def execute() -> None:
        try:
            cursor.execute(query)
            columns = [column[0] for column in cursor.description or ()]  # none: a statement without a result
            done["result"] = columns, [tuple(row) for row in cursor.fetchall()] if columns else []
        except BaseException as error:  # raised in the waiting thread
            done["error"] = error
        finally:
            finished.set()

    threading.Thread(target=execute, name="sql-query", daemon=True).start()
    try:
        while not finished.wait(0.1):
            pass
    except KeyboardInterrupt:
        (cursor.interrupt if isinstance(cursor, duckdb.DuckDBPyConnection) else cursor.connection.cancel)()
        finished.wait(10)
        raise
    if "error" in done:
        raise done["error"]
    result: tuple[list[str], list[tuple[Any, ...]]] = done["result"]
    return result


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


def read_statement(query: str) -> None:
    """Refuse (exit 2) what is not one statement of a reading kind, before anything runs."""
    try:
        tokens = duckdb.tokenize(query)  # PostgreSQL's own scanner: strings, comments and $$ quotes
    except duckdb.Error as error:
        raise ConfigurationError(f"sql: {str(error).strip().splitlines()[0]}") from None
    ends = [offset for offset, _kind in tokens[1:]] + [len(query)]
    words = [query[offset:end].strip() for (offset, kind), end in zip(tokens, ends, strict=False)
             if kind != duckdb.token_type.comment]
    while words and words[-1] == ";":
        words.pop()
    if not words:
        raise ConfigurationError("sql: no statement given")
    if ";" in words:
        raise ConfigurationError("sql: one statement at a time (this has several)")
    while len(words) > 1 and words[0] == "(":  # `(SELECT ...) UNION (SELECT ...)`: what the parenthesis holds
        words.pop(0)
    if words[0].lower() not in READ_STATEMENTS:
        raise ConfigurationError(
            f"sql: only reads run ({', '.join(w.upper() for w in READ_STATEMENTS)}); {words[0][:30].upper()} "
            "is not one: sql never changes the dataset"
        )


@contextmanager
def _cursor(target: Target) -> Iterator[Any]:
    if target.destination == "duckdb":
        path = Path(target.duckdb_path)
        if not path.exists():
            raise ConfigurationError(f"sql: no DuckDB file at {path} (check --duckdb-path, or load it first)")
        try:
            connection = duckdb.connect(str(path), read_only=True, config=DUCKDB_SANDBOX)
        except duckdb.Error as error:
            raise CampaignSyncError(f"sql: cannot open {path}: {str(error).splitlines()[0]}") from None
        with connection:
            cursor = connection.cursor()  # the query's own: a connection busy with a query cannot be interrupted
            if not cursor.execute(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = ?", [target.dataset]
            ).fetchall():
                raise ConfigurationError(f"sql: {path} has no dataset {target.dataset!r} (check --dataset)")
            cursor.execute(f"SET schema '{target.dataset}'")
            cursor.execute("SET lock_configuration = true")  # the query cannot change a setting
            yield cursor
        return
    credentials = None
    for setting in (READ_ONLY_CREDENTIALS_SETTING, CREDENTIALS_SETTING):  # a read-only role's, if given
        with suppress(ConfigFieldMissingException):
            credentials = dlt.secrets.get(setting.lower().replace("__", "."), PostgresCredentials)
        if credentials is not None:
            break
    if credentials is None:
        raise ConfigurationError(f"missing setting {CREDENTIALS_SETTING} (postgresql://user:password@host:5432/db)")
    try:  # every transaction read-only, the session's too: the one statement cannot make it otherwise
        connection = psycopg2.connect(
            credentials.to_native_representation(), connect_timeout=10, options="-c default_transaction_read_only=on"
        )
        connection.set_session(readonly=True, autocommit=False)
    except psycopg2.Error as error:
        raise CampaignSyncError(f"sql: cannot connect to PostgreSQL: {redact(str(error).strip())}") from None
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", [target.dataset])
            if not cursor.fetchall():
                raise ConfigurationError(f"sql: PostgreSQL has no dataset {target.dataset!r} (check --dataset)")
            cursor.execute("SELECT set_config('search_path', %s, false)", [target.dataset])
            yield cursor
    finally:
        connection.rollback()
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
