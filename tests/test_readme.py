"""The README is executable: its shell commands run as written, in order, in an empty folder with a
HOME of its own, through the installed `campaign-sync`; its SQL examples return rows.

Only the install steps are left out (`make install`, activating the venv, `pip install ...`): the
test runs inside the installed venv. `make` targets run with the repository's Makefile. The
PostgreSQL commands load a dataset of the test's own (`--dataset`), never the README's
`campaign_activity` that a reader may have loaded in the same database: it is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import psycopg2
import pytest
from conftest import POSTGRES_URL

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
VENV_BIN = Path(sys.executable).parent
INSTALL_STEPS = ("make install", ". .venv/bin/activate", "pip install")


def blocks(language: str) -> list[str]:
    """The bodies of the README's fenced code blocks in `language`, in order."""
    return re.findall(rf"^ *```{language}\n(.*?)^ *```", README, flags=re.MULTILINE | re.DOTALL)


def shell_script(postgres_dataset: str) -> str:
    """Every shell command of the README, in order, less the install steps; PostgreSQL's into `postgres_dataset`."""
    lines = []
    for block in blocks("sh"):
        for line in block.splitlines():
            command = line.strip()
            if not command or command.startswith(INSTALL_STEPS):
                continue
            if command.startswith("make "):
                command = f"make -f {ROOT / 'Makefile'} VENV={VENV_BIN.parent} {command.removeprefix('make ')}"
            command = command.replace("--destination postgres", f"--destination postgres --dataset {postgres_dataset}")
            lines.append(f"echo '+ {line.strip()[:100].replace(chr(39), '')}'\n{command}")
    return "\n".join(lines)


def sql_statements() -> list[str]:
    """Every SQL statement of the README's sql blocks."""
    statements = []
    for block in blocks("sql"):
        text = "\n".join(line for line in block.splitlines() if not line.strip().startswith("--"))
        statements += [part.strip() for part in text.split(";") if part.strip()]
    return statements


def postgres_schemas(prefix: str) -> dict[str, set[str]]:
    """The PostgreSQL schemas whose name starts with `prefix`, with their tables and views."""
    with psycopg2.connect(POSTGRES_URL) as con, con.cursor() as cur:
        cur.execute(
            "SELECT n.nspname, c.relname FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid "
            "AND c.relkind IN ('r', 'v') WHERE starts_with(n.nspname, %s)", [prefix],
        )
        schemas: dict[str, set[str]] = {}
        for schema, table in cur.fetchall():
            schemas.setdefault(schema, set()).update([table] if table else [])
        return schemas


def drop_own_dataset(dataset: str) -> None:
    """Drop the test's own PostgreSQL dataset (and its staging dataset): nothing else."""
    with psycopg2.connect(POSTGRES_URL) as con, con.cursor() as cur:
        for schema in postgres_schemas(dataset):
            assert schema in (dataset, f"{dataset}_staging"), schema
            cur.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_the_readme_runs_as_written(tmp_path):
    assert len(sql_statements()) >= 6
    folder, home = tmp_path / "empty", tmp_path / "home"
    folder.mkdir()
    home.mkdir()
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("SOURCES__", "DESTINATION__", "RUNTIME__", "VIRTUAL_ENV"))
    }
    env.update(HOME=str(home), DLT_DATA_DIR=str(home / ".dlt"), PATH=f"{VENV_BIN}:{env['PATH']}")
    dataset = f"cs_readme_{uuid.uuid4().hex[:10]}"
    if postgres_schemas(dataset):  # never drop what the test did not create
        pytest.fail(f"PostgreSQL schema {dataset} exists already")
    readers = postgres_schemas("campaign_activity")  # a reader's own load of the README, if any
    script = "set -euo pipefail\n" + shell_script(dataset)
    log = tmp_path / "readme.log"  # a file, not a pipe: the sandbox in the background keeps its stderr
    with open(log, "w") as output_file:
        process = subprocess.Popen(
            ["bash", "-c", script], cwd=folder, env=env, stdout=output_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            process.wait(timeout=900)
            # the SQL examples as written, on both warehouses the README loaded (DuckDB's default file)
            rows = {"duckdb": [], "postgres": []}
            if process.returncode == 0:
                with duckdb.connect(str(folder / "campaign_sync.duckdb"), read_only=True) as con:
                    rows["duckdb"] = [con.execute(statement).fetchall() for statement in sql_statements()]
                with psycopg2.connect(POSTGRES_URL) as con, con.cursor() as cur:
                    for statement in sql_statements():
                        cur.execute(statement.replace("campaign_activity.", f"{dataset}."))
                        rows["postgres"].append(cur.fetchall())
        finally:
            with contextlib.suppress(ProcessLookupError):  # none left: the README's commands stopped it
                os.killpg(process.pid, signal.SIGTERM)  # the sandbox the README started in the background
            drop_own_dataset(dataset)
    assert postgres_schemas("campaign_activity") == readers  # the README's own dataset, untouched
    output = log.read_text()
    assert process.returncode == 0, output[-4000:]
    assert "Traceback" not in output and "unexpected error" not in output, output[-4000:]
    for destination, results in rows.items():
        assert len(results) == len(sql_statements()) and all(results), (destination, results)
    assert "+0 rows" in output  # the second run found nothing new
    # the runs against the sandbox kept their pipelines in the folder (its settings), none in the home folder's
    def pipelines(data_dir: Path) -> list[str]:
        kept = data_dir / "pipelines"
        return [path.name for path in kept.iterdir() if path.name.startswith("campaign_sync_")] if kept.exists() else []

    assert pipelines(folder / ".dlt-sandbox") and not pipelines(home / ".dlt")
    assert (folder / "report.html").exists() and (folder / "campaign_sync_demo.duckdb").exists()


def test_the_readme_sandbox_start_ends_with_a_message_when_its_port_is_busy(tmp_path):
    """The README's first commands (start the sandbox, wait, source its settings) end at once, saying why."""
    first_night = next(block for block in blocks("sh") if "campaign-sync sandbox" in block)
    lines = first_night.splitlines()
    start = lines[: next(n for n, line in enumerate(lines) if line.startswith(". ./sandbox.env")) + 1]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        script = "set -euo pipefail\n" + "\n".join(start).replace("8765", str(port))
        done = subprocess.run(
            ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60,
            env={**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"},
        )
    assert done.returncode != 0
    assert f"campaign-sync sandbox did not start: port {port} is in use" in done.stderr, done.stderr
