"""The explanation columns kept with each person's result (months, hours, absences, references,
category flags, lineage), so ``cpf explain`` and auditors show the derivation without
recomputing; and the full lineage of one person.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from pipeline.absences import absence_period, cancel_motif, qualifying_motifs
from pipeline.contract_keys import CONTRACT_KEY, of_contract
from pipeline.declaration_ranks import RunDeclarations, run_declarations, scan_person_table
from pipeline.lake_reads import nir_buckets, scan_table
from pipeline.months import M_SCALE, in_year, month_bit
from pipeline.parameters import YearParams
from pipeline.references import label_table


def _hundredths(scaled: str, alias: str) -> pl.Expr:
    """A non-negative quantity held ×M_SCALE, to the nearest hundredth of an hour or day (half
    up): explain shows the columns of one row rounded alike, so that they add up to the cent
    of an hour (a truncated column did not: 40.00 + 69.11 shown for 109.12)."""
    return ((pl.col(scaled) + M_SCALE // 2) // M_SCALE).alias(alias)


def contract_month_detail(cmf: pl.DataFrame, keys: pl.DataFrame, p: YearParams) -> pl.DataFrame:
    """The contract-month terms with their contract identity and readable quantities (hours or
    days in hundredths, reference label): what ``cpf explain`` shows row by row."""
    lab = label_table(cmf.select(pl.col("_lcode").unique()), p)
    return (cmf.join(keys.select("cid", *CONTRACT_KEY), on="cid", how="left")
            .join(lab, on="_lcode", how="left")
            .select(*CONTRACT_KEY, "month",
                    pl.when(pl.col("is_hours")).then(pl.lit("hours")).otherwise(pl.lit("days"))
                    .alias("family"), "own_family", "paid_h",
                    _hundredths("presence_scaled", "presence_h"),
                    "abs_days", "other_abs_days",
                    _hundredths("absence_credited_scaled", "absence_credited_h"),
                    _hundredths("counted_scaled", "counted_h"), "term_num", "term_den",
                    "ref_label")
            .sort(*CONTRACT_KEY, "month", "family"))


def category_flags(p: YearParams) -> list[pl.Expr]:
    """Per person aggregations over the in-scope contract versions of year N
    (``person_explanations``): boeth (40.072 present), esat (40.007 = 70) — cpf_rules.md
    §2.1, §3."""
    return [pl.col("boeth").is_not_null().any().alias("boeth"),
            (pl.col("contract_nature") == p.esat_contract_nature).any().alias("esat"),
            pl.col("policy_scheme").is_in(list(p.apprentice_policy_schemes)).any()
            .alias("apprentice")]


def person_explanations(cmf: pl.DataFrame, rem_sn: pl.DataFrame, sn_abs: pl.DataFrame,
                        fractions: pl.DataFrame, versions: pl.DataFrame, keys: pl.DataFrame,
                        decls: pl.DataFrame, p: YearParams) -> pl.LazyFrame:
    """One row per examined person: the exact fraction and the explanation columns. Counts
    and lineage bounds are integer aggregates on ``pid``; strings (nir, references,
    source_decl_ids) are built once per person (labels once per distinct reference)."""
    cmf_l = cmf.lazy()
    is_h = pl.col("is_hours")
    # row expressions first, then plain aggregations: Polars evaluates an expression inside
    # ``agg`` group by group (when/then and lookups there cost 2-4x more, measured)
    expl_cm = (cmf_l.select(
        "pid",
        # months of year N with counted time: a 12-bit set (bitwise or), then its popcount
        pl.when(pl.col("counted_scaled") > 0).then(month_bit(pl.col("month_no"))).otherwise(0)
        .alias("_months"),
        pl.when(is_h).then(pl.col("paid_h")).otherwise(0).alias("paid_hours_h"),
        pl.when(is_h).then(0).otherwise(pl.col("paid_h")).alias("paid_days_h"),
        (pl.col("presence_scaled") > 0).cast(pl.Int64).alias("presence_months"),
        # (a sans-notion month counted in time: the person's absence, on its carrier row)
        pl.when(pl.col("own_family") | (pl.col("absence_credited_scaled") > 0))
        .then(pl.col("abs_days")).otherwise(0).alias("absence_days"),
        pl.col("absence_credited_scaled").cast(pl.Int128).alias("_abs_cred"),
        pl.col("decl_min").alias("_cm_min"), pl.col("decl_max").alias("_cm_max"),
        pl.col("_lcode").alias("_lmin"), pl.col("_lcode").alias("_lmax"))
        .group_by("pid").agg(
            pl.col("_months").bitwise_or(),
            pl.col("paid_hours_h", "paid_days_h", "presence_months", "absence_days",
                   "_abs_cred").sum(),
            pl.col("_cm_min", "_lmin").min(), pl.col("_cm_max", "_lmax").max())
        .with_columns(pl.col("_months").bitwise_count_ones().cast(pl.Int64)
                      .alias("months_counted")).drop("_months").collect())
    # reference labels: formatted once per distinct code; only people with several codes
    # (several references) go through a per-person string join
    lab = label_table(cmf.select(pl.col("_lcode").unique()), p)
    multi = (expl_cm.lazy().filter(pl.col("_lmin") != pl.col("_lmax")).select("pid")
             .join(cmf_l.select("pid", "_lcode"), on="pid", how="inner")
             .join(lab.lazy(), on="_lcode", how="left")
             .group_by("pid").agg(pl.col("ref_label").unique().sort().str.join(" ")
                                  .alias("_multi")))
    expl_cm = (expl_cm.lazy().join(lab.lazy().rename({"_lcode": "_lmin"}), on="_lmin",
                                   how="left")
               .join(multi, on="pid", how="left")
               .with_columns(pl.coalesce("_multi", "ref_label").alias("references"))
               .drop("_lmin", "_lmax", "_multi", "ref_label"))
    smic_x12 = p.smic_reference_cents_x12
    expl_sn = rem_sn.lazy().select("pid",
                                   pl.col("amount_cents").alias("sans_notion_remuneration_cents"),
                                   pl.col("decl_min").alias("_sn_min"),
                                   pl.col("decl_max").alias("_sn_max"))
    # qualifying absences on the remuneration route: days, and euros (exact value, display)
    expl_sn_abs = (sn_abs.lazy().group_by("pid").agg(
        pl.col("abs_days").sum().alias("sans_notion_absence_days"),
        (pl.col("num").cast(pl.Float64) / pl.col("den") * smic_x12 / 144 / 100).sum()
        .round(2).alias("sans_notion_absence_credited")))
    # contracts of the year in scope: counts, lineage bounds and category flags in ONE
    # aggregation per person
    expl_c = (versions.lazy().filter(pl.col("oos_reason").is_null()
                                     & in_year("decl_month", p.year))
              .select("cid", "_drank", "boeth", "contract_nature", "policy_scheme")
              .with_columns(*[of_contract(keys, c) for c in ("pid", "siret_code", "siren_code")])
              .group_by("pid").agg(
                  pl.col("cid").n_unique().cast(pl.Int64).alias("contracts_count"),
                  pl.col("siret_code").n_unique().cast(pl.Int64).alias("establishments_count"),
                  pl.col("siren_code").n_unique().cast(pl.Int64).alias("employers_count"),
                  pl.col("_drank").min().alias("_c_min"), pl.col("_drank").max().alias("_c_max"),
                  pl.col("_drank").n_unique().cast(pl.Int64).alias("_n_decls"),
                  *category_flags(p)))
    examined = pl.concat([expl_c.select("pid"), expl_cm.select("pid"),
                          expl_sn.select("pid"), expl_sn_abs.select("pid")]).unique()
    src_min = pl.min_horizontal("_c_min", "_cm_min", "_sn_min")
    src_max = pl.max_horizontal("_c_max", "_cm_max", "_sn_max")
    decl_id_of = lambda c: pl.lit(decls["decl_id"]).gather(pl.col(c))  # noqa: E731
    return (
        examined.join(fractions.lazy(), on="pid", how="left")
        .join(expl_cm, on="pid", how="left")
        .join(expl_sn, on="pid", how="left").join(expl_sn_abs, on="pid", how="left")
        .join(expl_c, on="pid", how="left")
        .join(keys.lazy().filter(pl.col("pid") != pl.col("pid").shift(1).fill_null(-1))
              .select("pid", "nir"), on="pid", how="left")
        .with_columns(src_min.alias("_src_min"), src_max.alias("_src_max"))
        .with_columns(decl_id_of("_src_min").alias("_id_min"),  # decls row i is _drank i
                      decl_id_of("_src_max").alias("_id_max"))
        .with_columns(
            pl.col("frac_num").fill_null(pl.when(pl.col("n_dens").is_null()).then(0)),
            pl.col("frac_den").fill_null(pl.when(pl.col("n_dens").is_null()).then(1)),
            pl.col("n_dens").fill_null(0),
            pl.when(pl.col("_id_min").is_not_null())
            .then(pl.format("{} decl. {}..{}", pl.col("_n_decls").fill_null(0), "_id_min",
                            "_id_max"))
            .alias("source_decl_ids"),
            (pl.col("_abs_cred").cast(pl.Float64) / M_SCALE / 100).alias("absence_credited"),
        )
        .drop("_c_min", "_c_max", "_cm_min", "_cm_max", "_sn_min", "_sn_max", "_n_decls",
              "_src_min", "_src_max", "_id_min", "_id_max", "_abs_cred")
        .rename({"frac_num": "ratio12_num", "frac_den": "ratio12_den", "n_dens": "n_references"})
        .with_columns(
            (pl.col("ratio12_num").cast(pl.Float64)
             / (pl.col("ratio12_den").cast(pl.Float64) * 12)).alias("worked_ratio"),
            pl.lit(smic_x12 // 12 if smic_x12 % 12 == 0 else smic_x12 / 12)
            .cast(pl.Float64).alias("smic_reference_cents"),
            *[pl.col(c).fill_null(0) for c in ("months_counted", "paid_hours_h", "paid_days_h",
                                                "presence_months", "absence_days",
                                                "sans_notion_remuneration_cents",
                                                "sans_notion_absence_days",
                                                "contracts_count", "establishments_count",
                                                "employers_count")],
            pl.col("absence_credited", "sans_notion_absence_credited").fill_null(0.0),
            pl.col("references").fill_null(""), pl.col("source_decl_ids").fill_null(""),
        )
    )


def _person_run(root_dir: Path | str, nir: str) -> tuple[int, RunDeclarations]:
    """ONE person's lake bucket and the current declarations a run of it reads (with the
    identity links that bring rows from other buckets): what ``cpf explain`` reads."""
    bucket = nir_buckets(root_dir, pl.Series([nir]))["bucket"].item()
    return bucket, run_declarations(root_dir, [bucket])


def source_declarations(root_dir: Path | str, nir: str, year: int) -> pl.DataFrame:
    """Full lineage for ONE person (``cpf explain``): every current declaration of year N
    (and of the months whose recalls count for N) in which the person has a contract,
    activity or pay row (also under an NTT linked to the NIR), with the table it was seen in.
    Reads that NIR's bucket only (and the buckets its identity links point to)."""
    bucket, run = _person_run(root_dir, nir)
    links = run.ident.links
    frames = []
    for table in ("contracts", "activities", "pay", "work_stoppages", "suspensions",
                  "contract_ends"):
        frames.append(scan_person_table(root_dir, table, run, [bucket], with_ord=False,
                                        links=links)
                      .filter(pl.col("nir") == nir)
                      .filter((pl.col("decl_month") >= date(year - 1, 12, 1))
                              & (pl.col("decl_month") <= date(year + 1, 12, 1)))
                      .select("decl_id", "decl_month", "siret", pl.lit(table).alias("table")))
    return (pl.concat(frames).unique().sort("decl_month", "decl_id", "table").collect())


def person_absences(root_dir: Path | str, nir: str, year: int, p: YearParams) -> pl.DataFrame:
    """Every arrêt (60) and suspension (65) of ONE person that meets year N, as declared in
    the current declarations from December N-1 on (``cpf explain``): motif, whether L6323-12
    counts it, the period the latest declaration gives (cpf_rules.md §2.2: from the day after
    60.002 to the day before 60.010, else to 60.003; 65.002-65.003), the months that repeat
    it, its latest line, and an annulation (60.001 = 99, 65.001 = 998) declared after it. An
    auditor reads here which absence the contract-months' absence days come from."""
    bucket, run = _person_run(root_dir, nir)
    lo, hi = date(year, 1, 1), date(year, 12, 31)
    frames = []
    for table, block, key in (("work_stoppages", "60", "last_worked_day"),
                              ("suspensions", "65", "start_date")):
        start, end = absence_period(table)
        counted, cancel = qualifying_motifs(table, p), cancel_motif(table, p)
        rows = (scan_person_table(root_dir, table, run, [bucket], links=run.ident.links)
                .filter((pl.col("nir") == nir) & (pl.col("decl_month") >= date(year - 1, 12, 1)))
                .select("siret", "contract_no", "motif", pl.col(key).alias("_key"),
                        start.alias("start"), end.alias("end"), "decl_month", "decl_id",
                        "line_no", "_drank", "_ord")
                .collect())
        cancels = (rows.filter(pl.col("motif") == cancel)
                   .group_by("siret", "contract_no", "_key")
                   .agg(pl.col("_drank").max().alias("_cancel_rank"),
                        pl.col("decl_month").max().alias("cancelled_in")))
        frames.append(
            rows.filter(pl.col("motif") != cancel)
            .sort("_ord")
            .group_by("siret", "contract_no", "motif", "_key", maintain_order=True)
            .agg(pl.col("start", "end", "decl_id", "line_no").last(),
                 pl.col("_drank").max().alias("_last_rank"),
                 pl.col("decl_month").unique().sort().alias("declared_in"))
            .join(cancels, on=["siret", "contract_no", "_key"], how="left", nulls_equal=True)
            .select(pl.lit(block).alias("block"), "siret", "contract_no", "motif",
                    pl.col("motif").is_in(list(counted)).alias("counted"), "start", "end",
                    "declared_in", "decl_id", "line_no",
                    pl.when(pl.col("_cancel_rank") > pl.col("_last_rank"))
                    .then(pl.col("cancelled_in")).alias("cancelled_in")))
    return (pl.concat(frames)
            .filter((pl.col("start") <= hi) & (pl.col("end").fill_null(hi) >= lo))
            .sort("siret", "contract_no", "start", "block", "motif"))


def person_recalls(root_dir: Path | str, nir: str, year: int, p: YearParams) -> pl.DataFrame:
    """The worked time (53.002 type 01 under a 51 type 002) of ONE person that a DSN declares
    for a pay period of year N ending in another month than its own: pay recalls (rappels)
    and pay shifted by a month, which the engine adds to the period's month (cpf_rules.md
    §2.1), so a month of ``cpf explain`` may show more than that month's DSN declares."""
    bucket, run = _person_run(root_dir, nir)
    period = pl.col("period_end").dt.truncate("1mo")
    return (scan_person_table(root_dir, "activities", run, [bucket], with_ord=False,
                              links=run.ident.links)
            .filter((pl.col("nir") == nir) & (pl.col("activity_type") == p.worked_activity_type)
                    & (pl.col("pay_type") == p.activity_pay_type)
                    & in_year("period_end", year) & (period != pl.col("decl_month")))
            .group_by("siret", "contract_no", period.alias("period_month"), "decl_month",
                      "decl_id", "unit")
            .agg(pl.col("measure_h").sum(), pl.col("line_no").min())
            .sort("siret", "contract_no", "period_month", "decl_month", "line_no")
            .collect())


def person_set_aside(root_dir: Path | str, nir: str, year: int) -> pl.DataFrame:
    """The quarantine rows inside ONE person's Individu blocks (from their S21.G00.30 line to
    the next person's) of the CURRENT declarations of year N (December N-1 on; a replaced or
    rejected declaration's lines were never used): what of their input was set aside and
    why; the quarantine view has no NIR (a malformed line may be the NIR)."""
    bucket, run = _person_run(root_dir, nir)
    lo = date(year - 1, 12, 1)
    mine = (scan_person_table(root_dir, "individuals", run, [bucket], with_ord=False,
                              links=run.ident.links)
            .filter((pl.col("nir") == nir) & (pl.col("decl_month") >= lo))
            .select("decl_id", "decl_month", pl.col("line_no").alias("first")).collect())
    if mine.height == 0:
        return pl.DataFrame(schema={"decl_id": pl.String, "line_no": pl.Int64,
                                    "rubrique": pl.String, "reason": pl.String,
                                    "detail": pl.String, "scope": pl.String,
                                    "decl_month": pl.Date, "source_file": pl.String})
    # those declarations only (their months: Parquet statistics skip the other parts)
    theirs = (pl.col("decl_month").is_in(mine["decl_month"].unique().implode())
              & pl.col("decl_id").is_in(mine["decl_id"].unique().implode()))
    mine = mine.drop("decl_month")
    # every person block of those declarations (any bucket): where the next one starts
    starts = (scan_table(root_dir, "individuals").filter(theirs)
              .select("decl_id", "line_no").unique().collect())
    blocks = (mine.join(starts.rename({"line_no": "_next"}), on="decl_id", how="left")
              .filter(pl.col("_next") > pl.col("first"))
              .group_by("decl_id", "first").agg(pl.col("_next").min())
              .join(mine, on=["decl_id", "first"], how="right"))
    q = (scan_table(root_dir, "quarantine").filter(theirs)
         .select("decl_id", "line_no", "rubrique", "reason", "detail", "scope", "decl_month",
                 "source_file").collect())
    return (q.join(blocks, on="decl_id", how="inner")
            .filter((pl.col("line_no") >= pl.col("first"))
                    & (pl.col("line_no") < pl.col("_next").fill_null(2**62)))
            .drop("first", "_next").unique().sort("decl_month", "decl_id", "line_no"))
