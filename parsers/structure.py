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

Performance: rubriques are turned once into small integer codes (an ``Enum`` cast against the
batch's rubrique catalogue); every per-rubrique attribute (block, number, envelope, norm
attributes…) is then a ``gather`` from a small array, and every comparison runs on integers.
Per-envoi and per-declaration values go back to the lines by ``gather`` on dense ordinals
(``seg``, ``decl_no``), never by a join of the line table. Only the ancestor types the
validator and the tables use (``TABLE_ANCESTORS``) are forward-filled.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from parsers import codes
from parsers.norm import block_parents, descendants_or_self, rubrique_ids

_CLOSED = -1  # sentinel: the ancestor occurrence was closed
# Ancestor types whose open occurrence the validator and the tables need.
TABLE_ANCESTORS = (codes.INDIVIDUAL, codes.CONTRACT, codes.PAY)


def anc_col(block: str) -> str:
    """Column holding the open occurrence of ``block`` (e.g. ``anc_S21.G00.30``)."""
    return f"anc_{block}"


@dataclass(frozen=True)
class Catalog:
    """The batch's rubriques: ``rcode`` (Enum physical code) -> attributes; blocks -> codes."""

    rubriques: pl.DataFrame  # rcode, rubrique, block, bcode, rub_no, envelope, block_known, s10_s90
    blocks: list[str]
    enum: pl.Enum

    def bcode(self, block: str) -> int:
        return self.blocks.index(block) if block in self.blocks else -1

    def rcode(self, rubrique: str) -> int:
        index = self.__dict__.get("_index")
        if index is None:  # id -> code, built once per catalogue
            index = {r: i for i, r in enumerate(self.enum.categories.to_list())}
            object.__setattr__(self, "_index", index)
        return index.get(rubrique, -1)

    def rcodes(self, rubriques) -> list[int]:
        return [c for c in (self.rcode(r) for r in rubriques) if c >= 0]


def build_catalog(rubriques: pl.Series,
                  static_codes: pl.Series | None = None) -> tuple[Catalog, pl.Series]:
    """Catalogue of the norm ids plus the batch's other ids, and the lines' codes (UInt32).

    ``static_codes``: the lines' physical codes in ``norm.rubrique_enum()`` when already known
    (``records.split_lines``), which spares a second cast of every id."""
    static = list(rubrique_ids())
    if static_codes is None:
        codes_ = rubriques.cast(pl.Enum(static), strict=False).to_physical()
    else:
        codes_ = static_codes
    extra_mask = codes_.is_null() & rubriques.is_not_null()
    ids = static
    if extra_mask.any():  # ids outside the norm (rare): appended after the norm's
        ids = static + sorted(set(rubriques.filter(extra_mask).unique().to_list()))
        codes_ = rubriques.cast(pl.Enum(ids)).to_physical()
    enum = pl.Enum(ids)
    known_blocks = list(block_parents())
    cat = pl.DataFrame({"rubrique": ids}).with_row_index("rcode").with_columns(
        pl.col("rubrique").str.slice(0, codes.BLOCK_ID_WIDTH).alias("block"),
        pl.col("rubrique").str.slice(codes.BLOCK_ID_WIDTH + 1, 3).cast(pl.Int32, strict=False)
        .alias("rub_no"),
        pl.col("rubrique").str.slice(0, 3).is_in(list(codes.ENVELOPE_STRUCTURES)).alias("envelope"),
        pl.col("rubrique").str.slice(0, 3).is_in(["S10", "S90"]).alias("s10_s90"),
    )
    blocks = known_blocks + sorted(set(cat.get_column("block").to_list()) - set(known_blocks))
    cat = cat.with_columns(
        pl.col("block").replace_strict(blocks, list(range(len(blocks))), return_dtype=pl.Int32)
        .alias("bcode"),
        pl.col("block").is_in(known_blocks).alias("block_known"),
    )
    return Catalog(cat, blocks, enum), codes_.cast(pl.UInt32)


def _closing_bits(catalog: Catalog) -> pl.Series:
    """Per block code: bit ``i`` set when a line of that block closes the open occurrence of
    ``TABLE_ANCESTORS[i]`` (a known block that is neither the ancestor nor a descendant)."""
    known = set(block_parents())
    closing = [{catalog.bcode(b) for b in known - descendants_or_self(t)} for t in TABLE_ANCESTORS]
    return pl.Series([sum(1 << i for i, codes_ in enumerate(closing) if code in codes_)
                      for code in range(len(catalog.blocks))], dtype=pl.Int32)


def _gather(values: pl.Series, idx: str) -> pl.Expr:
    """``values[idx]`` per line (null index -> null)."""
    return pl.lit(values).gather(pl.col(idx))


def add_structure(lines: pl.DataFrame, catalog: Catalog | None = None) -> pl.DataFrame:
    """Input: file_idx, line_no, rubrique, value, malformed (sorted by file_idx, line_no).

    Adds: rcode, bcode, rub_no, envelope, is_new, occ, seg, in_envoi, decl_line, decl_no,
    decl_start and one ``anc_<block>`` column per ``TABLE_ANCESTORS``. ``catalog`` (from
    ``build_catalog``, optionally with the codes already in an ``rcode`` column) is built when
    not given.
    """
    if catalog is None:
        catalog, rcodes = build_catalog(lines.get_column("rubrique"))
    elif "rcode" in lines.columns:
        rcodes = lines.get_column("rcode")
    else:
        rcodes = lines.get_column("rubrique").cast(catalog.enum).to_physical().cast(pl.UInt32)
    cat = catalog.rubriques
    bc = pl.col("bcode")
    if "force_new" not in lines.columns:
        lines = lines.with_columns(pl.lit(False).alias("force_new"))
    df = lines.with_columns(rcodes.alias("rcode")).with_columns(
        _gather(cat.get_column("bcode"), "rcode").alias("bcode"),
        _gather(cat.get_column("rub_no"), "rcode").alias("rub_no"),
        _gather(cat.get_column("envelope"), "rcode").fill_null(False).alias("envelope"),
        (pl.col("file_idx") != pl.col("file_idx").shift(1)).fill_null(True).alias("file_start"),
    )
    prev_b = bc.shift(1).forward_fill()
    prev_r = pl.col("rub_no").shift(1).forward_fill()
    is_new = bc.is_not_null() & (
        pl.col("force_new").fill_null(False) | pl.col("file_start") | prev_b.is_null()
        | (bc != prev_b) | (pl.col("rub_no") <= prev_r))
    envoi, decl, totals = (catalog.bcode(b) for b in (codes.ENVOI, codes.DECLARATION, codes.TOTALS))
    df = df.with_columns(is_new.fill_null(False).alias("is_new"))
    df = df.with_columns(
        pl.when(pl.col("is_new")).then(pl.col("line_no"))
        .when(pl.col("file_start")).then(_CLOSED).forward_fill().alias("occ"),
        (pl.col("file_start") | (pl.col("is_new") & (bc == envoi))).cum_sum()
        .cast(pl.Int64).alias("seg"),
    )
    n_seg = int(df.get_column("seg").max() or 0)
    # Envoi extent: from the segment's S10 line to its last S90 line (or its end).
    marks = df.lazy().filter(bc.is_in([envoi, totals])).group_by("seg").agg(
        pl.col("line_no").filter(bc == envoi).min().alias("s10_line"),
        pl.col("line_no").filter(bc == totals).max().alias("s90_line"),
    ).collect()
    dense = pl.DataFrame({"seg": range(n_seg + 1)}, schema={"seg": pl.Int64}).join(
        marks, on="seg", how="left", maintain_order="left")
    s10 = _gather(dense.get_column("s10_line"), "seg")
    s90 = _gather(dense.get_column("s90_line"), "seg")
    in_envoi = (~pl.col("envelope") & s10.is_not_null() & (pl.col("line_no") >= s10)
                & (s90.is_null() | (pl.col("line_no") <= s90)))
    df = df.with_columns(
        pl.when(pl.col("occ") != _CLOSED).then(pl.col("occ")).alias("occ"),
        in_envoi.fill_null(False).alias("in_envoi"),
        (pl.col("seg") != pl.col("seg").shift(1)).fill_null(True).alias("seg_start"),
    )
    decl_start = pl.col("is_new") & (bc == decl)
    ends_decl = pl.col("seg_start") | (bc == totals) | ~pl.col("in_envoi")
    df = df.with_columns(
        pl.when(decl_start).then(pl.col("line_no")).when(ends_decl).then(_CLOSED)
        .forward_fill().alias("decl_line"),
        decl_start.fill_null(False).alias("decl_start"))
    df = df.with_columns(
        pl.when(pl.col("decl_line") != _CLOSED).then(pl.col("decl_line")).alias("decl_line"),
        pl.when(pl.col("decl_line") != _CLOSED).then(pl.col("decl_start").cum_sum())
        .cast(pl.Int64).alias("decl_no"),
    )
    df = df.with_columns(_gather(_closing_bits(catalog), "bcode").fill_null(0).alias("_closes"))
    anc_exprs = []
    for i, t in enumerate(TABLE_ANCESTORS):
        opened = pl.col("is_new") & (bc == catalog.bcode(t))
        closed = pl.col("seg_start") | ((pl.col("_closes") & (1 << i)) != 0)
        anc_exprs.append(
            pl.when(opened).then(pl.col("line_no")).when(closed).then(_CLOSED)
            .forward_fill().alias(anc_col(t)))
    df = df.with_columns(anc_exprs).drop("_closes")
    return df.with_columns([
        pl.when(pl.col(anc_col(t)) != _CLOSED).then(pl.col(anc_col(t))).alias(anc_col(t))
        for t in TABLE_ANCESTORS
    ])
