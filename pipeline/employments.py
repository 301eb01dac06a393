"""Who employed whom in year N (the snapshot's ``employments``), and the months under contract
that no current DSN declares (``months_undeclared``): operators see them before a rerun.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from pipeline.contract_attributes import ContractEnds
from pipeline.contract_keys import by_contract, of_contract
from pipeline.months import in_year, month_bit


EMPLOYMENTS_SCHEMA = {"nir": pl.String, "year": pl.Int32, "siren": pl.String, "siret": pl.String,
                      "first_contract_start": pl.Date, "months_declared": pl.Int64,
                      "months_undeclared": pl.Int64, "undeclared_months": pl.String}


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
