"""Line validation, rejection scopes and line accounting (vectorised).

Severity policy (documented in docs/ingestion.md):

- every physical line ends in exactly ONE state: *parsed* or *quarantined*; so
  ``lines_read == lines_parsed + lines_quarantined`` always holds, and the quarantine holds
  exactly one non-warning row per quarantined line (its own anomaly when it has one,
  otherwise the anomaly that rejected its declaration or envoi, ``is_cause=False``);
- an anomaly on a line of the envoi header (S10) or totals (S90), a failed S90 count, a
  missing S90, or declaration data before any S20 rejects the WHOLE envoi (CT2025 §4.2):
  all its lines are quarantined with scope ``envoi`` and its declarations marked rejected;
- an anomaly on a *key* rubrique (``codes.KEY_RUBRIQUES``: S20.G00.05.*, SIREN, NIC, NIR,
  contract number and start, pay period/contract/type, absence motifs and dates) rejects the
  declaration (scope ``declaration``): its rows are not written to the person tables;
- a pay contract number (51.010) matching no 40.009 of the same individual sets aside only
  that pay block — the 51 and its 53 activities — (scope ``line``, reason
  ``unknown_contract_number``): its hours cannot be attached to a contract, but the rest of
  the employer's month is still credited;
- any other anomaly (malformed line, unknown rubrique, bad format/enumeration/date of a
  non-key rubrique) quarantines only that line (scope ``line``); the declaration is used and
  the typed column is left null;
- declarations of a signalement nature (not in ``codes.STRICT_NATURES``) are never credited:
  their validation anomalies are recorded as warnings and the lines still parsed;
- damaged characters (U+FFFD, C1 controls), an unknown norm version and a contract number
  (40.009 / 51.010) with characters outside the norm's list are warnings.

Performance (everything is column-wise, and the expensive checks run on small subsets): the
line columns the rules read are converted to NumPy once; the per-line part runs in NumPy — the
(version, rubrique) key, one gather of packed norm flags and two of length bounds (lookup arrays
built once per catalogue, ``_rules``), the candidate mask, the final states — and only ``ver``,
``q_code``, ``kept``, ``parsed`` and ``block_rejected`` are added to the line table; candidate
and issue rows are gathered by position. The envoi, declaration and cross-line rules filter a
small table of the lines of ``SPECIAL_RUBRIQUES`` (gathered once), never the line table. The
format regexps run in one call once per distinct (pattern, value) pair of the strict lines,
date parsing once per distinct value; enumerations are an anti-join on (version·rubrique,
value) of the enumerated lines only; the reason/detail/scope logic runs on the few anomalous
lines (``issues``), and verdicts return to the lines by gather on the dense ``seg`` /
``decl_no`` ordinals — the line table is never joined.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import polars as pl

from parsers import codes
from parsers.block_checks import block_anomalies
from parsers.lot_checks import lot_anomalies
from parsers.codes import Reason, Scope
from parsers.norm import KNOWN_VERSIONS, enumeration_table, nearest_version, validation_table
from parsers.records import named_id
from parsers.structure import Catalog, anc_col, build_catalog
from parsers.values import contract_number, to_date

ENRICHMENT_BLOCK_NO_START = 8  # "S10.G00.95": characters 8-9 hold the block number
VERSIONS = (*KNOWN_VERSIONS, codes.ENVELOPE_NORM)  # index = the lines' ``ver`` code
ENVELOPE_VER = len(VERSIONS) - 1
Q_NONE, Q_ENVOI, Q_DECL, Q_LINE = 0, 1, 2, 3
Q_SCOPES = {Q_ENVOI: Scope.ENVOI, Q_DECL: Scope.DECLARATION, Q_LINE: Scope.LINE}
# Columns of a line carried into the issue rows.
ISSUE_LINE_COLS = ["row", "file_idx", "line_no", "rcode", "rubrique", "value", "raw", "malformed",
                   "damaged", "seg", "decl_no", "decl_line", "in_envoi", "envelope", "ver",
                   "q_code", "block_rejected", anc_col(codes.PAY)]
Q_SCOPES_ALL = list(Q_SCOPES.values())
# Per-rubrique norm attributes packed as bits of one Int32 per (version, rubrique code).
_NO_MAX = np.iinfo(np.int64).max  # no upper length bound
FLAG_BITS = {"known": 1, "_strict": 2, "is_enum": 4, "is_date": 8, "_enrich": 16, "_s10_s90": 32}
# The rubriques that the envoi, declaration and cross-line rules read: their lines (a few % of
# a batch) are gathered once into a small table that those rules filter.
SPECIAL_RUBRIQUES = (codes.ENVOI_NORM_VERSION, codes.ENVOI_TEST_FLAG, codes.DECL_NATURE,
                     codes.DECL_TYPE, codes.NIR, codes.NTT,
                     codes.BIRTH_DATE, codes.CONTRACT_NO, codes.PAY_CONTRACT_NO,
                     codes.TOTAL_RUBRIQUES, codes.TOTAL_DECLARATIONS)


@dataclass
class Validated:
    """Validated lines plus per-envoi and per-declaration verdicts."""

    lines: pl.DataFrame  # structured lines + q_code (0 = parsed), kept, parsed, block_rejected
    envois: pl.DataFrame  # seg -> norm_requested, norm_version, is_test, rejected, cause
    decls: pl.DataFrame  # (file_idx, decl_line) -> nature, rejected, cause
    issues: pl.DataFrame  # quarantined or warned lines: q_scope, q_reason, q_detail, is_cause, w_*
    catalog: Catalog


def _dense(frame: pl.DataFrame, key: str, n: int, column: str, dtype: pl.DataType) -> pl.Series:
    """``column`` of ``frame`` as an array indexed by the dense ordinal ``key`` (0..n)."""
    base = pl.DataFrame({key: pl.Series(range(n + 1), dtype=pl.Int64)})
    return base.join(frame.select(pl.col(key).cast(pl.Int64), column), on=key, how="left",
                      maintain_order="left").get_column(column).cast(dtype)


def _envoi_info(special: pl.DataFrame, n_seg: int, cat: Catalog) -> pl.DataFrame:
    """Per segment (1..n_seg): the norm version it asks for and uses, whether it is a test."""
    rc_ver, rc_test = cat.rcode(codes.ENVOI_NORM_VERSION), cat.rcode(codes.ENVOI_TEST_FLAG)
    firsts = special.lazy().filter(pl.col("rcode").is_in([rc_ver, rc_test])).group_by("seg").agg(
        pl.col("value").filter(pl.col("rcode") == rc_ver).first().alias("norm_requested"),
        pl.col("value").filter(pl.col("rcode") == rc_test).first().alias("test_flag")).collect()
    envois = pl.DataFrame({"seg": pl.Series(range(1, n_seg + 1), dtype=pl.Int64)}).join(
        firsts, on="seg", how="left", maintain_order="left")
    mapping = {v: nearest_version(v) for v in envois["norm_requested"].unique().to_list() if v}
    return envois.with_columns(
        pl.col("norm_requested").replace_strict(mapping, default=KNOWN_VERSIONS[-1],
                                                return_dtype=pl.String).alias("norm_version"),
        (pl.col("test_flag") == codes.TEST_ENVOI).fill_null(False).alias("is_test"),
    ).drop("test_flag")


def _attributes(cat: Catalog) -> tuple[pl.DataFrame, list[str]]:
    """Per (version, rubrique code) norm attributes, row ``ver * n + rcode``; the patterns."""
    vt = validation_table()
    ids = cat.rubriques.select("rcode", "rubrique")
    grid = pl.concat([ids.with_columns(pl.lit(i, pl.Int64).alias("ver")).join(
        vt.filter(pl.col("norm_version") == v).drop("norm_version"), on="rubrique", how="left",
        maintain_order="left") for i, v in enumerate(VERSIONS)], how="vertical")
    patterns = sorted(p for p in grid.get_column("regexp_anchored").unique().to_list() if p)
    grid = grid.with_columns(
        pl.col("regexp_anchored").replace_strict(patterns, list(range(len(patterns))),
                                                 default=None, return_dtype=pl.Int32).alias("pat"),
        (pl.col("ver") * ids.height + pl.col("rcode").cast(pl.Int64)).alias("key"))
    return grid, patterns


def _flags(grid: pl.DataFrame, cat: Catalog) -> pl.Series:
    """Per grid row (version, rubrique code): the ``FLAG_BITS`` of the rubrique, as an Int32."""
    known = pl.col("type").is_not_null()
    is_enum = pl.col("is_enum").fill_null(False)
    is_date = (pl.col("type") == "D").fill_null(False)
    strict = known & pl.col("strict").fill_null(False) & (
        is_enum | pl.col("pat").is_not_null() | is_date)
    per_code = {"_enrich": _enrichment(cat), "_s10_s90": cat.rubriques.get_column("s10_s90")}
    bits = {"known": known, "_strict": strict, "is_enum": is_enum, "is_date": is_date,
            **{n: pl.lit(v).gather(pl.col("rcode")).fill_null(False) for n, v in per_code.items()}}
    return grid.select(pl.sum_horizontal(
        [e.cast(pl.Int32) * FLAG_BITS[n] for n, e in bits.items()]).alias("flags")).to_series()


def _enrichment(cat: Catalog) -> pl.Series:
    c = cat.rubriques
    block_no = pl.col("block").str.slice(ENRICHMENT_BLOCK_NO_START, 2).cast(pl.Int32, strict=False)
    return c.select(((pl.col("rub_no") >= codes.ENRICHMENT_MIN_RUBRIQUE_NO)
                     | pl.col("rubrique").is_in(list(codes.ENRICHMENT_RUBRIQUES))
                     | (~pl.col("block_known") & (block_no >= codes.ENRICHMENT_MIN_BLOCK_NO)))
                    .fill_null(False)).to_series()


@dataclass(frozen=True)
class _Rules:
    """The norm's attributes of a catalogue's (version, rubrique code) keys (``ver * n_cat +
    rcode``) as lookup arrays with one extra entry, the last, for lines without a code."""

    grid: pl.DataFrame  # one row per key: ver, rcode, rubrique, the norm's attributes, pat
    patterns: list[str]
    flags: np.ndarray  # FLAG_BITS (none for the extra entry)
    len_min: np.ndarray  # -1: no lower bound
    len_max: np.ndarray  # _NO_MAX: no upper bound
    pat: np.ndarray  # index in ``patterns``, -1: no pattern
    enums: pl.DataFrame  # key, value, in_enum (True): the codes of every enumerated key
    key_codes: list[int]  # rubrique codes whose anomaly rejects the declaration


@lru_cache(maxsize=16)
def _rules(cat: Catalog) -> _Rules:
    """The ``_Rules`` of a catalogue (computed once per catalogue, not per batch)."""
    grid, patterns = _attributes(cat)
    enums = enumeration_table().join(
        grid.select("ver", "rubrique", "key").with_columns(
            pl.col("ver").replace_strict(list(range(len(VERSIONS))), list(VERSIONS),
                                         return_dtype=pl.String).alias("norm_version")),
        on=["norm_version", "rubrique"]).select("key", pl.col("code").alias("value")).unique(
        ).with_columns(pl.lit(True).alias("in_enum"))
    key_codes = cat.rcodes(codes.KEY_RUBRIQUES) + [
        i for i, r in enumerate(cat.rubriques.get_column("rubrique").to_list())
        if r.startswith(codes.KEY_BLOCK_PREFIXES[0])]
    return _Rules(
        grid, patterns, np.append(_flags(grid, cat).to_numpy(), 0),
        np.append(grid.get_column("len_min").fill_null(-1).to_numpy(), -1),
        np.append(grid.get_column("len_max").fill_null(_NO_MAX).to_numpy(), _NO_MAX),
        np.append(grid.get_column("pat").fill_null(-1).to_numpy(), -1), enums, key_codes)


def _nir_ok(value: pl.Expr, birth_year: pl.Expr, pattern: pl.Expr) -> pl.Expr:
    """Norm pattern + CCH rules on S21.G00.30.001 (dsn_format.md §2.3).

    CCH-11 (Messages.csv of the norm): the département DD (characters 6-7) cannot be 2A/2B
    for a birth year < 1976, nor 20 for a birth year >= 1976, nor 96 for a birth year
    >= 1968 (year taken from S21.G00.30.006); CCH-13/16: no more than five trailing 9."""
    dept = value.str.slice(5, 2)
    too_many_nines = value.str.ends_with("9" * (codes.NIR_MAX_TRAILING_NINES + 1))
    corsica_too_old = dept.is_in(list(codes.NIR_CORSICA_DEPTS)) & (
        birth_year < codes.NIR_CORSICA_FROM_YEAR)
    dept20_too_young = (dept == codes.NIR_OLD_CORSICA_DEPT) & (
        birth_year >= codes.NIR_OLD_CORSICA_BEFORE_YEAR)
    dept96_too_young = (dept == codes.NIR_DEPT_96) & (birth_year >= codes.NIR_DEPT_96_BEFORE_YEAR)
    return (value.str.contains(pattern).fill_null(True) & ~too_many_nines
            & ~corsica_too_old.fill_null(False) & ~dept20_too_young.fill_null(False)
            & ~dept96_too_young.fill_null(False))


def nir_valid(value: pl.Expr) -> pl.Expr:
    """A NIR given outside a DSN (the --holders / --balances / --dotations CSV inputs) checked
    like S21.G00.30.001: the newest norm's pattern and CCH-13/16 (``_nir_ok``). The Corsica
    rules of CCH-11 need the birth date (30.006), which those inputs do not carry."""
    pattern = (validation_table()
               .filter((pl.col("norm_version") == KNOWN_VERSIONS[-1])
                       & (pl.col("rubrique") == codes.NIR))["regexp_anchored"].item())
    return _nir_ok(value, pl.lit(None, pl.Int32), pl.lit(pattern)).fill_null(False)


def _strict_anomalies(sub: pl.DataFrame, special: pl.DataFrame, cat: Catalog,
                      rules: _Rules) -> pl.DataFrame:
    """row -> bad_enum, bad_regexp, bad_date, bad_nir (True or null) for the strict lines
    that fail.

    ``sub``: the strict lines and the NIR lines (row, file_idx, anc_S21.G00.30, rcode, key,
    pat, value, is_enum, is_date, _strict); ``special``: the ``SPECIAL_RUBRIQUES`` lines.
    Values repeat a lot (codes, dates, amounts): the enumeration, format and date checks run
    once per distinct (key, value) pair (the format regexps in one call: the compiled patterns
    are cached), then the failing pairs are found back on the lines by a hash join."""
    nir = cat.rcode(codes.NIR)
    flags = ["bad_enum", "bad_regexp", "bad_date", "bad_nir"]
    out = pl.DataFrame(schema={"row": pl.UInt32, **{f: pl.Boolean for f in flags}})
    strict = sub.filter(pl.col("_strict"))
    if strict.height:
        pattern = pl.lit(pl.Series(rules.patterns, dtype=pl.String)).gather(
            pl.when(pl.col("pat") >= 0).then(pl.col("pat")))
        bad_regexp = ~pl.col("value").str.contains(pattern).fill_null(True)
        bad_pairs = (strict.select("key", "pat", "is_enum", "is_date", "value").unique()
                     .join(rules.enums, on=["key", "value"], how="left")
                     .select("key", "value",
                             (pl.col("is_enum") & pl.col("in_enum").is_null()).alias("bad_enum"),
                             bad_regexp.alias("bad_regexp"),
                             (pl.col("is_date") & (bad_regexp | (
                                 to_date(pl.col("value")).is_null() & pl.col("value").is_not_null())
                             )).alias("bad_date"))
                     .filter(pl.any_horizontal("bad_enum", "bad_regexp", "bad_date")))
        if bad_pairs.height:
            out = strict.join(bad_pairs, on=["key", "value"], how="inner", nulls_equal=True).select(
                "row", *[pl.when(pl.col(f)).then(True).alias(f) for f in flags[:3]],
                pl.lit(None, pl.Boolean).alias("bad_nir"))
    nirs = sub.filter(pl.col("rcode") == nir)
    if nirs.height:
        births = (special.filter(pl.col("rcode") == cat.rcode(codes.BIRTH_DATE))
                  .group_by("file_idx", anc_col(codes.INDIVIDUAL))
                  .agg(pl.col("value").first().str.slice(4, 4).cast(pl.Int32, strict=False)
                       .alias("birth_year")))
        nirs = nirs.join(births, on=["file_idx", anc_col(codes.INDIVIDUAL)], how="left")
        nirs = nirs.with_columns(pl.col("pat").replace_strict(
            list(range(len(rules.patterns))), rules.patterns, default=None,
            return_dtype=pl.String).alias("pattern"))
        nirs = nirs.select("row", (~_nir_ok(pl.col("value"), pl.col("birth_year"),
                                            pl.col("pattern"))).alias("bad_nir")).filter("bad_nir")
        out = out.drop("bad_nir").join(nirs, on="row", how="full", coalesce=True)
    return out


def _reasons(a: pl.DataFrame) -> pl.DataFrame:
    """own_reason / own_detail of candidate lines (same precedence as the norm checks)."""
    f = {c: pl.col(c).fill_null(False) for c in
         ("bad_enum", "bad_regexp", "bad_date", "bad_nir", "bad_len", "unknown")}
    is_nir = pl.col("is_nir")
    reason = (
        pl.when(pl.col("malformed")).then(pl.lit(Reason.MALFORMED_LINE))
        .when(f["unknown"]).then(pl.lit(Reason.UNKNOWN_RUBRIQUE))
        .when(is_nir & (f["bad_nir"] | f["bad_len"])).then(pl.lit(Reason.INVALID_NIR))
        .when(f["bad_len"]).then(pl.lit(Reason.BAD_FORMAT))
        .when(f["bad_enum"]).then(pl.lit(Reason.BAD_ENUM))
        .when(f["bad_date"]).then(pl.lit(Reason.INVALID_DATE))
        .when(f["bad_regexp"]).then(pl.lit(Reason.BAD_FORMAT))
    )
    n_chars = pl.col("value").str.len_chars()
    detail = (
        pl.when(pl.col("malformed") & pl.col("raw").str.contains(r"'[ \t]+$").fill_null(False))
        .then(pl.lit("blanks after the closing quote (CT2025 §3.4: the line ends at the quote)"))
        .when(pl.col("malformed")).then(pl.lit("not a `Sxx.Gyy.zz.aaa,'value'` line of at most 256 characters"))
        .when(pl.col("own_reason") == Reason.UNKNOWN_RUBRIQUE).then(pl.lit("rubrique not in norm ") + pl.col("norm_version"))
        .when(pl.col("own_reason") == Reason.INVALID_NIR).then(pl.lit("NIR fails the norm pattern or CCH rules"))
        .when(pl.col("own_reason") == Reason.BAD_ENUM).then(pl.lit("value not in the enumeration of ") + pl.col("norm_version"))
        .when(pl.col("own_reason") == Reason.INVALID_DATE).then(pl.lit("not a valid JJMMAAAA date for this rubrique"))
        .when((n_chars < pl.col("len_min")) | (n_chars > pl.col("len_max")))
        .then(pl.format("length {} outside [{}, {}]", n_chars, pl.col("len_min"), pl.col("len_max")))
        .otherwise(pl.lit("value does not match the norm format"))
    )
    a = a.with_columns(reason.alias("own_reason"))
    return a.with_columns(pl.when(pl.col("own_reason").is_not_null()).then(detail).alias("own_detail"))


def _cross_line_anomalies(special: pl.DataFrame, a: pl.DataFrame, cat: Catalog) -> pl.DataFrame:
    """Anomalies that compare lines, on lines without an anomaly of their own: row, own_reason,
    own_detail. Every later occurrence of a duplicate is flagged (the first is the reference).

    - S21.G00.30.006/CCH-11: the NIR's year (characters 2-3) equals the birth date's year
      (flagged on the birth date line, the rubrique the norm attaches the check to; not
      checked when the NIR itself is anomalous);
    - S21.G00.30.001/CCH-14: one NIR at most once per declaration;
    - S21.G00.40.009/CCH-12: one contract number at most once per individual (and
      establishment: one per declaration) in a declaration, compared as
      ``values.contract_number`` (trimmed, upper case) like the 51.010 link;
    - an individual with neither a usable NIR nor an NTT (30.001 absent or malformed and no
      30.020: "30.001 absent ⇒ 30.020 mandatory"): its rows cannot be attributed to anyone,
      so its declaration is rejected like one with an invalid NIR (flagged on the
      individual's first line without an anomaly of its own);
    - S20.G00.05.002/CCH-13/14/15: the declaration type is allowed with its nature
      (``codes.TYPE_ONLY_FOR_NATURES``, ``TYPE_FORBIDDEN_FOR_NATURES``): a "cancel" (04) of a
      DSN mensuelle is refused, not taken for its month's latest version.
    """
    flagged = a.filter(pl.col("own_reason").is_not_null()).get_column("row").implode()
    nir, birth, cno = (cat.rcode(r) for r in (codes.NIR, codes.BIRTH_DATE, codes.CONTRACT_NO))
    person = ["file_idx", anc_col(codes.INDIVIDUAL)]
    lf = (special.lazy().filter(pl.col("rcode").is_in([nir, birth, cno])
                                & pl.col("decl_no").is_not_null() & ~pl.col("malformed"))
          .select("row", "rcode", "decl_no", *person, "value",
                  pl.col("row").is_in(flagged).alias("own")).collect().lazy())
    nirs = lf.filter(pl.col("rcode") == nir)
    year = (lf.filter((pl.col("rcode") == birth) & ~pl.col("own"))
            .join(nirs.filter(~pl.col("own")).select(*person, pl.col("value").alias("nir")),
                  on=person, how="inner")
            .filter(pl.col("nir").str.slice(1, 2) != pl.col("value").str.slice(6, 2))
            .select("row", pl.lit(Reason.NIR_BIRTH_YEAR_MISMATCH).alias("own_reason"),
                    pl.lit("the NIR's year of birth (characters 2-3) differs from the year of "
                           "S21.G00.30.006").alias("own_detail")))
    # The lines are in row order: a later occurrence is one that is not the first distinct.
    dup_nir = (nirs.filter(~pl.col("own")).collect().lazy().filter(
        ~pl.struct("decl_no", "value").is_first_distinct())
        .select("row", pl.lit(Reason.DUPLICATE_NIR).alias("own_reason"),
                pl.lit("this NIR is already declared by another S21.G00.30 of the declaration")
                .alias("own_detail")))
    dup_cno = (lf.filter((pl.col("rcode") == cno) & ~pl.col("own"))
               .with_columns(contract_number(pl.col("value")).alias("cno")).collect().lazy()
               .filter(~pl.struct("decl_no", *person, "cno").is_first_distinct())
               .select("row", pl.lit(Reason.DUPLICATE_CONTRACT_NUMBER).alias("own_reason"),
                       pl.lit("this contract number is already declared for the same individual "
                              "in the declaration").alias("own_detail")))
    ident = (special.lazy().filter(pl.col("decl_no").is_not_null()
                                   & pl.col(anc_col(codes.INDIVIDUAL)).is_not_null())
             .group_by(*person)
             .agg(((pl.col("rcode").is_in([nir, cat.rcode(codes.NTT)])) & ~pl.col("malformed"))
                  .any().alias("has_id"),
                  pl.col("row").filter(~pl.col("row").is_in(flagged)).min().alias("row"))
             .filter(~pl.col("has_id") & pl.col("row").is_not_null())
             .select("row", pl.lit(Reason.INDIVIDUAL_WITHOUT_IDENTIFIER).alias("own_reason"),
                     pl.format("an individual (S21.G00.30 block at line {}) without a usable "
                               "NIR (30.001) nor an NTT (30.020): its rows cannot be attributed "
                               "(a block starting on a lower-numbered rubrique than the line "
                               "before it, e.g. two rubriques out of order, is a new individual, "
                               "§1.4)", pl.col(anc_col(codes.INDIVIDUAL)))
                     .alias("own_detail")))
    found = pl.concat([year, dup_nir, dup_cno, ident, _type_nature_anomalies(special, flagged, cat)])
    return pl.concat([found, _contract_number_characters(special, flagged, found, cat)]
                     ).collect().sort("row")


def _contract_number_characters(special: pl.DataFrame, flagged: pl.Series, found: pl.LazyFrame,
                                cat: Catalog) -> pl.LazyFrame:
    """40.009 / 51.010 values outside the norm's character list (CT2025 §4.4.11, CSL-11), on
    lines without another anomaly. A warning, not a rejection (``CONTRACT_NUMBER_CHARACTERS``
    has scope warning): the number still identifies the contract and links its pay blocks, and
    rejecting the declaration would drop the person's worked time for a cosmetic fault."""
    rcodes = [cat.rcode(codes.CONTRACT_NO), cat.rcode(codes.PAY_CONTRACT_NO)]
    return (special.lazy().filter(pl.col("rcode").is_in(rcodes) & pl.col("decl_no").is_not_null()
                                  & ~pl.col("malformed") & ~pl.col("row").is_in(flagged))
            .filter(~pl.col("value").str.contains(codes.CONTRACT_NUMBER_PATTERN))
            .join(found.select("row"), on="row", how="anti")
            .with_columns(pl.col("value").str.replace_all(
                f"[{codes.CONTRACT_NUMBER_CHARS} ]", "").alias("_bad"))
            .select("row", pl.lit(Reason.CONTRACT_NUMBER_CHARACTERS).alias("own_reason"),
                    pl.when(pl.col("_bad") != "")
                    .then(pl.format("character(s) '{}' outside the norm's list for contract "
                                    "numbers (CT2025 §4.4.11, CSL-11): kept as declared", "_bad"))
                    .otherwise(pl.lit("a leading or trailing space (CT2025 §4.4.11, CSL-11): "
                                      "kept as declared")).alias("own_detail")))


def _type_nature_anomalies(special: pl.DataFrame, flagged: pl.Series, cat: Catalog) -> pl.LazyFrame:
    """S20.G00.05.002 lines whose type is not allowed with the declaration's nature (CCH-13/14/15),
    flagged on the type line (a key rubrique: the declaration is rejected)."""
    dtype, nature = cat.rcode(codes.DECL_TYPE), cat.rcode(codes.DECL_NATURE)
    lines = (special.lazy().filter(pl.col("decl_no").is_not_null() & ~pl.col("malformed")
                                   & ~pl.col("row").is_in(flagged))
             .select("row", "rcode", "decl_no", "value"))
    natures = (lines.filter(pl.col("rcode") == nature)
               .group_by("decl_no").agg(pl.col("value").first().alias("nature")))
    t, n = pl.col("value"), pl.col("nature")
    bad = pl.lit(False)
    for typ, allowed in codes.TYPE_ONLY_FOR_NATURES.items():
        bad = bad | ((t == typ) & ~n.is_in(list(allowed)))
    for typ, forbidden in codes.TYPE_FORBIDDEN_FOR_NATURES.items():
        bad = bad | ((t == typ) & n.is_in(list(forbidden)))
    return (lines.filter(pl.col("rcode") == dtype).join(natures, on="decl_no", how="inner")
            .filter(bad)
            .select("row", pl.lit(Reason.TYPE_NOT_ALLOWED_FOR_NATURE).alias("own_reason"),
                    pl.format("declaration type {} is not allowed for nature {} "
                              "(S20.G00.05.002 CCH-13/14/15)", t, n).alias("own_detail")))


def _with_own(a: pl.DataFrame, line_rows, found: pl.DataFrame) -> pl.DataFrame:
    """Candidate rows ``a`` with the lines of ``found`` (row, own_reason, own_detail) added,
    or their reason set when already candidates without a reason of their own."""
    if not found.height:
        return a
    rows = found.get_column("row").implode()
    extra = line_rows(found.get_column("row")).join(found, on="row", how="left",
                                                    maintain_order="left")
    return pl.concat([a.filter(~pl.col("row").is_in(rows)), extra],
                     how="diagonal_relaxed").sort("row")


def validate(df: pl.DataFrame, check_s90_lines: bool = True,
             catalog: Catalog | None = None) -> Validated:
    """Compute every line's state. ``df`` comes from ``structure.add_structure``.

    ``check_s90_lines=False`` (XML input, possibly a subset of the flat file) checks only the
    S90 declaration count, not the line total."""
    if catalog is None:
        catalog, _ = build_catalog(df.get_column("rubrique"))
    cat = catalog
    rules = _rules(cat)
    row_is_pos = "row" not in df.columns
    if row_is_pos:
        df = df.with_row_index("row")
    n_cat = cat.rubriques.height
    n_keys = rules.grid.height
    # Per line, in NumPy (no line-table column but ``ver``): the (version, rubrique) key,
    # its packed norm flags and length bounds, then the candidate lines' mask.
    cols = df.select(pl.col("rcode").cast(pl.Int64).fill_null(-1), "envelope", "seg", "malformed",
                     "in_envoi", pl.col("decl_line").is_null().alias("no_decl"),
                     pl.col("decl_no").fill_null(0), "decl_start",
                     pl.col("damaged").fill_null(False),
                     pl.col("value").str.len_chars().fill_null(0).alias("n_chars"),
                     # a blank line is no rubrique: quarantined, but not counted against S90
                     (pl.col("malformed") & (pl.col("raw").str.strip_chars() == ""))
                     .fill_null(False).alias("blank"),
                     # a malformed line that still names a key rubrique (a NIR without its
                     # quotes): its declaration's rows are as unattributable as with a bad NIR
                     named_id().is_in(list(codes.KEY_RUBRIQUES)).fill_null(False)
                     .alias("malformed_key"))
    # The line columns every step below reads, converted once (decl_no 0: no declaration).
    arrays = {c: cols.get_column(c).to_numpy() for c in cols.columns}
    rc_np, envelope, seg_np, malformed, in_envoi_np, no_decl, n_chars = (
        arrays[c] for c in ("rcode", "envelope", "seg", "malformed", "in_envoi", "no_decl",
                            "n_chars"))
    has_rc = rc_np >= 0
    # The few lines that the cross-line rules read (envoi, declaration, NIR, contract...).
    special_rows = np.flatnonzero(np.isin(rc_np, cat.rcodes(SPECIAL_RUBRIQUES)))
    special = df.select("row", "file_idx", "line_no", "rcode", "value", "malformed", "seg",
                        "decl_no", "in_envoi", anc_col(codes.INDIVIDUAL))[special_rows]
    n_seg = int(seg_np.max()) if len(seg_np) else 0
    envois = _envoi_info(special, n_seg, cat)
    seg_ver = _dense(envois.with_columns(pl.col("norm_version").replace_strict(
        list(VERSIONS), list(range(len(VERSIONS))), return_dtype=pl.Int64).alias("ver")),
        "seg", n_seg, "ver", pl.Int64)
    ver_np = np.where(envelope, ENVELOPE_VER, seg_ver.fill_null(0).to_numpy()[seg_np])
    key_np = np.where(has_rc, ver_np * n_cat + rc_np, n_keys)  # n_keys: no rubrique code
    flags = rules.flags[key_np]
    known = (flags & FLAG_BITS["known"]) != 0
    s10_s90 = (flags & FLAG_BITS["_s10_s90"]) != 0
    bad_len_np = known & ((n_chars < rules.len_min[key_np]) | (n_chars > rules.len_max[key_np]))
    unknown_np = ~malformed & ((flags & (FLAG_BITS["known"] | FLAG_BITS["_enrich"])) == 0)
    df = df.with_columns(pl.Series("ver", ver_np, dtype=pl.Int64))
    row_np = df.get_column("row").to_numpy()

    def at(rows: np.ndarray | pl.Series) -> np.ndarray:
        """Positions of ``rows`` (row ids) in ``df``."""
        rows = rows.to_numpy() if isinstance(rows, pl.Series) else rows
        return rows.astype(np.int64) if row_is_pos else np.flatnonzero(np.isin(row_np, rows))

    nir = cat.rcode(codes.NIR)
    sidx = np.flatnonzero(((flags & FLAG_BITS["_strict"]) != 0) | (rc_np == nir))
    sub = df.select("row", "file_idx", anc_col(codes.INDIVIDUAL), "rcode", "value")[sidx]
    sub = sub.with_columns(
        pl.Series("key", key_np[sidx], dtype=pl.Int64),
        pl.Series("pat", rules.pat[key_np[sidx]]),
        *[pl.Series(c, (flags[sidx] & FLAG_BITS[c]) != 0)
          for c in ("is_enum", "is_date", "_strict")])
    strict_bad = _strict_anomalies(sub, special, cat, rules)
    envoi_level = pl.col("in_envoi") & pl.col("decl_line").is_null()
    before_s20 = envoi_level & ~pl.col("_s10_s90") & ~pl.col("malformed")
    outside = ~pl.col("envelope") & ~pl.col("in_envoi")
    envoi_level_np = in_envoi_np & no_decl
    base = (malformed | unknown_np | bad_len_np | (envoi_level_np & ~s10_s90 & ~malformed)
            | (~envelope & ~in_envoi_np))
    base[at(strict_bad.get_column("row"))] = True
    a_cols = ["row", "file_idx", "line_no", "rcode", "value", "malformed", "unknown", "bad_len",
              "len_min", "len_max", "ver", "seg", "decl_no", "decl_line", "in_envoi", "envelope",
              "_s10_s90", "malformed_key", anc_col(codes.INDIVIDUAL), anc_col(codes.PAY), "raw"]
    from_df = [c for c in a_cols if c in df.columns]
    len_min_g, len_max_g = rules.grid.get_column("len_min"), rules.grid.get_column("len_max")

    def line_rows(rows: np.ndarray | pl.Series) -> pl.DataFrame:
        """The ``a_cols`` of the lines ``rows`` (by position, in line order)."""
        idx = at(rows) if not isinstance(rows, np.ndarray) or rows.dtype != bool else np.flatnonzero(rows)
        idx = np.sort(idx)
        k = key_np[idx]
        has_k = k < n_keys
        out = df.select(from_df)[idx].with_columns(
            pl.Series("unknown", unknown_np[idx]), pl.Series("bad_len", bad_len_np[idx]),
            pl.Series("_s10_s90", s10_s90[idx]),
            pl.Series("malformed_key", arrays["malformed_key"][idx]),
            len_min_g.gather(pl.Series(np.where(has_k, k, 0))).alias("len_min"),
            len_max_g.gather(pl.Series(np.where(has_k, k, 0))).alias("len_max"))
        if not has_k.all():
            out = out.with_columns(pl.when(pl.Series(has_k)).then(pl.col("len_min", "len_max")))
        return out.select(a_cols)

    a = line_rows(base).join(strict_bad, on="row", how="left", maintain_order="left")
    a = a.with_columns(
        (pl.col("rcode") == nir).fill_null(False).alias("is_nir"),
        pl.col("ver").replace_strict(list(range(len(VERSIONS))), list(VERSIONS), default=None,
                                     return_dtype=pl.String).alias("norm_version"))
    a = _reasons(a)

    # Natures per declaration (first S20.G00.05.001 of the declaration).
    natures = (special.filter((pl.col("rcode") == cat.rcode(codes.DECL_NATURE))
                              & pl.col("decl_no").is_not_null())
               .group_by("decl_no").agg(pl.col("value").first().alias("nature")))
    a = _with_own(a, line_rows, _cross_line_anomalies(special, a, cat))
    a = _with_own(a, line_rows, block_anomalies(df, cat))
    a = _with_own(a, line_rows, lot_anomalies(df, cat))
    # 51.010 matching no 40.009 of the same individual (natures 01/09), own anomaly-free.
    keys = ["file_idx", anc_col(codes.INDIVIDUAL)]
    contracts = (special.lazy().filter(pl.col("rcode") == cat.rcode(codes.CONTRACT_NO))
                 .select(*keys, contract_number(pl.col("value")).alias("cno")).unique().collect())
    pays = (special.filter(pl.col("rcode") == cat.rcode(codes.PAY_CONTRACT_NO))
            .select("row", "decl_no", *keys, "value")
            .join(natures, on="decl_no", how="left")
            .filter(pl.col("nature").is_in(list(codes.CONTRACT_LINK_NATURES)))
            .join(a.filter(pl.col("own_reason").is_not_null()
                           & (pl.col("own_reason") != Reason.CONTRACT_NUMBER_CHARACTERS))
                  .select("row"), on="row", how="anti"))
    missing = pays.select("row", *keys, contract_number(pl.col("value")).alias("cno")).join(
        contracts, on=[*keys, "cno"], how="anti", nulls_equal=False)
    if missing.height:
        extra = line_rows(missing.get_column("row")).with_columns(
            pl.lit(Reason.UNKNOWN_CONTRACT_NUMBER).alias("own_reason"),
            pl.lit("no S21.G00.40.009 of the same individual carries this contract number")
            .alias("own_detail"), pl.lit(True).alias("no_contract"))
        a = pl.concat([a.filter(~pl.col("row").is_in(missing.get_column("row").implode())),
                       extra], how="diagonal_relaxed").sort("row")
    else:
        a = a.with_columns(pl.lit(False).alias("no_contract"))
    a = a.with_columns(pl.col("no_contract").fill_null(False))
    # The whole pay block (51 and its 53 children) is set aside with its contract number.
    pay_key = ["file_idx", anc_col(codes.PAY)]
    bad_pays = (a.filter("no_contract").sort("row")
                .select(*pay_key, pl.col("line_no").alias("block_cause_line"))
                .unique(pay_key, keep="first", maintain_order=True))
    pay_k = pl.col("file_idx") * (1 << 32) + pl.col(anc_col(codes.PAY))
    if bad_pays.height:
        bad_keys = bad_pays.select(pay_k.alias("k")).get_column("k")
        block_rejected = df.select(pay_k.is_in(bad_keys.implode()).fill_null(False)).to_series()
    else:
        block_rejected = pl.repeat(False, df.height, dtype=pl.Boolean, eager=True)
    df = df.with_columns(block_rejected.alias("block_rejected"))
    arrays["block_rejected"] = block_rejected.to_numpy()

    # Scope of each line's own anomaly (on the candidate lines only).
    a = a.join(natures, on="decl_no", how="left", maintain_order="left")
    a = a.with_columns(
        pl.when(before_s20).then(pl.lit(Reason.DECLARATION_WITHOUT_S20)).otherwise(pl.col("own_reason"))
        .alias("own_reason"),
        pl.when(before_s20).then(pl.lit("declaration data before any S20.G00.05 of the envoi"))
        .otherwise(pl.col("own_detail")).alias("own_detail"),
    )
    has = pl.col("own_reason").is_not_null()
    # a nature code that is itself an anomaly (99, 1, a P26 code in a P25 file) says nothing
    # of the declaration: checked as a DSN mensuelle (its bad 05.001, a key, rejects it), not
    # read as a signalement whose anomalies are mere warnings (ingestion acceptance pass M3)
    bad_nature = (a.filter((pl.col("rcode") == cat.rcode(codes.DECL_NATURE)) & has)
                  .get_column("decl_no").unique().implode())
    strict_nature = (pl.col("nature").is_in(list(codes.STRICT_NATURES))
                     | pl.col("decl_no").is_in(bad_nature)).fill_null(True)
    is_key = pl.col("rcode").is_in(rules.key_codes).fill_null(False)
    own_scope = (
        pl.when(outside).then(pl.lit(Scope.LINE))
        .when(~has).then(pl.lit(None, pl.String))
        .when(pl.col("own_reason").is_in(list(codes.WARNING_REASONS))).then(pl.lit(Scope.WARNING))
        .when(envoi_level).then(pl.lit(Scope.ENVOI))
        .when(pl.col("malformed_key") & strict_nature).then(pl.lit(Scope.DECLARATION))
        .when(pl.col("malformed")).then(pl.lit(Scope.LINE))
        .when(~strict_nature).then(pl.lit(Scope.WARNING))
        .when((is_key & (pl.col("own_reason") != Reason.UNKNOWN_CONTRACT_NUMBER))
              | pl.col("own_reason").is_in(list(codes.DECLARATION_REASONS)))
        .then(pl.lit(Scope.DECLARATION))
        .otherwise(pl.lit(Scope.LINE))
    )
    a = a.with_columns(
        pl.when(outside & ~has).then(pl.lit(Reason.MALFORMED_LINE)).otherwise(pl.col("own_reason"))
        .alias("own_reason"),
        pl.when(outside & ~has).then(pl.lit("line outside any envoi (before S10 or after S90)"))
        .otherwise(pl.col("own_detail")).alias("own_detail"),
        own_scope.alias("own_scope"),
    )
    arrays["row"] = row_np
    envois = _envoi_verdicts(arrays, special, a, envois, cat, check_s90_lines)
    decls = _decl_verdicts(df, a, natures, envois)
    df, issues = _final_states(df, arrays, special, a, envois, decls, bad_pays, cat)
    return Validated(lines=df, envois=envois, decls=decls, issues=issues, catalog=cat)


def _envoi_verdicts(arrays: dict[str, np.ndarray], special: pl.DataFrame, a: pl.DataFrame,
                    envois: pl.DataFrame, cat: Catalog, check_lines: bool) -> pl.DataFrame:
    """Envoi rejected by an S10/S90 anomaly, an S90 total mismatch or a missing S90. S90.001
    counts the rubriques: a blank line (quarantined on its own) is not one.

    ``arrays``: the line columns as NumPy (``validate``)."""
    rc_tl, rc_td = cat.rcode(codes.TOTAL_RUBRIQUES), cat.rcode(codes.TOTAL_DECLARATIONS)
    in_envoi = arrays["in_envoi"]
    seg = arrays["seg"][in_envoi]
    n_lines = np.bincount(seg, weights=~arrays["blank"][in_envoi]).astype(np.int64)
    n_decl = np.bincount(seg[arrays["decl_start"][in_envoi]], minlength=len(n_lines))
    has = np.flatnonzero(n_lines)  # the segments with an envoi line
    counts = pl.DataFrame({"seg": pl.Series(has, dtype=pl.Int64),
                           "n_lines": pl.Series(n_lines[has], dtype=pl.UInt32)})
    n_decls = pl.DataFrame({"seg": pl.Series(has, dtype=pl.Int64),
                            "n_decls": pl.Series(n_decl[has], dtype=pl.UInt32)}).filter(
        pl.col("n_decls") > 0)
    totals = special.lazy().filter(pl.col("in_envoi") & pl.col("rcode").is_in([rc_tl, rc_td])
                                   ).group_by("seg").agg(
        pl.col("value").filter(pl.col("rcode") == rc_tl).first()
        .cast(pl.Int64, strict=False).alias("declared_lines"),
        pl.col("value").filter(pl.col("rcode") == rc_td).first()
        .cast(pl.Int64, strict=False).alias("declared_decls"),
        pl.col("line_no").filter(pl.col("rcode") == rc_tl).first().alias("s90_line_no")).collect()
    causes = a.filter(pl.col("in_envoi") & (pl.col("own_scope") == Scope.ENVOI)).group_by("seg").agg(
        pl.col("line_no").first().alias("cause_line"),
        pl.col("own_reason").first().alias("cause_reason"))
    counts = (counts.join(n_decls, on="seg", how="left").join(totals, on="seg", how="left")
              .join(causes, on="seg", how="left")
              .with_columns(pl.col("n_decls").fill_null(0).cast(pl.UInt32)))
    lines_bad = (pl.col("declared_lines") != pl.col("n_lines")) | pl.col("declared_lines").is_null()
    mismatch = ((lines_bad & pl.lit(check_lines))
                | (pl.col("declared_decls") != pl.col("n_decls")) | pl.col("declared_decls").is_null())
    counts = counts.with_columns(
        pl.when(mismatch & pl.col("s90_line_no").is_null()
                & pl.col("declared_decls").is_null())  # no S90 at all: the detail says so
        .then(pl.format("no S90 totals block: the envoi ends after {} lines / {} declarations "
                        "without it (a file cut short?)", pl.col("n_lines"), pl.col("n_decls")))
        .when(mismatch).then(pl.format(
            "S90 declares {} lines / {} declarations, the envoi has {} / {}",
            pl.col("declared_lines").cast(pl.String).fill_null("?"),
            pl.col("declared_decls").cast(pl.String).fill_null("?"), pl.col("n_lines"),
            pl.col("n_decls"))).alias("s90_detail"),
        mismatch.alias("s90_mismatch"),
    )
    counts = counts.with_columns(
        pl.coalesce(pl.col("cause_reason"), pl.when(pl.col("s90_mismatch"))
                    .then(pl.lit(Reason.S90_COUNT_MISMATCH))).alias("reject_reason"),
        pl.when(pl.col("cause_reason").is_not_null())
        .then(pl.format("envoi rejected: {} at line {}", pl.col("cause_reason"), pl.col("cause_line")))
        .when(pl.col("s90_mismatch")).then(pl.lit("envoi rejected: ") + pl.col("s90_detail"))
        .alias("reject_detail"),
    )
    out = envois.join(counts, on="seg", how="left", maintain_order="left")
    return out.with_columns(pl.col("reject_reason").is_not_null().alias("rejected"))


def _decl_verdicts(df: pl.DataFrame, a: pl.DataFrame, natures: pl.DataFrame,
                   envois: pl.DataFrame) -> pl.DataFrame:
    decls = df.lazy().filter(pl.col("decl_start") & pl.col("decl_no").is_not_null()).select(
        "decl_no", "file_idx", "decl_line", "seg").collect()
    causes = a.filter(pl.col("decl_no").is_not_null() & (pl.col("own_scope") == Scope.DECLARATION)
                      ).group_by("decl_no").agg(
        pl.col("line_no").first().alias("cause_line"),
        pl.col("own_reason").first().alias("cause_reason"))
    decls = decls.join(natures, on="decl_no", how="left").join(causes, on="decl_no", how="left")
    decls = decls.join(envois.select("seg", pl.col("rejected").alias("envoi_rejected"),
                                     "reject_reason", "reject_detail"), on="seg", how="left")
    return decls.with_columns(
        (pl.col("envoi_rejected") | pl.col("cause_reason").is_not_null()).alias("rejected"),
        pl.when(pl.col("envoi_rejected")).then(pl.col("reject_reason"))
        .otherwise(pl.col("cause_reason")).alias("decl_reason"),
        pl.when(pl.col("envoi_rejected")).then(pl.col("reject_detail"))
        .otherwise(pl.format("declaration rejected: {} at line {}", pl.col("cause_reason"),
                             pl.col("cause_line"))).alias("decl_detail"),
    ).drop("reject_reason", "reject_detail")


def _final_states(df: pl.DataFrame, arrays: dict[str, np.ndarray], special: pl.DataFrame,
                  a: pl.DataFrame, envois: pl.DataFrame, decls: pl.DataFrame,
                  bad_pays: pl.DataFrame, cat: Catalog) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One state per line (``q_code``: 0 parsed, 1 envoi, 2 declaration, 3 line) and the issue
    rows (q_scope, q_reason, q_detail, is_cause, w_reason, w_detail) of the lines concerned.

    ``arrays``: the line columns as NumPy (``validate``)."""
    n_seg = envois.height
    decl_no = arrays["decl_no"]  # 0: no declaration
    n_decl = int(decl_no.max()) if len(decl_no) else 0
    # Per line in NumPy: verdicts come back by gather on the dense seg / decl_no ordinals.
    env_rej = _dense(envois, "seg", n_seg, "rejected", pl.Boolean).fill_null(False).to_numpy()
    dec_rej = _dense(decls, "decl_no", n_decl, "rejected", pl.Boolean).fill_null(False).to_numpy()
    in_envoi = arrays["in_envoi"]
    seg_rej = env_rej[arrays["seg"]]
    decl_rej = dec_rej[decl_no]
    row_np = arrays["row"]
    line_q = arrays["block_rejected"].copy()
    line_q_rows = a.filter(pl.col("own_scope").is_in([Scope.LINE, Scope.DECLARATION, Scope.ENVOI])
                           ).get_column("row").to_numpy()
    line_q[np.flatnonzero(np.isin(row_np, line_q_rows, kind="table"))] = True
    envoi_rej = in_envoi & seg_rej
    q_code = np.where(envoi_rej, Q_ENVOI, np.where(decl_rej, Q_DECL, np.where(line_q, Q_LINE, Q_NONE))
                      ).astype(np.uint8)
    kept = in_envoi & (decl_no > 0) & ~decl_rej & ~seg_rej
    df = df.with_columns(pl.Series("q_code", q_code), pl.Series("kept", kept),
                         pl.Series("parsed", kept & (q_code == Q_NONE)))
    # Unknown norm versions become warnings in the quarantine (tables._quarantine).
    version_rows = ((pl.col("rcode") == cat.rcode(codes.ENVOI_NORM_VERSION))
                    & ~pl.col("value").is_in(list(KNOWN_VERSIONS))).fill_null(False)
    # A test envoi (S10.G00.00.005 = 01) is parsed and kept, never used: the quarantine says
    # so (a warning on that line), as it lists every declaration not used and why.
    test_rows = ((pl.col("rcode") == cat.rcode(codes.ENVOI_TEST_FLAG))
                 & (pl.col("value") == codes.TEST_ENVOI)).fill_null(False)
    # So is a declaration of another nature than the DSN mensuelle (a signalement: FCTU,
    # arrêt de travail, reprise…, or a substitution DSN): a warning on its S20.G00.05.001 line.
    nature_rows = ((pl.col("rcode") == cat.rcode(codes.DECL_NATURE))
                   & (pl.col("value") != codes.NATURE_MENSUELLE)).fill_null(False)
    wanted = (q_code != Q_NONE) | arrays["damaged"]
    for rows in (a.get_column("row"),
                 special.filter(version_rows | test_rows | nature_rows).get_column("row")):
        wanted[np.flatnonzero(np.isin(row_np, rows.to_numpy(), kind="table"))] = True
    cols = [c for c in ISSUE_LINE_COLS if c in df.columns]
    rows = df.select(cols)[np.flatnonzero(wanted)]
    rows = rows.join(a.select("row", "own_reason", "own_detail", "own_scope"), on="row",
                     how="left", maintain_order="left")
    rows = rows.join(envois.select("seg", pl.col("rejected").alias("envoi_rejected"),
                                   pl.col("reject_reason").alias("envoi_reason"),
                                   pl.col("reject_detail").alias("envoi_detail"),
                                   "s90_line_no"),
                     on="seg", how="left", maintain_order="left")
    rows = rows.join(decls.select("decl_no", pl.col("rejected").alias("decl_rejected"),
                                  "decl_reason", "decl_detail"),
                     on="decl_no", how="left", maintain_order="left")
    rows = rows.join(bad_pays, on=["file_idx", anc_col(codes.PAY)], how="left",
                     maintain_order="left")
    own = pl.col("own_scope")
    envoi_r = pl.col("q_code") == Q_ENVOI
    decl_r = pl.col("q_code") == Q_DECL
    block_rej = pl.col("block_rejected")
    q_scope = pl.col("q_code").replace_strict(
        {Q_ENVOI: Scope.ENVOI, Q_DECL: Scope.DECLARATION, Q_LINE: Scope.LINE}, default=None,
        return_dtype=pl.String)
    has_own = pl.col("own_reason").is_not_null() & (own != Scope.WARNING)
    q_reason = (pl.when(has_own).then(pl.col("own_reason"))
                .when(envoi_r).then(pl.col("envoi_reason"))
                .when(decl_r).then(pl.col("decl_reason"))
                .when(block_rej).then(pl.lit(Reason.UNKNOWN_CONTRACT_NUMBER)))
    q_detail = (pl.when(has_own).then(pl.col("own_detail"))
                .when(envoi_r).then(pl.col("envoi_detail"))
                .when(decl_r).then(pl.col("decl_detail"))
                .when(block_rej).then(pl.format(
                    "pay block set aside: its contract number (line {}) matches no contract",
                    pl.col("block_cause_line"))))
    warn_reason = (pl.when(own == Scope.WARNING).then(pl.col("own_reason"))
                   .when(pl.col("damaged")).then(pl.lit(Reason.DAMAGED_CHARACTERS)))
    warn_detail = (pl.when(pl.col("own_reason").is_in(list(codes.WARNING_REASONS)))
                   .then(pl.col("own_detail"))
                   .when(own == Scope.WARNING)
                   .then(pl.lit("signalement (never credited): ") + pl.col("own_detail"))
                   .when(pl.col("damaged"))
                   .then(pl.lit("damaged character (U+FFFD or C1 control): encoding lost upstream")))
    issues = rows.with_columns(
        q_scope.alias("q_scope"),
        pl.col("ver").replace_strict(list(range(len(VERSIONS))), list(VERSIONS), default=None,
                                     return_dtype=pl.String).alias("norm_version"),
        version_rows.alias("version_row"),
        test_rows.alias("test_row"),
        nature_rows.alias("nature_row"),
    ).with_columns(
        pl.when(pl.col("q_scope").is_not_null()).then(q_reason).alias("q_reason"),
        pl.when(pl.col("q_scope").is_not_null()).then(q_detail).alias("q_detail"),
        (pl.col("q_scope").is_not_null()
         & (has_own.fill_null(False)  # an S90 total that does not match: the S90 line is the cause
            | (envoi_r & (pl.col("envoi_reason") == Reason.S90_COUNT_MISMATCH)
               & (pl.col("line_no") == pl.col("s90_line_no"))).fill_null(False))
         ).alias("is_cause"),
        pl.when(pl.col("q_scope").is_null()).then(warn_reason).alias("w_reason"),
        pl.when(pl.col("q_scope").is_null()).then(warn_detail).alias("w_detail"),
    )
    return df, issues
