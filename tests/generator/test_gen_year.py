"""generate_year: deterministic for a seed, S90 right on every file, clean for the parser."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest

from generator.year import generate_year


def _digest(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.glob("*.dsn"))}


@pytest.fixture(scope="module")
def year_dir(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("year")
    g = generate_year(out, seed=7, people=240, employers=6, year=2025, truth=True, processes=2)
    return out, g


def test_deterministic_whatever_the_process_count(year_dir, tmp_path):
    out, _ = year_dir
    generate_year(tmp_path, seed=7, people=240, employers=6, year=2025, processes=1)
    assert _digest(out) == _digest(tmp_path)


def test_other_seed_differs(year_dir, tmp_path):
    out, _ = year_dir
    generate_year(tmp_path, seed=8, people=240, employers=6, year=2025, processes=1)
    assert _digest(out) != _digest(tmp_path)


def test_s90_totals_and_summary(year_dir):
    out, g = year_dir
    files = sorted(out.glob("*.dsn"))
    assert g.files == len(files) == 6 * 12 == g.declarations
    total_lines = 0
    for path in files:
        lines = path.read_bytes().splitlines()
        assert lines[-2] == f"S90.G00.90.001,'{len(lines)}'".encode(), path.name
        assert lines[-1] == b"S90.G00.90.002,'1'"
        assert lines[0] == b"S10.G00.00.001,'CPFGEN'"
        total_lines += len(lines)
    assert g.lines == total_lines
    assert g.bytes == sum(p.stat().st_size for p in files)


def test_truth_has_one_row_per_person(year_dir):
    out, _ = year_dir
    t = pl.read_parquet(out / "truth.parquet")
    assert t.height == 240
    assert t["ratio"].min() >= 0


def test_generated_year_ingests_without_quarantine(year_dir, tmp_path):
    ingest = pytest.importorskip("parsers.ingest", reason="parsers.ingest not available yet")
    out, g = year_dir
    report = ingest.ingest_paths([out], tmp_path)
    assert report.lines_read == g.lines
    assert report.lines_quarantined == 0, report.quarantine_by_reason


def test_anomalies_are_confined(tmp_path):
    ingest = pytest.importorskip("parsers.ingest", reason="parsers.ingest not available yet")
    src = tmp_path / "dsn"
    g = generate_year(src, seed=3, people=60, employers=3, year=2025, anomalies=0.05,
                      processes=1)
    report = ingest.ingest_paths([src], tmp_path / "lake")
    assert 0 < report.lines_quarantined < 0.01 * g.lines
    assert set(report.quarantine_by_reason) <= {"invalid_date", "malformed_line"}
