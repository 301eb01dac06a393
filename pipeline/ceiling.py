"""The ceiling on the balance of earned rights (cpf_rules.md §4; R6323-1, R6323-3-1, D6323-3-3).

``credit = min(annual amount, max(0, ceiling − earned balance))``; never a negative credit, the
ceiling is never prorated, and top-ups (dotations) are outside it (they are not in
``earned_balance_cents``).
"""

from __future__ import annotations

import polars as pl


def room_under_ceiling(ceiling: str = "ceiling_cents",
                       balance: str = "balance_before_cents") -> pl.Expr:
    return pl.max_horizontal(pl.lit(0, pl.Int64), pl.col(ceiling) - pl.col(balance))


def capped_credit(amount: str = "annual_amount_cents") -> pl.Expr:
    return pl.min_horizontal(pl.col(amount), room_under_ceiling()).cast(pl.Int64)


def apply_ceiling(amounts: pl.LazyFrame, balances: pl.LazyFrame) -> pl.LazyFrame:
    """Add balance_before_cents, credit_cents, balance_after_cents to ``amounts``.

    ``amounts``: nir, annual_amount_cents, ceiling_cents (+ anything, kept).
    ``balances``: nir, earned_balance_cents (absent person = 0). Hour-era rows (null amount)
    get a null credit: see ``hour_era_credit`` for those.
    """
    bal = balances.select(pl.col("nir").cast(pl.String),
                          pl.col("earned_balance_cents").cast(pl.Int64))
    return (
        amounts.join(bal, on="nir", how="left")
        .with_columns(pl.col("earned_balance_cents").fill_null(0).alias("balance_before_cents"))
        .drop("earned_balance_cents")
        .with_columns(capped_credit().alias("credit_cents"))
        .with_columns((pl.col("balance_before_cents") + pl.col("credit_cents"))
                      .alias("balance_after_cents"))
        .sort("nir")  # a join does not keep row order in Polars 2.x: restore it explicitly
    )


def hour_era_credit(amount_first: pl.Expr, amount_second: pl.Expr, balance_h: pl.Expr,
                    first_tier_cap: int, ceiling: int) -> pl.Expr:
    """Hour era (2015-2018): 24 h/year until 120 h, then 12 h/year up to 150 h.
    The part of the year's hours that would exceed 120 at the first-tier rate is earned at the
    second-tier rate (amount_second / amount_first of it, i.e. half), rounded up to the hour;
    then capped at the 150 h ceiling. Whole hours (Int64)."""
    room1 = pl.max_horizontal(pl.lit(0), pl.lit(first_tier_cap) - balance_h)
    first = pl.min_horizontal(amount_first, room1)
    excess = amount_first - first
    second = pl.when(amount_first > 0).then(
        (excess * amount_second + amount_first - 1) // amount_first).otherwise(0)
    room = pl.max_horizontal(pl.lit(0), pl.lit(ceiling) - balance_h)
    return pl.min_horizontal(first + second, room).cast(pl.Int64)
