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
  §1.4 example 30,40,40,30,40 attaches contract 3 to individual 2) — for a contract or a
  Rémunération, not on the other blocks of its parent (``_siblings_below``: a child written
  after its parent's siblings still belongs to the parent before it). Malformed lines,
  unknown blocks (platform enrichment) and ids no norm version has in a known block
  (``_stray_codes``) are transparent.

Performance: rubriques are turned once into small integer codes (``build_catalog``); every
per-rubrique attribute (block, number, envelope, closing bits) is then a NumPy gather from a
small array built once per catalogue (``_code_attributes``), and the sequential rules run in
NumPy: a forward fill is a running maximum of the indices of the marking rows
(``_open_occurrence``), envoi extents are ``minimum.at`` / ``maximum.at`` per segment, and the
columns are added to the line table in one call. Only the ancestor types the validator and the
tables use (``TABLE_ANCESTORS``) are computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import polars as pl
import pyarrow as pa

from parsers import codes
from parsers.norm import block_parents, descendants_or_self, rubrique_enum, rubrique_ids

_NONE = -1  # no block / rubrique number (line without a rubrique code)
# Ancestor types whose open occurrence the validator and the tables need.
TABLE_ANCESTORS = (codes.INDIVIDUAL, codes.CONTRACT, codes.PAY)


def anc_col(block: str) -> str:
    """Column holding the open occurrence of ``block`` (e.g. ``anc_S21.G00.30``)."""
    return f"anc_{block}"


@dataclass(frozen=True, eq=False)
class Catalog:
    """The batch's rubriques: ``rcode`` (Enum physical code) -> attributes; blocks -> codes.

    One object per set of ids (``build_catalog`` caches them; nearly every batch has the
    norm's ids only), hashed by identity: what is derived from a catalogue alone (norm
    attribute arrays, closing bits) is computed once per catalogue, not once per batch."""

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
    if static_codes is None:
        codes_ = rubriques.cast(rubrique_enum(), strict=False).to_physical()
    else:
        codes_ = static_codes
    extra_mask = codes_.is_null() & rubriques.is_not_null()
    extra: tuple[str, ...] = ()
    if extra_mask.any():  # ids outside the norm (rare): appended after the norm's
        extra = tuple(sorted(set(rubriques.filter(extra_mask).unique().to_list())))
    catalog = _catalog(extra)
    if extra:
        codes_ = rubriques.cast(catalog.enum).to_physical()
    return catalog, codes_.cast(pl.UInt32)


@lru_cache(maxsize=16)
def _catalog(extra: tuple[str, ...]) -> Catalog:
    """The catalogue of the norm's ids followed by ``extra`` ids."""
    ids = [*rubrique_ids(), *extra]
    enum = pl.Enum(ids) if extra else rubrique_enum()
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
    return Catalog(cat, blocks, enum)


@lru_cache(maxsize=16)
def _code_attributes(catalog: Catalog) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per rubrique code, with one extra entry (the last) for lines without a code: block
    code, rubrique number, envelope flag; and per block code (one extra entry for lines
    without a block) the closing bits: bit ``i`` set when a line of that block closes the open
    occurrence of ``TABLE_ANCESTORS[i]`` (a known block that is neither the ancestor nor a
    descendant)."""
    cat = catalog.rubriques
    bcode = np.append(cat.get_column("bcode").to_numpy(), _NONE).astype(np.int32)
    rub_no = np.append(cat.get_column("rub_no").fill_null(_NONE).to_numpy(), _NONE).astype(np.int32)
    envelope = np.append(cat.get_column("envelope").fill_null(False).to_numpy().astype(bool), False)
    known = set(block_parents())
    closing = [{catalog.bcode(b) for b in known - descendants_or_self(t) - _siblings_below(t)}
               for t in TABLE_ANCESTORS]
    closes = np.array([sum(1 << i for i, codes_ in enumerate(closing) if code in codes_)
                       for code in range(len(catalog.blocks))] + [0], np.int32)
    return bcode, rub_no, envelope, closes


@lru_cache(maxsize=16)
def _stray_codes(catalog: Catalog) -> np.ndarray:
    """Per rubrique code (+1 for no code): an id outside every norm version (a misspelt
    ``S21.G00.30.090``, a platform's ``…9xx``) of a known block. Such a line neither starts
    nor closes an occurrence: quarantined as ``unknown_rubrique`` (or kept as enrichment), it
    must not split its block — a postcode typo opened a phantom individual without NIR and
    rejected the establishment's month for everyone (ingestion acceptance pass M1)."""
    n_norm = len(rubrique_ids())
    cat = catalog.rubriques
    stray = ((cat.get_column("rcode").to_numpy() >= n_norm)
             & cat.get_column("block_known").to_numpy().astype(bool))
    return np.append(stray, False)


def _siblings_below(t: str) -> frozenset[str]:
    """The blocks that do NOT close the open occurrence of ``t`` although they are not under
    it: the other blocks under ``t``'s parent, for a contract or a Rémunération (CT2025 §3.2:
    "un bloc enfant se rapporte toujours au bloc parent qui le précède, directement ou
    indirectement" — an arrêt written after the individual's pay blocks is still its last
    contract's). An individual closes on anything outside it: a contract after the
    establishment's blocks has no individual (``block_checks``)."""
    if t == codes.INDIVIDUAL:
        return frozenset()
    parent = block_parents().get(t)
    return descendants_or_self(parent) - {parent} if parent else frozenset()


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
    if "force_new" not in lines.columns:
        lines = lines.with_columns(pl.lit(False).alias("force_new"))
    n = lines.height
    cat_b, cat_r, cat_e, closing_bits = _code_attributes(catalog)
    cat_x = _stray_codes(catalog)
    rc = rcodes.cast(pl.UInt32).fill_null(catalog.rubriques.height).to_numpy()
    bcode, rub_no, envelope = cat_b[rc], cat_r[rc], cat_e[rc]
    has_b = bcode != _NONE
    stray = cat_x[rc]  # an id of a known block that no norm version has: transparent
    file_idx = lines.get_column("file_idx").to_numpy()
    line_no = lines.get_column("line_no").to_numpy()
    file_start = np.empty(n, bool)
    file_start[:1] = True
    np.not_equal(file_idx[1:], file_idx[:-1], out=file_start[1:])
    # Previous line with a block (malformed lines are transparent).
    prev = _last_index(has_b & ~stray)
    prev_idx = np.empty(n, np.int64)
    prev_idx[:1] = -1
    prev_idx[1:] = prev[:-1]
    has_prev = prev_idx >= 0
    pi = np.maximum(prev_idx, 0)
    force = lines.get_column("force_new").fill_null(False).to_numpy()
    is_new = has_b & ~stray & (force | file_start | ~has_prev | (bcode != bcode[pi])
                               | (rub_no <= rub_no[pi]))
    envoi, decl, totals = (catalog.bcode(b) for b in (codes.ENVOI, codes.DECLARATION, codes.TOTALS))
    occ, occ_ok = _open_occurrence(is_new, file_start, line_no)
    seg = np.cumsum(file_start | (is_new & (bcode == envoi)), dtype=np.int64)
    n_seg = int(seg[-1]) if n else 0
    # Envoi extent: from the segment's S10 line to its last S90 line (or its end).
    is_s10, is_s90 = bcode == envoi, bcode == totals
    s10 = np.full(n_seg + 1, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(s10, seg[is_s10], line_no[is_s10])
    s90 = np.full(n_seg + 1, -1, np.int64)
    np.maximum.at(s90, seg[is_s90], line_no[is_s90])
    s10_l, s90_l = s10[seg], s90[seg]
    in_envoi = (~envelope & (s10_l != np.iinfo(np.int64).max) & (line_no >= s10_l)
                & ((s90_l < 0) | (line_no <= s90_l)))
    seg_start = np.empty(n, bool)
    seg_start[:1] = True
    np.not_equal(seg[1:], seg[:-1], out=seg_start[1:])
    decl_start = is_new & (bcode == decl)
    decl_line, decl_ok = _open_occurrence(decl_start, seg_start | is_s90 | ~in_envoi, line_no)
    decl_no = np.cumsum(decl_start, dtype=np.int64)
    closes = closing_bits[np.where(has_b & ~stray, bcode, len(catalog.blocks))]
    ancestors = []
    for i, t in enumerate(TABLE_ANCESTORS):
        vals, ok = _open_occurrence(is_new & (bcode == catalog.bcode(t)),
                                    seg_start | ((closes & (1 << i)) != 0), line_no)
        ancestors.append(nullable(anc_col(t), vals, ok))
    return lines.with_columns(
        rcodes.alias("rcode"),
        nullable("bcode", bcode, has_b),
        nullable("rub_no", rub_no, rub_no != _NONE),
        pl.Series("envelope", envelope),
        pl.Series("file_start", file_start),
        pl.Series("is_new", is_new),
        nullable("occ", occ, occ_ok),
        pl.Series("seg", seg),
        pl.Series("in_envoi", in_envoi),
        pl.Series("seg_start", seg_start),
        nullable("decl_line", decl_line, decl_ok),
        pl.Series("decl_start", decl_start),
        nullable("decl_no", decl_no, decl_ok),
        *ancestors,
    )


def _last_index(mask: np.ndarray) -> np.ndarray:
    """Per row, the index of the last row at or before it where ``mask`` holds (-1: none)."""
    idx = np.where(mask, np.arange(len(mask), dtype=np.int64), np.int64(-1))
    np.maximum.accumulate(idx, out=idx)
    return idx


def _open_occurrence(opened: np.ndarray, closed: np.ndarray,
                     line_no: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The forward-filled ``line_no`` of the last ``opened`` row, closed (invalid) by a
    ``closed`` row and before any mark; ``opened`` wins on a row that is both."""
    last = _last_index(opened | closed)
    at = np.maximum(last, 0)
    return line_no[at], (last >= 0) & opened[at]


def nullable(name: str, values: np.ndarray, valid: np.ndarray) -> pl.Series:
    """A Series of ``values`` (Int32 or Int64), null where not ``valid`` (no copy of values)."""
    dtype = pa.int32() if values.dtype == np.int32 else pa.int64()
    values = np.ascontiguousarray(values, dtype=np.int32 if dtype == pa.int32() else np.int64)
    validity = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    arr = pa.Array.from_buffers(dtype, len(values), [validity, pa.py_buffer(values)])
    return pl.Series(name, pl.from_arrow(arr))
