"""Shared back end of the flat and XML readers: records -> structure -> validation -> tables."""

from __future__ import annotations

import polars as pl

from parsers.codes import Scope
from parsers.lake_schema import DEFAULT_BUCKETS, TABLES
from parsers.model import ParsedFile
from parsers.records import STATIC_CODE
from parsers.structure import add_structure, build_catalog
from parsers.tables import build_tables
from parsers.validate import validate

RECORD_SCHEMA = {"file_idx": pl.Int64, "line_no": pl.Int64, "raw": pl.String,
                 "rubrique": pl.String, "value": pl.String, "malformed": pl.Boolean,
                 "damaged": pl.Boolean}
FILE_META_SCHEMA = {"file_idx": pl.Int64, "file_sha256": pl.String, "source_file": pl.String,
                    "size_bytes": pl.Int64, "encoding": pl.String, "format": pl.String}


def assemble(records: pl.DataFrame, meta: pl.DataFrame, n_buckets: int = DEFAULT_BUCKETS,
             extra_quarantine: pl.DataFrame | None = None,
             check_s90_lines: bool = True) -> ParsedFile:
    """``records`` (RECORD_SCHEMA, sorted by file_idx, line_no) of the files in ``meta``.

    ``extra_quarantine`` carries file-scope rows (e.g. an unreadable XML file).
    """
    if "force_new" not in records.columns:
        records = records.with_columns(pl.lit(False).alias("force_new"))
    static_codes = records.get_column(STATIC_CODE) if STATIC_CODE in records.columns else None
    records = records.select([pl.col(c).cast(t) for c, t in
                              {**RECORD_SCHEMA, "force_new": pl.Boolean}.items()])
    meta = meta.select([pl.col(c).cast(t) for c, t in FILE_META_SCHEMA.items()])
    file_keys = meta.select("file_idx", "file_sha256", "source_file")
    catalog, rcodes = build_catalog(records.get_column("rubrique"), static_codes)
    records = records.with_columns(rcodes.alias("rcode"))
    validated = validate(add_structure(records, catalog), check_s90_lines=check_s90_lines,
                         catalog=catalog)
    tables = build_tables(validated, file_keys, n_buckets)
    if extra_quarantine is not None and extra_quarantine.height:
        extra = extra_quarantine.select([
            (pl.col(c) if c in extra_quarantine.columns else pl.lit(None)).cast(t).alias(c)
            for c, t in TABLES["quarantine"].items()])
        tables["quarantine"] = pl.concat([tables["quarantine"], extra])
    # Lines per file: file_idx is sorted, so its run lengths are the counts.
    per_file = (validated.lines.get_column("file_idx").rle().struct.unnest()
                .select(pl.col("value").alias("file_idx"), pl.col("len").cast(pl.Int64)
                        .alias("lines_read")))
    per_file = per_file.join(
        validated.issues.filter(pl.col("q_scope").is_not_null()).group_by("file_idx")
        .agg(pl.len().cast(pl.Int64).alias("lines_quarantined")), on="file_idx", how="left")
    q = tables["quarantine"]
    warn = (q.filter(pl.col("scope") == Scope.WARNING).group_by("file_sha256").len()
            .rename({"len": "warnings"}))
    n_decl = tables["declarations"].group_by("file_sha256").len().rename({"len": "declarations"})
    files = (meta.join(per_file, on="file_idx", how="left")
             .join(warn, on="file_sha256", how="left").join(n_decl, on="file_sha256", how="left")
             .with_columns(pl.col("lines_read", "lines_quarantined", "warnings", "declarations")
                           .fill_null(0).cast(pl.Int64))
             .with_columns((pl.col("lines_read") - pl.col("lines_quarantined")).alias("lines_parsed"))
             .sort("file_idx"))
    tables["files"] = files.select([
        (pl.col(c) if c in files.columns else pl.lit(None)).cast(t).alias(c)
        for c, t in TABLES["files"].items()])
    return ParsedFile(_own_strings(tables))


def _own_strings(tables: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Copy the String columns of the output tables into their own buffers.

    The flat reader's ``value`` / ``rubrique`` / ``raw`` columns are string views into the
    batch's bytes (``records.read_split_batch``), and gathers keep them as views: without this
    copy the typed tables of a pending commit would keep every parse batch's text alive
    (peak RSS measured 722 -> 1 399 MB on 600 files). A concatenation copies; filters,
    gathers, slices and casts do not."""
    out = {}
    for name, df in tables.items():
        strings = [c for c, t in df.schema.items() if t == pl.String]
        out[name] = df.with_columns(pl.col(strings) + pl.lit("")) if strings and df.height else df
    return out
