"""What a published run tells operators at its end (the CLI prints it, the flows log it and
put it in their artifact): months no DSN declares, declarations a later version supersedes,
late increases the ceiling withheld, a run dated before the previous one, and the other years
it leaves to rerun. Read from the published run folder only, so any run can be re-told."""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from pipeline import publish as pub

# what a month that no DSN declares counts, said by the run's note and by ``cpf explain``
UNDECLARED_COUNTS = ("count only what other DSN date in them (an absence, a pay recall) until "
                     "their DSN arrive (a rerun then credits the difference)")


def undeclared_note(run_dir: Path | str) -> str | None:
    """What operators must know after a run (CLI prints it, the flow logs it and adds it to
    its artifact): people under contract in months that no current DSN declares
    (``employments.contract_year_months``), whose time there counts nothing yet; or None."""
    f = Path(run_dir) / "employments.parquet"
    if not f.exists() or "months_undeclared" not in pl.read_parquet_schema(f):
        return None  # a run published before the column existed
    u = (pl.scan_parquet(f).filter(pl.col("months_undeclared") > 0)
         .select(pl.col("nir").n_unique().alias("people"), pl.col("siret").n_unique().alias("sirets"),
                 pl.col("months_undeclared").sum().alias("months"), pl.col("year").first())
         .collect().row(0, named=True))
    if not u["people"]:
        return None
    root = Path(run_dir).parent.parent
    people = "1 person was" if u["people"] == 1 else f"{u['people']} people were"
    partial = fractions_missing(run_dir, pl.scan_parquet(f).filter(pl.col("months_undeclared") > 0))
    return (f"undeclared months: {u['months']} person-month(s) of {u['year']} in which {people} "
            f"under contract at {u['sirets']} establishment(s) but no current DSN declares "
            f"them; they {UNDECLARED_COUNTS}"
            + (f"; {partial} of these establishment-months were declared in fractions of which "
               "some have not arrived or were rejected (see to that fraction first: column "
               "fractions_missing)" if partial else "")
            + f". List: cpf query undeclared_months --lake {root}")


def fractions_missing(run_dir: Path | str, undeclared: pl.LazyFrame) -> int:
    """How many (establishment, month) of ``undeclared`` (employments rows) were declared in
    fractions (S20.G00.05.003 = nd) of which fewer than d arrived: dsn_format.md §3.3, the
    month is complete only when all d fractions are received."""
    files = pub.snapshot_table_files(Path(run_dir), "declarations")
    if not files or not files[0].exists():
        return 0
    from pipeline.versions import is_usable, keyed_declarations
    frac = pl.col("fraction")  # keyed: no fraction is the whole month, 11
    short = (keyed_declarations(pl.scan_parquet(files).filter(is_usable()))
             .group_by("siret", pl.col("decl_month").dt.strftime("%Y-%m").alias("month"))
             .agg(frac.str.slice(1, 1).cast(pl.Int64, strict=False).max().alias("parts"),
                  frac.str.slice(0, 1).n_unique().alias("got"))
             .filter(pl.col("got") < pl.col("parts")).select("siret", "month"))
    return (undeclared.select("siret", pl.col("undeclared_months").str.split(" ").alias("month"))
            .explode("month").unique().join(short, on=["siret", "month"], how="semi")
            .select(pl.len()).collect().item())


def superseded_note(run_dir: Path | str) -> str | None:
    """How many declarations of the published lake the run did not use, by cause (a later
    version supersedes it, a test envoi, rejected, not a DSN mensuelle: the catalog's
    quarantine view lists each), or None when all are used: they were ingested and parsed,
    so ingestion's counts do not tell an operator they are not used."""
    from pipeline.run_report import set_aside
    not_used = set_aside(Path(run_dir))["declarations_not_used"]
    if not not_used:
        return None
    root = Path(run_dir).parent.parent
    return (f"declarations not used: {', '.join(f'{n} {why}' for why, n in not_used.items())}; "
            f"each is in the quarantine view ({root / 'cpf.duckdb'})")


def run_notes(run_dir: Path | str, other_years: bool = True) -> list[tuple[int, str]]:
    """(logging level, text) of what a published run must tell operators: the months no DSN
    declares (a warning: time not counted yet), the declarations a later version supersedes
    (information), late increases the ceiling withheld, a run dated before the previous one,
    and the other years it leaves to rerun (warnings). The CLI prints them, the flows log them
    and put them in their artifact."""
    notes = [(logging.WARNING, undeclared_note(run_dir)), (logging.INFO, superseded_note(run_dir)),
             (logging.WARNING, withheld_note(run_dir)), (logging.WARNING, as_of_note(run_dir))]
    if other_years:  # off for a campaign's reruns: the campaign reruns those years itself
        notes += [(logging.WARNING, text) for text in other_years_notes(run_dir)]
    return [(level, text) for level, text in notes if text is not None]


def withheld_note(run_dir: Path | str) -> str | None:
    """Late increases of the year the ceiling kept from being paid (a rerun after later years
    were credited: ``annual_credits.late_increase_withheld_cents``): money a correction found
    and did not pay must be said, not only shown by cpf explain."""
    f = Path(run_dir) / "annual_credits.parquet"
    if not f.exists() or "late_increase_withheld_cents" not in pl.read_parquet_schema(f):
        return None
    w = (pl.scan_parquet(f).filter(pl.col("late_increase_withheld_cents") > 0)
         .select(pl.len().alias("people"), pl.col("late_increase_withheld_cents").sum())
         .collect().row(0))
    if not w[0]:
        return None
    return (f"late increases withheld by the ceiling: {w[0]} person(s), "
            f"{w[1] / 100:,.2f} € found by this run and not paid (later years filled the room "
            "under the ceiling; annual_credits.late_increase_withheld_cents, cpf explain)")


def as_of_note(run_dir: Path | str) -> str | None:
    """A run dated before the run published before it (--as-of): the journal's dates would go
    back in time, which an auditor reading it in order must be told."""
    run_dir = Path(run_dir)
    root, mine = run_dir.parent.parent, pub.read_manifest(run_dir.parent.parent, run_dir.name)
    published = [r["run_id"] for r in pub.read_current(root)["published"]]
    if run_dir.name not in published or published.index(run_dir.name) == 0:
        return None
    before = pub.read_manifest(root, published[published.index(run_dir.name) - 1])
    day, prev = mine["inputs"]["as_of"], before["inputs"]["as_of"]
    if day >= prev:
        return None
    return (f"this run is dated {day} (--as-of), before the run published before it "
            f"({before['run_id']}, {prev}): the journal's dates go back in time")


def other_years_notes(run_dir: Path | str) -> list[str]:
    """Other years a published run leaves to rerun (``late_inputs.stale_notes``): later years
    whose ceiling its entries moved, earlier ones that DSN ingested since may change."""
    from flows.campaign import operations
    from pipeline.late_inputs import stale_notes
    run_dir = Path(run_dir)
    m = pub.read_manifest(run_dir.parent.parent, run_dir.name)
    return stale_notes(run_dir.parent.parent, m["year"], m["counts"]["entries"],
                       operations()["rerun_years_back"], m["inputs"].get("holders_sha256"))
