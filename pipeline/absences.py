"""Absence days per contract and month (cpf_rules.md §2.2): arrêts de travail (60) and other
suspensions (65), repeated in every monthly DSN, deduplicated, annulations applied, overlapping
periods merged, clipped to the contract and the year.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from pipeline.contract_attributes import ContractEnds, latest, with_contract_end
from pipeline.contract_keys import cm_key
from pipeline.months import month_end, month_start, overlap_days
from pipeline.parameters import YearParams


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
    days = overlap_days(pl.col("abs_start"), pl.col("abs_end"), pl.col("month"),
                        month_end("month"))
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
