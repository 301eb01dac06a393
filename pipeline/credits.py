"""Category and annual amount per person-year (cpf_rules.md §3), and the entry point
``compute_year(root_dir, year, holders=None, buckets=None) -> YearResult``.

- category: standard / low_qualified (holder's declaration, R6323-3-1) / boeth (40.072 present
  on a contract in the year, D6323-3-3) / esat (40.007 = 70, L6323-33); several ⇒ the most
  favourable amount AND ceiling (R6323-27), low-qualified and BOETH not stacked (parameter);
- amount: ratio ≥ threshold ⇒ full amount, else amount × ratio rounded UP to the cent with
  exact integer arithmetic on the exact ratio (``ceil_div``); ESAT never prorated (parameter);
- hour era (2015-2018): ``annual_amount_hours`` = 24 × ratio rounded up to the hour, capped at
  24 (no ½ threshold), and ``annual_amount_hours_second_tier`` (12 h rate) for the ceiling stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.fractions import K_MAX
from pipeline.parameters import YearParams, params_for_year
from pipeline.uncreditable import UNCREDITABLE_SCHEMA, under_age
from pipeline.worked_time import worked_time

CATEGORY_PRIORITY = ("esat", "low_qualified", "boeth", "standard")  # tie-break, most favourable first

HOLDERS_SCHEMA = {"nir": pl.String, "low_qualified_declared_on": pl.Date,
                  "low_qualified_withdrawn_on": pl.Date}


@dataclass
class YearResult:
    amounts: pl.LazyFrame
    uncreditable: pl.LazyFrame
    params: YearParams
    employments: pl.LazyFrame | None = None  # who employed whom (employments.employments)
    input_errors: list | None = None


# --- exact amount arithmetic --------------------------------------------------------------------

def ceil_div(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """⌈a / b⌉ for a >= 0, b > 0 (Int128, exact)."""
    return (a + b - 1) // b


def reaches_threshold(p: YearParams) -> pl.Expr:
    """The ½ test (R6323-1 II): ratio >= 1/2 on the exact ratio (``half_threshold_ratio_decimals``
    null, cpf_rules.md §3; a number of decimals d would test the ratio rounded half-up to d
    decimals: ``YearParams.threshold_test_fraction``). Exact integer test, ratio =
    num / (12·den): ratio >= t_num/t_den  ⇔  t_den·num >= 12·t_num·den (den > 0). The
    prorated amount below the threshold uses the exact ratio."""
    t_num, t_den = p.threshold_test_fraction  # type: ignore[misc]
    return pl.col("ratio12_num") * t_den >= pl.col("ratio12_den") * (12 * t_num)


def prorated_columns(amounts: set[int], p: YearParams) -> list[pl.Expr]:
    """``_full`` (ratio reaches the threshold) and one ``_part_<A>`` per distinct amount A:
    each Int128 division is done once per distinct amount, not once per category."""
    return [reaches_threshold(p).alias("_full")] + [
        ceil_div(pl.col("ratio12_num") * a, pl.col("ratio12_den") * 12).cast(pl.Int64)
        .alias(f"_part_{a}") for a in sorted(amounts)]


def prorated_from_columns(a: int) -> pl.Expr:
    return pl.when(pl.col("_full")).then(pl.lit(a, pl.Int64)).otherwise(pl.col(f"_part_{a}"))


def prorated(amount_cents: pl.Expr, p: YearParams) -> pl.Expr:
    """Full amount when the ratio reaches the threshold, else ⌈amount × ratio⌉ to the cent
    (R6323-1 II)."""
    amt = amount_cents.cast(pl.Int128)
    part = ceil_div(amt * pl.col("ratio12_num"), pl.col("ratio12_den") * 12)
    return pl.when(reaches_threshold(p)).then(amt).otherwise(part).cast(pl.Int64)


# --- categories -------------------------------------------------------------------------------

def low_qualified_flags(holders: pl.LazyFrame, year: int) -> pl.LazyFrame:
    """Declared during D ⇒ years ≥ D; withdrawn during W ⇒ standard from W+1 (R6323-3-1).

    A person's rows may come from several NIRs (``with_current_nirs``): their declarations
    and withdrawals are read as one history, and year N follows the latest event that bears
    on it — a declaration dated in N or before, a withdrawal dated before N (on one day, the
    withdrawal last). With one row per NIR (the register refuses two, and a withdrawal
    before its declaration) this is the row's own rule; across a NIR change a withdrawal
    under one NIR ends an earlier declaration under another, and a later declaration under
    the new NIR does not hide an earlier, never withdrawn one (round-6 M1, round-7 passes)."""
    d = pl.col("low_qualified_declared_on")
    w = pl.col("low_qualified_withdrawn_on")
    events = pl.concat([
        holders.filter(d.is_not_null() & (d.dt.year() <= year))
        .select("nir", d.alias("_on"), pl.lit(True).alias("_declared")),
        holders.filter(w.is_not_null() & (w.dt.year() < year))
        .select("nir", w.alias("_on"), pl.lit(False).alias("_declared")),
    ])
    return (events.group_by("nir")
            .agg(pl.col("_declared").sort_by(["_on", "_declared"], descending=[False, True])
                 .last().alias("low_qualified"))
            .filter(pl.col("low_qualified")))


def with_current_nirs(holders: pl.LazyFrame, former: pl.DataFrame | None) -> pl.LazyFrame:
    """The register's rows, plus each row filed under a former NIR (S21.G00.31.008) again
    under the person's current NIR: the declaration is the holder's (R6323-3-1), like the
    balance and the DSN rows of that NIR, which count for the current one (a low-qualified
    declaration under the old NIR fell back to standard, 800 -> 500 and 8 000 -> 5 000).
    ``low_qualified_flags`` reads the person's rows of every NIR as one history."""
    if former is None or former.height == 0:
        return holders
    moved = (holders.join(former.lazy(), left_on="nir", right_on="old_nir", how="inner",
                          suffix="_current")
             .with_columns(pl.col("nir_current").alias("nir")).drop("nir_current"))
    return pl.concat([holders, moved], how="vertical_relaxed")


def annual_amounts(persons: pl.LazyFrame, flags: pl.LazyFrame, p: YearParams) -> pl.LazyFrame:
    """Category, annual_amount_cents and ceiling_cents (euro era) or hour amounts (hour era)."""
    lf = (persons.join(flags, on="nir", how="left")
          .with_columns(*[pl.col(c).fill_null(False) for c in ("boeth", "esat", "low_qualified")]))
    if p.era == "hours":
        r1, r2 = p.hour_rate_first_tier, p.hour_rate_second_tier
        full = pl.col("ratio12_num") >= pl.col("ratio12_den") * 12
        def hours(rate: int) -> pl.Expr:
            return pl.when(full).then(pl.lit(rate, pl.Int128)).otherwise(
                ceil_div(pl.col("ratio12_num") * rate, pl.col("ratio12_den") * 12)).cast(pl.Int64)
        return lf.with_columns(
            pl.lit("standard").alias("category"),
            pl.lit(None, pl.Int64).alias("annual_amount_cents"),
            pl.lit(None, pl.Int64).alias("ceiling_cents"),
            hours(r1).alias("annual_amount_hours"),
            hours(r2).alias("annual_amount_hours_second_tier"),
            pl.lit(p.hour_ceiling, pl.Int64).alias("ceiling_hours"),
        )
    std, lq = p.standard_amount_cents, p.low_qualified_amount_cents
    boeth_amt = (lq if p.low_qualified_boeth_stacked else std) + p.boeth_supplement_cents
    pr = prorated_from_columns
    distinct = {std, lq, boeth_amt, p.esat_amount_cents, lq + p.boeth_supplement_cents}
    lf = lf.with_columns(prorated_columns(distinct, p))
    candidates = {  # category -> (applies, amount expr, ceiling)
        "standard": (pl.lit(True), pr(std), p.standard_ceiling_cents),
        "low_qualified": (pl.col("low_qualified"), pr(lq)
                          if p.prorate_low_qualified_and_boeth else pl.lit(lq, pl.Int64),
                          p.low_qualified_ceiling_cents),
        "boeth": (pl.col("boeth"),
                  (pr(lq + p.boeth_supplement_cents) if p.low_qualified_boeth_stacked
                   else pr(boeth_amt)) if p.prorate_low_qualified_and_boeth
                  else pl.lit(boeth_amt, pl.Int64),
                  p.boeth_ceiling_cents),
        "esat": (pl.col("esat"), pr(p.esat_amount_cents) if p.esat_prorated
                 else pl.lit(p.esat_amount_cents, pl.Int64), p.esat_ceiling_cents),
    }
    amt_cols = [pl.when(app).then(a).otherwise(None).alias(f"_amt_{c}")
                for c, (app, a, _) in candidates.items()]
    ceil_cols = [pl.when(app).then(pl.lit(ce, pl.Int64)).otherwise(None).alias(f"_ceil_{c}")
                 for c, (app, _, ce) in candidates.items()]
    best = pl.max_horizontal([f"_amt_{c}" for c in candidates])
    category = pl.lit(None, pl.String)
    for c in reversed(CATEGORY_PRIORITY):
        category = pl.when(pl.col(f"_amt_{c}") == pl.col("annual_amount_cents")).then(
            pl.lit(c)).otherwise(category)
    return (lf.with_columns(*amt_cols, *ceil_cols)
            .with_columns(best.cast(pl.Int64).alias("annual_amount_cents"),
                          pl.max_horizontal([f"_ceil_{c}" for c in candidates]).cast(pl.Int64)
                          .alias("ceiling_cents"))
            .with_columns(category.alias("category"))
            .drop([f"_amt_{c}" for c in candidates] + [f"_ceil_{c}" for c in candidates]
                  + ["_full"] + [f"_part_{a}" for a in sorted(distinct)]))


# --- entry point -------------------------------------------------------------------------------

AMOUNT_COLUMNS = [
    "nir", "year", "category", "worked_ratio", "ratio12_num", "ratio12_den", "ratio_exact",
    "annual_amount_cents", "ceiling_cents", "annual_amount_hours",
    "annual_amount_hours_second_tier", "ceiling_hours", "param_version",
    "low_qualified", "boeth", "esat",
    "months_counted", "paid_hours_h", "paid_days_h", "presence_months", "absence_days",
    "absence_credited", "references", "n_references", "sans_notion_remuneration_cents",
    "sans_notion_absence_days", "sans_notion_absence_credited",
    "smic_reference_cents", "contracts_count", "establishments_count", "employers_count",
    "source_decl_ids",
]


def _holders_frame(holders) -> tuple[pl.LazyFrame, list]:
    if holders is None:
        return pl.DataFrame(schema=HOLDERS_SCHEMA).lazy(), []
    if isinstance(holders, (pl.DataFrame, pl.LazyFrame)):
        return holders.lazy(), []
    from parsers.account_inputs import read_holders
    df, errors = read_holders(Path(holders))
    return df.lazy(), errors


def compute_year(root_dir: Path, year: int, holders: Path | None = None,
                 buckets: list[int] | None = None) -> YearResult:
    """Amounts for every person examined in activity year ``year`` (lazy; nothing collected).

    amounts: one row per credited-or-examined nir, columns ``AMOUNT_COLUMNS`` (sorted by nir).
    ratio = ratio12_num / (12 × ratio12_den) exactly (Int128); ratio_exact is that fraction as
    text. uncreditable: nir, ntt, year, reason, detail (see uncreditable.uncreditable_rows).
    """
    p = params_for_year(year)
    wt = worked_time(root_dir, year, p, buckets)
    hold, errors = _holders_frame(holders)
    if buckets is not None and "bucket" in hold.collect_schema().names():
        # a shard's run is given the whole register, bucketed: its buckets' rows, and the
        # rows filed under any former NIR the lake links (few; the join on the shard's people
        # then keeps its own), whatever bucket that NIR hashes to
        olds = (wt.former_nirs["old_nir"] if wt.former_nirs is not None
                else pl.Series([], dtype=pl.String))
        hold = hold.filter(pl.col("bucket").is_in(buckets) | pl.col("nir").is_in(olds.implode()))
    flags = low_qualified_flags(with_current_nirs(hold, wt.former_nirs), year)  # boeth/esat come with wt.persons (per person)
    creditable = wt.persons.filter(pl.col("n_references") <= K_MAX) \
        .filter(pl.col("ratio12_num") >= 0).filter(~under_age(p))  # reported: uncreditable_rows
    if wt.withheld is not None and wt.withheld.height:  # identity conflicts: never guessed
        creditable = creditable.filter(~pl.col("nir").is_in(wt.withheld["nir"].implode()))
    amounts = (annual_amounts(creditable, flags, p)
               .with_columns(
                   pl.lit(year, pl.Int32).alias("year"),
                   pl.lit(p.version).alias("param_version"),
                   pl.format("{}/{}", pl.col("ratio12_num").cast(pl.String),
                             (pl.col("ratio12_den") * 12).cast(pl.String)).alias("ratio_exact"))
               .with_columns([pl.lit(None, pl.Int64).alias(c) for c in
                              ("annual_amount_hours", "annual_amount_hours_second_tier",
                               "ceiling_hours") if p.era == "euros"])
               .select(AMOUNT_COLUMNS)
               .sort("nir"))
    unc = wt.uncreditable.select([pl.col(c).cast(t) for c, t in UNCREDITABLE_SCHEMA.items()]) \
        .sort("reason", "nir", "ntt", nulls_last=True)
    return YearResult(amounts=amounts, uncreditable=unc, params=p, input_errors=errors,
                      employments=wt.employments)
