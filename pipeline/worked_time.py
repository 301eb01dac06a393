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

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from pipeline.parameters import YearParams

M_SCALE = 377_580  # lcm(28, 29, 30, 31): days-in-month denominators become integers
K_MAX = 6  # distinct references per person folded exactly (beyond: reported, not guessed)
GCD_STEPS = 64  # Euclid steps; enough for a divisor < 2**62 (Lamé: ~1.44 log2)

CONTRACT_KEY = ["nir", "siret", "contract_no"]


# --- reading the lake -----------------------------------------------------------------------

def scan_table(root_dir: Path | str, table: str) -> pl.LazyFrame:
    """One lake table as a LazyFrame. The ONE place that knows how the lake is read."""
    try:  # the parser engineer's reader, when it exists
        from parsers.lake import scan  # type: ignore
        return scan(Path(root_dir), table)
    except ImportError:
        pass
    from parsers.lake_schema import TABLES
    base = Path(root_dir) / "lake" / table
    if not base.exists() or not any(base.rglob("*.parquet")):
        return pl.DataFrame(schema=TABLES[table]).lazy()
    return pl.scan_parquet(str(base / "**" / "*.parquet"), hive_partitioning=False)


def current_declarations(root_dir: Path | str) -> pl.LazyFrame:
    """Current declaration versions: decl_id, decl_month, constitution_date, siret.

    TODO(versions): the ONE hook to ``pipeline.versions.current_declarations`` (A&R,
    fractions, test exclusion). Until it exists: every nature-01, non-test, non-rejected
    declaration is current.
    """
    decls = scan_table(root_dir, "declarations")
    try:
        from pipeline.versions import current_declarations as _current  # type: ignore
        ids = _current(Path(root_dir)).select("decl_id").unique()
        decls = decls.join(ids, on="decl_id", how="semi")
    except ImportError:
        decls = decls.filter((pl.col("nature") == "01") & ~pl.col("envoi_is_test").fill_null(False)
                             & ~pl.col("rejected").fill_null(False))
        replaced = (decls.filter(pl.col("decl_type").is_in(["03", "05"]))
                    .select("siret", pl.col("replaced_id").alias("self_id")).unique())
        decls = decls.join(replaced, on=["siret", "self_id"], how="anti")  # A&R: latest only
    return decls.select("decl_id", "decl_month", "constitution_date")


def scan_person_table(root_dir, table: str, decls: pl.LazyFrame,
                      buckets: list[int] | None) -> pl.LazyFrame:
    """A person table restricted to current declarations (and buckets), with the
    declaration's constitution date for "latest version of the month" ordering."""
    lf = scan_table(root_dir, table)
    if buckets is not None:
        lf = lf.filter(pl.col("bucket").is_in(list(buckets)))
    return lf.join(decls.select("decl_id", "constitution_date"), on="decl_id", how="inner")


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

def contract_versions(contracts: pl.LazyFrame, p: YearParams) -> pl.LazyFrame:
    """One row per contract and declared month: the latest current declaration of the month."""
    return (
        contracts.filter(pl.col("nir").is_not_null())
        .sort([*CONTRACT_KEY, "decl_month", "constitution_date", "decl_id", "line_no"])
        .unique(subset=[*CONTRACT_KEY, "decl_month"], keep="last", maintain_order=True)
        .with_columns(unit_family(p).alias("family"), out_of_scope_reason(p).alias("oos_reason"))
        .select(*CONTRACT_KEY, "decl_month", "decl_id", "person_occ", "contract_start", "unit",
                "family", "ref_quota_h", "quota_h", "contract_nature", "employment_status",
                "boeth", "oos_reason")
    )


def attributes_at(rows: pl.LazyFrame, versions: pl.LazyFrame) -> pl.LazyFrame:
    """Attach to (contract, month) rows the contract's attributes in force that month: the
    latest declared version at or before the month, else the first one after it."""
    attrs = versions.select(*CONTRACT_KEY, pl.col("decl_month").alias("attr_month"),
                            "contract_start", "unit", "family", "ref_quota_h", "quota_h",
                            "oos_reason").sort("attr_month")
    rows = rows.sort("month")
    back = rows.join_asof(attrs, left_on="month", right_on="attr_month", by=CONTRACT_KEY,
                          strategy="backward")
    fwd = rows.join_asof(attrs, left_on="month", right_on="attr_month", by=CONTRACT_KEY,
                         strategy="forward")
    cols = ["contract_start", "unit", "family", "ref_quota_h", "quota_h", "oos_reason",
            "attr_month"]
    fwd = fwd.select(*CONTRACT_KEY, "month", *[pl.col(c).alias(c + "_f") for c in cols])
    return (back.join(fwd, on=[*CONTRACT_KEY, "month"], how="left", nulls_equal=True)
            .with_columns([pl.when(pl.col("attr_month").is_null()).then(pl.col(c + "_f"))
                           .otherwise(pl.col(c)).alias(c) for c in cols])
            .drop([c + "_f" for c in cols]))


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
    """Σ 53.002 (type 01, under 51 type 002) per contract, pay-period month and unit family.
    The period's month is the month of 51.002 (Decision pay_period_attribution); signed recall
    values add up; only periods ending in year N count."""
    year = p.year
    unit_in_decl = contracts.select("decl_id", "person_occ", "contract_no",
                                    pl.col("unit").alias("contract_unit")).unique(
        subset=["decl_id", "person_occ", "contract_no"], keep="first")
    return (
        activities.filter(pl.col("nir").is_not_null()
                          & (pl.col("activity_type") == p.worked_activity_type)
                          & (pl.col("pay_type") == p.activity_pay_type)
                          & (pl.col("period_end").dt.year() == year))
        .join(unit_in_decl, on=["decl_id", "person_occ", "contract_no"], how="left")
        .with_columns(pl.coalesce("unit", "contract_unit").alias("unit"),
                      month_start("period_end").alias("month"))
        .with_columns(unit_family(p).alias("act_family"))
        .filter(pl.col("act_family").is_in(["hours", "days"]))
        .group_by([*CONTRACT_KEY, "month", "act_family"])
        .agg(pl.col("measure_h").sum().alias("paid_h"),
             pl.col("decl_id").unique().alias("decl_ids"))
    )


def declared_months_without_activity(contracts: pl.LazyFrame, activities: pl.LazyFrame,
                                     versions: pl.LazyFrame, year: int) -> pl.LazyFrame:
    """(contract, month) of year N whose month's declaration holds no Activité at all for the
    contract: candidates for the presence fallback."""
    with_act = activities.select("decl_id", "person_occ", "contract_no").unique()
    return (versions.filter(pl.col("decl_month").dt.year() == year)
            .join(with_act, on=["decl_id", "person_occ", "contract_no"], how="anti")
            .select(*CONTRACT_KEY, pl.col("decl_month").alias("month"), "decl_id"))


def absence_days(stoppages: pl.LazyFrame, suspensions: pl.LazyFrame, ends: pl.LazyFrame,
                 p: YearParams) -> pl.LazyFrame:
    """Qualifying absence days per contract and month of year N (L6323-12), deduplicated,
    annulations applied, overlapping periods merged, clipped to the contract and the year."""
    y0, y1 = date(p.year, 1, 1), date(p.year, 12, 31)
    order = ["decl_month", "constitution_date", "decl_id", "line_no"]
    st = stoppages.filter(pl.col("nir").is_not_null())
    st_cancel = (st.filter(pl.col("motif") == p.stoppage_cancel_motif)
                 .select(*CONTRACT_KEY, "last_worked_day").unique())
    arrets = (
        st.filter(pl.col("motif").is_in(list(p.qualifying_stoppages)))
        .join(st_cancel, on=[*CONTRACT_KEY, "last_worked_day"], how="anti")
        .sort(order)  # the latest declaration of an arrêt carries its reprise date
        .unique(subset=[*CONTRACT_KEY, "motif", "last_worked_day"], keep="last",
                maintain_order=True)
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
        .sort(order)
        .unique(subset=[*CONTRACT_KEY, "motif", "start_date"], keep="last", maintain_order=True)
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
    g = (terms.lazy().group_by([key, "den"]).agg(pl.col("num").sum())
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


def worked_time(root_dir: Path | str, year: int, params: YearParams,
                buckets: list[int] | None = None) -> WorkedTime:
    """Per person-year worked ratio (exact) and its explanation columns.

    persons columns: nir, ratio12_num, ratio12_den (ratio = ratio12_num / (12·ratio12_den),
    Int128), n_references, worked_ratio (Float64, display), months_counted, paid_hours_h,
    paid_days_h, presence_months, absence_days, absence_credited_h (Float64, display),
    references (e.g. "h:151.67"), sans_notion_remuneration_cents, smic_reference_cents,
    contracts_count, establishments_count, employers_count, source_decl_ids.
    """
    p = params
    decls = current_declarations(root_dir)
    lo = date(year - 1, 12, 1)
    contracts = (scan_person_table(root_dir, "contracts", decls, buckets)
                 .filter(pl.col("decl_month") >= lo))
    activities = scan_person_table(root_dir, "activities", decls, buckets)
    pay = scan_person_table(root_dir, "pay", decls, buckets)
    stoppages = scan_person_table(root_dir, "work_stoppages", decls, buckets)
    suspensions = scan_person_table(root_dir, "suspensions", decls, buckets)
    ends_raw = scan_person_table(root_dir, "contract_ends", decls, buckets)

    # Stage boundaries are materialised (collect → lazy): the frames below are reused by
    # several branches, and re-planning them per branch costs far more than holding them.
    versions = contract_versions(contracts, p).collect().lazy()
    ends = contract_ends(ends_raw, p).collect().lazy()

    # 1. paid time by pay-period month
    paid = paid_time(activities, contracts, p).collect().lazy()

    # 2. presence fallback candidates (declared months without any Activité)
    no_act = declared_months_without_activity(contracts, activities, versions, year) \
        .collect().lazy()

    # 3. absences
    absd = absence_days(stoppages, suspensions, ends, p).collect().lazy()

    # grid of (contract, month) rows that carry something
    grid = pl.concat([paid.select(*CONTRACT_KEY, "month"), no_act.select(*CONTRACT_KEY, "month"),
                      absd.select(*CONTRACT_KEY, "month")]).unique()
    cm = (attributes_at(grid, versions)
          .join(ends, on=CONTRACT_KEY, how="left")
          .join(no_act.select(*CONTRACT_KEY, "month", pl.lit(True).alias("no_activity")),
                on=[*CONTRACT_KEY, "month"], how="left")
          .join(absd, on=[*CONTRACT_KEY, "month"], how="left")
          .with_columns(pl.col("no_activity").fill_null(False), pl.col("abs_days").fill_null(0),
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
    )
    # rows per (contract, month, unit family): the contract's own family + any other activity family
    fam_rows = pl.concat([
        cm.filter(pl.col("family").is_in(["hours", "days"]))
        .select(*CONTRACT_KEY, "month", pl.col("family").alias("act_family")),
        paid.select(*CONTRACT_KEY, "month", "act_family"),
    ]).unique()
    cmf = (fam_rows.join(cm, on=[*CONTRACT_KEY, "month"], how="inner")
           .filter(pl.col("family").is_in(["hours", "days"]))  # sans-notion: remuneration route
           .join(paid.select(*CONTRACT_KEY, "month", "act_family", "paid_h", "decl_ids"),
                 on=[*CONTRACT_KEY, "month", "act_family"], how="left")
           .with_columns(pl.col("paid_h").fill_null(0), (pl.col("act_family") == pl.col("family"))
                         .alias("own_family")))
    base = (pl.col("paid_h").cast(pl.Int128) * M_SCALE
            + pl.when(pl.col("own_family")).then(pl.col("presence_scaled")).otherwise(0))
    room = pl.max_horizontal(pl.lit(0, pl.Int128),
                             pl.col("quota_h").cast(pl.Int128) * M_SCALE - pl.col("_base"))
    cmf = (cmf.with_columns(base.alias("_base"))
           .with_columns(pl.when(pl.col("own_family"))
                         .then(pl.min_horizontal(pl.col("absence_scaled").cast(pl.Int128), room))
                         .otherwise(0).cast(pl.Int128).alias("absence_credited_scaled"))
           .with_columns((pl.col("_base") + pl.col("absence_credited_scaled"))
                         .alias("counted_scaled")))
    cmf = cmf.with_columns(*reference_fraction(p)).collect().lazy()

    # 4. sans-notion: remuneration route
    rem = (pay.filter(pl.col("nir").is_not_null()
                      & (pl.col("pay_type") == p.remuneration_pay_type)
                      & (pl.col("period_end").dt.year() == year))
           .with_columns(month_start("period_end").alias("month")))
    rem_attr = attributes_at(rem.group_by([*CONTRACT_KEY, "month"]).agg(
        pl.col("amount_cents").sum(), pl.col("decl_id").unique().alias("decl_ids")), versions)
    rem_sn = rem_attr.filter((pl.col("family") == "sans_notion")
                             & pl.col("oos_reason").is_null()).collect().lazy()
    smic_x12 = p.smic_reference_cents_x12
    terms = pl.concat([
        cmf.select("nir", pl.col("term_num").alias("num"), pl.col("term_den").alias("den")),
        rem_sn.group_by("nir").agg(pl.col("amount_cents").sum())
        .select("nir", (pl.col("amount_cents").cast(pl.Int128) * 144).alias("num"),
                pl.lit(smic_x12, pl.Int64).alias("den")),
    ])
    fractions = sum_fractions(terms.collect())

    # 5. explanation per person
    expl_cm = cmf.group_by("nir").agg(
        pl.col("month").filter(pl.col("counted_scaled") > 0).n_unique().alias("months_counted"),
        pl.col("paid_h").filter(pl.col("act_family") == "hours").sum().alias("paid_hours_h"),
        pl.col("paid_h").filter(pl.col("act_family") == "days").sum().alias("paid_days_h"),
        pl.struct("siret", "contract_no", "month")
        .filter(pl.col("presence_scaled") > 0).n_unique().alias("presence_months"),
        pl.col("abs_days").filter(pl.col("own_family")).sum().alias("absence_days"),
        (pl.col("absence_credited_scaled").cast(pl.Float64).sum() / M_SCALE / 100)
        .alias("absence_credited"),
        pl.col("ref_label").unique().sort().str.join(" ").alias("references"),
    )
    expl_sn = rem_sn.group_by("nir").agg(
        pl.col("amount_cents").sum().alias("sans_notion_remuneration_cents"))
    in_scope = versions.filter(pl.col("oos_reason").is_null()
                               & (pl.col("decl_month").dt.year() == year))
    expl_c = in_scope.group_by("nir").agg(
        pl.struct("siret", "contract_no").n_unique().alias("contracts_count"),
        pl.col("siret").n_unique().alias("establishments_count"),
        pl.col("siret").str.slice(0, 9).n_unique().alias("employers_count"))
    src = pl.concat([
        in_scope.select("nir", "decl_id"),
        cmf.select("nir", "decl_ids").explode("decl_ids").rename({"decl_ids": "decl_id"}),
        rem_sn.select("nir", "decl_ids").explode("decl_ids").rename({"decl_ids": "decl_id"}),
    ]).drop_nulls().group_by("nir").agg(
        pl.col("decl_id").unique().sort().str.join(",").alias("source_decl_ids"))

    examined = pl.concat([in_scope.select("nir"), cmf.select("nir"),
                          rem_sn.select("nir")]).unique()
    persons = (
        examined.join(fractions, on="nir", how="left")
        .join(expl_cm, on="nir", how="left").join(expl_sn, on="nir", how="left")
        .join(expl_c, on="nir", how="left").join(src, on="nir", how="left")
        .with_columns(
            pl.col("frac_num").fill_null(pl.when(pl.col("n_dens").is_null()).then(0)),
            pl.col("frac_den").fill_null(pl.when(pl.col("n_dens").is_null()).then(1)),
            pl.col("n_dens").fill_null(0),
        )
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
    unc = uncreditable_rows(root_dir, decls, buckets, versions, persons, contracts, year)
    return WorkedTime(persons=persons, uncreditable=unc,
                      contracts=versions.filter(pl.col("decl_month").dt.year() == year))


def reference_fraction(p: YearParams) -> list[pl.Expr]:
    """Per contract-month term ``counted / monthly reference`` as (term_num, term_den):
    - own family, forfait days: reference min(40.012, 218/12) -> 12·counted / 21 800 when capped;
    - own family otherwise: 40.012 (else the legal reference when 40.012 is missing or 0);
    - an Activité in the other family (53.003 override): the legal reference of that family
      (Decision other_unit_reference = legal): 1 607/12 h or 218/12 days.
    counted is M-scaled, so every den carries the factor M."""
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
    unit_letter = pl.when(pl.col("act_family") == "hours").then(pl.lit("h")).otherwise(pl.lit("d"))
    label = pl.format("{}:{}", unit_letter,
                      pl.when(use_r).then((R.cast(pl.Float64) / 100).round(2).cast(pl.String))
                      .when(has_ref).then(pl.lit(f"{p.forfait_max_days_h / 100:g}/12"))
                      .otherwise(pl.format("{}/12", (legal // 100).cast(pl.String))))
    return [num.cast(pl.Int128).alias("term_num"), den.cast(pl.Int64).alias("term_den"),
            label.alias("ref_label")]


def uncreditable_rows(root_dir, decls, buckets, versions, persons, contracts,
                      year: int) -> pl.LazyFrame:
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
