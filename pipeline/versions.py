"""Which declarations are used downstream: A&R substitution, fractions, test exclusion.

Consumer rules (dsn_format.md §3.3; the CDC is a receiving organism, so it must do the
substitution itself):

- only DSN mensuelles (nature 01), not from test envois (S10.G00.00.005 = 01), not rejected;
- a declaration is keyed by (SIRET, declared month, fraction): each fraction is its own key,
  so the fractions of one month (12 and 22) are both current and unioned downstream;
- a type 03/05 declaration replaces the one whose *self id* (S20.G00.05.007 raw JJMMAAAA +
  S20.G00.05.004) equals its S20.G00.05.006, within the same key; replaced declarations stay
  in the lake for audit but are not current (chains A <- B <- C leave only C);
- if several unreplaced versions remain in a key (e.g. the same declaration received twice,
  or an A&R whose link is broken), the latest by (constitution date, numeric order number,
  decl_id) wins, so exactly one declaration per key is current.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from parsers import codes
from parsers.lake import scan

KEY = ["siret", "decl_month", "fraction"]

# The order in which the latest of several unreplaced versions of one key wins.
LATEST_ORDER = [pl.col("constitution_date"), pl.col("order_no").cast(pl.Int64, strict=False),
                pl.col("decl_id")]


def is_usable() -> pl.Expr:
    """A declaration eligible to be current: mensuelle, real, accepted, keyed."""
    return ((pl.col("nature") == codes.NATURE_MENSUELLE)
            & ~pl.col("envoi_is_test").fill_null(False)
            & ~pl.col("rejected").fill_null(False)
            & pl.col("siret").is_not_null() & pl.col("decl_month").is_not_null())


def usable_declarations(lake_dir: Path | str, month: date | None = None) -> pl.LazyFrame:
    """Declarations eligible to be current, of one declared month only when ``month`` is
    given."""
    decls = scan(lake_dir, "declarations")
    if month is not None:
        decls = decls.filter(pl.col("decl_month") == month)
    return decls.filter(is_usable())


def keyed_declarations(usable: pl.LazyFrame) -> pl.LazyFrame:
    """Declarations with their full KEY: no fraction (S20.G00.05.003 absent) is the whole
    month, fraction 11."""
    return usable.with_columns(pl.col("fraction").fill_null("11"))


def _named(keyed: pl.LazyFrame) -> pl.LazyFrame:
    """(KEY, self_id) named by an annule-et-remplace's S20.G00.05.006, with the latest such
    replacing declaration (``named_by``)."""
    return (keyed.filter(pl.col("decl_type").is_in(list(codes.REPLACING_TYPES))
                         & pl.col("replaced_id").is_not_null())
            .sort([*KEY, "replaced_id", *LATEST_ORDER], nulls_last=False)
            .group_by([*KEY, "replaced_id"], maintain_order=True)
            .agg(pl.col("decl_id").last().alias("named_by"))
            .rename({"replaced_id": "self_id"}))


def resolve_current(usable: pl.LazyFrame) -> pl.LazyFrame:
    """The current version of each key among ``usable`` declarations (see the module doc).

    Nearly every key has a single unreplaced version, and a national year holds some 24
    million declarations: only the keys that may hold several (a duplicated 64-bit hash of the
    key: a collision merely adds a key to this exact path) are sorted to pick their latest
    version; the others pass through without a sort of the whole table."""
    keyed = keyed_declarations(usable)
    return _resolve(keyed, _named(keyed))


def _resolve(keyed: pl.LazyFrame, named: pl.LazyFrame) -> pl.LazyFrame:
    """``resolve_current`` on keyed declarations and the versions A&R name (``_named``)."""
    alive = (keyed.join(named.select(*KEY, "self_id"), on=[*KEY, "self_id"], how="anti",
                        nulls_equal=False)
             .select("decl_id", *KEY, "decl_type", "order_no", "constitution_date",
                     "file_sha256", pl.struct(*KEY).hash().is_duplicated().alias("_several")))
    several = (alive.filter("_several").sort([*KEY, *LATEST_ORDER], nulls_last=False)
               .group_by(KEY, maintain_order=True).last())
    return pl.concat([alive.filter(~pl.col("_several")), several],
                     how="diagonal").drop("_several")


def current_declarations(lake_dir: Path | str, month: date | None = None) -> pl.LazyFrame:
    """decl_id (plus key and version columns) of the declarations to use downstream (of one
    declared month when ``month`` is given: the month is part of the key, so months resolve
    independently and a caller can bound its memory to one month at a time)."""
    return resolve_current(usable_declarations(lake_dir, month))


def version_status(decls: pl.LazyFrame) -> pl.LazyFrame:
    """``decls`` (one row per decl_id) with ``current`` and, for a usable declaration that is
    not current, ``superseded_by`` (decl_id) and ``superseded_reason``: REPLACED_DECLARATION
    when an annule-et-remplace of its key names it (superseded_by = that A&R), else
    OLDER_VERSION (superseded_by = the current version of its key). Its lines stay in the
    lake for audit; the quarantine view lists it, so every declaration not used has a why."""
    keyed = keyed_declarations(decls.filter(is_usable()))
    named = _named(keyed)
    cur = _resolve(keyed, named).select(*KEY, pl.col("decl_id").alias("_current"))
    is_cur = (pl.col("decl_id") == pl.col("_current")).fill_null(False)
    is_named = pl.col("named_by").is_not_null()
    status = (keyed.select("decl_id", *KEY, "self_id")
              .join(cur, on=KEY, how="left", nulls_equal=False)
              .join(named, on=[*KEY, "self_id"], how="left", nulls_equal=False)
              .select("decl_id", is_cur.alias("current"),
                      pl.when(is_cur).then(None).when(is_named).then(pl.col("named_by"))
                      .otherwise(pl.col("_current")).alias("superseded_by"),
                      pl.when(is_cur).then(None)
                      .when(is_named).then(pl.lit(codes.Reason.REPLACED_DECLARATION))
                      .otherwise(pl.lit(codes.Reason.OLDER_VERSION)).alias("superseded_reason")))
    return (decls.join(status, on="decl_id", how="left")
            .with_columns(pl.col("current").fill_null(False)))


def only_current(table: pl.LazyFrame, lake_dir: Path | str) -> pl.LazyFrame:
    """Keep the rows of any lake table whose declaration is current (semi-join on decl_id)."""
    return table.join(current_declarations(lake_dir).select("decl_id"), on="decl_id", how="semi")


def scan_current(lake_dir: Path | str, table: str) -> pl.LazyFrame:
    """``scan(lake_dir, table)`` restricted to current declarations."""
    return only_current(scan(lake_dir, table), lake_dir)
