"""The monthly reference of a contract-month term (R6323-1: 40.012, forfait jours capped at
218/12, the legal reference for an Activité in the other unit family) and its display label,
coded as one integer so labels are formatted once per distinct reference.
"""

from __future__ import annotations

import polars as pl

from pipeline.months import M_SCALE
from pipeline.parameters import YearParams


def reference_fraction(p: YearParams, num_t: pl.DataType = pl.Int128) -> list[pl.Expr]:
    """Per contract-month term ``counted / monthly reference`` as (term_num, term_den):
    - own family, forfait days: reference min(40.012, 218/12) -> 12·counted / 21 800 when capped;
    - own family otherwise: 40.012 (else the legal reference when 40.012 is missing or 0);
    - an Activité in the other family (53.003 override): the legal reference of that family
      (Decision other_unit_reference = legal): 1 607/12 h or 218/12 days.
    counted is M-scaled, so every den carries the factor M. ``_lab_kind`` (0 = 40.012,
    1 = capped forfait, 2 = legal) and ``_lab_r`` feed ``reference_label`` (formatted once per
    distinct reference, not per row)."""
    R = pl.col("ref_quota_h").cast(pl.Int64)
    has_ref = R.is_not_null() & (R > 0) & pl.col("own_family")
    capped = (pl.col("unit").is_in(list(p.forfait_day_units))
              & (R * 12 > p.forfait_max_days_h))
    legal = pl.when(pl.col("act_family") == "hours").then(pl.lit(p.legal_annual_hours_h)) \
        .otherwise(pl.lit(p.forfait_max_days_h)).cast(pl.Int64)
    use_r = has_ref & ~capped.fill_null(False)
    # ``_frac12``: the twelfths of a scaled unit an absence against the legal reference adds
    # (``worked_time``: a sans-notion contract's month counted in time), kept exact here
    num = pl.when(use_r).then(pl.col("counted_scaled")).otherwise(
        pl.col("counted_scaled") * 12 + pl.col("_frac12"))
    den = (pl.when(use_r).then(R).when(has_ref).then(pl.lit(p.forfait_max_days_h, pl.Int64))
           .otherwise(legal) * M_SCALE)
    kind = pl.when(use_r).then(0).when(has_ref).then(1).otherwise(2).cast(pl.Int8)
    return [num.cast(num_t).alias("term_num"), den.cast(pl.Int64).alias("term_den"),
            kind.alias("_lab_kind"), pl.when(use_r).then(R).alias("_lab_r")]


def label_code() -> pl.Expr:
    """The reference of a contract-month term as one Int64 (``reference_label`` decodes it):
    ``_lab_r · 8 + _lab_kind · 2 + is_hours``."""
    return (pl.col("_lab_r").fill_null(0).cast(pl.Int64) * 8
            + pl.col("_lab_kind").cast(pl.Int64) * 2
            + (pl.col("act_family") == "hours").cast(pl.Int64))


def label_table(codes: pl.DataFrame, p: YearParams) -> pl.DataFrame:
    """(_lcode, ref_label) for the distinct codes of a run (a handful)."""
    return codes.with_columns(
        pl.when(pl.col("_lcode") % 2 == 1).then(pl.lit("hours")).otherwise(pl.lit("days"))
        .alias("act_family"),
        (pl.col("_lcode") // 2 % 4).cast(pl.Int8).alias("_lab_kind"),
        pl.when(pl.col("_lcode") // 2 % 4 == 0).then(pl.col("_lcode") // 8).alias("_lab_r"),
    ).select("_lcode", reference_label(p).alias("ref_label"))


def reference_label(p: YearParams) -> pl.Expr:
    """e.g. "h:151.67", "d:218/12", "h:1607/12" from ``act_family``, ``_lab_kind``, ``_lab_r``."""
    unit_letter = pl.when(pl.col("act_family") == "hours").then(pl.lit("h")).otherwise(pl.lit("d"))
    legal = pl.when(pl.col("act_family") == "hours").then(pl.lit(p.legal_annual_hours_h)) \
        .otherwise(pl.lit(p.forfait_max_days_h)).cast(pl.Int64)
    k = pl.col("_lab_kind")
    return pl.format("{}:{}", unit_letter,
                     pl.when(k == 0).then((pl.col("_lab_r").cast(pl.Float64) / 100).round(2)
                                          .cast(pl.String))
                     .when(k == 1).then(pl.lit(f"{p.forfait_max_days_h / 100:g}/12"))
                     .otherwise(pl.format("{}/12", (legal // 100).cast(pl.String))))
