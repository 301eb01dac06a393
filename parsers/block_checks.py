"""Block-level structure anomalies (CT2025 §3.2-§3.3, dsn_format.md §1.4): blocks whose rows
would reach no one, found on the block occurrences ``structure.add_structure`` computed.

Without these checks such lines were counted *parsed* and silently unused (acceptance pass,
ingestion H1-H4): a contract block before its individual was stored under no NIR, and two
rubriques written out of order split a pay or activity block into two occurrences lacking
their keys, so January's hours or a contract's reference went nowhere.

- ``block_without_parent``: a block of a person table (a contract, pay, activity, absence…)
  with no open occurrence of the ancestor its rows hang on (an individual, a contract, a
  Rémunération) — a child block must follow its parent;
- ``incomplete_block``: an occurrence of a block the crediting reads that lacks one of the
  norm's mandatory rubriques it needs (``codes.REQUIRED_IN_BLOCK``): the rubrique is missing,
  or a rubrique out of order started a new occurrence (§1.4) and left both parts incomplete.

Both make the declaration's rows unattributable, like an anomaly on a key rubrique: the
validator rejects the declaration (scope ``declaration``; a warning for signalement natures).
Column-wise: occurrence starts are checked for their ancestors, and the required rubriques
present in each occurrence are OR-ed bits over the lines of the few blocks concerned.
"""

from __future__ import annotations

import polars as pl

from parsers import codes
from parsers.codes import Reason
from parsers.norm import descendants_or_self
from parsers.records import named_id
from parsers.structure import TABLE_ANCESTORS, Catalog, anc_col


def block_anomalies(df: pl.DataFrame, cat: Catalog) -> pl.DataFrame:
    """(row, own_reason, own_detail): one row per faulty block occurrence, on its first line.
    ``df``: the batch's lines with the ``add_structure`` columns and ``row``."""
    inside = pl.col("in_envoi") & pl.col("decl_line").is_not_null() & ~pl.col("envelope")
    return pl.concat([_orphans(df, cat, inside), _incomplete(df, cat, inside)],
                     how="vertical_relaxed").sort("row")


def _block_name(cat: Catalog) -> pl.Expr:
    """The block id of ``bcode`` (for the details)."""
    return pl.lit(pl.Series(cat.blocks)).gather(pl.col("bcode"))


def _orphans(df: pl.DataFrame, cat: Catalog, inside: pl.Expr) -> pl.DataFrame:
    orphan = pl.lit(None, pl.String)
    for t in reversed(TABLE_ANCESTORS):  # the highest missing ancestor is named (checked first)
        under = [c for c in (cat.bcode(b) for b in descendants_or_self(t) - {t}) if c >= 0]
        orphan = (pl.when(pl.col("bcode").is_in(under) & pl.col(anc_col(t)).is_null())
                  .then(pl.lit(t)).otherwise(orphan))
    return (df.lazy().filter(pl.col("is_new") & inside)
            .select("row", "line_no", "bcode", orphan.alias("_missing"))
            .filter(pl.col("_missing").is_not_null())
            .select("row", pl.lit(Reason.BLOCK_WITHOUT_PARENT).alias("own_reason"),
                    pl.format("{} block at line {} follows no {} block of its own (a child "
                              "block comes after its parent, CT2025 §3.2): its rows would "
                              "reach no one",
                              _block_name(cat), "line_no", "_missing")
                    .alias("own_detail"))
            .collect())


def _incomplete(df: pl.DataFrame, cat: Catalog, inside: pl.Expr) -> pl.DataFrame:
    required = [(b, r) for b, rs in codes.REQUIRED_IN_BLOCK.items() for r in rs
                if cat.bcode(b) >= 0 and cat.rcode(r) >= 0]
    if not required:
        return pl.DataFrame(schema={"row": pl.UInt32, "own_reason": pl.String,
                                    "own_detail": pl.String})
    bit = {r: 1 << i for i, (_, r) in enumerate(required)}
    need = {}
    for b, r in required:
        need[cat.bcode(b)] = need.get(cat.bcode(b), 0) | bit[r]
    rbits = pl.col("rcode").cast(pl.Int64).replace_strict(
        [cat.rcode(r) for _, r in required], [bit[r] for _, r in required], default=0,
        return_dtype=pl.Int64)
    # a malformed line still names its rubrique (a lost quote): present, its own anomaly is
    # reported on its line — the block is not also incomplete (round-6 pass H1)
    named = pl.when(pl.col("malformed")).then(pl.col("_named").replace_strict(
        [r for _, r in required], [bit[r] for _, r in required], default=0,
        return_dtype=pl.Int64)).otherwise(rbits)
    start = pl.col("is_new")  # the occurrence's own first line: a stray id or a malformed
    # line carries the occurrence before it, and is not an occurrence of its own (H2)
    # ... except that a malformed FIRST line of a block (53.001 lost a quote) belongs to the
    # occurrence that starts right after it, which would else lack it (round-7 pass H1)
    named_block = pl.col("_named").str.slice(0, codes.BLOCK_ID_WIDTH).replace_strict(
        cat.blocks, list(range(len(cat.blocks))), default=-1, return_dtype=pl.Int32)
    named_no = pl.col("_named").str.slice(codes.BLOCK_ID_WIDTH + 1, 3).cast(pl.Int32,
                                                                         strict=False)
    # §1.4 read on the malformed line as if it were well formed: it would open an occurrence
    # (another block than the line before, or a rubrique number that does not increase)...
    would_open = ((named_block != pl.col("bcode").shift(1))
                  | (named_no <= pl.col("rub_no").shift(1))).fill_null(True)
    # ... and the next line opens one of its block: it is that occurrence's first line
    opens_next = (pl.col("malformed") & would_open
                  & pl.col("is_new").shift(-1).fill_null(False)
                  & (named_block == pl.col("bcode").shift(-1))
                  & (pl.col("file_idx") == pl.col("file_idx").shift(-1)))
    # a malformed line whose id cannot be read (a leading blank, a damaged byte) right before
    # an occurrence's first line may have been its head: the rubriques numbered below that
    # line are not counted missing (its own anomaly is reported; round-8 pass H1)
    unread_before = (start & pl.col("malformed").shift(1).fill_null(False)
                     & pl.col("_named").shift(1).is_null()
                     & (pl.col("file_idx") == pl.col("file_idx").shift(1)))
    head_bits = pl.sum_horizontal([
        pl.when(unread_before & (pl.col("bcode") == cat.bcode(b))
                & (pl.col("rub_no") > int(r[codes.BLOCK_ID_WIDTH + 1:])))
        .then(pl.lit(bit[r], pl.Int64)).otherwise(pl.lit(0, pl.Int64)) for b, r in required])
    # eager: the shifts read the next line (a lazy query may run streaming, out of order)
    lines = (df.filter((pl.col("bcode").is_in(list(need)) | pl.col("malformed")) & inside)
             .with_columns(named_id().alias("_named")))
    occ = (lines.with_columns(pl.when(opens_next).then(pl.col("occ").shift(-1))
                              .otherwise(pl.col("occ")).alias("occ"),
                              (named | head_bits).alias("_bits"))
           .lazy().group_by("file_idx", "occ")
           .agg(pl.col("row").filter(start).first(), pl.col("line_no").filter(start).first(),
                pl.col("bcode").filter(start).first(), pl.col("_bits").bitwise_or().alias("_has"))
           .filter(pl.col("bcode").is_in(list(need)))
           .with_columns(pl.col("bcode").replace_strict(list(need), list(need.values()),
                                                        return_dtype=pl.Int64).alias("_need"))
           .filter((pl.col("_has") & pl.col("_need")) != pl.col("_need"))
           .collect())
    if occ.height == 0:
        return occ.select("row", own_reason=pl.lit(None, pl.String),
                          own_detail=pl.lit(None, pl.String))
    lacking = pl.concat_list([
        pl.when((pl.col("bcode") == cat.bcode(b)) & ((pl.col("_has") & bit[r]) == 0))
        .then(pl.lit(r)) for b, r in required]).list.drop_nulls().list.join(", ")
    return occ.sort("row").select(
        "row", pl.lit(Reason.INCOMPLETE_BLOCK).alias("own_reason"),
        pl.format("{} block at line {} lacks {} (missing, or a rubrique out of order started "
                  "a new occurrence of the block, CT2025 §3.2-§3.3)",
                  _block_name(cat), "line_no", lacking)
        .alias("own_detail"))
