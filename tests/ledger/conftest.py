"""Fixtures for the ledger / publication / catalog unit tests: hand-built frames that follow
parsers/lake_schema.py and the engine's amounts columns (no upstream code needed)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from parsers.lake_schema import TABLES

AS_OF = dt.date(2025, 5, 2)
AS_OF_2025 = dt.date(2026, 5, 2)  # year 2025 is credited in 2026's campaign


def nir(i: int) -> str:
    """The i-th test NIR, valid under S21.G00.30.001's pattern (month 01-09, commune and order
    numbers never 000), increasing with i for i < 9 990."""
    return f"1850{i // 999 % 9 + 1}75{i % 999 // 100 + 1:03d}{i % 999 % 100 + 1:03d}"


def amounts_frame(rows: list[tuple]) -> pl.DataFrame:
    """rows: (nir, ratio, category, annual_amount_cents, ceiling_cents)"""
    return pl.DataFrame(
        rows, schema={"nir": pl.String, "worked_ratio": pl.Float64, "category": pl.String,
                      "annual_amount_cents": pl.Int64, "ceiling_cents": pl.Int64},
        orient="row",
    ).with_columns(pl.lit(2024, pl.Int32).alias("year"),
                   pl.lit("params-test").alias("param_version"),
                   pl.lit(["d1", "d2"]).alias("source_decl_ids"),
                   pl.lit("12 months full time").alias("explain_months"),
                   (pl.col("category") == "low_qualified").alias("low_qualified"))


def write_table(root: Path, table: str, rows: list[dict]) -> None:
    schema = TABLES[table]
    df = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    d = root / "lake" / table
    d.mkdir(parents=True, exist_ok=True)
    df.write_parquet(d / "part-test.parquet")


def make_lake(root: Path, n_files: int = 2) -> None:
    """A tiny lake: files, declarations, contracts and quarantine rows."""
    files = [{"file_sha256": f"{i:064x}", "source_file": f"/in/dsn{i}.txt", "size_bytes": 10,
              "encoding": "utf-8", "format": "flat", "lines_read": 10, "lines_parsed": 9,
              "lines_quarantined": 1, "declarations": 1, "batch_id": "test"} for i in range(n_files)]
    write_table(root, "files", files)
    decls = [{"file_sha256": f"{i:064x}", "decl_id": f"decl{i}", "line_no": 3,
              "source_file": f"/in/dsn{i}.txt", "envoi_is_test": False, "decl_type": "01",
              "decl_month": dt.date(2024, 1 + i, 1), "siren": f"{123456780 + i}",
              "nic": "00011", "siret": f"{123456780 + i}00011", "rejected": False}
             for i in range(n_files)]
    write_table(root, "declarations", decls)
    contracts = [{"file_sha256": f"{i % n_files:064x}", "decl_id": f"decl{i % n_files}",
                  "line_no": 10, "decl_month": dt.date(2024, 1 + i % 12, 1), "bucket": 0,
                  "siret": f"{123456780 + i % n_files}00011", "nir": nir(i),
                  "contract_start": dt.date(2024, 1 + i % 12, 1), "contract_no": "C1"}
                 for i in range(6)]
    write_table(root, "contracts", contracts)
    q = [{"source_file": "/in/dsn0.txt", "file_sha256": f"{0:064x}", "line_no": 7,
          "rubrique": "S21.G00.40.001", "reason": "invalid_date", "scope": "line",
          "decl_id": "decl0", "decl_month": dt.date(2024, 1, 1)}]
    write_table(root, "quarantine", q)


class FakeEngine:
    """Stands for pipeline.credits.compute_year: returns whatever amounts it is given."""

    def __init__(self, amounts: pl.DataFrame):
        self.amounts = amounts

    def __call__(self, root, year, holders):
        unc = pl.DataFrame({"nir": [None], "ntt": ["NTT1"], "reason": ["no_nir"]},
                           schema={"nir": pl.String, "ntt": pl.String, "reason": pl.String})
        return self.amounts.lazy(), unc.lazy(), fake_employments(root, year)


def fake_employments(root: Path, year: int) -> pl.LazyFrame:
    """The employments the engine would return for the tiny lake's contract rows (every row
    stands for a current declaration of the year)."""
    return (pl.scan_parquet(Path(root) / "lake" / "contracts" / "*.parquet")
            .filter(pl.col("decl_month").dt.year() == year)
            .group_by("nir", "siret")
            .agg(pl.col("contract_start").min().alias("first_contract_start"),
                 pl.col("decl_month").n_unique().cast(pl.Int64).alias("months_declared"))
            .select("nir", pl.lit(year, pl.Int32).alias("year"),
                    pl.col("siret").str.slice(0, 9).alias("siren"), "siret",
                    "first_contract_start", "months_declared",
                    pl.lit(0, pl.Int64).alias("months_undeclared"),
                    pl.lit(None, pl.String).alias("undeclared_months"))
            .sort("nir", "siret"))


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    root = tmp_path / "DIR"
    root.mkdir()
    make_lake(root)
    return root


BASE = [
    (nir(0), 1.0, "standard", 50000, 500000),
    (nir(1), 0.25, "standard", 12500, 500000),
    (nir(2), 1.0, "low_qualified", 80000, 800000),
    (nir(3), 1.0, "standard", 50000, 500000),
    (nir(4), 1.0, "boeth", 80000, 800000),
]
