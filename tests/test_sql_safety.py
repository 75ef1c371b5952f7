"""`campaign-sync sql` runs one read-only statement against the dataset: it cannot write, read other
files or reach the network, on DuckDB and PostgreSQL alike (issues 27.3 and 28.11)."""

from __future__ import annotations

import uuid

import psycopg2
import pytest
from conftest import DESTINATIONS, POSTGRES_URL, first_run_shared

from pipelines.cli import main

PROVIDER = "emailoctopus"
# every test here only reads the load: one load per destination, on one worker
pytestmark = pytest.mark.xdist_group("sql_safety")


@pytest.fixture(scope="module", params=DESTINATIONS)
def loaded(request, tmp_path_factory):
    """One EmailOctopus load per destination, which every statement here is run against."""
    yield from first_run_shared(tmp_path_factory.mktemp("sql_safety"), request.param, PROVIDER)


@pytest.fixture
def harness(loaded):
    return loaded


duckdb_only = pytest.mark.parametrize("loaded", ["duckdb"], indirect=True)
postgres_only = pytest.mark.parametrize("loaded", ["postgres"], indirect=True)


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unexpected" not in err[0], err
    return err[0]


def tables(harness) -> set[str]:
    return {name for (name,) in harness.query(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{harness.dataset}'"
    )}


@pytest.mark.parametrize(("statement", "says"), [
    ("CREATE TABLE zz_probe(x int)", "CREATE is not one"),
    ("DROP TABLE erasure_requests; COMMIT; SELECT 'committed'", "one statement at a time"),
    ("SELECT 1; DROP TABLE contacts", "one statement at a time"),
    ("DELETE FROM contacts", "DELETE is not one"),
    ("COPY contacts TO '/tmp/campaign-sync-probe.csv'", "COPY is not one"),
    ("INSTALL httpfs", "INSTALL is not one"),
    ("SET enable_external_access = true", "SET is not one"),
    ("(DELETE FROM contacts)", "DELETE is not one"),
    ("", "no statement"),
])
def test_sql_refuses_what_is_not_one_read_before_it_runs(harness, capsys, statement, says):
    before, contacts = tables(harness), harness.count("contacts")
    capsys.readouterr()
    assert harness.cli("sql", statement) == 2
    assert says in one_error(capsys)
    assert tables(harness) == before and harness.count("contacts") == contacts


def test_a_write_inside_a_read_is_refused_by_the_database(harness, capsys):
    contacts = harness.count("contacts")
    capsys.readouterr()
    assert harness.cli("sql", "WITH gone AS (DELETE FROM contacts RETURNING 1) SELECT count(*) FROM gone") == 1
    assert one_error(capsys).startswith("campaign-sync: sql: ")
    assert harness.count("contacts") == contacts
    # a read still reads, a `;` in a string or a comment is no second statement
    assert harness.cli("sql", "SELECT count(*) AS n, 'a;b' AS s FROM contacts -- ; DROP TABLE contacts\n;") == 0
    assert f"{contacts}  a;b" in capsys.readouterr().out
    # a read in parentheses is a read (it was refused: "( is not one")
    assert harness.cli("sql", "(SELECT count(*) AS n FROM contacts) UNION ALL (SELECT 7)") == 0
    assert capsys.readouterr().out.split()[:4] == ["n", "---", str(contacts), "7"]


@duckdb_only
@pytest.mark.parametrize("statement", [
    "SELECT * FROM read_csv('{secret}')",
    "SELECT * FROM read_text('{secret}')",
    "SELECT * FROM '{secret}'",
    "SELECT * FROM read_parquet('https://example.org/x.parquet')",
    "ATTACH '{secret}' AS other",
])
def test_duckdb_sql_reads_no_other_file_and_no_network(harness, capsys, statement):
    secret = harness.folder / "sandbox.env"
    secret.write_text("SECRET=do-not-print-7f3a\n")
    capsys.readouterr()
    assert harness.cli("sql", statement.format(secret=secret)) in (1, 2)
    captured = capsys.readouterr()
    assert "do-not-print-7f3a" not in captured.out + captured.err
    assert len(captured.err.strip().splitlines()) == 1


@postgres_only
def test_postgres_sql_with_a_read_only_role(harness, capsys, monkeypatch):
    role = f"cs_reader_{uuid.uuid4().hex[:10]}"
    with psycopg2.connect(POSTGRES_URL) as con, con.cursor() as cur:
        cur.execute(f'CREATE ROLE "{role}" LOGIN')
        cur.execute(f'GRANT USAGE ON SCHEMA "{harness.dataset}" TO "{role}"')
        cur.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{harness.dataset}" TO "{role}"')
    try:
        monkeypatch.setenv("CAMPAIGN_SYNC__SQL_CREDENTIALS", f"postgresql://{role}:any@127.0.0.1:5432/test")
        capsys.readouterr()
        assert harness.cli("sql", "SELECT current_user AS who, count(*) AS n FROM contacts") == 0
        assert role in capsys.readouterr().out
        assert harness.cli("sql", "SELECT pg_read_file('/etc/hostname')") == 1
        assert "permission denied" in one_error(capsys)
    finally:
        with psycopg2.connect(POSTGRES_URL) as con, con.cursor() as cur:
            cur.execute(f'DROP OWNED BY "{role}"')
            cur.execute(f'DROP ROLE "{role}"')


def test_sql_names_a_dataset_that_is_not_there(harness, capsys):
    capsys.readouterr()
    assert main([*harness.argv("sql", "SELECT 1"), "--dataset", "no_such_dataset"]) == 2
    assert "has no dataset 'no_such_dataset'" in one_error(capsys)


@pytest.mark.parametrize("destination", ["postgres"], indirect=True)
def test_the_readmes_read_only_role_reads_the_views_made_again(make_harness, capsys, monkeypatch, tmp_path):
    # the README's grants without default privileges lost the views: a run from a new pipelines folder makes
    # them again, and a view made again had only the default privileges (`permission denied for view`)
    own = make_harness()
    assert own.cli("run", PROVIDER, "--quiet") == 0
    role = f"cs_reader_{uuid.uuid4().hex[:10]}"
    view_oid = ("SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = 'campaign_engagement'")
    with psycopg2.connect(POSTGRES_URL) as con, con.cursor() as cur:
        cur.execute(f'CREATE ROLE "{role}" LOGIN')
        cur.execute(f'GRANT USAGE ON SCHEMA "{own.dataset}" TO "{role}"')
        cur.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{own.dataset}" TO "{role}"')
        cur.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{own.dataset}" GRANT SELECT ON TABLES TO "{role}"')
        cur.execute(view_oid, [own.dataset])
        (before,) = cur.fetchone()
    try:
        assert main([*own.argv("run", PROVIDER, "--quiet"), "--pipelines-dir", str(tmp_path / "another")]) == 0
        with psycopg2.connect(POSTGRES_URL) as con, con.cursor() as cur:
            cur.execute(view_oid, [own.dataset])
            assert cur.fetchone()[0] != before  # made again
        monkeypatch.setenv("CAMPAIGN_SYNC__SQL_CREDENTIALS", f"postgresql://{role}:any@127.0.0.1:5432/test")
        capsys.readouterr()
        assert own.cli("sql", "SELECT current_user AS who, count(*) AS n FROM campaign_engagement") == 0
        assert role in capsys.readouterr().out
    finally:
        with psycopg2.connect(POSTGRES_URL) as con, con.cursor() as cur:
            cur.execute(f'DROP OWNED BY "{role}"')
            cur.execute(f'DROP ROLE "{role}"')
