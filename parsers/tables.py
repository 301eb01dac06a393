"""Validated lines -> the lake's typed tables (schemas in ``parsers/lake_schema.py``).

Each block occurrence becomes one row (a pivot of its rubriques), joined to its parents'
identity through the ancestor occurrence columns computed in ``parsers.structure``. Only
parsed lines of non-rejected declarations feed the person tables; the declarations table
lists every declaration (rejected ones flagged) and the quarantine every rejected line.

Performance: the pivot is one NumPy pass over the kept lines of all table blocks at once
(``_blocks``): every occurrence gets a dense ordinal, the line of the first parsed value of
each (occurrence, field) is found with one ``minimum.at``, and the tables' columns are two
gathers of the line table, sliced per block. Parents (declaration, individual, pay, contract)
are unique keys, so they are looked up by position (``searchsorted``), not joined: a batch
costs a few dozen Polars calls, whatever its size and the number of tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from parsers import codes
from parsers.codes import Reason, Scope
from parsers.lake_schema import DEFAULT_BUCKETS, TABLES, person_bucket
from parsers.structure import TABLE_ANCESTORS, Catalog, anc_col, nullable
from parsers.records import named_id
from parsers.validate import Validated
from parsers.values import contract_number, to_cents, to_date, to_hundredths

DECL_ID_SHA_CHARS = 16
DECL_KEYS = ["file_idx", "decl_line"]
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
ESTABLISHMENT_FIELDS = {codes.IDCC_ESTABLISHMENT: "idcc"}
# Blocks whose occurrences become table rows, and the rubriques pivoted into their columns.
BLOCK_FIELDS = {
    codes.ESTABLISHMENT: ESTABLISHMENT_FIELDS, codes.INDIVIDUAL: INDIVIDUAL_FIELDS,
    codes.CONTRACT: CONTRACT_FIELDS, codes.PAY: PAY_FIELDS, codes.ACTIVITY: ACTIVITY_FIELDS,
    codes.WORK_STOPPAGE: STOPPAGE_FIELDS, codes.CONTRACT_END: END_FIELDS,
    codes.SUSPENSION: SUSPENSION_FIELDS, codes.INDIVIDUAL_CHANGE: INDIVIDUAL_CHANGE_FIELDS,
    codes.CONTRACT_CHANGE: CONTRACT_CHANGE_FIELDS,
}
FIELD_SLOTS = max(map(len, BLOCK_FIELDS.values()))
# Columns of an occurrence's start line carried into its table row.
START_COLUMNS = ["file_idx", "occ", "decl_line", "decl_no", "line_no",
                 *[anc_col(t) for t in TABLE_ANCESTORS]]


def _conform(df: pl.DataFrame, table: str,
             derived: dict[str, pl.Expr] | None = None) -> pl.DataFrame:
    """``df`` in the table's schema: its columns, or the ``derived`` expressions, cast."""
    schema, derived = TABLES[table], derived or {}
    return df.select([
        (derived[c] if c in derived else pl.col(c) if c in df.columns else pl.lit(None))
        .cast(t, strict=False).alias(c)
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


def _take(values: pl.Series, idx: np.ndarray) -> pl.Series:
    """``values[idx]``, null where ``idx < 0``."""
    ok = idx >= 0
    return values.gather(idx if ok.all() else nullable("idx", np.where(ok, idx, 0), ok))


def _lookup(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Position of each ``wanted`` in the sorted, unique ``keys``; -1 when absent (or
    ``wanted`` is -1): a left join on a unique key, as positions."""
    if not len(keys):
        return np.full(len(wanted), -1, np.int64)
    pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return np.where((wanted >= 0) & (keys[pos] == wanted), pos, -1)


def _with_parents(rows: pl.DataFrame, pos: np.ndarray, parent: pl.DataFrame) -> pl.DataFrame:
    """``rows`` with the ``parent`` columns of the parent rows at ``pos`` (null where -1)."""
    ok = pos >= 0
    if ok.all():
        return rows.hstack(parent[pos].get_columns())
    idx = nullable("idx", np.where(ok, pos, 0), ok)
    return rows.hstack(parent.select(pl.all().gather(idx)).get_columns())


@dataclass(frozen=True)
class _Block:
    """The table rows of one block: one per occurrence, in line order (``START_COLUMNS``,
    the declaration's lineage, one String column per field), their lineage keys (file and
    line, sorted) and, per ``TABLE_ANCESTORS`` block, the key of each row's open occurrence of
    it (-1: none)."""

    rows: pl.DataFrame
    keys: np.ndarray
    ancestors: dict[str, np.ndarray]


def _blocks(lines: pl.DataFrame, cat: Catalog, decls: pl.DataFrame) -> dict[str, _Block]:
    """Every table block's ``_Block``, from the kept lines (``decls``: the lineage columns of
    each declaration, one row per ``decl_no``, in order).

    One pass for all blocks: the kept lines of the table blocks get a dense occurrence ordinal
    (the lines of an occurrence are consecutive: a new (file, occ) run is a new occurrence, a
    line without ``occ`` one on its own); the line of the first parsed value of each
    (occurrence, field) is a ``minimum.at``; the start lines, grouped by block, and all the
    field values are then two gathers, sliced per block."""
    table_codes = [cat.bcode(b) for b in BLOCK_FIELDS]
    n_cat = cat.rubriques.height
    ancestors = [anc_col(t) for t in TABLE_ANCESTORS]
    cols = lines.select(
        (pl.col("kept") & pl.col("bcode").is_in(table_codes)).fill_null(False).alias("table"),
        pl.col("bcode", "occ", "decl_no", *ancestors).fill_null(-1),
        pl.col("rcode").fill_null(n_cat), "file_idx", "is_new", "block_rejected", "parsed")
    col = {c: cols.get_column(c).to_numpy() for c in cols.columns}
    rows = np.flatnonzero(col["table"])
    file_key = col["file_idx"][rows].astype(np.int64) << 32
    occ = col["occ"][rows]
    new = np.ones(len(rows), bool)
    new[1:] = (occ[1:] != occ[:-1]) | (file_key[1:] != file_key[:-1]) | (occ[:-1] < 0)
    new |= occ < 0
    ordinal = np.cumsum(new) - 1
    slot = np.full(n_cat + 1, -1, np.int64)  # a rubrique code's field index in its block
    for block, fields in BLOCK_FIELDS.items():
        for i, rubrique in enumerate(fields):
            if rubrique.startswith(block) and cat.rcode(rubrique) >= 0:
                slot[cat.rcode(rubrique)] = i
    field = slot[col["rcode"][rows]]
    has = col["parsed"][rows] & (field >= 0)
    n_occ = int(ordinal[-1]) + 1 if len(rows) else 0
    first = np.full(n_occ * FIELD_SLOTS, len(lines), np.int64)
    np.minimum.at(first, ordinal[has] * FIELD_SLOTS + field[has], rows[has])
    first[first == len(lines)] = -1
    # Start lines of the occurrences not set aside, grouped by block (BLOCK_FIELDS order).
    start = col["is_new"][rows] & ~col["block_rejected"][rows]
    block_index = np.full(len(cat.blocks), len(BLOCK_FIELDS), np.int64)
    for j, code in enumerate(table_codes):
        if code >= 0:
            block_index[code] = j
    index = block_index[col["bcode"][rows[start]]]
    order = np.argsort(index, kind="stable")
    starts, ordinal, file_key = rows[start][order], ordinal[start][order], file_key[start][order]
    bounds = np.searchsorted(index[order], np.arange(len(BLOCK_FIELDS) + 1))
    # Kept lines belong to accepted declarations: ``decl_no`` (dense from 1) finds theirs.
    frame = lines.select(START_COLUMNS)[starts].hstack(
        decls[col["decl_no"][starts] - 1].get_columns())
    picks = [first[ordinal[bounds[j]:bounds[j + 1]] * FIELD_SLOTS + i]
             for j, fields in enumerate(BLOCK_FIELDS.values()) for i in range(len(fields))]
    values = _take(lines.get_column("value"), np.concatenate(picks))
    out, offset = {}, 0
    for j, (block, fields) in enumerate(BLOCK_FIELDS.items()):
        lo, n = int(bounds[j]), int(bounds[j + 1] - bounds[j])
        columns = []
        for name in fields.values():
            columns.append(values.slice(offset, n).alias(name))
            offset += n
        own = starts[lo:lo + n]
        anc_keys = {t: np.where(col[c][own] >= 0, file_key[lo:lo + n] | col[c][own], -1)
                    for t, c in zip(TABLE_ANCESTORS, ancestors)}
        out[block] = _Block(frame.slice(lo, n).hstack(columns),
                            file_key[lo:lo + n] | col["occ"][own], anc_keys)
    return out


def build_tables(v: Validated, files: pl.DataFrame,
                 n_buckets: int = DEFAULT_BUCKETS) -> dict[str, pl.DataFrame]:
    """``files``: file_idx, file_sha256, source_file. Returns every table but ``files``."""
    decl_info = _declarations(v, files)  # one row per decl_no, in order
    blocks = _blocks(v.lines, v.catalog, decl_info.select("decl_id", "decl_month", "siret",
                                                          "file_sha256"))
    out: dict[str, pl.DataFrame] = {"declarations": _conform(decl_info, "declarations")}

    # Employers: the accepted declarations, with the idcc of their first establishment.
    first_est = blocks[codes.ESTABLISHMENT].rows.select("decl_no", "idcc").unique(
        "decl_no", keep="first", maintain_order=True)
    emp = decl_info.filter(~pl.col("rejected")).join(first_est, on="decl_no", how="left",
                                                     maintain_order="left")
    out["employers"] = _conform(emp, "employers")

    persons = blocks[codes.INDIVIDUAL]
    out["individuals"] = _conform(persons.rows, "individuals", {
        "person_occ": pl.col("occ"), "birth_date": to_date(pl.col("birth_date_raw")),
        "bucket": person_bucket(n_buckets)})
    person_ids = out["individuals"].select("nir", "ntt")

    def person_rows(block: str, parent: str | None = None,
                    parent_columns: pl.DataFrame | None = None) -> pl.DataFrame:
        """The block's rows with their individual's ``nir``/``ntt`` and, when asked, the
        ``parent_columns`` (one row per occurrence of ``parent``) of their open ``parent``."""
        b = blocks[block]
        rows = _with_parents(b.rows, _lookup(persons.keys, b.ancestors[codes.INDIVIDUAL]),
                             person_ids)
        if parent is not None:
            rows = _with_parents(rows, _lookup(blocks[parent].keys, b.ancestors[parent]),
                                 parent_columns)
        return rows

    person = {"person_occ": pl.col(anc_col(codes.INDIVIDUAL)), "bucket": person_bucket(n_buckets)}
    out["contracts"] = _conform(person_rows(codes.CONTRACT), "contracts", {
        **person, "contract_occ": pl.col("occ"),
        "contract_start": to_date(pl.col("contract_start")),
        "planned_end": to_date(pl.col("planned_end")),
        "ref_quota_h": to_hundredths(pl.col("ref_quota_h")),
        "quota_h": to_hundredths(pl.col("quota_h")),
        "contract_no": contract_number(pl.col("contract_no"))})
    out["pay"] = _conform(person_rows(codes.PAY), "pay", {
        **person, "pay_occ": pl.col("occ"),
        "period_start": to_date(pl.col("period_start")),
        "period_end": to_date(pl.col("period_end")),
        "contract_no": contract_number(pl.col("contract_no")),
        "hours_h": to_hundredths(pl.col("hours_h")),
        "amount_cents": to_cents(pl.col("amount_cents"))})
    pay_ids = out["pay"].select("period_start", "period_end", "contract_no", "pay_type")
    out["activities"] = _conform(person_rows(codes.ACTIVITY, codes.PAY, pay_ids), "activities", {
        **person, "pay_occ": pl.col(anc_col(codes.PAY)),
        "measure_h": to_hundredths(pl.col("measure_h"))})

    contract_ids = out["contracts"].select("contract_no", "contract_start")

    def contract_child(block: str, table: str, derived: dict[str, pl.Expr]) -> pl.DataFrame:
        return _conform(person_rows(block, codes.CONTRACT, contract_ids), table, {
            **person, "contract_occ": pl.col(anc_col(codes.CONTRACT)), **derived})

    def dates(*names: str) -> dict[str, pl.Expr]:
        return {n: to_date(pl.col(n)) for n in names}

    out["work_stoppages"] = contract_child(
        codes.WORK_STOPPAGE, "work_stoppages",
        dates("last_worked_day", "planned_end", "resumption_date"))
    out["contract_ends"] = contract_child(codes.CONTRACT_END, "contract_ends", dates("end_date"))
    out["suspensions"] = contract_child(codes.SUSPENSION, "suspensions",
                                        dates("start_date", "end_date"))
    out["individual_changes"] = _conform(
        person_rows(codes.INDIVIDUAL_CHANGE), "individual_changes",
        {**person, **dates("change_date"), "old_nir": pl.col("old_nir").str.strip_chars()})
    out["contract_changes"] = contract_child(codes.CONTRACT_CHANGE, "contract_changes", {
        **dates("change_date", "old_contract_start", "recalc_depth"),
        "old_siret": pl.col("old_siret").str.strip_chars(),
        "old_contract_no": contract_number(pl.col("old_contract_no")),
        "old_quota_h": to_hundredths(pl.col("old_quota_h")),
        "old_ref_quota_h": to_hundredths(pl.col("old_ref_quota_h"))})
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
        # the declared MONTH (S20.G00.05.005 = 01MMAAAA): a day other than 01 is an
        # invalid_date anomaly (the declaration is rejected), and its rows still belong to one
        # month partition (two days of one month made two partitions of one path collide)
        to_date(pl.col("decl_month_raw")).dt.month_start().alias("decl_month"),
        to_date(pl.col("constitution_raw")).alias("constitution_date"),
        (pl.col("constitution_raw") + pl.col("order_no")).alias("self_id"),
        (pl.col("siren") + pl.col("nic")).alias("siret"),
        pl.col("rejected").fill_null(False),
        pl.col("decl_reason").alias("reject_reason"),
    ).sort("decl_no")


def _quarantine(issues: pl.DataFrame, decl_info: pl.DataFrame, files: pl.DataFrame) -> pl.DataFrame:
    version_warning = pl.col("version_row") & pl.col("q_scope").is_null()
    test_warning = pl.col("test_row") & pl.col("q_scope").is_null()
    nature_warning = (pl.col("nature_row") & pl.col("q_scope").is_null()
                      & pl.col("w_reason").is_null())
    lines = issues.with_columns(
        pl.when(version_warning).then(pl.lit(Reason.UNKNOWN_NORM_VERSION))
        .when(test_warning).then(pl.lit(Reason.TEST_ENVOI))
        .when(nature_warning).then(pl.lit(Reason.NOT_A_DSN_MENSUELLE)).otherwise(pl.col("w_reason"))
        .alias("w_reason"),
        pl.when(version_warning).then(pl.lit("unknown norm version, validated with ") + pl.col("norm_version"))
        .when(test_warning).then(pl.lit("test envoi (S10.G00.00.005 = 01): its declarations are "
                                        "kept for audit, never used"))
        .when(nature_warning).then(pl.format(
            "declaration of nature {} (S20.G00.05.001), not a DSN mensuelle (01): kept for "
            "audit, never credited", pl.col("value")))
        .otherwise(pl.col("w_detail")).alias("w_detail"),
    )
    rows = lines.filter(pl.col("q_scope").is_not_null() | pl.col("w_reason").is_not_null())
    masked = (pl.when(pl.col("malformed"))
              .then(pl.col("raw").str.replace_all(codes.NIR_IN_TEXT_PATTERN, "${1}*"))
              .when(pl.col("rubrique").is_in(list(codes.MASKED_RUBRIQUES)))
              .then(pl.col("value").str.slice(0, codes.MASK_KEEP_CHARS) + pl.lit("*"))
              .otherwise(pl.col("value")))
    # a malformed line still names its rubrique when it starts with an id: the analyst sees
    # which datum was lost
    rubrique = pl.coalesce(named_id(), pl.col("rubrique"))
    rows = rows.select(
        "file_idx", "line_no", "decl_line", rubrique.alias("rubrique"), masked.alias("value_masked"),
        pl.coalesce("q_reason", "w_reason").alias("reason"),
        pl.coalesce("q_detail", "w_detail").alias("detail"),
        pl.coalesce("q_scope", pl.lit(Scope.WARNING)).alias("scope"),
        "is_cause",
    )
    rows = rows.join(decl_info.select(*DECL_KEYS, "decl_id", "decl_month"), on=DECL_KEYS, how="left")
    rows = rows.join(files, on="file_idx", how="left")
    return _conform(rows.sort("file_idx", "line_no"), "quarantine")
