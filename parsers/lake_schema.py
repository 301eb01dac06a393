"""The lake's typed tables: the one contract between ingestion and crediting.

Every table is a Parquet dataset under ``LAKE/<table>/`` partitioned by declaration month
(``month=YYYY-MM``) and by person bucket (``bucket=NNN``) so that crediting one bucket reads
only that bucket's files. Each row carries its lineage (``file_sha256``, ``decl_id``,
``line_no`` = first line of the block occurrence in the source file) so an auditor can go back
to the exact DSN line.

Conventions (DEVELOPERS.md): money in Int64 euro cents; DSN quantities (hours, days, quotités)
in Int64 hundredths (``151.67`` -> ``15167``), never float; dates as ``pl.Date``.
"""

from __future__ import annotations

import polars as pl

LINEAGE: dict[str, pl.DataType] = {
    "file_sha256": pl.String(),  # checksum of the source file (the file's identity)
    "decl_id": pl.String(),  # "<file_sha256[:16]>-<line_no of S20.G00.05.001>"
    "line_no": pl.Int64(),  # first line of this block occurrence (1-based)
}

# Keys that place a person-keyed row in the lake's partitions.
PARTITION: dict[str, pl.DataType] = {
    "decl_month": pl.Date(),  # S20.G00.05.005, first day of the declared month
    "bucket": pl.Int32(),  # person bucket, see person_bucket()
}

DECLARATIONS: dict[str, pl.DataType] = {
    **LINEAGE,
    "source_file": pl.String(),
    "envoi_is_test": pl.Boolean(),  # S10.G00.00.005 == "01": never used downstream
    "norm_version": pl.String(),  # S10.G00.00.006
    "nature": pl.String(),  # S20.G00.05.001 (01 = DSN mensuelle)
    "decl_type": pl.String(),  # S20.G00.05.002 (01 normale, 02 sans individu, 03/05 A&R)
    "fraction": pl.String(),  # S20.G00.05.003 ("11" = not fractioned)
    "order_no": pl.String(),  # S20.G00.05.004
    "decl_month": pl.Date(),  # S20.G00.05.005
    "replaced_id": pl.String(),  # S20.G00.05.006 = replaced .007 (JJMMAAAA) + .004
    "constitution_date": pl.Date(),  # S20.G00.05.007
    "self_id": pl.String(),  # this declaration's own id in the .006 sense: .007 raw + .004
    "siren": pl.String(),  # S21.G00.06.001
    "nic": pl.String(),  # S21.G00.11.001
    "siret": pl.String(),  # siren + nic
    "n_individuals": pl.Int64(),
    "rejected": pl.Boolean(),  # a blocking anomaly rejected the whole declaration
    "reject_reason": pl.String(),  # [added by parsers] quarantine reason that rejected it
}

EMPLOYERS: dict[str, pl.DataType] = {
    **LINEAGE,
    "decl_month": pl.Date(),
    "siren": pl.String(),
    "nic": pl.String(),
    "siret": pl.String(),
    "idcc": pl.String(),  # S21.G00.11.022
}

# Columns every person-keyed table repeats so it can be read alone.
PERSON_KEYS: dict[str, pl.DataType] = {
    **LINEAGE,
    **PARTITION,
    "siret": pl.String(),
    "person_occ": pl.Int64(),  # occurrence id of the S21.G00.30 block in the file
    "nir": pl.String(),  # S21.G00.30.001 (13 chars) or null
    "ntt": pl.String(),  # S21.G00.30.020 or null
}

INDIVIDUALS: dict[str, pl.DataType] = {
    **PERSON_KEYS,
    "last_name": pl.String(),  # .002
    "usage_name": pl.String(),  # .003
    "first_names": pl.String(),  # .004
    "birth_date_raw": pl.String(),  # .006 JJMMAAAA (may hold 99 for unknown day/month)
    "birth_date": pl.Date(),  # null when day/month unknown
}

CONTRACTS: dict[str, pl.DataType] = {
    **PERSON_KEYS,
    "contract_occ": pl.Int64(),
    "contract_start": pl.Date(),  # 40.001
    "status_conv": pl.String(),  # 40.002
    "contract_nature": pl.String(),  # 40.007
    "policy_scheme": pl.String(),  # 40.008
    "contract_no": pl.String(),  # 40.009 (upper-cased, trimmed)
    "planned_end": pl.Date(),  # 40.010
    "unit": pl.String(),  # 40.011
    "ref_quota_h": pl.Int64(),  # 40.012 in hundredths (monthly reference of the category)
    "quota_h": pl.Int64(),  # 40.013 in hundredths (contract's monthly quotité)
    "modality": pl.String(),  # 40.014
    "idcc": pl.String(),  # 40.017
    "employment_status": pl.String(),  # 40.026
    "boeth": pl.String(),  # 40.072 (null when absent)
}

PAY: dict[str, pl.DataType] = {
    **PERSON_KEYS,
    "pay_occ": pl.Int64(),  # occurrence id of the S21.G00.51 block
    "period_start": pl.Date(),  # 51.001
    "period_end": pl.Date(),  # 51.002
    "contract_no": pl.String(),  # 51.010
    "pay_type": pl.String(),  # 51.011
    "hours_h": pl.Int64(),  # 51.012 in hundredths (signed)
    "amount_cents": pl.Int64(),  # 51.013 in cents (signed)
}

ACTIVITIES: dict[str, pl.DataType] = {
    **PERSON_KEYS,
    "pay_occ": pl.Int64(),  # parent S21.G00.51 occurrence
    "period_start": pl.Date(),  # of the parent 51
    "period_end": pl.Date(),
    "contract_no": pl.String(),  # of the parent 51
    "pay_type": pl.String(),  # of the parent 51 (activities are legal only under 002)
    "activity_type": pl.String(),  # 53.001 (01 travail rémunéré, 02 absence non rémunérée)
    "measure_h": pl.Int64(),  # 53.002 in hundredths (signed)
    "unit": pl.String(),  # 53.003 or null (then the contract's 40.011 applies)
}

# The three contract children carry the parent contract's identity.
CONTRACT_CHILD_KEYS: dict[str, pl.DataType] = {
    **PERSON_KEYS,
    "contract_occ": pl.Int64(),
    "contract_no": pl.String(),
    "contract_start": pl.Date(),
}

WORK_STOPPAGES: dict[str, pl.DataType] = {
    **CONTRACT_CHILD_KEYS,
    "motif": pl.String(),  # 60.001 (99 = annulation)
    "last_worked_day": pl.Date(),  # 60.002
    "planned_end": pl.Date(),  # 60.003
    "resumption_date": pl.Date(),  # 60.010
}

CONTRACT_ENDS: dict[str, pl.DataType] = {
    **CONTRACT_CHILD_KEYS,
    "end_date": pl.Date(),  # 62.001
    "end_reason": pl.String(),  # 62.002 (099 = annulation of an end)
}

SUSPENSIONS: dict[str, pl.DataType] = {
    **CONTRACT_CHILD_KEYS,
    "motif": pl.String(),  # 65.001 (998 = annulation)
    "start_date": pl.Date(),  # 65.002
    "end_date": pl.Date(),  # 65.003
}

# Identity changes (dsn_format.md §1.5). One row per S21.G00.31 / S21.G00.41 occurrence of a
# non-rejected declaration, under the CURRENT identity of its individual / contract (``nir``,
# ``siret``, ``contract_no``, ``contract_start``, ``bucket`` = bucket of the current NIR). The
# old NIR usually sits in another bucket: the engine reads these (small) tables whole.
INDIVIDUAL_CHANGES: dict[str, pl.DataType] = {
    **PERSON_KEYS,
    "change_date": pl.Date(),  # 31.001 date de la modification
    "old_nir": pl.String(),  # 31.008 ancien NIR (null when the NIR did not change)
    "old_last_name": pl.String(),  # 31.009
    "old_first_names": pl.String(),  # 31.010
    "old_birth_date_raw": pl.String(),  # 31.011 JJMMAAAA as declared
}

CONTRACT_CHANGES: dict[str, pl.DataType] = {
    **CONTRACT_CHILD_KEYS,  # the current contract: nir, siret, contract_no, contract_start
    "change_date": pl.Date(),  # 41.001 date de la modification
    "old_siret": pl.String(),  # 41.012 SIRET ancien établissement d'affectation
    "old_contract_no": pl.String(),  # 41.014 ancien numéro du contrat (upper-cased, trimmed)
    "old_contract_start": pl.Date(),  # 41.021 ancienne date de début du contrat
    "old_unit": pl.String(),  # 41.006 ancienne unité de mesure (stored, not used)
    "old_quota_h": pl.Int64(),  # 41.007 ancienne quotité, hundredths (stored, not used)
    "old_ref_quota_h": pl.Int64(),  # 41.022 ancienne quotité de référence (stored, not used)
    "recalc_depth": pl.Date(),  # 41.028 profondeur de recalcul de la paie
}

QUARANTINE: dict[str, pl.DataType] = {
    "source_file": pl.String(),
    "file_sha256": pl.String(),
    "line_no": pl.Int64(),  # null when the reason concerns a whole file
    "rubrique": pl.String(),
    "value_masked": pl.String(),  # NIR-like values masked
    "reason": pl.String(),  # short stable code, e.g. "invalid_date", see parsers docs
    "detail": pl.String(),  # human sentence
    "scope": pl.String(),  # "line" | "declaration" | "envoi" | "file"
    "decl_id": pl.String(),
    "decl_month": pl.Date(),
    "is_cause": pl.Boolean(),  # [added by parsers] the line carries the anomaly itself
}

FILES: dict[str, pl.DataType] = {
    "file_sha256": pl.String(),
    "source_file": pl.String(),
    "size_bytes": pl.Int64(),
    "encoding": pl.String(),
    "format": pl.String(),  # "flat" | "n4ds_xml"
    "lines_read": pl.Int64(),
    "lines_parsed": pl.Int64(),
    "lines_quarantined": pl.Int64(),
    "declarations": pl.Int64(),
    "batch_id": pl.String(),
    "warnings": pl.Int64(),  # [added by parsers] quarantine rows of scope "warning"
    "ingested_at": pl.Datetime("us", "UTC"),  # [added by parsers]
}

TABLES: dict[str, dict[str, pl.DataType]] = {
    "declarations": DECLARATIONS,
    "employers": EMPLOYERS,
    "individuals": INDIVIDUALS,
    "contracts": CONTRACTS,
    "pay": PAY,
    "activities": ACTIVITIES,
    "work_stoppages": WORK_STOPPAGES,
    "contract_ends": CONTRACT_ENDS,
    "suspensions": SUSPENSIONS,
    "individual_changes": INDIVIDUAL_CHANGES,
    "contract_changes": CONTRACT_CHANGES,
    "quarantine": QUARANTINE,
    "files": FILES,
}

PERSON_TABLES = ("individuals", "contracts", "pay", "activities", "work_stoppages",
                 "contract_ends", "suspensions")
# Change tables: written by month only (not bucketed: every bucket run needs every link, since
# an old NIR and its new NIR usually fall in different buckets); ``bucket`` is a column.
CHANGE_TABLES = ("individual_changes", "contract_changes")

DEFAULT_BUCKETS = 16


def person_bucket(n_buckets: int = DEFAULT_BUCKETS, nir: str = "nir") -> pl.Expr:
    """Stable person bucket from the NIR's last six digits (commune + order number).

    Stable across Polars versions and machines (unlike ``Expr.hash``), so a lake written
    today is read by tomorrow's code. Rows without a NIR go to bucket 0.
    """
    digits = pl.col(nir).str.slice(7, 6).cast(pl.Int64, strict=False)
    return (digits % n_buckets).fill_null(0).cast(pl.Int32).alias("bucket")


def empty_frame(table: str) -> pl.DataFrame:
    """A zero-row frame with the table's schema (used when a file has no such block)."""
    return pl.DataFrame(schema=TABLES[table])
