"""The `campaign-sync` command line (see README: Command line)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shlex
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import pendulum

from pipelines.dlt_adapter import DestinationException, SnakeCaseNaming, dlt_logger
from pipelines.erasure import erasure_key, forget_addresses
from pipelines.providers import PROVIDERS, Provider
from pipelines.runner import (
    DEFAULT_DUCKDB_PATH,
    DEMO_DUCKDB,
    DEMO_PIPELINES,
    LoadResult,
    Target,
    abort_pending,
    dataset_client,
    dataset_lock,
    first_line,
    missing_setting,
    pipeline_view,
    report_results,
    run_accounts,
    run_locks,
    run_provider,
)
from sources.canonical import DEFAULT_ACCOUNT
from sources.dlt_adapter import ConfigFieldMissingException, ConfigValueCannotBeCoercedException
from sources.erasure import normalized_address
from sources.errors import INTERRUPTED, CampaignSyncError, ConfigurationError, Interrupted, wrong_type
from sources.http import INTERRUPTION, STOP_AT_ONCE
from sources.redaction import LINE_CHARACTERS, printable, redact

log = logging.getLogger("campaign_sync")

# PostgreSQL's longest name (63) less the staging dataset's `_staging`
DATASET_NAME_LENGTH = 55
# what `forget` takes for an address: something@somewhere, no spaces
ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+$")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    reads = args.command in (cmd_run, cmd_backfill, cmd_plan, cmd_demo)
    try:
        _private()  # before dlt reads its settings (`_configure_logging`): its telemetry is off from the start
        _configure_logging(args)
        with _interruptible(reads):
            code = int(args.command(args) or 0)
        if INTERRUPTION.is_set():  # the reads stopped and what they read loaded: one line says so
            print(f"campaign-sync: {INTERRUPTED}", file=sys.stderr)
            return Interrupted.exit_code
        return code
    except KeyboardInterrupt:  # a command that reads no provider (`sql`, `status`, ...) loaded nothing to keep
        print(f"campaign-sync: {INTERRUPTED if reads else 'interrupted'}", file=sys.stderr)
        return Interrupted.exit_code
    except BrokenPipeError:  # `campaign-sync sql ... | head`: stdout is gone, and would fail again as Python exits
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("campaign-sync: output cut off: what read it stopped reading (`| head`, say)", file=sys.stderr)
        return 1
    except (CampaignSyncError, ConfigFieldMissingException, ConfigValueCannotBeCoercedException) as raised:
        if args.debug:
            traceback.print_exc()
        error = (
            missing_setting(raised) if isinstance(raised, ConfigFieldMissingException)
            else wrong_type(raised) if isinstance(raised, ConfigValueCannotBeCoercedException)
            else raised
        )
        print(f"campaign-sync: {printable(redact(str(error)), LINE_CHARACTERS)}", file=sys.stderr)
        return error.exit_code
    except Exception as error:  # anything unforeseen: one line, the traceback only with --debug
        if args.debug:
            traceback.print_exc()
        message = printable(redact(f"{type(error).__name__}: {error}").splitlines()[0], LINE_CHARACTERS)
        print(f"campaign-sync: unexpected error: {message} (rerun with --debug for details)", file=sys.stderr)
        return 1


@contextlib.contextmanager
def _interruptible(reads: bool) -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM (a scheduler's stop) end a command that `reads` providers cleanly:
    the first stops every provider's requests and waits (`INTERRUPTION`), and the run loads what was
    read; a second one stops at once (KeyboardInterrupt: what is not loaded stays pending, and the
    next run loads it). Other commands stop at once, at either signal (exit 130)."""
    INTERRUPTION.clear()
    STOP_AT_ONCE.clear()
    if threading.current_thread() is not threading.main_thread():  # signals reach it only
        yield
        return

    def interrupt(_signum: int, _frame: object) -> None:
        if INTERRUPTION.is_set() or not reads:
            STOP_AT_ONCE.set()
            raise KeyboardInterrupt
        INTERRUPTION.set()

    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        STOP_AT_ONCE.clear()  # nothing after this command stops for it (the Airflow task calls the runner itself)


def _parser() -> argparse.ArgumentParser:
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    output = argparse.ArgumentParser(add_help=False, parents=[debug])
    noise = output.add_mutually_exclusive_group()
    noise.add_argument("--progress", action="store_true", help="show progress while loading")
    noise.add_argument("--quiet", action="store_true", help="print errors only")
    common = argparse.ArgumentParser(add_help=False, parents=[output])
    common.add_argument("--destination", choices=("duckdb", "postgres"), default="duckdb")
    common.add_argument("--dataset", default="campaign_activity", help="dataset (schema) name")
    common.add_argument("--duckdb-path", default=None, help=f"the DuckDB file (default {DEFAULT_DUCKDB_PATH})")
    common.add_argument("--pipelines-dir", default=None, help="where dlt keeps pipeline working state")

    parser = argparse.ArgumentParser(prog="campaign-sync", description="Email-campaign activity into SQL.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", parents=[common], help="the nightly incremental load")
    run.add_argument(
        "providers", nargs="*", metavar="PROVIDER", help=f"default: every configured one of {', '.join(PROVIDERS)}"
    )
    run.add_argument("--account", action="append", default=None, metavar="ACCOUNT",
                     help="only these accounts (repeatable; default: every configured one)")
    _max_requests_option(run)
    run.set_defaults(command=cmd_run)

    backfill = commands.add_parser("backfill", parents=[common], help="load history for a date range")
    backfill.add_argument("provider", metavar="PROVIDER")
    backfill.add_argument("--account", default=DEFAULT_ACCOUNT, help=f"which account (default {DEFAULT_ACCOUNT})")
    backfill.add_argument("--since", required=True, help="first campaign send date (YYYY-MM-DD or ISO 8601)")
    backfill.add_argument("--until", default=None, help="last campaign send date (default: now)")
    _max_requests_option(backfill)
    backfill.set_defaults(command=cmd_backfill)

    plan = commands.add_parser(
        "plan", parents=[common], help="estimate a backfill's (or tonight's) requests and days of quota"
    )
    plan.add_argument("provider", metavar="PROVIDER")
    plan.add_argument("--account", default=None, help="which account (default: every configured one)")
    plan.add_argument("--since", default=None, help="a backfill from this campaign send date (default: tonight's run)")
    plan.add_argument("--until", default=None, help="the backfill's last campaign send date (default: now)")
    plan.add_argument("--json", action="store_true", help="print one JSON document for machines")
    plan.set_defaults(command=cmd_plan)

    sandbox = commands.add_parser("sandbox", parents=[debug], help="serve the simulated provider APIs")
    sandbox.add_argument("--port", type=int, default=8765)
    sandbox.add_argument("--seed", type=int, default=7)
    sandbox.add_argument("--scale", default="small", choices=("tiny", "small", "medium", "large"))
    sandbox.add_argument("--latency-ms", type=float, default=0.0, help="added latency per request")
    sandbox.add_argument("--error-rate", type=float, default=0.0, help="share of requests that get 503")
    sandbox.set_defaults(command=cmd_sandbox, quiet=False)

    # the demo starts afresh in files of its own: it takes no destination, file or pipelines folder to empty
    demo = commands.add_parser(
        "demo", parents=[output],
        help=f"sandbox + load + summary, no credentials needed (a fresh {DEMO_DUCKDB} and {DEMO_PIPELINES})",
    )
    demo.set_defaults(command=cmd_demo)

    status = commands.add_parser("status", parents=[common], help="last loads, row counts and cursors")
    status.add_argument("--json", action="store_true", help="print one JSON document for machines")
    status.set_defaults(command=cmd_status)

    report = commands.add_parser("report", parents=[common], help="write an HTML engagement report with charts")
    report.add_argument("--out", default="report.html", help="the HTML file to write (default report.html)")
    report.set_defaults(command=cmd_report)

    sql = commands.add_parser("sql", parents=[common], help="run ad hoc SQL against the loaded dataset")
    sql.add_argument("query", metavar="QUERY", help="the SQL; unqualified table names resolve in the dataset")
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table", help="how to print the result")
    sql.set_defaults(command=cmd_sql)

    abort = commands.add_parser(
        "abort-pending", parents=[common], help="drop a provider's load packages that cannot load (read again later)"
    )
    abort.add_argument("provider", metavar="PROVIDER")
    abort.add_argument("--account", default=DEFAULT_ACCOUNT, help=f"which account (default {DEFAULT_ACCOUNT})")
    abort.set_defaults(command=cmd_abort_pending)

    forget = commands.add_parser(
        "forget", parents=[common], help="erase a person's personal data from every table now, and keep it out"
    )
    forget.add_argument("--email", action="append", required=True, metavar="ADDRESS", help="repeatable")
    forget.set_defaults(command=cmd_forget)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    """The command's logs go to stderr in one format, dlt's among them: everything with --debug;
    otherwise campaign-sync's from INFO (WARNING with --quiet), and dlt's only from the level
    RUNTIME__LOG_LEVEL asks for (dlt logs a failed step with its traceback, and the command's one
    line says it all)."""
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("urllib3").setLevel(logging.DEBUG if args.debug else logging.WARNING)
    dlt_logs = dlt_logger()
    for handler in list(dlt_logs.handlers):  # its records go where the command's go, in their format
        dlt_logs.removeHandler(handler)
    dlt_logs.propagate = True
    asked = os.environ.get("RUNTIME__LOG_LEVEL", "").upper()
    if args.debug:
        dlt_logs.setLevel(logging.DEBUG)
    else:  # a value that is not a level is dlt's to refuse
        dlt_logs.setLevel(asked if asked in logging.getLevelNamesMapping() else logging.CRITICAL)


def _private() -> None:
    """Nothing goes anywhere but the providers and the destination: dlt's telemetry is off unless
    RUNTIME__DLTHUB_TELEMETRY turns it on (from any folder, not only where `.dlt/config.toml` is read);
    and the files campaign-sync creates (the DuckDB file, pipeline folders, report.html) hold personal
    data: readable by their owner only, whatever the umask."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.umask(os.umask(0) | 0o077)


def _dataset(name: str) -> str:
    """The --dataset name, refused when dlt would store it (or its staging dataset) under another name."""
    stored = SnakeCaseNaming(max_length=DATASET_NAME_LENGTH).normalize_identifier(name)
    if stored != name:
        raise ConfigurationError(
            f"--dataset {name[:80]!r} would be stored as {stored!r}: use lower-case letters, digits and _ "
            f"(at most {DATASET_NAME_LENGTH} characters)"
        )
    return name


def _target(args: argparse.Namespace) -> Target:
    return Target(
        destination=args.destination,
        dataset=_dataset(args.dataset),
        duckdb_path=args.duckdb_path or DEFAULT_DUCKDB_PATH,
        pipelines_dir=args.pipelines_dir,
        progress=args.progress,
    )


def _max_requests_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--max-requests", type=_positive, default=None, metavar="N",
        help="stop cleanly after N requests per account: what was read loads, and the next run resumes",
    )


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, at least 1, not {value!r}")
    return number


def _provider(name: str) -> Provider:
    if name not in PROVIDERS:
        raise ConfigurationError(f"unknown provider {name!r}: choose from {', '.join(PROVIDERS)}")
    return PROVIDERS[name]


def _date(value: str | None, option: str, end_of_day: bool = False) -> datetime | None:
    """A command-line date or timestamp in UTC; a bare date as `--until` means the end of that day."""
    if value is None:
        return None
    try:
        parsed = pendulum.parse(value)
    except (ValueError, pendulum.parsing.exceptions.ParserError):
        parsed = None
    if isinstance(parsed, pendulum.DateTime):
        bare_date = "T" not in value.upper() and " " not in value.strip() and ":" not in value
        if end_of_day and bare_date:
            parsed = parsed.end_of("day")
        return parsed.in_timezone("UTC")
    raise ConfigurationError(f"{option} {value!r} is not a date: use YYYY-MM-DD or ISO 8601")


def cmd_run(args: argparse.Namespace) -> int:
    if args.providers:  # a named provider with no account configured runs its default one, which names what is missing
        chosen = [_provider(name) for name in args.providers]
        accounts = [account for provider in chosen for account in provider.accounts() or [provider]]
    else:
        accounts = [account for provider in PROVIDERS.values() for account in provider.accounts()]
        if not accounts:
            needed = "; ".join(f"{p.name}: " + ", ".join(p.setting(s) for s in p.secrets) for p in PROVIDERS.values())
            raise ConfigurationError(f"no provider is configured; set the secrets of at least one ({needed})")
    if args.account:
        accounts = [account for account in accounts if account.account in args.account]
        if not accounts:
            raise ConfigurationError(f"no configured account named {', '.join(args.account)}")
    # an account without all its secrets is named, and nothing of it is made (no pipeline, no file)
    incomplete = [LoadResult(account.label, error=error) for account in accounts if (error := _incomplete(account))]
    ready = [account for account in accounts if not _incomplete(account)]
    target = _target(args)
    results = []
    if ready:
        with run_locks(ready, target):
            results = run_accounts(ready, target, args.max_requests)
    return report_results([*incomplete, *results], args.quiet)


def _incomplete(account: Provider) -> ConfigurationError | None:
    """The error of an account that cannot run: a name that breaks the rule, or secrets missing (named);
    None when it can."""
    error = account.account_error()
    if error is not None:
        return error
    missing = account.missing_secrets()
    return ConfigurationError(f"{account.label}: missing setting {', '.join(missing)}") if missing else None


def cmd_backfill(args: argparse.Namespace) -> int:
    provider = _provider(args.provider).for_account(args.account)
    since = _date(args.since, "--since")
    until = _date(args.until, "--until", end_of_day=True)
    if since is None:
        raise ConfigurationError("backfill needs --since")
    now = pendulum.now("UTC")
    if since > now:
        raise ConfigurationError(f"--since {args.since} is in the future")
    if until is not None and until < since:
        raise ConfigurationError(f"--until {args.until} is before --since {args.since}")
    if error := _incomplete(provider):
        raise error
    target = _target(args)
    with run_locks([provider], target):
        result = run_provider(provider, target, backfill_since=since, backfill_until=until,
                              max_requests=args.max_requests)
    return report_results([result], args.quiet)


def cmd_plan(args: argparse.Namespace) -> int:
    from pipelines.plan import plan_provider, print_plan

    provider = _provider(args.provider)
    accounts = [provider.for_account(args.account)] if args.account else provider.accounts() or [provider]
    for account in accounts:
        if (error := account.account_error()) is not None:
            raise error
    since = _date(args.since, "--since")
    until = _date(args.until, "--until", end_of_day=True)
    if until is not None and since is None:
        raise ConfigurationError("--until needs --since")
    target = _target(args)
    return print_plan([plan_provider(account, target, since, until) for account in accounts], args.json)


# where the runs of a shell pointed at the sandbox keep dlt's data (their pipelines): in the folder it started in
SANDBOX_DATA_DIR = ".dlt-sandbox"


def cmd_sandbox(args: argparse.Namespace) -> int:
    from sandbox import Faults, Sandbox
    from sandbox.server import PortInUse

    sandbox = Sandbox(
        seed=args.seed,
        scale=args.scale,
        port=args.port,
        latency=args.latency_ms / 1000,
        faults=Faults(error_rate=args.error_rate),
    )
    try:  # Ctrl-C, or `kill` (SIGTERM: `_interruptible`), stops it: its files are removed
        with sandbox, contextlib.suppress(KeyboardInterrupt):
            # a shell script: `campaign-sync sandbox > sandbox.env &` then `. ./sandbox.env`
            print(f"# sandbox serving on {sandbox.url} (seed {args.seed}, scale {args.scale}); Ctrl-C stops it")
            print("# the runs against it keep their pipelines in this folder, apart from any real ones (dlt's data):")
            print(f"export DLT_DATA_DIR={shlex.quote(str(Path(SANDBOX_DATA_DIR).resolve()))}")
            print("# point campaign-sync at it with:")
            for key, value in sandbox.environment().items():
                print(f"export {key}={shlex.quote(value)}")
            for what, settings in sandbox.offered():
                exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in settings.items())
                print(f"# {what} instead: export {exports}")
            sys.stdout.flush()
            sandbox.wait()
    except PortInUse as busy:  # said where the README's commands look too: sourcing the output fails
        print(f"echo {shlex.quote(f'campaign-sync sandbox did not start: {busy}')} >&2; return 1")
        raise CampaignSyncError(f"sandbox: {busy}") from None
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.demo import run_demo

    return run_demo(args)


def cmd_status(args: argparse.Namespace) -> int:
    from pipelines.status import print_status

    accounts = [account for provider in PROVIDERS.values() for account in provider.accounts() or [provider]]
    errors = {account: account.account_error() for account in accounts}
    code = print_status(_target(args), [account for account, error in errors.items() if error is None], args.json)
    misnamed = [error for error in errors.values() if error is not None]
    for error in misnamed:  # the others' status is shown; each of these is named
        print(f"campaign-sync: {printable(str(error), LINE_CHARACTERS)}", file=sys.stderr)
    return ConfigurationError.exit_code if misnamed else code


def cmd_report(args: argparse.Namespace) -> int:
    from pipelines.report import write_report

    path = write_report(_target(args), args.out)
    if not args.quiet:
        print(f"report written to {path}")
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from pipelines.sql import print_query

    return print_query(_target(args), args.query, args.format)


def cmd_abort_pending(args: argparse.Namespace) -> int:
    provider = _provider(args.provider).for_account(args.account)
    target = _target(args)
    dropped = 0
    if pipeline_view(provider, target, None)[1]:  # none pending: nothing is touched or made
        with run_locks([provider], target):
            dropped = abort_pending(provider, target)
    if not args.quiet:
        print(
            f"{provider.label}: {dropped} pending load package(s) dropped; the cursors are back where they were, "
            "so the next run reads that data again" if dropped else f"{provider.label}: no pending load package"
        )
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    wrong = [address for address in args.email if not ADDRESS.match(normalized_address(address))]
    if wrong:
        raise ConfigurationError(f"--email {wrong[0][:80]!r} is not an email address; nothing was forgotten")
    erasure_key()  # missing: refused before anything is created
    target = _target(args)
    every_account = [  # an account whose name breaks the rule never ran: nothing of it to wait for
        account for provider in PROVIDERS.values() for account in provider.accounts() or [provider]
        if account.account_error() is None
    ]
    try:
        with run_locks(every_account, target), dataset_client(target) as client:
            try:  # while no other process loads into the dataset: dlt's load empties the staging tables it erases in
                with dataset_lock(target, lambda: contextlib.nullcontext(client.sql_client)):
                    erased = forget_addresses(client.sql_client, args.email)
            except DestinationException as failure:  # the erasure is all or nothing: none of it was made
                reason = first_line(failure)
                raise CampaignSyncError(f"forget failed: {reason}; nothing was forgotten: run it again") from None
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the erasure is one transaction
        raise Interrupted("interrupted; an erasure stopped before its end is undone in full: run it again") from None
    if not args.quiet:
        providers = sorted({provider for provider, _account, _contact in erased})
        found = f"{len(erased)} contact(s) erased ({', '.join(providers)})" if erased else "no loaded contact has it"
        print(
            f"forgot {len(args.email)} address(es): {found}; later loads and backfills leave their personal data out"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
