"""Worked-time ratio per person-year (cpf_rules.md §2), as Polars expressions over lazy frames.

Per contract and month: ``counted / monthly reference`` (R6323-1, Decision "same basis"), summed
over months, contracts, establishments and employers, then / 12; plus the remuneration route
for pay not based on time (Σ 51.013 type 001 / 2 080 × SMIC).

EXACTNESS. The ratio is kept as an exact fraction ``ratio = ratio12_num / (12 × ratio12_den)``
(Int128). Every quantity is an integer in hundredths except two divisions:
- an absence or a presence fallback is ``quotité × days / days_in_month``; we scale every
  contract-month quantity by ``M = lcm(28, 29, 30, 31) = 377 580`` so it stays an integer;
- a forfait-jours month reference ``218/12`` days: the term becomes ``12 × counted / 21 800``.
Each contract-month term is then ``num / den`` with integer num and den; terms are grouped by
den per person (usually one den) and summed with an exact LCM fold (``sum_fractions``).
No float ever enters an amount; ``worked_ratio`` (Float64) is for display only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from parsers.lake import BUCKET_DIGITS, lake_path, scan
from parsers.lake_schema import PERSON_TABLES, TABLES
from pipeline.parameters import YearParams
from pipeline.versions import current_declarations as versions_current

M_SCALE = 377_580  # lcm(28, 29, 30, 31): days-in-month denominators become integers
K_MAX = 6  # distinct references per person folded exactly (beyond: reported, not guessed)
GCD_STEPS = 64  # Euclid steps; enough for a divisor < 2**62 (Lamé: ~1.44 log2)

CONTRACT_KEY = ["nir", "siret", "contract_no"]


# --- reading the lake -----------------------------------------------------------------------

def bucket_parts(root_dir: Path | str, table: str, buckets: list[int]) -> list[Path]:
    """Part files of a person table for some buckets only (the lake is partitioned
    ``<table>/month=YYYY-MM/bucket=NNN/``): bucket filtering prunes FILES, not rows."""
    base = lake_path(root_dir) / table
    if not base.exists():
        return []
    return sorted(f for b in sorted(set(int(x) for x in buckets))
                  for f in base.glob(f"*/bucket={b:0{BUCKET_DIGITS}d}/part-*.parquet"))


def scan_table(root_dir: Path | str, table: str,
               buckets: list[int] | None = None) -> pl.LazyFrame:
    """One lake table as a LazyFrame: the ONE place in the engine that reads the lake.
    Without buckets (or for a table that is not bucketed) this is ``parsers.lake.scan``; with
    buckets, only those buckets' files are opened, with the same typed-scan options."""
    if buckets is None or table not in PERSON_TABLES:
        return scan(root_dir, table)
    parts = bucket_parts(root_dir, table, buckets)
    if not parts:
        return pl.LazyFrame(schema=TABLES[table])
    return (pl.scan_parquet(parts, hive_partitioning=False, schema=TABLES[table],
                            missing_columns="insert", extra_columns="ignore")
            .filter(pl.col("bucket").is_in([int(b) for b in buckets])))


def current_declarations(root_dir: Path | str) -> pl.DataFrame:
    """Current declaration versions (``pipeline.versions``: nature 01, not test, not rejected,
    A&R substitution, fractions unioned), COLLECTED once (one row per declaration: small), with
    ``_drank``: the rank of (decl_month, constitution_date, decl_id), nulls first — the order
    of "the latest declaration of the month" (rows compare by ``_drank``, then ``line_no``)."""
    return (versions_current(Path(root_dir))
            .select("decl_id", "decl_month", "constitution_date")
            .sort(["decl_month", "constitution_date", "decl_id"], nulls_last=False)
            .with_row_index("_drank")
            .select("decl_id", pl.col("_drank").cast(pl.Int64))
            .collect())


ORD_SHIFT = 1 << 32  # _ord = _drank · 2**32 + line_no (line numbers < 2**32)


def scan_person_table(root_dir, table: str, decls: pl.DataFrame,
                      buckets: list[int] | None, with_ord: bool = True) -> pl.LazyFrame:
    """A person table restricted to current declarations (and buckets). ``_ord`` orders rows
    as (decl_month, constitution_date, decl_id, line_no): the "latest version" order."""
    lf = scan_table(root_dir, table, buckets).join(decls.lazy(), on="decl_id", how="inner")
    if with_ord:
        lf = lf.with_columns((pl.col("_drank") * ORD_SHIFT + pl.col("line_no").fill_null(0))
                             .alias("_ord"))
    return lf.drop("_drank")


# --- small named expressions ----------------------------------------------------------------

def month_start(col: str | pl.Expr) -> pl.Expr:
    e = pl.col(col) if isinstance(col, str) else col
    return e.dt.truncate("1mo")


def month_end(col: str | pl.Expr) -> pl.Expr:
    e = pl.col(col) if isinstance(col, str) else col
    return e.dt.month_end()


def days_in_month(col: str = "month") -> pl.Expr:
    return pl.col(col).dt.month_end().dt.day().cast(pl.Int64)


def overlap_days(a_start: pl.Expr, a_end: pl.Expr, b_start: pl.Expr, b_end: pl.Expr) -> pl.Expr:
    """Days of [a_start, a_end] ∩ [b_start, b_end], inclusive, >= 0."""
    lo = pl.max_horizontal(a_start, b_start)
    hi = pl.min_horizontal(a_end, b_end)
    return pl.max_horizontal(pl.lit(0, pl.Int64),
                             ((hi - lo).dt.total_days() + 1).cast(pl.Int64))


def unit_family(p: YearParams, unit: str = "unit") -> pl.Expr:
    """hours | days | sans_notion | null (never worked time: unit 40, cachets…)."""
    u = pl.col(unit)
    return (pl.when(u.is_in(list(p.hour_units))).then(pl.lit("hours"))
            .when(u.is_in(list(p.day_units))).then(pl.lit("days"))
            .when(u.is_in(list(p.sans_notion_units))).then(pl.lit("sans_notion"))
            .otherwise(pl.lit(None, pl.String)))


def out_of_scope_reason(p: YearParams) -> pl.Expr:
    """Why a contract is out of the DSN run's scope (null when in scope)."""
    nat, st = pl.col("contract_nature"), pl.col("employment_status")
    return (pl.when(nat.is_in(list(p.public_contract_natures))).then(pl.lit("public_agent_nature"))
            .when(st.is_in(list(p.public_employment_statuses))).then(pl.lit("public_agent_status"))
            .when(nat.is_in(list(p.trainee_mandate_natures))).then(pl.lit("trainee_or_mandate"))
            .otherwise(pl.lit(None, pl.String)))


def year_months(year: int) -> pl.LazyFrame:
    return pl.LazyFrame({"month": pl.date_range(date(year, 1, 1), date(year, 12, 1), "1mo",
                                                eager=True)})


# --- contract attributes per month -------------------------------------------------------------

def latest(keys: list[str]) -> pl.Expr:
    """Row filter: the latest version (max ``_ord``) per ``keys`` (no sort, no ordered
    unique: one hash aggregation; ``_ord`` is unique per row so exactly one row survives)."""
    return pl.col("_ord") == pl.col("_ord").max().over(keys)


def contract_versions(contracts: pl.LazyFrame, p: YearParams) -> pl.LazyFrame:
    """One row per contract and declared month: the latest current declaration of the month."""
    return (
        contracts.filter(pl.col("nir").is_not_null())
        .filter(latest([*CONTRACT_KEY, "decl_month"]))
        .with_columns(unit_family(p).alias("family"), out_of_scope_reason(p).alias("oos_reason"))
        .select(*CONTRACT_KEY, "decl_month", "decl_id", "person_occ", "contract_start", "unit",
                "family", "ref_quota_h", "quota_h", "contract_nature", "employment_status",
                "boeth", "oos_reason")
    )


ATTR_COLS = ["contract_start", "unit", "family", "ref_quota_h", "quota_h", "oos_reason",
             "attr_month"]


def attributes_at(rows: pl.LazyFrame | pl.DataFrame, versions: pl.LazyFrame) -> pl.LazyFrame:
    """Attach to (contract, month) rows the contract's attributes in force that month: the
    latest declared version at or before the month, else the first one after it.

    Fast path: almost every row has a version declared in that very month (the contract
    block is repeated monthly), which is the backward as-of match: one equi-join. Only the
    rows without one (recalls, months outside declarations) go through the two as-of joins,
    against the versions of those contracts only."""
    attrs = versions.select(*CONTRACT_KEY, pl.col("decl_month").alias("attr_month"),
                            *ATTR_COLS[:-1])
    exact = rows.lazy().join(attrs.with_columns(pl.col("attr_month").alias("month")),
                             on=[*CONTRACT_KEY, "month"], how="left").collect()
    hit = exact.lazy().filter(pl.col("attr_month").is_not_null())
    miss = (exact.lazy().filter(pl.col("attr_month").is_null())
            .select(rows.lazy().collect_schema().names()))
    m_attrs = attrs.join(miss.select(CONTRACT_KEY).unique(), on=CONTRACT_KEY,
                         how="semi").sort("attr_month")
    miss = miss.sort("month")
    back = miss.join_asof(m_attrs, left_on="month", right_on="attr_month", by=CONTRACT_KEY,
                          strategy="backward", check_sortedness=False)
    fwd = miss.join_asof(m_attrs, left_on="month", right_on="attr_month", by=CONTRACT_KEY,
                         strategy="forward", check_sortedness=False)
    fwd = fwd.select(*CONTRACT_KEY, "month", *[pl.col(c).alias(c + "_f") for c in ATTR_COLS])
    filled = (back.join(fwd, on=[*CONTRACT_KEY, "month"], how="left", nulls_equal=True)
              .with_columns([pl.when(pl.col("attr_month").is_null()).then(pl.col(c + "_f"))
                             .otherwise(pl.col(c)).alias(c) for c in ATTR_COLS])
              .drop([c + "_f" for c in ATTR_COLS]))
    return pl.concat([hit, filled.select(hit.collect_schema().names())])


def contract_ends(ends: pl.LazyFrame, p: YearParams) -> pl.LazyFrame:
    """Effective end per contract from 62.001; a 62.002 = 099 row cancels the end it names."""
    ends = ends.filter(pl.col("nir").is_not_null())
    cancel = ends.filter(pl.col("end_reason") == p.contract_end_cancel_reason)
    real = ends.filter(pl.col("end_reason") != p.contract_end_cancel_reason)
    return (real.join(cancel.select(*CONTRACT_KEY, "end_date"), on=[*CONTRACT_KEY, "end_date"],
                      how="anti")
            .group_by(CONTRACT_KEY).agg(pl.col("end_date").max().alias("contract_end")))


# --- paid time, presence, absences --------------------------------------------------------------

def paid_time(activities: pl.LazyFrame, contracts: pl.LazyFrame, p: YearParams) -> pl.LazyFrame:
    """Σ 53.002 (type 01, under 51 type 002) per contract and pay-period month, one row per
    (contract, month) with one column per unit family (``paid_hours``/``paid_days``, null when
    that family has no Activité). The period's month is the month of 51.002 (Decision
    pay_period_attribution); signed recall values add up; only periods ending in year N count.
    An Activité without 53.003 takes the unit (40.011) of its contract in the same declaration
    (first occurrence). ``decl_min``/``decl_max``: lineage summary."""
    year = p.year
    unit_in_decl = contracts.select("decl_id", "person_occ", "contract_no",
                                    pl.col("unit").alias("contract_unit")).unique(
        subset=["decl_id", "person_occ", "contract_no"], keep="first")
    act = activities.filter(pl.col("nir").is_not_null()
                            & (pl.col("activity_type") == p.worked_activity_type)
                            & (pl.col("pay_type") == p.activity_pay_type)
                            & (pl.col("period_end").dt.year() == year))
    fam = unit_family(p)
    return (
        act.join(unit_in_decl, on=["decl_id", "person_occ", "contract_no"], how="left")
        .with_columns(pl.coalesce("unit", "contract_unit").alias("unit"),
                      month_start("period_end").alias("month"))
        .with_columns(fam.alias("act_family"))
        .filter(pl.col("act_family").is_in(["hours", "days"]))
        .select(*CONTRACT_KEY, "month", "decl_id",
                pl.when(pl.col("act_family") == "hours").then(pl.col("measure_h"))
                .alias("_h"),
                pl.when(pl.col("act_family") == "days").then(pl.col("measure_h")).alias("_d"))
        .group_by([*CONTRACT_KEY, "month"])
        .agg(pl.col("_h").sum().alias("paid_hours"), pl.col("_d").sum().alias("paid_days"),
             pl.col("_h").is_not_null().any().alias("has_hours"),
             pl.col("_d").is_not_null().any().alias("has_days"),
             pl.col("decl_id").min().alias("decl_min"), pl.col("decl_id").max().alias("decl_max"))
    )


def declared_months_without_activity(activities: pl.LazyFrame, versions: pl.LazyFrame,
                                     year: int) -> pl.LazyFrame:
    """(contract, month) of year N whose month's declaration holds no Activité at all for the
    contract: candidates for the presence fallback."""
    with_act = activities.select("decl_id", "person_occ", "contract_no")
    return (versions.filter(pl.col("decl_month").dt.year() == year)
            .join(with_act, on=["decl_id", "person_occ", "contract_no"], how="anti")
            .select(*CONTRACT_KEY, pl.col("decl_month").alias("month"), "decl_id"))


def absence_days(stoppages: pl.LazyFrame, suspensions: pl.LazyFrame, ends: pl.LazyFrame,
                 p: YearParams) -> pl.LazyFrame:
    """Qualifying absence days per contract and month of year N (L6323-12), deduplicated,
    annulations applied, overlapping periods merged, clipped to the contract and the year."""
    y0, y1 = date(p.year, 1, 1), date(p.year, 12, 31)
    st = stoppages.filter(pl.col("nir").is_not_null())
    st_cancel = (st.filter(pl.col("motif") == p.stoppage_cancel_motif)
                 .select(*CONTRACT_KEY, "last_worked_day").unique())
    arrets = (
        st.filter(pl.col("motif").is_in(list(p.qualifying_stoppages)))
        .join(st_cancel, on=[*CONTRACT_KEY, "last_worked_day"], how="anti")
        .filter(latest([*CONTRACT_KEY, "motif", "last_worked_day"]))  # the latest declaration
        # of an arrêt carries its reprise date
        .select(*CONTRACT_KEY, "contract_start", "motif",
                (pl.col("last_worked_day") + pl.duration(days=1)).alias("abs_start"),
                pl.when(pl.col("resumption_date").is_not_null())
                .then(pl.col("resumption_date") - pl.duration(days=1))
                .otherwise(pl.col("planned_end")).alias("abs_end"))
    )
    su = suspensions.filter(pl.col("nir").is_not_null())
    su_cancel = (su.filter(pl.col("motif") == p.suspension_cancel_motif)
                 .select(*CONTRACT_KEY, "start_date").unique())
    susp = (
        su.filter(pl.col("motif").is_in(list(p.qualifying_suspension_motifs)))
        .join(su_cancel, on=[*CONTRACT_KEY, "start_date"], how="anti")
        .filter(latest([*CONTRACT_KEY, "motif", "start_date"]))
        .select(*CONTRACT_KEY, "contract_start", "motif",
                pl.col("start_date").alias("abs_start"), pl.col("end_date").alias("abs_end"))
    )
    periods = (
        pl.concat([arrets, susp])
        .join(ends, on=CONTRACT_KEY, how="left")
        .with_columns(
            pl.max_horizontal("abs_start", "contract_start", pl.lit(y0)).alias("abs_start"),
            pl.min_horizontal(pl.col("abs_end"), pl.col("contract_end").fill_null(y1),
                              pl.lit(y1)).alias("abs_end"))
        .filter(pl.col("abs_start") <= pl.col("abs_end"))
        .select(*CONTRACT_KEY, "abs_start", "abs_end")
    )
    merged = merge_intervals(periods)
    return (
        merged.with_columns(pl.date_ranges(month_start("abs_start"), month_start("abs_end"),
                                           "1mo").alias("month"))
        .explode("month")
        .with_columns(overlap_days(pl.col("abs_start"), pl.col("abs_end"), pl.col("month"),
                                   month_end("month")).alias("abs_days"))
        .group_by([*CONTRACT_KEY, "month"]).agg(pl.col("abs_days").sum())
    )


def merge_intervals(periods: pl.LazyFrame) -> pl.LazyFrame:
    """Union of overlapping/adjacent [abs_start, abs_end] per contract (maternity followed by
    parental leave must not count a day twice)."""
    return (
        periods.sort([*CONTRACT_KEY, "abs_start", "abs_end"])
        .with_columns(pl.col("abs_end").cum_max().shift(1).over(CONTRACT_KEY).alias("_prev_end"))
        .with_columns(((pl.col("_prev_end").is_null())
                       | (pl.col("abs_start") > pl.col("_prev_end") + pl.duration(days=1)))
                      .cast(pl.Int64).cum_sum().over(CONTRACT_KEY).alias("_grp"))
        .group_by([*CONTRACT_KEY, "_grp"])
        .agg(pl.col("abs_start").min(), pl.col("abs_end").max())
        .drop("_grp")
    )


# --- exact fraction arithmetic -----------------------------------------------------------------

def _gcd_steps(lf: pl.LazyFrame, a: str, b: str, out: str) -> pl.LazyFrame:
    """gcd(a, b) for non-negative Int128 columns, by a fixed number of vectorised Euclid steps
    (b < 2**62 so GCD_STEPS always suffice)."""
    lf = lf.with_columns(pl.col(a).alias("_ga"), pl.col(b).alias("_gb"))
    for _ in range(GCD_STEPS):
        lf = lf.with_columns(
            pl.when(pl.col("_gb") != 0).then(pl.col("_gb")).otherwise(pl.col("_ga")).alias("_ga"),
            pl.when(pl.col("_gb") != 0).then(pl.col("_ga") % pl.col("_gb"))
            .otherwise(pl.lit(0, pl.Int128)).alias("_gb"))
    return lf.rename({"_ga": out}).drop("_gb")


def sum_fractions(terms: pl.DataFrame | pl.LazyFrame, key: str = "nir") -> pl.LazyFrame:
    """Exact Σ num/den per key -> (key, frac_num Int128, frac_den Int128, n_dens).

    Terms sharing a denominator are summed as integers; distinct denominators (several
    references) are folded with their LCM, so the result is exact. Keys with more than K_MAX
    distinct denominators get null (reported as uncreditable, never approximated)."""
    g = (terms.lazy().group_by([key, "den"]).agg(pl.col("num").sum().cast(pl.Int128))
         .with_columns(pl.col("den").rank("dense").over(key).cast(pl.Int64).alias("_k"),
                       pl.len().over(key).alias("n_dens"))).collect()
    max_k = int(g["n_dens"].max() or 0)
    g = g.lazy()
    single = (g.filter(pl.col("n_dens") == 1)
              .select(key, pl.col("num").alias("frac_num"),
                      pl.col("den").cast(pl.Int128).alias("frac_den"), "n_dens"))
    multi = g.filter((pl.col("n_dens") > 1) & (pl.col("n_dens") <= K_MAX))
    acc = multi.filter(pl.col("_k") == 1).select(key, "n_dens", pl.col("num").alias("frac_num"),
                                                 pl.col("den").cast(pl.Int128).alias("frac_den"))
    for k in range(2, min(K_MAX, max_k) + 1):  # only as many folds as the data needs
        step = multi.filter(pl.col("_k") == k).select(key, pl.col("num").alias("_n"),
                                                      pl.col("den").cast(pl.Int128).alias("_d"))
        acc = acc.join(step, on=key, how="left").with_columns(
            pl.col("_n").fill_null(0), pl.col("_d").fill_null(1))
        acc = _gcd_steps(acc, "frac_den", "_d", "_g")
        acc = (acc.with_columns((pl.col("frac_den") // pl.col("_g") * pl.col("_d")).alias("_l"))
               .with_columns((pl.col("frac_num") * (pl.col("_l") // pl.col("frac_den"))
                              + pl.col("_n") * (pl.col("_l") // pl.col("_d"))).alias("frac_num"),
                             pl.col("_l").alias("frac_den"))
               .drop("_n", "_d", "_g", "_l"))
    too_many = (g.filter(pl.col("n_dens") > K_MAX).select(key, "n_dens").unique()
                .with_columns(pl.lit(None, pl.Int128).alias("frac_num"),
                              pl.lit(None, pl.Int128).alias("frac_den")))
    cols = [key, "frac_num", "frac_den", "n_dens"]
    return pl.concat([single.select(cols), acc.select(cols), too_many.select(cols)],
                     how="vertical_relaxed")


# --- the stage ------------------------------------------------------------------------------------

@dataclass
class WorkedTime:
    persons: pl.LazyFrame  # one row per nir examined (see worked_time docstring)
    uncreditable: pl.LazyFrame  # nir, ntt, reason, detail
    contracts: pl.LazyFrame  # contract versions of year N (for categories)


UNCREDITABLE_SCHEMA = {"nir": pl.String, "ntt": pl.String, "year": pl.Int32, "reason": pl.String,
                       "detail": pl.String}


STAGE_SECONDS: dict[str, float] = {}  # wall time of each materialised stage of the last run


def _timed(name: str, t0: float) -> float:
    t1 = time.perf_counter()
    STAGE_SECONDS[name] = STAGE_SECONDS.get(name, 0.0) + t1 - t0
    return t1


INT64_SAFE = 9 * 10 ** 18  # below 2**63: bound on Σ |terms| for Int64 contract-month arithmetic


def worked_time(root_dir: Path | str, year: int, params: YearParams,
                buckets: list[int] | None = None) -> WorkedTime:
    """Per person-year worked ratio (exact) and its explanation columns.

    persons columns: nir, ratio12_num, ratio12_den (ratio = ratio12_num / (12·ratio12_den),
    Int128), n_references, worked_ratio (Float64, display), months_counted, paid_hours_h,
    paid_days_h, presence_months, absence_days, absence_credited_h (Float64, display),
    references (e.g. "h:151.67"), sans_notion_remuneration_cents, smic_reference_cents,
    contracts_count, establishments_count, employers_count, source_decl_ids (lineage summary
    "<n> decl. <min decl_id>..<max decl_id>"; the full list for one person is
    ``source_declarations``).

    Cost model: each big table is scanned ONCE (only the needed columns) and materialised;
    current declarations are resolved once on the small declarations table and applied by one
    join on decl_id; contract-month arithmetic is Int64 (Int128 only for the per-person
    fraction fold, or everywhere if the data could overflow Int64).
    """
    p = params
    STAGE_SECONDS.clear()
    t = time.perf_counter()
    decls = current_declarations(root_dir)
    t = _timed("current_declarations", t)
    lo = date(year - 1, 12, 1)
    contracts = (scan_person_table(root_dir, "contracts", decls, buckets)
                 .filter(pl.col("decl_month") >= lo)
                 .select("decl_id", "_ord", "decl_month", "siret", "person_occ", "nir", "ntt",
                         "contract_no", "contract_start", "contract_nature", "unit",
                         "ref_quota_h", "quota_h", "employment_status", "boeth")
                 .collect())
    t = _timed("scan_contracts", t)
    activities = (scan_person_table(root_dir, "activities", decls, buckets, with_ord=False)
                  .select("decl_id", "person_occ", "nir", "siret", "contract_no", "period_end",
                          "pay_type", "activity_type", "measure_h", "unit")
                  .collect())
    t = _timed("scan_activities", t)
    stoppages = scan_person_table(root_dir, "work_stoppages", decls, buckets)
    suspensions = scan_person_table(root_dir, "suspensions", decls, buckets)
    ends_raw = scan_person_table(root_dir, "contract_ends", decls, buckets, with_ord=False)

    versions = contract_versions(contracts.lazy(), p).collect()
    t = _timed("contract_versions", t)
    ends = contract_ends(ends_raw, p).collect()
    t = _timed("contract_ends", t)

    # 1. paid time by pay-period month (one row per contract-month, one column per family)
    paid = paid_time(activities.lazy(), contracts.lazy(), p).collect()
    t = _timed("paid_time", t)
    # 2. presence fallback candidates (declared months without any Activité)
    no_act = declared_months_without_activity(activities.lazy(), versions.lazy(), year).collect()
    del activities
    t = _timed("presence_candidates", t)
    # 3. absences
    absd = absence_days(stoppages, suspensions, ends.lazy(), p).collect()
    t = _timed("absences", t)

    # Int64 is exact when every contract-month term and their total stay below 2**63.
    max_paid = max(abs(int(paid[c].min() or 0)) for c in ("paid_hours", "paid_days")) if \
        paid.height else 0
    max_paid = max([max_paid] + [int(paid[c].max() or 0) for c in ("paid_hours", "paid_days")
                                 if paid.height])
    max_quota = max(abs(int(versions["quota_h"].min() or 0)), int(versions["quota_h"].max() or 0)) \
        if versions.height else 0
    bound = 12 * (max_paid + 2 * max_quota) * M_SCALE * 2 * max(1, paid.height + no_act.height
                                                                 + absd.height)
    num_t = pl.Int64 if bound < INT64_SAFE else pl.Int128

    # grid of (contract, month) rows that carry something, with paid time and flags
    keys = [*CONTRACT_KEY, "month"]
    extra = (no_act.lazy().select(*keys, pl.lit(True).alias("no_activity"))
             .join(absd.lazy(), on=keys, how="full", coalesce=True))
    grid = paid.lazy().join(extra, on=keys, how="full", coalesce=True)
    cm = (attributes_at(grid, versions.lazy())
          .join(ends.lazy(), on=CONTRACT_KEY, how="left")
          .with_columns(pl.col("no_activity").fill_null(False), pl.col("abs_days").fill_null(0),
                        pl.col("has_hours").fill_null(False), pl.col("has_days").fill_null(False),
                        days_in_month().alias("dim"))
          .filter(pl.col("oos_reason").is_null()))
    presence = overlap_days(pl.col("contract_start").fill_null(date(year, 1, 1)),
                            pl.col("contract_end").fill_null(date(year, 12, 31)),
                            pl.col("month"), month_end("month"))
    cm = cm.with_columns(
        pl.when(pl.col("no_activity") & pl.col("family").is_in(["hours", "days"]))
        .then(pl.col("quota_h") * presence * (M_SCALE // pl.col("dim")))
        .otherwise(0).cast(pl.Int64).alias("presence_scaled"),
        (pl.col("quota_h") * pl.col("abs_days") * (M_SCALE // pl.col("dim")))
        .cast(pl.Int64).alias("absence_scaled"),
    ).filter(pl.col("family").is_in(["hours", "days"]))  # sans-notion: remuneration route
    # rows per (contract, month, unit family): the contract's own family (always) + the other
    # family when an Activité was declared in it (53.003 override)
    is_h = pl.col("family") == "hours"
    own = cm.with_columns(
        pl.col("family").alias("act_family"),
        pl.when(is_h).then(pl.col("paid_hours")).otherwise(pl.col("paid_days")).fill_null(0)
        .alias("paid_h"), pl.lit(True).alias("own_family"))
    other = cm.filter(pl.when(is_h).then(pl.col("has_days")).otherwise(pl.col("has_hours"))) \
        .with_columns(
            pl.when(is_h).then(pl.lit("days")).otherwise(pl.lit("hours")).alias("act_family"),
            pl.when(is_h).then(pl.col("paid_days")).otherwise(pl.col("paid_hours")).fill_null(0)
            .alias("paid_h"), pl.lit(False).alias("own_family"))
    cmf = pl.concat([own, other])
    base = (pl.col("paid_h").cast(num_t) * M_SCALE
            + pl.when(pl.col("own_family")).then(pl.col("presence_scaled")).otherwise(0))
    room = pl.max_horizontal(pl.lit(0, num_t),
                             pl.col("quota_h").cast(num_t) * M_SCALE - pl.col("_base"))
    cmf = (cmf.with_columns(base.cast(num_t).alias("_base"))
           .with_columns(pl.when(pl.col("own_family"))
                         .then(pl.min_horizontal(pl.col("absence_scaled").cast(num_t), room))
                         .otherwise(0).cast(num_t).alias("absence_credited_scaled"))
           .with_columns((pl.col("_base") + pl.col("absence_credited_scaled"))
                         .alias("counted_scaled")))
    cmf = cmf.with_columns(*reference_fraction(p, num_t)).select(
        "nir", "siret", "contract_no", "month", "act_family", "own_family", "paid_h",
        "presence_scaled", "abs_days", "absence_credited_scaled", "counted_scaled",
        "term_num", "term_den", "_lab_kind", "_lab_r", "decl_min", "decl_max").collect()
    t = _timed("contract_month_terms", t)

    # 4. sans-notion: remuneration route (only people with a sans-notion contract version can
    # have a sans-notion month: pay is pre-filtered on them)
    sn_nirs = versions.filter(pl.col("family") == "sans_notion")["nir"].unique()
    rem = (scan_person_table(root_dir, "pay", decls, buckets, with_ord=False)
           .filter(pl.col("nir").is_in(sn_nirs.implode())
                   & (pl.col("pay_type") == p.remuneration_pay_type)
                   & (pl.col("period_end").dt.year() == year))
           .with_columns(month_start("period_end").alias("month")))
    rem_attr = attributes_at(rem.group_by([*CONTRACT_KEY, "month"]).agg(
        pl.col("amount_cents").sum(), pl.col("decl_id").min().alias("decl_min"),
        pl.col("decl_id").max().alias("decl_max")), versions.lazy())
    rem_sn = rem_attr.filter((pl.col("family") == "sans_notion")
                             & pl.col("oos_reason").is_null()).collect()
    t = _timed("sans_notion_pay", t)
    smic_x12 = p.smic_reference_cents_x12
    terms = pl.concat([
        cmf.select("nir", pl.col("term_num").cast(pl.Int128).alias("num"),
                   pl.col("term_den").alias("den")),
        rem_sn.group_by("nir").agg(pl.col("amount_cents").sum())
        .select("nir", (pl.col("amount_cents").cast(pl.Int128) * 144).alias("num"),
                pl.lit(smic_x12, pl.Int64).alias("den")),
    ])
    fractions = sum_fractions(terms).collect()
    t = _timed("sum_fractions", t)

    # 5. explanation per person
    cmf_l = cmf.lazy()
    expl_cm = cmf_l.group_by("nir").agg(
        pl.col("month").filter(pl.col("counted_scaled") > 0).n_unique().alias("months_counted"),
        pl.col("paid_h").filter(pl.col("act_family") == "hours").sum().alias("paid_hours_h"),
        pl.col("paid_h").filter(pl.col("act_family") == "days").sum().alias("paid_days_h"),
        pl.struct("siret", "contract_no", "month")
        .filter(pl.col("presence_scaled") > 0).n_unique().alias("presence_months"),
        pl.col("abs_days").filter(pl.col("own_family")).sum().alias("absence_days"),
        (pl.col("absence_credited_scaled").cast(pl.Float64).sum() / M_SCALE / 100)
        .alias("absence_credited"),
        pl.col("decl_min").min().alias("_cm_min"), pl.col("decl_max").max().alias("_cm_max"),
    )
    labels = (cmf_l.select("nir", "act_family", "_lab_kind", "_lab_r").unique()
              .with_columns(reference_label(p).alias("ref_label"))
              .group_by("nir").agg(pl.col("ref_label").unique().sort().str.join(" ")
                                   .alias("references")))
    expl_sn = rem_sn.lazy().group_by("nir").agg(
        pl.col("amount_cents").sum().alias("sans_notion_remuneration_cents"),
        pl.col("decl_min").min().alias("_sn_min"), pl.col("decl_max").max().alias("_sn_max"))
    in_scope = versions.lazy().filter(pl.col("oos_reason").is_null()
                                      & (pl.col("decl_month").dt.year() == year))
    expl_c = in_scope.group_by("nir").agg(
        pl.struct("siret", "contract_no").n_unique().alias("contracts_count"),
        pl.col("siret").n_unique().alias("establishments_count"),
        pl.col("siret").str.slice(0, 9).n_unique().alias("employers_count"),
        pl.col("decl_id").n_unique().alias("_n_decls"),
        pl.col("decl_id").min().alias("_c_min"), pl.col("decl_id").max().alias("_c_max"))

    examined = pl.concat([expl_c.select("nir"), expl_cm.select("nir"),
                          expl_sn.select("nir")]).unique()
    src_min = pl.min_horizontal("_c_min", "_cm_min", "_sn_min")
    src_max = pl.max_horizontal("_c_max", "_cm_max", "_sn_max")
    persons = (
        examined.join(fractions.lazy(), on="nir", how="left")
        .join(expl_cm, on="nir", how="left").join(labels, on="nir", how="left")
        .join(expl_sn, on="nir", how="left").join(expl_c, on="nir", how="left")
        .with_columns(
            pl.col("frac_num").fill_null(pl.when(pl.col("n_dens").is_null()).then(0)),
            pl.col("frac_den").fill_null(pl.when(pl.col("n_dens").is_null()).then(1)),
            pl.col("n_dens").fill_null(0),
            pl.when(src_min.is_not_null())
            .then(pl.format("{} decl. {}..{}", pl.col("_n_decls").fill_null(0), src_min, src_max))
            .alias("source_decl_ids"),
        )
        .drop("_c_min", "_c_max", "_cm_min", "_cm_max", "_sn_min", "_sn_max", "_n_decls")
        .rename({"frac_num": "ratio12_num", "frac_den": "ratio12_den", "n_dens": "n_references"})
        .with_columns(
            (pl.col("ratio12_num").cast(pl.Float64)
             / (pl.col("ratio12_den").cast(pl.Float64) * 12)).alias("worked_ratio"),
            pl.lit(smic_x12 // 12 if smic_x12 % 12 == 0 else smic_x12 / 12)
            .cast(pl.Float64).alias("smic_reference_cents"),
            *[pl.col(c).fill_null(0) for c in ("months_counted", "paid_hours_h", "paid_days_h",
                                                "presence_months", "absence_days",
                                                "sans_notion_remuneration_cents",
                                                "contracts_count", "establishments_count",
                                                "employers_count")],
            pl.col("absence_credited").fill_null(0.0),
            pl.col("references").fill_null(""), pl.col("source_decl_ids").fill_null(""),
        )
    )

    # 6. what is examined but cannot be credited
    unc = uncreditable_rows(versions.lazy(), persons, contracts.lazy(), year)
    return WorkedTime(persons=persons, uncreditable=unc,
                      contracts=versions.lazy().filter(pl.col("decl_month").dt.year() == year))


def source_declarations(root_dir: Path | str, nir: str, year: int) -> pl.DataFrame:
    """Full lineage for ONE person (``cpf explain``): every current declaration of year N
    (and of the months whose recalls count for N) in which the person has a contract,
    activity or pay row, with the table it was seen in. Filters the lake for that NIR only."""
    decls = current_declarations(root_dir)
    frames = []
    for table in ("contracts", "activities", "pay", "work_stoppages", "suspensions",
                  "contract_ends"):
        frames.append(scan_person_table(root_dir, table, decls, None, with_ord=False)
                      .filter(pl.col("nir") == nir)
                      .filter((pl.col("decl_month") >= date(year - 1, 12, 1))
                              & (pl.col("decl_month") <= date(year + 1, 12, 1)))
                      .select("decl_id", "decl_month", "siret", pl.lit(table).alias("table")))
    return (pl.concat(frames).unique().sort("decl_month", "decl_id", "table").collect())


def reference_fraction(p: YearParams, num_t: pl.DataType = pl.Int128) -> list[pl.Expr]:
    """Per contract-month term ``counted / monthly reference`` as (term_num, term_den):
    - own family, forfait days: reference min(40.012, 218/12) -> 12·counted / 21 800 when capped;
    - own family otherwise: 40.012 (else the legal reference when 40.012 is missing or 0);
    - an Activité in the other family (53.003 override): the legal reference of that family
      (Decision other_unit_reference = legal): 1 607/12 h or 218/12 days.
    counted is M-scaled, so every den carries the factor M. ``_lab_kind`` (0 = 40.012,
    1 = capped forfait, 2 = legal) and ``_lab_r`` feed ``reference_label`` (formatted once per
    distinct reference, not per row)."""
    R = pl.col("ref_quota_h").cast(pl.Int64)
    has_ref = R.is_not_null() & (R > 0) & pl.col("own_family")
    capped = (pl.col("unit").is_in(list(p.forfait_day_units))
              & (R * 12 > p.forfait_max_days_h))
    legal = pl.when(pl.col("act_family") == "hours").then(pl.lit(p.legal_annual_hours_h)) \
        .otherwise(pl.lit(p.forfait_max_days_h)).cast(pl.Int64)
    use_r = has_ref & ~capped.fill_null(False)
    num = pl.when(use_r).then(pl.col("counted_scaled")).otherwise(pl.col("counted_scaled") * 12)
    den = (pl.when(use_r).then(R).when(has_ref).then(pl.lit(p.forfait_max_days_h, pl.Int64))
           .otherwise(legal) * M_SCALE)
    kind = pl.when(use_r).then(0).when(has_ref).then(1).otherwise(2).cast(pl.Int8)
    return [num.cast(num_t).alias("term_num"), den.cast(pl.Int64).alias("term_den"),
            kind.alias("_lab_kind"), pl.when(use_r).then(R).alias("_lab_r")]


def reference_label(p: YearParams) -> pl.Expr:
    """e.g. "h:151.67", "d:218/12", "h:1607/12" from ``act_family``, ``_lab_kind``, ``_lab_r``."""
    unit_letter = pl.when(pl.col("act_family") == "hours").then(pl.lit("h")).otherwise(pl.lit("d"))
    legal = pl.when(pl.col("act_family") == "hours").then(pl.lit(p.legal_annual_hours_h)) \
        .otherwise(pl.lit(p.forfait_max_days_h)).cast(pl.Int64)
    k = pl.col("_lab_kind")
    return pl.format("{}:{}", unit_letter,
                     pl.when(k == 0).then((pl.col("_lab_r").cast(pl.Float64) / 100).round(2)
                                          .cast(pl.String))
                     .when(k == 1).then(pl.lit(f"{p.forfait_max_days_h / 100:g}/12"))
                     .otherwise(pl.format("{}/12", (legal // 100).cast(pl.String))))


def uncreditable_rows(versions, persons, contracts, year: int) -> pl.LazyFrame:
    """Examined people the run does not credit, with a reason (never silently dropped):
    ntt_only, out_of_scope (every contract of the year out of scope),
    out_of_scope_contract (excluded contract of a credited person), too_many_references,
    negative_worked_time."""
    in_year = contracts.filter(pl.col("decl_month").dt.year() == year)
    ntt_only = (in_year.filter(pl.col("nir").is_null() & pl.col("ntt").is_not_null())
                .group_by("ntt").agg(pl.col("siret").unique().sort().str.join(",").alias("detail"))
                .select(pl.lit(None, pl.String).alias("nir"), "ntt",
                        pl.lit("ntt_only").alias("reason"),
                        pl.format("no NIR; establishments {}", "detail").alias("detail")))
    v = versions.filter(pl.col("decl_month").dt.year() == year)
    oos = v.filter(pl.col("oos_reason").is_not_null())
    oos_people = (oos.select("nir").unique()
                  .join(v.filter(pl.col("oos_reason").is_null()).select("nir").unique(),
                        on="nir", how="anti"))
    oos_rows = (oos.group_by("nir").agg(pl.col("oos_reason").unique().sort().str.join(","),
                                        pl.col("contract_no").unique().sort().str.join(","))
                .join(oos_people.with_columns(pl.lit(True).alias("all_oos")), on="nir",
                      how="left")
                .select("nir", pl.lit(None, pl.String).alias("ntt"),
                        pl.when(pl.col("all_oos")).then(pl.lit("out_of_scope"))
                        .otherwise(pl.lit("out_of_scope_contract")).alias("reason"),
                        pl.format("{} (contracts {})", "oos_reason", "contract_no")
                        .alias("detail")))
    bad = persons.filter((pl.col("n_references") > K_MAX) | (pl.col("ratio12_num") < 0)).select(
        "nir", pl.lit(None, pl.String).alias("ntt"),
        pl.when(pl.col("n_references") > K_MAX).then(pl.lit("too_many_references"))
        .otherwise(pl.lit("negative_worked_time")).alias("reason"),
        pl.format("ratio12 = {}/{}; {} distinct references", pl.col("ratio12_num").cast(pl.String),
                  pl.col("ratio12_den").cast(pl.String), "n_references").alias("detail"))
    return (pl.concat([ntt_only, oos_rows, bad], how="vertical_relaxed")
            .with_columns(pl.lit(year, pl.Int32).alias("year"))
            .select(list(UNCREDITABLE_SCHEMA)))
