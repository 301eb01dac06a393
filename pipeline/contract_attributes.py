"""A contract's attributes month by month (cpf_rules.md §2.1): its versions (the latest current
declaration of each month), the attributes in force in any month (``attributes_at``), its unit
family and scope, its unit in each declaration, and its effective end per episode
(``contract_ends``: a reused contract number starts a new episode).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipeline.contract_keys import KEY_SHIFT, by_contract, cm_cid, cm_key, cm_month, dk_key
from pipeline.parameters import YearParams


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
