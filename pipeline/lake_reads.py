"""The crediting engine's reads of the lake: a table's part files for some buckets, a typed
scan (the ONE place the engine opens lake files), and a signature that changes whenever the lake
does (it keys the per-process caches)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from parsers.lake import BUCKET_DIGITS, lake_path, scan, scan_parts
from parsers.lake_schema import PERSON_TABLES, TABLES, person_bucket
from parsers.lake_settings import bucket_count


def bucket_parts(root_dir: Path | str, table: str, buckets: list[int]) -> list[Path]:
    """Part files of a person table for some buckets only (the lake is partitioned
    ``<table>/month=YYYY-MM/bucket=NNN/``): bucket filtering prunes FILES, not rows."""
    base = lake_path(root_dir) / table
    if not base.exists():
        return []
    return sorted(f for b in sorted(set(int(x) for x in buckets))
                  for f in base.glob(f"*/bucket={b:0{BUCKET_DIGITS}d}/part-*.parquet"))


def scan_table(root_dir: Path | str, table: str,
               buckets: list[int] | None = None) -> pl.LazyFrame:
    """One lake table as a LazyFrame: the ONE place in the engine that reads the lake.
    Without buckets (or for a table that is not bucketed) this is ``parsers.lake.scan``; with
    buckets, only those buckets' files are opened, with the same typed-scan options."""
    if buckets is None or table not in PERSON_TABLES:
        return scan(root_dir, table)
    parts = bucket_parts(root_dir, table, buckets)
    if not parts:
        return pl.LazyFrame(schema=TABLES[table])
    return (scan_parts(parts, TABLES[table])
            .filter(pl.col("bucket").is_in([int(b) for b in buckets])))


def lake_signature(root_dir: Path | str, *tables: str) -> tuple:
    """(path, size, mtime) of every part file of some tables: changes whenever the lake does
    (ingestion writes new parts atomically), so it keys the per-process caches below."""
    base = lake_path(root_dir)
    out = []
    for table in tables:
        for f in sorted((base / table).rglob("*.parquet")):
            st = f.stat()
            out.append((str(f), st.st_size, st.st_mtime_ns))
    return (str(Path(root_dir).resolve()), tuple(out))


def nir_buckets(root_dir: Path | str, nirs: pl.Series) -> pl.DataFrame:
    """(nir, bucket) of some NIRs (identity links, one person's ``cpf explain``): the lake's
    bucket rule (``person_bucket`` with its recorded bucket count), i.e. where their rows are
    stored. Computed, not looked up: reading every individual of the lake to find a few NIRs
    cost each crediting process a scan of the whole lake (~0.7 CPU-s per million people, even
    without any link). A NIR without rows gets the bucket its rows would have: a run reading
    it finds nothing there."""
    return (pl.DataFrame({"nir": nirs.drop_nulls().unique()}, schema={"nir": pl.String})
            .with_columns(person_bucket(bucket_count(root_dir))))
