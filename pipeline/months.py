"""Calendar arithmetic on months, as cheap Polars expressions.

They run on every contract-month and Activité row: written with the day / days_in_month
fields and integer day arithmetic (Polars' truncate and month_end cost 3-7x more per row,
measured), year tests as range comparisons. ``M_SCALE`` makes the day fractions of a month
integers (``worked_time`` EXACTNESS).
"""

from __future__ import annotations

from datetime import date

import polars as pl


M_SCALE = 377_580  # lcm(28, 29, 30, 31): days-in-month denominators become integers



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


def year_months(year: int) -> pl.LazyFrame:
    return pl.LazyFrame({"month": pl.date_range(date(year, 1, 1), date(year, 12, 1), "1mo",
                                                eager=True)})


def month_bit(month_no: pl.Expr) -> pl.Expr:
    """Bit (m - 1) of a 12-bit set of months, for month number m (1-12): sets of months are
    unions by ``bitwise_or`` and counts by ``bitwise_count_ones``, on integers."""
    return pl.lit(2, pl.Int64).pow(month_no.cast(pl.Int64) - 1)
