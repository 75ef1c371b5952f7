"""The README is executable: its shell commands run as written, in order, in an empty folder with a
HOME of its own, through the installed `campaign-sync`; its SQL examples return rows.

Only the install steps are left out (`make install`, activating the venv, `pip install ...`): the
test runs inside the installed venv. `make` targets run with the repository's Makefile.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import psycopg2
from conftest import POSTGRES_URL

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
VENV_BIN = Path(sys.executable).parent
INSTALL_STEPS = ("make install", ". .venv/bin/activate", "pip install")


def blocks(language: str) -> list[str]:
    """The bodies of the README's fenced code blocks in `language`, in order."""
    return re.findall(rf"^ *```{language}\n(.*?)^ *```", README, flags=re.MULTILINE | re.DOTALL)


def shell_script() -> str:
    """Every shell command of the README, in order, less the install steps."""
    lines = []
    for block in blocks("sh"):
        for line in block.splitlines():
            command = line.strip()
            if not command or command.startswith(INSTALL_STEPS):
                continue
            if command.startswith("make "):
                command = f"make -f {ROOT / 'Makefile'} VENV={VENV_BIN.parent} {command.removeprefix('make ')}"
            lines.append(f"echo '+ {line.strip()[:100].replace(chr(39), '')}'\n{command}")
    return "\n".join(lines)


def sql_statements() -> list[str]:
    """Every SQL statement of the README's sql blocks."""
    statements = []
    for block in blocks("sql"):
        text = "\n".join(line for line in block.splitlines() if not line.strip().startswith("--"))
        statements += [part.strip() for part in text.split(";") if part.strip()]
    return statements


def drop_postgres_dataset() -> None:
    with psycopg2.connect(POSTGRES_URL) as con, con.cursor() as cur:
        for schema in ("campaign_activity", "campaign_activity_staging"):
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


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
    drop_postgres_dataset()
    script = "set -euo pipefail\n" + shell_script()
    # the SQL examples, through the command line, on both warehouses the README loaded
    for destination in ("duckdb", "postgres"):
        for n, statement in enumerate(sql_statements()):
            script += f"\necho '+ sql example {n} on {destination}'\n"
            script += f"campaign-sync sql --destination {destination} --format json {shlex.quote(statement)}"
            script += f" > ../sql-{destination}-{n}.json"
    log = tmp_path / "readme.log"  # a file, not a pipe: the sandbox in the background keeps its stderr
    with open(log, "w") as output_file:
        process = subprocess.Popen(
            ["bash", "-c", script], cwd=folder, env=env, stdout=output_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            process.wait(timeout=900)
        finally:
            os.killpg(process.pid, signal.SIGTERM)  # the sandbox the README started in the background
            drop_postgres_dataset()
    output = log.read_text()
    assert process.returncode == 0, output[-4000:]
    assert "Traceback" not in output and "unexpected error" not in output, output[-4000:]
    for destination in ("duckdb", "postgres"):
        for n, statement in enumerate(sql_statements()):
            assert json.loads((tmp_path / f"sql-{destination}-{n}.json").read_text()), (destination, statement)
    assert "+0 rows" in output  # the second run found nothing new
    assert (folder / "report.html").exists() and (folder / "campaign_sync_demo.duckdb").exists()
