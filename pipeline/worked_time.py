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
den per person (usually one den) and summed with an exact LCM fold (``fractions.sum_fractions``).
No float ever enters an amount; ``worked_ratio`` (Float64) is for display only.

INTEGER KEYS (``contract_keys``). String keys are read once: each run builds a dictionary of
its contracts (``contract_dictionary``: the distinct (nir, siret, contract_no), sorted,
numbered ``cid``; persons numbered ``pid`` in NIR order). Every big table is mapped to ``cid`` by ONE lookup of
a 64-bit hash of the key (``contract_key_hashes``), checked against a second, independently
seeded 64-bit hash: a row whose key differs from the dictionary's gets no ``cid`` even when the
first hashes collide, and two distinct keys of the run sharing a first hash stop the run
(``KeyHashCollision``) instead of merging; only a collision of both hashes at once (odds about
2**-128 per pair) could go unseen. Every later join and group-by runs on integers (``cm`` = cid
and month packed in one Int64). Declarations are numbered too (``_drank``: version order,
also the order of lineage; ``declaration_ranks``), so lineage first/last are integer
aggregates, mapped back to strings once per person.

Where the engine's inputs come from: ``lake_reads`` (the one place that opens lake files),
``declaration_ranks`` (current declaration versions, per lake state and bucket), ``identity``
(NTT, old NIR and old contract key links). This module is the stage itself: per contract and
month terms, then per person.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from pipeline.contract_keys import (CONTRACT_KEY, KEY_SHIFT, by_contract, cm_cid, cm_key,
                                    cm_month, contract_dictionary, contract_key_hashes,
                                    contract_link_hashes, dk_key, of_contract, with_cid)
from pipeline.declaration_ranks import run_declarations, scan_person_table
from pipeline.fractions import K_MAX, sum_fractions
from pipeline.identity import Identity
from pipeline.lake_reads import nir_buckets
from pipeline.parameters import YearParams

M_SCALE = 377_580  # lcm(28, 29, 30, 31): days-in-month denominators become integers

# --- small named expressions ----------------------------------------------------------------

# Calendar expressions run on every contract-month and Activité row: written with the
# cheap day / days_in_month fields and integer day arithmetic (Polars' truncate and
# month_end cost 3-7x more per row, measured), and year tests as range comparisons.

def month_start(col: str | pl.Expr) -> pl.Expr:
    e = pl.col(col) if isinstance(col, str) else col
    return (e.cast(pl.Int32) - e.dt.day().cast(pl.Int32) + 1).cast(pl.Date)


def month_end(col: str | pl.Expr) -> pl.Expr:
    e = pl.col(col) if isinstance(col, str) else col
    return (e.cast(pl.Int32) + e.dt.days_in_month().cast(pl.Int32)
            - e.dt.day().cast(pl.Int32)).cast(pl.Date)


def days_in_month(col: str = "month") -> pl.Expr:
    return pl.col(col).dt.days_in_month().cast(pl.Int64)


def in_year(col: str, year: int) -> pl.Expr:
    """``col`` falls in calendar year ``year`` (a null does not)."""
    return pl.col(col).is_between(date(year, 1, 1), date(year, 12, 31))


def overlap_days(a_start: pl.Expr, a_end: pl.Expr, b_start: pl.Expr, b_end: pl.Expr) -> pl.Expr:
    """Days of [a_start, a_end] ∩ [b_start, b_end], inclusive, >= 0."""
    lo = pl.max_horizontal(a_start, b_start)
    hi = pl.min_horizontal(a_end, b_end)
    return pl.max_horizontal(pl.lit(0, pl.Int64),
                             ((hi - lo).dt.total_days() + 1).cast(pl.Int64))


FAMILIES = pl.Enum(["hours", "days", "sans_notion"])  # unit families: gathered as small codes


def unit_family(p: YearParams, unit: str = "unit") -> pl.Expr:
    """hours | days | sans_notion | null (never worked time: unit 40, cachets…), as a
    ``FAMILIES`` Enum (one lookup per row; a unit listed twice takes the first family)."""
    family = {**{u: "sans_notion" for u in p.sans_notion_units},
              **{u: "days" for u in p.day_units}, **{u: "hours" for u in p.hour_units}}
    return pl.col(unit).replace_strict(family, default=None, return_dtype=FAMILIES)


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

def latest(keys: list[str] | pl.Expr) -> pl.Expr:
    """Row filter: the latest version (max ``_ord``) per ``keys`` (no sort, no ordered
    unique: one hash aggregation; ``_ord`` is unique per row so exactly one row survives)."""
    return pl.col("_ord") == pl.col("_ord").max().over(keys)


def contract_versions(contracts: pl.LazyFrame, p: YearParams) -> pl.LazyFrame:
    """One row per contract (``cid``) and declared month: the latest current declaration of
    the month (``cm`` = cid and decl_month packed)."""
    return (
        contracts.with_columns(cm_key("decl_month").alias("cm"))
        .filter(latest(pl.col("cm")))
        .with_columns(unit_family(p).alias("family"), out_of_scope_reason(p).alias("oos_reason"))
        .select("cid", "cm", "decl_month", "_drank", "person_occ", "contract_start", "planned_end",
                pl.col("unit").cast(pl.Categorical), "family", "ref_quota_h", "quota_h",
                "contract_nature", "employment_status", "boeth", "policy_scheme", "oos_reason")
    )


ATTR_COLS = ["contract_start", "unit", "family", "ref_quota_h", "quota_h", "oos_reason",
             "attr_month"]


def cm_positions(rows_cm: pl.Series, table_cm: pl.Series) -> pl.Series:
    """For each ``rows_cm`` key, the row of ``table_cm`` (unique keys) holding it, null when
    none: a lookup in a dense (contract × month) array instead of a hash join (~10x cheaper on
    a bucket's ~700 k contract-months, measured). Cell = cid · months spanned + month ordinal;
    a month's ordinal comes from a day-number table over the few days the keys span."""
    if rows_cm.len() == 0 or table_cm.len() == 0:
        return pl.Series("_pos", [None] * rows_cm.len(), dtype=pl.Int64)
    keys = pl.concat([table_cm, rows_cm]).to_frame("cm")
    days = keys.select((pl.col("cm") % KEY_SHIFT).alias("d"))["d"]
    d0, d1 = int(days.min()), int(days.max())
    ordinal = (pl.int_range(d0, d1 + 1, dtype=pl.Int32, eager=True).cast(pl.Date)
               .to_frame("m").select(pl.col("m").dt.year().cast(pl.Int64) * 12
                                     + pl.col("m").dt.month().cast(pl.Int64))["m"])
    ordinal = ordinal - ordinal.min()
    span = int(ordinal.max()) + 1
    cells = keys.select(cm_cid() * span + pl.lit(ordinal).gather(pl.col("cm") % KEY_SHIFT - d0)
                        )[:, 0]
    n_cells = int(cells.max()) + 1
    dense = (pl.Series("_pos", [], dtype=pl.Int64).extend_constant(None, n_cells)
             .scatter(cells[:table_cm.len()], pl.int_range(table_cm.len(), dtype=pl.Int64,
                                                           eager=True)))
    return dense.gather(cells[table_cm.len():])


def attributes_at(rows: pl.LazyFrame | pl.DataFrame, versions: pl.LazyFrame) -> pl.LazyFrame:
    """Attach to (contract, month) rows (``cm``) the contract's attributes in force that month:
    the latest declared version at or before the month, else the first one after it.

    Fast path: almost every row has a version declared in that very month (the contract
    block is repeated monthly), which is the backward as-of match: one Int64 equi-join. Only
    the rows without one (recalls, months outside declarations) go through the two as-of
    joins, against the versions of those contracts only."""
    rows = rows.lazy().collect()
    versions = versions.lazy()
    if rows.height < versions.select(pl.len()).collect().item() // 8:  # a few contracts' rows
        versions = versions.filter(pl.col("cid").is_in(rows.select(cm_cid().unique())[:, 0]
                                                       .implode()))
    versions = versions.collect()
    attrs = versions.lazy().select("cm", "cid", pl.col("decl_month").alias("attr_month"),
                                   *ATTR_COLS[:-1])
    names = rows.columns
    at = cm_positions(rows["cm"], versions["cm"])  # the version declared in that very month
    exact = pl.concat([rows, versions.lazy().select(
        pl.col("decl_month").alias("attr_month"), *ATTR_COLS[:-1]).select(pl.all().gather(at))
        .collect()], how="horizontal")
    hit = exact.filter(pl.col("attr_month").is_not_null())
    miss = exact.filter(pl.col("attr_month").is_null()).select(names)
    if miss.height == 0:
        return hit.lazy()
    miss = miss.with_columns(cm_cid().alias("cid"), cm_month().alias("_m")).sort("_m")
    m_attrs = (attrs.drop("cm").join(miss.lazy().select("cid").unique(), on="cid", how="semi")
               .sort("attr_month").collect())
    back = miss.join_asof(m_attrs, left_on="_m", right_on="attr_month", by="cid",
                          strategy="backward", check_sortedness=False)
    fwd = miss.join_asof(m_attrs, left_on="_m", right_on="attr_month", by="cid",
                         strategy="forward", check_sortedness=False)
    fwd = fwd.select("cm", *[pl.col(c).alias(c + "_f") for c in ATTR_COLS])
    filled = (back.join(fwd, on="cm", how="left")
              .with_columns([pl.when(pl.col("attr_month").is_null()).then(pl.col(c + "_f"))
                             .otherwise(pl.col(c)).alias(c) for c in ATTR_COLS]))
    return pl.concat([hit, filled.select(hit.columns)]).lazy()


@dataclass
class ContractEnds:
    """Effective contract ends (``contract_ends``): ``per_cid`` (cid, contract_end) for the
    contracts with one episode; ``per_start`` (cid, contract_start, episode_start,
    contract_end) for the few whose number was reused for a new contract (usually empty)."""
    per_cid: pl.DataFrame
    per_start: pl.DataFrame


def contract_ends(ends: pl.LazyFrame, versions: pl.DataFrame, p: YearParams) -> ContractEnds:
    """Effective end per contract from 62.001; a 62.002 = 099 row cancels the end it names.

    cpf_rules.md §2.1: a contract is its number AND its start date (40.001). A number reused
    for a new contract of the same person at the same establishment keeps one ``cid`` (pay and
    Activités carry no start date; Decision in docs/rules_traceability.md), but a start date
    after a declared end begins a new **episode** with its own end: the first contract's end
    never clips the second. Starts with no end between them are one episode (a corrected
    40.001 is not a new contract). Each end belongs to the episode it falls in (an end before
    the first start, to the first)."""
    cancel = ends.filter(pl.col("end_reason") == p.contract_end_cancel_reason)
    real = (ends.filter(pl.col("end_reason") != p.contract_end_cancel_reason)
            .join(cancel.select("cid", "end_date"), on=["cid", "end_date"], how="anti")
            .select("cid", "end_date").unique().collect())
    bounds = (versions.lazy().filter(pl.col("cid").is_in(real["cid"].implode()))
              .group_by("cid").agg(pl.col("contract_start").min().alias("_s0"),
                                   pl.col("contract_start").max().alias("_s1")))
    multi = (real.lazy().join(bounds, on="cid")
             .filter((pl.col("end_date") >= pl.col("_s0")) & (pl.col("end_date") < pl.col("_s1")))
             .select("cid").unique().collect()["cid"])
    per_cid = (real.lazy().filter(~pl.col("cid").is_in(multi.implode()))
               .group_by("cid").agg(pl.col("end_date").max().alias("contract_end")).collect())
    if multi.len() == 0:
        return ContractEnds(per_cid, pl.DataFrame(schema={
            "cid": pl.Int64, "contract_start": pl.Date, "episode_start": pl.Date,
            "contract_end": pl.Date}))
    e = real.filter(pl.col("cid").is_in(multi.implode())).sort("end_date")
    starts = (versions.lazy().filter(pl.col("cid").is_in(multi.implode()))
              .select("cid", "contract_start").drop_nulls().unique()
              .sort("cid", "contract_start").collect()
              .with_columns(pl.col("contract_start").shift(1).over("cid").alias("_prev")))
    starts = (starts.join_asof(e.rename({"end_date": "_end_before"}), left_on="contract_start",
                               right_on="_end_before", by="cid", strategy="backward",
                               allow_exact_matches=False, check_sortedness=False)
              .with_columns(pl.when(pl.col("_prev").is_null()
                                    | (pl.col("_end_before") >= pl.col("_prev")).fill_null(False))
                            .then(pl.col("contract_start")).alias("episode_start"))
              .with_columns(pl.col("episode_start").forward_fill().over("cid")))
    firsts = starts.select("cid", "episode_start").unique().sort("episode_start")
    ep_end = (e.join_asof(firsts.rename({"episode_start": "_ep"}), left_on="end_date",
                          right_on="_ep", by="cid", strategy="backward", check_sortedness=False)
              .join(firsts.group_by("cid").agg(pl.col("episode_start").min().alias("_first")),
                    on="cid")
              .group_by("cid", pl.coalesce("_ep", "_first").alias("episode_start"))
              .agg(pl.col("end_date").max().alias("contract_end")))
    per_start = (starts.select("cid", "contract_start", "episode_start")
                 .join(ep_end, on=["cid", "episode_start"], how="left")
                 .sort("cid", "contract_start"))
    return ContractEnds(per_cid, per_start)


def with_contract_end(lf: pl.LazyFrame, ends: ContractEnds, n_contracts: int) -> pl.LazyFrame:
    """Rows with ``cid`` (and ``contract_start``) get the end of their contract's episode
    (``contract_ends``): a gather by cid, plus a join on (cid, start) for reused numbers."""
    lf = lf.with_columns(by_contract(ends.per_cid, "contract_end", n_contracts))
    if ends.per_start.height == 0:
        return lf
    return (lf.join(ends.per_start.lazy().select("cid", "contract_start",
                                                 pl.col("contract_end").alias("_ep_end")),
                    on=["cid", "contract_start"], how="left")
            .with_columns(pl.coalesce("_ep_end", "contract_end").alias("contract_end"))
            .drop("_ep_end"))


# --- paid time, presence, absences --------------------------------------------------------------

def unit_in_declaration(contracts: pl.LazyFrame) -> pl.LazyFrame:
    """The contract's unit (40.011) in each declaration and person block (``dk``,
    ``person_occ``): the first occurrence (lowest line) when a block repeats a contract."""
    return (contracts.select(dk_key().alias("dk"), "person_occ", "_ord",
                             pl.col("unit").alias("contract_unit"))
            .filter(pl.col("_ord") == pl.col("_ord").min().over("dk", "person_occ"))
            .drop("_ord"))


def with_contract_unit(activities: pl.DataFrame, contracts: pl.DataFrame,
                       n_contracts: int) -> pl.DataFrame:
    """Each Activité row with ``contract_unit``: the unit of its contract in the same
    declaration and person block (``unit_in_declaration``). Ingestion guarantees that block
    declares the contract (a 51.010 without a 40.009 of the same individual is set aside with
    its 53: ``parsers.validate``), so a contract whose versions all carry the same unit needs
    no per-declaration lookup: that unit is read by ``cid`` (a gather on a dense array). Only
    the rows of contracts whose unit changed go through the (declaration, block) join."""
    # fixed: every version the same unit (null included), compared as categorical codes
    per_cid = (contracts.lazy().select("cid", pl.col("unit").cast(pl.Categorical))
               .with_columns(pl.col("unit").to_physical().cast(pl.Int64).fill_null(-1)
                             .alias("_u"))
               .group_by("cid")
               .agg(pl.col("unit").first().cast(pl.String),
                    (pl.col("_u").min() == pl.col("_u").max()).alias("_fixed"))
               .collect())
    act = activities.lazy().with_columns(
        by_contract(per_cid, "unit", n_contracts).alias("contract_unit"),
        by_contract(per_cid, "_fixed", n_contracts).fill_null(False)).collect()
    changed = act.filter(~pl.col("_fixed")).drop("contract_unit")
    if changed.height == 0:
        return act.drop("_fixed")
    units = unit_in_declaration(contracts.lazy().join(changed.lazy().select("cid").unique(),
                                                      on="cid", how="semi"))
    return pl.concat([act.filter("_fixed"),
                      changed.lazy().join(units, on=["dk", "person_occ"], how="left")
                      .select(act.columns).collect()]).drop("_fixed")


def paid_time(activities: pl.LazyFrame, p: YearParams) -> pl.LazyFrame:
    """Σ 53.002 (type 01, under 51 type 002) per contract and pay-period month (``cm``), with
    one column per unit family (``paid_hours``/``paid_days``, null when that family has no
    Activité). The period's month is the month of 51.002 (Decision pay_period_attribution);
    signed recall values add up; only periods ending in year N count. An Activité without
    53.003 takes the unit (40.011) of its contract in the same declaration
    (``contract_unit``: ``with_contract_unit``).
    ``decl_min``/``decl_max``: lineage summary (first/last ``_drank``)."""
    act = activities.filter((pl.col("activity_type") == p.worked_activity_type)
                            & (pl.col("pay_type") == p.activity_pay_type)
                            & in_year("period_end", p.year))
    is_time = pl.col("act_family").is_in(["hours", "days"])
    return (
        act.with_columns(pl.coalesce("unit", "contract_unit").alias("unit"),
                         cm_key(month_start("period_end")).alias("cm"))
        .with_columns(unit_family(p).alias("act_family"))
        .filter(pl.col("act_family").is_not_null())
        .select("cm", "_drank", is_time.alias("_time"),
                pl.when(pl.col("act_family") == "hours").then(pl.col("measure_h")).alias("_h"),
                pl.when(pl.col("act_family") == "days").then(pl.col("measure_h")).alias("_d"))
        .group_by("cm")
        .agg(pl.col("_h").sum().alias("paid_hours"), pl.col("_d").sum().alias("paid_days"),
             pl.col("_h").is_not_null().any().alias("has_hours"),
             pl.col("_d").is_not_null().any().alias("has_days"),
             pl.col("_drank").filter("_time").min().alias("decl_min"),
             pl.col("_drank").filter("_time").max().alias("decl_max"),
             # any hour/day line, even one whose measure was quarantined (null)
             pl.col("_time").any().alias("_has_time"))
    )


def split_sans_notion_months(paid: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(time months, sans-notion months) of ``paid_time``: a contract-month whose Activité is
    all in "sans notion" units (53.003 = 31-35, 99 overriding an hour or day contract: a
    vacation, a task) takes the remuneration route that month, as a sans-notion contract does;
    it is neither hours nor a presence month (cpf_rules.md §2.1: 53.003 overrides the unit)."""
    time = pl.col("_has_time")
    return paid.filter(time).drop("_has_time"), paid.filter(~time).select("cm")


def declared_months_without_activity(activities: pl.LazyFrame, versions: pl.DataFrame,
                                     p: YearParams) -> pl.LazyFrame:
    """(contract, declared month) of year N of the contracts that have NO Activité at all in
    year N's declarations (cpf_rules.md §2.1: "only when a contract has no Activité at all"):
    candidates for the presence fallback. An Activité counts whatever its type (01 paid, 02
    unpaid absence) when it declares work: hours, days, or a "sans notion" unit (53.003 = 31-35,
    99: those months take the remuneration route, ``split_sans_notion_months``); a unit-40
    line (calendar days for the social-security ceiling) does not count. A contract with
    Activité in some months gets no presence in the others (a month of ordinary sickness
    without an Activité line was counted as presence)."""
    year_versions = versions.filter(in_year("decl_month", p.year))
    # year N's declarations are a range of ranks (``_drank`` orders by declared month first)
    lo, hi = year_versions.select(pl.col("_drank").min().alias("lo"),
                                  pl.col("_drank").max().alias("hi")).row(0)
    if lo is None:
        return year_versions.select("cm", pl.lit(True).alias("no_activity")).lazy()
    with_act = (activities
                .filter((pl.col("dk") % KEY_SHIFT).is_between(lo, hi)
                        & pl.coalesce("unit", "contract_unit")
                        .is_in([*p.worked_units, *p.sans_notion_units]))
                .select((pl.col("dk") // KEY_SHIFT).alias("cid")).unique())
    return (year_versions.lazy().join(with_act, on="cid", how="anti")
            .select("cm", pl.lit(True).alias("no_activity")))


def not_cancelled(periods: pl.LazyFrame, cancel_motif: str, key: list[str]) -> pl.LazyFrame:
    """The absence rows that no annulation (60.001 = 99, 65.001 = 998, same contract and start)
    cancels. An annulation cancels what was declared BEFORE it (declarations of lower
    ``_drank``, version order), not what comes in its own declaration or after it: "cancel the
    wrong motif, declare the right one" must keep the right one (it used to drop every period
    of that start, whenever declared)."""
    last_cancel = (periods.filter(pl.col("motif") == cancel_motif).group_by(key)
                   .agg(pl.col("_drank").max().alias("_cancelled_by")))
    return (periods.filter(pl.col("motif") != cancel_motif)
            .join(last_cancel, on=key, how="left")
            .filter(pl.col("_cancelled_by").is_null()
                    | (pl.col("_drank") >= pl.col("_cancelled_by")))
            .drop("_cancelled_by"))


def absence_days(stoppages: pl.LazyFrame, suspensions: pl.LazyFrame, ends: ContractEnds,
                 n_contracts: int, p: YearParams) -> pl.LazyFrame:
    """Absence days per contract and month of year N, deduplicated, annulations applied,
    overlapping periods merged, clipped to the contract and the year: ``abs_days`` of the
    qualifying absences (L6323-12, counted as worked time) and ``other_abs_days`` of the others
    (ordinary sickness, unpaid leave…: never worked time, so a presence fallback month does
    not count them either, cpf_rules.md §2.2)."""
    y0, y1 = date(p.year, 1, 1), date(p.year, 12, 31)
    arrets = (
        not_cancelled(stoppages, p.stoppage_cancel_motif, ["cid", "last_worked_day"])
        .filter(latest(["cid", "motif", "last_worked_day"]))  # the latest declaration
        # of an arrêt carries its reprise date
        .select("cid", "contract_start",
                pl.col("motif").is_in(list(p.qualifying_stoppages)).alias("counted"),
                (pl.col("last_worked_day") + pl.duration(days=1)).alias("abs_start"),
                pl.when(pl.col("resumption_date").is_not_null())
                .then(pl.col("resumption_date") - pl.duration(days=1))
                .otherwise(pl.col("planned_end")).alias("abs_end"))
    )
    susp = (
        not_cancelled(suspensions, p.suspension_cancel_motif, ["cid", "start_date"])
        .filter(latest(["cid", "motif", "start_date"]))
        .select("cid", "contract_start",
                pl.col("motif").is_in(list(p.qualifying_suspension_motifs)).alias("counted"),
                pl.col("start_date").alias("abs_start"), pl.col("end_date").alias("abs_end"))
    )
    periods = (
        with_contract_end(pl.concat([arrets, susp]), ends, n_contracts)
        .with_columns(
            pl.max_horizontal("abs_start", "contract_start", pl.lit(y0)).alias("abs_start"),
            pl.min_horizontal(pl.col("abs_end"), pl.col("contract_end").fill_null(y1),
                              pl.lit(y1)).alias("abs_end"),
            # merged per contract AND kind: one integer key
            (pl.col("cid") * 2 + pl.col("counted").cast(pl.Int64)).alias("_ck"))
        .filter(pl.col("abs_start") <= pl.col("abs_end"))
        .select("_ck", "abs_start", "abs_end")
    )
    merged = merge_intervals(periods, key="_ck")
    days = overlap_days(pl.col("abs_start"), pl.col("abs_end"), pl.col("month"), month_end("month"))
    counted = (pl.col("_ck") % 2) == 1
    return (
        merged.with_columns(pl.date_ranges(month_start("abs_start"), month_start("abs_end"),
                                           "1mo").alias("month"),
                            (pl.col("_ck") // 2).alias("cid"))
        .explode("month")
        .group_by(cm_key("month").alias("cm"))
        .agg(days.filter(counted).sum().cast(pl.Int64).alias("abs_days"),
             days.filter(~counted).sum().cast(pl.Int64).alias("other_abs_days"))
    )


def merge_intervals(periods: pl.LazyFrame, key: str = "cid") -> pl.LazyFrame:
    """Union of overlapping/adjacent [abs_start, abs_end] per contract (maternity followed by
    parental leave must not count a day twice)."""
    return (
        periods.sort([key, "abs_start", "abs_end"])
        .with_columns(pl.col("abs_end").cum_max().shift(1).over(key).alias("_prev_end"))
        .with_columns(((pl.col("_prev_end").is_null())
                       | (pl.col("abs_start") > pl.col("_prev_end") + pl.duration(days=1)))
                      .cast(pl.Int64).cum_sum().over(key).alias("_grp"))
        .group_by([key, "_grp"])
        .agg(pl.col("abs_start").min(), pl.col("abs_end").max())
        .drop("_grp")
    )


# --- the stage ------------------------------------------------------------------------------------

@dataclass
class WorkedTime:
    persons: pl.LazyFrame  # one row per nir examined (see worked_time docstring)
    uncreditable: pl.LazyFrame  # nir, ntt, reason, detail
    employments: pl.LazyFrame  # who employed whom in year N (``employments``)
    contract_months: pl.DataFrame | None = None  # per contract-month terms (``keep_terms``)
    withheld: pl.DataFrame | None = None  # nir: people not credited (identity conflicts)


UNCREDITABLE_SCHEMA = {"nir": pl.String, "ntt": pl.String, "year": pl.Int32, "reason": pl.String,
                       "detail": pl.String}


STAGE_SECONDS: dict[str, float] = {}  # wall time of each materialised stage of the last run


STAGE_CPU_SECONDS: dict[str, float] = {}  # CPU time (all threads) of each stage (shared machine)
_cpu_mark = [0.0]


def _timed(name: str, t0: float) -> float:
    t1, c1 = time.perf_counter(), time.process_time()
    STAGE_SECONDS[name] = STAGE_SECONDS.get(name, 0.0) + t1 - t0
    STAGE_CPU_SECONDS[name] = STAGE_CPU_SECONDS.get(name, 0.0) + c1 - _cpu_mark[0]
    _cpu_mark[0] = c1
    return t1


INT64_SAFE = 9 * 10 ** 18  # below 2**63: bound on Σ |terms| for Int64 contract-month arithmetic

CONTRACT_COLS = ["decl_id", "line_no", "decl_month", "siret", "person_occ", "nir", "ntt",
                 "contract_no", "contract_start", "planned_end", "contract_nature", "unit",
                 "ref_quota_h", "quota_h", "employment_status", "boeth", "policy_scheme"]
ACTIVITY_COLS = ["decl_id", "person_occ", "nir", "siret", "contract_no", "period_end",
                 "pay_type", "activity_type", "measure_h", "unit"]


def int_bound(paid: pl.DataFrame, versions: pl.DataFrame, n_rows: int) -> int:
    """Upper bound of Σ |contract-month term numerators| (M-scaled, ×12 for capped
    references, absences ≤ quotité): Int64 is exact below ``INT64_SAFE``."""
    def absmax(df: pl.DataFrame, cols: list[str]) -> int:
        if df.height == 0:
            return 0
        row = df.select(pl.max_horizontal([pl.col(c).abs().max() for c in cols])).item()
        return int(row or 0)
    max_paid = absmax(paid, ["paid_hours", "paid_days"])
    max_quota = absmax(versions, ["quota_h"])
    return 12 * (max_paid + 2 * max_quota) * M_SCALE * 2 * max(1, n_rows)


def worked_time(root_dir: Path | str, year: int, params: YearParams,
                buckets: list[int] | None = None, keep_terms: bool = False) -> WorkedTime:
    """Per person-year worked ratio (exact) and its explanation columns.

    persons columns: nir, ratio12_num, ratio12_den (ratio = ratio12_num / (12·ratio12_den),
    Int128), n_references, worked_ratio (Float64, display), months_counted, paid_hours_h,
    paid_days_h, presence_months, absence_days, absence_credited (Float64, display),
    references (e.g. "h:151.67"), sans_notion_remuneration_cents, smic_reference_cents,
    contracts_count, establishments_count, employers_count, source_decl_ids (lineage summary
    "<n> decl. <first decl_id>..<last decl_id>", version order; the full list for one person is
    ``source_declarations``), boeth, esat (category flags from DSN, ``credits``).

    Cost model: each big table is scanned ONCE (only the needed columns), mapped to integer
    contract ids by a lookup of the key's hash (``with_cid``), and materialised; current
    declarations are resolved once per process (``run_declarations``) and applied by an Enum
    cast of decl_id (``drank_expr``); every later join/group-by is on Int64 keys and contract
    attributes are gathers by cid (``of_contract``); contract-month arithmetic is
    Int64 (Int128 only for the per-person fraction fold, or everywhere if the data could
    overflow Int64); strings are rebuilt once per person at the end.

    ``keep_terms`` also returns ``contract_months``: the contract-month terms the ratio sums
    (one row per contract, month and unit family) for ``cpf explain``; off in campaigns.
    """
    p = params
    STAGE_SECONDS.clear()
    STAGE_CPU_SECONDS.clear()
    t, _cpu_mark[0] = time.perf_counter(), time.process_time()
    run = run_declarations(root_dir, buckets)
    decls, ident = run.decls, run.ident
    links, clinks = ident.links, contract_link_hashes(ident.contract_links)
    t = _timed("current_declarations", t)
    lo = date(year - 1, 12, 1)

    def read(table: str, cols: list[str], with_ord: bool = True) -> pl.LazyFrame:
        extra = ["_drank"] + (["_ord"] if with_ord else [])
        return scan_person_table(root_dir, table, run, buckets, with_ord,
                                 links if links.height else None).select(cols + extra)

    raw = (read("contracts", CONTRACT_COLS).filter(pl.col("decl_month") >= lo)
           .drop("decl_id", "line_no").with_columns(contract_key_hashes()).collect())
    keys = contract_dictionary(raw, clinks)
    ntt_rows = raw.filter(pl.col("nir").is_null() & pl.col("ntt").is_not_null()
                          & in_year("decl_month", year)).select("ntt", "siret")
    contracts = with_cid(raw.lazy().filter(pl.col("nir").is_not_null()), keys, clinks).collect()
    del raw
    t = _timed("scan_contracts", t)
    activities = (with_cid(read("activities", ACTIVITY_COLS + ["decl_month"], with_ord=False)
                           .filter(pl.col("nir").is_not_null() & (pl.col("decl_month") >= lo))
                           .drop("decl_id", "decl_month"), keys, clinks)
                  .with_columns(dk_key().alias("dk")).collect())
    t = _timed("scan_activities", t)
    child = ["decl_id", "line_no", "decl_month", "nir", "siret", "contract_no", "contract_start"]
    stoppages = with_cid(read("work_stoppages", child + ["motif", "last_worked_day",
                                                         "planned_end", "resumption_date"])
                         .filter(pl.col("nir").is_not_null()), keys, clinks)
    suspensions = with_cid(read("suspensions", child + ["motif", "start_date", "end_date"])
                           .filter(pl.col("nir").is_not_null()), keys, clinks)
    ends_raw = with_cid(read("contract_ends", child + ["end_date", "end_reason"],
                             with_ord=False).filter(pl.col("nir").is_not_null()), keys, clinks,
                        drop_remapped=True)

    versions = contract_versions(contracts.lazy(), p).collect()
    t = _timed("contract_versions", t)
    ends = contract_ends(ends_raw, versions, p)
    t = _timed("contract_ends", t)

    # 1. paid time by pay-period month (one row per contract-month, one column per family)
    activities = with_contract_unit(activities, contracts, keys.height)
    paid, sn_months = split_sans_notion_months(paid_time(activities.lazy(), p).collect())
    del contracts
    t = _timed("paid_time", t)
    # 2. presence fallback candidates (declared months without any Activité)
    no_act = declared_months_without_activity(activities.lazy(), versions, p).collect()
    del activities
    t = _timed("presence_candidates", t)
    # 3. absences
    all_abs = absence_days(stoppages, suspensions, ends, keys.height, p).collect()
    absd = all_abs.filter(pl.col("abs_days") > 0).select("cm", "abs_days")
    # days of other absences matter only where presence stands for the time worked
    no_act = no_act.join(all_abs.filter(pl.col("other_abs_days") > 0)
                         .select("cm", "other_abs_days"), on="cm", how="left")
    del all_abs
    t = _timed("absences", t)

    bound = int_bound(paid, versions, paid.height + no_act.height + absd.height)
    num_t = pl.Int64 if bound < INT64_SAFE else pl.Int128

    # grid of (contract, month) rows that carry something, with paid time and flags
    grid = (paid.lazy().join(no_act.lazy(), on="cm", how="full", coalesce=True)
            .join(absd.lazy(), on="cm", how="full", coalesce=True))
    cm = (with_contract_end(
            attributes_at(grid, versions.lazy())
            .filter(pl.col("oos_reason").is_null() & pl.col("family").is_in(["hours", "days"]))
            .with_columns(cm_cid().alias("cid"), cm_month().alias("month")), ends, keys.height)
          .with_columns(pl.col("no_activity").fill_null(False), pl.col("abs_days").fill_null(0),
                        pl.col("has_hours").fill_null(False), pl.col("has_days").fill_null(False),
                        days_in_month().alias("dim")))
    # presence fallback: days under contract, less the days of absences that are not worked
    # time (a forfait declaring no Activité, on sick leave, is not present)
    presence = pl.max_horizontal(
        pl.lit(0, pl.Int64),
        overlap_days(pl.col("contract_start").fill_null(date(year, 1, 1)),
                     pl.col("contract_end").fill_null(date(year, 12, 31)),
                     pl.col("month"), month_end("month"))
        - pl.col("other_abs_days").fill_null(0))
    cm = cm.with_columns(
        pl.when(pl.col("no_activity"))
        .then(pl.col("quota_h") * presence * (M_SCALE // pl.col("dim")))
        .otherwise(0).cast(pl.Int64).alias("presence_scaled"),
        (pl.col("quota_h") * pl.col("abs_days") * (M_SCALE // pl.col("dim")))
        .cast(pl.Int64).alias("absence_scaled"),
    )  # sans-notion months take the remuneration route (step 4)
    # rows per (contract, month, unit family): the contract's own family (always) + the other
    # family when an Activité was declared in it (53.003 override)
    is_h = pl.col("family") == "hours"
    own = cm.with_columns(
        pl.col("family").alias("act_family"),
        pl.when(is_h).then(pl.col("paid_hours")).otherwise(pl.col("paid_days")).fill_null(0)
        .alias("paid_h"), pl.lit(True).alias("own_family"))
    other = cm.filter(pl.when(is_h).then(pl.col("has_days")).otherwise(pl.col("has_hours"))) \
        .with_columns(
            pl.when(is_h).then(pl.lit("days")).otherwise(pl.lit("hours")).cast(FAMILIES)
            .alias("act_family"),
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
    cmf = (cmf.with_columns(*reference_fraction(p, num_t))
           .with_columns(of_contract(keys, "pid"))
           .select(*(["cid", "month", pl.col("other_abs_days").fill_null(0)] if keep_terms else []), "pid", pl.col("month").dt.month().cast(pl.Int8).alias("month_no"),
                   (pl.col("act_family") == "hours").alias("is_hours"), "own_family", "paid_h",
                   "presence_scaled", "abs_days", "absence_credited_scaled", "counted_scaled",
                   "term_num", "term_den", label_code().alias("_lcode"), "decl_min", "decl_max")
           .collect())
    t = _timed("contract_month_terms", t)
    terms_detail = None
    if keep_terms:
        terms_detail = contract_month_detail(cmf, keys, p)
        cmf = cmf.drop("cid", "month", "other_abs_days")

    # 4. sans-notion: remuneration route (only people with a sans-notion contract version can
    # have a sans-notion month: pay is pre-filtered on them)
    sn_cids = pl.concat([versions.filter(pl.col("family") == "sans_notion").select("cid"),
                         sn_months.select(cm_cid().alias("cid"))]).unique()
    sn_nirs = keys.join(sn_cids, on="cid", how="semi")["nir"].unique()
    rem_sn = pl.DataFrame(schema={"pid": pl.Int64, "amount_cents": pl.Int64,
                                  "decl_min": pl.Int64, "decl_max": pl.Int64})
    if sn_nirs.len():
        rem = with_cid(read("pay", ["decl_id", "decl_month", "nir", "siret", "contract_no",
                                    "pay_type", "period_end", "amount_cents"], with_ord=False)
                       .filter((pl.col("pay_type") == p.remuneration_pay_type)
                               & in_year("period_end", year))
                       .filter(pl.col("nir").is_in(sn_nirs.implode())), keys, clinks)
        rem_attr = attributes_at(
            rem.group_by(cm_key(month_start("period_end")).alias("cm")).agg(
                pl.col("amount_cents").sum(), pl.col("_drank").min().alias("decl_min"),
                pl.col("_drank").max().alias("decl_max")).collect(), versions.lazy())
        rem_sn = (rem_attr.filter(((pl.col("family") == "sans_notion")
                                   | pl.col("cm").is_in(sn_months["cm"].implode()))
                                  & pl.col("oos_reason").is_null())
                  .with_columns(cm_cid().alias("cid"))
                  .with_columns(of_contract(keys, "pid"))
                  .group_by("pid").agg(pl.col("amount_cents").sum(),
                                       pl.col("decl_min").min(), pl.col("decl_max").max())
                  .collect())
    t = _timed("sans_notion_pay", t)
    smic_x12 = p.smic_reference_cents_x12
    terms = pl.concat([
        cmf.lazy().group_by("pid", pl.col("term_den").alias("den"))
        .agg(pl.col("term_num").sum().cast(pl.Int128).alias("num")),
        rem_sn.lazy().select("pid", pl.lit(smic_x12, pl.Int64).alias("den"),
                             (pl.col("amount_cents").cast(pl.Int128) * 144).alias("num")),
    ])
    fractions = sum_fractions(terms, key="pid").collect()
    t = _timed("sum_fractions", t)

    persons = (person_explanations(cmf, rem_sn, fractions, versions, keys, decls, p)
               .with_columns(pl.col("boeth", "esat", "apprentice").fill_null(False))
               .select(pl.exclude("boeth", "esat", "apprentice"), "boeth", "esat", "apprentice")
               .sort("pid").drop("pid"))
    persons = persons.collect().lazy()
    t = _timed("persons", t)

    # 6. what is examined but cannot be credited
    unc = pl.concat([uncreditable_rows(versions, persons, keys, ntt_rows, p),
                     identity_uncreditable(persons, ident, year)])
    return WorkedTime(persons=persons, uncreditable=unc,
                      employments=employments(versions, keys, ends, year),
                      contract_months=terms_detail, withheld=ident.conflicts.select("nir"))


EMPLOYMENTS_SCHEMA = {"nir": pl.String, "year": pl.Int32, "siren": pl.String, "siret": pl.String,
                      "first_contract_start": pl.Date, "months_declared": pl.Int64,
                      "months_undeclared": pl.Int64, "undeclared_months": pl.String}


def month_bit(month_no: pl.Expr) -> pl.Expr:
    """Bit (m - 1) of a 12-bit set of months, for month number m (1-12): sets of months are
    unions by ``bitwise_or`` and counts by ``bitwise_count_ones``, on integers."""
    return pl.lit(2, pl.Int64).pow(month_no.cast(pl.Int64) - 1)


def contract_year_months(versions: pl.DataFrame, keys: pl.DataFrame, ends: ContractEnds,
                         year: int) -> pl.LazyFrame:
    """Per contract (``cid``) the run read: the months of N that a current declaration carries
    it (``declared``, a 12-bit set, ``month_bit``), the earliest 40.001 of those versions
    (``start_in_year``), and the months of N it was under contract without any
    (``undeclared``; in-scope contracts only).

    Under contract: from the month of its start (earliest 40.001) to the month of its end —
    the declared end (62.001, ``contract_ends``), else the latest planned end (40.010), else
    open — clipped to N; per episode when the number was reused (``ContractEnds``). A month
    counts as declared when a current declaration of that month holds the contract (its block
    is repeated every month while it runs, dsn_format.md §2). A month left undeclared (an
    establishment that did not file, or filed without the contract) counts no time of its own:
    operators see it before rerunning once the DSN arrive."""
    first, last = date(year, 1, 1), date(year, 12, 31)
    end = pl.coalesce(pl.col("contract_end"), pl.col("planned_end"))
    start = pl.col("contract_start").fill_null(first)
    from_m = pl.when(start < first).then(1).otherwise(start.dt.month().cast(pl.Int64))
    to_m = pl.when(end.is_null() | (end > last)).then(12).otherwise(end.dt.month().cast(pl.Int64))
    under = month_bit(to_m + 1) - month_bit(from_m)  # the months from_m..to_m
    open_in_year = (pl.col("in_scope") & (start <= last) & (end.is_null() | (end >= first))
                    & (end.is_null() | (end >= start)))  # an end before the start: no months
    this_year = in_year("decl_month", year)
    # every version the run read (from December N-1 on): a contract under contract in N that
    # only a later DSN declares (a late hire, an absence dated in N declared in N+1) is one
    # whose months of N no DSN of N declares
    v = versions.lazy()
    episodes = ends.per_start.height > 0
    if episodes:  # reused numbers: one row per episode first, with the episode's own end
        v = v.join(ends.per_start.lazy().select("cid", "contract_start", "episode_start",
                                                pl.col("contract_end").alias("_ep_end")),
                   on=["cid", "contract_start"], how="left")
    rows = (v.group_by(["cid", "episode_start"] if episodes else ["cid"]).agg(
                pl.when(this_year).then(month_bit(pl.col("decl_month").dt.month())).otherwise(0)
                .bitwise_or().alias("declared"),
                pl.col("contract_start").filter(this_year).min().alias("start_in_year"),
                pl.col("contract_start").min(), pl.col("planned_end").max(),
                pl.col("oos_reason").is_null().any().alias("in_scope"),
                *([pl.col("_ep_end").first()] if episodes else []))
            .with_columns(by_contract(ends.per_cid, "contract_end", keys.height)))
    if episodes:
        rows = rows.with_columns(pl.when(pl.col("episode_start").is_not_null())
                                 .then(pl.col("_ep_end")).otherwise(pl.col("contract_end"))
                                 .alias("contract_end"))
    rows = rows.with_columns(pl.when(open_in_year).then(under).otherwise(0).alias("under"))
    if episodes:  # a month is declared if any episode's version declares it
        rows = rows.group_by("cid").agg(pl.col("declared", "under").bitwise_or(),
                                        pl.col("start_in_year", "contract_start").min())
    return (rows.select("cid", "declared", "start_in_year", "contract_start",
                        (pl.col("under") - (pl.col("under") & pl.col("declared")))
                        .alias("undeclared"))
            .filter((pl.col("declared") > 0) | (pl.col("undeclared") > 0)))


def employments(versions: pl.DataFrame, keys: pl.DataFrame, ends: ContractEnds,
                year: int) -> pl.LazyFrame:
    """Who employed whom in year N, for analysts (the snapshot's ``employments``): one row per
    (nir, siret) with a contract declared in a month of N, or under contract in N without
    being declared — from the contract versions the run credits from (current declarations,
    identity links applied, out-of-scope contracts included), so it costs one integer
    aggregation per contract, not a second read of the lake.
    ``first_contract_start``: earliest 40.001 of the versions declared in N (else of the
    undeclared contracts); ``months_declared``: distinct declared months;
    ``months_undeclared`` / ``undeclared_months`` ("YYYY-MM …"): months of N under an
    in-scope contract that no current declaration carries (``contract_year_months``).
    Sorted by (nir, siret)."""
    months = [pl.when(pl.col("undeclared") & (1 << (m - 1)) > 0).then(pl.lit(f"{year}-{m:02d}"))
              for m in range(1, 13)]
    return (contract_year_months(versions, keys, ends, year)
            .with_columns(of_contract(keys, "pid"), of_contract(keys, "siret_code"))
            .group_by("pid", "siret_code").agg(
                pl.col("declared", "undeclared").bitwise_or(),
                pl.coalesce(pl.col("start_in_year").min(),
                            pl.col("contract_start").filter(pl.col("undeclared") > 0).min())
                .alias("first_contract_start"))
            .join(keys.lazy().select("pid", "siret_code", "nir", "siret")
                  .unique(["pid", "siret_code"]), on=["pid", "siret_code"], how="left",
                  nulls_equal=True)
            .select("nir", pl.lit(year, pl.Int32).alias("year"),
                    pl.col("siret").str.slice(0, 9).alias("siren"), "siret",
                    "first_contract_start",
                    pl.col("declared").bitwise_count_ones().cast(pl.Int64)
                    .alias("months_declared"),
                    pl.col("undeclared").bitwise_count_ones().cast(pl.Int64)
                    .alias("months_undeclared"),
                    pl.when(pl.col("undeclared") > 0)
                    .then(pl.concat_str(months, separator=" ", ignore_nulls=True))
                    .alias("undeclared_months"))
            .sort("nir", "siret"))


def identity_uncreditable(persons: pl.LazyFrame, ident: Identity, year: int) -> pl.LazyFrame:
    """Examined people concerned by a conflicting identity link (``identity_links``):
    ``identity_conflict`` (an old NIR claimed by several NIRs: not credited, never guessed)
    and ``contract_link_conflict`` (an old contract key claimed by several contracts: the
    contracts stay separate, the person is credited; reported for review)."""
    examined = persons.select("nir")
    frames = [examined.join(f.lazy(), on="nir", how="inner")
              .group_by("nir").agg(pl.col("detail").sort().str.join("; "))
              .select("nir", pl.lit(None, pl.String).alias("ntt"), pl.lit(reason).alias("reason"),
                      "detail")
              for reason, f in (("identity_conflict", ident.conflicts),
                                ("contract_link_conflict", ident.contract_conflicts))]
    return (pl.concat(frames).with_columns(pl.lit(year, pl.Int32).alias("year"))
            .select(list(UNCREDITABLE_SCHEMA)))


def contract_month_detail(cmf: pl.DataFrame, keys: pl.DataFrame, p: YearParams) -> pl.DataFrame:
    """The contract-month terms with their contract identity and readable quantities (hours or
    days in hundredths, reference label): what ``cpf explain`` shows row by row."""
    lab = label_table(cmf.select(pl.col("_lcode").unique()), p)
    return (cmf.join(keys.select("cid", *CONTRACT_KEY), on="cid", how="left")
            .join(lab, on="_lcode", how="left")
            .select(*CONTRACT_KEY, "month",
                    pl.when(pl.col("is_hours")).then(pl.lit("hours")).otherwise(pl.lit("days"))
                    .alias("family"), "own_family", "paid_h",
                    (pl.col("presence_scaled") // M_SCALE).alias("presence_h"),
                    "abs_days", "other_abs_days",
                    (pl.col("absence_credited_scaled") // M_SCALE).alias("absence_credited_h"),
                    "counted_scaled", "term_num", "term_den", "ref_label")
            .sort(*CONTRACT_KEY, "month", "family"))


def category_flags(p: YearParams) -> list[pl.Expr]:
    """Per person aggregations over the in-scope contract versions of year N
    (``person_explanations``): boeth (40.072 present), esat (40.007 = 70) — cpf_rules.md
    §2.1, §3."""
    return [pl.col("boeth").is_not_null().any().alias("boeth"),
            (pl.col("contract_nature") == p.esat_contract_nature).any().alias("esat"),
            pl.col("policy_scheme").is_in(list(p.apprentice_policy_schemes)).any()
            .alias("apprentice")]


def birth_year_from_nir(year: int) -> pl.Expr:
    """Year of birth from the NIR (characters 2-3; the century giving an age under 100 in
    ``year``), null when not digits."""
    yy = pl.col("nir").str.slice(1, 2).cast(pl.Int32, strict=False)
    return pl.when(yy + 2000 <= year).then(yy + 2000).otherwise(yy + 1900)


def under_age(p: YearParams) -> pl.Expr:
    """Below the account-opening age at the end of year N (L5151-2: 16, 15 with an
    apprenticeship contract in N; Decision ``min_age_reference`` = end_of_year), on the
    persons' ``nir`` and ``apprentice``; false when the NIR gives no year."""
    age = p.year - birth_year_from_nir(p.year)
    floor = pl.when(pl.col("apprentice").fill_null(False)).then(p.min_age_apprentice) \
        .otherwise(p.min_age)
    return (age < floor).fill_null(False)


def person_explanations(cmf: pl.DataFrame, rem_sn: pl.DataFrame, fractions: pl.DataFrame,
                        versions: pl.DataFrame, keys: pl.DataFrame, decls: pl.DataFrame,
                        p: YearParams) -> pl.LazyFrame:
    """One row per examined person: the exact fraction and the explanation columns. Counts
    and lineage bounds are integer aggregates on ``pid``; strings (nir, references,
    source_decl_ids) are built once per person (labels once per distinct reference)."""
    cmf_l = cmf.lazy()
    is_h = pl.col("is_hours")
    # row expressions first, then plain aggregations: Polars evaluates an expression inside
    # ``agg`` group by group (when/then and lookups there cost 2-4x more, measured)
    expl_cm = (cmf_l.select(
        "pid",
        # months of year N with counted time: a 12-bit set (bitwise or), then its popcount
        pl.when(pl.col("counted_scaled") > 0).then(month_bit(pl.col("month_no"))).otherwise(0)
        .alias("_months"),
        pl.when(is_h).then(pl.col("paid_h")).otherwise(0).alias("paid_hours_h"),
        pl.when(is_h).then(0).otherwise(pl.col("paid_h")).alias("paid_days_h"),
        (pl.col("presence_scaled") > 0).cast(pl.Int64).alias("presence_months"),
        pl.when(pl.col("own_family")).then(pl.col("abs_days")).otherwise(0).alias("absence_days"),
        pl.col("absence_credited_scaled").cast(pl.Int128).alias("_abs_cred"),
        pl.col("decl_min").alias("_cm_min"), pl.col("decl_max").alias("_cm_max"),
        pl.col("_lcode").alias("_lmin"), pl.col("_lcode").alias("_lmax"))
        .group_by("pid").agg(
            pl.col("_months").bitwise_or(),
            pl.col("paid_hours_h", "paid_days_h", "presence_months", "absence_days",
                   "_abs_cred").sum(),
            pl.col("_cm_min", "_lmin").min(), pl.col("_cm_max", "_lmax").max())
        .with_columns(pl.col("_months").bitwise_count_ones().cast(pl.Int64)
                      .alias("months_counted")).drop("_months").collect())
    # reference labels: formatted once per distinct code; only people with several codes
    # (several references) go through a per-person string join
    lab = label_table(cmf.select(pl.col("_lcode").unique()), p)
    multi = (expl_cm.lazy().filter(pl.col("_lmin") != pl.col("_lmax")).select("pid")
             .join(cmf_l.select("pid", "_lcode"), on="pid", how="inner")
             .join(lab.lazy(), on="_lcode", how="left")
             .group_by("pid").agg(pl.col("ref_label").unique().sort().str.join(" ")
                                  .alias("_multi")))
    expl_cm = (expl_cm.lazy().join(lab.lazy().rename({"_lcode": "_lmin"}), on="_lmin",
                                   how="left")
               .join(multi, on="pid", how="left")
               .with_columns(pl.coalesce("_multi", "ref_label").alias("references"))
               .drop("_lmin", "_lmax", "_multi", "ref_label"))
    expl_sn = rem_sn.lazy().select("pid",
                                   pl.col("amount_cents").alias("sans_notion_remuneration_cents"),
                                   pl.col("decl_min").alias("_sn_min"),
                                   pl.col("decl_max").alias("_sn_max"))
    # contracts of the year in scope: counts, lineage bounds and category flags in ONE
    # aggregation per person
    expl_c = (versions.lazy().filter(pl.col("oos_reason").is_null()
                                     & in_year("decl_month", p.year))
              .select("cid", "_drank", "boeth", "contract_nature", "policy_scheme")
              .with_columns(*[of_contract(keys, c) for c in ("pid", "siret_code", "siren_code")])
              .group_by("pid").agg(
                  pl.col("cid").n_unique().cast(pl.Int64).alias("contracts_count"),
                  pl.col("siret_code").n_unique().cast(pl.Int64).alias("establishments_count"),
                  pl.col("siren_code").n_unique().cast(pl.Int64).alias("employers_count"),
                  pl.col("_drank").min().alias("_c_min"), pl.col("_drank").max().alias("_c_max"),
                  pl.col("_drank").n_unique().cast(pl.Int64).alias("_n_decls"),
                  *category_flags(p)))
    examined = pl.concat([expl_c.select("pid"), expl_cm.select("pid"),
                          expl_sn.select("pid")]).unique()
    src_min = pl.min_horizontal("_c_min", "_cm_min", "_sn_min")
    src_max = pl.max_horizontal("_c_max", "_cm_max", "_sn_max")
    decl_id_of = lambda c: pl.lit(decls["decl_id"]).gather(pl.col(c))  # noqa: E731
    smic_x12 = p.smic_reference_cents_x12
    return (
        examined.join(fractions.lazy(), on="pid", how="left")
        .join(expl_cm, on="pid", how="left")
        .join(expl_sn, on="pid", how="left").join(expl_c, on="pid", how="left")
        .join(keys.lazy().filter(pl.col("pid") != pl.col("pid").shift(1).fill_null(-1))
              .select("pid", "nir"), on="pid", how="left")
        .with_columns(src_min.alias("_src_min"), src_max.alias("_src_max"))
        .with_columns(decl_id_of("_src_min").alias("_id_min"),  # decls row i is _drank i
                      decl_id_of("_src_max").alias("_id_max"))
        .with_columns(
            pl.col("frac_num").fill_null(pl.when(pl.col("n_dens").is_null()).then(0)),
            pl.col("frac_den").fill_null(pl.when(pl.col("n_dens").is_null()).then(1)),
            pl.col("n_dens").fill_null(0),
            pl.when(pl.col("_id_min").is_not_null())
            .then(pl.format("{} decl. {}..{}", pl.col("_n_decls").fill_null(0), "_id_min",
                            "_id_max"))
            .alias("source_decl_ids"),
            (pl.col("_abs_cred").cast(pl.Float64) / M_SCALE / 100).alias("absence_credited"),
        )
        .drop("_c_min", "_c_max", "_cm_min", "_cm_max", "_sn_min", "_sn_max", "_n_decls",
              "_src_min", "_src_max", "_id_min", "_id_max", "_abs_cred")
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


def source_declarations(root_dir: Path | str, nir: str, year: int) -> pl.DataFrame:
    """Full lineage for ONE person (``cpf explain``): every current declaration of year N
    (and of the months whose recalls count for N) in which the person has a contract,
    activity or pay row (also under an NTT linked to the NIR), with the table it was seen in.
    Reads that NIR's bucket only (and the buckets its identity links point to)."""
    bucket = nir_buckets(root_dir, pl.Series([nir]))["bucket"].item()
    run = run_declarations(root_dir, [bucket])
    links = run.ident.links
    frames = []
    for table in ("contracts", "activities", "pay", "work_stoppages", "suspensions",
                  "contract_ends"):
        frames.append(scan_person_table(root_dir, table, run, [bucket], with_ord=False,
                                        links=links)
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


def label_code() -> pl.Expr:
    """The reference of a contract-month term as one Int64 (``reference_label`` decodes it):
    ``_lab_r · 8 + _lab_kind · 2 + is_hours``."""
    return (pl.col("_lab_r").fill_null(0).cast(pl.Int64) * 8
            + pl.col("_lab_kind").cast(pl.Int64) * 2
            + (pl.col("act_family") == "hours").cast(pl.Int64))


def label_table(codes: pl.DataFrame, p: YearParams) -> pl.DataFrame:
    """(_lcode, ref_label) for the distinct codes of a run (a handful)."""
    return codes.with_columns(
        pl.when(pl.col("_lcode") % 2 == 1).then(pl.lit("hours")).otherwise(pl.lit("days"))
        .alias("act_family"),
        (pl.col("_lcode") // 2 % 4).cast(pl.Int8).alias("_lab_kind"),
        pl.when(pl.col("_lcode") // 2 % 4 == 0).then(pl.col("_lcode") // 8).alias("_lab_r"),
    ).select("_lcode", reference_label(p).alias("ref_label"))


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


def uncreditable_rows(versions: pl.DataFrame, persons: pl.LazyFrame, keys: pl.DataFrame,
                      ntt_rows: pl.DataFrame, p: YearParams) -> pl.LazyFrame:
    """Examined people the run does not credit, with a reason (never silently dropped):
    ntt_only (NTT never linked to a NIR, see ``identity_links``), out_of_scope (every contract of
    the year out of scope), out_of_scope_contract (excluded contract of a credited person),
    too_many_references, negative_worked_time, under_age (``under_age``)."""
    year = p.year
    ntt_only = (ntt_rows.lazy().group_by("ntt")
                .agg(pl.col("siret").unique().sort().str.join(",").alias("detail"))
                .select(pl.lit(None, pl.String).alias("nir"), "ntt",
                        pl.lit("ntt_only").alias("reason"),
                        pl.format("no NIR; establishments {}", "detail").alias("detail")))
    v = (versions.lazy().filter(in_year("decl_month", year))
         .select("cid", "oos_reason").with_columns(of_contract(keys, "pid")))
    in_scope = (v.filter(pl.col("oos_reason").is_null()).select("pid").unique()
                .with_columns(pl.lit(True).alias("_in_scope")))
    oos_rows = (v.filter(pl.col("oos_reason").is_not_null())
                .with_columns(of_contract(keys, "nir"), of_contract(keys, "contract_no"))
                .group_by("pid").agg(pl.col("nir").first(),
                                     pl.col("oos_reason").unique().sort().str.join(","),
                                     pl.col("contract_no").unique().sort().str.join(","))
                .join(in_scope, on="pid", how="left")
                .select("nir", pl.lit(None, pl.String).alias("ntt"),
                        pl.when(pl.col("_in_scope")).then(pl.lit("out_of_scope_contract"))
                        .otherwise(pl.lit("out_of_scope")).alias("reason"),
                        pl.format("{} (contracts {})", "oos_reason", "contract_no")
                        .alias("detail")))
    young = persons.filter(under_age(p)).select(
        "nir", pl.lit(None, pl.String).alias("ntt"), pl.lit("under_age").alias("reason"),
        pl.format("born in {} (NIR): {} at the end of {}; the account opens at {} ({} with an "
                  "apprenticeship contract), L5151-2", birth_year_from_nir(year),
                  pl.lit(year) - birth_year_from_nir(year), pl.lit(year), pl.lit(p.min_age),
                  pl.lit(p.min_age_apprentice)).alias("detail"))
    bad = persons.filter((pl.col("n_references") > K_MAX) | (pl.col("ratio12_num") < 0)).select(
        "nir", pl.lit(None, pl.String).alias("ntt"),
        pl.when(pl.col("n_references") > K_MAX).then(pl.lit("too_many_references"))
        .otherwise(pl.lit("negative_worked_time")).alias("reason"),
        pl.format("ratio12 = {}/{}; {} distinct references", pl.col("ratio12_num").cast(pl.String),
                  pl.col("ratio12_den").cast(pl.String), "n_references").alias("detail"))
    return (pl.concat([ntt_only, oos_rows, young, bad], how="vertical_relaxed")
            .with_columns(pl.lit(year, pl.Int32).alias("year"))
            .select(list(UNCREDITABLE_SCHEMA)))
