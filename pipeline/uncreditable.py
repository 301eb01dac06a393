"""People examined but not credited, each with a reason (never silently dropped): NTT only,
out of scope, under age, identity conflicts, data the exact arithmetic refuses.
"""

from __future__ import annotations

import polars as pl

from pipeline.contract_keys import of_contract
from pipeline.fractions import K_MAX
from pipeline.identity import Identity
from pipeline.months import in_year
from pipeline.parameters import YearParams


UNCREDITABLE_SCHEMA = {"nir": pl.String, "ntt": pl.String, "year": pl.Int32, "reason": pl.String,
                       "detail": pl.String}


def identity_uncreditable(persons: pl.LazyFrame, ident: Identity, year: int) -> pl.LazyFrame:
    """Examined people concerned by a conflicting identity link (``identity_links``):
    ``identity_conflict`` (an old NIR claimed by several NIRs: not credited, never guessed)
    and ``contract_link_conflict`` (an old contract key claimed by several contracts: the
    contracts stay separate, the person is credited; reported for review)."""
    examined = persons.select("nir")
    frames = [examined.join(f.lazy(), on="nir", how="inner")
              .group_by("nir").agg(pl.col("detail").sort().str.join("; "))
              .select("nir", pl.lit(None, pl.String).alias("ntt"), pl.lit(reason).alias("reason"),
                      "detail")
              for reason, f in (("identity_conflict", ident.conflicts),
                                ("contract_link_conflict", ident.contract_conflicts))]
    return (pl.concat(frames).with_columns(pl.lit(year, pl.Int32).alias("year"))
            .select(list(UNCREDITABLE_SCHEMA)))


def birth_year_from_nir(year: int) -> pl.Expr:
    """Year of birth from the NIR (characters 2-3; the century giving an age under 100 in
    ``year``), null when not digits."""
    yy = pl.col("nir").str.slice(1, 2).cast(pl.Int32, strict=False)
    return pl.when(yy + 2000 <= year).then(yy + 2000).otherwise(yy + 1900)


def under_age(p: YearParams) -> pl.Expr:
    """Below the account-opening age at the end of year N (L5151-2: 16, 15 with an
    apprenticeship contract in N; Decision ``min_age_reference`` = end_of_year), on the
    persons' ``nir`` and ``apprentice``; false when the NIR gives no year."""
    age = p.year - birth_year_from_nir(p.year)
    floor = pl.when(pl.col("apprentice").fill_null(False)).then(p.min_age_apprentice) \
        .otherwise(p.min_age)
    return (age < floor).fill_null(False)


def uncreditable_rows(versions: pl.DataFrame, persons: pl.LazyFrame, keys: pl.DataFrame,
                      ntt_rows: pl.DataFrame, p: YearParams) -> pl.LazyFrame:
    """Examined people the run does not credit, with a reason (never silently dropped):
    ntt_only (NTT never linked to a NIR, see ``identity_links``), out_of_scope (every contract of
    the year out of scope), out_of_scope_contract (excluded contract of a credited person),
    too_many_references, negative_worked_time, under_age (``under_age``)."""
    year = p.year
    ntt_only = (ntt_rows.lazy().group_by("ntt")
                .agg(pl.col("siret").unique().sort().str.join(",").alias("detail"))
                .select(pl.lit(None, pl.String).alias("nir"), "ntt",
                        pl.lit("ntt_only").alias("reason"),
                        pl.format("no NIR; establishments {}", "detail").alias("detail")))
    v = (versions.lazy().filter(in_year("decl_month", year))
         .select("cid", "oos_reason").with_columns(of_contract(keys, "pid")))
    in_scope = (v.filter(pl.col("oos_reason").is_null()).select("pid").unique()
                .with_columns(pl.lit(True).alias("_in_scope")))
    oos_rows = (v.filter(pl.col("oos_reason").is_not_null())
                .with_columns(of_contract(keys, "nir"), of_contract(keys, "contract_no"))
                .group_by("pid").agg(pl.col("nir").first(),
                                     pl.col("oos_reason").unique().sort().str.join(","),
                                     pl.col("contract_no").unique().sort().str.join(","))
                .join(in_scope, on="pid", how="left")
                .select("nir", pl.lit(None, pl.String).alias("ntt"),
                        pl.when(pl.col("_in_scope")).then(pl.lit("out_of_scope_contract"))
                        .otherwise(pl.lit("out_of_scope")).alias("reason"),
                        pl.format("{} (contracts {})", "oos_reason", "contract_no")
                        .alias("detail")))
    young = persons.filter(under_age(p)).select(
        "nir", pl.lit(None, pl.String).alias("ntt"), pl.lit("under_age").alias("reason"),
        pl.format("born in {} (NIR): {} at the end of {}; the account opens at {} ({} with an "
                  "apprenticeship contract), L5151-2", birth_year_from_nir(year),
                  pl.lit(year) - birth_year_from_nir(year), pl.lit(year), pl.lit(p.min_age),
                  pl.lit(p.min_age_apprentice)).alias("detail"))
    bad = persons.filter((pl.col("n_references") > K_MAX) | (pl.col("ratio12_num") < 0)).select(
        "nir", pl.lit(None, pl.String).alias("ntt"),
        pl.when(pl.col("n_references") > K_MAX).then(pl.lit("too_many_references"))
        .otherwise(pl.lit("negative_worked_time")).alias("reason"),
        pl.when(pl.col("n_references") > K_MAX)
        .then(pl.format("{} distinct denominators of worked time (monthly references, the "
                        "remuneration route, its absences): more than the {} folded exactly, "
                        "so no ratio is guessed", "n_references", pl.lit(K_MAX)))
        .otherwise(pl.format("ratio12 = {}/{}", pl.col("ratio12_num").cast(pl.String),
                             pl.col("ratio12_den").cast(pl.String))).alias("detail"))
    return (pl.concat([ntt_only, oos_rows, young, bad], how="vertical_relaxed")
            .with_columns(pl.lit(year, pl.Int32).alias("year"))
            .select(list(UNCREDITABLE_SCHEMA)))
