"""Absence days per contract and month (cpf_rules.md §2.2): arrêts de travail (60) and other
suspensions (65), repeated in every monthly DSN, deduplicated, annulations applied, overlapping
periods merged, clipped to the contract and the year.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from pipeline.contract_attributes import ContractEnds, latest, with_contract_end
from pipeline.contract_keys import cm_key
from pipeline.months import M_SCALE, days_in_month, month_end, month_start, overlap_days
from pipeline.parameters import YearParams


def absence_period(table: str) -> tuple[pl.Expr, pl.Expr]:
    """(first day, last day) of an absence row as cpf_rules.md §2.2 reads it: an arrêt
    (``work_stoppages``, block 60) from the day after 60.002 (last day worked) to the day
    before 60.010 (reprise) if known, else to 60.003 (planned end); a suspension
    (``suspensions``, block 65) from 65.002 to 65.003. A null end is open."""
    if table == "work_stoppages":
        day = pl.duration(days=1)
        return (pl.col("last_worked_day") + day,
                pl.coalesce(pl.col("resumption_date") - day, pl.col("planned_end")))
    return pl.col("start_date"), pl.col("end_date")


def cancel_motif(table: str, p: YearParams) -> str:
    """The motif that annuls an absence of ``table``: 60.001 = 99, 65.001 = 998."""
    return p.stoppage_cancel_motif if table == "work_stoppages" else p.suspension_cancel_motif


def qualifying_motifs(table: str, p: YearParams) -> tuple[str, ...]:
    """The motifs of ``table`` that L6323-12 counts as worked time (cpf_rules.md §2.2)."""
    return (p.qualifying_stoppages if table == "work_stoppages"
            else p.qualifying_suspension_motifs)


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
        not_cancelled(stoppages, cancel_motif("work_stoppages", p), ["cid", "last_worked_day"])
        .filter(latest(["cid", "motif", "last_worked_day"]))  # the latest declaration
        # of an arrêt carries its reprise date
        .select("cid", "contract_start",
                pl.col("motif").is_in(list(qualifying_motifs("work_stoppages", p)))
                .alias("counted"),
                *(e.alias(n) for e, n in zip(absence_period("work_stoppages"),
                                             ("abs_start", "abs_end"))))
    )
    susp = (
        not_cancelled(suspensions, cancel_motif("suspensions", p), ["cid", "start_date"])
        .filter(latest(["cid", "motif", "start_date"]))
        .select("cid", "contract_start",
                pl.col("motif").is_in(list(qualifying_motifs("suspensions", p)))
                .alias("counted"),
                *(e.alias(n) for e, n in zip(absence_period("suspensions"),
                                             ("abs_start", "abs_end"))))
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
             days.filter(~counted).sum().cast(pl.Int64).alias("other_abs_days"),
             day_mask().filter(counted).bitwise_or().fill_null(0).alias("abs_mask"))
    )


def day_mask() -> pl.Expr:
    """The days of [abs_start, abs_end] inside ``month`` as bits 0-30 of an Int64 (bit d-1 for
    day d): OR-ed across a person's contracts, the days they are absent from any of them,
    each day once (``worked_time.sans_notion_absence_days``)."""
    two = pl.lit(2, pl.Int64)
    first = pl.max_horizontal("abs_start", "month").dt.day().cast(pl.Int64)
    last = pl.min_horizontal("abs_end", month_end("month")).dt.day().cast(pl.Int64)
    return two.pow(last) - two.pow(first - 1)


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


def sans_notion_absence_terms(absent: pl.LazyFrame, paid: pl.LazyFrame,
                              p: YearParams) -> pl.LazyFrame:
    """Per person, what their qualifying absences on contracts paid without time basis add
    to 12 x the worked ratio, exactly (``num`` / ``den``, one row per person and month).

    L6323-12 counts these absences in full, and such a contract has no quotité: the month's
    reference 2080/12 x SMIC (of the 1st of the month) stands for it, once per PERSON and
    month (two such jobs on one maternity do not count two references). Decision
    ``sans_notion_absence_counted`` (the absence_cap decision in euros): the month counts
    ``min(reference x days / days_in_month, max(0, reference - remuneration))`` on top of its
    remuneration, ``days`` the days the person is absent from any of their such contracts that month
    (``absent``: pid, month, abs_days, one row per person and month) and ``remuneration``
    their pay of that month (``paid``: pid, month, amount_cents), so a salary kept during
    maternity is not counted twice. Remuneration-route months only: a month declared in
    hours or days (53.003) takes its absence in time (``worked_time``, step 3). Scaled by
    12 x days_in_month, every figure is an integer: term = 144 x credited / (12 x SMIC
    reference of the year) = 12 C' / (dim x smic_x12) = 12 C' (M_SCALE / dim) / (M_SCALE x
    smic_x12)."""
    if not p.sans_notion_absence_counted:
        return pl.LazyFrame(schema={"pid": pl.Int64, "abs_days": pl.Int64, "num": pl.Int64,
                                    "den": pl.Int64})
    smic = pl.lit(pl.Series(p.smic_monthly_cents, dtype=pl.Int64)).gather(
        pl.col("month").dt.month().cast(pl.Int64) - 1)
    ref = pl.lit(p.smic_hours_multiplier, pl.Int64) * smic  # 12 x the month's reference
    dim = days_in_month("month")
    credited = pl.min_horizontal(  # C' = 12 x dim x credited cents
        ref * pl.col("abs_days"),
        pl.max_horizontal(pl.lit(0, pl.Int64),
                          (ref - 12 * pl.col("amount_cents").fill_null(0)) * dim))
    pay = paid.group_by("pid", "month").agg(pl.col("amount_cents").sum())
    # over M_SCALE (a multiple of every dim) the person's absence months share ONE
    # denominator, that of the remuneration route times M_SCALE: a maternity over months of 28,
    # 30 and 31 days took three of the K_MAX references folded exactly (fractions.py)
    return (absent.join(pay, on=["pid", "month"], how="left")
            .select("pid", "abs_days", (12 * credited * (M_SCALE // dim)).alias("num"),
                    pl.lit(M_SCALE * p.smic_reference_cents_x12, pl.Int64).alias("den")))


