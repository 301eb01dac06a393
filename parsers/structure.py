"""Block occurrences, envois, declarations and parents — vectorised (dsn_format.md §1.4).

Rules implemented column-wise over all lines of a batch of files (no per-line Python):

- a well-formed line starts a new occurrence of its block ``B`` when ``B`` differs from the
  previous well-formed line's block, or its rubrique number does not increase, or it is the
  first line of a file; the occurrence id is the line number of its first line (unique in a
  file, and the lineage ``line_no`` of the rows built from it);
- an *envoi segment* starts at each new ``S10.G00.00`` occurrence and at each file start;
  lines of the receiver lot envelope (S05/S06/S96/S95) belong to no envoi;
- a *declaration* starts at each new ``S20.G00.05`` occurrence and ends at the next one, at
  ``S90`` or at the next envoi;
- for each ancestor type ``T`` the open occurrence of ``T`` is forward-filled; it closes on a
  line of a known block that is not ``T`` or a descendant of ``T`` (stack semantics: the
  §1.4 example 30,40,40,30,40 attaches contract 3 to individual 2). Malformed lines and
  unknown blocks (platform enrichment) are transparent.
"""

from __future__ import annotations

import polars as pl

from parsers import codes
from parsers.norm import block_parents, descendants_or_self

_CLOSED = -1  # sentinel: the ancestor occurrence was closed


def anc_col(block: str) -> str:
    """Column holding the open occurrence of ``block`` (e.g. ``anc_S21.G00.30``)."""
    return f"anc_{block}"


def add_structure(lines: pl.DataFrame) -> pl.DataFrame:
    """Input: file_idx, line_no, rubrique, value, malformed (sorted by file_idx, line_no).

    Adds: block, rub_no, structure, is_new, occ, seg, envelope, in_envoi, decl_line and one
    ``anc_<block>`` column per ``codes.ANCESTOR_BLOCKS``.
    """
    known_blocks = list(block_parents())
    block = pl.col("block")
    file_start = pl.col("file_idx") != pl.col("file_idx").shift(1).fill_null(-1)
    df = lines.with_columns(
        pl.col("rubrique").str.slice(0, codes.BLOCK_ID_WIDTH).alias("block"),
        pl.col("rubrique").str.slice(codes.BLOCK_ID_WIDTH + 1, 3).cast(pl.Int32, strict=False)
        .alias("rub_no"),
        pl.col("rubrique").str.slice(0, 3).alias("structure"),
        file_start.alias("file_start"),
    )
    prev_block = block.shift(1).forward_fill()
    prev_rub = pl.col("rub_no").shift(1).forward_fill()
    # ffill would cross files: the file_start term resets it.
    is_new = block.is_not_null() & (
        pl.col("force_new").fill_null(False) | pl.col("file_start") | prev_block.is_null() | (block != prev_block)
        | (pl.col("rub_no") <= prev_rub)
    )
    df = df.with_columns(is_new.alias("is_new"),
                         pl.col("structure").is_in(list(codes.ENVELOPE_STRUCTURES)).fill_null(False)
                         .alias("envelope"))
    df = df.with_columns(
        pl.when(pl.col("is_new")).then(pl.col("line_no"))
        .when(pl.col("file_start")).then(_CLOSED).forward_fill().alias("occ"),
        (pl.col("file_start") | (pl.col("is_new") & (block == codes.ENVOI))).cum_sum()
        .cast(pl.Int64).alias("seg"),
    )
    df = df.with_columns(pl.when(pl.col("occ") != _CLOSED).then(pl.col("occ")).alias("occ"))
    seg_start = pl.col("seg") != pl.col("seg").shift(1).fill_null(-1)

    # Envoi extent: from the segment's S10 line to its last S90 line (or its end).
    bounds = df.group_by("seg").agg(
        pl.col("line_no").filter(block == codes.ENVOI).min().alias("s10_line"),
        pl.col("line_no").filter(block == codes.TOTALS).max().alias("s90_line"),
    )
    df = df.join(bounds, on="seg", how="left", maintain_order="left")
    in_envoi = (~pl.col("envelope") & pl.col("s10_line").is_not_null()
                & (pl.col("line_no") >= pl.col("s10_line"))
                & (pl.col("s90_line").is_null() | (pl.col("line_no") <= pl.col("s90_line"))))
    df = df.with_columns(in_envoi.fill_null(False).alias("in_envoi"))

    decl_start = pl.col("is_new") & (block == codes.DECLARATION)
    ends_decl = seg_start | (block == codes.TOTALS) | ~pl.col("in_envoi")
    df = df.with_columns(
        pl.when(decl_start).then(pl.col("line_no")).when(ends_decl).then(_CLOSED)
        .forward_fill().alias("decl_line"))
    df = df.with_columns(
        pl.when(pl.col("decl_line") != _CLOSED).then(pl.col("decl_line")).alias("decl_line"))

    known = block.is_in(known_blocks)
    anc_exprs = []
    for t in codes.ANCESTOR_BLOCKS:
        desc = list(descendants_or_self(t))
        opened = pl.col("is_new") & (block == t)
        closed = seg_start | (known & ~block.is_in(desc))
        anc_exprs.append(
            pl.when(opened).then(pl.col("line_no")).when(closed).then(_CLOSED)
            .forward_fill().alias(anc_col(t)))
    df = df.with_columns(anc_exprs)
    return df.with_columns([
        pl.when(pl.col(anc_col(t)) != _CLOSED).then(pl.col(anc_col(t))).alias(anc_col(t))
        for t in codes.ANCESTOR_BLOCKS
    ]).drop("s10_line")
