"""Exact fraction arithmetic (``worked_time``, EXACTNESS): Σ num/den per person with integer
numerators and denominators; several references are folded with their LCM, never a float."""

from __future__ import annotations

import polars as pl

K_MAX = 6  # distinct references per person folded exactly (beyond: reported, not guessed)
GCD_STEPS = 64  # Euclid steps; enough for a divisor < 2**62 (Lamé: ~1.44 log2)


def _gcd_steps(lf: pl.LazyFrame, a: str, b: str, out: str) -> pl.LazyFrame:
    """gcd(a, b) for non-negative Int128 columns, by a fixed number of vectorised Euclid steps
    (b < 2**62 so GCD_STEPS always suffice)."""
    lf = lf.with_columns(pl.col(a).alias("_ga"), pl.col(b).alias("_gb"))
    for _ in range(GCD_STEPS):
        lf = lf.with_columns(
            pl.when(pl.col("_gb") != 0).then(pl.col("_gb")).otherwise(pl.col("_ga")).alias("_ga"),
            pl.when(pl.col("_gb") != 0).then(pl.col("_ga") % pl.col("_gb"))
            .otherwise(pl.lit(0, pl.Int128)).alias("_gb"))
    return lf.rename({"_ga": out}).drop("_gb")


def sum_fractions(terms: pl.DataFrame | pl.LazyFrame, key: str = "nir") -> pl.LazyFrame:
    """Exact Σ num/den per key -> (key, frac_num Int128, frac_den Int128, n_dens).

    Terms sharing a denominator are summed as integers; distinct denominators (several
    references) are folded with their LCM, so the result is exact. Keys with more than K_MAX
    distinct denominators get null (reported as uncreditable, never approximated)."""
    g = (terms.lazy().group_by([key, "den"]).agg(pl.col("num").sum().cast(pl.Int128))
         .with_columns(pl.col("den").rank("dense").over(key).cast(pl.Int64).alias("_k"),
                       pl.len().over(key).alias("n_dens"))).collect()
    max_k = int(g["n_dens"].max() or 0)
    g = g.lazy()
    single = (g.filter(pl.col("n_dens") == 1)
              .select(key, pl.col("num").alias("frac_num"),
                      pl.col("den").cast(pl.Int128).alias("frac_den"), "n_dens"))
    multi = g.filter((pl.col("n_dens") > 1) & (pl.col("n_dens") <= K_MAX))
    acc = multi.filter(pl.col("_k") == 1).select(key, "n_dens", pl.col("num").alias("frac_num"),
                                                 pl.col("den").cast(pl.Int128).alias("frac_den"))
    for k in range(2, min(K_MAX, max_k) + 1):  # only as many folds as the data needs
        step = multi.filter(pl.col("_k") == k).select(key, pl.col("num").alias("_n"),
                                                      pl.col("den").cast(pl.Int128).alias("_d"))
        acc = acc.join(step, on=key, how="left").with_columns(
            pl.col("_n").fill_null(0), pl.col("_d").fill_null(1))
        acc = _gcd_steps(acc, "frac_den", "_d", "_g")
        acc = (acc.with_columns((pl.col("frac_den") // pl.col("_g") * pl.col("_d")).alias("_l"))
               .with_columns((pl.col("frac_num") * (pl.col("_l") // pl.col("frac_den"))
                              + pl.col("_n") * (pl.col("_l") // pl.col("_d"))).alias("frac_num"),
                             pl.col("_l").alias("frac_den"))
               .drop("_n", "_d", "_g", "_l"))
    too_many = (g.filter(pl.col("n_dens") > K_MAX).select(key, "n_dens").unique()
                .with_columns(pl.lit(None, pl.Int128).alias("frac_num"),
                              pl.lit(None, pl.Int128).alias("frac_den")))
    cols = [key, "frac_num", "frac_den", "n_dens"]
    return pl.concat([single.select(cols), acc.select(cols), too_many.select(cols)],
                     how="vertical_relaxed")
