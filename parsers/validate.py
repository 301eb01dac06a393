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
- damaged characters (U+FFFD, C1 controls) and an unknown norm version are warnings.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from parsers import codes
from parsers.codes import Reason, Scope
from parsers.norm import KNOWN_VERSIONS, enumeration_table, nearest_version, validation_table
from parsers.structure import anc_col
from parsers.values import contract_number, to_date

ENRICHMENT_BLOCK_NO_START = 8  # "S10.G00.95": characters 8-9 hold the block number


@dataclass
class Validated:
    """Validated lines plus per-envoi and per-declaration verdicts."""

    lines: pl.DataFrame  # structured lines + status columns
    envois: pl.DataFrame  # seg -> norm_requested, norm_version, is_test, rejected, cause
    decls: pl.DataFrame  # (file_idx, decl_line) -> nature, rejected, cause


def _first_value(df: pl.DataFrame, keys: list[str], rubrique: str, name: str) -> pl.DataFrame:
    return (df.filter(pl.col("rubrique") == rubrique).group_by(keys)
            .agg(pl.col("value").first().alias(name)))


def _envoi_info(df: pl.DataFrame) -> pl.DataFrame:
    segs = df.select("seg").unique()
    envois = segs.join(_first_value(df, ["seg"], codes.ENVOI_NORM_VERSION, "norm_requested"),
                       on="seg", how="left")
    envois = envois.join(_first_value(df, ["seg"], codes.ENVOI_TEST_FLAG, "test_flag"),
                         on="seg", how="left")
    mapping = {v: nearest_version(v) for v in envois["norm_requested"].unique().to_list() if v}
    return envois.with_columns(
        pl.col("norm_requested").replace_strict(mapping, default=KNOWN_VERSIONS[-1],
                                                return_dtype=pl.String).alias("norm_version"),
        (pl.col("test_flag") == codes.TEST_ENVOI).fill_null(False).alias("is_test"),
    ).drop("test_flag")


def _nir_ok(value: pl.Expr, birth_year: pl.Expr, pattern: pl.Expr) -> pl.Expr:
    """Norm pattern + CCH rules on S21.G00.30.001 (dsn_format.md §2.3)."""
    month = value.str.slice(3, 2)
    dept = value.str.slice(5, 2)
    too_many_nines = value.str.ends_with("9" * (codes.NIR_MAX_TRAILING_NINES + 1))
    corsica_too_old = dept.is_in(list(codes.NIR_CORSICA_DEPTS)) & (
        birth_year < codes.NIR_CORSICA_FROM_YEAR)
    month20_too_young = (month == "20") & (birth_year >= codes.NIR_MONTH_20_BEFORE_YEAR)
    return (value.str.contains(pattern).fill_null(True) & ~too_many_nines
            & ~corsica_too_old.fill_null(False) & ~month20_too_young.fill_null(False))


def _line_anomalies(df: pl.DataFrame) -> pl.DataFrame:
    """Adds own_reason / own_detail: the line's own anomaly (null when none)."""
    value, rub = pl.col("value"), pl.col("rubrique")
    n_chars = value.str.len_chars()
    known = pl.col("type").is_not_null()
    block_no = pl.col("block").str.slice(ENRICHMENT_BLOCK_NO_START, 2).cast(pl.Int32, strict=False)
    enrichment = ((pl.col("rub_no") >= codes.ENRICHMENT_MIN_RUBRIQUE_NO)
                  | rub.is_in(list(codes.ENRICHMENT_RUBRIQUES))
                  | (~pl.col("block_known") & (block_no >= codes.ENRICHMENT_MIN_BLOCK_NO)))
    bad_len = known & ((n_chars < pl.col("len_min")) | (n_chars > pl.col("len_max")))
    strict = known & pl.col("strict")
    bad_enum = strict & pl.col("is_enum") & pl.col("enum_ok").is_null()
    is_date = strict & (pl.col("type") == "D")
    bad_regexp = strict & ~value.str.contains(pl.col("regexp_anchored")).fill_null(True)
    bad_date = is_date & (bad_regexp | to_date(value).is_null())
    is_nir = rub == codes.NIR
    bad_nir = is_nir & ~_nir_ok(value, pl.col("birth_year"), pl.col("regexp_anchored"))
    reason = (
        pl.when(pl.col("malformed")).then(pl.lit(Reason.MALFORMED_LINE))
        .when(~known & ~enrichment).then(pl.lit(Reason.UNKNOWN_RUBRIQUE))
        .when(is_nir & (bad_nir | bad_len)).then(pl.lit(Reason.INVALID_NIR))
        .when(bad_len).then(pl.lit(Reason.BAD_FORMAT))
        .when(bad_enum).then(pl.lit(Reason.BAD_ENUM))
        .when(bad_date).then(pl.lit(Reason.INVALID_DATE))
        .when(bad_regexp).then(pl.lit(Reason.BAD_FORMAT))
    )
    detail = (
        pl.when(pl.col("malformed")).then(pl.lit("not a `Sxx.Gyy.zz.aaa,'value'` line of at most 256 characters"))
        .when(pl.col("own_reason") == Reason.UNKNOWN_RUBRIQUE).then(pl.lit("rubrique not in norm ") + pl.col("norm_version"))
        .when(pl.col("own_reason") == Reason.INVALID_NIR).then(pl.lit("NIR fails the norm pattern or CCH rules"))
        .when(pl.col("own_reason") == Reason.BAD_ENUM).then(pl.lit("value not in the enumeration of ") + pl.col("norm_version"))
        .when(pl.col("own_reason") == Reason.INVALID_DATE).then(pl.lit("not a valid JJMMAAAA date for this rubrique"))
        .when((pl.col("value").str.len_chars() < pl.col("len_min")) | (pl.col("value").str.len_chars() > pl.col("len_max")))
        .then(pl.format("length {} outside [{}, {}]", pl.col("value").str.len_chars(), pl.col("len_min"), pl.col("len_max")))
        .otherwise(pl.lit("value does not match the norm format"))
    )
    # Details are built on the (few) anomalous lines only, then joined back.
    df = df.with_columns(reason.alias("own_reason"))
    details = df.filter(pl.col("own_reason").is_not_null()).select(
        "file_idx", "line_no", detail.alias("own_detail"))
    return df.join(details, on=["file_idx", "line_no"], how="left", maintain_order="left")


def _unknown_contracts(df: pl.DataFrame) -> pl.DataFrame:
    """Lines 51.010 whose contract number matches no 40.009 of the same individual."""
    keys = ["file_idx", anc_col(codes.INDIVIDUAL)]
    contracts = (df.filter(pl.col("rubrique") == codes.CONTRACT_NO)
                 .select(*keys, contract_number(pl.col("value")).alias("cno")).unique())
    pays = df.filter((pl.col("rubrique") == codes.PAY_CONTRACT_NO)
                     & pl.col("nature").is_in(list(codes.CONTRACT_LINK_NATURES))
                     & pl.col("own_reason").is_null())
    pays = pays.select("file_idx", "line_no", *keys[1:],
                       contract_number(pl.col("value")).alias("cno"))
    missing = pays.join(contracts, on=[*keys, "cno"], how="anti", nulls_equal=False)
    return missing.select("file_idx", "line_no", pl.lit(True).alias("no_contract"))


def validate(df: pl.DataFrame, check_s90_lines: bool = True) -> Validated:
    """Compute every line's state. ``df`` comes from ``structure.add_structure``.

    ``check_s90_lines=False`` (XML input, possibly a subset of the flat file) checks only the
    S90 declaration count, not the line total."""
    envois = _envoi_info(df)
    df = df.join(envois.select("seg", pl.col("norm_version").alias("envoi_norm")), on="seg",
                 how="left", maintain_order="left")
    df = df.with_columns(pl.when(pl.col("envelope")).then(pl.lit(codes.ENVELOPE_NORM))
                         .otherwise(pl.col("envoi_norm")).alias("norm_version")).drop("envoi_norm")
    df = df.join(validation_table(), on=["norm_version", "rubrique"], how="left",
                 maintain_order="left")
    enums = enumeration_table().rename({"code": "value"}).with_columns(pl.lit(True).alias("enum_ok"))
    df = df.join(enums, on=["norm_version", "rubrique", "value"], how="left", maintain_order="left")
    decl_keys = ["file_idx", "decl_line"]
    natures = _first_value(df.filter(pl.col("decl_line").is_not_null()), decl_keys,
                           codes.DECL_NATURE, "nature")
    df = df.join(natures, on=decl_keys, how="left", maintain_order="left")
    births = (df.filter(pl.col("rubrique") == codes.BIRTH_DATE)
              .group_by("file_idx", anc_col(codes.INDIVIDUAL))
              .agg(pl.col("value").first().str.slice(4, 4).cast(pl.Int32, strict=False)
                   .alias("birth_year")))
    df = df.join(births, on=["file_idx", anc_col(codes.INDIVIDUAL)], how="left",
                 maintain_order="left")
    df = df.with_columns(pl.col("block").is_in(list(_known_blocks())).alias("block_known"))
    df = _line_anomalies(df)
    missing = _unknown_contracts(df)
    df = df.join(missing, on=["file_idx", "line_no"], how="left", maintain_order="left")
    # The whole pay block (51 and its 53 children) is set aside with its contract number.
    pay_key = ["file_idx", anc_col(codes.PAY)]
    bad_pays = (df.filter(pl.col("no_contract").fill_null(False)).select(
        *pay_key, pl.col("line_no").alias("block_cause_line")).unique(pay_key))
    df = df.join(bad_pays, on=pay_key, how="left", maintain_order="left").with_columns(
        pl.col("block_cause_line").is_not_null().alias("block_rejected"))
    df = df.with_columns(
        pl.when(pl.col("no_contract")).then(pl.lit(Reason.UNKNOWN_CONTRACT_NUMBER))
        .otherwise(pl.col("own_reason")).alias("own_reason"),
        pl.when(pl.col("no_contract"))
        .then(pl.lit("no S21.G00.40.009 of the same individual carries this contract number"))
        .otherwise(pl.col("own_detail")).alias("own_detail"),
    )

    # Scope of each line's own anomaly.
    has = pl.col("own_reason").is_not_null()
    envoi_level = pl.col("in_envoi") & pl.col("decl_line").is_null()
    before_s20 = envoi_level & ~pl.col("structure").is_in(["S10", "S90"]) & ~pl.col("malformed")
    strict_nature = pl.col("nature").is_in(list(codes.STRICT_NATURES)).fill_null(True)
    is_key = (pl.col("rubrique").is_in(list(codes.KEY_RUBRIQUES))
              | pl.col("rubrique").str.starts_with(codes.KEY_BLOCK_PREFIXES[0]))
    outside = ~pl.col("envelope") & ~pl.col("in_envoi")
    df = df.with_columns(
        pl.when(before_s20).then(pl.lit(Reason.DECLARATION_WITHOUT_S20)).otherwise(pl.col("own_reason"))
        .alias("own_reason"),
        pl.when(before_s20).then(pl.lit("declaration data before any S20.G00.05 of the envoi"))
        .otherwise(pl.col("own_detail")).alias("own_detail"),
    )
    has = pl.col("own_reason").is_not_null()
    own_scope = (
        pl.when(outside).then(pl.lit(Scope.LINE))
        .when(~has).then(pl.lit(None, pl.String))
        .when(envoi_level).then(pl.lit(Scope.ENVOI))
        .when(pl.col("malformed")).then(pl.lit(Scope.LINE))
        .when(~strict_nature).then(pl.lit(Scope.WARNING))
        .when(is_key & (pl.col("own_reason") != Reason.UNKNOWN_CONTRACT_NUMBER))
        .then(pl.lit(Scope.DECLARATION))
        .otherwise(pl.lit(Scope.LINE))
    )
    df = df.with_columns(
        pl.when(outside & ~has).then(pl.lit(Reason.MALFORMED_LINE)).otherwise(pl.col("own_reason"))
        .alias("own_reason"),
        pl.when(outside & ~has).then(pl.lit("line outside any envoi (before S10 or after S90)"))
        .otherwise(pl.col("own_detail")).alias("own_detail"),
        own_scope.alias("own_scope"),
    )

    envois = _envoi_verdicts(df, envois, check_s90_lines)
    decls = _decl_verdicts(df, envois)
    df = _final_states(df, envois, decls)
    return Validated(lines=df, envois=envois, decls=decls)


def _known_blocks() -> frozenset[str]:
    from parsers.norm import block_parents
    return frozenset(block_parents())


def _envoi_verdicts(df: pl.DataFrame, envois: pl.DataFrame, check_lines: bool) -> pl.DataFrame:
    """Envoi rejected by an S10/S90 anomaly, an S90 total mismatch or a missing S90."""
    in_envoi = df.filter(pl.col("in_envoi"))
    counts = in_envoi.group_by("seg").agg(
        pl.len().alias("n_lines"),
        (pl.col("is_new") & (pl.col("block") == codes.DECLARATION)).sum().alias("n_decls"),
        pl.col("value").filter(pl.col("rubrique") == codes.TOTAL_RUBRIQUES).first()
        .cast(pl.Int64, strict=False).alias("declared_lines"),
        pl.col("value").filter(pl.col("rubrique") == codes.TOTAL_DECLARATIONS).first()
        .cast(pl.Int64, strict=False).alias("declared_decls"),
        pl.col("line_no").filter(pl.col("rubrique") == codes.TOTAL_RUBRIQUES).first().alias("s90_line_no"),
        pl.col("line_no").filter(pl.col("own_scope") == Scope.ENVOI).first().alias("cause_line"),
        pl.col("own_reason").filter(pl.col("own_scope") == Scope.ENVOI).first().alias("cause_reason"),
    )
    lines_bad = (pl.col("declared_lines") != pl.col("n_lines")) | pl.col("declared_lines").is_null()
    mismatch = ((lines_bad & pl.lit(check_lines))
                | (pl.col("declared_decls") != pl.col("n_decls")) | pl.col("declared_decls").is_null())
    counts = counts.with_columns(
        pl.when(mismatch).then(pl.format(
            "S90 declares {} lines / {} declarations, the envoi has {} / {}",
            pl.col("declared_lines"), pl.col("declared_decls"), pl.col("n_lines"),
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
    out = envois.join(counts, on="seg", how="left")
    return out.with_columns(pl.col("reject_reason").is_not_null().alias("rejected"))


def _decl_verdicts(df: pl.DataFrame, envois: pl.DataFrame) -> pl.DataFrame:
    keys = ["file_idx", "decl_line"]
    decls = df.filter(pl.col("decl_line").is_not_null()).group_by(keys).agg(
        pl.col("seg").first(),
        pl.col("nature").first(),
        pl.col("line_no").filter(pl.col("own_scope") == Scope.DECLARATION).first().alias("cause_line"),
        pl.col("own_reason").filter(pl.col("own_scope") == Scope.DECLARATION).first().alias("cause_reason"),
    )
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


def _final_states(df: pl.DataFrame, envois: pl.DataFrame, decls: pl.DataFrame) -> pl.DataFrame:
    """One state per line: q_scope (null = parsed), q_reason, q_detail, is_cause."""
    df = df.join(envois.select("seg", pl.col("rejected").alias("envoi_rejected"),
                               pl.col("reject_reason").alias("envoi_reason"),
                               pl.col("reject_detail").alias("envoi_detail")),
                 on="seg", how="left", maintain_order="left")
    df = df.join(decls.select("file_idx", "decl_line", pl.col("rejected").alias("decl_rejected"),
                              "decl_reason", "decl_detail"),
                 on=["file_idx", "decl_line"], how="left", maintain_order="left")
    envoi_rej = pl.col("in_envoi") & pl.col("envoi_rejected").fill_null(False)
    decl_rej = pl.col("decl_rejected").fill_null(False)
    own = pl.col("own_scope")
    block_rej = pl.col("block_rejected")
    line_q = own.is_in([Scope.LINE, Scope.DECLARATION, Scope.ENVOI]).fill_null(False) | block_rej
    q_scope = (pl.when(envoi_rej).then(pl.lit(Scope.ENVOI))
               .when(decl_rej).then(pl.lit(Scope.DECLARATION))
               .when(line_q).then(pl.lit(Scope.LINE)))
    has_own = pl.col("own_reason").is_not_null() & (own != Scope.WARNING)
    q_reason = (pl.when(has_own).then(pl.col("own_reason"))
                .when(envoi_rej).then(pl.col("envoi_reason"))
                .when(decl_rej).then(pl.col("decl_reason"))
                .when(block_rej).then(pl.lit(Reason.UNKNOWN_CONTRACT_NUMBER)))
    q_detail = (pl.when(has_own).then(pl.col("own_detail"))
                .when(envoi_rej).then(pl.col("envoi_detail"))
                .when(decl_rej).then(pl.col("decl_detail"))
                .when(block_rej).then(pl.format(
                    "pay block set aside: its contract number (line {}) matches no contract",
                    pl.col("block_cause_line"))))
    warn_reason = (pl.when(own == Scope.WARNING).then(pl.col("own_reason"))
                   .when(pl.col("damaged")).then(pl.lit(Reason.DAMAGED_CHARACTERS)))
    warn_detail = (pl.when(own == Scope.WARNING)
                   .then(pl.lit("signalement (never credited): ") + pl.col("own_detail"))
                   .when(pl.col("damaged"))
                   .then(pl.lit("damaged character (U+FFFD or C1 control): encoding lost upstream")))
    return df.with_columns(q_scope.alias("q_scope")).with_columns(
        pl.when(pl.col("q_scope").is_not_null()).then(q_reason).alias("q_reason"),
        pl.when(pl.col("q_scope").is_not_null()).then(q_detail).alias("q_detail"),
        (pl.col("q_scope").is_not_null() & has_own.fill_null(False)).alias("is_cause"),
        pl.when(pl.col("q_scope").is_null()).then(warn_reason).alias("w_reason"),
        pl.when(pl.col("q_scope").is_null()).then(warn_detail).alias("w_detail"),
    )
