"""Dotations (droits supplémentaires, décret 2025-341, R6323-42 and R6323-42-1).

A funder other than the holder credits an account: each allocation is a **lot** on the
``dotation`` sub-ledger, outside the earned-rights ceiling, with its conditions (certification
codes it is reserved to, a deadline for use, whether the unused part goes back to the funder).

Input CSV (``--dotations``), header::

    funder_id,nir,amount_cents,received_date,certification_codes,deadline,refund

``certification_codes`` is an optional ``;``-list, ``deadline`` an optional ISO date (last day
the lot may be used), ``refund`` true/false (empty = false). Bad rows are reported with their
line number (1 = header) and never silently dropped.

Postings (pure, idempotent):
- a lot received on or before the run date (``as_of``) and not yet in the ledger → one
  ``dotation`` entry (+amount), year = year received;
- a lot whose deadline is before ``as_of`` and that has not expired yet → its remaining balance
  leaves the account: ``dotation_refund`` when the refund flag is set (the funder gets it back),
  else ``dotation_expiry``. Spending is not tracked here (it is the CPF service's), so the
  remaining balance is the lot's net of the ledger's entries for that lot.

**Decision**: the run date is a parameter of the run (``as_of``, recorded in the manifest), never
the wall clock at posting time, so a replay reproduces the same expiries.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import polars as pl

from parsers.account_inputs import NIR_CHECK, Check, amount_guard, read_checked

from pipeline.ledger import (DOTATION, DOTATION_EXPIRY, DOTATION_KIND, DOTATION_REFUND,
                             RunMeta, _with_entry_ids, conform, empty_entries)

LOT_SCHEMA: dict[str, pl.DataType] = {
    "lot_id": pl.String(),
    "funder_id": pl.String(),
    "nir": pl.String(),
    "amount_cents": pl.Int64(),
    "received_date": pl.Date(),
    "certification_codes": pl.String(),  # ';'-list, sorted, or null
    "deadline": pl.Date(),
    "refund": pl.Boolean(),
    "source": pl.String(),  # "dotations:<sha256>:<line>"
}
HEADER = ["funder_id", "nir", "amount_cents", "received_date", "certification_codes",
          "deadline", "refund"]
_TRUE = {"1", "true", "yes", "y", "oui", "o", "t"}
_FALSE = {"", "0", "false", "no", "n", "non", "f"}


def empty_lots() -> pl.DataFrame:
    return pl.DataFrame(schema=LOT_SCHEMA)


def read_dotations(path: Path, sha256: str = "") -> tuple[pl.DataFrame, list[str]]:
    """Read the dotations CSV → (lots, errors "path:line: field 'value': reason"), through the
    reader of --holders / --balances (``parsers.account_inputs.read_checked``): the exact
    header, the field count of every line, UTF-8 located to the line, the NIR rule and the
    amount guard are the same; a NIR may hold several lots (no duplicate check)."""
    checks: list[Check] = [
        ("funder_id", pl.col("funder_id") == "", "empty funder_id"),
        NIR_CHECK,
        ("amount_cents", pl.col("_amount").is_null(), "not an integer number of cents"),
        ("amount_cents", pl.col("_amount") <= 0, "must be positive"),
        amount_guard("amount_cents", "_amount"),
        ("received_date", pl.col("_received").is_null(), "not an ISO date (YYYY-MM-DD)"),
        ("deadline", (pl.col("deadline") != "") & pl.col("_deadline").is_null(),
         "not an ISO date (YYYY-MM-DD)"),
        ("refund", ~pl.col("_refund_raw").is_in(list(_TRUE | _FALSE)), "must be true or false"),
        ("deadline", pl.col("_deadline") < pl.col("_received"), "before received_date"),
    ]
    good, errors = read_checked(Path(path), HEADER, typed=[
        pl.col("amount_cents").cast(pl.Int64, strict=False).alias("_amount"),
        pl.col("received_date").str.to_date("%Y-%m-%d", strict=False).alias("_received"),
        pl.when(pl.col("deadline") == "").then(None)
        .otherwise(pl.col("deadline")).str.to_date("%Y-%m-%d", strict=False).alias("_deadline"),
        pl.col("refund").str.to_lowercase().alias("_refund_raw"),
    ], checks=checks, keep=["funder_id", "nir", "_amount", "_received", "certification_codes",
                            "_deadline", "_refund_raw"], unique=None)
    messages = [str(e) for e in errors]
    if good is None:
        return empty_lots(), messages
    lots = good.select(
        pl.col("funder_id"), pl.col("nir"), pl.col("_amount").alias("amount_cents"),
        pl.col("_received").alias("received_date"),
        pl.when(pl.col("certification_codes") == "").then(None).otherwise(
            pl.col("certification_codes").str.split(";").list.eval(pl.element().str.strip_chars())
            .list.sort().list.join(";")).alias("certification_codes"),
        pl.col("_deadline").alias("deadline"),
        pl.col("_refund_raw").is_in(list(_TRUE)).alias("refund"),
        pl.concat_str([pl.lit(f"dotations:{sha256}:"), pl.col("line_no").cast(pl.String)])
        .alias("source"),
    )
    return with_lot_ids(lots), messages


def with_lot_ids(lots: pl.DataFrame) -> pl.DataFrame:
    """lot_id = sha256 of the lot's content + its occurrence number among identical rows, so a
    file re-sent unchanged books nothing new, and two identical allocations are two lots."""
    ident = pl.concat_str(
        [pl.col("funder_id"), pl.col("nir"), pl.col("amount_cents").cast(pl.String),
         pl.col("received_date").cast(pl.String), pl.col("certification_codes").fill_null(""),
         pl.col("deadline").cast(pl.String).fill_null(""), pl.col("refund").cast(pl.String)],
        separator="|")
    lots = lots.with_columns(ident.alias("_ident"))
    lots = lots.with_columns(pl.col("_ident").cum_count().over("_ident").alias("_occ"))
    keys = (lots["_ident"] + "|" + lots["_occ"].cast(pl.String)).to_list()
    ids = pl.Series("lot_id", [hashlib.sha256(k.encode()).hexdigest()[:20] for k in keys],
                    dtype=pl.String)
    out = lots.with_columns(ids).drop("_ident", "_occ")
    return out.select([pl.col(c).cast(t) for c, t in LOT_SCHEMA.items()]).sort("lot_id")


def merge_lots(previous: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """The cumulative lot register (kept in every run's snapshot): previous ∪ new, by lot_id."""
    both = pl.concat([previous.select(list(LOT_SCHEMA)), new.select(list(LOT_SCHEMA))])
    return both.unique("lot_id", keep="first", maintain_order=True).sort("lot_id")


def plan_dotations(ledger: pl.LazyFrame | pl.DataFrame, lots: pl.DataFrame, as_of: dt.date,
                   meta: RunMeta) -> pl.DataFrame:
    """New ``dotation`` / ``dotation_expiry`` / ``dotation_refund`` entries as of ``as_of``."""
    led = (ledger.lazy() if isinstance(ledger, pl.DataFrame) else ledger).filter(
        pl.col("sub_ledger") == DOTATION).collect()
    if lots.height == 0:
        return empty_entries()
    booked = led.filter(pl.col("kind") == DOTATION_KIND).select("lot_id").unique()
    received = lots.filter(pl.col("received_date") <= as_of)
    new_lots = received.join(booked, on="lot_id", how="anti")
    credit = new_lots.select(
        pl.lit(meta.run_id).alias("run_id"), "nir",
        pl.col("received_date").dt.year().cast(pl.Int32).alias("year"),
        pl.lit(DOTATION_KIND).alias("kind"), pl.lit(DOTATION).alias("sub_ledger"),
        "amount_cents", "lot_id", pl.lit(meta.param_version).alias("param_version"),
        pl.lit(meta.code_version).alias("code_version"), "source",
    )
    after = pl.concat([led, conform(credit)])
    closed = after.filter(pl.col("kind").is_in([DOTATION_EXPIRY, DOTATION_REFUND])).select(
        "lot_id").unique()
    remaining = after.group_by("lot_id").agg(pl.col("amount_cents").sum().alias("remaining"))
    due = (received.filter(pl.col("deadline").is_not_null() & (pl.col("deadline") < as_of))
           .join(closed, on="lot_id", how="anti")
           .join(remaining, on="lot_id", how="inner")
           .filter(pl.col("remaining") > 0))
    expiry = due.select(
        pl.lit(meta.run_id).alias("run_id"), "nir",
        pl.col("received_date").dt.year().cast(pl.Int32).alias("year"),
        pl.when(pl.col("refund")).then(pl.lit(DOTATION_REFUND)).otherwise(pl.lit(DOTATION_EXPIRY))
        .alias("kind"),
        pl.lit(DOTATION).alias("sub_ledger"),
        (-pl.col("remaining")).alias("amount_cents"), "lot_id",
        pl.lit(meta.param_version).alias("param_version"),
        pl.lit(meta.code_version).alias("code_version"),
        pl.concat_str([pl.col("source"), pl.lit(f":deadline<{as_of.isoformat()}")]).alias("source"),
    )
    return conform(_with_entry_ids(conform(pl.concat([conform(credit), conform(expiry)]))))
