"""The ``cpf`` command (see /work/shared/domain/contract.md).

Exit status: 0 success (quarantined lines are reported, not a failure); 1 the run failed or a
check did not hold; 2 usage error (bad option, unreadable path) with a one-line message.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

import click
import typer

try:  # typer >= 0.20 vendors click as typer._click
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover
    from click import exceptions as _cx
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

# Ctrl-C and click's abort: typer >= 0.20 raises its own Abort (typer.exceptions), not click's
_ABORTS = tuple({click.Abort, getattr(typer.exceptions, "Abort", click.Abort),
                 getattr(_cx, "Abort", click.Abort)})

console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


class _OneLineErrors(TyperGroup):
    """Usage errors as one line on stderr, exit 2 (instead of a multi-line panel)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
        except (_cx.UsageError, click.UsageError) as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `cpf`: the help, exit 2
                click.echo(e.format_message(), err=True)
                rv = 2
                return self._exit(rv, standalone_mode)
            cmd = f" {e.ctx.info_name}" if e.ctx is not None and e.ctx.parent is not None else ""
            click.echo(f"cpf{cmd}: error: {e.format_message()} (see cpf{cmd} --help)", err=True)
            rv = 2
        except (_cx.ClickException, click.ClickException) as e:
            click.echo(f"cpf: error: {e.format_message()}", err=True)
            rv = e.exit_code
        except _ABORTS:
            click.echo("cpf: aborted", err=True)
            rv = 1
        except BrokenPipeError:  # `cpf explain … | head`: the reader left; no traceback
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # Python flushes stdout again at exit
            rv = 1
        return self._exit(rv, standalone_mode)

    @staticmethod
    def _exit(rv, standalone_mode: bool):
        rv = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(rv)
        return rv


app = typer.Typer(
    cls=_OneLineErrors,
    help="Yearly crediting of the Compte Personnel de Formation (CPF) from DSN declarations.\n\n"
         "Typical campaign: `cpf run --year 2025 --dsn DSN_DIR --lake DIR --holders h.csv "
         "--balances b.csv`. Analysts then open DIR/cpf.duckdb read-only.\n\n"
         "Exit status: 0 ok; 1 run failed or a check did not hold; 2 usage error.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _usage(msg: str) -> None:
    err.print(f"cpf: error: {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _fail(msg: str, details: list[str] | None = None) -> None:
    err.print(f"cpf: failed: {msg}", highlight=False, soft_wrap=True)
    for d in (details or [])[:50]:
        err.print(f"  {d}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _readable(path: Path | None, what: str) -> Path | None:
    if path is None:
        return None
    if not path.exists():
        _usage(f"{what} {path} does not exist")
    if path.is_dir() and what.startswith("--"):  # a CSV option, not a DSN path (files or folders)
        _usage(f"{what} {path} is a directory, not a CSV file")
    if path.is_file():
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as e:
            _usage(f"{what} {path} is not readable ({e.strerror})")
    return path


def _year(year: int) -> int:
    if not 2015 <= year <= 2100:
        _usage(f"--year {year} is out of range (2015-2100)")
    return year


def _as_of(value: Optional[str], year: int | None = None) -> dt.date:
    """The run date (default today). With ``year``: year N is credited once it is over, in the
    campaign of N+1 (cpf_rules.md §1), so a run date inside or before N is a usage error."""
    if not value:
        from flows.steps import run_day
        day = run_day()
    else:
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            _usage(f"--as-of {value!r} is not an ISO date (YYYY-MM-DD)")
    if year is not None:
        from flows.steps import year_not_over
        if (msg := year_not_over(year, day)) is not None:
            _usage(msg)
    return day


def _lake_dir(lake: Path, must_exist: bool = False, must_hold_lake: bool = False,
              create: bool = False) -> Path:
    """Check DIR before any work. ``must_hold_lake`` (crediting from DIR): a mistyped path
    would otherwise be created and get an empty ledger published in it, exit 0. ``create``
    (ingestion): DIR is made now, so a path that cannot hold it is a usage error up front."""
    if lake.exists() and not lake.is_dir():
        _usage(f"--lake {lake} is not a directory")
    if create:
        try:
            lake.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            _usage(f"--lake {lake} cannot be created ({e.strerror})")
        if not os.access(lake, os.W_OK):
            _usage(f"--lake {lake} is not writable")
    from parsers.lake import data_dir, lake_path
    if must_hold_lake and not lake_path(lake).is_dir():
        _usage(f"--lake {lake} holds no lake (nothing was ingested there: check the path, or "
               "run `cpf ingest` first)")
    lake = data_dir(lake)  # DIR/lake given: DIR (its lock, archive, runs and ledger)
    if must_exist and not (lake / "CURRENT").exists():
        _usage(f"--lake {lake} holds no published run (run `cpf credit` first)")
    if must_exist:
        from pipeline.publish import PublishError, read_current
        try:
            read_current(lake)
        except PublishError as exc:  # explain, replay, query: the damage named, one line
            _fail(str(exc))
    return lake


def _note_missing_inputs(lake: Path, holders: Path | None, balances: Path | None) -> None:
    """Say what a run does without --holders / --balances (``steps.input_notes``)."""
    from flows.steps import input_notes
    from pipeline.publish import PublishError
    try:
        notes = input_notes(lake, holders, balances)
    except PublishError:  # a damaged CURRENT: the run itself says so, in one line
        return
    for note in notes:
        console.print(note)


def _eur(cents: int | None) -> str:
    """``pipeline.run_report.eur``: one way to show cents, in the terminal and the HTML report
    (imported here, not at the top: ``cpf --help`` does not load Polars)."""
    from pipeline.run_report import eur
    return eur(cents)


# --- ingest --------------------------------------------------------------------------------

LAKE_BUCKETS = typer.Option(None, "--lake-buckets", min=1, max=4096, help="Person buckets of a "
                            "NEW lake (default 16; size it for the largest year: people ÷ people "
                            "per shard, see docs/scaling.md). Fixed by the lake's first "
                            "ingestion; a different value for an existing lake is refused.")


def _check_lake_buckets(lake: Path, lake_buckets: int | None) -> None:
    """A bucket count contradicting the lake's is a usage error (exit 2), before any work."""
    from parsers.lake_settings import LakeSettingsError, fix_bucket_count
    try:
        fix_bucket_count(lake, lake_buckets, record=False)
    except LakeSettingsError as exc:
        _usage(str(exc))


def _do_ingest(paths: list[Path], lake: Path, lake_buckets: int | None = None) -> dict:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from flows import steps
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}"),
                  TimeElapsedColumn(), console=err, transient=True) as progress:
        task = progress.add_task("ingesting DSN files", total=None)

        def on_progress(*args, **kwargs):
            progress.advance(task)
        return steps.ingest_files(paths, lake, on_progress=on_progress, n_buckets=lake_buckets)


def _print_ingest(report: dict) -> None:
    t = Table(title="Ingestion")
    t.add_column("")
    t.add_column("count", justify="right")
    for k in ("files_seen", "files_ingested", "files_skipped_duplicate", "declarations",
              "declarations_rejected", "lines_read", "lines_parsed", "lines_quarantined",
              "partitions_compacted"):
        if k in report:
            t.add_row(k.replace("_", " "), str(report[k]))
    if report.get("files_skipped_other"):
        t.add_row("files skipped (in a folder, not named .dsn/.txt/.edi/.xml)",
                  str(report["files_skipped_other"]))
    console.print(t)
    if report.get("files_skipped_other"):  # the norm sets no file name: say which were left
        more = report["files_skipped_other"] - len(report.get("skipped_other_examples", []))
        console.print("skipped: " + ", ".join(report.get("skipped_other_examples", []))
                      + (f" (+{more} more)" if more > 0 else "")
                      + "; name a file explicitly to ingest it whatever its name")
    dup = report.get("skipped_duplicate_examples") or []
    if dup:  # same bytes as a file already in the lake (or earlier in this call)
        more = report["files_skipped_duplicate"] - len(dup)
        console.print("same bytes as a file already in the lake or earlier in this call, not "
                      "ingested again: " + ", ".join(dup)
                      + (f" (+{more} more)" if more > 0 else ""))
    for y, n in (report.get("published_years_changed") or {}).items():
        console.print(f"[yellow]published year {y} may change: {n} DSN file(s) its latest run "
                      f"did not see; the next campaign reruns it (rerun_years_back), or "
                      f"cpf credit --year {y} --lake …[/]")
    by_reason = report.get("quarantine_by_reason") or {}
    if by_reason:
        q = Table(title="Quarantined, by reason")
        q.add_column("reason")
        q.add_column("quarantine rows", justify="right")  # lines; one per file for file-scope reasons
        for k, v in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
            q.add_row(str(k), str(v))
        console.print(q)
    warned = report.get("warnings_by_reason") or {}
    if warned:  # parsed lines flagged (damaged characters, unknown norm version, test envoi,
        # a signalement…): said here too, not only in the run report (ingestion pass L1)
        w = Table(title="Warnings, by reason")
        w.add_column("reason")
        w.add_column("rows", justify="right")
        for k, v in sorted(warned.items(), key=lambda kv: (-kv[1], kv[0])):
            w.add_row(str(k), str(v))
        console.print(w)


@app.command()
def ingest(
    paths: List[Path] = typer.Argument(..., help="DSN files or folders (flat NEODeS or N4DS XML)."),
    lake: Path = typer.Option(..., "--lake", help="The data directory DIR (created if needed)."),
    lake_buckets: Optional[int] = LAKE_BUCKETS,
):
    """Parse DSN files into the lake DIR; print counts of files, declarations, lines parsed and
    quarantined. Already-ingested files (same sha256) are skipped."""
    for p in paths:
        _readable(p, "DSN path")
    lake = _lake_dir(lake, create=True)
    _check_lake_buckets(lake, lake_buckets)
    try:
        report = _do_ingest(paths, lake, lake_buckets)
    except Exception as exc:
        _fail(f"ingestion failed: {exc}", getattr(exc, "errors", None))
    _print_ingest(report)


# --- credit -----------------------------------------------------------------------------------

def _print_credit(out) -> None:
    m = out.manifest
    c, tot = m["counts"], m["totals_cents"]
    t = Table(title=f"Year {m['year']} — run {m['run_id']}")
    t.add_column("")
    t.add_column("value", justify="right")
    t.add_row("people examined", str(c["examined"]))
    t.add_row("people credited", str(c["credited"]))
    t.add_row("not creditable", str(c["uncreditable"]))
    from pipeline.run_report import amount_text
    hours = m.get("totals_hours", {})  # an hour-era year (2015-2018) credits hours
    t.add_row("credited for the year", amount_text(tot["credit"], hours.get("credit")))
    t.add_row("entries posted by this run", str(c["entries"]))
    for k, n in c["entries_by_kind"].items():
        amount = amount_text(tot["entries_by_kind"][k], hours.get("entries_by_kind", {}).get(k))
        t.add_row(f"  {k}", f"{n} ({amount})")
    ignored = m.get("notes", {}).get("opening_ignored_already_held")
    if ignored:  # the contract: --balances is for accounts the ledger does not hold yet
        t.add_row("--balances rows ignored (account already in the ledger)", str(ignored))
    t.add_row("accounts", str(c["accounts"]))
    t.add_row("earned balance (all accounts)", _eur(tot["earned_balance"]))
    if c.get("dotation_lots"):
        t.add_row("dotation balance", _eur(tot["dotation_balance"]))
    console.print(t)
    from flows.run_notes import run_notes
    for _, note in run_notes(out.run_dir):
        console.print(note)
    root = Path(out.run_dir).parent.parent
    console.print(f"snapshot: {out.run_dir}\nreport:   {Path(out.run_dir) / 'report' / 'index.html'}"
                  f"\ncatalog:  {root / 'cpf.duckdb'}  (open it read-only; ready queries: "
                  f"cpf query NAME --lake {root})")


def _expected_failures() -> tuple[type[Exception], ...]:
    """The failures cpf explains in one line (damaged storage, bad inputs, a refused run):
    their Python traceback tells an operator nothing."""
    from flows import steps
    from flows.campaign import WindowClosed
    from parsers.archive import ArchiveError
    from parsers.ingest import UnreadableInputs
    from parsers.lake import LakeDamaged
    from parsers.lake_settings import LakeSettingsError
    from pipeline.ledger import LedgerCheckError
    from pipeline.publish import PublishError
    return (steps.InputError, WindowClosed, ArchiveError, LakeDamaged, LakeSettingsError,
            LedgerCheckError, PublishError, UnreadableInputs)


class _NoTracebackFor(logging.Filter):
    """Prefect logs a failed flow's exception with its traceback (once per flow and
    subflow) before cpf prints the one-line cause: for the expected failures, the log line
    stays and the traceback goes."""

    def __init__(self, kinds: tuple[type[Exception], ...]):
        super().__init__()
        self.kinds = kinds

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.kinds):
            record.exc_info, record.exc_text = None, None
        return True


def _do_credit(year, lake, holders, balances, dotations, as_of, buckets=None):
    from flows import steps
    from flows.runners import plan
    from parsers.lake import LakeDamaged
    from pipeline.ledger import LedgerCheckError
    from pipeline.publish import PublishError
    try:
        p = plan(lake, runner="thread", buckets=buckets)
        shards = p.shards
        if p.note():
            err.print(f"cpf: note: {p.note()}", highlight=False, soft_wrap=True)
        with err.status("crediting") as status:
            if shards > 1:  # bounded memory, one shard after the other, no Prefect
                out = steps.credit_sharded(
                    lake, year, shards, holders=holders, balances=balances, dotations=dotations,
                    as_of=as_of, on_step=lambda s: status.update(f"year {year}: {s}"))
            else:
                out = steps.credit(lake, year, holders=holders, balances=balances,
                                   dotations=dotations, as_of=as_of,
                                   on_step=lambda s: status.update(s))
    except steps.InputError as exc:
        _fail("bad input", exc.errors)
    except LedgerCheckError as exc:
        _fail("ledger check failed, nothing published", exc.errors)
    except (PublishError, LakeDamaged) as exc:
        _fail(str(exc), getattr(exc, "errors", None))
    except OSError as exc:  # a read-only DIR, a full disk: the file, not a traceback
        _fail(f"{exc.strerror or exc}: {exc.filename or ''} (nothing published)")
    return out


HOLDERS = typer.Option(None, "--holders", help="Holders' low-qualified declarations CSV "
                       "(nir,low_qualified_declared_on,low_qualified_withdrawn_on).")
BALANCES = typer.Option(None, "--balances", help="Earned balances before the campaign for "
                        "accounts the ledger does not hold yet (nir,earned_balance_cents).")
DOTATIONS = typer.Option(None, "--dotations", help="Funders' dotations CSV (funder_id,nir,"
                         "amount_cents,received_date,certification_codes,deadline,refund).")
AS_OF = typer.Option(None, "--as-of", help="Run date YYYY-MM-DD (dotation expiry; default "
                     "today). Recorded in the manifest.")


RUNNER = typer.Option(None, "--runner", help="Task runner: thread | process | dask | auto "
                     "(env CPF_RUNNER; auto = process for a big lake, else thread).")
DASK_ADDRESS = typer.Option(None, "--dask-address", help="Scheduler address of an existing Dask "
                           "cluster (env CPF_DASK_ADDRESS; DIR must be shared storage). Without "
                           "it, --runner dask starts a LocalCluster.")
BUCKETS = typer.Option(None, "--buckets", min=1, help="Crediting shards: lake buckets b with "
                      "b % N == s form shard s (env CPF_BUCKETS; default: 1 for a small lake, "
                      "else one per lake bucket).")
MAX_WORKERS = typer.Option(None, "--max-workers", min=1, help="Shards run concurrently at most "
                           "(env CPF_MAX_WORKERS; default CPU count).")
MAX_MEMORY = typer.Option(None, "--max-memory-gb", min=0.5, help="Memory budget of the run (env "
                          "CPF_MAX_MEMORY_GB; default 75% of RAM): caps concurrent shards and "
                          "raises the shard count. See docs/scaling.md.")


@app.command()
def credit(
    year: int = typer.Option(..., "--year", help="Activity year N to credit."),
    lake: Path = typer.Option(..., "--lake", help="The data directory DIR."),
    holders: Optional[Path] = HOLDERS,
    balances: Optional[Path] = BALANCES,
    dotations: Optional[Path] = DOTATIONS,
    as_of: Optional[str] = AS_OF,
    buckets: Optional[int] = BUCKETS,
):
    """Compute year N's credits from what the lake holds, post the DIFFERENCE with the ledger
    (a rerun on unchanged data posts nothing), check balances, publish the snapshot and the
    DuckDB catalog atomically."""
    _year(year)
    lake = _lake_dir(lake, must_hold_lake=True)
    for p, w in ((holders, "--holders"), (balances, "--balances"), (dotations, "--dotations")):
        _readable(p, w)
    day = _as_of(as_of, year)  # usage errors first: one line, nothing else printed
    _note_missing_inputs(lake, holders, balances)
    out = _do_credit(year, lake, holders, balances, dotations, day, buckets)
    _print_credit(out)


# --- run (Prefect) --------------------------------------------------------------------------

@app.command()
def run(
    year: int = typer.Option(..., "--year", help="Activity year N to credit."),
    dsn: List[Path] = typer.Option(..., "--dsn", help="DSN files or folders (repeat, or list "
                                   "several after --dsn)."),
    lake: Path = typer.Option(..., "--lake", help="The data directory DIR."),
    holders: Optional[Path] = HOLDERS,
    balances: Optional[Path] = BALANCES,
    dotations: Optional[Path] = DOTATIONS,
    as_of: Optional[str] = AS_OF,
    enforce_window: bool = typer.Option(False, "--enforce-window", help="Refuse runs outside "
                                        "the campaign window (15 April - 20 June of N+1, "
                                        "flows/operations.yaml) unless --force."),
    force: bool = typer.Option(False, "--force", help="Run even outside the campaign window."),
    runner: Optional[str] = RUNNER,
    dask_address: Optional[str] = DASK_ADDRESS,
    buckets: Optional[int] = BUCKETS,
    max_workers: Optional[int] = MAX_WORKERS,
    max_memory_gb: Optional[float] = MAX_MEMORY,
    lake_buckets: Optional[int] = LAKE_BUCKETS,
    more: List[Path] = typer.Argument(None, hidden=True, metavar="PATH",
                                      help="More DSN files or folders after --dsn."),
):
    """Ingest + credit as ONE Prefect flow run (local ephemeral mode when no Prefect server is
    configured; then Prefect starts a temporary server, which costs some seconds)."""
    _year(year)
    paths = list(dsn) + list(more or [])
    for p in paths:
        _readable(p, "DSN path")
    lake = _lake_dir(lake, create=True)
    for p, w in ((holders, "--holders"), (balances, "--balances"), (dotations, "--dotations")):
        _readable(p, w)
    day = _as_of(as_of, year)
    _check_lake_buckets(lake, lake_buckets)
    from flows.runners import RUNNERS
    if runner is not None and runner not in RUNNERS:
        _usage(f"--runner {runner!r} is not one of {', '.join(RUNNERS)}")
    # local ephemeral mode: a loaded machine may need more than Prefect's default 20 s
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # no anonymous usage heartbeat from the temporary server: this machine has no internet,
    # and on a first run its write raced the flow's on the new SQLite file ("database is
    # locked" tracebacks on a run that succeeded)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.campaign import WindowClosed, campaign, check_window, today_paris
    if enforce_window:  # refused here at once (the flow checks again, for deployments), on
        try:  # today's date whatever --as-of says (operator acceptance pass F3)
            check_window(year, today_paris(), force)
        except WindowClosed as exc:
            _fail(str(exc))
    from flows import steps
    quiet = _NoTracebackFor(_expected_failures())
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(quiet)
    try:  # bad CSV rows fail here, in seconds, before the DSN are ingested
        with err.status("checking the CSV inputs"):
            steps.check_inputs(holders, balances, dotations)
    except steps.InputError as exc:
        _fail("bad input", exc.errors)
    try:
        with err.status("running the campaign flow (Prefect)"):
            result = campaign(year=year, dsn=[str(p) for p in paths], lake=str(lake),
                              holders=str(holders) if holders else None,
                              balances=str(balances) if balances else None,
                              dotations=str(dotations) if dotations else None,
                              as_of=day.isoformat(), enforce_window=enforce_window, force=force,
                              runner=runner, buckets=buckets, dask_address=dask_address,
                              max_workers=max_workers, max_memory_gb=max_memory_gb,
                              lake_buckets=lake_buckets)
    except WindowClosed as exc:
        _fail(str(exc))
    except Exception as exc:
        details = getattr(exc, "errors", None)
        _fail(f"campaign flow failed: {exc}", details)
    _print_ingest(result["ingest"])
    from flows.campaign import credit_line
    for out in result.get("reruns", []):  # the other years the campaign reran, in order
        why = out.get("rerun_reason")
        console.print(f"{'rerun (' + why + ')' if why else 'run'}: "
                      f"{credit_line(out['manifest'], out['run_dir'])}")
    from flows.steps import CreditOutcome
    plan_used = result["credit"].pop("plan", None)
    result["credit"].pop("rerun_reason", None)
    _print_credit(CreditOutcome(**result["credit"]))
    if plan_used:
        console.print(f"runner {plan_used['runner']}, {plan_used['shards']} shard(s), "
                      f"{plan_used['workers']} concurrent")


# --- explain ---------------------------------------------------------------------------------

def _threshold_rounding(p) -> str:
    """How the year's ½ test reads the ratio (``half_threshold_ratio_decimals``): exact, or
    rounded to d decimals, as the parameters in force for that year (``p``) say."""
    d = p.threshold_ratio_decimals if p is not None else None
    return "" if d is None else f", rounded half-up to {d} decimals,"


def _below_half(row: dict) -> bool:
    """The exact ratio ratio12_num / (12 × ratio12_den) is below ½ (the published values)."""
    num, den = row.get("ratio12_num"), row.get("ratio12_den")
    if num is None or not den:
        return float(row.get("worked_ratio") or 0) < 0.5
    return 2 * int(num) < 12 * int(den)


def _derivation_story(row: dict) -> list[str]:
    """The derivation in words an auditor reads top-down; values only, nothing recomputed."""
    from pipeline.parameters import params_for_year
    g = row.get
    p = params_for_year(int(g("year"))) if g("year") is not None else None
    hours = (g("paid_hours_h") or 0) / 100
    days = (g("paid_days_h") or 0) / 100
    flags = [k for k in ("low_qualified", "boeth", "esat") if g(k)]
    lines = [
        f"1. Time: {g('months_counted')} month(s) counted over {g('contracts_count')} contract(s) at "
        f"{g('employers_count')} employer(s)"
        + (" declared in the year (the time counted comes from DSN of other years: an absence "
           "or a recall dated in the year)" if not g("contracts_count") and g("months_counted")
           else "")
        + f"; paid {hours:,.2f} h / {days:,.2f} days; "
        f"assimilated absence days {g('absence_days')}"
        + (f" (+ {g('sans_notion_absence_days')} on pay without time basis, step 2)"
           if g("sans_notion_absence_days") else "")
        + f"; presence-fallback months {g('presence_months')}; "
        + (f"monthly reference(s) {g('references')}." if g("references")
           else "no monthly reference (remuneration route only)."),
        "2. Ratio = Σ months (counted / monthly reference) / 12"
        + (f" + sans-notion remuneration {_eur(g('sans_notion_remuneration_cents') or 0)}"
           + (f" + {g('sans_notion_absence_days')} day(s) of assimilated absence on it counted "
              f"as ≈ {_eur(round(g('sans_notion_absence_credited') * 100))} (their share of "
              "2 080/12 × SMIC a "
              "month, never beyond it less the month's pay)"
              if g("sans_notion_absence_days") else "")
           + f" / (2 080 × SMIC = {_eur(round(g('smic_reference_cents') or 0))})"
           if g("sans_notion_remuneration_cents") or g("sans_notion_absence_days") else "")
        + f" = {g('ratio_exact')} ≈ {float(g('worked_ratio') or 0):.6f}.",
        f"3. Category {g('category')} ({', '.join(flags) or 'no special status'}): annual amount "
        f"{_eur(g('annual_amount_cents') or 0)}"
        + (" = the category's amount × the ratio, rounded up to the cent (ratio below 0.5)"
           if _below_half(row) else " (the category's full amount)")
        + f", ceiling {_eur(g('ceiling_cents') or 0)} (full amount when the "
        f"ratio{_threshold_rounding(p)} is ≥ 0.5; else amount × ratio rounded up to the cent).",
    ]
    if g("category") == "esat" and p is not None and not p.esat_prorated:
        lines[2] = (f"3. Category esat ({', '.join(flags)}): annual amount "
                    f"{_eur(g('annual_amount_cents') or 0)}, full or part time, never prorated "
                    f"(L6323-33, R6323-29), ceiling {_eur(g('ceiling_cents') or 0)}.")
    if g("annual_amount_hours") is not None:  # hour era (2015-2018): amounts in whole hours
        tier = f" {p.hour_first_tier_cap} h" if p is not None else ""
        lines[2] = (f"3. Hour era: annual amount {g('annual_amount_hours')} h while the balance "
                    f"is under the first tier{tier}, {g('annual_amount_hours_second_tier')} h a "
                    "year above it, "
                    f"ceiling {g('ceiling_hours')} h (prorated below full time, rounded up to the "
                    "hour; no ½ threshold).")
    if g("credit_hours") is not None:
        lines.append(
            f"4. Ceiling: balance {g('balance_before_hours')} h + credit {g('credit_hours')} h "
            f"= {g('balance_after_hours')} h (converted at 15 €/h on 1 January 2019).")
        if g("former_nirs_balance_hours") is not None:
            lines[-1] += (f" The balance includes {g('former_nirs_balance_hours')} h held under "
                          "this person's former NIR(s) (S21.G00.31.008).")
    elif g("credit_cents") is not None:
        withheld = g("late_increase_withheld_cents")
        by_ceiling = (g("credit_cents") or 0) + (withheld or 0)
        lines.append(
            f"4. Ceiling: min({_eur(g('annual_amount_cents') or 0)}, max(0, {_eur(g('ceiling_cents') or 0)} − "
            f"balance {_eur(g('balance_before_cents') or 0)})) = "
            + (f"{_eur(by_ceiling)}, of which {_eur(withheld)} found after later years were "
               f"credited exceeds today's room under the ceiling (an increase is a crediting made "
               f"today, docs/operations.md): credit {_eur(g('credit_cents'))}"
               if withheld else f"credit {_eur(g('credit_cents'))}")
            + f"; balance after {_eur(g('balance_after_cents') or 0)}.")
        if g("former_nirs_balance_cents") is not None:
            lines[-1] += (f" The balance includes {_eur(g('former_nirs_balance_cents'))} held "
                          "under this person's former NIR(s) (S21.G00.31.008).")
    return lines


def _contract_month_terms(lake: Path, nir: str, year: int, published: dict | None) -> None:
    """Per contract and month, the terms the ratio sums (counted / monthly reference),
    recomputed from the lake for this person's bucket only, then checked against the published
    ratio: an auditor sees each month's contribution and whether the lake still agrees."""
    import polars as pl

    from pipeline.lake_reads import nir_buckets
    from pipeline.parameters import params_for_year
    from pipeline.worked_time import worked_time

    bucket = nir_buckets(lake, pl.Series([nir]))["bucket"].item()
    wt = worked_time(lake, year, params_for_year(year), buckets=[bucket], keep_terms=True)
    cm = wt.contract_months.filter(pl.col("nir") == nir)
    if cm.height:  # a sans-notion-only person has none: the ratio check below still runs
        t = Table(title="Contract-months: counted / monthly reference (recomputed from the lake)")
        for c in ("establishment", "contract", "month", "unit", "paid", "presence",
                  "absence days", "absence credited", "other absence days", "counted",
                  "reference", "term"):
            t.add_column(c, no_wrap=True)
        for r in cm.iter_rows(named=True):
            t.add_row(r["siret"] or "", r["contract_no"] or "", f"{r['month']:%Y-%m}",
                      r["family"] + ("" if r["own_family"] else " (53.003)"),
                      f"{r['paid_h'] / 100:.2f}", f"{r['presence_h'] / 100:.2f}",
                      str(r["abs_days"]), f"{r['absence_credited_h'] / 100:.2f}",
                      str(r["other_abs_days"]), f"{r['counted_h'] / 100:.2f}",
                      r["ref_label"] or "", f"{r['term_num'] / r['term_den']:.6f}")
        console.print(t)
    if published is None or published.get("ratio12_num") is None:
        return
    again = wt.persons.filter(pl.col("nir") == nir).collect()
    if again.height == 0:
        console.print("[yellow]the lake no longer yields this person for the year[/]")
        return
    a = again.row(0, named=True)
    same = (int(a["ratio12_num"]) * int(published["ratio12_den"])
            == int(published["ratio12_num"]) * int(a["ratio12_den"]))
    if same:
        console.print(f"Recomputed ratio {a['ratio12_num']}/{12 * a['ratio12_den']} equals the "
                      "published one.")
    else:
        console.print(f"[yellow]Recomputed ratio {a['ratio12_num']}/{12 * a['ratio12_den']} "
                      f"differs from the published {published['ratio_exact']}: the lake changed "
                      "since the run (late corrections); `cpf credit` posts the difference.[/]")


def _nir_changes(lake: Path, nir: str, year: int) -> list[str]:
    """What ties this NIR to another (S21.G00.31.008 ancien NIR): the declaring lines, and
    whether the engine applies the link (``steps.nir_links``: chains followed, conflicting
    links left out), so an auditor can follow a credit across a NIR change both ways."""
    import polars as pl

    from flows.steps import nir_links
    from pipeline.lake_reads import scan_table

    if not (lake / "lake" / "individual_changes").exists():
        return []
    rows = (scan_table(lake, "individual_changes")
            .filter((pl.col("nir") == nir) | (pl.col("old_nir") == nir))
            .join(scan_table(lake, "declarations").select("decl_id", "source_file"),
                  on="decl_id", how="left")
            .select("nir", "old_nir", "change_date", "decl_month", "line_no", "source_file")
            .unique().sort("decl_month", "source_file", "line_no").collect())
    if rows.height == 0:
        return []
    links = dict(nir_links(lake).iter_rows())  # old NIR -> the NIR its rows count for
    out = []
    for r in rows.iter_rows(named=True):
        where = (f"S21.G00.31 block (31.008 = former NIR) from line {r['line_no']} of "
                 f"{Path(r['source_file'] or '?').name} (DSN of {r['decl_month']:%Y-%m}"
                 + (f", change dated {r['change_date']}" if r["change_date"] else "") + ")")
        now = links.get(r["old_nir"])
        applied = (f"its rows count for {now}" if now else
                   "the link is not applied (it conflicts with another link of one of these "
                   "NIRs: each NIR is credited on its own)")
        if r["nir"] == nir:
            out.append(f"Former NIR {r['old_nir']}: {where}; {applied}.")
        else:
            out.append(f"{nir} is a former NIR of {r['nir']}: {where}; {applied}"
                       + (f" (cpf explain {now} --year {year})." if now else "."))
    return out


def _file_names(lake: Path, decl_ids) -> dict[str, str]:
    """decl_id -> the name of the file it came in (the declarations view's source_file)."""
    import polars as pl

    from pipeline.lake_reads import scan_table
    rows = (scan_table(lake, "declarations").filter(pl.col("decl_id").is_in(decl_ids.implode()))
            .select("decl_id", "source_file").unique("decl_id").collect())
    return {d: Path(f).name for d, f in rows.iter_rows() if f}


def _absences(lake: Path, nir: str, year: int) -> None:
    """The arrêts and suspensions behind the contract-months' absence days
    (``explanations.person_absences``): which motif, counted or not, the period used, where
    it was declared, and whether an annulation cancelled it."""
    from pipeline.explanations import person_absences
    from pipeline.parameters import params_for_year

    ab = person_absences(lake, nir, year, params_for_year(year))
    if ab.height == 0:
        return
    files = _file_names(lake, ab["decl_id"])
    t = Table(title="Absences meeting the year (S21.G00.60 arrêts, S21.G00.65 suspensions; "
              "counted = assimilated to worked time, L6323-12)")
    for c in ("establishment", "contract", "block", "motif", "counted", "from", "to",
              "declared in", "latest line", "cancelled"):
        t.add_column(c, overflow="fold")
    for r in ab.iter_rows(named=True):
        months = r["declared_in"]
        src = files.get(r["decl_id"], "?")
        t.add_row(r["siret"] or "", r["contract_no"] or "", r["block"], r["motif"] or "",
                  ("no (annulled)" if r["cancelled_in"] else "yes") if r["counted"] else "no",
                  f"{r['start'] or ''}", f"{r['end'] or 'open'}",
                  f"{months[0]:%Y-%m}" + (f"..{months[-1]:%Y-%m} ({len(months)} DSN)"
                                          if len(months) > 1 else ""),
                  f"{src}:{r['line_no']}",
                  f"yes (DSN of {r['cancelled_in']:%Y-%m})"
                  if r["cancelled_in"] else "")
    console.print(t)


def _recalls_and_set_aside(lake: Path, nir: str, year: int) -> None:
    """Time a DSN declares for another month than its own (recalls: a month above may show
    more than its DSN says), and the person's input lines the quarantine set aside."""
    from pipeline.explanations import person_recalls, person_set_aside
    from pipeline.parameters import params_for_year

    rec = person_recalls(lake, nir, year, params_for_year(year))
    if rec.height:
        files = _file_names(lake, rec["decl_id"])
        t = Table(title="Time declared in the DSN of another month than its pay period "
                  "(recalls, shifted pay: counted in the period's month above)")
        for c in ("establishment", "contract", "period", "declared in", "time", "first line"):
            t.add_column(c, overflow="fold")
        for r in rec.iter_rows(named=True):
            t.add_row(r["siret"] or "", r["contract_no"] or "", f"{r['period_month']:%Y-%m}",
                      f"{r['decl_month']:%Y-%m}", f"{r['measure_h'] / 100:+.2f}",
                      f"{files.get(r['decl_id'], '?')}:{r['line_no']}")
        console.print(t)
    q = person_set_aside(lake, nir, year)
    if q.height:
        t = Table(title="This person's input lines set aside (quarantine view; a 'warning' "
                  "line is still used)")
        for c in ("month", "line", "rubrique", "reason", "scope"):
            t.add_column(c, overflow="fold")
        for r in q.iter_rows(named=True):
            t.add_row(f"{r['decl_month']:%Y-%m}" if r["decl_month"] else "",
                      f"{Path(r['source_file'] or '?').name}:{r['line_no']}",
                      r["rubrique"] or "", r["reason"] or "", r["scope"] or "")
        console.print(t)


def _rejected_dsn(lake: Path, siret: str, months: str) -> str:
    """A month 'no current DSN declares' may have had its DSN received and rejected: say so,
    with the cause, rather than let the auditor believe nothing arrived."""
    import polars as pl

    from pipeline.lake_reads import scan_table
    wanted = months.split()
    rej = (scan_table(lake, "declarations")
           .filter((pl.col("siret") == siret) & pl.col("rejected").fill_null(False)
                   & pl.col("decl_month").dt.strftime("%Y-%m").is_in(wanted))
           .select(pl.col("decl_month").dt.strftime("%Y-%m").alias("m"), "reject_reason",
                   "source_file").unique().sort("m").collect())
    return "".join(f" A DSN of {r['m']} was received and rejected ({r['reject_reason']}; "
                   f"{Path(r['source_file'] or '?').name}, see the quarantine view)."
                   for r in rej.iter_rows(named=True))


def _source_declarations(lake: Path, nir: str, year: int) -> None:
    """The current declarations the person's rows come from (``explanations.source_declarations``,
    this NIR's bucket only), with the name of the file each came in (full path: the
    ``declarations`` view's source_file): where an auditor looks next."""
    import polars as pl

    from pipeline.lake_reads import scan_table
    from pipeline.explanations import source_declarations

    src = source_declarations(lake, nir, year)
    if src.height == 0:
        return
    files = (scan_table(lake, "declarations")
             .filter(pl.col("decl_id").is_in(src["decl_id"].implode()))
             .select("decl_id", "source_file", "decl_type").unique("decl_id").collect())
    rows = (src.group_by("decl_id", "decl_month", "siret")
            .agg(pl.col("table").unique().sort().str.join(", "))
            .join(files, on="decl_id", how="left").sort("decl_month", "siret", "decl_id"))
    t = Table(title="Declarations used (current versions; the rows seen in each). From December "
              "N-1 on: a later month may carry a pay recall or an absence dated in N")
    for c in ("month", "establishment", "decl_id", "type", "rows", "file"):
        t.add_column(c, no_wrap=True)
    for r in rows.iter_rows(named=True):
        t.add_row(f"{r['decl_month']:%Y-%m}", r["siret"] or "", r["decl_id"], r["decl_type"] or "",
                  r["table"], Path(r["source_file"]).name if r["source_file"] else "")
    console.print(t)


@app.command()
def explain(
    nir: str = typer.Argument(..., help="The person's 13-character NIR (or the NTT of a "
                              "person declared without one)."),
    year: int = typer.Option(..., "--year", help="Activity year N."),
    lake: Path = typer.Option(..., "--lake", help="The data directory DIR."),
):
    """The derivation of one person's credit, as the engine kept it when the run was published
    (contracts, months, time, absences, ratio, category, amount, ceiling) and the ledger entries.
    The contract-month terms are recomputed for this person's bucket and checked against the
    published ratio. A person examined but not creditable (NTT only, out of scope…) gets the
    reason the run reported."""
    import polars as pl

    from pipeline import publish as pub
    _year(year)
    lake = _lake_dir(lake, must_exist=True)
    run_id = pub.latest_run_for_year(lake, year)
    if run_id is None:
        _fail(f"no published run for year {year} in {lake}")
    from parsers.lake import LakeDamaged, check_integrity
    try:  # what explain recomputes from the lake would silently miss the lost rows
        check_integrity(lake)
    except LakeDamaged as exc:
        err.print(f"[yellow]warning: {exc} (or an ingestion is writing it now): the tables "
                  "recomputed from the lake below may miss rows; the published figures stand."
                  "[/]", soft_wrap=True)
        for e in exc.errors[:10]:
            err.print(f"  {e}", highlight=False, soft_wrap=True)
    unc = pl.read_parquet(pub.run_dir(lake, run_id) / "uncreditable.parquet").filter(
        (pl.col("nir") == nir) | (pl.col("ntt") == nir))
    if len(nir) != 13 and unc.height == 0:
        _usage(f"NIR {nir!r} must have 13 characters (or be the NTT of a person the run reported)")
    ac = pl.read_parquet(pub.run_dir(lake, run_id) / "annual_credits.parquet").filter(
        pl.col("nir") == nir)
    entries = pub.published_entries(lake).filter(pl.col("nir") == nir)
    for r in unc.iter_rows(named=True):  # examined, not creditable: say why
        console.print(f"[bold]{nir}[/] — year {year} — run {run_id}: not creditable, "
                      f"{r['reason']} ({r['detail']})")
    changes = _nir_changes(lake, nir, year) if len(nir) == 13 else []
    if ac.height == 0 and entries.height == 0:
        if unc.height:
            return
        if changes:  # a former NIR: its rows and balance count for the current one
            console.print(f"[bold]{nir}[/] — year {year} — run {run_id}: not examined under "
                          "this NIR")
            for line in changes:
                console.print(line)
            return
        from parsers.validate import nir_valid
        if not pl.select(nir_valid(pl.lit(nir))).item():  # a typo, not an unknown person
            _usage(f"{nir!r} is not a NIR (S21.G00.30.001: the norm's pattern, no all-nines "
                   "placeholder) nor the NTT of a person the run reported")
        _fail(f"{nir} was not examined for year {year} (run {run_id}) and has no entries")
    console.print(f"[bold]{nir}[/] — year {year} — run {run_id}")
    if ac.height:
        row = ac.row(0, named=True)
        for line in _derivation_story(row):
            console.print(line)
        t = Table(title="Derivation (every column the engine kept)", show_header=False)
        t.add_column("what")
        t.add_column("value", overflow="fold")
        for k, v in row.items():
            if k.endswith("_cents") and isinstance(v, int):
                v = f"{_eur(v)}  ({v})"
            elif isinstance(v, (list, dict)):
                v = json.dumps(v, default=str, ensure_ascii=False, indent=1)
            t.add_row(k, str(v))
        console.print(t)
    else:
        console.print(f"not examined for {year} in run {run_id}")
    bal = pl.read_parquet(pub.run_dir(lake, run_id) / "balances.parquet")
    if "current_nir" in bal.columns:  # one person, several NIRs (S21.G00.31.008)
        now = bal.filter(pl.col("nir") == nir)["current_nir"].drop_nulls()
        if now.len():
            console.print(f"former NIR of {now[0]} (S21.G00.31.008): its DSN rows count for "
                          f"{now[0]}, and its balance counts in that person's ceiling "
                          f"(cpf explain {now[0]} --year {year})")
        for r in bal.filter(pl.col("current_nir") == nir).iter_rows(named=True):
            console.print(f"former NIR {r['nir']} (S21.G00.31.008) holds earned "
                          f"{_eur(r['earned_balance_cents'])}, counted in this person's ceiling")
    for line in changes:
        console.print(line)
    _contract_month_terms(lake, nir, year, ac.row(0, named=True) if ac.height else None)
    _absences(lake, nir, year)
    _recalls_and_set_aside(lake, nir, year)
    _source_declarations(lake, nir, year)
    emp = pl.read_parquet(pub.run_dir(lake, run_id) / "employments.parquet").filter(
        pl.col("nir") == nir)
    if emp.height:
        t = Table(title="Employers declared in the year")
        for c in emp.columns[2:]:
            t.add_column(c)
        for r in emp.iter_rows():
            t.add_row(*[str(x) for x in r[2:]])
        console.print(t)
        undeclared = (emp.filter(pl.col("months_undeclared") > 0)
                      if "months_undeclared" in emp.columns else emp.clear())  # older runs
        from flows.run_notes import UNDECLARED_COUNTS
        for r in undeclared.iter_rows(named=True):
            console.print(f"Under contract at {r['siret']} in {r['undeclared_months']} but no "
                          f"current DSN declares it: those months {UNDECLARED_COUNTS}."
                          + _rejected_dsn(lake, r["siret"], r["undeclared_months"]))
    t = Table(title="Ledger entries (all years)")
    for c in ("year", "kind", "sub_ledger", "amount", "run_id", "entry_id"):
        t.add_column(c, no_wrap=True)
    t.add_column("source", overflow="ellipsis", no_wrap=True)
    for r in entries.sort("year", "run_id", "kind").iter_rows(named=True):
        amount = (f"{r['amount_hours']} h" if r.get("amount_hours") is not None
                  and not r.get("amount_cents") else _eur(r["amount_cents"]))
        t.add_row(str(r["year"]), r["kind"], r["sub_ledger"], amount,
                  r["run_id"], r["entry_id"][:12], (r["source"] or "")[:60])
    console.print(t)
    earned = entries.filter(pl.col("sub_ledger") == "earned")["amount_cents"].sum()
    dot = entries.filter(pl.col("sub_ledger") == "dotation")["amount_cents"].sum()
    hours = (entries.filter(pl.col("sub_ledger") == "earned_hours")["amount_hours"].sum()
             if "amount_hours" in entries.columns else 0)
    console.print(f"earned balance {_eur(earned)} · dotation balance {_eur(dot)}"
                  + (f" · unconverted hours {hours} h" if hours else "")
                  + (" (this NIR's own account: the ceiling above also counts what its "
                     "former NIRs hold)" if any(c.startswith("Former NIR") for c in changes)
                     else ""))


# --- replay --------------------------------------------------------------------------------------

@app.command()
def replay(
    year: int = typer.Option(..., "--year", help="Activity year N."),
    lake: Path = typer.Option(..., "--lake", help="The data directory DIR."),
):
    """Recompute year N from the archived inputs (DIR/archive) and the parameters; exit 0 only
    if the result is identical to the posted ledger (same sorted rows, same checksums), else
    print the differences (a tampered entry is detected)."""
    from flows import steps
    from pipeline.publish import latest_run_for_year
    _year(year)
    lake = _lake_dir(lake, must_exist=True)
    if latest_run_for_year(lake, year) is None:
        _fail(f"no published run for year {year} in {lake}: nothing to replay")
    try:
        with err.status(f"replaying year {year}"):
            res = steps.replay(lake, year)
    except Exception as exc:
        _fail(f"replay failed: {exc}")
    for n in res.notes:
        console.print(f"note: {n}")
    if res.ok:
        console.print(f"[green]identical[/]: year {year}, run {res.run_id} reproduces byte for byte")
        return
    _fail(f"year {year} run {res.run_id} is NOT reproduced ({len(res.differences)} difference(s))",
          res.differences)


# --- query / catalog / generate -------------------------------------------------------------------

@app.command()
def catalog(lake: Path = typer.Option(..., "--lake", help="The data directory DIR.")):
    """Rebuild DIR/cpf.duckdb from what DIR has published, posting nothing: after a copy or a
    move of DIR (the views read absolute paths, so they still read the original's files or
    nothing: `cpf query` refuses such a catalog), or a lost catalog file."""
    from pipeline.catalog import build_catalog
    from pipeline.publish import run_lock
    lake = _lake_dir(lake, must_exist=True)
    try:
        with run_lock(lake):
            path = build_catalog(lake)
    except Exception as exc:
        _fail(f"catalog not rebuilt: {exc}")
    console.print(f"catalog: {path}  (views over the files of {lake.resolve()})")


QUERY_NAMES = ", ".join(sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "sql"
                                                   / "queries").glob("*.sql")))


@app.command()
def query(
    name: str = typer.Argument(..., help=f"A ready query of sql/queries/ ({QUERY_NAMES}) or "
                               "SQL text (docs/catalog.md describes every view's columns)."),
    lake: Path = typer.Option(..., "--lake", help="The data directory DIR."),
    csv: bool = typer.Option(False, "--csv", help="Print CSV (header, every column in full) "
                             "instead of a table fitted to the terminal."),
):
    """Run a ready analyst query (or SQL) read-only against DIR/cpf.duckdb."""
    from pipeline.catalog import queries, run_query
    lake = _lake_dir(lake, must_exist=True)
    if name not in queries() and " " not in name:
        _usage(f"unknown query {name!r}; known: {', '.join(queries())}")
    if not (lake / "cpf.duckdb").exists() and (lake / "CURRENT").exists():
        _usage(f"--lake {lake} has no catalog file cpf.duckdb (deleted, or not copied with "
               f"DIR): rebuild it with cpf catalog --lake {lake}")
    try:
        cols, rows = run_query(lake, name)
    except Exception as exc:
        _fail(f"query failed: {exc}")
    if csv:
        import csv as csv_module
        w = csv_module.writer(sys.stdout, lineterminator="\n")
        w.writerow(cols)
        w.writerows(["" if v is None else v for v in r] for r in rows)
        return
    t = Table(title=name if name in queries() else None)
    for c in cols:
        t.add_column(c)
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    console.print(t)
    if not sys.stdout.isatty() and len(cols) > 4:  # piped: cells cut to fit 160 columns
        err.print("cpf query: output is not a terminal; --csv prints every column in full",
                  highlight=False, soft_wrap=True)


@app.command(name="flow-runs")
def flow_runs(
    run_id: Optional[str] = typer.Argument(None, help="A flow run id: print its log lines."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1,
                                        help="How many runs (default 20) or log lines "
                                             "(default 2000)."),
):
    """The campaign's flow runs on the configured Prefect server (PREFECT_API_URL), newest
    first, or one run's log lines: what `prefect flow-run ls` / `logs` would show, which the
    pinned Prefect/FastAPI pair answers with 422 (flows/prefect_status.py)."""
    from prefect.settings import PREFECT_API_URL
    if not PREFECT_API_URL.value():
        _usage("no Prefect server configured (PREFECT_API_URL); a local `cpf run` writes "
               "runs/<id>/run_log.json and the `runs` view instead")
    from flows import prefect_status
    try:
        if run_id:
            limit = limit or 2000
            rows = prefect_status.flow_run_logs(run_id, limit)
            cols = ["time", "level", "flow", "task", "message"]
        else:
            limit = limit or 20
            rows = prefect_status.recent_flow_runs(limit)
            cols = ["id", "flow", "name", "state", "start", "end"]
    except ValueError:
        _usage(f"{run_id!r} is not a flow run id")
    except Exception as exc:  # unreachable server, unknown id
        _fail(f"Prefect server {PREFECT_API_URL.value()}: {exc}")
    t = Table(title="Flow runs" if not run_id else f"Flow run {run_id}")
    for c in cols:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*["" if r[c] is None else str(r[c]) for c in cols])
    console.print(t)
    if run_id and len(rows) == limit:  # never cut silently: the last lines hold the outcome
        console.print(f"first {limit} log lines shown; --limit N for more")


@app.command()
def schedule():
    """The scheduled campaign: cron, timezone and window (flows/operations.yaml), the next
    start dates, and the deployments' runs the Prefect server has created so far (it creates
    them ~100 days ahead)."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from flows.campaign import next_campaigns, operations, window_for
    ops = operations()
    now = dt.datetime.now(ZoneInfo(ops["timezone"]))
    console.print(f"cron {ops['cron']!r} in {ops['timezone']}, concurrency limit "
                  f"{ops['concurrency_limit']}; deployments {ops['deployment_name']} "
                  f"(prefect deploy + worker), {ops['served_deployment_name']} (flows.serve)")
    t = Table(title="Next campaigns")
    for c in ("start", "credits year", "window (runs and reruns without force)"):
        t.add_column(c)
    for start in next_campaigns(now, n=2, ops=ops):
        s, e = window_for(start.year - 1, ops)
        t.add_row(start.isoformat(), str(start.year - 1), f"{s} – {e}")
    console.print(t)
    from prefect.settings import PREFECT_API_URL
    if not PREFECT_API_URL.value():
        console.print("no Prefect server configured (PREFECT_API_URL): scheduled runs exist "
                      "only on a server (docs/operations.md)")
        return
    from flows import prefect_status
    try:
        from flows.campaign import campaign
        deps = prefect_status.deployments(campaign.name)
        runs = prefect_status.scheduled_flow_runs(campaign.name)
        active = prefect_status.active_flow_runs(campaign.name)
    except Exception as exc:  # unreachable server
        _fail(f"Prefect server {PREFECT_API_URL.value()}: {exc}")
    t = Table(title=f"Deployments of {campaign.name} on {PREFECT_API_URL.value()}")
    for c in ("deployment", "paused", "status", "work pool", "schedules"):
        t.add_column(c, overflow="fold")
    for d in deps:
        t.add_row(d["name"], "yes" if d["paused"] else "no", d["status"], d["work_pool"],
                  "; ".join(f"{x['cron']} {x['timezone']} ({'active' if x['active'] else 'inactive'})"
                            for x in d["schedules"]) or "none")
    console.print(t)
    for note in schedule_notes(deps, active):
        console.print(f"[yellow]warning:[/yellow] {note}")
    console.print(f"scheduled on the server: {len(runs)} run(s)"
                  + "".join(f"\n  {r['expected_start']}  {r['deployment']}  {r['name']}"
                            for r in runs))


def schedule_notes(deps: list[dict], active: list[dict] = ()) -> list[str]:
    """Why the campaign would not start by itself: no deployment, all paused, no active
    schedule, no worker or serve process polling (status NOT_READY), or a campaign run still
    Running (or Pending, Cancelling) on the server — a run whose process was killed stays so
    and keeps its deployment's concurrency slot (limit 1): every later run waits in
    AwaitingConcurrencySlot (operator acceptance pass F1)."""
    if not deps:
        return ["no deployment of the campaign on this server: nothing will start on its own "
                "(prefect deploy + a worker, or python -m flows.serve: docs/operations.md)"]
    notes = [f"deployment {d['name']} is paused: its scheduled runs will not be created"
             for d in deps if d["paused"]]
    notes += [f"deployment {d['name']} has no active schedule" for d in deps
              if not d["paused"] and not any(x["active"] for x in d["schedules"])]
    notes += [f"deployment {d['name']} is {d['status']}: no worker or serve process polls "
              f"it, so its runs would stay Late" for d in deps
              if d["status"] and d["status"] != "READY"]
    dep_ids = {d.get("id"): d["name"] for d in deps}
    notes += [f"campaign run {r['name']} ({r['id']}) is {r['state']} since {r['start']}"
              + (f" on deployment {dep_ids[r['deployment_id']]}" if r.get("deployment_id")
                 in dep_ids else "")
              + ": while it holds the deployment's concurrency slot no other campaign starts. "
              "If no process runs it any more (killed, host restarted), release the slot: "
              f"prefect flow-run cancel {r['id']}; prefect gcl update "
              f"deployment:{r.get('deployment_id') or '<deployment id>'} --active-slots 0 "
              "(docs/operations.md)" for r in active]
    return notes


@app.command()
def generate(
    out: Path = typer.Argument(..., help="Output folder for the generated DSN files."),
    year: int = typer.Option(2025, "--year"),
    seed: int = typer.Option(0, "--seed"),
    people: int = typer.Option(1000, "--people"),
    employers: int = typer.Option(50, "--employers"),
):
    """Generate a deterministic year of synthetic DSN (generator.year.generate_year)."""
    from generator.year import generate_year
    generate_year(out, seed=seed, people=people, employers=employers, year=year)
    console.print(f"generated year {year} into {out}")


if __name__ == "__main__":  # pragma: no cover
    app()
