"""Worked-time ratio per person-year (cpf_rules.md §2), as Polars expressions over lazy frames.

Per contract and month: ``counted / monthly reference`` (R6323-1, Decision "same basis"), summed
over months, contracts, establishments and employers, then / 12; plus the remuneration route
for pay not based on time (Σ 51.013 type 001 / 2 080 × SMIC).

EXACTNESS. The ratio is kept as an exact fraction ``ratio = ratio12_num / (12 × ratio12_den)``
(Int128). Every quantity is an integer in hundredths except two divisions:
- an absence or a presence fallback is ``quotité × days / days_in_month``; we scale every
  contract-month quantity by ``M = lcm(28, 29, 30, 31) = 377 580`` so it stays an integer;
- a forfait-jours month reference ``218/12`` days: the term becomes ``12 × counted / 21 800``.
Each contract-month term is then ``num / den`` with integer num and den; terms are grouped by
den per person (usually one den) and summed with an exact LCM fold (``fractions.sum_fractions``).
No float ever enters an amount; ``worked_ratio`` (Float64) is for display only.

INTEGER KEYS (``contract_keys``). String keys are read once: each run builds a dictionary of its
contracts (``contract_dictionary``: the distinct (nir, siret, contract_no), sorted, numbered
``cid``; persons numbered ``pid`` in NIR order). Every big table is mapped to ``cid`` by ONE
lookup of a 64-bit hash of the key (``contract_key_hashes``), checked against a second,
independently seeded 64-bit hash: a row whose key differs from the dictionary's gets no ``cid``
even when the first hashes collide, and two distinct keys of the run sharing a first hash stop
the run (``KeyHashCollision``) instead of merging; only a collision of both hashes at once (odds
about 2**-128 per pair) could go unseen. Every later join and group-by runs on integers (``cm``
= cid and month packed in one Int64). Declarations are numbered too (``_drank``: version order,
also the order of lineage; ``declaration_ranks``), so lineage first/last are integer aggregates,
mapped back to strings once per person.

Where the engine's inputs come from: ``lake_reads`` (the one place that opens lake files),
``declaration_ranks`` (current declaration versions, per lake state and bucket), ``identity``
(NTT, old NIR and old contract key links). This module is the stage itself: per contract and
month terms, then per person, with its parts in ``contract_attributes`` (a contract's
attributes and end month by month), ``absences``, ``references`` (the monthly reference of a
term), ``explanations`` (per-person columns), ``employments`` and ``uncreditable``; calendar
expressions in ``months``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from pipeline.absences import absence_days, sans_notion_absence_terms
from pipeline.contract_attributes import (FAMILIES, attributes_at, contract_ends,
                                          contract_versions, unit_family, with_contract_end,
                                          with_contract_unit)
from pipeline.contract_keys import (KEY_SHIFT, cm_cid, cm_key, cm_month, contract_dictionary,
                                    contract_key_hashes, contract_link_hashes, dk_key,
                                    of_contract, with_cid)
from pipeline.declaration_ranks import run_declarations, scan_person_table
from pipeline.employments import employments
from pipeline.explanations import contract_month_detail, person_explanations
from pipeline.fractions import sum_fractions
from pipeline.months import M_SCALE, days_in_month, in_year, month_end, month_start, overlap_days
from pipeline.parameters import YearParams
from pipeline.references import label_code, reference_fraction
from pipeline.uncreditable import identity_uncreditable, uncreditable_rows


def paid_time(activities: pl.LazyFrame, p: YearParams) -> pl.LazyFrame:
    """Σ 53.002 (type 01, under 51 type 002) per contract and pay-period month (``cm``), with
    one column per unit family (``paid_hours``/``paid_days``, null when that family has no
    Activité). The period's month is the month of 51.002 (Decision pay_period_attribution);
    signed recall values add up; only periods ending in year N count. An Activité without
    53.003 takes the unit (40.011) of its contract in the same declaration
    (``contract_unit``: ``with_contract_unit``).
    ``decl_min``/``decl_max``: lineage summary (first/last ``_drank``)."""
    act = activities.filter((pl.col("activity_type") == p.worked_activity_type)
                            & (pl.col("pay_type") == p.activity_pay_type)
                            & in_year("period_end", p.year))
    is_time = pl.col("act_family").is_in(["hours", "days"])
    return (
        act.with_columns(pl.coalesce("unit", "contract_unit").alias("unit"),
                         cm_key(month_start("period_end")).alias("cm"))
        .with_columns(unit_family(p).alias("act_family"))
        .filter(pl.col("act_family").is_not_null())
        .select("cm", "_drank", is_time.alias("_time"),
                pl.when(pl.col("act_family") == "hours").then(pl.col("measure_h")).alias("_h"),
                pl.when(pl.col("act_family") == "days").then(pl.col("measure_h")).alias("_d"))
        .group_by("cm")
        .agg(pl.col("_h").sum().alias("paid_hours"), pl.col("_d").sum().alias("paid_days"),
             pl.col("_h").is_not_null().any().alias("has_hours"),
             pl.col("_d").is_not_null().any().alias("has_days"),
             pl.col("_drank").filter("_time").min().alias("decl_min"),
             pl.col("_drank").filter("_time").max().alias("decl_max"),
             # any hour/day line, even one whose measure was quarantined (null)
             pl.col("_time").any().alias("_has_time"))
    )


def split_sans_notion_months(paid: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(time months, sans-notion months) of ``paid_time``: a contract-month whose Activité is
    all in "sans notion" units (53.003 = 31-35, 99 overriding an hour or day contract: a
    vacation, a task) takes the remuneration route that month, as a sans-notion contract does;
    it is neither hours nor a presence month (cpf_rules.md §2.1: 53.003 overrides the unit)."""
    time = pl.col("_has_time")
    return paid.filter(time).drop("_has_time"), paid.filter(~time).select("cm")


def declared_months_without_activity(activities: pl.LazyFrame, versions: pl.DataFrame,
                                     p: YearParams) -> pl.LazyFrame:
    """(contract, declared month) of year N of the contracts that have NO Activité at all in
    year N's declarations (cpf_rules.md §2.1: "only when a contract has no Activité at all"):
    candidates for the presence fallback. An Activité counts whatever its type (01 paid, 02
    unpaid absence) when it declares work: hours, days, or a "sans notion" unit (53.003 = 31-35,
    99: those months take the remuneration route, ``split_sans_notion_months``); a unit-40
    line (calendar days for the social-security ceiling) does not count. A contract with
    Activité in some months gets no presence in the others (a month of ordinary sickness
    without an Activité line was counted as presence)."""
    year_versions = versions.filter(in_year("decl_month", p.year))
    # year N's declarations are a range of ranks (``_drank`` orders by declared month first)
    lo, hi = year_versions.select(pl.col("_drank").min().alias("lo"),
                                  pl.col("_drank").max().alias("hi")).row(0)
    if lo is None:
        return year_versions.select("cm", pl.lit(True).alias("no_activity")).lazy()
    with_act = (activities
                .filter((pl.col("dk") % KEY_SHIFT).is_between(lo, hi)
                        & pl.coalesce("unit", "contract_unit")
                        .is_in([*p.worked_units, *p.sans_notion_units]))
                .select((pl.col("dk") // KEY_SHIFT).alias("cid")).unique())
    return (year_versions.lazy().join(with_act, on="cid", how="anti")
            .select("cm", pl.lit(True).alias("no_activity")))


@dataclass
class WorkedTime:
    persons: pl.LazyFrame  # one row per nir examined (see worked_time docstring)
    uncreditable: pl.LazyFrame  # nir, ntt, reason, detail
    employments: pl.LazyFrame  # who employed whom in year N (``employments``)
    contract_months: pl.DataFrame | None = None  # per contract-month terms (``keep_terms``)
    withheld: pl.DataFrame | None = None  # nir: people not credited (identity conflicts)
    former_nirs: pl.DataFrame | None = None  # old_nir, nir: a former NIR -> the current one


STAGE_SECONDS: dict[str, float] = {}  # wall time of each materialised stage of the last run


STAGE_CPU_SECONDS: dict[str, float] = {}  # CPU time (all threads) of each stage (shared machine)


_cpu_mark = [0.0]


def _timed(name: str, t0: float) -> float:
    t1, c1 = time.perf_counter(), time.process_time()
    STAGE_SECONDS[name] = STAGE_SECONDS.get(name, 0.0) + t1 - t0
    STAGE_CPU_SECONDS[name] = STAGE_CPU_SECONDS.get(name, 0.0) + c1 - _cpu_mark[0]
    _cpu_mark[0] = c1
    return t1


INT64_SAFE = 9 * 10 ** 18  # below 2**63: bound on Σ |terms| for Int64 contract-month arithmetic


CONTRACT_COLS = ["decl_id", "line_no", "decl_month", "siret", "person_occ", "nir", "ntt",
                 "contract_no", "contract_start", "planned_end", "contract_nature", "unit",
                 "ref_quota_h", "quota_h", "employment_status", "boeth", "policy_scheme"]


ACTIVITY_COLS = ["decl_id", "person_occ", "nir", "siret", "contract_no", "period_end",
                 "pay_type", "activity_type", "measure_h", "unit"]


def int_bound(paid: pl.DataFrame, versions: pl.DataFrame, n_rows: int) -> int:
    """Upper bound of Σ |contract-month term numerators| (M-scaled, ×12 for capped
    references, absences ≤ quotité): Int64 is exact below ``INT64_SAFE``."""
    def absmax(df: pl.DataFrame, cols: list[str]) -> int:
        if df.height == 0:
            return 0
        row = df.select(pl.max_horizontal([pl.col(c).abs().max() for c in cols])).item()
        return int(row or 0)
    max_paid = absmax(paid, ["paid_hours", "paid_days"])
    max_quota = absmax(versions, ["quota_h"])
    return 12 * (max_paid + 2 * max_quota) * M_SCALE * 2 * max(1, n_rows)


def worked_time(root_dir: Path | str, year: int, params: YearParams,
                buckets: list[int] | None = None, keep_terms: bool = False) -> WorkedTime:
    """Per person-year worked ratio (exact) and its explanation columns.

    persons columns: nir, ratio12_num, ratio12_den (ratio = ratio12_num / (12·ratio12_den),
    Int128), n_references, worked_ratio (Float64, display), months_counted, paid_hours_h,
    paid_days_h, presence_months, absence_days, absence_credited (Float64, display),
    references (e.g. "h:151.67"), sans_notion_remuneration_cents, smic_reference_cents,
    contracts_count, establishments_count, employers_count, source_decl_ids (lineage summary
    "<n> decl. <first decl_id>..<last decl_id>", version order; the full list for one person is
    ``source_declarations``), boeth, esat (category flags from DSN, ``credits``).

    Cost model: each big table is scanned ONCE (only the needed columns), mapped to integer
    contract ids by a lookup of the key's hash (``with_cid``), and materialised; current
    declarations are resolved once per process (``run_declarations``) and applied by an Enum
    cast of decl_id (``drank_expr``); every later join/group-by is on Int64 keys and contract
    attributes are gathers by cid (``of_contract``); contract-month arithmetic is
    Int64 (Int128 only for the per-person fraction fold, or everywhere if the data could
    overflow Int64); strings are rebuilt once per person at the end.

    ``keep_terms`` also returns ``contract_months``: the contract-month terms the ratio sums
    (one row per contract, month and unit family) for ``cpf explain``; off in campaigns.
    """
    p = params
    STAGE_SECONDS.clear()
    STAGE_CPU_SECONDS.clear()
    t, _cpu_mark[0] = time.perf_counter(), time.process_time()
    run = run_declarations(root_dir, buckets)
    decls, ident = run.decls, run.ident
    links, clinks = ident.links, contract_link_hashes(ident.contract_links)
    t = _timed("current_declarations", t)
    lo = date(year - 1, 12, 1)

    def read(table: str, cols: list[str], with_ord: bool = True) -> pl.LazyFrame:
        extra = ["_drank"] + (["_ord"] if with_ord else [])
        return scan_person_table(root_dir, table, run, buckets, with_ord,
                                 links if links.height else None).select(cols + extra)

    raw = (read("contracts", CONTRACT_COLS).filter(pl.col("decl_month") >= lo)
           .drop("decl_id", "line_no").with_columns(contract_key_hashes()).collect())
    keys = contract_dictionary(raw, clinks)
    ntt_rows = raw.filter(pl.col("nir").is_null() & pl.col("ntt").is_not_null()
                          & in_year("decl_month", year)).select("ntt", "siret")
    contracts = with_cid(raw.lazy().filter(pl.col("nir").is_not_null()), keys, clinks).collect()
    del raw
    t = _timed("scan_contracts", t)
    activities = (with_cid(read("activities", ACTIVITY_COLS + ["decl_month"], with_ord=False)
                           .filter(pl.col("nir").is_not_null() & (pl.col("decl_month") >= lo))
                           .drop("decl_id", "decl_month"), keys, clinks)
                  .with_columns(dk_key().alias("dk")).collect())
    t = _timed("scan_activities", t)
    child = ["decl_id", "line_no", "decl_month", "nir", "siret", "contract_no", "contract_start"]
    stoppages = with_cid(read("work_stoppages", child + ["motif", "last_worked_day",
                                                         "planned_end", "resumption_date"])
                         .filter(pl.col("nir").is_not_null()), keys, clinks)
    suspensions = with_cid(read("suspensions", child + ["motif", "start_date", "end_date"])
                           .filter(pl.col("nir").is_not_null()), keys, clinks)
    ends_raw = with_cid(read("contract_ends", child + ["end_date", "end_reason"],
                             with_ord=False).filter(pl.col("nir").is_not_null()), keys, clinks,
                        drop_remapped=True)

    versions = contract_versions(contracts.lazy(), p).collect()
    t = _timed("contract_versions", t)
    ends = contract_ends(ends_raw, versions, p)
    t = _timed("contract_ends", t)

    # 1. paid time by pay-period month (one row per contract-month, one column per family)
    activities = with_contract_unit(activities, contracts, keys.height)
    paid, sn_months = split_sans_notion_months(paid_time(activities.lazy(), p).collect())
    del contracts
    t = _timed("paid_time", t)
    # 2. presence fallback candidates (declared months without any Activité)
    no_act = declared_months_without_activity(activities.lazy(), versions, p).collect()
    del activities
    t = _timed("presence_candidates", t)
    # 3. absences
    all_abs = absence_days(stoppages, suspensions, ends, keys.height, p).collect()
    absd = all_abs.filter(pl.col("abs_days") > 0).select("cm", "abs_days", "abs_mask")
    # the days of qualifying absence from any of a person's sans-notion contracts, per month
    sn_days = sans_notion_absence_days(absd, versions, keys)
    absd = absd.drop("abs_mask")
    # days of other absences matter only where presence stands for the time worked
    no_act = no_act.join(all_abs.filter(pl.col("other_abs_days") > 0)
                         .select("cm", "other_abs_days"), on="cm", how="left")
    del all_abs
    t = _timed("absences", t)

    bound = int_bound(paid, versions, paid.height + no_act.height + absd.height)
    num_t = pl.Int64 if bound < INT64_SAFE else pl.Int128

    # grid of (contract, month) rows that carry something, with paid time and flags
    grid = (paid.lazy().join(no_act.lazy(), on="cm", how="full", coalesce=True)
            .join(absd.lazy(), on="cm", how="full", coalesce=True))
    cm = (with_contract_end(
            attributes_at(grid, versions.lazy())
            .filter(pl.col("oos_reason").is_null()
                    & (pl.col("family").is_in(["hours", "days"])  # a sans-notion contract:
                       | (pl.col("has_hours") | pl.col("has_days")).fill_null(False)))  # 53.003
            .with_columns(cm_cid().alias("cid"), cm_month().alias("month")), ends, keys.height)
          .with_columns(pl.col("no_activity").fill_null(False), pl.col("abs_days").fill_null(0),
                        pl.col("has_hours").fill_null(False), pl.col("has_days").fill_null(False),
                        days_in_month().alias("dim")))
    # presence fallback: days under contract, less the days of absences that are not worked
    # time (a forfait declaring no Activité, on sick leave, is not present)
    presence = pl.max_horizontal(
        pl.lit(0, pl.Int64),
        overlap_days(pl.col("contract_start").fill_null(date(year, 1, 1)),
                     pl.col("contract_end").fill_null(date(year, 12, 31)),
                     pl.col("month"), month_end("month"))
        - pl.col("other_abs_days").fill_null(0))
    cm = cm.with_columns(
        pl.when(pl.col("no_activity"))
        .then(pl.col("quota_h") * presence * (M_SCALE // pl.col("dim")))
        .otherwise(0).cast(pl.Int64).alias("presence_scaled"),
        (pl.col("quota_h") * pl.col("abs_days") * (M_SCALE // pl.col("dim")))
        .cast(pl.Int64).alias("absence_scaled"),
    )  # sans-notion months take the remuneration route (step 4)
    # rows per (contract, month, unit family): the contract's own family (an hour or day
    # contract, always) + each other family an Activité was declared in (53.003 overrides the
    # contract's unit: on an hour or day contract, or on a sans-notion one, whose month then
    # counts that time instead of its remuneration, step 4)
    is_h = pl.col("family") == "hours"
    own = cm.filter(pl.col("family").is_in(["hours", "days"])).with_columns(
        pl.col("family").alias("act_family"),
        pl.when(is_h).then(pl.col("paid_hours")).otherwise(pl.col("paid_days")).fill_null(0)
        .alias("paid_h"), pl.lit(True).alias("own_family"))
    others = [cm.filter((pl.col("family") != fam) & pl.col(f"has_{fam}")).with_columns(
        pl.lit(fam).cast(FAMILIES).alias("act_family"),
        pl.col(f"paid_{fam}").fill_null(0).alias("paid_h"), pl.lit(False).alias("own_family"))
        for fam in ("hours", "days")]
    cmf = pl.concat([own, *others])
    base = (pl.col("paid_h").cast(num_t) * M_SCALE
            + pl.when(pl.col("own_family")).then(pl.col("presence_scaled")).otherwise(0))
    room = pl.max_horizontal(pl.lit(0, num_t),
                             pl.col("quota_h").cast(num_t) * M_SCALE - pl.col("_base"))
    cmf = cmf.with_columns(base.cast(num_t).alias("_base"))
    # a sans-notion contract's month counted in time (53.003): the person's qualifying absence
    # that month (the days absent from any of their sans-notion contracts) counts once, on the contract
    # with the most time, against the family's legal monthly reference (no quotité), never
    # beyond it less the time their sans-notion contracts declare in that family — 12 x the
    # scaled time, exact (Decision sans_notion_absence_counted); step 4 then skips that
    # person-month's euro route
    sn_time = time_route_absences(cmf, sn_days, keys, p, num_t)
    if sn_time.height:
        cmf = (cmf.join(sn_time.lazy().select("cid", "month", "act_family", "_abs12",
                                              pl.lit(False).alias("own_family"),
                                              pl.col("_sn_days").alias("_carrier_days")),
                        on=["cid", "month", "act_family", "own_family"], how="left")
               .with_columns(pl.col("_abs12").fill_null(0).cast(num_t),
                             pl.coalesce("_carrier_days", "abs_days").alias("abs_days"))
               .drop("_carrier_days"))
    else:
        cmf = cmf.with_columns(pl.lit(0, num_t).alias("_abs12"))
    cmf = (cmf.with_columns(pl.when(pl.col("own_family"))
                            .then(pl.min_horizontal(pl.col("absence_scaled").cast(num_t), room))
                            .otherwise(pl.col("_abs12") // 12).cast(num_t)
                            .alias("absence_credited_scaled"),
                            (pl.col("_abs12") % 12).alias("_frac12"))  # the rest, in the term
           .with_columns((pl.col("_base") + pl.col("absence_credited_scaled"))
                         .alias("counted_scaled")))
    cmf = (cmf.with_columns(*reference_fraction(p, num_t))
           .with_columns(of_contract(keys, "pid"))
           .select(*(["cid", "month", pl.col("other_abs_days").fill_null(0)] if keep_terms
                     else []),
                   "pid", pl.col("month").dt.month().cast(pl.Int8).alias("month_no"),
                   (pl.col("act_family") == "hours").alias("is_hours"), "own_family", "paid_h",
                   "presence_scaled", "abs_days", "absence_credited_scaled", "counted_scaled",
                   "term_num", "term_den", label_code().alias("_lcode"), "decl_min", "decl_max")
           .collect())
    t = _timed("contract_month_terms", t)
    terms_detail = None
    if keep_terms:
        terms_detail = contract_month_detail(cmf, keys, p)
        cmf = cmf.drop("cid", "month", "other_abs_days")

    # 4. sans-notion: remuneration route (only people with a sans-notion contract version can
    # have a sans-notion month: pay is pre-filtered on them)
    sn_cids = pl.concat([versions.filter(pl.col("family") == "sans_notion").select("cid"),
                         sn_months.select(cm_cid().alias("cid"))]).unique()
    sn_nirs = keys.join(sn_cids, on="cid", how="semi")["nir"].unique()
    rem_sn = pl.DataFrame(schema={"pid": pl.Int64, "amount_cents": pl.Int64,
                                  "decl_min": pl.Int64, "decl_max": pl.Int64})
    sn_abs = pl.DataFrame(schema={"pid": pl.Int64, "abs_days": pl.Int64, "num": pl.Int64,
                                  "den": pl.Int64})
    if sn_nirs.len():
        rem = with_cid(read("pay", ["decl_id", "decl_month", "nir", "siret", "contract_no",
                                    "pay_type", "period_end", "amount_cents"], with_ord=False)
                       .filter((pl.col("pay_type") == p.remuneration_pay_type)
                               & in_year("period_end", year))
                       .filter(pl.col("nir").is_in(sn_nirs.implode())), keys, clinks)
        rem_attr = attributes_at(
            rem.group_by(cm_key(month_start("period_end")).alias("cm")).agg(
                pl.col("amount_cents").sum(), pl.col("_drank").min().alias("decl_min"),
                pl.col("_drank").max().alias("decl_max")).collect(), versions.lazy())
        # a sans-notion contract's month whose Activité declares time counts that time instead
        on_route = ((((pl.col("family") == "sans_notion")
                      & ~pl.col("cm").is_in(paid["cm"].implode()))
                     | pl.col("cm").is_in(sn_months["cm"].implode()))
                    & pl.col("oos_reason").is_null())
        rem_route = rem_attr.filter(on_route).collect()
        # qualifying absences on contracts paid without time basis count in full too
        # (L6323-12), per person and month against 2080/12 x SMIC less that month's pay on
        # such contracts: the person-months the time route did not take (step 3)
        sn_pay = (rem_attr.filter((pl.col("family") == "sans_notion")
                                  & pl.col("oos_reason").is_null()
                                  & ~pl.col("cm").is_in(paid["cm"].implode()))
                  .with_columns(cm_cid().alias("cid"), cm_month().alias("month"))
                  .with_columns(of_contract(keys, "pid")).select("pid", "month", "amount_cents"))
        sn_abs = sans_notion_absence_terms(
            sn_days.lazy().join(sn_time.lazy().select("pid", "month"), on=["pid", "month"],
                                how="anti").select("pid", "month",
                                                   pl.col("_sn_days").alias("abs_days")),
            sn_pay, p).collect()
        rem_sn = (rem_route.lazy()
                  .with_columns(cm_cid().alias("cid"))
                  .with_columns(of_contract(keys, "pid"))
                  .group_by("pid").agg(pl.col("amount_cents").sum(),
                                       pl.col("decl_min").min(), pl.col("decl_max").max())
                  .collect())
    t = _timed("sans_notion_pay", t)
    smic_x12 = p.smic_reference_cents_x12
    terms = pl.concat([
        cmf.lazy().group_by("pid", pl.col("term_den").alias("den"))
        .agg(pl.col("term_num").sum().cast(pl.Int128).alias("num")),
        rem_sn.lazy().select("pid", pl.lit(smic_x12, pl.Int64).alias("den"),
                             (pl.col("amount_cents").cast(pl.Int128) * 144).alias("num")),
        sn_abs.lazy().select("pid", "den", pl.col("num").cast(pl.Int128)),
    ])
    fractions = sum_fractions(terms, key="pid").collect()
    t = _timed("sum_fractions", t)

    persons = (person_explanations(cmf, rem_sn, sn_abs, fractions, versions, keys, decls,
                                    p)
               .with_columns(pl.col("boeth", "esat", "apprentice").fill_null(False))
               .select(pl.exclude("boeth", "esat", "apprentice"), "boeth", "esat", "apprentice")
               .sort("pid").drop("pid"))
    persons = persons.collect().lazy()
    t = _timed("persons", t)

    # 6. what is examined but cannot be credited
    unc = pl.concat([uncreditable_rows(versions, persons, keys, ntt_rows, p),
                     identity_uncreditable(persons, ident, year)])
    return WorkedTime(persons=persons, uncreditable=unc,
                      employments=employments(versions, keys, ends, year),
                      contract_months=terms_detail, withheld=ident.conflicts.select("nir"),
                      former_nirs=ident.nir_pairs())


def sans_notion_absence_days(absd: pl.DataFrame, versions: pl.DataFrame,
                             keys: pl.DataFrame) -> pl.DataFrame:
    """(pid, month, _sn_days): the days of qualifying absence from any of a person's contracts
    paid without time basis (units 31-35, 99) in each month — the union of their days
    (``absd.abs_mask``), so the person's absence counts once however many such jobs declare
    it, and two jobs absent on different days count both (Decision
    sans_notion_absence_counted)."""
    sn = versions.filter((pl.col("family") == "sans_notion") & pl.col("oos_reason").is_null())
    rows = absd.filter(cm_cid().is_in(sn["cid"].unique().implode()))
    if rows.height == 0:
        return pl.DataFrame(schema={"pid": pl.Int64, "month": pl.Date, "_sn_days": pl.Int64})
    return (attributes_at(rows, versions.lazy())
            .filter((pl.col("family") == "sans_notion") & pl.col("oos_reason").is_null())
            .with_columns(cm_cid().alias("cid"), cm_month().alias("month"))
            .with_columns(of_contract(keys, "pid"))
            .group_by("pid", "month")
            .agg(pl.col("abs_mask").bitwise_or().bitwise_count_ones().cast(pl.Int64)
                 .alias("_sn_days"))
            .collect())


def time_route_absences(cmf: pl.LazyFrame, sn_days: pl.DataFrame, keys: pl.DataFrame,
                        p: YearParams, num_t: pl.DataType) -> pl.DataFrame:
    """The person-months whose sans-notion contracts declare time (53.003: the time route)
    while the person is on a qualifying absence: (pid, month, cid, act_family, _sn_days,
    _abs12) on ONE carrier row (the contract with the most time of that family, then the
    smallest cid), _abs12 = 12 x the scaled absence credited = min(legal x days x M/dim,
    max(0, legal x M - 12 x the time of the person's sans-notion rows of that family))."""
    none = pl.DataFrame(schema={"pid": pl.Int64, "month": pl.Date, "cid": pl.Int64,
                                "act_family": FAMILIES, "_sn_days": pl.Int64, "_abs12": num_t})
    if not p.sans_notion_absence_counted or sn_days.height == 0:
        return none
    legal = pl.when(pl.col("act_family") == "hours").then(pl.lit(p.legal_annual_hours_h)) \
        .otherwise(pl.lit(p.forfait_max_days_h)).cast(num_t)
    rows = (cmf.filter(~pl.col("own_family") & (pl.col("family") == "sans_notion"))
            .select("cid", "month", "act_family", "_base", "dim")
            .with_columns(of_contract(keys, "pid"))
            .join(sn_days.lazy(), on=["pid", "month"], how="inner")
            .with_columns(pl.col("_base").sum().over("pid", "month", "act_family")
                          .alias("_family_time"))
            .collect())
    if rows.height == 0:
        return none
    carrier = (rows.sort(["pid", "month", "_base", "cid"], descending=[False, False, True, False])
               .unique(["pid", "month"], keep="first", maintain_order=True))
    return carrier.with_columns(pl.min_horizontal(
        legal * pl.col("_sn_days") * (M_SCALE // pl.col("dim")),
        pl.max_horizontal(pl.lit(0, num_t), legal * M_SCALE - 12 * pl.col("_family_time")))
        .cast(num_t).alias("_abs12"))
