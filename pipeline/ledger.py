"""The append-only journal: diff posting, opening imports and balance assertions.

A ledger is a set of immutable entries (one row per posting, schema ``ENTRY_SCHEMA``). Nothing
is ever updated: a correction is a new entry. The campaign of year N may run many times; each
run posts only the DIFFERENCE, per person, between what year N's credit entries already hold
and what the current computation says (``plan_year_postings``). A rerun on unchanged data posts
nothing; a late A&R or a pay recall gives an ``adjustment_credit`` (more) or a ``reversal``
(less).

The hour era (activity years 2015-2018) is credited in hours on the ``earned_hours``
sub-ledger (``plan_hour_year``); the first euro-era run converts what is left at 15 €/h
(``hour_to_euro_conversions``, décret 2018-1153) before applying the euro ceiling.

Everything here is a pure function over Polars frames (beancount style: ``(entries, inputs) ->
(new entries, errors)``); reading and publishing files is ``pipeline.publish``'s job.

Determinism: ``entry_id`` is a hash of the run id (itself derived from content, see
``pipeline.publish.derive_run_id``) and of the entry's identity (nir, year, kind, sub-ledger,
lot), and no timestamp enters an entry, so the same inputs + parameters + code give the same
bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

from pipeline.ceiling import apply_ceiling

if TYPE_CHECKING:
    import duckdb

# --- vocabulary -----------------------------------------------------------------------------

EARNED = "earned"  # droits acquis: the ceiling-relevant sub-ledger
HOURS = "earned_hours"  # hour era (activity years 2015-2018): droits acquis in hours, converted
# to euros on 1 January 2019 (décret 2018-1153) by ``hour_to_euro_conversion`` entries
DOTATION = "dotation"  # droits supplémentaires (décret 2025-341): outside the ceiling

ANNUAL_CREDIT = "annual_credit"
ADJUSTMENT_CREDIT = "adjustment_credit"
REVERSAL = "reversal"
OPENING_BALANCE_IMPORT = "opening_balance_import"
HOUR_TO_EURO_CONVERSION = "hour_to_euro_conversion"
DOTATION_KIND = "dotation"
DOTATION_EXPIRY = "dotation_expiry"
DOTATION_REFUND = "dotation_refund"

KINDS = (ANNUAL_CREDIT, ADJUSTMENT_CREDIT, REVERSAL, OPENING_BALANCE_IMPORT,
         HOUR_TO_EURO_CONVERSION, DOTATION_KIND, DOTATION_EXPIRY, DOTATION_REFUND)
# The entries that make up "what year N's crediting holds" for a person.
CREDIT_KINDS = (ANNUAL_CREDIT, ADJUSTMENT_CREDIT, REVERSAL)

ENTRY_SCHEMA: dict[str, pl.DataType] = {
    "entry_id": pl.String(),  # deterministic, unique per posting
    "run_id": pl.String(),  # content-derived run id (pipeline.publish.derive_run_id)
    "nir": pl.String(),
    "year": pl.Int32(),  # activity year (dotations: year received)
    "kind": pl.String(),  # one of KINDS
    "sub_ledger": pl.String(),  # EARNED | HOURS | DOTATION
    "amount_cents": pl.Int64(),  # signed (0 on the hour sub-ledger)
    "amount_hours": pl.Int64(),  # signed whole hours on the HOURS sub-ledger, else null
    "lot_id": pl.String(),  # dotation lot, null on the earned sub-ledger
    "param_version": pl.String(),
    "code_version": pl.String(),
    "source": pl.String(),  # declaration ids, or "<input>:<sha256>[:line]"
}
ENTRY_SORT = ["nir", "sub_ledger", "year", "kind", "lot_id", "entry_id"]


class LedgerCheckError(RuntimeError):
    """A balance assertion did not hold: the run must fail (exit 1) and publish nothing."""

    def __init__(self, errors: list[str]):
        super().__init__(f"{len(errors)} ledger check(s) failed: " + "; ".join(errors[:5]))
        self.errors = errors


@dataclass(frozen=True)
class RunMeta:
    """What every entry of one run carries."""

    run_id: str
    code_version: str
    param_version: str = ""
    default_source: str = ""  # used when the amounts carry no declaration ids


@dataclass
class Posting:
    """The result of planning one run: new entries, the credits snapshot, and the checks."""

    entries: pl.DataFrame  # new entries only, ENTRY_SCHEMA, sorted by ENTRY_SORT
    credits: pl.DataFrame  # amounts + balance_before/credit/balance_after (one row per person)
    errors: list[str] = field(default_factory=list)
    opening_imported: int = 0
    opening_ignored: int = 0  # --balances rows for accounts the ledger already holds


def empty_entries() -> pl.DataFrame:
    return pl.DataFrame(schema=ENTRY_SCHEMA)


def typed_entries(entries: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Cast to ENTRY_SCHEMA, column order included, rows left in their order: enough for
    aggregations (sums, counts, joins), which do not depend on the order, at no sort's cost."""
    lf = entries.lazy() if isinstance(entries, pl.DataFrame) else entries
    have = lf.collect_schema().names()
    return lf.select([
        (pl.col(c) if c in have else pl.lit(None)).cast(t).alias(c) for c, t in ENTRY_SCHEMA.items()
    ])


def conform(entries: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Cast to ENTRY_SCHEMA, column order included, and sort: the canonical form written."""
    return typed_entries(entries).sort(ENTRY_SORT, nulls_last=True).collect()


def entry_id_expr() -> pl.Expr:
    """The entry's readable identity (run, nir, year, kind, sub-ledger, lot); ``_with_entry_ids``
    digests it with sha256 because Polars' own hash is not stable across versions."""
    return pl.concat_str(
        [pl.col("run_id"), pl.col("nir").fill_null(""), pl.col("year").cast(pl.String),
         pl.col("kind"), pl.col("sub_ledger"), pl.col("lot_id").fill_null("")],
        separator="|",
    )


_DIGESTER: dict[int, "duckdb.DuckDBPyConnection"] = {}  # process id -> its in-memory DuckDB


def _digester() -> "duckdb.DuckDBPyConnection":
    """A cursor on this process's in-memory DuckDB: opening a database costs ~20 ms, a cursor
    (its own connection, so threads never share one) nothing. Keyed by process id, so a
    forked worker never uses its parent's database."""
    import duckdb

    pid = os.getpid()
    if pid not in _DIGESTER:
        _DIGESTER.clear()
        _DIGESTER[pid] = duckdb.connect(config={"preserve_insertion_order": True})
    return _DIGESTER[pid].cursor()


def _with_entry_ids(df: pl.DataFrame) -> pl.DataFrame:
    """Add entry_id = first 24 hex of sha256 of the identity string (stable across versions).

    Polars has no sha256, so the digest is DuckDB's vectorised ``sha256()`` over the whole
    identity column (Arrow in, Polars out, no per-row Python); DuckDB keeps the row order of a
    plain projection (``preserve_insertion_order``, on by default and set explicitly)."""
    ident = df.select(entry_id_expr().alias("ident"))
    if ident.height == 0:
        return df.with_columns(pl.lit(None, pl.String).alias("entry_id"))
    con = _digester()
    try:
        con.register("ident", ident.to_arrow())
        ids = con.sql("SELECT substr(sha256(ident), 1, 24) AS entry_id FROM ident").pl()
    finally:
        con.close()
    return df.with_columns(ids.get_column("entry_id").cast(pl.String).alias("entry_id"))


# --- balances --------------------------------------------------------------------------------

NIR_LINKS_SCHEMA = {"old_nir": pl.String, "nir": pl.String}  # former NIR -> current NIR


def balances_by_person(entries: pl.LazyFrame | pl.DataFrame,
                       nir_links: pl.DataFrame | None = None) -> pl.LazyFrame:
    """Current balance per account: earned, dotation, total (all published entries), the
    hour-era balance not yet converted (``earned_hours``, 0 once converted), and, for a former
    NIR (``nir_links``: old_nir, nir), ``current_nir``, the NIR the person is now declared
    under: the journal keeps the former NIR's entries where they were posted, and a person's
    balance is the sum over ``coalesce(current_nir, nir)`` (the ceiling is applied to it,
    ``former_nir_balances``)."""
    lf = entries.lazy() if isinstance(entries, pl.DataFrame) else entries
    links = nir_links if nir_links is not None else pl.DataFrame(schema=NIR_LINKS_SCHEMA)
    return (
        lf.group_by("nir")
        .agg(
            pl.col("amount_cents").filter(pl.col("sub_ledger") == EARNED).sum()
            .cast(pl.Int64).alias("earned_balance_cents"),
            pl.col("amount_cents").filter(pl.col("sub_ledger") == DOTATION).sum()
            .cast(pl.Int64).alias("dotation_balance_cents"),
            pl.len().cast(pl.Int64).alias("n_entries"),
            pl.col("year").filter(pl.col("kind").is_in(CREDIT_KINDS)).max()
            .alias("last_credited_year"),
            pl.col("amount_hours").filter(pl.col("sub_ledger") == HOURS).sum()
            .cast(pl.Int64).alias("earned_hours"),
        )
        .with_columns(
            (pl.col("earned_balance_cents") + pl.col("dotation_balance_cents"))
            .alias("total_balance_cents")
        )
        .join(links.lazy().select(pl.col("old_nir").alias("nir"),
                                  pl.col("nir").alias("current_nir")), on="nir", how="left")
        .select("nir", "earned_balance_cents", "dotation_balance_cents", "total_balance_cents",
                "last_credited_year", "n_entries", "earned_hours", "current_nir")
        .sort("nir")
    )


def before_year(year: int) -> pl.Expr:
    """The entries that stood on an account when year N was credited, in activity-year order:
    credits of the years before N, and the other earned entries (opening imports, the hour to
    euro conversion) dated N or earlier. Not year N's own credits (a rerun of N sees the same
    starting point), nor the credits of LATER years: re-crediting 2024 after 2025 must not
    cap 2024 against 2025's credit (that reversed rightly credited money)."""
    return (pl.when(pl.col("kind").is_in(CREDIT_KINDS)).then(pl.col("year") < year)
            .otherwise(pl.col("year") <= year))


def earned_before_year(entries: pl.LazyFrame, year: int) -> pl.LazyFrame:
    """Per account, in one pass: ``earned_balance_cents``, the earned balance before crediting
    ``year`` (``before_year``: the ceiling of year N is applied to it, so a rerun of N on
    unchanged data posts nothing, whatever came after), and ``earned_now_cents``, today's
    (later years' credits included: what a late increase of N must still fit under,
    ``cap_late_increase``)."""
    return (
        entries.filter(pl.col("sub_ledger") == EARNED)
        .group_by("nir")
        .agg(pl.col("amount_cents").filter(before_year(year)).sum().cast(pl.Int64)
             .alias("earned_balance_cents"),
             pl.col("amount_cents").sum().cast(pl.Int64).alias("earned_now_cents"))
    )


def cap_late_increase(target: pl.Expr, posted: pl.Expr, room_now: pl.Expr) -> pl.Expr:
    """Year N's credit after this run: the target, except that an INCREASE over what N already
    holds is a crediting made today, so it is capped by today's room under the ceiling (a later
    year may have filled it since). Without later credits today's room is never smaller than
    the increase, so this changes nothing then. Decreases (reversals) are never capped."""
    return (pl.when(target > posted)
            .then(posted + pl.min_horizontal(target - posted, room_now))
            .otherwise(target).cast(pl.Int64))


def credited_for_year(entries: pl.LazyFrame, year: int) -> pl.LazyFrame:
    """What year N's crediting already holds per person (sum of its credit entries)."""
    return (
        entries.filter((pl.col("sub_ledger") == EARNED) & (pl.col("year") == year)
                       & pl.col("kind").is_in(CREDIT_KINDS))
        .group_by("nir")
        .agg(pl.col("amount_cents").sum().cast(pl.Int64).alias("posted_cents"),
             pl.len().alias("n_posted"))
    )


# --- former NIRs (S21.G00.31.008): one person, several NIRs, one ceiling -------------------

FORMER_NIRS_SCHEMA: dict[str, pl.DataType] = {
    "nir": pl.String(),  # the CURRENT NIR (end of the identity chain)
    "former_before_cents": pl.Int64(),  # former NIRs' earned balance before year N
    "former_now_cents": pl.Int64(),  # ... today, after this run (their year N credits reversed)
    "former_hours_before": pl.Int64(),  # hour era: the same on the hour sub-ledger
    "former_hours_now": pl.Int64(),
}


def empty_former_nirs() -> pl.DataFrame:
    return pl.DataFrame(schema=FORMER_NIRS_SCHEMA)


def former_nir_balances(links: pl.DataFrame, ledger: pl.LazyFrame, opening: pl.LazyFrame | None,
                        year: int, meta: RunMeta) -> pl.DataFrame:
    """What a person's FORMER NIRs hold, per current NIR: the ceiling applies to the person,
    whatever NIRs the journal keys their entries by (cpf_rules.md §4, dsn_format.md §1.5).

    ``links``: (old_nir, nir) resolved identity links (``Identity.links`` of kind "nir").
    The journal is keyed by NIR and never rewritten, so a former NIR keeps its entries; once
    the link is declared its rows count for the current NIR, so the former NIR is no longer
    examined and this run reverses its year-N credits. Its balance after this run is therefore
    what its own shard will compute: published entries + this run's opening import (--balances,
    ``opening_imports``) + the hour-to-euro conversion (euro era) − its year-N credits. Returned
    as ``former_before_cents`` (``before_year``: added to the current NIR's balance before N)
    and ``former_now_cents`` (added to today's balance, ``cap_late_increase``); the hour era
    likewise. Computed once per run (a former NIR may sit in another shard than its person)."""
    from pipeline.parameters import params_for_year

    if links.height == 0:
        return empty_former_nirs()
    olds = links["old_nir"].implode()
    base = typed_entries(ledger.filter(pl.col("nir").is_in(olds))).collect()
    op = None if opening is None else opening.filter(pl.col("nir").cast(pl.String).is_in(olds))
    imports, _ = opening_imports(base.lazy(), op, year, meta, "")
    book = pl.concat([base, imports])
    if params_for_year(year).era == "euros":
        book = pl.concat([book, hour_to_euro_conversions(book.lazy(), meta)])
    lf = book.lazy()
    per_old = (links.lazy().select(pl.col("old_nir").alias("nir"), pl.col("nir").alias("_current"))
               .join(earned_before_year(lf, year), on="nir", how="left")
               .join(credited_for_year(lf, year).select("nir", "posted_cents"), on="nir",
                     how="left")
               .join(hours_before_year(lf, year), on="nir", how="left")
               .join(hours_credited_for_year(lf, year).select("nir", "posted_hours"), on="nir",
                     how="left")
               .with_columns(pl.col("earned_balance_cents", "earned_now_cents", "posted_cents",
                                    "hours_before", "hours_now", "posted_hours").fill_null(0)))
    return (per_old.group_by("_current")
            .agg(pl.col("earned_balance_cents").sum().alias("former_before_cents"),
                 (pl.col("earned_now_cents") - pl.col("posted_cents")).sum()
                 .alias("former_now_cents"),
                 pl.col("hours_before").sum().alias("former_hours_before"),
                 (pl.col("hours_now") - pl.col("posted_hours")).sum().alias("former_hours_now"))
            .rename({"_current": "nir"})
            .select([pl.col(c).cast(t) for c, t in FORMER_NIRS_SCHEMA.items()])
            .sort("nir").collect())


def _former(former: pl.DataFrame | None) -> pl.LazyFrame:
    return (former if former is not None else empty_former_nirs()).lazy()


def _with_former(own: str, former_col: str) -> pl.Expr:
    """A person's quantity: their NIR's ``own`` plus their former NIRs' (0 when none)."""
    return pl.col(own).fill_null(0) + pl.col(former_col).fill_null(0)


# --- planning ----------------------------------------------------------------------------------

def opening_imports(ledger: pl.LazyFrame, opening: pl.LazyFrame | None, year: int,
                    meta: RunMeta, source: str) -> tuple[pl.DataFrame, int]:
    """``opening_balance_import`` entries for --balances rows of accounts the ledger does not
    hold yet (no earned entry). Returns (entries, number of rows ignored because held)."""
    if opening is None:
        return empty_entries(), 0
    held = ledger.filter(pl.col("sub_ledger") == EARNED).select("nir").unique()
    op = opening.select(pl.col("nir").cast(pl.String),
                        pl.col("earned_balance_cents").cast(pl.Int64)).collect()
    new = op.lazy().join(held, on="nir", how="anti").collect()
    ignored = op.height - new.height
    new = new.filter(pl.col("earned_balance_cents") != 0)
    df = new.select(
        pl.lit(meta.run_id).alias("run_id"),
        pl.col("nir"),
        pl.lit(year, dtype=pl.Int32).alias("year"),
        pl.lit(OPENING_BALANCE_IMPORT).alias("kind"),
        pl.lit(EARNED).alias("sub_ledger"),
        pl.col("earned_balance_cents").alias("amount_cents"),
        pl.lit(None, dtype=pl.String).alias("lot_id"),
        pl.lit(meta.param_version).alias("param_version"),
        pl.lit(meta.code_version).alias("code_version"),
        pl.lit(source).alias("source"),
    )
    return conform(_with_entry_ids(df)), ignored


def _source_expr(schema_names: list[str], default: str) -> pl.Expr:
    for c in ("source_decl_ids", "source", "decl_ids", "source_decls"):
        if c in schema_names:
            return pl.col(c).alias("source")
    return pl.lit(default).alias("source")


# --- hour era (2015-2018) and the 1 January 2019 conversion -------------------------------

CONVERSION_YEAR = 2019  # décret 2018-1153: hour balances converted on 1 January 2019


def _entries_frame(df: pl.DataFrame, meta: RunMeta, kind: pl.Expr | str, sub_ledger: str,
                   year: int, amount_cents: pl.Expr, amount_hours: pl.Expr,
                   param_version: pl.Expr | str, source: pl.Expr | str) -> pl.DataFrame:
    """ENTRY_SCHEMA rows (with entry ids) from one row per person of ``df`` (column ``nir``)."""
    lit = lambda v: pl.lit(v) if isinstance(v, str) else v  # noqa: E731
    out = df.select(
        pl.lit(meta.run_id).alias("run_id"), pl.col("nir"),
        pl.lit(year, dtype=pl.Int32).alias("year"), lit(kind).alias("kind"),
        pl.lit(sub_ledger).alias("sub_ledger"), amount_cents.cast(pl.Int64).alias("amount_cents"),
        amount_hours.cast(pl.Int64).alias("amount_hours"),
        pl.lit(None, dtype=pl.String).alias("lot_id"),
        lit(param_version).cast(pl.String).alias("param_version"),
        pl.lit(meta.code_version).alias("code_version"), lit(source).cast(pl.String).alias("source"))
    return conform(_with_entry_ids(out))


def hour_to_euro_conversions(book: pl.LazyFrame, meta: RunMeta) -> pl.DataFrame:
    """``hour_to_euro_conversion`` entries for every account whose hour sub-ledger is not 0.

    Two legs per account, both dated activity year 2019 (the conversion happened on 1 January
    2019): ``earned_hours`` −H h (closes the hour balance) and ``earned`` +H × rate cents (rate
    = ``hour_to_euro_rate`` in force on 2019-01-01, 1 500 cents, décret 2018-1153). Posted by
    the first euro-era run on top of an hour-era ledger (whatever its year), so the euro ceiling
    applies to the converted balance; idempotent: once converted the hour balance is 0 and a
    rerun posts nothing. An hour-era correction posted later is converted by the next euro run
    (same rate). ``source`` names the hours, the rate and the legal reference."""
    from datetime import date

    from pipeline.parameters import params_for_year, reference_at, value_at

    jan1 = date(CONVERSION_YEAR, 1, 1)
    rate = int(value_at("hour_to_euro_rate", jan1))
    ref = reference_at("hour_to_euro_rate", jan1)
    version = params_for_year(CONVERSION_YEAR).version
    hours = (book.filter(pl.col("sub_ledger") == HOURS).group_by("nir")
             .agg(pl.col("amount_hours").sum().cast(pl.Int64).alias("h"))
             .filter(pl.col("h") != 0).sort("nir").collect())
    if hours.height == 0:
        return empty_entries()
    source = pl.format("{} h x {} cents/h ({})", pl.col("h"), pl.lit(rate), pl.lit(ref))
    close = _entries_frame(hours, meta, HOUR_TO_EURO_CONVERSION, HOURS, CONVERSION_YEAR,
                           pl.lit(0), -pl.col("h"), version, source)
    open_ = _entries_frame(hours, meta, HOUR_TO_EURO_CONVERSION, EARNED, CONVERSION_YEAR,
                           pl.col("h") * rate, pl.lit(None, pl.Int64), version, source)
    return conform(pl.concat([close, open_]))


def hours_before_year(entries: pl.LazyFrame, year: int) -> pl.LazyFrame:
    """Hour balance before crediting hour-era ``year``: hour-era credit entries of the years
    BEFORE it (``before_year``; conversions excluded: the hour era's ceiling is on the hours
    earned), and the hours earned today (all years), for ``cap_late_increase``."""
    credit = (pl.col("sub_ledger") == HOURS) & pl.col("kind").is_in(CREDIT_KINDS)
    return (entries.filter(credit).group_by("nir")
            .agg(pl.col("amount_hours").filter(pl.col("year") < year).sum().cast(pl.Int64)
                 .alias("hours_before"),
                 pl.col("amount_hours").sum().cast(pl.Int64).alias("hours_now")))


def hours_credited_for_year(entries: pl.LazyFrame, year: int) -> pl.LazyFrame:
    """What hour-era year N's crediting already holds per person (hours, number of entries)."""
    return (entries.filter((pl.col("sub_ledger") == HOURS) & (pl.col("year") == year)
                           & pl.col("kind").is_in(CREDIT_KINDS))
            .group_by("nir")
            .agg(pl.col("amount_hours").sum().cast(pl.Int64).alias("posted_hours"),
                 pl.len().alias("n_posted")))


def plan_hour_year(book: pl.LazyFrame, amounts: pl.LazyFrame, year: int, meta: RunMeta,
                   former: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Hour-era year (2015-2018): credit = ``hour_era_credit`` (24 h/year to 120 h, then 12 h/year
    to 150 h) against the hour balance, posted as the difference with what year N already holds
    on the ``earned_hours`` sub-ledger. Returns (entries, credits); credits carry
    balance_before_hours / credit_hours / balance_after_hours (the cents columns stay null).
    ``former``: the person's former NIRs' hours (``former_nir_balances``), counted in the
    balance (``former_nirs_balance_hours``)."""
    from pipeline.ceiling import hour_era_credit
    from pipeline.parameters import params_for_year

    p = params_for_year(year)
    posted = hours_credited_for_year(book, year).collect()
    room_now = pl.max_horizontal(pl.lit(0, pl.Int64),
                                 pl.lit(p.hour_ceiling)
                                 - _with_former("hours_now", "former_hours_now"))
    credits = (amounts.join(hours_before_year(book, year), on="nir", how="left")
               .join(posted.lazy().select("nir", "posted_hours"), on="nir", how="left")
               .join(_former(former).select("nir", "former_hours_before", "former_hours_now"),
                     on="nir", how="left")
               .with_columns(pl.col("former_hours_before").alias("former_nirs_balance_hours"))
               .with_columns(_with_former("hours_before", "former_hours_before")
                             .alias("balance_before_hours"))
               .with_columns(cap_late_increase(hour_era_credit(
                   pl.col("annual_amount_hours"), pl.col("annual_amount_hours_second_tier"),
                   pl.col("balance_before_hours"), p.hour_first_tier_cap, p.hour_ceiling),
                   pl.col("posted_hours").fill_null(0), room_now).alias("credit_hours"))
               .drop("hours_before", "hours_now", "posted_hours", "former_hours_before",
                     "former_hours_now")
               .with_columns((pl.col("balance_before_hours") + pl.col("credit_hours"))
                             .alias("balance_after_hours"))
               .with_columns([pl.lit(None, pl.Int64).alias(c) for c in (
                   "balance_before_cents", "credit_cents", "balance_after_cents")])
               .sort("nir").collect())
    names = credits.columns
    target = credits.select(
        "nir", "credit_hours",
        (pl.col("param_version").cast(pl.String) if "param_version" in names
         else pl.lit(meta.param_version)).alias("param_version"),
        _source_expr(names, meta.default_source))
    if isinstance(target.schema["source"], pl.List):
        target = target.with_columns(pl.col("source").list.sort().list.join(";"))
    diff = (target.with_columns(pl.col("source").cast(pl.String))
            .join(posted, on="nir", how="full", coalesce=True)
            .with_columns(pl.col("credit_hours").fill_null(0), pl.col("posted_hours").fill_null(0),
                          pl.col("n_posted").fill_null(0),
                          pl.col("param_version").fill_null(meta.param_version),
                          pl.col("source").fill_null(meta.default_source))
            .with_columns((pl.col("credit_hours") - pl.col("posted_hours")).alias("delta"))
            .filter(pl.col("delta") != 0).sort("nir"))
    kind = (pl.when(pl.col("n_posted") == 0).then(pl.lit(ANNUAL_CREDIT))
            .when(pl.col("delta") > 0).then(pl.lit(ADJUSTMENT_CREDIT))
            .otherwise(pl.lit(REVERSAL)))
    entries = _entries_frame(diff, meta, kind, HOURS, year, pl.lit(0), pl.col("delta"),
                             pl.col("param_version"), pl.col("source"))
    return entries, credits


def check_hour_year(all_entries: pl.DataFrame, credits: pl.DataFrame, year: int) -> list[str]:
    """Hour-era balance assertions: before + credit = after; year N's hour entries = credit;
    never above the hour ceiling after a credit; never negative; vanished people net to 0."""
    c = (credits.lazy().join(hours_credited_for_year(all_entries.lazy(), year), on="nir",
                             how="left")
         .with_columns(pl.col("posted_hours").fill_null(0)).collect())
    checks = {
        "hours before + credit != after": pl.col("balance_before_hours") + pl.col("credit_hours")
        != pl.col("balance_after_hours"),
        "year's hour entries != credit_hours": pl.col("posted_hours") != pl.col("credit_hours"),
        "negative hour credit": pl.col("credit_hours") < 0,
        "hour balance above ceiling after credit":
            (pl.col("credit_hours") > 0) & (pl.col("balance_after_hours") > pl.col("ceiling_hours")),
    }
    errors = [f"{label}: {bad.height} person(s), e.g. {_mask(bad['nir'][0])}"
              for label, cond in checks.items() if (bad := c.filter(cond)).height]
    gone = (hours_credited_for_year(all_entries.lazy(), year)
            .join(credits.lazy().select("nir"), on="nir", how="anti")
            .filter(pl.col("posted_hours") != 0).collect())
    if gone.height:
        errors.append(f"year {year} hour entries of {gone.height} person(s) no longer examined "
                      f"do not net to 0")
    return errors


def plan_year_postings(
    ledger: pl.LazyFrame | pl.DataFrame,
    amounts: pl.LazyFrame | pl.DataFrame,
    year: int,
    meta: RunMeta,
    opening: pl.LazyFrame | None = None,
    opening_source: str = "",
    former: pl.DataFrame | None = None,
) -> Posting:
    """Plan the entries of one run of year N's campaign.

    ``ledger``: every published entry (ENTRY_SCHEMA). ``amounts``: one row per examined person
    (nir, annual_amount_cents, ceiling_cents, … as ``pipeline.credits.compute_year`` gives).
    ``opening``: the ``--balances`` CSV (nir, earned_balance_cents). ``former``: what the
    examined people's former NIRs hold (``former_nir_balances``), counted in their balance.

    1. import opening balances of accounts the ledger does not hold yet; in the euro era,
       convert any hour balance left by the hour era (``hour_to_euro_conversions``); an
       hour-era year is planned by ``plan_hour_year`` instead of steps 2-4;
    2. balance before = earned entries except year N's credit entries (the person's former
       NIRs' included);
    3. target credit = ``apply_ceiling``; 4. post target − already posted (people who vanished
    from year N get a reversal of what they hold); 5. run the balance assertions.
    """
    from pipeline.parameters import params_for_year

    ledger_lf = (ledger.lazy() if isinstance(ledger, pl.DataFrame) else ledger)
    amounts_lf = amounts.lazy() if isinstance(amounts, pl.DataFrame) else amounts
    opening_entries, ignored = opening_imports(ledger_lf, opening, year, meta, opening_source)
    base = typed_entries(ledger_lf).collect()  # only aggregated below: no sort needed
    book = pl.concat([base.lazy(), opening_entries.lazy()])
    if params_for_year(year).era == "hours":
        hour_entries, credits = plan_hour_year(book, amounts_lf, year, meta, former)
        new_entries = conform(pl.concat([opening_entries, hour_entries]))
        posting = Posting(entries=new_entries, credits=credits,
                          opening_imported=opening_entries.height, opening_ignored=ignored)
        everything = pl.concat([base, new_entries])
        posting.errors = check_year(everything, credits, year, meta.run_id, former) + \
            check_hour_year(everything, credits, year)
        return posting
    # euro era: convert what the hour era left first (décret 2018-1153), then credit
    conversions = hour_to_euro_conversions(book, meta)
    opening_entries = conform(pl.concat([opening_entries, conversions]))
    book = pl.concat([base.lazy(), opening_entries.lazy()])

    # the person's former NIRs' balances count too (``former_nir_balances``)
    balances = (earned_before_year(book, year)
                .join(_former(former).select("nir", "former_before_cents", "former_now_cents"),
                      on="nir", how="full", coalesce=True)
                .select("nir",
                        _with_former("earned_balance_cents", "former_before_cents")
                        .alias("earned_balance_cents"),
                        _with_former("earned_now_cents", "former_now_cents")
                        .alias("earned_now_cents"),
                        pl.col("former_before_cents").alias("former_nirs_balance_cents"))
                .collect())
    posted = credited_for_year(book, year).collect()
    room_now = pl.max_horizontal(pl.lit(0, pl.Int64), pl.col("ceiling_cents")
                                 - pl.col("earned_now_cents").fill_null(0))
    credits = (apply_ceiling(amounts_lf, balances.lazy())
               .join(posted.lazy().select("nir", "posted_cents"), on="nir", how="left")
               .join(balances.lazy().select("nir", "earned_now_cents", "former_nirs_balance_cents"),
                     on="nir", how="left")
               .with_columns(cap_late_increase(pl.col("credit_cents"),
                                               pl.col("posted_cents").fill_null(0), room_now)
                             .alias("_capped"))
               # what today's room withheld from the ceiling's credit (a late increase after
               # later years filled the room): the derivation states it, null when nothing
               .with_columns(pl.when(pl.col("_capped") < pl.col("credit_cents"))
                             .then(pl.col("credit_cents") - pl.col("_capped"))
                             .cast(pl.Int64).alias("late_increase_withheld_cents"))
               .with_columns(pl.col("_capped").alias("credit_cents"))
               .with_columns((pl.col("balance_before_cents") + pl.col("credit_cents"))
                             .alias("balance_after_cents"))
               .drop("posted_cents", "earned_now_cents", "_capped")
               .sort("nir").collect())  # a join does not keep row order: restore it
    names = credits.columns
    source = _source_expr(names, meta.default_source)
    target = credits.select(
        pl.col("nir"),
        pl.col("credit_cents").cast(pl.Int64),
        (pl.col("param_version").cast(pl.String) if "param_version" in names
         else pl.lit(meta.param_version)).alias("param_version"),
        source,
    )
    if isinstance(target.schema["source"], pl.List):
        target = target.with_columns(pl.col("source").list.sort().list.join(";"))
    target = target.with_columns(pl.col("source").cast(pl.String))

    diff = (
        target.join(posted, on="nir", how="full", coalesce=True)
        .with_columns(
            pl.col("credit_cents").fill_null(0),
            pl.col("posted_cents").fill_null(0),
            pl.col("n_posted").fill_null(0),
            pl.col("param_version").fill_null(meta.param_version),
            pl.col("source").fill_null(meta.default_source),
        )
        .with_columns((pl.col("credit_cents") - pl.col("posted_cents")).alias("amount_cents"))
        .filter(pl.col("amount_cents") != 0)
        .with_columns(
            pl.when(pl.col("n_posted") == 0).then(pl.lit(ANNUAL_CREDIT))
            .when(pl.col("amount_cents") > 0).then(pl.lit(ADJUSTMENT_CREDIT))
            .otherwise(pl.lit(REVERSAL)).alias("kind")
        )
    )
    credit_entries = diff.select(
        pl.lit(meta.run_id).alias("run_id"),
        "nir",
        pl.lit(year, dtype=pl.Int32).alias("year"),
        "kind",
        pl.lit(EARNED).alias("sub_ledger"),
        "amount_cents",
        pl.lit(None, dtype=pl.String).alias("lot_id"),
        "param_version",
        pl.lit(meta.code_version).alias("code_version"),
        "source",
    )
    new_entries = conform(pl.concat([opening_entries.lazy(),
                                     typed_entries(_with_entry_ids(credit_entries))]))
    posting = Posting(entries=new_entries, credits=credits,
                      opening_imported=opening_entries.height - conversions.height,
                      opening_ignored=ignored)
    posting.errors = check_year(pl.concat([base, new_entries]), credits, year, meta.run_id,
                                former)
    return posting


# --- assertions ----------------------------------------------------------------------------

def check_year(all_entries: pl.DataFrame, credits: pl.DataFrame, year: int,
               run_id: str | None = None, former: pl.DataFrame | None = None) -> list[str]:
    """Balance assertions after posting year N (beancount's ``balance`` directive, per account).

    For every examined person: balance_before + credit = balance_after; the ledger's earned
    balance up to year N (opening + entries dated N or earlier) = balance_before + year N's
    credit entries = balance_after; the earned balance never exceeds the ceiling after an
    annual credit (unless the credit is 0 because the balance already stood at or above it),
    nor today (later years included) after this run (``run_id``) raised year N's credit;
    credits are never negative; year N's credit entries of people no longer examined sum to 0;
    entry ids are unique; dotation lots never go negative. A person's balances are their NIR's
    entries plus what their former NIRs hold after this run (``former``).
    """
    lf = all_entries.lazy()
    earned = pl.col("sub_ledger") == EARNED
    # one pass per person over the ledger: earned balance and year N's credit entries
    per_nir = lf.group_by("nir").agg(
        pl.col("amount_cents").filter(earned & (pl.col("year") <= year)).sum()
        .alias("ledger_earned"),
        pl.col("amount_cents").filter(earned).sum().alias("earned_now"),
        (pl.col("amount_cents") > 0).filter(earned & (pl.col("run_id") == pl.lit(run_id, pl.String))
                                            & (pl.col("year") == year)
                                            & pl.col("kind").is_in(CREDIT_KINDS))
        .any().alias("raised"),
        pl.col("amount_cents").filter(earned & (pl.col("year") == year)
                                      & pl.col("kind").is_in(CREDIT_KINDS))
        .sum().cast(pl.Int64).alias("posted_cents"))
    checks = {
        "balance_before + credit != balance_after":
            pl.col("balance_before_cents") + pl.col("credit_cents") != pl.col("balance_after_cents"),
        "year's credit entries != credit": pl.col("posted_cents") != pl.col("credit_cents"),
        "earned balance up to year N (opening + entries) != balance_after":
            pl.col("ledger_earned") != pl.col("balance_after_cents"),
        "negative credit": pl.col("credit_cents") < 0,
        "credit above annual amount": pl.col("credit_cents") > pl.col("annual_amount_cents"),
        "earned balance above ceiling after annual credit":
            (pl.col("credit_cents") > 0) & (pl.col("balance_after_cents") > pl.col("ceiling_cents")),
        "earned balance today above ceiling after this run raised year N's credit":
            pl.col("raised") & (pl.col("earned_now") > pl.col("ceiling_cents")),
    }
    # every assertion is counted in ONE pass (with its first offender), over the few columns
    # they read; the queries below run together (collect_all)
    per_person = (credits.lazy()
                  .select("nir", "balance_before_cents", "credit_cents", "balance_after_cents",
                          "annual_amount_cents", "ceiling_cents")
                  .join(per_nir, on="nir", how="left")
                  .join(_former(former).select("nir", "former_before_cents", "former_now_cents"),
                        on="nir", how="left")
                  .with_columns(_with_former("ledger_earned", "former_before_cents")
                                .alias("ledger_earned"),
                                _with_former("earned_now", "former_now_cents").alias("earned_now"),
                                pl.col("posted_cents").fill_null(0),
                                pl.col("raised").fill_null(False))
                  .select([e for i, cond in enumerate(checks.values()) for e in (
                      cond.sum().alias(f"n{i}"),
                      pl.col("nir").filter(cond).first().alias(f"e{i}"))]))
    whole = lf.select(
        (pl.len() - pl.col("entry_id").n_unique()).alias("dup"),
        (~pl.col("kind").is_in(KINDS) | ~pl.col("sub_ledger").is_in([EARNED, DOTATION, HOURS]))
        .sum().alias("bad_kind"))
    gone = (per_nir.join(credits.lazy().select("nir"), on="nir", how="anti")
            .filter(pl.col("posted_cents") != 0).select(pl.len()))
    lots = (lf.filter(pl.col("sub_ledger") == DOTATION).group_by("lot_id")
            .agg(pl.col("amount_cents").sum()).filter(pl.col("amount_cents") < 0).select(pl.len()))
    found, head, n_gone, n_lots = (f.row(0)
                                   for f in pl.collect_all([per_person, whole, gone, lots]))
    errors: list[str] = []
    if head[0]:
        errors.append(f"{head[0]} duplicate entry_id")
    if head[1]:
        errors.append(f"{head[1]} entries with an unknown kind or sub-ledger")
    for i, label in enumerate(checks):
        if found[2 * i]:
            errors.append(f"{label}: {found[2 * i]} person(s), e.g. {_mask(found[2 * i + 1])}")
    if n_gone[0]:
        errors.append(f"year {year} credit entries of {n_gone[0]} person(s) no longer examined "
                      f"do not net to 0")
    if n_lots[0]:
        errors.append(f"{n_lots[0]} dotation lot(s) with a negative balance")
    return errors


def _mask(nir: str | None) -> str:
    return "?" if not nir else nir[:3] + "*" * max(0, len(nir) - 3)


def ensure(errors: list[str]) -> None:
    if errors:
        raise LedgerCheckError(errors)
