"""Vectorised conversions of DSN text values to typed columns (no float anywhere).

Dates are ``JJMMAAAA``; amounts and quantities are decimal strings with a ``.`` and 0 or 2
decimals, optionally signed (CT2025 §4.4.7). Money becomes Int64 cents, quantities Int64
hundredths, by removing the decimal point from the exact string.
"""

from __future__ import annotations

import polars as pl

DSN_DATE_FORMAT = "%d%m%Y"
DSN_DATE_WIDTH = 8
_TWO_DECIMALS = r"^-?[0-9]+\.[0-9]{2}$"
_INTEGER = r"^-?[0-9]+$"
HUNDRED = 100


def to_date(expr: pl.Expr) -> pl.Expr:
    """``JJMMAAAA`` -> pl.Date; anything else (``99`` day/month, wrong width) -> null."""
    return (pl.when(expr.str.len_chars() == DSN_DATE_WIDTH)
            .then(expr.str.strptime(pl.Date, DSN_DATE_FORMAT, strict=False)))


def to_hundredths(expr: pl.Expr) -> pl.Expr:
    """``"151.67"`` -> 15167, ``"-1.10"`` -> -110, ``"35"`` -> 3500; invalid -> null.

    Exact: the decimal point is removed from the string, the digits are cast to Int64.
    """
    return (pl.when(expr.str.contains(_TWO_DECIMALS))
            .then(expr.str.replace(".", "", literal=True).cast(pl.Int64, strict=False))
            .when(expr.str.contains(_INTEGER))
            .then(expr.cast(pl.Int64, strict=False) * HUNDRED))


def to_cents(expr: pl.Expr) -> pl.Expr:
    """Money in euro cents (same exact conversion as quantities)."""
    return to_hundredths(expr)


def contract_number(expr: pl.Expr) -> pl.Expr:
    """Contract numbers are compared upper-cased and trimmed (DNUM practice, CT2025 §4.4.11)."""
    return expr.str.strip_chars().str.to_uppercase()
