"""Validated lines -> the lake's typed tables (schemas in ``parsers/lake_schema.py``).

Each block occurrence becomes one row (a pivot of its rubriques), joined to its parents'
identity through the ancestor occurrence columns computed in ``parsers.structure``. Only
parsed lines of non-rejected declarations feed the person tables; the declarations table
lists every declaration (rejected ones flagged) and the quarantine every rejected line.
"""

from __future__ import annotations

import polars as pl

from parsers import codes
from parsers.codes import Reason, Scope
from parsers.lake_schema import DEFAULT_BUCKETS, TABLES, person_bucket
from parsers.structure import TABLE_ANCESTORS, Catalog, anc_col
from parsers.validate import Validated
from parsers.values import contract_number, to_cents, to_date, to_hundredths

DECL_ID_SHA_CHARS = 16
DECL_KEYS = ["file_idx", "decl_line"]
# Blocks whose occurrences become table rows.
TABLE_BLOCKS = (codes.ESTABLISHMENT, codes.INDIVIDUAL, codes.CONTRACT, codes.PAY, codes.ACTIVITY,
                codes.WORK_STOPPAGE, codes.CONTRACT_END, codes.SUSPENSION,
                codes.INDIVIDUAL_CHANGE, codes.CONTRACT_CHANGE)
ENVOI_FIELDS = {codes.ENVOI_TEST_FLAG: "test_flag", codes.ENVOI_NORM_VERSION: "norm_version"}
DECL_FIELDS = {
    codes.DECL_NATURE: "nature", codes.DECL_TYPE: "decl_type", codes.DECL_FRACTION: "fraction",
    codes.DECL_ORDER_NO: "order_no", codes.DECL_MONTH: "decl_month_raw",
    codes.DECL_REPLACED_ID: "replaced_id", codes.DECL_CONSTITUTION_DATE: "constitution_raw",
}
INDIVIDUAL_FIELDS = {codes.NIR: "nir", "S21.G00.30.002": "last_name", "S21.G00.30.003": "usage_name",
                     "S21.G00.30.004": "first_names", codes.BIRTH_DATE: "birth_date_raw",
                     codes.NTT: "ntt"}
CONTRACT_FIELDS = {
    "S21.G00.40.001": "contract_start", "S21.G00.40.002": "status_conv",
    "S21.G00.40.007": "contract_nature", "S21.G00.40.008": "policy_scheme",
    codes.CONTRACT_NO: "contract_no", "S21.G00.40.010": "planned_end", "S21.G00.40.011": "unit",
    "S21.G00.40.012": "ref_quota_h", "S21.G00.40.013": "quota_h", "S21.G00.40.014": "modality",
    "S21.G00.40.017": "idcc", "S21.G00.40.026": "employment_status", "S21.G00.40.072": "boeth",
}
PAY_FIELDS = {"S21.G00.51.001": "period_start", "S21.G00.51.002": "period_end",
              codes.PAY_CONTRACT_NO: "contract_no", "S21.G00.51.011": "pay_type",
              "S21.G00.51.012": "hours_h", "S21.G00.51.013": "amount_cents"}
ACTIVITY_FIELDS = {"S21.G00.53.001": "activity_type", "S21.G00.53.002": "measure_h",
                   "S21.G00.53.003": "unit"}
STOPPAGE_FIELDS = {"S21.G00.60.001": "motif", "S21.G00.60.002": "last_worked_day",
                   "S21.G00.60.003": "planned_end", "S21.G00.60.010": "resumption_date"}
END_FIELDS = {"S21.G00.62.001": "end_date", "S21.G00.62.002": "end_reason"}
INDIVIDUAL_CHANGE_FIELDS = {codes.CHANGE_DATE_INDIVIDUAL: "change_date", codes.OLD_NIR: "old_nir",
                            "S21.G00.31.009": "old_last_name", "S21.G00.31.010": "old_first_names",
                            "S21.G00.31.011": "old_birth_date_raw"}
CONTRACT_CHANGE_FIELDS = {
    codes.CHANGE_DATE_CONTRACT: "change_date", "S21.G00.41.006": "old_unit",
    "S21.G00.41.007": "old_quota_h", codes.OLD_SIRET: "old_siret",
    codes.OLD_CONTRACT_NO: "old_contract_no", codes.OLD_CONTRACT_START: "old_contract_start",
    "S21.G00.41.022": "old_ref_quota_h", "S21.G00.41.028": "recalc_depth",
}
SUSPENSION_FIELDS = {"S21.G00.65.001": "motif", "S21.G00.65.002": "start_date",
                     "S21.G00.65.003": "end_date"}


def _conform(df: pl.DataFrame, table: str) -> pl.DataFrame:
    schema = TABLES[table]
    return df.select([
        (pl.col(c) if c in df.columns else pl.lit(None)).cast(t, strict=False).alias(c)
        for c, t in schema.items()
    ])


def _field_aggs(cat: Catalog, fields: dict[str, str]) -> list[pl.Expr]:
    """First value of each wanted rubrique (one String column per field)."""
    return [pl.col("value").filter(pl.col("rcode") == cat.rcode(r)).first().alias(n)
            for r, n in fields.items()]


def _pivot(values: pl.DataFrame, keys: list[str], fields: dict[str, str], cat: Catalog) -> pl.DataFrame:
    """First value of each wanted rubrique per key, one column per field (all String)."""
    sub = values.filter(pl.col("rcode").is_in(cat.rcodes(fields)))
    return sub.group_by(keys).agg(_field_aggs(cat, fields))


def _occurrences(kept: dict, cat: Catalog, block: str,
                 fields: dict[str, str]) -> pl.DataFrame:
    """``kept``: the kept lines partitioned by block code (``partition_by(as_dict=True)``)."""
    rows = kept.get((cat.bcode(block),), kept[None])
    # The rows are in line order, so each occurrence is a run: ``_o`` is its dense ordinal.
    new_occ = ((pl.col("occ") != pl.col("occ").shift(1))
               | (pl.col("file_idx") != pl.col("file_idx").shift(1))).fill_null(True)
    rows = rows.with_columns((new_occ.cum_sum() - 1).cast(pl.Int64).alias("_o"))
    starts = rows.filter(pl.col("is_new") & ~pl.col("block_rejected")).select(
        "file_idx", "occ", "decl_line", "line_no", *[anc_col(t) for t in TABLE_ANCESTORS], "_o")
    n_occ = int(rows.get_column("_o").max() or 0) + 1 if rows.height else 0
    wanted = {cat.rcode(r): n for r, n in fields.items()}
    values = rows.filter(pl.col("parsed") & pl.col("rcode").is_in(list(wanted))).select(
        "rcode", "_o", "value")
    by_code = values.partition_by("rcode", as_dict=True) if values.height else {}
    columns = []
    for code, name in wanted.items():
        column = pl.Series(name, dtype=pl.String).extend_constant(None, n_occ)
        part = by_code.get((code,))
        if part is not None:  # the first value of the rubrique in each occurrence
            part = part.filter(pl.col("_o").is_first_distinct())
            column = column.scatter(part.get_column("_o"), part.get_column("value"))
        columns.append(column)
    # One field per rubrique: its value in the occurrence of each start row (a pivot
    # without group_by: a scatter by occurrence ordinal, then a gather).
    return starts.with_columns([pl.lit(c).gather(pl.col("_o")).alias(c.name) for c in columns]
                               ).drop("_o")


def build_tables(v: Validated, files: pl.DataFrame,
                 n_buckets: int = DEFAULT_BUCKETS) -> dict[str, pl.DataFrame]:
    """``files``: file_idx, file_sha256, source_file. Returns every table but ``files``."""
    lines = v.lines
    cat = v.catalog
    decl_info = _declarations(v, files)
    # One narrow copy of the kept lines of the blocks the tables use (~a third of the lines).
    kept = lines.lazy().filter(
        pl.col("kept") & pl.col("bcode").is_in([cat.bcode(b) for b in TABLE_BLOCKS])
    ).select("file_idx", "line_no", "occ", "decl_line", "is_new", "bcode", "rcode", "value",
             "parsed", "block_rejected", *[anc_col(t) for t in TABLE_ANCESTORS]).collect()
    empty = kept.clear()
    kept = kept.partition_by("bcode", as_dict=True)
    kept[None] = empty
    ok_decls = decl_info.filter(~pl.col("rejected")).select(
        *DECL_KEYS, "decl_id", "decl_month", "siret", "file_sha256")
    out: dict[str, pl.DataFrame] = {"declarations": _conform(decl_info, "declarations")}

    est = _occurrences(kept, cat, codes.ESTABLISHMENT, {codes.IDCC_ESTABLISHMENT: "idcc"})
    emp = ok_decls.join(decl_info.select(*DECL_KEYS, "siren", "nic"), on=DECL_KEYS).join(
        est.group_by(DECL_KEYS).agg(pl.col("idcc").first()), on=DECL_KEYS, how="left")
    out["employers"] = _conform(emp.rename({"decl_line": "line_no"}), "employers")

    persons = _occurrences(kept, cat, codes.INDIVIDUAL, INDIVIDUAL_FIELDS).join(
        ok_decls, on=DECL_KEYS, how="inner")
    persons = persons.with_columns(
        pl.col("occ").alias("person_occ"),
        pl.col("birth_date_raw").pipe(to_date).alias("birth_date"),
    )
    person_keys = persons.select("file_idx", "person_occ", "nir", "ntt")
    out["individuals"] = _conform(persons.with_columns(person_bucket(n_buckets)), "individuals")

    def person_rows(block: str, fields: dict[str, str]) -> pl.DataFrame:
        occ = _occurrences(kept, cat, block, fields).join(ok_decls, on=DECL_KEYS, how="inner")
        occ = occ.join(person_keys, left_on=["file_idx", anc_col(codes.INDIVIDUAL)],
                       right_on=["file_idx", "person_occ"], how="left")
        return occ.with_columns(pl.col(anc_col(codes.INDIVIDUAL)).alias("person_occ"),
                                person_bucket(n_buckets))

    contracts = person_rows(codes.CONTRACT, CONTRACT_FIELDS).with_columns(
        pl.col("occ").alias("contract_occ"),
        to_date(pl.col("contract_start")), to_date(pl.col("planned_end")),
        to_hundredths(pl.col("ref_quota_h")), to_hundredths(pl.col("quota_h")),
        contract_number(pl.col("contract_no")),
    )
    out["contracts"] = _conform(contracts, "contracts")

    pay = person_rows(codes.PAY, PAY_FIELDS).with_columns(
        pl.col("occ").alias("pay_occ"),
        to_date(pl.col("period_start")), to_date(pl.col("period_end")),
        contract_number(pl.col("contract_no")),
        to_hundredths(pl.col("hours_h")), to_cents(pl.col("amount_cents")),
    )
    out["pay"] = _conform(pay, "pay")

    pay_parent = pay.select("file_idx", pl.col("pay_occ").alias(anc_col(codes.PAY)), "period_start",
                            "period_end", "contract_no", "pay_type")
    acts = person_rows(codes.ACTIVITY, ACTIVITY_FIELDS).join(
        pay_parent, on=["file_idx", anc_col(codes.PAY)], how="left").with_columns(
        pl.col(anc_col(codes.PAY)).alias("pay_occ"), to_hundredths(pl.col("measure_h")))
    out["activities"] = _conform(acts, "activities")

    contract_parent = contracts.select(
        "file_idx", pl.col("contract_occ").alias(anc_col(codes.CONTRACT)), "contract_no",
        "contract_start")

    def contract_child(block: str, fields: dict[str, str], dates: list[str]) -> pl.DataFrame:
        rows = person_rows(block, fields).join(contract_parent, on=["file_idx", anc_col(codes.CONTRACT)],
                                               how="left")
        return rows.with_columns(pl.col(anc_col(codes.CONTRACT)).alias("contract_occ"),
                                 *[to_date(pl.col(d)) for d in dates])

    out["work_stoppages"] = _conform(contract_child(
        codes.WORK_STOPPAGE, STOPPAGE_FIELDS, ["last_worked_day", "planned_end", "resumption_date"]),
        "work_stoppages")
    out["contract_ends"] = _conform(contract_child(codes.CONTRACT_END, END_FIELDS, ["end_date"]),
                                    "contract_ends")
    out["suspensions"] = _conform(contract_child(
        codes.SUSPENSION, SUSPENSION_FIELDS, ["start_date", "end_date"]), "suspensions")
    out["individual_changes"] = _conform(person_rows(
        codes.INDIVIDUAL_CHANGE, INDIVIDUAL_CHANGE_FIELDS).with_columns(
        to_date(pl.col("change_date")), pl.col("old_nir").str.strip_chars()), "individual_changes")
    out["contract_changes"] = _conform(contract_child(
        codes.CONTRACT_CHANGE, CONTRACT_CHANGE_FIELDS,
        ["change_date", "old_contract_start", "recalc_depth"]).with_columns(
        pl.col("old_siret").str.strip_chars(), contract_number(pl.col("old_contract_no")),
        to_hundredths(pl.col("old_quota_h")), to_hundredths(pl.col("old_ref_quota_h"))),
        "contract_changes")
    out["quarantine"] = _quarantine(v.issues, decl_info, files)
    return out


def _declarations(v: Validated, files: pl.DataFrame) -> pl.DataFrame:
    lines, cat = v.lines, v.catalog
    wanted = cat.rcodes([*DECL_FIELDS, codes.SIREN, codes.NIC])
    in_decl = lines.lazy().filter(
        pl.col("decl_no").is_not_null()
        & (pl.col("rcode").is_in(wanted)
           | (pl.col("is_new") & (pl.col("bcode") == cat.bcode(codes.INDIVIDUAL)))))
    header = in_decl.group_by("decl_no").agg(
        *_field_aggs(cat, DECL_FIELDS), *_field_aggs(cat, {codes.SIREN: "siren", codes.NIC: "nic"}),
        (pl.col("is_new") & (pl.col("bcode") == cat.bcode(codes.INDIVIDUAL))).sum().cast(pl.Int64)
        .alias("n_individuals")).collect()
    envoi_vals = _pivot(lines.select("seg", "rcode", "value")
                        .filter(pl.col("rcode").is_in(cat.rcodes(ENVOI_FIELDS))), ["seg"],
                        ENVOI_FIELDS, cat)
    decls = (v.decls.join(header, on="decl_no", how="left")
             .join(envoi_vals, on="seg", how="left")
             .join(files, on="file_idx", how="left")
             .with_columns(pl.col("n_individuals").fill_null(0)))
    return decls.with_columns(
        (pl.col("file_sha256").str.slice(0, DECL_ID_SHA_CHARS) + pl.lit("-")
         + pl.col("decl_line").cast(pl.String)).alias("decl_id"),
        pl.col("decl_line").alias("line_no"),
        (pl.col("test_flag") == codes.TEST_ENVOI).fill_null(False).alias("envoi_is_test"),
        to_date(pl.col("decl_month_raw")).alias("decl_month"),
        to_date(pl.col("constitution_raw")).alias("constitution_date"),
        (pl.col("constitution_raw") + pl.col("order_no")).alias("self_id"),
        (pl.col("siren") + pl.col("nic")).alias("siret"),
        pl.col("rejected").fill_null(False),
        pl.col("decl_reason").alias("reject_reason"),
    ).sort(DECL_KEYS)


def _quarantine(issues: pl.DataFrame, decl_info: pl.DataFrame, files: pl.DataFrame) -> pl.DataFrame:
    version_warning = pl.col("version_row") & pl.col("q_scope").is_null()
    lines = issues.with_columns(
        pl.when(version_warning).then(pl.lit(Reason.UNKNOWN_NORM_VERSION)).otherwise(pl.col("w_reason"))
        .alias("w_reason"),
        pl.when(version_warning).then(pl.lit("unknown norm version, validated with ") + pl.col("norm_version"))
        .otherwise(pl.col("w_detail")).alias("w_detail"),
    )
    rows = lines.filter(pl.col("q_scope").is_not_null() | pl.col("w_reason").is_not_null())
    masked = (pl.when(pl.col("malformed"))
              .then(pl.col("raw").str.replace_all(codes.NIR_IN_TEXT_PATTERN, "${1}*"))
              .when(pl.col("rubrique").is_in(list(codes.MASKED_RUBRIQUES)))
              .then(pl.col("value").str.slice(0, codes.MASK_KEEP_CHARS) + pl.lit("*"))
              .otherwise(pl.col("value")))
    rows = rows.select(
        "file_idx", "line_no", "decl_line", "rubrique", masked.alias("value_masked"),
        pl.coalesce("q_reason", "w_reason").alias("reason"),
        pl.coalesce("q_detail", "w_detail").alias("detail"),
        pl.coalesce("q_scope", pl.lit(Scope.WARNING)).alias("scope"),
        "is_cause",
    )
    rows = rows.join(decl_info.select(*DECL_KEYS, "decl_id", "decl_month"), on=DECL_KEYS, how="left")
    rows = rows.join(files, on="file_idx", how="left")
    return _conform(rows.sort("file_idx", "line_no"), "quarantine")
